//! IPv6-only (`Ipv6Native`) subnets: creation rules, attributes, and what
//! interfaces and instances launched into them get.

use super::*;
use crate::ctx::{Limits, SeqIds, Timestamp};
use crate::ops::{eni, hostname, instance, vpc};
use std::net::Ipv6Addr;

const A: &str = "111111111111";

struct T {
    w: World,
    ids: SeqIds,
    limits: Limits,
    now: Timestamp,
    zones: Vec<(String, String)>,
}

impl T {
    fn new() -> T {
        T {
            w: World::default(),
            ids: SeqIds(0),
            limits: Limits::default(),
            now: Timestamp(1_000_000),
            zones: vec![("us-east-1a".into(), "use1-az1".into())],
        }
    }

    fn run<R>(&mut self, f: impl FnOnce(&mut World, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx {
            account: A.into(),
            region: "us-east-1".into(),
            now: self.now,
            ids: &mut self.ids,
            limits: &self.limits,
            zones: &self.zones,
        };
        f(&mut self.w, &mut ctx)
    }

    fn advance(&mut self) {
        self.now = self
            .now
            .plus_ms(self.limits.instance_transition_ms.max(1) * 10);
        crate::ops::tick(&mut self.w, self.now);
    }

    /// A dual-stack VPC; its IPv6 block and the /64 at index `n` of it.
    fn vpc(&mut self) -> (Vpc, Ipv6Net) {
        let v = self.run(|w, ctx| {
            vpc::create_vpc(
                w,
                ctx,
                vpc::CreateVpc {
                    cidr_block: Some("10.0.0.0/16".into()),
                    amazon_ipv6: true,
                    ..vpc::CreateVpc::default()
                },
            )
            .unwrap()
        });
        self.advance();
        let v = self.w.get::<Vpc>(&v.meta.id).unwrap().clone();
        let block = v.v6_blocks().next().expect("an IPv6 block");
        (v, block)
    }

    fn create(&mut self, req: CreateSubnet) -> Result<Subnet> {
        self.run(|w, ctx| create_subnet(w, ctx, req))
    }
}

fn sixty_four(block: &Ipv6Net, n: u128) -> String {
    let base = u128::from(block.network()) + (n << 64);
    format!("{}/64", Ipv6Addr::from(base))
}

fn native(v: &Vpc, v6: Option<String>, v4: Option<&str>) -> CreateSubnet {
    CreateSubnet {
        vpc_id: Some(v.meta.id.clone()),
        cidr_block: v4.map(str::to_string),
        ipv6_cidr_block: v6,
        ipv6_native: true,
        ..CreateSubnet::default()
    }
}

fn launch(t: &mut T, subnet: &str, itype: &str) -> Result<Vec<Instance>> {
    t.run(|w, ctx| {
        instance::run(
            w,
            ctx,
            instance::RunInstances {
                image_id: Some("ami-0123456789abcdef0".into()),
                instance_type: Some(itype.into()),
                min_count: Some(1),
                max_count: Some(1),
                subnet_id: Some(subnet.into()),
                ..instance::RunInstances::default()
            },
        )
    })
}

#[test]
fn an_ipv6_only_subnet_has_no_ipv4_block_and_resource_name_hostnames() {
    let mut t = T::new();
    let (v, block) = t.vpc();
    let s = t
        .create(native(&v, Some(sixty_four(&block, 1)), None))
        .unwrap();
    assert!(s.ipv6_native);
    assert_eq!(s.cidr, None);
    assert!(s.assign_ipv6);
    assert!(!s.map_public_ip);
    assert_eq!(
        s.private_dns_on_launch.hostname_type,
        HostnameType::ResourceName
    );
    assert_eq!(available_ips(&t.w, &s), 0);
    // A dual-stack subnet beside it may use any IPv4 block: the IPv6-only
    // one holds none. Its IPv6 block still conflicts.
    let d = t
        .create(CreateSubnet {
            vpc_id: Some(v.meta.id.clone()),
            cidr_block: Some("10.0.0.0/24".into()),
            ipv6_cidr_block: Some(sixty_four(&block, 2)),
            ..CreateSubnet::default()
        })
        .unwrap();
    assert!(!d.ipv6_native);
    let e = t
        .create(native(&v, Some(sixty_four(&block, 1)), None))
        .unwrap_err();
    assert_eq!(e.code, "InvalidSubnet.Conflict");
}

#[test]
fn wrong_combinations_get_aws_errors() {
    let mut t = T::new();
    let (v, block) = t.vpc();
    let e = t.create(native(&v, None, None)).unwrap_err();
    assert_eq!(e.code, "MissingParameter");
    assert_eq!(
        e.message,
        "Either 'ipv6CidrBlock' or 'ipv6IpamPoolId' should be provided."
    );
    let e = t
        .create(native(&v, Some(sixty_four(&block, 1)), Some("10.0.1.0/24")))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterCombination");
    assert!(
        e.message.contains("you cannot set ipv6Native to true"),
        "{e}"
    );
    let e = t
        .create(native(&v, Some("2001:db8::/64".into()), None))
        .unwrap_err();
    assert_eq!(e.code, "InvalidSubnet.Range");
    // Nothing was created by the refusals.
    assert_eq!(t.w.iter::<Subnet>().count(), 0);
}

#[test]
fn attributes_that_need_ipv4_are_refused_on_an_ipv6_only_subnet() {
    let mut t = T::new();
    let (v, block) = t.vpc();
    let s = t
        .create(native(&v, Some(sixty_four(&block, 1)), None))
        .unwrap();
    let id = s.meta.id.clone();
    for (map, assign) in [(Some(true), None), (None, Some(false))] {
        let e = t
            .run(|w, ctx| modify_attribute(w, ctx, &id, map, assign))
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue", "{e}");
    }
    let ip_name = hostname::PrivateDnsChange {
        hostname_type: Some("ip-name".into()),
        ..Default::default()
    };
    let e = t
        .run(|w, ctx| hostname::modify_subnet(w, ctx, &id, &ip_name))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(e.message.contains("'ip-name'"), "{e}");
    let a_record = hostname::PrivateDnsChange {
        resource_name_a: Some(true),
        ..Default::default()
    };
    let e = t
        .run(|w, ctx| hostname::modify_subnet(w, ctx, &id, &a_record))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    // The AAAA flag is what such a subnet uses.
    let aaaa = hostname::PrivateDnsChange {
        resource_name_aaaa: Some(true),
        ..Default::default()
    };
    t.run(|w, ctx| hostname::modify_subnet(w, ctx, &id, &aaaa))
        .unwrap();
    assert!(
        t.w.get::<Subnet>(&id)
            .unwrap()
            .private_dns_on_launch
            .resource_name_aaaa
    );
    // Its only IPv6 block cannot go.
    let assoc = s.ipv6[0].assoc_id.clone();
    let e = t
        .run(|w, ctx| disassociate_ipv6(w, ctx, &assoc))
        .unwrap_err();
    assert_eq!(e.code, "OperationNotPermitted");
    assert_eq!(t.w.get::<Subnet>(&id).unwrap().ipv6.len(), 1);
}

#[test]
fn an_instance_gets_only_an_ipv6_address_and_a_resource_name() {
    let mut t = T::new();
    let (v, block) = t.vpc();
    let s = t
        .create(native(&v, Some(sixty_four(&block, 1)), None))
        .unwrap();
    let aaaa = hostname::PrivateDnsChange {
        resource_name_aaaa: Some(true),
        ..Default::default()
    };
    t.run(|w, ctx| hostname::modify_subnet(w, ctx, &s.meta.id, &aaaa))
        .unwrap();
    let i = launch(&mut t, &s.meta.id, "t3.micro").unwrap().remove(0);
    let e = t.w.get::<NetworkInterface>(&i.primary_eni).unwrap().clone();
    assert!(e.private_ips.is_empty());
    assert_eq!(e.primary_ip(), None);
    assert_eq!(e.ipv6.len(), 1);
    assert!(s.ipv6[0].cidr.contains(&e.ipv6[0]));
    assert_eq!(eni::public_ip_of(&t.w, &e), None);
    assert_eq!(
        hostname::private_dns_name_of(&t.w, &i),
        hostname::resource_name("us-east-1", &i.meta.id)
    );
    assert_eq!(
        hostname::resource_name_records(&t.w, &i),
        (None, Some(e.ipv6[0]))
    );
    // A second instance gets the next address.
    let j = launch(&mut t, &s.meta.id, "m5.large").unwrap().remove(0);
    let f = t.w.get::<NetworkInterface>(&j.primary_eni).unwrap();
    assert_ne!(f.ipv6[0], e.ipv6[0]);
}

#[test]
fn launches_that_need_ipv4_or_xen_are_refused() {
    let mut t = T::new();
    let (v, block) = t.vpc();
    let s = t
        .create(native(&v, Some(sixty_four(&block, 1)), None))
        .unwrap();
    let e = launch(&mut t, &s.meta.id, "t2.micro").unwrap_err();
    assert_eq!(e.code, "UnsupportedOperation");
    assert!(e.message.contains("t2.micro"), "{e}");
    let mut req = instance::RunInstances {
        image_id: Some("ami-0123456789abcdef0".into()),
        instance_type: Some("t3.micro".into()),
        min_count: Some(1),
        max_count: Some(1),
        subnet_id: Some(s.meta.id.clone()),
        private_ip: Some("10.0.1.10".into()),
        ..instance::RunInstances::default()
    };
    let e = t
        .run(|w, ctx| instance::run(w, ctx, req.clone()))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(e.message.contains("IPv6-only"), "{e}");
    req.private_ip = None;
    req.ipv6_count = Some(0);
    let e = t
        .run(|w, ctx| instance::run(w, ctx, req.clone()))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    req.ipv6_count = None;
    req.private_dns.hostname_type = Some("ip-name".into());
    let e = t
        .run(|w, ctx| instance::run(w, ctx, req.clone()))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    assert_eq!(t.w.iter::<Instance>().count(), 0);
    assert_eq!(t.w.iter::<NetworkInterface>().count(), 0);
    // A NAT gateway needs IPv4.
    let e = t
        .run(|w, ctx| {
            crate::ops::nat::create(
                w,
                ctx,
                crate::ops::nat::CreateNat {
                    subnet_id: Some(s.meta.id.clone()),
                    connectivity: Some("private".into()),
                    ..Default::default()
                },
            )
        })
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
}

#[test]
fn dhcpv6_gives_ipv6_only_instances_the_ipv6_resolver_only() {
    use crate::ops::{dhcp, dns};
    let mut t = T::new();
    let (v, _) = t.vpc();
    let set = t
        .run(|w, ctx| {
            dhcp::create(
                w,
                ctx,
                vec![crate::DhcpOption {
                    key: "domain-name-servers".into(),
                    values: vec![
                        "AmazonProvidedDNS".into(),
                        "10.0.0.53".into(),
                        "2001:db8::53".into(),
                    ],
                }],
                vec![],
            )
        })
        .unwrap();
    let vid = v.meta.id.clone();
    t.run(|w, ctx| dhcp::associate(w, ctx, &set.meta.id, &vid))
        .unwrap();
    let v = t.w.get::<Vpc>(&vid).unwrap().clone();
    let dual = dhcp::resolver_config(&t.w, &v, false).nameservers;
    assert_eq!(
        dual,
        vec![
            std::net::IpAddr::V4(dns::resolver_ip(&v)),
            "10.0.0.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap()
        ]
    );
    let only = dhcp::resolver_config(&t.w, &v, true).nameservers;
    assert_eq!(
        only,
        vec![
            std::net::IpAddr::V6(dns::IPV6_RESOLVER),
            "2001:db8::53".parse().unwrap()
        ]
    );
    assert!(dhcp::resolv_conf(&t.w, &v, true).contains("nameserver fd00:ec2::253\n"));
}

#[test]
fn an_interface_in_an_ipv6_only_subnet_takes_no_ipv4_address_later_either() {
    let mut t = T::new();
    let (v, block) = t.vpc();
    let s = t
        .create(native(&v, Some(sixty_four(&block, 1)), None))
        .unwrap();
    let i = launch(&mut t, &s.meta.id, "t3.micro").unwrap().remove(0);
    let eni_id = i.primary_eni.clone();
    let e = t
        .run(|w, ctx| eni::assign_private_ips(w, ctx, &eni_id, &[], Some(1), false))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    let e = t
        .run(|w, ctx| eni::assign_private_ips(w, ctx, &eni_id, &["10.0.1.10".into()], None, false))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(t
        .w
        .get::<NetworkInterface>(&eni_id)
        .unwrap()
        .private_ips
        .is_empty());
}
