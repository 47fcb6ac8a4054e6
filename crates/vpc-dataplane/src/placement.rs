//! Placement: which host realizes what, when several hosts share one World
//! (`vpcd agent`, `docs/cluster.md`).
//!
//! The rule, decided here and nowhere else:
//!
//! * an **instance** lives on the host RunInstances placed it on
//!   (`vpc_model::placement::place`: the first live host, by name, serving
//!   its zone), recorded in the instance, whatever becomes of that host's
//!   liveness later; one recorded without a host (launched before any host
//!   registered) lives on the first registered host, by name, serving its
//!   zone; an instance whose host is not registered is realized nowhere.
//!   While a zone's first host is live, every instance of a subnet is on
//!   it, and traffic inside the subnet never crosses the underlay; new
//!   instances placed on another host while it was not live reach the
//!   others over the VXLAN link like any remote instance;
//! * **routers, NAT gateways and the simulated internet** are on every host.
//!   Each host's copy of a VPC's router reaches the VPC's instances on other
//!   hosts over the VPC's VXLAN link `x-<vpc>` (one VNI per VPC, see
//!   [`vni`]), and each copy enforces its own side: the sender's router its
//!   egress rules (source/destination check, the subnet's outbound ACL, the
//!   security groups' egress), the receiver's router its ingress rules. A NAT
//!   gateway and an internet gateway act on every host for the instances
//!   there (each host's simulated internet is its own).
//!
//! [`Placement::localize`] turns the one-host plan (what `plan::plan` makes
//! from the World) into this host's: instance namespaces of other hosts go,
//! with their veths in the routers; every route that led to such an
//! interface leads to the interface's host over `x-<vpc>` instead (the
//! router's tables, including the peering table 250 that keeps peering
//! non-transitive); packets from `x-` are looked up in table 250 too, so a
//! packet another host's router sent here can reach only this VPC's own
//! interfaces.
//!
//! A route whose target is an interface (a **middlebox**: an instance with
//! the source/destination check off, forwarding) hands the packet to that
//! interface whatever its destination, so it cannot arrive on `x-` (table
//! 250 would deliver it to its destination and skip the middlebox). Each
//! router holding a local interface that some route of the VPC targets has
//! a link of its own for it on the VXLAN segment, [`middlebox_link`]
//! `m-<eni>` (a macvlan on `x-`, made by `underlay`), with the address
//! [`middlebox_address`]; another host's route through that interface leads
//! to this address over `x-`, and what arrives on `m-<eni>` is looked up in
//! a table of its own holding one default route: to the interface, as the
//! one-host route does. It is pure.

use crate::names::{self, TABLE_MIDDLEBOX_BASE, TABLE_PEERING};
use crate::plan::{LinkCreate, NsPlan, NsRole, RouteKind, RulePlan};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vpc_model::{Instance, World};

/// The UDP port of the VXLAN underlay (IANA's).
pub const VXLAN_PORT: u16 = 4789;

pub use vpc_model::placement::{
    alive_key, host_key, HostRecord, Liveness, ALIVE_KEY_PREFIX, HOST_KEY_PREFIX,
};

/// A VPC router's VXLAN link to the VPC's routers on other hosts.
pub fn vxlan_link(vpc_id: &str) -> String {
    format!("x-{}", names::short(vpc_id))
}

/// A VPC's VXLAN network identifier: 24 bits from its ID (1..=0xFFFFFF).
/// Two VPCs with the same VNI cannot both get a link on one host (the
/// kernel refuses the second device), so a collision fails loudly and
/// never joins two VPCs.
pub fn vni(vpc_id: &str) -> u32 {
    names::fnv1a32(vpc_id) % 0x00ff_ffff + 1
}

/// A host's link-local address on every VXLAN segment (from its underlay
/// address, so it is unique on the segment and needs no allocation).
pub fn host_link_local(underlay: Ipv4Addr) -> Ipv6Addr {
    let o = underlay.octets();
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        0,
        0x7663,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    )
}

/// The link on which a router receives, from other hosts, what their routes
/// send through its interface `eni_link` (`e-<eni>` → `m-<eni>`); None for
/// a link that is not an interface's.
pub fn middlebox_link(eni_link: &str) -> Option<String> {
    eni_link.strip_prefix("e-").map(|s| format!("m-{s}"))
}

/// The interface link a middlebox link leads to (`m-<eni>` → `e-<eni>`).
pub fn middlebox_target(link: &str) -> Option<String> {
    link.strip_prefix("m-").map(|s| format!("e-{s}"))
}

/// A middlebox link's address on the VXLAN segment: `fe80::6d62:` and the
/// 48 bits of the interface's short ID (its link name's hex), so it is as
/// unique in the VPC as the link names are, distinct from every host's
/// [`host_link_local`] and needs no allocation.
pub fn middlebox_address(link: &str) -> Ipv6Addr {
    let short = link.get(2..).unwrap_or(link);
    let bits = u64::from_str_radix(short, 16)
        .ok()
        .filter(|_| short.len() == 12)
        .unwrap_or_else(|| u64::from(names::fnv1a32(short)));
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        0x6d62,
        (bits >> 32) as u16,
        (bits >> 16) as u16,
        bits as u16,
    )
}

/// The middlebox links a localized router plan receives on (those of its
/// rules' `m-` links), for `underlay` to make.
pub fn middlebox_links(ns: &NsPlan) -> BTreeSet<String> {
    ns.rules
        .iter()
        .filter(|r| r.iif.starts_with("m-"))
        .map(|r| r.iif.clone())
        .collect()
}

/// The hosts of a cluster, seen from one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// This host's name.
    pub local: String,
    /// Every registered host, by name (this one included).
    pub hosts: BTreeMap<String, HostRecord>,
    /// Whether this host runs the backbone across hosts
    /// (`backbone::cluster`): then inter-region peering links stay as
    /// planned; without it their routes end here as blackholes rather than
    /// leave the region in clear.
    pub backbone: bool,
}

/// The preferred kernel table of a middlebox link (before collision probing):
/// clear of the route tables' range.
fn middlebox_table(link: &str) -> u32 {
    TABLE_MIDDLEBOX_BASE + (names::fnv1a32(link) & 0x3fff_ffff)
}

impl Placement {
    /// The host serving a zone for instances recorded without a host: the
    /// first by name that lists it.
    pub fn host_of_zone(&self, zone: &str) -> Option<&HostRecord> {
        vpc_model::placement::host_of_zone(&self.hosts, zone)
    }

    /// The host an instance lives on (`vpc_model::placement::host_of_instance`).
    pub fn host_of_instance(&self, inst: &Instance) -> Option<&HostRecord> {
        vpc_model::placement::host_of_instance(&self.hosts, inst)
    }

    /// The host of the instance an interface is attached to (None for an
    /// unattached interface or a NAT gateway's).
    pub fn host_of_interface(
        &self,
        world: &World,
        eni: &vpc_model::NetworkInterface,
    ) -> Option<&HostRecord> {
        let a = eni.attachment.as_ref()?;
        world
            .get::<Instance>(&a.instance_id)
            .and_then(|i| self.host_of_instance(i))
    }

    /// Whether the instance (by ID) is realized on this host.
    pub fn is_local(&self, world: &World, instance_id: &str) -> bool {
        world
            .get::<Instance>(instance_id)
            .and_then(|i| self.host_of_instance(i))
            .is_some_and(|h| h.name == self.local)
    }

    /// The other hosts' underlay addresses (the VXLAN links' remote ends).
    pub fn remote_endpoints(&self) -> BTreeSet<Ipv4Addr> {
        self.hosts
            .values()
            .filter(|h| h.name != self.local)
            .map(|h| h.underlay)
            .collect()
    }

    /// Whether routers need VXLAN links at all (more than one host).
    pub fn spans_hosts(&self) -> bool {
        self.hosts.len() > 1
    }

    /// Turns the one-host plan into this host's (see the module's doc).
    /// Returns warnings for the log.
    pub fn localize(
        &self,
        world: &World,
        namespaces: &mut BTreeMap<String, NsPlan>,
    ) -> Vec<String> {
        let mut warnings = Vec::new();
        // Where an instance went: None for this host; Some(None) when no
        // host serves its zone. Decided from the World, not from the
        // namespaces at hand (an incremental plan holds only some).
        let placed = |id: &str| -> Option<Option<Ipv4Addr>> {
            let host = world
                .get::<Instance>(id)
                .and_then(|i| self.host_of_instance(i));
            match host {
                Some(h) if h.name == self.local => None,
                other => Some(other.map(|h| h.underlay)),
            }
        };
        namespaces.retain(|_, ns| match &ns.role {
            NsRole::Instance { instance_id } => placed(instance_id).is_none(),
            _ => true,
        });
        for ns in namespaces.values_mut() {
            let NsRole::Router { vpc_id } = &ns.role else {
                continue;
            };
            let x = vxlan_link(vpc_id);
            // Links into remote instances, and inter-region peering links
            // when this host runs no backbone: those routes end here rather
            // than leaving the region in clear.
            let mut gone: BTreeMap<String, Option<Ipv4Addr>> = BTreeMap::new();
            for l in ns.links.values() {
                match &l.create {
                    Some(LinkCreate::Veth { peer_ns, .. }) if names::is_instance_ns(peer_ns) => {
                        if let Some(host) = placed(peer_ns) {
                            gone.insert(l.name.clone(), host);
                        }
                    }
                    Some(LinkCreate::Peering(spec)) if spec.inter_region && !self.backbone => {
                        warnings.push(format!(
                            "peering {}: inter-region peerings are not realized by agents",
                            spec.pcx_id
                        ));
                        gone.insert(l.name.clone(), None);
                    }
                    _ => {}
                }
            }
            // The accepter's end of an inter-region peering has no `create`.
            let accepter_ends: Vec<String> = world
                .iter::<vpc_model::Peering>()
                .filter(|p| !self.backbone && p.inter_region() && &p.accepter.vpc_id == vpc_id)
                .map(|p| names::peering_link(&p.id))
                .filter(|n| ns.links.get(n).is_some_and(|l| l.create.is_none()))
                .collect();
            for n in accepter_ends {
                gone.insert(n, None);
            }
            // This router's interfaces that a route of the VPC targets (a
            // route through an interface is the only `Via` on an `e-`
            // link), with the next hop per family: other hosts may route
            // through them.
            let mut middleboxes: BTreeMap<String, [Option<IpAddr>; 2]> = BTreeMap::new();
            for kind in ns.routes.values() {
                if let RouteKind::Via { gw, dev, .. } = kind {
                    if dev.starts_with("e-")
                        && !gone.contains_key(dev)
                        && ns.links.contains_key(dev)
                    {
                        middleboxes.entry(dev.clone()).or_default()[usize::from(gw.is_ipv6())] =
                            Some(*gw);
                    }
                }
            }
            for name in gone.keys() {
                ns.links.remove(name);
            }
            ns.addrs.retain(|a| !gone.contains_key(&a.dev));
            ns.rules.retain(|r| !gone.contains_key(&r.iif));
            for kind in ns.routes.values_mut() {
                let (dev, through) = match kind {
                    RouteKind::Dev(d) => (d.clone(), false),
                    RouteKind::Via { dev: d, .. } => (d.clone(), true),
                    RouteKind::Blackhole => continue,
                };
                if let Some(host) = gone.get(&dev) {
                    // Through another host's interface (a middlebox): to
                    // its own link there; to its address: to that host's router.
                    let gw = match (host, through) {
                        (Some(_), true) => middlebox_link(&dev).map(|m| middlebox_address(&m)),
                        (Some(addr), false) => Some(host_link_local(*addr)),
                        (None, _) => None,
                    };
                    *kind = match gw {
                        Some(gw) if self.spans_hosts() => RouteKind::Via {
                            gw: IpAddr::V6(gw),
                            dev: x.clone(),
                            onlink: false,
                        },
                        _ => RouteKind::Blackhole,
                    };
                }
            }
            if self.spans_hosts() {
                for v6 in [false, true] {
                    ns.rules.insert(RulePlan {
                        v6,
                        iif: x.clone(),
                        table: TABLE_PEERING,
                    });
                }
                let mut used = BTreeSet::new();
                for (eni_link, hops) in &middleboxes {
                    let Some(m) = middlebox_link(eni_link) else {
                        continue;
                    };
                    let mut table = middlebox_table(&m);
                    while !used.insert(table) {
                        table = TABLE_MIDDLEBOX_BASE
                            + ((table - TABLE_MIDDLEBOX_BASE + 1) & 0x3fff_ffff);
                    }
                    for (v6, hop) in hops.iter().enumerate() {
                        let dst = if v6 == 1 {
                            "::/0".parse().expect("valid")
                        } else {
                            "0.0.0.0/0".parse().expect("valid")
                        };
                        let kind = match hop {
                            Some(gw) => RouteKind::Via {
                                gw: *gw,
                                dev: eni_link.clone(),
                                onlink: true,
                            },
                            None => RouteKind::Blackhole,
                        };
                        ns.routes.insert((table, dst), kind);
                        ns.rules.insert(RulePlan {
                            v6: v6 == 1,
                            iif: m.clone(),
                            table,
                        });
                    }
                }
            }
        }
        warnings.sort();
        warnings.dedup();
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{eni_link, router_ns};
    use crate::plan::{plan, plan_scope};
    use crate::testkit::{Env, Inst, B};
    use ipnet::IpNet;

    fn host(name: &str, zones: &[&str], last: u8) -> HostRecord {
        HostRecord {
            name: name.into(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            underlay: Ipv4Addr::new(100, 72, 0, last),
            tag: format!("{last:04x}"),
            pid: 1,
        }
    }

    fn placement(local: &str) -> Placement {
        Placement {
            local: local.into(),
            hosts: [
                host("h1", &["us-east-1a"], 1),
                host("h2", &["us-east-1b", "us-east-1a"], 2),
            ]
            .into_iter()
            .map(|h| (h.name.clone(), h))
            .collect(),
            backbone: false,
        }
    }

    #[test]
    fn a_zone_is_served_by_the_first_host_listing_it() {
        let p = placement("h1");
        assert_eq!(
            p.host_of_zone("us-east-1a").map(|h| h.name.as_str()),
            Some("h1")
        );
        assert_eq!(
            p.host_of_zone("us-east-1b").map(|h| h.name.as_str()),
            Some("h2")
        );
        assert!(p.host_of_zone("us-east-1c").is_none());
        assert_eq!(p.remote_endpoints(), [Ipv4Addr::new(100, 72, 0, 2)].into());
    }

    #[test]
    fn link_local_addresses_and_vnis_are_stable_and_distinct() {
        assert_ne!(
            host_link_local(Ipv4Addr::new(100, 72, 0, 1)),
            host_link_local(Ipv4Addr::new(100, 72, 0, 2))
        );
        let v = vni("vpc-0123456789abcdef0");
        assert!((1..=0x00ff_ffff).contains(&v));
        assert_eq!(v, vni("vpc-0123456789abcdef0"));
        assert_eq!(vxlan_link("vpc-0123456789abcdef0"), "x-56789abcdef0");
    }

    const TAG: &str = "t0c1";

    #[test]
    fn a_remote_instance_is_reached_over_the_vxlan_link_and_only_local_ones_are_made() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let sa = e.subnet_in(&v, "10.0.1.0/24", "us-east-1a");
        let sb = e.subnet_in(&v, "10.0.2.0/24", "us-east-1b");
        let here = e.instance(&sa, "10.0.1.10");
        let there = e.instance(&sb, "10.0.2.10");
        let p1 = placement("h1");
        let mut ns = plan(&e.w, TAG).namespaces;
        assert!(p1.localize(&e.w, &mut ns).is_empty());
        assert!(ns.contains_key(&here.id) && !ns.contains_key(&there.id));
        let r = &ns[&router_ns(TAG, &v.meta.id)];
        assert!(r.links.contains_key(&eni_link(&here.eni)));
        assert!(!r.links.contains_key(&eni_link(&there.eni)));
        assert!(!r.addrs.iter().any(|a| a.dev == eni_link(&there.eni)));
        let x = vxlan_link(&v.meta.id);
        let over_x = RouteKind::Via {
            gw: IpAddr::V6(host_link_local(Ipv4Addr::new(100, 72, 0, 2))),
            dev: x.clone(),
            onlink: false,
        };
        let dst: IpNet = "10.0.2.10/32".parse().unwrap();
        // Every table that routed the remote interface routes it over x-.
        let tables: Vec<u32> = r
            .routes
            .iter()
            .filter(|((_, d), _)| *d == dst)
            .map(|((t, _), k)| {
                assert_eq!(k, &over_x);
                *t
            })
            .collect();
        assert!(
            tables.contains(&TABLE_PEERING) && tables.len() >= 3,
            "{tables:?}"
        );
        // What arrives from another host may reach only this VPC's interfaces (table 250).
        assert!(r.rules.contains(&RulePlan {
            v6: false,
            iif: x,
            table: TABLE_PEERING
        }));
        // On h2 it is the other way round.
        let mut ns2 = plan(&e.w, TAG).namespaces;
        placement("h2").localize(&e.w, &mut ns2);
        assert!(ns2.contains_key(&there.id) && !ns2.contains_key(&here.id));
    }

    /// A VPC with A (us-east-1a: h1) whose subnet routes 10.0.3.0/24
    /// through middlebox M (us-east-1b: h2), and B in 10.0.3.0/24 (h1).
    fn middlebox_world() -> (Env, vpc_model::Vpc, Inst, Inst, Inst) {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let sa = e.subnet_in(&v, "10.0.1.0/24", "us-east-1a");
        let sm = e.subnet_in(&v, "10.0.2.0/24", "us-east-1b");
        let sb = e.subnet_in(&v, "10.0.3.0/24", "us-east-1a");
        let a = e.instance(&sa, "10.0.1.10");
        let m = e.instance(&sm, "10.0.2.10");
        let b = e.instance(&sb, "10.0.3.10");
        e.w.update::<vpc_model::NetworkInterface>(&m.eni, |x| x.source_dest_check = false);
        let rt = e.own_table(&sa);
        e.route_in(
            &v,
            &rt,
            "10.0.3.0/24",
            vpc_model::ops::route::RouteSpec {
                network_interface_id: Some(m.eni.clone()),
                ..Default::default()
            },
        );
        (e, v, a, m, b)
    }

    #[test]
    fn a_route_through_a_middlebox_on_another_host_leads_to_its_own_link_there() {
        let (e, v, a, m, _b) = middlebox_world();
        let e_m = eni_link(&m.eni);
        let m_link = middlebox_link(&e_m).unwrap();
        assert_eq!(middlebox_target(&m_link).as_deref(), Some(e_m.as_str()));
        let x = vxlan_link(&v.meta.id);
        let dst: IpNet = "10.0.3.0/24".parse().unwrap();
        // h1, the sender's host: the route leads to M's link on the segment,
        // not to h2's router (whose table 250 would skip M).
        let mut ns1 = plan(&e.w, TAG).namespaces;
        assert!(placement("h1").localize(&e.w, &mut ns1).is_empty());
        let r1 = &ns1[&router_ns(TAG, &v.meta.id)];
        let through: Vec<&RouteKind> = r1
            .routes
            .iter()
            .filter(|((_, d), _)| *d == dst)
            .map(|(_, k)| k)
            .collect();
        assert_eq!(
            through,
            vec![&RouteKind::Via {
                gw: IpAddr::V6(middlebox_address(&m_link)),
                dev: x.clone(),
                onlink: false,
            }]
        );
        assert!(middlebox_links(r1).is_empty());
        assert!(r1.links.contains_key(&eni_link(&a.eni)));
        // h2, the middlebox's host: what arrives on m-<eni> goes to M, whatever
        // its destination, and only there.
        let mut ns2 = plan(&e.w, TAG).namespaces;
        assert!(placement("h2").localize(&e.w, &mut ns2).is_empty());
        let r2 = &ns2[&router_ns(TAG, &v.meta.id)];
        assert_eq!(middlebox_links(r2), [m_link.clone()].into());
        let tables: BTreeSet<u32> = r2
            .rules
            .iter()
            .filter(|r| r.iif == m_link)
            .map(|r| r.table)
            .collect();
        assert_eq!(tables.len(), 1);
        let t = *tables.iter().next().unwrap();
        assert!(t >= TABLE_MIDDLEBOX_BASE);
        let routes: Vec<(&IpNet, &RouteKind)> = r2.table(t).collect();
        assert_eq!(
            routes,
            vec![
                (
                    &"0.0.0.0/0".parse::<IpNet>().unwrap(),
                    &RouteKind::Via {
                        gw: "10.0.2.10".parse().unwrap(),
                        dev: e_m.clone(),
                        onlink: true
                    }
                ),
                (&"::/0".parse::<IpNet>().unwrap(), &RouteKind::Blackhole),
            ]
        );
        // Addresses are distinct from every host's and stable.
        assert_ne!(
            middlebox_address(&m_link),
            host_link_local(Ipv4Addr::new(100, 72, 0, 2))
        );
        assert_eq!(
            middlebox_address("m-56789abcdef0"),
            "fe80::6d62:5678:9abc:def0".parse::<Ipv6Addr>().unwrap()
        );
        // One host: nothing of this.
        let mut alone = placement("h2");
        alone.hosts.remove("h1");
        let mut ns3 = plan(&e.w, TAG).namespaces;
        alone.localize(&e.w, &mut ns3);
        assert!(middlebox_links(&ns3[&router_ns(TAG, &v.meta.id)]).is_empty());
    }

    #[test]
    fn an_instance_stays_on_the_host_it_was_placed_on_within_its_subnet() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let sa = e.subnet_in(&v, "10.0.1.0/24", "us-east-1a");
        let first = e.instance(&sa, "10.0.1.10");
        let second = e.instance(&sa, "10.0.1.11");
        // Placed on h2 while h1, the zone's first host, was not live.
        let mut rec = e.w.get::<Instance>(&second.id).unwrap().clone();
        rec.host = Some("h2".into());
        e.w.put(rec);
        let p1 = placement("h1");
        assert_eq!(
            p1.host_of_instance(e.w.get::<Instance>(&first.id).unwrap())
                .map(|h| h.name.as_str()),
            Some("h1")
        );
        let mut ns = plan(&e.w, TAG).namespaces;
        p1.localize(&e.w, &mut ns);
        assert!(ns.contains_key(&first.id) && !ns.contains_key(&second.id));
        // h1's router reaches the other instance of the same subnet over x-.
        let r = &ns[&router_ns(TAG, &v.meta.id)];
        let dst: IpNet = "10.0.1.11/32".parse().unwrap();
        let over_x = RouteKind::Via {
            gw: IpAddr::V6(host_link_local(Ipv4Addr::new(100, 72, 0, 2))),
            dev: vxlan_link(&v.meta.id),
            onlink: false,
        };
        assert!(r.routes.iter().any(|((_, d), k)| *d == dst && *k == over_x));
        let mut ns2 = plan(&e.w, TAG).namespaces;
        placement("h2").localize(&e.w, &mut ns2);
        assert!(ns2.contains_key(&second.id) && !ns2.contains_key(&first.id));
        // Placed on a host no longer registered: realized nowhere.
        let mut rec = e.w.get::<Instance>(&second.id).unwrap().clone();
        rec.host = Some("h9".into());
        e.w.put(rec);
        for local in ["h1", "h2"] {
            let mut ns = plan(&e.w, TAG).namespaces;
            placement(local).localize(&e.w, &mut ns);
            assert!(!ns.contains_key(&second.id), "{local}");
        }
    }

    #[test]
    fn localizing_an_incremental_plan_equals_localizing_the_full_one() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let w = e.vpc_as(B, "us-east-1", "10.1.0.0/16", None);
        let sa = e.subnet_in(&v, "10.0.1.0/24", "us-east-1a");
        let sb = e.subnet_in(&v, "10.0.2.0/24", "us-east-1b");
        e.instance(&sa, "10.0.1.10");
        e.instance(&sb, "10.0.2.10");
        let pcx = e.peer(&v, &w, true);
        e.route_to_pcx(&v, "10.1.0.0/16", &pcx);
        for host in ["h1", "h2"] {
            let p1 = placement(host);
            let mut full = plan(&e.w, TAG).namespaces;
            p1.localize(&e.w, &mut full);
            // Only the router in scope: its remote links are found from the World.
            let scope = crate::plan::Scope {
                vpcs: [v.meta.id.clone()].into(),
                ..Default::default()
            };
            let mut partial = plan_scope(&e.w, TAG, Some(&scope)).namespaces;
            p1.localize(&e.w, &mut partial);
            for (name, ns) in &partial {
                assert_eq!(Some(ns), full.get(name), "{name}");
            }
            assert!(partial.contains_key(&router_ns(TAG, &v.meta.id)));
        }
        // With middleboxes on both sides of the underlay.
        let (e, v, ..) = middlebox_world();
        for host in ["h1", "h2"] {
            let p = placement(host);
            let mut full = plan(&e.w, TAG).namespaces;
            p.localize(&e.w, &mut full);
            let scope = crate::plan::Scope {
                vpcs: [v.meta.id.clone()].into(),
                ..Default::default()
            };
            let mut partial = plan_scope(&e.w, TAG, Some(&scope)).namespaces;
            p.localize(&e.w, &mut partial);
            let r = router_ns(TAG, &v.meta.id);
            assert_eq!(partial.get(&r), full.get(&r), "{host}");
        }
    }

    #[test]
    fn inter_region_links_stay_only_on_a_host_running_the_backbone() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let w = e.vpc_as(B, "us-west-2", "10.1.0.0/16", None);
        let sa = e.subnet_in(&v, "10.0.1.0/24", "us-east-1a");
        let sw = e.subnet_in(&w, "10.1.1.0/24", "us-west-2a");
        e.instance(&sa, "10.0.1.10");
        e.instance(&sw, "10.1.1.10");
        let pcx = e.peer(&v, &w, true);
        e.route_to_pcx(&v, "10.1.0.0/16", &pcx);
        let link = names::peering_link(&pcx);
        let dst: IpNet = "10.1.0.0/16".parse().unwrap();
        let mut p1 = placement("h1");
        p1.hosts
            .get_mut("h2")
            .unwrap()
            .zones
            .push("us-west-2a".into());
        // Without the backbone: the link goes, its route is a blackhole.
        let mut ns = plan(&e.w, TAG).namespaces;
        assert!(!p1.localize(&e.w, &mut ns).is_empty());
        let r = &ns[&router_ns(TAG, &v.meta.id)];
        assert!(!r.links.contains_key(&link));
        assert!(r
            .routes
            .iter()
            .any(|((_, d), k)| *d == dst && *k == RouteKind::Blackhole));
        // With it: the link and its route stay as on one host.
        p1.backbone = true;
        let mut ns = plan(&e.w, TAG).namespaces;
        assert!(p1.localize(&e.w, &mut ns).is_empty());
        for vpc in [&v.meta.id, &w.meta.id] {
            assert!(ns[&router_ns(TAG, vpc)].links.contains_key(&link), "{vpc}");
        }
        assert!(ns[&router_ns(TAG, &v.meta.id)]
            .routes
            .iter()
            .any(|((_, d), k)| *d == dst
                && matches!(k, RouteKind::Dev(x) | RouteKind::Via { dev: x, .. } if *x == link)));
        // What arrives on the inter-region link never leaves over VXLAN.
        let guard = ns[&router_ns(TAG, &v.meta.id)]
            .nft
            .iter()
            .flat_map(|t| &t.objects)
            .filter(|o| matches!(o, nftables::schema::NfListObject::Rule(_)))
            .map(|o| format!("{o:?}"))
            .filter(|r| r.contains(&format!("{link:?}")) && r.contains("\"x-*\""))
            .collect::<Vec<_>>();
        assert!(guard.len() == 1 && guard[0].contains("Drop"), "{guard:?}");
        // Each side's packets go to the host of their destination instance.
        let d = &crate::backbone::cluster::destinations(&e.w, &p1)[&pcx];
        assert_eq!(
            d.from_requester.get(&"10.1.1.10".parse().unwrap()),
            Some(&"h2".to_string())
        );
        assert_eq!(
            d.from_accepter.get(&"10.0.1.10".parse().unwrap()),
            Some(&"h1".to_string())
        );
        assert_eq!((d.from_requester.len(), d.from_accepter.len()), (1, 1));
    }
}
