//! Listings: tools, prompts, resources and templates of every upstream, renamed and merged.

use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS};
use palisade_mcp::protocol::method;
use palisade_mcp::{RequestId, Response};
use serde_json::{Map, Value, json};

use super::{Answer, Outgoing, Refusal, Session};
use crate::gateway::Mode;
use crate::upstream::{Failure, lock};

/// Which listing, and how its items are named.
#[derive(Clone, Copy)]
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
    fn field(self) -> &'static str {
        match self {
            Listing::Tools => "tools",
            Listing::Prompts => "prompts",
            Listing::Resources => "resources",
            Listing::Templates => "resourceTemplates",
        }
    }
    fn capability(self) -> &'static str {
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

impl Session {
    // ---------------------------------------------------------------- listings

    /// A listing. Wrapping one server, its own pages pass through. Aggregating,
    /// every upstream is read in full (following its cursors), the items are
    /// renamed and merged in config order, and palisade pages the result: the
    /// cursor is `o:<offset>`.
    pub(super) async fn list(
        &self,
        id: &RequestId,
        listing: Listing,
        params: Option<Value>,
    ) -> Option<Answer> {
        if self.gateway.mode == Mode::Wrap
            && let Some(index) = self.single_upstream()
        {
            let answer = self
                .relay(index, id, Outgoing::Request(listing.method(), params))
                .await?;
            return Some(answer.map_err(Refusal::into_error));
        }
        let offset = match params.as_ref().and_then(|p| p.get("cursor")) {
            None | Some(Value::Null) => 0,
            Some(Value::String(c)) => {
                match c.strip_prefix("o:").and_then(|o| o.parse::<usize>().ok()) {
                    Some(offset) => offset,
                    None => return Some(Err(ErrorObject::new(INVALID_PARAMS, "invalid cursor"))),
                }
            }
            Some(_) => {
                return Some(Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "`params.cursor` must be a string",
                )));
            }
        };
        let pages = futures_util::future::join_all(
            (0..self.upstreams.len()).map(|index| self.list_one(listing, index)),
        )
        .await;
        let merged: Vec<Value> = pages.into_iter().flatten().flatten().collect();
        let page: Vec<Value> = merged
            .iter()
            .skip(offset)
            .take(PAGE_SIZE)
            .cloned()
            .collect();
        let mut result = Map::new();
        result.insert(listing.field().into(), Value::Array(page));
        let next = offset.saturating_add(PAGE_SIZE);
        if next < merged.len() {
            result.insert("nextCursor".into(), json!(format!("o:{next}")));
        }
        Some(Ok(Value::Object(result)))
    }

    /// Every item one upstream lists, renamed; `None` when its listing failed
    /// (logged), which a merged listing leaves out rather than failing whole.
    pub(super) async fn list_one(&self, listing: Listing, index: usize) -> Option<Vec<Value>> {
        let upstream = self.upstreams.get(index)?;
        let offers =
            upstream.init_result().is_none() || upstream.capability(listing.capability()).is_some();
        if !offers {
            return Some(Vec::new());
        }
        let mut items = Vec::new();
        let mut names = Vec::new();
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
                    return None;
                }
                Err(failure) => {
                    tracing::warn!(session = %self.id, upstream = %upstream.spec.name, "{}: {}", listing.method(), failure.message);
                    return None;
                }
            };
            if let (Listing::Tools, Some(Value::Array(tools))) =
                (listing, result.get(listing.field()))
            {
                names.extend(
                    tools
                        .iter()
                        .filter_map(|t| t.get("name")?.as_str())
                        .map(str::to_owned),
                );
            }
            self.rename_page(listing, index, &mut result);
            if let Some(Value::Array(page)) = result.get_mut(listing.field()).map(Value::take) {
                items.extend(page);
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        if let Listing::Tools = listing {
            let left_out = lock(&self.routing).catalog.learn_tools(index, names);
            self.log_left_out(index, left_out, "tool names");
        }
        Some(items)
    }

    pub(super) fn rename_page(&self, listing: Listing, index: usize, result: &mut Value) {
        let prefix = self
            .upstreams
            .get(index)
            .map(|u| u.spec.prefix.clone())
            .unwrap_or_default();
        let Some(Value::Array(items)) = result.get_mut(listing.field()) else {
            return;
        };
        match listing {
            Listing::Tools | Listing::Prompts => {
                for item in items.iter_mut() {
                    if let Some(Value::String(name)) = item.get_mut("name") {
                        name.insert_str(0, &prefix);
                    }
                }
            }
            Listing::Resources => {
                let uris = items.iter().filter_map(|i| i.get("uri")?.as_str());
                let left_out = lock(&self.routing).catalog.learn_resources(index, uris);
                self.log_left_out(index, left_out, "resource URIs");
            }
            Listing::Templates => {
                let templates = items.iter().filter_map(|i| i.get("uriTemplate")?.as_str());
                let left_out = lock(&self.routing)
                    .catalog
                    .learn_templates(index, templates);
                self.log_left_out(index, left_out, "resource templates");
            }
        }
    }

    /// Logs what a listing had past the catalog's bounds, which is not routed.
    fn log_left_out(&self, index: usize, left_out: usize, what: &str) {
        if left_out > 0 {
            let upstream = self.upstreams.get(index).map(|u| u.spec.name.as_str());
            tracing::warn!(session = %self.id, upstream = upstream.unwrap_or_default(), "{left_out} {what} past the session's bound were not learnt");
        }
    }

    /// Whether upstream `index` lists `tool`, reading its listing when palisade
    /// has none (the client may call without listing first). `None` when the
    /// listing cannot be read: then nothing is known to be callable.
    pub(super) async fn is_listed(&self, index: usize, tool: &str) -> Option<bool> {
        let known = lock(&self.routing).catalog.is_listed(index, tool);
        if let Some(listed) = known {
            return Some(listed);
        }
        self.list_one(Listing::Tools, index).await?;
        lock(&self.routing).catalog.is_listed(index, tool)
    }
}
