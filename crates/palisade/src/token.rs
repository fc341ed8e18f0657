//! `palisade token`: mint, narrow, read and revoke task tokens.
//!
//! A token is printed once, on stdout, and read from stdin where it can be:
//! a token given as an argument is visible to every user's `ps`.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use palisade_authz::tokens::{
    self, Attenuation, Revocations, TaskGrant, TokenAuthority, TokenSettings,
};
use palisade_core::{EffectClass, PrincipalKind, Target};
use palisade_store::Store;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token for one task; it is printed on stdout, its id and expiry on stderr.
    Issue(IssueArgs),
    /// Narrow a token for a sub-agent, offline (no root key needed).
    Attenuate(AttenuateArgs),
    /// Show a token's blocks (verified when this data directory holds its root key).
    Inspect(TokenInput),
    /// Revoke a token, and every token narrowed from it, by its id.
    Revoke(RevokeArgs),
    /// Make a new root key current; tokens signed by the old one stay valid until they expire.
    Rotate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    User,
    Service,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Who the token speaks for.
    #[arg(long)]
    pub principal: String,
    #[arg(long, value_enum, default_value = "user")]
    pub kind: Kind,
    /// A role of the principal (repeat, or separate with commas).
    #[arg(long = "role", value_delimiter = ',')]
    pub roles: Vec<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// Tools it may call, as SERVER__TOOL, separated by commas.
    #[arg(long, value_delimiter = ',', value_name = "SERVER__TOOL,...")]
    pub tools: Vec<String>,
    /// Effect classes it may use on any tool (read, write, egress, irreversible).
    #[arg(long, value_delimiter = ',', value_name = "CLASS,...")]
    pub effects: Vec<String>,
    /// The gateway environment it works in (the gateway's `tokens.environment`); any if not given.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// How long it lives: `15m`, `2h`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

#[derive(Debug, Args)]
pub struct TokenInput {
    /// The token, or `-` (the default) to read it from stdin. Prefer stdin:
    /// an argument is visible to other users in `ps`.
    #[arg(default_value = "-", value_name = "TOKEN")]
    pub token: String,
}

#[derive(Debug, Args)]
pub struct AttenuateArgs {
    #[command(flatten)]
    pub input: TokenInput,
    /// Keep only these tools (SERVER__TOOL, separated by commas).
    #[arg(long, value_delimiter = ',', value_name = "SERVER__TOOL,...")]
    pub tools: Vec<String>,
    /// Keep only these effect classes.
    #[arg(long, value_delimiter = ',', value_name = "CLASS,...")]
    pub effects: Vec<String>,
    /// End its life sooner: `5m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's id (`token issue` prints it; `token inspect` shows it).
    pub id: String,
    /// Why, for the record.
    #[arg(long, default_value = "")]
    pub reason: String,
}

fn tools(names: &[String]) -> anyhow::Result<Vec<Target>> {
    Ok(names
        .iter()
        .map(|n| tokens::parse_tool(n))
        .collect::<Result<_, _>>()?)
}

fn effects(names: &[String]) -> anyhow::Result<Vec<EffectClass>> {
    Ok(names
        .iter()
        .map(|n| tokens::parse_effect(n))
        .collect::<Result<_, _>>()?)
}

/// The token from the argument or stdin; warns when it came on the command line.
fn read_token(input: &TokenInput) -> anyhow::Result<String> {
    if input.token != "-" {
        eprintln!(
            "palisade: warning: a token given as an argument is visible to other users (`ps`); pipe it on stdin instead"
        );
        return Ok(input.token.trim().to_owned());
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("palisade: paste the token, then press Enter and Ctrl-D");
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .context("cannot read the token from stdin")?;
    Ok(text.trim().to_owned())
}

fn print_token(text: &str) {
    #[expect(
        clippy::print_stdout,
        reason = "printing the token, once, is what the command is for"
    )]
    {
        println!("{text}");
    }
}

fn expiry(at: Option<SystemTime>) -> String {
    at.map_or_else(
        || "(unchanged)".to_owned(),
        |t| humantime::format_rfc3339_seconds(t).to_string(),
    )
}

pub fn issue(args: &IssueArgs, data_dir: &Path, settings: TokenSettings) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let authority = TokenAuthority::open(data_dir, settings, now)?;
    let grant = TaskGrant {
        principal: args.principal.clone(),
        kind: match args.kind {
            Kind::User => PrincipalKind::User,
            Kind::Service => PrincipalKind::Service,
        },
        roles: args.roles.clone(),
        tenant: args.tenant.clone(),
        tools: tools(&args.tools)?,
        effects: effects(&args.effects)?,
        environment: args.environment.clone(),
        ttl: args.ttl,
    };
    let minted = authority.issue(&grant, now)?;
    print_token(&minted.text);
    eprintln!(
        "palisade: task token {} expires at {}",
        minted.id,
        expiry(minted.expires_at)
    );
    Ok(())
}

pub fn attenuate(args: &AttenuateArgs) -> anyhow::Result<()> {
    let narrow = Attenuation {
        tools: tools(&args.tools)?,
        effects: effects(&args.effects)?,
        ttl: args.ttl,
    };
    let text = read_token(&args.input)?;
    let minted = tokens::attenuate(&text, &narrow, SystemTime::now())?;
    print_token(&minted.text);
    eprintln!(
        "palisade: narrowed task token {}, expires at {}",
        minted.id,
        expiry(minted.expires_at)
    );
    Ok(())
}

/// Verifies the signature when this data directory already has root keys;
/// never creates them.
pub fn inspect(input: &TokenInput, data_dir: &Path, settings: TokenSettings) -> anyhow::Result<()> {
    let text = read_token(input)?;
    let inspection = if data_dir.join("keys").is_dir() {
        TokenAuthority::open(data_dir, settings, SystemTime::now())?.inspect(&text)?
    } else {
        tokens::inspect(&text)?
    };
    #[expect(
        clippy::print_stdout,
        reason = "showing the token's blocks is what `inspect` is for"
    )]
    {
        print!("{inspection}");
    }
    Ok(())
}

pub async fn revoke(args: &RevokeArgs, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let revocations = Revocations::new(store);
    if revocations
        .revoke(&args.id, SystemTime::now(), &args.reason)
        .await?
    {
        eprintln!("palisade: revoked task token {}", args.id);
    } else {
        eprintln!("palisade: task token {} was revoked already", args.id);
    }
    Ok(())
}

pub fn rotate(data_dir: &Path, settings: TokenSettings) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let mut authority = TokenAuthority::open(data_dir, settings, now)?;
    let id = authority.rotate(now)?;
    eprintln!(
        "palisade: root key {id} now signs task tokens; a running gateway reads it when it restarts"
    );
    Ok(())
}

/// Runs one `palisade token` subcommand. `store` is the durable store, which
/// only `revoke` needs.
pub fn run(
    command: &TokenCommand,
    data_dir: &Path,
    store: Option<Arc<dyn Store>>,
) -> anyhow::Result<ExitCode> {
    let settings = TokenSettings::default();
    match command {
        TokenCommand::Issue(args) => issue(args, data_dir, settings)?,
        TokenCommand::Attenuate(args) => attenuate(args)?,
        TokenCommand::Inspect(input) => inspect(input, data_dir, settings)?,
        TokenCommand::Rotate => rotate(data_dir, settings)?,
        TokenCommand::Revoke(args) => {
            let store = store.context(
                "`token revoke` needs the state store, which this build does not open yet",
            )?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(revoke(args, store))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
