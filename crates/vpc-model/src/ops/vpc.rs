//! VPCs: create, delete, CIDR associations, attributes.

use super::{check_limit, defaults, peering, VPC};
use crate::cidr;
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[derive(Debug, Clone, Default)]
pub struct CreateVpc {
    pub cidr_block: Option<String>,
    pub amazon_ipv6: bool,
    pub tenancy: Option<String>,
    pub tags: Tags,
}

fn check_vpc_cidr(s: &str) -> Result<Ipv4Net> {
    let net = cidr::parse_v4(s).ok_or_else(|| {
        Fault::invalid_param(format!(
            "Value ({s}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if !(16..=28).contains(&net.prefix_len()) {
        return Err(Fault::new(
            "InvalidVpc.Range",
            format!("The CIDR '{s}' is invalid."),
        ));
    }
    Ok(net)
}

/// A fresh Amazon-provided /56 that no VPC uses yet.
fn amazon_v6(w: &World, ctx: &mut Ctx<'_>) -> Ipv6Net {
    loop {
        let hex = ctx.ids.hex17();
        let a = u16::from_str_radix(&hex[0..4], 16).unwrap_or(0);
        let b = u16::from_str_radix(&hex[4..6], 16).unwrap_or(0) << 8;
        let addr = std::net::Ipv6Addr::new(0x2600, 0x1f18, a, b, 0, 0, 0, 0);
        let net = Ipv6Net::new(addr, 56).expect("valid").trunc();
        let used = w
            .iter::<Vpc>()
            .any(|v| v.ipv6.iter().any(|x| cidr::overlaps_v6(&x.cidr, &net)));
        if !used {
            return net;
        }
    }
}

pub fn create_vpc(w: &mut World, ctx: &mut Ctx<'_>, req: CreateVpc) -> Result<Vpc> {
    let cidr_s = req
        .cidr_block
        .as_deref()
        .ok_or_else(|| Fault::missing("CidrBlock"))?;
    let net = check_vpc_cidr(cidr_s)?;
    let tenancy = req.tenancy.unwrap_or_else(|| "default".into());
    if !matches!(tenancy.as_str(), "default" | "dedicated") {
        return Err(Fault::invalid_param(format!(
            "Value ({tenancy}) for parameter instanceTenancy is invalid."
        )));
    }
    super::tags::validate(&req.tags, ctx.limits.tags_per_resource)?;
    let count = w.vpcs.count_in(&ctx.account, &ctx.region);
    check_limit(
        count,
        ctx.limits.vpcs_per_region,
        "VpcLimitExceeded",
        "VPCs",
    )?;
    let v6 = req.amazon_ipv6.then(|| amazon_v6(w, ctx));
    Ok(defaults::new_vpc(
        w, ctx, net, v6, false, &tenancy, req.tags,
    ))
}

pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w Vpc> {
    w.owned::<Vpc>(id, &ctx.account, &ctx.region, VPC.nf(id)?)
}

pub fn delete_vpc(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let vpc = get(w, ctx, id)?.clone();
    let dep = || {
        Fault::dependency(format!(
            "The vpc '{id}' has dependencies and cannot be deleted."
        ))
    };
    if w.iter::<Subnet>().any(|s| s.vpc_id == id) {
        return Err(dep());
    }
    // Interfaces live in subnets, so this only guards against stray records.
    if w.iter::<NetworkInterface>().any(|e| e.vpc_id == id) {
        return Err(dep());
    }
    if w.iter::<InternetGateway>()
        .any(|g| g.vpc_id.as_deref() == Some(id))
    {
        return Err(dep());
    }
    if w.iter::<RouteTable>()
        .any(|r| r.vpc_id == id && r.meta.id != vpc.main_route_table)
    {
        return Err(dep());
    }
    if w.iter::<SecurityGroup>()
        .any(|g| g.vpc_id == id && g.meta.id != vpc.default_sg)
    {
        return Err(dep());
    }
    if w.iter::<NetworkAcl>()
        .any(|a| a.vpc_id == id && a.meta.id != vpc.default_acl)
    {
        return Err(dep());
    }
    if w.iter::<VpcEndpoint>().any(|e| e.vpc_id == id)
        || w.iter::<EgressOnlyInternetGateway>()
            .any(|g| g.vpc_id == id)
    {
        return Err(dep());
    }
    peering::on_vpc_delete(w, ctx, id)?;
    w.remove::<RouteTable>(&vpc.main_route_table);
    w.remove::<NetworkAcl>(&vpc.default_acl);
    w.remove::<SecurityGroup>(&vpc.default_sg);
    w.remove::<Vpc>(id);
    if vpc.is_default {
        let key = format!("{}:{}", ctx.account, ctx.region);
        w.update::<RegionInit>(&key, |r| r.default_vpc = None);
    }
    Ok(())
}

/// What AssociateVpcCidrBlock returns.
#[derive(Debug, Clone)]
pub enum NewBlock {
    V4(CidrAssoc),
    V6(Ipv6Assoc),
}

/// The RFC 1918 range (or "public") a block falls in, for AWS's mixing restrictions.
fn range_class(n: &Ipv4Net) -> u8 {
    let in_ = |s: &str| cidr::contains_v4(&s.parse::<Ipv4Net>().expect("literal"), n);
    if in_("10.0.0.0/8") {
        1
    } else if in_("172.16.0.0/12") {
        2
    } else if in_("192.168.0.0/16") {
        3
    } else if in_("100.64.0.0/10") {
        4
    } else {
        0
    }
}

pub fn associate_cidr(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    vpc_id: &str,
    cidr_block: Option<&str>,
    amazon_ipv6: bool,
) -> Result<NewBlock> {
    let vpc = get(w, ctx, vpc_id)?.clone();
    match (cidr_block, amazon_ipv6) {
        (Some(_), true) => Err(Fault::new(
            "InvalidParameterCombination",
            "The parameters CidrBlock and AmazonProvidedIpv6CidrBlock cannot be used together.",
        )),
        (None, false) => Err(Fault::missing("CidrBlock")),
        (Some(s), false) => {
            let net = check_vpc_cidr(s)?;
            if vpc.v4_blocks().count() >= ctx.limits.ipv4_cidrs_per_vpc {
                return Err(Fault::new(
                    "CidrLimitExceeded",
                    format!(
                        "This network '{vpc_id}' has met its maximum number of allowed CIDRs: {}",
                        ctx.limits.ipv4_cidrs_per_vpc
                    ),
                ));
            }
            if let Some(c) = vpc.v4_blocks().find(|c| cidr::overlaps_v4(c, &net)) {
                return Err(Fault::new(
                    "InvalidVpc.Range",
                    format!(
                        "The CIDR '{net}' conflicts with another CIDR block '{c}' of this VPC."
                    ),
                ));
            }
            let primary = range_class(&vpc.primary_cidr());
            let new = range_class(&net);
            if primary != 0 && new != 0 && new != 4 && primary != new {
                return Err(Fault::new(
                    "InvalidVpc.Range",
                    format!("The CIDR '{net}' is restricted. Use a CIDR from the same private address range as the current VPC CIDR, or use a publicly-routable CIDR."),
                ));
            }
            peering::on_cidr_add(w, ctx, &vpc, IpNet::V4(net))?;
            let a = CidrAssoc {
                assoc_id: ctx.new_id("vpc-cidr-assoc"),
                cidr: net,
                state: "associated".into(),
            };
            let out = a.clone();
            w.update::<Vpc>(vpc_id, |v| v.cidrs.push(a));
            add_local_routes(w, &vpc, IpNet::V4(net));
            peering::refresh_cidrs(w, vpc_id);
            Ok(NewBlock::V4(out))
        }
        (None, true) => {
            if vpc.v6_blocks().count() >= ctx.limits.ipv6_cidrs_per_vpc {
                return Err(Fault::new(
                    "CidrLimitExceeded",
                    format!(
                        "This network '{vpc_id}' has met its maximum number of allowed CIDRs: {}",
                        ctx.limits.ipv6_cidrs_per_vpc
                    ),
                ));
            }
            let net = amazon_v6(w, ctx);
            peering::on_cidr_add(w, ctx, &vpc, IpNet::V6(net))?;
            let a = Ipv6Assoc {
                assoc_id: ctx.new_id("vpc-cidr-assoc"),
                cidr: net,
                state: "associated".into(),
                pool: "Amazon".into(),
                border_group: ctx.region.clone(),
            };
            let out = a.clone();
            w.update::<Vpc>(vpc_id, |v| v.ipv6.push(a));
            add_local_routes(w, &vpc, IpNet::V6(net));
            let acls: Vec<String> = w
                .iter::<NetworkAcl>()
                .filter(|a| a.vpc_id == vpc_id)
                .map(|a| a.meta.id.clone())
                .collect();
            for a in acls {
                w.update::<NetworkAcl>(&a, defaults::add_v6_entries);
            }
            let eg = defaults::egress_all(ctx, defaults::all_v6());
            w.update::<SecurityGroup>(&vpc.default_sg, |g| {
                if !g
                    .egress
                    .iter()
                    .any(|r| matches!(r.peer, SgPeer::Cidr6(_)) && r.protocol == "-1")
                {
                    g.egress.push(eg)
                }
            });
            peering::refresh_cidrs(w, vpc_id);
            Ok(NewBlock::V6(out))
        }
    }
}

fn add_local_routes(w: &mut World, vpc: &Vpc, net: IpNet) {
    let ids: Vec<String> = w
        .iter::<RouteTable>()
        .filter(|r| r.vpc_id == vpc.meta.id)
        .map(|r| r.meta.id.clone())
        .collect();
    for id in ids {
        w.update::<RouteTable>(&id, |rt| {
            rt.routes.push(Route {
                dest: net,
                target: RouteTarget::Local,
                origin: "CreateRouteTable".into(),
                prefix_list: None,
            })
        });
    }
}

/// Removes a secondary block. Returns the VPC and the block as it was, now `disassociating`.
pub fn disassociate_cidr(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    assoc_id: &str,
) -> Result<(String, NewBlock)> {
    let not_found = || {
        Fault::new(
            "InvalidVpcCidrBlockAssociationID.NotFound",
            format!("The vpc CIDR block association ID '{assoc_id}' does not exist"),
        )
    };
    let vpc = w
        .scoped::<Vpc>(&ctx.account, &ctx.region)
        .find(|v| {
            v.cidrs.iter().any(|c| c.assoc_id == assoc_id)
                || v.ipv6.iter().any(|c| c.assoc_id == assoc_id)
        })
        .cloned()
        .ok_or_else(not_found)?;
    let block: IpNet;
    let out;
    if let Some(pos) = vpc.cidrs.iter().position(|c| c.assoc_id == assoc_id) {
        if pos == 0 {
            return Err(Fault::new(
                "OperationNotPermitted",
                format!("The vpc CIDR block with association ID {assoc_id} may not be disassociated. It is the primary IPv4 CIDR block of the VPC"),
            ));
        }
        let c = &vpc.cidrs[pos];
        block = IpNet::V4(c.cidr);
        let mut c2 = c.clone();
        c2.state = "disassociating".into();
        out = NewBlock::V4(c2);
    } else {
        let c = vpc
            .ipv6
            .iter()
            .find(|c| c.assoc_id == assoc_id)
            .ok_or_else(not_found)?;
        block = IpNet::V6(c.cidr);
        let mut c2 = c.clone();
        c2.state = "disassociating".into();
        out = NewBlock::V6(c2);
    }
    let in_use = match block {
        IpNet::V4(b) => w
            .iter::<Subnet>()
            .any(|s| s.vpc_id == vpc.meta.id && s.v4_overlaps(&b)),
        IpNet::V6(b) => w.iter::<Subnet>().any(|s| {
            s.vpc_id == vpc.meta.id && s.ipv6.iter().any(|x| cidr::overlaps_v6(&x.cidr, &b))
        }),
    };
    if in_use {
        return Err(Fault::new(
            "InvalidCidrBlock.InUse",
            format!(
                "The vpc {} currently has a subnet within CIDR block {block}",
                vpc.meta.id
            ),
        ));
    }
    w.update::<Vpc>(&vpc.meta.id, |v| {
        v.cidrs.retain(|c| c.assoc_id != assoc_id);
        v.ipv6.retain(|c| c.assoc_id != assoc_id);
    });
    let rts: Vec<String> = w
        .iter::<RouteTable>()
        .filter(|r| r.vpc_id == vpc.meta.id)
        .map(|r| r.meta.id.clone())
        .collect();
    for id in rts {
        w.update::<RouteTable>(&id, |rt| {
            rt.routes
                .retain(|r| !(r.target == RouteTarget::Local && r.dest == block))
        });
    }
    peering::refresh_cidrs(w, &vpc.meta.id);
    Ok((vpc.meta.id.clone(), out))
}

/// `enableDnsSupport` or `enableDnsHostnames`.
pub fn modify_attribute(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    vpc_id: &str,
    dns_support: Option<bool>,
    dns_hostnames: Option<bool>,
) -> Result<()> {
    let vpc = get(w, ctx, vpc_id)?.clone();
    match (dns_support, dns_hostnames) {
        (None, None) => return Err(Fault::missing("EnableDnsSupport or EnableDnsHostnames")),
        (Some(_), Some(_)) => return Err(Fault::new(
            "InvalidParameterCombination",
            "Fields for multiple attribute types specified: enableDnsHostnames, enableDnsSupport",
        )),
        _ => {}
    }
    let support = dns_support.unwrap_or(vpc.dns_support);
    let hostnames = dns_hostnames.unwrap_or(vpc.dns_hostnames);
    if hostnames && !support {
        return Err(Fault::new(
            "InvalidParameterValue",
            "Cannot enable DNS hostnames when DNS support is disabled.",
        ));
    }
    w.update::<Vpc>(vpc_id, |v| {
        v.dns_support = support;
        v.dns_hostnames = hostnames;
    });
    Ok(())
}

/// `enableNetworkAddressUsageMetrics`.
pub fn set_network_address_usage_metrics(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    vpc_id: &str,
    on: bool,
) -> Result<()> {
    get(w, ctx, vpc_id)?;
    w.update::<Vpc>(vpc_id, |v| v.network_address_usage_metrics = on);
    Ok(())
}

/// ModifyVpcTenancy: a VPC's tenancy may go to `default` only (AWS's rule);
/// instances already running keep theirs.
pub fn modify_tenancy(w: &mut World, ctx: &mut Ctx<'_>, vpc_id: &str, tenancy: &str) -> Result<()> {
    get(w, ctx, vpc_id)?;
    if tenancy != "default" {
        return Err(Fault::invalid_param(format!(
            "Value ({tenancy}) for parameter instanceTenancy is invalid. The instance tenancy of a VPC can only be changed to default."
        )));
    }
    w.update::<Vpc>(vpc_id, |v| v.tenancy = "default".into());
    Ok(())
}
