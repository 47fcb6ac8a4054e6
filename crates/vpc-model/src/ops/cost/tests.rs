use super::*;
use crate::usage::{TransferKind, Usage, UsageKey};

const GB: u64 = 1 << 30;

fn rates() -> RateTable {
    RateTable::parse(DEFAULT_RATES).expect("the repository's rate table parses")
}

fn key(kind: TransferKind, region: &str, az: &str, peer_region: &str, peer_az: &str) -> UsageKey {
    UsageKey {
        account: "111111111111".into(),
        region: region.into(),
        vpc_id: "vpc-1".into(),
        resource_id: "pcx-1".into(),
        kind,
        az: az.into(),
        peer_region: peer_region.into(),
        peer_az: peer_az.into(),
    }
}

fn usage(k: UsageKey, day: &str, bytes: u64) -> Usage {
    Usage {
        key: k,
        hour: Timestamp(Date::parse(day).unwrap().start().0 + 5 * Timestamp::HOUR),
        bytes,
        packets: bytes / 9000,
    }
}

#[test]
fn same_zone_peering_traffic_is_free_and_has_no_usage_type() {
    for kind in [TransferKind::PeeringOut, TransferKind::PeeringIn] {
        let c = charge(
            &key(kind, "us-east-1", "us-east-1a", "us-east-1", "us-east-1a"),
            10 * GB,
            &rates(),
        );
        assert_eq!(c.usage_type, None);
        assert_eq!(c.cost, 0.0);
    }
}

#[test]
fn cross_zone_traffic_costs_each_side_the_regional_rate() {
    let r = rates();
    let out = charge(
        &key(
            TransferKind::PeeringOut,
            "us-east-1",
            "us-east-1a",
            "us-east-1",
            "us-east-1b",
        ),
        3 * GB,
        &r,
    );
    let inn = charge(
        &key(
            TransferKind::PeeringIn,
            "us-east-1",
            "us-east-1b",
            "us-east-1",
            "us-east-1a",
        ),
        3 * GB,
        &r,
    );
    for c in [&out, &inn] {
        assert_eq!(
            c.usage_type.as_deref(),
            Some("USE1-DataTransfer-Regional-Bytes")
        );
        assert!((c.cost - 0.03).abs() < 1e-12, "{c:?}");
    }
}

#[test]
fn inter_region_traffic_costs_the_sender_its_pair_rate_and_the_receiver_nothing() {
    let r = rates();
    let out = charge(
        &key(
            TransferKind::PeeringOut,
            "us-east-1",
            "us-east-1a",
            "us-west-2",
            "us-west-2a",
        ),
        2 * GB,
        &r,
    );
    assert_eq!(out.usage_type.as_deref(), Some("USE1-USW2-AWS-Out-Bytes"));
    assert!((out.cost - 0.04).abs() < 1e-12);
    let pair = charge(
        &key(
            TransferKind::PeeringOut,
            "us-east-2",
            "us-east-2a",
            "us-east-1",
            "us-east-1a",
        ),
        2 * GB,
        &r,
    );
    assert!(
        (pair.cost - 0.02).abs() < 1e-12,
        "us-east-2 > us-east-1 has its own rate"
    );
    let from_sa = charge(
        &key(
            TransferKind::PeeringOut,
            "sa-east-1",
            "sa-east-1a",
            "us-east-1",
            "us-east-1a",
        ),
        GB,
        &r,
    );
    assert!(
        (from_sa.cost - 0.138).abs() < 1e-12,
        "the source region's rate"
    );
    let inn = charge(
        &key(
            TransferKind::PeeringIn,
            "us-west-2",
            "us-west-2a",
            "us-east-1",
            "us-east-1a",
        ),
        2 * GB,
        &r,
    );
    assert_eq!(inn.usage_type.as_deref(), Some("USW2-USE1-AWS-In-Bytes"));
    assert_eq!(inn.cost, 0.0);
}

#[test]
fn nat_and_internet_bytes_are_priced() {
    let r = rates();
    let nat = charge(
        &key(TransferKind::NatProcessed, "eu-west-1", "", "", ""),
        GB,
        &r,
    );
    assert_eq!(nat.usage_type.as_deref(), Some("EU-NatGateway-Bytes"));
    assert!((nat.cost - 0.045).abs() < 1e-12);
    let out = charge(
        &key(TransferKind::InternetOut, "us-east-1", "", "", ""),
        GB,
        &r,
    );
    assert_eq!(
        out.usage_type.as_deref(),
        Some("USE1-DataTransfer-Out-Bytes")
    );
    assert!((out.cost - 0.09).abs() < 1e-12);
    let inn = charge(
        &key(TransferKind::InternetIn, "us-east-1", "", "", ""),
        GB,
        &r,
    );
    assert_eq!(inn.cost, 0.0);
}

#[test]
fn bad_rate_tables_are_refused() {
    assert!(RateTable::parse("{}").is_err());
    let neg = DEFAULT_RATES.replace("\"cross_az_per_gb\": 0.01", "\"cross_az_per_gb\": -1");
    assert!(RateTable::parse(&neg).unwrap_err().contains("negative"));
    let unknown = DEFAULT_RATES.replacen('{', "{\"surprise\": 1,", 1);
    assert!(RateTable::parse(&unknown).unwrap_err().contains("surprise"));
    let cheaper = DEFAULT_RATES.replace("\"cross_az_per_gb\": 0.01", "\"cross_az_per_gb\": 0.5");
    let r = RateTable::parse(&cheaper).unwrap();
    let c = charge(
        &key(
            TransferKind::PeeringOut,
            "us-east-1",
            "us-east-1a",
            "us-east-1",
            "us-east-1c",
        ),
        GB,
        &r,
    );
    assert!((c.cost - 0.5).abs() < 1e-12, "the file decides the price");
}

fn query(start: &str, end: &str, g: Granularity, group_by: &[&str]) -> CostQuery {
    CostQuery {
        start: Date::parse(start).unwrap(),
        end: Date::parse(end).unwrap(),
        granularity: g,
        metrics: vec!["UnblendedCost".into(), "UsageQuantity".into()],
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        filter: None,
    }
}

fn sample() -> Vec<Usage> {
    vec![
        usage(
            key(
                TransferKind::PeeringOut,
                "us-east-1",
                "us-east-1a",
                "us-east-1",
                "us-east-1b",
            ),
            "2026-11-03",
            2 * GB,
        ),
        usage(
            key(
                TransferKind::PeeringOut,
                "us-east-1",
                "us-east-1a",
                "us-east-1",
                "us-east-1a",
            ),
            "2026-11-03",
            5 * GB,
        ),
        usage(
            key(
                TransferKind::PeeringOut,
                "us-east-1",
                "us-east-1a",
                "us-west-2",
                "us-west-2a",
            ),
            "2026-11-04",
            GB,
        ),
        usage(
            key(TransferKind::NatProcessed, "us-east-1", "", "", ""),
            "2026-12-01",
            GB,
        ),
    ]
}

#[test]
fn daily_buckets_sum_what_falls_in_them_and_same_zone_has_no_line() {
    let now = Date::parse("2026-12-10").unwrap().start();
    let p = cost_and_usage(
        &query("2026-11-03", "2026-11-05", Granularity::Daily, &[]),
        &sample(),
        &rates(),
        now,
    );
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].start.to_string(), "2026-11-03");
    assert!((p[0].total["UnblendedCost"].amount - 0.02).abs() < 1e-12);
    assert!(
        (p[0].total["UsageQuantity"].amount - 2.0).abs() < 1e-12,
        "same-zone bytes are not billed usage"
    );
    assert_eq!(p[0].total["UsageQuantity"].unit, "GB");
    assert!((p[1].total["UnblendedCost"].amount - 0.02).abs() < 1e-12);
    assert!(!p[0].estimated);
}

#[test]
fn monthly_buckets_follow_the_calendar_and_clip_to_the_end() {
    let now = Date::parse("2026-12-10").unwrap().start();
    let p = cost_and_usage(
        &query(
            "2026-11-01",
            "2026-12-15",
            Granularity::Monthly,
            &["USAGE_TYPE"],
        ),
        &sample(),
        &rates(),
        now,
    );
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0].start.to_string(), p[0].end.to_string()),
        ("2026-11-01".into(), "2026-12-01".into())
    );
    assert_eq!(p[1].end.to_string(), "2026-12-15");
    assert!(p[1].estimated, "a bucket reaching past now is an estimate");
    assert!(p[0].total.is_empty(), "grouped answers have an empty Total");
    let keys: Vec<&str> = p[0].groups.iter().map(|(k, _)| k[0].as_str()).collect();
    assert_eq!(
        keys,
        [
            "USE1-DataTransfer-Regional-Bytes",
            "USE1-USW2-AWS-Out-Bytes"
        ]
    );
    assert_eq!(p[1].groups[0].0, ["USE1-NatGateway-Bytes"]);
}

#[test]
fn filters_select_by_dimension() {
    let now = Date::parse("2026-12-10").unwrap().start();
    let mut q = query(
        "2026-11-01",
        "2026-12-01",
        Granularity::Monthly,
        &["SERVICE", "USAGE_TYPE"],
    );
    q.filter = Some(Expression::Dimension {
        key: "USAGE_TYPE".into(),
        values: vec!["USE1-USW2-AWS-Out-Bytes".into()],
        match_options: vec![],
    });
    let p = cost_and_usage(&q, &sample(), &rates(), now);
    assert_eq!(p[0].groups.len(), 1);
    assert_eq!(p[0].groups[0].0, [SERVICE, "USE1-USW2-AWS-Out-Bytes"]);
    q.filter = Some(Expression::Not(Box::new(Expression::Dimension {
        key: "USAGE_TYPE".into(),
        values: vec!["usw2".into()],
        match_options: vec!["CONTAINS".into(), "CASE_INSENSITIVE".into()],
    })));
    let p = cost_and_usage(&q, &sample(), &rates(), now);
    assert_eq!(p[0].groups.len(), 1);
    assert_eq!(p[0].groups[0].0[1], "USE1-DataTransfer-Regional-Bytes");
}

#[test]
fn invalid_queries_are_validation_errors() {
    let ok = query("2026-11-01", "2026-12-01", Granularity::Daily, &["SERVICE"]);
    assert!(validate(&ok).is_ok());
    let mut q = ok.clone();
    q.end = q.start;
    assert_eq!(validate(&q).unwrap_err().code, "ValidationException");
    let mut q = ok.clone();
    q.metrics = vec!["Dollars".into()];
    assert!(validate(&q).unwrap_err().message.contains("Dollars"));
    let mut q = ok.clone();
    q.group_by = vec!["SERVICE".into(), "AZ".into(), "USAGE_TYPE".into()];
    assert!(validate(&q).is_err());
    let mut q = ok.clone();
    q.group_by = vec!["COLOUR".into()];
    assert!(validate(&q).is_err());
    let mut q = ok;
    q.filter = Some(Expression::And(vec![Expression::Dimension {
        key: "SERVICE".into(),
        values: vec![SERVICE.into()],
        match_options: vec![],
    }]));
    assert!(validate(&q).is_err(), "And needs two operands");
}

#[test]
fn summaries_add_up_per_key_within_the_window() {
    let s = sample();
    let from = Date::parse("2026-11-01").unwrap().start();
    let to = Date::parse("2026-12-01").unwrap().start();
    let mut more = s.clone();
    more.push(s[0].clone());
    let rows = summarize(&more, from, to, &rates());
    assert_eq!(rows.len(), 3, "NAT usage is outside the window");
    let cross = rows.iter().find(|r| r.key.peer_az == "us-east-1b").unwrap();
    assert_eq!(cross.bytes, 4 * GB);
    assert!((cross.charge.cost - 0.04).abs() < 1e-12);
}

#[test]
fn amounts_print_as_aws_decimal_strings() {
    assert_eq!(format_amount(0.0), "0");
    assert_eq!(format_amount(0.04), "0.04");
    assert_eq!(format_amount(1.0), "1");
    assert_eq!(format_amount(0.000_000_123_456_7), "0.0000001235");
}
