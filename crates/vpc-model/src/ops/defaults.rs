//! What AWS creates on your behalf: a new VPC's main route table, default
//! network ACL and default security group, and the default VPC of every
//! account in every region on first use.

use super::new_meta;
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Rule numbers of the fixed `*` deny entries.
pub const STAR_V4: u32 = 32767;
pub const STAR_V6: u32 = 32768;

pub fn all_v4() -> IpNet {
    IpNet::V4(Ipv4Net::default())
}

pub fn all_v6() -> IpNet {
    IpNet::V6(Ipv6Net::default())
}

/// The entries of a new ACL: allow-all 100 (and 101 for IPv6) when `default`, then the `*` denies.
pub fn acl_entries(default: bool, ipv6: bool) -> Vec<AclEntry> {
    let mut v = Vec::new();
    for egress in [false, true] {
        let mut add = |n: u32, action: AclAction, cidr: IpNet| {
            v.push(AclEntry {
                rule_number: n,
                egress,
                protocol: "-1".into(),
                action,
                cidr,
                icmp: None,
                ports: None,
            })
        };
        if default {
            add(100, AclAction::Allow, all_v4());
            if ipv6 {
                add(101, AclAction::Allow, all_v6());
            }
        }
        add(STAR_V4, AclAction::Deny, all_v4());
        if ipv6 {
            add(STAR_V6, AclAction::Deny, all_v6());
        }
    }
    v
}

/// Adds the IPv6 entries a default ACL gets once its VPC has IPv6.
pub fn add_v6_entries(acl: &mut NetworkAcl) {
    for egress in [false, true] {
        let has = |acl: &NetworkAcl, n: u32| {
            acl.entries
                .iter()
                .any(|e| e.egress == egress && e.rule_number == n)
        };
        if acl.is_default && !has(acl, 101) {
            acl.entries.push(AclEntry {
                rule_number: 101,
                egress,
                protocol: "-1".into(),
                action: AclAction::Allow,
                cidr: all_v6(),
                icmp: None,
                ports: None,
            });
        }
        if !has(acl, STAR_V6) {
            acl.entries.push(AclEntry {
                rule_number: STAR_V6,
                egress,
                protocol: "-1".into(),
                action: AclAction::Deny,
                cidr: all_v6(),
                icmp: None,
                ports: None,
            });
        }
    }
}

/// A security group's "allow all outbound" rule.
pub fn egress_all(ctx: &mut Ctx<'_>, cidr: IpNet) -> SgRule {
    SgRule {
        id: ctx.new_id("sgr"),
        protocol: "-1".into(),
        from_port: None,
        to_port: None,
        peer: match cidr {
            IpNet::V4(n) => SgPeer::Cidr4(n),
            IpNet::V6(n) => SgPeer::Cidr6(n),
        },
        description: None,
        tags: Vec::new(),
    }
}

/// Creates a VPC with its main route table, default ACL and default security group.
pub fn new_vpc(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    cidr: Ipv4Net,
    ipv6: Option<Ipv6Net>,
    is_default: bool,
    tenancy: &str,
    tags: Tags,
) -> Vpc {
    let meta = new_meta(ctx, "vpc", tags);
    let vpc_id = meta.id.clone();
    let rtb = RouteTable {
        meta: new_meta(ctx, "rtb", Vec::new()),
        vpc_id: vpc_id.clone(),
        routes: std::iter::once(IpNet::V4(cidr))
            .chain(ipv6.map(IpNet::V6))
            .map(|dest| Route {
                dest,
                target: RouteTarget::Local,
                origin: "CreateRouteTable".into(),
                prefix_list: None,
            })
            .collect(),
        assocs: vec![RtAssoc {
            id: ctx.new_id("rtbassoc"),
            main: true,
            subnet_id: None,
            gateway_id: None,
        }],
    };
    let acl = NetworkAcl {
        meta: new_meta(ctx, "acl", Vec::new()),
        vpc_id: vpc_id.clone(),
        is_default: true,
        entries: acl_entries(true, ipv6.is_some()),
        assocs: Vec::new(),
    };
    let sg_meta = new_meta(ctx, "sg", Vec::new());
    let self_ref = SgRule {
        id: ctx.new_id("sgr"),
        protocol: "-1".into(),
        from_port: None,
        to_port: None,
        peer: SgPeer::Group {
            group_id: sg_meta.id.clone(),
            user_id: ctx.account.clone(),
            vpc_id: None,
            peering_id: None,
        },
        description: None,
        tags: Vec::new(),
    };
    let mut egress = vec![egress_all(ctx, all_v4())];
    if ipv6.is_some() {
        egress.push(egress_all(ctx, all_v6()));
    }
    let sg = SecurityGroup {
        meta: sg_meta,
        vpc_id: vpc_id.clone(),
        name: "default".into(),
        description: "default VPC security group".into(),
        ingress: vec![self_ref],
        egress,
    };
    let vpc = Vpc {
        meta,
        cidrs: vec![CidrAssoc {
            assoc_id: ctx.new_id("vpc-cidr-assoc"),
            cidr,
            state: "associated".into(),
        }],
        ipv6: ipv6
            .map(|c| Ipv6Assoc {
                assoc_id: ctx.new_id("vpc-cidr-assoc"),
                cidr: c,
                state: "associated".into(),
                pool: "Amazon".into(),
                border_group: ctx.region.clone(),
            })
            .into_iter()
            .collect(),
        is_default,
        dns_support: true,
        dns_hostnames: is_default,
        tenancy: tenancy.to_string(),
        network_address_usage_metrics: false,
        dhcp_options_id: super::dhcp::for_new_vpc(w, ctx),
        main_route_table: rtb.meta.id.clone(),
        default_acl: acl.meta.id.clone(),
        default_sg: sg.meta.id.clone(),
    };
    w.put(rtb);
    w.put(acl);
    w.put(sg);
    w.put(vpc.clone());
    vpc
}

/// Makes the caller's default VPC in this region the first time the pair is seen.
///
/// Returns true when it changed the world.
pub fn ensure_region(w: &mut World, ctx: &mut Ctx<'_>) -> Result<bool> {
    let key = format!("{}:{}", ctx.account, ctx.region);
    if w.get::<RegionInit>(&key).is_some() {
        return Ok(false);
    }
    let dhcp = super::dhcp::create_default_set(w, ctx);
    w.put(RegionInit {
        id: key.clone(),
        default_vpc: None,
        default_dhcp_options: Some(dhcp),
    });
    let vpc = make_default_vpc(w, ctx);
    w.update::<RegionInit>(&key, |i| i.default_vpc = Some(vpc.meta.id.clone()));
    Ok(true)
}

/// The default VPC's block.
const DEFAULT_VPC_CIDR: &str = "172.31.0.0/16";

/// A default VPC: 172.31.0.0/16 with an attached internet gateway, `0.0.0.0/0`
/// to it in the main table, and a default /20 subnet in each zone.
fn make_default_vpc(w: &mut World, ctx: &mut Ctx<'_>) -> Vpc {
    let cidr: Ipv4Net = DEFAULT_VPC_CIDR.parse().expect("literal");
    let vpc = new_vpc(w, ctx, cidr, None, true, "default", Vec::new());
    let igw = InternetGateway {
        meta: new_meta(ctx, "igw", Vec::new()),
        vpc_id: Some(vpc.meta.id.clone()),
    };
    let igw_id = igw.meta.id.clone();
    w.put(igw);
    w.update::<RouteTable>(&vpc.main_route_table, |rt| {
        rt.routes.push(Route {
            dest: all_v4(),
            target: RouteTarget::Gateway(igw_id.clone()),
            origin: "CreateRouteTable".into(),
            prefix_list: None,
        })
    });
    let zones = ctx.zones.to_vec();
    for (i, (az, az_id)) in zones.iter().enumerate() {
        let third = u8::try_from(i * 16).unwrap_or(0);
        let cidr = Ipv4Net::new(std::net::Ipv4Addr::new(172, 31, third, 0), 20).expect("valid");
        super::subnet::insert_subnet(w, ctx, &vpc, Some(cidr), az, az_id, true, Vec::new());
    }
    vpc
}

/// The caller's default VPC in this region, if it has one.
pub fn default_vpc_of<'w>(w: &'w World, ctx: &Ctx<'_>) -> Option<&'w Vpc> {
    w.iter::<Vpc>()
        .find(|v| v.is_default && v.meta.owner == ctx.account && v.meta.region == ctx.region)
}

/// CreateDefaultVpc: a new default VPC when the caller has none in this region.
pub fn create_default_vpc(w: &mut World, ctx: &mut Ctx<'_>) -> Result<Vpc> {
    ensure_region(w, ctx)?;
    if default_vpc_of(w, ctx).is_some() {
        return Err(Fault::new(
            "DefaultVpcAlreadyExists",
            "A Default VPC already exists for this account in this region.",
        ));
    }
    super::check_limit(
        w.vpcs.count_in(&ctx.account, &ctx.region),
        ctx.limits.vpcs_per_region,
        "VpcLimitExceeded",
        "VPCs",
    )?;
    let key = format!("{}:{}", ctx.account, ctx.region);
    let vpc = make_default_vpc(w, ctx);
    let id = vpc.meta.id.clone();
    w.update::<RegionInit>(&key, |r| r.default_vpc = Some(id));
    Ok(vpc)
}

/// CreateDefaultSubnet: a default /20 of the default VPC in `zone`, when the
/// zone has none.
///
/// With `ipv6_native` the subnet is IPv6-only: the lowest free /64 of the
/// default VPC's IPv6 block (which the caller must have associated first).
pub fn create_default_subnet(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    zone: &str,
    ipv6_native: bool,
) -> Result<Subnet> {
    let (az, az_id) = ctx
        .zones
        .iter()
        .find(|(n, id)| n == zone || id == zone)
        .cloned()
        .ok_or_else(|| {
            Fault::invalid_param(format!(
                "Value ({zone}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                ctx.zones.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
    let vpc = default_vpc_of(w, ctx).cloned().ok_or_else(|| {
        Fault::new(
            "DefaultVpcDoesNotExist",
            "No default VPC exists for this account in this region.",
        )
    })?;
    let subnets: Vec<&Subnet> = w
        .iter::<Subnet>()
        .filter(|s| s.vpc_id == vpc.meta.id)
        .collect();
    if subnets.iter().any(|s| s.default_for_az && s.az == az) {
        return Err(Fault::new(
            "DefaultSubnetAlreadyExistsInAvailabilityZone",
            format!("A default subnet already exists in availability zone {az}."),
        ));
    }
    if ipv6_native {
        let taken: Vec<Ipv6Net> = subnets
            .iter()
            .flat_map(|s| s.ipv6.iter().map(|a| a.cidr))
            .collect();
        return default_ipv6_only_subnet(w, ctx, &vpc, &taken, &az);
    }
    let free = (0u8..16)
        .map(|i| Ipv4Net::new(std::net::Ipv4Addr::new(172, 31, i * 16, 0), 20).expect("valid"))
        .find(|c| {
            vpc.v4_blocks().any(|b| crate::cidr::contains_v4(&b, c))
                && !subnets.iter().any(|s| s.v4_overlaps(c))
        })
        .ok_or_else(|| {
            Fault::new(
                "InsufficientFreeAddressesInSubnet",
                "The default VPC has no free /20 block for a default subnet.",
            )
        })?;
    super::check_limit(
        subnets.len(),
        ctx.limits.subnets_per_vpc,
        "SubnetLimitExceeded",
        "subnets",
    )?;
    Ok(super::subnet::insert_subnet(
        w,
        ctx,
        &vpc,
        Some(free),
        &az,
        &az_id,
        true,
        Vec::new(),
    ))
}

/// CreateDefaultSubnet with `Ipv6Native`: an IPv6-only default subnet in
/// the lowest /64 of the default VPC's IPv6 block no subnet holds.
fn default_ipv6_only_subnet(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    vpc: &Vpc,
    taken: &[Ipv6Net],
    az: &str,
) -> Result<Subnet> {
    let block = vpc.v6_blocks().next().ok_or_else(|| {
        Fault::new(
            "InvalidParameterCombination",
            "An IPv6-only default subnet needs an IPv6 CIDR block on the default VPC: associate one with AssociateVpcCidrBlock first.",
        )
    })?;
    let free = block
        .subnets(64)
        .map_err(|_| Fault::invalid_param("The default VPC's IPv6 block is smaller than a /64."))?
        .find(|c| !taken.iter().any(|t| crate::cidr::overlaps_v6(t, c)))
        .ok_or_else(|| {
            Fault::new(
                "InsufficientFreeAddressesInSubnet",
                "The default VPC has no free /64 block for a default subnet.",
            )
        })?;
    let s = super::subnet::create_subnet(
        w,
        ctx,
        super::subnet::CreateSubnet {
            vpc_id: Some(vpc.meta.id.clone()),
            ipv6_cidr_block: Some(free.to_string()),
            ipv6_native: true,
            availability_zone: Some(az.to_string()),
            ..Default::default()
        },
    )?;
    w.update::<Subnet>(&s.meta.id, |x| x.default_for_az = true);
    Ok(w.get::<Subnet>(&s.meta.id).cloned().unwrap_or(s))
}
