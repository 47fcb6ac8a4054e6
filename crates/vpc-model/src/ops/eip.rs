//! Elastic IP addresses and the public IPv4 pool.
//!
//! Public addresses, Elastic and auto-assigned alike, come from one pool
//! shared by every account and region, 198.18.0.0/15 (RFC 2544 benchmarking
//! space, never routed on the internet), lowest free first. An address is
//! free when no Elastic IP and no interface holds it anywhere in the World.

use super::{check_limit, eni, new_meta, IdKind};
use crate::fault::{Fault, Result};
use crate::ids;
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

pub const ALLOC: IdKind = IdKind {
    prefix: "eipalloc",
    malformed: "InvalidAllocationID.Malformed",
    not_found: "InvalidAllocationID.NotFound",
    noun: "allocation",
};

/// The public IPv4 pool.
pub fn pool() -> Ipv4Net {
    "198.18.0.0/15".parse().expect("literal")
}

/// Every public IPv4 address in use anywhere.
pub fn public_ips_in_use(w: &World) -> BTreeSet<Ipv4Addr> {
    w.iter::<Address>()
        .map(|a| a.public_ip)
        .chain(w.iter::<NetworkInterface>().filter_map(|e| e.public_ip))
        .collect()
}

/// The lowest free address of the pool (its first and last addresses are never used).
pub fn next_public_ip(w: &World) -> Result<Ipv4Addr> {
    let used = public_ips_in_use(w);
    let p = pool();
    let (lo, hi) = (u32::from(p.network()) + 1, u32::from(p.broadcast()));
    (lo..hi)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
        .ok_or_else(|| {
            Fault::new(
                "InsufficientAddressCapacity",
                "There are no more public IPv4 addresses available.",
            )
        })
}

/// The caller's Elastic IP by allocation ID.
pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w Address> {
    w.owned::<Address>(id, &ctx.account, &ctx.region, ALLOC.nf(id)?)
}

/// The caller's Elastic IP by address.
pub fn by_public_ip<'w>(w: &'w World, ctx: &Ctx<'_>, ip: &str) -> Result<&'w Address> {
    let nf = || {
        Fault::new(
            "InvalidAddress.NotFound",
            format!("Address '{ip}' not found."),
        )
    };
    let addr: Ipv4Addr = ip.trim().parse().map_err(|_| nf())?;
    w.iter::<Address>()
        .find(|a| a.public_ip == addr && a.meta.owner == ctx.account && a.meta.region == ctx.region)
        .ok_or_else(nf)
}

/// The address a request names by `AllocationId` or, failing that, `PublicIp`.
fn resolve<'w>(
    w: &'w World,
    ctx: &Ctx<'_>,
    allocation_id: Option<&str>,
    public_ip: Option<&str>,
) -> Result<&'w Address> {
    match (
        allocation_id.filter(|s| !s.is_empty()),
        public_ip.filter(|s| !s.is_empty()),
    ) {
        (Some(id), _) => get(w, ctx, id),
        (None, Some(ip)) => by_public_ip(w, ctx, ip),
        (None, None) => Err(Fault::missing("AllocationId")),
    }
}

/// AllocateAddress (domain `vpc` only).
pub fn allocate(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    domain: Option<&str>,
    tags: Tags,
) -> Result<Address> {
    match domain.filter(|d| !d.is_empty()) {
        None | Some("vpc") => {}
        Some(d) => {
            return Err(Fault::invalid_param(format!(
                "Value ({d}) for parameter domain is invalid. Only 'vpc' is supported."
            )))
        }
    }
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    let n = w.scoped::<Address>(&ctx.account, &ctx.region).count();
    check_limit(
        n,
        ctx.limits.elastic_ips_per_region,
        "AddressLimitExceeded",
        "addresses",
    )?;
    let public_ip = next_public_ip(w)?;
    let a = Address {
        meta: new_meta(ctx, "eipalloc", tags),
        public_ip,
        association_id: None,
        eni_id: None,
        private_ip: None,
    };
    w.put(a.clone());
    Ok(a)
}

/// AssociateAddress's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Associate {
    pub allocation_id: Option<String>,
    pub public_ip: Option<String>,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub private_ip: Option<String>,
    pub allow_reassociation: bool,
}

/// Whether the VPC has an internet gateway attached.
pub fn has_igw(w: &World, vpc_id: &str) -> bool {
    w.iter::<InternetGateway>()
        .any(|g| g.vpc_id.as_deref() == Some(vpc_id))
}

/// Associates an address with one private IP of an interface (no checks).
///
/// Another Elastic IP on that private IP is disassociated, and an
/// auto-assigned public IP on it (the primary's) is released, as on AWS.
pub fn link(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    alloc_id: &str,
    eni: &NetworkInterface,
    private: Ipv4Addr,
) -> String {
    let others: Vec<String> = w
        .iter::<Address>()
        .filter(|a| {
            a.meta.id != alloc_id
                && a.eni_id.as_deref() == Some(eni.meta.id.as_str())
                && a.private_ip == Some(private)
        })
        .map(|a| a.meta.id.clone())
        .collect();
    for o in others {
        w.update::<Address>(&o, unlink);
    }
    if Some(private) == eni.primary_ip() && eni.public_ip.is_some() {
        w.update::<NetworkInterface>(&eni.meta.id, |e| e.public_ip = None);
    }
    let assoc = ctx.new_id("eipassoc");
    let out = assoc.clone();
    let eni_id = eni.meta.id.clone();
    w.update::<Address>(alloc_id, |a| {
        a.association_id = Some(assoc);
        a.eni_id = Some(eni_id);
        a.private_ip = Some(private);
    });
    out
}

fn unlink(a: &mut Address) {
    a.association_id = None;
    a.eni_id = None;
    a.private_ip = None;
}

/// Disassociates every Elastic IP from an interface (it is going away).
pub fn disassociate_all(w: &mut World, eni_id: &str) {
    let ids: Vec<String> = w
        .iter::<Address>()
        .filter(|a| a.eni_id.as_deref() == Some(eni_id))
        .map(|a| a.meta.id.clone())
        .collect();
    for id in ids {
        w.update::<Address>(&id, unlink);
    }
}

/// Disassociates the Elastic IP (if any) mapped to one private address of an interface.
pub fn disassociate_private(w: &mut World, eni_id: &str, private: std::net::Ipv4Addr) {
    let ids: Vec<String> = w
        .iter::<Address>()
        .filter(|a| a.eni_id.as_deref() == Some(eni_id) && a.private_ip == Some(private))
        .map(|a| a.meta.id.clone())
        .collect();
    for id in ids {
        w.update::<Address>(&id, unlink);
    }
}

fn multiple_interfaces(instance_id: &str) -> Fault {
    Fault::new(
        "InvalidInstanceID",
        format!("There are multiple interfaces attached to instance '{instance_id}'. Please specify an interface ID for the operation instead."),
    )
}

/// AssociateAddress. Returns the association ID (`eipassoc-…`).
pub fn associate(w: &mut World, ctx: &mut Ctx<'_>, req: Associate) -> Result<String> {
    let addr = resolve(
        w,
        ctx,
        req.allocation_id.as_deref(),
        req.public_ip.as_deref(),
    )?
    .clone();
    let inst = req.instance_id.as_deref().filter(|s| !s.is_empty());
    let eni_id = req
        .network_interface_id
        .as_deref()
        .filter(|s| !s.is_empty());
    let e = match (inst, eni_id) {
        (None, None) => return Err(Fault::missing("InstanceId or NetworkInterfaceId")),
        (Some(i), e) => {
            let instance = super::instance::get(w, ctx, i)?;
            if matches!(
                instance.state,
                InstanceState::ShuttingDown | InstanceState::Terminated
            ) {
                return Err(Fault::new(
                    "IncorrectInstanceState",
                    format!("The instance '{i}' is not in a valid state for this operation."),
                ));
            }
            let attached = eni::enis_of_instance(w, i);
            match e {
                Some(e) => {
                    let x = eni::get(w, ctx, e)?;
                    if !attached.iter().any(|a| a.meta.id == x.meta.id) {
                        return Err(Fault::new(
                            "InvalidParameterCombination",
                            format!("Network interface '{e}' is not attached to instance '{i}'."),
                        ));
                    }
                    x.clone()
                }
                None if attached.len() > 1 => return Err(multiple_interfaces(i)),
                None => attached
                    .first()
                    .map(|x| (*x).clone())
                    .ok_or_else(|| super::instance::INSTANCE.not_found(i))?,
            }
        }
        (None, Some(e)) => eni::get(w, ctx, e)?.clone(),
    };
    if e.requester_managed {
        return Err(Fault::new(
            "OperationNotPermitted",
            format!(
                "The network interface '{}' is managed by AWS; its addresses cannot be changed.",
                e.meta.id
            ),
        ));
    }
    let private = match req.private_ip.as_deref().filter(|s| !s.is_empty()) {
        None => e.primary_ip().ok_or_else(|| {
            Fault::invalid_param(format!(
                "The network interface '{}' has no private IPv4 address (its subnet is IPv6-only); an Elastic IP address cannot be associated with it.",
                e.meta.id
            ))
        })?,
        Some(s) => {
            let ip: Ipv4Addr = s.trim().parse().map_err(|_| {
                Fault::invalid_param(format!(
                    "Value ({s}) for parameter privateIpAddress is invalid. Invalid format."
                ))
            })?;
            if !e.private_ips.iter().any(|p| p.ip == ip) {
                return Err(Fault::invalid_param(format!(
                    "The private IP address {ip} is not assigned to network interface {}.",
                    e.meta.id
                )));
            }
            ip
        }
    };
    if !has_igw(w, &e.vpc_id) {
        return Err(Fault::new(
            "Gateway.NotAttached",
            format!(
                "Network {} is not attached to any internet gateway",
                e.vpc_id
            ),
        ));
    }
    if let Some(cur) = &addr.association_id {
        let same =
            addr.eni_id.as_deref() == Some(e.meta.id.as_str()) && addr.private_ip == Some(private);
        if !same && !req.allow_reassociation {
            return Err(Fault::new(
                "Resource.AlreadyAssociated",
                format!(
                    "resource {} is already associated with associate-id {cur}",
                    addr.meta.id
                ),
            ));
        }
        if let Some(old) = addr.eni_id.as_deref() {
            if let Some(n) = w.get::<NetworkInterface>(old) {
                if n.requester_managed {
                    return Err(Fault::new(
                        "Resource.AlreadyAssociated",
                        format!("resource {} is in use by a NAT gateway", addr.meta.id),
                    ));
                }
            }
        }
    }
    let occupied = w.iter::<Address>().any(|a| {
        a.meta.id != addr.meta.id
            && a.eni_id.as_deref() == Some(e.meta.id.as_str())
            && a.private_ip == Some(private)
    });
    if occupied && !req.allow_reassociation {
        return Err(Fault::new(
            "Resource.AlreadyAssociated",
            format!(
                "The private IP address {private} of {} already has an Elastic IP address associated",
                e.meta.id
            ),
        ));
    }
    w.update::<Address>(&addr.meta.id, unlink);
    Ok(link(w, ctx, &addr.meta.id, &e, private))
}

fn assoc_not_found(id: &str) -> Fault {
    Fault::new(
        "InvalidAssociationID.NotFound",
        format!("The association ID '{id}' does not exist"),
    )
}

/// DisassociateAddress by `AssociationId` (or `PublicIp`).
pub fn disassociate(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    association_id: Option<&str>,
    public_ip: Option<&str>,
) -> Result<()> {
    let a = match (
        association_id.filter(|s| !s.is_empty()),
        public_ip.filter(|s| !s.is_empty()),
    ) {
        (Some(id), _) => {
            ids::check("eipassoc", "InvalidAssociationID.Malformed", id)?;
            w.scoped::<Address>(&ctx.account, &ctx.region)
                .find(|a| a.association_id.as_deref() == Some(id))
                .ok_or_else(|| assoc_not_found(id))?
                .clone()
        }
        (None, Some(ip)) => by_public_ip(w, ctx, ip)?.clone(),
        (None, None) => return Err(Fault::missing("AssociationId")),
    };
    if let Some(e) = a
        .eni_id
        .as_deref()
        .and_then(|e| w.get::<NetworkInterface>(e))
    {
        if e.requester_managed {
            return Err(Fault::new(
                "OperationNotPermitted",
                format!(
                    "The Elastic IP address {} is in use by a NAT gateway and cannot be disassociated.",
                    a.public_ip
                ),
            ));
        }
    }
    w.update::<Address>(&a.meta.id, unlink);
    Ok(())
}

/// ReleaseAddress: only an address that is not associated.
pub fn release(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    allocation_id: Option<&str>,
    public_ip: Option<&str>,
) -> Result<()> {
    let a = resolve(w, ctx, allocation_id, public_ip)?.clone();
    if a.association_id.is_some() {
        return Err(Fault::new(
            "InvalidIPAddress.InUse",
            format!("Address {} is in use.", a.public_ip),
        ));
    }
    w.remove::<Address>(&a.meta.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::fixture::Fixture;
    use crate::ops::{eni::EniSpec, instance};

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn pool_is_shared_and_lowest_free() {
        let mut t = Fixture::new();
        let a1 = t
            .run(A, |w, ctx| allocate(w, ctx, Some("vpc"), vec![]))
            .unwrap();
        assert_eq!(a1.public_ip, ip("198.18.0.1"));
        assert!(a1.meta.id.starts_with("eipalloc-"));
        let b1 = t
            .run_in(B, "eu-west-1", |w, ctx| allocate(w, ctx, None, vec![]))
            .unwrap();
        assert_eq!(b1.public_ip, ip("198.18.0.2"));
        t.run(A, |w, ctx| release(w, ctx, Some(&a1.meta.id), None))
            .unwrap();
        let a2 = t.run(A, |w, ctx| allocate(w, ctx, None, vec![])).unwrap();
        assert_eq!(a2.public_ip, ip("198.18.0.1"));
        assert_eq!(
            t.run(A, |w, ctx| allocate(w, ctx, Some("standard"), vec![]))
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        // Quota per account and region.
        for _ in 0..4 {
            t.run(A, |w, ctx| allocate(w, ctx, None, vec![])).unwrap();
        }
        assert_eq!(
            t.run(A, |w, ctx| allocate(w, ctx, None, vec![]))
                .unwrap_err()
                .code,
            "AddressLimitExceeded"
        );
        // Not found, malformed, other account, by public IP.
        let e = t
            .run(B, |w, ctx| release(w, ctx, Some(&a2.meta.id), None))
            .unwrap_err();
        assert_eq!(e.code, "InvalidAllocationID.NotFound");
        assert_eq!(
            e.message,
            format!("The allocation ID '{}' does not exist", a2.meta.id)
        );
        assert_eq!(
            t.run(A, |w, ctx| release(w, ctx, Some("alloc-x"), None))
                .unwrap_err()
                .code,
            "InvalidAllocationID.Malformed"
        );
        t.run(A, |w, ctx| release(w, ctx, None, Some("198.18.0.1")))
            .unwrap();
        assert_eq!(
            t.run(A, |w, ctx| release(w, ctx, None, Some("198.18.0.1")))
                .unwrap_err()
                .code,
            "InvalidAddress.NotFound"
        );
    }

    #[test]
    fn associate_replaces_auto_ip_and_blocks_release() {
        let mut t = Fixture::new();
        let (v, s) = t.net(A, true);
        t.w.update::<Subnet>(&s.meta.id, |s| s.map_public_ip = true);
        let inst = t
            .run(A, |w, ctx| {
                instance::run(
                    w,
                    ctx,
                    instance::RunInstances {
                        image_id: Some("ami-12345678".into()),
                        min_count: Some(1),
                        max_count: Some(1),
                        subnet_id: Some(s.meta.id.clone()),
                        ..instance::RunInstances::default()
                    },
                )
            })
            .unwrap()
            .remove(0);
        let primary = inst.primary_eni.clone();
        let auto = t.w.get::<NetworkInterface>(&primary).unwrap().public_ip;
        assert_eq!(auto, Some(ip("198.18.0.1")));
        let a = t.run(A, |w, ctx| allocate(w, ctx, None, vec![])).unwrap();
        assert_eq!(a.public_ip, ip("198.18.0.2"));
        let assoc = t
            .run(A, |w, ctx| {
                associate(
                    w,
                    ctx,
                    Associate {
                        allocation_id: Some(a.meta.id.clone()),
                        instance_id: Some(inst.meta.id.clone()),
                        ..Associate::default()
                    },
                )
            })
            .unwrap();
        assert!(assoc.starts_with("eipassoc-"));
        let e = t.w.get::<NetworkInterface>(&primary).unwrap().clone();
        assert_eq!(e.public_ip, None);
        assert_eq!(eni::public_ip_of(&t.w, &e), Some(ip("198.18.0.2")));
        assert_eq!(
            eni::public_ips_of(&t.w, &e),
            vec![(e.primary_ip().unwrap(), ip("198.18.0.2"))]
        );
        // The auto-assigned address went back to the pool.
        let b = t.run(A, |w, ctx| allocate(w, ctx, None, vec![])).unwrap();
        assert_eq!(b.public_ip, ip("198.18.0.1"));
        // Release while associated fails; re-associating needs AllowReassociation.
        assert_eq!(
            t.run(A, |w, ctx| release(w, ctx, Some(&a.meta.id), None))
                .unwrap_err()
                .code,
            "InvalidIPAddress.InUse"
        );
        let other = t
            .run(A, |w, ctx| {
                eni::create(
                    w,
                    ctx,
                    EniSpec {
                        subnet_id: Some(s.meta.id.clone()),
                        ..EniSpec::default()
                    },
                )
            })
            .unwrap();
        let mv = |allow: bool| Associate {
            allocation_id: Some(a.meta.id.clone()),
            network_interface_id: Some(other.meta.id.clone()),
            allow_reassociation: allow,
            ..Associate::default()
        };
        assert_eq!(
            t.run(A, |w, ctx| associate(w, ctx, mv(false)))
                .unwrap_err()
                .code,
            "Resource.AlreadyAssociated"
        );
        let assoc2 = t.run(A, |w, ctx| associate(w, ctx, mv(true))).unwrap();
        let e = t.w.get::<NetworkInterface>(&primary).unwrap().clone();
        assert_eq!(eni::public_ip_of(&t.w, &e), None);
        // Disassociate, by the new association only.
        assert_eq!(
            t.run(A, |w, ctx| disassociate(w, ctx, Some(&assoc), None))
                .unwrap_err()
                .code,
            "InvalidAssociationID.NotFound"
        );
        assert_eq!(
            t.run(B, |w, ctx| disassociate(w, ctx, Some(&assoc2), None))
                .unwrap_err()
                .code,
            "InvalidAssociationID.NotFound"
        );
        t.run(A, |w, ctx| disassociate(w, ctx, Some(&assoc2), None))
            .unwrap();
        t.run(A, |w, ctx| release(w, ctx, Some(&a.meta.id), None))
            .unwrap();
        // A private IP that is not the interface's.
        let bad = Associate {
            allocation_id: Some(b.meta.id.clone()),
            network_interface_id: Some(other.meta.id.clone()),
            private_ip: Some("10.0.1.200".into()),
            ..Associate::default()
        };
        assert_eq!(
            t.run(A, |w, ctx| associate(w, ctx, bad)).unwrap_err().code,
            "InvalidParameterValue"
        );
        let _ = v;
    }

    #[test]
    fn associate_needs_internet_gateway_and_single_interface() {
        let mut t = Fixture::new();
        let (_v, s) = t.net(A, false);
        let e = t
            .run(A, |w, ctx| {
                eni::create(
                    w,
                    ctx,
                    EniSpec {
                        subnet_id: Some(s.meta.id.clone()),
                        ..EniSpec::default()
                    },
                )
            })
            .unwrap();
        let a = t.run(A, |w, ctx| allocate(w, ctx, None, vec![])).unwrap();
        let req = Associate {
            allocation_id: Some(a.meta.id.clone()),
            network_interface_id: Some(e.meta.id.clone()),
            ..Associate::default()
        };
        assert_eq!(
            t.run(A, |w, ctx| associate(w, ctx, req.clone()))
                .unwrap_err()
                .code,
            "Gateway.NotAttached"
        );
        assert_eq!(
            t.run(A, |w, ctx| associate(
                w,
                ctx,
                Associate {
                    allocation_id: Some(a.meta.id.clone()),
                    ..Associate::default()
                }
            ))
            .unwrap_err()
            .code,
            "MissingParameter"
        );
    }
}
