//! The filters a packet meets in a router's `forward` chain: network ACLs
//! (stateless, both ways) and security groups (the new connection).

use crate::analysis::*;
use crate::diagnosis::Blocker;
use crate::walk::*;
use std::net::IpAddr;
use vpc_model::ops;
use vpc_model::ops::defaults::{STAR_V4, STAR_V6};
use vpc_model::types::*;

impl<'a> Walk<'a> {
    /// A subnet's network ACL for one packet; explains a deny. Returns the
    /// deciding entry as a hop's component and rule.
    pub(crate) fn nacl(
        &mut self,
        s: &'a Subnet,
        egress: bool,
        remote: IpAddr,
        ret: bool,
    ) -> Step<Option<(Component, Rule)>> {
        let w = self.w;
        let acl = self
            .index
            .acl_by_subnet
            .get(s.meta.id.as_str())
            .and_then(|a| w.get::<NetworkAcl>(a.as_str()));
        let star = if remote.is_ipv6() { STAR_V6 } else { STAR_V4 };
        let (action, n) = match acl {
            None => (AclAction::Deny, star),
            Some(acl) => {
                let icmp = self.icmp(ret);
                if self.proto == Protocol::Icmp {
                    ops::acl::evaluate(acl, egress, self.protocol_number, remote, None, icmp)
                } else if ret {
                    let (lo, hi) = self.reply_ports;
                    ops::acl::evaluate_ports(
                        acl,
                        egress,
                        self.protocol_number,
                        remote,
                        (lo, hi),
                        None,
                    )
                } else {
                    ops::acl::evaluate(
                        acl,
                        egress,
                        self.protocol_number,
                        remote,
                        self.dest_port,
                        None,
                    )
                }
            }
        };
        let acl_id = acl.map_or_else(
            || format!("(no ACL for {})", s.meta.id),
            |a| a.meta.id.clone(),
        );
        let entry = acl.and_then(|a| {
            a.entries
                .iter()
                .find(|e| e.egress == egress && e.rule_number == n)
        });
        let rule = acl_rule(&acl_id, egress, n, entry, remote.is_ipv6());
        if action == AclAction::Deny {
            let dir = if egress {
                Direction::Egress
            } else {
                Direction::Ingress
            };
            let rule2 = rule.clone();
            let acl_id2 = acl_id.clone();
            self.block(|walk| {
                let what = walk.what(ret);
                let (way, prep) = if egress {
                    ("outbound", "to")
                } else {
                    ("inbound", "from")
                };
                let num = if n >= STAR_V4 {
                    "*".to_string()
                } else {
                    n.to_string()
                };
                let detail = format!(
                    "Network ACL {acl_id2} of {} denies {way} {what} {prep} {remote} (rule {num}).",
                    s.meta.id
                );
                let blocker = Blocker::new(
                    "SUBNET_ACL_RESTRICTION",
                    component(&acl_id2, "network-acl"),
                    detail,
                )
                .direction(dir)
                .rule(rule2)
                .in_vpc(s.vpc_id.clone())
                .in_subnet(s.meta.id.clone());
                let below = if n >= STAR_V4 {
                    String::new()
                } else {
                    format!(" numbered below {n}")
                };
                if ret {
                    let ports = if walk.proto == Protocol::Icmp {
                        "the return traffic (echo replies)".to_string()
                    } else {
                        format!("the return traffic on ephemeral ports ({})", what)
                    };
                    blocker.diagnosis(
                        DiagnosisKind::NaclDeniesReturnTraffic,
                        format!(
                            "NACL {acl_id2} rule {num} of {} denies {ports} {way} {prep} {remote}",
                            s.meta.id
                        ),
                        format!(
                            "add an {way} allow entry{below} to {acl_id2} for {what} {prep} {}",
                            host_net(remote)
                        ),
                    )
                } else {
                    blocker.diagnosis(
                        DiagnosisKind::NaclDenies,
                        format!(
                            "NACL {acl_id2} rule {num} of {} denies {way} {what} {prep} {remote}",
                            s.meta.id
                        ),
                        format!(
                            "add an {way} allow entry{below} to {acl_id2} for {what} {prep} {}",
                            host_net(remote)
                        ),
                    )
                }
            })?;
        }
        Ok(Some((component(&acl_id, "network-acl"), rule)))
    }

    /// The interface's security groups for the request's new connection;
    /// explains a refusal. Returns the admitting rule as a hop.
    pub(crate) fn sg(
        &mut self,
        e: &'a NetworkInterface,
        egress: bool,
        peer: IpAddr,
    ) -> Step<Option<(Component, Option<Rule>)>> {
        let w = self.w;
        let dir = if egress {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let icmp = self.icmp(false);
        let mut hit = None;
        'groups: for gid in &e.groups {
            let Some(g) = w.get::<SecurityGroup>(gid) else {
                continue;
            };
            let rules = if egress { &g.egress } else { &g.ingress };
            for r in rules {
                if self.rule_stale(&g.vpc_id, r) {
                    continue;
                }
                if ops::sg::rule_admits(
                    r,
                    self.protocol_number,
                    self.dest_port,
                    icmp,
                    peer,
                    |gr, a| self.is_member(gr, a),
                    |list, a| ops::prefix_list::contains(w, &g.meta.region, list, a),
                ) {
                    hit = Some((g, r));
                    break 'groups;
                }
            }
        }
        match hit {
            Some((g, r)) => Ok(Some((
                component(&g.meta.id, "security-group"),
                Some(sg_rule(g, r, dir)),
            ))),
            None => {
                self.block(|walk| {
                    let what = walk.what(false);
                    let groups = if e.groups.is_empty() {
                        "no security group".to_string()
                    } else {
                        e.groups.join(", ")
                    };
                    let (way, prep) = if egress {
                        ("egress", "to")
                    } else {
                        ("ingress", "from")
                    };
                    let first = e
                        .groups
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "a security group".into());
                    let (proto, ports) = match walk.proto {
                        Protocol::Icmp if walk.v6 => ("icmpv6", "type 128".to_string()),
                        Protocol::Icmp => ("icmp", "type 8".to_string()),
                        Protocol::Tcp => ("tcp", format!("port {}", walk.dest_port.unwrap_or(0))),
                        Protocol::Udp => ("udp", format!("port {}", walk.dest_port.unwrap_or(0))),
                    };
                    let comp_id = e
                        .groups
                        .first()
                        .map_or_else(|| e.meta.id.clone(), |g| g.clone());
                    let kind = if e.groups.is_empty() {
                        "network-interface"
                    } else {
                        "security-group"
                    };
                    Blocker::new(
                        "ENI_SG_RULES_MISMATCH",
                        component(&comp_id, kind),
                        format!(
                            "No {way} rule of {groups} on {} admits {what} {prep} {peer}.",
                            e.meta.id
                        ),
                    )
                    .direction(dir)
                    .in_vpc(e.vpc_id.clone())
                    .in_subnet(e.subnet_id.clone())
                    .diagnosis(
                        DiagnosisKind::SecurityGroupDenies,
                        format!(
                            "no {way} rule of {groups} on {} allows {what} {prep} {peer}",
                            e.meta.id
                        ),
                        format!(
                            "authorize {way} {proto} {ports} {prep} {} on {first}",
                            host_net(peer)
                        ),
                    )
                })?;
                let c = match e.groups.first() {
                    Some(g) => component(g, "security-group"),
                    None => component(&e.meta.id, "network-interface"),
                };
                Ok(Some((c, None)))
            }
        }
    }
}
