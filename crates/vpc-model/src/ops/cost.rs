//! Prices metered data transfer as AWS bills it, and answers Cost Explorer
//! queries over it (`docs/metering.md`).
//!
//! The rates are data ([`RateTable`], parsed from `rates/aws-rates.json` or an
//! operator's file). The rules: traffic across a peering within one zone is
//! free; across zones in a region each side pays the regional rate for its
//! own side (the sender's out and the receiver's in); between regions the
//! sending side pays the rate of its (source, destination) pair and the
//! receiving side's `In` line is free; a NAT gateway charges processing on
//! every byte it handles; internet egress is charged, ingress free.
//!
//! Every function sees only the usage it is handed: callers pass one
//! account's records, so no account ever sees another's charges.

use crate::usage::{Date, TransferKind, Usage, UsageKey};
use crate::Fault;
use crate::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The one Cost Explorer SERVICE vpcd's charges appear under (AWS files
/// EC2 data transfer and NAT gateway bytes under it).
pub const SERVICE: &str = "EC2 - Other";

/// The rate table in the repository (`rates/aws-rates.json`), used unless
/// an operator names another file.
pub const DEFAULT_RATES: &str = include_str!("../../../../rates/aws-rates.json");

/// Per-GB prices and AWS's region billing codes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateTable {
    pub currency: String,
    /// Bytes in one billed GB (AWS: 2^30).
    pub bytes_per_gb: u64,
    /// Per GB, charged to each side, for peering traffic between zones of one region.
    pub cross_az_per_gb: f64,
    /// Per GB processed by a NAT gateway.
    pub nat_processing_per_gb: f64,
    /// Per GB out to the internet through an internet gateway.
    pub internet_out_per_gb: f64,
    /// Per GB sent to another region, when neither a pair nor the source region has its own rate.
    pub inter_region_default_per_gb: f64,
    /// Per GB sent from a region to any other, by source region.
    #[serde(default)]
    pub inter_region_from: BTreeMap<String, f64>,
    /// Per GB for one (source, destination) pair, keyed `source>destination`.
    #[serde(default)]
    pub inter_region_pairs: BTreeMap<String, f64>,
    /// AWS's billing code of each region (`us-east-1` → `USE1`), the prefix of usage types.
    pub billing_codes: BTreeMap<String, String>,
}

impl RateTable {
    /// Parses a rate file, refusing unknown fields and negative prices.
    pub fn parse(json: &str) -> Result<RateTable, String> {
        let t: RateTable = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let prices = [
            t.cross_az_per_gb,
            t.nat_processing_per_gb,
            t.internet_out_per_gb,
            t.inter_region_default_per_gb,
        ];
        if prices
            .iter()
            .chain(t.inter_region_from.values())
            .chain(t.inter_region_pairs.values())
            .any(|p| !p.is_finite() || *p < 0.0)
        {
            return Err("a price is negative or not a number".into());
        }
        if t.bytes_per_gb == 0 {
            return Err("bytes_per_gb must be positive".into());
        }
        if let Some(k) = t.inter_region_pairs.keys().find(|k| !k.contains('>')) {
            return Err(format!(
                "inter_region_pairs key {k:?} is not source>destination"
            ));
        }
        Ok(t)
    }

    /// Per GB sent from `src` to `dst` (different regions).
    pub fn inter_region(&self, src: &str, dst: &str) -> f64 {
        self.inter_region_pairs
            .get(&format!("{src}>{dst}"))
            .or_else(|| self.inter_region_from.get(src))
            .copied()
            .unwrap_or(self.inter_region_default_per_gb)
    }

    /// The billing code of a region; an unknown region gets its name upper-cased without dashes.
    pub fn code(&self, region: &str) -> String {
        self.billing_codes
            .get(region)
            .cloned()
            .unwrap_or_else(|| region.replace('-', "").to_ascii_uppercase())
    }

    pub fn gb(&self, bytes: u64) -> f64 {
        bytes as f64 / self.bytes_per_gb as f64
    }
}

/// How one usage record is billed.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// AWS's usage type, e.g. `USE1-DataTransfer-Regional-Bytes`; None for
    /// traffic AWS does not bill at all (within one zone).
    pub usage_type: Option<String>,
    /// Per GB.
    pub rate: f64,
    pub gb: f64,
    pub cost: f64,
}

/// Whether peering traffic stays in one zone (free).
pub fn same_zone(k: &UsageKey) -> bool {
    k.kind.is_peering() && k.region == k.peer_region && k.az == k.peer_az
}

/// Prices `bytes` of the traffic `k` describes, for the side that counted it.
pub fn charge(k: &UsageKey, bytes: u64, rates: &RateTable) -> Charge {
    let own = rates.code(&k.region);
    let (usage_type, rate) = match k.kind {
        TransferKind::PeeringOut | TransferKind::PeeringIn if same_zone(k) => (None, 0.0),
        TransferKind::PeeringOut | TransferKind::PeeringIn if k.region == k.peer_region => (
            Some(format!("{own}-DataTransfer-Regional-Bytes")),
            rates.cross_az_per_gb,
        ),
        TransferKind::PeeringOut => (
            Some(format!(
                "{own}-{}-AWS-Out-Bytes",
                rates.code(&k.peer_region)
            )),
            rates.inter_region(&k.region, &k.peer_region),
        ),
        TransferKind::PeeringIn => (
            Some(format!("{own}-{}-AWS-In-Bytes", rates.code(&k.peer_region))),
            0.0,
        ),
        TransferKind::InternetOut => (
            Some(format!("{own}-DataTransfer-Out-Bytes")),
            rates.internet_out_per_gb,
        ),
        TransferKind::InternetIn => (Some(format!("{own}-DataTransfer-In-Bytes")), 0.0),
        TransferKind::NatProcessed => (
            Some(format!("{own}-NatGateway-Bytes")),
            rates.nat_processing_per_gb,
        ),
    };
    let gb = rates.gb(bytes);
    Charge {
        usage_type,
        rate,
        gb,
        cost: gb * rate,
    }
}

/// One line of `vpcd cost`: a resource's traffic in one direction between two zones.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    pub key: UsageKey,
    pub bytes: u64,
    pub packets: u64,
    pub charge: Charge,
}

/// Sums usage over `[from, to)` per key and prices each sum (the rows of
/// `vpcd cost`, ordered by account, resource, kind and zones).
pub fn summarize(
    usage: &[Usage],
    from: Timestamp,
    to: Timestamp,
    rates: &RateTable,
) -> Vec<CostRow> {
    let mut sums: BTreeMap<&UsageKey, (u64, u64)> = BTreeMap::new();
    for u in usage.iter().filter(|u| u.hour >= from && u.hour < to) {
        let e = sums.entry(&u.key).or_default();
        e.0 += u.bytes;
        e.1 += u.packets;
    }
    sums.into_iter()
        .map(|(k, (bytes, packets))| CostRow {
            key: k.clone(),
            bytes,
            packets,
            charge: charge(k, bytes, rates),
        })
        .collect()
}

/// Cost Explorer's time buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Daily,
    Monthly,
}

/// The metrics `GetCostAndUsage` knows. Without discounts or reservations
/// every cost metric equals the unblended cost, and the normalized usage
/// amount equals the usage quantity.
pub const COST_METRICS: &[&str] = &[
    "AmortizedCost",
    "BlendedCost",
    "NetAmortizedCost",
    "NetUnblendedCost",
    "UnblendedCost",
];
pub const USAGE_METRICS: &[&str] = &["UsageQuantity", "NormalizedUsageAmount"];

/// The DIMENSION keys Cost Explorer groups by.
pub const GROUP_DIMENSIONS: &[&str] = &[
    "AZ",
    "INSTANCE_TYPE",
    "LEGAL_ENTITY_NAME",
    "INVOICING_ENTITY",
    "LINKED_ACCOUNT",
    "OPERATION",
    "PLATFORM",
    "PURCHASE_TYPE",
    "SERVICE",
    "TENANCY",
    "RECORD_TYPE",
    "USAGE_TYPE",
];

/// Further dimension keys a filter may name.
const FILTER_ONLY_DIMENSIONS: &[&str] = &["REGION", "USAGE_TYPE_GROUP"];

/// A `Filter` expression (the subset over dimensions).
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    And(Vec<Expression>),
    Or(Vec<Expression>),
    Not(Box<Expression>),
    Dimension {
        key: String,
        values: Vec<String>,
        match_options: Vec<String>,
    },
}

/// A `GetCostAndUsage` request, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct CostQuery {
    pub start: Date,
    /// Exclusive.
    pub end: Date,
    pub granularity: Granularity,
    pub metrics: Vec<String>,
    /// DIMENSION keys, at most two.
    pub group_by: Vec<String>,
    pub filter: Option<Expression>,
}

/// One metric's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Amount {
    pub amount: f64,
    pub unit: String,
}

/// One bucket of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub start: Date,
    pub end: Date,
    /// Empty when grouped (as AWS answers).
    pub total: BTreeMap<String, Amount>,
    pub groups: Vec<(Vec<String>, BTreeMap<String, Amount>)>,
    pub estimated: bool,
}

fn validation(msg: impl Into<String>) -> Fault {
    Fault::new("ValidationException", msg)
}

/// Checks the parts of a query that do not depend on usage.
pub fn validate(q: &CostQuery) -> Result<(), Fault> {
    if q.start >= q.end {
        return Err(validation(
            "Start date (and hour) should be before end date (and hour)",
        ));
    }
    if q.metrics.is_empty() {
        return Err(validation("Metrics is required"));
    }
    for m in &q.metrics {
        if !COST_METRICS.contains(&m.as_str()) && !USAGE_METRICS.contains(&m.as_str()) {
            return Err(validation(format!(
                "Invalid Metrics: {m}. Valid metrics are {}",
                [COST_METRICS, USAGE_METRICS].concat().join(", ")
            )));
        }
    }
    if q.group_by.len() > 2 {
        return Err(validation("Group By has more than 2 entries"));
    }
    for g in &q.group_by {
        if !GROUP_DIMENSIONS.contains(&g.as_str()) {
            return Err(validation(format!(
                "Group Definition dimension is invalid. Valid values are {}",
                GROUP_DIMENSIONS.join(", ")
            )));
        }
    }
    if let Some(f) = &q.filter {
        validate_expression(f)?;
    }
    Ok(())
}

fn validate_expression(e: &Expression) -> Result<(), Fault> {
    match e {
        Expression::And(v) | Expression::Or(v) => {
            if v.len() < 2 {
                return Err(validation(
                    "And and Or expressions must have at least 2 operands",
                ));
            }
            v.iter().try_for_each(validate_expression)
        }
        Expression::Not(inner) => validate_expression(inner),
        Expression::Dimension {
            key,
            values,
            match_options,
        } => {
            if !GROUP_DIMENSIONS.contains(&key.as_str())
                && !FILTER_ONLY_DIMENSIONS.contains(&key.as_str())
            {
                return Err(validation(format!("Dimension {key} is not allowed")));
            }
            if values.is_empty() && !match_options.iter().any(|m| m == "ABSENT") {
                return Err(validation(format!(
                    "Values for dimension {key} must not be empty"
                )));
            }
            for m in match_options {
                if !MATCH_OPTIONS.contains(&m.as_str()) {
                    return Err(validation(format!(
                        "Invalid MatchOptions {m}; valid values are {}",
                        MATCH_OPTIONS.join(", ")
                    )));
                }
            }
            Ok(())
        }
    }
}

const MATCH_OPTIONS: &[&str] = &[
    "EQUALS",
    "ABSENT",
    "STARTS_WITH",
    "ENDS_WITH",
    "CONTAINS",
    "CASE_SENSITIVE",
    "CASE_INSENSITIVE",
    "GREATER_THAN_OR_EQUAL",
];

/// One billed line: a usage record with its price and dimensions.
struct Item<'a> {
    usage: &'a Usage,
    usage_type: String,
    gb: f64,
    cost: f64,
}

impl Item<'_> {
    fn dimension(&self, key: &str) -> String {
        let k = &self.usage.key;
        match key {
            "SERVICE" => SERVICE.into(),
            "USAGE_TYPE" => self.usage_type.clone(),
            "REGION" => k.region.clone(),
            "AZ" if k.az.is_empty() => "NoAZ".into(),
            "AZ" => k.az.clone(),
            "LINKED_ACCOUNT" => k.account.clone(),
            "RECORD_TYPE" => "Usage".into(),
            "OPERATION" => match k.kind {
                TransferKind::PeeringOut if k.region == k.peer_region => "InterZone-Out",
                TransferKind::PeeringIn if k.region == k.peer_region => "InterZone-In",
                TransferKind::PeeringOut | TransferKind::InternetOut => "PublicIP-Out",
                TransferKind::PeeringIn | TransferKind::InternetIn => "PublicIP-In",
                TransferKind::NatProcessed => "NatGateway",
            }
            .into(),
            "USAGE_TYPE_GROUP" => match k.kind {
                TransferKind::PeeringOut | TransferKind::PeeringIn if k.region == k.peer_region => {
                    "EC2: Data Transfer - Inter AZ"
                }
                TransferKind::PeeringOut => "EC2: Data Transfer - Region to Region (Out)",
                TransferKind::PeeringIn => "EC2: Data Transfer - Region to Region (In)",
                TransferKind::InternetOut => "EC2: Data Transfer - Internet (Out)",
                TransferKind::InternetIn => "EC2: Data Transfer - Internet (In)",
                TransferKind::NatProcessed => "EC2: NAT Gateway - Data Processed",
            }
            .into(),
            "INSTANCE_TYPE" => "NoInstanceType".into(),
            "PLATFORM" => "NoPlatform".into(),
            "TENANCY" => "NoTenancy".into(),
            "PURCHASE_TYPE" => "On Demand Instances".into(),
            "LEGAL_ENTITY_NAME" | "INVOICING_ENTITY" => "Amazon Web Services, Inc.".into(),
            _ => String::new(),
        }
    }

    fn matches(&self, e: &Expression) -> bool {
        match e {
            Expression::And(v) => v.iter().all(|e| self.matches(e)),
            Expression::Or(v) => v.iter().any(|e| self.matches(e)),
            Expression::Not(inner) => !self.matches(inner),
            Expression::Dimension {
                key,
                values,
                match_options,
            } => {
                let have = self.dimension(key);
                let opt = |o: &str| match_options.iter().any(|m| m == o);
                if opt("ABSENT") {
                    return have.is_empty();
                }
                let ci = opt("CASE_INSENSITIVE");
                let norm = |s: &str| {
                    if ci {
                        s.to_ascii_lowercase()
                    } else {
                        s.to_string()
                    }
                };
                let have = norm(&have);
                values.iter().any(|v| {
                    let v = norm(v);
                    if opt("STARTS_WITH") {
                        have.starts_with(&v)
                    } else if opt("ENDS_WITH") {
                        have.ends_with(&v)
                    } else if opt("CONTAINS") {
                        have.contains(&v)
                    } else {
                        have == v
                    }
                })
            }
        }
    }
}

fn metric_amount(metric: &str, cost: f64, gb: f64, any: bool) -> Amount {
    if COST_METRICS.contains(&metric) {
        Amount {
            amount: cost,
            unit: "USD".into(),
        }
    } else {
        Amount {
            amount: gb,
            unit: if any { "GB" } else { "N/A" }.into(),
        }
    }
}

/// Answers a validated query over one account's usage. Traffic AWS does not
/// bill (within one zone) has no line; `now` decides which buckets are still
/// `Estimated`.
pub fn cost_and_usage(
    q: &CostQuery,
    usage: &[Usage],
    rates: &RateTable,
    now: Timestamp,
) -> Vec<Period> {
    let mut items = Vec::new();
    for u in usage {
        let c = charge(&u.key, u.bytes, rates);
        let Some(usage_type) = c.usage_type else {
            continue;
        };
        let item = Item {
            usage: u,
            usage_type,
            gb: c.gb,
            cost: c.cost,
        };
        if q.filter.as_ref().is_none_or(|f| item.matches(f)) {
            items.push(item);
        }
    }
    let mut periods = Vec::new();
    let mut start = q.start;
    while start < q.end {
        let next = match q.granularity {
            Granularity::Daily => start.next_day(),
            Granularity::Monthly => start.next_month(),
        };
        let end = next.min(q.end);
        let (from, to) = (start.start(), end.start());
        let inside: Vec<&Item> = items
            .iter()
            .filter(|i| i.usage.hour >= from && i.usage.hour < to)
            .collect();
        let amounts = |items: &[&Item]| -> BTreeMap<String, Amount> {
            let cost: f64 = items.iter().map(|i| i.cost).sum();
            let gb: f64 = items.iter().map(|i| i.gb).sum();
            q.metrics
                .iter()
                .map(|m| (m.clone(), metric_amount(m, cost, gb, !items.is_empty())))
                .collect()
        };
        let (total, groups) = if q.group_by.is_empty() {
            (amounts(&inside), Vec::new())
        } else {
            let mut by: BTreeMap<Vec<String>, Vec<&Item>> = BTreeMap::new();
            for i in &inside {
                let keys = q.group_by.iter().map(|g| i.dimension(g)).collect();
                by.entry(keys).or_default().push(i);
            }
            (
                BTreeMap::new(),
                by.into_iter().map(|(k, v)| (k, amounts(&v))).collect(),
            )
        };
        periods.push(Period {
            start,
            end,
            total,
            groups,
            estimated: to > now,
        });
        start = end;
    }
    periods
}

/// An amount as Cost Explorer writes it: a decimal string, at most ten places.
pub fn format_amount(v: f64) -> String {
    let s = format!("{v:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests;
