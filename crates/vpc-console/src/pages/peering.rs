//! Peering connections with the AWS console's columns and actions: create
//! (my account or another, this region or another), accept and reject,
//! delete, DNS settings, tags; and each side's routes to the other.

use crate::pages::routing::route_rows;
use crate::session::Viewer;
use crate::view::{action_form, badge, button_form, link, name_cell, tag_editor};
use crate::{Console, PageReq};
use axum::response::Response;
use maud::{html, Markup};
use vpc_model::ops::peering as pcx;
use vpc_model::{PcxState, PeerSide, Peering, RouteTable, RouteTarget, Side, World};

/// The CIDRs of a side as a console column shows them (the accepter's only
/// once the model says they are shown).
fn cidrs(p: &Peering, side: Side) -> String {
    if side == Side::Accepter && !pcx::shows_accepter_details(p) {
        return String::new();
    }
    p.side(side)
        .cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Accept and reject, for the side that may (the model checks it again).
fn answer_buttons(v: &Viewer, p: &Peering, side: Side, here: &str) -> Markup {
    html! {
        @if side == Side::Accepter && p.state == PcxState::PendingAcceptance {
            (button_form(v, "AcceptVpcPeeringConnection", &[("VpcPeeringConnectionId", &p.id), ("Done", "Peering connection accepted.")], &format!("/console/peering/{}", p.id), "Accept request", false))
            (button_form(v, "RejectVpcPeeringConnection", &[("VpcPeeringConnectionId", &p.id)], here, "Reject request", true))
        }
    }
}

pub fn list(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = "/console/peering";
    let body = c.read(v, |w, ctx| {
        let rows: Vec<(&Peering, Side)> = pcx::listed(w, &ctx.account, &ctx.region, ctx.now).collect();
        let (rows, pager) = crate::view::paged(rows, r, here);
        let vpcs = crate::pages::network::vpc_options(w, ctx);
        html! {
            table id="peering" {
                thead { tr {
                    th { "Name" } th { "Peering connection ID" } th { "Status" }
                    th { "Requester VPC" } th { "Accepter VPC" } th { "Requester CIDRs" } th { "Accepter CIDRs" }
                    th { "Requester owner ID" } th { "Accepter owner ID" } th { "Requester Region" } th { "Accepter Region" } th.actions { "Actions" }
                } }
                tbody { @for (p, side) in &rows {
                    tr data-id=(p.id) {
                        td { (name_cell(&p.side(*side).tags)) }
                        td { (link("peering", &p.id)) }
                        td.status { (badge(p.state.as_str())) }
                        td { (p.requester.vpc_id) }
                        td { (p.accepter.vpc_id) }
                        td { (cidrs(p, Side::Requester)) }
                        td { (cidrs(p, Side::Accepter)) }
                        td { (p.requester.owner) }
                        td { (p.accepter.owner) }
                        td { (p.requester.region) }
                        td { (p.accepter.region) }
                        td.actions { (answer_buttons(v, p, *side, here)) }
                    }
                } }
            }
            (pager)
            h2 { "Create peering connection" }
            (action_form(v, "CreateVpcPeeringConnection", "/console/peering/{id}", Some("vpcPeeringConnectionId"), "create", html! {
                input type="hidden" name="NameType" value="vpc-peering-connection";
                input type="hidden" name="back" value=(here);
                label { "Name " input name="Name" id="pcx-name"; }
                label { "VPC ID (Requester) " select name="VpcId" id="pcx-vpc" { @for (id, label) in &vpcs { option value=(id) { (label) } } } }
                fieldset {
                    legend { "Select another VPC to peer with" }
                    label { "Account " input name="PeerOwnerId" id="pcx-account" placeholder="blank: my account" pattern="[0-9]{12}"; }
                    label { "Region "
                        select name="PeerRegion" id="pcx-region" {
                            option value="" { "This region (" (v.region) ")" }
                            @for r in &c.regions().list { @if r.name != v.region { option value=(r.name) { (r.name) } } }
                        }
                    }
                    label { "VPC ID (Accepter) " input name="PeerVpcId" id="pcx-peer-vpc" placeholder="vpc-…" required; }
                }
                button type="submit" { "Create peering connection" }
            }))
        }
    });
    c.render(v, "peering", "Peering connections", body)
}

/// One side's route tables and their routes through this connection, if the
/// viewer owns that side; else only who does.
fn side_routes(w: &World, v: &Viewer, p: &Peering, side: Side) -> Markup {
    let s: &PeerSide = p.side(side);
    let other = p.side(match side {
        Side::Requester => Side::Accepter,
        Side::Accepter => Side::Requester,
    });
    let label = match side {
        Side::Requester => "Requester",
        Side::Accepter => "Accepter",
    };
    if s.owner != v.account {
        return html! {
            section.side-routes data-side=(label) {
                h3 { (label) " side: " (s.vpc_id) " (" (s.region) ")" }
                p.muted { "Owned by account " (s.owner) "; its route tables are visible only to that account." }
            }
        };
    }
    let tables: Vec<&RouteTable> = w
        .scoped::<RouteTable>(&v.account, &s.region)
        .filter(|t| t.vpc_id == s.vpc_id)
        .collect();
    let wants: Vec<String> = other.cidrs.iter().map(ToString::to_string).collect();
    html! {
        section.side-routes data-side=(label) {
            h3 { (label) " side: " (s.vpc_id) " (" (s.region) ")" }
            @for t in &tables {
                @let via: Vec<_> = t.routes.iter().filter(|r| r.target == RouteTarget::Peering(p.id.clone())).collect();
                @let has_all = !wants.is_empty() && wants.iter().all(|c| via.iter().any(|r| r.dest.to_string() == *c));
                div.route-table {
                    p {
                        @if s.region == v.region { (link("route-tables", &t.meta.id)) } @else { (t.meta.id) }
                        @if t.is_main() { " (main)" } " "
                        @if has_all { (badge("has-routes")) " routes to the peer's CIDRs" }
                        @else if via.is_empty() { (badge("no-route")) " no route through this connection" }
                        @else { (badge("partial")) " routes to some of the peer's CIDRs" }
                    }
                    @if !via.is_empty() {
                        @let shown = RouteTable { routes: via.into_iter().cloned().collect(), ..(*t).clone() };
                        table.routes { thead { tr { th { "Destination" } th { "Target" } th { "Status" } th { "Origin" } } } tbody { (route_rows(w, &shown, None)) } }
                    }
                }
            }
        }
    }
}

pub fn detail(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = format!("/console/peering/{}", r.id);
    let body = c.read(v, |w, ctx| -> Result<_, vpc_model::Fault> {
        let side = pcx::visible(w, ctx, &r.id)?;
        let p = w
            .get::<Peering>(&r.id)
            .ok_or_else(|| vpc_model::ops::PCX.not_found(&r.id))?;
        let mine = p.side(side);
        let opt_param = match side {
            Side::Requester => "RequesterPeeringConnectionOptions.AllowDnsResolutionFromRemoteVpc",
            Side::Accepter => "AccepterPeeringConnectionOptions.AllowDnsResolutionFromRemoteVpc",
        };
        let dns = mine.options.allow_dns_resolution_from_remote_vpc;
        Ok(html! {
            dl.facts {
                dt { "Peering connection ID" } dd { (p.id) }
                dt { "Status" } dd id="pcx-status" { (badge(p.state.as_str())) " " span.muted { (p.message) } }
                dt { "Requester VPC" } dd { (p.requester.vpc_id) " · owner " (p.requester.owner) " · " (p.requester.region) " · " (cidrs(p, Side::Requester)) }
                dt { "Accepter VPC" } dd { (p.accepter.vpc_id) " · owner " (p.accepter.owner) " · " (p.accepter.region) " · " (cidrs(p, Side::Accepter)) }
                dt { "You are the" } dd { (match side { Side::Requester => "requester", Side::Accepter => "accepter" }) }
            }
            (answer_buttons(v, p, side, &here))
            h2 { "Routes on both sides" }
            (side_routes(w, v, p, Side::Requester))
            (side_routes(w, v, p, Side::Accepter))
            @if p.state == PcxState::Active {
                h2 { "DNS settings" }
                (action_form(v, "ModifyVpcPeeringConnectionOptions", &here, None, "row", html! {
                    input type="hidden" name="VpcPeeringConnectionId" value=(p.id);
                    label { "Allow the peer VPC to resolve DNS of hosts in my VPC to private IP addresses "
                        select name=(opt_param) { option value="true" selected[dns] { "Yes" } option value="false" selected[!dns] { "No" } } }
                    button type="submit" { "Save DNS settings" }
                }))
            }
            (tag_editor(v, &p.id, &mine.tags, &here))
            @if p.state.is_live() {
                h2 { "Delete" }
                (action_form(v, "DeleteVpcPeeringConnection", "/console/peering", None, "inline", html! {
                    input type="hidden" name="VpcPeeringConnectionId" value=(p.id);
                    input type="hidden" name="back" value=(here);
                    button.danger type="submit" { "Delete peering connection" }
                }))
            }
        })
    });
    c.render(
        v,
        "peering",
        &format!("Peering connection {}", r.id),
        body.and_then(|b| b),
    )
}
