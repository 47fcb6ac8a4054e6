//! The Amazon-provided DNS server's rules: where it listens, whom it
//! answers, which names exist and what they resolve to from a given VPC.
//!
//! The DNS server (`vpc-dns`), the data plane (which puts the resolver's
//! addresses in the router namespace and writes the instances'
//! `resolv.conf`) and the API (`privateDnsName`/`dnsName`) all take these
//! decisions from here, so they agree.
//!
//! * The resolver listens at the VPC's primary CIDR base + 2, at
//!   169.254.169.253 and at fd00:ec2::253, while `enableDnsSupport` is on,
//!   and answers only queries from addresses inside its own VPC
//!   ([`admits_query`]).
//! * Names: `ip-10-0-1-10.ec2.internal` / `ip-….<region>.compute.internal`
//!   for every private IPv4 of an instance's interfaces;
//!   `ec2-198-18-0-5.compute-1.amazonaws.com` /
//!   `ec2-….<region>.compute.amazonaws.com` for its public IPv4s
//!   (`eni::private_dns_name`, `eni::public_dns_name`).
//! * A VPC's instance names resolve only while the VPC has both
//!   `enableDnsSupport` and `enableDnsHostnames` ([`names_resolve`]); a
//!   resolver resolves Amazon private names only when its own VPC has both.
//! * Across an active peering ([`private_name_visible`],
//!   [`public_name_answer`]): a peer's private names resolve in the same
//!   region for RFC 1918 addresses, and otherwise only when the peer's side
//!   allows DNS resolution from the remote VPC; a peer's public names
//!   resolve to private IPs only with that option, else to public IPs.

use crate::types::{PcxState, Peering, Vpc};
use crate::world::World;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The resolver's link-local address, the same in every VPC.
pub const LINK_LOCAL_RESOLVER: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 253);

/// The resolver's IPv6 address (a unique local address), the same in every
/// VPC; instances with an IPv6 address reach it.
pub const IPV6_RESOLVER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x253);

/// How long answers may be cached, in seconds (Route 53 Resolver uses 60
/// for EC2 names).
pub const TTL: u32 = 60;

/// The VPC's resolver address: its primary IPv4 CIDR's base plus two.
pub fn resolver_ip(vpc: &Vpc) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(vpc.primary_cidr().network()).wrapping_add(2))
}

/// Whether the VPC's resolver answers at all (`enableDnsSupport`).
pub fn resolver_serves(vpc: &Vpc) -> bool {
    vpc.dns_support
}

/// The addresses the VPC's resolver listens on: base + 2,
/// 169.254.169.253 and fd00:ec2::253, or none while `enableDnsSupport` is
/// off. (AWS offers the IPv6 one to Nitro instances; in vpcd every instance
/// with an IPv6 address reaches it.)
pub fn resolver_addresses(vpc: &Vpc) -> Vec<IpAddr> {
    if resolver_serves(vpc) {
        vec![
            IpAddr::V4(resolver_ip(vpc)),
            IpAddr::V4(LINK_LOCAL_RESOLVER),
            IpAddr::V6(IPV6_RESOLVER),
        ]
    } else {
        Vec::new()
    }
}

/// Whether the VPC's resolver answers a query from `src`: only from an
/// address inside one of the VPC's own blocks (a peer VPC's instance gets
/// no answer), and only while DNS support is on.
pub fn admits_query(vpc: &Vpc, src: IpAddr) -> bool {
    if !resolver_serves(vpc) {
        return false;
    }
    match src {
        IpAddr::V4(ip) => vpc.v4_blocks().any(|b| b.contains(&ip)),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => vpc.v4_blocks().any(|b| b.contains(&v4)),
            None => vpc.v6_blocks().any(|b| b.contains(&ip)),
        },
    }
}

/// The region's private domain: `ec2.internal` in us-east-1,
/// `<region>.compute.internal` elsewhere. It is the `search` domain of the
/// instances' resolver configuration.
pub fn private_domain(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".to_string()
    } else {
        format!("{region}.compute.internal")
    }
}

/// The region's public domain: `compute-1.amazonaws.com` in us-east-1,
/// `<region>.compute.amazonaws.com` elsewhere.
pub fn public_domain(region: &str) -> String {
    if region == "us-east-1" {
        "compute-1.amazonaws.com".to_string()
    } else {
        format!("{region}.compute.amazonaws.com")
    }
}

/// Parses `ip-A-B-C-D.<private domain>` into (region, address). Case-insensitive;
/// a trailing dot is allowed. `regions` are the region names to recognise.
pub fn parse_private_dns_name<'r>(
    name: &str,
    regions: impl IntoIterator<Item = &'r str>,
) -> Option<(&'r str, Ipv4Addr)> {
    parse_ip_name(name, "ip-", regions, private_domain)
}

/// Parses `ec2-A-B-C-D.<public domain>` into (region, address).
pub fn parse_public_dns_name<'r>(
    name: &str,
    regions: impl IntoIterator<Item = &'r str>,
) -> Option<(&'r str, Ipv4Addr)> {
    parse_ip_name(name, "ec2-", regions, public_domain)
}

fn parse_ip_name<'r>(
    name: &str,
    prefix: &str,
    regions: impl IntoIterator<Item = &'r str>,
    domain: fn(&str) -> String,
) -> Option<(&'r str, Ipv4Addr)> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let (host, rest) = name.split_once('.')?;
    let dotted = host.strip_prefix(prefix)?;
    let octets: Vec<&str> = dotted.split('-').collect();
    if octets.len() != 4
        || octets
            .iter()
            .any(|o| o.is_empty() || o.len() > 3 || (o.len() > 1 && o.starts_with('0')))
    {
        return None;
    }
    let ip: Ipv4Addr = octets.join(".").parse().ok()?;
    let region = regions.into_iter().find(|r| domain(r) == rest)?;
    Some((region, ip))
}

/// Whether the VPC's instance names exist in DNS: both `enableDnsSupport`
/// and `enableDnsHostnames` are on (AWS: with either off, Amazon private
/// names do not resolve and no public names are assigned).
pub fn names_resolve(vpc: &Vpc) -> bool {
    vpc.dns_support && vpc.dns_hostnames
}

/// The active peering connection between two VPCs, if any.
pub fn active_peering<'w>(w: &'w World, a: &str, b: &str) -> Option<&'w Peering> {
    w.iter::<Peering>()
        .find(|p| p.state == PcxState::Active && p.joins(a, b))
}

/// Whether `allow_dns_resolution_from_remote_vpc` is on for the side of `p`
/// whose VPC is `vpc_id`.
fn side_allows_dns(p: &Peering, vpc_id: &str) -> bool {
    let side = if p.requester.vpc_id == vpc_id {
        &p.requester
    } else {
        &p.accepter
    };
    side.options.allow_dns_resolution_from_remote_vpc
}

/// RFC 1918 private space.
pub fn is_rfc1918(ip: Ipv4Addr) -> bool {
    ip.is_private()
}

/// Whether the private name of `ip`, an address of an instance in
/// `target`, resolves for a query that reached `querier`'s resolver.
///
/// Both VPCs need DNS support and hostnames. In its own VPC, always. Across
/// an active peering: in the same region for an RFC 1918 address; otherwise
/// (inter-region, or a non-RFC 1918 block) only when `target`'s side of the
/// peering allows DNS resolution from the remote VPC. Nowhere else.
pub fn private_name_visible(w: &World, querier: &Vpc, target: &Vpc, ip: Ipv4Addr) -> bool {
    if !names_resolve(querier) || !names_resolve(target) {
        return false;
    }
    if querier.meta.id == target.meta.id {
        return true;
    }
    let Some(p) = active_peering(w, &querier.meta.id, &target.meta.id) else {
        return false;
    };
    (!p.inter_region() && is_rfc1918(ip)) || side_allows_dns(p, &target.meta.id)
}

/// Whether an instance's resource name is visible to a query that reached
/// `querier`'s resolver: as its IP name would be (`primary_v4`, its primary
/// private IPv4); an instance with no IPv4 (IPv6-only subnet) like a name
/// of a non-RFC 1918 address: in its own VPC, and across an active peering
/// only when `target`'s side allows DNS resolution from the remote VPC.
pub fn resource_name_visible(
    w: &World,
    querier: &Vpc,
    target: &Vpc,
    primary_v4: Option<Ipv4Addr>,
) -> bool {
    if let Some(ip) = primary_v4 {
        return private_name_visible(w, querier, target, ip);
    }
    if !names_resolve(querier) || !names_resolve(target) {
        return false;
    }
    querier.meta.id == target.meta.id
        || active_peering(w, &querier.meta.id, &target.meta.id)
            .is_some_and(|p| side_allows_dns(p, &target.meta.id))
}

/// What the public name of an instance in `target` (public IPv4 `public`,
/// primary private IPv4 `private`) resolves to for a query that reached
/// `querier`'s resolver, or None when the name does not exist (`target`
/// lacks DNS support or hostnames).
///
/// Split horizon: the private IP inside `target` itself, and in a VPC
/// peered with it (active) when `target`'s side allows DNS resolution from
/// the remote VPC; the public IP everywhere else.
pub fn public_name_answer(
    w: &World,
    querier: &Vpc,
    target: &Vpc,
    private: Ipv4Addr,
    public: Ipv4Addr,
) -> Option<Ipv4Addr> {
    if !names_resolve(target) {
        return None;
    }
    if querier.meta.id == target.meta.id {
        return Some(private);
    }
    let to_private = names_resolve(querier)
        && active_peering(w, &querier.meta.id, &target.meta.id)
            .is_some_and(|p| side_allows_dns(p, &target.meta.id));
    Some(if to_private { private } else { public })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Timestamp;
    use crate::ops::eni;
    use crate::types::{CidrAssoc, Meta, PeerSide, PeeringOptions};

    fn vpc(id: &str, region: &str, cidr: &str, support: bool, hostnames: bool) -> Vpc {
        Vpc {
            meta: Meta {
                id: id.into(),
                owner: "111111111111".into(),
                region: region.into(),
                tags: Vec::new(),
                created: Timestamp::default(),
            },
            cidrs: vec![CidrAssoc {
                assoc_id: format!("{id}-cidr"),
                cidr: cidr.parse().unwrap(),
                state: "associated".into(),
            }],
            ipv6: Vec::new(),
            is_default: false,
            dns_support: support,
            dns_hostnames: hostnames,
            tenancy: "default".into(),
            network_address_usage_metrics: false,
            dhcp_options_id: "default".into(),
            main_route_table: String::new(),
            default_acl: String::new(),
            default_sg: String::new(),
        }
    }

    fn side(v: &Vpc, allow: bool) -> PeerSide {
        PeerSide {
            owner: v.meta.owner.clone(),
            vpc_id: v.meta.id.clone(),
            region: v.meta.region.clone(),
            options: PeeringOptions {
                allow_dns_resolution_from_remote_vpc: allow,
            },
            cidrs: v.v4_blocks().collect(),
            ipv6_cidrs: Vec::new(),
            tags: Vec::new(),
        }
    }

    fn peering(req: &Vpc, acc: &Vpc, state: PcxState, req_allow: bool, acc_allow: bool) -> Peering {
        Peering {
            id: "pcx-0123456789abcdef0".into(),
            requester: side(req, req_allow),
            accepter: side(acc, acc_allow),
            state,
            message: String::new(),
            created: Timestamp::default(),
            state_since: Timestamp::default(),
            expiration: None,
            transition_due: None,
            fails_on_init: false,
            ended_by: None,
            was_active: state == PcxState::Active,
        }
    }

    fn world(vpcs: &[&Vpc], peerings: &[Peering]) -> World {
        let mut w = World::default();
        for v in vpcs {
            w.put((*v).clone());
        }
        for p in peerings {
            w.put(p.clone());
        }
        w
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "us-west-2"];

    #[test]
    fn resolver_is_base_plus_two_and_link_local_only_with_dns_support() {
        let v = vpc("vpc-a", "us-east-1", "10.0.0.0/16", true, false);
        assert_eq!(resolver_ip(&v), ip("10.0.0.2"));
        assert_eq!(
            resolver_addresses(&v),
            vec![
                IpAddr::V4(ip("10.0.0.2")),
                IpAddr::V4(ip("169.254.169.253")),
                "fd00:ec2::253".parse::<IpAddr>().unwrap()
            ]
        );
        let off = vpc("vpc-a", "us-east-1", "10.0.0.0/16", false, false);
        assert!(resolver_addresses(&off).is_empty());
        assert_eq!(
            resolver_ip(&vpc("vpc-b", "us-east-1", "172.31.16.0/20", true, true)),
            ip("172.31.16.2")
        );
    }

    #[test]
    fn only_queries_from_inside_the_vpc_are_admitted() {
        let v = vpc("vpc-a", "us-east-1", "10.0.0.0/16", true, true);
        assert!(admits_query(&v, "10.0.1.10".parse().unwrap()));
        assert!(!admits_query(&v, "10.1.0.10".parse().unwrap()), "a peer");
        assert!(!admits_query(&v, "127.0.0.1".parse().unwrap()));
        assert!(admits_query(&v, "::ffff:10.0.3.4".parse().unwrap()));
        let off = vpc("vpc-a", "us-east-1", "10.0.0.0/16", false, false);
        assert!(!admits_query(&off, "10.0.1.10".parse().unwrap()));
    }

    #[test]
    fn domains_follow_the_region() {
        assert_eq!(private_domain("us-east-1"), "ec2.internal");
        assert_eq!(private_domain("eu-west-1"), "eu-west-1.compute.internal");
        assert_eq!(public_domain("us-east-1"), "compute-1.amazonaws.com");
        assert_eq!(
            public_domain("eu-west-1"),
            "eu-west-1.compute.amazonaws.com"
        );
    }

    #[test]
    fn names_parse_back_to_region_and_address() {
        for r in REGIONS {
            let a = ip("10.0.1.10");
            let name = eni::private_dns_name(r, a);
            assert_eq!(parse_private_dns_name(&name, REGIONS), Some((r, a)));
            assert_eq!(
                parse_private_dns_name(&format!("{}.", name.to_uppercase()), REGIONS),
                Some((r, a))
            );
            let p = ip("198.18.0.5");
            let name = eni::public_dns_name(r, p);
            assert_eq!(parse_public_dns_name(&name, REGIONS), Some((r, p)));
            assert_eq!(parse_private_dns_name(&name, REGIONS), None);
        }
        for bad in [
            "ip-10-0-1.ec2.internal",
            "ip-10-0-1-10-1.ec2.internal",
            "ip-10-0-1-256.ec2.internal",
            "ip-10-0-01-10.ec2.internal",
            "ip-10-0--10.ec2.internal",
            "ip-10-0-1-10.ap-east-9.compute.internal",
            "ip-10-0-1-10.compute.internal",
            "host-10-0-1-10.ec2.internal",
            "ip-10-0-1-10",
            "ec2.internal",
        ] {
            assert_eq!(parse_private_dns_name(bad, REGIONS), None, "{bad}");
        }
        assert_eq!(
            parse_public_dns_name("ec2-198-18-0-5.us-east-1.compute.amazonaws.com", REGIONS),
            None,
            "us-east-1 public names are under compute-1.amazonaws.com"
        );
    }

    #[test]
    fn own_names_resolve_only_with_support_and_hostnames() {
        let a = vpc("vpc-a", "us-east-1", "10.0.0.0/16", true, true);
        let w = world(&[&a], &[]);
        assert!(private_name_visible(&w, &a, &a, ip("10.0.1.10")));
        let no_hostnames = vpc("vpc-a", "us-east-1", "10.0.0.0/16", true, false);
        let w = world(&[&no_hostnames], &[]);
        assert!(!private_name_visible(
            &w,
            &no_hostnames,
            &no_hostnames,
            ip("10.0.1.10")
        ));
        assert_eq!(
            public_name_answer(
                &w,
                &no_hostnames,
                &no_hostnames,
                ip("10.0.1.10"),
                ip("198.18.0.5")
            ),
            None
        );
        let w = world(&[&a], &[]);
        assert_eq!(
            public_name_answer(&w, &a, &a, ip("10.0.1.10"), ip("198.18.0.5")),
            Some(ip("10.0.1.10")),
            "split horizon: private inside the VPC"
        );
    }

    #[test]
    fn peer_private_names_same_region_rfc1918_without_the_option() {
        let a = vpc("vpc-a", "us-east-1", "10.0.0.0/16", true, true);
        let b = vpc("vpc-b", "us-east-1", "10.1.0.0/16", true, true);
        let c = vpc("vpc-c", "us-east-1", "10.2.0.0/16", true, true);
        let active = peering(&a, &b, PcxState::Active, false, false);
        let w = world(&[&a, &b, &c], std::slice::from_ref(&active));
        assert!(private_name_visible(&w, &a, &b, ip("10.1.0.10")));
        assert!(private_name_visible(&w, &b, &a, ip("10.0.0.10")));
        assert!(
            !private_name_visible(&w, &a, &c, ip("10.2.0.10")),
            "not peered"
        );
        let pending = peering(&a, &b, PcxState::PendingAcceptance, true, true);
        let w = world(&[&a, &b], &[pending]);
        assert!(
            !private_name_visible(&w, &a, &b, ip("10.1.0.10")),
            "not active"
        );
        let b_off = vpc("vpc-b", "us-east-1", "10.1.0.0/16", true, false);
        let w = world(&[&a, &b_off], &[active]);
        assert!(!private_name_visible(&w, &a, &b_off, ip("10.1.0.10")));
    }

    #[test]
    fn peer_private_names_need_the_option_inter_region_and_outside_rfc1918() {
        let a = vpc("vpc-a", "us-east-1", "10.0.0.0/16", true, true);
        let b = vpc("vpc-b", "us-west-2", "10.1.0.0/16", true, true);
        let w = world(
            &[&a, &b],
            &[peering(&a, &b, PcxState::Active, false, false)],
        );
        assert!(!private_name_visible(&w, &a, &b, ip("10.1.0.10")));
        // The accepter (b) allows resolution of its names from a.
        let w = world(&[&a, &b], &[peering(&a, &b, PcxState::Active, false, true)]);
        assert!(private_name_visible(&w, &a, &b, ip("10.1.0.10")));
        assert!(
            !private_name_visible(&w, &b, &a, ip("10.0.0.10")),
            "the option is per side"
        );
        let c = vpc("vpc-c", "us-east-1", "100.64.0.0/16", true, true);
        let w = world(
            &[&a, &c],
            &[peering(&a, &c, PcxState::Active, false, false)],
        );
        assert!(!private_name_visible(&w, &a, &c, ip("100.64.0.10")));
        let w = world(&[&a, &c], &[peering(&a, &c, PcxState::Active, false, true)]);
        assert!(private_name_visible(&w, &a, &c, ip("100.64.0.10")));
    }

    #[test]
    fn a_resource_name_without_ipv4_crosses_a_peering_only_with_the_option() {
        let a = vpc("vpc-a", "us-east-1", "10.0.0.0/16", true, true);
        let b = vpc("vpc-b", "us-east-1", "10.1.0.0/16", true, true);
        // In its own VPC, always (with DNS support and hostnames).
        let w = world(&[&a], &[]);
        assert!(resource_name_visible(&w, &a, &a, None));
        // Same region, no option: an IPv4 holder's name crosses (RFC 1918),
        // an IPv6-only instance's does not; the target's option lets it.
        let w = world(
            &[&a, &b],
            &[peering(&a, &b, PcxState::Active, false, false)],
        );
        assert!(resource_name_visible(&w, &a, &b, Some(ip("10.1.0.10"))));
        assert!(!resource_name_visible(&w, &a, &b, None));
        let w = world(&[&a, &b], &[peering(&a, &b, PcxState::Active, false, true)]);
        assert!(resource_name_visible(&w, &a, &b, None));
        assert!(
            !resource_name_visible(&w, &b, &a, None),
            "the option is per side"
        );
        let w = world(
            &[&a, &b],
            &[peering(&a, &b, PcxState::PendingAcceptance, true, true)],
        );
        assert!(!resource_name_visible(&w, &a, &b, None), "not active");
    }

    #[test]
    fn peer_public_names_resolve_private_only_with_the_targets_option() {
        let a = vpc("vpc-a", "us-east-1", "10.0.0.0/16", true, true);
        let b = vpc("vpc-b", "us-east-1", "10.1.0.0/16", true, true);
        let (private, public) = (ip("10.1.0.10"), ip("198.18.0.9"));
        let w = world(
            &[&a, &b],
            &[peering(&a, &b, PcxState::Active, false, false)],
        );
        assert_eq!(
            public_name_answer(&w, &a, &b, private, public),
            Some(public)
        );
        // The requester (a) allowing it changes how a's names resolve from b, not b's from a.
        let w = world(&[&a, &b], &[peering(&a, &b, PcxState::Active, true, false)]);
        assert_eq!(
            public_name_answer(&w, &a, &b, private, public),
            Some(public)
        );
        assert_eq!(
            public_name_answer(&w, &b, &a, ip("10.0.0.10"), ip("198.18.0.3")),
            Some(ip("10.0.0.10"))
        );
        let w = world(&[&a, &b], &[peering(&a, &b, PcxState::Active, false, true)]);
        assert_eq!(
            public_name_answer(&w, &a, &b, private, public),
            Some(private)
        );
        let w = world(
            &[&a, &b],
            &[peering(&a, &b, PcxState::Deleted, false, true)],
        );
        assert_eq!(
            public_name_answer(&w, &a, &b, private, public),
            Some(public),
            "a deleted peering"
        );
        let unpeered = vpc("vpc-c", "eu-west-1", "10.9.0.0/16", true, false);
        let w = world(&[&a, &b, &unpeered], &[]);
        assert_eq!(
            public_name_answer(&w, &unpeered, &b, private, public),
            Some(public),
            "anyone may resolve a public name to its public IP"
        );
    }
}
