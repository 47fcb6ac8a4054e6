//! Network ACLs: create, delete, entries, associations, and the stateless
//! evaluator the data plane uses.
//!
//! Every subnet is associated with exactly one ACL of its VPC: the VPC's
//! default ACL until [`replace_association`] moves it.

use super::defaults::{acl_entries, STAR_V4, STAR_V6};
use super::{check_limit, new_meta, vpc, ACL};
use crate::cidr;
use crate::fault::{Fault, Result};
use crate::rule_match::{lower_acl_entry, IpProtocol, PacketFields};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::IpNet;
use std::net::IpAddr;

/// Highest rule number a caller may use; 32767 and up are reserved.
pub const MAX_RULE: i64 = 32766;

pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w NetworkAcl> {
    w.owned::<NetworkAcl>(id, &ctx.account, &ctx.region, ACL.nf(id)?)
}

/// The ACL a subnet is associated with.
pub fn acl_for_subnet<'w>(w: &'w World, subnet_id: &str) -> Option<&'w NetworkAcl> {
    w.iter::<NetworkAcl>()
        .find(|a| a.assocs.iter().any(|x| x.subnet_id == subnet_id))
}

fn sort_entries(entries: &mut [AclEntry]) {
    entries.sort_by_key(|e| (e.egress, e.rule_number));
}

/// CreateNetworkAcl: a custom ACL with only the `*` deny entries.
pub fn create(w: &mut World, ctx: &mut Ctx<'_>, vpc_id: &str, tags: Tags) -> Result<NetworkAcl> {
    let v = vpc::get(w, ctx, vpc_id)?.clone();
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    let n = w
        .iter::<NetworkAcl>()
        .filter(|a| a.vpc_id == vpc_id)
        .count();
    check_limit(
        n,
        ctx.limits.network_acls_per_vpc,
        "NetworkAclLimitExceeded",
        "network ACLs",
    )?;
    let mut entries = acl_entries(false, v.v6_blocks().next().is_some());
    sort_entries(&mut entries);
    let acl = NetworkAcl {
        meta: new_meta(ctx, "acl", tags),
        vpc_id: vpc_id.to_string(),
        is_default: false,
        entries,
        assocs: Vec::new(),
    };
    w.put(acl.clone());
    Ok(acl)
}

/// DeleteNetworkAcl: not the default ACL, and not while subnets use it.
pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let acl = get(w, ctx, id)?;
    if acl.is_default {
        return Err(Fault::invalid_param(format!(
            "cannot delete default network ACL {id}"
        )));
    }
    if !acl.assocs.is_empty() {
        return Err(Fault::dependency(format!(
            "The networkAcl '{id}' has dependencies and cannot be deleted."
        )));
    }
    w.remove::<NetworkAcl>(id);
    Ok(())
}

/// The parameters of CreateNetworkAclEntry / ReplaceNetworkAclEntry, as sent.
#[derive(Debug, Clone, Default)]
pub struct EntrySpec {
    pub rule_number: Option<i64>,
    pub protocol: Option<String>,
    pub rule_action: Option<String>,
    pub egress: bool,
    pub cidr_block: Option<String>,
    pub ipv6_cidr_block: Option<String>,
    pub port_from: Option<i64>,
    pub port_to: Option<i64>,
    pub icmp_type: Option<i64>,
    pub icmp_code: Option<i64>,
}

/// Checks a rule number a caller sent: 1–32766 (the `*` rules cannot be touched).
pub fn check_rule_number(n: Option<i64>) -> Result<u32> {
    let n = n.ok_or_else(|| Fault::missing("RuleNumber"))?;
    if !(1..=MAX_RULE).contains(&n) {
        return Err(Fault::invalid_param(format!(
            "Value ({n}) for parameter ruleNumber is invalid. Rule number must be between 1 and {MAX_RULE}."
        )));
    }
    Ok(u32::try_from(n).expect("in range"))
}

/// `-1` or a protocol number 0–255 as a string; also accepts `all`, `tcp`, `udp`, `icmp`, `icmpv6`.
pub fn normalise_protocol(s: &str) -> Result<String> {
    IpProtocol::parse(s).map(IpProtocol::acl_form)
}

fn port(v: i64, which: &str) -> Result<u16> {
    u16::try_from(v).map_err(|_| {
        Fault::invalid_param(format!(
            "Value ({v}) for parameter portRange.{which} is invalid. Ports must be between 0 and 65535."
        ))
    })
}

fn icmp_value(v: i64, which: &str) -> Result<i32> {
    if (-1..=255).contains(&v) {
        Ok(i32::try_from(v).expect("in range"))
    } else {
        Err(Fault::invalid_param(format!(
            "Value ({v}) for parameter icmpTypeCode.{which} is invalid. It must be between -1 and 255."
        )))
    }
}

/// Validates an entry spec (all but existence and quota) into an entry.
pub fn build_entry(spec: &EntrySpec) -> Result<AclEntry> {
    let rule_number = check_rule_number(spec.rule_number)?;
    let protocol = normalise_protocol(
        spec.protocol
            .as_deref()
            .ok_or_else(|| Fault::missing("Protocol"))?,
    )?;
    let action = match spec
        .rule_action
        .as_deref()
        .ok_or_else(|| Fault::missing("RuleAction"))?
        .to_ascii_lowercase()
        .as_str()
    {
        "allow" => AclAction::Allow,
        "deny" => AclAction::Deny,
        other => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter ruleAction is invalid. Valid values are allow, deny."
            )))
        }
    };
    let cidr = match (&spec.cidr_block, &spec.ipv6_cidr_block) {
        (Some(_), Some(_)) => {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "Only one of CidrBlock and Ipv6CidrBlock may be specified.",
            ))
        }
        (None, None) => return Err(Fault::missing("CidrBlock or Ipv6CidrBlock")),
        (Some(s), None) => IpNet::V4(cidr::parse_v4(s).ok_or_else(|| {
            Fault::invalid_param(format!(
                "Value ({s}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
            ))
        })?),
        (None, Some(s)) => IpNet::V6(cidr::parse_v6(s).ok_or_else(|| {
            Fault::invalid_param(format!(
                "Value ({s}) for parameter ipv6CidrBlock is invalid. This is not a valid CIDR block."
            ))
        })?),
    };
    let ports = if protocol == "6" || protocol == "17" {
        let (from, to) = match (spec.port_from, spec.port_to) {
            (Some(f), Some(t)) => (port(f, "from")?, port(t, "to")?),
            (None, _) => return Err(Fault::missing("PortRange.From")),
            (_, None) => return Err(Fault::missing("PortRange.To")),
        };
        if from > to {
            return Err(Fault::invalid_param(format!(
                "Invalid port range {from}-{to}: the from port must not exceed the to port."
            )));
        }
        Some((from, to))
    } else {
        None
    };
    let icmp = if protocol == "1" || protocol == "58" {
        match (spec.icmp_type, spec.icmp_code) {
            (Some(t), Some(c)) => Some((icmp_value(t, "type")?, icmp_value(c, "code")?)),
            (None, _) => return Err(Fault::missing("Icmp.Type")),
            (_, None) => return Err(Fault::missing("Icmp.Code")),
        }
    } else {
        None
    };
    Ok(AclEntry {
        rule_number,
        egress: spec.egress,
        protocol,
        action,
        cidr,
        icmp,
        ports,
    })
}

fn is_star(e: &AclEntry) -> bool {
    e.rule_number == STAR_V4 || e.rule_number == STAR_V6
}

/// User rules (not `*`) of one direction and IP family.
fn count_rules(acl: &NetworkAcl, egress: bool, v4: bool, skip: Option<u32>) -> usize {
    acl.entries
        .iter()
        .filter(|e| {
            e.egress == egress
                && !is_star(e)
                && e.cidr.addr().is_ipv4() == v4
                && Some(e.rule_number) != skip
        })
        .count()
}

fn check_entry_limit(
    ctx: &Ctx<'_>,
    acl: &NetworkAcl,
    e: &AclEntry,
    skip: Option<u32>,
) -> Result<()> {
    if count_rules(acl, e.egress, e.cidr.addr().is_ipv4(), skip) >= ctx.limits.rules_per_network_acl
    {
        return Err(Fault::new(
            "NetworkAclEntryLimitExceeded",
            format!(
                "The maximum number of network acl entries ({}) has been reached.",
                ctx.limits.rules_per_network_acl
            ),
        ));
    }
    Ok(())
}

fn entry_not_found() -> Fault {
    Fault::new(
        "InvalidNetworkAclEntry.NotFound",
        "The specified network ACL entry does not exist",
    )
}

/// CreateNetworkAclEntry.
pub fn create_entry(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    acl_id: &str,
    spec: &EntrySpec,
) -> Result<()> {
    let acl = get(w, ctx, acl_id)?;
    let e = build_entry(spec)?;
    if acl
        .entries
        .iter()
        .any(|x| x.egress == e.egress && x.rule_number == e.rule_number)
    {
        return Err(Fault::new(
            "NetworkAclEntryAlreadyExists",
            format!(
                "The network acl entry identified by {} already exists.",
                e.rule_number
            ),
        ));
    }
    check_entry_limit(ctx, acl, &e, None)?;
    w.update::<NetworkAcl>(acl_id, |a| {
        a.entries.push(e);
        sort_entries(&mut a.entries);
    });
    Ok(())
}

/// ReplaceNetworkAclEntry: the entry with this rule number and direction must exist.
pub fn replace_entry(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    acl_id: &str,
    spec: &EntrySpec,
) -> Result<()> {
    let acl = get(w, ctx, acl_id)?;
    let e = build_entry(spec)?;
    let Some(old) = acl
        .entries
        .iter()
        .find(|x| x.egress == e.egress && x.rule_number == e.rule_number)
    else {
        return Err(entry_not_found());
    };
    if old.cidr.addr().is_ipv4() != e.cidr.addr().is_ipv4() {
        // Moving the rule to the other IP family takes a slot there.
        check_entry_limit(ctx, acl, &e, Some(e.rule_number))?;
    }
    w.update::<NetworkAcl>(acl_id, |a| {
        if let Some(x) = a
            .entries
            .iter_mut()
            .find(|x| x.egress == e.egress && x.rule_number == e.rule_number)
        {
            *x = e;
        }
    });
    Ok(())
}

/// DeleteNetworkAclEntry.
pub fn delete_entry(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    acl_id: &str,
    rule_number: Option<i64>,
    egress: bool,
) -> Result<()> {
    let acl = get(w, ctx, acl_id)?;
    let n = check_rule_number(rule_number)?;
    if !acl
        .entries
        .iter()
        .any(|x| x.egress == egress && x.rule_number == n)
    {
        return Err(entry_not_found());
    }
    w.update::<NetworkAcl>(acl_id, |a| {
        a.entries
            .retain(|x| !(x.egress == egress && x.rule_number == n))
    });
    Ok(())
}

/// ReplaceNetworkAclAssociation: moves a subnet to another ACL of its VPC.
///
/// Returns the new association (a fresh `aclassoc-` ID).
pub fn replace_association(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    assoc_id: &str,
    acl_id: &str,
) -> Result<AclAssoc> {
    let (old_acl, old) = w
        .scoped::<NetworkAcl>(&ctx.account, &ctx.region)
        .find_map(|a| {
            a.assocs
                .iter()
                .find(|x| x.id == assoc_id)
                .map(|x| (a.meta.id.clone(), (a.vpc_id.clone(), x.clone())))
        })
        .ok_or_else(|| {
            Fault::new(
                "InvalidAssociationID.NotFound",
                format!("The association ID '{assoc_id}' does not exist"),
            )
        })?;
    let (old_vpc, old) = old;
    let new_acl = get(w, ctx, acl_id)?;
    if new_acl.vpc_id != old_vpc {
        return Err(Fault::invalid_param(format!(
            "Network ACL {acl_id} and association {assoc_id} belong to different networks"
        )));
    }
    let na = AclAssoc {
        id: ctx.new_id("aclassoc"),
        subnet_id: old.subnet_id,
    };
    let out = na.clone();
    w.update::<NetworkAcl>(&old_acl, |a| a.assocs.retain(|x| x.id != assoc_id));
    w.update::<NetworkAcl>(acl_id, |a| a.assocs.push(na));
    Ok(out)
}

/// Whether one (non-`*`) entry matches a packet: its normalized match, as
/// the data plane compiles it.
fn entry_matches(
    e: &AclEntry,
    proto: u8,
    remote: IpAddr,
    port: Option<u16>,
    icmp: Option<(u8, u8)>,
) -> bool {
    let packet = PacketFields {
        protocol: proto,
        port,
        icmp,
    };
    lower_acl_entry(e).is_some_and(|m| m.admits(packet, remote, |_, _| false, |_, _| false))
}

/// Decides one packet against an ACL, statelessly.
///
/// `egress` picks the direction (traffic leaving the subnet); `remote` is the
/// address outside the subnet (source for ingress, destination for egress);
/// `port` is the port the entry's port range is compared with (the
/// destination port); `icmp` is (type, code) for ICMP / ICMPv6.
///
/// Entries of that direction whose CIDR is of the address's family are tried
/// in ascending rule number and the first match decides. The `*` rules deny
/// everything that nothing else matched; if an ACL lacks them the result is
/// the same deny, reported with the `*` number of the family.
pub fn evaluate(
    acl: &NetworkAcl,
    egress: bool,
    proto: u8,
    remote: IpAddr,
    port: Option<u16>,
    icmp: Option<(u8, u8)>,
) -> (AclAction, u32) {
    let mut rules: Vec<&AclEntry> = acl
        .entries
        .iter()
        .filter(|e| e.egress == egress && e.cidr.addr().is_ipv4() == remote.is_ipv4())
        .collect();
    rules.sort_by_key(|e| e.rule_number);
    for e in rules {
        if is_star(e) {
            return (AclAction::Deny, e.rule_number);
        }
        if entry_matches(e, proto, remote, port, icmp) {
            return (e.action, e.rule_number);
        }
    }
    (
        AclAction::Deny,
        if remote.is_ipv4() { STAR_V4 } else { STAR_V6 },
    )
}

/// Decides a whole range of destination ports at once: `Allow` only when
/// the ACL admits every port in `ports` (each decided, as in [`evaluate`], by
/// the first entry in rule-number order that matches it).
///
/// Returns the number of the first allow entry that matched part of the
/// range, or of the first entry that denies some port of it (the `*` number
/// when the implicit deny catches what nothing else matched). Used for the
/// return traffic of a connection, whose destination port is an ephemeral
/// port the client's kernel picks from a range.
pub fn evaluate_ports(
    acl: &NetworkAcl,
    egress: bool,
    proto: u8,
    remote: IpAddr,
    ports: (u16, u16),
    icmp: Option<(u8, u8)>,
) -> (AclAction, u32) {
    let mut rules: Vec<&AclEntry> = acl
        .entries
        .iter()
        .filter(|e| e.egress == egress && e.cidr.addr().is_ipv4() == remote.is_ipv4())
        .collect();
    rules.sort_by_key(|e| e.rule_number);
    // Ports not yet decided, as disjoint inclusive intervals.
    let mut left: Vec<(u16, u16)> = vec![ports];
    let mut first_allow: Option<u32> = None;
    for e in rules {
        if is_star(e) {
            return (AclAction::Deny, e.rule_number);
        }
        // The entry's port set, if it matches the packet otherwise.
        let (lo, hi) = e.ports.unwrap_or((0, u16::MAX));
        let probe = left
            .iter()
            .find_map(|&(a, b)| (a.max(lo) <= b.min(hi)).then_some(a.max(lo)));
        let Some(p) = probe else { continue };
        if !entry_matches(e, proto, remote, Some(p), icmp) {
            continue;
        }
        if e.action == AclAction::Deny {
            return (AclAction::Deny, e.rule_number);
        }
        first_allow.get_or_insert(e.rule_number);
        let mut rest = Vec::with_capacity(left.len() + 1);
        for (a, b) in left {
            if b < lo || a > hi {
                rest.push((a, b));
                continue;
            }
            if a < lo {
                rest.push((a, lo - 1));
            }
            if b > hi {
                rest.push((hi + 1, b));
            }
        }
        left = rest;
        if left.is_empty() {
            return (AclAction::Allow, first_allow.unwrap_or(e.rule_number));
        }
    }
    (
        AclAction::Deny,
        if remote.is_ipv4() { STAR_V4 } else { STAR_V6 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Limits;
    use crate::ops::{defaults, subnet};
    use ipnet::Ipv4Net;

    use crate::ctx::SeqIds as Seq;

    fn zones() -> Vec<(String, String)> {
        vec![("us-east-1a".into(), "use1-az1".into())]
    }

    fn ctx<'a>(ids: &'a mut Seq, limits: &'a Limits, zones: &'a [(String, String)]) -> Ctx<'a> {
        Ctx {
            account: "111111111111".into(),
            region: "us-east-1".into(),
            now: Default::default(),
            ids,
            limits,
            zones,
        }
    }

    /// A world with one VPC (10.0.0.0/16) and one subnet; returns (vpc, subnet).
    fn setup(w: &mut World, c: &mut Ctx<'_>) -> (Vpc, Subnet) {
        let v = defaults::new_vpc(
            w,
            c,
            "10.0.0.0/16".parse().unwrap(),
            None,
            false,
            "default",
            vec![],
        );
        let s = subnet::insert_subnet(
            w,
            c,
            &v,
            Some("10.0.1.0/24".parse::<Ipv4Net>().unwrap()),
            "us-east-1a",
            "use1-az1",
            false,
            vec![],
        );
        (v, s)
    }

    fn spec(n: i64, proto: &str, action: &str, egress: bool, cidr: &str) -> EntrySpec {
        EntrySpec {
            rule_number: Some(n),
            protocol: Some(proto.into()),
            rule_action: Some(action.into()),
            egress,
            cidr_block: Some(cidr.into()),
            ..Default::default()
        }
    }

    fn tcp(n: i64, action: &str, egress: bool, cidr: &str, from: i64, to: i64) -> EntrySpec {
        EntrySpec {
            port_from: Some(from),
            port_to: Some(to),
            ..spec(n, "6", action, egress, cidr)
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn acl_create_has_only_star_entries_and_delete_rules() {
        let (mut ids, limits, z) = (Seq(0), Limits::default(), zones());
        let mut c = ctx(&mut ids, &limits, &z);
        let mut w = World::default();
        let (v, s) = setup(&mut w, &mut c);
        let a = create(&mut w, &mut c, &v.meta.id, vec![]).unwrap();
        assert!(!a.is_default);
        assert_eq!(
            a.entries
                .iter()
                .map(|e| (e.egress, e.rule_number, e.action))
                .collect::<Vec<_>>(),
            vec![
                (false, STAR_V4, AclAction::Deny),
                (true, STAR_V4, AclAction::Deny)
            ]
        );
        // The default ACL cannot be deleted.
        let err = delete(&mut w, &mut c, &v.default_acl).unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
        assert!(err.message.contains(&v.default_acl));
        // Subnets start on the default ACL.
        assert_eq!(
            acl_for_subnet(&w, &s.meta.id).unwrap().meta.id,
            v.default_acl
        );
        // Move the subnet; now the custom ACL has a dependency.
        let old = w.get::<NetworkAcl>(&v.default_acl).unwrap().assocs[0].clone();
        let na = replace_association(&mut w, &mut c, &old.id, &a.meta.id).unwrap();
        assert_ne!(na.id, old.id);
        assert_eq!(na.subnet_id, s.meta.id);
        assert_eq!(acl_for_subnet(&w, &s.meta.id).unwrap().meta.id, a.meta.id);
        assert!(w
            .get::<NetworkAcl>(&v.default_acl)
            .unwrap()
            .assocs
            .is_empty());
        let err = delete(&mut w, &mut c, &a.meta.id).unwrap_err();
        assert_eq!(err.code, "DependencyViolation");
        assert_eq!(
            err.message,
            format!(
                "The networkAcl '{}' has dependencies and cannot be deleted.",
                a.meta.id
            )
        );
        // The old association ID is gone.
        let err = replace_association(&mut w, &mut c, &old.id, &v.default_acl).unwrap_err();
        assert_eq!(err.code, "InvalidAssociationID.NotFound");
        // Move back and delete.
        replace_association(&mut w, &mut c, &na.id, &v.default_acl).unwrap();
        delete(&mut w, &mut c, &a.meta.id).unwrap();
        assert!(w.get::<NetworkAcl>(&a.meta.id).is_none());
        let err = delete(&mut w, &mut c, &a.meta.id).unwrap_err();
        assert_eq!(err.code, "InvalidNetworkAclID.NotFound");
        let err = delete(&mut w, &mut c, "xyz").unwrap_err();
        assert_eq!(err.code, "InvalidNetworkAclId.Malformed");
    }

    #[test]
    fn acl_association_other_vpc_refused() {
        let (mut ids, limits, z) = (Seq(0), Limits::default(), zones());
        let mut c = ctx(&mut ids, &limits, &z);
        let mut w = World::default();
        let (_v, _s) = setup(&mut w, &mut c);
        let v2 = defaults::new_vpc(
            &mut w,
            &mut c,
            "10.1.0.0/16".parse().unwrap(),
            Some("2600:1f18::/56".parse().unwrap()),
            false,
            "default",
            vec![],
        );
        let a2 = create(&mut w, &mut c, &v2.meta.id, vec![]).unwrap();
        // An IPv6 VPC's custom ACL also gets the IPv6 `*` rules.
        assert_eq!(a2.entries.len(), 4);
        let assoc = w
            .iter::<NetworkAcl>()
            .find_map(|a| a.assocs.first().cloned())
            .unwrap();
        let err = replace_association(&mut w, &mut c, &assoc.id, &a2.meta.id).unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
    }

    #[test]
    fn acl_entry_create_replace_delete() {
        let (mut ids, limits, z) = (Seq(0), Limits::default(), zones());
        let mut c = ctx(&mut ids, &limits, &z);
        let mut w = World::default();
        let (v, _s) = setup(&mut w, &mut c);
        let a = create(&mut w, &mut c, &v.meta.id, vec![]).unwrap();
        let id = a.meta.id.clone();
        create_entry(
            &mut w,
            &mut c,
            &id,
            &tcp(110, "allow", false, "10.9.8.7/8", 22, 22),
        )
        .unwrap();
        let e = &w.get::<NetworkAcl>(&id).unwrap().entries[0];
        assert_eq!(e.cidr.to_string(), "10.0.0.0/8");
        assert_eq!(e.ports, Some((22, 22)));
        // Names normalise to numbers.
        create_entry(
            &mut w,
            &mut c,
            &id,
            &tcp(100, "ALLOW", true, "0.0.0.0/0", 1024, 65535),
        )
        .unwrap();
        let mut s = tcp(120, "deny", false, "0.0.0.0/0", 80, 80);
        s.protocol = Some("tcp".into());
        create_entry(&mut w, &mut c, &id, &s).unwrap();
        let acl = w.get::<NetworkAcl>(&id).unwrap();
        assert_eq!(
            acl.entries
                .iter()
                .map(|e| (e.egress, e.rule_number))
                .collect::<Vec<_>>(),
            vec![
                (false, 110),
                (false, 120),
                (false, STAR_V4),
                (true, 100),
                (true, STAR_V4)
            ]
        );
        assert_eq!(acl.entries[1].protocol, "6");
        // Duplicate in the same direction.
        let err = create_entry(
            &mut w,
            &mut c,
            &id,
            &spec(110, "-1", "deny", false, "1.2.3.4/32"),
        )
        .unwrap_err();
        assert_eq!(err.code, "NetworkAclEntryAlreadyExists");
        assert_eq!(
            err.message,
            "The network acl entry identified by 110 already exists."
        );
        // Same number, other direction, is fine.
        create_entry(
            &mut w,
            &mut c,
            &id,
            &spec(110, "all", "deny", true, "1.2.3.4/32"),
        )
        .unwrap();
        // Bad inputs.
        for (s, code) in [
            (
                spec(0, "-1", "allow", false, "1.0.0.0/8"),
                "InvalidParameterValue",
            ),
            (
                spec(32767, "-1", "allow", false, "1.0.0.0/8"),
                "InvalidParameterValue",
            ),
            (
                spec(32768, "-1", "allow", false, "1.0.0.0/8"),
                "InvalidParameterValue",
            ),
            (
                spec(5, "xyz", "allow", false, "1.0.0.0/8"),
                "InvalidParameterValue",
            ),
            (
                spec(5, "256", "allow", false, "1.0.0.0/8"),
                "InvalidParameterValue",
            ),
            (
                spec(5, "-1", "maybe", false, "1.0.0.0/8"),
                "InvalidParameterValue",
            ),
            (
                spec(5, "-1", "allow", false, "1.0.0.0/33"),
                "InvalidParameterValue",
            ),
            (
                spec(5, "6", "allow", false, "1.0.0.0/8"),
                "MissingParameter",
            ),
            (
                spec(5, "17", "allow", false, "1.0.0.0/8"),
                "MissingParameter",
            ),
            (
                spec(5, "1", "allow", false, "1.0.0.0/8"),
                "MissingParameter",
            ),
            (
                tcp(5, "allow", false, "1.0.0.0/8", 80, 70000),
                "InvalidParameterValue",
            ),
            (
                tcp(5, "allow", false, "1.0.0.0/8", 90, 80),
                "InvalidParameterValue",
            ),
            (
                EntrySpec {
                    cidr_block: None,
                    ..spec(5, "-1", "allow", false, "x")
                },
                "MissingParameter",
            ),
            (
                EntrySpec {
                    ipv6_cidr_block: Some("::/0".into()),
                    ..spec(5, "-1", "allow", false, "1.0.0.0/8")
                },
                "InvalidParameterCombination",
            ),
            (
                EntrySpec {
                    rule_number: None,
                    ..spec(5, "-1", "allow", false, "1.0.0.0/8")
                },
                "MissingParameter",
            ),
        ] {
            let err = create_entry(&mut w, &mut c, &id, &s).unwrap_err();
            assert_eq!(err.code, code, "{s:?}");
        }
        // ICMP with type and code, and a plain protocol whose ports are dropped.
        let mut s = spec(130, "icmp", "allow", false, "0.0.0.0/0");
        s.icmp_type = Some(8);
        s.icmp_code = Some(-1);
        create_entry(&mut w, &mut c, &id, &s).unwrap();
        let mut s = spec(140, "50", "allow", false, "0.0.0.0/0");
        s.port_from = Some(1);
        s.port_to = Some(2);
        create_entry(&mut w, &mut c, &id, &s).unwrap();
        let acl = w.get::<NetworkAcl>(&id).unwrap();
        let e = acl.entries.iter().find(|e| e.rule_number == 130).unwrap();
        assert_eq!((e.protocol.as_str(), e.icmp), ("1", Some((8, -1))));
        let e = acl.entries.iter().find(|e| e.rule_number == 140).unwrap();
        assert_eq!(e.ports, None);

        // Replace: must exist in that direction.
        replace_entry(
            &mut w,
            &mut c,
            &id,
            &spec(110, "-1", "deny", false, "10.0.0.0/8"),
        )
        .unwrap();
        let e = w.get::<NetworkAcl>(&id).unwrap().entries[0].clone();
        assert_eq!(
            (e.rule_number, e.action, e.ports),
            (110, AclAction::Deny, None)
        );
        let err = replace_entry(
            &mut w,
            &mut c,
            &id,
            &spec(111, "-1", "deny", false, "10.0.0.0/8"),
        )
        .unwrap_err();
        assert_eq!(err.code, "InvalidNetworkAclEntry.NotFound");
        assert_eq!(
            err.message,
            "The specified network ACL entry does not exist"
        );
        let err = replace_entry(
            &mut w,
            &mut c,
            &id,
            &spec(32767, "-1", "allow", false, "0.0.0.0/0"),
        )
        .unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");

        // Delete.
        delete_entry(&mut w, &mut c, &id, Some(110), false).unwrap();
        assert!(w
            .get::<NetworkAcl>(&id)
            .unwrap()
            .entries
            .iter()
            .any(|e| e.rule_number == 110 && e.egress));
        let err = delete_entry(&mut w, &mut c, &id, Some(110), false).unwrap_err();
        assert_eq!(err.code, "InvalidNetworkAclEntry.NotFound");
        let err = delete_entry(&mut w, &mut c, &id, Some(32767), false).unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
        let err =
            delete_entry(&mut w, &mut c, "acl-0123456789abcdef0", Some(1), false).unwrap_err();
        assert_eq!(err.code, "InvalidNetworkAclID.NotFound");
    }

    #[test]
    fn acl_entry_limit_per_direction_and_family() {
        let (mut ids, z) = (Seq(0), zones());
        let limits = Limits {
            rules_per_network_acl: 2,
            ..Limits::default()
        };
        let mut c = ctx(&mut ids, &limits, &z);
        let mut w = World::default();
        let (v, _s) = setup(&mut w, &mut c);
        // The default ACL already has rule 100 in each direction.
        let id = v.default_acl.clone();
        create_entry(
            &mut w,
            &mut c,
            &id,
            &spec(1, "-1", "allow", false, "1.0.0.0/8"),
        )
        .unwrap();
        let err = create_entry(
            &mut w,
            &mut c,
            &id,
            &spec(2, "-1", "allow", false, "2.0.0.0/8"),
        )
        .unwrap_err();
        assert_eq!(err.code, "NetworkAclEntryLimitExceeded");
        // Other direction and other family have their own quota.
        create_entry(
            &mut w,
            &mut c,
            &id,
            &spec(2, "-1", "allow", true, "2.0.0.0/8"),
        )
        .unwrap();
        let v6 = |n: i64| EntrySpec {
            cidr_block: None,
            ipv6_cidr_block: Some("2001:db8::/32".into()),
            ..spec(n, "-1", "allow", false, "")
        };
        create_entry(&mut w, &mut c, &id, &v6(3)).unwrap();
        create_entry(&mut w, &mut c, &id, &v6(4)).unwrap();
        let err = create_entry(&mut w, &mut c, &id, &v6(5)).unwrap_err();
        assert_eq!(err.code, "NetworkAclEntryLimitExceeded");
        // Replacing within a family never hits the quota; moving families can.
        replace_entry(
            &mut w,
            &mut c,
            &id,
            &spec(1, "-1", "deny", false, "9.0.0.0/8"),
        )
        .unwrap();
        let mut s = v6(1);
        s.ipv6_cidr_block = Some("2001:db9::/32".into());
        let err = replace_entry(&mut w, &mut c, &id, &s).unwrap_err();
        assert_eq!(err.code, "NetworkAclEntryLimitExceeded");
    }

    fn acl_of(entries: Vec<AclEntry>) -> NetworkAcl {
        NetworkAcl {
            meta: Meta {
                id: "acl-1".into(),
                owner: "1".into(),
                region: "r".into(),
                tags: vec![],
                created: Default::default(),
            },
            vpc_id: "vpc-1".into(),
            is_default: false,
            entries,
            assocs: vec![],
        }
    }

    fn entry(s: &EntrySpec) -> AclEntry {
        build_entry(s).unwrap()
    }

    #[test]
    fn acl_evaluate_default_allows_everything() {
        let a = acl_of(defaults::acl_entries(true, true));
        assert_eq!(
            evaluate(&a, false, 6, ip("1.2.3.4"), Some(22), None),
            (AclAction::Allow, 100)
        );
        assert_eq!(
            evaluate(&a, true, 17, ip("2600::1"), Some(53), None),
            (AclAction::Allow, 101)
        );
        let custom = acl_of(defaults::acl_entries(false, true));
        assert_eq!(
            evaluate(&custom, false, 6, ip("1.2.3.4"), Some(22), None),
            (AclAction::Deny, STAR_V4)
        );
        assert_eq!(
            evaluate(&custom, false, 6, ip("2600::1"), Some(22), None),
            (AclAction::Deny, STAR_V6)
        );
        // No IPv6 `*` entries at all: still denied.
        let v4only = acl_of(defaults::acl_entries(true, false));
        assert_eq!(
            evaluate(&v4only, false, 6, ip("2600::1"), Some(22), None),
            (AclAction::Deny, STAR_V6)
        );
    }

    #[test]
    fn acl_evaluate_first_match_wins_in_rule_order() {
        let mut entries = defaults::acl_entries(false, false);
        // Inserted out of order on purpose.
        entries.push(entry(&tcp(200, "allow", false, "0.0.0.0/0", 0, 65535)));
        entries.push(entry(&tcp(100, "deny", false, "10.1.2.0/24", 22, 22)));
        let a = acl_of(entries);
        assert_eq!(
            evaluate(&a, false, 6, ip("10.1.2.5"), Some(22), None),
            (AclAction::Deny, 100)
        );
        assert_eq!(
            evaluate(&a, false, 6, ip("10.1.2.5"), Some(80), None),
            (AclAction::Allow, 200)
        );
        assert_eq!(
            evaluate(&a, false, 6, ip("10.1.3.5"), Some(22), None),
            (AclAction::Allow, 200)
        );
        // Wrong protocol falls through to `*`.
        assert_eq!(
            evaluate(&a, false, 17, ip("10.1.3.5"), Some(22), None),
            (AclAction::Deny, STAR_V4)
        );
        // A port range entry never matches a packet without a port.
        assert_eq!(
            evaluate(&a, false, 6, ip("10.1.3.5"), None, None),
            (AclAction::Deny, STAR_V4)
        );
    }

    #[test]
    fn acl_evaluate_return_traffic_needs_its_own_rule() {
        // Allow inbound SSH and nothing else.
        let mut entries = defaults::acl_entries(false, false);
        entries.push(entry(&tcp(100, "allow", false, "203.0.113.0/24", 22, 22)));
        let mut a = acl_of(entries);
        let client = ip("203.0.113.9");
        assert_eq!(
            evaluate(&a, false, 6, client, Some(22), None),
            (AclAction::Allow, 100)
        );
        // The reply (to the client's ephemeral port) is egress and is denied: ACLs are stateless.
        assert_eq!(
            evaluate(&a, true, 6, client, Some(50123), None),
            (AclAction::Deny, STAR_V4)
        );
        // Add the ephemeral-port egress rule and the reply gets out.
        a.entries.push(entry(&tcp(
            100,
            "allow",
            true,
            "203.0.113.0/24",
            1024,
            65535,
        )));
        assert_eq!(
            evaluate(&a, true, 6, client, Some(50123), None),
            (AclAction::Allow, 100)
        );
        // But the ephemeral rule does not open inbound high ports.
        assert_eq!(
            evaluate(&a, false, 6, client, Some(50123), None),
            (AclAction::Deny, STAR_V4)
        );
    }

    #[test]
    fn acl_evaluate_ports_needs_every_port_of_the_range() {
        let eph = (32768, 60999);
        let client = ip("203.0.113.9");
        let mut entries = defaults::acl_entries(false, false);
        entries.push(entry(&tcp(100, "allow", true, "0.0.0.0/0", 1024, 65535)));
        let a = acl_of(entries.clone());
        assert_eq!(
            evaluate_ports(&a, true, 6, client, eph, None),
            (AclAction::Allow, 100)
        );
        // Only part of the range: the rest falls to `*`.
        let mut part = defaults::acl_entries(false, false);
        part.push(entry(&tcp(100, "allow", true, "0.0.0.0/0", 32768, 50000)));
        assert_eq!(
            evaluate_ports(&acl_of(part.clone()), true, 6, client, eph, None),
            (AclAction::Deny, STAR_V4)
        );
        // Two entries that together cover it.
        part.push(entry(&tcp(110, "allow", true, "0.0.0.0/0", 50001, 65535)));
        assert_eq!(
            evaluate_ports(&acl_of(part), true, 6, client, eph, None),
            (AclAction::Allow, 100)
        );
        // A deny inside the range before the allow decides.
        entries.push(entry(&tcp(
            50,
            "deny",
            true,
            "203.0.113.0/24",
            40000,
            40010,
        )));
        assert_eq!(
            evaluate_ports(&acl_of(entries.clone()), true, 6, client, eph, None),
            (AclAction::Deny, 50)
        );
        // ... but not for another client, nor outside the range.
        assert_eq!(
            evaluate_ports(
                &acl_of(entries.clone()),
                true,
                6,
                ip("198.51.100.1"),
                eph,
                None
            ),
            (AclAction::Allow, 100)
        );
        assert_eq!(
            evaluate_ports(&acl_of(entries), true, 6, client, (50000, 50000), None),
            (AclAction::Allow, 100)
        );
        // The default ACL admits everything.
        let d = acl_of(defaults::acl_entries(true, true));
        assert_eq!(
            evaluate_ports(&d, false, 17, ip("2600::1"), eph, None),
            (AclAction::Allow, 101)
        );
    }

    #[test]
    fn acl_evaluate_icmp_and_all_protocols() {
        let mut entries = defaults::acl_entries(false, true);
        let mut echo = spec(10, "1", "allow", false, "0.0.0.0/0");
        echo.icmp_type = Some(8);
        echo.icmp_code = Some(-1);
        entries.push(entry(&echo));
        let mut any6 = EntrySpec {
            cidr_block: None,
            ipv6_cidr_block: Some("::/0".into()),
            ..spec(20, "58", "allow", false, "")
        };
        any6.icmp_type = Some(-1);
        any6.icmp_code = Some(-1);
        entries.push(entry(&any6));
        entries.push(entry(&spec(30, "-1", "deny", false, "192.0.2.0/24")));
        entries.push(entry(&spec(40, "-1", "allow", false, "0.0.0.0/0")));
        let a = acl_of(entries);
        assert_eq!(
            evaluate(&a, false, 1, ip("192.0.2.1"), None, Some((8, 0))),
            (AclAction::Allow, 10)
        );
        // Echo reply (type 0) is not type 8: goes on to rule 30.
        assert_eq!(
            evaluate(&a, false, 1, ip("192.0.2.1"), None, Some((0, 0))),
            (AclAction::Deny, 30)
        );
        assert_eq!(
            evaluate(&a, false, 1, ip("198.51.100.1"), None, Some((0, 0))),
            (AclAction::Allow, 40)
        );
        assert_eq!(
            evaluate(&a, false, 58, ip("2600::1"), None, Some((128, 0))),
            (AclAction::Allow, 20)
        );
        // IPv4 rules never match IPv6 traffic.
        assert_eq!(
            evaluate(&a, false, 6, ip("2600::1"), Some(443), None),
            (AclAction::Deny, STAR_V6)
        );
        // -1 matches every protocol, ports or not.
        assert_eq!(
            evaluate(&a, false, 47, ip("198.51.100.1"), None, None),
            (AclAction::Allow, 40)
        );
        // Egress has no rules but `*`.
        assert_eq!(
            evaluate(&a, true, 6, ip("198.51.100.1"), Some(443), None),
            (AclAction::Deny, STAR_V4)
        );
    }

    #[test]
    fn acl_protocol_names() {
        assert_eq!(normalise_protocol("tcp").unwrap(), "6");
        assert_eq!(normalise_protocol("UDP").unwrap(), "17");
        assert_eq!(normalise_protocol("icmp").unwrap(), "1");
        assert_eq!(normalise_protocol("all").unwrap(), "-1");
        assert_eq!(normalise_protocol("-1").unwrap(), "-1");
        assert_eq!(normalise_protocol("006").unwrap(), "6");
        assert!(normalise_protocol("-2").is_err());
        assert!(normalise_protocol("").is_err());
        assert!(normalise_protocol("999").is_err());
    }
}
