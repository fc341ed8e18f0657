//! Which addresses are globally routable, and why the others are not (private, loopback, link-local, metadata, ...).

use std::net::IpAddr;

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
    let _ = address;
    Some(Special::Reserved)
}
