//! NAT gateways and Elastic IP addresses.

use super::instance::{by_ids, non_empty};
use super::{Handler, Req};
use crate::query::{self, tag_field};
use crate::xml::{timestamp, Xml};
use vpc_model::ops::{eip, eni, nat};
use vpc_model::{Address, Ctx, Fault, NatGateway, NatState, NetworkInterface, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateNatGateway", Handler::Write(create_nat)),
    ("DeleteNatGateway", Handler::Write(delete_nat)),
    ("DescribeNatGateways", Handler::Read(describe_nats)),
    ("AllocateAddress", Handler::Write(allocate_address)),
    ("AssociateAddress", Handler::Write(associate_address)),
    ("DisassociateAddress", Handler::Write(disassociate_address)),
    ("ReleaseAddress", Handler::Write(release_address)),
    ("DescribeAddresses", Handler::Read(describe_addresses)),
    (
        "DescribeAddressesAttribute",
        Handler::Read(describe_addresses_attribute),
    ),
];

// ---- NAT gateways ----------------------------------------------------------

fn address_status(g: &NatGateway) -> &'static str {
    match g.state {
        NatState::Pending => "associating",
        NatState::Available | NatState::Deleted => "succeeded",
        NatState::Deleting => "disassociating",
        NatState::Failed => "failed",
    }
}

fn render_nat(x: &mut Xml, w: &World, g: &NatGateway) {
    x.leaf("createTime", &timestamp(g.meta.created.0));
    if matches!(g.state, NatState::Deleting | NatState::Deleted) {
        x.leaf("deleteTime", &timestamp(g.state_since.0));
    }
    if let Some((code, msg)) = nat::failure(g) {
        x.leaf("failureCode", code).leaf("failureMessage", &msg);
    }
    let e = w.get::<NetworkInterface>(&g.eni_id);
    let a = g
        .allocation_id
        .as_deref()
        .and_then(|id| w.get::<Address>(id));
    x.set("natGatewayAddressSet", [()], |x, ()| {
        x.opt("allocationId", g.allocation_id.as_deref())
            .leaf("networkInterfaceId", &g.eni_id);
        if let Some(ip) = e.and_then(|e| e.primary_ip()) {
            x.leaf("privateIp", &ip.to_string());
        }
        if let Some(a) = a {
            x.leaf("publicIp", &a.public_ip.to_string());
            if a.eni_id.as_deref() == Some(g.eni_id.as_str()) {
                x.opt("associationId", a.association_id.as_deref());
            }
        }
        x.bool("isPrimary", true).leaf("status", address_status(g));
    });
    x.leaf("natGatewayId", &g.meta.id)
        .leaf("state", g.state.as_str())
        .leaf("subnetId", &g.subnet_id)
        .leaf("vpcId", &g.vpc_id)
        .tags(&g.meta.tags)
        .leaf("connectivityType", &g.connectivity);
}

fn create_nat(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    if !p.list("SecondaryAllocationId")?.is_empty()
        || !p.list("SecondaryPrivateIpAddress")?.is_empty()
        || p.has("SecondaryPrivateIpAddressCount")
    {
        return Err(Fault::new(
            "UnsupportedOperation",
            "Secondary NAT gateway addresses are not supported by vpcd.",
        ));
    }
    let g = nat::create(
        w,
        ctx,
        nat::CreateNat {
            subnet_id: non_empty(p, "SubnetId"),
            allocation_id: non_empty(p, "AllocationId"),
            connectivity: non_empty(p, "ConnectivityType"),
            private_ip: non_empty(p, "PrivateIpAddress"),
            tags: p.tag_specs("natgateway")?,
        },
    )?;
    let mut x = r.xml();
    x.opt("clientToken", p.get("ClientToken"));
    x.open("natGateway");
    render_nat(&mut x, w, &g);
    x.close("natGateway");
    r.done(x)
}

fn delete_nat(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let g = nat::delete(w, ctx, r.p.req("NatGatewayId")?)?;
    let mut x = r.xml();
    x.leaf("natGatewayId", &g.meta.id);
    r.done(x)
}

const NAT_FILTERS: &[&str] = &["nat-gateway-id", "state", "subnet-id", "vpc-id"];

fn nat_field(g: &&NatGateway, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    match name {
        "nat-gateway-id" => one(&g.meta.id),
        "state" => one(g.state.as_str()),
        "subnet-id" => one(&g.subnet_id),
        "vpc-id" => one(&g.vpc_id),
        _ => tag_field(&g.meta.tags, name),
    }
}

fn describe_nats(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("NatGatewayId")?;
    let items = by_ids(
        &ids,
        |id| nat::get(w, ctx, id),
        || w.scoped::<NatGateway>(&ctx.account, &ctx.region).collect(),
    )?;
    let items = query::apply(items, &r.p.filters()?, &nat_field, NAT_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |g| g.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("natGatewaySet", page, |x, g| render_nat(x, w, g));
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- Elastic IPs -----------------------------------------------------------

fn allocate_address(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    if p.get("Address").is_some_and(|s| !s.is_empty())
        || p.get("PublicIpv4Pool")
            .is_some_and(|s| !s.is_empty() && s != "amazon")
        || p.get("CustomerOwnedIpv4Pool")
            .is_some_and(|s| !s.is_empty())
        || p.get("IpamPoolId").is_some_and(|s| !s.is_empty())
    {
        return Err(Fault::new(
            "UnsupportedOperation",
            "Only Amazon-pool addresses are supported by vpcd.",
        ));
    }
    let a = eip::allocate(w, ctx, p.get("Domain"), p.tag_specs("elastic-ip")?)?;
    let mut x = r.xml();
    x.leaf("publicIp", &a.public_ip.to_string())
        .leaf("domain", "vpc")
        .leaf("allocationId", &a.meta.id)
        .leaf("publicIpv4Pool", "amazon")
        .leaf("networkBorderGroup", &a.meta.region);
    r.done(x)
}

fn associate_address(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let id = eip::associate(
        w,
        ctx,
        eip::Associate {
            allocation_id: non_empty(p, "AllocationId"),
            public_ip: non_empty(p, "PublicIp"),
            instance_id: non_empty(p, "InstanceId"),
            network_interface_id: non_empty(p, "NetworkInterfaceId"),
            private_ip: non_empty(p, "PrivateIpAddress"),
            allow_reassociation: p.bool("AllowReassociation")?.unwrap_or(false),
        },
    )?;
    let mut x = r.xml();
    x.bool("return", true).leaf("associationId", &id);
    r.done(x)
}

fn disassociate_address(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    eip::disassociate(w, ctx, r.p.get("AssociationId"), r.p.get("PublicIp"))?;
    r.ok()
}

fn release_address(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    eip::release(w, ctx, r.p.get("AllocationId"), r.p.get("PublicIp"))?;
    r.ok()
}

const ADDRESS_FILTERS: &[&str] = &[
    "allocation-id",
    "association-id",
    "instance-id",
    "network-interface-id",
    "network-interface-owner-id",
    "private-ip-address",
    "public-ip",
    "domain",
    "network-border-group",
    "public-ipv4-pool",
];

fn address_eni<'w>(w: &'w World, a: &Address) -> Option<&'w NetworkInterface> {
    a.eni_id
        .as_deref()
        .and_then(|id| w.get::<NetworkInterface>(id))
}

fn address_field(w: &World, a: &Address, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    let e = address_eni(w, a);
    match name {
        "allocation-id" => one(&a.meta.id),
        "association-id" => Some(a.association_id.iter().cloned().collect()),
        "instance-id" => Some(
            e.and_then(|e| eni::instance_of(w, e))
                .map(|i| i.meta.id.clone())
                .into_iter()
                .collect(),
        ),
        "network-interface-id" => Some(a.eni_id.iter().cloned().collect()),
        "network-interface-owner-id" => Some(e.map(|e| e.meta.owner.clone()).into_iter().collect()),
        "private-ip-address" => Some(a.private_ip.iter().map(|ip| ip.to_string()).collect()),
        "public-ip" => one(&a.public_ip.to_string()),
        "domain" => one("vpc"),
        "network-border-group" => one(&a.meta.region),
        "public-ipv4-pool" => one("amazon"),
        _ => tag_field(&a.meta.tags, name),
    }
}

fn render_address(x: &mut Xml, w: &World, a: &Address) {
    let e = address_eni(w, a);
    x.leaf("publicIp", &a.public_ip.to_string())
        .leaf("allocationId", &a.meta.id)
        .leaf("domain", "vpc");
    if let Some(i) = e.and_then(|e| eni::instance_of(w, e)) {
        x.leaf("instanceId", &i.meta.id);
    }
    x.opt("associationId", a.association_id.as_deref())
        .opt("networkInterfaceId", a.eni_id.as_deref());
    if let Some(e) = e {
        x.leaf("networkInterfaceOwnerId", &e.meta.owner)
            .leaf("subnetId", &e.subnet_id);
    }
    if let Some(ip) = a.private_ip {
        x.leaf("privateIpAddress", &ip.to_string());
    }
    x.tags(&a.meta.tags)
        .leaf("publicIpv4Pool", "amazon")
        .leaf("networkBorderGroup", &a.meta.region);
}

fn describe_addresses(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let alloc_ids = r.p.list("AllocationId")?;
    let public_ips = r.p.list("PublicIp")?;
    let mut items: Vec<&Address> = if alloc_ids.is_empty() && public_ips.is_empty() {
        w.scoped::<Address>(&ctx.account, &ctx.region).collect()
    } else {
        let mut v = Vec::new();
        for id in &alloc_ids {
            v.push(eip::get(w, ctx, id)?);
        }
        for ip in &public_ips {
            v.push(eip::by_public_ip(w, ctx, ip)?);
        }
        v
    };
    items.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    items.dedup_by(|a, b| a.meta.id == b.meta.id);
    let field = |a: &&Address, name: &str| address_field(w, a, name);
    let items = query::apply(items, &r.p.filters()?, &field, ADDRESS_FILTERS)?;
    let mut x = r.xml();
    x.set("addressesSet", items, |x, a| render_address(x, w, a));
    r.done(x)
}

/// DescribeAddressesAttribute (`domain-name`): vpcd keeps no reverse DNS
/// records, so each address is listed without a `ptrRecord`.
fn describe_addresses_attribute(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    match r.p.get("Attribute") {
        None | Some("domain-name") => {}
        Some(other) => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter attribute is invalid. Valid values: domain-name"
            )))
        }
    }
    let ids = r.p.list("AllocationId")?;
    let mut items: Vec<&Address> = if ids.is_empty() {
        w.scoped::<Address>(&ctx.account, &ctx.region).collect()
    } else {
        let mut v = Vec::new();
        for id in &ids {
            v.push(eip::get(w, ctx, id)?);
        }
        v
    };
    items.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    items.dedup_by(|a, b| a.meta.id == b.meta.id);
    let (page, next) = query::paginate(items, r.p, |a| a.meta.id.clone(), 1, 1000)?;
    let mut x = r.xml();
    x.set("addressSet", page, |x, a| {
        x.leaf("publicIp", &a.public_ip.to_string())
            .leaf("allocationId", &a.meta.id);
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}
