//! Readable text for an analysis' rules, shared by every human-facing view
//! (the `vpcd reach` report and the console's reachability page).

use vpc_model::AnalysisRule;

fn port_text(r: Option<(impl std::fmt::Display, impl std::fmt::Display)>) -> String {
    match r {
        Some((a, b)) if a.to_string() == b.to_string() => format!(" port {a}"),
        Some((a, b)) => format!(" ports {a}-{b}"),
        None => String::new(),
    }
}

fn proto_text(p: &str) -> String {
    match p {
        "-1" => "all traffic".into(),
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "icmpv6".into(),
        p => p.into(),
    }
}

/// One readable line for the rule that admitted or refused a packet, as the
/// CLI report and the console show it.
pub fn rule_text(r: &AnalysisRule) -> String {
    match r {
        AnalysisRule::Route {
            route_table_id,
            destination,
            target,
            state,
            ..
        } => format!("route {destination} → {target} ({state}) in {route_table_id}"),
        AnalysisRule::SecurityGroupRule {
            group_id,
            rule_id,
            direction,
            protocol,
            port_range,
            peer,
        } => format!(
            "security group {group_id} {direction} rule {rule_id}: {}{} {} {peer}",
            proto_text(protocol),
            port_text(*port_range),
            if direction == "ingress" { "from" } else { "to" }
        ),
        AnalysisRule::AclEntry {
            acl_id,
            rule_number,
            egress,
            action,
            protocol,
            cidr,
            port_range,
        } => {
            let n = if *rule_number >= 32767 {
                "*".to_string()
            } else {
                rule_number.to_string()
            };
            format!(
                "network ACL {acl_id} {} rule {n}: {action} {}{} {cidr}",
                if *egress { "outbound" } else { "inbound" },
                proto_text(protocol),
                port_text(*port_range),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acl_entry_reads_as_one_line() {
        let r = AnalysisRule::AclEntry {
            acl_id: "acl-1".into(),
            rule_number: 100,
            egress: true,
            action: "deny".into(),
            protocol: "6".into(),
            cidr: "10.1.0.0/16".parse().unwrap(),
            port_range: Some((1024, 65535)),
        };
        assert_eq!(
            rule_text(&r),
            "network ACL acl-1 outbound rule 100: deny tcp ports 1024-65535 10.1.0.0/16"
        );
    }

    #[test]
    fn a_security_group_rule_names_its_protocol_and_single_port() {
        let r = AnalysisRule::SecurityGroupRule {
            group_id: "sg-1".into(),
            rule_id: "sgr-1".into(),
            direction: "ingress".into(),
            protocol: "6".into(),
            port_range: Some((22, 22)),
            peer: "10.0.0.0/8".into(),
        };
        assert_eq!(
            rule_text(&r),
            "security group sg-1 ingress rule sgr-1: tcp port 22 from 10.0.0.0/8"
        );
    }
}
