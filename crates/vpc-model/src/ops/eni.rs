//! Elastic network interfaces: create, delete, attach, detach, attributes;
//! private-address allocation; and the read-only views the data plane uses
//! ([`public_ip_of`], [`enis_of_vpc`], [`instance_of`], [`is_realized`]).
//!
//! Private IPv4 addresses are allocated lowest-free from the subnet, skipping
//! the four first addresses and the last one (AWS reserves them) and every
//! address any interface in the subnet holds. IPv6 addresses come the same
//! way from the subnet's IPv6 block.

use super::{check_limit, eip, new_meta, subnet, IdKind};
use crate::fault::{Fault, Result};
use crate::ids;
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const ENI: IdKind = IdKind {
    prefix: "eni",
    malformed: "InvalidNetworkInterfaceID.Malformed",
    not_found: "InvalidNetworkInterfaceID.NotFound",
    noun: "networkInterface",
};

/// The caller's interface by ID.
pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w NetworkInterface> {
    w.owned::<NetworkInterface>(id, &ctx.account, &ctx.region, ENI.nf(id)?)
}

// ---- Address allocation --------------------------------------------------

/// Every private IPv4 address an interface holds in the subnet.
pub fn taken_v4(w: &World, subnet_id: &str) -> BTreeSet<Ipv4Addr> {
    w.iter::<NetworkInterface>()
        .filter(|e| e.subnet_id == subnet_id)
        .flat_map(|e| e.private_ips.iter().map(|p| p.ip))
        .collect()
}

/// Every IPv6 address an interface holds in the subnet.
pub fn taken_v6(w: &World, subnet_id: &str) -> BTreeSet<Ipv6Addr> {
    w.iter::<NetworkInterface>()
        .filter(|e| e.subnet_id == subnet_id)
        .flat_map(|e| e.ipv6.iter().copied())
        .collect()
}

/// The addresses an interface in `net` may hold: all but the first four and the last.
fn assignable(net: &Ipv4Net) -> std::ops::Range<u32> {
    let lo = u32::from(net.network()).saturating_add(4);
    let hi = u32::from(net.broadcast());
    lo..hi.max(lo)
}

/// The lowest address of subnet `s` that automatic assignment may give: assignable,
/// not in `taken`, and in none of the subnet's CIDR reservations.
pub fn lowest_free_v4_in(s: &Subnet, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let r = assignable(s.cidr.as_ref()?);
    let mut x = r.start;
    while x < r.end {
        x = super::subnet_cidr_reservation::skip_reserved_v4(s, x)?;
        if x >= r.end {
            return None;
        }
        let ip = Ipv4Addr::from(x);
        if !taken.contains(&ip) {
            return Some(ip);
        }
        x += 1;
    }
    None
}

/// As `lowest_free_v4_in`, in the subnet's IPv6 block `net`.
pub fn lowest_free_v6_in(
    s: &Subnet,
    net: &Ipv6Net,
    taken: &BTreeSet<Ipv6Addr>,
) -> Option<Ipv6Addr> {
    let lo = u128::from(net.network()).saturating_add(4);
    let hi = u128::from(net.broadcast());
    let mut x = lo;
    while x < hi {
        x = super::subnet_cidr_reservation::skip_reserved_v6(s, x)?;
        if x >= hi {
            return None;
        }
        let ip = Ipv6Addr::from(x);
        if !taken.contains(&ip) {
            return Some(ip);
        }
        x += 1;
    }
    None
}

/// How many assignable IPv4 addresses of subnet `s` are not in `taken`
/// (none in an IPv6-only subnet).
pub fn free_v4(s: &Subnet, taken: &BTreeSet<Ipv4Addr>) -> u64 {
    let Some(net) = &s.cidr else {
        return 0;
    };
    let r = assignable(net);
    let total = u64::from(r.end - r.start);
    let used = taken
        .iter()
        .filter(|ip| r.contains(&u32::from(**ip)))
        .count() as u64;
    total.saturating_sub(used)
}

/// The subnet's IPv6 block, if it has one.
pub fn v6_block(s: &Subnet) -> Option<Ipv6Net> {
    s.ipv6
        .iter()
        .find(|a| a.state == "associated")
        .map(|a| a.cidr)
}

fn bad_ip(param: &str, s: &str) -> Fault {
    Fault::invalid_param(format!(
        "Value ({s}) for parameter {param} is invalid. Invalid format."
    ))
}

fn in_use(ip: impl std::fmt::Display) -> Fault {
    Fault::new("InvalidIPAddress.InUse", format!("Address {ip} is in use."))
}

/// Checks that `ip` may be given to a new interface in subnet `s`.
pub fn check_v4(s: &Subnet, ip: Ipv4Addr, taken: &BTreeSet<Ipv4Addr>) -> Result<()> {
    let Some(net) = s.cidr.as_ref().filter(|c| c.contains(&ip)) else {
        return Err(Fault::invalid_param(format!(
            "Address {ip} does not fall within the subnet's address range"
        )));
    };
    if !assignable(net).contains(&u32::from(ip)) {
        return Err(Fault::invalid_param(format!(
            "Address {ip} is in subnet's reserved address range"
        )));
    }
    if taken.contains(&ip) {
        return Err(in_use(ip));
    }
    Ok(())
}

fn insufficient(subnet_id: &str, what: &str) -> Fault {
    Fault::new(
        "InsufficientFreeAddressesInSubnet",
        format!(
            "There are not enough free addresses in subnet '{subnet_id}' to satisfy the requested number of {what}."
        ),
    )
}

/// A count parameter as a usize.
pub fn count_param(name: &str, v: Option<i64>) -> Result<usize> {
    match v {
        None => Ok(0),
        Some(n) if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => Err(Fault::invalid_param(format!(
            "Value ({n}) for parameter {name} is invalid. Expected a non-negative number."
        ))),
    }
}

/// What a request asks of one new interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EniSpec {
    pub subnet_id: Option<String>,
    pub description: Option<String>,
    /// `PrivateIpAddress`: the primary address.
    pub private_ip: Option<String>,
    /// `PrivateIpAddresses.N`: (address, primary).
    pub private_ips: Vec<(String, bool)>,
    pub secondary_count: Option<i64>,
    pub group_ids: Vec<String>,
    /// Group names, resolved in the subnet's VPC (RunInstances' `SecurityGroup.N`).
    pub group_names: Vec<String>,
    pub ipv6_count: Option<i64>,
    pub ipv6: Vec<String>,
    pub tags: Tags,
}

impl EniSpec {
    /// Whether it names any address, count or group (anything an existing interface already has).
    pub fn names_addresses_or_groups(&self) -> bool {
        self.private_ip.is_some()
            || !self.private_ips.is_empty()
            || self.secondary_count.is_some()
            || self.ipv6_count.is_some()
            || !self.ipv6.is_empty()
            || !self.group_ids.is_empty()
            || !self.group_names.is_empty()
    }
}

/// A checked plan for a new interface's addresses: the specific ones, and how many to pick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrPlan {
    /// No IPv4 address at all: an interface in an IPv6-only subnet.
    pub ipv6_only: bool,
    pub primary: Option<Ipv4Addr>,
    pub secondaries: Vec<Ipv4Addr>,
    pub auto_secondaries: usize,
    pub ipv6: Vec<Ipv6Addr>,
    pub auto_ipv6: usize,
}

impl AddrPlan {
    /// How many IPv4 addresses the subnet must still provide.
    pub fn auto_v4(&self) -> usize {
        usize::from(self.primary.is_none() && !self.ipv6_only) + self.auto_secondaries
    }

    /// The IPv4 addresses asked for by value.
    pub fn specific_v4(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.primary.iter().chain(&self.secondaries).copied()
    }

    /// Whether any address is asked for by value (such a request can launch one instance only).
    pub fn has_specific(&self) -> bool {
        self.primary.is_some() || !self.secondaries.is_empty() || !self.ipv6.is_empty()
    }
}

/// How many addresses one interface may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrLimits {
    /// Private IPv4 addresses, the primary included.
    pub v4: usize,
    pub v6: usize,
}

impl AddrLimits {
    /// An unattached interface: the account-wide settings (AWS's largest types' figures).
    pub fn unattached(ctx: &Ctx<'_>) -> AddrLimits {
        AddrLimits {
            v4: ctx.limits.private_ips_per_eni,
            v6: ctx.limits.ipv6_per_eni,
        }
    }

    /// An interface on an instance of type `t` (no more than the settings allow either).
    pub fn of_type(ctx: &Ctx<'_>, t: &crate::instance_types::InstanceType) -> AddrLimits {
        AddrLimits {
            v4: t.ipv4_per_interface.min(ctx.limits.private_ips_per_eni),
            v6: t.ipv6_per_interface.min(ctx.limits.ipv6_per_eni),
        }
    }

    /// The limits of the interface `e`: its instance's type's while attached.
    pub fn of_eni(w: &World, ctx: &Ctx<'_>, e: &NetworkInterface) -> AddrLimits {
        instance_of(w, e)
            .and_then(|i| crate::instance_types::get(&i.instance_type))
            .map_or_else(
                || AddrLimits::unattached(ctx),
                |t| AddrLimits::of_type(ctx, t),
            )
    }
}

/// `PrivateIpAddressLimitExceeded` for an interface that may hold `limit` addresses.
pub fn v4_limit_exceeded(limit: usize) -> Fault {
    Fault::new(
        "PrivateIpAddressLimitExceeded",
        format!(
            "Number of private addresses will exceed limit. The limit is {limit} per network interface."
        ),
    )
}

/// The IPv6 twin of [`v4_limit_exceeded`].
pub fn v6_limit_exceeded(limit: usize) -> Fault {
    Fault::new(
        "InvalidParameterValue",
        format!(
            "Number of IPv6 addresses will exceed limit. The limit is {limit} per network interface."
        ),
    )
}

/// Checks the addresses a request asks for in subnet `s` (a new unattached interface).
pub fn plan_addresses(w: &World, ctx: &Ctx<'_>, s: &Subnet, spec: &EniSpec) -> Result<AddrPlan> {
    plan_addresses_within(w, s, spec, AddrLimits::unattached(ctx))
}

/// Checks the addresses a request asks for in subnet `s`, within `lim`.
pub fn plan_addresses_within(
    w: &World,
    s: &Subnet,
    spec: &EniSpec,
    lim: AddrLimits,
) -> Result<AddrPlan> {
    let taken = taken_v4(w, &s.meta.id);
    let mut plan = AddrPlan::default();
    let mut listed: Vec<(Ipv4Addr, bool)> = Vec::new();
    for (a, primary) in &spec.private_ips {
        listed.push((parse_v4("privateIpAddresses", a)?, *primary));
    }
    let top = spec
        .private_ip
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|a| parse_v4("privateIpAddress", a))
        .transpose()?;
    for (i, (a, _)) in listed.iter().enumerate() {
        if listed[..i].iter().any(|(b, _)| b == a) {
            return Err(Fault::invalid_param(format!(
                "Address {a} is specified more than once"
            )));
        }
    }
    if s.ipv6_native
        && (top.is_some() || !listed.is_empty() || spec.secondary_count.is_some_and(|n| n > 0))
    {
        return Err(ipv6_only_no_v4(&s.meta.id));
    }
    plan.ipv6_only = s.ipv6_native;
    let marked: Vec<Ipv4Addr> = listed.iter().filter(|x| x.1).map(|x| x.0).collect();
    if marked.len() > 1 || (top.is_some() && marked.iter().any(|m| Some(*m) != top)) {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "Only one primary private IP address can be specified.",
        ));
    }
    plan.primary = top
        .or(marked.first().copied())
        .or(listed.first().map(|x| x.0));
    for (a, _) in &listed {
        if Some(*a) != plan.primary {
            plan.secondaries.push(*a);
        }
    }
    let mut seen = BTreeSet::new();
    for ip in plan.specific_v4() {
        if !seen.insert(ip) {
            return Err(Fault::invalid_param(format!(
                "Address {ip} is specified more than once"
            )));
        }
        check_v4(s, ip, &taken)?;
    }
    plan.auto_secondaries = count_param("secondaryPrivateIpAddressCount", spec.secondary_count)?;
    let total = usize::from(!plan.ipv6_only) + plan.secondaries.len() + plan.auto_secondaries;
    if total > lim.v4 {
        return Err(v4_limit_exceeded(lim.v4));
    }
    if spec.ipv6_count.is_some() && !spec.ipv6.is_empty() {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "The parameters Ipv6AddressCount and Ipv6Addresses cannot be used together.",
        ));
    }
    let v6_count = count_param("ipv6AddressCount", spec.ipv6_count)?;
    let wants_v6 = v6_count > 0 || !spec.ipv6.is_empty();
    let block = v6_block(s);
    if wants_v6 {
        let Some(block) = block else {
            return Err(Fault::invalid_param(format!(
                "You cannot assign IPv6 addresses in subnet '{}': it has no IPv6 CIDR block.",
                s.meta.id
            )));
        };
        let taken6 = taken_v6(w, &s.meta.id);
        for a in &spec.ipv6 {
            let ip: Ipv6Addr = a.trim().parse().map_err(|_| bad_ip("ipv6Addresses", a))?;
            if !block.contains(&ip) {
                return Err(Fault::invalid_param(format!(
                    "Address {ip} does not fall within the subnet's address range"
                )));
            }
            if taken6.contains(&ip) || plan.ipv6.contains(&ip) {
                return Err(in_use(ip));
            }
            plan.ipv6.push(ip);
        }
        plan.auto_ipv6 = v6_count;
    } else if s.assign_ipv6 && block.is_some() && spec.ipv6_count.is_none() {
        // AssignIpv6AddressOnCreation gives every new interface one address.
        plan.auto_ipv6 = 1;
    }
    if plan.ipv6_only && plan.ipv6.is_empty() && plan.auto_ipv6 == 0 {
        return Err(Fault::invalid_param(format!(
            "Value (0) for parameter ipv6AddressCount is invalid. An interface in the IPv6-only subnet '{}' needs at least one IPv6 address.",
            s.meta.id
        )));
    }
    if plan.ipv6.len() + plan.auto_ipv6 > lim.v6 {
        return Err(v6_limit_exceeded(lim.v6));
    }
    Ok(plan)
}

/// A private IPv4 address asked for in an IPv6-only subnet.
pub fn ipv6_only_no_v4(subnet_id: &str) -> Fault {
    Fault::invalid_param(format!(
        "The subnet '{subnet_id}' is IPv6-only: network interfaces in it cannot have private IPv4 addresses."
    ))
}

fn parse_v4(param: &str, s: &str) -> Result<Ipv4Addr> {
    s.trim().parse().map_err(|_| bad_ip(param, s))
}

/// Resolves security groups for an interface in subnet `s`: IDs, then names in
/// the subnet's VPC; none means the VPC's default group. `limit_code` is the
/// error code for too many groups.
pub fn resolve_groups(
    w: &World,
    ctx: &Ctx<'_>,
    s: &Subnet,
    ids: &[String],
    names: &[String],
    limit_code: &'static str,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        let g = super::sg::get(w, ctx, id)?;
        if g.vpc_id != s.vpc_id {
            return Err(Fault::new(
                "InvalidParameter",
                format!(
                    "Security group {id} and subnet {} belong to different networks.",
                    s.meta.id
                ),
            ));
        }
        if !out.contains(&g.meta.id) {
            out.push(g.meta.id.clone());
        }
    }
    for name in names {
        let g = w
            .scoped::<SecurityGroup>(&ctx.account, &ctx.region)
            .find(|g| g.vpc_id == s.vpc_id && g.name == *name)
            .ok_or_else(|| {
                Fault::new(
                    "InvalidGroup.NotFound",
                    format!(
                        "The security group '{name}' does not exist in VPC '{}'",
                        s.vpc_id
                    ),
                )
            })?;
        if !out.contains(&g.meta.id) {
            out.push(g.meta.id.clone());
        }
    }
    if out.is_empty() {
        if let Some(v) = w.get::<Vpc>(&s.vpc_id) {
            out.push(v.default_sg.clone());
        }
    }
    check_group_count(ctx, out.len(), limit_code)?;
    Ok(out)
}

/// Fails with `code` when an interface would have more groups than the quota.
pub fn check_group_count(ctx: &Ctx<'_>, n: usize, code: &'static str) -> Result<()> {
    if n > ctx.limits.security_groups_per_eni {
        let what = if code == "SecurityGroupsPerInstanceLimitExceeded" {
            "instance"
        } else {
            "network interface"
        };
        return Err(Fault::new(
            code,
            format!(
                "The maximum number of security groups per {what} ({}) has been exceeded.",
                ctx.limits.security_groups_per_eni
            ),
        ));
    }
    Ok(())
}

/// A fresh locally administered MAC address no interface has.
pub fn new_mac(w: &World, ctx: &mut Ctx<'_>) -> String {
    loop {
        let h = ctx.ids.hex17();
        let t = &h[h.len() - 10..];
        let mac = format!(
            "02:{}:{}:{}:{}:{}",
            &t[0..2],
            &t[2..4],
            &t[4..6],
            &t[6..8],
            &t[8..10]
        );
        if !w.iter::<NetworkInterface>().any(|e| e.mac == mac) {
            return mac;
        }
    }
}

/// A new interface, decided except for its automatic addresses.
#[derive(Debug, Clone)]
pub struct NewEni {
    pub subnet: Subnet,
    pub description: String,
    pub groups: Vec<String>,
    pub addrs: AddrPlan,
    pub tags: Tags,
    pub attachment: Option<EniAttachment>,
    /// Give it an auto-assigned public IPv4 address.
    pub public_ip: bool,
    /// `interface`, `nat_gateway` or `vpc_endpoint`.
    pub interface_type: &'static str,
}

/// Creates an interface: allocates its automatic addresses, a MAC and (if asked) a public IP.
pub fn insert(w: &mut World, ctx: &mut Ctx<'_>, n: NewEni) -> Result<NetworkInterface> {
    let s = &n.subnet;
    let mut taken = taken_v4(w, &s.meta.id);
    taken.extend(n.addrs.specific_v4());
    let next = |taken: &mut BTreeSet<Ipv4Addr>| -> Result<Ipv4Addr> {
        let ip =
            lowest_free_v4_in(s, taken).ok_or_else(|| insufficient(&s.meta.id, "addresses"))?;
        taken.insert(ip);
        Ok(ip)
    };
    let primary = match n.addrs.primary {
        Some(ip) => Some(ip),
        None if n.addrs.ipv6_only => None,
        None => Some(next(&mut taken)?),
    };
    let mut private_ips: Vec<PrivateIp> = primary
        .map(|ip| PrivateIp { ip, primary: true })
        .into_iter()
        .collect();
    for ip in &n.addrs.secondaries {
        private_ips.push(PrivateIp {
            ip: *ip,
            primary: false,
        });
    }
    for _ in 0..n.addrs.auto_secondaries {
        let ip = next(&mut taken)?;
        private_ips.push(PrivateIp { ip, primary: false });
    }
    let mut ipv6 = n.addrs.ipv6.clone();
    if n.addrs.auto_ipv6 > 0 {
        let block = v6_block(s).ok_or_else(|| insufficient(&s.meta.id, "addresses"))?;
        let mut taken6 = taken_v6(w, &s.meta.id);
        taken6.extend(ipv6.iter().copied());
        for _ in 0..n.addrs.auto_ipv6 {
            let ip = lowest_free_v6_in(s, &block, &taken6)
                .ok_or_else(|| insufficient(&s.meta.id, "addresses"))?;
            taken6.insert(ip);
            ipv6.push(ip);
        }
    }
    if n.public_ip && n.addrs.ipv6_only {
        return Err(public_ip_in_ipv6_only(&s.meta.id));
    }
    let public_ip = if n.public_ip {
        Some(eip::next_public_ip(w)?)
    } else {
        None
    };
    let meta = new_meta(ctx, "eni", n.tags);
    let mac = new_mac(w, ctx);
    let nat = n.interface_type == "nat_gateway";
    let e = NetworkInterface {
        meta,
        vpc_id: s.vpc_id.clone(),
        subnet_id: s.meta.id.clone(),
        az: s.az.clone(),
        description: n.description,
        private_ips,
        ipv6,
        groups: n.groups,
        source_dest_check: !nat,
        mac,
        attachment: n.attachment,
        public_ip,
        interface_type: n.interface_type.to_string(),
        requester_managed: nat || n.interface_type == "vpc_endpoint",
    };
    w.put(e.clone());
    Ok(e)
}

/// A public IPv4 address asked for in an IPv6-only subnet.
pub fn public_ip_in_ipv6_only(subnet_id: &str) -> Fault {
    Fault::invalid_param(format!(
        "Invalid value 'true' for associatePublicIpAddress. The subnet '{subnet_id}' is IPv6-only and has no IPv4 addresses."
    ))
}

/// Removes an interface and disassociates any Elastic IP from it.
pub fn remove_eni(w: &mut World, id: &str) {
    eip::disassociate_all(w, id);
    forget_detachments(w, id);
    w.remove::<NetworkInterface>(id);
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > 255 {
        return Err(Fault::invalid_param(
            "Value for parameter description is invalid. Length exceeds maximum of 255 characters.",
        ));
    }
    Ok(())
}

// ---- Actions -------------------------------------------------------------

/// CreateNetworkInterface.
pub fn create(w: &mut World, ctx: &mut Ctx<'_>, spec: EniSpec) -> Result<NetworkInterface> {
    let subnet_id = spec
        .subnet_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fault::missing("SubnetId"))?;
    let s = subnet::get(w, ctx, subnet_id)?.clone();
    let groups = resolve_groups(
        w,
        ctx,
        &s,
        &spec.group_ids,
        &spec.group_names,
        "SecurityGroupsPerInterfaceLimitExceeded",
    )?;
    let addrs = plan_addresses(w, ctx, &s, &spec)?;
    let description = spec.description.clone().unwrap_or_default();
    check_description(&description)?;
    super::tags::validate(&spec.tags, ctx.limits.tags_per_resource)?;
    if (free_v4(&s, &taken_v4(w, &s.meta.id)) as usize)
        < addrs.auto_v4() + addrs.specific_v4().count()
    {
        return Err(insufficient(&s.meta.id, "addresses"));
    }
    let n = w
        .scoped::<NetworkInterface>(&ctx.account, &ctx.region)
        .count();
    check_limit(
        n,
        ctx.limits.network_interfaces_per_region,
        "NetworkInterfaceLimitExceeded",
        "network interfaces",
    )?;
    insert(
        w,
        ctx,
        NewEni {
            subnet: s,
            description,
            groups,
            addrs,
            tags: spec.tags,
            attachment: None,
            public_ip: false,
            interface_type: "interface",
        },
    )
}

fn eni_in_use(id: &str) -> Fault {
    Fault::new(
        "InvalidNetworkInterface.InUse",
        format!("Interface: [{id}] in use."),
    )
}

/// DeleteNetworkInterface: only an interface that is not attached and not a NAT gateway's.
pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let e = get(w, ctx, id)?;
    if e.attachment.is_some() || e.requester_managed {
        return Err(Fault::new(
            "InvalidNetworkInterface.InUse",
            format!("The network interface '{id}' is currently in use."),
        ));
    }
    remove_eni(w, id);
    Ok(())
}

/// AttachNetworkInterface. Returns the attachment ID.
pub fn attach(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    eni_id: &str,
    instance_id: &str,
    device_index: Option<i64>,
) -> Result<String> {
    let e = get(w, ctx, eni_id)?.clone();
    let i = super::instance::get(w, ctx, instance_id)?.clone();
    let idx = device_index.ok_or_else(|| Fault::missing("DeviceIndex"))?;
    let idx = u32::try_from(idx).map_err(|_| {
        Fault::invalid_param(format!(
            "Value ({idx}) for parameter deviceIndex is invalid. Expected a non-negative number."
        ))
    })?;
    if e.attachment.is_some() || e.requester_managed {
        return Err(eni_in_use(eni_id));
    }
    if !matches!(
        i.state,
        InstanceState::Pending | InstanceState::Running | InstanceState::Stopped
    ) {
        return Err(Fault::new(
            "IncorrectInstanceState",
            format!("The instance '{instance_id}' is not in a valid state for this operation."),
        ));
    }
    if e.az != i.az {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "You may not attach a network interface to an instance if they are not in the same availability zone",
        ));
    }
    if e.vpc_id != i.vpc_id {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "You may not attach a network interface to an instance if they are not in the same VPC",
        ));
    }
    let attached = enis_of_instance(w, instance_id);
    if attached
        .iter()
        .any(|x| x.attachment.as_ref().is_some_and(|a| a.device_index == idx))
    {
        return Err(Fault::invalid_param(format!(
            "Instance '{instance_id}' already has an interface attached at device index '{idx}'."
        )));
    }
    let itype = crate::instance_types::get(&i.instance_type);
    let max = itype.map_or(ctx.limits.interfaces_per_instance, |t| {
        t.max_interfaces.min(ctx.limits.interfaces_per_instance)
    });
    if attached.len() >= max {
        return Err(attachment_limit(attached.len() + 1, &i.instance_type));
    }
    if let Some(t) = itype {
        let lim = AddrLimits::of_type(ctx, t);
        if e.private_ips.len() > lim.v4 {
            return Err(v4_limit_exceeded(lim.v4));
        }
        if e.ipv6.len() > lim.v6 {
            return Err(v6_limit_exceeded(lim.v6));
        }
    }
    let a = EniAttachment {
        id: ctx.new_id("eni-attach"),
        instance_id: instance_id.to_string(),
        device_index: idx,
        delete_on_termination: false,
        attached_at: ctx.now,
    };
    let out = a.id.clone();
    forget_detachments(w, eni_id);
    w.update::<NetworkInterface>(eni_id, |e| e.attachment = Some(a));
    Ok(out)
}

/// `AttachmentLimitExceeded`: an instance of `itype` would have `count` interfaces.
pub fn attachment_limit(count: usize, itype: &str) -> Fault {
    Fault::new(
        "AttachmentLimitExceeded",
        format!("Interface count {count} exceeds the limit for {itype}"),
    )
}

/// AssignPrivateIpAddresses: adds secondary private IPv4 addresses to an
/// interface, by value or by count (not both). With `allow_reassignment`, an
/// address another interface of the subnet holds as a secondary moves here.
/// Returns the addresses added.
pub fn assign_private_ips(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    addresses: &[String],
    count: Option<i64>,
    allow_reassignment: bool,
) -> Result<Vec<Ipv4Addr>> {
    let e = get(w, ctx, id)?.clone();
    let n = count_param("secondaryPrivateIpAddressCount", count)?;
    if !addresses.is_empty() && count.is_some() {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "The parameters privateIpAddresses and secondaryPrivateIpAddressCount cannot be used together.",
        ));
    }
    if addresses.is_empty() && n == 0 {
        return Err(Fault::missing("PrivateIpAddress"));
    }
    let s = subnet::get(w, ctx, &e.subnet_id)?.clone();
    if s.ipv6_native {
        return Err(ipv6_only_no_v4(&s.meta.id));
    }
    let mut wanted: Vec<Ipv4Addr> = Vec::new();
    for a in addresses {
        let ip = parse_v4("privateIpAddresses", a)?;
        if !wanted.contains(&ip) {
            wanted.push(ip);
        }
    }
    let lim = AddrLimits::of_eni(w, ctx, &e);
    if e.private_ips.len() + wanted.len() + n > lim.v4 {
        return Err(v4_limit_exceeded(lim.v4));
    }
    // Addresses by value: free, or (with reassignment) another interface's secondary.
    let mut moved: Vec<(String, Ipv4Addr)> = Vec::new();
    let mut taken = taken_v4(w, &s.meta.id);
    for ip in &wanted {
        if e.private_ips.iter().any(|p| p.ip == *ip) {
            continue;
        }
        let holder = w
            .iter::<NetworkInterface>()
            .find(|x| x.subnet_id == s.meta.id && x.private_ips.iter().any(|p| p.ip == *ip));
        match holder {
            Some(h)
                if allow_reassignment && h.primary_ip() != Some(*ip) && !h.requester_managed =>
            {
                moved.push((h.meta.id.clone(), *ip));
                taken.remove(ip);
            }
            _ => {}
        }
        check_v4(&s, *ip, &taken)?;
        taken.insert(*ip);
    }
    let mut added: Vec<Ipv4Addr> = wanted
        .iter()
        .copied()
        .filter(|ip| !e.private_ips.iter().any(|p| p.ip == *ip))
        .collect();
    for _ in 0..n {
        let ip =
            lowest_free_v4_in(&s, &taken).ok_or_else(|| insufficient(&s.meta.id, "addresses"))?;
        taken.insert(ip);
        added.push(ip);
    }
    for (holder, ip) in moved {
        eip::disassociate_private(w, &holder, ip);
        w.update::<NetworkInterface>(&holder, |h| h.private_ips.retain(|p| p.ip != ip));
    }
    w.update::<NetworkInterface>(id, |x| {
        for ip in &added {
            x.private_ips.push(PrivateIp {
                ip: *ip,
                primary: false,
            });
        }
    });
    Ok(added)
}

/// UnassignPrivateIpAddresses: removes secondary addresses (never the
/// primary); an Elastic IP associated with one is disassociated.
pub fn unassign_private_ips(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    addresses: &[String],
) -> Result<()> {
    let e = get(w, ctx, id)?.clone();
    if addresses.is_empty() {
        return Err(Fault::missing("PrivateIpAddress"));
    }
    let mut gone = Vec::new();
    for a in addresses {
        let ip = parse_v4("privateIpAddresses", a)?;
        match e.private_ips.iter().find(|p| p.ip == ip) {
            Some(p) if p.primary => {
                return Err(Fault::invalid_param(format!(
                    "The primary private IP address {ip} of network interface '{id}' cannot be unassigned."
                )))
            }
            Some(_) => gone.push(ip),
            None => {
                return Err(Fault::new(
                    "InvalidParameterValue",
                    format!("Some of the specified addresses are not assigned to interface {id}"),
                ))
            }
        }
    }
    for ip in &gone {
        eip::disassociate_private(w, id, *ip);
    }
    w.update::<NetworkInterface>(id, |x| x.private_ips.retain(|p| !gone.contains(&p.ip)));
    Ok(())
}

fn attachment_not_found(id: &str) -> Fault {
    Fault::new(
        "InvalidAttachmentID.NotFound",
        format!("The attachment ID '{id}' does not exist"),
    )
}

/// The caller's interface with this attachment.
fn by_attachment<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w NetworkInterface> {
    ids::check("eni-attach", "InvalidAttachmentID.Malformed", id)?;
    w.iter::<NetworkInterface>()
        .find(|e| {
            e.meta.owner == ctx.account
                && e.meta.region == ctx.region
                && e.attachment.as_ref().is_some_and(|a| a.id == id)
        })
        .ok_or_else(|| attachment_not_found(id))
}

/// DetachNetworkInterface. The primary interface (device index 0) stays.
pub fn detach(w: &mut World, ctx: &mut Ctx<'_>, attachment_id: &str) -> Result<()> {
    let e = by_attachment(w, ctx, attachment_id)?.clone();
    if e.attachment.as_ref().is_some_and(|a| a.device_index == 0) {
        return Err(Fault::new(
            "OperationNotPermitted",
            format!(
                "The network interface at device index 0 cannot be detached ({})",
                e.meta.id
            ),
        ));
    }
    if let Some(a) = e.attachment.clone() {
        w.put(Detachment {
            id: a.id.clone(),
            eni_id: e.meta.id.clone(),
            attachment: a,
            until: ctx.now.plus_ms(DETACHED_VISIBLE_MS),
        });
    }
    w.update::<NetworkInterface>(&e.meta.id, |e| e.attachment = None);
    Ok(())
}

/// How long a detached interface still shows its last attachment (status `detached`).
pub const DETACHED_VISIBLE_MS: i64 = 10_000;

/// The attachment an available interface still shows at `now`, just after DetachNetworkInterface.
pub fn recent_detachment<'w>(
    w: &'w World,
    e: &NetworkInterface,
    now: crate::Timestamp,
) -> Option<&'w EniAttachment> {
    if e.attachment.is_some() {
        return None;
    }
    w.iter::<Detachment>()
        .filter(|d| d.eni_id == e.meta.id && d.until > now)
        .max_by_key(|d| d.until)
        .map(|d| &d.attachment)
}

/// Forgets the detachments of one interface (it is attached again, or deleted).
fn forget_detachments(w: &mut World, eni_id: &str) {
    let ids: Vec<String> = w
        .iter::<Detachment>()
        .filter(|d| d.eni_id == eni_id)
        .map(|d| d.id.clone())
        .collect();
    for id in ids {
        w.remove::<Detachment>(&id);
    }
}

/// Removes the detachments no longer shown. Returns whether any went.
pub fn expire_detachments(w: &mut World, now: crate::Timestamp) -> bool {
    let ids = w.detachments.due_by(now);
    for id in &ids {
        w.remove::<Detachment>(id);
    }
    !ids.is_empty()
}

/// One ModifyNetworkInterfaceAttribute change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EniChange {
    pub groups: Option<Vec<String>>,
    pub source_dest_check: Option<bool>,
    pub description: Option<String>,
    /// (attachment ID, DeleteOnTermination)
    pub attachment: Option<(String, Option<bool>)>,
}

/// ModifyNetworkInterfaceAttribute: one attribute at a time.
pub fn modify_attribute(w: &mut World, ctx: &mut Ctx<'_>, id: &str, c: EniChange) -> Result<()> {
    let e = get(w, ctx, id)?.clone();
    let n = [
        c.groups.is_some(),
        c.source_dest_check.is_some(),
        c.description.is_some(),
        c.attachment.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    match n {
        0 => {
            return Err(Fault::missing(
                "SecurityGroupId, SourceDestCheck, Description or Attachment",
            ))
        }
        1 => {}
        _ => {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "Only one attribute can be modified at a time.",
            ))
        }
    }
    if let Some(ids) = &c.groups {
        if e.requester_managed {
            return Err(Fault::new(
                "OperationNotPermitted",
                format!("The security groups of network interface '{id}' cannot be changed."),
            ));
        }
        let s = w
            .get::<Subnet>(&e.subnet_id)
            .cloned()
            .ok_or_else(|| super::SUBNET.not_found(&e.subnet_id))?;
        if ids.is_empty() {
            return Err(Fault::missing("SecurityGroupId"));
        }
        let groups = resolve_groups(
            w,
            ctx,
            &s,
            ids,
            &[],
            "SecurityGroupsPerInterfaceLimitExceeded",
        )?;
        w.update::<NetworkInterface>(id, |e| e.groups = groups);
    }
    if let Some(v) = c.source_dest_check {
        w.update::<NetworkInterface>(id, |e| e.source_dest_check = v);
    }
    if let Some(d) = c.description {
        check_description(&d)?;
        w.update::<NetworkInterface>(id, |e| e.description = d);
    }
    if let Some((att, dot)) = c.attachment {
        ids::check("eni-attach", "InvalidAttachmentID.Malformed", &att)?;
        if e.attachment.as_ref().is_none_or(|a| a.id != att) {
            return Err(attachment_not_found(&att));
        }
        if let Some(v) = dot {
            w.update::<NetworkInterface>(id, |e| {
                if let Some(a) = e.attachment.as_mut() {
                    a.delete_on_termination = v;
                }
            });
        }
    }
    Ok(())
}

// ---- Views (pure; also what the data plane reads) -------------------------

/// The Elastic IP associated with one private address of an interface.
pub fn eip_of<'w>(w: &'w World, eni_id: &str, private: Ipv4Addr) -> Option<&'w Address> {
    w.iter::<Address>()
        .find(|a| a.eni_id.as_deref() == Some(eni_id) && a.private_ip == Some(private))
}

/// The public IPv4 address the interface's primary private address is reachable at:
/// the associated Elastic IP if any, else the auto-assigned public IP.
pub fn public_ip_of(w: &World, eni: &NetworkInterface) -> Option<Ipv4Addr> {
    let primary = eni.primary_ip()?;
    eip_of(w, &eni.meta.id, primary)
        .map(|a| a.public_ip)
        .or(eni.public_ip)
}

/// Every (private, public) IPv4 pair of the interface: the primary's (Elastic
/// or auto-assigned), then secondaries that carry an Elastic IP.
pub fn public_ips_of(w: &World, eni: &NetworkInterface) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let id = eni.meta.id.as_str();
    let eips: Vec<&Address> = w
        .iter::<Address>()
        .filter(|a| a.eni_id.as_deref() == Some(id))
        .collect();
    public_ips_given(eni, &eips)
}

/// [`public_ips_of`] for a caller that keeps its own index of Elastic IPs
/// (the analyzer's): `eips` are the addresses associated with `eni`, in ID
/// order. The primary address is reachable at its Elastic IP, else at the
/// auto-assigned public IP ([`public_ip_of`]); a secondary only at its
/// Elastic IP.
pub fn public_ips_given(eni: &NetworkInterface, eips: &[&Address]) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let Some(primary) = eni.primary_ip() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let eip = eips
        .iter()
        .find(|a| a.private_ip == Some(primary))
        .map(|a| a.public_ip);
    if let Some(p) = eip.or(eni.public_ip) {
        out.push((primary, p));
    }
    for a in eips {
        if let Some(ip) = a.private_ip.filter(|ip| *ip != primary) {
            out.push((ip, a.public_ip));
        }
    }
    out
}

/// Every interface in the VPC (instance and NAT gateway interfaces alike), by ID.
pub fn enis_of_vpc<'w>(
    w: &'w World,
    vpc_id: &'w str,
) -> impl Iterator<Item = &'w NetworkInterface> + 'w {
    w.iter::<NetworkInterface>()
        .filter(move |e| e.vpc_id == vpc_id)
}

/// The instance the interface is attached to, if any.
pub fn instance_of<'w>(w: &'w World, eni: &NetworkInterface) -> Option<&'w Instance> {
    eni.attachment
        .as_ref()
        .and_then(|a| w.get::<Instance>(&a.instance_id))
}

/// The NAT gateway that owns the interface, if it is a NAT gateway's.
pub fn nat_of<'w>(w: &'w World, eni: &NetworkInterface) -> Option<&'w NatGateway> {
    if eni.interface_type != "nat_gateway" {
        return None;
    }
    w.iter::<NatGateway>().find(|g| g.eni_id == eni.meta.id)
}

/// Whether the interface passes traffic: the data plane routes its
/// addresses. A NAT gateway's interface while its gateway is realised
/// ([`super::nat::is_realized`]: `available`, not `pending`), else
/// [`is_instance_interface_up`].
pub fn is_realized(w: &World, eni: &NetworkInterface) -> bool {
    match nat_of(w, eni) {
        Some(g) => super::nat::is_realized(w, g),
        None => is_instance_interface_up(w, eni),
    }
}

/// An instance's interface that the data plane routes (its addresses are in
/// its VPC router's tables): attached to a `pending` or `running` instance
/// whose VPC exists, in an existing subnet and VPC. `vpc-dataplane`'s
/// planner realises exactly these (`gather_enis`, `RealEni::up`); an
/// interface of a stopped instance keeps its link there, but down.
pub fn is_instance_interface_up(w: &World, eni: &NetworkInterface) -> bool {
    eni.interface_type != "nat_gateway"
        && instance_of(w, eni).is_some_and(|i| i.is_up() && w.get::<Vpc>(&i.vpc_id).is_some())
        && w.get::<Subnet>(&eni.subnet_id).is_some()
        && w.get::<Vpc>(&eni.vpc_id).is_some()
}

/// The interfaces attached to an instance, by device index.
pub fn enis_of_instance<'w>(w: &'w World, instance_id: &str) -> Vec<&'w NetworkInterface> {
    let mut v: Vec<&NetworkInterface> = w
        .iter::<NetworkInterface>()
        .filter(|e| {
            e.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == instance_id)
        })
        .collect();
    v.sort_by_key(|e| e.attachment.as_ref().map_or(0, |a| a.device_index));
    v
}

/// `ip-10-0-0-5.ec2.internal` (us-east-1) or `ip-10-0-0-5.<region>.compute.internal`.
pub fn private_dns_name(region: &str, ip: Ipv4Addr) -> String {
    let host = format!("ip-{}", ip.to_string().replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

/// `ec2-198-18-0-1.compute-1.amazonaws.com` (us-east-1) or `ec2-….<region>.compute.amazonaws.com`.
pub fn public_dns_name(region: &str, ip: Ipv4Addr) -> String {
    let host = format!("ec2-{}", ip.to_string().replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.compute-1.amazonaws.com")
    } else {
        format!("{host}.{region}.compute.amazonaws.com")
    }
}

/// The public DNS name of a public address of an interface: empty unless its
/// VPC has DNS hostnames enabled.
pub fn public_dns_of(w: &World, eni: &NetworkInterface, ip: Ipv4Addr) -> String {
    if w.get::<Vpc>(&eni.vpc_id).is_some_and(|v| v.dns_hostnames) {
        public_dns_name(&eni.meta.region, ip)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests;
