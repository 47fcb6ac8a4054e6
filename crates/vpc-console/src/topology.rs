//! The topology view: regions ⊃ VPCs ⊃ subnets ⊃ instances as nested boxes
//! and peering connections as VPC-to-VPC edges styled by state, drawn on the
//! server as SVG (no script, no graph library). Readable at a few hundred
//! VPCs: boxes collapse to one line per VPC past [`COLLAPSE_OVER`] (or on
//! request), and the view filters by VPC (with its peers) or by tag.
//! Each edge links to its peering connection's page, which shows the routes
//! on both sides.

use crate::session::Viewer;
use crate::view::name_of;
use crate::{Console, PageReq};
use axum::response::Response;
use maud::{html, Markup};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use vpc_model::ops::peering as pcx;
use vpc_model::{Instance, InstanceState, PcxState, Peering, Subnet, Vpc, World};

/// Past this many VPCs in view, VPC boxes are collapsed (no subnets).
pub const COLLAPSE_OVER: usize = 40;

const VPC_W: i64 = 300;
const VPC_W_COLLAPSED: i64 = 220;
const GAP: i64 = 24;
const REGION_PAD: i64 = 16;
const REGION_HEAD: i64 = 28;
const SUBNET_HEAD: i64 = 20;
const CHIP_H: i64 = 18;
const CHIPS_PER_ROW: usize = 2;
const MAX_CHIPS: usize = 8;

/// How an edge is drawn for a connection state.
pub fn edge_class(s: PcxState) -> &'static str {
    match s {
        PcxState::Active => "edge active",
        PcxState::InitiatingRequest | PcxState::PendingAcceptance | PcxState::Provisioning => {
            "edge pending"
        }
        PcxState::Failed | PcxState::Rejected | PcxState::Expired => "edge failed",
        PcxState::Deleting | PcxState::Deleted => "edge deleted",
    }
}

/// One VPC box: the viewer's own (with its subnets) or a peer's stub.
struct VpcBox<'w> {
    id: String,
    label: String,
    cidr: String,
    own: Option<&'w Vpc>,
    owner: String,
    subnets: Vec<(&'w Subnet, Vec<&'w Instance>)>,
    x: i64,
    y: i64,
    w: i64,
    h: i64,
}

impl VpcBox<'_> {
    fn center(&self) -> (i64, i64) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }
}

fn tag_matches(v: &Vpc, tag: &str) -> bool {
    let (k, val) = tag.split_once('=').unwrap_or((tag, ""));
    v.meta
        .tags
        .iter()
        .any(|t| t.key == k && (val.is_empty() || t.value == val))
}

/// The picture and the connections it shows.
pub fn draw(
    w: &World,
    v: &Viewer,
    regions: &[String],
    q: &PageReq,
    now: vpc_model::Timestamp,
) -> (Markup, usize, Vec<Peering>) {
    let vpc_filter: Vec<&str> = q
        .q("vpc")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let tag = q.q("tag").trim();
    // Every connection the viewer sees, from any of its regions.
    let mut peerings: BTreeMap<String, &Peering> = BTreeMap::new();
    for r in regions {
        for (p, _) in pcx::listed(w, &v.account, r, now) {
            peerings.insert(p.id.clone(), p);
        }
    }
    let own: Vec<&Vpc> = w
        .iter::<Vpc>()
        .filter(|x| x.meta.owner == v.account)
        .collect();
    let selected: BTreeSet<&str> = own
        .iter()
        .filter(|x| vpc_filter.is_empty() || vpc_filter.iter().any(|f| x.meta.id.contains(f)))
        .filter(|x| tag.is_empty() || tag_matches(x, tag))
        .map(|x| x.meta.id.as_str())
        .collect();
    // The selected VPCs' peers come along.
    let mut shown: BTreeSet<String> = selected.iter().map(|s| s.to_string()).collect();
    let edges: Vec<&Peering> = peerings
        .values()
        .filter(|p| {
            selected.contains(p.requester.vpc_id.as_str())
                || selected.contains(p.accepter.vpc_id.as_str())
        })
        .copied()
        .collect();
    for p in &edges {
        shown.insert(p.requester.vpc_id.clone());
        shown.insert(p.accepter.vpc_id.clone());
    }
    let collapse =
        q.q("collapse") == "1" || (q.q("collapse") != "0" && shown.len() > COLLAPSE_OVER);

    // Subnets and instances by VPC, for the viewer's own VPCs.
    let mut subnets_of: HashMap<&str, Vec<&Subnet>> = HashMap::new();
    let mut instances_of: HashMap<&str, Vec<&Instance>> = HashMap::new();
    if !collapse {
        for s in w
            .iter::<Subnet>()
            .filter(|s| s.meta.owner == v.account && shown.contains(&s.vpc_id))
        {
            subnets_of.entry(s.vpc_id.as_str()).or_default().push(s);
        }
        for i in w.iter::<Instance>().filter(|i| {
            i.meta.owner == v.account
                && i.state != InstanceState::Terminated
                && shown.contains(&i.vpc_id)
        }) {
            instances_of
                .entry(i.subnet_id.as_str())
                .or_default()
                .push(i);
        }
    }

    // Boxes grouped by (account label, region).
    let mut groups: BTreeMap<(bool, String, String), Vec<VpcBox<'_>>> = BTreeMap::new();
    let own_by_id: HashMap<&str, &Vpc> = own.iter().map(|x| (x.meta.id.as_str(), *x)).collect();
    for id in &shown {
        let b = if let Some(x) = own_by_id.get(id.as_str()) {
            let subnets = subnets_of
                .remove(id.as_str())
                .unwrap_or_default()
                .into_iter()
                .map(|s| {
                    (
                        s,
                        instances_of.remove(s.meta.id.as_str()).unwrap_or_default(),
                    )
                })
                .collect();
            VpcBox {
                id: id.clone(),
                label: name_of(&x.meta.tags).unwrap_or("").to_string(),
                cidr: x
                    .cidrs
                    .first()
                    .map(|c| c.cidr.to_string())
                    .unwrap_or_default(),
                own: Some(x),
                owner: x.meta.owner.clone(),
                subnets,
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            }
        } else {
            // A peer's VPC: what the connection record shows of it.
            let Some(side) = peerings.values().find_map(|p| {
                if p.requester.vpc_id == *id {
                    Some(&p.requester)
                } else if p.accepter.vpc_id == *id {
                    Some(&p.accepter)
                } else {
                    None
                }
            }) else {
                continue;
            };
            VpcBox {
                id: id.clone(),
                label: String::new(),
                cidr: side
                    .cidrs
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                own: None,
                owner: side.owner.clone(),
                subnets: Vec::new(),
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            }
        };
        let region = match b.own {
            Some(x) => x.meta.region.clone(),
            None => peerings
                .values()
                .find_map(|p| {
                    [&p.requester, &p.accepter]
                        .into_iter()
                        .find(|s| s.vpc_id == b.id)
                        .map(|s| s.region.clone())
                })
                .unwrap_or_default(),
        };
        groups
            .entry((b.own.is_none(), b.owner.clone(), region))
            .or_default()
            .push(b);
    }

    // Peered VPCs sit next to each other: boxes are ordered by a walk of the
    // peering graph (VPC ID order between components), so most edges are short.
    let order = peering_order(&shown, &edges);
    for boxes in groups.values_mut() {
        boxes.sort_by_key(|b| order.get(b.id.as_str()).copied().unwrap_or(usize::MAX));
    }

    // Layout: groups stacked, VPCs in a grid inside each.
    let cols: usize = if collapse { 6 } else { 4 };
    let mut y = GAP;
    let mut width = 0;
    let mut frames: Vec<(String, i64, i64, i64, i64, bool)> = Vec::new();
    for ((foreign, owner, region), boxes) in &mut groups {
        let top = y;
        y += REGION_HEAD + REGION_PAD;
        let mut row_h = 0;
        let mut x = GAP + REGION_PAD;
        for (i, b) in boxes.iter_mut().enumerate() {
            if i > 0 && i % cols == 0 {
                y += row_h + GAP;
                row_h = 0;
                x = GAP + REGION_PAD;
            }
            b.w = if collapse || *foreign {
                VPC_W_COLLAPSED
            } else {
                VPC_W
            };
            b.h = if collapse || *foreign {
                56
            } else {
                48 + b
                    .subnets
                    .iter()
                    .map(|(_, is)| subnet_height(is.len()) + 8)
                    .sum::<i64>()
            };
            b.x = x;
            b.y = y;
            x += b.w + GAP;
            row_h = row_h.max(b.h);
            width = width.max(x + REGION_PAD);
        }
        y += row_h + REGION_PAD;
        let title = if *foreign {
            format!("Account {owner} · {region}")
        } else {
            format!("{region} (account {owner})")
        };
        frames.push((title, GAP, top, 0, y - top, *foreign));
        y += GAP;
    }
    let width = width.max(600);
    let height = y.max(200);
    let centers: HashMap<&str, Frame> = groups
        .values()
        .flatten()
        .map(|b| (b.id.as_str(), (b.center(), (b.w / 2, b.h / 2))))
        .collect();
    let svg = html! {
        svg xmlns="http://www.w3.org/2000/svg" id="topology" class="topology" width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } role="img" aria-label="Topology" {
            @for (title, x, y, _, h, foreign) in &frames {
                g class=(if *foreign { "region foreign" } else { "region" }) {
                    rect x=(x) y=(y) width=(width - 2 * GAP) height=(h) rx="8" {}
                    text.region-title x=(x + 10) y=(y + 20) { (title) }
                }
            }
            @for b in groups.values().flatten() { (vpc_box(b, collapse)) }
            @for p in &edges {
                @if let (Some(a), Some(z)) = (centers.get(p.requester.vpc_id.as_str()), centers.get(p.accepter.vpc_id.as_str())) {
                    (edge(p, *a, *z))
                }
            }
        }
    };
    let count = groups.values().map(Vec::len).sum();
    (svg, count, edges.into_iter().cloned().collect())
}

fn subnet_height(instances: usize) -> i64 {
    let shown = instances.min(MAX_CHIPS + 1);
    let rows = shown.div_ceil(CHIPS_PER_ROW) as i64;
    SUBNET_HEAD + rows * (CHIP_H + 4) + 6
}

/// A position for every VPC: breadth-first over the peering graph, starting
/// from each not yet placed VPC in ID order.
fn peering_order<'a>(vpcs: &'a BTreeSet<String>, edges: &'a [&Peering]) -> HashMap<&'a str, usize> {
    let mut next: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in edges {
        next.entry(&p.requester.vpc_id)
            .or_default()
            .push(&p.accepter.vpc_id);
        next.entry(&p.accepter.vpc_id)
            .or_default()
            .push(&p.requester.vpc_id);
    }
    let mut order: HashMap<&str, usize> = HashMap::new();
    for start in vpcs {
        if order.contains_key(start.as_str()) {
            continue;
        }
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        order.insert(start, order.len());
        while let Some(v) = queue.pop_front() {
            for &n in next.get(v).into_iter().flatten() {
                if !order.contains_key(n) {
                    order.insert(n, order.len());
                    queue.push_back(n);
                }
            }
        }
    }
    order
}

/// Each subnet of a box with its top and height.
fn subnet_slots<'a, 'w>(b: &'a VpcBox<'w>) -> Vec<(&'w Subnet, &'a [&'w Instance], i64, i64)> {
    let mut y = b.y + 44;
    b.subnets
        .iter()
        .map(|(s, is)| {
            let h = subnet_height(is.len());
            let top = y;
            y += h + 8;
            (*s, is.as_slice(), top, h)
        })
        .collect()
}

fn vpc_box(b: &VpcBox<'_>, collapse: bool) -> Markup {
    let subnets: usize = b.subnets.len();
    let instances: usize = b.subnets.iter().map(|(_, i)| i.len()).sum();
    html! {
        g class=(if b.own.is_some() { "vpc" } else { "vpc foreign" }) data-vpc=(b.id) {
            a href=(if b.own.is_some() { format!("/console/vpcs/{}", b.id) } else { format!("/console/topology?vpc={}", b.id) }) {
                title { (b.id) " " (b.label) " " (b.cidr) }
                rect x=(b.x) y=(b.y) width=(b.w) height=(b.h) rx="6" {}
                text.vpc-title x=(b.x + 8) y=(b.y + 18) { (b.id) @if !b.label.is_empty() { " · " (b.label) } }
                text.vpc-sub x=(b.x + 8) y=(b.y + 34) {
                    (b.cidr)
                    @if b.own.is_none() { " · account " (b.owner) }
                    @else if collapse { " · VPC" }
                }
            }
            @if !collapse {
                @for (s, is, sy, h) in subnet_slots(b) {
                    g.subnet {
                        a href={ "/console/subnets/" (s.meta.id) } {
                            title { (s.meta.id) " " (crate::view::subnet_block(s)) }
                            rect x=(b.x + 8) y=(sy) width=(b.w - 16) height=(h) rx="4" {}
                            text.subnet-title x=(b.x + 14) y=(sy + 14) { (s.meta.id) " " (crate::view::subnet_block(s)) " " (s.az) }
                        }
                        @for (k, i) in is.iter().take(MAX_CHIPS).enumerate() {
                            @let cx = b.x + 14 + (k % CHIPS_PER_ROW) as i64 * ((b.w - 28) / CHIPS_PER_ROW as i64);
                            @let cy = sy + SUBNET_HEAD + (k / CHIPS_PER_ROW) as i64 * (CHIP_H + 4);
                            a href={ "/console/instances/" (i.meta.id) } {
                                g class={ "instance s-" (i.state.as_str()) } {
                                    title { (i.meta.id) " " (name_of(&i.meta.tags).unwrap_or("")) " (" (i.state.as_str()) ")" }
                                    rect x=(cx) y=(cy) width=((b.w - 28) / CHIPS_PER_ROW as i64 - 6) height=(CHIP_H) rx="3" {}
                                    text x=(cx + 5) y=(cy + 13) { (i.meta.id) }
                                }
                            }
                        }
                        @if is.len() > MAX_CHIPS {
                            text.more x=(b.x + 14) y=(sy + h - 6) { "+" (is.len() - MAX_CHIPS) " more" }
                        }
                    }
                }
            } @else if b.own.is_some() {
                text.vpc-sub x=(b.x + 8) y=(b.y + 50) { (subnets) " subnets · " (instances) " instances" }
            }
        }
    }
}

/// A box as (center, half width and half height).
type Frame = ((i64, i64), (i64, i64));

/// Where the line from a box's center towards `to` leaves the box.
fn border_point(((x, y), (hw, hh)): Frame, (tx, ty): (i64, i64)) -> (f64, f64) {
    let (dx, dy) = ((tx - x) as f64, (ty - y) as f64);
    if dx == 0.0 && dy == 0.0 {
        return (x as f64, y as f64);
    }
    let sx = if dx == 0.0 {
        f64::INFINITY
    } else {
        hw as f64 / dx.abs()
    };
    let sy = if dy == 0.0 {
        f64::INFINITY
    } else {
        hh as f64 / dy.abs()
    };
    let t = sx.min(sy).min(1.0);
    (x as f64 + dx * t, y as f64 + dy * t)
}

fn edge(p: &Peering, a: Frame, z: Frame) -> Markup {
    // From border to border, in a gentle curve, so edges between boxes in one
    // row do not run along the row.
    let (x1, y1) = border_point(a, z.0);
    let (x2, y2) = border_point(z, a.0);
    let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let (dx, dy) = (x2 - x1, y2 - y1);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let bend = (len / 6.0).min(80.0);
    let cx = mx - dy / len * bend;
    let cy = my + dx / len * bend;
    let d = format!("M {x1:.0} {y1:.0} Q {cx:.0} {cy:.0} {x2:.0} {y2:.0}");
    html! {
        a href={ "/console/peering/" (p.id) } class="edge-link" data-pcx=(p.id) {
            title { (p.id) " " (p.requester.vpc_id) " ↔ " (p.accepter.vpc_id) " (" (p.state.as_str()) ")" }
            path class={ (edge_class(p.state)) } d=(d) {}
        }
    }
}

pub fn page(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let regions: Vec<String> = c.regions().list.iter().map(|r| r.name.clone()).collect();
    let body = c.read(v, |w, ctx| {
        let (svg, count, edges) = draw(w, v, &regions, r, ctx.now);
        html! {
            form.row method="get" action="/console/topology" {
                label { "VPC " input name="vpc" value=(r.q("vpc")) placeholder="vpc-… (comma-separated)"; }
                label { "Tag " input name="tag" value=(r.q("tag")) placeholder="Key or Key=Value"; }
                label { "Boxes " select name="collapse" {
                    option value="" selected[r.q("collapse").is_empty()] { "automatic" }
                    option value="0" selected[r.q("collapse") == "0"] { "VPCs with subnets and instances" }
                    option value="1" selected[r.q("collapse") == "1"] { "VPCs only" }
                } }
                button type="submit" { "Show" }
            }
            p.legend {
                (count) " VPCs, " (edges.len()) " peering connections. "
                span.key.active { "active" } " " span.key.pending { "pending" } " " span.key.failed { "failed / rejected / expired" } " " span.key.deleted { "deleted" }
                " · click a connection to see its routes on both sides."
            }
            div.topology-frame { (svg) }
            h2 { "Connections in view" }
            table id="topology-edges" {
                thead { tr { th { "Peering connection" } th { "Status" } th { "Requester VPC" } th { "Accepter VPC" } } }
                tbody { @for p in &edges {
                    tr { td { a href={ "/console/peering/" (p.id) } { (p.id) } } td { (crate::view::badge(p.state.as_str())) } td { (p.requester.vpc_id) " (" (p.requester.region) ")" } td { (p.accepter.vpc_id) " (" (p.accepter.region) ")" } }
                } }
            }
        }
    });
    c.render(v, "topology", "Topology", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_start_on_the_boxes_borders() {
        let frame = ((100, 100), (50, 20));
        assert_eq!(border_point(frame, (300, 100)), (150.0, 100.0));
        assert_eq!(border_point(frame, (100, 0)), (100.0, 80.0));
        assert_eq!(border_point(frame, (100, 100)), (100.0, 100.0));
        // Towards a corner-ish target, the nearer side wins.
        let (x, y) = border_point(frame, (200, 200));
        assert!((x - 120.0).abs() < 1e-9 && (y - 120.0).abs() < 1e-9);
    }

    #[test]
    fn edges_are_styled_by_state() {
        assert_eq!(edge_class(PcxState::Active), "edge active");
        for s in [
            PcxState::InitiatingRequest,
            PcxState::PendingAcceptance,
            PcxState::Provisioning,
        ] {
            assert_eq!(edge_class(s), "edge pending");
        }
        for s in [PcxState::Failed, PcxState::Rejected, PcxState::Expired] {
            assert_eq!(edge_class(s), "edge failed");
        }
    }
}
