//! DHCP options sets: CreateDhcpOptions, DescribeDhcpOptions,
//! DeleteDhcpOptions, AssociateDhcpOptions.

use super::{Handler, Req};
use crate::query::{self, tag_field};
use crate::xml::Xml;
use vpc_model::ops::dhcp;
use vpc_model::{Ctx, DhcpOption, DhcpOptions, Fault, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateDhcpOptions", Handler::Write(create_dhcp_options)),
    ("DescribeDhcpOptions", Handler::Read(describe_dhcp_options)),
    ("DeleteDhcpOptions", Handler::Write(delete_dhcp_options)),
    (
        "AssociateDhcpOptions",
        Handler::Write(associate_dhcp_options),
    ),
];

pub fn render_dhcp_options(x: &mut Xml, d: &DhcpOptions) {
    x.leaf("dhcpOptionsId", &d.meta.id)
        .leaf("ownerId", &d.meta.owner);
    x.set("dhcpConfigurationSet", &d.options, |x, o| {
        x.leaf("key", &o.key);
        x.set("valueSet", &o.values, |x, v| {
            x.leaf("value", v);
        });
    });
    x.tags(&d.meta.tags);
}

/// `DhcpConfiguration.N.Key` and `DhcpConfiguration.N.Value.M`. An empty
/// value list may come as a bare `DhcpConfiguration.N.Value=` (botocore's
/// form of an empty list).
fn parse_configuration(r: &Req<'_>) -> Result<Vec<DhcpOption>, Fault> {
    r.p.indexed("DhcpConfiguration")?
        .into_iter()
        .map(|entry| {
            entry.allow_only(&["Key", "Value", "Value."])?;
            let key = entry.req_member("Key")?.to_string();
            let values = match entry.get("Value") {
                Some("") => Vec::new(),
                Some(_) => return Err(Fault::invalid_param(
                    "Value for parameter DhcpConfiguration.N.Value must be a list (Value.1, Value.2, …)",
                )),
                None => entry.list("Value")?,
            };
            Ok(DhcpOption { key, values })
        })
        .collect()
}

fn create_dhcp_options(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let options = parse_configuration(r)?;
    let d = dhcp::create(w, ctx, options, r.p.tag_specs("dhcp-options")?)?;
    let mut x = r.xml();
    x.open("dhcpOptions");
    render_dhcp_options(&mut x, &d);
    x.close("dhcpOptions");
    r.done(x)
}

fn delete_dhcp_options(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    dhcp::delete(w, ctx, r.p.req("DhcpOptionsId")?)?;
    r.ok()
}

fn associate_dhcp_options(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    dhcp::associate(w, ctx, r.p.req("DhcpOptionsId")?, r.p.req("VpcId")?)?;
    r.ok()
}

fn dhcp_field(d: &&DhcpOptions, name: &str) -> Option<Vec<String>> {
    match name {
        "dhcp-options-id" => Some(vec![d.meta.id.clone()]),
        "owner-id" => Some(vec![d.meta.owner.clone()]),
        "key" => Some(d.options.iter().map(|o| o.key.clone()).collect()),
        "value" => Some(
            d.options
                .iter()
                .flat_map(|o| o.values.iter().cloned())
                .collect(),
        ),
        _ => tag_field(&d.meta.tags, name),
    }
}

const DHCP_FILTERS: &[&str] = &["dhcp-options-id", "owner-id", "key", "value"];

fn describe_dhcp_options(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let mut ids = r.p.list("DhcpOptionsId")?;
    let items: Vec<&DhcpOptions> = if ids.is_empty() {
        w.scoped::<DhcpOptions>(&ctx.account, &ctx.region).collect()
    } else {
        ids.sort();
        ids.dedup();
        ids.iter()
            .map(|id| dhcp::get(w, ctx, id))
            .collect::<Result<_, _>>()?
    };
    let items = query::apply(items, &r.p.filters()?, &dhcp_field, DHCP_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |d| d.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("dhcpOptionsSet", page, render_dhcp_options);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}
