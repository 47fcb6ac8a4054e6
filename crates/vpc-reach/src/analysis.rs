//! What an analysis is asked ([`Query`], [`Options`]) and what it finds
//! ([`Analysis`]: the paths there and back, every blocker, vpcd's diagnoses).

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The transport of the analysed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// An ICMP (or ICMPv6) echo request, answered by an echo reply.
    Icmp,
}

impl Protocol {
    /// The IP protocol number (ICMPv6 is 58 when `ipv6`).
    pub fn number(self, ipv6: bool) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp if ipv6 => 58,
            Protocol::Icmp => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// One end of the analysed path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// An instance (its primary interface, or the interface in the
    /// destination's VPC when it has several).
    Instance(String),
    /// A network interface.
    NetworkInterface(String),
    /// A bare address: another instance's, a public IP, or the simulated
    /// internet's test host.
    Address(IpAddr),
}

/// What to analyse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub protocol: Protocol,
    /// Destination port (TCP/UDP); ignored for ICMP.
    pub port: Option<u16>,
    /// Analyse IPv6 instead of IPv4 (the endpoints' IPv6 addresses). An
    /// [`Endpoint::Address`] brings its own family and overrides this.
    pub ipv6: bool,
}

impl Query {
    /// Whether an instance or interface end of the query has IPv6
    /// addresses and no IPv4 one (it is in an IPv6-only subnet), so that
    /// the question can only be about IPv6. Callers that pick the family
    /// for the user (a Network Insights path, the CLI) use it; the
    /// evaluator itself analyses the family the query names.
    pub fn has_ipv6_only_end(&self, w: &vpc_model::World) -> bool {
        [&self.source, &self.destination].iter().any(|e| {
            let eni = match e {
                Endpoint::Instance(id) => w
                    .get::<vpc_model::Instance>(id)
                    .and_then(|i| w.get::<vpc_model::NetworkInterface>(&i.primary_eni)),
                Endpoint::NetworkInterface(id) => w.get::<vpc_model::NetworkInterface>(id),
                Endpoint::Address(_) => None,
            };
            eni.is_some_and(|e| e.primary_ip().is_none() && !e.ipv6.is_empty())
        })
    }

    /// An IPv4 query.
    pub fn new(
        source: Endpoint,
        destination: Endpoint,
        protocol: Protocol,
        port: Option<u16>,
    ) -> Query {
        Query {
            source,
            destination,
            protocol,
            port,
            ipv6: false,
        }
    }
}

/// What an analysis may be told beyond the [`Query`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// The client's source port, i.e. the destination port of the reply,
    /// which the network ACLs on the way back compare. None (the default):
    /// the reply must be admitted on every port of [`EPHEMERAL_PORTS`] (the
    /// range Linux picks a client port from), so the verdict holds whatever
    /// port the client's kernel picks. Ignored for ICMP.
    pub source_port: Option<u16>,
}

/// A component on the path, as AWS's `PathComponent.Component` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Component {
    pub id: String,
    /// `instance`, `network-interface`, `security-group`, `network-acl`,
    /// `route-table`, `vpc-peering-connection`, `internet-gateway`,
    /// `natgateway`, `subnet`, `vpc`, and `internet` for the simulated
    /// internet's test host (its ID is the address).
    pub kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The configuration item that admitted (or refused) the packet at a hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Route {
        route_table_id: String,
        destination: IpNet,
        /// `local`, or the target's ID.
        target: String,
        state: &'static str,
    },
    SecurityGroupRule {
        group_id: String,
        rule_id: String,
        direction: Direction,
        protocol: String,
        port_range: Option<(i32, i32)>,
        /// The CIDR or referenced group the rule names.
        peer: String,
    },
    AclEntry {
        acl_id: String,
        rule_number: u32,
        egress: bool,
        action: &'static str,
        protocol: String,
        cidr: IpNet,
        port_range: Option<(u16, u16)>,
    },
}

/// One hop of the forward or return path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub sequence: u32,
    pub component: Component,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub rule: Option<Rule>,
}

/// Why the packet does not get through, in AWS's explanation-code terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// An AWS `ExplanationCode`, e.g. `ENI_SG_RULES_MISMATCH`, `BAD_STATE_ROUTE`.
    pub code: &'static str,
    pub component: Component,
    pub direction: Option<Direction>,
    /// The rule involved, when one is (e.g. the denying ACL entry).
    pub rule: Option<Rule>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    /// A readable sentence.
    pub detail: String,
}

/// vpcd's own named diagnosis, with a suggested fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiagnosisKind {
    TransitivePeering,
    EdgeToEdge,
    PeeringNotActive,
    MissingRoute,
    MissingReturnRoute,
    NaclDeniesReturnTraffic,
    NaclDenies,
    SecurityGroupDenies,
    SourceDestCheck,
    NoPublicIp,
    InstanceNotRunning,
    DisconnectedVpcs,
}

impl DiagnosisKind {
    /// A stable name for the API and the CLI, e.g. `transitive-peering`.
    pub fn name(self) -> &'static str {
        match self {
            DiagnosisKind::TransitivePeering => "transitive-peering",
            DiagnosisKind::EdgeToEdge => "edge-to-edge",
            DiagnosisKind::PeeringNotActive => "peering-not-active",
            DiagnosisKind::MissingRoute => "missing-route",
            DiagnosisKind::MissingReturnRoute => "missing-return-route",
            DiagnosisKind::NaclDeniesReturnTraffic => "nacl-denies-return-traffic",
            DiagnosisKind::NaclDenies => "nacl-denies",
            DiagnosisKind::SecurityGroupDenies => "security-group-denies",
            DiagnosisKind::SourceDestCheck => "source-dest-check",
            DiagnosisKind::NoPublicIp => "no-public-ip",
            DiagnosisKind::InstanceNotRunning => "instance-not-running",
            DiagnosisKind::DisconnectedVpcs => "disconnected-vpcs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub kind: DiagnosisKind,
    /// E.g. "transitive peering: vpc-A is peered with vpc-B and vpc-B with vpc-C, but vpc-A is not peered with vpc-C".
    pub message: String,
    /// E.g. "create a peering connection between vpc-A and vpc-C".
    pub fix: String,
}

/// The verdict and its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Analysis {
    pub reachable: bool,
    /// The addresses the analysed packet carries.
    pub source_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    pub forward: Vec<Hop>,
    pub ret: Vec<Hop>,
    /// Every blocker, not only the first.
    pub explanations: Vec<Explanation>,
    pub diagnoses: Vec<Diagnosis>,
}

/// The range Linux picks a client's source port from (`ip_local_port_range`).
pub const EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);

/// The simulated internet's test host (`docs/dataplane.md`, "Names").
pub const INTERNET_HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The test host's IPv6 address.
pub const INTERNET_HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);
