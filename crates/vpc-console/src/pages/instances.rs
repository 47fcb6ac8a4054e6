//! Instances: launch into a subnet with groups; state, addresses, DNS names;
//! "test connectivity", which runs the reachability analyzer.

use crate::session::Viewer;
use crate::view::{action_form, badge, button_form, link, name_cell, tag_editor};
use crate::{Console, PageReq};
use axum::response::Response;
use maud::{html, Markup};
use vpc_model::ops;
use vpc_model::{Instance, InstanceState, SecurityGroup, Subnet, World};

/// The image the launch form offers (any well-formed AMI ID works in vpcd).
const DEFAULT_IMAGE: &str = "ami-0abcdef1234567890";

/// (private IP, public IP, private DNS name, groups) of an instance's primary interface.
#[derive(Debug)]
pub struct Addresses {
    pub private_ip: Option<std::net::Ipv4Addr>,
    pub public_ip: Option<std::net::Ipv4Addr>,
    pub private_dns: String,
    pub public_dns: String,
    pub groups: Vec<String>,
}

pub fn addresses(w: &World, i: &Instance) -> Addresses {
    let eni = w.get::<vpc_model::NetworkInterface>(&i.primary_eni);
    let private_ip = eni.and_then(|e| e.private_ips.iter().find(|p| p.primary).map(|p| p.ip));
    let public_ip = eni.and_then(|e| ops::eni::public_ip_of(w, e));
    Addresses {
        private_ip,
        public_ip,
        private_dns: private_ip
            .map(|ip| ops::eni::private_dns_name(&i.meta.region, ip))
            .unwrap_or_default(),
        public_dns: match (eni, public_ip) {
            (Some(e), Some(ip)) => ops::eni::public_dns_of(w, e, ip),
            _ => String::new(),
        },
        groups: eni.map(|e| e.groups.clone()).unwrap_or_default(),
    }
}

fn live(i: &Instance) -> bool {
    i.state != InstanceState::Terminated
}

pub fn list(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let subnet_pick = r.q("subnet").to_string();
    let body = c.read(v, |w, ctx| {
        let rows: Vec<&Instance> = w.scoped(&ctx.account, &ctx.region).collect();
        let (rows, pager) = crate::view::paged(rows, r, "/console/instances");
        let subnets: Vec<&Subnet> = w.scoped(&ctx.account, &ctx.region).collect();
        let groups: Vec<&SecurityGroup> = w.scoped(&ctx.account, &ctx.region).collect();
        html! {
            table id="instances" {
                thead { tr { th { "Name" } th { "Instance ID" } th { "State" } th { "Type" } th { "Availability Zone" } th { "Private IPv4" } th { "Public IPv4" } th { "Private DNS name" } th { "VPC" } th { "Subnet" } } }
                tbody { @for i in &rows {
                    @let a = addresses(w, i);
                    tr {
                        td { (name_cell(&i.meta.tags)) }
                        td { (link("instances", &i.meta.id)) }
                        td { (badge(i.state.as_str())) }
                        td { (i.instance_type) }
                        td { (i.az) }
                        td.private-ip { @if let Some(ip) = a.private_ip { (ip) } }
                        td { @if let Some(ip) = a.public_ip { (ip) } }
                        td { (a.private_dns) }
                        td { (link("vpcs", &i.vpc_id)) }
                        td { (link("subnets", &i.subnet_id)) }
                    }
                } }
            }
            (pager)
            h2 { "Launch instance" }
            (action_form(v, "RunInstances", "/console/instances/{id}", Some("instanceId"), "create", html! {
                input type="hidden" name="NameType" value="instance";
                input type="hidden" name="back" value="/console/instances";
                input type="hidden" name="MinCount" value="1";
                input type="hidden" name="MaxCount" value="1";
                label { "Name tag " input name="Name" id="instance-name"; }
                label { "Image " input name="ImageId" value=(DEFAULT_IMAGE) required; }
                label { "Instance type " select name="InstanceType" { option { "t3.micro" } option { "t3.small" } option { "m5.large" } } }
                label { "Subnet " select name="SubnetId" id="instance-subnet" {
                    @for s in &subnets { option value=(s.meta.id) selected[s.meta.id == subnet_pick] { (s.meta.id) " " (crate::view::subnet_block(s)) " (" (s.vpc_id) ")" } }
                } }
                label { "Security groups "
                    select name="SecurityGroupId.1" id="instance-group" {
                        option value="" { "(the VPC's default group)" }
                        @for g in &groups { option value=(g.meta.id) { (g.meta.id) " " (g.name) " (" (g.vpc_id) ")" } }
                    }
                    select name="SecurityGroupId.2" {
                        option value="" { "(no second group)" }
                        @for g in &groups { option value=(g.meta.id) { (g.meta.id) " " (g.name) " (" (g.vpc_id) ")" } }
                    }
                }
                button type="submit" { "Launch instance" }
            }))
        }
    });
    c.render(v, "instances", "Instances", body)
}

/// The "test connectivity" form: from `source` to another instance or an address.
pub fn connectivity_form(v: &Viewer, source: &str, destinations: &[(String, String)]) -> Markup {
    html! {
        form.row.test-connectivity method="post" action="/console/reach" {
            (crate::view::csrf(v))
            input type="hidden" name="source" value=(source);
            label { "Destination "
                input name="destination" id="test-destination" list="destinations" placeholder="i-…, eni-… or an IP address" required;
                datalist id="destinations" { @for (val, label) in destinations { option value=(val) { (label) } } }
            }
            label { "Protocol " select name="protocol" id="test-protocol" { option value="icmp" { "ICMP (ping)" } option value="tcp" { "TCP" } option value="udp" { "UDP" } } }
            label { "Port " input name="port" id="test-port" placeholder="for TCP/UDP"; }
            button type="submit" id="test-connectivity" { "Test connectivity" }
        }
    }
}

pub fn detail(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let here = format!("/console/instances/{}", r.id);
    let body = c.read(v, |w, ctx| -> Result<_, vpc_model::Fault> {
        let i = ops::instance::get(w, ctx, &r.id)?;
        let a = addresses(w, i);
        let id = i.meta.id.as_str();
        let others: Vec<(String, String)> = w
            .scoped::<Instance>(&ctx.account, &ctx.region)
            .filter(|o| o.meta.id != i.meta.id && live(o))
            .map(|o| {
                let ip = addresses(w, o).private_ip.map(|x| x.to_string()).unwrap_or_default();
                (o.meta.id.clone(), format!("{ip} {}", crate::view::name_of(&o.meta.tags).unwrap_or("")))
            })
            .collect();
        Ok(html! {
            dl.facts {
                dt { "Instance ID" } dd id="instance-id" { (id) }
                dt { "State" } dd id="instance-state" { (badge(i.state.as_str())) }
                dt { "Instance type" } dd { (i.instance_type) }
                dt { "Private IPv4" } dd id="private-ip" { @if let Some(ip) = a.private_ip { (ip) } }
                dt { "Public IPv4" } dd id="public-ip" { @if let Some(ip) = a.public_ip { (ip) } @else { span.muted { "–" } } }
                dt { "Private DNS name" } dd { (a.private_dns) }
                dt { "Public DNS name" } dd { (a.public_dns) }
                dt { "VPC" } dd { (link("vpcs", &i.vpc_id)) }
                dt { "Subnet" } dd { (link("subnets", &i.subnet_id)) }
                dt { "Security groups" } dd { @for g in &a.groups { (link("security-groups", g)) " " } }
            }
            @if live(i) {
                h2 { "Test connectivity" }
                p.muted { "Runs the reachability analyzer (a Network Insights path and analysis, as the API's) from this instance." }
                (connectivity_form(v, id, &others))
                h2 { "Instance state" }
                p {
                    @if i.state == InstanceState::Running { (button_form(v, "StopInstances", &[("InstanceId.1", id)], &here, "Stop", false)) }
                    @if i.state == InstanceState::Stopped { (button_form(v, "StartInstances", &[("InstanceId.1", id)], &here, "Start", false)) }
                    (button_form(v, "TerminateInstances", &[("InstanceId.1", id)], &here, "Terminate", true))
                }
            }
            (tag_editor(v, id, &i.meta.tags, &here))
        })
    });
    c.render(
        v,
        "instances",
        &format!("Instance {}", r.id),
        body.and_then(|b| b),
    )
}
