//! Property-based fuzzing of every EC2 action through `App::dispatch`, the
//! same path an authenticated HTTP request takes.
//!
//! A small world is seeded with valid calls, so the fuzzer has real ids to
//! hit; then random parameter maps (realistic EC2 names, malformed list
//! indices, random strings; real ids, CIDRs, numbers, booleans, unicode) go
//! to every action. Each answer must be either a well-formed
//! `<{Action}Response>` or a client error with an AWS-style code, and an
//! error must leave the published state exactly as it was.
//!
//! `PROPTEST_CASES` (default 256) is the total number of cases, spread
//! evenly over the actions (at least 48 each).

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;
use vpc_api::actions;
use vpc_api::server::status_for;
use vpc_api::{App, Config, Params};
use vpc_model::region::Regions;
use vpc_model::{ops, Limits, World};

const OWNER: &str = "111111111111";
const PEER: &str = "222222222222";
const REGION: &str = "us-east-1";

/// An app on a fresh data directory (in /dev/shm when there is one, so
/// commits do not wait for a disk).
fn open_app() -> (tempfile::TempDir, Arc<App>) {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let app = App::open(Config {
        data_dir: dir.path().to_path_buf(),
        regions: Regions::default(),
        limits: Limits::default(),
        test_clock: true,
        group_commit: true,
        http: vpc_api::HttpLimits::default(),
        rates: vpc_model::ops::cost::RateTable::parse(vpc_model::ops::cost::DEFAULT_RATES)
            .expect("rates"),
        serve_metrics: false,
    })
    .expect("open app");
    (dir, app)
}

fn params(pairs: &[(&str, &str)]) -> Params {
    Params::from_pairs(
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string())),
    )
}

/// Every record of the world as JSON, table by table, in id order.
fn fingerprint(w: &World) -> Vec<String> {
    fn rows<'a, T: serde::Serialize + 'a>(
        out: &mut Vec<String>,
        table: &str,
        items: impl Iterator<Item = &'a T>,
    ) {
        for item in items {
            out.push(format!(
                "{table}:{}",
                serde_json::to_string(item).expect("records serialize")
            ));
        }
    }
    let mut out = Vec::new();
    rows(&mut out, "vpcs", w.vpcs.iter());
    rows(&mut out, "subnets", w.subnets.iter());
    rows(&mut out, "route_tables", w.route_tables.iter());
    rows(&mut out, "igws", w.igws.iter());
    rows(&mut out, "sgs", w.sgs.iter());
    rows(&mut out, "acls", w.acls.iter());
    rows(&mut out, "peerings", w.peerings.iter());
    rows(&mut out, "inits", w.inits.iter());
    rows(&mut out, "instances", w.instances.iter());
    rows(&mut out, "enis", w.enis.iter());
    rows(&mut out, "nat_gateways", w.nat_gateways.iter());
    rows(&mut out, "addresses", w.addresses.iter());
    rows(&mut out, "insights_paths", w.insights_paths.iter());
    rows(&mut out, "insights_analyses", w.insights_analyses.iter());
    rows(&mut out, "dhcp_options", w.dhcp_options.iter());
    rows(&mut out, "hosted_zones", w.hosted_zones.iter());
    rows(&mut out, "zone_changes", w.zone_changes.iter());
    out
}

/// Every (resource id, key, value) tag in the world.
fn all_tags(w: &World) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let mut add = |id: &str, tags: &[vpc_model::Tag]| {
        for t in tags {
            out.insert((id.to_string(), t.key.clone(), t.value.clone()));
        }
    };
    for v in w.vpcs.iter() {
        add(&v.meta.id, &v.meta.tags);
    }
    for s in w.subnets.iter() {
        add(&s.meta.id, &s.meta.tags);
    }
    for g in w.sgs.iter() {
        add(&g.meta.id, &g.meta.tags);
    }
    for r in w.route_tables.iter() {
        add(&r.meta.id, &r.meta.tags);
    }
    out
}

/// Moves the simulated clock past every timer due within the hour, so no
/// timer fires while a case runs (a due timer is a legitimate state change
/// even when the action itself fails).
fn settle_timers(app: &App) {
    for _ in 0..16 {
        let Some(due) = ops::next_deadline(&app.snapshot()) else {
            return;
        };
        let now = app.now().0;
        if due.0 > now + 3_600_000 {
            return;
        }
        app.advance_clock(due.0 - now + 1).expect("advance clock");
    }
    panic!("timers keep coming due");
}

/// The ids (and owner ids, public IPs) an answer names.
fn ids_in(body: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(body).expect("seed answer is XML");
    doc.descendants()
        .filter(|n| n.is_element())
        .filter(|n| {
            let name = n.tag_name().name();
            (name.ends_with("Id") && name != "requestId") || name == "publicIp"
        })
        .filter_map(|n| n.text())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The first `<tag>` text in an answer.
fn first(body: &str, tag: &str) -> String {
    let doc = roxmltree::Document::parse(body).expect("seed answer is XML");
    doc.descendants()
        .find(|n| n.tag_name().name() == tag)
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("no <{tag}> in {body}"))
        .to_string()
}

/// The seeded world's ids, and the resources that carry tags.
#[derive(Debug, Default)]
struct Seeded {
    ids: Vec<String>,
    tagged: Vec<String>,
}

impl Seeded {
    fn call(&mut self, app: &App, account: &str, pairs: &[(&str, &str)]) -> String {
        let body = app
            .dispatch(account, REGION, &params(pairs), "seed")
            .unwrap_or_else(|f| panic!("seeding {pairs:?}: {f}"));
        for id in ids_in(&body) {
            if !self.ids.contains(&id) {
                self.ids.push(id);
            }
        }
        body
    }
}

/// A VPC per account, a subnet, a security group with a rule, a route table
/// with a route to an internet gateway, a network ACL, an interface, an
/// instance, an address, an active and a pending peering, an insights path,
/// and tags on several resources.
fn seed(app: &App) -> Seeded {
    let mut s = Seeded::default();
    let tag_vpc = [
        ("TagSpecification.1.ResourceType", "vpc"),
        ("TagSpecification.1.Tag.1.Key", "Name"),
        ("TagSpecification.1.Tag.1.Value", "seed"),
    ];
    let mut create_vpc = vec![("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")];
    create_vpc.extend(tag_vpc);
    let vpc = first(&s.call(app, OWNER, &create_vpc), "vpcId");
    let vpc2 = first(
        &s.call(
            app,
            OWNER,
            &[("Action", "CreateVpc"), ("CidrBlock", "10.2.0.0/16")],
        ),
        "vpcId",
    );
    let peer_vpc = first(
        &s.call(
            app,
            PEER,
            &[("Action", "CreateVpc"), ("CidrBlock", "10.1.0.0/16")],
        ),
        "vpcId",
    );
    let subnet = first(
        &s.call(
            app,
            OWNER,
            &[
                ("Action", "CreateSubnet"),
                ("VpcId", &vpc),
                ("CidrBlock", "10.0.1.0/24"),
            ],
        ),
        "subnetId",
    );
    let group = first(
        &s.call(
            app,
            OWNER,
            &[
                ("Action", "CreateSecurityGroup"),
                ("VpcId", &vpc),
                ("GroupName", "web"),
                ("GroupDescription", "web servers"),
            ],
        ),
        "groupId",
    );
    s.call(
        app,
        OWNER,
        &[
            ("Action", "AuthorizeSecurityGroupIngress"),
            ("GroupId", &group),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "22"),
            ("IpPermissions.1.ToPort", "22"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
        ],
    );
    let table = first(
        &s.call(
            app,
            OWNER,
            &[("Action", "CreateRouteTable"), ("VpcId", &vpc)],
        ),
        "routeTableId",
    );
    s.call(
        app,
        OWNER,
        &[
            ("Action", "AssociateRouteTable"),
            ("RouteTableId", &table),
            ("SubnetId", &subnet),
        ],
    );
    let gateway = first(
        &s.call(app, OWNER, &[("Action", "CreateInternetGateway")]),
        "internetGatewayId",
    );
    s.call(
        app,
        OWNER,
        &[
            ("Action", "AttachInternetGateway"),
            ("InternetGatewayId", &gateway),
            ("VpcId", &vpc),
        ],
    );
    s.call(
        app,
        OWNER,
        &[
            ("Action", "CreateRoute"),
            ("RouteTableId", &table),
            ("DestinationCidrBlock", "0.0.0.0/0"),
            ("GatewayId", &gateway),
        ],
    );
    s.call(
        app,
        OWNER,
        &[("Action", "CreateNetworkAcl"), ("VpcId", &vpc)],
    );
    s.call(
        app,
        OWNER,
        &[
            ("Action", "CreateSubnetCidrReservation"),
            ("SubnetId", &subnet),
            ("Cidr", "10.0.1.240/28"),
            ("ReservationType", "explicit"),
        ],
    );
    let interface = first(
        &s.call(
            app,
            OWNER,
            &[("Action", "CreateNetworkInterface"), ("SubnetId", &subnet)],
        ),
        "networkInterfaceId",
    );
    let instance = first(
        &s.call(
            app,
            OWNER,
            &[
                ("Action", "RunInstances"),
                ("ImageId", "ami-0123456789abcdef0"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("SubnetId", &subnet),
            ],
        ),
        "instanceId",
    );
    s.call(
        app,
        OWNER,
        &[("Action", "AllocateAddress"), ("Domain", "vpc")],
    );
    let active = first(
        &s.call(
            app,
            OWNER,
            &[
                ("Action", "CreateVpcPeeringConnection"),
                ("VpcId", &vpc),
                ("PeerVpcId", &peer_vpc),
                ("PeerOwnerId", PEER),
            ],
        ),
        "vpcPeeringConnectionId",
    );
    settle_timers(app);
    s.call(
        app,
        PEER,
        &[
            ("Action", "AcceptVpcPeeringConnection"),
            ("VpcPeeringConnectionId", &active),
        ],
    );
    s.call(
        app,
        OWNER,
        &[
            ("Action", "CreateVpcPeeringConnection"),
            ("VpcId", &vpc2),
            ("PeerVpcId", &peer_vpc),
            ("PeerOwnerId", PEER),
        ],
    );
    s.call(
        app,
        OWNER,
        &[
            ("Action", "CreateNetworkInsightsPath"),
            ("Source", &interface),
            ("Destination", &instance),
            ("Protocol", "tcp"),
            ("DestinationPort", "22"),
        ],
    );
    s.tagged = vec![vpc, subnet, group, table];
    tag_everything(app, &s.tagged);
    settle_timers(app);
    s
}

/// Gives each resource the tags `Name=seed`, `env=test` and `empty=`.
fn tag_everything(app: &App, resources: &[String]) {
    let mut pairs: Vec<(String, String)> = vec![("Action".into(), "CreateTags".into())];
    for (i, id) in resources.iter().enumerate() {
        pairs.push((format!("ResourceId.{}", i + 1), id.clone()));
    }
    for (i, (key, value)) in [("Name", "seed"), ("env", "test"), ("empty", "")]
        .iter()
        .enumerate()
    {
        pairs.push((format!("Tag.{}.Key", i + 1), key.to_string()));
        pairs.push((format!("Tag.{}.Value", i + 1), value.to_string()));
    }
    app.dispatch(OWNER, REGION, &Params::from_pairs(pairs), "seed-tags")
        .expect("tagging the seeded resources");
}

// ---- the grammar ------------------------------------------------------------

/// Names a handler reads directly.
const FLAT_NAMES: &[&str] = &[
    "VpcId",
    "DhcpOptionsId",
    "SubnetId",
    "GroupId",
    "GroupName",
    "GroupDescription",
    "Description",
    "RouteTableId",
    "AssociationId",
    "InternetGatewayId",
    "NetworkAclId",
    "VpcPeeringConnectionId",
    "PeerVpcId",
    "PeerOwnerId",
    "PeerRegion",
    "InstanceId",
    "NetworkInterfaceId",
    "NatGatewayId",
    "AllocationId",
    "PublicIp",
    "NetworkInsightsPathId",
    "NetworkInsightsAnalysisId",
    "CidrBlock",
    "Ipv6CidrBlock",
    "AmazonProvidedIpv6CidrBlock",
    "DestinationCidrBlock",
    "DestinationIpv6CidrBlock",
    "GatewayId",
    "LocalTarget",
    "InstanceTenancy",
    "DryRun",
    "MaxResults",
    "NextToken",
    "Attribute",
    "Value",
    "EnableDnsSupport.Value",
    "EnableDnsHostnames.Value",
    "MapPublicIpOnLaunch.Value",
    "SourceDestCheck.Value",
    "Description.Value",
    "InstanceType.Value",
    "IpProtocol",
    "FromPort",
    "ToPort",
    "CidrIp",
    "SourceSecurityGroupName",
    "SourceSecurityGroupOwnerId",
    "RuleNumber",
    "RuleAction",
    "Protocol",
    "Egress",
    "PortRange.From",
    "PortRange.To",
    "Icmp.Type",
    "Icmp.Code",
    "ImageId",
    "InstanceType",
    "MinCount",
    "MaxCount",
    "Ipv6AddressCount",
    "PrivateIpAddress",
    "SecondaryPrivateIpAddressCount",
    "Domain",
    "AllowReassociation",
    "Source",
    "Destination",
    "DestinationPort",
    "ClientToken",
    "ZoneName",
    "AvailabilityZone",
    "AvailabilityZoneId",
    "Ipv6Native",
    "InterfaceType",
    "DeviceIndex",
    "AttachmentId",
    "Attachment.AttachmentId",
    "Attachment.DeleteOnTermination",
    "AttributeName",
    "PrefixListId",
    "PrefixListName",
    "AddressFamily",
    "MaxEntries",
    "CurrentVersion",
    "PreviousVersion",
    "TargetVersion",
    "ServiceName",
    "EgressOnlyInternetGatewayId",
    "VpcEndpointType",
    "PolicyDocument",
    "ResetPolicy",
    "PrivateDnsEnabled",
    "Cidr",
    "ReservationType",
    "SubnetCidrReservationId",
    "InstanceTenancy",
    "EnableDns64.Value",
    "EnableNetworkAddressUsageMetrics.Value",
    "EnableLniAtDeviceIndex",
    "MaxEntries",
];

/// Names that take an index: `Base.N`, `Base.N.Sub`, `Base.N.Sub.M…`.
const LIST_NAMES: &[&str] = &[
    "VpcId",
    "SubnetId",
    "GroupId",
    "GroupName",
    "InstanceId",
    "ResourceId",
    "AllocationId",
    "PublicIp",
    "RegionName",
    "ZoneName",
    "VpcPeeringConnectionId",
    "NetworkAclId",
    "RouteTableId",
    "InternetGatewayId",
    "NetworkInterfaceId",
    "NatGatewayId",
    "NetworkInsightsPathId",
    "NetworkInsightsAnalysisId",
    "SecurityGroupId",
    "SecurityGroup",
    "SecurityGroupRuleId",
    "AttributeName",
    "AdditionalAccount",
    "FilterInArn",
    "FilterOutArn",
    "Tag",
    "Filter",
    "TagSpecification",
    "IpPermissions",
    "NetworkInterface",
    "PrivateIpAddresses",
    "SecondaryAllocationId",
    "SecondaryPrivateIpAddress",
];

/// Names under an indexed entry.
const SUB_NAMES: &[&str] = &[
    "Key",
    "Value",
    "Name",
    "ResourceType",
    "Tag",
    "IpProtocol",
    "FromPort",
    "ToPort",
    "IpRanges",
    "Ipv6Ranges",
    "PrefixListIds",
    "Groups",
    "UserIdGroupPairs",
    "CidrIp",
    "CidrIpv6",
    "GroupId",
    "GroupName",
    "Cidr",
    "CidrIpv4",
    "CidrIpv6",
    "PrefixListId",
    "ReferencedGroupId",
    "SecurityGroupRuleId",
    "UserId",
    "VpcId",
    "VpcPeeringConnectionId",
    "Description",
    "DeviceIndex",
    "SubnetId",
    "NetworkInterfaceId",
    "AssociatePublicIpAddress",
    "DeleteOnTermination",
    "PrivateIpAddress",
    "Primary",
    "PrefixListId",
    "Entry",
    "AddEntry",
    "RemoveEntry",
    "VpcEndpointId",
    "SecurityGroupRuleDescription",
    "EgressOnlyInternetGatewayId",
    "ServiceName",
    "AddRouteTableId",
    "RemoveRouteTableId",
    "AddSubnetId",
    "RemoveSubnetId",
    "AddSecurityGroupId",
    "RemoveSecurityGroupId",
];

/// Indices: mostly valid, sometimes malformed.
fn index() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u32..=3).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "0",
            "-1",
            "18446744073709551616",
            "4294967296",
            "01",
            "+1",
            "x",
            "",
            " 1",
        ])
        .prop_map(str::to_string),
    ]
}

fn parameter_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FLAT_NAMES).prop_map(str::to_string),
        3 => (prop::sample::select(LIST_NAMES), index()).prop_map(|(b, i)| format!("{b}.{i}")),
        4 => (prop::sample::select(LIST_NAMES), index(), prop::sample::select(SUB_NAMES))
            .prop_map(|(b, i, s)| format!("{b}.{i}.{s}")),
        2 => (
            prop::sample::select(LIST_NAMES),
            index(),
            prop::sample::select(SUB_NAMES),
            index(),
            prop::sample::select(SUB_NAMES),
        )
            .prop_map(|(b, i, s, j, t)| format!("{b}.{i}.{s}.{j}.{t}")),
        1 => (prop::sample::select(LIST_NAMES), index(), prop::sample::select(SUB_NAMES), index())
            .prop_map(|(b, i, s, j)| format!("{b}.{i}.{s}.{j}")),
        1 => "[A-Za-z0-9.\\-]{1,24}",
        1 => any::<String>(),
    ]
}

/// Words handlers look for.
const WORDS: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "-1",
    "6",
    "17",
    "allow",
    "deny",
    "vpc",
    "subnet",
    "security-group",
    "route-table",
    "vpc-peering-connection",
    "network-insights-path",
    "prefix-list",
    "IPv4",
    "IPv6",
    "pl-63a5400a",
    "com.amazonaws.us-east-1.s3",
    "com.amazonaws.us-east-1.ssm",
    "Gateway",
    "Interface",
    "default",
    "dedicated",
    "standard",
    "enableDnsSupport",
    "enableDnsHostnames",
    "sourceDestCheck",
    "description",
    "instanceType",
    "groupSet",
    "t3.micro",
    "ami-0123456789abcdef0",
    "us-east-1a",
    "us-east-1b",
    "use1-az1",
    "us-east-1",
    "us-west-2",
    "Name",
    "env",
    "tag:Name",
    "tag-key",
    "vpc-id",
    "state",
    "status-code",
    "*",
    "?",
    "",
    " ",
    "111111111111",
    "222222222222",
    "333333333333",
    "amazon",
    "vpc-00000000000000000",
    "sg-00000000000000000",
    "pcx-",
    "djF6",
    "explicit",
    "prefix",
    "scr-00000000000000000",
];

const CIDRS: &[&str] = &[
    "10.0.0.0/16",
    "10.0.1.0/24",
    "10.0.2.0/24",
    "10.0.0.0/8",
    "10.2.0.0/16",
    "0.0.0.0/0",
    "192.168.0.0/28",
    "172.16.0.0/12",
    "10.0.1.5/32",
    "10.0.1.4/30",
    "::/0",
    "2600:1f18::/56",
    "2600:1f18::/64",
    "10.0.0.0/33",
    "10.0.0.256/24",
    "10.0.1.10",
    "300.0.0.0/8",
    "/",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "5",
    "22",
    "100",
    "1000",
    "32766",
    "32767",
    "65535",
    "65536",
    "-1",
    "-2",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551616",
    "1e3",
    "0x10",
    " 5",
];

const BOOLEANS: &[&str] = &["true", "false", "TRUE", "False", "yes", "1"];

fn parameter_value(ids: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        5 => prop::sample::select(ids),
        2 => prop::sample::select(CIDRS).prop_map(str::to_string),
        2 => prop::sample::select(NUMBERS).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        2 => prop::sample::select(BOOLEANS).prop_map(str::to_string),
        3 => prop::sample::select(WORDS).prop_map(str::to_string),
        1 => "\\PC{0,16}",
        1 => any::<String>(),
    ]
}

fn parameter_map(ids: Vec<String>) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((parameter_name(), parameter_value(ids)), 0..10)
}

/// A value that fits a parameter's name: a seeded id of the right kind, a
/// CIDR, a port, a protocol.
fn value_for(name: &str, ids: &[String]) -> String {
    const ID_PREFIXES: &[(&str, &str)] = &[
        ("VpcPeeringConnectionId", "pcx-"),
        ("InternetGatewayId", "igw-"),
        ("DhcpOptionsId", "dopt-"),
        ("RouteTableId", "rtb-"),
        ("NetworkAclId", "acl-"),
        ("NetworkInterfaceId", "eni-"),
        ("NetworkInsightsPathId", "nip-"),
        ("NetworkInsightsAnalysisId", "nia-"),
        ("NatGatewayId", "nat-"),
        ("AllocationId", "eipalloc-"),
        ("AttachmentId", "eni-attach-"),
        ("InstanceId", "i-"),
        ("SubnetId", "subnet-"),
        ("GroupId", "sg-"),
        ("VpcId", "vpc-"),
        ("ResourceId", "vpc-"),
        ("Source", "eni-"),
        ("Destination", "i-"),
    ];
    let leaf = name
        .rsplit('.')
        .find(|part| part.parse::<u64>().is_err())
        .unwrap_or(name);
    if let Some((_, prefix)) = ID_PREFIXES
        .iter()
        .find(|(suffix, _)| leaf.ends_with(suffix))
    {
        if let Some(id) = ids.iter().find(|id| id.starts_with(prefix)) {
            return id.clone();
        }
    }
    let lower = leaf.to_ascii_lowercase();
    if lower.contains("cidr") {
        "10.0.3.0/24".to_string()
    } else if lower.contains("port") || lower.contains("count") {
        "1".to_string()
    } else if lower.contains("number") {
        "100".to_string()
    } else if lower.contains("protocol") {
        "tcp".to_string()
    } else if lower.contains("publicip") {
        ids.iter()
            .find(|id| id.parse::<std::net::IpAddr>().is_ok())
            .cloned()
            .unwrap_or_else(|| "203.0.113.1".to_string())
    } else {
        "fuzz".to_string()
    }
}

/// The parameters an action insists on, learned from its `MissingParameter`
/// answers and filled with fitting values; the fuzzer mutates this base so
/// it reaches past the first parameter check.
fn learn_required(app: &App, action: &str, ids: &[String]) -> Vec<(String, String)> {
    let mut base: Vec<(String, String)> = Vec::new();
    for _ in 0..8 {
        let mut request = base.clone();
        request.push(("Action".to_string(), action.to_string()));
        request.push(("DryRun".to_string(), "true".to_string()));
        let Err(fault) = app.dispatch(OWNER, REGION, &Params::from_pairs(request), "learn") else {
            break;
        };
        let Some(name) = fault
            .message
            .strip_prefix("The request must contain the parameter ")
            .filter(|_| fault.code == "MissingParameter")
        else {
            break;
        };
        let name = match name {
            "Tag.Key" => "Tag.1.Key",
            "Filter.Name" => "Filter.1.Name",
            other => other,
        };
        if base.iter().any(|(n, _)| n == name) {
            break;
        }
        base.push((name.to_string(), value_for(name, ids)));
    }
    base
}

fn request_for(
    base: Vec<(String, String)>,
    ids: Vec<String>,
) -> impl Strategy<Value = Vec<(String, String)>> {
    let size = base.len();
    (
        prop_oneof![
            3 => Just(base.clone()),
            1 => prop::sample::subsequence(base, 0..=size),
        ],
        parameter_map(ids),
    )
        .prop_map(|(mut base, extra)| {
            base.extend(extra);
            base
        })
}

// ---- the checks -------------------------------------------------------------

fn well_formed_code(code: &str) -> bool {
    !code.is_empty()
        && code.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
}

/// The properties one answer must have; `before` is the state the call saw.
fn check_answer(
    app: &App,
    action: &str,
    before: &Arc<World>,
    answer: &Result<String, vpc_model::Fault>,
) -> Result<(), TestCaseError> {
    match answer {
        Ok(body) => {
            let doc = roxmltree::Document::parse(body).map_err(|e| {
                TestCaseError::fail(format!("{action}: answer is not XML ({e}): {body}"))
            })?;
            let root = doc.root_element().tag_name().name();
            prop_assert_eq!(root, format!("{}Response", action));
        }
        Err(fault) => {
            prop_assert!(
                well_formed_code(&fault.code),
                "{}: error code {:?} is not AWS-style",
                action,
                fault.code
            );
            prop_assert!(
                !fault.message.is_empty(),
                "{}: {} has no message",
                action,
                fault.code
            );
            let status = status_for(&fault.code);
            prop_assert!(
                status.is_client_error(),
                "{}: {} answers {} ({})",
                action,
                fault.code,
                status,
                fault.message
            );
            let envelope = vpc_api::xml::error_body(&fault.code, &fault.message, "request");
            prop_assert!(
                roxmltree::Document::parse(&envelope).is_ok(),
                "{}: error envelope is not XML: {}",
                action,
                envelope
            );
            let after = app.snapshot();
            if !Arc::ptr_eq(before, &after) {
                prop_assert_eq!(
                    fingerprint(before),
                    fingerprint(&after),
                    "{} answered {} ({}) but changed the state",
                    action,
                    fault.code,
                    fault.message
                );
            }
        }
    }
    Ok(())
}

fn total_cases() -> u32 {
    ProptestConfig::default().cases
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

#[test]
fn every_action_answers_well_and_an_error_changes_nothing() {
    let (_dir, app) = open_app();
    let seeded = seed(&app);
    let names = actions::all_actions();
    let per_action = total_cases().div_ceil(names.len() as u32).max(48);
    let answered_ok: RefCell<BTreeSet<&str>> = RefCell::default();
    let error_codes: RefCell<BTreeSet<String>> = RefCell::default();
    const ACCOUNTS: &[&str] = &[OWNER, OWNER, OWNER, PEER];
    for action in names {
        let base = learn_required(&app, action, &seeded.ids);
        let strategy = (
            prop::sample::select(ACCOUNTS),
            request_for(base, seeded.ids.clone()),
        );
        runner(per_action)
            .run(&strategy, |(account, pairs)| {
                settle_timers(&app);
                let mut request = pairs.clone();
                request.push(("Action".to_string(), action.to_string()));
                let p = Params::from_pairs(request);
                let before = app.snapshot();
                let answer = app.dispatch(account, REGION, &p, "fuzz");
                match &answer {
                    Ok(_) => {
                        answered_ok.borrow_mut().insert(action);
                    }
                    Err(fault) => {
                        error_codes.borrow_mut().insert(fault.code.to_string());
                    }
                }
                check_answer(&app, action, &before, &answer)
                    .map_err(|e| TestCaseError::fail(format!("{e}\nrequest: {pairs:?}")))
            })
            .unwrap_or_else(|e| panic!("{action}: {e}"));
    }
    let (answered_ok, error_codes) = (answered_ok.into_inner(), error_codes.into_inner());
    // The random requests got past parameter checking often enough to matter.
    eprintln!(
        "{} of {} actions answered OK at least once; error codes seen: {error_codes:?}",
        answered_ok.len(),
        names.len()
    );
    assert!(answered_ok.len() * 3 >= names.len(), "{answered_ok:?}");
    assert!(error_codes.len() >= 10, "{error_codes:?}");
    // What the store holds is what was published.
    let stored = vpc_store::Store::open(_dir.path())
        .expect("reopen store")
        .load_world()
        .expect("load world");
    assert_eq!(fingerprint(&stored), fingerprint(&app.snapshot()));
}

/// Malformed `Tag.*` names: an index that is not a positive integer.
fn malformed_tag_name() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["-1", "18446744073709551616", "x", "", "1a", "-0"]),
        prop::sample::select(vec!["Key", "Value"]),
    )
        .prop_map(|(i, sub)| format!("Tag.{i}.{sub}"))
}

#[test]
fn a_malformed_tag_parameter_is_an_error_and_keeps_every_tag() {
    let (_dir, app) = open_app();
    let seeded = seed(&app);
    let strategy = (
        prop::sample::select(vec!["CreateTags", "DeleteTags"]),
        prop::collection::vec((malformed_tag_name(), prop::sample::select(WORDS)), 1..3),
        prop::collection::vec(prop::sample::select(vec!["Name", "env", "empty"]), 0..3),
        prop::sample::subsequence(seeded.tagged.clone(), 1..=seeded.tagged.len()),
    );
    let cases = total_cases().div_ceil(8).max(16);
    runner(cases)
        .run(&strategy, |(action, malformed, valid_keys, resources)| {
            tag_everything(&app, &seeded.tagged);
            let mut pairs: Vec<(String, String)> = vec![("Action".into(), action.into())];
            for (i, id) in resources.iter().enumerate() {
                pairs.push((format!("ResourceId.{}", i + 1), id.clone()));
            }
            for (i, key) in valid_keys.iter().enumerate() {
                pairs.push((format!("Tag.{}.Key", i + 1), key.to_string()));
            }
            for (name, value) in &malformed {
                pairs.push((name.clone(), value.to_string()));
            }
            let before = app.snapshot();
            let tags_before = all_tags(&before);
            let answer = app.dispatch(OWNER, REGION, &Params::from_pairs(pairs.clone()), "tags");
            let tags_after = all_tags(&app.snapshot());
            prop_assert!(answer.is_err(), "{} answered OK to {:?}", action, pairs);
            prop_assert_eq!(tags_before, tags_after, "tags changed by {:?}", pairs);
            check_answer(&app, action, &before, &answer)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
