//! What AWS creates on your behalf: a new VPC's main route table, default
//! network ACL and default security group, and the default VPC of every
//! account in every region on first use.

use super::new_meta;
use crate::fault::Result;
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
        dhcp_options_id: format!("dopt-{}", &vpc_id[4..]),
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
    let cidr: Ipv4Net = "172.31.0.0/16".parse().expect("literal");
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
        super::subnet::insert_subnet(w, ctx, &vpc, cidr, az, az_id, true, Vec::new());
    }
    w.put(RegionInit {
        id: key,
        default_vpc: Some(vpc.meta.id.clone()),
    });
    Ok(true)
}
