//! Name resolution: the static host map first, then the system resolver; and the reqwest resolver that refuses addresses the rules do not allow.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::EgressError;

/// Resolves names for the proxy and for palisade's own requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolver {
    hosts: BTreeMap<String, Vec<IpAddr>>,
}

impl Resolver {
    pub(crate) fn new(hosts: &BTreeMap<String, Vec<IpAddr>>) -> Result<Self, EgressError> {
        Ok(Self {
            hosts: hosts.clone(),
        })
    }
}
