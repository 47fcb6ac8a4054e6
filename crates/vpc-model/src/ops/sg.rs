//! Security groups: create, delete, rules, references across peerings, stale rules.
//!
//! A rule may reference a group in the same VPC, or a group in a peer VPC
//! when an `active`, same-region peering joins the two VPCs (the peer may
//! belong to another account, named by `UserId`). When that peering goes
//! away, or the referenced group is deleted, the rule is kept but is *stale*;
//! it stops being stale if an active peering between the same two VPCs
//! appears again.

use super::{check_limit, defaults, peering, sg_not_found, vpc, SG};
use crate::cidr;
use crate::fault::{Fault, Result};
use crate::ids;
use crate::rule_match::{lower_sg_rule, IpProtocol, PacketFields};
use crate::types::*;
use crate::world::World;
use crate::Ctx;

/// CreateSecurityGroup's parameters.
#[derive(Debug, Clone, Default)]
pub struct CreateGroup {
    pub name: Option<String>,
    pub description: Option<String>,
    pub vpc_id: Option<String>,
    pub tags: Tags,
}

/// One `UserIdGroupPair` as the caller gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairSpec {
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub user_id: Option<String>,
    pub vpc_id: Option<String>,
    pub peering_id: Option<String>,
    pub description: Option<String>,
}

/// One CIDR or prefix-list entry with its optional description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub value: String,
    pub description: Option<String>,
}

/// One `IpPermission` as the caller gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    pub protocol: Option<String>,
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
    pub ipv4: Vec<Source>,
    pub ipv6: Vec<Source>,
    pub prefix_lists: Vec<Source>,
    pub groups: Vec<PairSpec>,
}

/// A referenced group as Describe calls show it (`UserIdGroupPair`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairView {
    pub user_id: Option<String>,
    pub group_id: String,
    pub group_name: Option<String>,
    pub vpc_id: Option<String>,
    pub peering_id: Option<String>,
    pub peering_status: Option<String>,
    pub description: Option<String>,
}

/// Rules grouped the way `ipPermissions` shows them: one item per (protocol, ports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermView {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub groups: Vec<PairView>,
    pub ipv4: Vec<Source>,
    pub ipv6: Vec<Source>,
    pub prefix_lists: Vec<Source>,
}

/// One row of DescribeSecurityGroupReferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub group_id: String,
    pub referencing_vpc_id: String,
    pub peering_id: Option<String>,
}

/// One row of DescribeStaleSecurityGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleGroup {
    pub group_id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub ingress: Vec<PermView>,
    pub egress: Vec<PermView>,
}

/// `arn:aws:ec2:<region>:<account>:security-group/<id>`
pub fn arn(g: &SecurityGroup) -> String {
    format!(
        "arn:aws:ec2:{}:{}:security-group/{}",
        g.meta.region, g.meta.owner, g.meta.id
    )
}

/// `arn:aws:ec2:<region>:<account>:security-group-rule/<id>`
pub fn rule_arn(g: &SecurityGroup, r: &SgRule) -> String {
    format!(
        "arn:aws:ec2:{}:{}:security-group-rule/{}",
        g.meta.region, g.meta.owner, r.id
    )
}

/// The caller's default VPC in this region, if it has one.
pub fn default_vpc(w: &World, ctx: &Ctx<'_>) -> Option<String> {
    w.get::<RegionInit>(&format!("{}:{}", ctx.account, ctx.region))
        .and_then(|r| r.default_vpc.clone())
}

/// The caller's groups in this region (owning their lifetime, unlike `World::scoped`).
fn mine<'w>(w: &'w World, ctx: &Ctx<'_>) -> impl Iterator<Item = &'w SecurityGroup> + 'w {
    let (a, r) = (ctx.account.clone(), ctx.region.clone());
    w.iter::<SecurityGroup>()
        .filter(move |g| g.meta.owner == a && g.meta.region == r)
}

/// The caller's group by ID.
pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w SecurityGroup> {
    SG.check(id)?;
    w.owned::<SecurityGroup>(id, &ctx.account, &ctx.region, || sg_not_found(id))
}

/// The caller's group by name, in its default VPC (the only place names address groups).
pub fn by_name<'w>(w: &'w World, ctx: &Ctx<'_>, name: &str) -> Result<&'w SecurityGroup> {
    let Some(vpc) = default_vpc(w, ctx) else {
        return Err(Fault::new(
            "InvalidGroup.NotFound",
            format!("The security group '{name}' does not exist"),
        ));
    };
    mine(w, ctx)
        .find(|g| g.vpc_id == vpc && g.name == name)
        .ok_or_else(|| {
            Fault::new(
                "InvalidGroup.NotFound",
                format!("The security group '{name}' does not exist in default VPC '{vpc}'"),
            )
        })
}

/// The group a request addresses: `GroupId`, or else `GroupName` in the default VPC.
pub fn resolve(w: &World, ctx: &Ctx<'_>, id: Option<&str>, name: Option<&str>) -> Result<String> {
    match (id.filter(|s| !s.is_empty()), name.filter(|s| !s.is_empty())) {
        (Some(id), _) => Ok(get(w, ctx, id)?.meta.id.clone()),
        (None, Some(name)) => Ok(by_name(w, ctx, name)?.meta.id.clone()),
        (None, None) => Err(Fault::missing("GroupId")),
    }
}

// ---- Create and delete ---------------------------------------------------

fn check_text(what: &str, s: &str) -> Result<()> {
    if s.chars().count() > 255 {
        return Err(Fault::invalid_param(format!(
            "Value ({s}) for parameter {what} is invalid. Length exceeds maximum of 255 characters."
        )));
    }
    if !s.is_ascii() {
        return Err(Fault::invalid_param(format!(
            "Value ({s}) for parameter {what} is invalid. Character sets beyond ASCII are not supported."
        )));
    }
    Ok(())
}

pub fn create_group(w: &mut World, ctx: &mut Ctx<'_>, req: CreateGroup) -> Result<SecurityGroup> {
    let name = req
        .name
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fault::missing("GroupName"))?;
    let description = req
        .description
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fault::missing("GroupDescription"))?;
    check_text("GroupName", &name)?;
    check_text("GroupDescription", &description)?;
    if name.eq_ignore_ascii_case("default") {
        return Err(Fault::new(
            "InvalidGroup.Reserved",
            "The security group 'default' is reserved",
        ));
    }
    if name.to_ascii_lowercase().starts_with("sg-") {
        return Err(Fault::invalid_param(format!(
            "Value ({name}) for parameter GroupName is invalid. Group names may not be in the format sg-*."
        )));
    }
    let vpc = match req.vpc_id.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => vpc::get(w, ctx, id)?.clone(),
        None => {
            let id = default_vpc(w, ctx)
                .ok_or_else(|| Fault::new("VPCIdNotSpecified", "No default VPC for this user"))?;
            vpc::get(w, ctx, &id)?.clone()
        }
    };
    super::tags::validate(&req.tags, ctx.limits.tags_per_resource)?;
    if w.iter::<SecurityGroup>()
        .any(|g| g.vpc_id == vpc.meta.id && g.name.eq_ignore_ascii_case(&name))
    {
        return Err(Fault::new(
            "InvalidGroup.Duplicate",
            format!(
                "The security group '{name}' already exists for VPC '{}'",
                vpc.meta.id
            ),
        ));
    }
    let count = w.scoped::<SecurityGroup>(&ctx.account, &ctx.region).count();
    check_limit(
        count,
        ctx.limits.security_groups_per_region,
        "SecurityGroupLimitExceeded",
        "security groups",
    )?;
    let meta = super::new_meta(ctx, "sg", req.tags);
    let mut egress = vec![defaults::egress_all(ctx, defaults::all_v4())];
    if vpc.v6_blocks().next().is_some() {
        egress.push(defaults::egress_all(ctx, defaults::all_v6()));
    }
    let g = SecurityGroup {
        meta,
        vpc_id: vpc.meta.id.clone(),
        name,
        description,
        ingress: Vec::new(),
        egress,
    };
    w.put(g.clone());
    Ok(g)
}

fn references_group(r: &SgRule, id: &str) -> bool {
    matches!(&r.peer, SgPeer::Group { group_id, .. } if group_id == id)
}

pub fn delete_group(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let g = get(w, ctx, id)?.clone();
    let is_default = w
        .get::<Vpc>(&g.vpc_id)
        .is_some_and(|v| v.default_sg == g.meta.id)
        || g.name == "default";
    if is_default {
        return Err(Fault::new(
            "CannotDelete",
            format!("the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"),
        ));
    }
    // Rules in the same VPC block deletion; references from a peer VPC just go stale.
    let dependent = w.iter::<SecurityGroup>().any(|o| {
        o.meta.id != g.meta.id
            && o.vpc_id == g.vpc_id
            && o.ingress
                .iter()
                .chain(&o.egress)
                .any(|r| references_group(r, id))
    });
    // So does any network interface that uses the group.
    let in_use = w
        .iter::<NetworkInterface>()
        .any(|e| e.groups.iter().any(|x| x == id));
    if dependent || in_use {
        return Err(Fault::dependency(format!(
            "resource {id} has a dependent object"
        )));
    }
    w.remove::<SecurityGroup>(id);
    Ok(())
}

// ---- Members (what a group reference matches) ------------------------------

/// The interfaces that use the group, by interface ID. These are the members
/// a rule referencing the group matches (possibly from a peer VPC).
pub fn members<'w>(
    w: &'w World,
    group_id: &'w str,
) -> impl Iterator<Item = &'w NetworkInterface> + 'w {
    w.iter::<NetworkInterface>()
        .filter(move |e| e.groups.iter().any(|g| g == group_id))
}

/// Every private IPv4 address (primary and secondary) and IPv6 address of the
/// group's member interfaces, each list sorted and without duplicates.
///
/// Interfaces are included whatever their instance's state: an address stays
/// with its interface while the interface exists, so no other interface can
/// hold it meanwhile.
pub fn member_addresses(
    w: &World,
    group_id: &str,
) -> (Vec<std::net::Ipv4Addr>, Vec<std::net::Ipv6Addr>) {
    let mut v4: Vec<std::net::Ipv4Addr> = Vec::new();
    let mut v6: Vec<std::net::Ipv6Addr> = Vec::new();
    for e in members(w, group_id) {
        v4.extend(e.private_ips.iter().map(|p| p.ip));
        v6.extend(e.ipv6.iter().copied());
    }
    v4.sort();
    v4.dedup();
    v6.sort();
    v6.dedup();
    (v4, v6)
}

// ---- Rules ---------------------------------------------------------------

/// The canonical protocol: `tcp`, `udp`, `icmp`, `icmpv6`, `-1`, or another number.
pub fn normalise_protocol(p: &str) -> Result<String> {
    IpProtocol::parse(p).map(IpProtocol::group_form)
}

/// Checks the port range (or ICMP type and code) for a canonical protocol.
fn ports(proto: &str, from: Option<i64>, to: Option<i64>) -> Result<(Option<i32>, Option<i32>)> {
    let range = |msg: String| Fault::invalid_param(msg);
    match proto {
        "tcp" | "udp" => {
            let (Some(f), Some(t)) = (from, to) else {
                return Err(range(
                    "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange."
                        .into(),
                ));
            };
            if !(0..=65535).contains(&f) {
                return Err(range(format!("TCP/UDP (from) port ({f}) out of range")));
            }
            if !(0..=65535).contains(&t) {
                return Err(range(format!("TCP/UDP (to) port ({t}) out of range")));
            }
            if f > t {
                return Err(range(format!(
                    "Invalid TCP/UDP port range (from {f} to {t}): the from port must not be greater than the to port"
                )));
            }
            Ok((Some(f as i32), Some(t as i32)))
        }
        "icmp" | "icmpv6" => {
            let (f, t) = match (from, to) {
                (Some(f), Some(t)) => (f, t),
                (None, None) if proto == "icmpv6" => (-1, -1),
                _ => return Err(range(
                    "Invalid value 'Must specify both from and to ports with ICMP.' for portRange."
                        .into(),
                )),
            };
            if !(-1..=255).contains(&f) {
                return Err(range(format!("ICMP type ({f}) out of range")));
            }
            if !(-1..=255).contains(&t) {
                return Err(range(format!("ICMP code ({t}) out of range")));
            }
            if f == -1 && t != -1 {
                return Err(range(format!(
                    "ICMP code ({t}) out of range: the code must be -1 when the type is -1"
                )));
            }
            Ok((Some(f as i32), Some(t as i32)))
        }
        // `-1` and every other protocol mean all ports.
        _ => Ok((None, None)),
    }
}

fn bad_cidr(s: &str) -> Fault {
    Fault::invalid_param(format!("CIDR block {s} is malformed"))
}

fn different_networks() -> Fault {
    Fault::new(
        "InvalidGroup.NotFound",
        "You have specified two resources that belong to different networks.",
    )
}

fn name_not_found(name: &str, vpc_id: &str) -> Fault {
    Fault::new(
        "InvalidGroup.NotFound",
        format!("The security group '{name}' does not exist in VPC '{vpc_id}'"),
    )
}

/// Resolves a referenced group for a new rule in `own` (strict: the reference must be reachable).
pub(super) fn reference(
    w: &World,
    ctx: &Ctx<'_>,
    own: &SecurityGroup,
    pair: &PairSpec,
) -> Result<SgPeer> {
    let account = pair
        .user_id
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ctx.account.clone());
    let target = match (pair.group_id.as_deref(), pair.group_name.as_deref()) {
        (Some(id), _) if !id.is_empty() => {
            SG.check(id)?;
            w.get::<SecurityGroup>(id)
                .filter(|g| g.meta.owner == account)
                .ok_or_else(|| sg_not_found(id))?
        }
        (_, Some(name)) if !name.is_empty() => {
            if account != ctx.account {
                return Err(sg_not_found(name));
            }
            w.scoped::<SecurityGroup>(&ctx.account, &ctx.region)
                .find(|g| g.vpc_id == own.vpc_id && g.name == name)
                .ok_or_else(|| name_not_found(name, &own.vpc_id))?
        }
        _ => return Err(Fault::new("MissingParameter", "Source group ID missing.")),
    };
    if target.vpc_id == own.vpc_id && target.meta.region == own.meta.region {
        return Ok(SgPeer::Group {
            group_id: target.meta.id.clone(),
            user_id: target.meta.owner.clone(),
            vpc_id: None,
            peering_id: None,
        });
    }
    let link = peering::active_between(w, &own.vpc_id, &target.vpc_id);
    let foreign = target.meta.owner != ctx.account;
    match link {
        Some(p) if !p.inter_region() && target.meta.region == own.meta.region => {
            Ok(SgPeer::Group {
                group_id: target.meta.id.clone(),
                user_id: target.meta.owner.clone(),
                vpc_id: Some(target.vpc_id.clone()),
                peering_id: Some(p.id.clone()),
            })
        }
        // Another account's group that no active peering reaches must look
        // exactly like a missing one: the caller learns nothing about it.
        None if foreign => Err(sg_not_found(&target.meta.id)),
        _ => Err(different_networks()),
    }
}

/// Resolves a referenced group for revoking (lenient: stale and deleted groups still match).
pub(super) fn reference_for_revoke(
    w: &World,
    ctx: &Ctx<'_>,
    own: &SecurityGroup,
    pair: &PairSpec,
) -> Result<Option<String>> {
    match (pair.group_id.as_deref(), pair.group_name.as_deref()) {
        (Some(id), _) if !id.is_empty() => {
            SG.check(id)?;
            Ok(Some(id.to_string()))
        }
        (_, Some(name)) if !name.is_empty() => Ok(w
            .scoped::<SecurityGroup>(&ctx.account, &ctx.region)
            .find(|g| g.vpc_id == own.vpc_id && g.name == name)
            .map(|g| g.meta.id.clone())),
        _ => Err(Fault::new("MissingParameter", "Source group ID missing.")),
    }
}

/// One (protocol, ports, peer) candidate with its description.
pub(super) type Candidate = (String, Option<i32>, Option<i32>, SgPeer, Option<String>);

/// Expands permissions into one candidate per source; `group` resolves group pairs.
pub(super) fn expand(
    perms: &[Permission],
    mut group: impl FnMut(&PairSpec) -> Result<Option<SgPeer>>,
) -> Result<Vec<Option<Candidate>>> {
    if perms.is_empty() {
        return Err(Fault::missing("IpPermissions"));
    }
    let mut out = Vec::new();
    for p in perms {
        let proto_s = p
            .protocol
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Fault::missing("IpProtocol"))?;
        let proto = normalise_protocol(proto_s)?;
        let (from, to) = ports(&proto, p.from_port, p.to_port)?;
        if p.ipv4.is_empty()
            && p.ipv6.is_empty()
            && p.prefix_lists.is_empty()
            && p.groups.is_empty()
        {
            return Err(Fault::new(
                "MissingParameter",
                "The request must contain the parameter IpRanges, Ipv6Ranges, PrefixListIds or Groups (UserIdGroupPairs)",
            ));
        }
        let mut push = |peer: Option<SgPeer>, d: &Option<String>| {
            out.push(peer.map(|peer| (proto.clone(), from, to, peer, d.clone())));
        };
        for s in &p.ipv4 {
            let n = cidr::parse_v4(&s.value).ok_or_else(|| bad_cidr(&s.value))?;
            if proto == "icmpv6" {
                // ICMPv6 never travels over IPv4: such a rule could match nothing.
                return Err(Fault::new(
                    "InvalidParameterCombination",
                    format!("The protocol icmpv6 (58) cannot be combined with the IPv4 CIDR block {n}: ICMPv6 rules take IPv6 ranges only."),
                ));
            }
            push(Some(SgPeer::Cidr4(n)), &s.description);
        }
        for s in &p.ipv6 {
            let n = cidr::parse_v6(&s.value).ok_or_else(|| bad_cidr(&s.value))?;
            push(Some(SgPeer::Cidr6(n)), &s.description);
        }
        for s in &p.prefix_lists {
            ids::check("pl", "InvalidPrefixListId.Malformed", &s.value)?;
            push(Some(SgPeer::PrefixList(s.value.clone())), &s.description);
        }
        for g in &p.groups {
            let peer = group(g)?;
            push(peer, &g.description);
        }
    }
    for c in out.iter().flatten() {
        if let Some(d) = &c.4 {
            if d.chars().count() > 255 {
                return Err(Fault::invalid_param(format!(
                    "Value ({d}) for parameter description is invalid. Length exceeds maximum of 255 characters."
                )));
            }
        }
    }
    Ok(out)
}

/// True when two peers name the same source (group references compare by group ID).
pub(super) fn same_peer(a: &SgPeer, b: &SgPeer) -> bool {
    match (a, b) {
        (SgPeer::Group { group_id: x, .. }, SgPeer::Group { group_id: y, .. }) => x == y,
        _ => a == b,
    }
}

pub(super) fn matches(r: &SgRule, c: &Candidate) -> bool {
    r.protocol == c.0 && r.from_port == c.1 && r.to_port == c.2 && same_peer(&r.peer, &c.3)
}

fn peer_label(p: &SgPeer) -> String {
    match p {
        SgPeer::Cidr4(n) => n.to_string(),
        SgPeer::Cidr6(n) => n.to_string(),
        SgPeer::PrefixList(id) => id.clone(),
        SgPeer::Group { group_id, .. } => group_id.clone(),
    }
}

/// How AWS spells a rule in `InvalidPermission.Duplicate`.
pub(super) fn rule_label(proto: &str, from: Option<i32>, to: Option<i32>, peer: &SgPeer) -> String {
    let peer = peer_label(peer);
    let proto = if proto == "-1" {
        "ALL".to_string()
    } else {
        proto.to_ascii_uppercase()
    };
    match (from, to) {
        (Some(f), Some(t)) => {
            format!("peer: {peer}, {proto}, from port: {f}, to port: {t}, ALLOW")
        }
        _ => format!("peer: {peer}, {proto}, ALLOW"),
    }
}

/// Which count of the per-group rule quota a rule with peer `p` falls in
/// (IPv6 or not) and how many rules it counts for there: a rule naming a
/// prefix list counts the list's `MaxEntries`, as in AWS.
pub(super) fn quota_weight(w: &World, p: &SgPeer) -> (bool, usize) {
    match p {
        SgPeer::Cidr6(_) => (true, 1),
        SgPeer::PrefixList(l) => w.get::<ManagedPrefixList>(l).map_or((false, 1), |x| {
            (x.address_family == "IPv6", x.max_entries as usize)
        }),
        _ => (false, 1),
    }
}

/// The weighted rule count of `rules` in one family (`quota_weight`).
pub(super) fn quota_count<'r>(
    w: &World,
    rules: impl IntoIterator<Item = &'r SgPeer>,
    v6: bool,
) -> usize {
    rules
        .into_iter()
        .map(|p| quota_weight(w, p))
        .filter(|(f, _)| *f == v6)
        .map(|(_, n)| n)
        .sum()
}

/// True when a direction of group `g` holds more (weighted) rules of one
/// family than the quota allows.
pub(super) fn over_rule_quota(w: &World, g: &SecurityGroup, limit: usize) -> bool {
    [&g.ingress, &g.egress].into_iter().any(|rules| {
        [false, true]
            .into_iter()
            .any(|v6| quota_count(w, rules.iter().map(|r| &r.peer), v6) > limit)
    })
}

pub(super) fn rules_of(g: &SecurityGroup, egress: bool) -> &Vec<SgRule> {
    if egress {
        &g.egress
    } else {
        &g.ingress
    }
}

/// AuthorizeSecurityGroupIngress / AuthorizeSecurityGroupEgress. Returns the new rules.
pub fn authorize(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    group_id: &str,
    egress: bool,
    perms: &[Permission],
    tags: Tags,
) -> Result<Vec<SgRule>> {
    let g = get(w, ctx, group_id)?.clone();
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    let cands: Vec<Candidate> = {
        let wr: &World = w;
        let cr: &Ctx<'_> = ctx;
        expand(perms, |pair| reference(wr, cr, &g, pair).map(Some))?
            .into_iter()
            .flatten()
            .collect()
    };
    for c in &cands {
        if let SgPeer::PrefixList(list) = &c.3 {
            super::prefix_list::visible(w, ctx, list)?;
        }
    }
    let existing = rules_of(&g, egress);
    for (i, c) in cands.iter().enumerate() {
        let dup = existing.iter().any(|r| matches(r, c))
            || cands[..i]
                .iter()
                .any(|o| o.0 == c.0 && o.1 == c.1 && o.2 == c.2 && same_peer(&o.3, &c.3));
        if dup {
            return Err(Fault::new(
                "InvalidPermission.Duplicate",
                format!(
                    "the specified rule \"{}\" already exists",
                    rule_label(&c.0, c.1, c.2, &c.3)
                ),
            ));
        }
    }
    // The quota counts each direction and each IP family separately, a
    // prefix list as its MaxEntries rules.
    for v6 in [false, true] {
        let have = quota_count(w, existing.iter().map(|r| &r.peer), v6);
        let add = quota_count(w, cands.iter().map(|c| &c.3), v6);
        if add > 0 && have + add > ctx.limits.rules_per_security_group {
            return Err(Fault::new(
                "RulesPerSecurityGroupLimitExceeded",
                "The maximum number of rules per security group has been reached.",
            ));
        }
    }
    let new: Vec<SgRule> = cands
        .into_iter()
        .map(|(protocol, from_port, to_port, peer, description)| SgRule {
            id: ctx.new_id("sgr"),
            protocol,
            from_port,
            to_port,
            peer,
            description,
            tags: tags.clone(),
        })
        .collect();
    let add = new.clone();
    w.update::<SecurityGroup>(group_id, |g| {
        if egress {
            g.egress.extend(add)
        } else {
            g.ingress.extend(add)
        }
    });
    Ok(new)
}

fn rule_not_found() -> Fault {
    Fault::new(
        "InvalidPermission.NotFound",
        "The specified rule does not exist in this security group.",
    )
}

fn remove_rules(w: &mut World, group_id: &str, egress: bool, ids: &[String]) -> Vec<SgRule> {
    let mut removed = Vec::new();
    w.update::<SecurityGroup>(group_id, |g| {
        let rules = if egress {
            &mut g.egress
        } else {
            &mut g.ingress
        };
        rules.retain(|r| {
            if ids.contains(&r.id) {
                removed.push(r.clone());
                false
            } else {
                true
            }
        });
    });
    removed
}

/// RevokeSecurityGroupIngress / RevokeSecurityGroupEgress by permissions. Returns the removed rules.
pub fn revoke(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    group_id: &str,
    egress: bool,
    perms: &[Permission],
) -> Result<Vec<SgRule>> {
    let g = get(w, ctx, group_id)?.clone();
    let cands = {
        let wr: &World = w;
        let cr: &Ctx<'_> = ctx;
        expand(perms, |pair| {
            Ok(
                reference_for_revoke(wr, cr, &g, pair)?.map(|id| SgPeer::Group {
                    group_id: id,
                    user_id: String::new(),
                    vpc_id: None,
                    peering_id: None,
                }),
            )
        })?
    };
    let existing = rules_of(&g, egress);
    let mut ids: Vec<String> = Vec::new();
    for c in &cands {
        let hit = c
            .as_ref()
            .and_then(|c| existing.iter().find(|r| matches(r, c)))
            .ok_or_else(rule_not_found)?;
        if !ids.contains(&hit.id) {
            ids.push(hit.id.clone());
        }
    }
    Ok(remove_rules(w, group_id, egress, &ids))
}

/// Revokes rules by `sgr-` ID. Each must be a rule of this group in this direction.
pub fn revoke_ids(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    group_id: &str,
    egress: bool,
    rule_ids: &[String],
) -> Result<Vec<SgRule>> {
    let g = get(w, ctx, group_id)?.clone();
    if rule_ids.is_empty() {
        return Err(Fault::missing("SecurityGroupRuleId"));
    }
    for id in rule_ids {
        ids::check("sgr", "InvalidSecurityGroupRuleId.Malformed", id)?;
        if !rules_of(&g, egress).iter().any(|r| &r.id == id) {
            return Err(Fault::new(
                "InvalidSecurityGroupRuleId.NotFound",
                format!("The security group rule ID '{id}' does not exist"),
            ));
        }
    }
    Ok(remove_rules(w, group_id, egress, rule_ids))
}

// ---- Views ---------------------------------------------------------------

/// The peering a peer-VPC reference goes through now and its state code.
///
/// The stored connection while it is active; else any active connection
/// between the same two VPCs (re-peering); else the stored one as it is
/// (`deleted` once its record is gone).
pub fn effective_peering(
    w: &World,
    own_vpc: &str,
    other_vpc: &str,
    stored: Option<&str>,
) -> (Option<String>, String) {
    if let Some(p) = stored.and_then(|id| w.get::<Peering>(id)) {
        if p.state == PcxState::Active {
            return (Some(p.id.clone()), "active".into());
        }
    }
    if let Some(p) = peering::active_between(w, own_vpc, other_vpc) {
        return (Some(p.id.clone()), "active".into());
    }
    let status = stored
        .and_then(|id| w.get::<Peering>(id))
        .map_or("deleted", |p| p.state.as_str());
    (stored.map(str::to_string), status.to_string())
}

/// True when the rule references a deleted group, or a peer VPC's group without an active peering.
pub fn is_stale(w: &World, own_vpc: &str, r: &SgRule) -> bool {
    let SgPeer::Group {
        group_id, vpc_id, ..
    } = &r.peer
    else {
        return false;
    };
    if w.get::<SecurityGroup>(group_id).is_none() {
        return true;
    }
    match vpc_id {
        Some(v) => peering::active_between(w, own_vpc, v).is_none_or(|p| p.inter_region()),
        None => false,
    }
}

/// Whether one rule admits a packet, as the data plane compiles it
/// (`vpc-dataplane`'s `nft::sg_rules`): `peer` is the packet's source for an
/// ingress rule and its destination for an egress rule; `proto` is the IP
/// protocol number; `port` the destination port (TCP/UDP); `icmp` the ICMP
/// (or ICMPv6) type and code.
///
/// A CIDR matches addresses of its family; a group reference matches the
/// addresses of the group's members (`is_member(group, addr)`, wherever they
/// are); a prefix list the addresses of its entries (`in_list(list, addr)`,
/// `prefix_list::contains`). `-1` is every protocol; `tcp` and
/// `udp` compare the port range (none, or one spanning 0–65535, is every
/// port); `icmp` matches ICMPv4 and `icmpv6` ICMPv6 only, by type and code
/// (-1 is any); another number matches that protocol. Staleness is the
/// caller's business ([`is_stale`]).
pub fn rule_admits(
    r: &SgRule,
    proto: u8,
    port: Option<u16>,
    icmp: Option<(u8, u8)>,
    peer: std::net::IpAddr,
    is_member: impl Fn(&str, std::net::IpAddr) -> bool,
    in_list: impl Fn(&str, std::net::IpAddr) -> bool,
) -> bool {
    let packet = PacketFields {
        protocol: proto,
        port,
        icmp,
    };
    lower_sg_rule(r)
        .iter()
        .any(|m| m.admits(packet, peer, &is_member, &in_list))
}

/// How Describe calls show a group reference of a rule in a group of `own_vpc`.
pub fn pair_view(w: &World, own_vpc: &str, r: &SgRule) -> Option<PairView> {
    let SgPeer::Group {
        group_id,
        user_id,
        vpc_id,
        peering_id,
    } = &r.peer
    else {
        return None;
    };
    let mut v = PairView {
        user_id: Some(user_id.clone()),
        group_id: group_id.clone(),
        description: r.description.clone(),
        ..PairView::default()
    };
    if let Some(other) = vpc_id {
        let (pcx, status) = effective_peering(w, own_vpc, other, peering_id.as_deref());
        v.vpc_id = Some(other.clone());
        v.peering_id = pcx;
        v.peering_status = Some(status);
    }
    Some(v)
}

/// A stale reference as DescribeStaleSecurityGroups shows it.
fn stale_pair(w: &World, own_vpc: &str, r: &SgRule) -> Option<PairView> {
    let mut v = pair_view(w, own_vpc, r)?;
    match w.get::<SecurityGroup>(&v.group_id) {
        Some(target) => v.group_name = Some(target.name.clone()),
        None => {
            v.user_id = None;
            v.group_name = None;
        }
    }
    Some(v)
}

fn group_perms<'a>(
    rules: impl Iterator<Item = &'a SgRule>,
    mut pair: impl FnMut(&SgRule) -> Option<PairView>,
) -> Vec<PermView> {
    let mut out: Vec<PermView> = Vec::new();
    for r in rules {
        let idx = match out.iter().position(|p| {
            p.protocol == r.protocol && p.from_port == r.from_port && p.to_port == r.to_port
        }) {
            Some(i) => i,
            None => {
                out.push(PermView {
                    protocol: r.protocol.clone(),
                    from_port: r.from_port,
                    to_port: r.to_port,
                    ..PermView::default()
                });
                out.len() - 1
            }
        };
        let p = &mut out[idx];
        let src = |value: String| Source {
            value,
            description: r.description.clone(),
        };
        match &r.peer {
            SgPeer::Cidr4(n) => p.ipv4.push(src(n.to_string())),
            SgPeer::Cidr6(n) => p.ipv6.push(src(n.to_string())),
            SgPeer::PrefixList(id) => p.prefix_lists.push(src(id.clone())),
            SgPeer::Group { .. } => {
                if let Some(v) = pair(r) {
                    p.groups.push(v)
                }
            }
        }
    }
    out
}

/// A group's rules in one direction, as `ipPermissions` / `ipPermissionsEgress`.
pub fn permissions(w: &World, g: &SecurityGroup, egress: bool) -> Vec<PermView> {
    group_perms(rules_of(g, egress).iter(), |r| pair_view(w, &g.vpc_id, r))
}

/// DescribeSecurityGroupReferences: peer VPCs whose rules reference the caller's groups.
pub fn references(w: &World, ctx: &Ctx<'_>, group_ids: &[String]) -> Result<Vec<Reference>> {
    if group_ids.is_empty() {
        return Err(Fault::missing("GroupId"));
    }
    let mut out: Vec<Reference> = Vec::new();
    for id in group_ids {
        let g = get(w, ctx, id)?;
        for o in w.iter::<SecurityGroup>() {
            if o.vpc_id == g.vpc_id {
                continue;
            }
            for r in o.ingress.iter().chain(&o.egress) {
                let SgPeer::Group {
                    group_id,
                    vpc_id: Some(v),
                    peering_id,
                    ..
                } = &r.peer
                else {
                    continue;
                };
                if group_id != id || *v != g.vpc_id || is_stale(w, &o.vpc_id, r) {
                    continue;
                }
                let (pcx, _) = effective_peering(w, &o.vpc_id, v, peering_id.as_deref());
                let row = Reference {
                    group_id: id.clone(),
                    referencing_vpc_id: o.vpc_id.clone(),
                    peering_id: pcx,
                };
                if !out.contains(&row) {
                    out.push(row);
                }
            }
        }
    }
    Ok(out)
}

/// DescribeStaleSecurityGroups: the caller's groups in `vpc_id` with stale rules, by group ID.
pub fn stale_groups(w: &World, ctx: &Ctx<'_>, vpc_id: &str) -> Result<Vec<StaleGroup>> {
    let vpc = vpc::get(w, ctx, vpc_id)?;
    let mut out = Vec::new();
    for g in w.scoped::<SecurityGroup>(&ctx.account, &ctx.region) {
        if g.vpc_id != vpc.meta.id {
            continue;
        }
        let stale = |egress: bool| {
            group_perms(
                rules_of(g, egress)
                    .iter()
                    .filter(|r| is_stale(w, &g.vpc_id, r)),
                |r| stale_pair(w, &g.vpc_id, r),
            )
        };
        let (ingress, egress) = (stale(false), stale(true));
        if ingress.is_empty() && egress.is_empty() {
            continue;
        }
        out.push(StaleGroup {
            group_id: g.meta.id.clone(),
            name: g.name.clone(),
            description: g.description.clone(),
            vpc_id: g.vpc_id.clone(),
            ingress,
            egress,
        });
    }
    Ok(out)
}

/// Every rule of the caller's groups as (group, rule, is_egress), sorted by rule ID.
pub fn all_rules<'w>(w: &'w World, ctx: &Ctx<'_>) -> Vec<(&'w SecurityGroup, &'w SgRule, bool)> {
    let mut v: Vec<_> = mine(w, ctx)
        .flat_map(|g| {
            g.ingress
                .iter()
                .map(move |r| (g, r, false))
                .chain(g.egress.iter().map(move |r| (g, r, true)))
        })
        .collect();
    v.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    v
}

/// The caller's rule with this ID, with its group and direction.
pub fn find_rule<'w>(
    w: &'w World,
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<(&'w SecurityGroup, &'w SgRule, bool)> {
    ids::check("sgr", "InvalidSecurityGroupRuleId.Malformed", id)?;
    all_rules(w, ctx)
        .into_iter()
        .find(|(_, r, _)| r.id == id)
        .ok_or_else(|| {
            Fault::new(
                "InvalidSecurityGroupRuleId.NotFound",
                format!("The security group rule ID '{id}' does not exist"),
            )
        })
}

#[cfg(test)]
mod tests;
