//! Subnets: create, delete, attributes, IPv6 blocks.

use super::{check_limit, new_meta, vpc, SUBNET};
use crate::cidr;
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::{Ipv4Net, Ipv6Net};

#[derive(Debug, Clone, Default)]
pub struct CreateSubnet {
    pub vpc_id: Option<String>,
    pub cidr_block: Option<String>,
    pub ipv6_cidr_block: Option<String>,
    /// `Ipv6Native`: an IPv6-only subnet.
    pub ipv6_native: bool,
    pub availability_zone: Option<String>,
    pub availability_zone_id: Option<String>,
    pub tags: Tags,
}

pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w Subnet> {
    w.owned::<Subnet>(id, &ctx.account, &ctx.region, SUBNET.nf(id)?)
}

/// Inserts a subnet and its implicit default-ACL association.
#[allow(clippy::too_many_arguments)]
pub fn insert_subnet(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    vpc: &Vpc,
    cidr: Option<Ipv4Net>,
    az: &str,
    az_id: &str,
    default_for_az: bool,
    tags: Tags,
) -> Subnet {
    let s = Subnet {
        meta: new_meta(ctx, "subnet", tags),
        vpc_id: vpc.meta.id.clone(),
        cidr,
        ipv6: Vec::new(),
        ipv6_native: false,
        az: az.to_string(),
        az_id: az_id.to_string(),
        default_for_az,
        map_public_ip: default_for_az,
        assign_ipv6: false,
        used_ips: 0,
        cidr_reservations: Vec::new(),
        enable_dns64: false,
        private_dns_on_launch: PrivateDnsNameOptions::default(),
    };
    let assoc = AclAssoc {
        id: ctx.new_id("aclassoc"),
        subnet_id: s.meta.id.clone(),
    };
    w.update::<NetworkAcl>(&vpc.default_acl, |a| a.assocs.push(assoc));
    w.put(s.clone());
    s
}

fn check_subnet_v6(vpc: &Vpc, w: &World, s: &str, own: Option<&str>) -> Result<Ipv6Net> {
    let net = cidr::parse_v6(s).ok_or_else(|| {
        Fault::invalid_param(format!(
            "Value ({s}) for parameter ipv6CidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if net.prefix_len() != 64 && !(44..=64).contains(&net.prefix_len()) {
        return Err(Fault::new(
            "InvalidSubnet.Range",
            format!("The CIDR '{s}' is invalid."),
        ));
    }
    if !vpc.v6_blocks().any(|b| cidr::contains_v6(&b, &net)) {
        return Err(Fault::new(
            "InvalidSubnet.Range",
            format!("The CIDR '{s}' is invalid."),
        ));
    }
    let clash = w.iter::<Subnet>().any(|x| {
        x.vpc_id == vpc.meta.id
            && Some(x.meta.id.as_str()) != own
            && x.ipv6.iter().any(|a| cidr::overlaps_v6(&a.cidr, &net))
    });
    if clash {
        return Err(Fault::new(
            "InvalidSubnet.Conflict",
            format!("The CIDR '{s}' conflicts with another subnet"),
        ));
    }
    Ok(net)
}

pub fn create_subnet(w: &mut World, ctx: &mut Ctx<'_>, req: CreateSubnet) -> Result<Subnet> {
    let vpc_id = req
        .vpc_id
        .as_deref()
        .ok_or_else(|| Fault::missing("VpcId"))?;
    let vpc = vpc::get(w, ctx, vpc_id)?.clone();
    let net = if req.ipv6_native {
        // AWS's wording (moto's AWS-verified tests).
        if req.ipv6_cidr_block.is_none() {
            return Err(Fault::new(
                "MissingParameter",
                "Either 'ipv6CidrBlock' or 'ipv6IpamPoolId' should be provided.",
            ));
        }
        if req.cidr_block.is_some() {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "When specifying ipv4 parameters, cidrBlock or ipv4IpamPoolId, you cannot set ipv6Native to true.",
            ));
        }
        None
    } else {
        Some(check_subnet_v4(w, &vpc, req.cidr_block.as_deref())?)
    };
    let v6 = match &req.ipv6_cidr_block {
        Some(s) => Some(check_subnet_v6(&vpc, w, s, None)?),
        None => None,
    };
    let (az, az_id) = match (&req.availability_zone, &req.availability_zone_id) {
        (Some(z), _) | (None, Some(z)) => ctx
            .zones
            .iter()
            .find(|(n, id)| n == z || id == z)
            .cloned()
            .ok_or_else(|| {
                Fault::invalid_param(format!(
                    "Value ({z}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                    ctx.zones.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?,
        (None, None) => {
            // AWS picks a zone; spread by count.
            let n = w.iter::<Subnet>().filter(|s| s.vpc_id == vpc_id).count();
            ctx.zones[n % ctx.zones.len()].clone()
        }
    };
    super::tags::validate(&req.tags, ctx.limits.tags_per_resource)?;
    let count = w.iter::<Subnet>().filter(|s| s.vpc_id == vpc_id).count();
    check_limit(
        count,
        ctx.limits.subnets_per_vpc,
        "SubnetLimitExceeded",
        "subnets",
    )?;
    let mut s = insert_subnet(w, ctx, &vpc, net, &az, &az_id, false, req.tags);
    if req.ipv6_native {
        make_ipv6_only(&mut s);
    }
    if let Some(v6) = v6 {
        let a = Ipv6Assoc {
            assoc_id: ctx.new_id("subnet-cidr-assoc"),
            cidr: v6,
            state: "associated".into(),
            pool: "Amazon".into(),
            border_group: ctx.region.clone(),
        };
        s.ipv6.push(a);
    }
    w.put(s.clone());
    Ok(s)
}

/// What makes a new subnet (without an IPv4 block) IPv6-only: every
/// interface gets an IPv6 address, none a public IPv4, and hostnames are
/// resource names (IP names need an IPv4 address).
pub fn make_ipv6_only(s: &mut Subnet) {
    s.ipv6_native = true;
    s.assign_ipv6 = true;
    s.map_public_ip = false;
    s.private_dns_on_launch.hostname_type = HostnameType::ResourceName;
}

/// Checks a new dual-stack or IPv4-only subnet's IPv4 block: given, valid,
/// /16 to /28 inside one of the VPC's blocks, overlapping no other subnet.
fn check_subnet_v4(w: &World, vpc: &Vpc, cidr_s: Option<&str>) -> Result<Ipv4Net> {
    let cidr_s = cidr_s.ok_or_else(|| Fault::missing("CidrBlock"))?;
    let net = cidr::parse_v4(cidr_s).ok_or_else(|| {
        Fault::invalid_param(format!(
            "Value ({cidr_s}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if !(16..=28).contains(&net.prefix_len())
        || !vpc.v4_blocks().any(|b| cidr::contains_v4(&b, &net))
    {
        return Err(Fault::new(
            "InvalidSubnet.Range",
            format!("The CIDR '{cidr_s}' is invalid."),
        ));
    }
    if w.iter::<Subnet>()
        .any(|s| s.vpc_id == vpc.meta.id && s.v4_overlaps(&net))
    {
        return Err(Fault::new(
            "InvalidSubnet.Conflict",
            format!("The CIDR '{cidr_s}' conflicts with another subnet"),
        ));
    }
    Ok(net)
}

pub fn delete_subnet(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    get(w, ctx, id)?;
    // Any interface (an instance's, a NAT gateway's or a detached one) blocks it.
    if w.iter::<NetworkInterface>().any(|e| e.subnet_id == id) {
        return Err(Fault::dependency(format!(
            "The subnet '{id}' has dependencies and cannot be deleted."
        )));
    }
    let rtbs: Vec<String> = w
        .iter::<RouteTable>()
        .filter(|r| r.assocs.iter().any(|a| a.subnet_id.as_deref() == Some(id)))
        .map(|r| r.meta.id.clone())
        .collect();
    for r in rtbs {
        w.update::<RouteTable>(&r, |rt| {
            rt.assocs.retain(|a| a.subnet_id.as_deref() != Some(id))
        });
    }
    let acls: Vec<String> = w
        .iter::<NetworkAcl>()
        .filter(|a| a.assocs.iter().any(|x| x.subnet_id == id))
        .map(|a| a.meta.id.clone())
        .collect();
    for a in acls {
        w.update::<NetworkAcl>(&a, |acl| acl.assocs.retain(|x| x.subnet_id != id));
    }
    w.remove::<Subnet>(id);
    Ok(())
}

pub fn modify_attribute(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    map_public_ip: Option<bool>,
    assign_ipv6: Option<bool>,
) -> Result<()> {
    let s = get(w, ctx, id)?.clone();
    if map_public_ip.is_none() && assign_ipv6.is_none() {
        return Err(Fault::missing(
            "MapPublicIpOnLaunch or AssignIpv6AddressOnCreation",
        ));
    }
    if s.ipv6_native && assign_ipv6 == Some(false) {
        return Err(Fault::invalid_param(format!(
            "Invalid value 'false' for assign-ipv6-address-on-creation. The subnet ({id}) is IPv6-only: every interface in it gets an IPv6 address."
        )));
    }
    if s.ipv6_native && map_public_ip == Some(true) {
        return Err(Fault::invalid_param(format!(
            "Invalid value 'true' for map-public-ip-on-launch. The subnet ({id}) is IPv6-only and has no IPv4 addresses."
        )));
    }
    if assign_ipv6 == Some(true) && s.ipv6.is_empty() {
        return Err(Fault::invalid_param(format!(
            "Invalid value 'true' for assign-ipv6-address-on-creation. Cannot set assign-ipv6-address-on-creation to true unless the subnet ({id}) has an IPv6 CIDR block associated with it."
        )));
    }
    w.update::<Subnet>(id, |s| {
        if let Some(v) = map_public_ip {
            s.map_public_ip = v;
        }
        if let Some(v) = assign_ipv6 {
            s.assign_ipv6 = v;
        }
    });
    Ok(())
}

pub fn associate_ipv6(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    block: &str,
) -> Result<(String, Ipv6Assoc)> {
    let s = get(w, ctx, id)?.clone();
    let vpc = vpc::get(w, ctx, &s.vpc_id)?.clone();
    if !s.ipv6.is_empty() {
        return Err(Fault::new(
            "InvalidSubnet.Conflict",
            format!("The subnet '{id}' already has an IPv6 CIDR block associated"),
        ));
    }
    let net = check_subnet_v6(&vpc, w, block, Some(id))?;
    let a = Ipv6Assoc {
        assoc_id: ctx.new_id("subnet-cidr-assoc"),
        cidr: net,
        state: "associated".into(),
        pool: "Amazon".into(),
        border_group: ctx.region.clone(),
    };
    let out = a.clone();
    w.update::<Subnet>(id, |s| s.ipv6.push(a));
    Ok((id.to_string(), out))
}

pub fn disassociate_ipv6(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    assoc_id: &str,
) -> Result<(String, Ipv6Assoc)> {
    let s = w
        .scoped::<Subnet>(&ctx.account, &ctx.region)
        .find(|s| s.ipv6.iter().any(|a| a.assoc_id == assoc_id))
        .cloned()
        .ok_or_else(|| {
            Fault::new(
                "InvalidSubnetCidrBlockAssociationID.NotFound",
                format!("The subnet CIDR block with association ID '{assoc_id}' does not exist"),
            )
        })?;
    let mut a = s
        .ipv6
        .iter()
        .find(|a| a.assoc_id == assoc_id)
        .cloned()
        .expect("found above");
    if s.ipv6_native {
        return Err(Fault::new(
            "OperationNotPermitted",
            format!(
                "The IPv6 CIDR block of the IPv6-only subnet '{}' cannot be disassociated.",
                s.meta.id
            ),
        ));
    }
    if s.assign_ipv6 {
        w.update::<Subnet>(&s.meta.id, |s| s.assign_ipv6 = false);
    }
    // Reservations inside the block go with it.
    let block = ipnet::IpNet::V6(a.cidr);
    w.update::<Subnet>(&s.meta.id, |s| {
        s.ipv6.retain(|x| x.assoc_id != assoc_id);
        s.cidr_reservations
            .retain(|r| !cidr::overlaps(&r.cidr, &block));
    });
    a.state = "disassociating".into();
    Ok((s.meta.id, a))
}

/// The ModifySubnetAttribute attributes of subnets on AWS Outposts, which
/// vpcd does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutpostAttribute {
    /// `MapCustomerOwnedIpOnLaunch` (with or without `CustomerOwnedIpv4Pool`).
    MapCustomerOwnedIp(bool),
    /// `EnableLniAtDeviceIndex`.
    EnableLniAtDeviceIndex(i64),
    /// `DisableLniAtDeviceIndex`.
    DisableLniAtDeviceIndex(bool),
}

/// Customer-owned addresses and local network interfaces exist only on
/// Outposts subnets: turning either on is refused, turning it off (what the
/// subnet already is) is accepted and changes nothing.
pub fn modify_outpost_attribute(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    attr: OutpostAttribute,
) -> Result<()> {
    get(w, ctx, id)?;
    match attr {
        OutpostAttribute::MapCustomerOwnedIp(false)
        | OutpostAttribute::DisableLniAtDeviceIndex(_) => Ok(()),
        OutpostAttribute::MapCustomerOwnedIp(true) => Err(Fault::invalid_param(format!(
            "Invalid value 'true' for map-customer-owned-ip-on-launch. The subnet ({id}) is not in an Outpost; customer-owned IP addresses are available on Outposts subnets only."
        ))),
        OutpostAttribute::EnableLniAtDeviceIndex(n) => Err(Fault::invalid_param(format!(
            "Invalid value '{n}' for enable-lni-at-device-index. The subnet ({id}) is not in an Outpost; local network interfaces are available on Outposts subnets only."
        ))),
    }
}

/// `enableDns64`.
pub fn set_dns64(w: &mut World, ctx: &mut Ctx<'_>, id: &str, on: bool) -> Result<()> {
    get(w, ctx, id)?;
    w.update::<Subnet>(id, |s| s.enable_dns64 = on);
    Ok(())
}

/// AvailableIpAddressCount: usable addresses less the private IPv4
/// addresses interfaces in the subnet hold.
pub fn available_ips(w: &World, s: &Subnet) -> u64 {
    let used = w
        .iter::<NetworkInterface>()
        .filter(|e| e.subnet_id == s.meta.id)
        .map(|e| e.private_ips.len() as u64)
        .sum::<u64>();
    s.cidr
        .map_or(0, |c| cidr::usable_v4(&c).saturating_sub(used))
}

#[cfg(test)]
mod ipv6_only_tests;
