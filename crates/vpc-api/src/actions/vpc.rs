//! VPCs, subnets, internet gateways, tags, regions and zones.

use super::{Handler, Req};
use crate::params::{parse_tag_keys, parse_tags};
use crate::query::{self, tag_field};
use crate::xml::Xml;
use vpc_model::ops::{self, subnet::CreateSubnet, vpc::CreateVpc, vpc::NewBlock};
use vpc_model::{Ctx, Fault, InternetGateway, Ipv6Assoc, Subnet, Vpc, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateVpc", Handler::Write(create_vpc)),
    ("DeleteVpc", Handler::Write(delete_vpc)),
    ("DescribeVpcs", Handler::Read(describe_vpcs)),
    ("AssociateVpcCidrBlock", Handler::Write(associate_vpc_cidr)),
    (
        "DisassociateVpcCidrBlock",
        Handler::Write(disassociate_vpc_cidr),
    ),
    (
        "DescribeVpcAttribute",
        Handler::Read(describe_vpc_attribute),
    ),
    ("ModifyVpcAttribute", Handler::Write(modify_vpc_attribute)),
    ("ModifyVpcTenancy", Handler::Write(modify_vpc_tenancy)),
    ("CreateSubnet", Handler::Write(create_subnet)),
    ("DeleteSubnet", Handler::Write(delete_subnet)),
    ("DescribeSubnets", Handler::Read(describe_subnets)),
    (
        "ModifySubnetAttribute",
        Handler::Write(modify_subnet_attribute),
    ),
    (
        "AssociateSubnetCidrBlock",
        Handler::Write(associate_subnet_cidr),
    ),
    (
        "DisassociateSubnetCidrBlock",
        Handler::Write(disassociate_subnet_cidr),
    ),
    ("CreateInternetGateway", Handler::Write(create_igw)),
    ("AttachInternetGateway", Handler::Write(attach_igw)),
    ("DetachInternetGateway", Handler::Write(detach_igw)),
    ("DeleteInternetGateway", Handler::Write(delete_igw)),
    ("DescribeInternetGateways", Handler::Read(describe_igws)),
    ("CreateTags", Handler::Write(create_tags)),
    ("DeleteTags", Handler::Write(delete_tags)),
    ("DescribeTags", Handler::Read(describe_tags)),
    ("DescribeRegions", Handler::Read(describe_regions)),
    ("DescribeAvailabilityZones", Handler::Read(describe_azs)),
    (
        "DescribeAccountAttributes",
        Handler::Read(describe_account_attributes),
    ),
];

// ---- VPCs ----------------------------------------------------------------

pub fn render_vpc(x: &mut Xml, v: &Vpc) {
    render_vpc_in(x, v, "available")
}

/// A VPC in `state`: CreateVpc answers `pending`, as AWS does; vpcd's VPCs
/// are `available` by the time anyone describes them.
fn render_vpc_in(x: &mut Xml, v: &Vpc, state: &str) {
    x.leaf("vpcId", &v.meta.id)
        .leaf("ownerId", &v.meta.owner)
        .leaf("state", state)
        .leaf("cidrBlock", &v.primary_cidr().to_string());
    x.set("cidrBlockAssociationSet", &v.cidrs, |x, c| {
        x.leaf("cidrBlock", &c.cidr.to_string())
            .leaf("associationId", &c.assoc_id)
            .open("cidrBlockState")
            .leaf("state", &c.state)
            .close("cidrBlockState");
    });
    x.set("ipv6CidrBlockAssociationSet", &v.ipv6, |x, c| {
        render_v6_assoc(x, c, true)
    });
    x.leaf("dhcpOptionsId", &v.dhcp_options_id)
        .leaf("instanceTenancy", &v.tenancy)
        .bool("isDefault", v.is_default)
        .tags(&v.meta.tags);
}

fn render_v6_assoc(x: &mut Xml, c: &Ipv6Assoc, vpc: bool) {
    x.leaf("ipv6CidrBlock", &c.cidr.to_string())
        .leaf("associationId", &c.assoc_id)
        .open("ipv6CidrBlockState")
        .leaf("state", &c.state)
        .close("ipv6CidrBlockState");
    if vpc {
        x.leaf("networkBorderGroup", &c.border_group)
            .leaf("ipv6Pool", &c.pool);
    }
}

fn create_vpc(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let req = CreateVpc {
        cidr_block: p.string("CidrBlock"),
        amazon_ipv6: p.bool("AmazonProvidedIpv6CidrBlock")?.unwrap_or(false),
        tenancy: p.string("InstanceTenancy"),
        tags: p.tag_specs("vpc")?,
    };
    if p.has("Ipv4IpamPoolId")
        || p.has("Ipv6IpamPoolId")
        || p.has("Ipv6Pool")
        || p.has("Ipv6CidrBlock")
    {
        return Err(Fault::new(
            "UnsupportedOperation",
            "IPAM pools and BYOIP IPv6 pools are not supported by vpcd; use AmazonProvidedIpv6CidrBlock.",
        ));
    }
    let v = ops::vpc::create_vpc(w, ctx, req)?;
    let mut x = r.xml();
    x.open("vpc");
    render_vpc_in(&mut x, &v, "pending");
    x.close("vpc");
    r.done(x)
}

fn delete_vpc(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::vpc::delete_vpc(w, ctx, r.p.req("VpcId")?)?;
    r.ok()
}

/// Looks up requested IDs; an unknown one fails the whole call, like EC2.
fn by_ids<'w, T>(
    ids: &[String],
    get: impl Fn(&str) -> Result<&'w T, Fault>,
    all: impl FnOnce() -> Vec<&'w T>,
) -> Result<Vec<&'w T>, Fault> {
    if ids.is_empty() {
        return Ok(all());
    }
    let mut ids: Vec<&String> = ids.iter().collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        out.push(get(id)?);
    }
    Ok(out)
}

fn vpc_field(v: &&Vpc, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    match name {
        "vpc-id" => one(&v.meta.id),
        "owner-id" => one(&v.meta.owner),
        "state" => one("available"),
        "cidr" | "cidr-block" => one(&v.primary_cidr().to_string()),
        "cidr-block-association.cidr-block" => {
            Some(v.cidrs.iter().map(|c| c.cidr.to_string()).collect())
        }
        "cidr-block-association.association-id" => {
            Some(v.cidrs.iter().map(|c| c.assoc_id.clone()).collect())
        }
        "cidr-block-association.state" => Some(v.cidrs.iter().map(|c| c.state.clone()).collect()),
        "ipv6-cidr-block-association.ipv6-cidr-block" => {
            Some(v.ipv6.iter().map(|c| c.cidr.to_string()).collect())
        }
        "ipv6-cidr-block-association.association-id" => {
            Some(v.ipv6.iter().map(|c| c.assoc_id.clone()).collect())
        }
        "ipv6-cidr-block-association.state" => {
            Some(v.ipv6.iter().map(|c| c.state.clone()).collect())
        }
        "ipv6-cidr-block-association.ipv6-pool" => {
            Some(v.ipv6.iter().map(|c| c.pool.clone()).collect())
        }
        "dhcp-options-id" => one(&v.dhcp_options_id),
        "is-default" | "isDefault" => one(if v.is_default { "true" } else { "false" }),
        "instance-tenancy" => one(&v.tenancy),
        _ => tag_field(&v.meta.tags, name),
    }
}

const VPC_FILTERS: &[&str] = &[
    "vpc-id",
    "owner-id",
    "state",
    "cidr",
    "cidr-block",
    "cidr-block-association.cidr-block",
    "cidr-block-association.association-id",
    "cidr-block-association.state",
    "ipv6-cidr-block-association.ipv6-cidr-block",
    "ipv6-cidr-block-association.association-id",
    "ipv6-cidr-block-association.state",
    "ipv6-cidr-block-association.ipv6-pool",
    "dhcp-options-id",
    "is-default",
    "isDefault",
    "instance-tenancy",
];

fn describe_vpcs(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("VpcId")?;
    let items = by_ids(
        &ids,
        |id| ops::vpc::get(w, ctx, id),
        || w.scoped::<Vpc>(&ctx.account, &ctx.region).collect(),
    )?;
    let items = query::apply(items, &r.p.filters()?, &vpc_field, VPC_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |v| v.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("vpcSet", page, render_vpc);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn associate_vpc_cidr(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let vpc_id = r.p.req("VpcId")?.to_string();
    if r.p.has("Ipv6CidrBlock")
        || r.p.has("Ipv6Pool")
        || r.p.has("Ipv4IpamPoolId")
        || r.p.has("Ipv6IpamPoolId")
    {
        return Err(Fault::new(
            "UnsupportedOperation",
            "IPAM pools and BYOIP IPv6 pools are not supported by vpcd; use AmazonProvidedIpv6CidrBlock.",
        ));
    }
    let block = ops::vpc::associate_cidr(
        w,
        ctx,
        &vpc_id,
        r.p.get("CidrBlock"),
        r.p.bool("AmazonProvidedIpv6CidrBlock")?.unwrap_or(false),
    )?;
    let mut x = r.xml();
    x.leaf("vpcId", &vpc_id);
    // AWS answers `associating`; the block is `associated` by the time anyone describes it.
    render_new_block(&mut x, &block, "associating");
    r.done(x)
}

/// A block as an Associate/Disassociate call answers it: `answer` stands for
/// a block the store already holds as `associated`.
fn render_new_block(x: &mut Xml, block: &NewBlock, answer: &str) {
    let shown = |state: &str| {
        if state == "associated" {
            answer.to_string()
        } else {
            state.to_string()
        }
    };
    match block {
        NewBlock::V4(c) => {
            x.open("cidrBlockAssociation")
                .leaf("associationId", &c.assoc_id)
                .leaf("cidrBlock", &c.cidr.to_string())
                .open("cidrBlockState")
                .leaf("state", &shown(&c.state))
                .close("cidrBlockState")
                .close("cidrBlockAssociation");
        }
        NewBlock::V6(c) => {
            let c = Ipv6Assoc {
                state: shown(&c.state),
                ..c.clone()
            };
            x.open("ipv6CidrBlockAssociation");
            render_v6_assoc(x, &c, true);
            x.close("ipv6CidrBlockAssociation");
        }
    }
}

fn disassociate_vpc_cidr(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let (vpc_id, block) = ops::vpc::disassociate_cidr(w, ctx, r.p.req("AssociationId")?)?;
    let mut x = r.xml();
    x.leaf("vpcId", &vpc_id);
    render_new_block(&mut x, &block, "associated");
    r.done(x)
}

fn describe_vpc_attribute(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let vpc_id = r.p.req("VpcId")?;
    let attr = r.p.req("Attribute")?;
    let v = ops::vpc::get(w, ctx, vpc_id)?;
    let (tag, val) = match attr {
        "enableDnsSupport" => ("enableDnsSupport", v.dns_support),
        "enableDnsHostnames" => ("enableDnsHostnames", v.dns_hostnames),
        "enableNetworkAddressUsageMetrics" => (
            "enableNetworkAddressUsageMetrics",
            v.network_address_usage_metrics,
        ),
        other => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter attribute is invalid. Unknown attribute."
            )))
        }
    };
    let mut x = r.xml();
    x.leaf("vpcId", vpc_id)
        .open(tag)
        .bool("value", val)
        .close(tag);
    r.done(x)
}

fn modify_vpc_attribute(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    if let Some(on) = r.p.attr_bool("EnableNetworkAddressUsageMetrics")? {
        let mut given: Vec<&str> = [
            ("EnableDnsHostnames", "enableDnsHostnames"),
            ("EnableDnsSupport", "enableDnsSupport"),
        ]
        .into_iter()
        .filter(|(p, _)| r.p.has(p) || r.p.has(&format!("{p}.Value")))
        .map(|(_, n)| n)
        .collect();
        if !given.is_empty() {
            given.push("enableNetworkAddressUsageMetrics");
            return Err(Fault::new(
                "InvalidParameterCombination",
                format!(
                    "Fields for multiple attribute types specified: {}",
                    given.join(", ")
                ),
            ));
        }
        ops::vpc::set_network_address_usage_metrics(w, ctx, r.p.req("VpcId")?, on)?;
        return r.ok();
    }
    ops::vpc::modify_attribute(
        w,
        ctx,
        r.p.req("VpcId")?,
        r.p.attr_bool("EnableDnsSupport")?,
        r.p.attr_bool("EnableDnsHostnames")?,
    )?;
    r.ok()
}

fn modify_vpc_tenancy(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::vpc::modify_tenancy(w, ctx, r.p.req("VpcId")?, r.p.req("InstanceTenancy")?)?;
    r.ok()
}

// ---- Subnets -------------------------------------------------------------

pub fn render_subnet(x: &mut Xml, w: &World, s: &Subnet) {
    x.leaf("subnetId", &s.meta.id)
        .leaf(
            "subnetArn",
            &format!(
                "arn:aws:ec2:{}:{}:subnet/{}",
                s.meta.region, s.meta.owner, s.meta.id
            ),
        )
        .leaf("state", "available")
        .leaf("ownerId", &s.meta.owner)
        .leaf("vpcId", &s.vpc_id)
        .opt("cidrBlock", s.cidr.map(|c| c.to_string()).as_deref());
    x.set("ipv6CidrBlockAssociationSet", &s.ipv6, |x, c| {
        render_v6_assoc(x, c, false)
    });
    x.num("availableIpAddressCount", ops::subnet::available_ips(w, s))
        .leaf("availabilityZone", &s.az)
        .leaf("availabilityZoneId", &s.az_id)
        .bool("defaultForAz", s.default_for_az)
        .bool("mapPublicIpOnLaunch", s.map_public_ip)
        .bool("mapCustomerOwnedIpOnLaunch", false)
        .bool("assignIpv6AddressOnCreation", s.assign_ipv6)
        .bool("ipv6Native", s.ipv6_native)
        .bool("enableDns64", s.enable_dns64)
        .open("privateDnsNameOptionsOnLaunch");
    super::instance::render_private_dns(x, &s.private_dns_on_launch);
    x.close("privateDnsNameOptionsOnLaunch").tags(&s.meta.tags);
}

fn create_subnet(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let s = ops::subnet::create_subnet(
        w,
        ctx,
        CreateSubnet {
            vpc_id: p.string("VpcId"),
            cidr_block: p.string("CidrBlock"),
            ipv6_cidr_block: p.string("Ipv6CidrBlock"),
            ipv6_native: p.bool("Ipv6Native")?.unwrap_or(false),
            availability_zone: p.string("AvailabilityZone"),
            availability_zone_id: p.string("AvailabilityZoneId"),
            tags: p.tag_specs("subnet")?,
        },
    )?;
    let mut x = r.xml();
    x.open("subnet");
    render_subnet(&mut x, w, &s);
    x.close("subnet");
    r.done(x)
}

fn delete_subnet(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::subnet::delete_subnet(w, ctx, r.p.req("SubnetId")?)?;
    r.ok()
}

fn subnet_field(w: &World, s: &&Subnet, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    let b = |v: bool| Some(vec![if v { "true" } else { "false" }.to_string()]);
    match name {
        "subnet-id" => one(&s.meta.id),
        "vpc-id" => one(&s.vpc_id),
        "owner-id" => one(&s.meta.owner),
        "state" => one("available"),
        "cidr" | "cidr-block" | "cidrBlock" => Some(s.cidr.iter().map(|c| c.to_string()).collect()),
        "availability-zone" | "availabilityZone" => one(&s.az),
        "availability-zone-id" | "availabilityZoneId" => one(&s.az_id),
        "available-ip-address-count" => one(&ops::subnet::available_ips(w, s).to_string()),
        "default-for-az" | "defaultForAz" => b(s.default_for_az),
        "map-public-ip-on-launch" => b(s.map_public_ip),
        "assign-ipv6-address-on-creation" => b(s.assign_ipv6),
        "ipv6-native" => b(s.ipv6_native),
        "enable-dns64" => b(s.enable_dns64),
        "ipv6-cidr-block-association.ipv6-cidr-block" => {
            Some(s.ipv6.iter().map(|c| c.cidr.to_string()).collect())
        }
        "ipv6-cidr-block-association.association-id" => {
            Some(s.ipv6.iter().map(|c| c.assoc_id.clone()).collect())
        }
        "ipv6-cidr-block-association.state" => {
            Some(s.ipv6.iter().map(|c| c.state.clone()).collect())
        }
        "subnet-arn" => one(&format!(
            "arn:aws:ec2:{}:{}:subnet/{}",
            s.meta.region, s.meta.owner, s.meta.id
        )),
        _ => tag_field(&s.meta.tags, name),
    }
}

const SUBNET_FILTERS: &[&str] = &[
    "subnet-id",
    "vpc-id",
    "owner-id",
    "state",
    "cidr",
    "cidr-block",
    "cidrBlock",
    "availability-zone",
    "availabilityZone",
    "availability-zone-id",
    "availabilityZoneId",
    "available-ip-address-count",
    "default-for-az",
    "defaultForAz",
    "map-public-ip-on-launch",
    "assign-ipv6-address-on-creation",
    "ipv6-native",
    "enable-dns64",
    "ipv6-cidr-block-association.ipv6-cidr-block",
    "ipv6-cidr-block-association.association-id",
    "ipv6-cidr-block-association.state",
    "subnet-arn",
];

fn describe_subnets(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("SubnetId")?;
    let items = by_ids(
        &ids,
        |id| ops::subnet::get(w, ctx, id),
        || w.scoped::<Subnet>(&ctx.account, &ctx.region).collect(),
    )?;
    let field = |s: &&Subnet, name: &str| subnet_field(w, s, name);
    let items = query::apply(items, &r.p.filters()?, &field, SUBNET_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |s| s.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("subnetSet", page, |x, s| render_subnet(x, w, s));
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn modify_subnet_attribute(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    use ops::subnet::OutpostAttribute;
    let id = r.p.req("SubnetId")?;
    if let Some(on) = r.p.attr_bool("EnableDns64")? {
        ops::subnet::set_dns64(w, ctx, id, on)?;
        return r.ok();
    }
    let hostnames = ops::hostname::PrivateDnsChange {
        hostname_type: r.p.string("PrivateDnsHostnameTypeOnLaunch"),
        resource_name_a: r.p.attr_bool("EnableResourceNameDnsARecordOnLaunch")?,
        resource_name_aaaa: r.p.attr_bool("EnableResourceNameDnsAAAARecordOnLaunch")?,
    };
    if !hostnames.is_empty() {
        ops::hostname::modify_subnet(w, ctx, id, &hostnames)?;
        return r.ok();
    }
    let outpost = if r.p.has("CustomerOwnedIpv4Pool") {
        Some(OutpostAttribute::MapCustomerOwnedIp(true))
    } else if let Some(v) = r.p.attr_bool("MapCustomerOwnedIpOnLaunch")? {
        Some(OutpostAttribute::MapCustomerOwnedIp(v))
    } else if let Some(n) = r.p.int("EnableLniAtDeviceIndex")? {
        Some(OutpostAttribute::EnableLniAtDeviceIndex(n))
    } else {
        r.p.attr_bool("DisableLniAtDeviceIndex")?
            .map(OutpostAttribute::DisableLniAtDeviceIndex)
    };
    if let Some(a) = outpost {
        ops::subnet::modify_outpost_attribute(w, ctx, id, a)?;
        return r.ok();
    }
    ops::subnet::modify_attribute(
        w,
        ctx,
        r.p.req("SubnetId")?,
        r.p.attr_bool("MapPublicIpOnLaunch")?,
        r.p.attr_bool("AssignIpv6AddressOnCreation")?,
    )?;
    r.ok()
}

fn render_subnet_assoc(r: &Req<'_>, subnet_id: &str, a: &Ipv6Assoc) -> Result<String, Fault> {
    let mut x = r.xml();
    x.leaf("subnetId", subnet_id)
        .open("ipv6CidrBlockAssociation");
    render_v6_assoc(&mut x, a, false);
    x.close("ipv6CidrBlockAssociation");
    r.done(x)
}

fn associate_subnet_cidr(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let (id, a) =
        ops::subnet::associate_ipv6(w, ctx, r.p.req("SubnetId")?, r.p.req("Ipv6CidrBlock")?)?;
    render_subnet_assoc(r, &id, &a)
}

fn disassociate_subnet_cidr(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    r: &Req<'_>,
) -> Result<String, Fault> {
    let (id, a) = ops::subnet::disassociate_ipv6(w, ctx, r.p.req("AssociationId")?)?;
    render_subnet_assoc(r, &id, &a)
}

// ---- Internet gateways ---------------------------------------------------

fn render_igw(x: &mut Xml, g: &InternetGateway) {
    x.leaf("internetGatewayId", &g.meta.id)
        .leaf("ownerId", &g.meta.owner);
    x.set("attachmentSet", g.vpc_id.iter(), |x, v| {
        x.leaf("vpcId", v).leaf("state", "available");
    });
    x.tags(&g.meta.tags);
}

fn create_igw(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let g = ops::igw::create(w, ctx, r.p.tag_specs("internet-gateway")?)?;
    let mut x = r.xml();
    x.open("internetGateway");
    render_igw(&mut x, &g);
    x.close("internetGateway");
    r.done(x)
}

fn attach_igw(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::igw::attach(w, ctx, r.p.req("InternetGatewayId")?, r.p.req("VpcId")?)?;
    r.ok()
}

fn detach_igw(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::igw::detach(w, ctx, r.p.req("InternetGatewayId")?, r.p.req("VpcId")?)?;
    r.ok()
}

fn delete_igw(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::igw::delete(w, ctx, r.p.req("InternetGatewayId")?)?;
    r.ok()
}

fn igw_field(g: &&InternetGateway, name: &str) -> Option<Vec<String>> {
    match name {
        "internet-gateway-id" => Some(vec![g.meta.id.clone()]),
        "owner-id" => Some(vec![g.meta.owner.clone()]),
        "attachment.vpc-id" => Some(g.vpc_id.iter().cloned().collect()),
        "attachment.state" => Some(g.vpc_id.iter().map(|_| "available".to_string()).collect()),
        _ => tag_field(&g.meta.tags, name),
    }
}

fn describe_igws(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("InternetGatewayId")?;
    let items = by_ids(
        &ids,
        |id| ops::igw::get(w, ctx, id),
        || {
            w.scoped::<InternetGateway>(&ctx.account, &ctx.region)
                .collect()
        },
    )?;
    let items = query::apply(
        items,
        &r.p.filters()?,
        &igw_field,
        &[
            "internet-gateway-id",
            "owner-id",
            "attachment.vpc-id",
            "attachment.state",
        ],
    )?;
    let (page, next) = query::paginate(items, r.p, |g| g.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("internetGatewaySet", page, render_igw);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- Tags ----------------------------------------------------------------

fn create_tags(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let tags = parse_tags(r.p, "Tag")?;
    ops::tags::create_tags(w, ctx, &r.p.list("ResourceId")?, &tags)?;
    r.ok()
}

fn delete_tags(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    // Parsed strictly before anything changes: an empty list means "every
    // tag", so a list that cannot be read must never be taken for one.
    let del = parse_tag_keys(r.p, "Tag")?;
    ops::tags::delete_tags(w, ctx, &r.p.list("ResourceId")?, &del)?;
    r.ok()
}

fn describe_tags(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let rows = ops::tags::all_tags(w, ctx);
    let field = |t: &ops::tags::TagRow, name: &str| -> Option<Vec<String>> {
        match name {
            "key" => Some(vec![t.key.clone()]),
            "value" => Some(vec![t.value.clone()]),
            "resource-id" => Some(vec![t.resource_id.clone()]),
            "resource-type" => Some(vec![t.resource_type.to_string()]),
            n if n.starts_with("tag:") => (n[4..] == t.key)
                .then(|| vec![t.value.clone()])
                .or(Some(vec![])),
            _ => None,
        }
    };
    let rows = query::apply(
        rows,
        &r.p.filters()?,
        &field,
        &["key", "value", "resource-id", "resource-type"],
    )?;
    let (page, next) = query::paginate(
        rows,
        r.p,
        |t| format!("{}\u{1}{}", t.resource_id, t.key),
        5,
        1000,
    )?;
    let mut x = r.xml();
    x.set("tagSet", page, |x, t| {
        x.leaf("resourceId", &t.resource_id)
            .leaf("resourceType", t.resource_type)
            .leaf("key", &t.key)
            .leaf("value", &t.value);
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- Regions and zones ---------------------------------------------------

fn describe_regions(_w: &World, _ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let names = r.p.list("RegionName")?;
    let mut regions: Vec<_> = r.regions.list.iter().collect();
    for n in &names {
        if r.regions.get(n).is_none() {
            return Err(Fault::new(
                "InvalidParameterValue",
                format!("Invalid region: {n}"),
            ));
        }
    }
    if !names.is_empty() {
        regions.retain(|g| names.contains(&g.name));
    }
    let field = |g: &&vpc_model::region::Region, name: &str| -> Option<Vec<String>> {
        match name {
            "region-name" => Some(vec![g.name.clone()]),
            "endpoint" => Some(vec![g.endpoint()]),
            "opt-in-status" => Some(vec!["opt-in-not-required".into()]),
            _ => None,
        }
    };
    let regions = query::apply(
        regions,
        &r.p.filters()?,
        &field,
        &["region-name", "endpoint", "opt-in-status"],
    )?;
    let mut x = r.xml();
    x.set("regionInfo", regions, |x, g| {
        x.leaf("regionName", &g.name)
            .leaf("regionEndpoint", &g.endpoint())
            .leaf("optInStatus", "opt-in-not-required");
    });
    r.done(x)
}

fn describe_azs(_w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let names = r.p.list("ZoneName")?;
    let zone_ids = r.p.list("ZoneId")?;
    let mut zones: Vec<(String, String)> = ctx.zones.to_vec();
    for n in &names {
        if !zones.iter().any(|(z, _)| z == n) {
            return Err(Fault::invalid_param(format!(
                "The zone '{n}' does not exist."
            )));
        }
    }
    if !names.is_empty() || !zone_ids.is_empty() {
        zones.retain(|(z, id)| names.contains(z) || zone_ids.contains(id));
    }
    let region = ctx.region.clone();
    let field = move |z: &(String, String), name: &str| -> Option<Vec<String>> {
        match name {
            "zone-name" => Some(vec![z.0.clone()]),
            "zone-id" => Some(vec![z.1.clone()]),
            "region-name" => Some(vec![region.clone()]),
            "state" => Some(vec!["available".into()]),
            "zone-type" => Some(vec!["availability-zone".into()]),
            "opt-in-status" => Some(vec!["opt-in-not-required".into()]),
            "group-name" => Some(vec![region.clone()]),
            _ => None,
        }
    };
    let zones = query::apply(
        zones,
        &r.p.filters()?,
        &field,
        &[
            "zone-name",
            "zone-id",
            "region-name",
            "state",
            "zone-type",
            "opt-in-status",
            "group-name",
        ],
    )?;
    let mut x = r.xml();
    x.set("availabilityZoneInfo", zones, |x, (name, id)| {
        x.leaf("zoneName", &name)
            .leaf("zoneState", "available")
            .leaf("regionName", &ctx.region)
            .leaf("zoneId", &id)
            .leaf("zoneType", "availability-zone")
            .leaf("optInStatus", "opt-in-not-required")
            .leaf("groupName", &ctx.region)
            .leaf("networkBorderGroup", &ctx.region)
            .empty("messageSet");
    });
    r.done(x)
}

fn describe_account_attributes(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let key = format!("{}:{}", ctx.account, ctx.region);
    let default_vpc = w
        .get::<vpc_model::RegionInit>(&key)
        .and_then(|i| i.default_vpc.clone())
        .unwrap_or_else(|| "none".into());
    let attrs: Vec<(&str, String)> = vec![
        ("supported-platforms", "VPC".into()),
        ("default-vpc", default_vpc),
        ("max-instances", "20".into()),
        (
            "vpc-max-security-groups-per-interface",
            ctx.limits.security_groups_per_eni.to_string(),
        ),
        ("max-elastic-ips", "5".into()),
        ("vpc-max-elastic-ips", "5".into()),
    ];
    let wanted = r.p.list("AttributeName")?;
    let mut x = r.xml();
    x.set(
        "accountAttributeSet",
        attrs
            .iter()
            .filter(|(n, _)| wanted.is_empty() || wanted.iter().any(|w| w == n)),
        |x, (n, v)| {
            x.leaf("attributeName", n)
                .set("attributeValueSet", [v], |x, v| {
                    x.leaf("attributeValue", v);
                });
        },
    );
    r.done(x)
}
