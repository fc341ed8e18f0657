//! Layer 3's egress: the rule engine, resolver and allowlisting forward proxy that every outbound connection palisade makes or relays passes.
//!
//! One [`Egress`] per gateway holds the environment's allowlist (`[egress]`
//! in the config). Every outbound connection is made for a [`Scope`]: an
//! execution (a sandbox, an `http_request` call, a remote upstream) with
//! its attribution, its own rules (a sandbox profile's `egress`, which
//! narrow the environment's) and its limits. A destination is allowed only
//! when both rule sets allow it; palisade resolves the name itself, refuses
//! addresses that are not globally routable unless the matching rule names
//! them, and connects to the address it checked.
//!
//! Two ways out use it:
//! - [`Egress::serve`]: one client connection speaking HTTP/1.1 to the
//!   proxy (plain-HTTP forwarding, `CONNECT` tunnels whose TLS ClientHello
//!   must name the `CONNECT` host). A sandbox's listener inside its network
//!   namespace hands its connections here.
//! - [`Egress::client`] and [`Egress::check_url`]: palisade's own requests
//!   (`http_request`, remote upstreams) through reqwest, with the resolver
//!   and a redirect policy that apply the same rules.
//!
//! Every connection, allowed or refused, ends in one [`Record`] given to the
//! [`Recorder`].
#![forbid(unsafe_code)]

pub mod address;
pub mod destination;
mod proxy;
pub mod record;
mod resolve;
pub mod rule;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::Serialize;

pub use destination::{Destination, Host};
pub use record::{Attribution, Outcome, Record, Recorder, Refusal, RefusalCode};
pub use rule::{RuleError, RuleSpec, Rules};

/// `[egress]` in the config file (read and checked by the server's config
/// module): the environment's allowlist and the proxy's limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settings {
    /// The destinations anything palisade sends or relays may reach.
    pub allow: Vec<RuleSpec>,
    /// Names palisade resolves to fixed addresses instead of asking DNS
    /// (like curl's `--resolve`). Keys are host names, normalized as rules are.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
    pub limits: LimitSettings,
}

/// The proxy's limits, per execution (scope) and per connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitSettings {
    /// Connections one execution may open in all (default 256).
    pub connections: u64,
    /// Connections one execution may have open at once (default 32).
    pub concurrent: u64,
    /// Bytes one execution may send and receive in all, both ways summed (default 1 GiB).
    pub bytes: u64,
    /// A connection with no byte either way for this long is closed (default 60 s).
    #[serde(serialize_with = "humantime_string")]
    pub idle_timeout: Duration,
    /// A connection is closed after this long, whatever it does (default 10 min).
    #[serde(serialize_with = "humantime_string")]
    pub total_timeout: Duration,
    /// The request line and headers of one request may be this large (default 16 KiB).
    pub max_header_bytes: usize,
    /// A client has this long to send a request's head (default 10 s).
    #[serde(serialize_with = "humantime_string")]
    pub header_timeout: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            connections: 256,
            concurrent: 32,
            bytes: 1 << 30,
            idle_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(600),
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// A duration as the config writes it (`"30s"`, `"10m"`).
fn humantime_string<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Why the egress could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("`egress.hosts.{name}`: {reason}")]
    Host { name: String, reason: String },
}

/// The gateway's egress: the environment's rules, the resolver, the recorder.
#[derive(Debug)]
pub struct Egress {
    rules: Rules,
    resolver: resolve::Resolver,
    limits: LimitSettings,
    recorder: Arc<dyn Recorder>,
}

/// One execution's way out: who it is, its own rules, its counters.
#[derive(Debug)]
pub struct Scope {
    who: Attribution,
    /// `None`: the environment's rules alone (palisade's own traffic).
    rules: Option<Rules>,
    opened: AtomicU64,
    open: AtomicU64,
    bytes: AtomicU64,
}

impl Scope {
    pub fn who(&self) -> &Attribution {
        &self.who
    }
}

impl Egress {
    /// Compiles the environment's rules and the static host map.
    pub fn new(settings: &Settings, recorder: Arc<dyn Recorder>) -> Result<Arc<Self>, EgressError> {
        let rules = Rules::parse(&settings.allow, "egress.allow")?;
        let resolver = resolve::Resolver::new(&settings.hosts)?;
        Ok(Arc::new(Self {
            rules,
            resolver,
            limits: settings.limits.clone(),
            recorder,
        }))
    }

    /// A scope for one execution. `rules`: the execution's own (a sandbox
    /// profile's `egress`), checked in addition to the environment's.
    pub fn scope(&self, who: Attribution, rules: Option<Rules>) -> Arc<Scope> {
        Arc::new(Scope {
            who,
            rules,
            opened: AtomicU64::new(0),
            open: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }
}

impl Egress {
    /// Serves every connection `listener` accepts (a sandbox's listener) for
    /// `scope`, until the future is dropped, which ends its connections too.
    pub async fn serve_listener(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        scope: Arc<Scope>,
    ) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let (egress, scope) = (Arc::clone(&self), Arc::clone(&scope));
                        connections.spawn(async move { egress.serve(&scope, stream).await });
                    }
                    // Out of descriptors or a connection aborted before it
                    // was taken: the listener itself is fine.
                    Err(e) => {
                        tracing::warn!(error = %e, "egress listener could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    /// Serves one client connection to the proxy for `scope`: one `CONNECT`
    /// tunnel or one plain-HTTP request, then one record.
    pub async fn serve(self: &Arc<Self>, scope: &Scope, stream: tokio::net::TcpStream) {
        proxy::serve(self, scope, stream).await;
    }

    /// `builder` with the egress resolver, no proxy from the environment,
    /// and no redirects followed, for palisade's own requests: a redirect
    /// reaches the caller as the response it is, so that nothing palisade
    /// sends goes to a URL [`Egress::check_url`] has not seen.
    pub fn client(self: &Arc<Self>, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolve::OwnResolver(Arc::clone(self))))
    }

    /// Whether palisade may send `method url` for `scope`: both rule sets
    /// (methods and paths apply, palisade reading its own requests), and for
    /// an address in the URL the address rules. A name's addresses are
    /// checked by the resolver when reqwest connects.
    pub fn check_url(
        &self,
        scope: &Scope,
        method: &str,
        url: &url::Url,
    ) -> Result<Destination, Refusal> {
        let destination = Destination::from_url(url)?;
        let permit = self.permit(scope, &destination, Some((method, url.path())))?;
        if let Host::Address(address) = destination.host {
            resolve::admitted(&destination.host, vec![address], |a| permit.admits(a))?;
        }
        Ok(destination)
    }

    /// Hands `record` to the recorder (for palisade's own requests, which the caller times).
    pub async fn report(&self, record: Record) {
        self.recorder.record(record).await;
    }

    /// What both rule sets say about `destination`; the execution's own
    /// rules first, so that a refusal names the narrower list.
    fn permit<'a>(
        &'a self,
        scope: &'a Scope,
        destination: &Destination,
        http: Option<(&str, &str)>,
    ) -> Result<Permit<'a>, Refusal> {
        let explain = |code: RefusalCode, whose: &str| {
            let detail = match (code, http) {
                (RefusalCode::MethodOrPath, None) => format!(
                    "`{destination}` is allowed by {whose} for some methods or paths of plain HTTP only, which a `CONNECT` tunnel cannot be held to"
                ),
                (RefusalCode::MethodOrPath, Some((method, path))) => {
                    format!(
                        "`{method} {path}` to `{destination}` is not among the methods and paths {whose} allows"
                    )
                }
                _ => format!("`{destination}` is not in {whose}"),
            };
            Refusal::new(code, detail)
        };
        let own = match &scope.rules {
            Some(rules) => Some(
                rules
                    .allowing(destination, http)
                    .map_err(|code| explain(code, "the sandbox profile's `egress`"))?,
            ),
            None => None,
        };
        let env = self
            .rules
            .allowing(destination, http)
            .map_err(|code| explain(code, "`[egress].allow`"))?;
        Ok(Permit { env, own })
    }

    /// The addresses `destination` may be reached at under `permit`.
    async fn addresses(
        &self,
        destination: &Destination,
        permit: &Permit<'_>,
    ) -> Result<Vec<std::net::SocketAddr>, Refusal> {
        let found = self.resolver.lookup(&destination.host).await?;
        let kept = resolve::admitted(&destination.host, found, |a| permit.admits(a))?;
        Ok(kept
            .into_iter()
            .map(|a| std::net::SocketAddr::new(a, destination.port))
            .collect())
    }
}

/// The rules of both sets that allow one destination.
struct Permit<'a> {
    env: Vec<&'a rule::Rule>,
    own: Option<Vec<&'a rule::Rule>>,
}

impl Permit<'_> {
    fn admits(&self, address: IpAddr) -> bool {
        Rules::permit(&self.env, address)
            && self
                .own
                .as_ref()
                .is_none_or(|own| Rules::permit(own, address))
    }
}
