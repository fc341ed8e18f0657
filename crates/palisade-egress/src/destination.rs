//! Destinations: a host (a normalized name or an address) and a port, parsed from what clients and rules write.

use std::fmt;
use std::net::IpAddr;

use crate::address::canonical;
use crate::record::{Refusal, RefusalCode};

/// A host as palisade compares it: a name in lowercase ASCII (IDNA to
/// punycode, no trailing dot), or an address (every IPv4 notation the URL
/// standard accepts — decimal, octal, hex, short forms — and IPv6, an
/// IPv4-mapped IPv6 address becoming its IPv4 address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    Name(String),
    Address(IpAddr),
}

fn malformed(detail: String) -> Refusal {
    Refusal::new(RefusalCode::Malformed, detail)
}

impl Host {
    /// Normalizes `text`: a name, an IPv4 address in any notation, or an
    /// IPv6 address with or without brackets.
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let shown = text.escape_debug();
        if text.is_empty() {
            return Err(malformed("an empty host".into()));
        }
        if text.contains(['@', '/', '\\', '?', '#', ' ', '%']) || text.chars().any(char::is_control)
        {
            return Err(malformed(format!("`{shown}` is not a host name")));
        }
        let bracketed = text.starts_with('[');
        let bare = if !bracketed && text.contains(':') {
            format!("[{text}]")
        } else {
            text.to_owned()
        };
        // One trailing dot names the same host (the DNS root); two do not.
        let trimmed = match bare.strip_suffix('.') {
            Some(rest) if rest.ends_with('.') || rest.is_empty() => {
                return Err(malformed(format!("`{shown}` has an empty label")));
            }
            Some(rest) => rest,
            None => bare.as_str(),
        };
        match url::Host::parse(trimmed) {
            Ok(url::Host::Domain(name)) => {
                if name.split('.').any(str::is_empty) {
                    return Err(malformed(format!("`{shown}` has an empty label")));
                }
                Ok(Host::Name(name))
            }
            Ok(url::Host::Ipv4(v4)) => Ok(Host::Address(IpAddr::V4(v4))),
            Ok(url::Host::Ipv6(v6)) => Ok(Host::Address(canonical(IpAddr::V6(v6)))),
            Err(e) => Err(malformed(format!("`{shown}` is not a host: {e}"))),
        }
    }

    pub fn address(&self) -> Option<IpAddr> {
        match self {
            Host::Address(address) => Some(*address),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Address(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Address(IpAddr::V4(v4)) => write!(f, "{v4}"),
        }
    }
}

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub host: Host,
    pub port: u16,
}

impl Destination {
    /// A `CONNECT` target or `Host` header: `host:port` (`[v6]:port`); no
    /// userinfo, path or anything else. `default_port` when none is written.
    pub fn parse_authority(text: &str, default_port: Option<u16>) -> Result<Self, Refusal> {
        let shown = text.escape_debug();
        if text.contains('@') {
            return Err(malformed(format!(
                "`{shown}`: userinfo (`user@host`) is not allowed in a proxy request"
            )));
        }
        let (host, port) = match text.rsplit_once(':') {
            // `[v6]` alone, or `v6` without brackets and port.
            Some((host, _))
                if text.ends_with(']') || host.contains(':') && !host.starts_with('[') =>
            {
                (text, None)
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let port = match (port, default_port) {
            (Some(port), _) => parse_port(port).ok_or_else(|| {
                malformed(format!(
                    "`{shown}`: `{}` is not a port (1 to 65535)",
                    port.escape_debug()
                ))
            })?,
            (None, Some(port)) => port,
            (None, None) => return Err(malformed(format!("`{shown}` has no port"))),
        };
        Ok(Self {
            host: Host::parse(host)?,
            port,
        })
    }

    /// An absolute `http`/`https` URL's destination; userinfo is refused.
    pub fn from_url(url: &url::Url) -> Result<Self, Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(malformed(format!(
                "`{}` URLs are not proxied",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(malformed(
                "userinfo (`user@host`) is not allowed in a proxied URL".into(),
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => Host::parse(name)?,
            Some(url::Host::Ipv4(v4)) => Host::Address(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Host::Address(canonical(IpAddr::V6(v6))),
            None => return Err(malformed("the URL has no host".into())),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| malformed("the URL has no port".into()))?;
        Ok(Self { host, port })
    }
}

pub(crate) fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p > 0)
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    #[test]
    fn hosts_are_normalized_as_the_url_standard_does() {
        assert_eq!(
            host("API.Example.COM."),
            Host::Name("api.example.com".into())
        );
        assert_eq!(
            host("Bücher.example"),
            Host::Name("xn--bcher-kva.example".into())
        );
        // A Cyrillic а is another name, not apple.com.
        assert_eq!(
            host("\u{0430}pple.com"),
            Host::Name("xn--pple-43d.com".into())
        );
        let loopback = Host::Address("127.0.0.1".parse().unwrap());
        for written in [
            "2130706433",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "127.1",
            "::ffff:127.0.0.1",
            "[::ffff:7f00:1]",
            "127.0.0.1.",
        ] {
            assert_eq!(host(written), loopback, "{written}");
        }
        assert_eq!(host("[::1]"), Host::Address("::1".parse().unwrap()));
        for bad in [
            "",
            "a..b",
            "example.com..",
            "allowed.com@evil.com",
            "a b",
            "evil.com/x",
            ".",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn authorities_have_a_port_and_no_userinfo() {
        let d = Destination::parse_authority("Api.Example.com.:443", None).unwrap();
        assert_eq!(d.to_string(), "api.example.com:443");
        assert_eq!(
            Destination::parse_authority("[::1]:8080", None)
                .unwrap()
                .to_string(),
            "[::1]:8080"
        );
        assert_eq!(
            Destination::parse_authority("example.com", Some(80))
                .unwrap()
                .port,
            80
        );
        for bad in [
            "allowed.com@evil.com:443",
            "example.com:0",
            "example.com:65536",
            "example.com:+443",
            "example.com",
            "example.com:44a",
        ] {
            let refused = Destination::parse_authority(bad, None).unwrap_err();
            assert_eq!(refused.code, RefusalCode::Malformed, "{bad}");
        }
        let url = url::Url::parse("http://allowed.com:pw@evil.com/").unwrap();
        assert!(Destination::from_url(&url).is_err());
        let url = url::Url::parse("http://0x7f000001:8080/").unwrap();
        assert_eq!(
            Destination::from_url(&url).unwrap().to_string(),
            "127.0.0.1:8080"
        );
    }
}
