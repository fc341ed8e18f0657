//! Destinations: a host (a normalized name or an address) and a port, parsed from what clients write.

use std::fmt;
use std::net::IpAddr;

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

impl Host {
    /// Normalizes `text` (no port, no brackets needed for IPv6 but allowed).
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let _ = text;
        Err(Refusal::new(RefusalCode::Malformed, "not built yet"))
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
        let _ = (text, default_port);
        Err(Refusal::new(RefusalCode::Malformed, "not built yet"))
    }

    /// An absolute `http`/`https` URL's destination; userinfo is refused.
    pub fn from_url(url: &url::Url) -> Result<Self, Refusal> {
        let _ = url;
        Err(Refusal::new(RefusalCode::Malformed, "not built yet"))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}
