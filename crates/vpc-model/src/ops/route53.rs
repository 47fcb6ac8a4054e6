//! Route 53 hosted zones: private zones associated with VPCs, their record
//! sets, cross-account association authorizations, and which zone answers a
//! query from a VPC ([`zone_for_query`], [`lookup`]).
//!
//! * Zones are global records owned by one account; IDs are `Z` + 17
//!   upper-case hex digits, change IDs `C` + 17.
//! * A private zone is associated with at least one VPC; a VPC may not have
//!   two private zones of the same name (`ConflictingDomainExists`).
//! * Another account's VPC is associated only after the zone's owner
//!   authorized it (`CreateVPCAssociationAuthorization`), else
//!   `NotAuthorizedException`, as on AWS.
//! * A change batch is atomic: every change is checked against the zone as
//!   the previous changes left it, and any failure rejects the batch with
//!   `InvalidChangeBatch` listing every problem.
//! * Resolution: a query from VPC Q is answered from the most specific
//!   private zone associated with Q whose name is a suffix of the query, when
//!   Q has both `enableDnsSupport` and `enableDnsHostnames`; inside a zone a
//!   missing name is NXDOMAIN and a missing type NODATA (no fall-through).

use super::dns;
use crate::dns_types::{AliasTarget, HostedZone, RecordSet, ZoneChange, ZoneVpc};
use crate::fault::{Fault, Result};
use crate::types::{Meta, Tag, Vpc};
use crate::world::World;
use crate::Ctx;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The apex NS set of every zone (Route 53's private-zone servers).
pub const NAME_SERVERS: [&str; 4] = [
    "ns-1536.awsdns-00.co.uk.",
    "ns-0.awsdns-00.com.",
    "ns-1024.awsdns-00.org.",
    "ns-512.awsdns-00.net.",
];

/// Record types Route 53 accepts.
pub const TYPES: &[&str] = &[
    "SOA", "A", "TXT", "NS", "CNAME", "MX", "NAPTR", "PTR", "SRV", "SPF", "AAAA", "CAA", "DS",
    "TLSA", "SSHFP", "SVCB", "HTTPS",
];

/// Most hosted zones per account (Route 53's default quota).
pub const ZONES_PER_ACCOUNT: usize = 500;

fn fault(code: &'static str, message: impl Into<String>) -> Fault {
    Fault::new(code, message)
}

fn no_such_zone(id: &str) -> Fault {
    fault(
        "NoSuchHostedZone",
        format!("No hosted zone found with ID: {id}"),
    )
}

/// A domain name in Route 53's form: lower case, a trailing dot. `None` when
/// it is not a valid name (labels 1–63 characters, 255 in all; `*` only as
/// the first label).
pub fn normalize_name(name: &str) -> Option<String> {
    let n = name.trim().to_ascii_lowercase();
    let n = n.strip_suffix('.').unwrap_or(&n).to_string();
    if n.is_empty() || n.len() > 253 {
        return None;
    }
    for (i, label) in n.split('.').enumerate() {
        let ok = !label.is_empty()
            && label.len() <= 63
            && ((i == 0 && label == "*")
                || label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if !ok {
            return None;
        }
    }
    Some(format!("{n}."))
}

/// Whether `name` is `zone` or below it (both normalised).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

fn new_change(w: &mut World, ctx: &mut Ctx<'_>, comment: Option<String>) -> ZoneChange {
    let c = ZoneChange {
        id: format!("C{}", ctx.ids.hex17().to_ascii_uppercase()),
        owner: ctx.account.clone(),
        submitted: ctx.now,
        comment,
    };
    w.put(c.clone());
    c
}

/// A zone the caller owns.
pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w HostedZone> {
    w.get::<HostedZone>(id)
        .filter(|z| z.meta.owner == ctx.account)
        .ok_or_else(|| no_such_zone(id))
}

/// The caller's zones, in ID order.
pub fn zones_of<'w>(w: &'w World, owner: &'w str) -> impl Iterator<Item = &'w HostedZone> + 'w {
    w.iter::<HostedZone>()
        .filter(move |z| z.meta.owner == owner)
}

/// A change the caller submitted.
pub fn get_change<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w ZoneChange> {
    w.get::<ZoneChange>(id)
        .filter(|c| c.owner == ctx.account)
        .ok_or_else(|| {
            fault(
                "NoSuchChange",
                format!("A change with the specified change ID {id} does not exist."),
            )
        })
}

/// The VPC a request names, which must exist in the named region.
fn find_vpc<'w>(w: &'w World, ctx: &Ctx<'_>, v: &ZoneVpc) -> Result<&'w Vpc> {
    let invalid = || {
        fault(
            "InvalidVPCId",
            format!(
                "The VPC ID '{}' is not valid in region {}.",
                v.vpc_id, v.region
            ),
        )
    };
    if super::VPC.check(&v.vpc_id).is_err() {
        return Err(invalid());
    }
    let _ = ctx;
    w.get::<Vpc>(&v.vpc_id)
        .filter(|x| x.meta.region == v.region)
        .ok_or_else(invalid)
}

/// The caller's own VPC (association needs the VPC's owner).
fn own_vpc<'w>(w: &'w World, ctx: &Ctx<'_>, v: &ZoneVpc) -> Result<&'w Vpc> {
    let vpc = find_vpc(w, ctx, v)?;
    if vpc.meta.owner != ctx.account {
        return Err(fault(
            "InvalidVPCId",
            format!(
                "The VPC ID '{}' is not valid in region {}.",
                v.vpc_id, v.region
            ),
        ));
    }
    Ok(vpc)
}

/// A private zone of the same name already associated with the VPC.
fn conflict(w: &World, name: &str, v: &ZoneVpc, except: Option<&str>) -> Result<()> {
    if let Some(z) = w.iter::<HostedZone>().find(|z| {
        z.private && z.name == name && z.vpcs.contains(v) && Some(z.meta.id.as_str()) != except
    }) {
        return Err(fault(
            "ConflictingDomainExists",
            format!(
                "The VPC {} in {} region has already been associated with the hosted zone {} with the same domain name.",
                v.vpc_id, v.region, z.meta.id
            ),
        ));
    }
    Ok(())
}

/// What CreateHostedZone asks for.
#[derive(Debug, Clone)]
pub struct CreateZone {
    pub name: String,
    pub caller_reference: String,
    pub comment: Option<String>,
    /// `HostedZoneConfig/PrivateZone`.
    pub private_zone: Option<bool>,
    pub vpc: Option<ZoneVpc>,
}

fn apex_records(name: &str) -> Vec<RecordSet> {
    vec![
        RecordSet {
            name: name.to_string(),
            rtype: "NS".into(),
            ttl: Some(172_800),
            values: NAME_SERVERS.iter().map(|s| s.to_string()).collect(),
            alias: None,
        },
        RecordSet {
            name: name.to_string(),
            rtype: "SOA".into(),
            ttl: Some(900),
            values: vec![format!(
                "{} awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400",
                NAME_SERVERS[0]
            )],
            alias: None,
        },
    ]
}

pub fn create_zone(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    req: CreateZone,
) -> Result<(HostedZone, ZoneChange)> {
    let name = normalize_name(&req.name)
        .filter(|n| !n.starts_with("*."))
        .ok_or_else(|| {
            fault(
                "InvalidDomainName",
                format!("{} is not a valid domain name.", req.name),
            )
        })?;
    if req.caller_reference.is_empty() || req.caller_reference.len() > 128 {
        return Err(fault(
            "InvalidInput",
            "1 validation error detected: Value at 'callerReference' failed to satisfy constraint: Member must have length between 1 and 128",
        ));
    }
    if zones_of(w, &ctx.account).any(|z| z.caller_reference == req.caller_reference) {
        return Err(fault(
            "HostedZoneAlreadyExists",
            format!(
                "A hosted zone has already been created with the specified caller reference: {}",
                req.caller_reference
            ),
        ));
    }
    if zones_of(w, &ctx.account).count() >= ZONES_PER_ACCOUNT {
        return Err(fault(
            "TooManyHostedZones",
            "The maximum number of hosted zones for this account has been reached.",
        ));
    }
    let private = match (req.private_zone, &req.vpc) {
        (Some(true), None) => {
            return Err(fault(
                "InvalidInput",
                "When you're creating a private hosted zone (when you specify true for PrivateZone), you must also specify values for VPCId and VPCRegion.",
            ))
        }
        (Some(false), Some(_)) => {
            return Err(fault(
                "InvalidInput",
                "When you're creating a public hosted zone, you can't specify a VPC.",
            ))
        }
        (_, vpc) => vpc.is_some(),
    };
    if let Some(v) = &req.vpc {
        own_vpc(w, ctx, v)?;
        conflict(w, &name, v, None)?;
    }
    let zone = HostedZone {
        meta: Meta {
            id: format!("Z{}", ctx.ids.hex17().to_ascii_uppercase()),
            owner: ctx.account.clone(),
            region: String::new(),
            tags: Vec::new(),
            created: ctx.now,
        },
        records: apex_records(&name),
        name,
        caller_reference: req.caller_reference,
        comment: req.comment,
        private,
        vpcs: req.vpc.into_iter().collect(),
        authorizations: Vec::new(),
    };
    w.put(zone.clone());
    let change = new_change(w, ctx, None);
    Ok((zone, change))
}

pub fn update_comment(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    comment: Option<String>,
) -> Result<HostedZone> {
    get(w, ctx, id)?;
    w.update::<HostedZone>(id, |z| z.comment = comment);
    Ok(get(w, ctx, id)?.clone())
}

/// Whether a record set is the zone's own apex SOA or NS.
fn is_apex(z: &HostedZone, r: &RecordSet) -> bool {
    r.name == z.name && (r.rtype == "SOA" || r.rtype == "NS")
}

pub fn delete_zone(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<ZoneChange> {
    let z = get(w, ctx, id)?;
    if z.records.iter().any(|r| !is_apex(z, r)) {
        return Err(fault(
            "HostedZoneNotEmpty",
            "The specified hosted zone contains non-required resource record sets and so cannot be deleted.",
        ));
    }
    w.remove::<HostedZone>(id);
    Ok(new_change(w, ctx, None))
}

pub fn change_tags(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    add: Vec<Tag>,
    remove: Vec<String>,
) -> Result<()> {
    get(w, ctx, id)?;
    if add.len() > 10 || remove.len() > 10 {
        return Err(fault(
            "InvalidInput",
            "You can add or remove up to 10 tags in one request.",
        ));
    }
    let mut tags = get(w, ctx, id)?.meta.tags.clone();
    tags.retain(|t| !remove.contains(&t.key));
    super::tags::merge(&mut tags, &add, 50).map_err(|_| {
        fault(
            "InvalidInput",
            "The number of tags on the resource exceeds the limit of 50.",
        )
    })?;
    w.update::<HostedZone>(id, |z| z.meta.tags = tags);
    Ok(())
}

// ---- VPC associations ---------------------------------------------------------

pub fn associate_vpc(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    v: ZoneVpc,
    comment: Option<String>,
) -> Result<ZoneChange> {
    let z = w.get::<HostedZone>(id).ok_or_else(|| no_such_zone(id))?;
    if z.meta.owner != ctx.account && !z.authorizations.contains(&v) {
        return Err(fault(
            "NotAuthorizedException",
            format!(
                "User: arn:aws:iam::{}:root is not authorized to access this resource",
                ctx.account
            ),
        ));
    }
    if !z.private {
        return Err(fault(
            "PublicZoneVPCAssociation",
            "You're trying to associate a VPC with a public hosted zone. Amazon Route 53 doesn't support associating a VPC with a public hosted zone.",
        ));
    }
    own_vpc(w, ctx, &v)?;
    if z.vpcs.contains(&v) {
        return Err(fault(
            "ConflictingDomainExists",
            format!(
                "The VPC {} in {} region has already been associated with the hosted zone {id} with the same domain name.",
                v.vpc_id, v.region
            ),
        ));
    }
    let name = z.name.clone();
    conflict(w, &name, &v, Some(id))?;
    w.update::<HostedZone>(id, |z| z.vpcs.push(v));
    Ok(new_change(w, ctx, comment))
}

pub fn disassociate_vpc(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    v: ZoneVpc,
    comment: Option<String>,
) -> Result<ZoneChange> {
    let z = w.get::<HostedZone>(id).ok_or_else(|| no_such_zone(id))?;
    let vpc_owner = w.get::<Vpc>(&v.vpc_id).map(|x| x.meta.owner.as_str());
    if z.meta.owner != ctx.account && vpc_owner != Some(ctx.account.as_str()) {
        return Err(no_such_zone(id));
    }
    if !z.vpcs.contains(&v) {
        return Err(fault(
            "VPCAssociationNotFound",
            format!(
                "The specified VPC {} and hosted zone {id} are not currently associated.",
                v.vpc_id
            ),
        ));
    }
    if z.vpcs.len() == 1 {
        return Err(fault(
            "LastVPCAssociation",
            "The VPC that you're trying to disassociate from the private hosted zone is the last VPC that is associated with the hosted zone. Amazon Route 53 doesn't support disassociating the last VPC from a hosted zone.",
        ));
    }
    w.update::<HostedZone>(id, |z| z.vpcs.retain(|x| *x != v));
    Ok(new_change(w, ctx, comment))
}

pub fn create_authorization(w: &mut World, ctx: &mut Ctx<'_>, id: &str, v: ZoneVpc) -> Result<()> {
    let z = get(w, ctx, id)?;
    if !z.private {
        return Err(fault(
            "PublicZoneVPCAssociation",
            "You're trying to associate a VPC with a public hosted zone. Amazon Route 53 doesn't support associating a VPC with a public hosted zone.",
        ));
    }
    find_vpc(w, ctx, &v)?;
    if !z.authorizations.contains(&v) {
        w.update::<HostedZone>(id, |z| z.authorizations.push(v));
    }
    Ok(())
}

pub fn delete_authorization(w: &mut World, ctx: &mut Ctx<'_>, id: &str, v: ZoneVpc) -> Result<()> {
    let z = get(w, ctx, id)?;
    if !z.authorizations.contains(&v) {
        return Err(fault(
            "VPCAssociationAuthorizationNotFound",
            format!(
                "The VPC {} in {} region is not authorized to be associated with the hosted zone {id}.",
                v.vpc_id, v.region
            ),
        ));
    }
    w.update::<HostedZone>(id, |z| z.authorizations.retain(|x| *x != v));
    Ok(())
}

/// The private zones a VPC is associated with (any owner), in ID order.
pub fn zones_of_vpc<'w>(w: &'w World, v: &'w ZoneVpc) -> impl Iterator<Item = &'w HostedZone> + 'w {
    w.iter::<HostedZone>().filter(move |z| z.vpcs.contains(v))
}

// ---- Record sets --------------------------------------------------------------

/// One change of a batch.
#[derive(Debug, Clone)]
pub struct RecordChange {
    /// `CREATE`, `DELETE` or `UPSERT`.
    pub action: String,
    pub record: RecordSet,
}

/// A record value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// CNAME, NS, PTR targets (normalised names).
    Name(String),
    Txt(Vec<String>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Mx {
        preference: u16,
        exchange: String,
    },
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: i32,
        retry: i32,
        expire: i32,
        minimum: u32,
    },
    /// A type vpcd stores and lists but does not serve.
    Other,
}

/// Splits a TXT value into its quoted strings (`"a" "b"`); an unquoted
/// value is one string.
fn txt_strings(v: &str) -> Option<Vec<String>> {
    let v = v.trim();
    if !v.starts_with('"') {
        return (!v.is_empty() && v.len() <= 255).then(|| vec![v.to_string()]);
    }
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('"') => {}
            Some(_) => return None,
        }
        let mut s = String::new();
        loop {
            match chars.next()? {
                '\\' => s.push(chars.next()?),
                '"' => break,
                c => s.push(c),
            }
        }
        if s.len() > 255 {
            return None;
        }
        out.push(s);
    }
    (!out.is_empty()).then_some(out)
}

/// Parses one value of a record of type `rtype`; the error is Route 53's
/// explanation.
pub fn parse_value(rtype: &str, v: &str) -> std::result::Result<RecordData, String> {
    let illegal = |what: &str, why: &str| format!("{what} ({why}) encountered with '{v}'");
    let name = |s: &str| normalize_name(s).filter(|n| !n.contains('*'));
    match rtype {
        "A" => v.parse().map(RecordData::A).map_err(|_| {
            illegal(
                "ARRDATAIllegalIPv4Address",
                "Value is not a valid IPv4 address",
            )
        }),
        "AAAA" => v.parse().map(RecordData::Aaaa).map_err(|_| {
            illegal(
                "AAAARRDATAIllegalIPv6Address",
                "Value is not a valid IPv6 address",
            )
        }),
        "CNAME" | "NS" | "PTR" => name(v)
            .map(RecordData::Name)
            .ok_or_else(|| illegal("DomainLabelEmpty", "Domain label is empty")),
        "TXT" | "SPF" => txt_strings(v).map(RecordData::Txt).ok_or_else(|| {
            illegal(
                "InvalidCharacterString",
                "Value should be enclosed in quotation marks",
            )
        }),
        "SRV" => {
            let f: Vec<&str> = v.split_whitespace().collect();
            match f.as_slice() {
                [p, w, port, target] => match (p.parse(), w.parse(), port.parse(), name(target)) {
                    (Ok(priority), Ok(weight), Ok(port), Some(target)) => Ok(RecordData::Srv {
                        priority,
                        weight,
                        port,
                        target,
                    }),
                    _ => Err(illegal(
                        "SRVRRDATANotFourFields",
                        "Value should be of the form [priority] [weight] [port] [target]",
                    )),
                },
                _ => Err(illegal(
                    "SRVRRDATANotFourFields",
                    "Value should be of the form [priority] [weight] [port] [target]",
                )),
            }
        }
        "MX" => {
            let f: Vec<&str> = v.split_whitespace().collect();
            match f.as_slice() {
                [p, host] => match (p.parse(), name(host)) {
                    (Ok(preference), Some(exchange)) => Ok(RecordData::Mx {
                        preference,
                        exchange,
                    }),
                    _ => Err(illegal(
                        "MXRRDATANotTwoFields",
                        "Value should be of the form [priority] [host]",
                    )),
                },
                _ => Err(illegal(
                    "MXRRDATANotTwoFields",
                    "Value should be of the form [priority] [host]",
                )),
            }
        }
        "SOA" => {
            let f: Vec<&str> = v.split_whitespace().collect();
            let bad = || {
                illegal("SOARRDATANotSevenFields", "Value should be of the form [mname] [rname] [serial] [refresh] [retry] [expire] [minimum]")
            };
            match f.as_slice() {
                [m, r, s, rf, rt, ex, mi] => Ok(RecordData::Soa {
                    mname: name(m).ok_or_else(bad)?,
                    rname: name(r).ok_or_else(bad)?,
                    serial: s.parse().map_err(|_| bad())?,
                    refresh: rf.parse().map_err(|_| bad())?,
                    retry: rt.parse().map_err(|_| bad())?,
                    expire: ex.parse().map_err(|_| bad())?,
                    minimum: mi.parse().map_err(|_| bad())?,
                }),
                _ => Err(bad()),
            }
        }
        _ => Ok(RecordData::Other),
    }
}

fn describe(r: &RecordSet) -> String {
    format!("[name='{}', type='{}']", r.name, r.rtype)
}

/// Checks one record set's own shape; the errors are `InvalidChangeBatch`
/// lines, or an `InvalidInput` fault.
fn check_record(z: &HostedZone, r: &RecordSet, problems: &mut Vec<String>) -> Result<()> {
    if !TYPES.contains(&r.rtype.as_str()) {
        return Err(fault(
            "InvalidInput",
            format!("Invalid XML ; cvc-enumeration-valid: Value '{}' is not facet-valid with respect to enumeration. It must be a value from the enumeration.", r.rtype),
        ));
    }
    if !in_zone(&r.name, &z.name) {
        problems.push(format!(
            "RRSet with DNS name {} is not permitted in zone {}",
            r.name, z.name
        ));
        return Ok(());
    }
    match &r.alias {
        Some(_) if r.ttl.is_some() || !r.values.is_empty() => {
            return Err(fault(
                "InvalidInput",
                "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found more than one in Change with [Action=CREATE, Name=".to_string()
                    + &r.name + ", Type=" + &r.rtype + ", SetIdentifier=null]",
            ))
        }
        None if r.ttl.is_none() || r.values.is_empty() => {
            return Err(fault(
                "InvalidInput",
                "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found none in Change with [Action=CREATE, Name=".to_string()
                    + &r.name + ", Type=" + &r.rtype + ", SetIdentifier=null]",
            ))
        }
        _ => {}
    }
    if r.rtype == "CNAME" && r.name == z.name {
        problems.push(format!(
            "RRSet of type CNAME with DNS name {} is not permitted at apex in zone {}",
            r.name, z.name
        ));
    }
    if r.rtype == "CNAME" && r.values.len() > 1 {
        problems.push(format!(
            "RRSet of type CNAME with DNS name {} has more than one resource record",
            r.name
        ));
    }
    for v in &r.values {
        if let Err(why) = parse_value(&r.rtype, v) {
            problems.push(format!("Invalid Resource Record: 'FATAL problem: {why}'"));
        }
    }
    Ok(())
}

/// Applies a change batch atomically.
pub fn change_records(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    changes: Vec<RecordChange>,
    comment: Option<String>,
) -> Result<ZoneChange> {
    let mut z = get(w, ctx, id)?.clone();
    if changes.is_empty() {
        return Err(fault(
            "InvalidInput",
            "1 validation error detected: Value null at 'changeBatch.changes' failed to satisfy constraint: Member must not be null",
        ));
    }
    let mut problems = Vec::new();
    for c in changes {
        let mut r = c.record;
        r.name = match normalize_name(&r.name) {
            Some(n) => n,
            None => {
                return Err(fault(
                    "InvalidInput",
                    format!("Invalid request: the DNS name '{}' is not valid", r.name),
                ))
            }
        };
        check_record(&z, &r, &mut problems)?;
        let at = z
            .records
            .iter()
            .position(|x| x.name == r.name && x.rtype == r.rtype);
        match (c.action.as_str(), at) {
            ("CREATE", Some(_)) => problems.push(format!(
                "Tried to create resource record set {} but it already exists",
                describe(&r)
            )),
            ("DELETE", None) => problems.push(format!(
                "Tried to delete resource record set {} but it was not found",
                describe(&r)
            )),
            ("DELETE", Some(i)) => {
                let cur = &z.records[i];
                if is_apex(&z, cur) {
                    problems.push(format!(
                        "A HostedZone must contain at least one NS record and one SOA record for the zone itself: {}",
                        describe(&r)
                    ));
                } else if cur.ttl != r.ttl || cur.values != r.values || cur.alias != r.alias {
                    problems.push(format!(
                        "Tried to delete resource record set {} but the values provided do not match the current values",
                        describe(&r)
                    ));
                } else {
                    z.records.remove(i);
                }
            }
            ("CREATE" | "UPSERT", at) => {
                let clash = z.records.iter().find(|x| {
                    x.name == r.name && x.rtype != r.rtype && (x.rtype == "CNAME" || r.rtype == "CNAME")
                });
                if let Some(x) = clash {
                    problems.push(format!(
                        "RRSet of type {} with DNS name {} is not permitted because a conflicting RRSet of type {} with the same DNS name already exists in zone {}",
                        r.rtype, r.name, x.rtype, z.name
                    ));
                } else if let Some(i) = at {
                    z.records[i] = r;
                } else {
                    z.records.push(r);
                }
            }
            (other, _) => {
                return Err(fault(
                    "InvalidInput",
                    format!("Invalid XML ; cvc-enumeration-valid: Value '{other}' is not facet-valid with respect to enumeration '[CREATE, DELETE, UPSERT]'. It must be a value from the enumeration."),
                ))
            }
        }
    }
    if !problems.is_empty() {
        return Err(fault(
            "InvalidChangeBatch",
            format!("[{}]", problems.join(", ")),
        ));
    }
    z.records.sort_by_key(record_order);
    w.put(z);
    Ok(new_change(w, ctx, comment))
}

/// Route 53's listing order: by name with its labels reversed, then type.
pub fn record_order(r: &RecordSet) -> (Vec<String>, String) {
    let labels = r
        .name
        .trim_end_matches('.')
        .split('.')
        .rev()
        .map(str::to_string)
        .collect();
    (labels, r.rtype.clone())
}

// ---- Resolution ------------------------------------------------------------------

/// Whether private zones answer for queries that reach `querier`'s resolver:
/// both DNS attributes on (AWS requires them for private hosted zones).
pub fn zones_resolve_in(querier: &Vpc) -> bool {
    dns::names_resolve(querier)
}

/// The zone that answers `qname` (normalised) among the private zones
/// associated with `querier`: the most specific whose name is a suffix.
pub fn zone_for_query<'z>(
    querier: &Vpc,
    zones: impl IntoIterator<Item = &'z HostedZone>,
    qname: &str,
) -> Option<&'z HostedZone> {
    if !zones_resolve_in(querier) {
        return None;
    }
    let me = ZoneVpc {
        region: querier.meta.region.clone(),
        vpc_id: querier.meta.id.clone(),
    };
    zones
        .into_iter()
        .filter(|z| z.private && z.vpcs.contains(&me) && in_zone(qname, &z.name))
        .max_by_key(|z| z.name.len())
}

/// What a zone holds for a name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneLookup<'z> {
    /// The record set of the asked type (or, for ANY, every set at the name).
    Records(Vec<&'z RecordSet>),
    /// A CNAME at the name (for another type): the answer is the CNAME and
    /// whatever its target resolves to.
    Cname(&'z RecordSet),
    /// An alias of the asked type: answer with what the target resolves to,
    /// under the asked name.
    Alias(&'z AliasTarget),
    /// The name exists (or has names below it), not with this type.
    NoData,
    NxDomain,
}

/// Looks `qname` (normalised) up in `z`. `rtype` is the asked type's name
/// (`ANY` for every type). A `*.` record set answers names below its
/// parent that have no record sets of their own.
pub fn lookup<'z>(z: &'z HostedZone, qname: &str, rtype: &str) -> ZoneLookup<'z> {
    let exact: Vec<&RecordSet> = z.records.iter().filter(|r| r.name == qname).collect();
    let sets = if exact.is_empty() {
        let below = z
            .records
            .iter()
            .any(|r| r.name.ends_with(&format!(".{qname}")));
        if below {
            return ZoneLookup::NoData;
        }
        let wildcard = qname
            .split_once('.')
            .map(|(_, parent)| format!("*.{parent}"));
        let wild: Vec<&RecordSet> = z
            .records
            .iter()
            .filter(|r| Some(&r.name) == wildcard.as_ref() && qname != z.name)
            .collect();
        if wild.is_empty() {
            return ZoneLookup::NxDomain;
        }
        wild
    } else {
        exact
    };
    if rtype == "ANY" {
        return ZoneLookup::Records(sets.into_iter().filter(|r| r.alias.is_none()).collect());
    }
    if let Some(r) = sets.iter().find(|r| r.rtype == rtype) {
        return match &r.alias {
            Some(a) => ZoneLookup::Alias(a),
            None => ZoneLookup::Records(vec![r]),
        };
    }
    if let Some(c) = sets.iter().find(|r| r.rtype == "CNAME") {
        return ZoneLookup::Cname(c);
    }
    ZoneLookup::NoData
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, rtype: &str, values: &[&str]) -> RecordSet {
        RecordSet {
            name: name.into(),
            rtype: rtype.into(),
            ttl: Some(60),
            values: values.iter().map(|v| v.to_string()).collect(),
            alias: None,
        }
    }

    #[test]
    fn names_normalise_and_nest() {
        assert_eq!(
            normalize_name("Corp.Example").as_deref(),
            Some("corp.example.")
        );
        assert_eq!(
            normalize_name("*.corp.example.").as_deref(),
            Some("*.corp.example.")
        );
        assert_eq!(normalize_name("a..b"), None);
        assert_eq!(normalize_name("a.*.b"), None);
        assert_eq!(normalize_name(""), None);
        assert!(in_zone("db.corp.example.", "corp.example."));
        assert!(in_zone("corp.example.", "corp.example."));
        assert!(!in_zone("xcorp.example.", "corp.example."));
    }

    #[test]
    fn values_parse_by_type() {
        assert_eq!(
            parse_value("A", "10.0.0.5"),
            Ok(RecordData::A("10.0.0.5".parse().unwrap()))
        );
        assert!(parse_value("A", "10.0.0.300").is_err());
        assert!(parse_value("AAAA", "10.0.0.1").is_err());
        assert_eq!(
            parse_value("TXT", "\"v=spf1 -all\" \"two\""),
            Ok(RecordData::Txt(vec!["v=spf1 -all".into(), "two".into()]))
        );
        assert!(parse_value("TXT", "\"open").is_err());
        assert_eq!(
            parse_value("SRV", "1 5 5432 db.corp.example"),
            Ok(RecordData::Srv {
                priority: 1,
                weight: 5,
                port: 5432,
                target: "db.corp.example.".into()
            })
        );
        assert!(parse_value("SRV", "1 5 db.corp.example").is_err());
        assert!(parse_value("CNAME", "a..b").is_err());
    }

    #[test]
    fn lookup_distinguishes_nodata_nxdomain_cname_and_wildcards() {
        let z = HostedZone {
            meta: Meta {
                id: "Z1".into(),
                owner: "1".into(),
                region: String::new(),
                tags: vec![],
                created: Default::default(),
            },
            name: "corp.example.".into(),
            caller_reference: "r".into(),
            comment: None,
            private: true,
            vpcs: vec![],
            authorizations: vec![],
            records: vec![
                rs("db.corp.example.", "A", &["10.0.0.5"]),
                rs("www.corp.example.", "CNAME", &["db.corp.example."]),
                rs("a.b.corp.example.", "TXT", &["\"x\""]),
                rs("*.dev.corp.example.", "A", &["10.0.0.9"]),
            ],
        };
        assert!(
            matches!(lookup(&z, "db.corp.example.", "A"), ZoneLookup::Records(r) if r[0].values == ["10.0.0.5"])
        );
        assert_eq!(lookup(&z, "db.corp.example.", "AAAA"), ZoneLookup::NoData);
        assert_eq!(lookup(&z, "nope.corp.example.", "A"), ZoneLookup::NxDomain);
        assert!(matches!(
            lookup(&z, "www.corp.example.", "A"),
            ZoneLookup::Cname(_)
        ));
        assert_eq!(
            lookup(&z, "b.corp.example.", "A"),
            ZoneLookup::NoData,
            "empty non-terminal"
        );
        assert!(
            matches!(lookup(&z, "x.dev.corp.example.", "A"), ZoneLookup::Records(r) if r[0].values == ["10.0.0.9"])
        );
    }
}
