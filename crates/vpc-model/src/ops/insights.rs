//! Reachability Analyzer records: network insights paths (`nip-…`) and
//! analyses (`nia-…`).
//!
//! A path says what to analyse; an analysis runs the evaluator it is given
//! (`vpc_reach::analyze_path`, which depends on this crate, so this crate
//! cannot call it) over the whole world, then cuts the result down to what
//! the caller may see ([`AccountView::redact`]) and keeps it in the record,
//! so later changes never alter an analysis. It runs to completion inside
//! `StartNetworkInsightsAnalysis` (it takes microseconds).
//!
//! Paths and analyses themselves are per account and region: only their owner
//! sees, analyses or deletes them. Account boundaries: vpcd has no AWS
//! Organizations, so no account may name another's resource. A path's source
//! and destination resources, and an analysis' `FilterInArns` /
//! `FilterOutArns`, must be the caller's own (or, for the filters, a peering
//! connection it is a party to); another account's resource gives the same
//! NotFound error as a missing one. Another account's instance can still be
//! a path's destination by IP address (the normal way to analyse across a
//! peering), and the result then shows of that account's side only the kind
//! of each component and the peering connection.

use super::account_view::AccountView;
use super::{eni, instance, nat, new_meta, IdKind};
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use std::net::IpAddr;

pub const PATH: IdKind = IdKind {
    prefix: "nip",
    malformed: "InvalidNetworkInsightsPathId.Malformed",
    not_found: "InvalidNetworkInsightsPathId.NotFound",
    noun: "networkInsightsPath",
};

pub const ANALYSIS: IdKind = IdKind {
    prefix: "nia",
    malformed: "InvalidNetworkInsightsAnalysisId.Malformed",
    not_found: "InvalidNetworkInsightsAnalysisId.NotFound",
    noun: "networkInsightsAnalysis",
};

/// The explanation code under which a vpcd diagnosis appears in the API,
/// e.g. `VPCD_TRANSITIVE_PEERING` for `transitive-peering`.
pub fn diagnosis_code(kind: &str) -> String {
    format!("VPCD_{}", kind.replace('-', "_").to_ascii_uppercase())
}

/// `arn:aws:ec2:<region>:<account>:<type>/<id>`
pub fn arn(region: &str, account: &str, resource_type: &str, id: &str) -> String {
    format!("arn:aws:ec2:{region}:{account}:{resource_type}/{id}")
}

pub fn path_arn(p: &NetworkInsightsPath) -> String {
    arn(
        &p.meta.region,
        &p.meta.owner,
        "network-insights-path",
        &p.meta.id,
    )
}

pub fn analysis_arn(a: &NetworkInsightsAnalysis) -> String {
    arn(
        &a.meta.region,
        &a.meta.owner,
        "network-insights-analysis",
        &a.meta.id,
    )
}

/// The ARN resource type of an ID (`instance`, `vpc-peering-connection`, …).
pub fn resource_type_of(id: &str) -> Option<&'static str> {
    let prefix = id.rsplit_once('-')?.0;
    Some(match prefix {
        "i" => "instance",
        "eni" => "network-interface",
        "sg" => "security-group",
        "acl" => "network-acl",
        "rtb" => "route-table",
        "pcx" => "vpc-peering-connection",
        "igw" => "internet-gateway",
        "nat" => "natgateway",
        "subnet" => "subnet",
        "vpc" => "vpc",
        "eipalloc" => "elastic-ip",
        "nip" => "network-insights-path",
        "nia" => "network-insights-analysis",
        _ => return None,
    })
}

/// (owner, region, Name tag) of any resource, by ID.
fn locate<'w>(w: &'w World, id: &str) -> Option<(&'w str, &'w str, Option<&'w str>)> {
    fn of(m: &Meta) -> (&str, &str, Option<&str>) {
        let name = m
            .tags
            .iter()
            .find(|t| t.key == "Name")
            .map(|t| t.value.as_str());
        (m.owner.as_str(), m.region.as_str(), name)
    }
    let prefix = id.rsplit_once('-')?.0;
    match prefix {
        "i" => w.get::<Instance>(id).map(|r| of(&r.meta)),
        "eni" => w.get::<NetworkInterface>(id).map(|r| of(&r.meta)),
        "sg" => w.get::<SecurityGroup>(id).map(|r| of(&r.meta)),
        "acl" => w.get::<NetworkAcl>(id).map(|r| of(&r.meta)),
        "rtb" => w.get::<RouteTable>(id).map(|r| of(&r.meta)),
        "igw" => w.get::<InternetGateway>(id).map(|r| of(&r.meta)),
        "nat" => w.get::<NatGateway>(id).map(|r| of(&r.meta)),
        "subnet" => w.get::<Subnet>(id).map(|r| of(&r.meta)),
        "vpc" => w.get::<Vpc>(id).map(|r| of(&r.meta)),
        "eipalloc" => w.get::<Address>(id).map(|r| of(&r.meta)),
        "pcx" => w.get::<Peering>(id).map(|p| {
            let name = p
                .requester
                .tags
                .iter()
                .find(|t| t.key == "Name")
                .map(|t| t.value.as_str());
            (
                p.requester.owner.as_str(),
                p.requester.region.as_str(),
                name,
            )
        }),
        _ => None,
    }
}

/// The ARN of any resource in the world, by ID.
pub fn arn_of(w: &World, id: &str) -> Option<String> {
    let (owner, region, _) = locate(w, id)?;
    Some(arn(region, owner, resource_type_of(id)?, id))
}

/// A resource as an analysis names it, with its ARN and Name tag as of now.
pub fn component_ref(w: &World, kind: &str, id: &str) -> AnalysisRef {
    let found = locate(w, id);
    let rt = resource_type_of(id).unwrap_or(kind);
    AnalysisRef {
        id: Some(id.to_string()),
        kind: kind.to_string(),
        arn: found.map(|(owner, region, _)| arn(region, owner, rt, id)),
        name: found.and_then(|(_, _, n)| n.map(str::to_string)),
    }
}

// ---- Paths -----------------------------------------------------------------

/// CreateNetworkInsightsPath's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreatePath {
    pub source: Option<String>,
    pub destination: Option<String>,
    pub source_ip: Option<String>,
    pub destination_ip: Option<String>,
    pub protocol: Option<String>,
    pub destination_port: Option<i64>,
    pub filter_at_source: Option<RawFilter>,
    pub filter_at_destination: Option<RawFilter>,
    pub tags: Tags,
    pub client_token: Option<String>,
}

/// A port range as sent: (`FromPort`, `ToPort`), either possibly missing.
pub type RawRange = (Option<i64>, Option<i64>);

/// A `PathFilter` as sent (unchecked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFilter {
    pub source_address: Option<String>,
    pub source_port_range: Option<RawRange>,
    pub destination_address: Option<String>,
    pub destination_port_range: Option<RawRange>,
}

fn bad(param: &str, v: &str) -> Fault {
    Fault::invalid_param(format!("Value ({v}) for parameter {param} is invalid."))
}

fn parse_ip(param: &str, v: Option<&str>) -> Result<Option<IpAddr>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| bad(param, s)),
    }
}

fn parse_port(param: &str, v: Option<i64>) -> Result<Option<u16>> {
    match v {
        None => Ok(None),
        Some(n) => u16::try_from(n)
            .map(Some)
            .map_err(|_| bad(param, &n.to_string())),
    }
}

fn parse_range(param: &str, r: Option<RawRange>) -> Result<Option<(u16, u16)>> {
    let Some((from, to)) = r else {
        return Ok(None);
    };
    let from = parse_port(&format!("{param}.FromPort"), from)?.unwrap_or(0);
    let to = parse_port(&format!("{param}.ToPort"), to)?.unwrap_or(65535);
    if from > to {
        return Err(Fault::invalid_param(format!(
            "The port range {from}-{to} in {param} is invalid: FromPort is greater than ToPort."
        )));
    }
    Ok(Some((from, to)))
}

fn parse_filter(param: &str, f: Option<&RawFilter>) -> Result<Option<PathFilter>> {
    let Some(f) = f else { return Ok(None) };
    let out = PathFilter {
        source_address: parse_ip(
            &format!("{param}.SourceAddress"),
            f.source_address.as_deref(),
        )?,
        source_port_range: parse_range(&format!("{param}.SourcePortRange"), f.source_port_range)?,
        destination_address: parse_ip(
            &format!("{param}.DestinationAddress"),
            f.destination_address.as_deref(),
        )?,
        destination_port_range: parse_range(
            &format!("{param}.DestinationPortRange"),
            f.destination_port_range,
        )?,
    };
    Ok((!out.is_empty()).then_some(out))
}

/// A path end named by ID or ARN, resolved: (ID, ARN).
///
/// It must be one of the caller's own instances or network interfaces in
/// the caller's region. Another account's resource, by ID or by ARN, gives
/// the same NotFound error as a missing one (vpcd has no AWS Organizations,
/// so no trusted access lets a path name another account's resource; its
/// address can be the destination instead).
fn resolve_end(w: &World, ctx: &Ctx<'_>, param: &str, value: &str) -> Result<(String, String)> {
    let value = value.trim();
    let (account, region, id) = if let Some(rest) = value.strip_prefix("arn:") {
        // arn:<partition>:ec2:<region>:<account>:<type>/<id>
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [_, service, region, account, res] = parts[..] else {
            return Err(bad(param, value));
        };
        let Some((rtype, id)) = res.split_once('/') else {
            return Err(bad(param, value));
        };
        if service != "ec2" || resource_type_of(id) != Some(rtype) {
            return Err(bad(param, value));
        }
        (account.to_string(), region.to_string(), id.to_string())
    } else {
        (ctx.account.clone(), ctx.region.clone(), value.to_string())
    };
    if region != ctx.region {
        return Err(Fault::invalid_param(format!(
            "The {param} {value} is not in this Region ({}); a path's ends must be in the Region it is created in.",
            ctx.region
        )));
    }
    let kind = match resource_type_of(&id) {
        Some("instance") => &instance::INSTANCE,
        Some("network-interface") => &eni::ENI,
        _ => {
            return Err(Fault::invalid_param(format!(
                "Value ({value}) for parameter {param} is invalid. vpcd analyses paths from and to instances and network interfaces (or, for the destination, an IP address)."
            )))
        }
    };
    kind.check(&id)?;
    if account != ctx.account {
        return Err(kind.not_found(&id));
    }
    let found = match kind.prefix {
        "i" => w
            .get::<Instance>(&id)
            .filter(|i| i.state != InstanceState::Terminated)
            .map(|i| &i.meta),
        _ => w.get::<NetworkInterface>(&id).map(|e| &e.meta),
    };
    match found {
        Some(m) if m.owner == account && m.region == region => {
            let a = arn(
                &m.region,
                &m.owner,
                resource_type_of(&id).unwrap_or(""),
                &id,
            );
            Ok((id, a))
        }
        _ => Err(kind.not_found(&id)),
    }
}

fn check_token(t: &Option<String>) -> Result<()> {
    if t.as_ref().is_some_and(|t| t.len() > 64) {
        return Err(Fault::invalid_param(
            "Value for parameter clientToken is invalid. Length exceeds maximum of 64 characters.",
        ));
    }
    Ok(())
}

fn idempotent_mismatch() -> Fault {
    Fault::new(
        "IdempotentParameterMismatch",
        "The client token you have provided is associated with a resource that is already deleted or was created with different parameters. Please retry with a new client token.",
    )
}

/// CreateNetworkInsightsPath.
pub fn create_path(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    req: CreatePath,
) -> Result<NetworkInsightsPath> {
    let token = req.client_token.clone().filter(|t| !t.is_empty());
    check_token(&token)?;
    let source = req
        .source
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fault::missing("Source"))?;
    let protocol = req
        .protocol
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fault::missing("Protocol"))?
        .to_ascii_lowercase();
    if !matches!(protocol.as_str(), "tcp" | "udp" | "icmp") {
        return Err(Fault::invalid_param(format!(
            "Value ({protocol}) for parameter Protocol is invalid. Valid values: tcp, udp, icmp (icmp is a vpcd extension)."
        )));
    }
    let destination_port = parse_port("DestinationPort", req.destination_port)?;
    let source_ip = parse_ip("SourceIp", req.source_ip.as_deref())?;
    let destination_ip = parse_ip("DestinationIp", req.destination_ip.as_deref())?;
    let fs = parse_filter("FilterAtSource", req.filter_at_source.as_ref())?;
    let fd = parse_filter("FilterAtDestination", req.filter_at_destination.as_ref())?;
    if fs.is_some() && (source_ip.is_some() || destination_port.is_some()) {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "FilterAtSource cannot be specified together with SourceIp or DestinationPort.",
        ));
    }
    if fd.is_some() && destination_ip.is_some() {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "FilterAtDestination cannot be specified together with DestinationIp.",
        ));
    }
    if protocol == "icmp"
        && (destination_port.is_some()
            || [&fs, &fd].iter().any(|f| {
                f.as_ref().is_some_and(|f| {
                    f.source_port_range.is_some() || f.destination_port_range.is_some()
                })
            }))
    {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "Ports cannot be specified with protocol icmp.",
        ));
    }
    let (source, source_arn) = resolve_end(w, ctx, "Source", source)?;
    let (destination, destination_arn) = match req
        .destination
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(d) => {
            let (id, a) = resolve_end(w, ctx, "Destination", d)?;
            (Some(id), Some(a))
        }
        None => (None, None),
    };
    let dest_address = destination_ip
        .or(fs.as_ref().and_then(|f| f.destination_address))
        .or(fd.as_ref().and_then(|f| f.destination_address));
    if destination.is_none() && dest_address.is_none() {
        return Err(Fault::missing("Destination"));
    }
    super::tags::validate(&req.tags, ctx.limits.tags_per_resource)?;
    if let Some(t) = &token {
        if let Some(p) = w
            .scoped::<NetworkInsightsPath>(&ctx.account, &ctx.region)
            .find(|p| p.client_token.as_deref() == Some(t.as_str()))
        {
            let same = p.source == source
                && p.destination == destination
                && p.protocol == protocol
                && p.destination_port == destination_port
                && p.source_ip == source_ip
                && p.destination_ip == destination_ip;
            return if same {
                Ok(p.clone())
            } else {
                Err(idempotent_mismatch())
            };
        }
    }
    let p = NetworkInsightsPath {
        meta: new_meta(ctx, "nip", req.tags),
        source,
        source_arn,
        destination,
        destination_arn,
        source_ip,
        destination_ip,
        protocol,
        destination_port,
        filter_at_source: fs,
        filter_at_destination: fd,
        client_token: token,
    };
    w.put(p.clone());
    Ok(p)
}

/// The caller's path by ID.
pub fn get_path<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w NetworkInsightsPath> {
    w.owned::<NetworkInsightsPath>(id, &ctx.account, &ctx.region, PATH.nf(id)?)
}

/// The caller's analysis by ID.
pub fn get_analysis<'w>(
    w: &'w World,
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<&'w NetworkInsightsAnalysis> {
    w.owned::<NetworkInsightsAnalysis>(id, &ctx.account, &ctx.region, ANALYSIS.nf(id)?)
}

/// DeleteNetworkInsightsPath: refused while the path has analyses, as on AWS.
pub fn delete_path(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    get_path(w, ctx, id)?;
    let mut analyses: Vec<&str> = w
        .iter::<NetworkInsightsAnalysis>()
        .filter(|a| a.path_id == id)
        .map(|a| a.meta.id.as_str())
        .collect();
    if !analyses.is_empty() {
        analyses.sort_unstable();
        return Err(Fault::new(
            "AnalysisExistsForNetworkInsightsPath",
            format!(
                "At least one analysis [{}] exists for path {id}. Delete all the analyses before deleting this network path.",
                analyses.join(", ")
            ),
        ));
    }
    w.remove::<NetworkInsightsPath>(id);
    Ok(())
}

// ---- Analyses --------------------------------------------------------------

/// StartNetworkInsightsAnalysis's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartAnalysis {
    pub path_id: Option<String>,
    pub additional_accounts: Vec<String>,
    pub filter_in_arns: Vec<String>,
    pub filter_out_arns: Vec<String>,
    pub tags: Tags,
    pub client_token: Option<String>,
}

/// The analysis' `warningMessage`: every vpcd diagnosis, one per line, then
/// notes on what vpcd did not apply.
pub fn warning_message(result: Option<&AnalysisResult>, notes: &[String]) -> Option<String> {
    let mut lines: Vec<String> = result
        .into_iter()
        .flat_map(|r| &r.diagnoses)
        .map(|d| format!("vpcd diagnosis {}: {} Fix: {}", d.kind, d.message, d.fix))
        .collect();
    lines.extend(notes.iter().cloned());
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// An `AdditionalAccount`: twelve digits, and only the caller's own account.
///
/// AWS analyses other accounts' resources only for an AWS Organization with
/// Reachability Analyzer's trusted access; vpcd has no organizations, so
/// every other account, existing or not, gives this same error.
fn check_additional_account(ctx: &Ctx<'_>, acct: &str) -> Result<()> {
    if acct.len() != 12 || !acct.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("AdditionalAccount", acct));
    }
    if acct != ctx.account {
        return Err(Fault::invalid_param(format!(
            "Value ({acct}) for parameter AdditionalAccount is invalid. Cross-account analysis needs AWS Organizations trusted access, which vpcd does not have: an analysis covers the caller's own account only."
        )));
    }
    Ok(())
}

/// The NotFound error of the resource type an ARN names (None for types a
/// filter cannot name).
fn not_found_for(resource_type: &str, id: &str) -> Option<Result<Fault>> {
    let kind = match resource_type {
        "security-group" => {
            return Some(super::SG.check(id).map(|()| super::sg_not_found(id)));
        }
        "instance" => &instance::INSTANCE,
        "network-interface" => &eni::ENI,
        "network-acl" => &super::ACL,
        "route-table" => &super::ROUTE_TABLE,
        "vpc-peering-connection" => &super::PCX,
        "internet-gateway" => &super::IGW,
        "natgateway" => &nat::NAT,
        "subnet" => &super::SUBNET,
        "vpc" => &super::VPC,
        _ => return None,
    };
    Some(kind.check(id).map(|()| kind.not_found(id)))
}

/// A `FilterInArn` / `FilterOutArn`: the ARN of a resource the caller may
/// see (its own, or a peering connection it is a party to, or the VPC at
/// either end of one). Another account's resource gives the same NotFound
/// error as a missing one.
fn check_filter_arn(w: &World, view: &AccountView<'_>, param: &str, value: &str) -> Result<()> {
    // arn:<partition>:ec2:<region>:<account>:<type>/<id>
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let ["arn", _, "ec2", _, _, res] = parts[..] else {
        return Err(bad(param, value));
    };
    let Some((rtype, id)) = res.split_once('/') else {
        return Err(bad(param, value));
    };
    if resource_type_of(id) != Some(rtype) {
        return Err(bad(param, value));
    }
    let not_found = not_found_for(rtype, id).ok_or_else(|| bad(param, value))??;
    if arn_of(w, id).as_deref() == Some(value) && view.sees(id) {
        Ok(())
    } else {
        Err(not_found)
    }
}

/// How an analysis is computed: the path over the whole world, as a local
/// administrator sees it, frozen (`vpc_reach::analyze_path`).
pub type Analyzer<'f> = &'f dyn Fn(&World, &NetworkInsightsPath) -> Result<AnalysisResult>;

/// StartNetworkInsightsAnalysis: runs the analysis to completion with
/// `analyze`, redacts it for the caller and records it.
///
/// An analysis the evaluator cannot carry out (say, the source instance has
/// been terminated) is recorded as `failed` with the reason in its status
/// message; only a bad request fails the call itself.
pub fn start_analysis(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    req: StartAnalysis,
    analyze: Analyzer<'_>,
) -> Result<NetworkInsightsAnalysis> {
    let token = req.client_token.clone().filter(|t| !t.is_empty());
    check_token(&token)?;
    let path_id = req
        .path_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fault::missing("NetworkInsightsPathId"))?;
    let path = get_path(w, ctx, path_id)?.clone();
    super::tags::validate(&req.tags, ctx.limits.tags_per_resource)?;
    for acct in &req.additional_accounts {
        check_additional_account(ctx, acct)?;
    }
    let view = AccountView::new(w, &ctx.account);
    for a in &req.filter_in_arns {
        check_filter_arn(w, &view, "FilterInArn", a)?;
    }
    for a in &req.filter_out_arns {
        check_filter_arn(w, &view, "FilterOutArn", a)?;
    }
    if let Some(t) = &token {
        if let Some(a) = w
            .scoped::<NetworkInsightsAnalysis>(&ctx.account, &ctx.region)
            .find(|a| a.client_token.as_deref() == Some(t.as_str()))
        {
            return if a.path_id == path.meta.id {
                Ok(a.clone())
            } else {
                Err(idempotent_mismatch())
            };
        }
    }
    let mut notes = Vec::new();
    if !req.filter_in_arns.is_empty() || !req.filter_out_arns.is_empty() {
        notes.push(
            "vpcd note: FilterInArns and FilterOutArns are recorded but not applied; the analysis covers the path vpcd's evaluator finds.".to_string(),
        );
    }
    if let Some((from, to)) = [&path.filter_at_source, &path.filter_at_destination]
        .iter()
        .find_map(|f| f.as_ref().and_then(|f| f.destination_port_range))
        .filter(|(from, to)| from != to && path.destination_port.is_none())
    {
        notes.push(format!(
            "vpcd note: the destination port range {from}-{to} was analysed at port {from} only."
        ));
    }
    let outcome = analyze(w, &path);
    // The caller sees of another account's side only what it may (the one
    // redaction step: `ops::account_view`).
    let (status, status_message, result) = match outcome {
        Ok(a) => (AnalysisStatus::Succeeded, None, Some(view.redact(a))),
        Err(f) => (
            AnalysisStatus::Failed,
            Some(view.redact_text(&f.message)),
            None,
        ),
    };
    let a = NetworkInsightsAnalysis {
        meta: new_meta(ctx, "nia", req.tags),
        path_id: path.meta.id.clone(),
        status,
        status_message,
        warning_message: warning_message(result.as_ref(), &notes),
        additional_accounts: req.additional_accounts,
        filter_in_arns: req.filter_in_arns,
        filter_out_arns: req.filter_out_arns,
        result,
        client_token: token,
    };
    w.put(a.clone());
    Ok(a)
}

/// DeleteNetworkInsightsAnalysis.
pub fn delete_analysis(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    get_analysis(w, ctx, id)?;
    w.remove::<NetworkInsightsAnalysis>(id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{Limits, SeqIds, Timestamp};

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    fn meta(id: &str, owner: &str) -> Meta {
        Meta {
            id: id.into(),
            owner: owner.into(),
            region: "us-east-1".into(),
            tags: vec![],
            created: Timestamp(0),
        }
    }

    /// These tests check the records, not the evaluator (`vpc-reach`).
    fn no_analyzer(_: &World, _: &NetworkInsightsPath) -> Result<AnalysisResult> {
        Ok(AnalysisResult::default())
    }

    fn world() -> World {
        let mut w = World::default();
        for (id, owner) in [("i-0000000000000000a", A), ("i-0000000000000000b", B)] {
            w.put(Instance {
                meta: meta(id, owner),
                reservation_id: "r-1".into(),
                image_id: "ami-1".into(),
                instance_type: "t3.micro".into(),
                state: InstanceState::Running,
                state_since: Timestamp(0),
                transition_due: None,
                vpc_id: "vpc-1".into(),
                subnet_id: "subnet-1".into(),
                az: "us-east-1a".into(),
                primary_eni: "eni-1".into(),
                launch_index: 0,
                key_name: None,
                client_token: None,
                opts: Default::default(),
                host: None,
            });
        }
        w.take_changes();
        w
    }

    fn with_ctx<T>(account: &str, f: impl FnOnce(&mut Ctx<'_>) -> T) -> T {
        let limits = Limits::default();
        let mut ids = SeqIds::default();
        let mut ctx = Ctx {
            account: account.into(),
            region: "us-east-1".into(),
            now: Timestamp(1000),
            ids: &mut ids,
            limits: &limits,
            zones: &[],
        };
        f(&mut ctx)
    }

    fn req(src: &str, dst: &str) -> CreatePath {
        CreatePath {
            source: Some(src.into()),
            destination: Some(dst.into()),
            protocol: Some("tcp".into()),
            destination_port: Some(22),
            ..CreatePath::default()
        }
    }

    #[test]
    fn ends_by_id_and_arn() {
        let mut w = world();
        let arn_a = "arn:aws:ec2:us-east-1:111111111111:instance/i-0000000000000000a";
        let p = with_ctx(A, |ctx| {
            create_path(&mut w, ctx, req("i-0000000000000000a", arn_a)).unwrap()
        });
        assert_eq!(p.destination.as_deref(), Some("i-0000000000000000a"));
        assert_eq!(p.destination_arn.as_deref(), Some(arn_a));
        assert!(p.meta.id.starts_with("nip-"));
        let e = with_ctx(A, |ctx| {
            let mut r = req("i-0000000000000000a", "i-0000000000000000a");
            r.protocol = Some("sctp".into());
            create_path(&mut w, ctx, r).unwrap_err()
        });
        assert_eq!(e.code, "InvalidParameterValue");
    }

    /// Another account's instance, by bare ID or by ARN, as source or
    /// destination, gives exactly the error a missing instance gives.
    #[test]
    fn another_accounts_end_is_as_unknown_as_a_missing_one() {
        let mut w = world();
        let own = "i-0000000000000000a";
        let cases = [
            ("i-0000000000000000b", "i-00000000000000fff"),
            (
                "arn:aws:ec2:us-east-1:222222222222:instance/i-0000000000000000b",
                "arn:aws:ec2:us-east-1:222222222222:instance/i-00000000000000fff",
            ),
        ];
        for (foreign, missing) in cases {
            for as_source in [false, true] {
                let make = |w: &mut World, other: &str| {
                    let r = if as_source {
                        req(other, own)
                    } else {
                        req(own, other)
                    };
                    with_ctx(A, |ctx| create_path(w, ctx, r).unwrap_err())
                };
                let f = make(&mut w, foreign);
                let m = make(&mut w, missing);
                assert_eq!(f.code, "InvalidInstanceID.NotFound");
                assert_eq!(f.code, m.code);
                assert_eq!(
                    f.message.replace("0000000000000000b", "00000000000000fff"),
                    m.message,
                    "{foreign} vs {missing}"
                );
            }
        }
        assert!(w.insights_paths.is_empty());
    }

    /// FilterInArns, FilterOutArns and AdditionalAccounts naming another
    /// account give exactly what a missing resource (or account) gives.
    #[test]
    fn analysis_filters_and_accounts_keep_to_the_callers_own() {
        let mut w = world();
        let p = with_ctx(A, |ctx| {
            create_path(
                &mut w,
                ctx,
                req("i-0000000000000000a", "i-0000000000000000a"),
            )
            .unwrap()
        });
        let start = |w: &mut World, f: &dyn Fn(&mut StartAnalysis)| {
            let mut r = StartAnalysis {
                path_id: Some(p.meta.id.clone()),
                ..StartAnalysis::default()
            };
            f(&mut r);
            with_ctx(A, |ctx| start_analysis(w, ctx, r, &no_analyzer))
        };
        let foreign = "arn:aws:ec2:us-east-1:222222222222:instance/i-0000000000000000b";
        let missing = "arn:aws:ec2:us-east-1:222222222222:instance/i-00000000000000fff";
        let own = "arn:aws:ec2:us-east-1:111111111111:instance/i-0000000000000000a";
        for set in [
            |r: &mut StartAnalysis, a: &str| r.filter_in_arns = vec![a.into()],
            |r: &mut StartAnalysis, a: &str| r.filter_out_arns = vec![a.into()],
        ] {
            let f = start(&mut w, &|r| set(r, foreign)).unwrap_err();
            let m = start(&mut w, &|r| set(r, missing)).unwrap_err();
            assert_eq!(f.code, "InvalidInstanceID.NotFound");
            assert_eq!(f.code, m.code);
            assert_eq!(
                f.message.replace("0000000000000000b", "00000000000000fff"),
                m.message
            );
            start(&mut w, &|r| set(r, own)).unwrap();
            let e = start(&mut w, &|r| set(r, "arn:aws:s3:::bucket")).unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue");
        }
        let f = start(&mut w, &|r| r.additional_accounts = vec![B.into()]).unwrap_err();
        let m = start(&mut w, &|r| {
            r.additional_accounts = vec!["999999999999".into()]
        })
        .unwrap_err();
        assert_eq!(f.code, "InvalidParameterValue");
        assert_eq!(f.code, m.code);
        assert_eq!(f.message.replace(B, "999999999999"), m.message);
        start(&mut w, &|r| r.additional_accounts = vec![A.into()]).unwrap();
    }

    #[test]
    fn delete_refused_while_analyses_exist() {
        let mut w = world();
        let p = with_ctx(A, |ctx| {
            create_path(
                &mut w,
                ctx,
                req("i-0000000000000000a", "i-0000000000000000a"),
            )
            .unwrap()
        });
        let a = with_ctx(A, |ctx| {
            start_analysis(
                &mut w,
                ctx,
                StartAnalysis {
                    path_id: Some(p.meta.id.clone()),
                    ..StartAnalysis::default()
                },
                &no_analyzer,
            )
            .unwrap()
        });
        assert_eq!(a.path_id, p.meta.id);
        let e = with_ctx(A, |ctx| delete_path(&mut w, ctx, &p.meta.id).unwrap_err());
        assert_eq!(e.code, "AnalysisExistsForNetworkInsightsPath");
        // Nobody else sees either record.
        let e = with_ctx(B, |ctx| {
            delete_analysis(&mut w, ctx, &a.meta.id).unwrap_err()
        });
        assert_eq!(e.code, "InvalidNetworkInsightsAnalysisId.NotFound");
        with_ctx(A, |ctx| delete_analysis(&mut w, ctx, &a.meta.id)).unwrap();
        with_ctx(A, |ctx| delete_path(&mut w, ctx, &p.meta.id)).unwrap();
        assert!(w.insights_paths.is_empty());
    }

    #[test]
    fn codes() {
        assert_eq!(
            diagnosis_code("transitive-peering"),
            "VPCD_TRANSITIVE_PEERING"
        );
    }

    #[test]
    fn a_filtered_path_keeps_its_destination_address_and_port() {
        let mut w = world();
        let p = with_ctx(A, |ctx| {
            let mut r = req("i-0000000000000000a", "");
            r.destination = None;
            r.destination_port = None;
            r.filter_at_source = Some(RawFilter {
                destination_address: Some("10.2.1.10".into()),
                destination_port_range: Some((Some(443), Some(443))),
                ..RawFilter::default()
            });
            create_path(&mut w, ctx, r).unwrap()
        });
        let f = p.filter_at_source.unwrap();
        assert_eq!(f.destination_address, Some("10.2.1.10".parse().unwrap()));
        assert_eq!(f.destination_port_range, Some((443, 443)));
    }
}
