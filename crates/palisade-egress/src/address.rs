//! Which addresses are globally routable, and why the others are not (private, loopback, link-local, metadata, ...).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not one the public internet routes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    /// A cloud provider's instance-metadata address (169.254.169.254, fd00:ec2::254, 100.100.100.200, ...).
    Metadata,
    SharedAddressSpace,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
}

impl Special {
    /// In words, for refusals: "a private address".
    pub fn describe(self) -> &'static str {
        match self {
            Special::Unspecified => "the unspecified address",
            Special::Loopback => "a loopback address",
            Special::Private => "a private address",
            Special::LinkLocal => "a link-local address",
            Special::Metadata => "a cloud metadata address",
            Special::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            Special::Multicast => "a multicast address",
            Special::Broadcast => "the broadcast address",
            Special::Documentation => "a documentation address",
            Special::Reserved => "a reserved address",
        }
    }
}

/// `None` for a globally routable address; what it is otherwise. IPv4
/// embedded in IPv6 (mapped, compatible, NAT64, 6to4) is judged as IPv4.
pub fn classify(address: IpAddr) -> Option<Special> {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; any other address unchanged.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        IpAddr::V4(v4) => IpAddr::V4(v4),
    }
}

fn in_v4(address: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(address) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn in_v6(address: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(address) & mask == u128::from(Ipv6Addr::from(network)) & mask
}

fn classify_v4(a: Ipv4Addr) -> Option<Special> {
    // Order matters: the metadata addresses sit inside link-local and
    // shared space, the unspecified address inside 0/8.
    const TABLE: &[([u8; 4], u32, Special)] = &[
        ([0, 0, 0, 0], 32, Special::Unspecified),
        ([169, 254, 169, 254], 32, Special::Metadata),
        ([169, 254, 170, 2], 32, Special::Metadata),
        ([100, 100, 100, 200], 32, Special::Metadata),
        ([255, 255, 255, 255], 32, Special::Broadcast),
        ([0, 0, 0, 0], 8, Special::Reserved),
        ([127, 0, 0, 0], 8, Special::Loopback),
        ([10, 0, 0, 0], 8, Special::Private),
        ([172, 16, 0, 0], 12, Special::Private),
        ([192, 168, 0, 0], 16, Special::Private),
        ([169, 254, 0, 0], 16, Special::LinkLocal),
        ([100, 64, 0, 0], 10, Special::SharedAddressSpace),
        ([224, 0, 0, 0], 4, Special::Multicast),
        ([192, 0, 2, 0], 24, Special::Documentation),
        ([198, 51, 100, 0], 24, Special::Documentation),
        ([203, 0, 113, 0], 24, Special::Documentation),
        ([192, 0, 0, 0], 24, Special::Reserved),
        ([192, 88, 99, 0], 24, Special::Reserved),
        ([198, 18, 0, 0], 15, Special::Reserved),
        ([240, 0, 0, 0], 4, Special::Reserved),
    ];
    TABLE
        .iter()
        .find(|(network, prefix, _)| in_v4(a, *network, *prefix))
        .map(|(_, _, special)| *special)
}

fn classify_v6(a: Ipv6Addr) -> Option<Special> {
    let bits = u128::from(a);
    if a.is_unspecified() {
        return Some(Special::Unspecified);
    }
    if a.is_loopback() {
        return Some(Special::Loopback);
    }
    if let Some(v4) = embedded_v4(a) {
        return classify_v4(v4);
    }
    const TABLE: &[([u16; 8], u32, Special)] = &[
        (
            [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254],
            128,
            Special::Metadata,
        ),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Special::Private),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Special::Private),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, Special::LinkLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Special::Multicast),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            Special::Documentation,
        ),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Special::Documentation),
        (
            [0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0],
            48,
            Special::Private,
        ),
        ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, Special::Reserved),
        // IETF protocol assignments, Teredo (whose IPv4 is obfuscated) among them.
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Special::Reserved),
    ];
    if let Some((_, _, special)) = TABLE
        .iter()
        .find(|(network, prefix, _)| in_v6(a, *network, *prefix))
    {
        return Some(*special);
    }
    // Only 2000::/3 is allocated as global unicast; the rest is reserved.
    if bits >> 125 != 0b001 {
        return Some(Special::Reserved);
    }
    None
}

/// The IPv4 address an IPv6 address carries: mapped (::ffff:0:0/96),
/// compatible (::/96), NAT64 (64:ff9b::/96) or 6to4 (2002::/16).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(a);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if in_v6(a, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(a, [0, 0, 0, 0, 0, 0, 0, 0], 96)
        || in_v6(a, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return Some(low);
    }
    if in_v6(a, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

/// A network written in a rule's `addresses`: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base: IpAddr = address
            .parse()
            .map_err(|_| format!("`{address}` is not an IP address"))?;
        let base = canonical(base);
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                Ok(_) | Err(_) => {
                    return Err(format!("`/{p}` is not a prefix length from 0 to {max}"));
                }
            },
        };
        let network = Self { base, prefix };
        if !network.contains(base) || network.masked() != base {
            return Err(format!(
                "`{text}` has bits set past its prefix; write the network's first address"
            ));
        }
        Ok(network)
    }

    fn masked(&self) -> IpAddr {
        match self.base {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }

    /// Whether `address` (canonicalized) is in this network.
    pub(crate) fn contains(&self, address: IpAddr) -> bool {
        match (self.base, canonical(address)) {
            (IpAddr::V4(base), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(base) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(base) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    /// Whether every address of `other` is in this network.
    pub(crate) fn covers(&self, other: &Network) -> bool {
        self.prefix <= other.prefix && self.contains(other.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<Special>) {
        let address: IpAddr = text.parse().unwrap();
        assert_eq!(classify(address), expected, "{text}");
    }

    #[test]
    fn classifies_every_special_range() {
        use Special::*;
        let cases = [
            ("0.0.0.0", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("0.1.2.3", Some(Reserved)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.0.9", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("169.254.1.1", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.170.2", Some(Metadata)),
            ("100.100.100.200", Some(Metadata)),
            ("fd00:ec2::254", Some(Metadata)),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("224.0.0.1", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("2001:db8::1", Some(Documentation)),
            ("192.0.0.8", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("198.19.255.1", Some(Reserved)),
            ("240.0.0.1", Some(Reserved)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("::10.0.0.1", Some(Private)),
            ("64:ff9b::10.0.0.1", Some(Private)),
            ("64:ff9b::a9fe:a9fe", Some(Metadata)),
            ("2002:7f00:0001::", Some(Loopback)),
            ("2002:0a00:0001::1", Some(Private)),
            ("4000::1", Some(Reserved)),
            // Globally routable.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("169.255.0.1", None),
            ("2606:4700::1111", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::8.8.8.8", None),
            ("2002:0808:0808::1", None),
        ];
        for (text, expected) in cases {
            check(text, expected);
        }
    }

    #[test]
    fn networks_parse_and_contain() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.0".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(net.covers(&Network::parse("10.9.0.0/16").unwrap()));
        assert!(!Network::parse("10.9.0.0/16").unwrap().covers(&net));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "nope",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Network::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
    }
}
