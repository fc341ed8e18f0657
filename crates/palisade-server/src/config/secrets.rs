//! The `[vault]` and `[secrets.NAME]` sections, and each upstream's references to secrets, validated.
//!
//! A reference is checked against its binding here, so that a gateway
//! whose configuration could only fail at the first call does not start:
//! the secret is bound, for this environment, to this upstream, in this
//! header or variable, and an HTTP upstream's URL is its destination.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use palisade_secrets::{Binding, Destination, Placement, SecretName};

use super::raw::{RawSecret, RawSetting, RawVault};
use super::validate::Validator;
use super::{ConfigError, Setting, Transport, Upstream, VaultSettings};

const DEFAULT_OPENBAO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response body `http_request` returns by default.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

impl Validator<'_> {
    pub(super) fn vault(&self, raw: Option<RawVault>) -> Result<VaultSettings, ConfigError> {
        let raw = raw.unwrap_or_default();
        let key_file = raw.key_file.map(|p| self.relative(p));
        match raw.backend.as_deref().unwrap_or("file") {
            "file" => {
                for (field, set) in [
                    ("address", raw.address.is_some()),
                    ("mount", raw.mount.is_some()),
                    ("prefix", raw.prefix.is_some()),
                    ("namespace", raw.namespace.is_some()),
                    ("token_env", raw.token_env.is_some()),
                    ("role_id", raw.role_id.is_some()),
                    ("secret_id_env", raw.secret_id_env.is_some()),
                    ("approle_mount", raw.approle_mount.is_some()),
                    ("request_timeout", raw.request_timeout.is_some()),
                ] {
                    if set {
                        return Err(self.err(
                            format!("vault.{field}"),
                            "only `backend = \"openbao\"` takes this",
                        ));
                    }
                }
                Ok(VaultSettings::File { key_file })
            }
            "openbao" | "vault" => {
                if key_file.is_some() {
                    return Err(self.err("vault.key_file", "only the file backend takes this"));
                }
                let address = raw.address.ok_or_else(|| {
                    self.err(
                        "vault.address",
                        "the OpenBao backend needs its address, such as \"https://bao.internal:8200\"",
                    )
                })?;
                match reqwest::Url::parse(&address) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                    Ok(_) | Err(_) => {
                        return Err(self.err(
                            "vault.address",
                            format!("expected an http or https URL, got `{address}`"),
                        ));
                    }
                }
                match (&raw.token_env, &raw.role_id, &raw.secret_id_env) {
                    (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                    (None, None, None) => {
                        return Err(self.err(
                            "vault",
                            "set `token_env` (the variable holding a token) or `role_id` and `secret_id_env` (AppRole)",
                        ));
                    }
                    (Some(_), Some(_) | None, Some(_) | None)
                    | (None, Some(_) | None, Some(_) | None) => {
                        return Err(self.err(
                            "vault",
                            "use either `token_env`, or `role_id` with `secret_id_env`, not a mix",
                        ));
                    }
                }
                Ok(VaultSettings::Openbao {
                    address,
                    mount: raw.mount.unwrap_or_else(|| "secret".into()),
                    prefix: raw.prefix.unwrap_or_else(|| "palisade".into()),
                    namespace: raw.namespace,
                    token_env: raw.token_env,
                    role_id: raw.role_id,
                    secret_id_env: raw.secret_id_env,
                    approle_mount: raw.approle_mount.unwrap_or_else(|| "approle".into()),
                    request_timeout: self.duration(
                        "vault.request_timeout",
                        raw.request_timeout.as_deref(),
                        DEFAULT_OPENBAO_TIMEOUT,
                    )?,
                })
            }
            other => Err(self.err(
                "vault.backend",
                format!("expected \"file\" or \"openbao\", got `{other}`"),
            )),
        }
    }

    pub(super) fn relative(&self, path: PathBuf) -> PathBuf {
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            Some(_) | None => path,
        }
    }

    pub(super) fn secrets(
        &self,
        raw: IndexMap<String, RawSecret>,
        environment: &str,
    ) -> Result<Vec<Binding>, ConfigError> {
        let mut out = Vec::with_capacity(raw.len());
        for (name, secret) in raw {
            out.push(self.secret(&name, secret, environment)?);
        }
        Ok(out)
    }

    fn secret(
        &self,
        name: &str,
        raw: RawSecret,
        environment: &str,
    ) -> Result<Binding, ConfigError> {
        let at = |field: &str| format!("secrets.{name}.{field}");
        let secret = SecretName::parse(name).map_err(|e| self.err(format!("secrets.{name}"), e))?;
        let format_set = raw.format.is_some();
        let placement = match (raw.header, raw.query, raw.env) {
            (Some(header), None, None) => {
                if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(self.err(at("header"), format!("invalid header name `{header}`")));
                }
                Placement::Header {
                    name: header,
                    format: raw.format.unwrap_or_else(|| "{}".into()),
                }
            }
            (None, Some(query), None) => Placement::Query { name: query },
            (None, None, Some(env)) => Placement::Env { name: env },
            (None, None, None) => {
                return Err(self.err(
                    format!("secrets.{name}"),
                    "say where the secret goes: `header = \"Authorization\"`, `query = \"key\"` or `env = \"VAR\"`",
                ));
            }
            (Some(_) | None, Some(_) | None, Some(_) | None) => {
                return Err(self.err(
                    format!("secrets.{name}"),
                    "set one of `header`, `query` and `env`",
                ));
            }
        };
        if format_set && !matches!(placement, Placement::Header { .. }) {
            return Err(self.err(at("format"), "only a `header` secret takes a format"));
        }
        let methods = raw.methods.unwrap_or_default();
        let destination = match raw.destination {
            Some(text) => Some(
                Destination::parse(&text, &methods).map_err(|e| self.err(at("destination"), e))?,
            ),
            None if !methods.is_empty() => {
                return Err(self.err(at("methods"), "methods need a `destination`"));
            }
            None => None,
        };
        let rotate_every = raw
            .rotate_every
            .as_deref()
            .map(|d| self.duration(&at("rotate_every"), Some(d), Duration::ZERO))
            .transpose()?;
        let binding = Binding {
            name: secret,
            environment: raw.environment.unwrap_or_else(|| environment.to_owned()),
            upstreams: raw.upstreams.unwrap_or_default(),
            destination,
            placement,
            rotate_every,
        };
        binding
            .validate()
            .map_err(|e| self.err(format!("secrets.{name}"), e))?;
        Ok(binding)
    }

    pub(super) fn setting(&self, field: &str, raw: RawSetting) -> Result<Setting, ConfigError> {
        match raw {
            RawSetting::Literal(value) => Ok(Setting::Literal(value)),
            RawSetting::Secret { secret, format } => {
                let secret = SecretName::parse(&secret)
                    .map_err(|e| self.err(format!("{field}.secret"), e))?;
                if let Some(format) = &format
                    && format.matches("{}").count() != 1
                {
                    return Err(self.err(
                        format!("{field}.format"),
                        "must contain `{}` exactly once, where the value goes",
                    ));
                }
                Ok(Setting::Secret { secret, format })
            }
        }
    }

    pub(super) fn settings(
        &self,
        field: &str,
        raw: Option<BTreeMap<String, RawSetting>>,
    ) -> Result<BTreeMap<String, Setting>, ConfigError> {
        raw.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| Ok((k.clone(), self.setting(&format!("{field}.{k}"), v)?)))
            .collect()
    }

    /// Every secret an upstream names is bound to it, for this
    /// environment, in that place, toward that URL.
    pub(super) fn references_are_bound(
        &self,
        upstreams: &[Upstream],
        bindings: &[Binding],
        environment: &str,
    ) -> Result<(), ConfigError> {
        for upstream in upstreams {
            let (kind, settings, url) = match &upstream.transport {
                Transport::Stdio { env, .. } => ("env", env, None),
                Transport::Http { url, headers } => ("headers", headers, Some(url)),
                Transport::Builtin { .. } => continue,
            };
            for (key, setting) in settings {
                let Setting::Secret { secret, .. } = setting else {
                    continue;
                };
                let field = format!("upstreams.{}.{kind}.{key}", upstream.name);
                let Some(binding) = bindings.iter().find(|b| b.name == *secret) else {
                    return Err(self.err(
                        field,
                        format!("no `[secrets.{secret}]` binds the secret `{secret}`"),
                    ));
                };
                let problem = if binding.environment != environment {
                    Some(format!(
                        "secret `{secret}` belongs to environment `{}`; this gateway serves `{environment}`",
                        binding.environment
                    ))
                } else if !binding.upstreams.contains(&upstream.name) {
                    Some(format!(
                        "secret `{secret}` is not bound to `{}`: add it to `secrets.{secret}.upstreams`",
                        upstream.name
                    ))
                } else {
                    match (&binding.placement, url) {
                        (Placement::Env { name }, None) if name == key => None,
                        (Placement::Header { name, .. }, Some(url))
                            if name.eq_ignore_ascii_case(key) =>
                        {
                            let parsed = reqwest::Url::parse(url).ok();
                            match (&binding.destination, parsed) {
                                (Some(d), Some(u)) => d.admits(&u, "POST").err().map(|why| {
                                    format!(
                                        "secret `{secret}` is bound to {}, and this upstream's url is not: {why}",
                                        d.describe()
                                    )
                                }),
                                (None, _) | (_, None) => {
                                    Some(format!("secret `{secret}` has no destination"))
                                }
                            }
                        }
                        (placement, _) => Some(format!(
                            "secret `{secret}` goes in the {}",
                            placement.describe()
                        )),
                    }
                };
                if let Some(problem) = problem {
                    return Err(self.err(field, problem));
                }
            }
        }
        Ok(())
    }
}
