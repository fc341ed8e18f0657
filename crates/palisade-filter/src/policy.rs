//! What each finding does, per upstream or tool: annotate, redact, quarantine or deny; whether the session is tainted; how content is spotlighted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_core::Target;
use serde::Serialize;

use crate::scan::{Class, DEFAULT_THRESHOLD};

/// What a finding does to the content it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Recorded; the content passes (already cleaned of invisible and hidden text).
    Annotate,
    /// The span found is replaced by a marker naming the rule.
    Redact,
    /// The agent gets a placeholder; the content waits for an operator.
    Quarantine,
    /// The content is withheld.
    Deny,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Annotate,
        Action::Redact,
        Action::Quarantine,
        Action::Deny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Annotate => "annotate",
            Action::Redact => "redact",
            Action::Quarantine => "quarantine",
            Action::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// How untrusted content is marked for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Spotlight {
    Off,
    /// Wrapped between a per-request random boundary naming the source.
    Boundary,
    /// As `Boundary`, and every space inside replaced by a marker character.
    Datamark,
}

impl Spotlight {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Spotlight::Off),
            "boundary" => Some(Spotlight::Boundary),
            "datamark" => Some(Spotlight::Datamark),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Spotlight::Off => "off",
            Spotlight::Boundary => "boundary",
            Spotlight::Datamark => "datamark",
        }
    }
}

/// The inbound policy for one source (an upstream, or one of its tools).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcePolicy {
    pub actions: BTreeMap<Class, Action>,
    /// Findings of these classes taint the session.
    pub taint: BTreeSet<Class>,
    /// Everything from this source taints the session (a web fetcher, a mailbox).
    pub untrusted: bool,
    pub spotlight: Spotlight,
    pub threshold: f64,
}

impl Default for SourcePolicy {
    /// Hidden and invisible text is removed and reported; a visible,
    /// smuggled or encoded injection is quarantined; suspicious content
    /// taints the session; text results are spotlighted.
    fn default() -> Self {
        let actions = Class::ALL
            .into_iter()
            .map(|class| (class, default_action(class)))
            .collect();
        Self {
            actions,
            taint: Class::ALL.into_iter().filter(|c| c.suspicious()).collect(),
            untrusted: false,
            spotlight: Spotlight::Boundary,
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

fn default_action(class: Class) -> Action {
    match class {
        Class::Injection | Class::SmuggledText | Class::EncodedInstruction => Action::Quarantine,
        Class::HiddenInstruction | Class::HiddenText | Class::InvisibleCharacters => Action::Redact,
        Class::InjectionSignal => Action::Annotate,
        Class::Unreadable => Action::Quarantine,
    }
}

impl SourcePolicy {
    pub fn action(&self, class: Class) -> Action {
        self.actions
            .get(&class)
            .copied()
            .unwrap_or_else(|| default_action(class))
    }
}

/// Inbound policies: one for everything, and overrides by `SERVER` or `SERVER/TOOL`.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub default: SourcePolicy,
    pub sources: HashMap<String, SourcePolicy>,
}

impl Policies {
    /// The policy for a target: its tool's, else its server's, else the default.
    pub fn for_target(&self, target: &Target) -> &SourcePolicy {
        let tool = format!("{}/{}", target.server, target.name);
        self.sources
            .get(&tool)
            .or_else(|| self.sources.get(&*target.server))
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_policy_wins_over_the_servers() {
        let mut policies = Policies::default();
        let server = SourcePolicy {
            untrusted: true,
            ..SourcePolicy::default()
        };
        let tool = SourcePolicy {
            spotlight: Spotlight::Off,
            ..SourcePolicy::default()
        };
        policies.sources.insert("web".into(), server);
        policies.sources.insert("web/fetch".into(), tool);
        assert_eq!(
            policies.for_target(&Target::new("web", "fetch")).spotlight,
            Spotlight::Off
        );
        assert!(policies.for_target(&Target::new("web", "search")).untrusted);
        assert!(!policies.for_target(&Target::new("mail", "read")).untrusted);
    }

    #[test]
    fn names_parse_back() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        for class in Class::ALL {
            assert_eq!(Class::parse(class.as_str()), Some(class));
        }
        assert_eq!(Spotlight::parse("datamark"), Some(Spotlight::Datamark));
    }
}
