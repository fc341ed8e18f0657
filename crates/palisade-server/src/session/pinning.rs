//! Tool definition pins in the session: a tool whose definition is not approved is left out of `tools/list` and refused as unknown.
//!
//! Every definition is checked when it is listed and when it is called (a
//! map lookup once approved), never only when it was read: an approval made
//! by `palisade tools approve`, in another process, shows the tool at the
//! next listing. A definition waiting for approval is logged once per
//! process, naming `palisade tools pending`.

use std::collections::HashSet;
use std::sync::Arc;

use palisade_filter::pins::{Definition, PinState, Source};
use serde_json::Value;

use super::catalog::Listed;
use super::listing::Listing;
use super::{Session, printable_name};
use crate::upstream::lock;

impl Session {
    /// Remembers the names upstream `index` shows, for the shadowing check
    /// of the other upstreams' tools.
    pub(super) fn observe_tools(&self, index: usize, listed: &Listed) {
        let Some(upstream) = self.upstreams.get(index) else {
            return;
        };
        let names = listed
            .items
            .iter()
            .filter_map(|item| item.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        self.gateway.pins.observe(&upstream.spec.name, names);
    }

    /// The tools of `lists` (upstream index, own name) whose definitions
    /// are not approved: a listing leaves them out.
    pub(super) async fn unpinned(
        &self,
        lists: &[(usize, Arc<Listed>)],
    ) -> HashSet<(usize, String)> {
        let mut hidden = HashSet::new();
        for (index, listed) in lists {
            for (name, definition) in &listed.definitions {
                if self.pin_refusal(*index, definition).await.is_some() {
                    hidden.insert((*index, name.clone()));
                }
            }
        }
        hidden
    }

    /// Why upstream `index`'s tool `name` may not be called now, for the
    /// record; `None` when its definition is approved.
    pub(super) async fn pin_refusal_of(&self, index: usize, name: &str) -> Option<String> {
        let listed = lock(&self.routing).catalog.get(index, Listing::Tools);
        match listed.as_ref().and_then(|l| l.definitions.get(name)) {
            Some(definition) => self.pin_refusal(index, definition).await,
            None => Some(format!(
                "the definition of the tool `{}` is not known",
                printable_name(name)
            )),
        }
    }

    /// `None` when `definition` of upstream `index` is approved; else why
    /// not. Logs a definition that waits, once; a store that cannot be read
    /// approves nothing.
    async fn pin_refusal(&self, index: usize, definition: &Definition) -> Option<String> {
        let upstream = self.upstreams.get(index)?;
        let spec = &upstream.spec;
        let source = Source {
            server: &spec.name,
            prefix: &spec.prefix,
            mode: self.gateway.config.pinning_of(spec),
        };
        let tool = printable_name(definition.name());
        match self.gateway.pins.check(source, definition).await {
            Ok(PinState::Approved) => None,
            Ok(PinState::Pending {
                id,
                reason,
                announce,
                findings,
            }) => {
                if announce {
                    let found = if findings.is_empty() {
                        String::new()
                    } else {
                        format!("; findings: {}", findings.join("; "))
                    };
                    tracing::warn!(
                        upstream = %spec.name,
                        "tool `{tool}` is hidden until approved: its definition is {} (id {id}{found}); see `palisade tools pending`, `palisade tools diff {id}`",
                        reason.as_str()
                    );
                }
                Some(format!(
                    "the definition of the tool `{tool}` of `{}` is {} and not approved (pending id {id})",
                    spec.name,
                    reason.as_str()
                ))
            }
            Err(e) => {
                tracing::error!(session = %self.id, upstream = %spec.name, "cannot check the pin of tool `{tool}`: {e}");
                Some(format!(
                    "the pin of the tool `{tool}` cannot be checked: {e}"
                ))
            }
        }
    }
}
