//! Route tables: create, delete, describe, associations and routes.

use super::{Handler, Req};
use crate::query::{self, tag_field};
use crate::xml::Xml;
use ipnet::IpNet;
use vpc_model::ops::{self, route::RouteSpec};
use vpc_model::{Ctx, Fault, Route, RouteTable, RouteTarget, RtAssoc, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateRouteTable", Handler::Write(create_table)),
    ("DeleteRouteTable", Handler::Write(delete_table)),
    ("DescribeRouteTables", Handler::Read(describe_tables)),
    ("AssociateRouteTable", Handler::Write(associate)),
    ("DisassociateRouteTable", Handler::Write(disassociate)),
    (
        "ReplaceRouteTableAssociation",
        Handler::Write(replace_association),
    ),
    ("CreateRoute", Handler::Write(create_route)),
    ("ReplaceRoute", Handler::Write(replace_route)),
    ("DeleteRoute", Handler::Write(delete_route)),
];

/// The target element of a route: its XML name and value.
fn target_elem(t: &RouteTarget) -> (&'static str, &str) {
    match t {
        RouteTarget::Local => ("gatewayId", "local"),
        RouteTarget::Gateway(g) => ("gatewayId", g),
        RouteTarget::EgressOnlyGateway(g) => ("egressOnlyInternetGatewayId", g),
        RouteTarget::NatGateway(g) => ("natGatewayId", g),
        RouteTarget::Peering(p) => ("vpcPeeringConnectionId", p),
        RouteTarget::NetworkInterface(n) => ("networkInterfaceId", n),
        RouteTarget::Instance(i) => ("instanceId", i),
        RouteTarget::VpcEndpoint(e) => ("gatewayId", e),
    }
}

fn render_route(x: &mut Xml, w: &World, rt: &RouteTable, r: &Route) {
    match (&r.prefix_list, &r.dest) {
        (Some(list), _) => x.leaf("destinationPrefixListId", list),
        (None, IpNet::V4(n)) => x.leaf("destinationCidrBlock", &n.to_string()),
        (None, IpNet::V6(n)) => x.leaf("destinationIpv6CidrBlock", &n.to_string()),
    };
    let (tag, val) = target_elem(&r.target);
    x.leaf(tag, val)
        .leaf("state", ops::route::route_state(w, rt, r))
        .leaf("origin", &r.origin);
}

/// The routes as Describe lists them: a route to a prefix list once, not once per entry.
fn shown_routes(rt: &RouteTable) -> impl Iterator<Item = &Route> {
    rt.routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.prefix_list {
            Some(l)
                if rt.routes[..i]
                    .iter()
                    .any(|x| x.prefix_list.as_ref() == Some(l)) =>
            {
                None
            }
            _ => Some(r),
        })
}

fn assoc_state(x: &mut Xml) {
    x.open("associationState")
        .leaf("state", "associated")
        .close("associationState");
}

fn render_assoc(x: &mut Xml, rt_id: &str, a: &RtAssoc) {
    x.bool("main", a.main)
        .leaf("routeTableAssociationId", &a.id)
        .leaf("routeTableId", rt_id)
        .opt("subnetId", a.subnet_id.as_deref())
        .opt("gatewayId", a.gateway_id.as_deref());
    assoc_state(x);
}

pub fn render_table(x: &mut Xml, w: &World, rt: &RouteTable) {
    x.leaf("routeTableId", &rt.meta.id)
        .leaf("vpcId", &rt.vpc_id)
        .leaf("ownerId", &rt.meta.owner);
    x.set("routeSet", shown_routes(rt), |x, r| {
        render_route(x, w, rt, r)
    });
    x.set("associationSet", &rt.assocs, |x, a| {
        render_assoc(x, &rt.meta.id, a)
    });
    x.empty("propagatingVgwSet");
    x.tags(&rt.meta.tags);
}

fn create_table(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let vpc_id = r.p.req("VpcId")?.to_string();
    let tags = r.p.tag_specs("route-table")?;
    let rt = ops::route::create_table(w, ctx, &vpc_id, tags)?;
    let mut x = r.xml();
    x.open("routeTable");
    render_table(&mut x, w, &rt);
    x.close("routeTable");
    x.opt("clientToken", r.p.get("ClientToken"));
    r.done(x)
}

fn delete_table(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::route::delete_table(w, ctx, r.p.req("RouteTableId")?)?;
    r.ok()
}

fn associate(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let rtb = r.p.req("RouteTableId")?;
    let a = ops::route::associate(
        w,
        ctx,
        rtb,
        r.p.get("SubnetId").filter(|s| !s.is_empty()),
        r.p.get("GatewayId").filter(|s| !s.is_empty()),
    )?;
    let mut x = r.xml();
    x.leaf("associationId", &a.id);
    assoc_state(&mut x);
    r.done(x)
}

fn disassociate(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::route::disassociate(w, ctx, r.p.req("AssociationId")?)?;
    r.ok()
}

fn replace_association(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let assoc = r.p.req("AssociationId")?;
    let rtb = r.p.req("RouteTableId")?;
    let a = ops::route::replace_association(w, ctx, assoc, rtb)?;
    let mut x = r.xml();
    x.leaf("newAssociationId", &a.id);
    assoc_state(&mut x);
    r.done(x)
}

/// Targets vpcd does not model; naming one sets `RouteSpec::unsupported_target`.
const UNSUPPORTED_TARGETS: &[&str] = &[
    "TransitGatewayId",
    "LocalGatewayId",
    "CarrierGatewayId",
    "VpcEndpointId",
    "CoreNetworkArn",
    "OdbNetworkArn",
];

fn route_spec(r: &Req<'_>) -> Result<RouteSpec, Fault> {
    let p = r.p;
    let s = |k: &str| p.get(k).filter(|v| !v.is_empty()).map(str::to_string);
    Ok(RouteSpec {
        destination_cidr_block: s("DestinationCidrBlock"),
        destination_ipv6_cidr_block: s("DestinationIpv6CidrBlock"),
        destination_prefix_list_id: s("DestinationPrefixListId"),
        gateway_id: s("GatewayId"),
        egress_only_internet_gateway_id: s("EgressOnlyInternetGatewayId"),
        nat_gateway_id: s("NatGatewayId"),
        vpc_peering_connection_id: s("VpcPeeringConnectionId"),
        network_interface_id: s("NetworkInterfaceId"),
        instance_id: s("InstanceId"),
        local_target: p.bool("LocalTarget")?.unwrap_or(false),
        unsupported_target: UNSUPPORTED_TARGETS
            .iter()
            .find(|k| s(k).is_some())
            .map(|k| k.to_string()),
    })
}

fn create_route(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let rtb = r.p.req("RouteTableId")?;
    ops::route::create_route(w, ctx, rtb, &route_spec(r)?)?;
    r.ok()
}

fn replace_route(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let rtb = r.p.req("RouteTableId")?;
    ops::route::replace_route(w, ctx, rtb, &route_spec(r)?)?;
    r.ok()
}

fn delete_route(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let rtb = r.p.req("RouteTableId")?;
    ops::route::delete_route(w, ctx, rtb, &route_spec(r)?)?;
    r.ok()
}

const TABLE_FILTERS: &[&str] = &[
    "route-table-id",
    "vpc-id",
    "owner-id",
    "association.route-table-association-id",
    "association.route-table-id",
    "association.subnet-id",
    "association.gateway-id",
    "association.main",
    "route.destination-cidr-block",
    "route.destination-ipv6-cidr-block",
    "route.gateway-id",
    "route.egress-only-internet-gateway-id",
    "route.nat-gateway-id",
    "route.vpc-peering-connection-id",
    "route.network-interface-id",
    "route.instance-id",
    "route.origin",
    "route.state",
    "route.destination-prefix-list-id",
];

fn table_field(w: &World, rt: &RouteTable, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    let assocs = |f: &dyn Fn(&RtAssoc) -> Option<String>| -> Option<Vec<String>> {
        Some(rt.assocs.iter().filter_map(f).collect())
    };
    let routes = |f: &dyn Fn(&Route) -> Option<String>| -> Option<Vec<String>> {
        Some(rt.routes.iter().filter_map(f).collect())
    };
    let target = |tag: &'static str| {
        routes(&move |r: &Route| {
            let (t, v) = target_elem(&r.target);
            (t == tag).then(|| v.to_string())
        })
    };
    match name {
        "route-table-id" => one(&rt.meta.id),
        "vpc-id" => one(&rt.vpc_id),
        "owner-id" => one(&rt.meta.owner),
        "association.route-table-association-id" => assocs(&|a| Some(a.id.clone())),
        "association.route-table-id" => assocs(&|_| Some(rt.meta.id.clone())),
        "association.subnet-id" => assocs(&|a| a.subnet_id.clone()),
        "association.gateway-id" => assocs(&|a| a.gateway_id.clone()),
        "association.main" => assocs(&|a| Some(a.main.to_string())),
        "route.destination-cidr-block" => routes(&|r| match r.dest {
            IpNet::V4(n) if r.prefix_list.is_none() => Some(n.to_string()),
            _ => None,
        }),
        "route.destination-ipv6-cidr-block" => routes(&|r| match r.dest {
            IpNet::V6(n) if r.prefix_list.is_none() => Some(n.to_string()),
            _ => None,
        }),
        "route.destination-prefix-list-id" => routes(&|r| r.prefix_list.clone()),
        "route.gateway-id" => target("gatewayId"),
        "route.egress-only-internet-gateway-id" => target("egressOnlyInternetGatewayId"),
        "route.nat-gateway-id" => target("natGatewayId"),
        "route.vpc-peering-connection-id" => target("vpcPeeringConnectionId"),
        "route.network-interface-id" => target("networkInterfaceId"),
        "route.instance-id" => target("instanceId"),
        "route.origin" => routes(&|r| Some(r.origin.clone())),
        "route.state" => routes(&|r| Some(ops::route::route_state(w, rt, r).to_string())),
        _ => tag_field(&rt.meta.tags, name),
    }
}

fn describe_tables(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("RouteTableId")?;
    let items: Vec<&RouteTable> = if ids.is_empty() {
        w.scoped::<RouteTable>(&ctx.account, &ctx.region).collect()
    } else {
        let mut v = Vec::new();
        for id in &ids {
            let t = ops::route::get(w, ctx, id)?;
            if !v.iter().any(|x: &&RouteTable| x.meta.id == t.meta.id) {
                v.push(t);
            }
        }
        v.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
        v
    };
    let field = |rt: &&RouteTable, name: &str| table_field(w, rt, name);
    let items = query::apply(items, &r.p.filters()?, &field, TABLE_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |t| t.meta.id.clone(), 5, 100)?;
    let mut x = r.xml();
    x.set("routeTableSet", page, |x, t| render_table(x, w, t));
    x.opt("nextToken", next.as_deref());
    r.done(x)
}
