//! Subnet CIDR reservations: Create, Get, Delete.

use super::{Handler, Req};
use crate::query::{self, tag_field};
use crate::xml::Xml;
use vpc_model::ops::subnet_cidr_reservation::{self as scr, CreateReservation};
use vpc_model::{Ctx, Fault, Subnet, SubnetCidrReservation, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateSubnetCidrReservation", Handler::Write(create)),
    ("GetSubnetCidrReservations", Handler::Read(get)),
    ("DeleteSubnetCidrReservation", Handler::Write(delete)),
];

fn render(x: &mut Xml, s: &Subnet, r: &SubnetCidrReservation) {
    x.leaf("subnetCidrReservationId", &r.id)
        .leaf("subnetId", &s.meta.id)
        .leaf("cidr", &r.cidr.to_string())
        .leaf("reservationType", &r.reservation_type)
        .leaf("ownerId", &s.meta.owner);
    if !r.description.is_empty() {
        x.leaf("description", &r.description);
    }
    x.tags(&r.tags);
}

fn create(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let (s, res) = scr::create(
        w,
        ctx,
        CreateReservation {
            subnet_id: p.req("SubnetId")?.to_string(),
            cidr: p.string("Cidr"),
            reservation_type: p.string("ReservationType"),
            description: p.string("Description"),
            tags: p.tag_specs("subnet-cidr-reservation")?,
        },
    )?;
    let mut x = r.xml();
    x.open("subnetCidrReservation");
    render(&mut x, &s, &res);
    x.close("subnetCidrReservation");
    r.done(x)
}

fn delete(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let (s, res) = scr::delete(w, ctx, r.p.req("SubnetCidrReservationId")?)?;
    let mut x = r.xml();
    x.open("deletedSubnetCidrReservation");
    render(&mut x, &s, &res);
    x.close("deletedSubnetCidrReservation");
    r.done(x)
}

fn field(s: &Subnet, res: &&SubnetCidrReservation, name: &str) -> Option<Vec<String>> {
    let one = |v: &str| Some(vec![v.to_string()]);
    match name {
        "reservationType" => one(&res.reservation_type),
        "subnet-id" => one(&s.meta.id),
        "owner-id" => one(&s.meta.owner),
        _ => tag_field(&res.tags, name),
    }
}

fn get(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let s = vpc_model::ops::subnet::get(w, ctx, r.p.req("SubnetId")?)?;
    let mut items: Vec<&SubnetCidrReservation> = s.cidr_reservations.iter().collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    let items = query::apply(
        items,
        &r.p.filters()?,
        &|res: &&SubnetCidrReservation, n: &str| field(s, res, n),
        &["reservationType", "subnet-id", "owner-id"],
    )?;
    let (page, next) = query::paginate(items, r.p, |res| res.id.clone(), 5, 1000)?;
    let (v4, v6): (Vec<_>, Vec<_>) = page.into_iter().partition(|res| res.cidr.addr().is_ipv4());
    let mut x = r.xml();
    x.set("subnetIpv4CidrReservationSet", v4, |x, res| {
        render(x, s, res)
    });
    x.set("subnetIpv6CidrReservationSet", v6, |x, res| {
        render(x, s, res)
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}
