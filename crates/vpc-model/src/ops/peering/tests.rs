use super::*;
use crate::ops::defaults::new_vpc;
use crate::Limits;
use ipnet::{Ipv4Net, Ipv6Net};

const A: &str = "111111111111";
const B: &str = "222222222222";
const C: &str = "333333333333";
const E1: &str = "us-east-1";
const W2: &str = "us-west-2";
const T: i64 = 200;
const H: i64 = Timestamp::HOUR;
const D: i64 = Timestamp::DAY;

/// Deterministic IDs: 1, 2, 3, … as 17 hex digits.
use crate::ctx::SeqIds as Seq;

/// A world, a clock, and the server's discipline: tick before each action,
/// and throw away the world of a failed action.
#[derive(Debug, Clone)]
struct Env {
    w: World,
    ids: Seq,
    limits: Limits,
    now: Timestamp,
}

impl Env {
    fn new() -> Env {
        Env {
            w: World::default(),
            ids: Seq::default(),
            limits: Limits::default(),
            now: Timestamp(1_700_000_000_000),
        }
    }

    fn with<T>(
        &mut self,
        acct: &str,
        region: &str,
        f: impl FnOnce(&mut World, &mut Ctx<'_>) -> Result<T>,
    ) -> Result<T> {
        tick(&mut self.w, self.now);
        let mut w = self.w.clone();
        let mut ctx = Ctx {
            account: acct.to_string(),
            region: region.to_string(),
            now: self.now,
            ids: &mut self.ids,
            limits: &self.limits,
            zones: &[],
        };
        let out = f(&mut w, &mut ctx)?;
        self.w = w;
        Ok(out)
    }

    fn vpc(&mut self, acct: &str, region: &str, cidr: &str, v6: Option<&str>) -> String {
        let cidr: Ipv4Net = cidr.parse().unwrap();
        let v6: Option<Ipv6Net> = v6.map(|s| s.parse().unwrap());
        self.with(acct, region, |w, ctx| {
            Ok(new_vpc(w, ctx, cidr, v6, false, "default", Vec::new()))
        })
        .unwrap()
        .meta
        .id
    }

    fn add_cidr(&mut self, acct: &str, region: &str, vpc: &str, cidr: &str) -> Result<()> {
        self.with(acct, region, |w, ctx| {
            crate::ops::vpc::associate_cidr(w, ctx, vpc, Some(cidr), false).map(|_| ())
        })
    }

    fn create_full(
        &mut self,
        acct: &str,
        region: &str,
        vpc: &str,
        peer: &str,
        owner: Option<&str>,
        peer_region: Option<&str>,
    ) -> Result<Peering> {
        let req = CreatePeering {
            vpc_id: Some(vpc.into()),
            peer_vpc_id: Some(peer.into()),
            peer_owner_id: owner.map(Into::into),
            peer_region: peer_region.map(Into::into),
            tags: Vec::new(),
        };
        self.with(acct, region, |w, ctx| {
            create(w, ctx, req, &|r| r == E1 || r == W2)
        })
    }

    /// Cross-account, same region, unless `owner` is the caller.
    fn create(&mut self, acct: &str, vpc: &str, peer: &str, owner: &str) -> Peering {
        self.create_full(acct, E1, vpc, peer, Some(owner), None)
            .unwrap()
    }

    fn accept(&mut self, acct: &str, region: &str, id: &str) -> Result<Peering> {
        self.with(acct, region, |w, ctx| accept(w, ctx, id))
    }

    fn reject(&mut self, acct: &str, region: &str, id: &str) -> Result<()> {
        self.with(acct, region, |w, ctx| reject(w, ctx, id))
    }

    fn delete(&mut self, acct: &str, region: &str, id: &str) -> Result<()> {
        self.with(acct, region, |w, ctx| delete(w, ctx, id))
    }

    fn advance(&mut self, ms: i64) {
        self.now = self.now.plus_ms(ms);
        tick(&mut self.w, self.now);
    }

    fn p(&self, id: &str) -> &Peering {
        self.w.get::<Peering>(id).expect("present")
    }

    fn state(&self, id: &str) -> Option<PcxState> {
        self.w.get::<Peering>(id).map(|p| p.state)
    }

    fn sees(&self, acct: &str, region: &str, id: &str) -> bool {
        listed(&self.w, acct, region, self.now).any(|(p, _)| p.id == id)
    }
}

fn code(r: Result<impl std::fmt::Debug>) -> String {
    r.expect_err("should fail").code.to_string()
}

/// A (10.0/16) and B (10.1/16) in us-east-1, and a pending A→B request.
fn pending_cross_account() -> (Env, String, String, String) {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", None);
    let id = e.create(A, &a, &b, B).id;
    e.advance(T);
    assert_eq!(e.state(&id), Some(PcxState::PendingAcceptance));
    (e, a, b, id)
}

fn active_cross_account() -> (Env, String, String, String) {
    let (mut e, a, b, id) = pending_cross_account();
    e.accept(B, E1, &id).unwrap();
    e.advance(T);
    assert_eq!(e.state(&id), Some(PcxState::Active));
    (e, a, b, id)
}

/// A/us-east-1 (10.0/16) → B/us-west-2 (10.1/16), pending.
fn pending_inter_region() -> (Env, String, String, String) {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, W2, "10.1.0.0/16", None);
    let id = e.create_full(A, E1, &a, &b, Some(B), Some(W2)).unwrap().id;
    e.advance(T);
    assert_eq!(e.state(&id), Some(PcxState::PendingAcceptance));
    (e, a, b, id)
}

#[test]
fn happy_path() {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", Some("2600:1f18:1:100::/56"));
    let t0 = e.now;
    let p = e.create(A, &a, &b, B);
    assert_eq!(p.state, PcxState::InitiatingRequest);
    assert_eq!(p.message, format!("Initiating Request to {B}"));
    assert_eq!(p.expiration, Some(t0.plus_ms(7 * D)));
    assert_eq!(p.requester.cidrs, vec!["10.0.0.0/16".parse().unwrap()]);
    assert!(!shows_accepter_details(&p));
    // Only the requester sees a request being initiated.
    assert!(e.sees(A, E1, &p.id));
    assert!(!e.sees(B, E1, &p.id));
    assert_eq!(code(e.accept(B, E1, &p.id)), PCX.not_found);

    e.advance(T - 1);
    assert_eq!(e.state(&p.id), Some(PcxState::InitiatingRequest));
    e.advance(1);
    let q = e.p(&p.id).clone();
    assert_eq!(q.state, PcxState::PendingAcceptance);
    assert_eq!(q.message, format!("Pending Acceptance by {B}"));
    assert_eq!(q.state_since, t0.plus_ms(T));
    assert!(e.sees(A, E1, &p.id) && e.sees(B, E1, &p.id));
    assert!(!e.sees(C, E1, &p.id) && !e.sees(B, W2, &p.id));
    assert!(!carries_traffic(&e.w, &p.id));

    let q = e.accept(B, E1, &p.id).unwrap();
    assert_eq!(q.state, PcxState::Provisioning);
    assert_eq!(q.message, "Provisioning");
    assert!(shows_accepter_details(&q));
    assert_eq!(q.accepter.ipv6_cidrs.len(), 1);
    e.advance(T);
    let q = e.p(&p.id).clone();
    assert_eq!(q.state, PcxState::Active);
    assert_eq!(q.message, "Active");
    assert!(q.was_active && q.expiration.is_none());
    assert!(carries_traffic(&e.w, &p.id));
    assert_eq!(active_between(&e.w, &b, &a).map(|p| &p.id), Some(&p.id));
    assert_eq!(next_deadline(&e.w), None);
}

#[test]
fn same_account_same_region_has_one_view() {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(A, E1, "10.1.0.0/16", None);
    let p = e.create_full(A, E1, &a, &b, None, None).unwrap();
    assert_eq!(p.accepter.owner, A);
    e.advance(T);
    let seen: Vec<Side> = listed(&e.w, A, E1, e.now).map(|(_, s)| s).collect();
    assert_eq!(seen, vec![Side::Requester]);
    e.accept(A, E1, &p.id).unwrap();
    e.advance(T);
    assert_eq!(e.state(&p.id), Some(PcxState::Active));
}

#[test]
fn overlapping_blocks_fail_the_request() {
    // (requester CIDR, requester IPv6, peer CIDR, peer IPv6, peer secondary CIDR)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );
    let cases: &[Case<'_>] = &[
        // Primary IPv4 overlaps.
        ("10.0.0.0/16", None, "10.0.128.0/17", None, None),
        // A secondary IPv4 block of the peer overlaps the primary.
        (
            "10.0.0.0/16",
            None,
            "10.1.0.0/16",
            None,
            Some("10.0.7.0/24"),
        ),
        // IPv6 overlaps, IPv4 does not.
        (
            "10.0.0.0/16",
            Some("2600:1f18:1:100::/56"),
            "10.1.0.0/16",
            Some("2600:1f18:1:100::/56"),
            None,
        ),
    ];
    for (c1, v61, c2, v62, secondary) in cases {
        let mut e = Env::new();
        let a = e.vpc(A, E1, c1, *v61);
        let b = e.vpc(B, E1, c2, *v62);
        if let Some(s) = secondary {
            e.add_cidr(B, E1, &b, s).unwrap();
        }
        // Not an API error: the request goes to `failed`.
        let p = e.create(A, &a, &b, B);
        assert_eq!(p.state, PcxState::InitiatingRequest);
        e.advance(T);
        let q = e.p(&p.id).clone();
        assert_eq!(q.state, PcxState::Failed, "{c1} {c2}");
        assert_eq!(q.message, FAILED_MESSAGE);
        assert_eq!(q.expiration, None);
        assert!(e.sees(A, E1, &p.id) && !e.sees(B, E1, &p.id));
        assert_eq!(code(e.accept(B, E1, &p.id)), PCX.not_found);
        e.advance(2 * H - 1);
        assert!(e.sees(A, E1, &p.id));
        e.advance(1);
        assert!(!e.sees(A, E1, &p.id));
        assert_eq!(e.state(&p.id), None, "removed by tick");
    }
    // Adjacent blocks do not overlap.
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/17", Some("2600:1f18:1:100::/56"));
    let b = e.vpc(B, E1, "10.0.128.0/17", Some("2600:1f18:1:200::/56"));
    let p = e.create(A, &a, &b, B);
    e.advance(T);
    assert_eq!(e.state(&p.id), Some(PcxState::PendingAcceptance));
}

#[test]
fn wrong_peer_vpc_account_or_region_fails() {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", None);
    let ids = [
        e.create(A, &a, &b, C).id,
        e.create_full(A, E1, &a, &b, Some(B), Some(W2)).unwrap().id,
        e.create(A, &a, "vpc-0000000000000dead", B).id,
    ];
    e.advance(T);
    for id in &ids {
        assert_eq!(e.state(id), Some(PcxState::Failed));
    }
    // Nobody can act on a failed connection.
    assert_eq!(
        e.delete(A, E1, &ids[0]).unwrap_err().message,
        format!(
            "Invalid state transition for {}, attempted to transition from failed to deleting",
            ids[0]
        )
    );
    assert_eq!(code(e.accept(A, E1, &ids[0])), "OperationNotPermitted");
}

#[test]
fn create_validation() {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", None);
    let mut c = |vpc: &str, peer: &str, owner: Option<&str>, region: Option<&str>| {
        code(e.create_full(A, E1, vpc, peer, owner, region))
    };
    assert_eq!(c(&a, &a, None, None), "InvalidParameterValue");
    assert_eq!(c(&a, &b, Some("12345"), None), "InvalidParameterValue");
    assert_eq!(c(&a, &b, Some(B), Some("mars-1")), "InvalidParameterValue");
    assert_eq!(c(&a, "pcx-1", Some(B), None), "InvalidVpcID.Malformed");
    // The requester VPC must be the caller's, in the caller's region.
    assert_eq!(c(&b, &a, Some(A), None), "InvalidVpcID.NotFound");
    assert_eq!(
        code(e.create_full(A, W2, &a, &b, Some(B), None)),
        "InvalidVpcID.NotFound"
    );
}

#[test]
fn only_the_accepter_owner_accepts_or_rejects() {
    let (mut e, _, _, id) = pending_cross_account();
    let err = e.accept(A, E1, &id).unwrap_err();
    assert_eq!(err.code, "OperationNotPermitted");
    assert_eq!(err.message, format!("User {A} cannot accept peering {id}"));
    let err = e.reject(A, E1, &id).unwrap_err();
    assert_eq!(err.message, format!("User {A} cannot reject peering {id}"));
    // A third account does not see it at all.
    assert_eq!(code(e.accept(C, E1, &id)), PCX.not_found);
    assert_eq!(
        e.accept(C, E1, &id).unwrap_err().message,
        format!("The vpcPeeringConnection ID '{id}' does not exist")
    );
    assert_eq!(code(e.delete(C, E1, &id)), PCX.not_found);
    assert_eq!(code(e.accept(B, E1, "zz")), PCX.malformed);
    assert_eq!(code(e.accept(B, E1, "pcx-zz")), PCX.not_found);
    assert_eq!(e.state(&id), Some(PcxState::PendingAcceptance));
    // Accepting twice is a bad transition.
    e.accept(B, E1, &id).unwrap();
    let err = e.accept(B, E1, &id).unwrap_err();
    assert_eq!(err.code, "InvalidStateTransition");
    assert_eq!(code(e.reject(B, E1, &id)), "InvalidStateTransition");
}

#[test]
fn accept_in_the_wrong_region_is_refused() {
    let (mut e, _, _, id) = pending_inter_region();
    assert!(e.sees(A, E1, &id) && !e.sees(A, W2, &id));
    assert!(e.sees(B, W2, &id) && !e.sees(B, E1, &id));
    let err = e.accept(B, E1, &id).unwrap_err();
    assert_eq!(err.code, "OperationNotPermitted");
    assert_eq!(
            err.message,
            format!("Incorrect region ({E1}) specified for this request. VPC peering connection {id} must be accepted in region {W2}")
        );
    assert_eq!(
            e.reject(B, E1, &id).unwrap_err().message,
            format!("Incorrect region ({E1}) specified for this request. VPC peering connection {id} must be accepted or rejected in region {W2}")
        );
    assert_eq!(code(e.accept(A, E1, &id)), "OperationNotPermitted");
    e.accept(B, W2, &id).unwrap();
    e.advance(T);
    assert_eq!(e.state(&id), Some(PcxState::Active));
    // Same account, two regions: still the accepter's region only.
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(A, W2, "10.1.0.0/16", None);
    let id = e.create_full(A, E1, &a, &b, None, Some(W2)).unwrap().id;
    e.advance(T);
    assert_eq!(code(e.accept(A, E1, &id)), "OperationNotPermitted");
    e.accept(A, W2, &id).unwrap();
}

#[test]
fn requester_deletes_a_pending_request_accepter_may_not() {
    let (mut e, _, _, id) = pending_cross_account();
    let err = e.delete(B, E1, &id).unwrap_err();
    assert_eq!(err.code, "OperationNotPermitted");
    assert_eq!(e.state(&id), Some(PcxState::PendingAcceptance));
    e.delete(A, E1, &id).unwrap();
    let p = e.p(&id).clone();
    assert_eq!(p.state, PcxState::Deleted);
    assert_eq!(p.message, format!("Deleted by {A}"));
    assert!(!shows_accepter_details(&p));
    // Deleter 2 h, the other side 2 days.
    e.advance(2 * H);
    assert!(!e.sees(A, E1, &id) && e.sees(B, E1, &id));
    e.advance(2 * D - 2 * H - 1);
    assert!(e.sees(B, E1, &id));
    e.advance(1);
    assert_eq!(e.state(&id), None);
}

#[test]
fn nothing_but_the_timer_moves_initiating_and_provisioning() {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", None);
    let id = e.create(A, &a, &b, B).id;
    assert_eq!(
            e.delete(A, E1, &id).unwrap_err().message,
            format!("Invalid state transition for {id}, attempted to transition from initiating-request to deleting")
        );
    e.advance(T);
    e.accept(B, E1, &id).unwrap();
    assert_eq!(code(e.delete(A, E1, &id)), "InvalidStateTransition");
    assert_eq!(code(e.delete(B, E1, &id)), "InvalidStateTransition");
}

#[test]
fn ended_states_cannot_be_deleted() {
    let (mut e, _, _, id) = pending_cross_account();
    e.reject(B, E1, &id).unwrap();
    let p = e.p(&id).clone();
    assert_eq!(
        (p.state, p.message.as_str()),
        (PcxState::Rejected, "Rejected by 222222222222")
    );
    let err = e.delete(A, E1, &id).unwrap_err();
    assert_eq!(err.code, "InvalidStateTransition");
    assert_eq!(
        err.message,
        format!(
            "Invalid state transition for {id}, attempted to transition from rejected to deleting"
        )
    );
    assert_eq!(code(e.accept(B, E1, &id)), "InvalidStateTransition");

    let (mut e, _, _, id) = active_cross_account();
    e.delete(B, E1, &id).unwrap();
    assert_eq!(
        e.delete(A, E1, &id).unwrap_err().message,
        format!(
            "Invalid state transition for {id}, attempted to transition from deleted to deleting"
        )
    );

    let (mut e, _, _, id) = pending_cross_account();
    e.advance(7 * D);
    assert_eq!(e.state(&id), Some(PcxState::Expired));
    assert_eq!(code(e.delete(A, E1, &id)), "InvalidStateTransition");
    assert_eq!(code(e.accept(B, E1, &id)), "InvalidStateTransition");
}

#[test]
fn expiry_at_exactly_seven_days() {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", None);
    let t0 = e.now;
    let id = e.create(A, &a, &b, B).id;
    e.advance(T);
    e.advance(7 * D - T - 1);
    assert_eq!(e.state(&id), Some(PcxState::PendingAcceptance));
    e.advance(1);
    let p = e.p(&id).clone();
    assert_eq!(p.state, PcxState::Expired);
    assert_eq!(p.message, "Expired");
    assert_eq!(p.state_since, t0.plus_ms(7 * D));
    // Both sides see it for 2 days.
    e.advance(2 * D - 1);
    assert!(e.sees(A, E1, &id) && e.sees(B, E1, &id));
    e.advance(1);
    assert!(!e.sees(A, E1, &id) && !e.sees(B, E1, &id));
    assert_eq!(e.state(&id), None);
}

#[test]
fn one_long_jump_runs_every_step() {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", None);
    let id = e.create(A, &a, &b, B).id;
    // Initiating → pending → expired (at 7 d) → still visible at 8 d.
    e.advance(8 * D);
    let p = e.p(&id).clone();
    assert_eq!(p.state, PcxState::Expired);
    assert!(e.sees(B, E1, &id));
    assert!(next_deadline(&e.w).is_some_and(|d| d > e.now));
    let mut e2 = Env::new();
    let a = e2.vpc(A, E1, "10.0.0.0/16", None);
    let b = e2.vpc(B, E1, "10.1.0.0/16", None);
    let id = e2.create(A, &a, &b, B).id;
    e2.advance(10 * D);
    assert_eq!(e2.state(&id), None);
}

#[test]
fn rejected_visibility_windows() {
    let (mut e, _, _, id) = pending_cross_account();
    e.reject(B, E1, &id).unwrap();
    e.advance(2 * H - 1);
    assert!(e.sees(B, E1, &id));
    e.advance(1);
    assert!(!e.sees(B, E1, &id), "accepter: 2 h");
    assert_eq!(code(e.reject(B, E1, &id)), PCX.not_found);
    e.advance(D - 2 * H);
    assert!(e.sees(A, E1, &id), "requester: still after a day");
    e.advance(D - 1);
    assert!(e.sees(A, E1, &id));
    e.advance(1);
    assert!(!e.sees(A, E1, &id));
    assert_eq!(e.state(&id), None, "removed by tick");

    // Same account: 2 h for everyone.
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(A, E1, "10.1.0.0/16", None);
    let id = e.create(A, &a, &b, A).id;
    e.advance(T);
    e.reject(A, E1, &id).unwrap();
    e.advance(2 * H - 1);
    assert!(e.sees(A, E1, &id));
    e.advance(1);
    assert_eq!(e.state(&id), None);
}

#[test]
fn deleted_visibility_windows() {
    // Either owner deletes an active connection; deleter 2 h, other 2 days.
    for deleter in [A, B] {
        let (mut e, _, _, id) = active_cross_account();
        e.delete(deleter, E1, &id).unwrap();
        let p = e.p(&id).clone();
        assert_eq!(p.state, PcxState::Deleted);
        assert!(shows_accepter_details(&p), "it had been active");
        assert!(!carries_traffic(&e.w, &id));
        let other = if deleter == A { B } else { A };
        e.advance(2 * H);
        assert!(!e.sees(deleter, E1, &id));
        assert!(e.sees(other, E1, &id));
        e.advance(2 * D - 2 * H);
        assert_eq!(e.state(&id), None);
    }
    // Same account: 2 h.
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(A, E1, "10.1.0.0/16", None);
    let id = e.create(A, &a, &b, A).id;
    e.advance(T);
    e.accept(A, E1, &id).unwrap();
    e.advance(T);
    e.delete(A, E1, &id).unwrap();
    e.advance(2 * H - 1);
    assert!(e.sees(A, E1, &id));
    e.advance(1);
    assert_eq!(e.state(&id), None);
}

#[test]
fn inter_region_delete_goes_through_deleting() {
    let (mut e, _, _, id) = pending_inter_region();
    e.accept(B, W2, &id).unwrap();
    e.advance(T);
    // The accepter deletes in its own region only.
    assert_eq!(code(e.delete(B, E1, &id)), PCX.not_found);
    let t = e.now;
    e.delete(B, W2, &id).unwrap();
    let p = e.p(&id).clone();
    assert_eq!(
        (p.state, p.message.as_str()),
        (PcxState::Deleting, "Deleting")
    );
    assert!(shows_accepter_details(&p));
    assert!(e.sees(A, E1, &id) && e.sees(B, W2, &id));
    assert_eq!(code(e.delete(A, E1, &id)), "InvalidStateTransition");
    e.advance(T);
    let p = e.p(&id).clone();
    assert_eq!(p.state, PcxState::Deleted);
    assert_eq!(p.message, format!("Deleted by {B}"));
    assert_eq!(p.state_since, t.plus_ms(T));
    assert!(shows_accepter_details(&p));
    e.advance(2 * H);
    assert!(!e.sees(B, W2, &id) && e.sees(A, E1, &id));

    // Deleting a pending inter-region request never reveals the accepter.
    let (mut e, _, _, id) = pending_inter_region();
    e.delete(A, E1, &id).unwrap();
    assert_eq!(e.state(&id), Some(PcxState::Deleting));
    assert!(!shows_accepter_details(e.p(&id)));
    e.advance(T);
    assert_eq!(e.state(&id), Some(PcxState::Deleted));
    assert!(!shows_accepter_details(e.p(&id)));
}

#[test]
fn one_connection_per_vpc_pair() {
    let mut e = Env::new();
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", None);
    let p = e.create(A, &a, &b, B);
    // The same request again returns the live connection, in every live state.
    assert_eq!(e.create(A, &a, &b, B).id, p.id);
    e.advance(T);
    assert_eq!(e.create(A, &a, &b, B).id, p.id);
    // The reversed pair is refused.
    let err = e.create_full(B, E1, &b, &a, Some(A), None).unwrap_err();
    assert_eq!(err.code, "VpcPeeringConnectionAlreadyExists");
    e.accept(B, E1, &p.id).unwrap();
    e.advance(T);
    assert_eq!(e.create(A, &a, &b, B).id, p.id);
    assert_eq!(e.w.peerings.len(), 1);
    // An ended connection does not block a new one.
    e.delete(B, E1, &p.id).unwrap();
    let q = e.create_full(B, E1, &b, &a, Some(A), None).unwrap();
    assert_ne!(q.id, p.id);
    assert_eq!(q.state, PcxState::InitiatingRequest);

    // A pair still being torn down (inter-region `deleting`) is refused.
    let (mut e, a, b, id) = pending_inter_region();
    e.delete(A, E1, &id).unwrap();
    assert_eq!(
        code(e.create_full(A, E1, &a, &b, Some(B), Some(W2))),
        "VpcPeeringConnectionAlreadyExists"
    );
    e.advance(T);
    assert_ne!(
        e.create_full(A, E1, &a, &b, Some(B), Some(W2)).unwrap().id,
        id
    );
}

#[test]
fn outstanding_quota_per_account() {
    let mut e = Env::new();
    e.limits.outstanding_peerings_per_account = 2;
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let peers: Vec<String> = (1..=3)
        .map(|i| e.vpc(B, E1, &format!("10.{i}.0.0/16"), None))
        .collect();
    let p1 = e.create(A, &a, &peers[0], B).id;
    e.create(A, &a, &peers[1], B);
    let err = e
        .create_full(A, E1, &a, &peers[2], Some(B), None)
        .unwrap_err();
    assert_eq!(err.code, "OutstandingVpcPeeringConnectionLimitExceeded");
    // Another account has its own quota.
    let b0 = peers[0].clone();
    let c = e.vpc(C, E1, "10.9.0.0/16", None);
    e.create(C, &c, &b0, B);
    // Accepting one frees a slot.
    e.advance(T);
    e.accept(B, E1, &p1).unwrap();
    e.create(A, &a, &peers[2], B);
}

#[test]
fn active_quota_per_vpc() {
    let mut e = Env::new();
    e.limits.active_peerings_per_vpc = 1;
    let a = e.vpc(A, E1, "10.0.0.0/16", None);
    let b = e.vpc(B, E1, "10.1.0.0/16", None);
    let c = e.vpc(B, E1, "10.2.0.0/16", None);
    let d = e.vpc(C, E1, "10.3.0.0/16", None);
    let ab = e.create(A, &a, &b, B).id;
    let ca = e.create_full(B, E1, &c, &a, Some(A), None).unwrap().id;
    e.advance(T);
    e.accept(B, E1, &ab).unwrap();
    // Provisioning already counts.
    let err = e.accept(A, E1, &ca).unwrap_err();
    assert_eq!(err.code, "ActiveVpcPeeringConnectionPerVpcLimitExceeded");
    e.advance(T);
    assert_eq!(
        code(e.accept(A, E1, &ca)),
        "ActiveVpcPeeringConnectionPerVpcLimitExceeded"
    );
    // The requester VPC is checked on create too.
    assert_eq!(
        code(e.create_full(A, E1, &a, &d, Some(C), None)),
        "VpcPeeringConnectionsPerVpcLimitExceeded"
    );
    e.delete(A, E1, &ab).unwrap();
    e.accept(A, E1, &ca).unwrap();
}

#[test]
fn modify_options_rules() {
    let (mut e, a, b, id) = pending_cross_account();
    let dns = |on| {
        Some(OptionChange {
            allow_dns: Some(on),
            classic_link: false,
        })
    };
    let modify = |e: &mut Env, acct: &str, region: &str, acc, req| {
        e.with(acct, region, |w, ctx| modify_options(w, ctx, &id, acc, req))
    };
    assert_eq!(
        code(modify(&mut e, B, E1, dns(true), None)),
        "OperationNotPermitted"
    );
    e.accept(B, E1, &id).unwrap();
    e.advance(T);
    assert_eq!(code(modify(&mut e, B, E1, None, None)), "MissingParameter");
    let err = modify(&mut e, A, E1, dns(true), None).unwrap_err();
    assert_eq!(
        err.message,
        format!("User {A} does not have permission to modify the accepter side peering options")
    );
    assert_eq!(
        code(modify(&mut e, B, E1, dns(true), None)),
        "InvalidVpcPeeringConnectionState.DnsHostnamesDisabled"
    );
    for (acct, v) in [(A, &a), (B, &b)] {
        e.with(acct, E1, |w, ctx| {
            crate::ops::vpc::modify_attribute(w, ctx, v, None, Some(true))
        })
        .unwrap();
    }
    let (acc, req) = modify(&mut e, B, E1, dns(true), None).unwrap();
    assert_eq!(req, None);
    assert!(acc.unwrap().allow_dns_resolution_from_remote_vpc);
    assert!(
        e.p(&id)
            .accepter
            .options
            .allow_dns_resolution_from_remote_vpc
    );
    assert!(
        !e.p(&id)
            .requester
            .options
            .allow_dns_resolution_from_remote_vpc
    );
    let cl = Some(OptionChange {
        allow_dns: None,
        classic_link: true,
    });
    // ClassicLink flags are only refused cross-region.
    modify(&mut e, A, E1, None, cl.clone()).unwrap();

    let (mut e, _, _, id) = pending_inter_region();
    e.accept(B, W2, &id).unwrap();
    e.advance(T);
    let r = e.with(A, E1, |w, ctx| {
        modify_options(w, ctx, &id, None, cl.clone())
    });
    assert_eq!(code(r), "OperationNotPermitted");
    let r = e.with(A, W2, |w, ctx| {
        modify_options(w, ctx, &id, None, dns(false))
    });
    assert_eq!(
        code(r),
        "OperationNotPermitted",
        "requester side from its own region only"
    );
}

#[test]
fn cidr_added_while_pending() {
    let (mut e, a, b, id) = pending_cross_account();
    // The requester cannot add anything while pending.
    assert_eq!(
        code(e.add_cidr(A, E1, &a, "10.50.0.0/16")),
        "OperationNotPermitted"
    );
    // The accepter may, and a non-overlapping block changes nothing.
    e.add_cidr(B, E1, &b, "10.60.0.0/16").unwrap();
    assert_eq!(e.state(&id), Some(PcxState::PendingAcceptance));
    assert_eq!(e.p(&id).accepter.cidrs.len(), 2);
    // An overlapping one fails the request.
    e.add_cidr(B, E1, &b, "10.0.128.0/17").unwrap();
    assert_eq!(e.state(&id), Some(PcxState::Failed));
    assert!(!e.sees(B, E1, &id));

    // Once active, an overlapping block is an error.
    let (mut e, a, _, _) = active_cross_account();
    assert_eq!(
        code(e.add_cidr(A, E1, &a, "10.1.0.0/24")),
        "InvalidVpc.Range"
    );
    e.add_cidr(A, E1, &a, "10.70.0.0/16").unwrap();
}

#[test]
fn vpc_deletion_and_its_connections() {
    let (mut e, a, b, id) = pending_cross_account();
    // A request received from another account blocks the accepter's VPC.
    let r = e.with(B, E1, |w, ctx| crate::ops::vpc::delete_vpc(w, ctx, &b));
    assert_eq!(code(r), "DependencyViolation");
    // The requester's VPC takes its request with it.
    e.with(A, E1, |w, ctx| crate::ops::vpc::delete_vpc(w, ctx, &a))
        .unwrap();
    assert_eq!(e.state(&id), Some(PcxState::Deleted));
    e.with(B, E1, |w, ctx| crate::ops::vpc::delete_vpc(w, ctx, &b))
        .unwrap();

    let (mut e, _, b, id) = active_cross_account();
    e.with(B, E1, |w, ctx| crate::ops::vpc::delete_vpc(w, ctx, &b))
        .unwrap();
    assert_eq!(e.state(&id), Some(PcxState::Deleted));
    assert_eq!(e.p(&id).ended_by.as_deref(), Some(B));
}

#[test]
fn tags_are_per_side() {
    let (mut e, _, _, id) = pending_cross_account();
    let tag = |k: &str| Tag {
        key: k.into(),
        value: "v".into(),
    };
    e.with(A, E1, |w, ctx| {
        crate::ops::tags::create_tags(w, ctx, std::slice::from_ref(&id), &[tag("a")])
    })
    .unwrap();
    e.with(B, E1, |w, ctx| {
        crate::ops::tags::create_tags(w, ctx, std::slice::from_ref(&id), &[tag("b")])
    })
    .unwrap();
    let p = e.p(&id);
    assert_eq!(p.requester.tags, vec![tag("a")]);
    assert_eq!(p.accepter.tags, vec![tag("b")]);
    let r = e.with(C, E1, |w, ctx| {
        crate::ops::tags::create_tags(w, ctx, std::slice::from_ref(&id), &[tag("c")])
    });
    assert_eq!(code(r), PCX.not_found);
}

#[test]
fn records_from_before_was_active_still_load() {
    let (e, _, _, id) = active_cross_account();
    let mut v: serde_json::Value = serde_json::to_value(e.p(&id)).unwrap();
    v.as_object_mut().unwrap().remove("was_active");
    let p: Peering = serde_json::from_value(v).unwrap();
    assert!(!p.was_active);
    assert!(shows_accepter_details(&p));
}

mod prop {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// (account, region) pairs the actors use.
    const ACTORS: [(&str, &str); 4] = [(A, E1), (A, W2), (B, E1), (B, W2)];

    #[derive(Debug, Clone)]
    enum Op {
        Create {
            from: usize,
            to: usize,
            wrong_owner: bool,
        },
        Accept(usize, usize),
        Reject(usize, usize),
        Delete(usize, usize),
        AddCidr(usize, u8),
        DeleteVpc(usize),
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..8usize, 0..8usize, proptest::bool::weighted(0.1)).prop_map(
                |(from, to, wrong_owner)| Op::Create { from, to, wrong_owner }
            ),
            3 => (0..4usize, 0..12usize).prop_map(|(a, p)| Op::Accept(a, p)),
            1 => (0..4usize, 0..12usize).prop_map(|(a, p)| Op::Reject(a, p)),
            2 => (0..4usize, 0..12usize).prop_map(|(a, p)| Op::Delete(a, p)),
            1 => (0..8usize, 0..4u8).prop_map(|(v, c)| Op::AddCidr(v, c)),
            1 => (0..8usize).prop_map(Op::DeleteVpc),
            3 => prop_oneof![
                1 => Just(1),
                4 => Just(T),
                1 => Just(H),
                1 => Just(2 * H),
                1 => Just(D),
                1 => Just(2 * D),
                1 => Just(7 * D),
            ]
            .prop_map(Op::Advance),
        ]
    }

    /// Timed and action edges of the state machine (§3.1), including what
    /// deleting a VPC or adding an overlapping CIDR does.
    fn edge(from: PcxState, to: PcxState) -> bool {
        use PcxState::*;
        matches!(
            (from, to),
            (
                InitiatingRequest,
                PendingAcceptance | Failed | Deleted | Deleting
            ) | (
                PendingAcceptance,
                Provisioning | Rejected | Expired | Failed | Deleted | Deleting
            ) | (Provisioning, Active | Deleted | Deleting)
                | (Active, Deleted | Deleting)
                | (Deleting, Deleted)
        )
    }

    /// Reachable through timed edges in one tick (or equal).
    fn timed(from: PcxState, to: PcxState) -> bool {
        use PcxState::*;
        from == to
            || matches!(
                (from, to),
                (InitiatingRequest, PendingAcceptance | Failed | Expired)
                    | (PendingAcceptance, Expired)
                    | (Provisioning, Active)
                    | (Deleting, Deleted)
            )
    }

    #[derive(Debug)]
    struct World0 {
        e: Env,
        vpcs: Vec<(String, &'static str, &'static str)>,
        pcx: Vec<String>,
    }

    fn setup() -> World0 {
        let mut e = Env::new();
        // Two per (account, region); 10.0/16 appears twice so some pairs overlap,
        // and two VPCs share an IPv6 block.
        let specs: [(&str, &str, &str, Option<&str>); 8] = [
            (A, E1, "10.0.0.0/16", Some("2600:1f18:1:100::/56")),
            (A, E1, "10.1.0.0/16", None),
            (A, W2, "10.2.0.0/16", None),
            (A, W2, "10.0.0.0/16", None),
            (B, E1, "10.4.0.0/16", Some("2600:1f18:1:100::/56")),
            (B, E1, "10.5.0.0/16", None),
            (B, W2, "10.6.0.0/16", None),
            (B, W2, "10.7.0.0/16", None),
        ];
        let vpcs = specs
            .iter()
            .map(|(a, r, c, v6)| (e.vpc(a, r, c, *v6), *a, *r))
            .collect();
        World0 {
            e,
            vpcs,
            pcx: Vec::new(),
        }
    }

    /// At most one live connection per VPC pair. A VPC is its (ID, owner,
    /// region); a request naming a real ID under the wrong account or region
    /// names a VPC that does not exist, so among real pairs only requests
    /// that will not fail count.
    fn live_pairs_unique(w: &World) -> std::result::Result<(), String> {
        let key = |s: &PeerSide| (s.vpc_id.clone(), s.owner.clone(), s.region.clone());
        let mut by_triple = BTreeSet::new();
        let mut by_id = BTreeSet::new();
        for p in w.iter::<Peering>().filter(|p| p.state.is_live()) {
            let mut k = [key(&p.requester), key(&p.accepter)];
            k.sort();
            if !by_triple.insert(k) {
                return Err(format!("two live connections for one pair: {}", p.id));
            }
            if !p.fails_on_init {
                let mut k = [p.requester.vpc_id.clone(), p.accepter.vpc_id.clone()];
                k.sort();
                if !by_id.insert(k) {
                    return Err(format!("two good connections for one pair: {}", p.id));
                }
            }
        }
        Ok(())
    }

    fn check_record(p: &Peering) -> std::result::Result<(), String> {
        if p.was_active
            && !matches!(
                p.state,
                PcxState::Active | PcxState::Deleting | PcxState::Deleted
            )
        {
            return Err(format!("{} was active but is {:?}", p.id, p.state));
        }
        if p.state == PcxState::Active && !p.was_active {
            return Err(format!("{} active without was_active", p.id));
        }
        if shows_accepter_details(p)
            && !matches!(p.state, PcxState::Provisioning | PcxState::Active)
            && !p.was_active
        {
            return Err(format!("{} reveals the accepter without acceptance", p.id));
        }
        if p.state == PcxState::Failed && p.expiration.is_some() {
            return Err(format!("{} failed with an expiry", p.id));
        }
        if p.state == PcxState::Expired && p.expiration != Some(p.state_since) {
            return Err(format!("{} expired at the wrong time", p.id));
        }
        if matches!(
            p.state,
            PcxState::Deleted | PcxState::Rejected | PcxState::Deleting
        ) && p.ended_by.is_none()
        {
            return Err(format!("{} ended by nobody", p.id));
        }
        Ok(())
    }

    fn run(ops: Vec<Op>) -> std::result::Result<(), String> {
        let mut s = setup();
        for op in ops {
            let before: BTreeMap<String, Peering> =
                s.e.w
                    .iter::<Peering>()
                    .map(|p| (p.id.clone(), p.clone()))
                    .collect();
            let now = s.e.now;
            // Which connection the action targets, and whether the action
            // may touch several (VPC-level actions).
            let mut target: Option<String> = None;
            let mut broad = false;
            let mut timed_only = false;
            match &op {
                Op::Create {
                    from,
                    to,
                    wrong_owner,
                } => {
                    let (v, acct, region) = s.vpcs[*from].clone();
                    let (pv, powner, pregion) = s.vpcs[*to].clone();
                    let owner = if *wrong_owner { C } else { powner };
                    if let Ok(p) =
                        s.e.create_full(acct, region, &v, &pv, Some(owner), Some(pregion))
                    {
                        if let Some(old) = before.get(&p.id) {
                            if !old.state.is_live() || old.requester.vpc_id != v {
                                return Err(format!("create returned {old:?}"));
                            }
                        } else {
                            if p.state != PcxState::InitiatingRequest
                                || p.requester.owner != acct
                                || p.requester.region != region
                            {
                                return Err(format!("bad new connection {p:?}"));
                            }
                            s.pcx.push(p.id.clone());
                        }
                    }
                }
                Op::Accept(actor, i) | Op::Reject(actor, i) | Op::Delete(actor, i) => {
                    let Some(id) = s.pcx.get(*i).cloned() else {
                        continue;
                    };
                    let (acct, region) = ACTORS[*actor];
                    let res = match &op {
                        Op::Accept(..) => s.e.accept(acct, region, &id).map(|_| ()),
                        Op::Reject(..) => s.e.reject(acct, region, &id),
                        _ => s.e.delete(acct, region, &id),
                    };
                    if res.is_ok() {
                        let old = &before[&id];
                        let new = s.e.p(&id);
                        let accepter_acts =
                            acct == old.accepter.owner && region == old.accepter.region;
                        let ok = match &op {
                            Op::Accept(..) => {
                                accepter_acts
                                    && old.state == PcxState::PendingAcceptance
                                    && new.state == PcxState::Provisioning
                            }
                            Op::Reject(..) => {
                                accepter_acts
                                    && old.state == PcxState::PendingAcceptance
                                    && new.state == PcxState::Rejected
                            }
                            _ => {
                                let side = old.side_of(acct, region);
                                let allowed = match old.state {
                                    PcxState::PendingAcceptance => side == Some(Side::Requester),
                                    PcxState::Active => side.is_some(),
                                    _ => false,
                                };
                                allowed
                                    && matches!(new.state, PcxState::Deleted | PcxState::Deleting)
                                    && (new.state == PcxState::Deleting) == old.inter_region()
                            }
                        };
                        if !ok {
                            return Err(format!(
                                "{op:?} by {acct}/{region} took {:?} to {:?}",
                                old.state, new.state
                            ));
                        }
                    }
                    target = Some(id);
                }
                Op::AddCidr(v, c) => {
                    let (v, acct, region) = s.vpcs[*v].clone();
                    let cidr = ["10.0.0.0/24", "10.4.128.0/17", "10.9.0.0/16", "10.6.0.0/24"]
                        [usize::from(*c)];
                    let _ = s.e.add_cidr(acct, region, &v, cidr);
                    broad = true;
                }
                Op::DeleteVpc(v) => {
                    let (v, acct, region) = s.vpcs[*v].clone();
                    let _ = s.e.with(acct, region, |w, ctx| {
                        crate::ops::vpc::delete_vpc(w, ctx, &v)
                    });
                    broad = true;
                }
                Op::Advance(ms) => {
                    s.e.advance(*ms);
                    timed_only = true;
                }
            }
            // Every connection that existed before moved along a legal path.
            for (id, old) in &before {
                let new = s.e.w.get::<Peering>(id);
                let Some(new) = new else {
                    if !timed_only {
                        return Err(format!("{id} removed by {op:?}"));
                    }
                    // Removal only ends a terminal state whose windows are over.
                    continue;
                };
                if old.state.is_terminal() && new.state != old.state {
                    return Err(format!("{id} left {:?} for {:?}", old.state, new.state));
                }
                if new.state == PcxState::Active
                    && !matches!(old.state, PcxState::Provisioning | PcxState::Active)
                {
                    return Err(format!("{id} became active from {:?}", old.state));
                }
                let ok = if timed_only {
                    timed(old.state, new.state)
                } else if target.as_deref() == Some(id.as_str()) || broad {
                    old.state == new.state || edge(old.state, new.state)
                } else {
                    old == new
                };
                if !ok {
                    return Err(format!(
                        "{id} went {:?} -> {:?} on {op:?}",
                        old.state, new.state
                    ));
                }
                if new.requester != old.requester && !broad && !timed_only {
                    // Only tags, CIDR snapshots or options could change, and not here.
                    if target.as_deref() != Some(id.as_str()) {
                        return Err(format!("{id} requester side changed on {op:?}"));
                    }
                }
            }
            if timed_only {
                for (id, old) in &before {
                    if s.e.w.get::<Peering>(id).is_none() {
                        // It must have been (or become) an ended state whose
                        // visibility is over for both sides.
                        let reachable_end = old.state.is_terminal()
                            || matches!(
                                old.state,
                                PcxState::InitiatingRequest
                                    | PcxState::PendingAcceptance
                                    | PcxState::Deleting
                            );
                        if !reachable_end {
                            return Err(format!("{id} vanished from {:?}", old.state));
                        }
                    }
                }
            }
            for p in s.e.w.iter::<Peering>() {
                check_record(p)?;
                // Nothing lingers invisible to everybody.
                if p.state.is_terminal()
                    && !is_visible(p, Side::Requester, s.e.now)
                    && !is_visible(p, Side::Accepter, s.e.now)
                {
                    return Err(format!("{} kept past its windows", p.id));
                }
                // Ticked up: nothing is overdue.
                if deadline(p).is_some_and(|d| d <= s.e.now) {
                    return Err(format!("{} overdue after {op:?}", p.id));
                }
            }
            live_pairs_unique(&s.e.w)?;
            let _ = now;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_histories_stay_legal(ops in proptest::collection::vec(op(), 1..60)) {
            if let Err(e) = run(ops) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
