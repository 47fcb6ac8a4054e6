//! Route tables: routes with their state, the route editor with its target
//! picker (gateways, NAT gateways, peering connections, interfaces), and
//! subnet associations.

use crate::session::Viewer;
use crate::view::{action_form, badge, button_form, link, name_cell, tag_editor};
use crate::{Console, PageReq};
use axum::response::Response;
use maud::{html, Markup};
use vpc_model::ops;
use vpc_model::{Ctx, Route, RouteTable, RouteTarget, Subnet, World};

/// How a route's target reads in the table (`local`, `pcx-…`, …), linked where it has a page.
pub fn target_cell(t: &RouteTarget) -> Markup {
    match t {
        RouteTarget::Local => html! { "local" },
        RouteTarget::Peering(id) => link("peering", id),
        RouteTarget::Instance(id) => link("instances", id),
        other => html! { (other.id().unwrap_or("")) },
    }
}

/// The routes of a table as rows: destination, target, state, origin.
pub fn route_rows(w: &World, rt: &RouteTable, delete: Option<(&Viewer, &str)>) -> Markup {
    html! {
        @for r in &rt.routes {
            tr.route data-destination=(r.dest) {
                td { (r.dest) }
                td { (target_cell(&r.target)) }
                td { (badge(ops::route::route_state(w, rt, r))) }
                td { (r.origin) }
                @if let Some((v, here)) = delete {
                    td { @if r.target != RouteTarget::Local && r.origin != "CreateRouteTable" {
                        (delete_route(v, rt, r, here))
                    } }
                }
            }
        }
    }
}

fn delete_route(v: &Viewer, rt: &RouteTable, r: &Route, here: &str) -> Markup {
    let dest = r.dest.to_string();
    let param = if r.dest.addr().is_ipv4() {
        "DestinationCidrBlock"
    } else {
        "DestinationIpv6CidrBlock"
    };
    button_form(
        v,
        "DeleteRoute",
        &[("RouteTableId", &rt.meta.id), (param, &dest)],
        here,
        "Remove",
        true,
    )
}

/// The targets a route in `vpc_id` can name, as (`Param=id`, label).
fn target_options(w: &World, ctx: &Ctx<'_>, vpc_id: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for g in w.scoped::<vpc_model::InternetGateway>(&ctx.account, &ctx.region) {
        if g.vpc_id.as_deref() == Some(vpc_id) {
            out.push((
                format!("GatewayId={}", g.meta.id),
                format!("Internet gateway {}", g.meta.id),
            ));
        }
    }
    for g in w.scoped::<vpc_model::NatGateway>(&ctx.account, &ctx.region) {
        if g.vpc_id == vpc_id {
            out.push((
                format!("NatGatewayId={}", g.meta.id),
                format!("NAT gateway {} ({})", g.meta.id, g.state.as_str()),
            ));
        }
    }
    for (p, _) in ops::peering::listed(w, &ctx.account, &ctx.region, ctx.now) {
        if p.requester.vpc_id == vpc_id || p.accepter.vpc_id == vpc_id {
            out.push((
                format!("VpcPeeringConnectionId={}", p.id),
                format!(
                    "Peering connection {} ({} ↔ {}, {})",
                    p.id,
                    p.requester.vpc_id,
                    p.accepter.vpc_id,
                    p.state.as_str()
                ),
            ));
        }
    }
    for e in w.scoped::<vpc_model::NetworkInterface>(&ctx.account, &ctx.region) {
        if e.vpc_id == vpc_id {
            out.push((
                format!("NetworkInterfaceId={}", e.meta.id),
                format!("Network interface {}", e.meta.id),
            ));
        }
    }
    out
}

pub fn tables(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let vpc_filter = r.q("vpc").to_string();
    let body = c.read(v, |w, ctx| {
        let rows: Vec<&RouteTable> = w
            .scoped::<RouteTable>(&ctx.account, &ctx.region)
            .filter(|t| vpc_filter.is_empty() || t.vpc_id == vpc_filter)
            .collect();
        let (rows, pager) = crate::view::paged(rows, r, "/console/route-tables");
        let vpcs = crate::pages::network::vpc_options(w, ctx);
        html! {
            table id="route-tables" {
                thead { tr { th { "Name" } th { "Route table ID" } th { "VPC" } th { "Main" } th { "Explicit subnet associations" } th { "Routes" } } }
                tbody { @for t in &rows {
                    tr {
                        td { (name_cell(&t.meta.tags)) }
                        td { (link("route-tables", &t.meta.id)) }
                        td { (link("vpcs", &t.vpc_id)) }
                        td { (if t.is_main() { "Yes" } else { "No" }) }
                        td { (t.assocs.iter().filter(|a| a.subnet_id.is_some()).count()) }
                        td { (t.routes.len()) }
                    }
                } }
            }
            (pager)
            h2 { "Create route table" }
            (action_form(v, "CreateRouteTable", "/console/route-tables/{id}", Some("routeTableId"), "create", html! {
                input type="hidden" name="NameType" value="route-table";
                input type="hidden" name="back" value="/console/route-tables";
                label { "VPC " select name="VpcId" { @for (id, label) in &vpcs { option value=(id) selected[*id == vpc_filter] { (label) } } } }
                label { "Name tag " input name="Name"; }
                button type="submit" { "Create route table" }
            }))
        }
    });
    c.render(v, "route-tables", "Route tables", body)
}

pub fn table(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = format!("/console/route-tables/{}", r.id);
    let body = c.read(v, |w, ctx| -> Result<_, vpc_model::Fault> {
        let t = ops::route::get(w, ctx, &r.id)?;
        let id = t.meta.id.as_str();
        let targets = target_options(w, ctx, &t.vpc_id);
        let subnets: Vec<&Subnet> = w
            .scoped::<Subnet>(&ctx.account, &ctx.region)
            .filter(|s| s.vpc_id == t.vpc_id)
            .collect();
        Ok(html! {
            dl.facts {
                dt { "Route table ID" } dd { (id) }
                dt { "VPC" } dd { (link("vpcs", &t.vpc_id)) }
                dt { "Main" } dd { (if t.is_main() { "Yes" } else { "No" }) }
            }
            h2 { "Routes" }
            table id="routes" {
                thead { tr { th { "Destination" } th { "Target" } th { "Status" } th { "Origin" } th {} } }
                tbody { (route_rows(w, t, Some((v, &here)))) }
            }
            h3 { "Add route" }
            (action_form(v, "CreateRoute", &here, None, "row", html! {
                input type="hidden" name="RouteTableId" value=(id);
                label { "Destination " input name="DestinationCidrBlock" id="route-destination" placeholder="10.1.0.0/16" required; }
                label { "Target "
                    select name="Target" id="route-target" {
                        @for (val, label) in &targets { option value=(val) { (label) } }
                    }
                }
                button type="submit" { "Add route" }
            }))
            h2 { "Subnet associations" }
            table id="associations" {
                thead { tr { th { "Association" } th { "Subnet" } th {} } }
                tbody { @for a in &t.assocs {
                    tr {
                        td { (a.id) }
                        td { @if let Some(s) = &a.subnet_id { (link("subnets", s)) } @else if a.main { "(main: every subnet without an explicit association)" } }
                        td { @if !a.main { (button_form(v, "DisassociateRouteTable", &[("AssociationId", &a.id)], &here, "Disassociate", true)) } }
                    }
                } }
            }
            (action_form(v, "AssociateRouteTable", &here, None, "row", html! {
                input type="hidden" name="RouteTableId" value=(id);
                label { "Subnet " select name="SubnetId" id="associate-subnet" { @for s in &subnets { option value=(s.meta.id) { (s.meta.id) " " (crate::view::subnet_block(s)) } } } }
                button type="submit" { "Associate subnet" }
            }))
            (tag_editor(v, id, &t.meta.tags, &here))
            @if !t.is_main() {
                h2 { "Delete" }
                (action_form(v, "DeleteRouteTable", "/console/route-tables", None, "inline", html! {
                    input type="hidden" name="RouteTableId" value=(id);
                    input type="hidden" name="back" value=(here);
                    button.danger type="submit" { "Delete route table" }
                }))
            }
        })
    });
    c.render(
        v,
        "route-tables",
        &format!("Route table {}", r.id),
        body.and_then(|b| b),
    )
}
