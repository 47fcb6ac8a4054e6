//! NAT gateways: create, delete, and their timed states.
//!
//! A gateway owns one interface (type `nat_gateway`, requester-managed, no
//! security groups) in its subnet; a public gateway's Elastic IP is
//! associated with that interface's primary address. `pending` becomes
//! `available` after `Limits::instance_transition_ms` (or `failed`, as on AWS,
//! when a public gateway's VPC has no internet gateway then); `deleting`
//! becomes `deleted` as long after, and only then are the interface and the
//! Elastic IP freed. Deleted and failed gateways stay visible for an hour.

use super::{eip, eni, new_meta, subnet, IdKind};
use crate::ctx::Timestamp;
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;

pub const NAT: IdKind = IdKind {
    prefix: "nat",
    malformed: "NatGatewayMalformed",
    not_found: "NatGatewayNotFound",
    noun: "NAT gateway",
};

/// How long a deleted or failed gateway stays visible.
pub const GONE_VISIBLE_MS: i64 = Timestamp::HOUR;

/// `NatGatewayNotFound`, with AWS's own wording.
pub fn not_found(id: &str) -> Fault {
    Fault::new(
        "NatGatewayNotFound",
        format!("The Nat Gateway {id} was not found"),
    )
}

/// The caller's gateway by ID.
pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w NatGateway> {
    NAT.check(id)?;
    w.owned::<NatGateway>(id, &ctx.account, &ctx.region, || not_found(id))
}

/// CreateNatGateway's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateNat {
    pub subnet_id: Option<String>,
    pub allocation_id: Option<String>,
    /// `public` (default) or `private`.
    pub connectivity: Option<String>,
    pub private_ip: Option<String>,
    pub tags: Tags,
}

/// Whether the gateway still counts against the quota and holds its resources.
fn is_live(g: &NatGateway) -> bool {
    matches!(
        g.state,
        NatState::Pending | NatState::Available | NatState::Deleting
    )
}

pub fn create(w: &mut World, ctx: &mut Ctx<'_>, req: CreateNat) -> Result<NatGateway> {
    let subnet_id = req
        .subnet_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fault::missing("SubnetId"))?;
    let s = subnet::get(w, ctx, subnet_id)?.clone();
    if s.ipv6_native {
        return Err(Fault::invalid_param(format!(
            "The subnet '{subnet_id}' is IPv6-only: a NAT gateway needs a subnet with an IPv4 CIDR block."
        )));
    }
    let connectivity = req
        .connectivity
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "public".into());
    let alloc = req.allocation_id.as_deref().filter(|s| !s.is_empty());
    let address = match (connectivity.as_str(), alloc) {
        ("public", None) => return Err(Fault::missing("AllocationId")),
        ("public", Some(a)) => {
            let addr = eip::get(w, ctx, a)?;
            if addr.association_id.is_some() {
                return Err(Fault::new(
                    "Resource.AlreadyAssociated",
                    format!("Elastic IP address [{a}] is already associated"),
                ));
            }
            Some(addr.clone())
        }
        ("private", Some(_)) => {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "A private NAT gateway cannot have an Elastic IP address.",
            ))
        }
        ("private", None) => None,
        (c, _) => {
            return Err(Fault::invalid_param(format!(
            "Value ({c}) for parameter connectivityType is invalid. Valid values: public, private."
        )))
        }
    };
    let spec = eni::EniSpec {
        subnet_id: Some(s.meta.id.clone()),
        private_ip: req.private_ip.clone(),
        ..eni::EniSpec::default()
    };
    let mut addrs = eni::plan_addresses(w, ctx, &s, &spec)?;
    // A NAT gateway's interface never gets IPv6 addresses of its own.
    addrs.auto_ipv6 = 0;
    if addrs.primary.is_none() && eni::free_v4(&s, &eni::taken_v4(w, &s.meta.id)) == 0 {
        return Err(Fault::new(
            "InsufficientFreeAddressesInSubnet",
            format!(
                "There are not enough free addresses in subnet '{}' to create the NAT gateway.",
                s.meta.id
            ),
        ));
    }
    super::tags::validate(&req.tags, ctx.limits.tags_per_resource)?;
    let in_az = w
        .scoped::<NatGateway>(&ctx.account, &ctx.region)
        .filter(|g| is_live(g))
        .filter(|g| w.get::<Subnet>(&g.subnet_id).is_some_and(|x| x.az == s.az))
        .count();
    if in_az >= ctx.limits.nat_gateways_per_az {
        return Err(Fault::new(
            "NatGatewayLimitExceeded",
            format!(
                "The maximum number of NAT gateways in availability zone {} has been reached.",
                s.az
            ),
        ));
    }
    let meta = new_meta(ctx, "nat", req.tags);
    let e = eni::insert(
        w,
        ctx,
        eni::NewEni {
            subnet: s.clone(),
            description: format!("Interface for NAT Gateway {}", meta.id),
            groups: Vec::new(),
            addrs,
            tags: Vec::new(),
            attachment: None,
            public_ip: false,
            interface_type: "nat_gateway",
        },
    )?;
    if let (Some(a), Some(private)) = (&address, e.primary_ip()) {
        eip::link(w, ctx, &a.meta.id, &e, private);
    }
    let g = NatGateway {
        meta,
        vpc_id: s.vpc_id.clone(),
        subnet_id: s.meta.id.clone(),
        eni_id: e.meta.id.clone(),
        connectivity,
        allocation_id: address.map(|a| a.meta.id),
        state: NatState::Pending,
        state_since: ctx.now,
        transition_due: Some(ctx.now.plus_ms(ctx.limits.instance_transition_ms)),
    };
    w.put(g.clone());
    Ok(g)
}

/// DeleteNatGateway: `deleting` now, `deleted` (resources freed) shortly after.
pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<NatGateway> {
    let g = get(w, ctx, id)?.clone();
    let now = ctx.now;
    let delay = ctx.limits.instance_transition_ms;
    match g.state {
        NatState::Deleting | NatState::Deleted => {}
        NatState::Failed => {
            w.update::<NatGateway>(id, |g| {
                g.state = NatState::Deleted;
                g.state_since = now;
                g.transition_due = Some(now.plus_ms(GONE_VISIBLE_MS));
            });
        }
        NatState::Pending | NatState::Available => {
            w.update::<NatGateway>(id, |g| {
                g.state = NatState::Deleting;
                g.state_since = now;
                g.transition_due = Some(now.plus_ms(delay));
            });
        }
    }
    Ok(w.get::<NatGateway>(id).cloned().unwrap_or(g))
}

/// Whether the data plane realises the gateway (its namespace, link and
/// routes): `available` (a `pending` gateway has none yet), with its
/// interface, subnet and VPC. `vpc-dataplane`'s planner: `gather_nats`.
pub fn is_realized(w: &World, g: &NatGateway) -> bool {
    g.state == NatState::Available
        && w.get::<NetworkInterface>(&g.eni_id).is_some()
        && w.get::<Subnet>(&g.subnet_id).is_some()
        && w.get::<Vpc>(&g.vpc_id).is_some()
}

/// Why a failed gateway failed: (failureCode, failureMessage).
pub fn failure(g: &NatGateway) -> Option<(&'static str, String)> {
    (g.state == NatState::Failed).then(|| {
        (
            "Gateway.NotAttached",
            format!("Network {} has no Internet gateway attached", g.vpc_id),
        )
    })
}

/// When the gateway's next timed transition is due.
pub fn deadline(g: &NatGateway) -> Option<Timestamp> {
    g.transition_due
}

/// Frees the gateway's interface (and so disassociates its Elastic IP).
fn free_resources(w: &mut World, g: &NatGateway) {
    if w.get::<NetworkInterface>(&g.eni_id).is_some() {
        eni::remove_eni(w, &g.eni_id);
    }
}

/// Applies the gateway's due transition. `delay` is how long `deleting` lasts.
pub(crate) fn step(w: &mut World, id: &str, now: Timestamp) {
    let Some(g) = w.get::<NatGateway>(id).cloned() else {
        return;
    };
    let at = g.transition_due.unwrap_or(now);
    match g.state {
        NatState::Pending => {
            let ok = g.connectivity != "public" || eip::has_igw(w, &g.vpc_id);
            if ok {
                w.update::<NatGateway>(id, |g| {
                    g.state = NatState::Available;
                    g.state_since = at;
                    g.transition_due = None;
                });
            } else {
                free_resources(w, &g);
                w.update::<NatGateway>(id, |g| {
                    g.state = NatState::Failed;
                    g.state_since = at;
                    g.transition_due = Some(at.plus_ms(GONE_VISIBLE_MS));
                });
            }
        }
        NatState::Deleting => {
            free_resources(w, &g);
            w.update::<NatGateway>(id, |g| {
                g.state = NatState::Deleted;
                g.state_since = at;
                g.transition_due = Some(at.plus_ms(GONE_VISIBLE_MS));
            });
        }
        NatState::Deleted | NatState::Failed => {
            free_resources(w, &g);
            w.remove::<NatGateway>(id);
        }
        NatState::Available => {
            w.update::<NatGateway>(id, |g| g.transition_due = None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::fixture::Fixture;
    use crate::ops::{instance, route};

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    #[test]
    fn lifecycle_public() {
        let mut t = Fixture::new();
        let (v, s) = t.net(A, true);
        let a = t
            .run(A, |w, ctx| eip::allocate(w, ctx, None, vec![]))
            .unwrap();
        let req = CreateNat {
            subnet_id: Some(s.meta.id.clone()),
            allocation_id: Some(a.meta.id.clone()),
            ..CreateNat::default()
        };
        let g = t.run(A, |w, ctx| create(w, ctx, req.clone())).unwrap();
        assert_eq!(g.state, NatState::Pending);
        assert_eq!(g.connectivity, "public");
        let e = t.w.get::<NetworkInterface>(&g.eni_id).unwrap().clone();
        assert_eq!(e.interface_type, "nat_gateway");
        assert!(e.requester_managed);
        assert!(e.groups.is_empty());
        assert_eq!(e.status(), "in-use");
        assert_eq!(
            e.primary_ip(),
            "10.0.1.4".parse::<std::net::Ipv4Addr>().ok()
        );
        assert_eq!(eni::public_ip_of(&t.w, &e), Some(a.public_ip));
        // Pending: the data plane builds nothing for it yet.
        assert!(!eni::is_realized(&t.w, &e));
        assert_eq!(eni::nat_of(&t.w, &e).unwrap().meta.id, g.meta.id);
        // The EIP is now in use: a second gateway cannot take it, it cannot be released.
        assert_eq!(
            t.run(A, |w, ctx| create(w, ctx, req.clone()))
                .unwrap_err()
                .code,
            "Resource.AlreadyAssociated"
        );
        assert_eq!(
            t.run(A, |w, ctx| eip::release(w, ctx, Some(&a.meta.id), None))
                .unwrap_err()
                .code,
            "InvalidIPAddress.InUse"
        );
        // A route to it is a blackhole until it is available.
        let rt = v.main_route_table.clone();
        let spec = route::RouteSpec {
            destination_cidr_block: Some("0.0.0.0/0".into()),
            nat_gateway_id: Some(g.meta.id.clone()),
            ..route::RouteSpec::default()
        };
        t.run(A, |w, ctx| route::create_route(w, ctx, &rt, &spec))
            .unwrap();
        let state = |t: &Fixture| {
            let r = t.w.get::<RouteTable>(&rt).unwrap();
            route::route_state(&t.w, r, r.routes.last().unwrap())
        };
        assert_eq!(state(&t), "blackhole");
        assert_eq!(instance::next_deadline(&t.w), g.transition_due);
        t.advance(t.limits.instance_transition_ms);
        assert_eq!(
            t.w.get::<NatGateway>(&g.meta.id).unwrap().state,
            NatState::Available
        );
        assert_eq!(state(&t), "active");
        assert!(eni::is_realized(
            &t.w,
            t.w.get::<NetworkInterface>(&g.eni_id).unwrap()
        ));
        assert_eq!(instance::next_deadline(&t.w), None);
        // The subnet cannot go while the gateway's interface is there.
        let sid = s.meta.id.clone();
        assert_eq!(
            t.run(A, |w, ctx| subnet::delete_subnet(w, ctx, &sid))
                .unwrap_err()
                .code,
            "DependencyViolation"
        );
        // Delete: deleting, then deleted with the interface and EIP freed.
        let gid = g.meta.id.clone();
        let d = t.run(A, |w, ctx| delete(w, ctx, &gid)).unwrap();
        assert_eq!(d.state, NatState::Deleting);
        assert!(!eni::is_realized(
            &t.w,
            t.w.get::<NetworkInterface>(&g.eni_id).unwrap()
        ));
        t.advance(t.limits.instance_transition_ms);
        let d = t.w.get::<NatGateway>(&gid).unwrap().clone();
        assert_eq!(d.state, NatState::Deleted);
        assert!(t.w.get::<NetworkInterface>(&g.eni_id).is_none());
        assert_eq!(t.w.get::<Address>(&a.meta.id).unwrap().association_id, None);
        assert_eq!(state(&t), "blackhole");
        t.run(A, |w, ctx| eip::release(w, ctx, Some(&a.meta.id), None))
            .unwrap();
        // Deleting again is harmless; it stays visible for an hour.
        t.run(A, |w, ctx| delete(w, ctx, &gid)).unwrap();
        t.advance(GONE_VISIBLE_MS);
        assert!(t.w.get::<NatGateway>(&gid).is_none());
        assert_eq!(
            t.run(A, |w, ctx| delete(w, ctx, &gid)).unwrap_err().message,
            format!("The Nat Gateway {gid} was not found")
        );
        t.run(A, |w, ctx| subnet::delete_subnet(w, ctx, &sid))
            .unwrap();
    }

    #[test]
    fn public_without_internet_gateway_fails() {
        let mut t = Fixture::new();
        let (_v, s) = t.net(A, false);
        let a = t
            .run(A, |w, ctx| eip::allocate(w, ctx, None, vec![]))
            .unwrap();
        let g = t
            .run(A, |w, ctx| {
                create(
                    w,
                    ctx,
                    CreateNat {
                        subnet_id: Some(s.meta.id.clone()),
                        allocation_id: Some(a.meta.id.clone()),
                        ..CreateNat::default()
                    },
                )
            })
            .unwrap();
        t.advance(t.limits.instance_transition_ms);
        let g = t.w.get::<NatGateway>(&g.meta.id).unwrap().clone();
        assert_eq!(g.state, NatState::Failed);
        assert_eq!(failure(&g).unwrap().0, "Gateway.NotAttached");
        assert!(t.w.get::<NetworkInterface>(&g.eni_id).is_none());
        assert_eq!(t.w.get::<Address>(&a.meta.id).unwrap().association_id, None);
    }

    #[test]
    fn private_and_errors() {
        let mut t = Fixture::new();
        let (_v, s) = t.net(A, false);
        let mk = |t: &mut Fixture, r: CreateNat| t.run(A, |w, ctx| create(w, ctx, r));
        let g = mk(
            &mut t,
            CreateNat {
                subnet_id: Some(s.meta.id.clone()),
                connectivity: Some("private".into()),
                private_ip: Some("10.0.1.50".into()),
                ..CreateNat::default()
            },
        )
        .unwrap();
        assert_eq!(
            t.w.get::<NetworkInterface>(&g.eni_id).unwrap().primary_ip(),
            "10.0.1.50".parse::<std::net::Ipv4Addr>().ok()
        );
        t.advance(t.limits.instance_transition_ms);
        assert_eq!(
            t.w.get::<NatGateway>(&g.meta.id).unwrap().state,
            NatState::Available
        );
        let base = CreateNat {
            subnet_id: Some(s.meta.id.clone()),
            ..CreateNat::default()
        };
        assert_eq!(
            mk(&mut t, base.clone()).unwrap_err().code,
            "MissingParameter"
        );
        assert_eq!(
            mk(
                &mut t,
                CreateNat {
                    allocation_id: Some("eipalloc-00000000000000abc".into()),
                    ..base.clone()
                }
            )
            .unwrap_err()
            .code,
            "InvalidAllocationID.NotFound"
        );
        assert_eq!(
            mk(
                &mut t,
                CreateNat {
                    connectivity: Some("bogus".into()),
                    ..base.clone()
                }
            )
            .unwrap_err()
            .code,
            "InvalidParameterValue"
        );
        let gid = g.meta.id.clone();
        assert_eq!(
            t.run(B, |w, ctx| delete(w, ctx, &gid)).unwrap_err().code,
            "NatGatewayNotFound"
        );
        assert_eq!(
            t.run(A, |w, ctx| delete(w, ctx, "natgw-1"))
                .unwrap_err()
                .code,
            "NatGatewayMalformed"
        );
        // The quota counts live gateways per zone.
        t.limits.nat_gateways_per_az = 1;
        assert_eq!(
            mk(
                &mut t,
                CreateNat {
                    connectivity: Some("private".into()),
                    ..base
                }
            )
            .unwrap_err()
            .code,
            "NatGatewayLimitExceeded"
        );
        // Its interface cannot be deleted by the user.
        let eid = g.eni_id.clone();
        assert_eq!(
            t.run(A, |w, ctx| eni::delete(w, ctx, &eid))
                .unwrap_err()
                .code,
            "InvalidNetworkInterface.InUse"
        );
    }
}
