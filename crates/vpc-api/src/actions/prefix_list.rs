//! Managed prefix lists: the customer-managed lists' actions, and the
//! AWS-managed service lists through DescribeManagedPrefixLists and the
//! older DescribePrefixLists.

use super::{Handler, Req};
use crate::params::Params;
use crate::query::{self, tag_field};
use crate::xml::Xml;
use vpc_model::ops::prefix_list::{self, CreateSpec, ListView, ModifySpec};
use vpc_model::{Ctx, Fault, ManagedPrefixList, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateManagedPrefixList", Handler::Write(create)),
    ("ModifyManagedPrefixList", Handler::Write(modify)),
    ("DeleteManagedPrefixList", Handler::Write(delete)),
    ("RestoreManagedPrefixListVersion", Handler::Write(restore)),
    ("DescribeManagedPrefixLists", Handler::Read(describe)),
    ("GetManagedPrefixListEntries", Handler::Read(entries)),
    (
        "GetManagedPrefixListAssociations",
        Handler::Read(associations),
    ),
    ("DescribePrefixLists", Handler::Read(describe_service_lists)),
];

fn arn(region: &str, owner: &str, id: &str) -> String {
    let owner = if owner == prefix_list::AWS_OWNER {
        "aws"
    } else {
        owner
    };
    format!("arn:aws:ec2:{region}:{owner}:prefix-list/{id}")
}

fn render_customer(x: &mut Xml, l: &ManagedPrefixList) {
    x.leaf("prefixListId", &l.meta.id)
        .leaf("addressFamily", &l.address_family)
        .leaf("state", &l.state)
        .leaf(
            "prefixListArn",
            &arn(&l.meta.region, &l.meta.owner, &l.meta.id),
        )
        .leaf("prefixListName", &l.name)
        .num("maxEntries", l.max_entries)
        .num("version", l.version);
    x.tags(&l.meta.tags);
    x.leaf("ownerId", &l.meta.owner);
}

fn render_view(x: &mut Xml, region: &str, l: &ListView) {
    match &l.customer {
        Some(c) => render_customer(x, c),
        None => {
            x.leaf("prefixListId", &l.id)
                .leaf("addressFamily", l.address_family)
                .leaf("state", "create-complete")
                .leaf("prefixListArn", &arn(region, &l.owner, &l.id))
                .leaf("prefixListName", &l.name);
            x.empty("tagSet");
            x.leaf("ownerId", &l.owner);
        }
    }
}

fn one_list(r: &Req<'_>, l: &ManagedPrefixList) -> Result<String, Fault> {
    let mut x = r.xml();
    x.open("prefixList");
    render_customer(&mut x, l);
    x.close("prefixList");
    r.done(x)
}

/// `prefix.N.Cidr` / `prefix.N.Description` entries.
fn entry_list(p: &Params, prefix: &str) -> Result<Vec<(String, Option<String>)>, Fault> {
    let mut out = Vec::new();
    for e in p.indexed(prefix)? {
        e.allow_only(&["Cidr", "Description"])?;
        out.push((
            e.req_member("Cidr")?.to_string(),
            e.get("Description").map(str::to_string),
        ));
    }
    Ok(out)
}

fn create(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let spec = CreateSpec {
        name: r.p.string("PrefixListName"),
        address_family: r.p.string("AddressFamily"),
        max_entries: r.p.int("MaxEntries")?,
        entries: entry_list(r.p, "Entry")?,
    };
    let tags = r.p.tag_specs("prefix-list")?;
    let l = prefix_list::create(w, ctx, &spec, tags)?;
    one_list(r, &l)
}

fn modify(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let mut remove = Vec::new();
    for e in r.p.indexed("RemoveEntry")? {
        e.allow_only(&["Cidr"])?;
        remove.push(e.req_member("Cidr")?.to_string());
    }
    let spec = ModifySpec {
        current_version: r.p.int("CurrentVersion")?,
        name: r.p.string("PrefixListName"),
        max_entries: r.p.int("MaxEntries")?,
        add: entry_list(r.p, "AddEntry")?,
        remove,
    };
    let l = prefix_list::modify(w, ctx, r.p.req("PrefixListId")?, &spec)?;
    one_list(r, &l)
}

fn delete(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let l = prefix_list::delete(w, ctx, r.p.req("PrefixListId")?)?;
    one_list(r, &l)
}

fn required_int(p: &Params, k: &str) -> Result<i64, Fault> {
    p.int(k)?.ok_or_else(|| Fault::missing(k))
}

fn restore(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("PrefixListId")?;
    let previous = required_int(r.p, "PreviousVersion")?;
    let current = required_int(r.p, "CurrentVersion")?;
    let l = prefix_list::restore(w, ctx, id, previous, current)?;
    one_list(r, &l)
}

fn list_field(l: &ListView, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    match name {
        "owner-id" => one(&l.owner),
        "prefix-list-id" => one(&l.id),
        "prefix-list-name" => one(&l.name),
        _ => tag_field(
            l.customer.as_ref().map_or(&[][..], |c| &c.meta.tags[..]),
            name,
        ),
    }
}

/// The lists named by `PrefixListId.N` (each must be visible), or every visible one.
fn chosen(w: &World, ctx: &Ctx<'_>, p: &Params) -> Result<Vec<ListView>, Fault> {
    let ids = p.list("PrefixListId")?;
    let mut out = if ids.is_empty() {
        prefix_list::all_visible(w, ctx)
    } else {
        ids.iter()
            .map(|id| prefix_list::visible(w, ctx, id))
            .collect::<Result<Vec<_>, _>>()?
    };
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

fn describe(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let items = query::apply(
        chosen(w, ctx, r.p)?,
        &r.p.filters()?,
        &|l: &ListView, n: &str| list_field(l, n),
        &["owner-id", "prefix-list-id", "prefix-list-name"],
    )?;
    let (page, next) = query::paginate(items, r.p, |l| l.id.clone(), 1, 100)?;
    let mut x = r.xml();
    x.set("prefixListSet", page, |x, l| {
        render_view(x, &ctx.region, &l)
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn describe_service_lists(_w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("PrefixListId")?;
    let all = prefix_list::aws_managed(&ctx.region);
    let mut items = Vec::new();
    for id in &ids {
        prefix_list::PL.check(id)?;
        match all.iter().find(|l| &l.id == id) {
            Some(l) => items.push(l.clone()),
            None => return Err(prefix_list::not_found(id)),
        }
    }
    if ids.is_empty() {
        items = all;
    }
    items.sort_by(|a, b| a.id.cmp(&b.id));
    items.dedup_by(|a, b| a.id == b.id);
    let items = query::apply(
        items,
        &r.p.filters()?,
        &|l: &ListView, n: &str| match n {
            "prefix-list-id" => Some(vec![l.id.clone()]),
            "prefix-list-name" => Some(vec![l.name.clone()]),
            _ => None,
        },
        &["prefix-list-id", "prefix-list-name"],
    )?;
    let (page, next) = query::paginate(items, r.p, |l| l.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("prefixListSet", page, |x, l| {
        x.leaf("prefixListId", &l.id)
            .leaf("prefixListName", &l.name);
        x.set("cidrSet", &l.cidrs, |x, c| {
            crate::xml::escape_into(&mut x.out, &c.to_string());
        });
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn entries(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("PrefixListId")?;
    let l = prefix_list::visible(w, ctx, id)?;
    let version = r.p.int("TargetVersion")?;
    let rows: Vec<(String, Option<String>)> = match &l.customer {
        Some(c) => prefix_list::entries_at(c, version)?
            .into_iter()
            .map(|e| (e.cidr.to_string(), e.description))
            .collect(),
        None => l.cidrs.iter().map(|c| (c.to_string(), None)).collect(),
    };
    let mut rows = rows;
    rows.sort();
    let (page, next) = query::paginate(rows, r.p, |e| e.0.clone(), 1, 100)?;
    let mut x = r.xml();
    x.set("entrySet", page, |x, (cidr, d)| {
        x.leaf("cidr", &cidr).opt("description", d.as_deref());
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn associations(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("PrefixListId")?;
    prefix_list::get(w, ctx, id)?;
    let rows = prefix_list::associations(w, id);
    let (page, next) = query::paginate(rows, r.p, |a| a.0.clone(), 5, 255)?;
    let mut x = r.xml();
    x.set("prefixListAssociationSet", page, |x, (res, owner)| {
        x.leaf("resourceId", &res).leaf("resourceOwner", &owner);
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}
