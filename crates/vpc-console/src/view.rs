//! The page shell and the small pieces every page uses. Markup is written
//! with maud, which escapes every interpolated string: user text (tags,
//! names, descriptions) can only ever render as text.

use crate::session::Viewer;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use vpc_model::region::Regions;
use vpc_model::Tag;

/// The console's stylesheet (served at `/console/static/console.css`).
pub const CSS: &str = include_str!("../assets/console.css");

/// The navigation: (path under /console, label).
const NAV: &[(&str, &str)] = &[
    ("vpcs", "VPCs"),
    ("subnets", "Subnets"),
    ("route-tables", "Route tables"),
    ("gateways", "Internet & NAT gateways"),
    ("security-groups", "Security groups"),
    ("network-acls", "Network ACLs"),
    ("instances", "Instances"),
    ("peering", "Peering connections"),
    ("topology", "Topology"),
    ("reach", "Reachability"),
    ("costs", "Costs"),
    ("flow-logs", "Flow logs"),
];

/// Headers every console answer carries: no scripts, no framing, no caching.
pub fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// An HTML answer.
pub fn html_response(status: StatusCode, m: Markup) -> Response {
    let mut r = (status, m.into_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(r)
}

/// A bare document (the sign-in page, errors before sign-in).
pub fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · vpcd console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body { (body) }
        }
    }
}

/// A signed-in page: header with account, region switcher and sign-out; navigation; flash; body.
pub fn page(v: &Viewer, regions: &Regions, active: &str, title: &str, body: Markup) -> Markup {
    page_with_head(v, regions, active, title, None, body)
}

/// [`page`] that reloads itself every `refresh` seconds (the matrix's live view).
pub fn page_with_head(
    v: &Viewer,
    regions: &Regions,
    active: &str,
    title: &str,
    refresh: Option<u32>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                title { (title) " · vpcd console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                header.top {
                    a.brand href="/console/" { "vpcd console" }
                    span.who { "Account " strong id="account" { (v.account) } }
                    form.region method="post" action="/console/region" {
                        (csrf(v))
                        label { "Region "
                            select name="region" id="region-select" {
                                @for r in &regions.list {
                                    option value=(r.name) selected[r.name == v.region] { (r.name) }
                                }
                            }
                        }
                        button type="submit" { "Switch" }
                    }
                    form.signout method="post" action="/console/signout" {
                        (csrf(v))
                        button type="submit" { "Sign out" }
                    }
                }
                div.layout {
                    nav.side {
                        ul { @for (path, label) in NAV {
                            li { a href={ "/console/" (path) } class=[(*path == active).then_some("active")] { (label) } }
                        } }
                    }
                    main {
                        @if let Some(f) = &v.flash {
                            div class={ "flash " (if f.ok { "ok" } else { "error" }) } role="status" id="flash" {
                                (f.text)
                                @if let Some((href, label)) = &f.link { " " a href=(href) { (label) } }
                            }
                        }
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    }
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

/// The start of a form that runs one EC2 action through `/console/do`.
/// `next` is where to go on success (`{id}` is replaced by the new resource's ID,
/// read from the response element named `id_tag`).
pub fn action_form(
    v: &Viewer,
    action: &str,
    next: &str,
    id_tag: Option<&str>,
    class: &str,
    fields: Markup,
) -> Markup {
    html! {
        form method="post" action="/console/do" class=(class) data-action=(action) {
            (csrf(v))
            input type="hidden" name="Action" value=(action);
            input type="hidden" name="next" value=(next);
            @if let Some(t) = id_tag { input type="hidden" name="IdTag" value=(t); }
            (fields)
        }
    }
}

/// A one-button form running an action on one resource (delete, accept, …).
pub fn button_form(
    v: &Viewer,
    action: &str,
    params: &[(&str, &str)],
    next: &str,
    label: &str,
    danger: bool,
) -> Markup {
    action_form(
        v,
        action,
        next,
        None,
        "inline",
        html! {
            @for (k, val) in params { input type="hidden" name=(k) value=(val); }
            button type="submit" class=[danger.then_some("danger")] { (label) }
        },
    )
}

/// The `Name` tag, if any.
pub fn name_of(tags: &[Tag]) -> Option<&str> {
    tags.iter()
        .find(|t| t.key == "Name")
        .map(|t| t.value.as_str())
}

/// The name cell: the `Name` tag or a dash.
/// A subnet's address block as a list shows it: its IPv4 CIDR, or for an
/// IPv6-only subnet its IPv6 block marked as such.
pub fn subnet_block(s: &vpc_model::Subnet) -> String {
    match (s.cidr, s.ipv6.first()) {
        (Some(c), _) => c.to_string(),
        (None, Some(a)) => format!("{} (IPv6-only)", a.cidr),
        (None, None) => "IPv6-only".to_string(),
    }
}

pub fn name_cell(tags: &[Tag]) -> Markup {
    html! { @match name_of(tags) { Some(n) => span.name { (n) }, None => span.muted { "–" } } }
}

/// A link to a resource's page.
pub fn link(kind: &str, id: &str) -> Markup {
    html! { a href={ "/console/" (kind) "/" (id) } { (id) } }
}

/// Tags as a table with a remove button each, and an add form (CreateTags/DeleteTags).
pub fn tag_editor(v: &Viewer, resource_id: &str, tags: &[Tag], next: &str) -> Markup {
    html! {
        section.tags {
            h2 { "Tags" }
            @if tags.is_empty() { p.muted { "No tags." } } @else {
                table.tags {
                    thead { tr { th { "Key" } th { "Value" } th {} } }
                    tbody { @for t in tags {
                        tr {
                            td.tag-key { (t.key) }
                            td.tag-value { (t.value) }
                            td { (button_form(v, "DeleteTags", &[("ResourceId.1", resource_id), ("Tag.1.Key", &t.key), ("Tag.1.Value", &t.value)], next, "Remove", true)) }
                        }
                    } }
                }
            }
            (action_form(v, "CreateTags", next, None, "row", html! {
                input type="hidden" name="ResourceId.1" value=(resource_id);
                label { "Key " input name="Tag.1.Key" required; }
                label { "Value " input name="Tag.1.Value"; }
                button type="submit" { "Add tag" }
            }))
        }
    }
}

/// A status badge (`active`, `pending-acceptance`, `blackhole`, …).
pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge s-" (state) } { (state) } }
}

/// Rows per page of a list (as AWS's console pages its tables).
pub const PAGE_SIZE: usize = 100;

/// One page of a list (`?page=N`, from 1) and the pager under it, which
/// keeps the list's other query parameters (filters).
pub fn paged<T>(items: Vec<T>, r: &crate::PageReq, path: &str) -> (Vec<T>, Markup) {
    let total = items.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = r.q("page").parse::<usize>().unwrap_or(1).clamp(1, pages);
    let first = (page - 1) * PAGE_SIZE;
    let rows: Vec<T> = items.into_iter().skip(first).take(PAGE_SIZE).collect();
    let href = |n: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &r.q {
            if k != "page" {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &n.to_string());
        format!("{path}?{}", q.finish())
    };
    let nav = html! {
        p.pager {
            @if total == 0 { "0 items" } @else { (first + 1) "–" (first + rows.len()) " of " (total) }
            @if page > 1 { " " a.prev href=(href(page - 1)) { "‹ previous" } }
            @if page < pages { " " a.next href=(href(page + 1)) { "next ›" } }
        }
    };
    (rows, nav)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_paged_and_the_pager_keeps_the_filters() {
        let mut r = crate::PageReq::default();
        r.q.insert("vpc".into(), "vpc-1".into());
        r.q.insert("page".into(), "2".into());
        let (rows, nav) = paged((0..250).collect::<Vec<_>>(), &r, "/console/subnets");
        assert_eq!(rows, (100..200).collect::<Vec<_>>());
        let nav = nav.into_string();
        assert!(nav.contains("101–200 of 250"));
        assert!(nav.contains("/console/subnets?vpc=vpc-1&amp;page=3"));
        assert!(nav.contains("/console/subnets?vpc=vpc-1&amp;page=1"));
        r.q.insert("page".into(), "99".into());
        assert_eq!(paged((0..250).collect::<Vec<_>>(), &r, "/x").0.len(), 50);
    }
}
