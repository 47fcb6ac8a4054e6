//! Costs: the signed-in account's metered traffic (peering connections,
//! internet and NAT gateways), priced as `vpcd cost` and Cost Explorer price
//! it (`vpc_model::ops::cost::summarize`, the rates the server runs with).
//! Only the account's own usage is read (`App::usage(Some(account), …)`).

use crate::session::Viewer;
use crate::view::link;
use crate::{Console, PageReq};
use axum::response::Response;
use maud::html;
use std::collections::BTreeMap;
use vpc_model::ops::cost::{self, CostRow};
use vpc_model::usage::hour_of;
use vpc_model::{Fault, Timestamp};

const DAY_MS: i64 = 24 * Timestamp::HOUR;

fn resource_link(id: &str) -> maud::Markup {
    if id.starts_with("pcx-") {
        link("peering", id)
    } else {
        html! { (id) }
    }
}

pub fn page(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let days: i64 = r.q("days").parse().unwrap_or(30).clamp(1, 366);
    let now = c.app.now();
    let to = Timestamp(hour_of(now).0 + Timestamp::HOUR);
    let from = Timestamp(hour_of(now).0 - days * DAY_MS);
    let body = c
        .app
        .usage(Some(&v.account), from, to)
        .map_err(|e| {
            tracing::error!(error = %e, "console: cannot read usage");
            Fault::new("InternalFailure", "The usage records could not be read")
        })
        .map(|usage| {
            let rows: Vec<CostRow> = cost::summarize(&usage, from, to, &c.app.config.rates);
            let mut per_resource: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
            for row in &rows {
                let e = per_resource.entry(row.key.resource_id.as_str()).or_default();
                e.0 += row.bytes;
                e.1 += row.charge.cost;
            }
            let total: f64 = rows.iter().map(|r| r.charge.cost).sum();
            html! {
                form.row method="get" action="/console/costs" {
                    label { "Last " input name="days" type="number" min="1" max="366" value=(days); " days" }
                    button type="submit" { "Show" }
                }
                p.muted { "Traffic counted by the data plane (as root) in every region of this account, priced with the server's rates; each side of a peering pays for its own side. See docs/metering.md." }
                @if rows.is_empty() {
                    p id="no-usage" { "No metered traffic in this period." }
                } @else {
                    p { "Total: " strong id="cost-total" { "USD " (cost::format_amount(total)) } }
                    h2 { "Per resource" }
                    table id="cost-per-resource" {
                        thead { tr { th { "Resource" } th { "Bytes" } th { "Cost (USD)" } } }
                        tbody { @for (id, (bytes, usd)) in &per_resource {
                            tr { td { (resource_link(id)) } td { (bytes) } td { (cost::format_amount(*usd)) } }
                        } }
                    }
                    h2 { "Detail" }
                    table id="cost-rows" {
                        thead { tr { th { "Resource" } th { "VPC" } th { "Direction" } th { "From (region, zone)" } th { "To (region, zone)" } th { "Bytes" } th { "Packets" } th { "Usage type" } th { "USD per GB" } th { "Cost (USD)" } } }
                        tbody { @for row in &rows {
                            @let k = &row.key;
                            tr {
                                td { (resource_link(&k.resource_id)) }
                                td { (k.vpc_id) }
                                td { (k.kind.name()) }
                                td { (k.region) " " (k.az) }
                                td { (k.peer_region) " " (k.peer_az) }
                                td { (row.bytes) }
                                td { (row.packets) }
                                td { (row.charge.usage_type.as_deref().unwrap_or("(free: same zone)")) }
                                td { (row.charge.rate) }
                                td { (cost::format_amount(row.charge.cost)) }
                            }
                        } }
                    }
                }
            }
        });
    c.render(v, "costs", "Costs", body)
}
