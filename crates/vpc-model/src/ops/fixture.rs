//! The model's test fixture: a World with its ID sequence, limits, clock and
//! zones, and a way to run an operation in an account's context, shared by
//! the unit tests of every `ops` module.

use crate::ctx::{Ctx, Limits, SeqIds, Timestamp};
use crate::ops::{defaults, igw, instance, subnet};
use crate::types::{Subnet, Vpc};
use crate::world::World;

pub(crate) struct Fixture {
    pub w: World,
    pub ids: SeqIds,
    pub limits: Limits,
    pub now: Timestamp,
    pub zones: Vec<(String, String)>,
}

impl Fixture {
    /// One zone, us-east-1a.
    pub fn new() -> Fixture {
        Fixture {
            w: World::default(),
            ids: SeqIds(0),
            limits: Limits::default(),
            now: Timestamp(1_000_000),
            zones: vec![("us-east-1a".into(), "use1-az1".into())],
        }
    }

    /// Two zones, us-east-1a and us-east-1b.
    pub fn with_two_zones() -> Fixture {
        let mut f = Fixture::new();
        f.zones.push(("us-east-1b".into(), "use1-az2".into()));
        f
    }

    /// Runs `f` as `account` in us-east-1.
    pub fn run<R>(&mut self, account: &str, f: impl FnOnce(&mut World, &mut Ctx<'_>) -> R) -> R {
        self.run_in(account, "us-east-1", f)
    }

    /// Runs `f` as `account` in `region`.
    pub fn run_in<R>(
        &mut self,
        account: &str,
        region: &str,
        f: impl FnOnce(&mut World, &mut Ctx<'_>) -> R,
    ) -> R {
        let mut ctx = Ctx {
            account: account.into(),
            region: region.into(),
            now: self.now,
            ids: &mut self.ids,
            limits: &self.limits,
            zones: &self.zones,
        };
        f(&mut self.w, &mut ctx)
    }

    /// Moves the clock on by `ms` and lets instances (and the NAT gateways
    /// that follow their timers) change state.
    pub fn advance(&mut self, ms: i64) {
        self.now = self.now.plus_ms(ms);
        instance::tick(&mut self.w, self.now);
    }

    /// A VPC of `account` in us-east-1 with its defaults.
    pub fn vpc(&mut self, account: &str, cidr: &str) -> Vpc {
        self.vpc_in(account, "us-east-1", cidr)
    }

    /// A VPC of `account` in `region` with its defaults.
    pub fn vpc_in(&mut self, account: &str, region: &str, cidr: &str) -> Vpc {
        let net = cidr.parse().unwrap();
        self.run_in(account, region, |w, ctx| {
            defaults::new_vpc(w, ctx, net, None, false, "default", vec![])
        })
    }

    /// A VPC 10.0.0.0/16 (with an internet gateway when `igw`) and its
    /// subnet 10.0.1.0/24.
    pub fn net(&mut self, account: &str, igw: bool) -> (Vpc, Subnet) {
        self.run(account, |w, ctx| {
            let v = defaults::new_vpc(
                w,
                ctx,
                "10.0.0.0/16".parse().unwrap(),
                None,
                false,
                "default",
                vec![],
            );
            if igw {
                let g = igw::create(w, ctx, vec![]).unwrap();
                igw::attach(w, ctx, &g.meta.id, &v.meta.id).unwrap();
            }
            let s = subnet::create_subnet(
                w,
                ctx,
                subnet::CreateSubnet {
                    vpc_id: Some(v.meta.id.clone()),
                    cidr_block: Some("10.0.1.0/24".into()),
                    ..subnet::CreateSubnet::default()
                },
            )
            .unwrap();
            (v, s)
        })
    }
}
