//! Route tables, routes, associations, route state and longest-prefix lookup.

use super::{check_limit, new_meta, subnet, vpc, PCX, ROUTE_TABLE};
use crate::cidr;
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::IpNet;
use std::net::IpAddr;

pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w RouteTable> {
    w.owned::<RouteTable>(id, &ctx.account, &ctx.region, ROUTE_TABLE.nf(id)?)
}

pub fn create_table(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    vpc_id: &str,
    tags: Tags,
) -> Result<RouteTable> {
    let v = vpc::get(w, ctx, vpc_id)?.clone();
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    let n = w
        .iter::<RouteTable>()
        .filter(|r| r.vpc_id == vpc_id)
        .count();
    check_limit(
        n,
        ctx.limits.route_tables_per_vpc,
        "RouteTableLimitExceeded",
        "route tables",
    )?;
    let rt = RouteTable {
        meta: new_meta(ctx, "rtb", tags),
        vpc_id: vpc_id.to_string(),
        routes: v
            .all_blocks()
            .into_iter()
            .map(|dest| Route {
                dest,
                target: RouteTarget::Local,
                origin: "CreateRouteTable".into(),
                prefix_list: None,
            })
            .collect(),
        assocs: Vec::new(),
    };
    w.put(rt.clone());
    Ok(rt)
}

pub fn delete_table(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let rt = get(w, ctx, id)?;
    if !rt.assocs.is_empty() {
        return Err(Fault::dependency(format!(
            "The routeTable '{id}' has dependencies and cannot be deleted."
        )));
    }
    w.remove::<RouteTable>(id);
    Ok(())
}

fn assoc_not_found(id: &str) -> Fault {
    Fault::new(
        "InvalidAssociationID.NotFound",
        format!("The association ID '{id}' does not exist"),
    )
}

/// The route table a subnet uses: its explicit association, or the VPC's main table.
pub fn table_for_subnet<'w>(w: &'w World, s: &Subnet) -> Option<&'w RouteTable> {
    let associated = w.iter::<RouteTable>().find(|r| {
        r.assocs
            .iter()
            .any(|a| a.subnet_id.as_deref() == Some(s.meta.id.as_str()))
    });
    table_for_subnet_given(w, s, associated)
}

/// [`table_for_subnet`] for a caller that keeps its own index of explicit
/// associations (the analyzer's): `associated` is the first table, in ID
/// order, with an association for `s`.
pub fn table_for_subnet_given<'w>(
    w: &'w World,
    s: &Subnet,
    associated: Option<&'w RouteTable>,
) -> Option<&'w RouteTable> {
    associated.or_else(|| main_table(w, &s.vpc_id))
}

/// A VPC's main route table.
pub fn main_table<'w>(w: &'w World, vpc_id: &str) -> Option<&'w RouteTable> {
    w.get::<Vpc>(vpc_id)
        .and_then(|v| w.get::<RouteTable>(&v.main_route_table))
}

/// AssociateRouteTable with a subnet or a gateway. Returns the new association.
pub fn associate(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    rtb_id: &str,
    subnet_id: Option<&str>,
    gateway_id: Option<&str>,
) -> Result<RtAssoc> {
    let rt = get(w, ctx, rtb_id)?.clone();
    let assoc = match (subnet_id, gateway_id) {
        (Some(_), Some(_)) => {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "Specify either a subnet ID or a gateway ID, not both.",
            ))
        }
        (None, None) => return Err(Fault::missing("SubnetId")),
        (Some(s), None) => {
            let sub = subnet::get(w, ctx, s)?;
            if sub.vpc_id != rt.vpc_id {
                return Err(Fault::invalid_param(format!(
                    "route table {rtb_id} and subnet {s} belong to different networks"
                )));
            }
            if w.iter::<RouteTable>()
                .any(|r| r.assocs.iter().any(|a| a.subnet_id.as_deref() == Some(s)))
            {
                return Err(Fault::new(
                    "Resource.AlreadyAssociated",
                    format!("the specified association for route table {rtb_id} conflicts with an existing association"),
                ));
            }
            RtAssoc {
                id: ctx.new_id("rtbassoc"),
                main: false,
                subnet_id: Some(s.to_string()),
                gateway_id: None,
            }
        }
        (None, Some(g)) => {
            let gw = w.owned::<InternetGateway>(g, &ctx.account, &ctx.region, || {
                Fault::new(
                    "InvalidGatewayID.NotFound",
                    format!("The gateway ID '{g}' does not exist"),
                )
            })?;
            if gw.vpc_id.as_deref() != Some(rt.vpc_id.as_str()) {
                return Err(Fault::invalid_param(format!(
                    "route table {rtb_id} and network gateway {g} belong to different networks"
                )));
            }
            if w.iter::<RouteTable>()
                .any(|r| r.assocs.iter().any(|a| a.gateway_id.as_deref() == Some(g)))
            {
                return Err(Fault::new(
                    "Resource.AlreadyAssociated",
                    format!("the specified association for route table {rtb_id} conflicts with an existing association"),
                ));
            }
            RtAssoc {
                id: ctx.new_id("rtbassoc"),
                main: false,
                subnet_id: None,
                gateway_id: Some(g.to_string()),
            }
        }
    };
    let out = assoc.clone();
    w.update::<RouteTable>(rtb_id, |r| r.assocs.push(assoc));
    Ok(out)
}

fn find_assoc(w: &World, ctx: &Ctx<'_>, assoc_id: &str) -> Result<(RouteTable, RtAssoc)> {
    w.scoped::<RouteTable>(&ctx.account, &ctx.region)
        .find_map(|r| {
            r.assocs
                .iter()
                .find(|a| a.id == assoc_id)
                .map(|a| (r.clone(), a.clone()))
        })
        .ok_or_else(|| assoc_not_found(assoc_id))
}

pub fn disassociate(w: &mut World, ctx: &mut Ctx<'_>, assoc_id: &str) -> Result<()> {
    let (rt, a) = find_assoc(w, ctx, assoc_id)?;
    if a.main {
        return Err(Fault::invalid_param(format!(
            "cannot disassociate the main route table association {assoc_id}"
        )));
    }
    w.update::<RouteTable>(&rt.meta.id, |r| r.assocs.retain(|x| x.id != assoc_id));
    Ok(())
}

/// ReplaceRouteTableAssociation: moves an association (a subnet's or the main one) to another table.
pub fn replace_association(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    assoc_id: &str,
    rtb_id: &str,
) -> Result<RtAssoc> {
    let (old, a) = find_assoc(w, ctx, assoc_id)?;
    let new = get(w, ctx, rtb_id)?.clone();
    if new.vpc_id != old.vpc_id {
        return Err(Fault::invalid_param(format!(
            "route table {rtb_id} and association {assoc_id} belong to different networks"
        )));
    }
    let na = RtAssoc {
        id: ctx.new_id("rtbassoc"),
        ..a
    };
    let out = na.clone();
    w.update::<RouteTable>(&old.meta.id, |r| r.assocs.retain(|x| x.id != assoc_id));
    w.update::<RouteTable>(rtb_id, |r| r.assocs.push(na));
    if out.main {
        w.update::<Vpc>(&new.vpc_id, |v| v.main_route_table = rtb_id.to_string());
    }
    Ok(out)
}

/// The destination and target of CreateRoute / ReplaceRoute, as sent.
#[derive(Debug, Clone, Default)]
pub struct RouteSpec {
    pub destination_cidr_block: Option<String>,
    pub destination_ipv6_cidr_block: Option<String>,
    pub destination_prefix_list_id: Option<String>,
    pub gateway_id: Option<String>,
    pub egress_only_internet_gateway_id: Option<String>,
    pub nat_gateway_id: Option<String>,
    pub vpc_peering_connection_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub instance_id: Option<String>,
    pub local_target: bool,
    /// Targets this vpcd does not model (transit gateways, endpoints, …), by parameter name.
    pub unsupported_target: Option<String>,
}

/// The prefix list a request names as its destination, once the
/// destination parameters are known to name exactly one thing.
fn list_destination(spec: &RouteSpec) -> Result<Option<&str>> {
    if spec.destination_prefix_list_id.is_none() {
        return Ok(None);
    }
    if spec.destination_cidr_block.is_some() || spec.destination_ipv6_cidr_block.is_some() {
        destination(spec)?;
    }
    Ok(spec.destination_prefix_list_id.as_deref())
}

fn destination(spec: &RouteSpec) -> Result<IpNet> {
    let given = [
        spec.destination_cidr_block.is_some(),
        spec.destination_ipv6_cidr_block.is_some(),
        spec.destination_prefix_list_id.is_some(),
    ];
    match given.iter().filter(|x| **x).count() {
        0 => return Err(Fault::missing("DestinationCidrBlock")),
        1 => {}
        _ => {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "Only one of DestinationCidrBlock, DestinationIpv6CidrBlock and DestinationPrefixListId may be specified.",
            ))
        }
    }
    if let Some(pl) = &spec.destination_prefix_list_id {
        // Callers take list destinations through `list_destination` first.
        return Err(super::prefix_list::not_found(pl));
    }
    if let Some(s) = &spec.destination_cidr_block {
        let n = cidr::parse_v4(s).ok_or_else(|| {
            Fault::invalid_param(format!(
                "Value ({s}) for parameter destinationCidrBlock is invalid. This is not a valid CIDR block."
            ))
        })?;
        let reserved: ipnet::Ipv4Net = "169.254.168.0/22".parse().expect("literal");
        if cidr::overlaps_v4(&n, &reserved) && n.prefix_len() >= 22 {
            return Err(Fault::invalid_param(format!(
                "The destination CIDR block {n} is reserved and cannot be used."
            )));
        }
        return Ok(IpNet::V4(n));
    }
    let s = spec
        .destination_ipv6_cidr_block
        .as_deref()
        .unwrap_or_default();
    let n = cidr::parse_v6(s).ok_or_else(|| {
        Fault::invalid_param(format!(
            "Value ({s}) for parameter destinationIpv6CidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    let reserved: ipnet::Ipv6Net = "fd00:ec2::/32".parse().expect("literal");
    if cidr::overlaps_v6(&n, &reserved) && n.prefix_len() >= 32 {
        return Err(Fault::invalid_param(format!(
            "The destination CIDR block {n} is reserved and cannot be used."
        )));
    }
    Ok(IpNet::V6(n))
}

fn target(w: &World, ctx: &Ctx<'_>, rt: &RouteTable, spec: &RouteSpec) -> Result<RouteTarget> {
    if let Some(p) = &spec.unsupported_target {
        return Err(Fault::new(
            "InvalidParameterValue",
            format!("The target parameter {p} is not supported by this vpcd"),
        ));
    }
    let n = [
        spec.gateway_id.is_some(),
        spec.egress_only_internet_gateway_id.is_some(),
        spec.nat_gateway_id.is_some(),
        spec.vpc_peering_connection_id.is_some(),
        spec.network_interface_id.is_some(),
        spec.instance_id.is_some(),
        spec.local_target,
    ]
    .iter()
    .filter(|x| **x)
    .count();
    match n {
        0 => {
            return Err(Fault::new(
                "MissingParameter",
                "The request must contain exactly one of gatewayId, natGatewayId, networkInterfaceId, vpcPeeringConnectionId, egressOnlyInternetGatewayId, transitGatewayId or instanceId",
            ))
        }
        1 => {}
        _ => {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "More than one target was specified for the route.",
            ))
        }
    }
    let different = |g: &str| {
        Fault::invalid_param(format!(
            "route table {} and network gateway {g} belong to different networks",
            rt.meta.id
        ))
    };
    if spec.local_target {
        return Ok(RouteTarget::Local);
    }
    if let Some(g) = &spec.gateway_id {
        if g == "local" {
            return Ok(RouteTarget::Local);
        }
        let gw = w.owned::<InternetGateway>(g, &ctx.account, &ctx.region, || {
            Fault::new(
                "InvalidGatewayID.NotFound",
                format!("The gateway ID '{g}' does not exist"),
            )
        })?;
        if gw.vpc_id.as_deref() != Some(rt.vpc_id.as_str()) {
            return Err(different(g));
        }
        return Ok(RouteTarget::Gateway(g.clone()));
    }
    if let Some(p) = &spec.vpc_peering_connection_id {
        super::peering::visible(w, ctx, p)?;
        let pcx = w.get::<Peering>(p).ok_or_else(|| PCX.not_found(p))?;
        if pcx.requester.vpc_id != rt.vpc_id && pcx.accepter.vpc_id != rt.vpc_id {
            return Err(different(p));
        }
        return Ok(RouteTarget::Peering(p.clone()));
    }
    if let Some(g) = &spec.egress_only_internet_gateway_id {
        let v6 = spec.destination_ipv6_cidr_block.is_some()
            || spec
                .destination_prefix_list_id
                .as_deref()
                .and_then(|l| w.get::<ManagedPrefixList>(l))
                .is_some_and(|l| l.address_family == "IPv6");
        return super::eigw::route_target(w, ctx, rt, g, v6);
    }
    if let Some(g) = &spec.nat_gateway_id {
        let nf = || {
            Fault::new(
                "InvalidNatGatewayID.NotFound",
                format!("The natGateway ID '{g}' does not exist"),
            )
        };
        super::nat::NAT.check(g)?;
        let gw = w.owned::<NatGateway>(g, &ctx.account, &ctx.region, nf)?;
        if matches!(gw.state, NatState::Deleted | NatState::Failed) {
            return Err(nf());
        }
        if gw.vpc_id != rt.vpc_id {
            return Err(different(g));
        }
        return Ok(RouteTarget::NatGateway(g.clone()));
    }
    if let Some(e) = &spec.network_interface_id {
        let eni = super::eni::get(w, ctx, e)?;
        if eni.vpc_id != rt.vpc_id {
            return Err(Fault::invalid_param(format!(
                "route table {} and network interface {e} belong to different networks",
                rt.meta.id
            )));
        }
        return Ok(RouteTarget::NetworkInterface(e.clone()));
    }
    let i = spec.instance_id.as_deref().unwrap_or_default();
    let inst = super::instance::get(w, ctx, i)?;
    if inst.state == InstanceState::Terminated {
        return Err(super::instance::INSTANCE.not_found(i));
    }
    if inst.vpc_id != rt.vpc_id {
        return Err(Fault::invalid_param(format!(
            "route table {} and instance {i} belong to different networks",
            rt.meta.id
        )));
    }
    if super::eni::enis_of_instance(w, i).len() > 1 {
        return Err(Fault::new(
            "InvalidInstanceID",
            format!("There are multiple interfaces attached to instance '{i}'. Please specify an interface ID for the operation instead."),
        ));
    }
    Ok(RouteTarget::Instance(i.to_string()))
}

/// A peering or gateway target may not override (or sit inside) the VPC's own blocks.
fn check_not_inside_local(rt: &RouteTable, dest: &IpNet, t: &RouteTarget) -> Result<()> {
    if matches!(
        t,
        RouteTarget::NetworkInterface(_)
            | RouteTarget::Instance(_)
            | RouteTarget::NatGateway(_)
            | RouteTarget::Local
    ) {
        return Ok(());
    }
    let inside = rt.routes.iter().any(|r| {
        r.target == RouteTarget::Local
            && match (&r.dest, dest) {
                (IpNet::V4(l), IpNet::V4(d)) => cidr::contains_v4(l, d),
                (IpNet::V6(l), IpNet::V6(d)) => cidr::contains_v6(l, d),
                _ => false,
            }
    });
    if inside {
        return Err(Fault::invalid_param(format!(
            "The destination CIDR block {dest} is equal to or more specific than one of this VPC's CIDR blocks. This route can target only an interface or an instance."
        )));
    }
    Ok(())
}

pub fn create_route(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    rtb_id: &str,
    spec: &RouteSpec,
) -> Result<()> {
    let rt = get(w, ctx, rtb_id)?.clone();
    if let Some(list) = list_destination(spec)? {
        return create_list_route(w, ctx, &rt, list, spec);
    }
    let dest = destination(spec)?;
    let t = target(w, ctx, &rt, spec)?;
    if rt.routes.iter().any(|r| r.dest == dest) {
        return Err(Fault::new(
            "RouteAlreadyExists",
            format!("The route identified by {dest} already exists."),
        ));
    }
    if t == RouteTarget::Local {
        return Err(Fault::invalid_param(
            "A route with a local target can only be created by associating a CIDR block with the VPC.",
        ));
    }
    check_not_inside_local(&rt, &dest, &t)?;
    // A route to a prefix list counts as its MaxEntries routes.
    let same_family = route_weight(w, &rt, dest.addr().is_ipv4());
    check_limit(
        same_family,
        ctx.limits.routes_per_table,
        "RouteLimitExceeded",
        "routes",
    )?;
    w.update::<RouteTable>(rtb_id, |r| {
        r.routes.push(Route {
            dest,
            target: t,
            origin: "CreateRoute".into(),
            prefix_list: None,
        })
    });
    Ok(())
}

pub fn replace_route(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    rtb_id: &str,
    spec: &RouteSpec,
) -> Result<()> {
    let rt = get(w, ctx, rtb_id)?.clone();
    if let Some(list) = list_destination(spec)? {
        let t = target(w, ctx, &rt, spec)?;
        not_an_endpoint_route(list_route_of(&rt, list)?)?;
        check_list_target(&t)?;
        w.update::<RouteTable>(rtb_id, |r| {
            for x in r.routes.iter_mut() {
                if x.prefix_list.as_deref() == Some(list) {
                    x.target = t.clone();
                }
            }
        });
        return Ok(());
    }
    let dest = destination(spec)?;
    let Some(existing) = rt
        .routes
        .iter()
        .find(|r| r.dest == dest && r.prefix_list.is_none())
    else {
        return Err(Fault::invalid_param(format!(
            "There is no route defined for '{dest}' in the route table. Use CreateRoute instead."
        )));
    };
    let t = target(w, ctx, &rt, spec)?;
    let is_vpc_block =
        existing.target == RouteTarget::Local && existing.origin == "CreateRouteTable";
    if is_vpc_block && t != RouteTarget::Local {
        return Err(Fault::invalid_param(format!(
            "The route {dest} is the local route of the VPC and cannot be replaced with target other than local."
        )));
    }
    if t == RouteTarget::Local && !is_vpc_block {
        return Err(Fault::invalid_param(format!(
            "The route {dest} does not match a CIDR block of the VPC; only VPC routes can target local."
        )));
    }
    if !is_vpc_block {
        check_not_inside_local(&rt, &dest, &t)?;
    }
    w.update::<RouteTable>(rtb_id, |r| {
        if let Some(x) = r
            .routes
            .iter_mut()
            .find(|x| x.dest == dest && x.prefix_list.is_none())
        {
            x.target = t;
        }
    });
    Ok(())
}

pub fn delete_route(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    rtb_id: &str,
    spec: &RouteSpec,
) -> Result<()> {
    let rt = get(w, ctx, rtb_id)?.clone();
    if let Some(list) = list_destination(spec)? {
        not_an_endpoint_route(list_route_of(&rt, list)?)?;
        w.update::<RouteTable>(rtb_id, |r| {
            r.routes.retain(|x| x.prefix_list.as_deref() != Some(list))
        });
        return Ok(());
    }
    let dest = destination(spec)?;
    let field = if dest.addr().is_ipv4() {
        "destination-cidr-block"
    } else {
        "destination-ipv6-cidr-block"
    };
    let Some(r) = rt
        .routes
        .iter()
        .find(|r| r.dest == dest && r.prefix_list.is_none())
    else {
        return Err(Fault::new(
            "InvalidRoute.NotFound",
            format!("no route with {field} {dest} in route table {rtb_id}"),
        ));
    };
    if r.target == RouteTarget::Local {
        return Err(Fault::invalid_param(format!(
            "cannot remove local route {dest} in route table {rtb_id}"
        )));
    }
    w.update::<RouteTable>(rtb_id, |r| {
        r.routes
            .retain(|x| x.dest != dest || x.prefix_list.is_some())
    });
    Ok(())
}

// ---- Routes to a customer-managed prefix list ---------------------------
//
// A route to a list is held as one route per entry (`Route::prefix_list`
// names the list), so that route lookup, the analyzer and the data plane see
// ordinary routes; Describe shows the list once. Changing the list's entries
// re-expands every route to it (`resync_list_routes`).

fn list_route_of<'r>(rt: &'r RouteTable, list: &str) -> Result<&'r Route> {
    rt.routes
        .iter()
        .find(|r| r.prefix_list.as_deref() == Some(list))
        .ok_or_else(|| {
            Fault::new(
                "InvalidRoute.NotFound",
                format!(
                    "no route with destination-prefix-list-id {list} in route table {}",
                    rt.meta.id
                ),
            )
        })
}

/// A gateway endpoint's route changes only through ModifyVpcEndpoint.
fn not_an_endpoint_route(r: &Route) -> Result<()> {
    match &r.target {
        RouteTarget::VpcEndpoint(e) => Err(Fault::invalid_param(format!(
            "The route to {} is managed by the VPC endpoint {e}; use ModifyVpcEndpoint to change it.",
            r.prefix_list.as_deref().unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

fn check_list_target(t: &RouteTarget) -> Result<()> {
    if *t == RouteTarget::Local {
        return Err(Fault::invalid_param(
            "A route to a prefix list cannot target local.",
        ));
    }
    Ok(())
}

/// Whether `entries` can stand as routes of `rt` beside its other routes.
fn check_list_entries(
    rt: &RouteTable,
    list: &str,
    entries: &[IpNet],
    t: &RouteTarget,
) -> Result<()> {
    for e in entries {
        if rt
            .routes
            .iter()
            .any(|r| r.dest == *e && r.prefix_list.as_deref() != Some(list))
        {
            return Err(Fault::new(
                "RouteAlreadyExists",
                format!(
                    "The route identified by {e} (an entry of {list}) already exists in {}.",
                    rt.meta.id
                ),
            ));
        }
        check_not_inside_local(rt, e, t)?;
    }
    Ok(())
}

/// How many routes a table's `CreateRoute` routes of one family count for:
/// a route to a list counts its `MaxEntries`, as in AWS.
pub(super) fn route_weight(w: &World, rt: &RouteTable, v4: bool) -> usize {
    let mut lists: Vec<&str> = Vec::new();
    let mut n = 0;
    for r in &rt.routes {
        if r.origin != "CreateRoute" || r.dest.addr().is_ipv4() != v4 {
            continue;
        }
        match &r.prefix_list {
            None => n += 1,
            Some(l) if !lists.contains(&l.as_str()) => {
                lists.push(l);
                n += w
                    .get::<ManagedPrefixList>(l)
                    .map_or(1, |x| x.max_entries as usize);
            }
            Some(_) => {}
        }
    }
    n
}

fn create_list_route(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    rt: &RouteTable,
    list: &str,
    spec: &RouteSpec,
) -> Result<()> {
    let l = super::prefix_list::get(w, ctx, list)?.clone();
    let t = target(w, ctx, rt, spec)?;
    check_list_target(&t)?;
    if rt
        .routes
        .iter()
        .any(|r| r.prefix_list.as_deref() == Some(list))
    {
        return Err(Fault::new(
            "RouteAlreadyExists",
            format!("The route identified by {list} already exists."),
        ));
    }
    if l.entries.is_empty() {
        return Err(Fault::invalid_param(format!(
            "The prefix list {list} has no entries; a route to it would match nothing."
        )));
    }
    let entries: Vec<IpNet> = l.entries.iter().map(|e| e.cidr).collect();
    check_list_entries(rt, list, &entries, &t)?;
    let v4 = l.address_family != "IPv6";
    if route_weight(w, rt, v4) + l.max_entries as usize > ctx.limits.routes_per_table {
        return Err(Fault::new(
            "RouteLimitExceeded",
            "The maximum number of routes has been reached.",
        ));
    }
    w.update::<RouteTable>(&rt.meta.id, |r| {
        r.routes.extend(entries.iter().map(|dest| Route {
            dest: *dest,
            target: t.clone(),
            origin: "CreateRoute".into(),
            prefix_list: Some(list.to_string()),
        }))
    });
    Ok(())
}

/// The route tables with a route to `list`.
pub fn tables_routing_to(w: &World, list: &str) -> Vec<String> {
    w.iter::<RouteTable>()
        .filter(|rt| {
            rt.routes
                .iter()
                .any(|r| r.prefix_list.as_deref() == Some(list))
        })
        .map(|rt| rt.meta.id.clone())
        .collect()
}

/// Checks that `entries` can replace list `list`'s current ones in every
/// table routing to it (no clash with another route; a routed list keeps at
/// least one entry).
pub fn check_list_change(w: &World, list: &str, entries: &[IpNet]) -> Result<()> {
    for id in tables_routing_to(w, list) {
        let Some(rt) = w.get::<RouteTable>(&id) else {
            continue;
        };
        if entries.is_empty() {
            return Err(Fault::invalid_param(format!(
                "The prefix list {list} is the destination of a route in {id} and must keep at least one entry."
            )));
        }
        let t = list_route_of(rt, list)?.target.clone();
        check_list_entries(rt, list, entries, &t)?;
    }
    Ok(())
}

/// Re-expands every route to `list` into its current `entries`.
pub fn resync_list_routes(w: &mut World, list: &str, entries: &[IpNet]) {
    for id in tables_routing_to(w, list) {
        w.update::<RouteTable>(&id, |rt| {
            let Some(t) = rt
                .routes
                .iter()
                .find(|r| r.prefix_list.as_deref() == Some(list))
                .map(|r| r.target.clone())
            else {
                return;
            };
            rt.routes.retain(|r| r.prefix_list.as_deref() != Some(list));
            rt.routes.extend(entries.iter().map(|dest| Route {
                dest: *dest,
                target: t.clone(),
                origin: "CreateRoute".into(),
                prefix_list: Some(list.to_string()),
            }));
        });
    }
}

/// `active` when the target can carry traffic, `blackhole` otherwise.
pub fn route_state(w: &World, rt: &RouteTable, r: &Route) -> &'static str {
    let ok = match &r.target {
        RouteTarget::Local => true,
        RouteTarget::Gateway(g) => w
            .get::<InternetGateway>(g)
            .is_some_and(|g| g.vpc_id.as_deref() == Some(rt.vpc_id.as_str())),
        RouteTarget::Peering(p) => super::peering::carries_traffic(w, p),
        RouteTarget::NatGateway(g) => w
            .get::<NatGateway>(g)
            .is_some_and(|g| g.state == NatState::Available),
        // An interface: active while it exists, unless the instance it is
        // attached to is not up (stopped, terminating); a NAT gateway's
        // interface follows its gateway.
        RouteTarget::NetworkInterface(e) => w.get::<NetworkInterface>(e).is_some_and(|e| {
            match (super::eni::nat_of(w, e), &e.attachment) {
                (Some(g), _) => g.state == NatState::Available,
                (None, None) => true,
                (None, Some(_)) => super::eni::instance_of(w, e).is_some_and(Instance::is_up),
            }
        }),
        RouteTarget::Instance(i) => w.get::<Instance>(i).is_some_and(Instance::is_up),
        RouteTarget::EgressOnlyGateway(g) => w
            .get::<EgressOnlyInternetGateway>(g)
            .is_some_and(|g| g.vpc_id == rt.vpc_id),
        RouteTarget::VpcEndpoint(e) => w
            .get::<VpcEndpoint>(e)
            .is_some_and(|e| e.state == "available" && e.vpc_id == rt.vpc_id),
    };
    if ok {
        "active"
    } else {
        "blackhole"
    }
}

/// Where the data plane sends a packet that matched a (non-`local`) route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop<'w> {
    /// The VPC's internet gateway (its ID).
    InternetGateway(&'w str),
    /// The VPC's egress-only internet gateway (its ID), for IPv6.
    EgressOnlyGateway(&'w str),
    Peering(&'w Peering),
    NatGateway(&'w NatGateway),
    /// An instance's interface (a middlebox), through its address of the packet's family.
    Interface(&'w NetworkInterface),
    /// A gateway VPC endpoint: the packet has reached the service (S3,
    /// DynamoDB). vpcd runs no such service, so the data plane ends it there.
    GatewayEndpoint(&'w VpcEndpoint),
}

/// Where a packet of family `v6` that matched route `r` of `rt` goes in the
/// data plane, or `None` for a blackhole (and for the `local` route, which
/// the caller expands to the VPC's routed addresses). The route must be
/// [`route_state`] `active` and its target realised in `rt`'s VPC: the
/// attached internet gateway; a peering with a link from this VPC
/// ([`super::peering::is_realized`]); a realised NAT gateway of the VPC
/// ([`super::nat::is_realized`], IPv4 only); an instance interface of the
/// VPC that is up ([`super::eni::is_instance_interface_up`]) with an address
/// of the family (for an instance target, its primary interface).
/// `vpc-dataplane`'s planner compiles the same (`RouteCtx::target`).
pub fn next_hop<'w>(w: &'w World, rt: &RouteTable, r: &'w Route, v6: bool) -> Option<NextHop<'w>> {
    if route_state(w, rt, r) != "active" {
        return None;
    }
    let vpc = rt.vpc_id.as_str();
    let has_family = |e: &NetworkInterface| {
        if v6 {
            !e.ipv6.is_empty()
        } else {
            !e.private_ips.is_empty()
        }
    };
    let up = |e: &&'w NetworkInterface| {
        e.vpc_id == vpc && super::eni::is_instance_interface_up(w, e) && has_family(e)
    };
    match &r.target {
        RouteTarget::Local => None,
        RouteTarget::EgressOnlyGateway(g) => w
            .get::<EgressOnlyInternetGateway>(g)
            .filter(|x| v6 && x.vpc_id == vpc)
            .map(|_| NextHop::EgressOnlyGateway(g.as_str())),
        RouteTarget::Gateway(g) => w
            .get::<Vpc>(vpc)
            .is_some()
            .then_some(NextHop::InternetGateway(g.as_str())),
        RouteTarget::Peering(p) => w
            .get::<Peering>(p)
            .filter(|p| super::peering::is_realized(w, p) && p.other_vpc(vpc).is_some())
            .map(NextHop::Peering),
        RouteTarget::NatGateway(n) => w
            .get::<NatGateway>(n)
            .filter(|g| !v6 && g.vpc_id == vpc && super::nat::is_realized(w, g))
            .map(NextHop::NatGateway),
        RouteTarget::NetworkInterface(e) => w
            .get::<NetworkInterface>(e)
            .filter(up)
            .map(NextHop::Interface),
        RouteTarget::Instance(i) => super::eni::enis_of_instance(w, i)
            .into_iter()
            .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0))
            .filter(up)
            .map(NextHop::Interface),
        RouteTarget::VpcEndpoint(e) => w
            .get::<VpcEndpoint>(e)
            .filter(|e| !v6 && e.vpc_id == vpc)
            .map(NextHop::GatewayEndpoint),
    }
}

/// Longest-prefix match: the most specific route containing `dst`.
pub fn lookup(rt: &RouteTable, dst: IpAddr) -> Option<&Route> {
    rt.routes
        .iter()
        .filter(|r| r.dest.contains(&dst))
        .max_by_key(|r| r.dest.prefix_len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(routes: &[(&str, RouteTarget)]) -> RouteTable {
        RouteTable {
            meta: Meta {
                id: "rtb-1".into(),
                owner: "1".into(),
                region: "r".into(),
                tags: vec![],
                created: Default::default(),
            },
            vpc_id: "vpc-1".into(),
            routes: routes
                .iter()
                .map(|(d, t)| Route {
                    dest: d.parse().unwrap(),
                    target: t.clone(),
                    origin: "CreateRoute".into(),
                    prefix_list: None,
                })
                .collect(),
            assocs: vec![],
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = rt(&[
            ("10.0.0.0/16", RouteTarget::Local),
            ("0.0.0.0/0", RouteTarget::Gateway("igw-1".into())),
            ("10.1.0.0/16", RouteTarget::Peering("pcx-a".into())),
            ("10.1.2.3/32", RouteTarget::Peering("pcx-b".into())),
        ]);
        let hit = |ip: &str| lookup(&t, ip.parse().unwrap()).map(|r| r.target.clone());
        assert_eq!(hit("10.0.5.5"), Some(RouteTarget::Local));
        assert_eq!(hit("10.1.2.3"), Some(RouteTarget::Peering("pcx-b".into())));
        assert_eq!(hit("10.1.2.4"), Some(RouteTarget::Peering("pcx-a".into())));
        assert_eq!(hit("8.8.8.8"), Some(RouteTarget::Gateway("igw-1".into())));
        assert_eq!(hit("2600::1"), None);
    }
}
