//! VPC peering: the state machine, its timers, and who may do what.
//!
//! ```text
//! initiating-request ─┬─> pending-acceptance ─┬─> provisioning ─> active ─> (deleting ─>) deleted
//!                     └─> failed              ├─> rejected
//!                                             ├─> expired (7 days)
//!                                             ├─> failed (accepter adds an overlapping CIDR)
//!                                             └─> (deleting ─>) deleted
//! ```
//!
//! Timed transitions are applied by [`tick`], which the server runs before
//! each request and whenever [`next_deadline`] passes, on the simulated clock.
//! The actions assume the world has been ticked up to `ctx.now`.
//!
//! Who may act (AWS §3.1 and §7):
//!
//! * accept and reject: the accepter VPC's owner, in the accepter's region,
//!   while `pending-acceptance`;
//! * delete: the requester while `pending-acceptance` (the accepter must
//!   reject instead), either owner in its own region while `active`; nobody in
//!   `initiating-request`, `provisioning`, `deleting` or an ended state;
//! * modify options: each owner its own side, in its own region, while `active`.

use super::{vpc, PCX};
use crate::cidr;
use crate::ctx::Timestamp;
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use ipnet::IpNet;

pub const FAILED_MESSAGE: &str =
    "Failed due to incorrect VPC-ID, Account ID, or overlapping CIDR range";

#[derive(Debug, Clone, Default)]
pub struct CreatePeering {
    pub vpc_id: Option<String>,
    pub peer_vpc_id: Option<String>,
    pub peer_owner_id: Option<String>,
    pub peer_region: Option<String>,
    pub tags: Tags,
}

/// How long a connection in an ended state stays visible to `side`.
fn window(p: &Peering, side: Side) -> Option<i64> {
    let h2 = 2 * Timestamp::HOUR;
    let d2 = 2 * Timestamp::DAY;
    let same = p.same_account();
    Some(match p.state {
        PcxState::Failed => h2,
        PcxState::Expired => d2,
        PcxState::Rejected => {
            if same || side == Side::Accepter {
                h2
            } else {
                d2
            }
        }
        PcxState::Deleted => {
            let deleter = p.ended_by.as_deref() == Some(p.side(side).owner.as_str());
            if same || deleter {
                h2
            } else {
                d2
            }
        }
        _ => return None,
    })
}

/// Whether `side` still sees the connection at `now` (AWS's visibility windows).
pub fn is_visible(p: &Peering, side: Side, now: Timestamp) -> bool {
    let both_same_view = p.same_account() && !p.inter_region();
    match p.state {
        PcxState::InitiatingRequest => side == Side::Requester || both_same_view,
        PcxState::Failed => {
            (side == Side::Requester || both_same_view)
                && now.0 < p.state_since.0 + window(p, side).unwrap_or(0)
        }
        _ => match window(p, side) {
            Some(w) => now.0 < p.state_since.0 + w,
            None => true,
        },
    }
}

/// The latest moment anyone can still see an ended connection.
fn gone_after(p: &Peering) -> Option<Timestamp> {
    let a = window(p, Side::Requester)?;
    let b = window(p, Side::Accepter)?;
    Some(p.state_since.plus_ms(a.max(b)))
}

/// True when the accepter's CIDRs and options may be shown.
///
/// They appear once the accepter has accepted (the Accept response in
/// `provisioning` already carries them), stay while `active`, and remain on a
/// `deleting`/`deleted` connection only if it had been active. A request that
/// was deleted, rejected, expired or failed before acceptance never shows them.
pub fn shows_accepter_details(p: &Peering) -> bool {
    match p.state {
        PcxState::Provisioning | PcxState::Active => true,
        PcxState::Deleting | PcxState::Deleted => p.was_active,
        _ => false,
    }
}

/// Every connection the account sees in the region, with its side, in ID order.
///
/// This is DescribeVpcPeeringConnections' default set: one record shows up
/// from both (account, region) ends of a cross-account or inter-region
/// connection; a same-account, same-region one has a single (requester) view.
pub fn listed<'w>(
    w: &'w World,
    account: &'w str,
    region: &'w str,
    now: Timestamp,
) -> impl Iterator<Item = (&'w Peering, Side)> + 'w {
    w.iter::<Peering>().filter_map(move |p| {
        let side = p.side_of(account, region)?;
        is_visible(p, side, now).then_some((p, side))
    })
}

/// The caller's side of a connection it can see, or the AWS not-found error.
pub fn visible(w: &World, ctx: &Ctx<'_>, id: &str) -> Result<Side> {
    let nf = PCX.nf(id)?;
    let p = w.get::<Peering>(id).ok_or_else(|| PCX.not_found(id))?;
    match p.side_of(&ctx.account, &ctx.region) {
        Some(side) if is_visible(p, side, ctx.now) => Ok(side),
        _ => Err(nf()),
    }
}

/// The connection if the caller takes part in it in any region and can see it there.
fn party<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w Peering> {
    let nf = PCX.nf(id)?;
    let p = w.get::<Peering>(id).ok_or_else(|| PCX.not_found(id))?;
    let sides = [
        (Side::Requester, &p.requester),
        (Side::Accepter, &p.accepter),
    ];
    let seen = sides
        .iter()
        .any(|(s, side)| side.owner == ctx.account && is_visible(p, *s, ctx.now));
    if seen {
        Ok(p)
    } else {
        Err(nf())
    }
}

fn blocks_overlap(a: &PeerSide, b: &PeerSide) -> bool {
    a.cidrs
        .iter()
        .any(|x| b.cidrs.iter().any(|y| cidr::overlaps_v4(x, y)))
        || a.ipv6_cidrs
            .iter()
            .any(|x| b.ipv6_cidrs.iter().any(|y| cidr::overlaps_v6(x, y)))
}

fn side_for(vpc: &Vpc, owner: &str, region: &str) -> PeerSide {
    PeerSide {
        owner: owner.to_string(),
        vpc_id: vpc.meta.id.clone(),
        region: region.to_string(),
        options: PeeringOptions::default(),
        cidrs: vpc.v4_blocks().collect(),
        ipv6_cidrs: vpc.v6_blocks().collect(),
        tags: Vec::new(),
    }
}

/// True when the side names exactly this VPC: ID, owner and region.
///
/// A request that gives a real VPC ID with the wrong account or region names a
/// VPC that does not exist; it is failing on its own and does not involve the
/// real one (pair uniqueness, CIDR snapshots, VPC deletion).
fn names(s: &PeerSide, vpc_id: &str, owner: &str, region: &str) -> bool {
    s.vpc_id == vpc_id && s.owner == owner && s.region == region
}

/// Which side of `p` is this VPC, if any.
fn side_of_vpc(p: &Peering, v: &Vpc) -> Option<Side> {
    let (id, owner, region) = (&v.meta.id, &v.meta.owner, &v.meta.region);
    if names(&p.requester, id, owner, region) {
        Some(Side::Requester)
    } else if names(&p.accepter, id, owner, region) {
        Some(Side::Accepter)
    } else {
        None
    }
}

fn outstanding(p: &Peering) -> bool {
    matches!(
        p.state,
        PcxState::InitiatingRequest | PcxState::PendingAcceptance
    )
}

fn counts_as_active(p: &Peering) -> bool {
    matches!(p.state, PcxState::Active | PcxState::Provisioning)
}

/// CreateVpcPeeringConnection. `known_region` says whether a region is served.
pub fn create(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    req: CreatePeering,
    known_region: &dyn Fn(&str) -> bool,
) -> Result<Peering> {
    let vpc_id = req
        .vpc_id
        .as_deref()
        .ok_or_else(|| Fault::missing("VpcId"))?;
    let peer_vpc_id = req
        .peer_vpc_id
        .as_deref()
        .ok_or_else(|| Fault::missing("PeerVpcId"))?;
    let vpc = vpc::get(w, ctx, vpc_id)?.clone();
    super::VPC.check(peer_vpc_id)?;
    let peer_owner = req
        .peer_owner_id
        .clone()
        .unwrap_or_else(|| ctx.account.clone());
    if peer_owner.len() != 12 || !peer_owner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fault::invalid_param(format!(
            "Value ({peer_owner}) for parameter peerOwnerId is invalid. The account ID must be a 12-digit number."
        )));
    }
    let peer_region = req
        .peer_region
        .clone()
        .unwrap_or_else(|| ctx.region.clone());
    if !known_region(&peer_region) {
        return Err(Fault::invalid_param(format!(
            "Value ({peer_region}) for parameter peerRegion is invalid. The region is not supported."
        )));
    }
    if peer_vpc_id == vpc_id {
        return Err(Fault::invalid_param(format!(
            "Value ({peer_vpc_id}) for parameter peerVpcId is invalid. A VPC cannot be peered with itself."
        )));
    }
    super::tags::validate(&req.tags, ctx.limits.tags_per_resource)?;

    // One connection per VPC pair: the same request again returns the live one;
    // the reversed pair, or a pair still being torn down, is refused.
    let (me, my_acct, my_region) = (vpc_id, ctx.account.as_str(), ctx.region.as_str());
    let forward = |p: &Peering| {
        names(&p.requester, me, my_acct, my_region)
            && names(&p.accepter, peer_vpc_id, &peer_owner, &peer_region)
    };
    let reverse = |p: &Peering| {
        names(&p.accepter, me, my_acct, my_region)
            && names(&p.requester, peer_vpc_id, &peer_owner, &peer_region)
    };
    if let Some(existing) = w.iter::<Peering>().find(|p| {
        (p.state.is_live() || p.state == PcxState::Deleting) && (forward(p) || reverse(p))
    }) {
        if forward(existing) && existing.state.is_live() {
            return Ok(existing.clone());
        }
        return Err(Fault::new(
            "VpcPeeringConnectionAlreadyExists",
            format!(
                "A peering connection between {vpc_id} and {peer_vpc_id} already exists: {}",
                existing.id
            ),
        ));
    }
    let pending = w
        .iter::<Peering>()
        .filter(|p| p.requester.owner == ctx.account && outstanding(p))
        .count();
    if pending >= ctx.limits.outstanding_peerings_per_account {
        return Err(Fault::new(
            "OutstandingVpcPeeringConnectionLimitExceeded",
            format!(
                "You have reached the limit of {} outstanding VPC peering connection requests.",
                ctx.limits.outstanding_peerings_per_account
            ),
        ));
    }
    let active = w
        .iter::<Peering>()
        .filter(|p| {
            counts_as_active(p) && (p.requester.vpc_id == vpc_id || p.accepter.vpc_id == vpc_id)
        })
        .count();
    if active >= ctx.limits.active_peerings_per_vpc {
        return Err(Fault::new(
            "VpcPeeringConnectionsPerVpcLimitExceeded",
            format!(
                "The VPC {vpc_id} has reached the limit of {} active VPC peering connections.",
                ctx.limits.active_peerings_per_vpc
            ),
        ));
    }

    let requester = side_for(&vpc, &ctx.account, &ctx.region);
    let peer = w
        .get::<Vpc>(peer_vpc_id)
        .filter(|v| v.meta.owner == peer_owner && v.meta.region == peer_region);
    let (accepter, fails) = match peer {
        Some(pv) => {
            let a = side_for(pv, &peer_owner, &peer_region);
            let overlap = blocks_overlap(&requester, &a);
            (a, overlap)
        }
        None => (
            PeerSide {
                owner: peer_owner.clone(),
                vpc_id: peer_vpc_id.to_string(),
                region: peer_region.clone(),
                options: PeeringOptions::default(),
                cidrs: Vec::new(),
                ipv6_cidrs: Vec::new(),
                tags: Vec::new(),
            },
            true,
        ),
    };
    let mut requester = requester;
    requester.tags = req.tags;
    let p = Peering {
        id: ctx.new_id("pcx"),
        message: format!("Initiating Request to {peer_owner}"),
        requester,
        accepter,
        state: PcxState::InitiatingRequest,
        created: ctx.now,
        state_since: ctx.now,
        expiration: Some(ctx.now.plus_ms(ctx.limits.peering_expiry_ms)),
        transition_due: Some(ctx.now.plus_ms(ctx.limits.peering_transition_ms)),
        fails_on_init: fails,
        ended_by: None,
        was_active: false,
    };
    w.put(p.clone());
    Ok(p)
}

fn bad_transition(p: &Peering, to: &str) -> Fault {
    Fault::new(
        "InvalidStateTransition",
        format!(
            "Invalid state transition for {}, attempted to transition from {} to {to}",
            p.id,
            p.state.as_str()
        ),
    )
}

/// Checks that the caller is the accepter's owner, in the accepter's region.
fn check_accepter(p: &Peering, ctx: &Ctx<'_>, verb: &str) -> Result<()> {
    if p.accepter.owner != ctx.account {
        return Err(Fault::new(
            "OperationNotPermitted",
            format!("User {} cannot {verb} peering {}", ctx.account, p.id),
        ));
    }
    if p.accepter.region != ctx.region {
        // Accept names only itself; reject names both (aws-semantics §2).
        let must_be = if verb == "accept" {
            "accepted"
        } else {
            "accepted or rejected"
        };
        return Err(Fault::new(
            "OperationNotPermitted",
            format!(
                "Incorrect region ({}) specified for this request. VPC peering connection {} must be {must_be} in region {}",
                ctx.region, p.id, p.accepter.region
            ),
        ));
    }
    Ok(())
}

pub fn accept(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<Peering> {
    let p = party(w, ctx, id)?.clone();
    check_accepter(&p, ctx, "accept")?;
    if p.state != PcxState::PendingAcceptance {
        return Err(bad_transition(&p, "provisioning"));
    }
    for v in [&p.requester.vpc_id, &p.accepter.vpc_id] {
        let n = w
            .iter::<Peering>()
            .filter(|x| {
                counts_as_active(x) && (&x.requester.vpc_id == v || &x.accepter.vpc_id == v)
            })
            .count();
        if n >= ctx.limits.active_peerings_per_vpc {
            return Err(Fault::new(
                "ActiveVpcPeeringConnectionPerVpcLimitExceeded",
                format!(
                    "The VPC {v} has reached the limit of {} active VPC peering connections.",
                    ctx.limits.active_peerings_per_vpc
                ),
            ));
        }
    }
    let now = ctx.now;
    let due = now.plus_ms(ctx.limits.peering_transition_ms);
    w.update::<Peering>(id, |p| {
        p.state = PcxState::Provisioning;
        p.message = "Provisioning".into();
        p.state_since = now;
        p.transition_due = Some(due);
    });
    refresh_sides(w, id);
    Ok(w.get::<Peering>(id).cloned().expect("present"))
}

pub fn reject(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let p = party(w, ctx, id)?.clone();
    check_accepter(&p, ctx, "reject")?;
    if p.state != PcxState::PendingAcceptance {
        return Err(bad_transition(&p, "rejected"));
    }
    let (now, acct) = (ctx.now, ctx.account.clone());
    w.update::<Peering>(id, |p| {
        p.state = PcxState::Rejected;
        p.message = format!("Rejected by {acct}");
        p.state_since = now;
        p.transition_due = None;
        p.ended_by = Some(acct);
    });
    Ok(())
}

pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let p = party(w, ctx, id)?.clone();
    let side = p
        .side_of(&ctx.account, &ctx.region)
        .ok_or_else(|| PCX.not_found(id))?;
    match p.state {
        PcxState::PendingAcceptance => {
            // Same account and region: `side_of` already says requester.
            if side != Side::Requester {
                return Err(Fault::new(
                    "OperationNotPermitted",
                    format!(
                        "User {} cannot delete peering {} while it is pending acceptance; reject it instead",
                        ctx.account, p.id
                    ),
                ));
            }
        }
        PcxState::Active => {}
        // `initiating-request`, `provisioning` and `deleting` allow no action
        // (AWS §3.1); ended states are final.
        _ => return Err(bad_transition(&p, "deleting")),
    }
    end(w, ctx, id);
    Ok(())
}

/// Moves a connection to `deleted` (or `deleting` when inter-region).
fn end(w: &mut World, ctx: &Ctx<'_>, id: &str) {
    let (now, acct) = (ctx.now, ctx.account.clone());
    let due = now.plus_ms(ctx.limits.peering_transition_ms);
    w.update::<Peering>(id, |p| {
        p.ended_by = Some(acct.clone());
        p.state_since = now;
        if p.inter_region() {
            p.state = PcxState::Deleting;
            p.message = "Deleting".into();
            p.transition_due = Some(due);
        } else {
            p.state = PcxState::Deleted;
            p.message = format!("Deleted by {acct}");
            p.transition_due = None;
        }
    });
}

/// One side's new options in ModifyVpcPeeringConnectionOptions.
#[derive(Debug, Clone, Default)]
pub struct OptionChange {
    pub allow_dns: Option<bool>,
    /// A deprecated ClassicLink flag was sent.
    pub classic_link: bool,
}

/// Returns the new options of the sides that were modified (accepter, requester).
pub fn modify_options(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    accepter: Option<OptionChange>,
    requester: Option<OptionChange>,
) -> Result<(Option<PeeringOptions>, Option<PeeringOptions>)> {
    let p = party(w, ctx, id)?.clone();
    if accepter.is_none() && requester.is_none() {
        return Err(Fault::missing(
            "AccepterPeeringConnectionOptions or RequesterPeeringConnectionOptions",
        ));
    }
    if p.state != PcxState::Active {
        return Err(Fault::new(
            "OperationNotPermitted",
            format!(
                "Peering {id} is not active. Peering options can be added only to active peerings."
            ),
        ));
    }
    for (change, side, name) in [
        (&accepter, &p.accepter, "accepter"),
        (&requester, &p.requester, "requester"),
    ] {
        let Some(c) = change else { continue };
        if side.owner != ctx.account || side.region != ctx.region {
            return Err(Fault::new(
                "OperationNotPermitted",
                format!(
                    "User {} does not have permission to modify the {name} side peering options",
                    ctx.account
                ),
            ));
        }
        if c.classic_link && p.inter_region() {
            return Err(Fault::new(
                "OperationNotPermitted",
                "Modifying VPC peering connection options AllowEgressFromLocalClassicLinkToRemoteVpc, AllowEgressFromLocalVpcToRemoteClassicLink is not supported for cross-region VPC peering connections",
            ));
        }
        if c.allow_dns == Some(true) {
            for v in [&p.requester.vpc_id, &p.accepter.vpc_id] {
                let ok = w
                    .get::<Vpc>(v)
                    .is_some_and(|v| v.dns_hostnames && v.dns_support);
                if !ok {
                    return Err(Fault::new(
                        "InvalidVpcPeeringConnectionState.DnsHostnamesDisabled",
                        format!("Peering connection {id} cannot enable DNS resolution from the remote VPC because DNS hostnames or DNS support are disabled for VPC {v}."),
                    ));
                }
            }
        }
    }
    w.update::<Peering>(id, |p| {
        if let Some(v) = accepter.as_ref().and_then(|c| c.allow_dns) {
            p.accepter.options.allow_dns_resolution_from_remote_vpc = v;
        }
        if let Some(v) = requester.as_ref().and_then(|c| c.allow_dns) {
            p.requester.options.allow_dns_resolution_from_remote_vpc = v;
        }
    });
    let p = w.get::<Peering>(id).expect("present");
    Ok((
        accepter.map(|_| p.accepter.options),
        requester.map(|_| p.requester.options),
    ))
}

/// Applies every timed transition due at `now`. Returns true when anything changed.
///
/// Runs to a fixed point, so one call after a long clock jump goes all the way
/// (e.g. `initiating-request` → `pending-acceptance` → `expired` → removed),
/// each step stamped with the moment it was due rather than with `now`.
pub fn tick(w: &mut World, now: Timestamp) -> bool {
    let mut changed = false;
    // Each round moves every due connection one step along a finite chain
    // (at most three steps), so this bound is never reached in practice.
    for _ in 0..8 {
        let due = w.peerings.due_by(now);
        if due.is_empty() {
            break;
        }
        changed = true;
        for id in &due {
            step(w, id, now);
        }
    }
    changed
}

/// Applies the one timed transition of a connection whose deadline has passed.
fn step(w: &mut World, id: &str, now: Timestamp) {
    let Some(p) = w.get::<Peering>(id).cloned() else {
        return;
    };
    let at = p.transition_due.unwrap_or(now);
    match p.state {
        PcxState::InitiatingRequest => {
            w.update::<Peering>(id, |p| {
                p.state_since = at;
                p.transition_due = None;
                if p.fails_on_init {
                    p.state = PcxState::Failed;
                    p.message = FAILED_MESSAGE.into();
                    p.expiration = None;
                } else {
                    p.state = PcxState::PendingAcceptance;
                    p.message = format!("Pending Acceptance by {}", p.accepter.owner);
                }
            });
        }
        PcxState::PendingAcceptance => expire(w, id),
        PcxState::Provisioning => {
            w.update::<Peering>(id, |p| {
                p.state = PcxState::Active;
                p.message = "Active".into();
                p.state_since = at;
                p.transition_due = None;
                p.expiration = None;
                p.was_active = true;
            });
        }
        PcxState::Deleting => {
            w.update::<Peering>(id, |p| {
                p.state = PcxState::Deleted;
                p.message = format!("Deleted by {}", p.ended_by.clone().unwrap_or_default());
                p.state_since = at;
                p.transition_due = None;
            });
        }
        s if s.is_terminal() => {
            w.remove::<Peering>(id);
        }
        // `active` has no deadline.
        _ => {}
    }
}

fn expire(w: &mut World, id: &str) {
    w.update::<Peering>(id, |p| {
        p.state = PcxState::Expired;
        p.message = "Expired".into();
        p.state_since = p.expiration.unwrap_or(p.state_since);
        p.transition_due = None;
    });
}

/// When this connection next changes by itself, if ever.
pub fn deadline(p: &Peering) -> Option<Timestamp> {
    match p.state {
        PcxState::InitiatingRequest | PcxState::Provisioning | PcxState::Deleting => {
            p.transition_due
        }
        PcxState::PendingAcceptance => p.expiration,
        s if s.is_terminal() => gone_after(p),
        _ => None,
    }
}

/// The earliest deadline of any connection.
pub fn next_deadline(w: &World) -> Option<Timestamp> {
    w.peerings.next_due()
}

/// What happens to a VPC's connections when the VPC is deleted.
///
/// `ctx` is the VPC owner's, in the VPC's region. Connections of the VPC end
/// (`deleted`, or `deleting` when inter-region), except that a live request
/// received from another account blocks the deletion until it is rejected.
/// A request that named this VPC ID under another account or region does not
/// involve this VPC (it is failing on its own) and is left alone.
pub fn on_vpc_delete(w: &mut World, ctx: &mut Ctx<'_>, vpc_id: &str) -> Result<()> {
    let Some(vpc) = w.get::<Vpc>(vpc_id).cloned() else {
        return Ok(());
    };
    let involved: Vec<(Peering, Side)> = w
        .iter::<Peering>()
        .filter(|p| p.state.is_live())
        .filter_map(|p| Some((p.clone(), side_of_vpc(p, &vpc)?)))
        .collect();
    for (p, side) in &involved {
        if outstanding(p) && !p.fails_on_init && *side == Side::Accepter && !p.same_account() {
            return Err(Fault::dependency(format!(
                "The vpc '{vpc_id}' has dependencies and cannot be deleted."
            )));
        }
    }
    for (p, _) in involved {
        end(w, ctx, &p.id);
    }
    Ok(())
}

/// Checks a CIDR about to be added to `vpc` against its connections.
///
/// An active peer must not overlap; a pending requester cannot add anything;
/// a pending accepter may, but an overlap fails the request.
pub fn on_cidr_add(w: &mut World, ctx: &mut Ctx<'_>, vpc: &Vpc, net: IpNet) -> Result<()> {
    let vpc_id = vpc.meta.id.as_str();
    let involved: Vec<(Peering, Side)> = w
        .iter::<Peering>()
        .filter(|p| p.state.is_live())
        .filter_map(|p| Some((p.clone(), side_of_vpc(p, vpc)?)))
        .collect();
    let mut to_fail = Vec::new();
    for (p, side) in &involved {
        let other = match side {
            Side::Requester => &p.accepter,
            Side::Accepter => &p.requester,
        };
        let overlap = match net {
            IpNet::V4(n) => other.cidrs.iter().any(|c| cidr::overlaps_v4(c, &n)),
            IpNet::V6(n) => other.ipv6_cidrs.iter().any(|c| cidr::overlaps_v6(c, &n)),
        };
        if outstanding(p) {
            if *side == Side::Requester {
                return Err(Fault::new(
                    "OperationNotPermitted",
                    format!("The CIDR '{net}' cannot be added to {vpc_id} while its VPC peering connection request {} is pending acceptance", p.id),
                ));
            }
            if overlap {
                to_fail.push(p.id.clone());
            }
        } else if overlap {
            return Err(Fault::new(
                "InvalidVpc.Range",
                format!(
                    "The CIDR '{net}' overlaps with a CIDR of VPC {} peered through {}",
                    other.vpc_id, p.id
                ),
            ));
        }
    }
    let now = ctx.now;
    for id in to_fail {
        w.update::<Peering>(&id, |p| {
            p.state = PcxState::Failed;
            p.message = FAILED_MESSAGE.into();
            p.state_since = now;
            p.transition_due = None;
            p.expiration = None;
        });
    }
    Ok(())
}

/// Refreshes the CIDR snapshots of the connections of one VPC.
pub fn refresh_cidrs(w: &mut World, vpc_id: &str) {
    let Some(v) = w.get::<Vpc>(vpc_id).cloned() else {
        return;
    };
    let ids: Vec<(String, Side)> = w
        .iter::<Peering>()
        .filter(|p| p.state.is_live())
        .filter_map(|p| Some((p.id.clone(), side_of_vpc(p, &v)?)))
        .collect();
    for (id, side) in ids {
        w.update::<Peering>(&id, |p| {
            let s = p.side_mut(side);
            s.cidrs = v.v4_blocks().collect();
            s.ipv6_cidrs = v.v6_blocks().collect();
        });
    }
}

fn refresh_sides(w: &mut World, id: &str) {
    if let Some(p) = w.get::<Peering>(id).cloned() {
        refresh_cidrs(w, &p.requester.vpc_id);
        refresh_cidrs(w, &p.accepter.vpc_id);
    }
}

/// The active connection joining two VPCs, if any.
pub fn active_between<'w>(w: &'w World, a: &str, b: &str) -> Option<&'w Peering> {
    w.iter::<Peering>()
        .find(|p| p.state == PcxState::Active && p.joins(a, b))
}

/// Whether a route through this connection carries traffic (else it is a blackhole).
pub fn carries_traffic(w: &World, pcx_id: &str) -> bool {
    w.get::<Peering>(pcx_id)
        .is_some_and(|p| p.state == PcxState::Active)
}

/// Whether the data plane links the two VPC routers: the connection carries
/// traffic and joins two existing, different VPCs. `vpc-dataplane`'s
/// planner: `gather_gateways`.
pub fn is_realized(w: &World, p: &Peering) -> bool {
    p.state == PcxState::Active
        && p.requester.vpc_id != p.accepter.vpc_id
        && w.get::<Vpc>(&p.requester.vpc_id).is_some()
        && w.get::<Vpc>(&p.accepter.vpc_id).is_some()
}

#[cfg(test)]
mod tests;
