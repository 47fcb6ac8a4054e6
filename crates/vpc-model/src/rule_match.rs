//! The normalized match of a security-group rule or a network-ACL entry.
//!
//! Both kinds of record are stored as AWS shows them (protocol strings,
//! `-1` ports, a peer that may be a group). [`lower_sg_rule`] and
//! [`lower_acl_entry`] turn them, once, into [`RuleMatch`]es: an address
//! match and a traffic match with typed fields. The reachability analyzer
//! decides packets with [`RuleMatch::admits`]; the data plane translates the
//! same values into nftables with an exhaustive `match` (no wildcard arm), so
//! a new kind of match cannot be handled by one and forgotten by the other.
//!
//! [`IpProtocol::parse`] is the one protocol normaliser: security groups
//! show the result by name (`tcp`), ACLs by number (`6`).

use crate::fault::{Fault, Result};
use crate::types::{AclEntry, SgPeer, SgRule};
use ipnet::IpNet;
use std::net::IpAddr;

/// IP protocol numbers with a meaning of their own in rules.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// A rule's protocol: every protocol, or one by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpProtocol {
    All,
    Number(u8),
}

impl IpProtocol {
    /// Parses what EC2 accepts for a protocol in security-group rules and ACL
    /// entries alike: `-1` or `all`, a name (`tcp`, `udp`, `icmp`, `icmpv6`,
    /// any case), or a number 0–255.
    pub fn parse(s: &str) -> Result<IpProtocol> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || {
            Fault::invalid_param(format!(
                "Invalid value '{s}' for IP protocol. Unknown protocol."
            ))
        };
        Ok(match t.as_str() {
            "-1" | "all" => IpProtocol::All,
            "tcp" => IpProtocol::Number(TCP),
            "udp" => IpProtocol::Number(UDP),
            "icmp" => IpProtocol::Number(ICMP),
            "icmpv6" => IpProtocol::Number(ICMPV6),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                IpProtocol::Number(n.parse::<u8>().map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        })
    }

    /// How security groups show it: `-1`, `tcp`, `udp`, `icmp`, `icmpv6`, or the number.
    pub fn group_form(self) -> String {
        match self {
            IpProtocol::All => "-1".into(),
            IpProtocol::Number(TCP) => "tcp".into(),
            IpProtocol::Number(UDP) => "udp".into(),
            IpProtocol::Number(ICMP) => "icmp".into(),
            IpProtocol::Number(ICMPV6) => "icmpv6".into(),
            IpProtocol::Number(n) => n.to_string(),
        }
    }

    /// How network ACLs show it: `-1` or the number.
    pub fn acl_form(self) -> String {
        match self {
            IpProtocol::All => "-1".into(),
            IpProtocol::Number(n) => n.to_string(),
        }
    }
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(a: IpAddr) -> Family {
        if a.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }
}

/// Which addresses a rule matches: the packet's source for ingress rules and
/// inbound ACL entries, its destination for egress ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressMatch {
    /// The addresses in a prefix (a `/0` is the whole family).
    Prefix(IpNet),
    /// The addresses of one family held by the members of a security group.
    GroupMembers { group_id: String, family: Family },
    /// The addresses of one family in a managed prefix list's entries.
    PrefixList { list_id: String, family: Family },
}

/// Which traffic a rule matches besides the address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrafficMatch {
    /// Every packet.
    Any,
    /// TCP or UDP (`protocol`), to a destination port in `ports` (inclusive),
    /// or to any port when `None`.
    Ports {
        protocol: u8,
        ports: Option<(u16, u16)>,
    },
    /// ICMP for IPv4, ICMPv6 for IPv6 (`family`), by type and code (`None`
    /// is any).
    Icmp {
        family: Family,
        icmp_type: Option<u8>,
        code: Option<u8>,
    },
    /// Every packet of one other protocol.
    Protocol(u8),
}

/// One normalized match: a rule admits a packet when both parts match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleMatch {
    pub address: AddressMatch,
    pub traffic: TrafficMatch,
}

/// The parts of a packet a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFields {
    /// The IP protocol number.
    pub protocol: u8,
    /// The destination port, for TCP and UDP.
    pub port: Option<u16>,
    /// (type, code), for ICMP and ICMPv6.
    pub icmp: Option<(u8, u8)>,
}

impl RuleMatch {
    /// Whether a packet whose matched address (source or destination, as
    /// [`AddressMatch`] says) is `address` is admitted; `is_member(group,
    /// address)` answers for group references, `in_list(list, address)` for
    /// prefix lists.
    pub fn admits(
        &self,
        packet: PacketFields,
        address: IpAddr,
        is_member: impl Fn(&str, IpAddr) -> bool,
        in_list: impl Fn(&str, IpAddr) -> bool,
    ) -> bool {
        let address_ok = match &self.address {
            AddressMatch::Prefix(net) => net.contains(&address),
            AddressMatch::GroupMembers { group_id, family } => {
                Family::of(address) == *family && is_member(group_id, address)
            }
            AddressMatch::PrefixList { list_id, family } => {
                Family::of(address) == *family && in_list(list_id, address)
            }
        };
        address_ok && self.traffic.admits(packet, Family::of(address))
    }
}

impl TrafficMatch {
    fn admits(&self, packet: PacketFields, family: Family) -> bool {
        let any_or = |want: Option<u8>, got: Option<u8>| want.is_none() || want == got;
        match self {
            TrafficMatch::Any => true,
            TrafficMatch::Ports { protocol, ports } => {
                packet.protocol == *protocol
                    && ports
                        .is_none_or(|(from, to)| packet.port.is_some_and(|p| from <= p && p <= to))
            }
            TrafficMatch::Icmp {
                family: icmp_family,
                icmp_type,
                code,
            } => {
                let number = match icmp_family {
                    Family::Ipv4 => ICMP,
                    Family::Ipv6 => ICMPV6,
                };
                family == *icmp_family
                    && packet.protocol == number
                    && any_or(*icmp_type, packet.icmp.map(|x| x.0))
                    && any_or(*code, packet.icmp.map(|x| x.1))
            }
            TrafficMatch::Protocol(n) => packet.protocol == *n,
        }
    }
}

/// `-1` (or any negative value) is "any"; anything above 255 can never match
/// a type or code, which validation refuses anyway.
fn icmp_field(v: Option<i32>) -> Option<u8> {
    v.and_then(|v| u8::try_from(v).ok())
}

/// The traffic part of a rule for one address family, or `None` when the
/// rule cannot match that family (ICMP on IPv6, ICMPv6 on IPv4).
fn traffic(
    protocol: IpProtocol,
    ports: Option<(u16, u16)>,
    icmp: Option<(Option<u8>, Option<u8>)>,
    family: Family,
) -> Option<TrafficMatch> {
    let IpProtocol::Number(n) = protocol else {
        return Some(TrafficMatch::Any);
    };
    Some(match (n, icmp) {
        (TCP | UDP, _) => TrafficMatch::Ports { protocol: n, ports },
        (ICMP, Some((icmp_type, code))) if family == Family::Ipv4 => TrafficMatch::Icmp {
            family,
            icmp_type,
            code,
        },
        (ICMPV6, Some((icmp_type, code))) if family == Family::Ipv6 => TrafficMatch::Icmp {
            family,
            icmp_type,
            code,
        },
        (ICMP | ICMPV6, Some(_)) => return None,
        _ => TrafficMatch::Protocol(n),
    })
}

/// The matches of one security-group rule: one for a CIDR, one per family
/// for a group reference or a prefix list (a list holds one family, so the
/// other match is empty), none for a rule that cannot match its peer's
/// family. A rule admits a packet when any
/// of its matches does. Staleness is the caller's business.
pub fn lower_sg_rule(rule: &SgRule) -> Vec<RuleMatch> {
    let Ok(protocol) = IpProtocol::parse(&rule.protocol) else {
        return Vec::new();
    };
    // TCP/UDP: no range, or one spanning every port, is every port.
    let ports = match (rule.from_port, rule.to_port) {
        (Some(from), Some(to)) if !(from <= 0 && to >= 65535) => Some((
            u16::try_from(from).unwrap_or(0),
            u16::try_from(to).unwrap_or(u16::MAX),
        )),
        _ => None,
    };
    // ICMP: FromPort is the type and ToPort the code; a group rule always
    // carries both (-1 for any).
    let icmp = Some((icmp_field(rule.from_port), icmp_field(rule.to_port)));
    let addresses: Vec<AddressMatch> = match &rule.peer {
        SgPeer::Cidr4(n) => vec![AddressMatch::Prefix(IpNet::V4(*n))],
        SgPeer::Cidr6(n) => vec![AddressMatch::Prefix(IpNet::V6(*n))],
        SgPeer::Group { group_id, .. } => [Family::Ipv4, Family::Ipv6]
            .into_iter()
            .map(|family| AddressMatch::GroupMembers {
                group_id: group_id.clone(),
                family,
            })
            .collect(),
        SgPeer::PrefixList(list_id) => [Family::Ipv4, Family::Ipv6]
            .into_iter()
            .map(|family| AddressMatch::PrefixList {
                list_id: list_id.clone(),
                family,
            })
            .collect(),
    };
    addresses
        .into_iter()
        .filter_map(|address| {
            let family = match &address {
                AddressMatch::Prefix(net) => Family::of(net.addr()),
                AddressMatch::GroupMembers { family, .. }
                | AddressMatch::PrefixList { family, .. } => *family,
            };
            Some(RuleMatch {
                traffic: traffic(protocol, ports, icmp, family)?,
                address,
            })
        })
        .collect()
}

/// The match of one (non-`*`) ACL entry, or `None` when it cannot match any
/// packet (ICMP type matching on an IPv6 CIDR, or ICMPv6 on IPv4).
pub fn lower_acl_entry(entry: &AclEntry) -> Option<RuleMatch> {
    let protocol = IpProtocol::parse(&entry.protocol).ok()?;
    let icmp = entry
        .icmp
        .map(|(t, c)| (icmp_field(Some(t)), icmp_field(Some(c))));
    Some(RuleMatch {
        traffic: traffic(protocol, entry.ports, icmp, Family::of(entry.cidr.addr()))?,
        address: AddressMatch::Prefix(entry.cidr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::AclAction;
    use proptest::prelude::*;

    fn sg_rule(protocol: &str, from: Option<i32>, to: Option<i32>, peer: SgPeer) -> SgRule {
        SgRule {
            id: "sgr-00000000000000001".into(),
            protocol: protocol.into(),
            from_port: from,
            to_port: to,
            peer,
            description: None,
            tags: Vec::new(),
        }
    }

    fn group(id: &str) -> SgPeer {
        SgPeer::Group {
            group_id: id.into(),
            user_id: "111111111111".into(),
            vpc_id: None,
            peering_id: None,
        }
    }

    #[test]
    fn one_normaliser_two_spellings() {
        for (input, group, acl) in [
            ("-1", "-1", "-1"),
            ("all", "-1", "-1"),
            ("TCP", "tcp", "6"),
            ("6", "tcp", "6"),
            (" udp ", "udp", "17"),
            ("1", "icmp", "1"),
            ("icmpv6", "icmpv6", "58"),
            ("50", "50", "50"),
            ("0", "0", "0"),
            ("255", "255", "255"),
        ] {
            let p = IpProtocol::parse(input).unwrap();
            assert_eq!((p.group_form(), p.acl_form()), (group.into(), acl.into()));
        }
        for bad in ["", "256", "-2", "tcpx", "1.5", "+6"] {
            let e = IpProtocol::parse(bad).unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue", "{bad}");
        }
    }

    #[test]
    fn group_references_match_each_family_and_icmp_only_its_own() {
        let ping = lower_sg_rule(&sg_rule("icmp", Some(8), Some(-1), group("sg-1")));
        assert_eq!(
            ping,
            vec![RuleMatch {
                address: AddressMatch::GroupMembers {
                    group_id: "sg-1".into(),
                    family: Family::Ipv4
                },
                traffic: TrafficMatch::Icmp {
                    family: Family::Ipv4,
                    icmp_type: Some(8),
                    code: None
                },
            }]
        );
        assert_eq!(
            lower_sg_rule(&sg_rule("tcp", Some(0), Some(65535), group("sg-1"))).len(),
            2
        );
        let v6: SgPeer = SgPeer::Cidr6("::/0".parse().unwrap());
        assert!(lower_sg_rule(&sg_rule("icmp", Some(-1), Some(-1), v6)).is_empty());
        let pl = SgPeer::PrefixList("pl-1".into());
        let pl_rule = sg_rule("tcp", Some(443), Some(443), pl);
        let lowered = lower_sg_rule(&pl_rule);
        assert_eq!(lowered.len(), 2, "one match per family, like a group");
        let https = PacketFields {
            protocol: TCP,
            port: Some(443),
            icmp: None,
        };
        let in_list = |l: &str, a: IpAddr| l == "pl-1" && a.to_string().starts_with("10.9.");
        let admits = |a: &str| {
            lowered
                .iter()
                .any(|m| m.admits(https, a.parse().unwrap(), |_, _| false, in_list))
        };
        assert!(admits("10.9.0.1"));
        assert!(!admits("10.8.0.1"));
    }

    fn acl_entry(protocol: &str, cidr: &str, icmp: Option<(i32, i32)>) -> AclEntry {
        AclEntry {
            rule_number: 100,
            egress: false,
            protocol: protocol.into(),
            action: AclAction::Allow,
            cidr: cidr.parse().unwrap(),
            icmp,
            ports: None,
        }
    }

    #[test]
    fn acl_icmp_on_the_wrong_family_matches_nothing() {
        assert!(lower_acl_entry(&acl_entry("1", "::/0", Some((-1, -1)))).is_none());
        assert!(lower_acl_entry(&acl_entry("58", "0.0.0.0/0", Some((-1, -1)))).is_none());
        let ok = lower_acl_entry(&acl_entry("58", "::/0", Some((128, -1)))).unwrap();
        let echo = PacketFields {
            protocol: ICMPV6,
            port: None,
            icmp: Some((128, 0)),
        };
        assert!(ok.admits(
            echo,
            "2001:db8::1".parse().unwrap(),
            |_, _| false,
            |_, _| false
        ));
        assert!(!ok.admits(
            PacketFields {
                icmp: Some((129, 0)),
                ..echo
            },
            "2001:db8::1".parse().unwrap(),
            |_, _| false,
            |_, _| false
        ));
    }

    fn any_protocol() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("-1".to_string()),
            Just("all".to_string()),
            Just("tcp".to_string()),
            Just("UDP".to_string()),
            Just("icmp".to_string()),
            Just("icmpv6".to_string()),
            (0u16..=255).prop_map(|n| n.to_string()),
        ]
    }

    proptest! {
        /// Every spelling AWS accepts normalises to one value that both
        /// display forms read back as itself.
        #[test]
        fn protocols_round_trip(p in any_protocol()) {
            let parsed = IpProtocol::parse(&p).unwrap();
            prop_assert_eq!(IpProtocol::parse(&parsed.group_form()).unwrap(), parsed);
            prop_assert_eq!(IpProtocol::parse(&parsed.acl_form()).unwrap(), parsed);
        }

        /// A security-group rule admits exactly the packets its lowered
        /// matches admit, and its SG and ACL spellings lower alike.
        #[test]
        fn sg_and_acl_forms_lower_to_the_same_match(
            p in any_protocol(),
            from in 0u16..=65535,
            len in 0u16..=2000,
            icmp_type in -1i32..=255,
            icmp_code in -1i32..=255,
            v6 in any::<bool>(),
            prefix in 0u8..=32,
        ) {
            let protocol = IpProtocol::parse(&p).unwrap();
            let to = from.saturating_add(len);
            let (cidr, peer): (IpNet, SgPeer) = if v6 {
                let n: ipnet::Ipv6Net = format!("2001:db8::/{}", prefix + 32).parse().unwrap();
                (IpNet::V6(n), SgPeer::Cidr6(n))
            } else {
                let n: ipnet::Ipv4Net = format!("10.0.0.0/{prefix}").parse::<ipnet::Ipv4Net>().unwrap().trunc();
                (IpNet::V4(n), SgPeer::Cidr4(n))
            };
            let is_icmp = matches!(protocol, IpProtocol::Number(ICMP | ICMPV6));
            let is_ports = matches!(protocol, IpProtocol::Number(TCP | UDP));
            // An ICMP type of -1 forces the code to -1, as validation does.
            let icmp_code = if icmp_type < 0 { -1 } else { icmp_code };
            let (sg_from, sg_to) = if is_icmp {
                (Some(icmp_type), Some(icmp_code))
            } else if is_ports {
                (Some(i32::from(from)), Some(i32::from(to)))
            } else {
                (None, None)
            };
            let rule = sg_rule(&protocol.group_form(), sg_from, sg_to, peer);
            let entry = AclEntry {
                ports: is_ports.then_some((from, to)),
                icmp: is_icmp.then_some((icmp_type, icmp_code)),
                ..acl_entry(&protocol.acl_form(), &cidr.to_string(), None)
            };
            let from_rule = lower_sg_rule(&rule);
            let from_entry: Vec<RuleMatch> = lower_acl_entry(&entry).into_iter().collect();
            if is_ports && from == 0 && to == 65535 {
                // The SG form folds the full range into "any port".
                let every_port = |m: &RuleMatch| matches!(m.traffic, TrafficMatch::Ports { ports: None, .. });
                prop_assert!(from_rule.iter().all(every_port));
            } else {
                prop_assert_eq!(from_rule, from_entry);
            }
        }
    }
}
