//! The records of DHCP options sets and Route 53 private hosted zones.
//!
//! Kept apart from `types.rs` (the VPC resources) because they are read by
//! the resolver configuration and the DNS server only; the data plane's
//! planner reads none of them.

use crate::ctx::Timestamp;
use crate::types::Meta;
use serde::{Deserialize, Serialize};

/// One option of a DHCP options set: a key and its values, as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpOption {
    pub key: String,
    pub values: Vec<String>,
}

/// A DHCP options set (`dopt-…`). Immutable but for its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpOptions {
    pub meta: Meta,
    /// The options in AWS's key order (`ops::dhcp::KEYS`).
    pub options: Vec<DhcpOption>,
}

impl DhcpOptions {
    /// The values of one key (empty when the set does not have it).
    pub fn values(&self, key: &str) -> &[String] {
        self.options
            .iter()
            .find(|o| o.key == key)
            .map_or(&[], |o| o.values.as_slice())
    }
}

/// A VPC a hosted zone is associated with (or authorized for).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ZoneVpc {
    pub region: String,
    pub vpc_id: String,
}

/// An alias target: the name another record (or an instance) answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasTarget {
    /// The hosted zone ID given with the alias.
    pub hosted_zone_id: String,
    /// The DNS name the alias resolves as (lower case, with a trailing dot).
    pub dns_name: String,
    pub evaluate_target_health: bool,
}

/// One resource record set of a hosted zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSet {
    /// Lower case, with a trailing dot.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT`, `SRV`, `MX`, `PTR`, `NS`, `SOA`, …
    pub rtype: String,
    pub ttl: Option<u32>,
    /// Values as Route 53 shows them (`ResourceRecord/Value`).
    pub values: Vec<String>,
    pub alias: Option<AliasTarget>,
}

/// A Route 53 hosted zone (`Z…`). Global: `meta.region` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedZone {
    pub meta: Meta,
    /// Lower case, with a trailing dot.
    pub name: String,
    pub caller_reference: String,
    pub comment: Option<String>,
    pub private: bool,
    /// The associated VPCs (private zones: at least one).
    pub vpcs: Vec<ZoneVpc>,
    /// VPCs of other accounts the owner allowed to associate.
    pub authorizations: Vec<ZoneVpc>,
    /// Every record set, the apex SOA and NS included, in Route 53's order.
    pub records: Vec<RecordSet>,
}

/// A submitted Route 53 change (`C…`), for `GetChange`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneChange {
    pub id: String,
    pub owner: String,
    pub submitted: Timestamp,
    pub comment: Option<String>,
}
