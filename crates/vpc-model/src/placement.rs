//! Hosts and placement, when several hosts realize one World (`vpcd agent`,
//! `docs/cluster.md`, "Placement"): what an agent registers, and the one
//! rule that says which host serves a zone. The data plane places
//! instances with it and DescribeInstances shows it (`Placement.HostId`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// What an agent registers in the store (setting `host/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub name: String,
    /// The availability zones it offers to serve.
    pub zones: Vec<String>,
    /// Its address on the underlay (the VXLAN tunnels' endpoint).
    pub underlay: Ipv4Addr,
    /// The data-plane tag of its namespaces (kept across agent restarts).
    pub tag: String,
    /// The agent's process id.
    pub pid: u32,
}

/// Registered hosts by name.
pub type Hosts = BTreeMap<String, HostRecord>;

/// The prefix of every host registration's setting key.
pub const HOST_KEY_PREFIX: &str = "host/";

/// The setting key of a host's registration.
pub fn host_key(name: &str) -> String {
    format!("{HOST_KEY_PREFIX}{name}")
}

/// The host serving a zone: the first host, by name, whose registration
/// lists it. One host per zone, so all instances of a subnet share a host.
pub fn host_of_zone<'h>(hosts: &'h Hosts, zone: &str) -> Option<&'h HostRecord> {
    hosts.values().find(|h| h.zones.iter().any(|z| z == zone))
}

/// Every readable registration among `(key, value)` settings.
pub fn parse_hosts(settings: &[(String, String)]) -> Hosts {
    settings
        .iter()
        .filter(|(k, _)| k.starts_with(HOST_KEY_PREFIX))
        .filter_map(|(_, v)| serde_json::from_str::<HostRecord>(v).ok())
        .map(|h| (h.name.clone(), h))
        .collect()
}
