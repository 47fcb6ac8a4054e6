//! VPC peering connections: create, accept, reject, delete, describe, modify options.
//!
//! The state machine, permissions and visibility live in
//! [`vpc_model::ops::peering`]; this module parses parameters and renders the
//! `VpcPeeringConnection` shape (AWS reference §2.1).

use super::{Handler, Req};
use crate::params::Params;
use crate::query::{self, tag_field};
use crate::xml::{self, Xml};
use vpc_model::ops::peering::{self as pcx, CreatePeering, OptionChange};
use vpc_model::{Ctx, Fault, PcxState, PeerSide, Peering, PeeringOptions, Side, Timestamp, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateVpcPeeringConnection", Handler::Write(create)),
    ("AcceptVpcPeeringConnection", Handler::Write(accept)),
    ("RejectVpcPeeringConnection", Handler::Write(reject)),
    ("DeleteVpcPeeringConnection", Handler::Write(delete)),
    ("DescribeVpcPeeringConnections", Handler::Read(describe)),
    (
        "ModifyVpcPeeringConnectionOptions",
        Handler::Write(modify_options),
    ),
];

// ---- Rendering -----------------------------------------------------------

/// The three `peeringOptions` booleans; the ClassicLink ones are always false.
fn render_options(x: &mut Xml, o: &PeeringOptions) {
    x.bool(
        "allowDnsResolutionFromRemoteVpc",
        o.allow_dns_resolution_from_remote_vpc,
    )
    .bool("allowEgressFromLocalClassicLinkToRemoteVpc", false)
    .bool("allowEgressFromLocalVpcToRemoteClassicLink", false);
}

/// `requesterVpcInfo` / `accepterVpcInfo`: identity always, CIDRs and options when `details`.
fn render_vpc_info(x: &mut Xml, s: &PeerSide, details: bool) {
    x.leaf("ownerId", &s.owner)
        .leaf("vpcId", &s.vpc_id)
        .leaf("region", &s.region);
    if details {
        if let Some(first) = s.cidrs.first() {
            x.leaf("cidrBlock", &first.to_string());
        }
        x.set("cidrBlockSet", &s.cidrs, |x, c| {
            x.leaf("cidrBlock", &c.to_string());
        });
        x.set("ipv6CidrBlockSet", &s.ipv6_cidrs, |x, c| {
            x.leaf("ipv6CidrBlock", &c.to_string());
        });
        x.open("peeringOptions");
        render_options(x, &s.options);
        x.close("peeringOptions");
    }
}

/// The expiry shown: only while unaccepted (and on an expired connection).
fn shown_expiration(p: &Peering) -> Option<Timestamp> {
    match p.state {
        PcxState::InitiatingRequest | PcxState::PendingAcceptance | PcxState::Expired => {
            p.expiration
        }
        _ => None,
    }
}

/// One `VpcPeeringConnection`, as seen from `side` (whose tags are shown).
pub fn render(x: &mut Xml, p: &Peering, side: Side) {
    x.leaf("vpcPeeringConnectionId", &p.id);
    x.open("requesterVpcInfo");
    render_vpc_info(x, &p.requester, true);
    x.close("requesterVpcInfo");
    x.open("accepterVpcInfo");
    render_vpc_info(x, &p.accepter, pcx::shows_accepter_details(p));
    x.close("accepterVpcInfo");
    x.open("status")
        .leaf("code", p.state.as_str())
        .leaf("message", &p.message)
        .close("status");
    if let Some(t) = shown_expiration(p) {
        x.leaf("expirationTime", &xml::timestamp(t.0));
    }
    x.tags(&p.side(side).tags);
}

/// The caller's side: the one it stands on here, else the requester's view.
fn caller_side(p: &Peering, ctx: &Ctx<'_>) -> Side {
    p.side_of(&ctx.account, &ctx.region)
        .unwrap_or(Side::Requester)
}

fn respond(r: &Req<'_>, ctx: &Ctx<'_>, p: &Peering) -> Result<String, Fault> {
    let mut x = r.xml();
    x.open("vpcPeeringConnection");
    render(&mut x, p, caller_side(p, ctx));
    x.close("vpcPeeringConnection");
    r.done(x)
}

// ---- Actions -------------------------------------------------------------

/// An optional parameter; an empty value counts as absent.
fn opt(p: &Params, k: &str) -> Option<String> {
    p.string(k).filter(|v| !v.is_empty())
}

fn create(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let req = CreatePeering {
        vpc_id: p.string("VpcId"),
        peer_vpc_id: p.string("PeerVpcId"),
        peer_owner_id: opt(p, "PeerOwnerId"),
        peer_region: opt(p, "PeerRegion"),
        tags: p.tag_specs("vpc-peering-connection")?,
    };
    let regions = r.regions;
    let pc = pcx::create(w, ctx, req, &|name| regions.get(name).is_some())?;
    respond(r, ctx, &pc)
}

fn accept(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let pc = pcx::accept(w, ctx, r.p.req("VpcPeeringConnectionId")?)?;
    respond(r, ctx, &pc)
}

fn reject(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    pcx::reject(w, ctx, r.p.req("VpcPeeringConnectionId")?)?;
    r.ok()
}

fn delete(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    pcx::delete(w, ctx, r.p.req("VpcPeeringConnectionId")?)?;
    r.ok()
}

type Item<'w> = (&'w Peering, Side);

fn field(it: &Item<'_>, name: &str) -> Option<Vec<String>> {
    let (p, side) = *it;
    let one = |s: &str| Some(vec![s.to_string()]);
    let blocks = |s: &PeerSide| s.cidrs.iter().map(ToString::to_string).collect();
    match name {
        "accepter-vpc-info.cidr-block" => Some(if pcx::shows_accepter_details(p) {
            blocks(&p.accepter)
        } else {
            Vec::new()
        }),
        "accepter-vpc-info.owner-id" => one(&p.accepter.owner),
        "accepter-vpc-info.vpc-id" => one(&p.accepter.vpc_id),
        "expiration-time" => Some(
            shown_expiration(p)
                .map(|t| xml::timestamp(t.0))
                .into_iter()
                .collect(),
        ),
        "requester-vpc-info.cidr-block" => Some(blocks(&p.requester)),
        "requester-vpc-info.owner-id" => one(&p.requester.owner),
        "requester-vpc-info.vpc-id" => one(&p.requester.vpc_id),
        "status-code" => one(p.state.as_str()),
        "status-message" => one(&p.message),
        "vpc-peering-connection-id" => one(&p.id),
        _ => tag_field(&p.side(side).tags, name),
    }
}

const FILTERS: &[&str] = &[
    "accepter-vpc-info.cidr-block",
    "accepter-vpc-info.owner-id",
    "accepter-vpc-info.vpc-id",
    "expiration-time",
    "requester-vpc-info.cidr-block",
    "requester-vpc-info.owner-id",
    "requester-vpc-info.vpc-id",
    "status-code",
    "status-message",
    "vpc-peering-connection-id",
];

fn describe(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let mut ids = r.p.list("VpcPeeringConnectionId")?;
    let items: Vec<Item<'_>> = if ids.is_empty() {
        pcx::listed(w, &ctx.account, &ctx.region, ctx.now).collect()
    } else {
        ids.sort();
        ids.dedup();
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            // Unknown, someone else's, or past its visibility window: not found.
            let side = pcx::visible(w, ctx, id)?;
            let p = w
                .get::<Peering>(id)
                .ok_or_else(|| vpc_model::ops::PCX.not_found(id))?;
            out.push((p, side));
        }
        out
    };
    // Listed in ID order, so filtering and paging stop once the page is full.
    let filters = r.p.filters()?;
    let items = query::apply_lazy(items, &filters, &field, FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |(p, _)| p.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("vpcPeeringConnectionSet", page, |x, (p, side)| {
        render(x, p, side)
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

/// `AccepterPeeringConnectionOptions.*` or `RequesterPeeringConnectionOptions.*`, if sent.
fn option_change(p: &Params, prefix: &str) -> Result<Option<OptionChange>, Fault> {
    let sub = p.sub(prefix);
    let allow_dns = sub.bool("AllowDnsResolutionFromRemoteVpc")?;
    let mut classic_link = false;
    for k in [
        "AllowEgressFromLocalClassicLinkToRemoteVpc",
        "AllowEgressFromLocalVpcToRemoteClassicLink",
    ] {
        classic_link |= sub.bool(k)?.is_some();
    }
    Ok(
        (allow_dns.is_some() || classic_link).then_some(OptionChange {
            allow_dns,
            classic_link,
        }),
    )
}

fn modify_options(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("VpcPeeringConnectionId")?;
    let accepter = option_change(r.p, "AccepterPeeringConnectionOptions")?;
    let requester = option_change(r.p, "RequesterPeeringConnectionOptions")?;
    let (acc, req) = pcx::modify_options(w, ctx, id, accepter, requester)?;
    let mut x = r.xml();
    for (tag, o) in [
        ("accepterPeeringConnectionOptions", acc),
        ("requesterPeeringConnectionOptions", req),
    ] {
        if let Some(o) = o {
            x.open(tag);
            render_options(&mut x, &o);
            x.close(tag);
        }
    }
    r.done(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpc_model::ops::peering::tick;
    use vpc_model::region::Regions;
    use vpc_model::Limits;

    use vpc_model::ctx::SeqIds as Seq;

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    struct Env {
        w: World,
        ids: Seq,
        limits: Limits,
        regions: Regions,
        now: Timestamp,
    }

    impl Env {
        fn call(&mut self, acct: &str, pairs: &[(&str, &str)]) -> Result<String, Fault> {
            tick(&mut self.w, self.now);
            let action = pairs[0].1.to_string();
            let params =
                Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let req = Req {
                p: &params,
                action: &action,
                request_id: "r-1",
                regions: &self.regions,
                hosts: &Default::default(),
            };
            let mut w = self.w.clone();
            let mut ctx = Ctx {
                account: acct.to_string(),
                region: "us-east-1".to_string(),
                now: self.now,
                ids: &mut self.ids,
                limits: &self.limits,
                zones: &[],
            };
            let out = match crate::actions::lookup(&action).expect("known action") {
                Handler::Read(h) => h(&w, &ctx, &req),
                Handler::Write(h) => h(&mut w, &mut ctx, &req),
            }?;
            self.w = w;
            Ok(out)
        }

        fn vpc(&mut self, acct: &str, cidr: &str) -> String {
            let mut ctx = Ctx {
                account: acct.to_string(),
                region: "us-east-1".to_string(),
                now: self.now,
                ids: &mut self.ids,
                limits: &self.limits,
                zones: &[],
            };
            vpc_model::ops::defaults::new_vpc(
                &mut self.w,
                &mut ctx,
                cidr.parse().unwrap(),
                None,
                false,
                "default",
                Vec::new(),
            )
            .meta
            .id
        }
    }

    fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
        let i = s.find(open).expect(open) + open.len();
        let j = s[i..].find(close).expect(close) + i;
        &s[i..j]
    }

    #[test]
    fn render_and_describe() {
        let mut e = Env {
            w: World::default(),
            ids: Seq::default(),
            limits: Limits::default(),
            regions: Regions::default(),
            now: Timestamp(1_392_734_245_000),
        };
        let a = e.vpc(A, "10.0.0.0/16");
        let b = e.vpc(B, "10.1.0.0/16");
        let out = e
            .call(
                A,
                &[
                    ("Action", "CreateVpcPeeringConnection"),
                    ("VpcId", &a),
                    ("PeerVpcId", &b),
                    ("PeerOwnerId", B),
                    ("TagSpecification.1.ResourceType", "vpc-peering-connection"),
                    ("TagSpecification.1.Tag.1.Key", "Name"),
                    ("TagSpecification.1.Tag.1.Value", "req"),
                ],
            )
            .unwrap();
        let id = between(&out, "<vpcPeeringConnectionId>", "<").to_string();
        let acc = between(&out, "<accepterVpcInfo>", "</accepterVpcInfo>");
        assert_eq!(
            acc,
            format!("<ownerId>{B}</ownerId><vpcId>{b}</vpcId><region>us-east-1</region>")
        );
        let reqi = between(&out, "<requesterVpcInfo>", "</requesterVpcInfo>");
        assert!(reqi.contains("<cidrBlock>10.0.0.0/16</cidrBlock><cidrBlockSet><item><cidrBlock>10.0.0.0/16</cidrBlock></item></cidrBlockSet><ipv6CidrBlockSet/><peeringOptions><allowDnsResolutionFromRemoteVpc>false</allowDnsResolutionFromRemoteVpc>"));
        assert!(out.contains(&format!(
            "<status><code>initiating-request</code><message>Initiating Request to {B}</message></status><expirationTime>2014-02-25T14:37:25.000Z</expirationTime>"
        )));
        assert!(out.contains("<tagSet><item><key>Name</key><value>req</value></item></tagSet>"));

        // The accepter does not see it until it is pending.
        let d = [
            ("Action", "DescribeVpcPeeringConnections"),
            ("VpcPeeringConnectionId.1", id.as_str()),
        ];
        let err = e.call(B, &d).unwrap_err();
        assert_eq!(err.code, "InvalidVpcPeeringConnectionID.NotFound");
        assert_eq!(
            err.message,
            format!("The vpcPeeringConnection ID '{id}' does not exist")
        );
        e.now = e.now.plus_ms(200);
        let out = e.call(B, &d).unwrap();
        assert!(out.contains("<code>pending-acceptance</code>"));
        // Each side sees its own tags.
        assert!(out.contains("<tagSet/>"));
        let all = e
            .call(B, &[("Action", "DescribeVpcPeeringConnections")])
            .unwrap();
        assert!(all.contains(&id));

        let out = e
            .call(
                B,
                &[
                    ("Action", "AcceptVpcPeeringConnection"),
                    ("VpcPeeringConnectionId", &id),
                ],
            )
            .unwrap();
        assert!(out.contains("<code>provisioning</code>"));
        assert!(!out.contains("expirationTime"));
        assert!(between(&out, "<accepterVpcInfo>", "</accepterVpcInfo>")
            .contains("<cidrBlock>10.1.0.0/16</cidrBlock>"));
        e.now = e.now.plus_ms(200);

        let f = |name: &str, value: &str| {
            vec![
                (
                    "Action".to_string(),
                    "DescribeVpcPeeringConnections".to_string(),
                ),
                ("Filter.1.Name".to_string(), name.to_string()),
                ("Filter.1.Value.1".to_string(), value.to_string()),
            ]
        };
        let hits = |e: &mut Env, name: &str, value: &str| {
            let pairs = f(name, value);
            let v: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            e.call(A, &v).unwrap().contains(&id)
        };
        assert!(hits(&mut e, "status-code", "active"));
        assert!(!hits(&mut e, "status-code", "pending-acceptance"));
        assert!(hits(&mut e, "accepter-vpc-info.cidr-block", "10.1.0.0/16"));
        assert!(hits(&mut e, "requester-vpc-info.owner-id", A));
        assert!(hits(&mut e, "accepter-vpc-info.vpc-id", &b));
        assert!(hits(&mut e, "tag:Name", "req"));
        assert!(hits(&mut e, "tag-key", "Name"));
        assert!(!hits(&mut e, "tag-value", "nope"));
        assert!(hits(&mut e, "status-message", "Active"));
        assert!(hits(&mut e, "vpc-peering-connection-id", &id));
        let bad = e.call(
            A,
            &[
                ("Action", "DescribeVpcPeeringConnections"),
                ("Filter.1.Name", "bogus"),
                ("Filter.1.Value.1", "x"),
            ],
        );
        assert!(bad.is_err());

        // Options: only the side sent comes back.
        let out = e
            .call(
                A,
                &[
                    ("Action", "ModifyVpcPeeringConnectionOptions"),
                    ("VpcPeeringConnectionId", &id),
                    (
                        "RequesterPeeringConnectionOptions.AllowEgressFromLocalVpcToRemoteClassicLink",
                        "false",
                    ),
                ],
            )
            .unwrap();
        assert!(out.contains("<requesterPeeringConnectionOptions><allowDnsResolutionFromRemoteVpc>false</allowDnsResolutionFromRemoteVpc>"));
        assert!(!out.contains("accepterPeeringConnectionOptions"));

        let out = e
            .call(
                B,
                &[
                    ("Action", "DeleteVpcPeeringConnection"),
                    ("VpcPeeringConnectionId", &id),
                ],
            )
            .unwrap();
        assert!(out.contains("<return>true</return>"));
        let out = e
            .call(A, &[("Action", "DescribeVpcPeeringConnections")])
            .unwrap();
        assert!(out.contains("<code>deleted</code>"));
        assert!(between(&out, "<accepterVpcInfo>", "</accepterVpcInfo>").contains("cidrBlock"));
    }
}
