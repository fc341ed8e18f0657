//! `palisade secrets`: set, list, show, rotate and revoke the secrets of the config's environment.
//!
//! A value comes from a file, an environment variable, standard input or
//! a prompt that does not echo, never from a command-line argument (which
//! other users can read in the process list). No subcommand prints a value.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use palisade_secrets::vault::file::{FileVault, Unlock};
use palisade_secrets::{Binding, Meta, SecretName, SecretValue, Vault};
use palisade_server::config::VaultSettings;
use palisade_server::{Config, secrets as server_secrets};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store a secret's first value, or a new one (from a file, a variable, stdin or a prompt).
    Set(ValueArgs),
    /// List the secrets of this environment: version, age, binding, rotation.
    List,
    /// Show one secret's metadata: binding, environment, version, age, last use.
    Show { name: String },
    /// Store a new value for an existing secret; the next call uses it.
    Rotate(ValueArgs),
    /// Revoke a secret: the next call that needs it is refused.
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub struct ValueArgs {
    pub name: String,
    /// Read the value from this file (one trailing newline is dropped).
    #[arg(long, value_name = "FILE", conflicts_with = "from_env")]
    pub from_file: Option<PathBuf>,
    /// Read the value from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub from_env: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ago(then: u64) -> String {
    let secs = now().saturating_sub(then);
    let rounded = if secs >= 86_400 {
        secs - secs % 3_600
    } else if secs >= 3_600 {
        secs - secs % 60
    } else {
        secs
    };
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(rounded))
    )
}

/// The value of `args`, from wherever it was asked to come from.
fn read_value(args: &ValueArgs) -> anyhow::Result<SecretValue> {
    let value = if let Some(path) = &args.from_file {
        let mut text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    } else if let Some(var) = &args.from_env {
        std::env::var(var)
            .with_context(|| format!("the environment variable `{var}` is not set"))?
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("value of `{}`: ", args.name))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two values differ; nothing was stored");
        }
        first
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the value from standard input")?;
        if text.ends_with('\n') {
            text.pop();
        }
        text
    };
    let value = SecretValue::new(value);
    if value.is_empty() {
        bail!(
            "secret `{}`: the value is empty; nothing was stored",
            args.name
        );
    }
    if value.len() < palisade_secrets::redact::exact::MIN_LEN {
        bail!(
            "secret `{}`: a value shorter than {} bytes cannot be told apart from ordinary text, so the redactor could not hide it; nothing was stored",
            args.name,
            palisade_secrets::redact::exact::MIN_LEN
        );
    }
    Ok(value)
}

/// The vault, with a passphrase from the key file, the variable, or a prompt.
fn vault(config: &Config, creating: bool) -> anyhow::Result<Arc<dyn Vault>> {
    let unlock = match &config.vault {
        VaultSettings::File { key_file } => {
            match server_secrets::file_unlock(key_file.as_deref())? {
                Some(unlock) => Some(unlock),
                None if std::io::stdin().is_terminal() => {
                    let path = FileVault::path_in(&config.data_dir, &config.environment);
                    let passphrase = rpassword::prompt_password(format!(
                        "passphrase of the vault `{}`: ",
                        path.display()
                    ))?;
                    if creating && !path.exists() {
                        let again = rpassword::prompt_password("again (a new vault): ")?;
                        if passphrase != again {
                            bail!("the two passphrases differ; nothing was stored");
                        }
                    }
                    if passphrase.is_empty() {
                        bail!("the passphrase is empty");
                    }
                    Some(Unlock::Passphrase(passphrase.into()))
                }
                None if creating => bail!(
                    "the vault needs a passphrase: set PALISADE_VAULT_PASSPHRASE, `[vault] key_file`, or run this at a terminal"
                ),
                None => None,
            }
        }
        VaultSettings::Openbao { .. } => None,
    };
    Ok(server_secrets::open_vault(config, unlock)?)
}

fn parse_name(name: &str) -> anyhow::Result<SecretName> {
    SecretName::parse(name).map_err(anyhow::Error::msg)
}

fn binding<'c>(config: &'c Config, name: &SecretName) -> Option<&'c Binding> {
    config
        .secrets
        .iter()
        .find(|b| b.name == *name && b.environment == config.environment)
}

fn describe_binding(binding: Option<&Binding>) -> String {
    match binding {
        None => "not bound (no [secrets.NAME] in the config): nothing may use it".into(),
        Some(b) => {
            let to = b
                .destination
                .as_ref()
                .map_or_else(String::new, |d| format!(" toward {}", d.describe()));
            format!(
                "{} of {}{to}",
                b.placement.describe(),
                b.upstreams.join(", ")
            )
        }
    }
}

pub async fn run(config: &Config, command: SecretsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretsCommand::Set(args) => store_value(config, &args, false).await,
        SecretsCommand::Rotate(args) => store_value(config, &args, true).await,
        SecretsCommand::List => {
            let vault = vault(config, false)?;
            let metas = vault.list().await?;
            let mut out = String::new();
            if metas.is_empty() {
                out.push_str(&format!(
                    "no secrets in {} (environment `{}`)\n",
                    vault.describe(),
                    config.environment
                ));
            }
            for meta in &metas {
                out.push_str(&line(config, meta));
            }
            print(&out);
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Show { name } => {
            let name = parse_name(&name)?;
            let vault = vault(config, false)?;
            let metas = vault.list().await?;
            let Some(meta) = metas.iter().find(|m| m.name == name) else {
                bail!(
                    "no secret named `{name}` in environment `{}` ({})",
                    config.environment,
                    vault.describe()
                );
            };
            let bound = binding(config, &name);
            let store = palisade_server::access::open_store(config).await?;
            let last_use = store
                .get(server_secrets::USES, name.as_str())
                .await?
                .and_then(|doc| doc.body.get("last_use").and_then(serde_json::Value::as_u64))
                .map_or_else(|| "never (as far as the store knows)".into(), ago);
            let rotation = match bound.and_then(|b| b.rotate_every) {
                None => "no schedule".into(),
                Some(every) => {
                    let every_text = humantime::format_duration(every).to_string();
                    match bound.and_then(|b| b.overdue(meta.updated, now())) {
                        Some(late) => format!(
                            "every {every_text}: OVERDUE by {}",
                            humantime::format_duration(Duration::from_secs(late.as_secs()))
                        ),
                        None => format!("every {every_text}"),
                    }
                }
            };
            print(&format!(
                "name:        {name}\nenvironment: {}\nvault:       {}\nversion:     {}\ncreated:     {}\nupdated:     {}\nstate:       {}\nbinding:     {}\nrotation:    {rotation}\nlast use:    {last_use}\n",
                meta.environment,
                vault.describe(),
                meta.version,
                ago(meta.created),
                ago(meta.updated),
                if meta.revoked { "revoked" } else { "active" },
                describe_binding(bound),
            ));
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Revoke { name } => {
            let name = parse_name(&name)?;
            let vault = vault(config, true)?;
            let meta = vault.revoke(&name).await?;
            eprintln!(
                "palisade: revoked secret `{name}` (version {}); the next call that needs it is refused",
                meta.version
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn store_value(
    config: &Config,
    args: &ValueArgs,
    rotating: bool,
) -> anyhow::Result<ExitCode> {
    let name = parse_name(&args.name)?;
    let vault = vault(config, true)?;
    let exists = vault.list().await?.iter().any(|m| m.name == name);
    if rotating && !exists {
        bail!(
            "no secret named `{name}` in environment `{}` to rotate; `palisade secrets set {name}` stores its first value",
            config.environment
        );
    }
    let value = read_value(args)?;
    let meta = vault.write(&name, value).await?;
    eprintln!(
        "palisade: stored secret `{name}` version {} in {}",
        meta.version,
        vault.describe()
    );
    if binding(config, &name).is_none() {
        eprintln!(
            "palisade: note: `{name}` has no `[secrets.{name}]` binding in the config for environment `{}`, so nothing may use it yet",
            config.environment
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn line(config: &Config, meta: &Meta) -> String {
    let bound = binding(config, &meta.name);
    let overdue = bound
        .and_then(|b| b.overdue(meta.updated, now()))
        .map_or_else(String::new, |_| "  ROTATION OVERDUE".into());
    format!(
        "{:<24} v{:<4} updated {:<22} {:<8} {}{overdue}\n",
        meta.name.as_str(),
        meta.version,
        ago(meta.updated),
        if meta.revoked { "revoked" } else { "active" },
        describe_binding(bound),
    )
}

fn print(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
