//! The outbound stage: tool-call arguments checked for secrets, PII and URLs that would carry data away, before anything leaves.
//!
//! Every string argument, at any depth, named by its JSON path:
//! - a secret value (the secrets layer's redactor recognizes it) is denied,
//!   or redacted where the policy says so;
//! - PII found by validators is redacted, denied or annotated per kind,
//!   unless the principal holds a role allowed PII;
//! - every URL, found by real parsers (prose, markdown with reference
//!   links, HTML), is parsed the WHATWG way and checked: a dangerous
//!   scheme, userinfo, an IP literal, a host outside the allowlist (by
//!   registrable domain), and a path or query carrying a secret, PII, or
//!   words an untrusted result of this session held (exfiltration through
//!   an allowed host).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use palisade_core::stage::{OutboundFilter, StageFuture};
use palisade_core::{
    CallContext, CallHead, Decision, Finding, Reason, ReasonCode, Redactor, Stage,
};
use serde_json::Value;

use crate::memory::SessionMemory;
use crate::pii::{self, PiiKind};
use crate::policy::Action;
use crate::urls::{self, UrlAllowlist, UrlProblem};

/// What the outbound filter does with what it finds.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    /// A secret value in an argument: `Deny` (default) or `Redact`.
    pub secrets: Action,
    /// Per PII kind: `Annotate`, `Redact` or `Deny`.
    pub pii: BTreeMap<PiiKind, Action>,
    /// Principals with one of these roles may send PII (`user_authorized_pii`).
    pub pii_roles: Vec<String>,
    /// Hosts URLs may name; empty means no host check.
    pub allow: UrlAllowlist,
    /// What a URL problem does (exfiltration is always denied).
    pub urls: Action,
}

impl Default for OutboundPolicy {
    /// Secrets denied; card numbers, IBANs and SSNs redacted; other PII
    /// annotated; URL problems denied; no host allowlist.
    fn default() -> Self {
        let pii = PiiKind::ALL
            .into_iter()
            .map(|kind| {
                let action = match kind {
                    PiiKind::PaymentCard | PiiKind::Iban | PiiKind::UsSsn => Action::Redact,
                    PiiKind::Email | PiiKind::Phone | PiiKind::IpAddress => Action::Annotate,
                };
                (kind, action)
            })
            .collect();
        Self {
            secrets: Action::Deny,
            pii,
            pii_roles: Vec::new(),
            allow: UrlAllowlist::default(),
            urls: Action::Deny,
        }
    }
}

#[derive(Debug)]
pub struct Outbound {
    policy: OutboundPolicy,
    redactor: Option<Arc<dyn Redactor>>,
    memory: Arc<SessionMemory>,
}

/// One thing found in one argument.
struct Found {
    code: String,
    message: String,
    action: Action,
}

impl Outbound {
    pub fn new(
        policy: OutboundPolicy,
        redactor: Option<Arc<dyn Redactor>>,
        memory: Arc<SessionMemory>,
    ) -> Self {
        Self {
            policy,
            redactor,
            memory,
        }
    }

    /// Checks every string of `arguments`, rewriting those the policy redacts.
    pub fn check(&self, head: &CallHead, arguments: &mut Value) -> Decision {
        let pii_allowed = head
            .principal
            .roles()
            .iter()
            .any(|r| self.policy.pii_roles.iter().any(|a| a == &**r));
        let mut found = Vec::new();
        strings(arguments, &mut String::from("$"), &mut |path, text| {
            self.check_text(head, path, text, pii_allowed, &mut found);
        });
        let findings: Vec<Finding> = found
            .iter()
            .map(|f| Finding {
                stage: Stage::OutboundFilter,
                code: f.code.clone(),
                message: f.message.clone(),
            })
            .collect();
        let denied: Vec<&str> = found
            .iter()
            .filter(|f| matches!(f.action, Action::Deny | Action::Quarantine))
            .map(|f| f.message.as_str())
            .collect();
        if denied.is_empty() {
            return Decision::allow().with_findings(findings);
        }
        let detail = format!(
            "the arguments would send out what they must not: {}",
            denied.join("; ")
        );
        Decision::deny(Reason::new(ReasonCode::ContentBlocked, detail)).with_findings(findings)
    }

    fn check_text(
        &self,
        head: &CallHead,
        path: &str,
        text: &mut String,
        pii_allowed: bool,
        found: &mut Vec<Found>,
    ) {
        if let Some(redactor) = &self.redactor
            && let std::borrow::Cow::Owned(clean) = redactor.redact_text(text)
        {
            found.push(Found {
                code: "secret.in-arguments".into(),
                message: format!("{path} holds a secret value"),
                action: self.policy.secrets,
            });
            if self.policy.secrets == Action::Redact {
                *text = clean;
            }
        }
        for url in urls::find_urls(text) {
            self.check_url(head, path, &url.raw, pii_allowed, found);
        }
        if pii_allowed {
            return;
        }
        let matches = pii::find_pii(text);
        let mut redact = Vec::new();
        for m in matches {
            let action = self
                .policy
                .pii
                .get(&m.kind)
                .copied()
                .unwrap_or(Action::Annotate);
            found.push(Found {
                code: format!("pii.{}", m.kind.as_str()),
                message: format!(
                    "{path} holds {} at bytes {}..{}",
                    m.kind.as_str(),
                    m.span.start,
                    m.span.end
                ),
                action,
            });
            if action == Action::Redact {
                redact.push(m);
            }
        }
        if !redact.is_empty() {
            *text = pii::redact_pii(text, &redact);
        }
    }

    fn check_url(
        &self,
        head: &CallHead,
        path: &str,
        raw: &str,
        pii_allowed: bool,
        found: &mut Vec<Found>,
    ) {
        let (parsed, problems) = urls::check_url(raw, &self.policy.allow);
        let shown = shorten(raw);
        for problem in &problems {
            let what = match problem {
                UrlProblem::Unparsable => "is not a URL palisade can parse".to_owned(),
                UrlProblem::DangerousScheme { scheme } => format!("uses the `{scheme}:` scheme"),
                UrlProblem::Userinfo => "has a user name or password before its host".to_owned(),
                UrlProblem::IpLiteral { host } => format!("names the address {host}"),
                UrlProblem::NotAllowlisted { domain } => {
                    format!("goes to {domain}, which is not on the allowlist")
                }
            };
            // An address is the egress layer's to judge, and a relative or
            // broken URL leads nowhere by itself: both are noted.
            let action = match problem {
                UrlProblem::IpLiteral { .. } | UrlProblem::Unparsable => Action::Annotate,
                UrlProblem::DangerousScheme { .. }
                | UrlProblem::Userinfo
                | UrlProblem::NotAllowlisted { .. } => self.policy.urls,
            };
            found.push(Found {
                code: problem.code().to_owned(),
                message: format!("{path}: the URL {shown} {what}"),
                action,
            });
        }
        let Some(url) = parsed else { return };
        // What the URL carries: the labels of its host (a subdomain is read
        // by whoever runs the domain's DNS), its path, query and fragment, decoded.
        let mut carried = url.host_str().unwrap_or_default().replace('.', " ");
        carried.push(' ');
        for part in [
            url.path(),
            url.query().unwrap_or(""),
            url.fragment().unwrap_or(""),
        ] {
            let decoded: String = url::form_urlencoded::parse(part.as_bytes())
                .map(|(k, v)| format!("{k} {v} "))
                .collect();
            let _ = write!(carried, "{decoded} ");
        }
        let mut carries = Vec::new();
        if let Some(redactor) = &self.redactor
            && (matches!(redactor.redact_text(&carried), std::borrow::Cow::Owned(_))
                || matches!(redactor.redact_text(raw), std::borrow::Cow::Owned(_)))
        {
            carries.push("a secret value".to_owned());
        }
        if !pii_allowed {
            let kinds: Vec<&str> = pii::find_pii(&carried)
                .iter()
                .map(|m| m.kind.as_str())
                .collect();
            if !kinds.is_empty() {
                carries.push(format!("PII ({})", kinds.join(", ")));
            }
        }
        if let Some(echo) = self.memory.echoes(&head.session, &carried) {
            carries.push(format!(
                "words an untrusted result of this session held (\"{echo}\")"
            ));
        }
        if !carries.is_empty() {
            found.push(Found {
                code: "url.exfiltration".into(),
                message: format!("{path}: the URL {shown} carries {}", carries.join(" and ")),
                action: Action::Deny,
            });
        }
    }
}

impl OutboundFilter for Outbound {
    fn check_arguments<'a>(
        &'a self,
        head: &'a CallHead,
        arguments: &'a mut Value,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, Decision> {
        Box::pin(async move { Ok(self.check(head, arguments)) })
    }
}

/// A URL for a message: its scheme and host, never its query (which may be the secret).
fn shorten(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => format!(
            "{}://{}/…",
            url.scheme(),
            url.host_str().unwrap_or_default()
        ),
        Err(_) => "(unparsable)".to_owned(),
    }
}

fn strings(value: &mut Value, path: &mut String, f: &mut dyn FnMut(&str, &mut String)) {
    match value {
        Value::String(s) => f(path, s),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                strings(item, path, f);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                let _ = write!(path, ".{key}");
                strings(item, path, f);
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use palisade_core::{CallId, CallKind, EffectClass, Principal, SessionId, Target, Verdict};
    use serde_json::json;

    use super::*;

    /// Knows one secret value.
    #[derive(Debug)]
    struct Knows(&'static str);

    impl Redactor for Knows {
        fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
            if text.contains(self.0) {
                Cow::Owned(text.replace(self.0, "[REDACTED]"))
            } else {
                Cow::Borrowed(text)
            }
        }
    }

    fn head() -> CallHead {
        CallHead {
            id: CallId(1),
            principal: Principal::new("alice"),
            session: SessionId::new("s"),
            kind: CallKind::Tool,
            target: Target::new("web", "fetch"),
            effect: EffectClass::Egress,
            params: None,
            parent: None,
        }
    }

    fn outbound(allow: &[&str]) -> Outbound {
        let policy = OutboundPolicy {
            allow: UrlAllowlist::new(allow).unwrap_or_default(),
            ..OutboundPolicy::default()
        };
        Outbound::new(
            policy,
            Some(Arc::new(Knows("s3cr3tvalue"))),
            Arc::new(SessionMemory::new()),
        )
    }

    fn codes(decision: &Decision) -> Vec<&str> {
        decision.findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn a_secret_in_a_subdomain_is_exfiltration() {
        let mut args = json!({"url": "https://s3cr3tvalue.collector.example/x"});
        let decision = outbound(&[]).check(&head(), &mut args);
        assert!(matches!(decision.verdict, Verdict::Deny(_)), "{decision:?}");
        assert!(codes(&decision).contains(&"url.exfiltration"));
        // The message names the host, which the audit seam redacts; the argument is untouched.
        assert_eq!(args["url"], "https://s3cr3tvalue.collector.example/x");
    }

    #[test]
    fn words_of_an_untrusted_result_leaving_through_an_allowed_host_are_refused() {
        let memory = Arc::new(SessionMemory::new());
        memory.remember(
            &SessionId::new("s"),
            &["The acquisition of Initech closes Friday.".to_owned()],
        );
        let filter = Outbound::new(
            OutboundPolicy {
                allow: UrlAllowlist::new(["example.com"]).unwrap_or_default(),
                ..OutboundPolicy::default()
            },
            None,
            memory,
        );
        let mut args =
            json!({"q": "see https://search.example.com/?q=acquisition+of+initech+closes"});
        let decision = filter.check(&head(), &mut args);
        assert!(
            codes(&decision).contains(&"url.exfiltration"),
            "{decision:?}"
        );
        let mut other = json!({"q": "https://search.example.com/?q=weather+tomorrow"});
        assert!(matches!(
            filter.check(&head(), &mut other).verdict,
            Verdict::Allow
        ));
    }

    #[test]
    fn a_relative_link_is_noted_not_refused() {
        let mut args = json!({"body": "See [the guide](/docs/guide) for details."});
        let decision = outbound(&["example.com"]).check(&head(), &mut args);
        assert!(matches!(decision.verdict, Verdict::Allow), "{decision:?}");
    }

    #[test]
    fn userinfo_tricks_and_dangerous_schemes_are_refused() {
        for url in ["https://example.com@evil.test/", "javascript:alert(1)"] {
            let mut args = json!({ "url": url });
            let decision = outbound(&["example.com"]).check(&head(), &mut args);
            assert!(
                matches!(decision.verdict, Verdict::Deny(_)),
                "{url}: {decision:?}"
            );
        }
    }

    #[test]
    fn card_numbers_are_redacted_unless_the_role_may_send_them() {
        let mut args = json!({"note": "card 4111 1111 1111 1111 on file"});
        let decision = outbound(&[]).check(&head(), &mut args);
        assert!(matches!(decision.verdict, Verdict::Allow));
        assert!(
            !args["note"]
                .as_str()
                .unwrap_or_default()
                .contains("4111 1111"),
            "{args}"
        );
        let policy = OutboundPolicy {
            pii_roles: vec!["billing".into()],
            ..OutboundPolicy::default()
        };
        let filter = Outbound::new(policy, None, Arc::new(SessionMemory::new()));
        let mut head = head();
        head.principal = Principal::from_identity(palisade_core::Identity {
            id: "bob".into(),
            kind: palisade_core::PrincipalKind::User,
            roles: vec!["billing".into()],
            tenant: None,
            credential: palisade_core::Credential::None,
            task: None,
        });
        let mut args = json!({"note": "card 4111 1111 1111 1111 on file"});
        filter.check(&head, &mut args);
        assert_eq!(args["note"], "card 4111 1111 1111 1111 on file");
    }
}
