//! Builds Worlds for tests through the model's operations (shared by the
//! unit tests and, via `#[path]`, the privileged kernel tests).
//!
//! Instances and interfaces are written as records directly: the model's
//! instance and interface operations are not there yet.

#![allow(dead_code)]

use vpc_model::ops::{self, acl, defaults, peering, route, sg, subnet};
use vpc_model::*;

pub const A: &str = "111111111111";
pub const B: &str = "222222222222";
pub const C: &str = "333333333333";
pub const EAST: &str = "us-east-1";
pub const WEST: &str = "us-west-2";

/// IDs whose hex starts with a test tag, so parallel tests never share a name.
#[derive(Debug, Clone)]
pub struct TaggedIds {
    pub tag: u16,
    pub n: u64,
}

impl IdSource for TaggedIds {
    fn hex17(&mut self) -> String {
        self.n += 1;
        format!("{:04x}{:013x}", self.tag, self.n)
    }
}

/// A world, a clock and an ID source; actions run as account [`A`] in [`EAST`] unless said otherwise.
pub struct Env {
    pub w: World,
    pub ids: Box<dyn IdSource>,
    pub limits: Limits,
    pub now: Timestamp,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("now", &self.now).finish()
    }
}

/// What [`Env::instance`] made.
#[derive(Debug, Clone)]
pub struct Inst {
    pub id: String,
    pub eni: String,
    pub ip: String,
}

impl Env {
    /// Deterministic IDs 1, 2, 3, …
    pub fn new() -> Env {
        Env::with_ids(Box::new(vpc_model::ctx::SeqIds::default()))
    }

    /// IDs carrying a 16-bit tag.
    pub fn tagged(tag: u16) -> Env {
        Env::with_ids(Box::new(TaggedIds { tag, n: 0 }))
    }

    fn with_ids(ids: Box<dyn IdSource>) -> Env {
        Env {
            w: World::default(),
            ids,
            limits: Limits::default(),
            now: Timestamp(1_700_000_000_000),
        }
    }

    /// Runs an operation as `acct` in `region`; a failure panics.
    pub fn run<T>(
        &mut self,
        acct: &str,
        region: &str,
        f: impl FnOnce(&mut World, &mut Ctx<'_>) -> Result<T, Fault>,
    ) -> T {
        peering::tick(&mut self.w, self.now);
        ops::instance::tick(&mut self.w, self.now);
        let mut w = self.w.clone();
        let mut ctx = Ctx {
            account: acct.to_string(),
            region: region.to_string(),
            now: self.now,
            ids: self.ids.as_mut(),
            limits: &self.limits,
            zones: &[],
        };
        let out = f(&mut w, &mut ctx).unwrap_or_else(|e| panic!("{}: {}", e.code, e.message));
        self.w = w;
        out
    }

    fn new_id(&mut self, prefix: &str) -> String {
        format!("{prefix}-{}", self.ids.hex17())
    }

    /// Moves the clock on and applies due timers.
    pub fn advance(&mut self, ms: i64) {
        self.now = self.now.plus_ms(ms);
        peering::tick(&mut self.w, self.now);
        ops::instance::tick(&mut self.w, self.now);
    }

    pub fn vpc(&mut self, cidr: &str) -> Vpc {
        self.vpc_as(A, EAST, cidr, None)
    }

    pub fn vpc_as(&mut self, acct: &str, region: &str, cidr: &str, v6: Option<&str>) -> Vpc {
        let cidr = cidr.parse().expect("cidr");
        let v6 = v6.map(|s| s.parse().expect("v6 cidr"));
        self.run(acct, region, |w, c| {
            Ok(defaults::new_vpc(w, c, cidr, v6, false, "default", vec![]))
        })
    }

    pub fn subnet(&mut self, vpc: &Vpc, cidr: &str) -> Subnet {
        self.subnet_in(vpc, cidr, "az-a")
    }

    /// A subnet in the zone named `az`.
    pub fn subnet_in(&mut self, vpc: &Vpc, cidr: &str, az: &str) -> Subnet {
        let cidr = Some(cidr.parse().expect("cidr"));
        let az = az.to_string();
        let v = vpc.clone();
        self.run(&vpc.meta.owner.clone(), &vpc.meta.region.clone(), |w, c| {
            Ok(subnet::insert_subnet(
                w,
                c,
                &v,
                cidr,
                &az,
                "az-1",
                false,
                vec![],
            ))
        })
    }

    /// An IPv6-only subnet (`Ipv6Native`) with the /64 `block`.
    pub fn ipv6_only_subnet(&mut self, vpc: &Vpc, block: &str) -> Subnet {
        let cidr = block.parse().expect("v6 cidr");
        let v = vpc.clone();
        self.run(&vpc.meta.owner.clone(), &vpc.meta.region.clone(), |w, c| {
            let mut s = subnet::insert_subnet(w, c, &v, None, "az-a", "az-1", false, vec![]);
            s.ipv6.push(Ipv6Assoc {
                assoc_id: c.new_id("subnet-cidr-assoc"),
                cidr,
                state: "associated".into(),
                pool: "Amazon".into(),
                border_group: c.region.clone(),
            });
            subnet::make_ipv6_only(&mut s);
            w.put(s.clone());
            Ok(s)
        })
    }

    /// Launches an instance into an IPv6-only subnet through the model
    /// (RunInstances) in `groups`, and waits until it runs; its `ip` is the
    /// IPv6 address it was given.
    pub fn launch_ipv6_only(&mut self, s: &Subnet, groups: &[String]) -> Inst {
        let req = ops::instance::RunInstances {
            image_id: Some("ami-0123456789abcdef0".into()),
            min_count: Some(1),
            max_count: Some(1),
            subnet_id: Some(s.meta.id.clone()),
            group_ids: groups.to_vec(),
            ..Default::default()
        };
        let i = self
            .run(&s.meta.owner.clone(), &s.meta.region.clone(), |w, c| {
                ops::instance::run(w, c, req)
            })
            .remove(0);
        self.advance(1_000);
        let e = self.w.get::<NetworkInterface>(&i.primary_eni).expect("eni");
        assert!(
            e.private_ips.is_empty(),
            "an IPv4 address in an IPv6-only subnet"
        );
        Inst {
            id: i.meta.id.clone(),
            eni: i.primary_eni.clone(),
            ip: e.ipv6.first().expect("an IPv6 address").to_string(),
        }
    }

    /// A running instance with one interface (device index 0) at `ip` in the
    /// VPC's default security group.
    pub fn instance(&mut self, s: &Subnet, ip: &str) -> Inst {
        let sg = self
            .w
            .get::<Vpc>(&s.vpc_id)
            .expect("vpc")
            .default_sg
            .clone();
        self.instance_in(s, ip, &[sg])
    }

    pub fn instance_in(&mut self, s: &Subnet, ip: &str, groups: &[String]) -> Inst {
        let id = self.new_id("i");
        let eni_id = self.new_id("eni");
        let now = self.now;
        let meta = |id: &str| Meta {
            id: id.to_string(),
            owner: s.meta.owner.clone(),
            region: s.meta.region.clone(),
            tags: vec![],
            created: now,
        };
        let inst = Instance {
            meta: meta(&id),
            reservation_id: format!("r-{}", &id[2..]),
            image_id: "ami-00000000".into(),
            instance_type: "t3.micro".into(),
            state: InstanceState::Running,
            state_since: self.now,
            transition_due: None,
            vpc_id: s.vpc_id.clone(),
            subnet_id: s.meta.id.clone(),
            az: s.az.clone(),
            primary_eni: eni_id.clone(),
            launch_index: 0,
            key_name: None,
            client_token: None,
            opts: Default::default(),
            host: None,
        };
        self.w.put(inst);
        self.eni(&id, s, ip, 0, groups);
        Inst {
            id,
            eni: eni_id,
            ip: ip.to_string(),
        }
    }

    /// An interface attached to `instance` at `index`; returns its ID.
    pub fn eni(
        &mut self,
        instance: &str,
        s: &Subnet,
        ip: &str,
        index: u32,
        groups: &[String],
    ) -> String {
        let id = if index == 0 {
            self.w
                .get::<Instance>(instance)
                .map(|i| i.primary_eni.clone())
                .expect("instance")
        } else {
            self.new_id("eni")
        };
        let e = NetworkInterface {
            meta: Meta {
                id: id.clone(),
                owner: s.meta.owner.clone(),
                region: s.meta.region.clone(),
                tags: vec![],
                created: self.now,
            },
            vpc_id: s.vpc_id.clone(),
            subnet_id: s.meta.id.clone(),
            az: s.az.clone(),
            description: String::new(),
            private_ips: vec![PrivateIp {
                ip: ip.parse().expect("ip"),
                primary: true,
            }],
            ipv6: vec![],
            groups: groups.to_vec(),
            source_dest_check: true,
            mac: "02:00:00:00:00:01".into(),
            attachment: Some(EniAttachment {
                id: format!("eni-attach-{}", &id[4..]),
                instance_id: instance.to_string(),
                device_index: index,
                delete_on_termination: true,
                attached_at: self.now,
            }),
            public_ip: None,
            interface_type: "interface".into(),
            requester_managed: false,
        };
        self.w.put(e);
        id
    }

    /// Launches an instance through the model (RunInstances) in the VPC's
    /// default group and waits until it runs.
    pub fn launch(&mut self, s: &Subnet, ip: &str, public: bool) -> Inst {
        let req = ops::instance::RunInstances {
            image_id: Some("ami-0123456789abcdef0".into()),
            min_count: Some(1),
            max_count: Some(1),
            interfaces: vec![ops::instance::IfaceSpec {
                device_index: Some(0),
                associate_public_ip: Some(public),
                delete_on_termination: Some(true),
                eni: ops::eni::EniSpec {
                    subnet_id: Some(s.meta.id.clone()),
                    private_ip: Some(ip.into()),
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..Default::default()
        };
        let i = self
            .run(&s.meta.owner.clone(), &s.meta.region.clone(), |w, c| {
                ops::instance::run(w, c, req)
            })
            .remove(0);
        self.advance(1_000);
        assert_eq!(
            self.w.get::<Instance>(&i.meta.id).map(|x| x.state),
            Some(InstanceState::Running)
        );
        Inst {
            id: i.meta.id.clone(),
            eni: i.primary_eni.clone(),
            ip: ip.to_string(),
        }
    }

    /// A public NAT gateway with a new Elastic IP, available.
    pub fn nat_gateway(&mut self, s: &Subnet) -> String {
        let (o, r) = (s.meta.owner.clone(), s.meta.region.clone());
        let a = self.run(&o, &r, |w, c| ops::eip::allocate(w, c, None, vec![]));
        let req = ops::nat::CreateNat {
            subnet_id: Some(s.meta.id.clone()),
            allocation_id: Some(a.meta.id.clone()),
            ..Default::default()
        };
        let g = self.run(&o, &r, |w, c| ops::nat::create(w, c, req));
        self.advance(1_000);
        assert_eq!(
            self.w.get::<NatGateway>(&g.meta.id).map(|x| x.state),
            Some(NatState::Available)
        );
        g.meta.id
    }

    /// A new route table associated with `s`; returns its ID.
    pub fn own_table(&mut self, s: &Subnet) -> String {
        let (o, r) = (s.meta.owner.clone(), s.meta.region.clone());
        let (vid, sid) = (s.vpc_id.clone(), s.meta.id.clone());
        let rt = self.run(&o, &r, |w, c| route::create_table(w, c, &vid, vec![]));
        let id = rt.meta.id.clone();
        self.run(&o, &r, |w, c| route::associate(w, c, &id, Some(&sid), None));
        id
    }

    pub fn set_state(&mut self, instance: &str, state: InstanceState) {
        self.w.update::<Instance>(instance, |i| i.state = state);
    }

    pub fn set_public_ip(&mut self, eni: &str, ip: Option<&str>) {
        let ip = ip.map(|s| s.parse().expect("ip"));
        self.w.update::<NetworkInterface>(eni, |e| e.public_ip = ip);
    }

    pub fn add_ipv6(&mut self, eni: &str, ip: &str) {
        let ip = ip.parse().expect("ipv6");
        self.w.update::<NetworkInterface>(eni, |e| e.ipv6.push(ip));
    }

    /// A peering from `a` (requester) to `b`, accepted and active when `accept`.
    pub fn peer(&mut self, a: &Vpc, b: &Vpc, accept: bool) -> String {
        let req = peering::CreatePeering {
            vpc_id: Some(a.meta.id.clone()),
            peer_vpc_id: Some(b.meta.id.clone()),
            peer_owner_id: Some(b.meta.owner.clone()),
            peer_region: Some(b.meta.region.clone()),
            tags: vec![],
        };
        let id = self
            .run(&a.meta.owner.clone(), &a.meta.region.clone(), |w, c| {
                peering::create(w, c, req, &|_| true)
            })
            .id;
        self.advance(1_000);
        if accept {
            self.accept(&id, b);
        }
        id
    }

    pub fn accept(&mut self, pcx: &str, b: &Vpc) {
        self.run(&b.meta.owner.clone(), &b.meta.region.clone(), |w, c| {
            peering::accept(w, c, pcx)
        });
        self.advance(1_000);
    }

    pub fn delete_peering(&mut self, pcx: &str, by: &Vpc) {
        self.run(&by.meta.owner.clone(), &by.meta.region.clone(), |w, c| {
            peering::delete(w, c, pcx)
        });
        self.advance(1_000);
    }

    /// A route in `vpc`'s main table.
    pub fn route(&mut self, vpc: &Vpc, dest: &str, spec: route::RouteSpec) {
        let rtb = self
            .w
            .get::<Vpc>(&vpc.meta.id)
            .expect("vpc")
            .main_route_table
            .clone();
        self.route_in(vpc, &rtb, dest, spec);
    }

    pub fn route_in(&mut self, vpc: &Vpc, rtb: &str, dest: &str, mut spec: route::RouteSpec) {
        if dest.contains(':') {
            spec.destination_ipv6_cidr_block = Some(dest.into());
        } else {
            spec.destination_cidr_block = Some(dest.into());
        }
        self.run(&vpc.meta.owner.clone(), &vpc.meta.region.clone(), |w, c| {
            route::create_route(w, c, rtb, &spec)
        });
    }

    pub fn route_to_pcx(&mut self, vpc: &Vpc, dest: &str, pcx: &str) {
        self.route(
            vpc,
            dest,
            route::RouteSpec {
                vpc_peering_connection_id: Some(pcx.into()),
                ..Default::default()
            },
        );
    }

    /// An internet gateway attached to `vpc` with `0.0.0.0/0` (and `::/0`) to it in the main table.
    pub fn igw(&mut self, vpc: &Vpc) -> String {
        let (o, r) = (vpc.meta.owner.clone(), vpc.meta.region.clone());
        let g = self.run(&o, &r, |w, c| ops::igw::create(w, c, vec![]));
        let vid = vpc.meta.id.clone();
        let gid = g.meta.id.clone();
        self.run(&o, &r, |w, c| ops::igw::attach(w, c, &gid, &vid));
        self.route(
            vpc,
            "0.0.0.0/0",
            route::RouteSpec {
                gateway_id: Some(g.meta.id.clone()),
                ..Default::default()
            },
        );
        g.meta.id
    }

    /// Authorises one rule: `peer` is a CIDR or a group ID.
    pub fn allow(
        &mut self,
        group: &str,
        egress: bool,
        proto: &str,
        ports: Option<(i64, i64)>,
        peer: &str,
    ) {
        let g = self.w.get::<SecurityGroup>(group).expect("group").clone();
        let mut p = sg::Permission {
            protocol: Some(proto.into()),
            from_port: ports.map(|p| p.0),
            to_port: ports.map(|p| p.1),
            ..Default::default()
        };
        if peer.starts_with("sg-") {
            let owner = self
                .w
                .get::<SecurityGroup>(peer)
                .map(|x| x.meta.owner.clone());
            p.groups.push(sg::PairSpec {
                group_id: Some(peer.into()),
                user_id: owner,
                ..Default::default()
            });
        } else if peer.contains(':') {
            p.ipv6.push(sg::Source {
                value: peer.into(),
                description: None,
            });
        } else {
            p.ipv4.push(sg::Source {
                value: peer.into(),
                description: None,
            });
        }
        self.run(&g.meta.owner, &g.meta.region, |w, c| {
            sg::authorize(w, c, group, egress, &[p], vec![])
        });
    }

    pub fn revoke_all_ingress(&mut self, group: &str) {
        self.w.update::<SecurityGroup>(group, |g| g.ingress.clear());
    }

    /// Adds an ACL entry to the ACL of `subnet`.
    #[allow(clippy::too_many_arguments)]
    pub fn acl_entry(
        &mut self,
        s: &Subnet,
        n: i64,
        proto: &str,
        action: &str,
        egress: bool,
        cidr: &str,
        ports: Option<(i64, i64)>,
        icmp: Option<(i64, i64)>,
    ) {
        let a = acl::acl_for_subnet(&self.w, &s.meta.id)
            .expect("acl")
            .meta
            .id
            .clone();
        let mut spec = acl::EntrySpec {
            rule_number: Some(n),
            protocol: Some(proto.into()),
            rule_action: Some(action.into()),
            egress,
            port_from: ports.map(|p| p.0),
            port_to: ports.map(|p| p.1),
            icmp_type: icmp.map(|p| p.0),
            icmp_code: icmp.map(|p| p.1),
            ..Default::default()
        };
        if cidr.contains(':') {
            spec.ipv6_cidr_block = Some(cidr.into());
        } else {
            spec.cidr_block = Some(cidr.into());
        }
        self.run(&s.meta.owner.clone(), &s.meta.region.clone(), |w, c| {
            acl::create_entry(w, c, &a, &spec)
        });
    }

    pub fn default_sg(&self, vpc: &Vpc) -> String {
        self.w
            .get::<Vpc>(&vpc.meta.id)
            .expect("vpc")
            .default_sg
            .clone()
    }

    pub fn main_rtb(&self, vpc: &Vpc) -> String {
        self.w
            .get::<Vpc>(&vpc.meta.id)
            .expect("vpc")
            .main_route_table
            .clone()
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}
