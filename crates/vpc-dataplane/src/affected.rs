//! Which namespaces a change between two Worlds can affect (pure).
//!
//! The reconciler plans only these and keeps every other namespace's plan
//! from the previous pass. The scope must be a superset of the namespaces
//! whose plan differs, so each changed record is mapped to every namespace
//! whose plan can read it, in the old World or the new one:
//!
//! * a VPC: its router, the routers of VPCs peered with it, its instances
//!   and NAT gateways, and the simulated internet when a gateway is attached
//!   to it (the internet routes its IPv6 blocks);
//! * a subnet: its VPC's router, and the interfaces and NAT gateways in it;
//! * a route table: the routers of its VPC and of every subnet it is
//!   associated with;
//! * an internet gateway: the router of the VPC it is (or was) attached to,
//!   the internet namespace, and routers whose routes name it;
//! * a security group: the routers of VPCs with interfaces in it; when it
//!   appears or disappears, also those of groups with rules referencing it
//!   (staleness);
//! * a network ACL: the routers of its VPC and of its subnets;
//! * a peering: both VPCs' routers, routers whose routes name it, and the
//!   routers using any group of either VPC (staleness across peerings);
//! * an instance: its namespace, and its interfaces (below);
//! * an interface: its VPC's router and its instance's namespace, closed
//!   over the interfaces it can collide with (the same link name in its VPC,
//!   the same device on its instance); the groups it is (or was) in, whose
//!   member sets change, and so every router with a rule referencing them;
//!   NAT gateways whose interface it is;
//! * a NAT gateway: its namespace, its VPC's router and the other NAT
//!   gateways there (link names), routers whose routes name it or its
//!   interface;
//! * anything a route can target (gateway, peering, NAT gateway, interface,
//!   instance): the routers of the route tables naming it (route state);
//! * public IPv4 addresses: every address an affected interface, NAT
//!   gateway, changed Elastic IP or interface one is (or was) associated
//!   with may claim, in either World, re-plans the
//!   internet and the router of every VPC with a claim on it (one address
//!   claimed twice goes to the first claimant, so a change in one VPC can
//!   move an address in another).
//!
//! Region markers, Reachability Analyzer paths and analyses, DHCP options
//! sets (immutable; which one a VPC uses is a field of the VPC) and Route 53
//! zones (the DNS server reads them per query) are not read by the planner.
//!
//! `tests::incremental_plan_equals_full_plan` checks the result against a
//! full re-plan on random Worlds and random sequences of changes.

use crate::names::eni_link;
use crate::plan::Scope;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use vpc_model::{
    Address, EgressOnlyInternetGateway, Instance, InternetGateway, ManagedPrefixList, NatGateway,
    NetworkAcl, NetworkInterface, Peering, Record, RouteTable, SecurityGroup, SgPeer, Subnet, Vpc,
    VpcEndpoint, World,
};

/// The namespaces to re-plan, and how many records changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Affected {
    pub scope: Scope,
    pub changed_records: usize,
}

/// Each record that differs between the two Worlds, as (old, new).
fn changes<'a, R: Record + PartialEq>(
    old: &'a World,
    new: &'a World,
) -> Vec<(Option<&'a R>, Option<&'a R>)> {
    R::table(new).changes_since(R::table(old)).collect()
}

/// The versions that exist of a changed record.
fn versions<'a, R>(change: &(Option<&'a R>, Option<&'a R>)) -> impl Iterator<Item = &'a R> {
    change.0.into_iter().chain(change.1)
}

/// The VPC of a subnet, in whichever World has it.
fn subnet_vpc(old: &World, new: &World, subnet_id: &str) -> Vec<String> {
    [old, new]
        .iter()
        .filter_map(|w| w.get::<Subnet>(subnet_id).map(|s| s.vpc_id.clone()))
        .collect()
}

/// Derives the namespaces whose plan can differ between `old` and `new`.
pub fn affected(old: &World, new: &World) -> Affected {
    let mut s = Scope::default();
    let mut changed_records = 0;
    // Interfaces whose realisation or contents may differ (closed over collisions below).
    let mut enis: BTreeSet<String> = BTreeSet::new();
    // Instances whose interfaces all need a look.
    let mut instances: BTreeSet<String> = BTreeSet::new();
    // IDs a route may name whose state or realisation may differ.
    let mut targets: BTreeSet<String> = BTreeSet::new();
    // Groups whose rules are rendered differently (their users re-plan).
    let mut groups_used: BTreeSet<String> = BTreeSet::new();
    // Groups whose existence or members differ (routers referencing them re-plan).
    let mut groups_referenced: BTreeSet<String> = BTreeSet::new();
    // VPCs whose groups' references across peerings may turn stale or live.
    let mut peered_vpcs: BTreeSet<String> = BTreeSet::new();
    let mut nats: BTreeSet<String> = BTreeSet::new();
    let mut nat_enis: BTreeSet<String> = BTreeSet::new();
    let mut subnets: BTreeSet<String> = BTreeSet::new();
    let mut vpcs_changed: BTreeSet<String> = BTreeSet::new();

    for c in changes::<Vpc>(old, new) {
        changed_records += 1;
        for v in versions(&c) {
            vpcs_changed.insert(v.meta.id.clone());
        }
    }
    for c in changes::<Subnet>(old, new) {
        changed_records += 1;
        for x in versions(&c) {
            s.vpcs.insert(x.vpc_id.clone());
            subnets.insert(x.meta.id.clone());
        }
    }
    for c in changes::<RouteTable>(old, new) {
        changed_records += 1;
        for rt in versions(&c) {
            s.vpcs.insert(rt.vpc_id.clone());
            for a in &rt.assocs {
                if let Some(sub) = &a.subnet_id {
                    s.vpcs.extend(subnet_vpc(old, new, sub));
                }
            }
        }
    }
    for c in changes::<InternetGateway>(old, new) {
        changed_records += 1;
        s.inet = true;
        for g in versions(&c) {
            s.vpcs.extend(g.vpc_id.clone());
            targets.insert(g.meta.id.clone());
        }
    }
    for c in changes::<SecurityGroup>(old, new) {
        changed_records += 1;
        for g in versions(&c) {
            groups_used.insert(g.meta.id.clone());
            if c.0.is_none() || c.1.is_none() {
                groups_referenced.insert(g.meta.id.clone());
            }
        }
    }
    // Prefix lists whose entries differ (groups naming them re-render).
    let mut lists: BTreeSet<String> = BTreeSet::new();
    for c in changes::<ManagedPrefixList>(old, new) {
        changed_records += 1;
        for l in versions(&c) {
            lists.insert(l.meta.id.clone());
        }
    }
    for c in changes::<EgressOnlyInternetGateway>(old, new) {
        changed_records += 1;
        s.inet = true;
        for g in versions(&c) {
            s.vpcs.insert(g.vpc_id.clone());
            targets.insert(g.meta.id.clone());
        }
    }
    for c in changes::<VpcEndpoint>(old, new) {
        changed_records += 1;
        for e in versions(&c) {
            s.vpcs.insert(e.vpc_id.clone());
            targets.insert(e.meta.id.clone());
        }
    }
    for c in changes::<NetworkAcl>(old, new) {
        changed_records += 1;
        for a in versions(&c) {
            s.vpcs.insert(a.vpc_id.clone());
            for x in &a.assocs {
                s.vpcs.extend(subnet_vpc(old, new, &x.subnet_id));
            }
        }
    }
    for c in changes::<Peering>(old, new) {
        changed_records += 1;
        for p in versions(&c) {
            targets.insert(p.id.clone());
            for v in [&p.requester.vpc_id, &p.accepter.vpc_id] {
                s.vpcs.insert(v.clone());
                peered_vpcs.insert(v.clone());
            }
        }
    }
    for c in changes::<Instance>(old, new) {
        changed_records += 1;
        for i in versions(&c) {
            instances.insert(i.meta.id.clone());
            s.vpcs.insert(i.vpc_id.clone());
        }
    }
    for c in changes::<NetworkInterface>(old, new) {
        changed_records += 1;
        for e in versions(&c) {
            enis.insert(e.meta.id.clone());
            groups_referenced.extend(e.groups.iter().cloned());
            if e.interface_type == "nat_gateway" {
                nat_enis.insert(e.meta.id.clone());
            }
        }
    }
    for c in changes::<NatGateway>(old, new) {
        changed_records += 1;
        for n in versions(&c) {
            nats.insert(n.meta.id.clone());
        }
    }
    // Public addresses that may be claimed differently.
    let mut public: BTreeSet<Ipv4Addr> = BTreeSet::new();
    // Interfaces an Elastic IP moved to or from: which of their addresses
    // they claim may change (the first Elastic IP on the primary wins).
    let mut eip_enis: BTreeSet<String> = BTreeSet::new();
    for c in changes::<Address>(old, new) {
        changed_records += 1;
        for a in versions(&c) {
            public.insert(a.public_ip);
            eip_enis.extend(a.eni_id.clone());
        }
    }

    // A VPC appearing or going: everything in it, and its peers' routers.
    if !vpcs_changed.is_empty() {
        s.vpcs.extend(vpcs_changed.iter().cloned());
        // The internet namespace routes the IPv6 blocks of VPCs with a gateway.
        for w in [old, new] {
            if w.iter::<InternetGateway>()
                .any(|g| g.vpc_id.as_ref().is_some_and(|v| vpcs_changed.contains(v)))
            {
                s.inet = true;
            }
        }
        for w in [old, new] {
            for p in w.iter::<Peering>() {
                if vpcs_changed.contains(&p.requester.vpc_id)
                    || vpcs_changed.contains(&p.accepter.vpc_id)
                {
                    s.vpcs.insert(p.requester.vpc_id.clone());
                    s.vpcs.insert(p.accepter.vpc_id.clone());
                }
            }
        }
        for i in new.iter::<Instance>() {
            if vpcs_changed.contains(&i.vpc_id) {
                instances.insert(i.meta.id.clone());
            }
        }
        for e in new.iter::<NetworkInterface>() {
            if vpcs_changed.contains(&e.vpc_id) {
                enis.insert(e.meta.id.clone());
            }
        }
        for n in new.iter::<NatGateway>() {
            if vpcs_changed.contains(&n.vpc_id) {
                nats.insert(n.meta.id.clone());
            }
        }
    }
    // A subnet appearing, going or changing: the interfaces and NAT gateways in it.
    if !subnets.is_empty() {
        for e in new.iter::<NetworkInterface>() {
            if subnets.contains(&e.subnet_id) {
                enis.insert(e.meta.id.clone());
            }
        }
        for n in new.iter::<NatGateway>() {
            if subnets.contains(&n.subnet_id) {
                nats.insert(n.meta.id.clone());
            }
        }
    }

    // Interfaces: those of the instances above, closed over collisions of
    // link names in a VPC and of devices on an instance.
    if !enis.is_empty() || !instances.is_empty() {
        let mut by_link: BTreeMap<(&str, String), Vec<&str>> = BTreeMap::new();
        let mut by_instance: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for e in new.iter::<NetworkInterface>() {
            by_link
                .entry((e.vpc_id.as_str(), eni_link(&e.meta.id)))
                .or_default()
                .push(&e.meta.id);
            if let Some(a) = &e.attachment {
                by_instance
                    .entry(a.instance_id.as_str())
                    .or_default()
                    .push(&e.meta.id);
            }
        }
        let mut work: Vec<String> = enis.iter().cloned().collect();
        for i in &instances {
            for e in by_instance.get(i.as_str()).into_iter().flatten() {
                if enis.insert(e.to_string()) {
                    work.push(e.to_string());
                }
            }
        }
        while let Some(id) = work.pop() {
            for w in [old, new] {
                let Some(e) = w.get::<NetworkInterface>(&id) else {
                    continue;
                };
                let mut near: Vec<&str> = by_link
                    .get(&(e.vpc_id.as_str(), eni_link(&e.meta.id)))
                    .cloned()
                    .unwrap_or_default();
                if let Some(a) = &e.attachment {
                    instances.insert(a.instance_id.clone());
                    near.extend(
                        by_instance
                            .get(a.instance_id.as_str())
                            .into_iter()
                            .flatten(),
                    );
                }
                for n in near {
                    if enis.insert(n.to_string()) {
                        work.push(n.to_string());
                    }
                }
            }
        }
        for id in &enis {
            targets.insert(id.clone());
            for w in [old, new] {
                if let Some(e) = w.get::<NetworkInterface>(id) {
                    s.vpcs.insert(e.vpc_id.clone());
                    if e.interface_type == "nat_gateway" {
                        nat_enis.insert(id.clone());
                    }
                }
            }
        }
        for i in &instances {
            targets.insert(i.clone());
            for w in [old, new] {
                if let Some(x) = w.get::<Instance>(i) {
                    s.vpcs.insert(x.vpc_id.clone());
                }
            }
        }
        s.instances.extend(instances.iter().cloned());
    }

    // NAT gateways: those whose interface changed, and their VPCs' others (link names).
    if !nat_enis.is_empty() {
        for w in [old, new] {
            for n in w.iter::<NatGateway>() {
                if nat_enis.contains(&n.eni_id) {
                    nats.insert(n.meta.id.clone());
                }
            }
        }
    }
    if !nats.is_empty() {
        let mut nat_vpcs: BTreeSet<String> = BTreeSet::new();
        for id in &nats {
            for w in [old, new] {
                if let Some(n) = w.get::<NatGateway>(id) {
                    nat_vpcs.insert(n.vpc_id.clone());
                    targets.insert(n.eni_id.clone());
                    nat_enis.insert(n.eni_id.clone());
                }
            }
            targets.insert(id.clone());
        }
        for w in [old, new] {
            for n in w.iter::<NatGateway>() {
                if nat_vpcs.contains(&n.vpc_id) {
                    nats.insert(n.meta.id.clone());
                }
            }
        }
        s.vpcs.extend(nat_vpcs);
        s.nat_gateways.extend(nats.iter().cloned());
    }

    // Public addresses of affected interfaces (NAT gateways' included), in
    // either World; then every VPC with a claim on one of them.
    let claimants: BTreeSet<&String> = enis.iter().chain(&nat_enis).chain(&eip_enis).collect();
    if !claimants.is_empty() {
        for w in [old, new] {
            for id in &claimants {
                if let Some(e) = w.get::<NetworkInterface>(id) {
                    public.extend(e.public_ip);
                }
            }
            for a in w.iter::<Address>() {
                if a.eni_id.as_ref().is_some_and(|e| claimants.contains(e)) {
                    public.insert(a.public_ip);
                }
            }
        }
    }
    if !public.is_empty() {
        s.inet = true;
        for w in [old, new] {
            for e in w.iter::<NetworkInterface>() {
                if e.public_ip.is_some_and(|p| public.contains(&p)) {
                    s.vpcs.insert(e.vpc_id.clone());
                }
            }
            for a in w.iter::<Address>() {
                if !public.contains(&a.public_ip) {
                    continue;
                }
                for v in [old, new] {
                    if let Some(e) = a.eni_id.as_ref().and_then(|e| v.get::<NetworkInterface>(e)) {
                        s.vpcs.insert(e.vpc_id.clone());
                    }
                }
            }
        }
    }

    // Route state: routers whose routes name something that changed.
    if !targets.is_empty() {
        for rt in new.iter::<RouteTable>() {
            if rt
                .routes
                .iter()
                .any(|r| r.target.id().is_some_and(|t| targets.contains(t)))
            {
                s.vpcs.insert(rt.vpc_id.clone());
            }
        }
    }

    // Security groups: rules referencing a group that appeared, went or
    // changed members, and groups on either side of a changed peering.
    if !groups_referenced.is_empty() || !peered_vpcs.is_empty() || !lists.is_empty() {
        for g in new.iter::<SecurityGroup>() {
            let references = g.ingress.iter().chain(&g.egress).any(|r| match &r.peer {
                SgPeer::Group { group_id, .. } => groups_referenced.contains(group_id),
                SgPeer::PrefixList(list) => lists.contains(list),
                _ => false,
            });
            if references || peered_vpcs.contains(&g.vpc_id) {
                groups_used.insert(g.meta.id.clone());
            }
        }
    }
    // The routers that render a group: those of its members' VPCs.
    if !groups_used.is_empty() {
        for e in new.iter::<NetworkInterface>() {
            if e.groups.iter().any(|g| groups_used.contains(g)) {
                s.vpcs.insert(e.vpc_id.clone());
            }
        }
    }

    Affected {
        scope: s,
        changed_records,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::names::router_ns;
    use crate::plan::{plan, plan_scope, NsPlan};
    use crate::testkit::{Env, A, B, EAST, WEST};
    use proptest::prelude::*;
    use vpc_model::RouteTarget;
    use vpc_model::{
        AclAction, AclAssoc, AclEntry, InstanceState, Ipv6Assoc, NatState, PcxState, PrivateIp,
        Route, RtAssoc, SgRule,
    };

    const TAG: &str = "t9";

    /// One change to the World: `op` picks what, `a`, `b`, `c` pick among the
    /// records that exist (modulo their count) or among values.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Step {
        op: u8,
        a: u8,
        b: u8,
        c: u8,
    }

    fn nth<R: Record>(w: &World, k: u8) -> Option<R> {
        let n = R::table(w).len();
        (n > 0).then(|| w.iter::<R>().nth(usize::from(k) % n).cloned())?
    }

    fn nth_id<R: Record>(w: &World, k: u8) -> Option<String> {
        nth::<R>(w, k).map(|r| r.id().to_string())
    }

    /// A fresh private address in the subnet.
    fn free_ip(w: &World, s: &Subnet, k: u8) -> String {
        let taken = vpc_model::ops::eni::taken_v4(w, &s.meta.id);
        let base = s.cidr.map_or(0, |c| u32::from(c.network()));
        (10..250u32)
            .map(|i| std::net::Ipv4Addr::from(base + (i + u32::from(k)) % 240 + 4))
            .find(|ip| !taken.contains(ip) && s.v4_contains(ip))
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| std::net::Ipv4Addr::from(base + 9).to_string())
    }

    fn public(k: u8) -> std::net::Ipv4Addr {
        // Few distinct values, so claims collide.
        std::net::Ipv4Addr::new(198, 18, 0, 1 + k % 6)
    }

    pub(crate) fn apply(e: &mut Env, s: Step) {
        let Step { op, a, b, c } = s;
        let w = &e.w;
        match op % 26 {
            0 => {
                if let Some(sub) = nth::<Subnet>(w, a) {
                    let ip = free_ip(w, &sub, b);
                    let groups: Vec<String> =
                        [nth_id::<SecurityGroup>(w, b), nth_id::<SecurityGroup>(w, c)]
                            .into_iter()
                            .flatten()
                            .take(1 + usize::from(c % 2))
                            .collect();
                    e.instance_in(&sub, &ip, &groups);
                }
            }
            1 => {
                if let Some(i) = nth_id::<Instance>(w, a) {
                    let st = [
                        InstanceState::Running,
                        InstanceState::Stopped,
                        InstanceState::Pending,
                        InstanceState::Terminated,
                        InstanceState::Stopping,
                    ][usize::from(b) % 5];
                    e.set_state(&i, st);
                }
            }
            2 => {
                if let Some(i) = nth_id::<Instance>(w, a) {
                    e.w.remove::<Instance>(&i);
                }
            }
            3 => {
                if let Some(x) = nth_id::<NetworkInterface>(w, a) {
                    e.w.update::<NetworkInterface>(&x, |n| {
                        n.source_dest_check = !n.source_dest_check
                    });
                }
            }
            4 => {
                if let Some(x) = nth_id::<NetworkInterface>(w, a) {
                    let groups: Vec<String> =
                        [nth_id::<SecurityGroup>(w, b), nth_id::<SecurityGroup>(w, c)]
                            .into_iter()
                            .flatten()
                            .take(usize::from(c % 3))
                            .collect();
                    e.w.update::<NetworkInterface>(&x, |n| n.groups = groups);
                }
            }
            5 => {
                if let Some(x) = nth_id::<NetworkInterface>(w, a) {
                    let ip = (b % 3 != 0).then(|| public(c));
                    e.w.update::<NetworkInterface>(&x, |n| n.public_ip = ip);
                }
            }
            6 => {
                if let Some(x) = nth::<NetworkInterface>(w, a) {
                    if let Some(sub) = w.get::<Subnet>(&x.subnet_id).cloned() {
                        let ip: std::net::Ipv4Addr = free_ip(w, &sub, c).parse().expect("ip");
                        e.w.update::<NetworkInterface>(&x.meta.id, |n| {
                            if b % 2 == 0 {
                                n.private_ips.push(PrivateIp { ip, primary: false });
                            } else {
                                n.ipv6
                                    .push(format!("2600:1f00::{}", c).parse().expect("v6"));
                            }
                        });
                    }
                }
            }
            7 => {
                // Move an interface to another instance, maybe onto a taken device.
                if let (Some(x), Some(i)) =
                    (nth_id::<NetworkInterface>(w, a), nth_id::<Instance>(w, b))
                {
                    e.w.update::<NetworkInterface>(&x, |n| {
                        if let Some(att) = &mut n.attachment {
                            att.instance_id = i;
                            att.device_index = u32::from(c % 3);
                        } else if c % 2 == 0 {
                            n.attachment = Some(vpc_model::EniAttachment {
                                id: format!("eni-attach-{c}"),
                                instance_id: i,
                                device_index: u32::from(c % 3),
                                delete_on_termination: true,
                                attached_at: Default::default(),
                            });
                        }
                    });
                }
            }
            8 => {
                // A twin whose link name (the last 12 hex digits) collides.
                if let (Some(mut x), Some(i)) =
                    (nth::<NetworkInterface>(w, a), nth_id::<Instance>(w, b))
                {
                    let suffix = x.meta.id[x.meta.id.len() - 12..].to_string();
                    x.meta.id = format!("eni-{:05x}{suffix}", 0xa0000 + u32::from(c));
                    if let Some(att) = &mut x.attachment {
                        att.instance_id = i;
                        att.device_index = 1 + u32::from(c % 2);
                    }
                    e.w.put(x);
                }
            }
            9 => {
                if let Some(x) = nth_id::<NetworkInterface>(w, a) {
                    e.w.remove::<NetworkInterface>(&x);
                }
            }
            10 => {
                if let (Some(g), Some(other)) =
                    (nth::<SecurityGroup>(w, a), nth::<SecurityGroup>(w, b))
                {
                    let peer = if c % 3 == 0 {
                        SgPeer::Cidr4(format!("10.{}.0.0/16", c % 4).parse().expect("cidr"))
                    } else {
                        SgPeer::Group {
                            group_id: other.meta.id.clone(),
                            user_id: other.meta.owner.clone(),
                            vpc_id: (other.vpc_id != g.vpc_id).then(|| other.vpc_id.clone()),
                            peering_id: None,
                        }
                    };
                    let rule = SgRule {
                        id: format!("sgr-{a}{b}{c}"),
                        protocol: ["tcp", "-1", "udp", "icmp"][usize::from(c) % 4].into(),
                        from_port: Some(i32::from(c)),
                        to_port: Some(i32::from(c) + 10),
                        peer,
                        description: None,
                        tags: vec![],
                    };
                    e.w.update::<SecurityGroup>(&g.meta.id, |g| {
                        if c % 2 == 0 {
                            g.ingress.push(rule)
                        } else {
                            g.egress.push(rule)
                        }
                    });
                }
            }
            11 => {
                if let Some(g) = nth_id::<SecurityGroup>(w, a) {
                    e.w.update::<SecurityGroup>(&g, |g| {
                        if b % 2 == 0 {
                            g.ingress.clear()
                        } else {
                            g.egress.pop();
                        }
                    });
                }
            }
            12 => {
                if b % 3 == 0 {
                    if let Some(g) = nth_id::<SecurityGroup>(w, a) {
                        e.w.remove::<SecurityGroup>(&g);
                    }
                } else if let Some(v) = nth::<Vpc>(w, a) {
                    let (o, r) = (v.meta.owner.clone(), v.meta.region.clone());
                    let req = vpc_model::ops::sg::CreateGroup {
                        name: Some(format!("g{b}{c}")),
                        description: Some("g".into()),
                        vpc_id: Some(v.meta.id.clone()),
                        tags: vec![],
                    };
                    try_run(e, &o, &r, |w, x| {
                        vpc_model::ops::sg::create_group(w, x, req)
                    });
                }
            }
            13 => {
                if let (Some(va), Some(vb)) = (nth::<Vpc>(w, a), nth::<Vpc>(w, b)) {
                    if va.meta.id != vb.meta.id {
                        let req = vpc_model::ops::peering::CreatePeering {
                            vpc_id: Some(va.meta.id.clone()),
                            peer_vpc_id: Some(vb.meta.id.clone()),
                            peer_owner_id: Some(vb.meta.owner.clone()),
                            peer_region: Some(vb.meta.region.clone()),
                            tags: vec![],
                        };
                        let (o, r) = (va.meta.owner.clone(), va.meta.region.clone());
                        let p = try_run(e, &o, &r, |w, x| {
                            vpc_model::ops::peering::create(w, x, req, &|_| true)
                        });
                        if let (Some(p), true) = (p, c % 3 != 0) {
                            e.advance(1_000);
                            let (o, r) = (vb.meta.owner.clone(), vb.meta.region.clone());
                            try_run(e, &o, &r, |w, x| {
                                vpc_model::ops::peering::accept(w, x, &p.id)
                            });
                        }
                    }
                }
            }
            14 => {
                if let Some(p) = nth_id::<Peering>(w, a) {
                    let st = [
                        PcxState::Active,
                        PcxState::Deleted,
                        PcxState::Rejected,
                        PcxState::Provisioning,
                    ][usize::from(b) % 4];
                    e.w.update::<Peering>(&p, |p| p.state = st);
                }
            }
            15 => {
                // A route to something (that may or may not be in the table's VPC).
                if let Some(rt) = nth_id::<RouteTable>(w, a) {
                    let target = match c % 5 {
                        0 => nth_id::<Peering>(w, b).map(RouteTarget::Peering),
                        1 => nth_id::<InternetGateway>(w, b).map(RouteTarget::Gateway),
                        2 => nth_id::<NatGateway>(w, b).map(RouteTarget::NatGateway),
                        3 => nth_id::<NetworkInterface>(w, b).map(RouteTarget::NetworkInterface),
                        _ => nth_id::<Instance>(w, b).map(RouteTarget::Instance),
                    };
                    let dest = [
                        "0.0.0.0/0",
                        "10.1.0.0/16",
                        "10.2.0.0/16",
                        "10.1.1.0/24",
                        "10.2.1.20/32",
                        "10.1.1.11/32",
                    ][usize::from(b) % 6]
                        .parse()
                        .expect("dest");
                    if let Some(target) = target {
                        e.w.update::<RouteTable>(&rt, |t| {
                            t.routes.retain(|r| r.dest != dest);
                            t.routes.push(Route {
                                dest,
                                target,
                                origin: "CreateRoute".into(),
                                prefix_list: None,
                            });
                        });
                    }
                }
            }
            16 => {
                if let Some(rt) = nth_id::<RouteTable>(w, a) {
                    e.w.update::<RouteTable>(&rt, |t| {
                        t.routes
                            .retain(|r| r.target == RouteTarget::Local || b % 2 == 0);
                        t.routes.pop();
                    });
                }
            }
            17 => {
                if let Some(sub) = nth::<Subnet>(w, a) {
                    if b % 2 == 0 {
                        let (o, r) = (sub.meta.owner.clone(), sub.meta.region.clone());
                        let (vid, sid) = (sub.vpc_id.clone(), sub.meta.id.clone());
                        try_run(e, &o, &r, |w, x| {
                            let rt = vpc_model::ops::route::create_table(w, x, &vid, vec![])?;
                            vpc_model::ops::route::associate(w, x, &rt.meta.id, Some(&sid), None)
                        });
                    } else if let Some(rt) = nth_id::<RouteTable>(w, c) {
                        // Raw: associate any table (maybe of another VPC) with the subnet.
                        let sid = sub.meta.id.clone();
                        e.w.update::<RouteTable>(&rt, |t| {
                            t.assocs.push(RtAssoc {
                                id: format!("rtbassoc-{c}"),
                                main: false,
                                subnet_id: Some(sid),
                                gateway_id: None,
                            })
                        });
                    }
                }
            }
            18 => {
                if let Some(acl) = nth_id::<NetworkAcl>(w, a) {
                    let entry = AclEntry {
                        rule_number: 10 + u32::from(b % 50),
                        egress: c % 2 == 0,
                        protocol: ["6", "-1", "17", "1"][usize::from(c) % 4].into(),
                        action: if b % 3 == 0 {
                            AclAction::Deny
                        } else {
                            AclAction::Allow
                        },
                        cidr: "10.0.0.0/8".parse().expect("cidr"),
                        icmp: None,
                        ports: Some((22, 80)),
                    };
                    e.w.update::<NetworkAcl>(&acl, |x| x.entries.push(entry));
                }
            }
            19 => {
                // Reassociate a subnet with another ACL (maybe new, maybe of another VPC).
                if let (Some(sub), Some(acl)) = (nth::<Subnet>(w, a), nth_id::<NetworkAcl>(w, b)) {
                    let sid = sub.meta.id.clone();
                    let all: Vec<String> =
                        w.iter::<NetworkAcl>().map(|x| x.meta.id.clone()).collect();
                    for x in all {
                        e.w.update::<NetworkAcl>(&x, |x| x.assocs.retain(|s| s.subnet_id != sid));
                    }
                    e.w.update::<NetworkAcl>(&acl, |x| {
                        x.assocs.push(AclAssoc {
                            id: format!("aclassoc-{c}"),
                            subnet_id: sid,
                        })
                    });
                }
            }
            20 => match (c % 3, nth::<Vpc>(w, a)) {
                (0, Some(v)) => {
                    let vid = v.meta.id.clone();
                    let (o, r) = (v.meta.owner.clone(), v.meta.region.clone());
                    try_run(e, &o, &r, |w, x| {
                        let g = vpc_model::ops::igw::create(w, x, vec![])?;
                        vpc_model::ops::igw::attach(w, x, &g.meta.id, &vid)
                    });
                }
                (1, _) => {
                    if let Some(g) = nth_id::<InternetGateway>(w, b) {
                        e.w.update::<InternetGateway>(&g, |g| g.vpc_id = None);
                    }
                }
                _ => {
                    if let Some(g) = nth_id::<InternetGateway>(w, b) {
                        e.w.remove::<InternetGateway>(&g);
                    }
                }
            },
            21 => {
                if c % 2 == 0 {
                    if let Some(sub) = nth::<Subnet>(w, a) {
                        let (o, r) = (sub.meta.owner.clone(), sub.meta.region.clone());
                        let ea = try_run(e, &o, &r, |w, x| {
                            vpc_model::ops::eip::allocate(w, x, None, vec![])
                        });
                        if let Some(ea) = ea {
                            let req = vpc_model::ops::nat::CreateNat {
                                subnet_id: Some(sub.meta.id.clone()),
                                allocation_id: Some(ea.meta.id.clone()),
                                ..Default::default()
                            };
                            try_run(e, &o, &r, |w, x| vpc_model::ops::nat::create(w, x, req));
                        }
                    }
                } else if let Some(n) = nth_id::<NatGateway>(w, a) {
                    let st = [NatState::Available, NatState::Deleted, NatState::Pending]
                        [usize::from(b) % 3];
                    e.w.update::<NatGateway>(&n, |n| n.state = st);
                }
            }
            22 => {
                // An Elastic IP on an interface's primary or another address.
                if let Some(x) = nth::<NetworkInterface>(w, a) {
                    let private = if b % 2 == 0 {
                        x.primary_ip()
                    } else {
                        x.private_ips.last().map(|p| p.ip)
                    };
                    e.w.put(vpc_model::Address {
                        meta: vpc_model::Meta {
                            id: format!("eipalloc-{:017x}", c % 5),
                            owner: x.meta.owner.clone(),
                            region: x.meta.region.clone(),
                            tags: vec![],
                            created: Default::default(),
                        },
                        public_ip: public(b),
                        association_id: Some(format!("eipassoc-{c}")),
                        eni_id: (c % 4 != 0).then(|| x.meta.id.clone()),
                        private_ip: private,
                    });
                }
            }
            23 => {
                if let Some(sub) = nth_id::<Subnet>(w, a) {
                    if b % 2 == 0 {
                        e.w.remove::<Subnet>(&sub);
                    } else {
                        e.w.update::<Subnet>(&sub, |s| s.map_public_ip = !s.map_public_ip);
                    }
                }
            }
            24 => match (b % 3, nth::<Vpc>(w, a)) {
                (0, Some(v)) => {
                    e.w.remove::<Vpc>(&v.meta.id);
                }
                (1, Some(v)) => {
                    e.w.update::<Vpc>(&v.meta.id, |v| {
                        v.ipv6.push(Ipv6Assoc {
                            assoc_id: format!("vpc-cidr-assoc-{c}"),
                            cidr: format!("2600:1f{:02x}::/56", c).parse().expect("v6"),
                            state: "associated".into(),
                            pool: "Amazon".into(),
                            border_group: "us-east-1".into(),
                        })
                    });
                }
                _ => {
                    let n = e.w.vpcs.len() as u8;
                    let cidr = format!("10.{}.0.0/16", 10 + n);
                    let acct = if c % 2 == 0 { A } else { B };
                    let region = if c % 3 == 0 { WEST } else { EAST };
                    let v = e.vpc_as(acct, region, &cidr, None);
                    e.subnet(&v, &format!("10.{}.1.0/24", 10 + n));
                }
            },
            _ => e.advance(1_000),
        }
    }

    /// Runs a model operation; a refusal leaves the World as it was.
    fn try_run<T>(
        e: &mut Env,
        acct: &str,
        region: &str,
        f: impl FnOnce(&mut World, &mut vpc_model::Ctx<'_>) -> Result<T, vpc_model::Fault>,
    ) -> Option<T> {
        let mut w = e.w.clone();
        let mut ctx = vpc_model::Ctx {
            account: acct.to_string(),
            region: region.to_string(),
            now: e.now,
            ids: e.ids.as_mut(),
            limits: &e.limits,
            zones: &[],
        };
        let out = f(&mut w, &mut ctx).ok()?;
        e.w = w;
        Some(out)
    }

    /// Two or three VPCs in two accounts and regions, a subnet or two each,
    /// instances, an internet gateway and a peering.
    pub(crate) fn start(seed: u8) -> Env {
        let mut e = Env::new();
        let va = e.vpc("10.1.0.0/16");
        let vb = e.vpc_as(B, EAST, "10.2.0.0/16", None);
        let sa = e.subnet(&va, "10.1.1.0/24");
        let sb = e.subnet(&vb, "10.2.1.0/24");
        e.instance(&sa, "10.1.1.10");
        e.instance(&sa, "10.1.1.11");
        e.instance(&sb, "10.2.1.20");
        if seed.is_multiple_of(2) {
            let vc = e.vpc_as(A, WEST, "10.3.0.0/16", None);
            let sc = e.subnet(&vc, "10.3.1.0/24");
            e.instance(&sc, "10.3.1.10");
            e.peer(&va, &vc, seed.is_multiple_of(4));
        }
        if !seed.is_multiple_of(3) {
            e.igw(&va);
        }
        let pcx = e.peer(&va, &vb, true);
        e.route_to_pcx(&va, "10.2.0.0/16", &pcx);
        let gb = e.default_sg(&vb);
        let ga = e.default_sg(&va);
        e.allow(&gb, false, "tcp", Some((80, 80)), &ga);
        e
    }

    pub(crate) fn step_g() -> impl Strategy<Value = Step> {
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(op, a, b, c)| Step {
            op,
            a,
            b,
            c,
        })
    }

    fn differing(a: &BTreeMap<String, NsPlan>, b: &BTreeMap<String, NsPlan>) -> Vec<String> {
        let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        names
            .into_iter()
            .filter(|n| a.get(*n) != b.get(*n))
            .cloned()
            .collect()
    }

    proptest! {
        // PROPTEST_CASES raises the number of cases for a longer run.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
            ..ProptestConfig::default()
        })]

        /// The incremental plan (the previous plan with the affected
        /// namespaces re-planned) equals the full re-plan after every batch
        /// of random changes, model operations and raw edits alike.
        #[test]
        fn incremental_plan_equals_full_plan(
            seed in any::<u8>(),
            batches in prop::collection::vec(prop::collection::vec(step_g(), 1..4), 1..12),
        ) {
            let mut e = start(seed);
            let mut state = plan(&e.w, TAG).namespaces;
            for (k, batch) in batches.iter().enumerate() {
                let old = e.w.clone();
                for s in batch {
                    apply(&mut e, *s);
                }
                let affected = affected(&old, &e.w);
                let names = affected.scope.namespaces(TAG);
                let partial = plan_scope(&e.w, TAG, Some(&affected.scope));
                prop_assert!(
                    partial.namespaces.keys().all(|n| names.contains(n)),
                    "a scoped plan went beyond its scope"
                );
                for n in &names {
                    state.remove(n);
                }
                state.extend(partial.namespaces);
                let full = plan(&e.w, TAG).namespaces;
                let differ = differing(&state, &full);
                prop_assert!(
                    differ.is_empty(),
                    "after batch {k} {batch:?}: {differ:?} differ (scope {:?})",
                    affected.scope
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
            ..ProptestConfig::default()
        })]

        /// Planning any subset of the namespaces gives exactly those
        /// namespaces' entries of the full plan (the facts a scoped plan
        /// gathers from part of the World are the ones it needs).
        #[test]
        fn a_scoped_plan_is_the_full_plan_restricted(
            seed in any::<u8>(),
            steps in prop::collection::vec(step_g(), 0..24),
            picks in prop::collection::vec(any::<bool>(), 48),
            inet in any::<bool>(),
        ) {
            let mut e = start(seed);
            for s in &steps {
                apply(&mut e, *s);
            }
            let pick = |i: usize| picks[i % picks.len()];
            let scope = Scope {
                vpcs: e.w.iter::<Vpc>().enumerate().filter(|(i, _)| pick(*i)).map(|(_, v)| v.meta.id.clone()).collect(),
                instances: e.w.iter::<Instance>().enumerate().filter(|(i, _)| pick(i + 16)).map(|(_, x)| x.meta.id.clone()).collect(),
                nat_gateways: e.w.iter::<NatGateway>().enumerate().filter(|(i, _)| pick(i + 32)).map(|(_, n)| n.meta.id.clone()).collect(),
                inet,
            };
            let names = scope.namespaces(TAG);
            let mut expected = plan(&e.w, TAG).namespaces;
            expected.retain(|n, _| names.contains(n));
            let scoped = plan_scope(&e.w, TAG, Some(&scope)).namespaces;
            let differ = differing(&scoped, &expected);
            prop_assert!(differ.is_empty(), "{differ:?} differ (scope {scope:?})");
        }
    }

    #[test]
    fn one_rule_change_affects_only_its_vpcs_router() {
        let mut e = start(1);
        let old = e.w.clone();
        let ga =
            e.w.iter::<Vpc>()
                .next()
                .map(|v| v.default_sg.clone())
                .expect("vpc");
        e.allow(&ga, false, "tcp", Some((22, 22)), "0.0.0.0/0");
        let a = affected(&old, &e.w);
        let va = e.w.iter::<Vpc>().next().expect("vpc").meta.id.clone();
        assert_eq!(a.scope.namespaces(TAG), [router_ns(TAG, &va)].into());
        assert_eq!(a.changed_records, 1);
    }

    #[test]
    fn every_kind_of_record_is_diffed_or_not_planned() {
        // Exhaustive: a new kind of record fails to compile here until it is
        // mapped to namespaces in `affected` (or shown not to be planned).
        let diffed = vpc_model::Kind::ALL
            .iter()
            .filter(|k| {
                use vpc_model::Kind::*;
                match k {
                    Vpc
                    | Subnet
                    | RouteTable
                    | InternetGateway
                    | SecurityGroup
                    | NetworkAcl
                    | Peering
                    | Instance
                    | NetworkInterface
                    | NatGateway
                    | Address
                    | PrefixList
                    | VpcEndpoint
                    | EgressOnlyInternetGateway => true,
                    RegionInit
                    | NetworkInsightsPath
                    | NetworkInsightsAnalysis
                    | Volume
                    | Detachment
                    | FlowLog
                    | HostedZone
                    | ZoneChange => false,
                    // The instances' resolv.conf follows a VPC's set, but a
                    // set never changes but for its tags, and its
                    // association is a field of the VPC (which is diffed).
                    DhcpOptions => false,
                }
            })
            .count();
        assert_eq!(diffed, 14);
    }

    #[test]
    fn no_change_affects_nothing() {
        let e = start(0);
        let a = affected(&e.w, &e.w.clone());
        assert!(a.scope.is_empty());
        assert_eq!(a.changed_records, 0);
    }
}
