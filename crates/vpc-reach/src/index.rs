//! [`Index`]: what a query needs to look things up without scanning the
//! world, built once per published [`World`].

use crate::walk::*;
use ipnet::Ipv6Net;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use vpc_model::ops;
use vpc_model::types::*;
use vpc_model::world::World;

/// A fast non-cryptographic hasher (FxHash) for the index's maps: their
/// keys are IDs and addresses from the world, not attacker-chosen input
/// that could be crafted to collide.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
        }
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
pub(crate) type FastSet<K> = HashSet<K, std::hash::BuildHasherDefault<FastHasher>>;

// ---- Index -------------------------------------------------------------------

/// A record ID, kept inline when short (as every generated ID is:
/// `prefix-` and 17 hex digits), so that building an index allocates per
/// table rather than per record.
#[derive(Clone)]
pub(crate) enum RecordId {
    Inline(u8, [u8; 39]),
    Heap(Box<str>),
}

impl RecordId {
    pub(crate) fn new(s: &str) -> RecordId {
        let b = s.as_bytes();
        if b.len() <= 39 {
            let mut buf = [0u8; 39];
            buf[..b.len()].copy_from_slice(b);
            RecordId::Inline(u8::try_from(b.len()).unwrap_or(39), buf)
        } else {
            RecordId::Heap(s.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            RecordId::Inline(n, b) => std::str::from_utf8(&b[..usize::from(*n)]).unwrap_or(""),
            RecordId::Heap(s) => s,
        }
    }
}

impl PartialEq for RecordId {
    fn eq(&self, o: &RecordId) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for RecordId {}

impl std::hash::Hash for RecordId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::borrow::Borrow<str> for RecordId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// One value, or several (most addresses, instances and VPCs have one).
#[derive(Debug, Clone)]
pub(crate) enum SmallList<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> SmallList<T> {
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            SmallList::One(x) => std::slice::from_ref(x),
            SmallList::Many(v) => v,
        }
    }

    pub(crate) fn push(&mut self, x: T) {
        match self {
            SmallList::Many(v) => v.push(x),
            SmallList::One(_) => {
                let SmallList::One(first) =
                    std::mem::replace(self, SmallList::Many(Vec::with_capacity(2)))
                else {
                    return;
                };
                if let SmallList::Many(v) = self {
                    v.push(first);
                    v.push(x);
                }
            }
        }
    }
}

pub(crate) fn push_to<K: std::hash::Hash + Eq, T>(m: &mut FastMap<K, SmallList<T>>, k: K, x: T) {
    match m.entry(k) {
        std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().push(x),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(SmallList::One(x));
        }
    }
}

/// Lookups a query needs, built once per [`World`] in one pass over it, so
/// that an analysis never scans the world. It owns its data (IDs), so it can
/// be kept next to the `Arc<World>` it was built from; using it with another
/// world gives wrong answers.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Every interface holding an address (private IPv4, IPv6), whatever its state.
    pub(crate) enis_by_ip: FastMap<IpAddr, SmallList<RecordId>>,
    /// Interfaces attached to an instance, by device index.
    pub(crate) enis_by_instance: FastMap<RecordId, SmallList<RecordId>>,
    /// The explicit route-table association of a subnet (else the main table).
    pub(crate) rtb_by_subnet: FastMap<RecordId, RecordId>,
    /// Route tables of a VPC, main first.
    pub(crate) rtbs_by_vpc: FastMap<RecordId, SmallList<RecordId>>,
    pub(crate) acl_by_subnet: FastMap<RecordId, RecordId>,
    /// A NAT gateway's own interface to the gateway.
    pub(crate) nat_by_eni: FastMap<RecordId, RecordId>,
    /// The internet gateway attached to a VPC.
    pub(crate) igw_by_vpc: FastMap<RecordId, RecordId>,
    /// Every peering connection record touching a VPC, in ID order.
    pub(crate) peerings_by_vpc: FastMap<RecordId, SmallList<RecordId>>,
    /// Public IPv4 mapped 1:1 at the internet gateway (running interfaces and
    /// available NAT gateways): public to (VPC, private).
    pub(crate) pub2priv: FastMap<Ipv4Addr, (RecordId, Ipv4Addr)>,
    /// The same, (VPC, private) to public.
    pub(crate) priv2pub: FastMap<(RecordId, Ipv4Addr), Ipv4Addr>,
    /// Whoever holds a public IPv4, running or not: public to (interface, private).
    pub(crate) public_owner: FastMap<Ipv4Addr, (RecordId, Ipv4Addr)>,
    /// IPv6 blocks the internet routes to a VPC (VPCs with an internet gateway).
    pub(crate) inet_v6: Vec<(Ipv6Net, RecordId)>,
    /// Interfaces and instances some route targets (middleboxes).
    pub(crate) route_targets: FastSet<RecordId>,
    /// The VPC routers' own addresses: every subnet's gateway (`.1`).
    pub(crate) router_addrs: FastSet<(RecordId, Ipv4Addr)>,
}

impl Index {
    /// Builds the index of `w` (linear in the size of the world).
    pub fn new(w: &World) -> Index {
        let mut index = Index::default();
        index.enis_by_ip.reserve(w.enis.len() + w.enis.len() / 4);
        index.enis_by_instance.reserve(w.instances.len());
        for e in w.iter::<NetworkInterface>() {
            let id = RecordId::new(&e.meta.id);
            for p in &e.private_ips {
                push_to(&mut index.enis_by_ip, IpAddr::V4(p.ip), id.clone());
            }
            for a in &e.ipv6 {
                push_to(&mut index.enis_by_ip, IpAddr::V6(*a), id.clone());
            }
            if let Some(att) = &e.attachment {
                push_to(
                    &mut index.enis_by_instance,
                    RecordId::new(&att.instance_id),
                    id,
                );
            }
        }
        for l in index.enis_by_ip.values_mut() {
            if let SmallList::Many(v) = l {
                v.dedup();
            }
        }
        for l in index.enis_by_instance.values_mut() {
            if let SmallList::Many(v) = l {
                v.sort_by_key(|e| {
                    w.get::<NetworkInterface>(e.as_str())
                        .map_or(u32::MAX, device)
                });
            }
        }
        for rt in w.iter::<RouteTable>() {
            let id = RecordId::new(&rt.meta.id);
            for a in &rt.assocs {
                if let Some(s) = &a.subnet_id {
                    index
                        .rtb_by_subnet
                        .entry(RecordId::new(s))
                        .or_insert_with(|| id.clone());
                }
            }
            let main = w
                .get::<Vpc>(&rt.vpc_id)
                .is_some_and(|v| v.main_route_table == rt.meta.id);
            let vpc = RecordId::new(&rt.vpc_id);
            match (main, index.rtbs_by_vpc.get_mut(&vpc)) {
                (true, Some(l)) => {
                    let mut v = l.as_slice().to_vec();
                    v.insert(0, id);
                    *l = SmallList::Many(v);
                }
                _ => push_to(&mut index.rtbs_by_vpc, vpc, id),
            }
            for r in &rt.routes {
                match &r.target {
                    RouteTarget::NetworkInterface(x) | RouteTarget::Instance(x) => {
                        index.route_targets.insert(RecordId::new(x));
                    }
                    _ => {}
                }
            }
        }
        for s in w.iter::<Subnet>().filter_map(|s| Some((s, s.cidr?))) {
            let (s, cidr) = s;
            let gw = Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1));
            index.router_addrs.insert((RecordId::new(&s.vpc_id), gw));
        }
        for a in w.iter::<NetworkAcl>() {
            for x in &a.assocs {
                index
                    .acl_by_subnet
                    .entry(RecordId::new(&x.subnet_id))
                    .or_insert_with(|| RecordId::new(&a.meta.id));
            }
        }
        for g in w.iter::<NatGateway>() {
            index
                .nat_by_eni
                .entry(RecordId::new(&g.eni_id))
                .or_insert_with(|| RecordId::new(&g.meta.id));
        }
        for g in w.iter::<InternetGateway>() {
            if let Some(v) = &g.vpc_id {
                if w.get::<Vpc>(v).is_some() {
                    index
                        .igw_by_vpc
                        .insert(RecordId::new(v), RecordId::new(&g.meta.id));
                }
            }
        }
        for p in w.iter::<Peering>() {
            let id = RecordId::new(&p.id);
            push_to(
                &mut index.peerings_by_vpc,
                RecordId::new(&p.requester.vpc_id),
                id.clone(),
            );
            if p.accepter.vpc_id != p.requester.vpc_id {
                push_to(
                    &mut index.peerings_by_vpc,
                    RecordId::new(&p.accepter.vpc_id),
                    id,
                );
            }
        }
        index.public_maps(w);
        for v in index.igw_by_vpc.keys() {
            if let Some(vpc) = w.get::<Vpc>(v.as_str()) {
                for b in vpc.v6_blocks() {
                    index.inet_v6.push((b.trunc(), v.clone()));
                }
            }
        }
        index
            .inet_v6
            .sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        index
    }

    /// The public mappings, as `vpc-dataplane`'s planner makes them: every
    /// (private, public) pair of running interfaces (Elastic IP or
    /// auto-assigned for the primary address, Elastic IPs of secondaries) in
    /// interface-ID order, then available NAT gateways' Elastic IPs; a public
    /// address mapped twice keeps its first mapping.
    pub(crate) fn public_maps(&mut self, w: &World) {
        let mut eips: FastMap<&str, Vec<&Address>> = FastMap::default();
        for a in w.iter::<Address>() {
            if let Some(e) = &a.eni_id {
                eips.entry(e.as_str()).or_default().push(a);
            }
        }
        // `ops::eni::public_ips_of`, with the Elastic IPs found in one pass.
        let pubs_of = |e: &NetworkInterface| -> Vec<(Ipv4Addr, Ipv4Addr)> {
            let list = eips.get(e.meta.id.as_str());
            if list.is_none() && e.public_ip.is_none() {
                return Vec::new();
            }
            ops::eni::public_ips_given(e, list.map_or(&[][..], Vec::as_slice))
        };
        let mut taken: FastSet<Ipv4Addr> = FastSet::default();
        let mut map = |index: &mut Index, vpc: &str, private: Ipv4Addr, public: Ipv4Addr| {
            if taken.insert(public) {
                index.pub2priv.insert(public, (RecordId::new(vpc), private));
                index.priv2pub.insert((RecordId::new(vpc), private), public);
            }
        };
        for e in w.iter::<NetworkInterface>() {
            let pubs = pubs_of(e);
            if pubs.is_empty() {
                continue;
            }
            for (private, public) in &pubs {
                self.public_owner
                    .entry(*public)
                    .or_insert_with(|| (RecordId::new(&e.meta.id), *private));
            }
            if ops::eni::is_instance_interface_up(w, e) {
                for (private, public) in pubs {
                    map(self, &e.vpc_id, private, public);
                }
            }
        }
        for n in w.iter::<NatGateway>() {
            if !ops::nat::is_realized(w, n) {
                continue;
            }
            let Some(e) = w.get::<NetworkInterface>(&n.eni_id) else {
                continue;
            };
            let ip = e.primary_ip();
            for (private, public) in pubs_of(e) {
                if Some(private) == ip {
                    map(self, &n.vpc_id, private, public);
                }
            }
        }
    }

    pub(crate) fn list<'s>(
        m: &'s FastMap<RecordId, SmallList<RecordId>>,
        k: &str,
    ) -> &'s [RecordId] {
        m.get(k).map_or(&[], SmallList::as_slice)
    }
}
