//! Egress-only internet gateways: Create, Describe, Delete.

use super::{Handler, Req};
use crate::query::{self, tag_field};
use crate::xml::Xml;
use vpc_model::ops;
use vpc_model::{Ctx, EgressOnlyInternetGateway, Fault, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateEgressOnlyInternetGateway", Handler::Write(create)),
    ("DeleteEgressOnlyInternetGateway", Handler::Write(delete)),
    (
        "DescribeEgressOnlyInternetGateways",
        Handler::Read(describe),
    ),
];

fn render(x: &mut Xml, g: &EgressOnlyInternetGateway) {
    x.leaf("egressOnlyInternetGatewayId", &g.meta.id);
    x.set("attachmentSet", [&g.vpc_id], |x, v| {
        x.leaf("state", "attached").leaf("vpcId", v);
    });
    x.tags(&g.meta.tags);
}

fn create(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let vpc_id = r.p.req("VpcId")?.to_string();
    let tags = r.p.tag_specs("egress-only-internet-gateway")?;
    let g = ops::eigw::create(w, ctx, &vpc_id, tags)?;
    let mut x = r.xml();
    x.opt("clientToken", r.p.get("ClientToken"));
    x.open("egressOnlyInternetGateway");
    render(&mut x, &g);
    x.close("egressOnlyInternetGateway");
    r.done(x)
}

fn delete(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    ops::eigw::delete(w, ctx, r.p.req("EgressOnlyInternetGatewayId")?)?;
    let mut x = r.xml();
    x.bool("returnCode", true);
    r.done(x)
}

fn describe(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("EgressOnlyInternetGatewayId")?;
    let mut items: Vec<&EgressOnlyInternetGateway> = if ids.is_empty() {
        w.scoped::<EgressOnlyInternetGateway>(&ctx.account, &ctx.region)
            .collect()
    } else {
        let mut v = Vec::new();
        for id in &ids {
            v.push(ops::eigw::get(w, ctx, id)?);
        }
        v
    };
    items.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    items.dedup_by(|a, b| a.meta.id == b.meta.id);
    let items = query::apply(
        items,
        &r.p.filters()?,
        &|g: &&EgressOnlyInternetGateway, n: &str| tag_field(&g.meta.tags, n),
        &[],
    )?;
    let (page, next) = query::paginate(items, r.p, |g| g.meta.id.clone(), 5, 255)?;
    let mut x = r.xml();
    x.set("egressOnlyInternetGatewaySet", page, render);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}
