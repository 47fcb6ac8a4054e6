//! All-pairs reachability over classes of equivalent instances.

use crate::analysis::*;
use crate::index::*;
use crate::reachable_with;
use crate::walk::*;
use ipnet::{IpNet, Ipv6Net};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use vpc_model::ops;
use vpc_model::types::*;
use vpc_model::world::World;

// ---- All pairs -------------------------------------------------------------------

/// An all-pairs reachability matrix over instances.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matrix {
    /// `reachable[i][j]`: from the i-th instance to the j-th one.
    pub reachable: Vec<Vec<bool>>,
    /// How many classes of equivalent instances there were.
    pub classes: usize,
    /// How many analyses actually ran.
    pub evaluated: usize,
}

/// Every pair's verdict (`instances` as rows and columns; an unknown
/// instance, or one without an address of the family, reaches nothing and is
/// reached by nothing). IPv4; see [`matrix_with`].
pub fn matrix(
    w: &World,
    instances: &[String],
    protocol: Protocol,
    port: Option<u16>,
) -> Vec<Vec<bool>> {
    matrix_with(&Index::new(w), w, instances, protocol, port, false).reachable
}

/// The all-pairs matrix, computed over classes of equivalent instances.
///
/// **Why classes are exact.** An analysis looks at an endpoint's address
/// only in two ways: (1) *containment* in a prefix of the configuration
/// (route destinations, ACL entry and security-group CIDRs, subnet CIDRs and
/// VPC blocks, which also cover the internet's IPv6 routes), and (2)
/// *equality* with an interface's address (the routers' `/32`s, tables 250
/// and 251, source/destination checks, group member sets, the 1:1 public
/// maps, local delivery). Everything else it reads is the endpoint's
/// configuration: its instance's state and VPC, and per interface (by device
/// index) its VPC, subnet, groups, source/destination check, and whether it
/// has IPv6 and public addresses. So two instances with the same
/// configuration whose addresses (private, IPv6, public) lie in exactly the
/// same prefixes are interchangeable, provided every equality test on their
/// addresses can only name the instance itself: that holds when no other
/// interface shares any of their addresses and no route targets them
/// (middleboxes); instances that fail this are classes of their own. Hence
/// `reach(x, y) = reach(x', y')` whenever `x ~ x'`, `y ~ y'`, `x ≠ y` and
/// `x' ≠ y'`: one analysis per ordered pair of classes (two distinct members
/// for a class with itself), plus one per class for an instance to itself.
pub fn matrix_with(
    index: &Index,
    w: &World,
    instances: &[String],
    protocol: Protocol,
    port: Option<u16>,
    ipv6: bool,
) -> Matrix {
    let n = instances.len();
    if n == 0 {
        return Matrix::default();
    }
    let prefixes = Prefixes::collect(w);
    let mut publics: HashMap<&str, usize> = HashMap::new();
    for (e, _) in index.public_owner.values() {
        *publics.entry(e.as_str()).or_default() += 1;
    }
    let mut class_of_sig: HashMap<Signature, usize> = HashMap::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    // Distinct instances, their class, and each class's members.
    let mut members: Vec<Vec<&str>> = Vec::new();
    let mut class_of: Vec<usize> = Vec::with_capacity(n);
    for id in instances {
        if let Some(&c) = by_id.get(id.as_str()) {
            class_of.push(c);
            continue;
        }
        let sig = signature(index, w, &prefixes, &publics, id);
        let next = members.len();
        let c = *class_of_sig.entry(sig).or_insert(next);
        if c == next {
            members.push(Vec::new());
        }
        members[c].push(id.as_str());
        by_id.insert(id.as_str(), c);
        class_of.push(c);
    }
    let k = members.len();
    // Work items: (class, class) pairs (k*k), then each class to itself (k).
    let jobs: Vec<Option<(&str, &str)>> = (0..k * k)
        .map(|i| {
            let (a, b) = (i / k, i % k);
            if a != b {
                Some((members[a][0], members[b][0]))
            } else {
                members[a].get(1).map(|x| (members[a][0], *x))
            }
        })
        .chain((0..k).map(|a| Some((members[a][0], members[a][0]))))
        .collect();
    let mut verdicts = vec![false; jobs.len()];
    let threads = std::thread::available_parallelism()
        .map_or(1, |x| x.get())
        .clamp(1, 64)
        .min(jobs.len().div_ceil(64).max(1));
    let chunk = jobs.len().div_ceil(threads);
    let eval = |job: &Option<(&str, &str)>| -> bool {
        let Some((a, b)) = job else { return false };
        let q = Query {
            source: Endpoint::Instance(a.to_string()),
            destination: Endpoint::Instance(b.to_string()),
            protocol,
            port,
            ipv6,
        };
        reachable_with(index, w, &q).unwrap_or(false)
    };
    std::thread::scope(|s| {
        for (js, vs) in jobs.chunks(chunk).zip(verdicts.chunks_mut(chunk)) {
            s.spawn(move || {
                for (j, v) in js.iter().zip(vs.iter_mut()) {
                    *v = eval(j);
                }
            });
        }
    });
    let evaluated = jobs.iter().filter(|j| j.is_some()).count();
    let mut reachable = vec![vec![false; n]; n];
    for (i, row) in reachable.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            let (a, b) = (class_of[i], class_of[j]);
            *cell = if instances[i] == instances[j] {
                verdicts[k * k + a]
            } else {
                verdicts[a * k + b]
            };
        }
    }
    Matrix {
        reachable,
        classes: k,
        evaluated,
    }
}

/// Every prefix of the configuration an address can be compared with, by length.
struct Prefixes {
    v4: Vec<(u8, HashMap<ipnet::Ipv4Net, u32>)>,
    v6: Vec<(u8, HashMap<Ipv6Net, u32>)>,
}

impl Prefixes {
    fn collect(w: &World) -> Prefixes {
        let mut all: HashSet<IpNet> = HashSet::new();
        for rt in w.iter::<RouteTable>() {
            all.extend(rt.routes.iter().map(|r| r.dest.trunc()));
        }
        for a in w.iter::<NetworkAcl>() {
            all.extend(a.entries.iter().map(|e| e.cidr.trunc()));
        }
        for g in w.iter::<SecurityGroup>() {
            for r in g.ingress.iter().chain(&g.egress) {
                match &r.peer {
                    SgPeer::Cidr4(n) => {
                        all.insert(IpNet::V4(n.trunc()));
                    }
                    SgPeer::Cidr6(n) => {
                        all.insert(IpNet::V6(n.trunc()));
                    }
                    SgPeer::PrefixList(list) => {
                        all.extend(
                            vpc_model::ops::prefix_list::cidrs(w, &g.meta.region, list)
                                .iter()
                                .map(|n| n.trunc()),
                        );
                    }
                    SgPeer::Group { .. } => {}
                }
            }
        }
        for s in w.iter::<Subnet>() {
            all.extend(s.cidr.map(|c| IpNet::V4(c.trunc())));
            all.extend(s.ipv6.iter().map(|a| IpNet::V6(a.cidr.trunc())));
        }
        for v in w.iter::<Vpc>() {
            all.extend(v.all_blocks().into_iter().map(|b| b.trunc()));
        }
        let mut v4: HashMap<u8, HashMap<ipnet::Ipv4Net, u32>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<Ipv6Net, u32>> = HashMap::new();
        let mut all: Vec<IpNet> = all.into_iter().collect();
        all.sort();
        for (i, net) in all.into_iter().enumerate() {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            match net {
                IpNet::V4(n) => {
                    v4.entry(n.prefix_len()).or_default().insert(n, id);
                }
                IpNet::V6(n) => {
                    v6.entry(n.prefix_len()).or_default().insert(n, id);
                }
            }
        }
        let mut v4: Vec<_> = v4.into_iter().collect();
        let mut v6: Vec<_> = v6.into_iter().collect();
        v4.sort_by_key(|x| x.0);
        v6.sort_by_key(|x| x.0);
        Prefixes { v4, v6 }
    }

    /// The prefixes holding an address.
    fn of(&self, a: IpAddr) -> Vec<u32> {
        match a {
            IpAddr::V4(a) => self
                .v4
                .iter()
                .filter_map(|(len, m)| m.get(&ipnet::Ipv4Net::new(a, *len).ok()?.trunc()).copied())
                .collect(),
            IpAddr::V6(a) => self
                .v6
                .iter()
                .filter_map(|(len, m)| m.get(&Ipv6Net::new(a, *len).ok()?.trunc()).copied())
                .collect(),
        }
    }
}

/// What makes an instance behave as it does in any pair (see [`matrix_with`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Signature {
    /// An instance that must be analysed on its own.
    Own(String),
    Class {
        up: bool,
        vpc: String,
        enis: Vec<InterfaceSignature>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InterfaceSignature {
    device: u32,
    vpc: String,
    subnet: String,
    groups: Vec<String>,
    sdc: bool,
    v4: Option<Vec<u32>>,
    v6: Option<Vec<u32>>,
    public: Option<Vec<u32>>,
}

fn signature(
    index: &Index,
    w: &World,
    p: &Prefixes,
    publics: &HashMap<&str, usize>,
    id: &str,
) -> Signature {
    let own = || Signature::Own(id.to_string());
    let Some(inst) = w.get::<Instance>(id) else {
        return own();
    };
    if index.route_targets.contains(id) {
        return own();
    }
    let mut enis = Vec::new();
    for eid in Index::list(&index.enis_by_instance, id) {
        let eid = eid.as_str();
        let Some(e) = w.get::<NetworkInterface>(eid) else {
            return own();
        };
        if index.route_targets.contains(eid) {
            return own();
        }
        let addrs = e
            .private_ips
            .iter()
            .map(|x| IpAddr::V4(x.ip))
            .chain(e.ipv6.iter().map(|x| IpAddr::V6(*x)));
        for a in addrs {
            if index
                .enis_by_ip
                .get(&a)
                .is_some_and(|l| l.as_slice().len() > 1)
            {
                return own();
            }
        }
        let public = ops::eni::public_ip_of(w, e);
        if let Some(pb) = public {
            // Held by someone else, or not mapped although the interface runs: on its own.
            let mine = index
                .public_owner
                .get(&pb)
                .is_some_and(|(x, _)| x.as_str() == eid);
            let mapped = index
                .pub2priv
                .get(&pb)
                .is_some_and(|(_, pv)| Some(*pv) == e.primary_ip());
            if !mine || (ops::eni::is_instance_interface_up(w, e) && !mapped) {
                return own();
            }
        }
        // Elastic IPs on secondary addresses are not modelled by classes.
        if publics.get(eid).copied().unwrap_or(0) > usize::from(public.is_some()) {
            return own();
        }
        let mut groups = e.groups.clone();
        groups.sort();
        groups.dedup();
        enis.push(InterfaceSignature {
            device: device(e),
            vpc: e.vpc_id.clone(),
            subnet: e.subnet_id.clone(),
            groups,
            sdc: e.source_dest_check,
            v4: e.primary_ip().map(|a| p.of(IpAddr::V4(a))),
            v6: e.ipv6.first().map(|a| p.of(IpAddr::V6(*a))),
            public: public.map(|a| p.of(IpAddr::V4(a))),
        });
    }
    if enis.is_empty() {
        return own();
    }
    Signature::Class {
        up: inst.is_up(),
        vpc: inst.vpc_id.clone(),
        enis,
    }
}
