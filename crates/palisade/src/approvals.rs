//! `palisade approvals`: a human's side of the approval gate, against a running `palisade serve`.
//!
//! The gateway's admin API does the work (and the audit); this is a thin
//! client. The credential comes from `PALISADE_TOKEN`, never from the
//! command line, where other users of the machine could read it in `ps`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// The gateway's base URL; by default the config's `server.listen`.
    #[arg(long, value_name = "URL", global = true)]
    pub url: Option<String>,
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Requests waiting for a decision (`--all` for every request).
    List {
        #[arg(long)]
        all: bool,
    },
    /// One request: who asked, for which tool, with which exact arguments.
    Show { id: String },
    /// Lets the held call run, once, with exactly the arguments shown.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Refuses the held call.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

pub async fn run(args: ApprovalsArgs, default_url: String) -> anyhow::Result<ExitCode> {
    let base = args.url.unwrap_or(default_url);
    let base = base.trim_end_matches('/');
    let token = std::env::var("PALISADE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .context("set PALISADE_TOKEN to an API key of a principal with the approver role")?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    let (method, path, body) = match &args.command {
        ApprovalsCommand::List { all } => {
            let state = if *all { "all" } else { "pending" };
            (
                reqwest::Method::GET,
                format!("/admin/approvals?state={state}"),
                None,
            )
        }
        ApprovalsCommand::Show { id } => (
            reqwest::Method::GET,
            format!("/admin/approvals/{}", path_segment(id)?),
            None,
        ),
        ApprovalsCommand::Approve { id, reason } => (
            reqwest::Method::POST,
            format!("/admin/approvals/{}/approve", path_segment(id)?),
            Some(json!({ "reason": reason })),
        ),
        ApprovalsCommand::Deny { id, reason } => (
            reqwest::Method::POST,
            format!("/admin/approvals/{}/deny", path_segment(id)?),
            Some(json!({ "reason": reason })),
        ),
    };
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token.trim());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {base}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .context("cannot read the gateway's answer")?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        bail!("the gateway refused ({status}): {message}");
    }
    let printed = match &args.command {
        ApprovalsCommand::List { .. } => list_text(&value),
        ApprovalsCommand::Show { .. }
        | ApprovalsCommand::Approve { .. }
        | ApprovalsCommand::Deny { .. } => serde_json::to_string_pretty(&value).unwrap_or_default(),
    };
    #[expect(
        clippy::print_stdout,
        reason = "printing the gateway's answer is what the command is for"
    )]
    {
        println!("{printed}");
    }
    Ok(ExitCode::SUCCESS)
}

/// An id as one URL path segment: approval ids are plain words, so anything
/// else is refused here instead of being sent somewhere unexpected.
fn path_segment(id: &str) -> anyhow::Result<&str> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(id)
    } else {
        bail!("`{id}` is not an approval id (they look like `apr_…`)")
    }
}

/// One line per request: id, state, who asked, for what.
fn list_text(value: &Value) -> String {
    let Some(items) = value.get("approvals").and_then(Value::as_array) else {
        return value.to_string();
    };
    if items.is_empty() {
        return "no approval requests".to_owned();
    }
    items
        .iter()
        .map(|item| {
            let field = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("-");
            let arguments = field("arguments");
            let arguments = match arguments.char_indices().nth(120) {
                Some((cut, _)) => format!("{}…", arguments.get(..cut).unwrap_or_default()),
                None => arguments.to_owned(),
            };
            format!(
                "{}  {:<9} {:<16} {}/{}  {}\n    arguments: {}",
                field("id"),
                field("state"),
                field("principal"),
                field("server"),
                field("tool"),
                field("reason"),
                arguments
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
