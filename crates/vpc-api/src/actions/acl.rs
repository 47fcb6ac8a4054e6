//! Network ACLs: create, delete, describe, entries, associations.

use super::{Handler, Req};
use crate::query::{self, tag_field};
use crate::xml::Xml;
use ipnet::IpNet;
use vpc_model::ops::{self, acl::EntrySpec};
use vpc_model::{AclEntry, Ctx, Fault, NetworkAcl, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateNetworkAcl", Handler::Write(create_acl)),
    ("DeleteNetworkAcl", Handler::Write(delete_acl)),
    ("DescribeNetworkAcls", Handler::Read(describe_acls)),
    ("CreateNetworkAclEntry", Handler::Write(create_entry)),
    ("ReplaceNetworkAclEntry", Handler::Write(replace_entry)),
    ("DeleteNetworkAclEntry", Handler::Write(delete_entry)),
    (
        "ReplaceNetworkAclAssociation",
        Handler::Write(replace_association),
    ),
];

fn render_entry(x: &mut Xml, e: &AclEntry) {
    x.num("ruleNumber", e.rule_number)
        .leaf("protocol", &e.protocol)
        .leaf("ruleAction", e.action.as_str())
        .bool("egress", e.egress);
    match &e.cidr {
        IpNet::V4(n) => x.leaf("cidrBlock", &n.to_string()),
        IpNet::V6(n) => x.leaf("ipv6CidrBlock", &n.to_string()),
    };
    if let Some((t, c)) = e.icmp {
        x.open("icmpTypeCode")
            .num("code", c)
            .num("type", t)
            .close("icmpTypeCode");
    }
    if let Some((from, to)) = e.ports {
        x.open("portRange")
            .num("from", from)
            .num("to", to)
            .close("portRange");
    }
}

pub fn render_acl(x: &mut Xml, a: &NetworkAcl) {
    let mut entries: Vec<&AclEntry> = a.entries.iter().collect();
    entries.sort_by_key(|e| (e.egress, e.rule_number));
    x.leaf("networkAclId", &a.meta.id)
        .leaf("vpcId", &a.vpc_id)
        .bool("default", a.is_default)
        .leaf("ownerId", &a.meta.owner);
    x.set("entrySet", entries, render_entry);
    x.set("associationSet", &a.assocs, |x, s| {
        x.leaf("networkAclAssociationId", &s.id)
            .leaf("networkAclId", &a.meta.id)
            .leaf("subnetId", &s.subnet_id);
    });
    x.tags(&a.meta.tags);
}

fn create_acl(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let vpc_id = r.p.req("VpcId")?.to_string();
    let tags = r.p.tag_specs("network-acl")?;
    let a = ops::acl::create(w, ctx, &vpc_id, tags)?;
    let mut x = r.xml();
    x.open("networkAcl");
    render_acl(&mut x, &a);
    x.close("networkAcl");
    x.opt("clientToken", r.p.get("ClientToken"));
    r.done(x)
}

fn delete_acl(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::acl::delete(w, ctx, r.p.req("NetworkAclId")?)?;
    r.ok()
}

fn entry_spec(r: &Req<'_>) -> Result<EntrySpec, Fault> {
    let p = r.p;
    Ok(EntrySpec {
        rule_number: p.int("RuleNumber")?,
        protocol: p.string("Protocol"),
        rule_action: p.string("RuleAction"),
        egress: p.bool("Egress")?.unwrap_or(false),
        cidr_block: p.string("CidrBlock"),
        ipv6_cidr_block: p.string("Ipv6CidrBlock"),
        port_from: p.int("PortRange.From")?,
        port_to: p.int("PortRange.To")?,
        icmp_type: p.int("Icmp.Type")?,
        icmp_code: p.int("Icmp.Code")?,
    })
}

fn create_entry(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("NetworkAclId")?;
    ops::acl::create_entry(w, ctx, id, &entry_spec(r)?)?;
    r.ok()
}

fn replace_entry(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("NetworkAclId")?;
    ops::acl::replace_entry(w, ctx, id, &entry_spec(r)?)?;
    r.ok()
}

fn delete_entry(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("NetworkAclId")?;
    ops::acl::delete_entry(
        w,
        ctx,
        id,
        r.p.int("RuleNumber")?,
        r.p.bool("Egress")?.unwrap_or(false),
    )?;
    r.ok()
}

fn replace_association(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let assoc = r.p.req("AssociationId")?;
    let acl = r.p.req("NetworkAclId")?;
    let na = ops::acl::replace_association(w, ctx, assoc, acl)?;
    let mut x = r.xml();
    x.leaf("newAssociationId", &na.id);
    r.done(x)
}

fn acl_field(a: &&NetworkAcl, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    let entries = |f: &dyn Fn(&AclEntry) -> Option<String>| -> Option<Vec<String>> {
        Some(a.entries.iter().filter_map(f).collect())
    };
    match name {
        "network-acl-id" => one(&a.meta.id),
        "vpc-id" => one(&a.vpc_id),
        "owner-id" => one(&a.meta.owner),
        "default" => one(if a.is_default { "true" } else { "false" }),
        "association.association-id" => Some(a.assocs.iter().map(|s| s.id.clone()).collect()),
        "association.network-acl-id" => Some(a.assocs.iter().map(|_| a.meta.id.clone()).collect()),
        "association.subnet-id" => Some(a.assocs.iter().map(|s| s.subnet_id.clone()).collect()),
        "entry.cidr" => entries(&|e| match e.cidr {
            IpNet::V4(n) => Some(n.to_string()),
            IpNet::V6(_) => None,
        }),
        "entry.ipv6-cidr-block" => entries(&|e| match e.cidr {
            IpNet::V6(n) => Some(n.to_string()),
            IpNet::V4(_) => None,
        }),
        "entry.egress" => entries(&|e| Some(e.egress.to_string())),
        "entry.rule-number" => entries(&|e| Some(e.rule_number.to_string())),
        "entry.protocol" => entries(&|e| Some(e.protocol.clone())),
        "entry.rule-action" => entries(&|e| Some(e.action.as_str().to_string())),
        "entry.port-range.from" => entries(&|e| e.ports.map(|p| p.0.to_string())),
        "entry.port-range.to" => entries(&|e| e.ports.map(|p| p.1.to_string())),
        "entry.icmp.type" => entries(&|e| e.icmp.map(|i| i.0.to_string())),
        "entry.icmp.code" => entries(&|e| e.icmp.map(|i| i.1.to_string())),
        _ => tag_field(&a.meta.tags, name),
    }
}

const ACL_FILTERS: &[&str] = &[
    "network-acl-id",
    "vpc-id",
    "owner-id",
    "default",
    "association.association-id",
    "association.network-acl-id",
    "association.subnet-id",
    "entry.cidr",
    "entry.ipv6-cidr-block",
    "entry.egress",
    "entry.rule-number",
    "entry.protocol",
    "entry.rule-action",
    "entry.port-range.from",
    "entry.port-range.to",
    "entry.icmp.type",
    "entry.icmp.code",
];

fn describe_acls(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("NetworkAclId")?;
    let items: Vec<&NetworkAcl> = if ids.is_empty() {
        w.scoped::<NetworkAcl>(&ctx.account, &ctx.region).collect()
    } else {
        let mut v = Vec::new();
        for id in &ids {
            let a = ops::acl::get(w, ctx, id)?;
            if !v.iter().any(|x: &&NetworkAcl| x.meta.id == a.meta.id) {
                v.push(a);
            }
        }
        v.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
        v
    };
    let items = query::apply(items, &r.p.filters()?, &acl_field, ACL_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |a| a.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("networkAclSet", page, render_acl);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}
