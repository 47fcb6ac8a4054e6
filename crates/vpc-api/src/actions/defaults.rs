//! CreateDefaultVpc and CreateDefaultSubnet.

use super::vpc::{render_subnet, render_vpc};
use super::{Handler, Req};
use vpc_model::ops;
use vpc_model::{Ctx, Fault, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateDefaultVpc", Handler::Write(create_default_vpc)),
    ("CreateDefaultSubnet", Handler::Write(create_default_subnet)),
];

fn create_default_vpc(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let v = ops::defaults::create_default_vpc(w, ctx)?;
    let mut x = r.xml();
    x.open("vpc");
    render_vpc(&mut x, &v);
    x.close("vpc");
    r.done(x)
}

fn create_default_subnet(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let native = r.p.bool("Ipv6Native")?.unwrap_or(false);
    let s = ops::defaults::create_default_subnet(w, ctx, r.p.req("AvailabilityZone")?, native)?;
    let mut x = r.xml();
    x.open("subnet");
    render_subnet(&mut x, w, &s);
    x.close("subnet");
    r.done(x)
}
