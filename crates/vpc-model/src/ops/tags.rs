//! Tags: validation, tag-on-create, CreateTags/DeleteTags/DescribeTags.

use super::{IdKind, ACL, IGW, ROUTE_TABLE, SG, SUBNET, VPC};
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::{Owned, World};
use crate::Ctx;

/// Checks keys and values the way EC2 does.
pub fn validate(tags: &[Tag], limit: usize) -> Result<()> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 127 {
            return Err(Fault::new(
                "InvalidParameterValue",
                format!(
                    "Tag key exceeds the maximum length of 127 characters or is empty: '{}'",
                    t.key
                ),
            ));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(Fault::new(
                "InvalidParameterValue",
                "Tag keys starting with 'aws:' are reserved for internal use",
            ));
        }
        if t.value.chars().count() > 256 {
            return Err(Fault::new(
                "InvalidParameterValue",
                format!(
                    "Tag value exceeds the maximum length of 256 characters for key '{}'",
                    t.key
                ),
            ));
        }
    }
    if tags.len() > limit {
        return Err(too_many());
    }
    Ok(())
}

fn too_many() -> Fault {
    Fault::new(
        "TagLimitExceeded",
        "The maximum number of Tags for a resource has been reached.",
    )
}

/// Adds or overwrites tags by key.
pub fn merge(existing: &mut Tags, new: &[Tag], limit: usize) -> Result<()> {
    for t in new {
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = t.value.clone(),
            None => existing.push(t.clone()),
        }
    }
    if existing.len() > limit {
        return Err(too_many());
    }
    Ok(())
}

/// Removes tags: by key alone, or by key and value when a value is given.
pub fn remove(existing: &mut Tags, del: &[(String, Option<String>)]) {
    existing.retain(|t| {
        !del.iter()
            .any(|(k, v)| *k == t.key && v.as_ref().is_none_or(|v| *v == t.value))
    });
}

/// The resource type name DescribeTags reports for an ID.
pub fn resource_type(id: &str) -> Option<&'static str> {
    let prefix = id.rsplit_once('-')?.0;
    Some(match prefix {
        "vpc" => "vpc",
        "subnet" => "subnet",
        "rtb" => "route-table",
        "igw" => "internet-gateway",
        "sg" => "security-group",
        "sgr" => "security-group-rule",
        "acl" => "network-acl",
        "pcx" => "vpc-peering-connection",
        "i" => "instance",
        "eni" => "network-interface",
        "nat" => "natgateway",
        "eipalloc" => "elastic-ip",
        "nip" => "network-insights-path",
        "nia" => "network-insights-analysis",
        "vol" => "volume",
        "pl" => "prefix-list",
        "vpce" => "vpc-endpoint",
        "eigw" => "egress-only-internet-gateway",
        "dopt" => "dhcp-options",
        "scr" => "subnet-cidr-reservation",
        _ => return None,
    })
}

fn with_owned<R: Owned>(
    w: &mut World,
    ctx: &Ctx<'_>,
    kind: &IdKind,
    id: &str,
    f: impl FnOnce(&mut Tags) -> Result<()>,
) -> Result<()> {
    w.owned::<R>(id, &ctx.account, &ctx.region, || kind.not_found(id))?;
    let mut out = Ok(());
    w.update::<R>(id, |r| out = f(&mut r.meta_mut().tags));
    out
}

/// Applies `f` to the caller's tags on resource `id`.
pub fn with_tags(
    w: &mut World,
    ctx: &Ctx<'_>,
    id: &str,
    f: impl FnOnce(&mut Tags) -> Result<()>,
) -> Result<()> {
    let invalid = || Fault::new("InvalidID", format!("The ID '{id}' is not valid"));
    let prefix = id.rsplit_once('-').ok_or_else(invalid)?.0;
    match prefix {
        "vpc" => with_owned::<Vpc>(w, ctx, &VPC, id, f),
        "subnet" => with_owned::<Subnet>(w, ctx, &SUBNET, id, f),
        "rtb" => with_owned::<RouteTable>(w, ctx, &ROUTE_TABLE, id, f),
        "igw" => with_owned::<InternetGateway>(w, ctx, &IGW, id, f),
        "sg" => with_owned::<SecurityGroup>(w, ctx, &SG, id, f),
        "acl" => with_owned::<NetworkAcl>(w, ctx, &ACL, id, f),
        "i" => with_owned::<Instance>(w, ctx, &super::instance::INSTANCE, id, f),
        "eni" => with_owned::<NetworkInterface>(w, ctx, &super::eni::ENI, id, f),
        "eipalloc" => with_owned::<Address>(w, ctx, &super::eip::ALLOC, id, f),
        "nip" => with_owned::<NetworkInsightsPath>(w, ctx, &super::insights::PATH, id, f),
        "nia" => with_owned::<NetworkInsightsAnalysis>(w, ctx, &super::insights::ANALYSIS, id, f),
        "vol" => with_owned::<Volume>(w, ctx, &super::volume::VOLUME, id, f),
        "pl" => with_owned::<ManagedPrefixList>(w, ctx, &super::prefix_list::PL, id, f),
        "vpce" => with_owned::<VpcEndpoint>(w, ctx, &super::endpoint::VPCE, id, f),
        "eigw" => with_owned::<EgressOnlyInternetGateway>(w, ctx, &super::eigw::EIGW, id, f),
        "dopt" => with_owned::<crate::DhcpOptions>(w, ctx, &super::dhcp::DHCP, id, f),
        "nat" => {
            super::nat::get(w, ctx, id)?;
            let mut out = Ok(());
            w.update::<NatGateway>(id, |g| out = f(&mut g.meta.tags));
            out
        }
        "pcx" => {
            let side = super::peering::visible(w, ctx, id)?;
            let mut out = Ok(());
            w.update::<Peering>(id, |p| out = f(&mut p.side_mut(side).tags));
            out
        }
        "scr" => {
            let (s, _) = super::subnet_cidr_reservation::get(w, ctx, id)?;
            let subnet_id = s.meta.id.clone();
            let mut out = Ok(());
            w.update::<Subnet>(&subnet_id, |s| {
                if let Some(r) = s.cidr_reservations.iter_mut().find(|r| r.id == id) {
                    out = f(&mut r.tags);
                }
            });
            out
        }
        "sgr" => {
            let sg_id = w
                .scoped::<SecurityGroup>(&ctx.account, &ctx.region)
                .find(|g| g.ingress.iter().chain(&g.egress).any(|r| r.id == id))
                .map(|g| g.meta.id.clone())
                .ok_or_else(|| {
                    Fault::new(
                        "InvalidSecurityGroupRuleId.NotFound",
                        format!("The security group rule ID '{id}' does not exist"),
                    )
                })?;
            let mut out = Ok(());
            w.update::<SecurityGroup>(&sg_id, |g| {
                if let Some(r) = g
                    .ingress
                    .iter_mut()
                    .chain(g.egress.iter_mut())
                    .find(|r| r.id == id)
                {
                    out = f(&mut r.tags);
                }
            });
            out
        }
        _ => Err(invalid()),
    }
}

pub fn create_tags(w: &mut World, ctx: &Ctx<'_>, ids: &[String], tags: &[Tag]) -> Result<()> {
    if ids.is_empty() {
        return Err(Fault::missing("ResourceId"));
    }
    validate(tags, ctx.limits.tags_per_resource)?;
    let limit = ctx.limits.tags_per_resource;
    for id in ids {
        with_tags(w, ctx, id, |t| merge(t, tags, limit))?;
    }
    Ok(())
}

pub fn delete_tags(
    w: &mut World,
    ctx: &Ctx<'_>,
    ids: &[String],
    del: &[(String, Option<String>)],
) -> Result<()> {
    if ids.is_empty() {
        return Err(Fault::missing("ResourceId"));
    }
    for id in ids {
        with_tags(w, ctx, id, |t| {
            if del.is_empty() {
                t.clear();
            } else {
                remove(t, del);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// One row of DescribeTags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub resource_id: String,
    pub resource_type: &'static str,
    pub key: String,
    pub value: String,
}

/// Every tag the caller can see in this region, sorted by resource then key.
pub fn all_tags(w: &World, ctx: &Ctx<'_>) -> Vec<TagRow> {
    let mut rows = Vec::new();
    let mut push = |id: &str, tags: &Tags| {
        let rt = resource_type(id).unwrap_or("unknown");
        for t in tags {
            rows.push(TagRow {
                resource_id: id.to_string(),
                resource_type: rt,
                key: t.key.clone(),
                value: t.value.clone(),
            });
        }
    };
    let (a, r) = (ctx.account.as_str(), ctx.region.as_str());
    for x in w.scoped::<Vpc>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<Subnet>(a, r) {
        push(&x.meta.id, &x.meta.tags);
        for c in &x.cidr_reservations {
            push(&c.id, &c.tags);
        }
    }
    for x in w.scoped::<RouteTable>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<InternetGateway>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<SecurityGroup>(a, r) {
        push(&x.meta.id, &x.meta.tags);
        for rule in x.ingress.iter().chain(&x.egress) {
            push(&rule.id, &rule.tags);
        }
    }
    for x in w.scoped::<NetworkAcl>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<Instance>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<NetworkInterface>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<NatGateway>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<Address>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<Volume>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<crate::DhcpOptions>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<NetworkInsightsPath>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<NetworkInsightsAnalysis>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<ManagedPrefixList>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<VpcEndpoint>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for x in w.scoped::<EgressOnlyInternetGateway>(a, r) {
        push(&x.meta.id, &x.meta.tags);
    }
    for p in w.iter::<Peering>() {
        if let Some(side) = p.side_of(a, r) {
            if super::peering::is_visible(p, side, ctx.now) {
                push(&p.id, &p.side(side).tags);
            }
        }
    }
    rows.sort_by(|x, y| (&x.resource_id, &x.key).cmp(&(&y.resource_id, &y.key)));
    rows
}
