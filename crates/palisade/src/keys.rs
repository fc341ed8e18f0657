//! `palisade keys`: create, list and revoke the API keys callers present to `palisade serve`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use palisade_authz::authn::{ApiKeys, KeyInfo, KeySpec};
use palisade_core::PrincipalKind;
use palisade_store::Store;

/// `palisade keys …`
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key and print it (it is shown this once, and stored only as a hash).
    Create(CreateArgs),
    /// List every key: id, principal, roles, and whether it is live.
    List,
    /// Revoke a key by its id; the next request with it is refused.
    Revoke {
        /// The key's id (the 12 characters after `pk_`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Who the key authenticates, as policies and audit records name them.
    #[arg(long)]
    pub principal: String,
    /// A role the principal has; repeat for several.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long, value_enum, default_value_t = Kind::User)]
    pub kind: Kind,
    /// How long the key is valid, such as `30d` or `12h`; without it, until revoked.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expires: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    User,
    Service,
}

pub async fn run(
    store: Arc<dyn Store>,
    args: &KeysArgs,
    now: SystemTime,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match &args.command {
        KeysCommand::Create(create_args) => create(store, create_args, now, out).await,
        KeysCommand::List => list(store, now, out).await,
        KeysCommand::Revoke { id } => revoke(store, id, now, out).await,
    }
}

/// Prints the new key alone on stdout, so that `KEY=$(palisade keys create …)` works.
pub async fn create(
    store: Arc<dyn Store>,
    args: &CreateArgs,
    now: SystemTime,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let spec = KeySpec {
        principal: args.principal.clone(),
        kind: match args.kind {
            Kind::User => PrincipalKind::User,
            Kind::Service => PrincipalKind::Service,
        },
        roles: args.roles.clone(),
        tenant: args.tenant.clone(),
        expires_in: args.expires,
    };
    let created = ApiKeys::new(store)
        .create(spec, now)
        .await
        .context("cannot create the key")?;
    writeln!(out, "{}", created.token())?;
    eprintln!(
        "palisade: created key `{}` for `{}`; it is shown this once",
        created.info.id, created.info.principal
    );
    Ok(())
}

pub async fn list(
    store: Arc<dyn Store>,
    now: SystemTime,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let keys = ApiKeys::new(store)
        .list()
        .await
        .context("cannot list the keys")?;
    writeln!(
        out,
        "{:<12}  {:<8}  {:<7}  {:<20}  {:<20}  {:<20}  PRINCIPAL (TENANT) ROLES",
        "ID", "STATUS", "KIND", "CREATED", "EXPIRES", "REVOKED"
    )?;
    for key in &keys {
        writeln!(out, "{}", row(key, now))?;
    }
    Ok(())
}

fn row(key: &KeyInfo, now: SystemTime) -> String {
    let when = |t: Option<SystemTime>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
    };
    let status = if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at.is_some_and(|end| now >= end) {
        "expired"
    } else {
        "live"
    };
    let tenant = key
        .tenant
        .as_deref()
        .map_or_else(String::new, |t| format!(" ({t})"));
    format!(
        "{:<12}  {:<8}  {:<7}  {:<20}  {:<20}  {:<20}  {}{} {}",
        key.id,
        status,
        key.kind.as_str(),
        when(Some(key.created_at)),
        when(key.expires_at),
        when(key.revoked_at),
        key.principal.escape_debug(),
        tenant.escape_debug(),
        key.roles.join(",").escape_debug(),
    )
}

pub async fn revoke(
    store: Arc<dyn Store>,
    id: &str,
    now: SystemTime,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    ApiKeys::new(store)
        .revoke(id, now)
        .await
        .with_context(|| format!("cannot revoke `{}`", id.escape_debug()))?;
    writeln!(out, "revoked `{id}`")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use palisade_store::Backend;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A directory under the system's temp dir, unique to this process and
    /// call, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "palisade-keys-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            // Left over from an earlier process that had this id and was killed.
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The state store `palisade keys` runs on, SQLite, in a database of
    /// the test's own. The directory comes first so that, bound as
    /// `let (_dir, store)`, it outlives the store's connection.
    async fn sqlite() -> (TempDir, Arc<dyn Store>) {
        let dir = TempDir::new();
        let backend = Backend::Sqlite {
            path: dir.0.join("state.db"),
        };
        let store = palisade_store::open(&backend).await.unwrap();
        (dir, store)
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        keys: KeysArgs,
    }

    async fn keys(
        store: &Arc<dyn Store>,
        args: &[&str],
        now: SystemTime,
    ) -> anyhow::Result<String> {
        let cli = Cli::try_parse_from(std::iter::once("keys").chain(args.iter().copied()))?;
        let mut out = Vec::new();
        run(store.clone(), &cli.keys, now, &mut out).await?;
        Ok(String::from_utf8(out)?)
    }

    #[tokio::test]
    async fn create_list_revoke() {
        let (_dir, store) = sqlite().await;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = keys(
            &store,
            &[
                "create",
                "--principal",
                "alice",
                "--role",
                "dev",
                "--role",
                "ops",
                "--tenant",
                "acme",
                "--expires",
                "30d",
            ],
            t0,
        )
        .await
        .unwrap();
        let token = token.trim_end();
        assert!(token.starts_with("pk_") && token.len() == 59, "{token}");
        let id = &token[3..15];
        let who = ApiKeys::new(store.clone()).verify(token, t0).await.unwrap();
        assert_eq!(&*who.id, "alice");
        assert_eq!(who.kind, PrincipalKind::User);

        keys(
            &store,
            &["create", "--principal", "ci", "--kind", "service"],
            t0,
        )
        .await
        .unwrap();
        let listing = keys(&store, &["list"], t0).await.unwrap();
        assert_eq!(listing.lines().count(), 3, "{listing}");
        let line = listing.lines().find(|l| l.starts_with(id)).unwrap();
        assert!(line.contains(" live "), "{line}");
        assert!(line.contains("2023-12-14T22:13:20Z"), "{line}");
        assert!(line.contains("alice (acme) dev,ops"), "{line}");
        assert!(
            !listing.contains(&token[16..]),
            "the secret is never listed"
        );

        let revoked = keys(&store, &["revoke", id], t0).await.unwrap();
        assert_eq!(revoked, format!("revoked `{id}`\n"));
        let listing = keys(&store, &["list"], t0).await.unwrap();
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(id) && l.contains(" revoked "))
        );
        assert!(ApiKeys::new(store.clone()).verify(token, t0).await.is_err());

        let later = t0 + Duration::from_secs(31 * 86_400);
        let expired = keys(
            &store,
            &["create", "--principal", "bob", "--expires", "1h"],
            t0,
        )
        .await
        .unwrap();
        let listing = keys(&store, &["list"], later).await.unwrap();
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(&expired[3..15]) && l.contains(" expired ")),
            "{listing}"
        );
    }

    #[tokio::test]
    async fn refusals() {
        let (_dir, store) = sqlite().await;
        let now = SystemTime::UNIX_EPOCH;
        let err = keys(&store, &["revoke", "aaaaaaaaaaaa"], now)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown key `aaaaaaaaaaaa`"),
            "{err:#}"
        );
        assert!(
            keys(&store, &["create"], now).await.is_err(),
            "--principal is required"
        );
        assert!(
            keys(
                &store,
                &["create", "--principal", "a", "--expires", "soon"],
                now
            )
            .await
            .is_err()
        );
        assert!(
            keys(
                &store,
                &["create", "--principal", "a", "--kind", "admin"],
                now
            )
            .await
            .is_err()
        );
        assert!(
            keys(&store, &["create", "--principal", ""], now)
                .await
                .is_err()
        );
    }
}
