//! VPC flow logs: CreateFlowLogs, DescribeFlowLogs' lookups, DeleteFlowLogs,
//! the record formats and the S3 object-key layout.
//!
//! The records themselves are measured by the data plane
//! (`vpc_dataplane::flow_log`); this module only says which interfaces a
//! flow log covers and how a measured record is written.

use super::{new_meta, IdKind, SUBNET, VPC};
use crate::fault::Fault;
use crate::types::{FlowLog, NetworkInterface, Tags};
use crate::{Ctx, World};
use std::net::IpAddr;

type Result<T> = std::result::Result<T, Fault>;

pub const FLOW_LOG: IdKind = IdKind {
    prefix: "fl",
    malformed: "InvalidFlowLogId.Malformed",
    not_found: "InvalidFlowLogId.NotFound",
    noun: "flow log",
};

pub const ENI: IdKind = IdKind {
    prefix: "eni",
    malformed: "InvalidNetworkInterfaceID.Malformed",
    not_found: "InvalidNetworkInterfaceID.NotFound",
    noun: "network interface",
};

/// The default format: the version 2 fields in order.
pub const DEFAULT_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

/// vpcd's own field: the security group or network ACL that dropped a
/// REJECT record's packets (`-` for ACCEPT records).
pub const DROPPED_BY_FIELD: &str = "vpcd-dropped-by";

/// Every field a `LogFormat` may name, with the version that added it.
pub const FIELDS: &[(&str, u8)] = &[
    ("version", 2),
    ("account-id", 2),
    ("interface-id", 2),
    ("srcaddr", 2),
    ("dstaddr", 2),
    ("srcport", 2),
    ("dstport", 2),
    ("protocol", 2),
    ("packets", 2),
    ("bytes", 2),
    ("start", 2),
    ("end", 2),
    ("action", 2),
    ("log-status", 2),
    ("vpc-id", 3),
    ("subnet-id", 3),
    ("instance-id", 3),
    ("tcp-flags", 3),
    ("type", 3),
    ("pkt-srcaddr", 3),
    ("pkt-dstaddr", 3),
    ("region", 4),
    ("az-id", 4),
    ("sublocation-type", 4),
    ("sublocation-id", 4),
    ("pkt-src-aws-service", 5),
    ("pkt-dst-aws-service", 5),
    ("flow-direction", 5),
    ("traffic-path", 5),
    (DROPPED_BY_FIELD, 2),
];

/// The fields of a `LogFormat`, in order.
pub fn parse_format(format: &str) -> Result<Vec<String>> {
    let bad = |why: String| Fault::new("InvalidParameter", format!("Invalid LogFormat: {why}"));
    let mut out = Vec::new();
    for item in format.split(' ').filter(|s| !s.is_empty()) {
        let name = item
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| bad(format!("'{item}' is not of the form ${{field}}")))?;
        if !FIELDS.iter().any(|(f, _)| *f == name) {
            return Err(bad(format!("unknown field ${{{name}}}")));
        }
        out.push(name.to_string());
    }
    if out.is_empty() {
        return Err(bad("no fields".to_string()));
    }
    Ok(out)
}

/// A record's `version`: the highest version among its fields.
pub fn format_version(fields: &[String]) -> u8 {
    fields
        .iter()
        .filter_map(|f| FIELDS.iter().find(|(n, _)| n == f).map(|(_, v)| *v))
        .max()
        .unwrap_or(2)
}

/// An S3 destination ARN's bucket and folder (without slashes at its ends).
pub fn parse_s3_arn(arn: &str) -> Result<(String, String)> {
    let bad = || {
        Fault::new(
            "InvalidParameter",
            format!("LogDestination: {arn} is not a valid S3 ARN."),
        )
    };
    let rest = arn.strip_prefix("arn:aws:s3:::").ok_or_else(bad)?;
    let (bucket, folder) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !bucket_ok {
        return Err(bad());
    }
    let folder = folder.trim_matches('/');
    if folder.split('/').any(|part| part == "." || part == "..")
        || folder.contains("//")
        || folder.contains('\0')
    {
        return Err(bad());
    }
    if folder == "AWSLogs" || folder.starts_with("AWSLogs/") {
        return Err(Fault::new(
            "InvalidParameter",
            "LogDestination: the folder name AWSLogs is reserved.",
        ));
    }
    Ok((bucket.to_string(), folder.to_string()))
}

/// A `local-file` destination's name: one path component of letters,
/// digits, `.`, `_` and `-`, not starting with a dot.
pub fn check_local_file(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Fault::new(
            "InvalidParameter",
            format!("LogDestination: {name} is not a valid local file name (letters, digits, '.', '_' and '-'; it is written under the data directory's flow-logs/files/)."),
        ))
    }
}

/// CreateFlowLogs' parameters, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateFlowLogs {
    pub resource_ids: Vec<String>,
    pub resource_type: Option<String>,
    pub traffic_type: Option<String>,
    pub destination_type: Option<String>,
    pub destination: Option<String>,
    pub log_group_name: Option<String>,
    pub deliver_logs_permission_arn: Option<String>,
    pub log_format: Option<String>,
    pub max_aggregation_interval: Option<i64>,
    pub tags: Tags,
    pub client_token: Option<String>,
}

/// What CreateFlowLogs made, and each resource it could not cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Created {
    pub flow_logs: Vec<FlowLog>,
    /// (resource ID, why).
    pub unsuccessful: Vec<(String, Fault)>,
}

fn trimmed(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// CreateFlowLogs: one flow log per resource; a resource that does not
/// exist or already has the same flow log is an unsuccessful item.
pub fn create(w: &mut World, ctx: &mut Ctx<'_>, req: CreateFlowLogs) -> Result<Created> {
    if req.resource_ids.is_empty() {
        return Err(Fault::missing("ResourceId"));
    }
    let resource_type =
        trimmed(&req.resource_type).ok_or_else(|| Fault::missing("ResourceType"))?;
    let kind = match resource_type {
        "VPC" => VPC,
        "Subnet" => SUBNET,
        "NetworkInterface" => ENI,
        "TransitGateway" | "TransitGatewayAttachment" => {
            return Err(Fault::new(
                "InvalidParameter",
                format!("vpcd has no transit gateways: ResourceType {resource_type} is not supported."),
            ))
        }
        other => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter ResourceType is invalid. Valid values: VPC, Subnet, NetworkInterface."
            )))
        }
    };
    let traffic_type = match trimmed(&req.traffic_type) {
        None => "ALL",
        Some(t @ ("ACCEPT" | "REJECT" | "ALL")) => t,
        Some(other) => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter TrafficType is invalid. Valid values: ACCEPT, REJECT, ALL."
            )))
        }
    };
    let destination_type = trimmed(&req.destination_type).unwrap_or("cloud-watch-logs");
    let destination = match destination_type {
        "cloud-watch-logs" => {
            if trimmed(&req.deliver_logs_permission_arn).is_none() {
                return Err(Fault::new(
                    "InvalidParameter",
                    "DeliverLogsPermissionArn can't be empty if LogDestinationType is cloud-watch-logs.",
                ));
            }
            return Err(Fault::new(
                "InvalidParameter",
                "vpcd does not deliver flow logs to CloudWatch Logs: use LogDestinationType s3 or local-file.",
            ));
        }
        "kinesis-data-firehose" => {
            return Err(Fault::new(
                "InvalidParameter",
                "vpcd does not deliver flow logs to Kinesis Data Firehose: use LogDestinationType s3 or local-file.",
            ))
        }
        "s3" | "local-file" => {
            if trimmed(&req.log_group_name).is_some() {
                return Err(Fault::new(
                    "InvalidParameter",
                    format!("LogGroupName can't be specified if LogDestinationType is {destination_type}."),
                ));
            }
            let d = trimmed(&req.destination).ok_or_else(|| {
                Fault::new(
                    "InvalidParameter",
                    format!("LogDestination can't be empty if LogDestinationType is {destination_type}."),
                )
            })?;
            if destination_type == "s3" {
                parse_s3_arn(d)?;
            } else {
                check_local_file(d)?;
            }
            d.to_string()
        }
        other => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter LogDestinationType is invalid. Valid values: s3, local-file (vpcd), cloud-watch-logs, kinesis-data-firehose."
            )))
        }
    };
    let log_format = match trimmed(&req.log_format) {
        None => DEFAULT_FORMAT.to_string(),
        Some(f) => {
            parse_format(f)?;
            f.to_string()
        }
    };
    let interval = match req.max_aggregation_interval {
        None => 600,
        Some(60) => 60,
        Some(600) => 600,
        Some(_) => {
            return Err(Fault::new(
                "InvalidParameter",
                "Invalid Flow Log Max Aggregation Interval",
            ))
        }
    };
    let token = trimmed(&req.client_token).map(str::to_string);
    if let Some(t) = &token {
        let same: Vec<FlowLog> = w
            .scoped::<FlowLog>(&ctx.account, &ctx.region)
            .filter(|f| f.client_token.as_deref() == Some(t.as_str()))
            .cloned()
            .collect();
        if !same.is_empty() {
            return Ok(Created {
                flow_logs: same,
                unsuccessful: Vec::new(),
            });
        }
    }
    let mut ids = req.resource_ids.clone();
    ids.dedup();
    let mut out = Created::default();
    for id in ids {
        let id = id.trim().to_string();
        if let Err(e) = check_resource(w, ctx, kind, &id) {
            out.unsuccessful.push((id, e));
            continue;
        }
        let exists = w.scoped::<FlowLog>(&ctx.account, &ctx.region).any(|f| {
            f.resource_id == id
                && f.destination_type == destination_type
                && f.destination == destination
                && f.traffic_type == traffic_type
                && f.log_format == log_format
        });
        if exists {
            out.unsuccessful.push((
                id,
                Fault::new(
                    "FlowLogAlreadyExists",
                    "Error. There is an existing Flow Log with the same configuration and log destination.",
                ),
            ));
            continue;
        }
        let fl = FlowLog {
            meta: new_meta(ctx, "fl", req.tags.clone()),
            resource_id: id,
            resource_type: resource_type.to_string(),
            traffic_type: traffic_type.to_string(),
            destination_type: destination_type.to_string(),
            destination: destination.clone(),
            log_format: log_format.clone(),
            max_aggregation_interval: interval,
            client_token: token.clone(),
        };
        w.put(fl.clone());
        out.flow_logs.push(fl);
    }
    Ok(out)
}

fn check_resource(w: &World, ctx: &Ctx<'_>, kind: IdKind, id: &str) -> Result<()> {
    let nf = kind.nf(id)?;
    let (a, r) = (ctx.account.as_str(), ctx.region.as_str());
    let found = match kind.prefix {
        "vpc" => w.owned::<crate::Vpc>(id, a, r, nf).is_ok(),
        "subnet" => w.owned::<crate::Subnet>(id, a, r, nf).is_ok(),
        _ => w.owned::<NetworkInterface>(id, a, r, nf).is_ok(),
    };
    if found {
        Ok(())
    } else {
        Err(kind.not_found(id))
    }
}

/// DeleteFlowLogs: deletes the caller's flow logs among `ids`; every other
/// ID is an unsuccessful item, as AWS answers.
pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, ids: &[String]) -> Result<Vec<(String, Fault)>> {
    if ids.is_empty() {
        return Err(Fault::missing("FlowLogId"));
    }
    let mut unsuccessful = Vec::new();
    for id in ids {
        let mine = w
            .get::<FlowLog>(id)
            .is_some_and(|f| f.meta.owner == ctx.account && f.meta.region == ctx.region);
        if mine {
            w.remove::<FlowLog>(id);
        } else {
            unsuccessful.push((
                id.clone(),
                Fault::new(
                    FLOW_LOG.not_found,
                    format!(
                        "These flow log ids in the input list are not found: [TotalCount: 1] {id}"
                    ),
                ),
            ));
        }
    }
    Ok(unsuccessful)
}

/// Whether a flow log covers `eni` (its VPC, its subnet, or itself).
pub fn covers(fl: &FlowLog, eni: &NetworkInterface) -> bool {
    fl.meta.owner == eni.meta.owner
        && fl.meta.region == eni.meta.region
        && match fl.resource_type.as_str() {
            "VPC" => fl.resource_id == eni.vpc_id,
            "Subnet" => fl.resource_id == eni.subnet_id,
            _ => fl.resource_id == eni.meta.id,
        }
}

/// Whether a flow log records `action` (`ACCEPT` or `REJECT`).
pub fn records(fl: &FlowLog, action: &str) -> bool {
    fl.traffic_type == "ALL" || fl.traffic_type == action
}

/// One aggregated flow record, as measured on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub account_id: String,
    pub interface_id: String,
    /// On the interface's side, its primary private IPv4.
    pub srcaddr: IpAddr,
    pub dstaddr: IpAddr,
    /// The addresses on the packet itself.
    pub pkt_srcaddr: IpAddr,
    pub pkt_dstaddr: IpAddr,
    /// Ports for TCP/UDP (ICMP: 0).
    pub srcport: u16,
    pub dstport: u16,
    pub protocol: u8,
    pub packets: u64,
    pub bytes: u64,
    /// Unix seconds of the first and last packet in the window.
    pub start: i64,
    pub end: i64,
    /// `ACCEPT` or `REJECT`.
    pub action: &'static str,
    pub vpc_id: String,
    pub subnet_id: String,
    pub instance_id: Option<String>,
    /// ORed TCP flags seen (FIN 1, SYN 2, RST 4, SYN-ACK 18), for TCP.
    pub tcp_flags: Option<u8>,
    pub region: String,
    pub az_id: String,
    /// `ingress` or `egress`, relative to the interface.
    pub ingress: bool,
    /// AWS's traffic-path code, for egress records.
    pub traffic_path: Option<u8>,
    /// The security group or network ACL that dropped the packets.
    pub dropped_by: Option<String>,
}

/// The header line of a file (the field names in format order).
pub fn header(fields: &[String]) -> String {
    fields.join(" ")
}

/// One record line in the given fields.
pub fn render(fields: &[String], r: &FlowRecord) -> String {
    let dash = || "-".to_string();
    let version = format_version(fields);
    fields
        .iter()
        .map(|f| match f.as_str() {
            "version" => version.to_string(),
            "account-id" => r.account_id.clone(),
            "interface-id" => r.interface_id.clone(),
            "srcaddr" => r.srcaddr.to_string(),
            "dstaddr" => r.dstaddr.to_string(),
            "srcport" => r.srcport.to_string(),
            "dstport" => r.dstport.to_string(),
            "protocol" => r.protocol.to_string(),
            "packets" => r.packets.to_string(),
            "bytes" => r.bytes.to_string(),
            "start" => r.start.to_string(),
            "end" => r.end.to_string(),
            "action" => r.action.to_string(),
            "log-status" => "OK".to_string(),
            "vpc-id" => r.vpc_id.clone(),
            "subnet-id" => r.subnet_id.clone(),
            "instance-id" => r.instance_id.clone().unwrap_or_else(dash),
            "tcp-flags" => r.tcp_flags.map(|f| f.to_string()).unwrap_or_else(dash),
            "type" => if r.srcaddr.is_ipv4() { "IPv4" } else { "IPv6" }.to_string(),
            "pkt-srcaddr" => r.pkt_srcaddr.to_string(),
            "pkt-dstaddr" => r.pkt_dstaddr.to_string(),
            "region" => r.region.clone(),
            "az-id" => r.az_id.clone(),
            "flow-direction" => if r.ingress { "ingress" } else { "egress" }.to_string(),
            "traffic-path" => r.traffic_path.map(|p| p.to_string()).unwrap_or_else(dash),
            DROPPED_BY_FIELD => r.dropped_by.clone().unwrap_or_else(dash),
            // sublocation-*, pkt-*-aws-service: nothing in vpcd has them.
            _ => dash(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The S3 object key (below the bucket) of a file of records whose end
/// times fall in the 5-minute slot starting at `slot` (Unix seconds):
/// `[folder/]AWSLogs/<account>/vpcflowlogs/<region>/<yyyy>/<mm>/<dd>/<account>_vpcflowlogs_<region>_<fl-id>_<yyyymmddTHHmmZ>_<hash>.log.gz`.
pub fn s3_key(fl: &FlowLog, folder: &str, slot: i64, hash: &str) -> String {
    let slot = slot - slot.rem_euclid(300);
    let (y, m, d) = civil_date(slot.div_euclid(86_400));
    let secs = slot.rem_euclid(86_400);
    let (hh, mm) = (secs / 3600, secs % 3600 / 60);
    let (acct, region) = (&fl.meta.owner, &fl.meta.region);
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    format!(
        "{prefix}AWSLogs/{acct}/vpcflowlogs/{region}/{y:04}/{m:02}/{d:02}/{acct}_vpcflowlogs_{region}_{}_{y:04}{m:02}{d:02}T{hh:02}{mm:02}Z_{hash}.log.gz",
        fl.meta.id,
    )
}

/// (year, month, day) of a count of days since 1970-01-01 (proleptic
/// Gregorian calendar; Howard Hinnant's days-to-civil algorithm).
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fl() -> FlowLog {
        FlowLog {
            meta: crate::Meta {
                id: "fl-1234abcd".into(),
                owner: "123456789012".into(),
                region: "us-east-1".into(),
                tags: Default::default(),
                created: Default::default(),
            },
            resource_id: "vpc-1".into(),
            resource_type: "VPC".into(),
            traffic_type: "ALL".into(),
            destination_type: "s3".into(),
            destination: "arn:aws:s3:::bucket".into(),
            log_format: DEFAULT_FORMAT.into(),
            max_aggregation_interval: 600,
            client_token: None,
        }
    }

    #[test]
    fn the_s3_key_follows_aws_layout_with_a_five_minute_slot() {
        // 2018-06-20T16:22:13Z
        let key = s3_key(&fl(), "", 1_529_511_733, "fe123456");
        assert_eq!(key, "AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/20/123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1620Z_fe123456.log.gz");
        let key = s3_key(&fl(), "a/b", 1_529_511_733, "x");
        assert!(key.starts_with("a/b/AWSLogs/"), "{key}");
    }

    #[test]
    fn formats_parse_and_their_version_is_the_highest_fields() {
        let f = parse_format(DEFAULT_FORMAT).unwrap();
        assert_eq!(f.len(), 14);
        assert_eq!(format_version(&f), 2);
        let f = parse_format("${srcaddr} ${vpc-id} ${flow-direction}").unwrap();
        assert_eq!(format_version(&f), 5);
        assert!(parse_format("${nope}").is_err());
        assert!(parse_format("srcaddr").is_err());
        assert!(parse_format("  ").is_err());
    }

    #[test]
    fn s3_arns_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_s3_arn("arn:aws:s3:::my-bucket/logs/x/").unwrap(),
            ("my-bucket".to_string(), "logs/x".to_string())
        );
        for bad in [
            "arn:aws:s3:::",
            "arn:aws:s3:::B",
            "s3://bucket",
            "arn:aws:s3:::bucket/../x",
            "arn:aws:s3:::bucket/AWSLogs",
        ] {
            assert!(parse_s3_arn(bad).is_err(), "{bad}");
        }
        assert!(check_local_file("flows.log").is_ok());
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(check_local_file(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_record_renders_in_the_default_and_a_custom_format() {
        let r = FlowRecord {
            account_id: "123456789012".into(),
            interface_id: "eni-1".into(),
            srcaddr: "10.0.0.5".parse().unwrap(),
            dstaddr: "10.0.0.6".parse().unwrap(),
            pkt_srcaddr: "10.0.0.5".parse().unwrap(),
            pkt_dstaddr: "10.0.0.6".parse().unwrap(),
            srcport: 40000,
            dstport: 80,
            protocol: 6,
            packets: 5,
            bytes: 400,
            start: 10,
            end: 20,
            action: "REJECT",
            vpc_id: "vpc-1".into(),
            subnet_id: "subnet-1".into(),
            instance_id: None,
            tcp_flags: Some(2),
            region: "us-east-1".into(),
            az_id: "use1-az1".into(),
            ingress: true,
            traffic_path: None,
            dropped_by: Some("sg-1".into()),
        };
        let f = parse_format(DEFAULT_FORMAT).unwrap();
        assert_eq!(
            render(&f, &r),
            "2 123456789012 eni-1 10.0.0.5 10.0.0.6 40000 80 6 5 400 10 20 REJECT OK"
        );
        let f = parse_format(
            "${version} ${instance-id} ${flow-direction} ${tcp-flags} ${vpcd-dropped-by}",
        )
        .unwrap();
        assert_eq!(render(&f, &r), "5 - ingress 2 sg-1");
        assert_eq!(
            header(&f),
            "version instance-id flow-direction tcp-flags vpcd-dropped-by"
        );
    }
}
