//! The secrets layer as the server runs it: the vault the config names, the broker, and the process's redactor.

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_core::{RedactionSeam, Stage};
use palisade_secrets::broker::{BrokerSettings, Reference};
use palisade_secrets::vault::file::{FileVault, SharedFileVault, Unlock, passphrase_from_env};
use palisade_secrets::vault::openbao::{Auth, OpenBao, OpenBaoVault};
use palisade_secrets::{Broker, Placement, SecretRedactor, SecretValue, Vault, VaultError};
use palisade_store::Store;

use crate::config::{Config, Setting, Transport, VaultSettings};

/// Where `palisade secrets` keeps each secret's last use.
pub const USES: &str = "secret-uses";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("{0}")]
    Broker(#[from] palisade_secrets::broker::BrokerError),
    #[error(
        "the vault `{0}` exists and needs its passphrase: set PALISADE_VAULT_PASSPHRASE or `[vault] key_file`"
    )]
    NoPassphrase(String),
    #[error("`vault.{field}`: the environment variable `{var}` is not set")]
    MissingEnv { field: &'static str, var: String },
}

/// The seam for everything palisade writes: through `redactor`, unless the
/// operator passed `redact` through.
pub fn seam(config: &Config, redactor: &Arc<SecretRedactor>) -> RedactionSeam {
    if config.pipeline.pass_through.contains(&Stage::Redact) {
        RedactionSeam::pass_through()
    } else {
        RedactionSeam::new(Arc::clone(redactor) as Arc<dyn palisade_core::Redactor>)
    }
}

/// The file vault's unlock: the key file, else the passphrase variable.
/// `None` when neither is given.
pub fn file_unlock(key_file: Option<&std::path::Path>) -> Result<Option<Unlock>, VaultError> {
    match key_file {
        Some(path) => Unlock::from_key_file(path).map(Some),
        None => Ok(passphrase_from_env()),
    }
}

/// The vault the configuration names, for this gateway's environment.
/// A file vault without a passphrase is usable only while it does not
/// exist (nothing to read); writing one needs the passphrase.
pub fn open_vault(config: &Config, unlock: Option<Unlock>) -> Result<Arc<dyn Vault>, SecretsError> {
    match &config.vault {
        VaultSettings::File { key_file } => {
            let path = FileVault::path_in(&config.data_dir, &config.environment);
            let unlock = match (unlock, file_unlock(key_file.as_deref())?) {
                (Some(unlock), _) | (None, Some(unlock)) => unlock,
                (None, None) if path.exists() => {
                    return Err(SecretsError::NoPassphrase(path.display().to_string()));
                }
                // Nothing to open: an empty vault, which cannot be written.
                (None, None) => Unlock::unknown(),
            };
            let vault = FileVault::new(path, &config.environment, unlock);
            vault.check()?;
            Ok(Arc::new(SharedFileVault(Arc::new(vault))))
        }
        VaultSettings::Openbao {
            address,
            mount,
            prefix,
            namespace,
            token_env,
            role_id,
            secret_id_env,
            approle_mount,
            request_timeout,
        } => {
            let read = |field: &'static str, var: &str| {
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(SecretValue::new)
                    .ok_or_else(|| SecretsError::MissingEnv {
                        field,
                        var: var.to_owned(),
                    })
            };
            let auth = match (token_env, role_id, secret_id_env) {
                (Some(var), _, _) => Auth::Token(read("token_env", var)?),
                (None, Some(role), Some(var)) => Auth::AppRole {
                    role_id: role.clone(),
                    secret_id: read("secret_id_env", var)?,
                    mount: approle_mount.clone(),
                },
                (None, None | Some(_), None | Some(_)) => {
                    return Err(SecretsError::Vault(VaultError::Refused(
                        "the OpenBao vault has no credentials".into(),
                    )));
                }
            };
            let url = reqwest::Url::parse(address)
                .map_err(|e| VaultError::Refused(format!("`vault.address`: {e}")))?;
            let mut settings = OpenBao::new(url, config.environment.clone(), auth);
            settings.mount = mount.clone();
            settings.prefix = prefix.clone();
            settings.namespace = namespace.clone();
            settings.timeout = *request_timeout;
            Ok(Arc::new(OpenBaoVault::new(settings)?))
        }
    }
}

/// The environment variables palisade's own credentials are in: never
/// passed to a spawned upstream.
pub fn withheld_env(config: &Config) -> Vec<String> {
    match &config.vault {
        VaultSettings::File { .. } => Vec::new(),
        VaultSettings::Openbao {
            token_env,
            secret_id_env,
            ..
        } => token_env.iter().chain(secret_id_env).cloned().collect(),
    }
}

/// Each upstream's references to secrets, by upstream name.
fn references(config: &Config) -> BTreeMap<String, Vec<Reference>> {
    let mut out = BTreeMap::new();
    for upstream in &config.upstreams {
        let refs: Vec<Reference> = match &upstream.transport {
            Transport::Stdio { env, .. } => env
                .iter()
                .filter_map(|(var, setting)| match setting {
                    Setting::Secret { secret, .. } => Some(Reference {
                        secret: secret.clone(),
                        placement: Placement::Env { name: var.clone() },
                    }),
                    Setting::Literal(_) => None,
                })
                .collect(),
            Transport::Http { headers, .. } => headers
                .iter()
                .filter_map(|(name, setting)| match setting {
                    Setting::Secret { secret, format } => Some(Reference {
                        secret: secret.clone(),
                        placement: Placement::Header {
                            name: name.clone(),
                            format: format.clone().unwrap_or_else(|| "{}".into()),
                        },
                    }),
                    Setting::Literal(_) => None,
                })
                .collect(),
            Transport::Builtin { .. } => Vec::new(),
        };
        if !refs.is_empty() {
            out.insert(upstream.name.clone(), refs);
        }
    }
    out
}

/// The broker for `config`, teaching `redactor` every value in the vault.
/// Each secret's last use is kept in `store` (at most once a minute).
pub async fn broker(
    config: &Config,
    redactor: Arc<SecretRedactor>,
    store: Arc<dyn Store>,
    egress: Arc<palisade_egress::Egress>,
) -> Result<Arc<Broker>, SecretsError> {
    // `Broker::start` reads every value: a vault that cannot be opened,
    // reached or authenticated to stops the start here.
    let vault = open_vault(config, None)?;
    let mut http_request = BTreeMap::new();
    let mut max_response_bytes = crate::config::DEFAULT_MAX_RESPONSE_BYTES;
    for upstream in &config.upstreams {
        if let Transport::Builtin {
            builtin: crate::config::Builtin::HttpRequest,
            allow,
            max_response_bytes: max,
        } = &upstream.transport
        {
            http_request.insert(upstream.name.clone(), allow.clone());
            max_response_bytes = *max;
        }
    }
    let on_use: palisade_secrets::broker::UseReporter = Arc::new(move |name, at| {
        let store = Arc::clone(&store);
        let name = name.as_str().to_owned();
        #[expect(
            clippy::disallowed_methods,
            reason = "a best-effort note of a secret's last use; nothing waits for it"
        )]
        tokio::spawn(async move {
            let doc = serde_json::json!({ "last_use": at });
            let result = match store.get(USES, &name).await {
                Ok(Some(old)) => store
                    .replace(USES, &name, old.version, &doc)
                    .await
                    .map(|_| ()),
                Ok(None) => store.insert(USES, &name, &doc).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::debug!("cannot note the last use of secret `{name}`: {e}");
            }
        });
    });
    let settings = BrokerSettings {
        vault,
        bindings: config
            .secrets
            .iter()
            .filter(|b| b.environment == config.environment)
            .cloned()
            .collect(),
        references: references(config),
        http_request,
        redactor,
        on_use: Some(on_use),
        max_response_bytes,
        egress,
    };
    Ok(Broker::start(settings).await?)
}

/// Literal `env` and `headers` values that look like credentials: each
/// field, for `palisade check` to warn about (a credential belongs in the
/// vault, referenced by name). The value is never part of the message.
pub fn literal_credentials(config: &Config) -> Vec<String> {
    const NAMES: [&str; 8] = [
        "authorization",
        "token",
        "secret",
        "password",
        "passwd",
        "api-key",
        "apikey",
        "credential",
    ];
    let detector = palisade_secrets::detect::Detector::new();
    let mut out = Vec::new();
    for upstream in &config.upstreams {
        let (kind, settings) = match &upstream.transport {
            Transport::Stdio { env, .. } => ("env", env),
            Transport::Http { headers, .. } => ("headers", headers),
            Transport::Builtin { .. } => continue,
        };
        for (key, setting) in settings {
            let Setting::Literal(value) = setting else {
                continue;
            };
            let name = key.to_ascii_lowercase().replace('_', "-");
            let named = NAMES.iter().any(|n| name.contains(n));
            let detected = detector.find(value).first().map(|d| d.kind);
            let why = match (detected, named) {
                (Some(kind), _) => format!("looks like a {kind} credential"),
                (None, true) if value.len() >= 8 => "is named like a credential".to_owned(),
                (None, true | false) => continue,
            };
            out.push(format!(
                "`upstreams.{}.{kind}.{key}` {why}: keep it in the vault (`palisade secrets set NAME`) and write {{ secret = \"NAME\" }} here",
                upstream.name
            ));
        }
    }
    out
}
