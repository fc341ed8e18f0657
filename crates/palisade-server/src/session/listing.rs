//! Listings: tools, prompts, resources and templates of every upstream, read once, judged, renamed and merged.

use std::sync::Arc;

use palisade_core::{AuditEvent, Bounded, CallKind, EffectClass, ListingFinding, Target};
use palisade_mcp::Response;
use palisade_mcp::jsonrpc::{ErrorObject, INTERNAL_ERROR, INVALID_PARAMS};
use palisade_mcp::protocol::method;
use serde_json::{Map, Value, json};

use super::catalog::{self, Listed, MAX_BYTES, MAX_ITEMS, Noticed};
use super::{Answer, Session, printable_name};
use crate::upstream::{Failure, lock};

/// Which listing, and how its items are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Listing {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl Listing {
    fn method(self) -> &'static str {
        match self {
            Listing::Tools => method::TOOLS_LIST,
            Listing::Prompts => method::PROMPTS_LIST,
            Listing::Resources => method::RESOURCES_LIST,
            Listing::Templates => method::RESOURCES_TEMPLATES_LIST,
        }
    }
    pub(super) fn field(self) -> &'static str {
        match self {
            Listing::Tools => "tools",
            Listing::Prompts => "prompts",
            Listing::Resources => "resources",
            Listing::Templates => "resourceTemplates",
        }
    }
    pub(super) fn capability(self) -> &'static str {
        match self {
            Listing::Tools => "tools",
            Listing::Prompts => "prompts",
            Listing::Resources | Listing::Templates => "resources",
        }
    }
}

/// Items per page of a merged listing.
const PAGE_SIZE: usize = 1000;
/// Longest a listing waits for a restarting upstream.
const MAX_LISTING_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Pages read from one upstream for one listing, against a server whose cursors never end.
const MAX_UPSTREAM_PAGES: usize = 100;
/// Findings recorded per listing read; past this, one count says how many more.
const MAX_NOTICES: usize = 100;

/// Why an upstream's listing is not in the catalog.
enum Unlisted {
    /// The upstream could not be read (logged); when it is restarting, how
    /// long until it can be.
    Failed(Option<std::time::Duration>),
    /// It lists more, or more bytes, than palisade keeps; logged and recorded.
    TooLarge(String),
}

impl Session {
    // ---------------------------------------------------------------- listings

    /// A listing: every upstream's (read once per session and kept until it
    /// says its list changed), renamed, with what must not be shown left
    /// out, merged in config order and paged by palisade: the cursor is
    /// `o:<offset>`. Wrapping one server is the same with no prefix.
    pub(super) async fn list(&self, listing: Listing, params: Option<Value>) -> Answer {
        let offset = match params.as_ref().and_then(|p| p.get("cursor")) {
            None | Some(Value::Null) => 0,
            Some(Value::String(c)) => {
                match c.strip_prefix("o:").and_then(|o| o.parse::<usize>().ok()) {
                    Some(offset) => offset,
                    None => return Err(ErrorObject::new(INVALID_PARAMS, "invalid cursor")),
                }
            }
            Some(_) => {
                return Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "`params.cursor` must be a string",
                ));
            }
        };
        let listed = futures_util::future::join_all(
            (0..self.upstreams.len()).map(|index| self.listed(listing, index)),
        )
        .await;
        let mut refused = Vec::new();
        let mut lists = Vec::new();
        for (index, result) in listed.into_iter().enumerate() {
            match result {
                Ok(list) => lists.push((index, list)),
                Err(Unlisted::TooLarge(why)) => refused.push((index, why)),
                Err(Unlisted::Failed(_)) => {}
            }
        }
        // One upstream that lists too much is left out, not everyone's listing.
        if lists.is_empty()
            && let Some((_, why)) = refused.first()
        {
            return Err(ErrorObject::new(INTERNAL_ERROR, why.clone()));
        }
        // Tools whose definition is not approved are not shown (layer 4's pins).
        let unpinned = match listing {
            Listing::Tools => self.unpinned(&lists).await,
            Listing::Prompts | Listing::Resources | Listing::Templates => Default::default(),
        };
        // Each principal sees only what it may call (layer 1).
        let shown: Vec<&Value> = lists
            .iter()
            .flat_map(|(index, l)| {
                let unpinned = &unpinned;
                l.items.iter().filter(move |item| {
                    self.may_see(listing, *index, item)
                        && (unpinned.is_empty() || !self.is_unpinned(unpinned, *index, item))
                })
            })
            .collect();
        let total = shown.len();
        let page: Vec<Value> = shown
            .into_iter()
            .skip(offset)
            .take(PAGE_SIZE)
            .cloned()
            .collect();
        let mut result = Map::new();
        result.insert(listing.field().into(), Value::Array(page));
        let next = offset.saturating_add(PAGE_SIZE);
        if next < total {
            result.insert("nextCursor".into(), json!(format!("o:{next}")));
        }
        Ok(Value::Object(result))
    }

    /// Whether `item` of upstream `index` is among the `unpinned` tools.
    fn is_unpinned(
        &self,
        unpinned: &std::collections::HashSet<(usize, String)>,
        index: usize,
        item: &Value,
    ) -> bool {
        let Some(upstream) = self.upstreams.get(index) else {
            return true;
        };
        let shown = item.get("name").and_then(Value::as_str).unwrap_or_default();
        let own = shown
            .strip_prefix(upstream.spec.prefix.as_str())
            .unwrap_or(shown);
        unpinned.contains(&(index, own.to_owned()))
    }

    /// Whether this session's principal may see `item` of upstream `index`:
    /// the policies could allow a call to it. Resource templates name no
    /// one resource, so they are shown; reading one is judged as a call.
    fn may_see(&self, listing: Listing, index: usize, item: &Value) -> bool {
        let Some(upstream) = self.upstreams.get(index) else {
            return false;
        };
        let spec = &upstream.spec;
        let field = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
        let own = |name: &str| {
            name.strip_prefix(spec.prefix.as_str())
                .unwrap_or(name)
                .to_owned()
        };
        let (kind, name, effect) = match listing {
            Listing::Tools => {
                let name = own(field("name"));
                let effect = spec.effect_of(&name);
                (CallKind::Tool, name, effect)
            }
            Listing::Prompts => (CallKind::Prompt, own(field("name")), EffectClass::Read),
            Listing::Resources => (
                CallKind::Resource,
                field("uri").to_owned(),
                EffectClass::Read,
            ),
            Listing::Templates => return true,
        };
        let target = Target::new(spec.name.as_str(), name.as_str());
        match &self.gateway.policies {
            Some(policies) => policies.visible(&self.principal, kind, &target, effect),
            // Without policies a task token still narrows what its holder sees.
            None => self.principal.task().is_none_or(|task| {
                task.permits(&target, kind, effect, std::time::SystemTime::now())
                    .is_ok()
            }),
        }
    }

    /// Upstream `index`'s listing, from the catalog or read now (once: a
    /// second reader waits for the first).
    async fn listed(&self, listing: Listing, index: usize) -> Result<Arc<Listed>, Unlisted> {
        let upstream = self.upstreams.get(index).ok_or(Unlisted::Failed(None))?;
        let offers =
            upstream.init_result().is_none() || upstream.capability(listing.capability()).is_some();
        if !offers {
            return Ok(Arc::new(Listed::default()));
        }
        // The common case, every call after the first: no waiting at all.
        if let Some(listed) = lock(&self.routing).catalog.get(index, listing) {
            return Ok(listed);
        }
        let _reading = match self.readers.get(index) {
            Some(reader) => Some(reader.lock().await),
            None => None,
        };
        // Another request may have read it while this one waited.
        if let Some(listed) = lock(&self.routing).catalog.get(index, listing) {
            return Ok(listed);
        }
        let raw = self.read_listing(listing, index).await?;
        if listing == Listing::Tools {
            // Layer 4 holds each tool's responses to the schema it declares.
            for problem in self.gateway.output_schemas.learn(&upstream.spec.name, &raw) {
                tracing::warn!("{problem}; its responses are refused");
            }
        }
        let strict = self.gateway.config.server.strict_names;
        let (listed, noticed) = catalog::build(listing, &upstream.spec.prefix, raw, strict);
        self.report(listing, index, &noticed).await;
        if listing == Listing::Tools {
            self.observe_tools(index, &listed);
        }
        lock(&self.routing).catalog.store(index, listing, listed);
        lock(&self.routing)
            .catalog
            .get(index, listing)
            .ok_or(Unlisted::Failed(None))
    }

    /// Every item upstream `index` lists, following its cursors, within the bounds.
    async fn read_listing(&self, listing: Listing, index: usize) -> Result<Vec<Value>, Unlisted> {
        let upstream = self.upstreams.get(index).ok_or(Unlisted::Failed(None))?;
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_UPSTREAM_PAGES {
            let params = cursor.take().map(|c| json!({ "cursor": c }));
            let mut answer = upstream.request(listing.method(), params.clone()).await;
            // An upstream restarting after a crash would vanish from the
            // listing; a short wait for it is better than a list that lies.
            if let Err(Failure {
                retry_after: Some(wait),
                ..
            }) = &answer
                && *wait <= MAX_LISTING_WAIT
            {
                tokio::time::sleep(*wait).await;
                answer = upstream.request(listing.method(), params).await;
            }
            let mut result = match answer {
                Ok(Response {
                    outcome: Ok(result),
                    ..
                }) => result,
                Ok(Response {
                    outcome: Err(error),
                    ..
                }) => {
                    tracing::warn!(session = %self.id, upstream = %upstream.spec.name, "{}: {}", listing.method(), error.message);
                    return Err(Unlisted::Failed(None));
                }
                Err(failure) => {
                    tracing::warn!(session = %self.id, upstream = %upstream.spec.name, "{}: {}", listing.method(), failure.message);
                    return Err(Unlisted::Failed(failure.retry_after));
                }
            };
            if let Some(Value::Array(page)) = result.get_mut(listing.field()).map(Value::take) {
                for item in page {
                    bytes = bytes.saturating_add(serde_json::to_vec(&item).map_or(0, |b| b.len()));
                    items.push(item);
                    if items.len() > MAX_ITEMS || bytes > MAX_BYTES {
                        let why = format!(
                            "upstream `{}` lists more than palisade keeps ({MAX_ITEMS} items or {} MiB per listing): its `{}` is refused",
                            upstream.spec.name,
                            MAX_BYTES / (1024 * 1024),
                            listing.method()
                        );
                        tracing::warn!(session = %self.id, "{why}");
                        self.notice(listing, index, "", ListingFinding::OverBound, None)
                            .await;
                        return Err(Unlisted::TooLarge(why));
                    }
                }
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(items)
    }

    /// Logs and records what a listing had that was hidden or is reported.
    async fn report(&self, listing: Listing, index: usize, noticed: &[Noticed]) {
        for n in noticed.iter().take(MAX_NOTICES) {
            self.notice(listing, index, &n.name, n.finding, None).await;
        }
        if noticed.len() > MAX_NOTICES {
            let upstream = self.upstreams.get(index).map(|u| u.spec.name.as_str());
            tracing::warn!(session = %self.id, upstream = upstream.unwrap_or_default(), "{} more listing findings not recorded", noticed.len() - MAX_NOTICES);
        }
    }

    pub(super) async fn notice(
        &self,
        listing: Listing,
        index: usize,
        name: &str,
        finding: ListingFinding,
        owner: Option<usize>,
    ) {
        let strict = self.gateway.config.server.strict_names;
        let upstream = self
            .upstreams
            .get(index)
            .map(|u| u.spec.name.clone())
            .unwrap_or_default();
        let owner = owner
            .and_then(|o| self.upstreams.get(o))
            .map(|u| Bounded::new(u.spec.name.as_str()));
        tracing::warn!(session = %self.id, upstream = %upstream, "{} `{}`: {finding:?}", listing.field(), printable_name(name));
        let event = AuditEvent::ListingNotice {
            time: self.gateway.pipeline.now(),
            session: self.id.clone(),
            principal: self.principal.clone(),
            upstream: Bounded::new(upstream),
            listing: listing.field(),
            name: Bounded::new(name),
            finding,
            hidden: finding.hides(strict),
            owner,
        };
        if let Err(failure) = self.gateway.pipeline.record(&event).await {
            tracing::error!(session = %self.id, "{failure}");
        }
    }

    /// Reads a listing into the catalog if it is not there; failures are logged.
    pub(super) async fn listed_or_none(&self, listing: Listing, index: usize) {
        let _ = self.listed(listing, index).await;
    }

    /// Whether upstream `index` shows `name` in `listing` (tools, prompts),
    /// reading its listing when palisade has none (the client may call
    /// without listing first). An error when the listing cannot be read:
    /// then nothing is known to be callable, and the error says when the
    /// upstream (restarting) can be tried again.
    pub(super) async fn is_listed(
        &self,
        listing: Listing,
        index: usize,
        name: &str,
    ) -> Result<bool, Option<std::time::Duration>> {
        match self.listed(listing, index).await {
            Ok(listed) => Ok(listed.names.contains(name)),
            Err(Unlisted::Failed(retry_after)) => Err(retry_after),
            Err(Unlisted::TooLarge(_)) => Err(None),
        }
    }
}
