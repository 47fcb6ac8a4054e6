//! Managed prefix lists: customer-managed lists (create, modify with
//! versions, restore, delete, entries at a version, associations) and the
//! AWS-managed service lists of every region (`com.amazonaws.<region>.s3`,
//! `…dynamodb`), which are fixed data, never stored.
//!
//! A list is referenced by security-group rules (`SgPeer::PrefixList`); what
//! it holds is what such a rule matches ([`cidrs`], [`contains`]), for the
//! analyzer and the data plane alike.

use super::{check_limit, new_meta, IdKind};
use crate::cidr;
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::IpNet;
use std::net::IpAddr;

pub const PL: IdKind = IdKind {
    prefix: "pl",
    malformed: "InvalidPrefixListId.Malformed",
    not_found: "InvalidPrefixListID.NotFound",
    noun: "prefix list",
};

/// The most entries a list may hold (`MaxEntries`).
pub const MAX_ENTRIES: i64 = 1000;
/// How many earlier versions a list keeps.
pub const VERSIONS_KEPT: usize = 1000;
/// The owner AWS-managed lists show.
pub const AWS_OWNER: &str = "AWS";

/// AWS's wording for an unknown list: "The prefix list ID 'pl-…' does not exist".
pub fn not_found(id: &str) -> Fault {
    PL.not_found(id)
}

/// A list as Describe and the rule compilers see it: a customer-managed one
/// or an AWS-managed service list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListView {
    pub id: String,
    pub name: String,
    pub address_family: &'static str,
    pub owner: String,
    /// `None` for AWS-managed lists.
    pub customer: Option<ManagedPrefixList>,
    pub cidrs: Vec<IpNet>,
}

/// The AWS-managed service lists of a region, as vpcd defines them: `(name
/// suffix, CIDRs)`. The addresses are vpcd's choice (public ranges S3 and
/// DynamoDB have used in us-east-1), the same in every region; see
/// docs/api.md.
const SERVICES: &[(&str, &[&str])] = &[
    ("s3", &["3.5.0.0/19", "52.216.0.0/15", "54.231.0.0/16"]),
    ("dynamodb", &["3.218.180.0/22", "52.94.0.0/22"]),
];

/// The ID of an AWS-managed list: us-east-1's real ones, otherwise 8 hex
/// digits derived from the name (stable across restarts and versions).
fn service_list_id(name: &str) -> String {
    match name {
        "com.amazonaws.us-east-1.s3" => "pl-63a5400a".into(),
        "com.amazonaws.us-east-1.dynamodb" => "pl-02cd2c6b".into(),
        _ => {
            // FNV-1a, 32 bits.
            let mut h: u32 = 0x811c_9dc5;
            for b in name.bytes() {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
            format!("pl-{h:08x}")
        }
    }
}

/// Every AWS-managed list of `region`.
pub fn aws_managed(region: &str) -> Vec<ListView> {
    SERVICES
        .iter()
        .map(|(service, cidrs)| {
            let name = format!("com.amazonaws.{region}.{service}");
            ListView {
                id: service_list_id(&name),
                name,
                address_family: "IPv4",
                owner: AWS_OWNER.into(),
                customer: None,
                cidrs: cidrs
                    .iter()
                    .map(|c| c.parse().expect("literal CIDR"))
                    .collect(),
            }
        })
        .collect()
}

/// The AWS-managed list named `com.amazonaws.<region>.<service>`, if any.
pub fn service_list(region: &str, service: &str) -> Option<ListView> {
    let name = format!("com.amazonaws.{region}.{service}");
    aws_managed(region).into_iter().find(|l| l.name == name)
}

fn view(l: &ManagedPrefixList) -> ListView {
    ListView {
        id: l.meta.id.clone(),
        name: l.name.clone(),
        address_family: if l.address_family == "IPv6" {
            "IPv6"
        } else {
            "IPv4"
        },
        owner: l.meta.owner.clone(),
        customer: Some(l.clone()),
        cidrs: l.entries.iter().map(|e| e.cidr).collect(),
    }
}

/// The caller's own customer-managed list.
pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w ManagedPrefixList> {
    PL.check(id)?;
    w.owned::<ManagedPrefixList>(id, &ctx.account, &ctx.region, || not_found(id))
}

/// A list the caller may read or reference: its own, or an AWS-managed one of its region.
pub fn visible(w: &World, ctx: &Ctx<'_>, id: &str) -> Result<ListView> {
    PL.check(id)?;
    if let Some(l) = aws_managed(&ctx.region).into_iter().find(|l| l.id == id) {
        return Ok(l);
    }
    get(w, ctx, id).map(view)
}

/// Every list the caller sees: the region's AWS-managed lists, then its own.
pub fn all_visible(w: &World, ctx: &Ctx<'_>) -> Vec<ListView> {
    let mut out = aws_managed(&ctx.region);
    out.extend(
        w.scoped::<ManagedPrefixList>(&ctx.account, &ctx.region)
            .map(view),
    );
    out
}

/// The addresses list `id` holds now, as a rule of a group in `region`
/// sees it (a customer list by ID, or one of the region's AWS-managed
/// lists); empty for an unknown list.
pub fn cidrs(w: &World, region: &str, id: &str) -> Vec<IpNet> {
    if let Some(l) = w.get::<ManagedPrefixList>(id) {
        return l.entries.iter().map(|e| e.cidr).collect();
    }
    aws_managed(region)
        .into_iter()
        .find(|l| l.id == id)
        .map(|l| l.cidrs)
        .unwrap_or_default()
}

/// Whether list `id` holds `a` (the match of a rule naming the list).
pub fn contains(w: &World, region: &str, id: &str, a: IpAddr) -> bool {
    cidrs(w, region, id).iter().any(|n| n.contains(&a))
}

/// CreateManagedPrefixList as sent.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    pub name: Option<String>,
    pub address_family: Option<String>,
    pub max_entries: Option<i64>,
    pub entries: Vec<(String, Option<String>)>,
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 255 {
        return Err(Fault::invalid_param(
            "The prefix list name must be between 1 and 255 characters.",
        ));
    }
    if name.starts_with("com.amazonaws") {
        return Err(Fault::invalid_param(
            "The prefix list name cannot start with 'com.amazonaws'.",
        ));
    }
    Ok(())
}

fn check_max_entries(n: i64) -> Result<u32> {
    if !(1..=MAX_ENTRIES).contains(&n) {
        return Err(Fault::invalid_param(format!(
            "The value {n} for MaxEntries is not valid. It must be between 1 and {MAX_ENTRIES}."
        )));
    }
    Ok(n as u32)
}

/// One entry as sent, checked against the list's family.
fn parse_entry(family: &str, cidr: &str, description: &Option<String>) -> Result<PrefixListEntry> {
    let net = if family == "IPv6" {
        cidr::parse_v6(cidr).map(IpNet::V6)
    } else {
        cidr::parse_v4(cidr).map(IpNet::V4)
    };
    let net = match net {
        Some(n) => n,
        None => {
            let other_family = if family == "IPv6" {
                cidr::parse_v4(cidr).is_some()
            } else {
                cidr::parse_v6(cidr).is_some()
            };
            return Err(Fault::invalid_param(if other_family {
                format!("The CIDR '{cidr}' does not match the address family {family} of the prefix list.")
            } else {
                format!("The CIDR '{cidr}' is not valid.")
            }));
        }
    };
    if let Some(d) = description {
        if d.chars().count() > 255 {
            return Err(Fault::invalid_param(format!(
                "The description for the CIDR '{cidr}' must be 255 characters or fewer."
            )));
        }
    }
    Ok(PrefixListEntry {
        cidr: net,
        description: description.clone().filter(|d| !d.is_empty()),
    })
}

fn too_many(have: usize, max: u32) -> Fault {
    Fault::invalid_param(format!(
        "The prefix list would have {have} entries, more than its maximum of {max}."
    ))
}

fn duplicate(cidr: IpNet) -> Fault {
    Fault::invalid_param(format!(
        "The CIDR '{cidr}' is specified more than once in the prefix list."
    ))
}

pub fn create(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    spec: &CreateSpec,
    tags: Tags,
) -> Result<ManagedPrefixList> {
    let name = spec
        .name
        .as_deref()
        .ok_or_else(|| Fault::missing("PrefixListName"))?;
    let family = spec
        .address_family
        .as_deref()
        .ok_or_else(|| Fault::missing("AddressFamily"))?;
    let max = spec
        .max_entries
        .ok_or_else(|| Fault::missing("MaxEntries"))?;
    check_name(name)?;
    if family != "IPv4" && family != "IPv6" {
        return Err(Fault::invalid_param(format!(
            "The address family '{family}' is not valid. Valid values are IPv4 and IPv6."
        )));
    }
    let max = check_max_entries(max)?;
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    let mut entries: Vec<PrefixListEntry> = Vec::new();
    for (c, d) in &spec.entries {
        let e = parse_entry(family, c, d)?;
        if entries.iter().any(|x| x.cidr == e.cidr) {
            return Err(duplicate(e.cidr));
        }
        entries.push(e);
    }
    if entries.len() > max as usize {
        return Err(too_many(entries.len(), max));
    }
    check_limit(
        w.prefix_lists.count_in(&ctx.account, &ctx.region),
        ctx.limits.prefix_lists_per_region,
        "PrefixListLimitExceeded",
        "prefix lists",
    )?;
    let l = ManagedPrefixList {
        meta: new_meta(ctx, "pl", tags),
        name: name.to_string(),
        address_family: family.to_string(),
        max_entries: max,
        version: 1,
        state: "create-complete".into(),
        entries,
        history: Vec::new(),
    };
    w.put(l.clone());
    Ok(l)
}

/// ModifyManagedPrefixList as sent.
#[derive(Debug, Clone, Default)]
pub struct ModifySpec {
    pub current_version: Option<i64>,
    pub name: Option<String>,
    pub max_entries: Option<i64>,
    pub add: Vec<(String, Option<String>)>,
    pub remove: Vec<String>,
}

fn version_mismatch(id: &str) -> Fault {
    Fault::new(
        "PrefixListVersionMismatch",
        format!("The prefix list {id} has the incorrect version number."),
    )
}

/// Records the current entries as history and makes `entries` the next version.
fn new_version(l: &mut ManagedPrefixList, entries: Vec<PrefixListEntry>, state: &str) {
    let old = std::mem::replace(&mut l.entries, entries);
    l.history.push((l.version, old));
    if l.history.len() > VERSIONS_KEPT {
        let excess = l.history.len() - VERSIONS_KEPT;
        l.history.drain(..excess);
    }
    l.version += 1;
    l.state = state.into();
}

pub fn modify(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    spec: &ModifySpec,
) -> Result<ManagedPrefixList> {
    let mut l = get(w, ctx, id)?.clone();
    let changes_entries = !spec.add.is_empty() || !spec.remove.is_empty();
    if changes_entries && spec.max_entries.is_some() {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "You cannot modify the entries of a prefix list and its maximum number of entries in the same request.",
        ));
    }
    if let Some(v) = spec.current_version {
        if v != l.version as i64 {
            return Err(version_mismatch(id));
        }
    }
    if let Some(name) = &spec.name {
        check_name(name)?;
        l.name = name.clone();
    }
    if let Some(max) = spec.max_entries {
        let max = check_max_entries(max)?;
        if (max as usize) < l.entries.len() {
            return Err(too_many(l.entries.len(), max));
        }
        check_users_fit(w, ctx, id, &l.address_family, max)?;
        l.max_entries = max;
        l.state = "modify-complete".into();
    }
    if changes_entries {
        let mut entries = l.entries.clone();
        for c in &spec.remove {
            let e = parse_entry(&l.address_family, c, &None)?;
            let before = entries.len();
            entries.retain(|x| x.cidr != e.cidr);
            if entries.len() == before {
                return Err(Fault::invalid_param(format!(
                    "The CIDR '{c}' is not an entry of the prefix list {id}."
                )));
            }
        }
        let mut added: Vec<IpNet> = Vec::new();
        for (c, d) in &spec.add {
            let e = parse_entry(&l.address_family, c, d)?;
            if added.contains(&e.cidr) {
                return Err(duplicate(e.cidr));
            }
            added.push(e.cidr);
            // Adding an existing CIDR replaces its description.
            match entries.iter_mut().find(|x| x.cidr == e.cidr) {
                Some(x) => x.description = e.description,
                None => entries.push(e),
            }
        }
        if entries.len() > l.max_entries as usize {
            return Err(too_many(entries.len(), l.max_entries));
        }
        let nets: Vec<IpNet> = entries.iter().map(|e| e.cidr).collect();
        super::route::check_list_change(w, id, &nets)?;
        new_version(&mut l, entries, "modify-complete");
        super::route::resync_list_routes(w, id, &nets);
    }
    w.put(l.clone());
    Ok(l)
}

/// The entries of `l` at `version` (the current one when `None`).
pub fn entries_at(l: &ManagedPrefixList, version: Option<i64>) -> Result<Vec<PrefixListEntry>> {
    match version {
        None => Ok(l.entries.clone()),
        Some(v) if v == l.version as i64 => Ok(l.entries.clone()),
        Some(v) => l
            .history
            .iter()
            .find(|(n, _)| *n as i64 == v)
            .map(|(_, e)| e.clone())
            .ok_or_else(|| {
                Fault::invalid_param(format!(
                    "The version {v} of the prefix list {} does not exist.",
                    l.meta.id
                ))
            }),
    }
}

/// RestoreManagedPrefixListVersion: the entries of `previous` become a new version.
pub fn restore(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    previous: i64,
    current: i64,
) -> Result<ManagedPrefixList> {
    let mut l = get(w, ctx, id)?.clone();
    if current != l.version as i64 {
        return Err(version_mismatch(id));
    }
    let entries = entries_at(&l, Some(previous))?;
    if entries.len() > l.max_entries as usize {
        return Err(too_many(entries.len(), l.max_entries));
    }
    let nets: Vec<IpNet> = entries.iter().map(|e| e.cidr).collect();
    super::route::check_list_change(w, id, &nets)?;
    new_version(&mut l, entries, "restore-complete");
    super::route::resync_list_routes(w, id, &nets);
    w.put(l.clone());
    Ok(l)
}

/// A resize must leave every security group and route table that uses the
/// list within its quota, where the list counts its `MaxEntries` rules or
/// routes; otherwise it fails naming the first ten that would not fit
/// (AWS names them in the list's state message).
fn check_users_fit(w: &World, ctx: &Ctx<'_>, id: &str, family: &str, max: u32) -> Result<()> {
    let mut resized = w.clone();
    resized.update::<ManagedPrefixList>(id, |l| l.max_entries = max);
    let mut groups = Vec::new();
    let mut tables = Vec::new();
    for (res, _) in associations(w, id) {
        if let Some(g) = resized.get::<SecurityGroup>(&res) {
            if super::sg::over_rule_quota(&resized, g, ctx.limits.rules_per_security_group) {
                groups.push(res);
            }
        } else if let Some(rt) = resized.get::<RouteTable>(&res) {
            if super::route::route_weight(&resized, rt, family != "IPv6")
                > ctx.limits.routes_per_table
            {
                tables.push(res);
            }
        }
    }
    let first_ten = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if !groups.is_empty() {
        return Err(Fault::new(
            "RulesPerSecurityGroupLimitExceeded",
            format!(
                "The prefix list {id} cannot be resized to {max} entries: the following resources would exceed the maximum number of rules per security group: {}",
                first_ten(&groups)
            ),
        ));
    }
    if !tables.is_empty() {
        return Err(Fault::new(
            "RouteLimitExceeded",
            format!(
                "The prefix list {id} cannot be resized to {max} entries: the following resources would exceed the maximum number of routes per route table: {}",
                first_ten(&tables)
            ),
        ));
    }
    Ok(())
}

/// The resources that reference list `id`: security groups with a rule
/// naming it and route tables with a route to it, as (resource ID, owner).
pub fn associations(w: &World, id: &str) -> Vec<(String, String)> {
    let groups = w
        .iter::<SecurityGroup>()
        .filter(|g| {
            g.ingress
                .iter()
                .chain(&g.egress)
                .any(|r| matches!(&r.peer, SgPeer::PrefixList(p) if p == id))
        })
        .map(|g| (g.meta.id.clone(), g.meta.owner.clone()));
    let tables = super::route::tables_routing_to(w, id)
        .into_iter()
        .filter_map(|t| {
            w.get::<RouteTable>(&t)
                .map(|rt| (rt.meta.id.clone(), rt.meta.owner.clone()))
        });
    groups.chain(tables).collect()
}

pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<ManagedPrefixList> {
    let l = get(w, ctx, id)?.clone();
    if let Some((user, _)) = associations(w, id).first() {
        return Err(Fault::dependency(format!(
            "The prefix list {id} is referenced by {user} and cannot be deleted."
        )));
    }
    w.remove::<ManagedPrefixList>(id);
    Ok(ManagedPrefixList {
        state: "delete-in-progress".into(),
        ..l
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::SeqIds;
    use crate::Limits;

    fn with_ctx<T>(f: impl FnOnce(&mut World, &mut Ctx<'_>) -> T) -> T {
        let mut w = World::default();
        let mut ids = SeqIds(0);
        let limits = Limits::default();
        let mut ctx = Ctx {
            account: "111111111111".into(),
            region: "us-east-1".into(),
            now: crate::Timestamp(0),
            ids: &mut ids,
            limits: &limits,
            zones: &[],
        };
        f(&mut w, &mut ctx)
    }

    fn spec(family: &str, max: i64, cidrs: &[&str]) -> CreateSpec {
        CreateSpec {
            name: Some("corp".into()),
            address_family: Some(family.into()),
            max_entries: Some(max),
            entries: cidrs.iter().map(|c| (c.to_string(), None)).collect(),
        }
    }

    #[test]
    fn versions_count_entry_changes_and_keep_the_old_entries() {
        with_ctx(|w, ctx| {
            let l = create(w, ctx, &spec("IPv4", 3, &["10.1.0.0/16"]), vec![]).unwrap();
            assert_eq!((l.version, l.state.as_str()), (1, "create-complete"));
            let id = l.meta.id.clone();
            let renamed = modify(
                w,
                ctx,
                &id,
                &ModifySpec {
                    name: Some("corp2".into()),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(renamed.version, 1, "a rename is no new version");
            let m = modify(
                w,
                ctx,
                &id,
                &ModifySpec {
                    current_version: Some(1),
                    add: vec![("10.2.0.0/16".into(), Some("b".into()))],
                    remove: vec!["10.1.0.0/16".into()],
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(m.version, 2);
            let stale = modify(
                w,
                ctx,
                &id,
                &ModifySpec {
                    current_version: Some(1),
                    add: vec![("10.3.0.0/16".into(), None)],
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert_eq!(stale.code, "PrefixListVersionMismatch");
            let v1 = entries_at(&m, Some(1)).unwrap();
            assert_eq!(v1[0].cidr.to_string(), "10.1.0.0/16");
            let r = restore(w, ctx, &id, 1, 2).unwrap();
            assert_eq!((r.version, r.entries.len()), (3, 1));
            assert!(contains(w, "us-east-1", &id, "10.1.2.3".parse().unwrap()));
            assert!(!contains(w, "us-east-1", &id, "10.2.2.3".parse().unwrap()));
        });
    }

    #[test]
    fn entries_are_checked_against_family_size_and_each_other() {
        with_ctx(|w, ctx| {
            let e = create(w, ctx, &spec("IPv4", 2, &["2600::/64"]), vec![]).unwrap_err();
            assert!(e.message.contains("address family IPv4"), "{e}");
            let e = create(
                w,
                ctx,
                &spec("IPv4", 1, &["10.0.0.0/8", "11.0.0.0/8"]),
                vec![],
            )
            .unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue");
            let e = create(
                w,
                ctx,
                &spec("IPv4", 5, &["10.0.0.0/8", "10.0.0.0/8"]),
                vec![],
            )
            .unwrap_err();
            assert!(e.message.contains("more than once"), "{e}");
            let e = create(w, ctx, &spec("IPv5", 5, &[]), vec![]).unwrap_err();
            assert!(e.message.contains("IPv5"), "{e}");
            let e = create(w, ctx, &spec("IPv4", 1001, &[]), vec![]).unwrap_err();
            assert!(e.message.contains("MaxEntries"), "{e}");
            assert!(w.prefix_lists.is_empty(), "a refused create stores nothing");
        });
    }

    #[test]
    fn service_lists_are_stable_and_distinct_per_region() {
        let a = aws_managed("us-east-1");
        assert_eq!(a[0].id, "pl-63a5400a");
        let b = aws_managed("eu-west-1");
        assert_ne!(a[0].id, b[0].id);
        assert_eq!(b, aws_managed("eu-west-1"));
        for l in a.iter().chain(&b) {
            assert!(crate::ids::is_well_formed("pl", &l.id), "{}", l.id);
        }
    }
}
