//! Egress-only internet gateways: create (attached to a VPC from the
//! start), delete, and what they let through: IPv6 from the VPC to the
//! internet and its replies; the internet opens no connection through one
//! ([`internet_may_connect`]).

use super::{check_limit, new_meta, vpc, IdKind};
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;

pub const EIGW: IdKind = IdKind {
    prefix: "eigw",
    malformed: "InvalidEgressOnlyInternetGatewayId.Malformed",
    not_found: "InvalidEgressOnlyInternetGatewayId.NotFound",
    noun: "egressOnlyInternetGateway",
};

pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w EgressOnlyInternetGateway> {
    w.owned::<EgressOnlyInternetGateway>(id, &ctx.account, &ctx.region, EIGW.nf(id)?)
}

pub fn create(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    vpc_id: &str,
    tags: Tags,
) -> Result<EgressOnlyInternetGateway> {
    vpc::get(w, ctx, vpc_id)?;
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    check_limit(
        w.eigws.count_in(&ctx.account, &ctx.region),
        ctx.limits.igws_per_region,
        "EgressOnlyInternetGatewayLimitExceeded",
        "egress-only internet gateways",
    )?;
    let g = EgressOnlyInternetGateway {
        meta: new_meta(ctx, "eigw", tags),
        vpc_id: vpc_id.to_string(),
    };
    w.put(g.clone());
    Ok(g)
}

/// Deletes the gateway; routes to it stay, as blackholes (as in AWS).
pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    get(w, ctx, id)?;
    w.remove::<EgressOnlyInternetGateway>(id);
    Ok(())
}

/// The egress-only gateway of a VPC, if it has one (the first by ID).
pub fn of_vpc<'w>(w: &'w World, vpc_id: &str) -> Option<&'w EgressOnlyInternetGateway> {
    w.iter::<EgressOnlyInternetGateway>()
        .find(|g| g.vpc_id == vpc_id)
}

/// Whether the internet may open a connection into `vpc_id`: only through
/// an attached internet gateway. An egress-only gateway lets the VPC's IPv6
/// traffic out and its replies back, nothing else. The analyzer reaches a
/// VPC from the internet through its internet gateway only, and the data
/// plane drops new connections coming in over a VPC's internet link when
/// this is false.
pub fn internet_may_connect(w: &World, vpc_id: &str) -> bool {
    w.iter::<InternetGateway>()
        .any(|g| g.vpc_id.as_deref() == Some(vpc_id))
}

/// The route target check: the caller's gateway, in the route table's VPC,
/// for an IPv6 destination.
pub fn route_target(
    w: &World,
    ctx: &Ctx<'_>,
    rt: &RouteTable,
    id: &str,
    v6_destination: bool,
) -> Result<RouteTarget> {
    let g = get(w, ctx, id)?;
    if g.vpc_id != rt.vpc_id {
        return Err(Fault::invalid_param(format!(
            "route table {} and network gateway {id} belong to different networks",
            rt.meta.id
        )));
    }
    if !v6_destination {
        return Err(Fault::invalid_param(format!(
            "An egress-only internet gateway ({id}) carries IPv6 traffic only; use DestinationIpv6CidrBlock."
        )));
    }
    Ok(RouteTarget::EgressOnlyGateway(id.to_string()))
}
