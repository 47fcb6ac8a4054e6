//! A compact dump of the realised world, for failure reports.

use super::*;

pub(crate) fn dump(w: &World, b: &Built) -> String {
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

pub(crate) fn explain(a: &Analysis) -> String {
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
