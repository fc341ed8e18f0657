//! MCP protocol revisions, method names and Streamable HTTP header names.

/// The revisions palisade speaks with clients, newest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
pub const LATEST_VERSION: &str = "2025-11-25";

/// The revisions palisade accepts from upstreams and bridges to its clients'.
/// Each newer revision only adds optional fields and methods, so messages
/// pass between them unchanged; 2024-11-05 over HTTP used the older HTTP+SSE
/// transport, which palisade does not speak (see [`upstream_supported`]).
pub const UPSTREAM_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Picks the revision to answer an `initialize` with: the client's if
/// palisade speaks it, otherwise the newest palisade speaks (the client then
/// decides whether to go on).
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.into_iter().find(|v| *v == r))
        .unwrap_or(LATEST_VERSION)
}

pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// Whether palisade can bridge an upstream that answered `initialize` with
/// `version`, over stdio (`http == false`) or Streamable HTTP.
pub fn upstream_supported(version: &str, http: bool) -> bool {
    UPSTREAM_VERSIONS.contains(&version) && !(http && version == "2024-11-05")
}

/// Method names as constants, for `match` arms on a message's method. Each
/// is the wire name of a variant of [`crate::method`], so the two cannot
/// drift; code that must decide what a method is should use those enums.
pub mod method {
    use crate::method::{ClientNotification, ClientRequest, ServerNotification, ServerRequest};

    pub const INITIALIZE: &str = ClientRequest::Initialize.as_str();
    pub const INITIALIZED: &str = ClientNotification::Initialized.as_str();
    pub const PING: &str = ClientRequest::Ping.as_str();
    pub const TOOLS_LIST: &str = ClientRequest::ToolsList.as_str();
    pub const TOOLS_CALL: &str = ClientRequest::ToolsCall.as_str();
    pub const PROMPTS_LIST: &str = ClientRequest::PromptsList.as_str();
    pub const PROMPTS_GET: &str = ClientRequest::PromptsGet.as_str();
    pub const RESOURCES_LIST: &str = ClientRequest::ResourcesList.as_str();
    pub const RESOURCES_TEMPLATES_LIST: &str = ClientRequest::ResourcesTemplatesList.as_str();
    pub const RESOURCES_READ: &str = ClientRequest::ResourcesRead.as_str();
    pub const RESOURCES_SUBSCRIBE: &str = ClientRequest::ResourcesSubscribe.as_str();
    pub const RESOURCES_UNSUBSCRIBE: &str = ClientRequest::ResourcesUnsubscribe.as_str();
    pub const COMPLETION_COMPLETE: &str = ClientRequest::CompletionComplete.as_str();
    pub const LOGGING_SET_LEVEL: &str = ClientRequest::LoggingSetLevel.as_str();
    /// Sent in both directions.
    pub const CANCELLED: &str = ClientNotification::Cancelled.as_str();
    /// Sent in both directions.
    pub const PROGRESS: &str = ClientNotification::Progress.as_str();
    pub const TOOLS_LIST_CHANGED: &str = ServerNotification::ToolsListChanged.as_str();
    pub const PROMPTS_LIST_CHANGED: &str = ServerNotification::PromptsListChanged.as_str();
    pub const RESOURCES_LIST_CHANGED: &str = ServerNotification::ResourcesListChanged.as_str();
    pub const RESOURCES_UPDATED: &str = ServerNotification::ResourcesUpdated.as_str();
    pub const ROOTS_LIST_CHANGED: &str = ClientNotification::RootsListChanged.as_str();
    pub const SAMPLING_CREATE_MESSAGE: &str = ServerRequest::SamplingCreateMessage.as_str();
}

pub mod header {
    pub const SESSION_ID: &str = "mcp-session-id";
    pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
    pub const LAST_EVENT_ID: &str = "last-event-id";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_the_clients_supported_revision() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2025-11-25")), "2025-11-25");
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2024-11-05")), LATEST_VERSION);
        assert!(upstream_supported("2024-11-05", false));
        assert!(!upstream_supported("2024-11-05", true));
        assert!(upstream_supported("2025-03-26", true));
        assert!(!upstream_supported("2024-10-07", false));
        assert_eq!(negotiate(Some("garbage")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
    }
}
