//! Which upstream a prefixed name, a resource URI or a task belongs to.

use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS};
use serde_json::Value;

use palisade_core::ListingFinding;

use super::listing::Listing;
use super::{Session, printable_name};
use crate::upstream::lock;

impl Session {
    // ----------------------------------------------------------------- routing

    /// Finds the upstream of a prefixed name; returns it with the name it has there.
    pub(super) fn resolve<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        self.upstreams
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                name.strip_prefix(u.spec.prefix.as_str())
                    .map(|rest| (i, rest, u.spec.prefix.len()))
            })
            .filter(|(_, rest, _)| !rest.is_empty())
            .max_by_key(|(_, _, len)| *len)
            .map(|(i, rest, _)| (i, rest))
    }

    /// The upstream that owns `uri`, with every number of upstreams: one
    /// that listed it, or whose template covers it. Every upstream's resource
    /// listings are read first (once per session), so that ownership follows
    /// the configuration's order, not which listing came first; a URI no
    /// upstream lists is refused.
    pub(super) async fn route_uri(&self, uri: &str) -> Result<usize, ErrorObject> {
        let serving = (0..self.upstreams.len()).flat_map(|index| {
            [Listing::Resources, Listing::Templates].map(|listing| (index, listing))
        });
        futures_util::future::join_all(
            serving.map(|(index, listing)| self.listed_or_none(listing, index)),
        )
        .await;
        let (routes, fresh) = lock(&self.routing).catalog.routes(self.upstreams.len());
        if fresh {
            for (claimer, claim, owner) in &routes.refused {
                self.notice(
                    Listing::Resources,
                    *claimer,
                    claim,
                    ListingFinding::ClaimedByAnother,
                    Some(*owner),
                )
                .await;
            }
        }
        routes.route(uri).ok_or_else(|| {
            ErrorObject::new(
                INVALID_PARAMS,
                format!("no upstream lists the resource `{}`", printable_name(uri)),
            )
        })
    }

    /// The upstream to subscribe to `uri` with. A subscription reads
    /// nothing (updates only say that a resource changed), so a URI no
    /// upstream lists, which servers allow for resources they make later,
    /// goes to the only upstream that offers resources, if there is one.
    pub(super) async fn route_subscription(&self, uri: &str) -> Result<usize, ErrorObject> {
        let owned = self.route_uri(uri).await;
        if owned.is_ok() {
            return owned;
        }
        let serving: Vec<usize> = (0..self.upstreams.len())
            .filter(|i| {
                self.upstreams
                    .get(*i)
                    .is_some_and(|u| u.capability("resources").is_some())
            })
            .collect();
        match serving.as_slice() {
            [only] => Ok(*only),
            _ => owned,
        }
    }

    /// The upstream of a task this session created (`tasks/get`, `tasks/cancel`).
    pub(super) fn route_task(&self, params: Option<&Value>) -> Result<usize, ErrorObject> {
        let Some(task) = params.and_then(|p| p.get("taskId")).and_then(Value::as_str) else {
            return Err(ErrorObject::new(
                INVALID_PARAMS,
                "`params.taskId` must be a string",
            ));
        };
        lock(&self.routing)
            .tasks
            .get(task)
            .map(|(upstream, _creator)| upstream)
            .ok_or_else(|| {
                ErrorObject::new(
                    INVALID_PARAMS,
                    format!(
                        "no task `{}` was created in this session",
                        super::printable_name(task)
                    ),
                )
            })
    }
}
