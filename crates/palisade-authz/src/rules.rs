//! Rules by effect class: the simplest policy, and a real one (reads pass, irreversible acts wait for a human).

use palisade_core::stage::StageFuture;
use palisade_core::{Call, CallContext, EffectClass, Reason, ReasonCode};

use crate::{Authorization, Authorize, Permit};

/// What to do with calls of one effect class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Allow,
    RequireApproval,
    Deny,
}

/// One rule per effect class. Until Cedar policies land, the way to hold
/// writes, egress or irreversible acts for a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectRules {
    pub read: Rule,
    pub write: Rule,
    pub egress: Rule,
    pub irreversible: Rule,
}

impl EffectRules {
    pub fn rule(&self, effect: EffectClass) -> Rule {
        match effect {
            EffectClass::Read => self.read,
            EffectClass::Write => self.write,
            EffectClass::Egress => self.egress,
            EffectClass::Irreversible => self.irreversible,
        }
    }
}

impl Authorize for EffectRules {
    fn authorize<'a>(
        &'a self,
        call: &'a Call,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, Authorization> {
        Box::pin(async move {
            let effect = call.head().effect;
            let why = format!(
                "calls with effect `{}` are {}",
                effect.as_str(),
                match self.rule(effect) {
                    Rule::Allow => "allowed",
                    Rule::RequireApproval => "held for approval",
                    Rule::Deny => "denied",
                }
            );
            Ok(match self.rule(effect) {
                Rule::Allow => Authorization::allow(call),
                Rule::RequireApproval => Authorization::NeedsApproval {
                    pending: Box::new(
                        Permit::issue(call)
                            .escalate(Reason::new(ReasonCode::ApprovalRequired, why)),
                    ),
                    obligations: Vec::new(),
                    findings: Vec::new(),
                },
                Rule::Deny => Authorization::deny(Reason::new(ReasonCode::NotAuthorized, why)),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{call, ctx};
    use serde_json::json;

    #[tokio::test]
    async fn each_class_gets_its_rule() {
        let rules = EffectRules {
            read: Rule::Allow,
            write: Rule::RequireApproval,
            egress: Rule::Deny,
            irreversible: Rule::Deny,
        };
        let check = async |effect, expected: &str| {
            let got = match rules
                .authorize(&call(1, effect, json!({})), &ctx())
                .await
                .unwrap()
            {
                Authorization::Allow { .. } => "allow",
                Authorization::NeedsApproval { .. } => "approval",
                Authorization::Deny { .. } => "deny",
            };
            assert_eq!(got, expected, "{effect:?}");
        };
        check(EffectClass::Read, "allow").await;
        check(EffectClass::Write, "approval").await;
        check(EffectClass::Egress, "deny").await;
        check(EffectClass::Irreversible, "deny").await;
    }
}
