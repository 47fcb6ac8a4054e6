//! From a Network Insights path to the record it stores: the evaluator's
//! query for a path ([`query_of`]) and the analysis frozen with ARNs and
//! names ([`freeze`]), together [`analyze_path`], which
//! `vpc_model::ops::insights::start_analysis` is given to run.

use crate::{Endpoint, Protocol, Query};
use std::net::IpAddr;
use vpc_model::fault::{Fault, Result};
use vpc_model::ops::insights::{component_ref, resource_type_of};
use vpc_model::types::*;
use vpc_model::world::World;

fn bad(param: &str, v: &str) -> Fault {
    Fault::invalid_param(format!("Value ({v}) for parameter {param} is invalid."))
}

/// Analyses a path over the whole world (as a local administrator sees
/// it) and freezes the result; `start_analysis` redacts it for its owner.
pub fn analyze_path(w: &World, p: &NetworkInsightsPath) -> Result<AnalysisResult> {
    let mut q = query_of(p)?;
    // An end in an IPv6-only subnet has only IPv6 to be reached over.
    q.ipv6 |= q.has_ipv6_only_end(w);
    Ok(freeze(w, &crate::analyze(w, &q)?))
}

/// The evaluator's query for a path.
///
/// The destination is the destination resource, else the destination
/// address (`DestinationIp`, else a filter's `DestinationAddress`). A filter's
/// destination port range is analysed at its first port. IPv6 is analysed
/// when an address given is IPv6, or ([`analyze_path`]) when an end is an
/// instance or interface of an IPv6-only subnet (vpcd extensions; AWS
/// analyses IPv4 only).
pub fn query_of(p: &NetworkInsightsPath) -> Result<Query> {
    let source = endpoint(&p.source).ok_or_else(|| bad("Source", &p.source))?;
    let dest_address = p
        .destination_ip
        .or(p
            .filter_at_source
            .as_ref()
            .and_then(|f| f.destination_address))
        .or(p
            .filter_at_destination
            .as_ref()
            .and_then(|f| f.destination_address));
    let destination = match &p.destination {
        Some(d) => endpoint(d).ok_or_else(|| bad("Destination", d))?,
        None => Endpoint::Address(dest_address.ok_or_else(|| Fault::missing("Destination"))?),
    };
    let protocol = match p.protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => Protocol::Icmp,
    };
    let port = p.destination_port.or_else(|| {
        [&p.filter_at_source, &p.filter_at_destination]
            .iter()
            .find_map(|f| f.as_ref().and_then(|f| f.destination_port_range))
            .map(|(from, _)| from)
    });
    let ipv6 = [p.source_ip, dest_address]
        .iter()
        .flatten()
        .any(IpAddr::is_ipv6);
    Ok(Query {
        source,
        destination,
        protocol,
        port: if protocol == Protocol::Icmp {
            None
        } else {
            port
        },
        ipv6,
    })
}

fn endpoint(id: &str) -> Option<Endpoint> {
    match resource_type_of(id)? {
        "instance" => Some(Endpoint::Instance(id.to_string())),
        "network-interface" => Some(Endpoint::NetworkInterface(id.to_string())),
        _ => None,
    }
}

fn rule_of(w: &World, r: &crate::Rule) -> AnalysisRule {
    match r {
        crate::Rule::Route {
            route_table_id,
            destination,
            target,
            state,
        } => AnalysisRule::Route {
            route_table_id: route_table_id.clone(),
            destination: *destination,
            target: target.clone(),
            state: state.to_string(),
            origin: w.get::<RouteTable>(route_table_id).and_then(|rt| {
                rt.routes
                    .iter()
                    .find(|x| x.dest == *destination)
                    .map(|x| x.origin.clone())
            }),
        },
        crate::Rule::SecurityGroupRule {
            group_id,
            rule_id,
            direction,
            protocol,
            port_range,
            peer,
        } => AnalysisRule::SecurityGroupRule {
            group_id: group_id.clone(),
            rule_id: rule_id.clone(),
            direction: direction.as_str().to_string(),
            protocol: protocol.clone(),
            port_range: *port_range,
            peer: peer.clone(),
        },
        crate::Rule::AclEntry {
            acl_id,
            rule_number,
            egress,
            action,
            protocol,
            cidr,
            port_range,
        } => AnalysisRule::AclEntry {
            acl_id: acl_id.clone(),
            rule_number: *rule_number,
            egress: *egress,
            action: action.to_string(),
            protocol: protocol.clone(),
            cidr: *cidr,
            port_range: *port_range,
        },
    }
}

fn hop_of(w: &World, h: &crate::Hop) -> AnalysisHop {
    let attached_to = (h.component.kind == "network-interface")
        .then(|| w.get::<NetworkInterface>(&h.component.id))
        .flatten()
        .and_then(|e| e.attachment.as_ref())
        .map(|a| component_ref(w, "instance", &a.instance_id));
    AnalysisHop {
        sequence: h.sequence,
        component: component_ref(w, h.component.kind, &h.component.id),
        vpc: h.vpc_id.as_deref().map(|v| component_ref(w, "vpc", v)),
        subnet: h
            .subnet_id
            .as_deref()
            .map(|s| component_ref(w, "subnet", s)),
        attached_to,
        rule: h.rule.as_ref().map(|r| rule_of(w, r)),
    }
}

/// The evaluator's analysis, frozen with ARNs and names as of now.
pub fn freeze(w: &World, a: &crate::Analysis) -> AnalysisResult {
    AnalysisResult {
        reachable: a.reachable,
        source_ip: a.source_ip,
        destination_ip: a.destination_ip,
        forward: a.forward.iter().map(|h| hop_of(w, h)).collect(),
        ret: a.ret.iter().map(|h| hop_of(w, h)).collect(),
        explanations: a
            .explanations
            .iter()
            .map(|e| AnalysisExplanation {
                code: e.code.to_string(),
                component: component_ref(w, e.component.kind, &e.component.id),
                direction: e.direction.map(|d| d.as_str().to_string()),
                rule: e.rule.as_ref().map(|r| rule_of(w, r)),
                vpc: e.vpc_id.as_deref().map(|v| component_ref(w, "vpc", v)),
                subnet: e
                    .subnet_id
                    .as_deref()
                    .map(|s| component_ref(w, "subnet", s)),
                detail: e.detail.clone(),
            })
            .collect(),
        diagnoses: a
            .diagnoses
            .iter()
            .map(|d| AnalysisDiagnosis {
                kind: d.kind.name().to_string(),
                message: d.message.clone(),
                fix: d.fix.clone(),
            })
            .collect(),
    }
}
