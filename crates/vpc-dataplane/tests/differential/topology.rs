//! The generated topology: pure data, so proptest can shrink it.

use super::*;

pub(crate) const ACCOUNTS: [&str; 3] = [A, B, C];
/// Ports servers listen on and rules name.
pub(crate) const SERVICE_PORTS: [u16; 4] = [22, 80, 443, 8080];
/// Client source ports (plus the probe's index): below, inside and above
/// Linux's ephemeral range, on both sides of the ACL boundaries below.
pub(crate) const SPORT_BASES: [u16; 6] = [2000, 33000, 40500, 45000, 52000, 61500];
/// Port-range ends for rules.
pub(crate) const PORT_BOUNDS: [u16; 15] = [
    0, 22, 80, 443, 1023, 1024, 8080, 32767, 32768, 40000, 40001, 50000, 60999, 61000, 65535,
];
/// Ranges that matter to return traffic (the client's port).
pub(crate) const RETURN_RANGES: [(u16, u16); 5] = [
    (32768, 40000),
    (40001, 60999),
    (1024, 65535),
    (32768, 65535),
    (40001, 65535),
];
/// Tuples probed per topology at most.
pub(crate) const MAX_TUPLES: usize = 12;
/// ACL rule numbers (100 is the default ACL's allow-all, which refuses a duplicate).
pub(crate) const RULE_NUMBERS: [i64; 12] = [1, 5, 10, 20, 50, 90, 99, 100, 101, 110, 150, 200];

#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) vpcs: Vec<VpcG>,
    /// Peerings (`OpG::Peer`), applied before the other operations.
    pub(crate) peers: Vec<OpG>,
    pub(crate) ops: Vec<OpG>,
    pub(crate) probes: Vec<ProbeG>,
}

#[derive(Debug, Clone)]
pub(crate) struct VpcG {
    /// `10.<block>.0.0/16`; None: a block of its own (its index + 1), Some: maybe shared.
    pub(crate) block: Option<u8>,
    pub(crate) owner: u8,
    pub(crate) west: bool,
    pub(crate) igw: Option<IgwG>,
    pub(crate) extra_group: bool,
    /// The default group admits everything from 0.0.0.0/0.
    pub(crate) open: bool,
    pub(crate) subnets: Vec<SubnetG>,
}

#[derive(Debug, Clone)]
pub(crate) struct IgwG {
    /// 0.0.0.0/0 to it in the main table,
    pub(crate) default_route: bool,
    /// and in the subnets' own tables too.
    pub(crate) all_tables: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SubnetG {
    pub(crate) own_table: bool,
    /// A new ACL (deny-all until entries are added).
    pub(crate) custom_acl: bool,
    pub(crate) instances: Vec<InstG>,
}

#[derive(Debug, Clone)]
pub(crate) struct InstG {
    pub(crate) public: bool,
    /// 0: the default group, 1: the extra group, 2: both.
    pub(crate) groups: u8,
    pub(crate) stopped: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Fate {
    Pending,
    Active,
    Rejected,
    Deleted,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum ProtoG {
    Icmp,
    Tcp,
    Udp,
    All,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum PortsG {
    One(u8),
    Range(u8, u8),
    Return(u8),
    All,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum IcmpG {
    Any,
    EchoRequest,
    EchoReply,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum CidrG {
    All,
    Vpc(u8),
    Subnet(u8, u8),
    Host(u8),
    Internet,
    PublicPool,
    Wide,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum SgPeerG {
    Cidr(CidrG),
    Group { vpc: u8, extra: bool },
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum TargetG {
    /// The n-th peering (in creation order) that touches the table's VPC.
    Peering(u8),
    Igw,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum OpG {
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
pub(crate) enum DstG {
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
pub(crate) struct ProbeG {
    pub(crate) src: u8,
    pub(crate) dst: DstG,
    pub(crate) proto: u8,
    pub(crate) port: u8,
    pub(crate) sport: u8,
}

pub(crate) fn proto_g() -> impl Strategy<Value = ProtoG> {
    prop_oneof![
        3 => Just(ProtoG::Icmp),
        4 => Just(ProtoG::Tcp),
        3 => Just(ProtoG::Udp),
        2 => Just(ProtoG::All),
    ]
}

pub(crate) fn ports_g() -> impl Strategy<Value = PortsG> {
    prop_oneof![
        4 => (0u8..4).prop_map(PortsG::One),
        2 => (0u8..15, 0u8..15).prop_map(|(a, b)| PortsG::Range(a.min(b), a.max(b))),
        2 => (0u8..5).prop_map(PortsG::Return),
        2 => Just(PortsG::All),
    ]
}

pub(crate) fn icmp_g() -> impl Strategy<Value = IcmpG> {
    prop_oneof![
        3 => Just(IcmpG::Any),
        2 => Just(IcmpG::EchoRequest),
        1 => Just(IcmpG::EchoReply),
    ]
}

pub(crate) fn cidr_g() -> impl Strategy<Value = CidrG> {
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

pub(crate) fn route_dest_g() -> impl Strategy<Value = CidrG> {
    prop_oneof![
        4 => any::<u8>().prop_map(CidrG::Vpc),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(v, s)| CidrG::Subnet(v, s)),
        2 => Just(CidrG::All),
        1 => Just(CidrG::Wide),
        1 => any::<u8>().prop_map(CidrG::Host),
        1 => Just(CidrG::Internet),
    ]
}

pub(crate) fn fate_g() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Active),
        1 => Just(Fate::Pending),
        1 => Just(Fate::Rejected),
        1 => Just(Fate::Deleted),
    ]
}

pub(crate) fn peer_g() -> impl Strategy<Value = OpG> {
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

pub(crate) fn op_g() -> impl Strategy<Value = OpG> {
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

pub(crate) fn vpc_g() -> impl Strategy<Value = VpcG> {
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

pub(crate) fn probe_g() -> impl Strategy<Value = ProbeG> {
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

pub(crate) fn spec_g() -> impl Strategy<Value = Spec> {
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
