//! Reachability Analyzer: network insights paths and analyses.
//!
//! The records and the analysis live in [`vpc_model::ops::insights`] (and
//! the evaluator in [`vpc_reach`]); this module parses parameters and
//! renders EC2's `NetworkInsightsPath` and `NetworkInsightsAnalysis` shapes.
//!
//! An analysis runs to completion inside `StartNetworkInsightsAnalysis`. The
//! Start response still says `running` (as AWS's does, so clients that poll
//! keep working); `DescribeNetworkInsightsAnalyses` reports the outcome,
//! `succeeded` or `failed`.
//!
//! vpcd's named diagnoses (see `docs/reachability.md`) appear twice, both in
//! fields boto3 and the aws CLI already parse: as extra `explanationSet`
//! items whose `explanationCode` is `VPCD_<KIND>` (message in `state`, fix in
//! `missingComponent`), and as lines of the analysis' `warningMessage`.

use super::{Handler, Req};
use crate::params::Params;
use crate::query::{self, tag_field};
use crate::xml::{escape_into, timestamp, Xml};
use vpc_model::ops::insights::{self as model, CreatePath, RawFilter, RawRange, StartAnalysis};
use vpc_model::{
    AnalysisDiagnosis, AnalysisExplanation, AnalysisHop, AnalysisRef, AnalysisRule, AnalysisStatus,
    Ctx, Fault, NetworkInsightsAnalysis, NetworkInsightsPath, PathFilter, World,
};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateNetworkInsightsPath", Handler::Write(create_path)),
    (
        "DescribeNetworkInsightsPaths",
        Handler::Read(describe_paths),
    ),
    ("DeleteNetworkInsightsPath", Handler::Write(delete_path)),
    (
        "StartNetworkInsightsAnalysis",
        Handler::Write(start_analysis),
    ),
    (
        "DescribeNetworkInsightsAnalyses",
        Handler::Read(describe_analyses),
    ),
    (
        "DeleteNetworkInsightsAnalysis",
        Handler::Write(delete_analysis),
    ),
];

// ---- Parameters ----------------------------------------------------------

fn non_empty(p: &Params, k: &str) -> Option<String> {
    p.string(k).filter(|s| !s.is_empty())
}

fn port_range(p: &Params, k: &str) -> Result<Option<RawRange>, Fault> {
    let r = p.sub(k);
    if r.iter().next().is_none() {
        return Ok(None);
    }
    Ok(Some((r.int("FromPort")?, r.int("ToPort")?)))
}

fn raw_filter(p: &Params, k: &str) -> Result<Option<RawFilter>, Fault> {
    let f = p.sub(k);
    if f.iter().next().is_none() {
        return Ok(None);
    }
    Ok(Some(RawFilter {
        source_address: non_empty(&f, "SourceAddress"),
        source_port_range: port_range(&f, "SourcePortRange")?,
        destination_address: non_empty(&f, "DestinationAddress"),
        destination_port_range: port_range(&f, "DestinationPortRange")?,
    }))
}

/// An ISO 8601 time (what the SDKs send) or seconds since the epoch, in ms.
fn time_param(p: &Params, k: &str) -> Result<Option<i64>, Fault> {
    let Some(v) = p.get(k).map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let bad = || Fault::invalid_param(format!("Value ({v}) for parameter {k} is invalid."));
    if let Ok(t) = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map(Some)
            .map_err(|_| bad());
    }
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() => Ok(Some((s * 1000.0) as i64)),
        _ => Err(bad()),
    }
}

// ---- Rendering -----------------------------------------------------------

fn render_filter(x: &mut Xml, tag: &str, f: &Option<PathFilter>) {
    let Some(f) = f else { return };
    let range = |x: &mut Xml, tag: &str, r: Option<(u16, u16)>| {
        if let Some((from, to)) = r {
            x.open(tag)
                .num("fromPort", from)
                .num("toPort", to)
                .close(tag);
        }
    };
    x.open(tag);
    x.opt(
        "sourceAddress",
        f.source_address.map(|a| a.to_string()).as_deref(),
    );
    range(x, "sourcePortRange", f.source_port_range);
    x.opt(
        "destinationAddress",
        f.destination_address.map(|a| a.to_string()).as_deref(),
    );
    range(x, "destinationPortRange", f.destination_port_range);
    x.close(tag);
}

fn render_path(x: &mut Xml, p: &NetworkInsightsPath) {
    x.leaf("networkInsightsPathId", &p.meta.id)
        .leaf("networkInsightsPathArn", &model::path_arn(p))
        .leaf("createdDate", &timestamp(p.meta.created.0))
        .leaf("source", &p.source)
        .opt("destination", p.destination.as_deref())
        .leaf("sourceArn", &p.source_arn)
        .opt("destinationArn", p.destination_arn.as_deref())
        .opt("sourceIp", p.source_ip.map(|a| a.to_string()).as_deref())
        .opt(
            "destinationIp",
            p.destination_ip.map(|a| a.to_string()).as_deref(),
        )
        .leaf("protocol", &p.protocol);
    if let Some(port) = p.destination_port {
        x.num("destinationPort", port);
    }
    x.tags(&p.meta.tags);
    render_filter(x, "filterAtSource", &p.filter_at_source);
    render_filter(x, "filterAtDestination", &p.filter_at_destination);
}

/// An `AnalysisComponent`: id, arn, name (a component withheld from the
/// caller has no id or arn, and its name says what kind of component it is).
fn render_ref(x: &mut Xml, tag: &str, r: &AnalysisRef) {
    x.open(tag)
        .opt("id", r.id.as_deref())
        .opt("arn", r.arn.as_deref())
        .opt("name", r.name.as_deref())
        .close(tag);
}

/// A resource a rule names only by ID (its ARN if it still exists).
fn id_ref(w: &World, id: &str, kind: &str) -> AnalysisRef {
    AnalysisRef {
        id: Some(id.to_string()),
        kind: kind.to_string(),
        arn: model::arn_of(w, id),
        name: None,
    }
}

fn render_port_range(x: &mut Xml, from: impl ToString, to: impl ToString) {
    x.open("portRange")
        .leaf("from", &from.to_string())
        .leaf("to", &to.to_string())
        .close("portRange");
}

/// `aclRule`, `securityGroupRule` or `routeTableRoute`.
fn render_rule(x: &mut Xml, r: &AnalysisRule) {
    match r {
        AnalysisRule::AclEntry {
            rule_number,
            egress,
            action,
            protocol,
            cidr,
            port_range,
            ..
        } => {
            x.open("aclRule")
                .leaf("cidr", &cidr.to_string())
                .bool("egress", *egress);
            if let Some((from, to)) = port_range {
                render_port_range(x, from, to);
            }
            x.leaf("protocol", protocol)
                .leaf("ruleAction", action)
                .num("ruleNumber", rule_number)
                .close("aclRule");
        }
        AnalysisRule::SecurityGroupRule {
            group_id,
            direction,
            protocol,
            port_range,
            peer,
            ..
        } => {
            x.open("securityGroupRule");
            if peer.parse::<ipnet::IpNet>().is_ok() {
                x.leaf("cidr", peer);
            }
            x.leaf("direction", direction)
                .leaf("securityGroupId", group_id);
            if let Some((from, to)) = port_range {
                render_port_range(x, from, to);
            }
            if peer.starts_with("pl-") {
                x.leaf("prefixListId", peer);
            }
            x.leaf("protocol", protocol).close("securityGroupRule");
        }
        AnalysisRule::Route {
            destination,
            target,
            state,
            origin,
            ..
        } => {
            x.open("routeTableRoute")
                .leaf("destinationCidr", &destination.to_string());
            let field = match target.rsplit_once('-').map(|(p, _)| p) {
                _ if target == "local" => "gatewayId",
                Some("igw") | Some("vgw") => "gatewayId",
                Some("nat") => "natGatewayId",
                Some("eni") => "networkInterfaceId",
                Some("pcx") => "vpcPeeringConnectionId",
                Some("i") => "instanceId",
                Some("eigw") => "egressOnlyInternetGatewayId",
                Some("tgw") => "transitGatewayId",
                _ => "gatewayId",
            };
            x.leaf(field, target)
                .opt("origin", origin.as_deref())
                .leaf("state", state)
                .close("routeTableRoute");
        }
    }
}

/// One `PathComponent`. `prev`/`next` are the neighbouring hops (a peering
/// connection's `sourceVpc` and `destinationVpc` come from them).
fn render_hop(
    x: &mut Xml,
    h: &AnalysisHop,
    prev: Option<&AnalysisHop>,
    next: Option<&AnalysisHop>,
) {
    x.num("sequenceNumber", h.sequence);
    if let Some(r) = &h.rule {
        render_rule(x, r);
    }
    if let Some(a) = &h.attached_to {
        render_ref(x, "attachedTo", a);
    }
    render_ref(x, "component", &h.component);
    if h.component.kind == "vpc-peering-connection" {
        let src = prev.and_then(|p| p.vpc.as_ref());
        let dst = next.and_then(|n| n.vpc.as_ref());
        if let Some(v) = dst {
            render_ref(x, "destinationVpc", v);
        }
        if let Some(v) = src {
            render_ref(x, "sourceVpc", v);
        }
    }
    if let Some(s) = &h.subnet {
        render_ref(x, "subnet", s);
    }
    if let Some(v) = &h.vpc {
        render_ref(x, "vpc", v);
    }
}

fn render_hops(x: &mut Xml, tag: &str, hops: &[AnalysisHop]) {
    let idx: Vec<usize> = (0..hops.len()).collect();
    x.set(tag, idx, |x, i| {
        render_hop(
            x,
            &hops[i],
            i.checked_sub(1).map(|j| &hops[j]),
            hops.get(i + 1),
        )
    });
}

/// The `Explanation` fields named after the blocking component's kind.
fn component_field(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "network-acl" => "acl",
        "security-group" => "securityGroup",
        "route-table" => "routeTable",
        "vpc-peering-connection" => "vpcPeeringConnection",
        "internet-gateway" => "internetGateway",
        "natgateway" => "natGateway",
        "network-interface" => "networkInterface",
        "subnet" => "subnet",
        "vpc" => "vpc",
        _ => return None,
    })
}

fn render_explanation(x: &mut Xml, w: &World, e: &AnalysisExplanation) {
    // Each member once: the component's own kind field, then what the rule,
    // VPC and subnet add.
    let mut fields: Vec<(&'static str, AnalysisRef)> = Vec::new();
    let mut add = |tag: &'static str, r: AnalysisRef| {
        if !fields.iter().any(|(t, _)| *t == tag) {
            fields.push((tag, r));
        }
    };
    if let Some(tag) = component_field(&e.component.kind) {
        add(tag, e.component.clone());
    }
    match &e.rule {
        Some(AnalysisRule::AclEntry { acl_id, .. }) => add("acl", id_ref(w, acl_id, "network-acl")),
        Some(AnalysisRule::SecurityGroupRule { group_id, .. }) => {
            add("securityGroup", id_ref(w, group_id, "security-group"))
        }
        Some(AnalysisRule::Route { route_table_id, .. }) => {
            add("routeTable", id_ref(w, route_table_id, "route-table"))
        }
        None => {}
    }
    if let Some(v) = &e.vpc {
        add("vpc", v.clone());
    }
    if let Some(s) = &e.subnet {
        add("subnet", s.clone());
    }
    if let Some(r) = &e.rule {
        render_rule(x, r);
    }
    render_ref(x, "component", &e.component);
    x.opt("direction", e.direction.as_deref())
        .leaf("explanationCode", &e.code);
    for (tag, r) in &fields {
        render_ref(x, tag, r);
    }
    if let Some((_, sg)) = fields.iter().find(|(t, _)| *t == "securityGroup") {
        x.set("securityGroupSet", [sg], |x, r| {
            x.opt("id", r.id.as_deref()).opt("arn", r.arn.as_deref());
        });
    }
}

/// `<tag><item>value</item>…</tag>` of plain strings.
fn string_set(x: &mut Xml, tag: &str, items: &[String]) {
    x.set(tag, items, |x, s| escape_into(&mut x.out, s));
}

/// One `explanationSet` item: an AWS explanation or a vpcd diagnosis.
enum Item<'a> {
    Aws(&'a AnalysisExplanation),
    Vpcd(&'a AnalysisDiagnosis),
}

/// One `NetworkInsightsAnalysis`. `as_started` renders it as the Start
/// response does: `running`, without results.
fn render_analysis(x: &mut Xml, w: &World, a: &NetworkInsightsAnalysis, as_started: bool) {
    x.leaf("networkInsightsAnalysisId", &a.meta.id)
        .leaf("networkInsightsAnalysisArn", &model::analysis_arn(a))
        .leaf("networkInsightsPathId", &a.path_id);
    if !a.additional_accounts.is_empty() {
        string_set(x, "additionalAccountSet", &a.additional_accounts);
    }
    string_set(x, "filterInArnSet", &a.filter_in_arns);
    if !a.filter_out_arns.is_empty() {
        string_set(x, "filterOutArnSet", &a.filter_out_arns);
    }
    x.leaf("startDate", &timestamp(a.meta.created.0));
    if as_started {
        x.leaf("status", AnalysisStatus::Running.as_str());
        x.tags(&a.meta.tags);
        return;
    }
    x.leaf("status", a.status.as_str())
        .opt("statusMessage", a.status_message.as_deref())
        .opt("warningMessage", a.warning_message.as_deref());
    if let Some(r) = &a.result {
        x.bool("networkPathFound", r.reachable);
        render_hops(x, "forwardPathComponentSet", &r.forward);
        render_hops(x, "returnPathComponentSet", &r.ret);
        let items = r
            .explanations
            .iter()
            .map(Item::Aws)
            .chain(r.diagnoses.iter().map(Item::Vpcd));
        x.set("explanationSet", items, |x, it| match it {
            Item::Aws(e) => render_explanation(x, w, e),
            Item::Vpcd(d) => {
                x.leaf("explanationCode", &model::diagnosis_code(&d.kind))
                    .leaf("missingComponent", &d.fix)
                    .leaf("state", &d.message);
            }
        });
        x.empty("alternatePathHintSet");
    }
    x.tags(&a.meta.tags);
}

// ---- Paths -----------------------------------------------------------------

fn create_path(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let req = CreatePath {
        source: p.string("Source"),
        destination: p.string("Destination"),
        source_ip: non_empty(p, "SourceIp"),
        destination_ip: non_empty(p, "DestinationIp"),
        protocol: p.string("Protocol"),
        destination_port: p.int("DestinationPort")?,
        filter_at_source: raw_filter(p, "FilterAtSource")?,
        filter_at_destination: raw_filter(p, "FilterAtDestination")?,
        tags: p.tag_specs("network-insights-path")?,
        client_token: non_empty(p, "ClientToken"),
    };
    let path = model::create_path(w, ctx, req)?;
    let mut x = r.xml();
    x.open("networkInsightsPath");
    render_path(&mut x, &path);
    x.close("networkInsightsPath");
    r.done(x)
}

const PATH_FILTERS: &[&str] = &[
    "destination",
    "source",
    "protocol",
    "destination-port",
    "source-ip",
    "destination-ip",
    "filter-at-source.source-address",
    "filter-at-source.source-port-range",
    "filter-at-source.destination-address",
    "filter-at-source.destination-port-range",
    "filter-at-destination.source-address",
    "filter-at-destination.source-port-range",
    "filter-at-destination.destination-address",
    "filter-at-destination.destination-port-range",
];

fn path_field(p: &&NetworkInsightsPath, name: &str) -> Option<Vec<String>> {
    let opt = |v: Option<String>| Some(v.into_iter().collect::<Vec<_>>());
    let filter = |f: &Option<PathFilter>, what: &str| {
        let f = f.as_ref();
        let range = |r: Option<(u16, u16)>| r.map(|(a, b)| format!("{a}-{b}"));
        opt(match what {
            "source-address" => f.and_then(|f| f.source_address).map(|a| a.to_string()),
            "destination-address" => f.and_then(|f| f.destination_address).map(|a| a.to_string()),
            "source-port-range" => range(f.and_then(|f| f.source_port_range)),
            _ => range(f.and_then(|f| f.destination_port_range)),
        })
    };
    if let Some(what) = name.strip_prefix("filter-at-source.") {
        return filter(&p.filter_at_source, what);
    }
    if let Some(what) = name.strip_prefix("filter-at-destination.") {
        return filter(&p.filter_at_destination, what);
    }
    match name {
        "destination" => Some(
            p.destination
                .iter()
                .chain(&p.destination_arn)
                .cloned()
                .collect(),
        ),
        "source" => Some(vec![p.source.clone(), p.source_arn.clone()]),
        "protocol" => Some(vec![p.protocol.clone()]),
        "destination-port" => opt(p.destination_port.map(|x| x.to_string())),
        "source-ip" => opt(p.source_ip.map(|x| x.to_string())),
        "destination-ip" => opt(p.destination_ip.map(|x| x.to_string())),
        _ => tag_field(&p.meta.tags, name),
    }
}

fn chrono_key(created: i64, id: &str) -> String {
    format!("{:020}:{id}", created.max(0))
}

fn describe_paths(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let mut ids = r.p.list("NetworkInsightsPathId")?;
    ids.sort();
    ids.dedup();
    let mut items: Vec<&NetworkInsightsPath> = if ids.is_empty() {
        w.scoped::<NetworkInsightsPath>(&ctx.account, &ctx.region)
            .collect()
    } else {
        ids.iter()
            .map(|id| model::get_path(w, ctx, id))
            .collect::<Result<_, _>>()?
    };
    let key = |p: &&NetworkInsightsPath| chrono_key(p.meta.created.0, &p.meta.id);
    items.sort_by_key(key);
    let items = query::apply(items, &r.p.filters()?, &path_field, PATH_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, key, 1, 100)?;
    let mut x = r.xml();
    x.set("networkInsightsPathSet", page, render_path);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn delete_path(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("NetworkInsightsPathId")?.to_string();
    model::delete_path(w, ctx, &id)?;
    let mut x = r.xml();
    x.leaf("networkInsightsPathId", &id);
    r.done(x)
}

// ---- Analyses --------------------------------------------------------------

fn start_analysis(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let req = StartAnalysis {
        path_id: p.string("NetworkInsightsPathId"),
        additional_accounts: p.list("AdditionalAccount")?,
        filter_in_arns: p.list("FilterInArn")?,
        filter_out_arns: p.list("FilterOutArn")?,
        tags: p.tag_specs("network-insights-analysis")?,
        client_token: non_empty(p, "ClientToken"),
    };
    let a = model::start_analysis(w, ctx, req, &vpc_reach::analyze_path)?;
    let mut x = r.xml();
    x.open("networkInsightsAnalysis");
    render_analysis(&mut x, w, &a, true);
    x.close("networkInsightsAnalysis");
    r.done(x)
}

const ANALYSIS_FILTERS: &[&str] = &["path-found", "status", "network-insights-path-id"];

fn analysis_field(a: &&NetworkInsightsAnalysis, name: &str) -> Option<Vec<String>> {
    match name {
        "path-found" => Some(a.result.iter().map(|r| r.reachable.to_string()).collect()),
        "status" => Some(vec![a.status.as_str().to_string()]),
        "network-insights-path-id" => Some(vec![a.path_id.clone()]),
        _ => tag_field(&a.meta.tags, name),
    }
}

fn describe_analyses(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let mut ids = p.list("NetworkInsightsAnalysisId")?;
    ids.sort();
    ids.dedup();
    let path_id = non_empty(p, "NetworkInsightsPathId");
    if let Some(pid) = &path_id {
        model::get_path(w, ctx, pid)?;
    }
    let start = time_param(p, "AnalysisStartTime")?;
    let end = time_param(p, "AnalysisEndTime")?;
    let mut items: Vec<&NetworkInsightsAnalysis> = if ids.is_empty() {
        w.scoped::<NetworkInsightsAnalysis>(&ctx.account, &ctx.region)
            .collect()
    } else {
        ids.iter()
            .map(|id| model::get_analysis(w, ctx, id))
            .collect::<Result<_, _>>()?
    };
    items.retain(|a| {
        path_id.as_ref().is_none_or(|pid| a.path_id == *pid)
            && start.is_none_or(|s| a.meta.created.0 >= s)
            && end.is_none_or(|e| a.meta.created.0 <= e)
    });
    let key = |a: &&NetworkInsightsAnalysis| chrono_key(a.meta.created.0, &a.meta.id);
    items.sort_by_key(key);
    let items = query::apply(items, &p.filters()?, &analysis_field, ANALYSIS_FILTERS)?;
    let (page, next) = query::paginate(items, p, key, 1, 100)?;
    let mut x = r.xml();
    x.set("networkInsightsAnalysisSet", page, |x, a| {
        render_analysis(x, w, a, false)
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn delete_analysis(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("NetworkInsightsAnalysisId")?.to_string();
    model::delete_analysis(w, ctx, &id)?;
    let mut x = r.xml();
    x.leaf("networkInsightsAnalysisId", &id);
    r.done(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpc_model::{AnalysisResult, Meta, Timestamp};

    fn r(id: &str, kind: &str) -> AnalysisRef {
        AnalysisRef {
            id: Some(id.into()),
            kind: kind.into(),
            arn: Some(format!("arn:aws:ec2:us-east-1:111111111111:{kind}/{id}")),
            name: None,
        }
    }

    fn hop(seq: u32, c: AnalysisRef, rule: Option<AnalysisRule>) -> AnalysisHop {
        AnalysisHop {
            sequence: seq,
            component: c,
            vpc: Some(r("vpc-1", "vpc")),
            subnet: Some(r("subnet-1", "subnet")),
            attached_to: None,
            rule,
        }
    }

    /// A rendered analysis with every kind of hop, explanation and diagnosis.
    pub fn sample() -> String {
        let a = NetworkInsightsAnalysis {
            meta: Meta {
                id: "nia-0123456789abcdef0".into(),
                owner: "111111111111".into(),
                region: "us-east-1".into(),
                tags: vec![],
                created: Timestamp(1_700_000_000_000),
            },
            path_id: "nip-0123456789abcdef0".into(),
            status: AnalysisStatus::Succeeded,
            status_message: None,
            warning_message: Some("vpcd diagnosis transitive-peering: m Fix: f".into()),
            additional_accounts: vec!["222222222222".into()],
            filter_in_arns: vec![],
            filter_out_arns: vec![],
            result: Some(AnalysisResult {
                reachable: false,
                source_ip: None,
                destination_ip: None,
                forward: vec![
                    hop(1, r("i-1", "instance"), None),
                    hop(
                        2,
                        r("sg-1", "security-group"),
                        Some(AnalysisRule::SecurityGroupRule {
                            group_id: "sg-1".into(),
                            rule_id: "sgr-1".into(),
                            direction: "egress".into(),
                            protocol: "tcp".into(),
                            port_range: Some((22, 22)),
                            peer: "10.2.0.0/16".into(),
                        }),
                    ),
                    hop(
                        3,
                        r("acl-1", "network-acl"),
                        Some(AnalysisRule::AclEntry {
                            acl_id: "acl-1".into(),
                            rule_number: 100,
                            egress: true,
                            action: "allow".into(),
                            protocol: "-1".into(),
                            cidr: "0.0.0.0/0".parse().unwrap(),
                            port_range: None,
                        }),
                    ),
                    hop(
                        4,
                        r("rtb-1", "route-table"),
                        Some(AnalysisRule::Route {
                            route_table_id: "rtb-1".into(),
                            destination: "10.2.0.0/16".parse().unwrap(),
                            target: "pcx-1".into(),
                            state: "active".into(),
                            origin: Some("CreateRoute".into()),
                        }),
                    ),
                    hop(5, r("pcx-1", "vpc-peering-connection"), None),
                    AnalysisHop {
                        vpc: Some(r("vpc-2", "vpc")),
                        ..hop(6, r("i-2", "instance"), None)
                    },
                ],
                ret: vec![],
                explanations: vec![AnalysisExplanation {
                    code: "SUBNET_ACL_RESTRICTION".into(),
                    component: r("acl-2", "network-acl"),
                    direction: Some("egress".into()),
                    rule: Some(AnalysisRule::AclEntry {
                        acl_id: "acl-2".into(),
                        rule_number: 100,
                        egress: true,
                        action: "deny".into(),
                        protocol: "6".into(),
                        cidr: "10.1.0.0/16".parse().unwrap(),
                        port_range: Some((1024, 65535)),
                    }),
                    vpc: Some(r("vpc-2", "vpc")),
                    subnet: Some(r("subnet-2", "subnet")),
                    detail: "d".into(),
                }],
                diagnoses: vec![vpc_model::AnalysisDiagnosis {
                    kind: "nacl-denies-return-traffic".into(),
                    message: "the message".into(),
                    fix: "the fix".into(),
                }],
            }),
            client_token: None,
        };
        let mut x = Xml::response("DescribeNetworkInsightsAnalyses", "r-1");
        let w = World::default();
        x.set("networkInsightsAnalysisSet", [&a], |x, a| {
            render_analysis(x, &w, a, false)
        });
        x.finish("DescribeNetworkInsightsAnalyses")
    }

    #[test]
    fn renders_every_part() {
        let s = sample();
        if let Some(p) = std::env::var_os("VPCD_INSIGHTS_SAMPLE") {
            std::fs::write(p, &s).unwrap();
        }
        for want in [
            "<networkPathFound>false</networkPathFound>",
            "<vpcPeeringConnectionId>pcx-1</vpcPeeringConnectionId>",
            "<sourceVpc><id>vpc-1</id>",
            "<destinationVpc><id>vpc-2</id>",
            "<explanationCode>VPCD_NACL_DENIES_RETURN_TRAFFIC</explanationCode><missingComponent>the fix</missingComponent><state>the message</state>",
            "<acl><id>acl-2</id>",
            "<ruleAction>deny</ruleAction>",
            "<additionalAccountSet><item>222222222222</item></additionalAccountSet>",
        ] {
            assert!(s.contains(want), "{want} not in {s}");
        }
    }

    /// A component withheld from the caller (another account's, see
    /// `vpc_model::ops::account_view`) renders with neither id nor arn,
    /// only the name saying what it is.
    #[test]
    fn renders_a_withheld_component_without_id_or_arn() {
        let withheld = AnalysisRef {
            id: None,
            kind: "network-interface".into(),
            arn: None,
            name: Some("the peer VPC's network interface".into()),
        };
        let mut x = Xml::response("DescribeNetworkInsightsAnalyses", "r-1");
        x.set("forwardPathComponentSet", [0], |x, _| {
            render_hop(x, &hop(7, withheld.clone(), None), None, None)
        });
        let s = x.finish("DescribeNetworkInsightsAnalyses");
        assert!(
            s.contains("<component><name>the peer VPC&apos;s network interface</name></component>"),
            "{s}"
        );
    }
}
