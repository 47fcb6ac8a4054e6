//! The differential test: the pure reachability evaluator
//! (`vpc_reach`) against the kernel, on random topologies.
//!
//! A proptest strategy generates small topologies as data (2–4 VPCs,
//! possibly overlapping, in up to three accounts and two regions; 1–2
//! subnets each, 1–2 instances per subnet, some with public IPs or stopped;
//! internet gateways; peerings driven to pending-acceptance, active,
//! rejected, deleted or failed; routes to peers, to third VPCs through a
//! peering (transit), to 0.0.0.0/0 via a peering or an internet gateway;
//! security-group rules from CIDRs or group references, also across
//! peerings; network ACL entries in both directions, some refusing only the
//! return traffic) and a list of probes. Each topology is built through the
//! model's operations (an operation the model refuses is simply skipped and
//! logged), realised with a fresh [`Dataplane`] under a random tag, and every
//! probe is both analysed ([`reach::analyze_opts`], with the client's real
//! source port) and sent for real between the namespaces (ping; a TCP
//! connection; a UDP datagram answered by an echo server, so the reply path
//! counts). Any disagreement fails the test with the seed, the topology, the
//! tuple and the evaluator's explanations, after proptest has shrunk it.
//!
//! Needs root (it fails, never skips, without it) and python3 (the probe
//! client and server). `VPCD_DIFF_CASES` sets the number of topologies
//! (default 6), `VPCD_DIFF_SECONDS` runs batches until a time budget is
//! spent, `VPCD_DIFF_SEED` replays a run, `VPCD_DIFF_SHRINK_SECS` bounds
//! shrinking (default 120), `VPCD_DIFF_VERBOSE` prints every tuple's
//! verdicts. The last line is machine-readable:
//! `DIFF-SUMMARY topologies=N tuples=M reachable=R disagreements=D seconds=S seed=X`
//! (the counts include the topologies realised while shrinking a failure).

#[path = "../src/testkit.rs"]
mod testkit;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use testkit::{Env, A, B, C, EAST, WEST};
use vpc_dataplane::{names, Dataplane};
use vpc_model::ops::{self, acl, peering, route, sg};
use vpc_model::*;
use vpc_reach::{self as reach, Analysis, Endpoint, Options, Protocol, Query, INTERNET_HOST_V4};

// ---- the generated topology (pure data, so proptest can shrink it) ----------

const ACCOUNTS: [&str; 3] = [A, B, C];
/// Ports servers listen on and rules name.
const SERVICE_PORTS: [u16; 4] = [22, 80, 443, 8080];
/// Client source ports (plus the probe's index): below, inside and above
/// Linux's ephemeral range, on both sides of the ACL boundaries below.
const SPORT_BASES: [u16; 6] = [2000, 33000, 40500, 45000, 52000, 61500];
/// Port-range ends for rules.
const PORT_BOUNDS: [u16; 15] = [
    0, 22, 80, 443, 1023, 1024, 8080, 32767, 32768, 40000, 40001, 50000, 60999, 61000, 65535,
];
/// Ranges that matter to return traffic (the client's port).
const RETURN_RANGES: [(u16, u16); 5] = [
    (32768, 40000),
    (40001, 60999),
    (1024, 65535),
    (32768, 65535),
    (40001, 65535),
];
/// Tuples probed per topology at most.
const MAX_TUPLES: usize = 12;
/// ACL rule numbers (100 is the default ACL's allow-all, which refuses a duplicate).
const RULE_NUMBERS: [i64; 12] = [1, 5, 10, 20, 50, 90, 99, 100, 101, 110, 150, 200];

#[derive(Debug, Clone)]
struct Spec {
    vpcs: Vec<VpcG>,
    /// Peerings (`OpG::Peer`), applied before the other operations.
    peers: Vec<OpG>,
    ops: Vec<OpG>,
    probes: Vec<ProbeG>,
}

#[derive(Debug, Clone)]
struct VpcG {
    /// `10.<block>.0.0/16`; None: a block of its own (its index + 1), Some: maybe shared.
    block: Option<u8>,
    owner: u8,
    west: bool,
    igw: Option<IgwG>,
    extra_group: bool,
    /// The default group admits everything from 0.0.0.0/0.
    open: bool,
    subnets: Vec<SubnetG>,
}

#[derive(Debug, Clone)]
struct IgwG {
    /// 0.0.0.0/0 to it in the main table,
    default_route: bool,
    /// and in the subnets' own tables too.
    all_tables: bool,
}

#[derive(Debug, Clone)]
struct SubnetG {
    own_table: bool,
    /// A new ACL (deny-all until entries are added).
    custom_acl: bool,
    instances: Vec<InstG>,
}

#[derive(Debug, Clone)]
struct InstG {
    public: bool,
    /// 0: the default group, 1: the extra group, 2: both.
    groups: u8,
    stopped: bool,
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Pending,
    Active,
    Rejected,
    Deleted,
}

#[derive(Debug, Clone, Copy)]
enum ProtoG {
    Icmp,
    Tcp,
    Udp,
    All,
}

#[derive(Debug, Clone, Copy)]
enum PortsG {
    One(u8),
    Range(u8, u8),
    Return(u8),
    All,
}

#[derive(Debug, Clone, Copy)]
enum IcmpG {
    Any,
    EchoRequest,
    EchoReply,
}

#[derive(Debug, Clone, Copy)]
enum CidrG {
    All,
    Vpc(u8),
    Subnet(u8, u8),
    Host(u8),
    Internet,
    PublicPool,
    Wide,
}

#[derive(Debug, Clone, Copy)]
enum SgPeerG {
    Cidr(CidrG),
    Group { vpc: u8, extra: bool },
}

#[derive(Debug, Clone, Copy)]
enum TargetG {
    /// The n-th peering (in creation order) that touches the table's VPC.
    Peering(u8),
    Igw,
}

#[derive(Debug, Clone, Copy)]
enum OpG {
    /// Create a peering `a` → `b`, drive it to `fate`, and add routes to the
    /// peer's CIDR in the main tables (bit 0: on `a`, bit 1: on `b`), and in
    /// the subnets' own tables when `all_tables`.
    Peer {
        a: u8,
        b: u8,
        fate: Fate,
        routes: u8,
        all_tables: bool,
    },
    /// A route in a VPC's main table (0) or a subnet's own table (1, 2).
    Route {
        vpc: u8,
        table: u8,
        dest: CidrG,
        target: TargetG,
    },
    Sg {
        vpc: u8,
        extra: bool,
        egress: bool,
        proto: ProtoG,
        ports: PortsG,
        icmp: IcmpG,
        peer: SgPeerG,
    },
    /// Revoke a group's allow-all egress rule.
    RevokeEgress { vpc: u8, extra: bool },
    Acl {
        vpc: u8,
        subnet: u8,
        rule: u8,
        egress: bool,
        allow: bool,
        proto: ProtoG,
        ports: PortsG,
        icmp: IcmpG,
        cidr: CidrG,
    },
    /// Delete the n-th peering (by one side or the other).
    DeletePeering { k: u8, by_accepter: bool },
}

#[derive(Debug, Clone, Copy)]
enum DstG {
    Instance(u8),
    /// An instance in the source's own VPC.
    Near(u8),
    /// An instance in a VPC that has a peering record with the source's.
    Peered(u8),
    Internet,
    /// Another instance's public IP, from an instance.
    PublicOf(u8),
    /// From the internet's test host to an instance.
    FromInternet(u8),
}

#[derive(Debug, Clone, Copy)]
struct ProbeG {
    src: u8,
    dst: DstG,
    proto: u8,
    port: u8,
    sport: u8,
}

fn proto_g() -> impl Strategy<Value = ProtoG> {
    prop_oneof![
        3 => Just(ProtoG::Icmp),
        4 => Just(ProtoG::Tcp),
        3 => Just(ProtoG::Udp),
        2 => Just(ProtoG::All),
    ]
}

fn ports_g() -> impl Strategy<Value = PortsG> {
    prop_oneof![
        4 => (0u8..4).prop_map(PortsG::One),
        2 => (0u8..15, 0u8..15).prop_map(|(a, b)| PortsG::Range(a.min(b), a.max(b))),
        2 => (0u8..5).prop_map(PortsG::Return),
        2 => Just(PortsG::All),
    ]
}

fn icmp_g() -> impl Strategy<Value = IcmpG> {
    prop_oneof![
        3 => Just(IcmpG::Any),
        2 => Just(IcmpG::EchoRequest),
        1 => Just(IcmpG::EchoReply),
    ]
}

fn cidr_g() -> impl Strategy<Value = CidrG> {
    prop_oneof![
        3 => Just(CidrG::All),
        3 => any::<u8>().prop_map(CidrG::Vpc),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(v, s)| CidrG::Subnet(v, s)),
        1 => any::<u8>().prop_map(CidrG::Host),
        1 => Just(CidrG::Internet),
        1 => Just(CidrG::PublicPool),
        1 => Just(CidrG::Wide),
    ]
}

fn route_dest_g() -> impl Strategy<Value = CidrG> {
    prop_oneof![
        4 => any::<u8>().prop_map(CidrG::Vpc),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(v, s)| CidrG::Subnet(v, s)),
        2 => Just(CidrG::All),
        1 => Just(CidrG::Wide),
        1 => any::<u8>().prop_map(CidrG::Host),
        1 => Just(CidrG::Internet),
    ]
}

fn fate_g() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Active),
        1 => Just(Fate::Pending),
        1 => Just(Fate::Rejected),
        1 => Just(Fate::Deleted),
    ]
}

fn peer_g() -> impl Strategy<Value = OpG> {
    (
        any::<u8>(),
        any::<u8>(),
        fate_g(),
        prop_oneof![4 => Just(3u8), 1 => 0u8..3],
        prop::bool::weighted(0.7),
    )
        .prop_map(|(a, b, fate, routes, all_tables)| OpG::Peer {
            a,
            b,
            fate,
            routes,
            all_tables,
        })
}

fn op_g() -> impl Strategy<Value = OpG> {
    let peer = peer_g();
    let route = (
        any::<u8>(),
        prop_oneof![3 => Just(0u8), 1 => 1u8..3],
        route_dest_g(),
        prop_oneof![
            3 => any::<u8>().prop_map(TargetG::Peering),
            1 => Just(TargetG::Igw)
        ],
    )
        .prop_map(|(vpc, table, dest, target)| OpG::Route {
            vpc,
            table,
            dest,
            target,
        });
    let sg_peer = prop_oneof![
        3 => cidr_g().prop_map(SgPeerG::Cidr),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(vpc, extra)| SgPeerG::Group { vpc, extra }),
    ];
    let sg = (
        any::<u8>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        proto_g(),
        ports_g(),
        icmp_g(),
        sg_peer,
    )
        .prop_map(|(vpc, extra, egress, proto, ports, icmp, peer)| OpG::Sg {
            vpc,
            extra,
            egress,
            proto,
            ports,
            icmp,
            peer,
        });
    let revoke =
        (any::<u8>(), any::<bool>()).prop_map(|(vpc, extra)| OpG::RevokeEgress { vpc, extra });
    let acl = (
        (any::<u8>(), any::<u8>(), 0u8..12, any::<bool>()),
        (
            prop::bool::weighted(0.35),
            proto_g(),
            ports_g(),
            icmp_g(),
            cidr_g(),
        ),
    )
        .prop_map(
            |((vpc, subnet, rule, egress), (allow, proto, ports, icmp, cidr))| OpG::Acl {
                vpc,
                subnet,
                rule,
                egress,
                allow,
                proto,
                ports,
                icmp,
                cidr,
            },
        );
    let delete = (any::<u8>(), any::<bool>())
        .prop_map(|(k, by_accepter)| OpG::DeletePeering { k, by_accepter });
    prop_oneof![
        2 => peer,
        3 => route,
        6 => sg,
        1 => revoke,
        3 => acl,
        1 => delete,
    ]
}

fn vpc_g() -> impl Strategy<Value = VpcG> {
    let inst = (
        prop::bool::weighted(0.5),
        prop_oneof![3 => Just(0u8), 1 => 1u8..3],
        prop::bool::weighted(0.07),
    )
        .prop_map(|(public, groups, stopped)| InstG {
            public,
            groups,
            stopped,
        });
    let subnet = (
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.08),
        prop::collection::vec(inst, 1..=2),
    )
        .prop_map(|(own_table, custom_acl, instances)| SubnetG {
            own_table,
            custom_acl,
            instances,
        });
    (
        prop::option::weighted(0.2, 1u8..=4),
        0u8..3,
        prop::bool::weighted(0.15),
        prop::option::weighted(
            0.4,
            (prop::bool::weighted(0.8), prop::bool::weighted(0.7)).prop_map(|(d, a)| IgwG {
                default_route: d,
                all_tables: a,
            }),
        ),
        prop::bool::weighted(0.4),
        prop::bool::weighted(0.5),
        prop::collection::vec(subnet, 1..=2),
    )
        .prop_map(
            |(block, owner, west, igw, extra_group, open, subnets)| VpcG {
                block,
                owner,
                west,
                igw,
                extra_group,
                open,
                subnets,
            },
        )
}

fn probe_g() -> impl Strategy<Value = ProbeG> {
    let dst = prop_oneof![
        4 => any::<u8>().prop_map(DstG::Instance),
        3 => any::<u8>().prop_map(DstG::Near),
        4 => any::<u8>().prop_map(DstG::Peered),
        2 => Just(DstG::Internet),
        1 => any::<u8>().prop_map(DstG::PublicOf),
        2 => any::<u8>().prop_map(DstG::FromInternet),
    ];
    (any::<u8>(), dst, 0u8..3, 0u8..4, 0u8..6).prop_map(|(src, dst, proto, port, sport)| ProbeG {
        src,
        dst,
        proto,
        port,
        sport,
    })
}

fn spec_g() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(vpc_g(), 2..=4),
        prop::collection::vec(peer_g(), 0..=4),
        prop::collection::vec(op_g(), 0..=12),
        prop::collection::vec(probe_g(), 8..=16),
    )
        .prop_map(|(vpcs, peers, ops, probes)| Spec {
            vpcs,
            peers,
            ops,
            probes,
        })
}

// ---- building the topology through the model ------------------------------

#[derive(Debug, Clone)]
struct BVpc {
    vpc: Vpc,
    block: u8,
    extra_sg: Option<String>,
    igw: Option<String>,
    subnets: Vec<BSubnet>,
}

#[derive(Debug, Clone)]
struct BSubnet {
    subnet: Subnet,
    own_table: Option<String>,
}

#[derive(Debug, Clone)]
struct BInst {
    id: String,
    vpc: usize,
}

#[derive(Debug, Default)]
struct Built {
    vpcs: Vec<BVpc>,
    instances: Vec<BInst>,
    /// (pcx id, requester index, accepter index)
    peerings: Vec<(String, usize, usize)>,
    /// Every operation tried, with its outcome.
    log: Vec<String>,
}

/// Runs a model operation as `acct` in `region`; a refusal leaves the world as it was.
fn try_op<T>(
    e: &mut Env,
    acct: &str,
    region: &str,
    f: impl FnOnce(&mut World, &mut Ctx<'_>) -> Result<T, Fault>,
) -> Result<T, Fault> {
    ops::tick(&mut e.w, e.now);
    let mut w = e.w.clone();
    let mut ctx = Ctx {
        account: acct.to_string(),
        region: region.to_string(),
        now: e.now,
        ids: e.ids.as_mut(),
        limits: &e.limits,
        zones: &[],
    };
    let out = f(&mut w, &mut ctx)?;
    e.w = w;
    Ok(out)
}

/// Moves the clock on and applies the due timers (peerings, instances).
fn advance(e: &mut Env, ms: i64) {
    e.now = e.now.plus_ms(ms);
    ops::tick(&mut e.w, e.now);
}

fn note<T>(log: &mut Vec<String>, what: String, r: &Result<T, Fault>) {
    match r {
        Ok(_) => log.push(what),
        Err(f) => log.push(format!("{what}  -> refused: {}", f.code)),
    }
}

impl Built {
    fn owner(&self, v: usize) -> (String, String) {
        let m = &self.vpcs[v].vpc.meta;
        (m.owner.clone(), m.region.clone())
    }

    /// The CIDR a generated choice names (a host /32 needs the world).
    fn cidr(&self, w: &World, c: CidrG) -> Option<String> {
        let nv = self.vpcs.len();
        Some(match c {
            CidrG::All => "0.0.0.0/0".into(),
            CidrG::Vpc(v) => format!("10.{}.0.0/16", self.vpcs[usize::from(v) % nv].block),
            CidrG::Subnet(v, s) => {
                let b = &self.vpcs[usize::from(v) % nv];
                b.subnets[usize::from(s) % b.subnets.len()]
                    .subnet
                    .cidr?
                    .to_string()
            }
            CidrG::Host(i) => {
                if self.instances.is_empty() {
                    return None;
                }
                let inst = &self.instances[usize::from(i) % self.instances.len()];
                format!("{}/32", primary_ip(w, &inst.id)?)
            }
            CidrG::Internet => "198.51.100.0/24".into(),
            CidrG::PublicPool => "198.18.0.0/15".into(),
            CidrG::Wide => "10.0.0.0/8".into(),
        })
    }
}

fn primary_ip(w: &World, instance: &str) -> Option<Ipv4Addr> {
    let i = w.get::<Instance>(instance)?;
    w.get::<NetworkInterface>(&i.primary_eni)?.primary_ip()
}

fn ports_of(p: PortsG) -> (i64, i64) {
    match p {
        PortsG::One(i) => {
            let x = i64::from(SERVICE_PORTS[usize::from(i) % SERVICE_PORTS.len()]);
            (x, x)
        }
        PortsG::Range(a, b) => (
            i64::from(PORT_BOUNDS[usize::from(a) % PORT_BOUNDS.len()]),
            i64::from(PORT_BOUNDS[usize::from(b) % PORT_BOUNDS.len()]),
        ),
        PortsG::Return(i) => {
            let (a, b) = RETURN_RANGES[usize::from(i) % RETURN_RANGES.len()];
            (i64::from(a), i64::from(b))
        }
        PortsG::All => (0, 65535),
    }
}

fn icmp_of(i: IcmpG) -> (i64, i64) {
    match i {
        IcmpG::Any => (-1, -1),
        IcmpG::EchoRequest => (8, -1),
        IcmpG::EchoReply => (0, -1),
    }
}

fn build(e: &mut Env, spec: &Spec) -> Built {
    let mut b = Built::default();
    for (i, g) in spec.vpcs.iter().enumerate() {
        let block = g.block.unwrap_or(u8::try_from(i + 1).unwrap_or(1));
        let owner = ACCOUNTS[usize::from(g.owner) % 3];
        let region = if g.west { WEST } else { EAST };
        let vpc = e.vpc_as(owner, region, &format!("10.{block}.0.0/16"), None);
        let vid = vpc.meta.id.clone();
        b.log.push(format!(
            "CreateVpc 10.{block}.0.0/16 as {owner} in {region} -> {vid}"
        ));
        let mut bv = BVpc {
            vpc: vpc.clone(),
            block,
            extra_sg: None,
            igw: None,
            subnets: Vec::new(),
        };
        if g.extra_group {
            let req = sg::CreateGroup {
                name: Some("extra".into()),
                description: Some("extra".into()),
                vpc_id: Some(vid.clone()),
                tags: vec![],
            };
            let r = try_op(e, owner, region, |w, c| sg::create_group(w, c, req));
            note(
                &mut b.log,
                format!("CreateSecurityGroup extra in {vid}"),
                &r,
            );
            bv.extra_sg = r.ok().map(|g| g.meta.id);
        }
        if g.open {
            let p = sg::Permission {
                protocol: Some("-1".into()),
                ipv4: vec![sg::Source {
                    value: "0.0.0.0/0".into(),
                    description: None,
                }],
                ..Default::default()
            };
            let gid = vpc.default_sg.clone();
            let r = try_op(e, owner, region, |w, c| {
                sg::authorize(w, c, &gid, false, &[p], vec![])
            });
            note(
                &mut b.log,
                format!("AuthorizeIngress {gid} -1 0.0.0.0/0"),
                &r,
            );
        }
        if g.igw.is_some() {
            let r = try_op(e, owner, region, |w, c| {
                let g = ops::igw::create(w, c, vec![])?;
                ops::igw::attach(w, c, &g.meta.id, &vid)?;
                Ok(g.meta.id)
            });
            note(
                &mut b.log,
                format!("CreateInternetGateway + attach to {vid}"),
                &r,
            );
            bv.igw = r.ok();
        }
        for (k, sg_) in g.subnets.iter().enumerate() {
            let cidr = format!("10.{block}.{}.0/24", k + 1);
            let s = e.subnet(&vpc, &cidr);
            let sid = s.meta.id.clone();
            b.log.push(format!("CreateSubnet {cidr} in {vid} -> {sid}"));
            let mut own_table = None;
            if sg_.own_table {
                let r = try_op(e, owner, region, |w, c| {
                    let rt = route::create_table(w, c, &vid, vec![])?;
                    route::associate(w, c, &rt.meta.id, Some(&sid), None)?;
                    Ok(rt.meta.id)
                });
                note(
                    &mut b.log,
                    format!("CreateRouteTable + associate {sid}"),
                    &r,
                );
                own_table = r.ok();
            }
            if sg_.custom_acl {
                let r = try_op(e, owner, region, |w, c| {
                    let a = acl::create(w, c, &vid, vec![])?;
                    let assoc = w
                        .iter::<NetworkAcl>()
                        .flat_map(|x| x.assocs.iter())
                        .find(|x| x.subnet_id == sid)
                        .map(|x| x.id.clone())
                        .ok_or_else(|| Fault::missing("association"))?;
                    acl::replace_association(w, c, &assoc, &a.meta.id)?;
                    Ok(a.meta.id)
                });
                note(
                    &mut b.log,
                    format!("CreateNetworkAcl + associate {sid}"),
                    &r,
                );
            }
            for (j, ig) in sg_.instances.iter().enumerate() {
                let ip = format!("10.{block}.{}.{}", k + 1, 10 + j);
                let mut groups = Vec::new();
                if ig.groups != 1 || bv.extra_sg.is_none() {
                    groups.push(vpc.default_sg.clone());
                }
                if ig.groups != 0 {
                    groups.extend(bv.extra_sg.clone());
                }
                let req = ops::instance::RunInstances {
                    image_id: Some("ami-0123456789abcdef0".into()),
                    min_count: Some(1),
                    max_count: Some(1),
                    interfaces: vec![ops::instance::IfaceSpec {
                        device_index: Some(0),
                        associate_public_ip: Some(ig.public),
                        delete_on_termination: Some(true),
                        eni: ops::eni::EniSpec {
                            subnet_id: Some(sid.clone()),
                            private_ip: Some(ip.clone()),
                            group_ids: groups.clone(),
                            ..Default::default()
                        },
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let r = try_op(e, owner, region, |w, c| ops::instance::run(w, c, req));
                note(
                    &mut b.log,
                    format!("RunInstances {ip} public={} groups={groups:?}", ig.public),
                    &r,
                );
                advance(e, 1_000);
                let Ok(mut v) = r else { continue };
                let id = v.remove(0).meta.id;
                if ig.stopped {
                    let ids = vec![id.clone()];
                    let r = try_op(e, owner, region, |w, c| ops::instance::stop(w, c, &ids));
                    note(&mut b.log, format!("StopInstances {id}"), &r);
                    advance(e, 1_000);
                }
                b.instances.push(BInst { id, vpc: i });
            }
            bv.subnets.push(BSubnet {
                subnet: s,
                own_table,
            });
        }
        if let (Some(ig), Some(gid)) = (&g.igw, bv.igw.clone()) {
            let mut tables = Vec::new();
            if ig.default_route {
                tables.push(vpc.main_route_table.clone());
                if ig.all_tables {
                    tables.extend(bv.subnets.iter().filter_map(|s| s.own_table.clone()));
                }
            }
            for rtb in tables {
                let spec = route::RouteSpec {
                    destination_cidr_block: Some("0.0.0.0/0".into()),
                    gateway_id: Some(gid.clone()),
                    ..Default::default()
                };
                let r = try_op(e, owner, region, |w, c| {
                    route::create_route(w, c, &rtb, &spec)
                });
                note(
                    &mut b.log,
                    format!("CreateRoute {rtb} 0.0.0.0/0 -> {gid}"),
                    &r,
                );
            }
        }
        b.vpcs.push(bv);
    }
    for op in spec.peers.iter().chain(&spec.ops) {
        apply(e, &mut b, *op);
        advance(e, 1_000);
    }
    b
}

fn apply(e: &mut Env, b: &mut Built, op: OpG) {
    let nv = b.vpcs.len();
    match op {
        OpG::Peer {
            a,
            b: pb,
            fate,
            routes,
            all_tables,
        } => {
            let ia = usize::from(a) % nv;
            let mut ib = usize::from(pb) % nv;
            if ib == ia {
                ib = (ia + 1) % nv;
            }
            let (va, vb) = (b.vpcs[ia].vpc.clone(), b.vpcs[ib].vpc.clone());
            let req = peering::CreatePeering {
                vpc_id: Some(va.meta.id.clone()),
                peer_vpc_id: Some(vb.meta.id.clone()),
                peer_owner_id: Some(vb.meta.owner.clone()),
                peer_region: Some(vb.meta.region.clone()),
                tags: vec![],
            };
            let r = try_op(e, &va.meta.owner, &va.meta.region, |w, c| {
                peering::create(w, c, req, &|_| true)
            });
            note(
                &mut b.log,
                format!(
                    "CreateVpcPeeringConnection {} -> {}",
                    va.meta.id, vb.meta.id
                ),
                &r,
            );
            let Ok(p) = r else { return };
            let id = p.id.clone();
            b.peerings.push((id.clone(), ia, ib));
            advance(e, 1_000);
            let (ao, ar) = (va.meta.owner.clone(), va.meta.region.clone());
            let (bo, br) = (vb.meta.owner.clone(), vb.meta.region.clone());
            match fate {
                Fate::Pending => {}
                Fate::Active | Fate::Deleted => {
                    let r = try_op(e, &bo, &br, |w, c| peering::accept(w, c, &id));
                    note(&mut b.log, format!("AcceptVpcPeeringConnection {id}"), &r);
                    advance(e, 1_000);
                }
                Fate::Rejected => {
                    let r = try_op(e, &bo, &br, |w, c| peering::reject(w, c, &id));
                    note(&mut b.log, format!("RejectVpcPeeringConnection {id}"), &r);
                }
            }
            let tables = |x: &BVpc| {
                let mut t = vec![x.vpc.main_route_table.clone()];
                if all_tables {
                    t.extend(x.subnets.iter().filter_map(|s| s.own_table.clone()));
                }
                t
            };
            let (ta, tb) = (tables(&b.vpcs[ia]), tables(&b.vpcs[ib]));
            let add_route = |e: &mut Env, v: &Vpc, rtb: &str, to: &Vpc, log: &mut Vec<String>| {
                let spec = route::RouteSpec {
                    destination_cidr_block: Some(to.primary_cidr().to_string()),
                    vpc_peering_connection_id: Some(id.clone()),
                    ..Default::default()
                };
                let r = try_op(e, &v.meta.owner, &v.meta.region, |w, c| {
                    route::create_route(w, c, rtb, &spec)
                });
                note(
                    log,
                    format!("CreateRoute {rtb} {} -> {id}", to.primary_cidr()),
                    &r,
                );
            };
            if routes & 1 != 0 {
                for rtb in &ta {
                    add_route(e, &va, rtb, &vb, &mut b.log);
                }
            }
            if routes & 2 != 0 {
                for rtb in &tb {
                    add_route(e, &vb, rtb, &va, &mut b.log);
                }
            }
            if let Fate::Deleted = fate {
                let r = try_op(e, &ao, &ar, |w, c| peering::delete(w, c, &id));
                note(&mut b.log, format!("DeleteVpcPeeringConnection {id}"), &r);
            }
        }
        OpG::Route {
            vpc,
            table,
            dest,
            target,
        } => {
            let v = usize::from(vpc) % nv;
            let bv = &b.vpcs[v];
            let rtb = match table {
                0 => bv.vpc.main_route_table.clone(),
                t => bv
                    .subnets
                    .get(usize::from(t - 1))
                    .and_then(|s| s.own_table.clone())
                    .unwrap_or_else(|| bv.vpc.main_route_table.clone()),
            };
            let Some(dest) = b.cidr(&e.w, dest) else {
                return;
            };
            let mut spec = route::RouteSpec {
                destination_cidr_block: Some(dest.clone()),
                ..Default::default()
            };
            match target {
                TargetG::Peering(k) => {
                    let mine: Vec<&String> = b
                        .peerings
                        .iter()
                        .filter(|(_, x, y)| *x == v || *y == v)
                        .map(|(id, _, _)| id)
                        .collect();
                    if mine.is_empty() {
                        b.log
                            .push(format!("CreateRoute {rtb} {dest} -> (no peering: skipped)"));
                        return;
                    }
                    spec.vpc_peering_connection_id =
                        Some(mine[usize::from(k) % mine.len()].clone());
                }
                TargetG::Igw => match &bv.igw {
                    Some(g) => spec.gateway_id = Some(g.clone()),
                    None => {
                        b.log.push(format!(
                            "CreateRoute {rtb} {dest} -> (no internet gateway: skipped)"
                        ));
                        return;
                    }
                },
            }
            let t = spec
                .vpc_peering_connection_id
                .clone()
                .or(spec.gateway_id.clone())
                .unwrap_or_default();
            let (o, r) = b.owner(v);
            let res = try_op(e, &o, &r, |w, c| route::create_route(w, c, &rtb, &spec));
            note(&mut b.log, format!("CreateRoute {rtb} {dest} -> {t}"), &res);
        }
        OpG::Sg {
            vpc,
            extra,
            egress,
            proto,
            ports,
            icmp,
            peer,
        } => {
            let v = usize::from(vpc) % nv;
            let bv = &b.vpcs[v];
            let group = if extra {
                bv.extra_sg.clone().unwrap_or(bv.vpc.default_sg.clone())
            } else {
                bv.vpc.default_sg.clone()
            };
            let (pname, range) = match proto {
                ProtoG::Icmp => ("icmp", Some(icmp_of(icmp))),
                ProtoG::Tcp => ("tcp", Some(ports_of(ports))),
                ProtoG::Udp => ("udp", Some(ports_of(ports))),
                ProtoG::All => ("-1", None),
            };
            let mut p = sg::Permission {
                protocol: Some(pname.into()),
                from_port: range.map(|r| r.0),
                to_port: range.map(|r| r.1),
                ..Default::default()
            };
            let label = match peer {
                SgPeerG::Cidr(c) => {
                    let Some(c) = b.cidr(&e.w, c) else {
                        return;
                    };
                    p.ipv4.push(sg::Source {
                        value: c.clone(),
                        description: None,
                    });
                    c
                }
                SgPeerG::Group { vpc, extra } => {
                    let other = &b.vpcs[usize::from(vpc) % nv];
                    let gid = if extra {
                        other
                            .extra_sg
                            .clone()
                            .unwrap_or(other.vpc.default_sg.clone())
                    } else {
                        other.vpc.default_sg.clone()
                    };
                    p.groups.push(sg::PairSpec {
                        group_id: Some(gid.clone()),
                        user_id: Some(other.vpc.meta.owner.clone()),
                        ..Default::default()
                    });
                    gid
                }
            };
            let (o, r) = b.owner(v);
            let res = try_op(e, &o, &r, |w, c| {
                sg::authorize(w, c, &group, egress, &[p], vec![])
            });
            note(
                &mut b.log,
                format!(
                    "Authorize{} {group} {pname} {range:?} {label}",
                    if egress { "Egress" } else { "Ingress" }
                ),
                &res,
            );
        }
        OpG::RevokeEgress { vpc, extra } => {
            let v = usize::from(vpc) % nv;
            let bv = &b.vpcs[v];
            let group = if extra {
                bv.extra_sg.clone().unwrap_or(bv.vpc.default_sg.clone())
            } else {
                bv.vpc.default_sg.clone()
            };
            let ids: Vec<String> =
                e.w.get::<SecurityGroup>(&group)
                    .map(|g| {
                        g.egress
                            .iter()
                            .filter(|r| {
                                r.protocol == "-1"
                                    && matches!(r.peer, SgPeer::Cidr4(n) if n.prefix_len() == 0)
                            })
                            .map(|r| r.id.clone())
                            .collect()
                    })
                    .unwrap_or_default();
            let (o, r) = b.owner(v);
            let res = try_op(e, &o, &r, |w, c| sg::revoke_ids(w, c, &group, true, &ids));
            note(
                &mut b.log,
                format!("RevokeSecurityGroupEgress {group} all to 0.0.0.0/0"),
                &res,
            );
        }
        OpG::Acl {
            vpc,
            subnet,
            rule,
            egress,
            allow,
            proto,
            ports,
            icmp,
            cidr,
        } => {
            let v = usize::from(vpc) % nv;
            let bv = &b.vpcs[v];
            let s = &bv.subnets[usize::from(subnet) % bv.subnets.len()];
            let Some(a) = acl::acl_for_subnet(&e.w, &s.subnet.meta.id).map(|a| a.meta.id.clone())
            else {
                return;
            };
            let Some(cidr) = b.cidr(&e.w, cidr) else {
                return;
            };
            let (pname, range, ic) = match proto {
                ProtoG::Icmp => ("1", None, Some(icmp_of(icmp))),
                ProtoG::Tcp => ("6", Some(ports_of(ports)), None),
                ProtoG::Udp => ("17", Some(ports_of(ports)), None),
                ProtoG::All => ("-1", None, None),
            };
            let spec = acl::EntrySpec {
                rule_number: Some(RULE_NUMBERS[usize::from(rule) % RULE_NUMBERS.len()]),
                protocol: Some(pname.into()),
                rule_action: Some(if allow { "allow" } else { "deny" }.into()),
                egress,
                cidr_block: Some(cidr.clone()),
                port_from: range.map(|r| r.0),
                port_to: range.map(|r| r.1),
                icmp_type: ic.map(|r| r.0),
                icmp_code: ic.map(|r| r.1),
                ..Default::default()
            };
            let label = format!(
                "CreateNetworkAclEntry {a} #{} {} {} proto={pname} ports={range:?} icmp={ic:?} {cidr}",
                spec.rule_number.unwrap_or(0),
                if egress { "egress" } else { "ingress" },
                if allow { "allow" } else { "deny" },
            );
            let (o, r) = b.owner(v);
            let res = try_op(e, &o, &r, |w, c| acl::create_entry(w, c, &a, &spec));
            note(&mut b.log, label, &res);
        }
        OpG::DeletePeering { k, by_accepter } => {
            if b.peerings.is_empty() {
                return;
            }
            let (id, ia, ib) = b.peerings[usize::from(k) % b.peerings.len()].clone();
            let by = if by_accepter { ib } else { ia };
            let (o, r) = b.owner(by);
            let res = try_op(e, &o, &r, |w, c| peering::delete(w, c, &id));
            note(
                &mut b.log,
                format!("DeleteVpcPeeringConnection {id} by {o}"),
                &res,
            );
        }
    }
}

// ---- a compact dump of the realised world ----------------------------------

fn dump(w: &World, b: &Built) -> String {
    let mut s = String::new();
    let acl_of = |sid: &str| acl::acl_for_subnet(w, sid).map(|a| a.meta.id.clone());
    for bv in &b.vpcs {
        let Some(v) = w.get::<Vpc>(&bv.vpc.meta.id) else {
            continue;
        };
        let igw = w
            .iter::<InternetGateway>()
            .find(|g| g.vpc_id.as_deref() == Some(v.meta.id.as_str()))
            .map(|g| g.meta.id.clone());
        let _ = writeln!(
            s,
            "VPC {} {} owner={} region={} main-rtb={} default-sg={} igw={}",
            v.meta.id,
            v.primary_cidr(),
            v.meta.owner,
            v.meta.region,
            v.main_route_table,
            v.default_sg,
            igw.as_deref().unwrap_or("-")
        );
        for bs in &bv.subnets {
            let sub = &bs.subnet;
            let rtb = route::table_for_subnet(w, sub)
                .map(|r| r.meta.id.clone())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  subnet {} {} rtb={} acl={}",
                sub.meta.id,
                sub.cidr.map(|c| c.to_string()).unwrap_or_default(),
                rtb,
                acl_of(&sub.meta.id).unwrap_or_default()
            );
            for e in w
                .iter::<NetworkInterface>()
                .filter(|e| e.subnet_id == sub.meta.id)
            {
                let inst = e
                    .attachment
                    .as_ref()
                    .and_then(|a| w.get::<Instance>(&a.instance_id));
                let _ = writeln!(
                    s,
                    "    {} {} {} public={} state={} groups={:?}",
                    inst.map(|i| i.meta.id.as_str()).unwrap_or("-"),
                    e.meta.id,
                    e.primary_ip().map(|p| p.to_string()).unwrap_or_default(),
                    ops::eni::public_ip_of(w, e)
                        .map(|p| p.to_string())
                        .unwrap_or("-".into()),
                    inst.map(|i| i.state.as_str()).unwrap_or("-"),
                    e.groups
                );
            }
        }
    }
    for p in w.iter::<Peering>() {
        let _ = writeln!(
            s,
            "peering {} {} ({}) -> {} ({}) {}",
            p.id,
            p.requester.vpc_id,
            p.requester.owner,
            p.accepter.vpc_id,
            p.accepter.owner,
            p.state.as_str()
        );
    }
    for rt in w.iter::<RouteTable>() {
        let subnets: Vec<&str> = rt
            .assocs
            .iter()
            .filter_map(|a| a.subnet_id.as_deref())
            .collect();
        let _ = writeln!(
            s,
            "route table {} vpc={}{} subnets={subnets:?}",
            rt.meta.id,
            rt.vpc_id,
            if rt.is_main() { " main" } else { "" }
        );
        for r in &rt.routes {
            let t = r.target.id().unwrap_or("local");
            let _ = writeln!(s, "  {} -> {t} [{}]", r.dest, route::route_state(w, rt, r));
        }
    }
    for g in w.iter::<SecurityGroup>() {
        let _ = writeln!(s, "sg {} vpc={} name={}", g.meta.id, g.vpc_id, g.name);
        for (dir, rules) in [("in ", &g.ingress), ("out", &g.egress)] {
            for r in rules {
                let peer = match &r.peer {
                    SgPeer::Cidr4(n) => n.to_string(),
                    SgPeer::Cidr6(n) => n.to_string(),
                    SgPeer::PrefixList(p) => p.clone(),
                    SgPeer::Group {
                        group_id,
                        peering_id,
                        ..
                    } => format!(
                        "{group_id}{}",
                        peering_id
                            .as_deref()
                            .map(|p| format!(" via {p}"))
                            .unwrap_or_default()
                    ),
                };
                let _ = writeln!(
                    s,
                    "  {dir} {} {:?}..{:?} {peer}",
                    r.protocol, r.from_port, r.to_port
                );
            }
        }
    }
    for a in w.iter::<NetworkAcl>() {
        let subnets: Vec<&str> = a.assocs.iter().map(|x| x.subnet_id.as_str()).collect();
        let _ = writeln!(
            s,
            "acl {} vpc={}{} subnets={subnets:?}",
            a.meta.id,
            a.vpc_id,
            if a.is_default { " default" } else { "" }
        );
        let mut es: Vec<&AclEntry> = a
            .entries
            .iter()
            .filter(|e| e.cidr.addr().is_ipv4())
            .collect();
        es.sort_by_key(|e| (e.egress, e.rule_number));
        for e in es {
            let _ = writeln!(
                s,
                "  {} #{} {} proto={} ports={:?} icmp={:?} {}",
                if e.egress { "out" } else { "in " },
                e.rule_number,
                e.action.as_str(),
                e.protocol,
                e.ports,
                e.icmp,
                e.cidr
            );
        }
    }
    s.push_str("operations:\n");
    for l in &b.log {
        let _ = writeln!(s, "  {l}");
    }
    s
}

fn explain(a: &Analysis) -> String {
    let mut s = String::new();
    let path = |hops: &[reach::Hop]| -> String {
        hops.iter()
            .map(|h| format!("{}:{}", h.component.kind, h.component.id))
            .collect::<Vec<_>>()
            .join(" > ")
    };
    let _ = writeln!(
        s,
        "    evaluator: reachable={} {:?} -> {:?}",
        a.reachable, a.source_ip, a.destination_ip
    );
    let _ = writeln!(s, "    forward: {}", path(&a.forward));
    let _ = writeln!(s, "    return:  {}", path(&a.ret));
    for x in &a.explanations {
        let _ = writeln!(
            s,
            "    explanation {} at {}:{}{}: {}",
            x.code,
            x.component.kind,
            x.component.id,
            x.direction
                .map(|d| format!(" ({})", d.as_str()))
                .unwrap_or_default(),
            x.detail
        );
    }
    for d in &a.diagnoses {
        let _ = writeln!(
            s,
            "    diagnosis {}: {} (fix: {})",
            d.kind.name(),
            d.message,
            d.fix
        );
    }
    s
}

// ---- the lab: one realised topology, torn down on drop ----------------------

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn namespaces() -> Vec<String> {
    match std::fs::read_dir("/run/netns") {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

fn leftovers(tag: &str) -> Vec<String> {
    let prefix = names::ns_prefix(tag);
    let inst = format!("i-{tag}");
    namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix) || n.starts_with(&inst))
        .collect()
}

struct Lab {
    tag: String,
    env: Env,
    dp: Dataplane,
    children: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        let (tag, n) = loop {
            let n = (random_u64() & 0xffff) as u16;
            let tag = format!("{n:04x}");
            if leftovers(&tag).is_empty() {
                break (tag, n);
            }
        };
        let dp = Dataplane::new(tag.clone()).unwrap_or_else(|e| {
            panic!(
                "the differential test must run as root with ip, nft and conntrack installed: {e}"
            )
        });
        Lab {
            tag,
            env: Env::tagged(n),
            dp,
            children: Vec::new(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let ids: Vec<String> = self
            .env
            .w
            .iter::<Instance>()
            .map(|i| i.meta.id.clone())
            .collect();
        if let Err(e) = vpc_dataplane::teardown(&self.tag, &ids) {
            eprintln!("teardown of {} failed: {e}", self.tag);
        }
    }
}

// ---- probing ------------------------------------------------------------------

/// The probe server: answers every TCP connection and UDP datagram on the
/// given ports with its name.
const SERVER: &str = r#"
import ctypes, selectors, socket, sys
try:
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG: SIGKILL when the test dies
except Exception:
    pass
name, bind, tcp, udp = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
sel = selectors.DefaultSelector()
for p in [int(x) for x in tcp.split(',') if x]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bind, p)); s.listen(64); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, 'tcp')
for p in [int(x) for x in udp.split(',') if x]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, p)); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, 'udp')
print('ready', flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        try:
            if key.data == 'tcp':
                c, _ = s.accept()
                c.settimeout(1)
                c.sendall(name.encode())
                c.close()
            else:
                d, a = s.recvfrom(2048)
                s.sendto(name.encode(), a)
        except OSError:
            pass
"#;

/// The probe client: connects (TCP) or sends a datagram (UDP, up to three
/// times) from an explicit source port and prints who answered.
const CLIENT: &str = r#"
import socket, sys
proto, dst, port, sport, bind = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((bind, sport))
    data = b''
    if proto == 'tcp':
        s.settimeout(1.0)
        s.connect((dst, port))
        data = s.recv(256)
    else:
        s.settimeout(0.5)
        for _ in range(3):
            s.sendto(b'probe', (dst, port))
            try:
                data, _ = s.recvfrom(256)
                break
            except socket.timeout:
                pass
except OSError as e:
    print('ERR', e)
    sys.exit(1)
if not data:
    print('ERR no reply')
    sys.exit(1)
print(data.decode())
"#;

fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[derive(Debug, Clone)]
struct Probe {
    /// Namespace the client runs in.
    src_ns: String,
    /// Source address to bind (the internet's test host), else any.
    bind: Option<Ipv4Addr>,
    dst: IpAddr,
    proto: Protocol,
    port: u16,
    sport: u16,
    /// Who must answer a TCP/UDP probe (a namespace name); None: anyone.
    responder: Option<String>,
    label: String,
    analysis: Analysis,
}

#[derive(Debug, Clone)]
struct Outcome {
    ok: bool,
    detail: String,
}

fn run_cmd(cmd: &mut Command) -> Outcome {
    match cmd.output() {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            Outcome {
                ok: o.status.success(),
                detail: format!("{out} {err}").trim().to_string(),
            }
        }
        Err(e) => Outcome {
            ok: false,
            detail: format!("spawn: {e}"),
        },
    }
}

fn probe_once(p: &Probe) -> Outcome {
    match p.proto {
        Protocol::Icmp => {
            let mut c = Command::new("ip");
            c.args([
                "netns", "exec", &p.src_ns, "ping", "-n", "-q", "-c", "1", "-W", "1",
            ]);
            if let Some(b) = p.bind {
                c.args(["-I", &b.to_string()]);
            }
            c.arg(p.dst.to_string());
            let o = run_cmd(&mut c);
            Outcome {
                ok: o.ok,
                detail: if o.ok {
                    "echo reply".into()
                } else {
                    "no echo reply".into()
                },
            }
        }
        Protocol::Tcp | Protocol::Udp => {
            let bind = p.bind.map(|b| b.to_string()).unwrap_or_default();
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &p.src_ns, python(), "-c", CLIENT])
                .arg(p.proto.as_str())
                .arg(p.dst.to_string())
                .arg(p.port.to_string())
                .arg(p.sport.to_string())
                .arg(bind);
            let o = run_cmd(&mut c);
            match (&p.responder, o.ok) {
                (Some(want), true) if o.detail != *want => Outcome {
                    ok: false,
                    detail: format!("answered by {} instead of {want}", o.detail),
                },
                (_, true) => Outcome {
                    ok: true,
                    detail: format!("answered by {}", o.detail),
                },
                (_, false) => o,
            }
        }
    }
}

/// The kernel's verdict: a positive gets three tries (convergence, a lost
/// first packet); a negative is confirmed once.
fn probe(p: &Probe) -> Outcome {
    let mut o = probe_once(p);
    let tries = if p.analysis.reachable { 3 } else { 2 };
    for _ in 1..tries {
        if o.ok == p.analysis.reachable {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        o = probe_once(p);
    }
    o
}

fn protocol_of(i: u8) -> Protocol {
    match i % 3 {
        0 => Protocol::Icmp,
        1 => Protocol::Tcp,
        _ => Protocol::Udp,
    }
}

/// Turns the generated probes into concrete tuples with the evaluator's verdicts.
fn plan_probes(lab: &Lab, b: &Built, spec: &Spec) -> Vec<Probe> {
    let w = &lab.env.w;
    let ix = reach::Index::new(w);
    let ni = b.instances.len();
    if ni == 0 {
        return Vec::new();
    }
    let holders = |ip: Ipv4Addr| {
        w.iter::<NetworkInterface>()
            .filter(|e| e.private_ips.iter().any(|p| p.ip == ip))
            .count()
    };
    let inet_ns = names::inet_ns(&lab.tag);
    let inet_exists = namespaces().contains(&inet_ns);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (k, g) in spec.probes.iter().enumerate() {
        let proto = protocol_of(g.proto);
        let port = SERVICE_PORTS[usize::from(g.port) % SERVICE_PORTS.len()];
        let sport =
            SPORT_BASES[usize::from(g.sport) % SPORT_BASES.len()] + u16::try_from(k).unwrap_or(0);
        if out.len() >= MAX_TUPLES {
            break;
        }
        let public_of = |i: &BInst| {
            w.get::<Instance>(&i.id)
                .and_then(|i| w.get::<NetworkInterface>(&i.primary_eni))
                .and_then(|e| ops::eni::public_ip_of(w, e))
        };
        // To the internet, preferably from an instance with a public IP.
        let publics: Vec<&BInst> = b
            .instances
            .iter()
            .filter(|i| public_of(i).is_some())
            .collect();
        let src = match (g.dst, publics.is_empty()) {
            (DstG::Internet, false) => publics[usize::from(g.src) % publics.len()],
            _ => &b.instances[usize::from(g.src) % ni],
        };
        let pick = |d: u8| {
            // Any instance but the source.
            let i = usize::from(d) % ni;
            if b.instances[i].id == src.id {
                &b.instances[(i + 1) % ni]
            } else {
                &b.instances[i]
            }
        };
        // What the probe is about; a choice that does not apply here falls back to an instance.
        let index_of = |x: &BInst| {
            let i = b.instances.iter().position(|y| y.id == x.id).unwrap_or(0);
            u8::try_from(i).unwrap_or(0)
        };
        let among = |d: u8, keep: &dyn Fn(&BInst) -> bool| {
            let l: Vec<&BInst> = b.instances.iter().filter(|i| keep(i)).collect();
            match l.as_slice() {
                [] => DstG::Instance(d),
                l => DstG::Instance(index_of(l[usize::from(d) % l.len()])),
            }
        };
        let peered = |v: usize| {
            b.peerings
                .iter()
                .any(|(_, x, y)| (*x == src.vpc && *y == v) || (*y == src.vpc && *x == v))
        };
        let dst = match g.dst {
            DstG::Near(d) => among(d, &|i| i.vpc == src.vpc && i.id != src.id),
            DstG::Peered(d) => among(d, &|i| peered(i.vpc)),
            DstG::PublicOf(d) => match among(d, &|i| i.id != src.id && public_of(i).is_some()) {
                DstG::Instance(x) if public_of(&b.instances[usize::from(x) % ni]).is_some() => {
                    DstG::PublicOf(x)
                }
                other => other,
            },
            DstG::FromInternet(d) if !inet_exists => DstG::Instance(d),
            DstG::FromInternet(d) => match among(d, &|i| public_of(i).is_some()) {
                DstG::Instance(x) => DstG::FromInternet(x),
                other => other,
            },
            x => x,
        };
        if ni < 2 && !matches!(dst, DstG::Internet | DstG::FromInternet(_)) {
            continue;
        }
        let (source, destination, src_ns, bind, responder) = match dst {
            DstG::Instance(d) | DstG::Near(d) | DstG::Peered(d) => {
                let dst = pick(d);
                let Some(ip) = primary_ip(w, &dst.id) else {
                    continue;
                };
                // A ping cannot tell who answered: when the address is not
                // unique, ask about the address (wherever it lands).
                let ambiguous = holders(ip) > 1;
                let d = if proto == Protocol::Icmp && ambiguous {
                    Endpoint::Address(IpAddr::V4(ip))
                } else {
                    Endpoint::Instance(dst.id.clone())
                };
                (
                    Endpoint::Instance(src.id.clone()),
                    d,
                    src.id.clone(),
                    None,
                    Some(dst.id.clone()),
                )
            }
            DstG::Internet => (
                Endpoint::Instance(src.id.clone()),
                Endpoint::Address(IpAddr::V4(INTERNET_HOST_V4)),
                src.id.clone(),
                None,
                Some(inet_ns.clone()),
            ),
            DstG::PublicOf(d) => {
                let dst = pick(d);
                let Some(public) = public_of(dst) else {
                    continue;
                };
                (
                    Endpoint::Instance(src.id.clone()),
                    Endpoint::Address(IpAddr::V4(public)),
                    src.id.clone(),
                    None,
                    Some(dst.id.clone()),
                )
            }
            DstG::FromInternet(d) => {
                let dst = &b.instances[usize::from(d) % ni];
                (
                    Endpoint::Address(IpAddr::V4(INTERNET_HOST_V4)),
                    Endpoint::Instance(dst.id.clone()),
                    inet_ns.clone(),
                    Some(INTERNET_HOST_V4),
                    Some(dst.id.clone()),
                )
            }
        };
        // A stopped instance's namespace still delivers to its own
        // addresses; AWS has no such packet (nothing runs), so skip it.
        let src_up = w.get::<Instance>(&src.id).is_some_and(Instance::is_up);
        let dst_v4 = match &destination {
            Endpoint::Address(IpAddr::V4(a)) => Some(*a),
            Endpoint::Instance(i) => primary_ip(w, i),
            _ => None,
        };
        if bind.is_none() && !src_up && dst_v4.is_some() && dst_v4 == primary_ip(w, &src.id) {
            continue;
        }
        let port_opt = (proto != Protocol::Icmp).then_some(port);
        let q = Query::new(source.clone(), destination.clone(), proto, port_opt);
        let opts = Options {
            source_port: port_opt.map(|_| sport),
        };
        let analysis = match reach::analyze_opts(&ix, w, &q, opts) {
            Ok(a) => a,
            Err(f) => panic!("the evaluator refused {q:?}: {} {}", f.code, f.message),
        };
        let Some(dst_ip) = analysis.destination_ip else {
            continue;
        };
        let key = (
            src_ns.clone(),
            dst_ip,
            proto.as_str(),
            port_opt,
            responder.clone(),
        );
        if !seen.insert(key) {
            continue;
        }
        let ep = |e: &Endpoint| match e {
            Endpoint::Instance(i) => i.clone(),
            Endpoint::NetworkInterface(i) => i.clone(),
            Endpoint::Address(a) => a.to_string(),
        };
        let label = format!(
            "{} ({}) -> {} ({dst_ip}) {}{}",
            ep(&source),
            analysis
                .source_ip
                .map(|a| a.to_string())
                .unwrap_or_default(),
            ep(&destination),
            proto.as_str(),
            port_opt
                .map(|p| format!("/{p} from port {sport}"))
                .unwrap_or_default()
        );
        out.push(Probe {
            src_ns,
            bind,
            dst: dst_ip,
            proto,
            port,
            sport,
            responder: if proto == Protocol::Icmp {
                None
            } else {
                responder
            },
            label,
            analysis,
        });
    }
    out
}

/// Starts one server per namespace that must answer TCP or UDP probes.
fn start_servers(lab: &mut Lab, probes: &[Probe]) -> Result<(), String> {
    let mut want: BTreeMap<String, (BTreeSet<u16>, BTreeSet<u16>)> = BTreeMap::new();
    for p in probes {
        let Some(r) = &p.responder else { continue };
        let e = want.entry(r.clone()).or_default();
        match p.proto {
            Protocol::Tcp => e.0.insert(p.port),
            Protocol::Udp => e.1.insert(p.port),
            Protocol::Icmp => false,
        };
    }
    let existing = namespaces();
    let inet_ns = names::inet_ns(&lab.tag);
    for (ns, (tcp, udp)) in want {
        if !existing.contains(&ns) {
            continue;
        }
        let bind = if ns == inet_ns {
            INTERNET_HOST_V4.to_string()
        } else {
            "0.0.0.0".to_string()
        };
        let join = |s: &BTreeSet<u16>| {
            s.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, python(), "-c", SERVER, &ns, &bind])
            .arg(join(&tcp))
            .arg(join(&udp))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the probe server: {e}"))?;
        let stdout = child.stdout.take();
        lab.children.push(child);
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let mut err = String::new();
            if let Some(c) = lab.children.last_mut() {
                let _ = c.kill();
                let _ = c.wait();
                if let Some(mut e) = c.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
            }
            return Err(format!("the probe server in {ns} did not start: {err}"));
        }
    }
    Ok(())
}

// ---- one topology ---------------------------------------------------------------

#[derive(Debug, Default)]
struct Stats {
    topologies: AtomicU64,
    tuples: AtomicU64,
    reachable: AtomicU64,
    disagreements: AtomicU64,
    /// Every tag used, to check that nothing is left behind.
    tags: std::sync::Mutex<Vec<String>>,
}

fn check(spec: &Spec, stats: &Stats) -> Result<(), TestCaseError> {
    let mut lab = Lab::new();
    if let Ok(mut t) = stats.tags.lock() {
        t.push(lab.tag.clone());
    }
    let b = build(&mut lab.env, spec);
    lab.dp
        .reconcile(&lab.env.w)
        .map_err(|e| TestCaseError::fail(format!("reconcile failed: {e}")))?;
    let probes = plan_probes(&lab, &b, spec);
    start_servers(&mut lab, &probes).map_err(TestCaseError::fail)?;
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let hs: Vec<_> = probes.iter().map(|p| s.spawn(move || probe(p))).collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or(Outcome {
                    ok: false,
                    detail: "probe thread panicked".into(),
                })
            })
            .collect()
    });
    stats.topologies.fetch_add(1, Ordering::Relaxed);
    stats
        .tuples
        .fetch_add(probes.len() as u64, Ordering::Relaxed);
    let mut bad = String::new();
    let mut n_bad = 0;
    let mut n_yes = 0;
    for (p, o) in probes.iter().zip(&outcomes) {
        n_yes += u64::from(p.analysis.reachable);
        if p.analysis.reachable != o.ok {
            n_bad += 1;
            let _ = writeln!(
                bad,
                "  DISAGREEMENT {}: evaluator says {}, kernel {} ({})",
                p.label,
                if p.analysis.reachable {
                    "reachable"
                } else {
                    "unreachable"
                },
                if o.ok { "passed" } else { "blocked" },
                o.detail
            );
            bad.push_str(&explain(&p.analysis));
        }
    }
    stats.reachable.fetch_add(n_yes, Ordering::Relaxed);
    stats.disagreements.fetch_add(n_bad, Ordering::Relaxed);
    println!(
        "differential: tag {} vpcs={} instances={} tuples={} reachable={} disagreements={}",
        lab.tag,
        b.vpcs.len(),
        b.instances.len(),
        probes.len(),
        n_yes,
        n_bad
    );
    if std::env::var_os("VPCD_DIFF_VERBOSE").is_some() {
        print!("{}", dump(&lab.env.w, &b));
        for (p, o) in probes.iter().zip(&outcomes) {
            let why: Vec<&str> = p.analysis.diagnoses.iter().map(|d| d.kind.name()).collect();
            println!(
                "  {} {} kernel={} {why:?}",
                if p.analysis.reachable { "yes" } else { "no " },
                p.label,
                o.ok
            );
        }
    }
    if n_bad > 0 {
        let mut all = String::new();
        for (p, o) in probes.iter().zip(&outcomes) {
            let _ = writeln!(
                all,
                "  {} {}: evaluator={} kernel={} ({})",
                if p.analysis.reachable == o.ok {
                    "ok "
                } else {
                    "BAD"
                },
                p.label,
                p.analysis.reachable,
                o.ok,
                o.detail
            );
        }
        return Err(TestCaseError::fail(format!(
            "{n_bad} disagreement(s)\n{bad}\nall tuples:\n{all}\ntopology:\n{}",
            dump(&lab.env.w, &b)
        )));
    }
    Ok(())
}

// ---- the test -------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let v = seed
            .wrapping_add(i as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn require_tools() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    assert!(
        uid == "0",
        "the differential test must run as root (it creates network namespaces; running as uid {uid}); it never skips"
    );
    let ok = Command::new(python())
        .args(["-c", "import selectors, socket"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the differential test needs python3 for its probe client and server"
    );
}

#[test]
fn evaluator_agrees_with_the_kernel() {
    require_tools();
    let cases = env_u64("VPCD_DIFF_CASES");
    let budget = env_u64("VPCD_DIFF_SECONDS").map(Duration::from_secs);
    let seed = env_u64("VPCD_DIFF_SEED").unwrap_or_else(random_u64);
    let shrink = env_u64("VPCD_DIFF_SHRINK_SECS").unwrap_or(120);
    // Without a budget, one batch of VPCD_DIFF_CASES (default 6); with one,
    // batches of 5 until the budget (or VPCD_DIFF_CASES, if given) is spent.
    let batch_size = if budget.is_some() {
        5
    } else {
        cases.unwrap_or(6)
    };
    println!(
        "differential: seed={seed} cases={} budget={}",
        cases.map_or("-".into(), |c| c.to_string()),
        budget.map_or("-".into(), |b| format!("{}s", b.as_secs()))
    );
    let stats = Stats::default();
    let start = Instant::now();
    let summary = |stats: &Stats| {
        format!(
            "DIFF-SUMMARY topologies={} tuples={} reachable={} disagreements={} seconds={} seed={seed}",
            stats.topologies.load(Ordering::Relaxed),
            stats.tuples.load(Ordering::Relaxed),
            stats.reachable.load(Ordering::Relaxed),
            stats.disagreements.load(Ordering::Relaxed),
            start.elapsed().as_secs()
        )
    };
    let mut batch: u64 = 0;
    loop {
        let done = stats.topologies.load(Ordering::Relaxed);
        let n = match (budget, cases) {
            (Some(_), Some(c)) => batch_size.min(c.saturating_sub(done)),
            _ => batch_size,
        };
        if n == 0 {
            break;
        }
        let bseed = seed.wrapping_add(batch);
        let config = Config {
            cases: u32::try_from(n).unwrap_or(u32::MAX),
            failure_persistence: None,
            max_shrink_iters: 500,
            max_shrink_time: u32::try_from(shrink * 1000).unwrap_or(u32::MAX),
            max_global_rejects: 10_000,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(bseed));
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&spec_g(), |spec| check(&spec, &stats));
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, minimal)) => {
                println!("{}", summary(&stats));
                panic!(
                    "the evaluator and the kernel disagree (seed {seed}, batch {batch}: replay with VPCD_DIFF_SEED={bseed} VPCD_DIFF_CASES={n})\n\
                     minimal (shrunk) case: {minimal:#?}\n{reason}"
                );
            }
            Err(TestError::Abort(reason)) => {
                println!("{}", summary(&stats));
                panic!("the differential test aborted (seed {seed}): {reason}");
            }
        }
        batch += 1;
        match budget {
            None => break,
            Some(b) if start.elapsed() >= b => break,
            Some(_) => {}
        }
    }
    println!("{}", summary(&stats));
    let tags = stats.tags.lock().map(|t| t.clone()).unwrap_or_default();
    let left: Vec<String> = tags.iter().flat_map(|t| leftovers(t)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
