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
//! interfaces. It is pure.

use crate::names::{self, TABLE_PEERING};
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
            for name in gone.keys() {
                ns.links.remove(name);
            }
            ns.addrs.retain(|a| !gone.contains_key(&a.dev));
            ns.rules.retain(|r| !gone.contains_key(&r.iif));
            for kind in ns.routes.values_mut() {
                let dev = match kind {
                    RouteKind::Dev(d) | RouteKind::Via { dev: d, .. } => d.clone(),
                    RouteKind::Blackhole => continue,
                };
                if let Some(host) = gone.get(&dev) {
                    *kind = match host {
                        Some(addr) if self.spans_hosts() => RouteKind::Via {
                            gw: IpAddr::V6(host_link_local(*addr)),
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
    use crate::testkit::{Env, B};
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
        let p1 = placement("h1");
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
