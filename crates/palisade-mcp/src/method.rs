//! Every MCP method palisade speaks, as closed enums by direction, and which hook each passes.
//!
//! The names are those of the `ClientRequest`, `ClientNotification`,
//! `ServerRequest` and `ServerNotification` unions of the MCP schema,
//! revisions 2025-06-18 and 2025-11-25 (the later one adds the `tasks/*`
//! methods, `notifications/tasks/status` and
//! `notifications/elicitation/complete`). Matching is exact and
//! case-sensitive: `Tools/Call`, `tools/call/` and ` tools/call` are not
//! methods, and [`ClientRequest::parse`] says so with `None`.
//!
//! The classes ([`RequestClass`], [`ServerRequestClass`]) are written out
//! variant by variant, with no wildcard arm, so a new method cannot be added
//! without deciding which hook it passes.

/// Declares one closed set of methods: the enum, `ALL`, `parse` and `as_str`,
/// from a single list, so that the four cannot disagree. A wire name listed
/// twice is an unreachable pattern in `parse`, which the build denies.
macro_rules! methods {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every method of this set, in declaration order.
            pub const ALL: [Self; [$($wire),+].len()] = [$(Self::$variant),+];

            /// The method named exactly `method` (case-sensitive, nothing trimmed), if any.
            pub fn parse(method: &str) -> Option<Self> {
                match method {
                    $( $wire => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// The method's name on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $wire, )+
                }
            }
        }
    };
}

methods! {
    /// A request a client sends a server.
    pub enum ClientRequest {
        Initialize = "initialize",
        Ping = "ping",
        ToolsList = "tools/list",
        ToolsCall = "tools/call",
        PromptsList = "prompts/list",
        PromptsGet = "prompts/get",
        ResourcesList = "resources/list",
        ResourcesTemplatesList = "resources/templates/list",
        ResourcesRead = "resources/read",
        ResourcesSubscribe = "resources/subscribe",
        ResourcesUnsubscribe = "resources/unsubscribe",
        CompletionComplete = "completion/complete",
        LoggingSetLevel = "logging/setLevel",
        /// 2025-11-25: the state of a task.
        TasksGet = "tasks/get",
        /// 2025-11-25: the deferred result of a task-augmented `tools/call`.
        TasksResult = "tasks/result",
        /// 2025-11-25.
        TasksList = "tasks/list",
        /// 2025-11-25.
        TasksCancel = "tasks/cancel",
    }
}

methods! {
    /// A notification a client sends a server.
    pub enum ClientNotification {
        Initialized = "notifications/initialized",
        Cancelled = "notifications/cancelled",
        Progress = "notifications/progress",
        RootsListChanged = "notifications/roots/list_changed",
        /// 2025-11-25: sent by the receiver of a task-augmented request, so by
        /// a client about a task-augmented `sampling/createMessage` or
        /// `elicitation/create`.
        TasksStatus = "notifications/tasks/status",
    }
}

methods! {
    /// A request a server sends a client.
    pub enum ServerRequest {
        Ping = "ping",
        SamplingCreateMessage = "sampling/createMessage",
        ElicitationCreate = "elicitation/create",
        RootsList = "roots/list",
        /// 2025-11-25: a server polls a task it asked the client to run.
        TasksGet = "tasks/get",
        /// 2025-11-25: the result of a task-augmented `sampling/createMessage`
        /// or `elicitation/create`.
        TasksResult = "tasks/result",
        /// 2025-11-25.
        TasksList = "tasks/list",
        /// 2025-11-25.
        TasksCancel = "tasks/cancel",
    }
}

methods! {
    /// A notification a server sends a client.
    pub enum ServerNotification {
        Cancelled = "notifications/cancelled",
        Progress = "notifications/progress",
        Message = "notifications/message",
        ResourcesUpdated = "notifications/resources/updated",
        ResourcesListChanged = "notifications/resources/list_changed",
        ToolsListChanged = "notifications/tools/list_changed",
        PromptsListChanged = "notifications/prompts/list_changed",
        /// 2025-11-25: an out-of-band (URL mode) elicitation finished.
        ElicitationComplete = "notifications/elicitation/complete",
        /// 2025-11-25: a task-augmented `tools/call` changed status.
        TasksStatus = "notifications/tasks/status",
    }
}

/// What the gateway does with a client request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// Reaches a tool or its content: enters the security pipeline.
    Call,
    /// Asks what upstreams offer: passes the listing hook.
    Listing,
    /// Session plumbing: passed through.
    Plumbing,
}

impl ClientRequest {
    /// Which hook the request passes. `tasks/result` is a [`RequestClass::Call`]:
    /// it returns the deferred result of a task-augmented `tools/call`, tool
    /// output like the call's own answer. `tasks/get`, `tasks/list` and
    /// `tasks/cancel` carry only task state.
    pub const fn class(self) -> RequestClass {
        match self {
            Self::ToolsCall
            | Self::ResourcesRead
            | Self::PromptsGet
            | Self::CompletionComplete
            | Self::TasksResult => RequestClass::Call,
            Self::ToolsList
            | Self::PromptsList
            | Self::ResourcesList
            | Self::ResourcesTemplatesList => RequestClass::Listing,
            Self::Initialize
            | Self::Ping
            | Self::ResourcesSubscribe
            | Self::ResourcesUnsubscribe
            | Self::LoggingSetLevel
            | Self::TasksGet
            | Self::TasksList
            | Self::TasksCancel => RequestClass::Plumbing,
        }
    }
}

/// What the gateway does with a server's request to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerRequestClass {
    /// Carries content between the model or the user and a server: the
    /// request passes the inbound filter, the answer passes redaction.
    ContentHook,
    /// Session plumbing: relayed.
    Plumbing,
}

impl ServerRequest {
    /// Which hook the request passes. `tasks/result` is a
    /// [`ServerRequestClass::ContentHook`]: its answer is the client's deferred
    /// answer to a task-augmented `sampling/createMessage` or
    /// `elicitation/create`, to be redacted as the direct answer would be.
    pub const fn class(self) -> ServerRequestClass {
        match self {
            Self::SamplingCreateMessage | Self::ElicitationCreate | Self::TasksResult => {
                ServerRequestClass::ContentHook
            }
            Self::Ping | Self::RootsList | Self::TasksGet | Self::TasksList | Self::TasksCancel => {
                ServerRequestClass::Plumbing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every wire name of every set.
    fn every_name() -> Vec<&'static str> {
        let mut names = Vec::new();
        names.extend(ClientRequest::ALL.map(ClientRequest::as_str));
        names.extend(ClientNotification::ALL.map(ClientNotification::as_str));
        names.extend(ServerRequest::ALL.map(ServerRequest::as_str));
        names.extend(ServerNotification::ALL.map(ServerNotification::as_str));
        names
    }

    fn known_anywhere(method: &str) -> bool {
        ClientRequest::parse(method).is_some()
            || ClientNotification::parse(method).is_some()
            || ServerRequest::parse(method).is_some()
            || ServerNotification::parse(method).is_some()
    }

    #[test]
    fn every_variant_round_trips() {
        for m in ClientRequest::ALL {
            assert_eq!(ClientRequest::parse(m.as_str()), Some(m));
        }
        for m in ClientNotification::ALL {
            assert_eq!(ClientNotification::parse(m.as_str()), Some(m));
        }
        for m in ServerRequest::ALL {
            assert_eq!(ServerRequest::parse(m.as_str()), Some(m));
        }
        for m in ServerNotification::ALL {
            assert_eq!(ServerNotification::parse(m.as_str()), Some(m));
        }
    }

    #[test]
    fn all_lists_each_variant_once() {
        fn distinct<T: std::hash::Hash + Eq>(all: impl IntoIterator<Item = T>, n: usize) {
            assert_eq!(all.into_iter().collect::<HashSet<_>>().len(), n);
        }
        distinct(ClientRequest::ALL, ClientRequest::ALL.len());
        distinct(ClientRequest::ALL.map(ClientRequest::as_str), 17);
        distinct(ClientNotification::ALL.map(ClientNotification::as_str), 5);
        distinct(ServerRequest::ALL.map(ServerRequest::as_str), 8);
        distinct(ServerNotification::ALL.map(ServerNotification::as_str), 9);
    }

    /// The schema's unions, written out again by hand: a typo in one list fails here.
    #[test]
    fn the_sets_are_the_schemas_unions() {
        fn same(ours: impl IntoIterator<Item = &'static str>, schema: &[&str]) {
            let ours: HashSet<&str> = ours.into_iter().collect();
            let schema: HashSet<&str> = schema.iter().copied().collect();
            assert_eq!(ours, schema);
        }
        same(
            ClientNotification::ALL.map(ClientNotification::as_str),
            &[
                "notifications/cancelled",
                "notifications/progress",
                "notifications/initialized",
                "notifications/roots/list_changed",
                "notifications/tasks/status",
            ],
        );
        same(
            ServerNotification::ALL.map(ServerNotification::as_str),
            &[
                "notifications/cancelled",
                "notifications/progress",
                "notifications/message",
                "notifications/resources/updated",
                "notifications/resources/list_changed",
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/elicitation/complete",
                "notifications/tasks/status",
            ],
        );
    }

    #[test]
    fn near_misses_are_no_method() {
        for name in every_name() {
            let mut capitalized = name.to_owned();
            if let Some(first) = capitalized.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            let misses = [
                name.to_uppercase(),
                capitalized,
                format!("{name}/"),
                format!("/{name}"),
                format!(" {name}"),
                format!("{name} "),
                format!("{name}\n"),
                format!("\t{name}"),
                format!("{name}\0"),
                format!("{name}x"),
                format!("x{name}"),
                format!("{name}{name}"),
                name.replace('/', "//"),
                name.replace('/', "\\"),
                name.replace('/', "."),
                name.replace('s', "\u{0455}"), // Cyrillic dze, looks like `s`
                name.get(..name.len() - 1).unwrap().to_owned(),
                name.get(1..).unwrap().to_owned(),
            ];
            for miss in misses {
                if miss != name {
                    assert!(!known_anywhere(&miss), "{miss:?} (near {name:?}) parsed");
                }
            }
        }
        for miss in [
            "",
            " ",
            "/",
            "Tools/Call",
            "TOOLS/CALL",
            "tools/Call",
            "tools/call/",
            " tools/call",
            "tools/",
            "tools",
            "call",
            "tools/calls",
            "logging/setlevel",
            "logging/set_level",
            "sampling/createmessage",
            "notifications/",
            "notifications",
            "notifications/tools/list_Changed",
            "resources/templates",
            "templates/list",
            "tasks",
            "tasks/",
        ] {
            assert!(!known_anywhere(miss), "{miss:?} parsed");
        }
    }

    #[test]
    fn a_method_is_known_only_in_its_direction() {
        assert_eq!(ClientRequest::parse("sampling/createMessage"), None);
        assert_eq!(ClientRequest::parse("elicitation/create"), None);
        assert_eq!(ClientRequest::parse("roots/list"), None);
        assert_eq!(ClientRequest::parse("notifications/initialized"), None);
        assert_eq!(ServerRequest::parse("tools/call"), None);
        assert_eq!(ServerRequest::parse("initialize"), None);
        assert_eq!(ServerRequest::parse("notifications/progress"), None);
        assert_eq!(ClientNotification::parse("notifications/message"), None);
        assert_eq!(
            ClientNotification::parse("notifications/tools/list_changed"),
            None
        );
        assert_eq!(ClientNotification::parse("ping"), None);
        assert_eq!(ServerNotification::parse("notifications/initialized"), None);
        assert_eq!(
            ServerNotification::parse("notifications/roots/list_changed"),
            None
        );
        assert_eq!(ServerNotification::parse("tools/list"), None);
    }

    fn check(method: &str, expected: RequestClass) {
        let request = ClientRequest::parse(method)
            .unwrap_or_else(|| panic!("`{method}` is not a client request"));
        assert_eq!(request.class(), expected, "class of `{method}`");
    }

    #[test]
    fn every_client_request_has_its_class() {
        use RequestClass::{Call, Listing, Plumbing};
        let table = [
            ("tools/call", Call),
            ("resources/read", Call),
            ("prompts/get", Call),
            ("completion/complete", Call),
            ("tasks/result", Call),
            ("tools/list", Listing),
            ("prompts/list", Listing),
            ("resources/list", Listing),
            ("resources/templates/list", Listing),
            ("initialize", Plumbing),
            ("ping", Plumbing),
            ("resources/subscribe", Plumbing),
            ("resources/unsubscribe", Plumbing),
            ("logging/setLevel", Plumbing),
            ("tasks/get", Plumbing),
            ("tasks/list", Plumbing),
            ("tasks/cancel", Plumbing),
        ];
        for (method, class) in table {
            check(method, class);
        }
        let covered: HashSet<_> = table
            .iter()
            .filter_map(|(m, _)| ClientRequest::parse(m))
            .collect();
        assert_eq!(
            covered,
            HashSet::from(ClientRequest::ALL),
            "the table misses a request"
        );
    }

    fn check_server(method: &str, expected: ServerRequestClass) {
        let request = ServerRequest::parse(method)
            .unwrap_or_else(|| panic!("`{method}` is not a server request"));
        assert_eq!(request.class(), expected, "class of `{method}`");
    }

    #[test]
    fn every_server_request_has_its_class() {
        use ServerRequestClass::{ContentHook, Plumbing};
        let table = [
            ("sampling/createMessage", ContentHook),
            ("elicitation/create", ContentHook),
            ("tasks/result", ContentHook),
            ("ping", Plumbing),
            ("roots/list", Plumbing),
            ("tasks/get", Plumbing),
            ("tasks/list", Plumbing),
            ("tasks/cancel", Plumbing),
        ];
        for (method, class) in table {
            check_server(method, class);
        }
        let covered: HashSet<_> = table
            .iter()
            .filter_map(|(m, _)| ServerRequest::parse(m))
            .collect();
        assert_eq!(
            covered,
            HashSet::from(ServerRequest::ALL),
            "the table misses a request"
        );
    }

    #[test]
    fn the_string_constants_name_methods() {
        use crate::protocol::method;
        for name in [
            method::INITIALIZE,
            method::INITIALIZED,
            method::PING,
            method::TOOLS_LIST,
            method::TOOLS_CALL,
            method::PROMPTS_LIST,
            method::PROMPTS_GET,
            method::RESOURCES_LIST,
            method::RESOURCES_TEMPLATES_LIST,
            method::RESOURCES_READ,
            method::RESOURCES_SUBSCRIBE,
            method::RESOURCES_UNSUBSCRIBE,
            method::COMPLETION_COMPLETE,
            method::LOGGING_SET_LEVEL,
            method::CANCELLED,
            method::PROGRESS,
            method::TOOLS_LIST_CHANGED,
            method::PROMPTS_LIST_CHANGED,
            method::RESOURCES_LIST_CHANGED,
            method::RESOURCES_UPDATED,
            method::ROOTS_LIST_CHANGED,
        ] {
            assert!(known_anywhere(name), "{name:?}");
        }
        assert_eq!(method::LOGGING_SET_LEVEL, "logging/setLevel");
    }
}
