//! What an operation needs from the outside world, passed in explicitly.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, on the simulated clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const HOUR: i64 = 3_600_000;
    pub const DAY: i64 = 24 * Self::HOUR;

    pub fn plus_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0 + ms)
    }
}

/// Source of the random hex in resource IDs.
pub trait IdSource {
    /// Returns 17 lowercase hex digits.
    fn hex17(&mut self) -> String;
}

/// Deterministic IDs (1, 2, 3, … in hex), for tests and reproducible runs.
#[derive(Debug, Clone, Default)]
pub struct SeqIds(pub u64);

impl IdSource for SeqIds {
    fn hex17(&mut self) -> String {
        self.0 += 1;
        format!("{:017x}", self.0)
    }
}

/// Quotas and timings. AWS defaults; self-hosted operators may raise them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub vpcs_per_region: usize,
    pub subnets_per_vpc: usize,
    pub ipv4_cidrs_per_vpc: usize,
    pub ipv6_cidrs_per_vpc: usize,
    pub route_tables_per_vpc: usize,
    pub routes_per_table: usize,
    pub security_groups_per_region: usize,
    pub rules_per_security_group: usize,
    pub security_groups_per_eni: usize,
    pub network_acls_per_vpc: usize,
    pub rules_per_network_acl: usize,
    pub igws_per_region: usize,
    pub active_peerings_per_vpc: usize,
    pub outstanding_peerings_per_account: usize,
    pub tags_per_resource: usize,
    /// How long `initiating-request` and `provisioning` last, in ms.
    pub peering_transition_ms: i64,
    /// How long an unaccepted request lives (AWS: 7 days, not adjustable).
    pub peering_expiry_ms: i64,
    /// Instances not yet terminated, per account and region.
    pub instances_per_region: usize,
    /// The most instances one RunInstances call launches.
    pub instances_per_launch: usize,
    /// Network interfaces per account and region.
    pub network_interfaces_per_region: usize,
    /// Interfaces attached to one instance (the largest instance types' figure).
    pub interfaces_per_instance: usize,
    /// Private IPv4 addresses on one interface, the primary included.
    pub private_ips_per_eni: usize,
    /// IPv6 addresses on one interface.
    pub ipv6_per_eni: usize,
    /// Elastic IP addresses per account and region.
    pub elastic_ips_per_region: usize,
    /// NAT gateways (not deleted) per account and zone.
    pub nat_gateways_per_az: usize,
    /// How long `pending`, `stopping` and `shutting-down` (and a NAT
    /// gateway's `pending` and `deleting`) last, in ms.
    pub instance_transition_ms: i64,
    /// Customer-managed prefix lists per account and region.
    pub prefix_lists_per_region: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            vpcs_per_region: 5,
            subnets_per_vpc: 200,
            ipv4_cidrs_per_vpc: 5,
            ipv6_cidrs_per_vpc: 5,
            route_tables_per_vpc: 200,
            routes_per_table: 50,
            security_groups_per_region: 2500,
            // AWS's raised maximum (default 60): with 5 groups per interface
            // that is the 1,000 rules per interface self-hosted users expect.
            rules_per_security_group: 200,
            security_groups_per_eni: 5,
            network_acls_per_vpc: 200,
            rules_per_network_acl: 20,
            igws_per_region: 5,
            active_peerings_per_vpc: 50,
            outstanding_peerings_per_account: 25,
            tags_per_resource: 50,
            peering_transition_ms: 200,
            peering_expiry_ms: 7 * Timestamp::DAY,
            instances_per_region: 1000,
            instances_per_launch: 20,
            network_interfaces_per_region: 5000,
            interfaces_per_instance: 15,
            private_ips_per_eni: 50,
            ipv6_per_eni: 50,
            elastic_ips_per_region: 5,
            nat_gateways_per_az: 5,
            instance_transition_ms: 200,
            prefix_lists_per_region: 100,
        }
    }
}

impl Limits {
    /// The `relaxed` quota profile for test suites written against an
    /// emulator: counts raised far beyond AWS's defaults and no delay in any
    /// state transition (a peering is `pending-acceptance` and then `active`,
    /// an instance `running`, a NAT gateway `available` at once). Limits AWS
    /// does not let anyone raise (tags per resource, the peering expiry) and
    /// the per-instance network limits stay as they are.
    pub fn relaxed() -> Limits {
        Limits {
            vpcs_per_region: 10_000,
            ipv4_cidrs_per_vpc: 50,
            route_tables_per_vpc: 10_000,
            routes_per_table: 1_000,
            security_groups_per_region: 100_000,
            rules_per_security_group: 1_000,
            security_groups_per_eni: 16,
            network_acls_per_vpc: 10_000,
            rules_per_network_acl: 40,
            igws_per_region: 10_000,
            active_peerings_per_vpc: 125,
            outstanding_peerings_per_account: 10_000,
            peering_transition_ms: 0,
            instances_per_region: 100_000,
            network_interfaces_per_region: 100_000,
            elastic_ips_per_region: 10_000,
            nat_gateways_per_az: 10_000,
            instance_transition_ms: 0,
            prefix_lists_per_region: 10_000,
            ..Limits::default()
        }
    }

    /// These limits with the fields a JSON object names replaced (a
    /// `--limits` file over a profile).
    pub fn with_overrides(self, json: &str) -> Result<Limits, serde_json::Error> {
        let mut merged = serde_json::to_value(self)?;
        let overrides: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)?;
        if let serde_json::Value::Object(fields) = &mut merged {
            for (k, v) in overrides {
                if !fields.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!("unknown limit {k:?}")));
                }
                fields.insert(k, v);
            }
        }
        serde_json::from_value(merged)
    }
}

/// The caller and its surroundings for one operation.
pub struct Ctx<'a> {
    /// The 12-digit account the request is authenticated as.
    pub account: String,
    /// The region from the request's credential scope.
    pub region: String,
    /// Now, on the simulated clock.
    pub now: Timestamp,
    pub ids: &'a mut dyn IdSource,
    pub limits: &'a Limits,
    /// The region's zones as (name, id), e.g. (`us-east-1a`, `use1-az1`).
    pub zones: &'a [(String, String)],
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("account", &self.account)
            .field("region", &self.region)
            .field("now", &self.now)
            .finish()
    }
}

impl Ctx<'_> {
    /// A fresh 17-hex-digit ID with the given prefix, e.g. `vpc`.
    pub fn new_id(&mut self, prefix: &str) -> String {
        format!("{prefix}-{}", self.ids.hex17())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limits_file_overrides_the_profile_field_by_field() {
        let l = Limits::relaxed()
            .with_overrides(r#"{"vpcs_per_region": 7}"#)
            .unwrap();
        assert_eq!(l.vpcs_per_region, 7);
        assert_eq!(l.peering_transition_ms, 0);
        assert_eq!(l.tags_per_resource, Limits::default().tags_per_resource);
        let d = Limits::default().with_overrides("{}").unwrap();
        assert_eq!(d, Limits::default());
        let e = Limits::default()
            .with_overrides(r#"{"vpcs_per_regoin": 7}"#)
            .unwrap_err();
        assert!(e.to_string().contains("vpcs_per_regoin"), "{e}");
        assert!(Limits::default()
            .with_overrides(r#"{"vpcs_per_region": -1}"#)
            .is_err());
    }
}
