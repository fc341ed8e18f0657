//! What a secret may be used for: its environment, the upstreams that may use it, and its one destination.
//!
//! A binding is configuration (`[secrets.NAME]`), reviewed like policy; the
//! vault holds only values. A secret is sent only where its binding says:
//! the destination is matched on the parsed, normalized URL (scheme, host
//! after IDNA, port, a path prefix on a segment boundary, the method), and
//! a URL with userinfo never matches.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use url::Url;

/// A secret's name: `[a-z0-9]` then up to 63 of `[a-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
        if first_ok && rest_ok && name.len() <= 64 && !name.contains("..") {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "invalid secret name `{}`: use a lowercase letter or digit, then up to 63 of a-z 0-9 _ - .",
                name.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a secret goes in the request (or process) it is injected into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Placement {
    /// An HTTP header; `format` has one `{}` where the value goes (`Bearer {}`).
    Header { name: String, format: String },
    /// A URL query parameter.
    Query { name: String },
    /// An environment variable of a spawned upstream.
    Env { name: String },
}

impl Placement {
    pub fn describe(&self) -> String {
        match self {
            Placement::Header { name, format } => format!("header `{name}: {format}`"),
            Placement::Query { name } => format!("query parameter `{name}`"),
            Placement::Env { name } => format!("environment variable `{name}`"),
        }
    }
}

/// The one place a secret may be sent: scheme, host, port, path prefix and methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub scheme: String,
    /// Lowercase; an internationalized name in its ASCII (punycode) form.
    pub host: String,
    pub port: u16,
    /// Starts with `/`; matched on a segment boundary.
    pub path_prefix: String,
    /// Uppercase; empty means any method.
    pub methods: Vec<String>,
}

/// Why a request does not go to a secret's destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("the URL carries a user name or password")]
    Userinfo,
    #[error("scheme `{got}` is not the bound `{want}`")]
    Scheme { got: String, want: String },
    #[error("host `{got}` is not the bound `{want}`")]
    Host { got: String, want: String },
    #[error("port {got} is not the bound {want}")]
    Port { got: u16, want: u16 },
    #[error("path `{got}` is not under the bound `{want}`")]
    Path { got: String, want: String },
    #[error("method `{got}` is not one of the bound {want:?}")]
    Method { got: String, want: Vec<String> },
    #[error("the URL has no host")]
    NoHost,
}

impl Destination {
    /// Parses `https://host[:port][/prefix]`; methods are added apart.
    pub fn parse(text: &str, methods: &[String]) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("invalid destination `{text}`: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!(
                "destination `{text}`: the scheme must be https or http"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "destination `{text}`: must not carry a user name or password"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "destination `{text}`: a query or fragment cannot be bound; bind a path prefix"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("destination `{text}` has no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("destination `{text}` has no port"))?;
        let mut upper = Vec::with_capacity(methods.len());
        for method in methods {
            let method = method.to_ascii_uppercase();
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("destination `{text}`: invalid method `{method}`"));
            }
            upper.push(method);
        }
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host,
            port,
            path_prefix: url.path().to_owned(),
            methods: upper,
        })
    }

    /// Whether `url` (already parsed, so normalized) with `method` goes here.
    pub fn admits(&self, url: &Url, method: &str) -> Result<(), Mismatch> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Mismatch::Userinfo);
        }
        if url.scheme() != self.scheme {
            return Err(Mismatch::Scheme {
                got: url.scheme().to_owned(),
                want: self.scheme.clone(),
            });
        }
        let host = url.host_str().ok_or(Mismatch::NoHost)?;
        // `Url` lowercases and IDNA-maps domains and canonicalizes IP
        // literals, so equal hosts compare equal as text.
        if host != self.host {
            return Err(Mismatch::Host {
                got: host.to_owned(),
                want: self.host.clone(),
            });
        }
        let port = url.port_or_known_default().unwrap_or(0);
        if port != self.port {
            return Err(Mismatch::Port {
                got: port,
                want: self.port,
            });
        }
        if !under(url.path(), &self.path_prefix) {
            return Err(Mismatch::Path {
                got: url.path().to_owned(),
                want: self.path_prefix.clone(),
            });
        }
        let method = method.to_ascii_uppercase();
        if !self.methods.is_empty() && !self.methods.contains(&method) {
            return Err(Mismatch::Method {
                got: method,
                want: self.methods.clone(),
            });
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let mut out = format!(
            "{}://{}:{}{}",
            self.scheme, self.host, self.port, self.path_prefix
        );
        if !self.methods.is_empty() {
            out.push_str(&format!(" ({})", self.methods.join(", ")));
        }
        out
    }
}

/// `path` is `prefix`, or below it on a segment boundary.
fn under(path: &str, prefix: &str) -> bool {
    if prefix == "/" || path == prefix {
        return true;
    }
    let bare = prefix.trim_end_matches('/');
    path.strip_prefix(bare)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What one secret may be used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub name: SecretName,
    /// The environment whose vault holds it; a gateway serving another
    /// environment cannot use it.
    pub environment: String,
    /// The upstreams (built-in tools included) that may use it.
    pub upstreams: Vec<String>,
    /// Where it may be sent; `None` only for an environment variable.
    pub destination: Option<Destination>,
    pub placement: Placement,
    /// How often it should be rotated; older is reported as overdue.
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_opt")]
    pub rotate_every: Option<Duration>,
}

mod humantime_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

impl Binding {
    /// Whether the binding is well-formed on its own (the server's config
    /// reader checks it against the upstreams).
    pub fn validate(&self) -> Result<(), String> {
        match (&self.placement, &self.destination) {
            (Placement::Env { .. }, Some(_)) => Err(format!(
                "secret `{}`: an environment variable has no destination; remove `destination`",
                self.name
            )),
            (Placement::Header { .. } | Placement::Query { .. }, None) => Err(format!(
                "secret `{}`: a header or query secret needs a `destination` (https://host/prefix)",
                self.name
            )),
            (Placement::Header { format, .. }, _) if format.matches("{}").count() != 1 => {
                Err(format!(
                    "secret `{}`: `format` must contain `{{}}` exactly once, where the value goes",
                    self.name
                ))
            }
            _ if self.upstreams.is_empty() => Err(format!(
                "secret `{}`: `upstreams` is empty, so nothing may use it",
                self.name
            )),
            _ => Ok(()),
        }
    }

    /// Whether the secret is older than its rotation schedule allows.
    pub fn overdue(&self, updated: u64, now: u64) -> Option<Duration> {
        let every = self.rotate_every?;
        let age = Duration::from_secs(now.saturating_sub(updated));
        (age > every).then(|| age - every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(text: &str) -> Destination {
        Destination::parse(text, &["GET".into(), "post".into()]).unwrap()
    }

    fn admits(d: &Destination, url: &str, method: &str) -> Result<(), Mismatch> {
        d.admits(&Url::parse(url).unwrap(), method)
    }

    #[test]
    fn names_are_strict() {
        for good in ["tickets", "github.pat", "a", "x_1-2"] {
            assert!(SecretName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Tickets", "-x", "a/b", "a..b", "a b", &"x".repeat(65)] {
            assert!(SecretName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bound_destination_is_admitted() {
        let d = dest("https://API.Example.com/v1/");
        assert_eq!(d.host, "api.example.com");
        assert_eq!(d.port, 443);
        assert_eq!(
            admits(&d, "https://api.example.com/v1/tickets", "get"),
            Ok(())
        );
        assert_eq!(admits(&d, "https://api.example.com:443/v1", "POST"), Ok(()));
        // A trailing dot is another name to `Url`: refused, not guessed at.
        assert!(admits(&d, "https://API.EXAMPLE.COM./v1/x", "GET").is_err());
    }

    #[test]
    fn every_kind_of_mismatch_is_refused() {
        let d = dest("https://api.example.com/v1");
        let cases = [
            ("http://api.example.com/v1/x", "GET", "scheme"),
            ("https://api.example.org/v1/x", "GET", "host"),
            ("https://api.example.com.evil.test/v1/x", "GET", "host"),
            ("https://evil.test/api.example.com/v1/x", "GET", "host"),
            ("https://api.example.com:8443/v1/x", "GET", "port"),
            ("https://api.example.com/v1x", "GET", "path"),
            ("https://api.example.com/v2/x", "GET", "path"),
            ("https://api.example.com/v1/../admin", "GET", "path"),
            ("https://api.example.com/v1/%2e%2e/admin", "GET", "path"),
            ("https://api.example.com/v1/x", "DELETE", "method"),
            ("https://user:pw@api.example.com/v1/x", "GET", "userinfo"),
            ("https://api.example.com@evil.test/v1/x", "GET", "userinfo"),
            // Cyrillic 'а' in place of Latin 'a': another host after IDNA.
            ("https://\u{430}pi.example.com/v1/x", "GET", "host"),
        ];
        for (url, method, kind) in cases {
            let err = admits(&d, url, method).expect_err(url);
            let text = format!("{err:?}").to_lowercase();
            assert!(text.starts_with(kind), "{url}: {err:?}");
        }
    }

    #[test]
    fn destinations_that_cannot_be_bound_are_refused() {
        for bad in [
            "ftp://x.test/",
            "https://u:p@x.test/",
            "https://x.test/?k=v",
            "not a url",
        ] {
            assert!(Destination::parse(bad, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_is_overdue_after_its_period() {
        let b = Binding {
            name: SecretName::parse("t").unwrap(),
            environment: "dev".into(),
            upstreams: vec!["u".into()],
            destination: None,
            placement: Placement::Env { name: "T".into() },
            rotate_every: Some(Duration::from_secs(7 * 86400)),
        };
        assert_eq!(b.overdue(0, 7 * 86400), None);
        assert_eq!(b.overdue(0, 7 * 86400 + 5), Some(Duration::from_secs(5)));
        assert!(b.validate().is_ok());
    }
}
