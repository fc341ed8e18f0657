//! Allowlist rules: their syntax, and matching a destination (and for plain HTTP a method and path) against them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::address::{Network, canonical, classify};
use crate::destination::{Destination, Host, parse_port};
use crate::record::RefusalCode;

/// One rule as written in the config: `"api.example.com:443"`,
/// `"*.example.com:443"`, `"10.0.0.5:8080"`, or a table with methods, path
/// prefixes and the non-public addresses it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RuleSpec {
    Short(String),
    Full(FullRule),
}

/// A rule's table form. A rule with `methods` or `paths` governs plain HTTP
/// only: it never allows a `CONNECT` tunnel, whose requests palisade cannot read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullRule {
    /// `api.example.com`, `*.example.com` (any subdomain, never the apex), or an address.
    pub host: String,
    /// One port, or several.
    pub port: Ports,
    /// Plain HTTP only: the methods allowed (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Plain HTTP only: the path prefixes allowed (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Non-public addresses (`10.0.0.0/8`, `127.0.0.1`) this rule's names
    /// may resolve to; public addresses are always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ports {
    One(u16),
    Many(Vec<u16>),
}

/// Why a rule was refused, naming where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{place}` rule `{rule}`: {reason}")]
pub struct RuleError {
    pub place: String,
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(Host),
    /// `*.example.com`: names ending in `.example.com`.
    Subdomains(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    spec: RuleSpec,
    pattern: Pattern,
    ports: Vec<u16>,
    methods: Vec<String>,
    paths: Vec<String>,
    addresses: Vec<Network>,
}

impl Rule {
    fn parse(spec: &RuleSpec) -> Result<Self, String> {
        let full = match spec {
            RuleSpec::Short(text) => {
                let (host, port) = text
                    .rsplit_once(':')
                    .filter(|(host, _)| !host.contains(':') || host.ends_with(']'))
                    .ok_or("a port is needed: `host:port`, such as `api.example.com:443`")?;
                let port = parse_port(port)
                    .ok_or_else(|| format!("`{port}` is not a port (1 to 65535)"))?;
                FullRule {
                    host: host.to_owned(),
                    port: Ports::One(port),
                    methods: Vec::new(),
                    paths: Vec::new(),
                    addresses: Vec::new(),
                }
            }
            RuleSpec::Full(full) => full.clone(),
        };
        let pattern = match full.host.strip_prefix("*.") {
            Some(rest) => {
                match Host::parse(rest) {
                    Ok(Host::Name(name)) if name.contains('.') => Pattern::Subdomains(name),
                    Ok(Host::Name(_)) => {
                        return Err("a wildcard must leave at least two labels (`*.example.com`, not `*.com`)".into());
                    }
                    Ok(Host::Address(_)) => {
                        return Err("a wildcard applies to names, not addresses".into());
                    }
                    Err(e) => return Err(e.detail),
                }
            }
            None if full.host.contains('*') => {
                return Err("`*` may only be the whole first label (`*.example.com`)".into());
            }
            None => Pattern::Exact(Host::parse(&full.host).map_err(|e| e.detail)?),
        };
        let ports = match &full.port {
            Ports::One(port) => vec![*port],
            Ports::Many(ports) => ports.clone(),
        };
        if ports.is_empty() || ports.contains(&0) {
            return Err("ports are 1 to 65535, at least one".into());
        }
        let methods = full
            .methods
            .iter()
            .map(|m| {
                if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Ok(m.to_ascii_uppercase())
                } else {
                    Err(format!("`{m}` is not an HTTP method"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        for path in &full.paths {
            if !path.starts_with('/') || unsafe_path(path) {
                return Err(format!(
                    "path prefix `{path}` must start with `/` and hold no `..` or encoded separators"
                ));
            }
        }
        let addresses = full
            .addresses
            .iter()
            .map(|a| Network::parse(a).map_err(|e| format!("in `addresses`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            spec: spec.clone(),
            pattern,
            ports,
            methods,
            paths: full.paths.clone(),
            addresses,
        })
    }

    fn matches_host(&self, host: &Host) -> bool {
        match (&self.pattern, host) {
            (Pattern::Exact(exact), host) => exact == host,
            (Pattern::Subdomains(suffix), Host::Name(name)) => {
                name.len() > suffix.len() + 1
                    && name.ends_with(suffix.as_str())
                    && name.as_bytes().get(name.len() - suffix.len() - 1) == Some(&b'.')
            }
            (Pattern::Subdomains(_), Host::Address(_)) => false,
        }
    }

    fn governs_http_only(&self) -> bool {
        !self.methods.is_empty() || !self.paths.is_empty()
    }

    /// Whether this rule lets a destination it matched resolve to `address`.
    fn permits_address(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        classify(address).is_none()
            || self.pattern == Pattern::Exact(Host::Address(address))
            || (self.pattern == Pattern::Exact(Host::Name("localhost".into()))
                && address.is_loopback())
            || self.addresses.iter().any(|net| net.contains(address))
    }

    fn covers(&self, other: &Rule) -> bool {
        let host = match (&self.pattern, &other.pattern) {
            (a, b) if a == b => true,
            (Pattern::Subdomains(_), Pattern::Exact(host)) => self.matches_host(host),
            (Pattern::Subdomains(a), Pattern::Subdomains(b)) => b.ends_with(&format!(".{a}")),
            (Pattern::Exact(_), _) => false,
        };
        let narrower = |mine: &[String],
                        theirs: &[String],
                        within: fn(&String, &String) -> bool| {
            mine.is_empty()
                || (!theirs.is_empty() && theirs.iter().all(|t| mine.iter().any(|m| within(m, t))))
        };
        host && other.ports.iter().all(|p| self.ports.contains(p))
            && narrower(&self.methods, &other.methods, |m, t| m == t)
            && narrower(&self.paths, &other.paths, |m, t| t.starts_with(m.as_str()))
            && other
                .addresses
                .iter()
                .all(|net| self.addresses.iter().any(|mine| mine.covers(net)))
    }
}

/// `..`, `.` segments, backslashes and encoded dots or separators: a path
/// whose meaning a server may read differently from a prefix match.
fn unsafe_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains('\\')
        || ["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
        || path
            .split('/')
            .any(|segment| segment == ".." || segment == ".")
}

/// A compiled rule set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// The rules of a set that allow one destination.
pub(crate) type Allowing<'a> = Vec<&'a Rule>;

impl Rules {
    /// Parses `specs`; `place` names where they were written (`egress.allow`,
    /// `sandbox.profiles.py.egress`), for errors.
    pub fn parse(specs: &[RuleSpec], place: &str) -> Result<Self, RuleError> {
        let rules = specs
            .iter()
            .map(|spec| {
                Rule::parse(spec).map_err(|reason| RuleError {
                    place: place.to_owned(),
                    rule: match spec {
                        RuleSpec::Short(text) => text.clone(),
                        RuleSpec::Full(full) => full.host.clone(),
                    },
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules allowing `destination`: for a tunnel (`http` is `None`)
    /// only rules without methods or paths; for a plain-HTTP request
    /// (`Some((method, path))`) those whose methods and paths admit it.
    pub(crate) fn allowing(
        &self,
        destination: &Destination,
        http: Option<(&str, &str)>,
    ) -> Result<Allowing<'_>, RefusalCode> {
        let listed: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.matches_host(&destination.host) && r.ports.contains(&destination.port))
            .collect();
        if listed.is_empty() {
            return Err(RefusalCode::NotAllowlisted);
        }
        let allowing: Vec<&Rule> = listed
            .into_iter()
            .filter(|rule| match http {
                None => !rule.governs_http_only(),
                Some((method, path)) => {
                    let path = path.split(['?', '#']).next().unwrap_or(path);
                    (rule.methods.is_empty() || rule.methods.iter().any(|m| m == method))
                        && (rule.paths.is_empty()
                            || (!unsafe_path(path)
                                && rule.paths.iter().any(|p| path.starts_with(p.as_str()))))
                }
            })
            .collect();
        if allowing.is_empty() {
            Err(RefusalCode::MethodOrPath)
        } else {
            Ok(allowing)
        }
    }

    /// Every rule naming `host` on any port (the reqwest resolver knows no port).
    pub(crate) fn naming(&self, host: &Host) -> Allowing<'_> {
        self.rules.iter().filter(|r| r.matches_host(host)).collect()
    }

    /// Whether one of `allowing` lets the destination resolve to `address`.
    pub(crate) fn permit(allowing: &[&Rule], address: IpAddr) -> bool {
        allowing.iter().any(|rule| rule.permits_address(address))
    }

    /// The rules of `other` none of these rules cover, as written (for the config check).
    pub fn uncovered<'a>(&self, other: &'a Rules) -> Vec<&'a RuleSpec> {
        other
            .rules
            .iter()
            .filter(|theirs| !self.rules.iter().any(|mine| mine.covers(theirs)))
            .map(|r| &r.spec)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(specs: &[&str]) -> Rules {
        let specs: Vec<RuleSpec> = specs.iter().map(|s| RuleSpec::Short((*s).into())).collect();
        Rules::parse(&specs, "test").unwrap()
    }

    fn dest(text: &str) -> Destination {
        Destination::parse_authority(text, None).unwrap()
    }

    #[test]
    fn hosts_and_ports_match_exactly_and_wildcards_never_the_apex() {
        let r = rules(&[
            "api.example.com:443",
            "*.cdn.example.com:443",
            "10.0.0.5:8080",
        ]);
        assert!(r.allowing(&dest("API.example.com.:443"), None).is_ok());
        assert_eq!(
            r.allowing(&dest("api.example.com:80"), None).unwrap_err(),
            RefusalCode::NotAllowlisted
        );
        assert!(r.allowing(&dest("a.cdn.example.com:443"), None).is_ok());
        assert!(r.allowing(&dest("a.b.cdn.example.com:443"), None).is_ok());
        assert!(r.allowing(&dest("cdn.example.com:443"), None).is_err());
        assert!(r.allowing(&dest("evilcdn.example.com:443"), None).is_err());
        assert!(r.allowing(&dest("10.0.0.5:8080"), None).is_ok());
        assert!(
            r.allowing(&dest("0xa000005:8080"), None).is_ok(),
            "hex notation is the same address"
        );
        assert!(r.allowing(&dest("10.0.0.6:8080"), None).is_err());
        // An IP-literal CONNECT when only names are allowed.
        assert!(r.allowing(&dest("93.184.216.34:443"), None).is_err());
    }

    #[test]
    fn bad_rules_are_refused_naming_the_place() {
        for bad in [
            "example.com",
            "example.com:0",
            "*.com:443",
            "*:443",
            "a.*.com:443",
            "ex*ample.com:443",
            "a..b:443",
            "x.com:99999",
        ] {
            let e = Rules::parse(&[RuleSpec::Short(bad.into())], "egress.allow").unwrap_err();
            assert_eq!(e.place, "egress.allow", "{bad}");
        }
    }

    #[test]
    fn methods_and_paths_govern_plain_http_and_refuse_tunnels() {
        let full = RuleSpec::Full(FullRule {
            host: "api.example.com".into(),
            port: Ports::One(80),
            methods: vec!["get".into()],
            paths: vec!["/v1/".into()],
            addresses: vec![],
        });
        let r = Rules::parse(&[full], "t").unwrap();
        let d = dest("api.example.com:80");
        assert!(r.allowing(&d, Some(("GET", "/v1/items?x=1"))).is_ok());
        for (method, path) in [
            ("POST", "/v1/items"),
            ("GET", "/v2/"),
            ("GET", "/v1/../admin"),
            ("GET", "/v1/%2e%2e/admin"),
            ("GET", "/v1/..%2fadmin"),
        ] {
            assert_eq!(
                r.allowing(&d, Some((method, path))).unwrap_err(),
                RefusalCode::MethodOrPath,
                "{method} {path}"
            );
        }
        assert_eq!(r.allowing(&d, None).unwrap_err(), RefusalCode::MethodOrPath);
    }

    #[test]
    fn non_public_addresses_need_the_rule_to_name_them() {
        let named = RuleSpec::Full(FullRule {
            host: "internal.test".into(),
            port: Ports::One(80),
            methods: vec![],
            paths: vec![],
            addresses: vec!["10.0.0.0/8".into()],
        });
        let r = Rules::parse(
            &[
                named,
                RuleSpec::Short("public.test:80".into()),
                RuleSpec::Short("127.0.0.1:9".into()),
            ],
            "t",
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let internal = r.allowing(&dest("internal.test:80"), None).unwrap();
        assert!(Rules::permit(&internal, ip("10.9.8.7")));
        assert!(Rules::permit(&internal, ip("::ffff:10.9.8.7")));
        assert!(!Rules::permit(&internal, ip("169.254.169.254")));
        assert!(Rules::permit(&internal, ip("93.184.216.34")));
        let public = r.allowing(&dest("public.test:80"), None).unwrap();
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "fd00:ec2::254",
            "::ffff:192.168.1.1",
            "0.0.0.0",
        ] {
            assert!(!Rules::permit(&public, ip(private)), "{private}");
        }
        let literal = r.allowing(&dest("127.0.0.1:9"), None).unwrap();
        assert!(Rules::permit(&literal, ip("127.0.0.1")));
    }

    #[test]
    fn coverage_tells_what_a_profile_asks_beyond_the_environment() {
        let env = rules(&["*.example.com:443", "api.test:80"]);
        let profile = rules(&[
            "a.example.com:443",
            "*.b.example.com:443",
            "example.com:443",
            "api.test:81",
        ]);
        let uncovered: Vec<_> = env.uncovered(&profile);
        assert_eq!(
            uncovered,
            [
                &RuleSpec::Short("example.com:443".into()),
                &RuleSpec::Short("api.test:81".into())
            ]
        );
    }
}
