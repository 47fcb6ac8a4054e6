//! The resource model. Every resource is regional and owned by one account.
//!
//! These types derive serde only so that the store can persist them; the
//! wire format (XML) is the API layer's business.

use crate::ctx::Timestamp;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

pub type Tags = Vec<Tag>;

/// Fields every resource carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub id: String,
    pub owner: String,
    pub region: String,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub created: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrAssoc {
    pub assoc_id: String,
    pub cidr: Ipv4Net,
    /// `associated` or `disassociated` (kept briefly for Describe).
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Assoc {
    pub assoc_id: String,
    pub cidr: Ipv6Net,
    pub state: String,
    /// `Amazon` for Amazon-provided blocks.
    pub pool: String,
    /// Network border group (the region name for Amazon blocks).
    pub border_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub meta: Meta,
    pub cidrs: Vec<CidrAssoc>,
    #[serde(default)]
    pub ipv6: Vec<Ipv6Assoc>,
    pub is_default: bool,
    pub dns_support: bool,
    pub dns_hostnames: bool,
    pub tenancy: String,
    /// `enableNetworkAddressUsageMetrics` (stored and shown; vpcd has no CloudWatch).
    #[serde(default)]
    pub network_address_usage_metrics: bool,
    pub dhcp_options_id: String,
    pub main_route_table: String,
    pub default_acl: String,
    pub default_sg: String,
}

impl Vpc {
    /// The primary IPv4 CIDR.
    pub fn primary_cidr(&self) -> Ipv4Net {
        self.cidrs[0].cidr
    }

    /// Every associated IPv4 block.
    pub fn v4_blocks(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.cidrs
            .iter()
            .filter(|c| c.state == "associated")
            .map(|c| c.cidr)
    }

    /// Every associated IPv6 block.
    pub fn v6_blocks(&self) -> impl Iterator<Item = Ipv6Net> + '_ {
        self.ipv6
            .iter()
            .filter(|c| c.state == "associated")
            .map(|c| c.cidr)
    }

    /// Every associated block, IPv4 then IPv6.
    pub fn all_blocks(&self) -> Vec<IpNet> {
        self.v4_blocks()
            .map(IpNet::V4)
            .chain(self.v6_blocks().map(IpNet::V6))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub meta: Meta,
    pub vpc_id: String,
    /// The IPv4 block; `None` for an IPv6-only (`Ipv6Native`) subnet.
    pub cidr: Option<Ipv4Net>,
    #[serde(default)]
    pub ipv6: Vec<Ipv6Assoc>,
    /// An IPv6-only subnet (`Ipv6Native`): no IPv4 block, interfaces get
    /// only IPv6 addresses, hostnames are resource names.
    #[serde(default)]
    pub ipv6_native: bool,
    pub az: String,
    pub az_id: String,
    pub default_for_az: bool,
    pub map_public_ip: bool,
    pub assign_ipv6: bool,
    /// Addresses taken by interfaces (instances come in a later issue).
    #[serde(default)]
    pub used_ips: u64,
    /// Subnet CIDR reservations (`ops::subnet_cidr_reservation`): ranges
    /// automatic address assignment never picks from.
    #[serde(default)]
    pub cidr_reservations: Vec<SubnetCidrReservation>,
    /// `enableDns64` (stored and shown, see docs/api.md).
    #[serde(default)]
    pub enable_dns64: bool,
    /// What instances launched here get as their `PrivateDnsNameOptions`
    /// (`privateDnsNameOptionsOnLaunch`, `ops::hostname`).
    #[serde(default)]
    pub private_dns_on_launch: PrivateDnsNameOptions,
}

impl Subnet {
    /// True when the subnet's IPv4 block (if any) overlaps `net`.
    pub fn v4_overlaps(&self, net: &Ipv4Net) -> bool {
        self.cidr
            .as_ref()
            .is_some_and(|c| crate::cidr::overlaps_v4(c, net))
    }

    /// True when `ip` lies in the subnet's IPv4 block (never, for an
    /// IPv6-only subnet).
    pub fn v4_contains(&self, ip: &std::net::Ipv4Addr) -> bool {
        self.cidr.as_ref().is_some_and(|c| c.contains(ip))
    }
}

/// The guest hostname type of an instance (`HostnameType`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostnameType {
    /// `ip-10-0-1-10.ec2.internal`.
    #[default]
    IpName,
    /// `i-0123456789abcdef0.ec2.internal`.
    ResourceName,
}

/// An instance's hostname options (`PrivateDnsNameOptions`), or a subnet's
/// for instances launched into it (`PrivateDnsNameOptionsOnLaunch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrivateDnsNameOptions {
    pub hostname_type: HostnameType,
    /// The resource name answers A queries (`EnableResourceNameDnsARecord`).
    pub resource_name_a: bool,
    /// The resource name answers AAAA queries (`EnableResourceNameDnsAAAARecord`).
    pub resource_name_aaaa: bool,
}

/// A subnet CIDR reservation (`scr-…`), kept in its subnet's record and
/// owned by the subnet's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetCidrReservation {
    pub id: String,
    pub cidr: ipnet::IpNet,
    /// `prefix` or `explicit`.
    pub reservation_type: String,
    pub description: String,
    pub tags: Tags,
}

/// Where a route sends matching traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum RouteTarget {
    Local,
    Gateway(String),
    EgressOnlyGateway(String),
    NatGateway(String),
    Peering(String),
    NetworkInterface(String),
    Instance(String),
    /// A gateway VPC endpoint (`vpce-…`), shown as `gatewayId`.
    VpcEndpoint(String),
}

impl RouteTarget {
    /// The ID of the resource the route leads to (`None` for `local`).
    pub fn id(&self) -> Option<&str> {
        match self {
            RouteTarget::Local => None,
            RouteTarget::Gateway(x)
            | RouteTarget::EgressOnlyGateway(x)
            | RouteTarget::NatGateway(x)
            | RouteTarget::Peering(x)
            | RouteTarget::NetworkInterface(x)
            | RouteTarget::Instance(x)
            | RouteTarget::VpcEndpoint(x) => Some(x),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dest: IpNet,
    pub target: RouteTarget,
    /// `CreateRouteTable`, `CreateRoute` or `EnableVgwRoutePropagation`.
    pub origin: String,
    /// The prefix list this route is one entry of (`ops::route`: a route to
    /// a list is held as one route per entry, which Describe shows as one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_list: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtAssoc {
    pub id: String,
    pub main: bool,
    pub subnet_id: Option<String>,
    pub gateway_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub meta: Meta,
    pub vpc_id: String,
    pub routes: Vec<Route>,
    pub assocs: Vec<RtAssoc>,
}

impl RouteTable {
    pub fn is_main(&self) -> bool {
        self.assocs.iter().any(|a| a.main)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGateway {
    pub meta: Meta,
    /// The attached VPC, if any.
    pub vpc_id: Option<String>,
}

/// The source (ingress) or destination (egress) of one security-group rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SgPeer {
    Cidr4(Ipv4Net),
    Cidr6(Ipv6Net),
    PrefixList(String),
    Group {
        group_id: String,
        /// Account that owns the referenced group.
        user_id: String,
        /// The referenced group's VPC, when it is a peer VPC.
        vpc_id: Option<String>,
        /// The peering the reference goes through, when it is a peer VPC's group.
        peering_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgRule {
    /// `sgr-…`
    pub id: String,
    /// `-1`, `tcp`, `udp`, `icmp`, `icmpv6`, or another protocol number.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub peer: SgPeer,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub meta: Meta,
    pub vpc_id: String,
    pub name: String,
    pub description: String,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    Allow,
    Deny,
}

impl AclAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AclAction::Allow => "allow",
            AclAction::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    /// 1–32766 for user rules; 32767 (IPv4) and 32768 (IPv6) for the `*` rules.
    pub rule_number: u32,
    pub egress: bool,
    /// `-1` or a protocol number, as a string.
    pub protocol: String,
    pub action: AclAction,
    pub cidr: IpNet,
    /// (type, code) for ICMP.
    pub icmp: Option<(i32, i32)>,
    /// (from, to) for TCP and UDP.
    pub ports: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclAssoc {
    pub id: String,
    pub subnet_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAcl {
    pub meta: Meta,
    pub vpc_id: String,
    pub is_default: bool,
    pub entries: Vec<AclEntry>,
    pub assocs: Vec<AclAssoc>,
}

/// The peering-connection status codes (`VpcPeeringConnectionStateReasonCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum PcxState {
    InitiatingRequest,
    PendingAcceptance,
    Provisioning,
    Active,
    Rejected,
    Expired,
    Failed,
    Deleting,
    Deleted,
}

impl PcxState {
    pub fn as_str(self) -> &'static str {
        match self {
            PcxState::InitiatingRequest => "initiating-request",
            PcxState::PendingAcceptance => "pending-acceptance",
            PcxState::Provisioning => "provisioning",
            PcxState::Active => "active",
            PcxState::Rejected => "rejected",
            PcxState::Expired => "expired",
            PcxState::Failed => "failed",
            PcxState::Deleting => "deleting",
            PcxState::Deleted => "deleted",
        }
    }

    /// States that no action can leave and that only linger for their visibility window.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PcxState::Rejected | PcxState::Expired | PcxState::Failed | PcxState::Deleted
        )
    }

    /// States in which the connection still blocks a new one between the same VPCs.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            PcxState::InitiatingRequest
                | PcxState::PendingAcceptance
                | PcxState::Provisioning
                | PcxState::Active
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PeeringOptions {
    pub allow_dns_resolution_from_remote_vpc: bool,
}

/// One side of a peering connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSide {
    pub owner: String,
    pub vpc_id: String,
    pub region: String,
    pub options: PeeringOptions,
    /// The side's IPv4 blocks as last seen (the VPC may be gone later).
    #[serde(default)]
    pub cidrs: Vec<Ipv4Net>,
    #[serde(default)]
    pub ipv6_cidrs: Vec<Ipv6Net>,
    /// This side's own tags on the connection (each side tags its own view).
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peering {
    pub id: String,
    pub requester: PeerSide,
    pub accepter: PeerSide,
    pub state: PcxState,
    pub message: String,
    pub created: Timestamp,
    /// When the current state was entered.
    pub state_since: Timestamp,
    /// When an unaccepted request expires.
    pub expiration: Option<Timestamp>,
    /// When `initiating-request`, `provisioning` or `deleting` moves on.
    pub transition_due: Option<Timestamp>,
    /// What `initiating-request` turns into when it is due.
    #[serde(default)]
    pub fails_on_init: bool,
    /// Account that deleted or rejected it.
    pub ended_by: Option<String>,
    /// Set when the connection becomes `active`; a deleted connection keeps
    /// showing the accepter's CIDRs only if it had been active.
    #[serde(default)]
    pub was_active: bool,
}

impl Peering {
    pub fn same_account(&self) -> bool {
        self.requester.owner == self.accepter.owner
    }

    pub fn inter_region(&self) -> bool {
        self.requester.region != self.accepter.region
    }

    /// Which side (requester first) the account and region stand on, if any.
    pub fn side_of(&self, account: &str, region: &str) -> Option<Side> {
        if self.requester.owner == account && self.requester.region == region {
            Some(Side::Requester)
        } else if self.accepter.owner == account && self.accepter.region == region {
            Some(Side::Accepter)
        } else {
            None
        }
    }

    pub fn side(&self, side: Side) -> &PeerSide {
        match side {
            Side::Requester => &self.requester,
            Side::Accepter => &self.accepter,
        }
    }

    pub fn side_mut(&mut self, side: Side) -> &mut PeerSide {
        match side {
            Side::Requester => &mut self.requester,
            Side::Accepter => &mut self.accepter,
        }
    }

    /// True when the connection joins these two VPCs, in either direction.
    pub fn joins(&self, a: &str, b: &str) -> bool {
        (self.requester.vpc_id == a && self.accepter.vpc_id == b)
            || (self.requester.vpc_id == b && self.accepter.vpc_id == a)
    }

    /// The VPC on the other side from `vpc_id`.
    pub fn other_vpc(&self, vpc_id: &str) -> Option<&PeerSide> {
        if self.requester.vpc_id == vpc_id {
            Some(&self.accepter)
        } else if self.accepter.vpc_id == vpc_id {
            Some(&self.requester)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Requester,
    Accepter,
}

/// Marks an (account, region) pair whose default VPC has been made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionInit {
    /// `<account>:<region>`
    pub id: String,
    pub default_vpc: Option<String>,
    /// The region's default DHCP options set (`ops::dhcp`).
    #[serde(default)]
    pub default_dhcp_options: Option<String>,
}

/// EC2 instance states (`InstanceStateName`) with their numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }

    /// The `instanceState/code` EC2 reports.
    pub fn code(self) -> u16 {
        match self {
            InstanceState::Pending => 0,
            InstanceState::Running => 16,
            InstanceState::ShuttingDown => 32,
            InstanceState::Terminated => 48,
            InstanceState::Stopping => 64,
            InstanceState::Stopped => 80,
        }
    }
}

/// An instance: in the data plane, a network namespace named by its ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub meta: Meta,
    pub reservation_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub state: InstanceState,
    pub state_since: Timestamp,
    /// When a transitional state (pending, stopping, shutting-down) moves on.
    #[serde(default)]
    pub transition_due: Option<Timestamp>,
    pub vpc_id: String,
    pub subnet_id: String,
    pub az: String,
    /// The interface at device index 0.
    pub primary_eni: String,
    pub launch_index: u32,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub client_token: Option<String>,
    /// Attributes that change nothing in the network (shown as set).
    #[serde(default)]
    pub opts: InstanceOptions,
    /// The host it was placed on when several hosts share the World
    /// (`placement::place`); None on one host, or when no host was
    /// registered at launch (then the host serving its zone holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// An instance's metadata-service options (`MetadataOptions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetadataOptions {
    /// `optional` or `required`.
    pub http_tokens: String,
    pub http_put_response_hop_limit: u32,
    /// `enabled` or `disabled`.
    pub http_endpoint: String,
    pub http_protocol_ipv6: String,
    pub instance_metadata_tags: String,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions {
            http_tokens: "optional".into(),
            http_put_response_hop_limit: 1,
            http_endpoint: "enabled".into(),
            http_protocol_ipv6: "disabled".into(),
            instance_metadata_tags: "disabled".into(),
        }
    }
}

/// Instance attributes vpcd stores and shows but does not act on (besides
/// the termination and stop protections, which it enforces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceOptions {
    pub disable_api_termination: bool,
    pub disable_api_stop: bool,
    /// `stop` or `terminate`.
    pub shutdown_behavior: String,
    /// Base64, as given.
    pub user_data: Option<String>,
    pub ebs_optimized: bool,
    pub monitoring: bool,
    pub metadata: MetadataOptions,
    /// `standard` or `unlimited` for burstable types; None otherwise.
    pub cpu_credits: Option<String>,
    pub root_device_name: String,
    /// `default` or `dedicated`: the VPC's tenancy at launch, or
    /// `Placement.Tenancy` (ModifyVpcTenancy leaves running instances alone).
    pub tenancy: String,
    /// Hostname type and resource-name records (`ops::hostname`).
    pub private_dns: PrivateDnsNameOptions,
}

impl Default for InstanceOptions {
    fn default() -> Self {
        InstanceOptions {
            disable_api_termination: false,
            disable_api_stop: false,
            shutdown_behavior: "stop".into(),
            user_data: None,
            ebs_optimized: false,
            monitoring: false,
            metadata: MetadataOptions::default(),
            cpu_credits: None,
            root_device_name: "/dev/xvda".into(),
            tenancy: "default".into(),
            private_dns: PrivateDnsNameOptions::default(),
        }
    }
}

/// An EBS volume's attachment to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAttachment {
    pub instance_id: String,
    /// e.g. `/dev/xvda`
    pub device: String,
    pub delete_on_termination: bool,
    pub attached_at: Timestamp,
}

/// An EBS volume (`vol-…`): made by RunInstances for each block-device
/// mapping (the root volume at least); no data behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub meta: Meta,
    pub az: String,
    pub size_gib: u32,
    /// `gp2`, `gp3`, `io1`, `io2`, `st1`, `sc1` or `standard`.
    pub volume_type: String,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub attachment: Option<VolumeAttachment>,
}

impl Volume {
    /// `in-use` while attached, else `available`.
    pub fn state(&self) -> &'static str {
        if self.attachment.is_some() {
            "in-use"
        } else {
            "available"
        }
    }
}

impl Instance {
    /// Whether its namespace should pass traffic.
    pub fn is_up(&self) -> bool {
        matches!(self.state, InstanceState::Pending | InstanceState::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateIp {
    pub ip: std::net::Ipv4Addr,
    pub primary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniAttachment {
    /// `eni-attach-…`
    pub id: String,
    pub instance_id: String,
    pub device_index: u32,
    pub delete_on_termination: bool,
    pub attached_at: Timestamp,
}

/// A network interface's attachment just after DetachNetworkInterface: EC2
/// shows it (status `detached`) for a moment, and clients wait for that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detachment {
    /// The attachment ID (`eni-attach-…`).
    pub id: String,
    pub eni_id: String,
    pub attachment: EniAttachment,
    /// When it stops showing.
    pub until: Timestamp,
}

/// An elastic network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub meta: Meta,
    pub vpc_id: String,
    pub subnet_id: String,
    pub az: String,
    pub description: String,
    /// The first is the primary private IPv4 address.
    pub private_ips: Vec<PrivateIp>,
    #[serde(default)]
    pub ipv6: Vec<std::net::Ipv6Addr>,
    /// Security group IDs, in the order given.
    pub groups: Vec<String>,
    pub source_dest_check: bool,
    pub mac: String,
    pub attachment: Option<EniAttachment>,
    /// An auto-assigned public IPv4 (AssociatePublicIpAddress / MapPublicIpOnLaunch).
    #[serde(default)]
    pub public_ip: Option<std::net::Ipv4Addr>,
    /// `interface`, or `nat_gateway` for a NAT gateway's own interface.
    pub interface_type: String,
    pub requester_managed: bool,
}

impl NetworkInterface {
    /// The primary private IPv4 address; `None` for an interface in an
    /// IPv6-only subnet, which has no IPv4 address at all.
    pub fn primary_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.private_ips
            .iter()
            .find(|p| p.primary)
            .or(self.private_ips.first())
            .map(|p| p.ip)
    }

    pub fn status(&self) -> &'static str {
        if self.attachment.is_some() || self.requester_managed {
            "in-use"
        } else {
            "available"
        }
    }
}

/// NAT gateway states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum NatState {
    Pending,
    Available,
    Deleting,
    Deleted,
    Failed,
}

impl NatState {
    pub fn as_str(self) -> &'static str {
        match self {
            NatState::Pending => "pending",
            NatState::Available => "available",
            NatState::Deleting => "deleting",
            NatState::Deleted => "deleted",
            NatState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatGateway {
    pub meta: Meta,
    pub vpc_id: String,
    pub subnet_id: String,
    /// The gateway's own interface (type `nat_gateway`) in its subnet.
    pub eni_id: String,
    /// `public` (with an Elastic IP) or `private`.
    pub connectivity: String,
    pub allocation_id: Option<String>,
    pub state: NatState,
    pub state_since: Timestamp,
    #[serde(default)]
    pub transition_due: Option<Timestamp>,
}

/// An Elastic IP address (`eipalloc-…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub meta: Meta,
    pub public_ip: std::net::Ipv4Addr,
    /// `eipassoc-…` while associated.
    pub association_id: Option<String>,
    pub eni_id: Option<String>,
    pub private_ip: Option<std::net::Ipv4Addr>,
}

/// A `PathFilter` (`FilterAtSource` / `FilterAtDestination`) of a Reachability Analyzer path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PathFilter {
    pub source_address: Option<std::net::IpAddr>,
    pub source_port_range: Option<(u16, u16)>,
    pub destination_address: Option<std::net::IpAddr>,
    pub destination_port_range: Option<(u16, u16)>,
}

impl PathFilter {
    pub fn is_empty(&self) -> bool {
        *self == PathFilter::default()
    }
}

/// A Reachability Analyzer path (`nip-…`): what to analyse, kept for re-analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInsightsPath {
    pub meta: Meta,
    /// The source resource's ID (an instance or a network interface).
    pub source: String,
    pub source_arn: String,
    /// The destination resource's ID, when the destination is a resource.
    pub destination: Option<String>,
    pub destination_arn: Option<String>,
    pub source_ip: Option<std::net::IpAddr>,
    pub destination_ip: Option<std::net::IpAddr>,
    /// `tcp`, `udp`, or (a vpcd extension) `icmp`.
    pub protocol: String,
    pub destination_port: Option<u16>,
    #[serde(default)]
    pub filter_at_source: Option<PathFilter>,
    #[serde(default)]
    pub filter_at_destination: Option<PathFilter>,
    #[serde(default)]
    pub client_token: Option<String>,
}

/// A resource as an analysis names it (`AnalysisComponent`), captured when it ran.
///
/// Another account's resource that the analysis' owner may not see is
/// *withheld* (`ops::account_view`): no ID, no ARN, and a `name` that says
/// only what kind of component it is ("the peer VPC's route table").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisRef {
    /// None when the resource is withheld from the analysis' owner.
    pub id: Option<String>,
    /// `instance`, `network-interface`, `vpc-peering-connection`, …
    pub kind: String,
    pub arn: Option<String>,
    /// The resource's `Name` tag, if it had one; for a withheld resource,
    /// what kind of component it is.
    pub name: Option<String>,
}

impl AnalysisRef {
    /// The ID, or for a withheld resource what kind of component it is.
    pub fn id_or_description(&self) -> &str {
        self.id
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or(&self.kind)
    }
}

/// The configuration item that admitted or refused the packet, captured when the analysis ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnalysisRule {
    Route {
        route_table_id: String,
        destination: IpNet,
        /// `local`, or the target's ID.
        target: String,
        state: String,
        /// `CreateRouteTable`, `CreateRoute`, … (when the route still existed).
        origin: Option<String>,
    },
    SecurityGroupRule {
        group_id: String,
        rule_id: String,
        /// `ingress` or `egress`.
        direction: String,
        protocol: String,
        port_range: Option<(i32, i32)>,
        /// The CIDR, prefix list or referenced group the rule names.
        peer: String,
    },
    AclEntry {
        acl_id: String,
        rule_number: u32,
        egress: bool,
        action: String,
        protocol: String,
        cidr: IpNet,
        port_range: Option<(u16, u16)>,
    },
}

/// One hop of an analysed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisHop {
    pub sequence: u32,
    pub component: AnalysisRef,
    pub vpc: Option<AnalysisRef>,
    pub subnet: Option<AnalysisRef>,
    /// The instance an interface was attached to.
    #[serde(default)]
    pub attached_to: Option<AnalysisRef>,
    pub rule: Option<AnalysisRule>,
}

/// One blocker, in AWS's explanation-code terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisExplanation {
    pub code: String,
    pub component: AnalysisRef,
    /// `ingress` or `egress`.
    pub direction: Option<String>,
    pub rule: Option<AnalysisRule>,
    pub vpc: Option<AnalysisRef>,
    pub subnet: Option<AnalysisRef>,
    /// A readable sentence.
    pub detail: String,
}

/// vpcd's named diagnosis of a blocked path, with the suggested fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisDiagnosis {
    /// E.g. `transitive-peering` (`reach::DiagnosisKind::name`).
    pub kind: String,
    pub message: String,
    pub fix: String,
}

/// What an analysis found, frozen when it ran (later changes do not alter it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AnalysisResult {
    pub reachable: bool,
    pub source_ip: Option<std::net::IpAddr>,
    pub destination_ip: Option<std::net::IpAddr>,
    pub forward: Vec<AnalysisHop>,
    #[serde(rename = "return")]
    pub ret: Vec<AnalysisHop>,
    pub explanations: Vec<AnalysisExplanation>,
    pub diagnoses: Vec<AnalysisDiagnosis>,
}

/// `AnalysisStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum AnalysisStatus {
    Running,
    Succeeded,
    Failed,
}

impl AnalysisStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisStatus::Running => "running",
            AnalysisStatus::Succeeded => "succeeded",
            AnalysisStatus::Failed => "failed",
        }
    }
}

/// A Reachability Analyzer analysis (`nia-…`) of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInsightsAnalysis {
    /// `meta.created` is the analysis' start date.
    pub meta: Meta,
    pub path_id: String,
    /// What the analysis ended as (it runs to completion inside StartNetworkInsightsAnalysis).
    pub status: AnalysisStatus,
    pub status_message: Option<String>,
    pub warning_message: Option<String>,
    #[serde(default)]
    pub additional_accounts: Vec<String>,
    #[serde(default)]
    pub filter_in_arns: Vec<String>,
    #[serde(default)]
    pub filter_out_arns: Vec<String>,
    /// None when the analysis failed.
    pub result: Option<AnalysisResult>,
    #[serde(default)]
    pub client_token: Option<String>,
}

/// One entry of a managed prefix list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixListEntry {
    pub cidr: IpNet,
    pub description: Option<String>,
}

/// A customer-managed prefix list (`ops::prefix_list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedPrefixList {
    pub meta: Meta,
    pub name: String,
    /// `IPv4` or `IPv6`.
    pub address_family: String,
    pub max_entries: u32,
    /// 1 at creation; each change of the entries adds one.
    pub version: u64,
    /// `create-complete`, `modify-complete` or `restore-complete`.
    pub state: String,
    pub entries: Vec<PrefixListEntry>,
    /// The entries of earlier versions, oldest first (the newest 1,000 kept).
    #[serde(default)]
    pub history: Vec<(u64, Vec<PrefixListEntry>)>,
}

/// A VPC endpoint (`ops::endpoint`): a gateway endpoint routes a service's
/// AWS-managed prefix list to itself in its route tables; an interface
/// endpoint holds a requester-managed interface in each of its subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcEndpoint {
    pub meta: Meta,
    pub vpc_id: String,
    pub service_name: String,
    /// `Gateway` or `Interface`.
    pub endpoint_type: String,
    /// `available` (vpcd's endpoints are ready at once) or `deleted`.
    pub state: String,
    pub policy_document: String,
    pub route_table_ids: Vec<String>,
    pub subnet_ids: Vec<String>,
    pub group_ids: Vec<String>,
    pub network_interface_ids: Vec<String>,
    pub private_dns_enabled: bool,
}

/// An egress-only internet gateway (`ops::eigw`): IPv6 out, replies in,
/// no connection from the internet. Attached to its VPC from creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressOnlyInternetGateway {
    pub meta: Meta,
    pub vpc_id: String,
}

/// A VPC flow log (`fl-…`): which interfaces' traffic to record, which
/// traffic, in what format, and where to write it (`docs/metering.md`).
/// Immutable once created, as on AWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLog {
    pub meta: Meta,
    /// The VPC, subnet or network interface the flow log covers.
    pub resource_id: String,
    /// `VPC`, `Subnet` or `NetworkInterface`.
    pub resource_type: String,
    /// `ACCEPT`, `REJECT` or `ALL`.
    pub traffic_type: String,
    /// `s3`, or (a vpcd extension) `local-file`.
    pub destination_type: String,
    /// `arn:aws:s3:::bucket[/prefix]`, or the local file's name.
    pub destination: String,
    /// The record format, `${field}` items separated by spaces (the default
    /// v2 format when none was given).
    pub log_format: String,
    /// 60 or 600 seconds.
    pub max_aggregation_interval: u32,
    #[serde(default)]
    pub client_token: Option<String>,
}
