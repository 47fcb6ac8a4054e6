//! Internet gateways: create, attach, detach, delete.

use super::{check_limit, new_meta, vpc, IGW};
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;

pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w InternetGateway> {
    w.owned::<InternetGateway>(id, &ctx.account, &ctx.region, IGW.nf(id)?)
}

pub fn create(w: &mut World, ctx: &mut Ctx<'_>, tags: Tags) -> Result<InternetGateway> {
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    let n = w
        .scoped::<InternetGateway>(&ctx.account, &ctx.region)
        .count();
    check_limit(
        n,
        ctx.limits.igws_per_region,
        "InternetGatewayLimitExceeded",
        "internet gateways",
    )?;
    let g = InternetGateway {
        meta: new_meta(ctx, "igw", tags),
        vpc_id: None,
    };
    w.put(g.clone());
    Ok(g)
}

pub fn attach(w: &mut World, ctx: &mut Ctx<'_>, igw_id: &str, vpc_id: &str) -> Result<()> {
    let g = get(w, ctx, igw_id)?.clone();
    vpc::get(w, ctx, vpc_id)?;
    if let Some(v) = &g.vpc_id {
        return Err(Fault::new(
            "Resource.AlreadyAssociated",
            format!("resource {igw_id} is already attached to network {v}"),
        ));
    }
    if w.iter::<InternetGateway>()
        .any(|x| x.vpc_id.as_deref() == Some(vpc_id))
    {
        return Err(Fault::new(
            "Resource.AlreadyAssociated",
            format!("network {vpc_id} already has an internet gateway attached"),
        ));
    }
    w.update::<InternetGateway>(igw_id, |g| g.vpc_id = Some(vpc_id.to_string()));
    Ok(())
}

pub fn detach(w: &mut World, ctx: &mut Ctx<'_>, igw_id: &str, vpc_id: &str) -> Result<()> {
    let g = get(w, ctx, igw_id)?.clone();
    vpc::get(w, ctx, vpc_id)?;
    if g.vpc_id.as_deref() != Some(vpc_id) {
        return Err(Fault::new(
            "Gateway.NotAttached",
            format!("resource {igw_id} is not attached to network {vpc_id}"),
        ));
    }
    w.update::<InternetGateway>(igw_id, |g| g.vpc_id = None);
    Ok(())
}

pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, igw_id: &str) -> Result<()> {
    let g = get(w, ctx, igw_id)?.clone();
    if g.vpc_id.is_some() {
        return Err(Fault::dependency(format!(
            "The internetGateway '{igw_id}' has dependencies and cannot be deleted."
        )));
    }
    w.remove::<InternetGateway>(igw_id);
    Ok(())
}
