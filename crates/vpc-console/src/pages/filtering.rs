//! Security groups (inbound and outbound rule editors, references to peer
//! groups) and network ACLs (ordered entries).

use crate::session::Viewer;
use crate::view::{action_form, badge, button_form, link, name_cell, tag_editor};
use crate::{Console, PageReq};
use axum::response::Response;
use maud::{html, Markup};
use vpc_model::ops;
use vpc_model::{AclEntry, NetworkAcl, SecurityGroup, SgPeer, SgRule, World};

fn ports(from: Option<i32>, to: Option<i32>) -> String {
    match (from, to) {
        (None, _) | (Some(-1), _) => "All".into(),
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        (Some(a), None) => a.to_string(),
    }
}

fn protocol(p: &str) -> &str {
    if p == "-1" {
        "All traffic"
    } else {
        p
    }
}

fn peer_cell(p: &SgPeer) -> Markup {
    match p {
        SgPeer::Cidr4(n) => html! { (n) },
        SgPeer::Cidr6(n) => html! { (n) },
        SgPeer::PrefixList(id) => html! { (id) },
        SgPeer::Group {
            group_id,
            user_id,
            peering_id,
            ..
        } => html! {
            (group_id) " (" (user_id) ")"
            @if let Some(pcx) = peering_id { " via " (link("peering", pcx)) }
        },
    }
}

fn rule_table(w: &World, v: &Viewer, g: &SecurityGroup, egress: bool, here: &str) -> Markup {
    let rules: &[SgRule] = if egress { &g.egress } else { &g.ingress };
    let revoke = if egress {
        "RevokeSecurityGroupEgress"
    } else {
        "RevokeSecurityGroupIngress"
    };
    html! {
        table id=(if egress { "outbound-rules" } else { "inbound-rules" }) {
            thead { tr { th { "Rule ID" } th { "Protocol" } th { "Port range" } th { (if egress { "Destination" } else { "Source" }) } th { "Description" } th {} } }
            tbody { @for r in rules {
                tr {
                    td { (r.id) }
                    td { (protocol(&r.protocol)) }
                    td { (ports(r.from_port, r.to_port)) }
                    td { (peer_cell(&r.peer)) @if ops::sg::is_stale(w, &g.vpc_id, r) { " " (badge("stale")) } }
                    td { (r.description.as_deref().unwrap_or("")) }
                    td { (button_form(v, revoke, &[("GroupId", &g.meta.id), ("SecurityGroupRuleId.1", &r.id)], here, "Remove", true)) }
                }
            } }
        }
    }
}

fn rule_form(v: &Viewer, g: &SecurityGroup, egress: bool, here: &str) -> Markup {
    let (action, dir) = if egress {
        ("AuthorizeSecurityGroupEgress", "outbound")
    } else {
        ("AuthorizeSecurityGroupIngress", "inbound")
    };
    action_form(
        v,
        action,
        here,
        None,
        &format!("row rule-editor {dir}"),
        html! {
            input type="hidden" name="GroupId" value=(g.meta.id);
            label { "Protocol "
                select name="IpPermissions.1.IpProtocol" {
                    option value="tcp" { "TCP" } option value="udp" { "UDP" } option value="icmp" { "ICMP" } option value="-1" { "All traffic" }
                }
            }
            label { "Port range " input name="SgPorts" placeholder="22, 1024-65535 or -1"; }
            label { (if egress { "Destination " } else { "Source " })
                input name="Peer" list="groups" placeholder="CIDR, sg-… or ACCOUNT/sg-…" required; }
            label { "Description " input name="IpPermissions.1.IpRanges.1.Description" disabled; }
            button type="submit" { "Add " (dir) " rule" }
        },
    )
}

pub fn groups(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let vpc_filter = r.q("vpc").to_string();
    let body = c.read(v, |w, ctx| {
        let rows: Vec<&SecurityGroup> = w
            .scoped::<SecurityGroup>(&ctx.account, &ctx.region)
            .filter(|g| vpc_filter.is_empty() || g.vpc_id == vpc_filter)
            .collect();
        let (rows, pager) = crate::view::paged(rows, r, "/console/security-groups");
        let vpcs = crate::pages::network::vpc_options(w, ctx);
        html! {
            table id="security-groups" {
                thead { tr { th { "Name" } th { "Group ID" } th { "Group name" } th { "VPC" } th { "Description" } th { "Inbound" } th { "Outbound" } } }
                tbody { @for g in &rows {
                    tr {
                        td { (name_cell(&g.meta.tags)) }
                        td { (link("security-groups", &g.meta.id)) }
                        td { (g.name) }
                        td { (link("vpcs", &g.vpc_id)) }
                        td { (g.description) }
                        td { (g.ingress.len()) }
                        td { (g.egress.len()) }
                    }
                } }
            }
            (pager)
            h2 { "Create security group" }
            (action_form(v, "CreateSecurityGroup", "/console/security-groups/{id}", Some("groupId"), "create", html! {
                input type="hidden" name="back" value="/console/security-groups";
                label { "Name " input name="GroupName" required; }
                label { "Description " input name="GroupDescription" required; }
                label { "VPC " select name="VpcId" { @for (id, label) in &vpcs { option value=(id) selected[*id == vpc_filter] { (label) } } } }
                button type="submit" { "Create security group" }
            }))
        }
    });
    c.render(v, "security-groups", "Security groups", body)
}

pub fn group(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = format!("/console/security-groups/{}", r.id);
    let body = c.read(v, |w, ctx| -> Result<_, vpc_model::Fault> {
        let g = ops::sg::get(w, ctx, &r.id)?;
        let own: Vec<&SecurityGroup> = w.scoped(&ctx.account, &ctx.region).collect();
        let id = g.meta.id.as_str();
        Ok(html! {
            datalist id="groups" { @for o in &own { option value=(o.meta.id) { (o.name) } } }
            dl.facts {
                dt { "Group ID" } dd { (id) }
                dt { "Group name" } dd { (g.name) }
                dt { "Description" } dd { (g.description) }
                dt { "VPC" } dd { (link("vpcs", &g.vpc_id)) }
                dt { "Owner" } dd { (g.meta.owner) }
            }
            h2 { "Inbound rules" }
            (rule_table(w, v, g, false, &here))
            (rule_form(v, g, false, &here))
            h2 { "Outbound rules" }
            (rule_table(w, v, g, true, &here))
            (rule_form(v, g, true, &here))
            p.muted { "A group in a peer VPC is named " code { "ACCOUNT/sg-…" } " (its owner's account ID), as in AWS's console, once the peering is active." }
            (tag_editor(v, id, &g.meta.tags, &here))
            @if g.name != "default" {
                h2 { "Delete" }
                (action_form(v, "DeleteSecurityGroup", "/console/security-groups", None, "inline", html! {
                    input type="hidden" name="GroupId" value=(id);
                    input type="hidden" name="back" value=(here);
                    button.danger type="submit" { "Delete security group" }
                }))
            }
        })
    });
    c.render(
        v,
        "security-groups",
        &format!("Security group {}", r.id),
        body.and_then(|b| b),
    )
}

pub fn acls(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let vpc_filter = r.q("vpc").to_string();
    let body = c.read(v, |w, ctx| {
        let rows: Vec<&NetworkAcl> = w
            .scoped::<NetworkAcl>(&ctx.account, &ctx.region)
            .filter(|a| vpc_filter.is_empty() || a.vpc_id == vpc_filter)
            .collect();
        let (rows, pager) = crate::view::paged(rows, r, "/console/network-acls");
        let vpcs = crate::pages::network::vpc_options(w, ctx);
        html! {
            table id="network-acls" {
                thead { tr { th { "Name" } th { "Network ACL ID" } th { "VPC" } th { "Default" } th { "Associated subnets" } th { "Entries" } } }
                tbody { @for a in &rows {
                    tr {
                        td { (name_cell(&a.meta.tags)) }
                        td { (link("network-acls", &a.meta.id)) }
                        td { (link("vpcs", &a.vpc_id)) }
                        td { (if a.is_default { "Yes" } else { "No" }) }
                        td { (a.assocs.len()) }
                        td { (a.entries.len()) }
                    }
                } }
            }
            (pager)
            h2 { "Create network ACL" }
            (action_form(v, "CreateNetworkAcl", "/console/network-acls/{id}", Some("networkAclId"), "create", html! {
                input type="hidden" name="NameType" value="network-acl";
                input type="hidden" name="back" value="/console/network-acls";
                label { "Name tag " input name="Name"; }
                label { "VPC " select name="VpcId" { @for (id, label) in &vpcs { option value=(id) { (label) } } } }
                button type="submit" { "Create network ACL" }
            }))
        }
    });
    c.render(v, "network-acls", "Network ACLs", body)
}

fn entry_rows(v: &Viewer, a: &NetworkAcl, egress: bool, here: &str) -> Markup {
    let mut entries: Vec<&AclEntry> = a.entries.iter().filter(|e| e.egress == egress).collect();
    entries.sort_by_key(|e| e.rule_number);
    html! {
        table id=(if egress { "outbound-entries" } else { "inbound-entries" }) {
            thead { tr { th { "Rule #" } th { "Protocol" } th { "Port range" } th { (if egress { "Destination" } else { "Source" }) } th { "Allow/Deny" } th {} } }
            tbody { @for e in &entries {
                tr {
                    td { @if e.rule_number == 32767 { "*" } @else { (e.rule_number) } }
                    td { (protocol(&e.protocol)) }
                    td { @match (e.ports, e.icmp) {
                        (Some((f, t)), _) => { (ports(Some(i32::from(f)), Some(i32::from(t)))) },
                        (None, Some((ty, code))) => { "ICMP type " (ty) " code " (code) },
                        _ => { "All" },
                    } }
                    td { (e.cidr) }
                    td { (badge(e.action.as_str())) }
                    td { @if e.rule_number != 32767 {
                        (button_form(v, "DeleteNetworkAclEntry", &[("NetworkAclId", &a.meta.id), ("RuleNumber", &e.rule_number.to_string()), ("Egress", if egress { "true" } else { "false" })], here, "Remove", true))
                    } }
                }
            } }
        }
        (action_form(v, "CreateNetworkAclEntry", here, None, "row", html! {
            input type="hidden" name="NetworkAclId" value=(a.meta.id);
            input type="hidden" name="Egress" value=(if egress { "true" } else { "false" });
            label { "Rule # " input name="RuleNumber" type="number" min="1" max="32766" required; }
            label { "Protocol " select name="Protocol" { option value="6" { "TCP (6)" } option value="17" { "UDP (17)" } option value="1" { "ICMP (1)" } option value="-1" { "All" } } }
            label { "Port range " input name="AclPorts" placeholder="80 or 1024-65535"; }
            label { (if egress { "Destination " } else { "Source " }) input name="CidrBlock" placeholder="0.0.0.0/0" required; }
            label { "Action " select name="RuleAction" { option value="allow" { "Allow" } option value="deny" { "Deny" } } }
            input type="hidden" name="Icmp.Type" value="-1";
            input type="hidden" name="Icmp.Code" value="-1";
            button type="submit" { "Add " (if egress { "outbound" } else { "inbound" }) " entry" }
        }))
    }
}

pub fn acl(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = format!("/console/network-acls/{}", r.id);
    let body = c.read(v, |_w, ctx| -> Result<_, vpc_model::Fault> {
        let a = ops::acl::get(_w, ctx, &r.id)?;
        let id = a.meta.id.as_str();
        Ok(html! {
            dl.facts {
                dt { "Network ACL ID" } dd { (id) }
                dt { "VPC" } dd { (link("vpcs", &a.vpc_id)) }
                dt { "Default" } dd { (if a.is_default { "Yes" } else { "No" }) }
                dt { "Subnets" } dd { @for s in &a.assocs { (link("subnets", &s.subnet_id)) " " } }
            }
            p.muted { "Entries are evaluated in order of rule number, lowest first; the first that matches decides." }
            h2 { "Inbound entries" }
            (entry_rows(v, a, false, &here))
            h2 { "Outbound entries" }
            (entry_rows(v, a, true, &here))
            (tag_editor(v, id, &a.meta.tags, &here))
            @if !a.is_default {
                h2 { "Delete" }
                (action_form(v, "DeleteNetworkAcl", "/console/network-acls", None, "inline", html! {
                    input type="hidden" name="NetworkAclId" value=(id);
                    input type="hidden" name="back" value=(here);
                    button.danger type="submit" { "Delete network ACL" }
                }))
            }
        })
    });
    c.render(
        v,
        "network-acls",
        &format!("Network ACL {}", r.id),
        body.and_then(|b| b),
    )
}
