//! Reachability: a query form, an analysis' verdict with its hops, blockers
//! and diagnoses, and the all-pairs matrix of a VPC's instances.
//!
//! A query runs as the API's Reachability Analyzer does
//! (`CreateNetworkInsightsPath` then `StartNetworkInsightsAnalysis`, through
//! the same action handlers), so the result shown is the stored, redacted
//! analysis: nothing of another account shows beyond what the API shows.

use crate::form::element_text;
use crate::pages::instances::{addresses, connectivity_form};
use crate::session::{Flash, Viewer};
use crate::view::{badge, link};
use crate::{Console, PageReq, Shared};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use sha2::{Digest, Sha256};
use vpc_model::ops::insights;
use vpc_model::{AnalysisHop, Instance, InstanceState};
use vpc_reach::rule_text;

fn hops(id: &str, hops: &[AnalysisHop]) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th { "#" } th { "Component" } th { "Kind" } th { "VPC" } th { "Subnet" } th { "Admitted by" } } }
            tbody { @for h in hops {
                tr {
                    td { (h.sequence) }
                    td { (h.component.id_or_description()) }
                    td { (h.component.kind) }
                    td { @if let Some(v) = &h.vpc { (v.id_or_description()) } }
                    td { @if let Some(s) = &h.subnet { (s.id_or_description()) } }
                    td { @if let Some(r) = &h.rule { (rule_text(r)) } }
                }
            } }
        }
    }
}

pub fn form_page(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let body = c.read(v, |w, ctx| {
        let sources: Vec<&Instance> = w
            .scoped::<Instance>(&ctx.account, &ctx.region)
            .filter(|i| i.state != InstanceState::Terminated)
            .collect();
        let dests: Vec<(String, String)> = sources
            .iter()
            .map(|i| {
                let ip = addresses(w, i).private_ip.map(|x| x.to_string()).unwrap_or_default();
                (i.meta.id.clone(), ip)
            })
            .collect();
        html! {
            form.row method="get" action="/console/reach" {
                label { "Source " select name="source" id="reach-source" {
                    @for i in &sources { option value=(i.meta.id) selected[i.meta.id == r.q("source")] { (i.meta.id) " " (crate::view::name_of(&i.meta.tags).unwrap_or("")) } }
                } }
                button type="submit" { "Choose source" }
            }
            @let source = if r.q("source").is_empty() { sources.first().map_or("", |i| i.meta.id.as_str()) } else { r.q("source") };
            @if !source.is_empty() {
                h2 { "From " (source) }
                (connectivity_form(v, source, &dests))
                @if !r.q("destination").is_empty() {
                    p.muted { "Suggested: destination " code { (r.q("destination")) } ", protocol " code { (r.q("protocol")) } " " (r.q("port")) }
                }
            } @else {
                p { "Launch an instance first: an analysis starts at an instance or a network interface." }
            }
            h2 { "Matrix" }
            p { "All pairs of a VPC's instances: " a href="/console/reach/matrix" { "reachability matrix" } "." }
        }
    });
    c.render(v, "reach", "Reachability", body)
}

/// `POST /console/reach`: create (or reuse) the path and run an analysis.
pub async fn run(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let v = match crate::checked(&c, &headers, &f) {
        Ok(v) => v,
        Err(why) => return crate::refused(why),
    };
    let field = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map_or(String::new(), |(_, x)| x.trim().to_string())
    };
    let (source, destination, protocol, port) = (
        field("source"),
        field("destination"),
        field("protocol"),
        field("port"),
    );
    tokio::task::spawn_blocking(move || {
        let back = if source.starts_with("i-") {
            crate::form::safe_next(Some(&format!("/console/instances/{source}")))
        } else {
            "/console/reach".to_string()
        };
        let token = hex::encode(Sha256::digest(
            format!("{source}\n{destination}\n{protocol}\n{port}").as_bytes(),
        ));
        let mut p = vec![
            (
                "Action".to_string(),
                "CreateNetworkInsightsPath".to_string(),
            ),
            ("Source".into(), source.clone()),
            ("Protocol".into(), protocol.clone()),
            ("ClientToken".into(), format!("console-{}", &token[..32])),
        ];
        if destination.starts_with("i-") || destination.starts_with("eni-") {
            p.push(("Destination".into(), destination.clone()));
        } else {
            p.push(("DestinationIp".into(), destination.clone()));
        }
        if !port.is_empty() && protocol != "icmp" {
            p.push(("DestinationPort".into(), port.clone()));
        }
        let outcome = c.call(&v, p).and_then(|xml| {
            let path = element_text(&xml, "networkInsightsPathId").unwrap_or_default();
            c.call(
                &v,
                vec![
                    ("Action".into(), "StartNetworkInsightsAnalysis".into()),
                    ("NetworkInsightsPathId".into(), path),
                ],
            )
        });
        match outcome {
            Ok(xml) => {
                let id = element_text(&xml, "networkInsightsAnalysisId").unwrap_or_default();
                if let Some(prober) = &c.prober {
                    let port = port.parse().ok();
                    let w = c.app.snapshot();
                    let text = match prober.probe(&w, &source, &destination, &protocol, port) {
                        Ok(true) => format!("Real probe ({protocol} from {source}'s namespace to {destination}): delivered."),
                        Ok(false) => format!("Real probe ({protocol} from {source}'s namespace to {destination}): not delivered."),
                        Err(why) => {
                            tracing::info!(%why, "console: no real probe");
                            "No real probe ran (the data plane could not run one for this path).".to_string()
                        }
                    };
                    c.sessions.set_flash(&v.sid, Flash { ok: true, text, link: None });
                }
                crate::redirect(&crate::form::safe_next(Some(&format!(
                    "/console/reach/{id}"
                ))))
            }
            Err(e) => {
                c.sessions.set_flash(
                    &v.sid,
                    Flash {
                        ok: false,
                        text: format!("{}: {}", e.code, e.message),
                        link: None,
                    },
                );
                crate::redirect(&back)
            }
        }
    })
    .await
    .unwrap_or_else(|_| crate::redirect("/console/reach"))
}

/// A diagnosis' fix that is one route: (destination, target parameter, target, route table).
#[derive(Debug, PartialEq, Eq)]
pub struct RouteFix {
    pub destination: String,
    pub param: &'static str,
    pub target: String,
    pub route_table: String,
}

/// Reads vpc-reach's "add a route to CIDR via TARGET in rtb-…" fix (and only that form).
pub fn route_fix(fix: &str) -> Option<RouteFix> {
    let rest = fix.strip_prefix("add a route to ")?;
    let (destination, rest) = rest.split_once(" via ")?;
    let (target, route_table) = rest.split_once(" in ")?;
    destination.parse::<ipnet::IpNet>().ok()?;
    let param = match target.split_once('-')?.0 {
        "pcx" => "VpcPeeringConnectionId",
        "igw" => "GatewayId",
        "nat" => "NatGatewayId",
        "eni" => "NetworkInterfaceId",
        _ => return None,
    };
    let id_ok = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (route_table.starts_with("rtb-") && id_ok(route_table) && id_ok(target)).then(|| RouteFix {
        destination: destination.to_string(),
        param,
        target: target.to_string(),
        route_table: route_table.to_string(),
    })
}

/// The fix as a form the user confirms: it runs CreateRoute, which checks it as any request.
fn apply_route_fix(v: &Viewer, f: &RouteFix, here: &str) -> Markup {
    let dest_param = if f.destination.contains(':') {
        "DestinationIpv6CidrBlock"
    } else {
        "DestinationCidrBlock"
    };
    crate::view::action_form(
        v,
        "CreateRoute",
        here,
        None,
        "row apply-fix",
        html! {
            input type="hidden" name="RouteTableId" value=(f.route_table);
            input type="hidden" name=(dest_param) value=(f.destination);
            input type="hidden" name=(f.param) value=(f.target);
            input type="hidden" name="Done" value="Route added; run the analysis again to check.";
            span { "CreateRoute " code { (f.destination) " → " (f.target) } " in " code { (f.route_table) } }
            button type="submit" id="apply-fix" { "Apply this fix" }
        },
    )
}

pub fn result(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = format!("/console/reach/{}", r.id);
    let body = c.read(v, |w, ctx| -> Result<_, vpc_model::Fault> {
        let a = insights::get_analysis(w, ctx, &r.id)?;
        let path = insights::get_path(w, ctx, &a.path_id)?;
        let res = a.result.clone().unwrap_or_default();
        let dest = path
            .destination
            .clone()
            .or(path.destination_ip.map(|ip| ip.to_string()))
            .unwrap_or_default();
        let port = path.destination_port.map(|p| p.to_string()).unwrap_or_default();
        Ok(html! {
            dl.facts {
                dt { "Analysis" } dd { (a.meta.id) " of path " (path.meta.id) }
                dt { "Source" } dd { (link("instances", &path.source)) @if let Some(ip) = res.source_ip { " (" (ip) ")" } }
                dt { "Destination" } dd { (dest) @if let Some(ip) = res.destination_ip { " (" (ip) ")" } }
                dt { "Protocol" } dd { (path.protocol) " " (port) }
                dt { "Status" } dd { (badge(a.status.as_str())) @if let Some(m) = &a.status_message { " " (m) } }
            }
            @if res.reachable {
                p.verdict.reachable id="verdict" { "Reachable" }
            } @else {
                p.verdict.unreachable id="verdict" { "Not reachable" }
            }
            @if !res.diagnoses.is_empty() {
                h2 { "Diagnosis" }
                ul id="diagnoses" { @for d in &res.diagnoses {
                    li {
                        strong.diagnosis-kind { (d.kind) } ": " (d.message) br; span.fix { "Fix: " (d.fix) }
                        @if let Some(f) = route_fix(&d.fix) { (apply_route_fix(v, &f, &here)) }
                    }
                } }
            }
            @if !res.explanations.is_empty() {
                h2 { "Blockers" }
                table id="explanations" {
                    thead { tr { th { "Code" } th { "Component" } th { "Direction" } th { "Rule" } th { "Detail" } } }
                    tbody { @for e in &res.explanations {
                        tr {
                            td.code { (e.code) }
                            td { (e.component.id_or_description()) }
                            td { (e.direction.as_deref().unwrap_or("")) }
                            td { @if let Some(r) = &e.rule { (rule_text(r)) } }
                            td { (e.detail) }
                        }
                    } }
                }
            }
            h2 { "Forward path" }
            (hops("forward-hops", &res.forward))
            h2 { "Return path" }
            (hops("return-hops", &res.ret))
            @if let Some(wm) = &a.warning_message { p.muted { (wm) } }
            form.row method="post" action="/console/reach" {
                (crate::view::csrf(v))
                input type="hidden" name="source" value=(path.source);
                input type="hidden" name="destination" value=(dest);
                input type="hidden" name="protocol" value=(path.protocol);
                input type="hidden" name="port" value=(port);
                button type="submit" id="rerun" { "Run again" }
            }
        })
    });
    c.render(v, "reach", "Reachability analysis", body.and_then(|b| b))
}

/// Instances in the matrix at most (the table stays readable; the page says so when it cuts).
const MATRIX_MAX: usize = 60;

pub fn matrix(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let vpc = r.q("vpc").to_string();
    let protocol = match r.q("protocol") {
        "tcp" => vpc_reach::Protocol::Tcp,
        "udp" => vpc_reach::Protocol::Udp,
        _ => vpc_reach::Protocol::Icmp,
    };
    let port: Option<u16> = r.q("port").parse().ok();
    let refresh = r.q("refresh").parse::<u32>().ok().filter(|s| *s >= 2);
    let body = c.read(v, |w, ctx| {
        let all: Vec<&Instance> = w
            .scoped::<Instance>(&ctx.account, &ctx.region)
            .filter(|i| i.state != InstanceState::Terminated)
            .filter(|i| vpc.is_empty() || vpc.split(',').any(|x| x == i.vpc_id))
            .collect();
        let cut = all.len() > MATRIX_MAX;
        let shown = &all[..all.len().min(MATRIX_MAX)];
        let ids: Vec<String> = shown.iter().map(|i| i.meta.id.clone()).collect();
        let m = vpc_reach::matrix(w, &ids, protocol, port);
        let vpcs = crate::pages::network::vpc_options(w, ctx);
        let (pname, pstr) = (protocol.as_str(), port.map(|p| p.to_string()).unwrap_or_default());
        html! {
            form.row method="get" action="/console/reach/matrix" {
                label { "VPC " select name="vpc" { option value="" { "All my VPCs here" } @for (id, label) in &vpcs { option value=(id) selected[*id == vpc] { (label) } } } }
                label { "Protocol " select name="protocol" { @for p in ["icmp", "tcp", "udp"] { option value=(p) selected[p == pname] { (p) } } } }
                label { "Port " input name="port" value=(pstr); }
                label { "Refresh every " input name="refresh" size="3" value=(refresh.map(|s| s.to_string()).unwrap_or_default()); " s" }
                button type="submit" { "Show" }
            }
            @if cut { p.muted { "Showing the first " (MATRIX_MAX) " of " (all.len()) " instances; choose a VPC to narrow it." } }
            @if ids.is_empty() { p { "No instances here." } } @else {
                table id="matrix".matrix {
                    thead { tr { th { "from \\ to" } @for i in shown { th { (i.meta.id) } } } }
                    tbody { @for (a, row) in shown.iter().zip(&m) {
                        tr {
                            th { (a.meta.id) }
                            @for (b, ok) in shown.iter().zip(row) {
                                td class=(if *ok { "cell reachable" } else { "cell unreachable" }) {
                                    a href={ "/console/reach?source=" (a.meta.id) "&destination=" (b.meta.id) "&protocol=" (pname) "&port=" (pstr) } title=(if *ok { "reachable" } else { "not reachable" }) { (if *ok { "✓" } else { "✗" }) }
                                }
                            }
                        }
                    } }
                }
            }
        }
    });
    match body {
        Ok(m) => crate::view::html_response(
            axum::http::StatusCode::OK,
            crate::view::page_with_head(v, c.regions(), "reach", "Reachability matrix", refresh, m),
        ),
        Err(f) => c.fault_page(v, "reach", &f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_fix_is_read_only_in_its_exact_form() {
        assert_eq!(
            route_fix("add a route to 10.32.0.0/16 via pcx-0a1b in rtb-9f"),
            Some(RouteFix {
                destination: "10.32.0.0/16".into(),
                param: "VpcPeeringConnectionId",
                target: "pcx-0a1b".into(),
                route_table: "rtb-9f".into(),
            })
        );
        assert_eq!(
            route_fix("add a route to 0.0.0.0/0 via igw-1 in rtb-2")
                .unwrap()
                .param,
            "GatewayId"
        );
        for bad in [
            "add a route to 10.1.0.5 in rtb-1",
            "add a route to nonsense via pcx-1 in rtb-1",
            "add a route to 10.1.0.0/16 via vgw-1 in rtb-1",
            "add a route to 10.1.0.0/16 via pcx-1 in rtb-1\"><script>",
            "create a peering connection between vpc-a and vpc-b",
        ] {
            assert_eq!(route_fix(bad), None, "{bad}");
        }
    }
}
