//! Subnet CIDR reservations: ranges of a subnet set aside from automatic
//! address assignment (`explicit`: the user assigns them by hand; `prefix`:
//! for prefix delegation, which vpcd does not model, so only set aside).
//!
//! A reservation lives in its subnet's record (`Subnet::cidr_reservations`)
//! and goes with the subnet, or with the IPv6 block it lies in.

use super::{subnet, IdKind};
use crate::cidr;
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const SCR: IdKind = IdKind {
    prefix: "scr",
    malformed: "InvalidSubnetCidrReservationID.Malformed",
    not_found: "InvalidSubnetCidrReservationID.NotFound",
    noun: "subnet CIDR reservation",
};

/// A CreateSubnetCidrReservation request.
#[derive(Debug, Clone, Default)]
pub struct CreateReservation {
    pub subnet_id: String,
    pub cidr: Option<String>,
    pub reservation_type: Option<String>,
    pub description: Option<String>,
    pub tags: Tags,
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    if s.contains(':') {
        cidr::parse_v6(s).map(IpNet::V6)
    } else {
        cidr::parse_v4(s).map(IpNet::V4)
    }
}

/// True when `net` lies wholly inside one of the subnet's blocks.
fn within(s: &Subnet, net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => s.cidr.is_some_and(|c| cidr::contains_v4(&c, n)),
        IpNet::V6(n) => s
            .ipv6
            .iter()
            .filter(|a| a.state == "associated")
            .any(|a| cidr::contains_v6(&a.cidr, n)),
    }
}

/// Creates a reservation in one of the caller's subnets.
pub fn create(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    req: CreateReservation,
) -> Result<(Subnet, SubnetCidrReservation)> {
    let s = subnet::get(w, ctx, &req.subnet_id)?.clone();
    let text = req.cidr.as_deref().ok_or_else(|| Fault::missing("Cidr"))?;
    let kind = req
        .reservation_type
        .as_deref()
        .ok_or_else(|| Fault::missing("ReservationType"))?;
    let net = parse_cidr(text).ok_or_else(|| {
        Fault::invalid_param(format!(
            "Value ({text}) for parameter cidr is invalid. This is not a valid CIDR block."
        ))
    })?;
    if !matches!(kind, "prefix" | "explicit") {
        return Err(Fault::invalid_param(format!(
            "Value ({kind}) for parameter reservationType is invalid. Valid values: prefix, explicit."
        )));
    }
    if !within(&s, &net) {
        return Err(Fault::invalid_param(format!(
            "Reservation CIDR {net} is not within the CIDR blocks of subnet {}",
            s.meta.id
        )));
    }
    if s.cidr_reservations
        .iter()
        .any(|r| cidr::overlaps(&r.cidr, &net))
    {
        return Err(Fault::invalid_param(format!(
            "Reservation CIDR {net} has overlap with existing reserved CIDR block"
        )));
    }
    let description = req.description.unwrap_or_default();
    if description.chars().count() > 255 {
        return Err(Fault::invalid_param(
            "Value for parameter description is invalid. The description must be at most 255 characters.",
        ));
    }
    super::tags::validate(&req.tags, ctx.limits.tags_per_resource)?;
    let r = SubnetCidrReservation {
        id: ctx.new_id("scr"),
        cidr: net,
        reservation_type: kind.to_string(),
        description,
        tags: req.tags,
    };
    let out = r.clone();
    w.update::<Subnet>(&s.meta.id, |s| s.cidr_reservations.push(r));
    Ok((s, out))
}

/// The caller's reservation `id` and the subnet holding it.
pub fn get<'w>(
    w: &'w World,
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<(&'w Subnet, &'w SubnetCidrReservation)> {
    SCR.check(id)?;
    w.iter::<Subnet>()
        .filter(|s| s.meta.owner == ctx.account && s.meta.region == ctx.region)
        .find_map(|s| {
            s.cidr_reservations
                .iter()
                .find(|r| r.id == id)
                .map(|r| (s, r))
        })
        .ok_or_else(|| SCR.not_found(id))
}

/// Deletes a reservation; answers the subnet it was in and the reservation.
pub fn delete(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
) -> Result<(Subnet, SubnetCidrReservation)> {
    let (s, r) = get(w, ctx, id)?;
    let (s, r) = (s.clone(), r.clone());
    w.update::<Subnet>(&s.meta.id, |s| s.cidr_reservations.retain(|x| x.id != id));
    Ok((s, r))
}

/// The reservation holding `ip`, if any.
pub fn reservation_of(s: &Subnet, ip: IpAddr) -> Option<&SubnetCidrReservation> {
    s.cidr_reservations.iter().find(|r| r.cidr.contains(&ip))
}

/// The next address at or after `ip` that no reservation of `s` holds:
/// `ip` itself, or the first address past the reservation holding it.
pub fn skip_reserved_v4(s: &Subnet, mut ip: u32) -> Option<u32> {
    while let Some(r) = reservation_of(s, IpAddr::V4(Ipv4Addr::from(ip))) {
        let IpNet::V4(n) = r.cidr else {
            return Some(ip);
        };
        ip = u32::from(n.broadcast()).checked_add(1)?;
    }
    Some(ip)
}

/// As `skip_reserved_v4`, for IPv6.
pub fn skip_reserved_v6(s: &Subnet, mut ip: u128) -> Option<u128> {
    while let Some(r) = reservation_of(s, IpAddr::V6(Ipv6Addr::from(ip))) {
        let IpNet::V6(n) = r.cidr else {
            return Some(ip);
        };
        ip = u128::from(n.broadcast()).checked_add(1)?;
    }
    Some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::eni;
    use std::collections::BTreeSet;

    fn subnet(cidr: &str, reserved: &[(&str, &str)]) -> Subnet {
        let mut w = World::default();
        let mut ids = crate::ctx::SeqIds(0);
        let limits = crate::Limits::default();
        let zones = vec![("us-east-1a".to_string(), "use1-az1".to_string())];
        let mut ctx = Ctx {
            account: "111111111111".into(),
            region: "us-east-1".into(),
            now: crate::Timestamp(1_000_000),
            ids: &mut ids,
            limits: &limits,
            zones: &zones,
        };
        let v = super::super::vpc::create_vpc(
            &mut w,
            &mut ctx,
            super::super::vpc::CreateVpc {
                cidr_block: Some("10.0.0.0/16".into()),
                amazon_ipv6: true,
                ..Default::default()
            },
        )
        .unwrap();
        let v6 = v.ipv6[0].cidr.to_string().replace("00::/56", "00::/64");
        let s = subnet::create_subnet(
            &mut w,
            &mut ctx,
            subnet::CreateSubnet {
                vpc_id: Some(v.meta.id.clone()),
                cidr_block: Some(cidr.into()),
                ipv6_cidr_block: Some(v6),
                ..Default::default()
            },
        )
        .unwrap();
        for (c, kind) in reserved {
            create(
                &mut w,
                &mut ctx,
                CreateReservation {
                    subnet_id: s.meta.id.clone(),
                    cidr: Some(c.to_string()),
                    reservation_type: Some(kind.to_string()),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        w.get::<Subnet>(&s.meta.id).unwrap().clone()
    }

    #[test]
    fn automatic_assignment_skips_every_reservation() {
        let s = subnet(
            "10.0.1.0/24",
            &[("10.0.1.0/28", "explicit"), ("10.0.1.16/29", "prefix")],
        );
        let free = eni::lowest_free_v4_in(&s, &BTreeSet::new()).unwrap();
        assert_eq!(free, "10.0.1.24".parse::<Ipv4Addr>().unwrap());
        let taken: BTreeSet<Ipv4Addr> = [free].into();
        assert_eq!(
            eni::lowest_free_v4_in(&s, &taken).unwrap(),
            "10.0.1.25".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn a_reservation_covering_the_rest_of_the_subnet_leaves_nothing() {
        let s = subnet("10.0.1.0/28", &[("10.0.1.0/28", "explicit")]);
        assert_eq!(eni::lowest_free_v4_in(&s, &BTreeSet::new()), None);
    }

    #[test]
    fn ipv6_assignment_jumps_over_a_large_reservation() {
        let s = subnet("10.0.1.0/24", &[]);
        let block = eni::v6_block(&s).unwrap();
        let r = format!("{}/80", block.network());
        let s = {
            let mut s = s;
            s.cidr_reservations.push(SubnetCidrReservation {
                id: "scr-0".into(),
                cidr: r.parse().unwrap(),
                reservation_type: "prefix".into(),
                description: String::new(),
                tags: Vec::new(),
            });
            s
        };
        let ip = eni::lowest_free_v6_in(&s, &block, &BTreeSet::new()).unwrap();
        assert_eq!(
            u128::from(ip) - u128::from(block.network()),
            1u128 << 48,
            "{ip}"
        );
    }
}
