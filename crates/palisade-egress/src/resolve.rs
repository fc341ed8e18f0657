//! Name resolution: the static host map first, then the system resolver; and the reqwest resolver that refuses addresses the rules do not allow.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::address::{canonical, classify};
use crate::destination::Host;
use crate::record::{Refusal, RefusalCode};
use crate::rule::Rules;
use crate::{Egress, EgressError};

/// Resolves names for the proxy and for palisade's own requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolver {
    /// `[egress.hosts]`, keyed by normalized name.
    hosts: BTreeMap<String, Vec<IpAddr>>,
}

impl Resolver {
    pub(crate) fn new(hosts: &BTreeMap<String, Vec<IpAddr>>) -> Result<Self, EgressError> {
        let mut map = BTreeMap::new();
        for (written, addresses) in hosts {
            let name = match Host::parse(written) {
                Ok(Host::Name(name)) => name,
                Ok(Host::Address(_)) => {
                    return Err(EgressError::Host {
                        name: written.clone(),
                        reason: "an address needs no entry; name a host".into(),
                    });
                }
                Err(refusal) => {
                    return Err(EgressError::Host {
                        name: written.clone(),
                        reason: refusal.detail,
                    });
                }
            };
            if addresses.is_empty() {
                return Err(EgressError::Host {
                    name: written.clone(),
                    reason: "give at least one address".into(),
                });
            }
            let addresses = addresses.iter().copied().map(canonical).collect();
            if map.insert(name, addresses).is_some() {
                return Err(EgressError::Host {
                    name: written.clone(),
                    reason: "the same host is listed twice (names are compared in lowercase punycode, without a trailing dot)".into(),
                });
            }
        }
        Ok(Self { hosts: map })
    }

    /// Every address `host` has: itself, its `[egress.hosts]` entry, or what DNS answers.
    pub(crate) async fn lookup(&self, host: &Host) -> Result<Vec<IpAddr>, Refusal> {
        let name = match host {
            Host::Address(address) => return Ok(vec![*address]),
            Host::Name(name) => name,
        };
        if let Some(addresses) = self.hosts.get(name) {
            return Ok(addresses.clone());
        }
        let unresolvable = |why: String| {
            Refusal::new(
                RefusalCode::Unresolvable,
                format!("`{name}` does not resolve: {why}"),
            )
        };
        let answers = tokio::net::lookup_host((name.as_str(), 0))
            .await
            .map_err(|e| unresolvable(e.to_string()))?;
        let addresses: Vec<IpAddr> = answers.map(|a| canonical(a.ip())).collect();
        if addresses.is_empty() {
            return Err(unresolvable("no address".into()));
        }
        Ok(addresses)
    }
}

/// The addresses of `host` that `permit` allows, in the resolver's order;
/// refused, naming the first address and why, when none is left.
pub(crate) fn admitted(
    host: &Host,
    addresses: Vec<IpAddr>,
    permit: impl Fn(IpAddr) -> bool,
) -> Result<Vec<IpAddr>, Refusal> {
    let first = addresses.first().copied();
    let kept: Vec<IpAddr> = addresses.into_iter().filter(|a| permit(*a)).collect();
    match (kept.is_empty(), first) {
        (false, _) => Ok(kept),
        (true, Some(first)) => {
            let why = classify(first).map_or("not allowed", |special| special.describe());
            let whose = if host.address().is_some() {
                String::new()
            } else {
                format!("`{host}` resolves to ")
            };
            Err(Refusal::new(
                RefusalCode::AddressNotAllowed,
                format!(
                    "{whose}{first} ({why}), which no rule for it allows; a rule allows a non-public address by naming it in `addresses`"
                ),
            ))
        }
        (true, None) => Err(Refusal::new(
            RefusalCode::Unresolvable,
            format!("`{host}` has no address"),
        )),
    }
}

/// reqwest's resolver for palisade's own requests: names the environment's
/// rules allow, resolved as the proxy does, to addresses those rules allow.
/// Its errors are [`Refusal`]s, which callers find in the error's chain.
#[derive(Debug)]
pub(crate) struct OwnResolver(pub(crate) Arc<Egress>);

impl Resolve for OwnResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = Arc::clone(&self.0);
        Box::pin(async move {
            let host = Host::parse(name.as_str())?;
            let rules = egress.rules.naming(&host);
            if rules.is_empty() {
                return Err(Refusal::new(
                    RefusalCode::NotAllowlisted,
                    format!("`{host}` is not in `[egress].allow`"),
                )
                .into());
            }
            let addresses = egress.resolver.lookup(&host).await?;
            let addresses = admitted(&host, addresses, |a| Rules::permit(&rules, a))?;
            let addrs: Addrs = Box::new(addresses.into_iter().map(|a| SocketAddr::new(a, 0)));
            Ok(addrs)
        })
    }
}
