//! VPCs, subnets, internet and NAT gateways.

use crate::session::Viewer;
use crate::view::{action_form, badge, button_form, link, name_cell, tag_editor};
use crate::{Console, PageReq};
use axum::response::Response;
use maud::html;
use vpc_model::ops;
use vpc_model::{InternetGateway, NatGateway, Subnet, Vpc};

/// VPC IDs and labels the viewer owns in the region, for pickers.
pub fn vpc_options(w: &vpc_model::World, ctx: &vpc_model::Ctx<'_>) -> Vec<(String, String)> {
    w.scoped::<Vpc>(&ctx.account, &ctx.region)
        .map(|v| {
            let label = match crate::view::name_of(&v.meta.tags) {
                Some(n) => format!("{} ({n})", v.meta.id),
                None => v.meta.id.clone(),
            };
            (v.meta.id.clone(), label)
        })
        .collect()
}

pub fn vpcs(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let filter = r.q("filter").to_string();
    let body = c.read(v, |w, ctx| {
        let rows: Vec<&Vpc> = w
            .scoped::<Vpc>(&ctx.account, &ctx.region)
            .filter(|x| {
                filter.is_empty()
                    || x.meta.id.contains(&filter)
                    || x.meta.tags.iter().any(|t| t.value.contains(&filter))
            })
            .collect();
        let (rows, pager) = crate::view::paged(rows, r, "/console/vpcs");
        html! {
            form.row method="get" action="/console/vpcs" {
                label { "Filter " input name="filter" value=(filter) placeholder="ID or tag value"; }
                button type="submit" { "Filter" }
            }
            (pager)
            table id="vpcs" {
                thead { tr { th { "Name" } th { "VPC ID" } th { "State" } th { "IPv4 CIDR" } th { "DNS resolution" } th { "DNS hostnames" } th { "Default VPC" } } }
                tbody { @for x in &rows {
                    tr {
                        td { (name_cell(&x.meta.tags)) }
                        td { (link("vpcs", &x.meta.id)) }
                        td { (badge("available")) }
                        td { @for (i, b) in x.cidrs.iter().enumerate() { @if i > 0 { ", " } (b.cidr) } }
                        td { (if x.dns_support { "Enabled" } else { "Disabled" }) }
                        td { (if x.dns_hostnames { "Enabled" } else { "Disabled" }) }
                        td { (if x.is_default { "Yes" } else { "No" }) }
                    }
                } }
            }
            h2 { "Create VPC" }
            (action_form(v, "CreateVpc", "/console/vpcs/{id}", Some("vpcId"), "create", html! {
                input type="hidden" name="NameType" value="vpc";
                input type="hidden" name="back" value="/console/vpcs";
                label { "Name tag " input name="Name" id="vpc-name"; }
                label { "IPv4 CIDR " input name="CidrBlock" id="vpc-cidr" placeholder="10.0.0.0/16" required; }
                button type="submit" { "Create VPC" }
            }))
        }
    });
    c.render(v, "vpcs", "VPCs", body)
}

pub fn vpc(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = format!("/console/vpcs/{}", r.id);
    let body = c.read(v, |w, ctx| -> Result<_, vpc_model::Fault> {
        let x = ops::vpc::get(w, ctx, &r.id)?;
        let subnets: Vec<&Subnet> = w
            .scoped::<Subnet>(&ctx.account, &ctx.region)
            .filter(|s| s.vpc_id == x.meta.id)
            .collect();
        let id = x.meta.id.as_str();
        Ok(html! {
            dl.facts {
                dt { "VPC ID" } dd id="vpc-id" { (id) }
                dt { "Name" } dd { (name_cell(&x.meta.tags)) }
                dt { "Owner" } dd { (x.meta.owner) }
                dt { "Main route table" } dd { (link("route-tables", &x.main_route_table)) }
                dt { "Default network ACL" } dd { (link("network-acls", &x.default_acl)) }
                dt { "Default security group" } dd { (link("security-groups", &x.default_sg)) }
                dt { "Tenancy" } dd { (x.tenancy) }
            }
            h2 { "CIDRs" }
            table id="cidrs" {
                thead { tr { th { "CIDR" } th { "Association" } th { "State" } th {} } }
                tbody {
                    @for (i, b) in x.cidrs.iter().enumerate() {
                        tr { td { (b.cidr) } td { (b.assoc_id) } td { (badge(&b.state)) }
                            td { @if i > 0 { (button_form(v, "DisassociateVpcCidrBlock", &[("AssociationId", &b.assoc_id)], &here, "Remove", true)) } } }
                    }
                    @for b in &x.ipv6 {
                        tr { td { (b.cidr) } td { (b.assoc_id) } td { (badge(&b.state)) } td {} }
                    }
                }
            }
            (action_form(v, "AssociateVpcCidrBlock", &here, None, "row", html! {
                input type="hidden" name="VpcId" value=(id);
                label { "Add IPv4 CIDR " input name="CidrBlock" placeholder="10.1.0.0/16" required; }
                button type="submit" { "Add CIDR" }
            }))
            h2 { "DNS attributes" }
            (action_form(v, "ModifyVpcAttribute", &here, None, "row", html! {
                input type="hidden" name="VpcId" value=(id);
                label { "DNS resolution "
                    select name="EnableDnsSupport.Value" { option value="true" selected[x.dns_support] { "Enabled" } option value="false" selected[!x.dns_support] { "Disabled" } } }
                button type="submit" { "Save DNS resolution" }
            }))
            (action_form(v, "ModifyVpcAttribute", &here, None, "row", html! {
                input type="hidden" name="VpcId" value=(id);
                label { "DNS hostnames "
                    select name="EnableDnsHostnames.Value" { option value="true" selected[x.dns_hostnames] { "Enabled" } option value="false" selected[!x.dns_hostnames] { "Disabled" } } }
                button type="submit" { "Save DNS hostnames" }
            }))
            h2 { "Subnets" }
            (subnet_table(&subnets))
            p { a href={ "/console/reach/matrix?vpc=" (id) } { "Reachability matrix of this VPC" } " · "
                a href={ "/console/topology?vpc=" (id) } { "Topology" } " · "
                a href={ "/console/route-tables?vpc=" (id) } { "Route tables" } }
            (tag_editor(v, id, &x.meta.tags, &here))
            h2 { "Delete" }
            (action_form(v, "DeleteVpc", "/console/vpcs", None, "inline", html! {
                input type="hidden" name="VpcId" value=(id);
                input type="hidden" name="back" value=(here);
                button.danger type="submit" { "Delete VPC" }
            }))
        })
    });
    c.render(v, "vpcs", &format!("VPC {}", r.id), body.and_then(|b| b))
}

fn subnet_table(rows: &[&Subnet]) -> maud::Markup {
    html! {
        table.subnets {
            thead { tr { th { "Name" } th { "Subnet ID" } th { "VPC" } th { "IPv4 CIDR" } th { "Availability Zone" } th { "Available IPv4" } th { "Auto-assign public IPv4" } } }
            tbody { @for s in rows {
                tr {
                    td { (name_cell(&s.meta.tags)) }
                    td { (link("subnets", &s.meta.id)) }
                    td { (link("vpcs", &s.vpc_id)) }
                    td { (crate::view::subnet_block(s)) }
                    td { (s.az) }
                    td { (available_ips(s)) }
                    td { (if s.map_public_ip { "Yes" } else { "No" }) }
                }
            } }
        }
    }
}

/// Addresses left in a subnet (AWS keeps five).
fn available_ips(s: &Subnet) -> u64 {
    let Some(c) = s.cidr else {
        return 0;
    };
    let total = 1u64 << (32 - u32::from(c.prefix_len()));
    total.saturating_sub(5).saturating_sub(s.used_ips)
}

pub fn subnets(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let vpc_filter = r.q("vpc").to_string();
    let body = c.read(v, |w, ctx| {
        let rows: Vec<&Subnet> = w
            .scoped::<Subnet>(&ctx.account, &ctx.region)
            .filter(|s| vpc_filter.is_empty() || s.vpc_id == vpc_filter)
            .collect();
        let (rows, pager) = crate::view::paged(rows, r, "/console/subnets");
        let vpcs = vpc_options(w, ctx);
        html! {
            (subnet_table(&rows))
            (pager)
            h2 { "Create subnet" }
            (action_form(v, "CreateSubnet", "/console/subnets/{id}", Some("subnetId"), "create", html! {
                input type="hidden" name="NameType" value="subnet";
                input type="hidden" name="back" value="/console/subnets";
                label { "VPC " select name="VpcId" id="subnet-vpc" { @for (id, label) in &vpcs { option value=(id) selected[*id == vpc_filter] { (label) } } } }
                label { "Name tag " input name="Name" id="subnet-name"; }
                label { "IPv4 CIDR " input name="CidrBlock" id="subnet-cidr" placeholder="10.0.1.0/24" required; }
                label { "Availability Zone " select name="AvailabilityZone" { option value="" { "No preference" } @for (z, _) in ctx.zones { option value=(z) { (z) } } } }
                button type="submit" { "Create subnet" }
            }))
        }
    });
    c.render(v, "subnets", "Subnets", body)
}

pub fn subnet(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = format!("/console/subnets/{}", r.id);
    let body = c.read(v, |w, ctx| -> Result<_, vpc_model::Fault> {
        let s = ops::subnet::get(w, ctx, &r.id)?;
        let rt = ops::route::table_for_subnet(w, s);
        let acl = w
            .scoped::<vpc_model::NetworkAcl>(&ctx.account, &ctx.region)
            .find(|a| a.assocs.iter().any(|x| x.subnet_id == s.meta.id));
        let id = s.meta.id.as_str();
        Ok(html! {
            dl.facts {
                dt { "Subnet ID" } dd { (id) }
                dt { "VPC" } dd { (link("vpcs", &s.vpc_id)) }
                dt { "IPv4 CIDR" } dd { (crate::view::subnet_block(s)) }
                dt { "Availability Zone" } dd { (s.az) " (" (s.az_id) ")" }
                dt { "Available IPv4 addresses" } dd { (available_ips(s)) }
                dt { "Route table" } dd { @if let Some(t) = rt { (link("route-tables", &t.meta.id)) } }
                dt { "Network ACL" } dd { @if let Some(a) = acl { (link("network-acls", &a.meta.id)) } }
            }
            (action_form(v, "ModifySubnetAttribute", &here, None, "row", html! {
                input type="hidden" name="SubnetId" value=(id);
                label { "Auto-assign public IPv4 "
                    select name="MapPublicIpOnLaunch.Value" { option value="true" selected[s.map_public_ip] { "Yes" } option value="false" selected[!s.map_public_ip] { "No" } } }
                button type="submit" { "Save" }
            }))
            (tag_editor(v, id, &s.meta.tags, &here))
            h2 { "Delete" }
            (action_form(v, "DeleteSubnet", "/console/subnets", None, "inline", html! {
                input type="hidden" name="SubnetId" value=(id);
                input type="hidden" name="back" value=(here);
                button.danger type="submit" { "Delete subnet" }
            }))
        })
    });
    c.render(
        v,
        "subnets",
        &format!("Subnet {}", r.id),
        body.and_then(|b| b),
    )
}

pub fn gateways(c: &Console, v: &Viewer, _r: &PageReq) -> Response {
    let here = "/console/gateways";
    let body = c.read(v, |w, ctx| {
        let igws: Vec<&InternetGateway> = w.scoped(&ctx.account, &ctx.region).collect();
        let nats: Vec<&NatGateway> = w.scoped(&ctx.account, &ctx.region).collect();
        let vpcs = vpc_options(w, ctx);
        let subnets: Vec<&Subnet> = w.scoped(&ctx.account, &ctx.region).collect();
        let eips: Vec<&vpc_model::Address> = w
            .scoped::<vpc_model::Address>(&ctx.account, &ctx.region)
            .filter(|a| a.association_id.is_none())
            .collect();
        html! {
            h2 { "Internet gateways" }
            table id="igws" {
                thead { tr { th { "Name" } th { "ID" } th { "State" } th { "VPC" } th { "Actions" } } }
                tbody { @for g in &igws {
                    tr {
                        td { (name_cell(&g.meta.tags)) }
                        td { (g.meta.id) }
                        td { (badge(if g.vpc_id.is_some() { "attached" } else { "detached" })) }
                        td { @if let Some(x) = &g.vpc_id { (link("vpcs", x)) } }
                        td {
                            @if let Some(x) = &g.vpc_id {
                                (button_form(v, "DetachInternetGateway", &[("InternetGatewayId", &g.meta.id), ("VpcId", x)], here, "Detach", false))
                            } @else {
                                (action_form(v, "AttachInternetGateway", here, None, "inline", html! {
                                    input type="hidden" name="InternetGatewayId" value=(g.meta.id);
                                    select name="VpcId" { @for (id, label) in &vpcs { option value=(id) { (label) } } }
                                    button type="submit" { "Attach" }
                                }))
                                (button_form(v, "DeleteInternetGateway", &[("InternetGatewayId", &g.meta.id)], here, "Delete", true))
                            }
                        }
                    }
                } }
            }
            (action_form(v, "CreateInternetGateway", here, Some("internetGatewayId"), "row", html! {
                input type="hidden" name="NameType" value="internet-gateway";
                label { "Name tag " input name="Name"; }
                button type="submit" { "Create internet gateway" }
            }))
            h2 { "NAT gateways" }
            table id="nats" {
                thead { tr { th { "Name" } th { "ID" } th { "State" } th { "Connectivity" } th { "Subnet" } th { "VPC" } th {} } }
                tbody { @for g in &nats {
                    tr {
                        td { (name_cell(&g.meta.tags)) }
                        td { (g.meta.id) }
                        td { (badge(g.state.as_str())) }
                        td { (g.connectivity) }
                        td { (link("subnets", &g.subnet_id)) }
                        td { (link("vpcs", &g.vpc_id)) }
                        td { (button_form(v, "DeleteNatGateway", &[("NatGatewayId", &g.meta.id)], here, "Delete", true)) }
                    }
                } }
            }
            (action_form(v, "CreateNatGateway", here, Some("natGatewayId"), "row", html! {
                input type="hidden" name="NameType" value="natgateway";
                label { "Name tag " input name="Name"; }
                label { "Subnet " select name="SubnetId" { @for s in &subnets { option value=(s.meta.id) { (s.meta.id) " " (crate::view::subnet_block(s)) } } } }
                label { "Connectivity " select name="ConnectivityType" { option value="public" { "Public" } option value="private" { "Private" } } }
                label { "Elastic IP " select name="AllocationId" { option value="" { "(none: private NAT)" } @for a in &eips { option value=(a.meta.id) { (a.meta.id) " " (a.public_ip) } } } }
                button type="submit" { "Create NAT gateway" }
            }))
            (action_form(v, "AllocateAddress", here, Some("allocationId"), "row", html! {
                input type="hidden" name="Domain" value="vpc";
                button type="submit" { "Allocate Elastic IP address" }
            }))
        }
    });
    c.render(v, "gateways", "Internet & NAT gateways", body)
}
