//! `palisade policy check|explain`: the policies and constraints of a config, judged without starting a gateway.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use palisade_authz::policy::{ArgumentCheck, PolicyRequest};
use palisade_core::{
    CallHead, CallId, CallKind, Credential, Identity, Principal, PrincipalKind, SessionId,
    SystemClock, Target,
};
use palisade_server::Config;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate the policies against palisade's schema, and build the constraints.
    Check,
    /// The decision on one call, and the ids of the policies that made it.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Who calls.
    #[arg(long)]
    principal: String,
    /// A role of the principal; repeat for several.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long, value_enum, default_value_t = Kind::User)]
    kind: Kind,
    /// The tool as the agent names it: `SERVER__TOOL` (an upstream's prefix, then its tool).
    #[arg(long, value_name = "SERVER__TOOL")]
    tool: String,
    /// The call's arguments, as a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    args: String,
    /// Judge the call as if untrusted content had entered the session.
    #[arg(long)]
    tainted: bool,
    /// …from this source, `SERVER/TOOL` (repeatable; implies `--tainted`):
    /// what policies see as `context.session.sources`.
    #[arg(long = "taint-source", value_name = "SERVER/TOOL")]
    taint_sources: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    User,
    Service,
}

pub fn run(command: &PolicyCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let authorizer = palisade_server::access::authorizer(config, Arc::new(SystemClock))?;
    let engine = authorizer.engine();
    let mut out = String::new();
    match command {
        PolicyCommand::Check => {
            let ids = engine.policy_ids();
            out.push_str(&format!(
                "{} policies valid against palisade's schema: {}\n",
                ids.len(),
                ids.join(", ")
            ));
            let names = engine.constraint_names();
            if !names.is_empty() {
                out.push_str(&format!("constraints: {}\n", names.join(", ")));
            }
        }
        PolicyCommand::Explain(args) => {
            let arguments: Value = serde_json::from_str(&args.args)
                .with_context(|| format!("`--args` is not JSON: `{}`", args.args))?;
            if !arguments.is_object() {
                bail!("`--args` must be a JSON object, such as '{{\"path\": \"/tmp/a\"}}'");
            }
            let (server, name) = target_of(config, &args.tool)?;
            let upstream = config.upstreams.iter().find(|u| u.name == server);
            let effect = upstream.map_or(palisade_core::EffectClass::Irreversible, |u| {
                u.effect_of(&name)
            });
            let principal = Principal::from_identity(Identity {
                id: args.principal.as_str().into(),
                kind: match args.kind {
                    Kind::User => PrincipalKind::User,
                    Kind::Service => PrincipalKind::Service,
                },
                roles: args.roles.iter().map(|r| r.as_str().into()).collect(),
                tenant: args.tenant.as_deref().map(Into::into),
                credential: Credential::ApiKey {
                    key: "explain".into(),
                },
                task: None,
            });
            let head = CallHead {
                id: CallId(0),
                principal,
                session: SessionId::new("explain"),
                kind: CallKind::Tool,
                target: Target::new(server.as_str(), name.as_str()),
                effect,
                params: None,
                parent: None,
            };
            let tainted = args.tainted || !args.taint_sources.is_empty();
            let (_, checks) = authorizer.decide(&head, &arguments, tainted, &args.taint_sources);
            let constraints: Vec<(String, bool)> = checks
                .iter()
                .map(|c| (c.constraint.clone(), c.passed))
                .collect();
            let exposed = authorizer.exposed_name(CallKind::Tool, &head.target);
            let request = PolicyRequest {
                principal: &head.principal,
                kind: head.kind,
                target: &head.target,
                exposed_name: &exposed,
                effect,
                arguments: &arguments,
                tainted,
                taint_sources: &args.taint_sources,
                constraints: &constraints,
                now: std::time::SystemTime::now(),
            };
            out.push_str(&format!(
                "call: {} ({}, effect {})\n",
                exposed,
                head.target,
                effect.as_str()
            ));
            out.push_str(&engine.explain(&request).to_string());
            for ArgumentCheck {
                constraint,
                passed,
                detail,
            } in &checks
            {
                let verdict = if *passed { "passed" } else { "failed" };
                match detail {
                    Some(detail) => {
                        out.push_str(&format!("constraint {constraint}: {verdict}: {detail}\n"))
                    }
                    None => out.push_str(&format!("constraint {constraint}: {verdict}\n")),
                }
            }
        }
    }
    #[expect(
        clippy::print_stdout,
        reason = "printing the verdict is what the command is for"
    )]
    {
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `files__read_text_file` → (`files`, `read_text_file`), by the configured
/// prefixes first (longest wins), else at the first `__`.
fn target_of(config: &Config, tool: &str) -> anyhow::Result<(String, String)> {
    let by_prefix = config
        .upstreams
        .iter()
        .filter(|u| !u.prefix.is_empty() && tool.starts_with(u.prefix.as_str()))
        .max_by_key(|u| u.prefix.len())
        .map(|u| {
            (
                u.name.clone(),
                tool.get(u.prefix.len()..).unwrap_or_default().to_owned(),
            )
        });
    if let Some(found) = by_prefix {
        return Ok(found);
    }
    match tool.split_once("__") {
        Some((server, name)) if !server.is_empty() && !name.is_empty() => {
            Ok((server.to_owned(), name.to_owned()))
        }
        Some(_) | None => {
            bail!("`--tool` is `SERVER__TOOL`, such as `files__read_text_file`; got `{tool}`")
        }
    }
}
