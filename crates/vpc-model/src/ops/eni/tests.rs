use super::*;
use crate::ops::fixture::Fixture;
use crate::ops::{instance, subnet::CreateSubnet};

const A: &str = "111111111111";
const B: &str = "222222222222";

impl Fixture {
    fn subnet(&mut self, account: &str, vpc: &str, cidr: &str, az: &str) -> Subnet {
        self.run(account, |w, ctx| {
            subnet::create_subnet(
                w,
                ctx,
                CreateSubnet {
                    vpc_id: Some(vpc.into()),
                    cidr_block: Some(cidr.into()),
                    availability_zone: Some(az.into()),
                    ..CreateSubnet::default()
                },
            )
            .unwrap()
        })
    }

    fn eni(&mut self, account: &str, spec: EniSpec) -> Result<NetworkInterface> {
        self.run(account, |w, ctx| create(w, ctx, spec))
    }
}

fn in_subnet(s: &Subnet) -> EniSpec {
    EniSpec {
        subnet_id: Some(s.meta.id.clone()),
        ..EniSpec::default()
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn lowest_free_skips_reserved_and_taken() {
    let mut t = Fixture::with_two_zones();
    let v = t.vpc(A, "10.0.0.0/16");
    let s = t.subnet(A, &v.meta.id, "10.0.1.0/28", "us-east-1a");
    let e1 = t.eni(A, in_subnet(&s)).unwrap();
    assert_eq!(e1.primary_ip(), Some(ip("10.0.1.4")));
    assert_eq!(e1.status(), "available");
    assert_eq!(e1.groups, vec![v.default_sg.clone()]);
    assert!(e1.mac.starts_with("02:"));
    assert!(e1.source_dest_check);
    let e2 = t.eni(A, in_subnet(&s)).unwrap();
    assert_eq!(e2.primary_ip(), Some(ip("10.0.1.5")));
    assert_ne!(e1.mac, e2.mac);
    // A specific address, then the gap below it is still used first.
    let e3 = t
        .eni(
            A,
            EniSpec {
                private_ip: Some("10.0.1.9".into()),
                secondary_count: Some(2),
                ..in_subnet(&s)
            },
        )
        .unwrap();
    assert_eq!(
        e3.private_ips.iter().map(|p| p.ip).collect::<Vec<_>>(),
        vec![ip("10.0.1.9"), ip("10.0.1.6"), ip("10.0.1.7")]
    );
    assert_eq!(subnet::available_ips(&t.w, &s), 11 - 5);
    // Reserved, outside, taken, malformed.
    for (a, code) in [
        ("10.0.1.3", "InvalidParameterValue"),
        ("10.0.1.15", "InvalidParameterValue"),
        ("10.0.2.4", "InvalidParameterValue"),
        ("10.0.1.9", "InvalidIPAddress.InUse"),
        ("10.0.1.x", "InvalidParameterValue"),
    ] {
        let e = t
            .eni(
                A,
                EniSpec {
                    private_ip: Some(a.into()),
                    ..in_subnet(&s)
                },
            )
            .unwrap_err();
        assert_eq!(e.code, code, "{a}");
    }
    let e = t
        .eni(
            A,
            EniSpec {
                private_ip: Some("10.0.1.9".into()),
                ..in_subnet(&s)
            },
        )
        .unwrap_err();
    assert_eq!(e.message, "Address 10.0.1.9 is in use.");
    // Fill the subnet: 11 usable, 5 taken, 6 left.
    for _ in 0..6 {
        t.eni(A, in_subnet(&s)).unwrap();
    }
    assert_eq!(subnet::available_ips(&t.w, &s), 0);
    assert_eq!(
        t.eni(A, in_subnet(&s)).unwrap_err().code,
        "InsufficientFreeAddressesInSubnet"
    );
    // Deleting one frees its address for the next.
    t.run(A, |w, ctx| delete(w, ctx, &e2.meta.id)).unwrap();
    assert_eq!(
        t.eni(A, in_subnet(&s)).unwrap().primary_ip(),
        Some(ip("10.0.1.5"))
    );
}

#[test]
fn private_ip_lists_and_limits() {
    let mut t = Fixture::with_two_zones();
    let v = t.vpc(A, "10.0.0.0/16");
    let s = t.subnet(A, &v.meta.id, "10.0.1.0/24", "us-east-1a");
    let e = t
        .eni(
            A,
            EniSpec {
                private_ips: vec![("10.0.1.20".into(), false), ("10.0.1.21".into(), true)],
                ..in_subnet(&s)
            },
        )
        .unwrap();
    assert_eq!(e.primary_ip(), Some(ip("10.0.1.21")));
    assert_eq!(e.private_ips[1].ip, ip("10.0.1.20"));
    assert!(!e.private_ips[1].primary);
    let two_primaries = EniSpec {
        private_ip: Some("10.0.1.30".into()),
        private_ips: vec![("10.0.1.31".into(), true)],
        ..in_subnet(&s)
    };
    assert_eq!(
        t.eni(A, two_primaries).unwrap_err().code,
        "InvalidParameterCombination"
    );
    let dup = EniSpec {
        private_ip: Some("10.0.1.30".into()),
        private_ips: vec![("10.0.1.30".into(), false), ("10.0.1.30".into(), false)],
        ..in_subnet(&s)
    };
    assert_eq!(t.eni(A, dup).unwrap_err().code, "InvalidParameterValue");
    t.limits.private_ips_per_eni = 3;
    let many = EniSpec {
        secondary_count: Some(3),
        ..in_subnet(&s)
    };
    assert_eq!(
        t.eni(A, many).unwrap_err().code,
        "PrivateIpAddressLimitExceeded"
    );
    let neg = EniSpec {
        secondary_count: Some(-1),
        ..in_subnet(&s)
    };
    assert_eq!(t.eni(A, neg).unwrap_err().code, "InvalidParameterValue");
}

#[test]
fn ipv6_addresses() {
    let mut t = Fixture::with_two_zones();
    let v = t.vpc(A, "10.0.0.0/16");
    let s = t.subnet(A, &v.meta.id, "10.0.1.0/24", "us-east-1a");
    assert_eq!(
        t.eni(
            A,
            EniSpec {
                ipv6_count: Some(1),
                ..in_subnet(&s)
            }
        )
        .unwrap_err()
        .code,
        "InvalidParameterValue"
    );
    // Give the subnet a /64 by hand (the VPC has no IPv6 block in this test).
    let block: Ipv6Net = "2600:1f18:0:1::/64".parse().unwrap();
    t.w.update::<Subnet>(&s.meta.id, |s| {
        s.ipv6.push(Ipv6Assoc {
            assoc_id: "subnet-cidr-assoc-1".into(),
            cidr: block,
            state: "associated".into(),
            pool: "Amazon".into(),
            border_group: "us-east-1".into(),
        })
    });
    let s = t.w.get::<Subnet>(&s.meta.id).unwrap().clone();
    let e = t
        .eni(
            A,
            EniSpec {
                ipv6_count: Some(2),
                ..in_subnet(&s)
            },
        )
        .unwrap();
    assert_eq!(
        e.ipv6,
        vec![
            "2600:1f18:0:1::4".parse::<Ipv6Addr>().unwrap(),
            "2600:1f18:0:1::5".parse().unwrap()
        ]
    );
    let e = t
        .eni(
            A,
            EniSpec {
                ipv6: vec!["2600:1f18:0:1::4".into()],
                ..in_subnet(&s)
            },
        )
        .unwrap_err();
    assert_eq!(e.code, "InvalidIPAddress.InUse");
    let e = t
        .eni(
            A,
            EniSpec {
                ipv6: vec!["2600:1f18:0:2::4".into()],
                ..in_subnet(&s)
            },
        )
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    let both = EniSpec {
        ipv6: vec!["2600:1f18:0:1::9".into()],
        ipv6_count: Some(1),
        ..in_subnet(&s)
    };
    assert_eq!(
        t.eni(A, both).unwrap_err().code,
        "InvalidParameterCombination"
    );
    // AssignIpv6AddressOnCreation gives one automatically.
    t.w.update::<Subnet>(&s.meta.id, |s| s.assign_ipv6 = true);
    let e = t.eni(A, in_subnet(&s)).unwrap();
    assert_eq!(
        e.ipv6,
        vec!["2600:1f18:0:1::6".parse::<Ipv6Addr>().unwrap()]
    );
}

#[test]
fn groups_defaults_and_checks() {
    let mut t = Fixture::with_two_zones();
    let v = t.vpc(A, "10.0.0.0/16");
    let v2 = t.vpc(A, "10.1.0.0/16");
    let s = t.subnet(A, &v.meta.id, "10.0.1.0/24", "us-east-1a");
    let e = t
        .eni(
            A,
            EniSpec {
                group_ids: vec![v2.default_sg.clone()],
                ..in_subnet(&s)
            },
        )
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameter");
    assert_eq!(
        e.message,
        format!(
            "Security group {} and subnet {} belong to different networks.",
            v2.default_sg, s.meta.id
        )
    );
    let e = t
        .eni(
            A,
            EniSpec {
                group_ids: vec!["sg-00000000000000abc".into()],
                ..in_subnet(&s)
            },
        )
        .unwrap_err();
    assert_eq!(e.code, "InvalidGroup.NotFound");
    // Quota: 5 by default, 6 fails; duplicates count once.
    let mut gs = Vec::new();
    for i in 0..6 {
        let g = t.run(A, |w, ctx| {
            super::super::sg::create_group(
                w,
                ctx,
                super::super::sg::CreateGroup {
                    name: Some(format!("g{i}")),
                    description: Some("d".into()),
                    vpc_id: Some(v.meta.id.clone()),
                    tags: vec![],
                },
            )
            .unwrap()
        });
        gs.push(g.meta.id);
    }
    let mut five = gs[..5].to_vec();
    five.push(gs[0].clone());
    let e = t
        .eni(
            A,
            EniSpec {
                group_ids: five,
                ..in_subnet(&s)
            },
        )
        .unwrap();
    assert_eq!(e.groups.len(), 5);
    let err = t
        .eni(
            A,
            EniSpec {
                group_ids: gs.clone(),
                ..in_subnet(&s)
            },
        )
        .unwrap_err();
    assert_eq!(err.code, "SecurityGroupsPerInterfaceLimitExceeded");
    // Modify: groups, then one attribute at a time.
    t.run(A, |w, ctx| {
        modify_attribute(
            w,
            ctx,
            &e.meta.id,
            EniChange {
                groups: Some(vec![gs[5].clone()]),
                ..EniChange::default()
            },
        )
    })
    .unwrap();
    assert_eq!(
        t.w.get::<NetworkInterface>(&e.meta.id).unwrap().groups,
        vec![gs[5].clone()]
    );
    let two = EniChange {
        source_dest_check: Some(false),
        description: Some("x".into()),
        ..EniChange::default()
    };
    assert_eq!(
        t.run(A, |w, ctx| modify_attribute(w, ctx, &e.meta.id, two))
            .unwrap_err()
            .code,
        "InvalidParameterCombination"
    );
    t.run(A, |w, ctx| {
        modify_attribute(
            w,
            ctx,
            &e.meta.id,
            EniChange {
                source_dest_check: Some(false),
                ..EniChange::default()
            },
        )
    })
    .unwrap();
    assert!(
        !t.w.get::<NetworkInterface>(&e.meta.id)
            .unwrap()
            .source_dest_check
    );
    // Another account sees nothing.
    let id = e.meta.id.clone();
    let err = t.run(B, |w, ctx| delete(w, ctx, &id)).unwrap_err();
    assert_eq!(err.code, "InvalidNetworkInterfaceID.NotFound");
    assert_eq!(
        err.message,
        format!("The networkInterface ID '{id}' does not exist")
    );
    assert_eq!(
        t.run(A, |w, ctx| delete(w, ctx, "zz")).unwrap_err().code,
        "InvalidNetworkInterfaceID.Malformed"
    );
}

#[test]
fn attach_detach_and_views() {
    let mut t = Fixture::with_two_zones();
    let v = t.vpc(A, "10.0.0.0/16");
    let s = t.subnet(A, &v.meta.id, "10.0.1.0/24", "us-east-1a");
    let sb = t.subnet(A, &v.meta.id, "10.0.2.0/24", "us-east-1b");
    let inst = t
        .run(A, |w, ctx| {
            instance::run(
                w,
                ctx,
                instance::RunInstances {
                    image_id: Some("ami-12345678".into()),
                    min_count: Some(1),
                    max_count: Some(1),
                    subnet_id: Some(s.meta.id.clone()),
                    ..instance::RunInstances::default()
                },
            )
        })
        .unwrap()
        .remove(0);
    let primary =
        t.w.get::<NetworkInterface>(&inst.primary_eni)
            .unwrap()
            .clone();
    assert!(is_realized(&t.w, &primary));
    assert_eq!(instance_of(&t.w, &primary).unwrap().meta.id, inst.meta.id);
    assert_eq!(enis_of_vpc(&t.w, &v.meta.id).count(), 1);
    let e = t.eni(A, in_subnet(&s)).unwrap();
    assert!(!is_realized(&t.w, &e));
    let other_az = t.eni(A, in_subnet(&sb)).unwrap();
    let att = |t: &mut Fixture, eni: &str, idx: i64| {
        let (eni, i) = (eni.to_string(), inst.meta.id.clone());
        t.run(A, |w, ctx| attach(w, ctx, &eni, &i, Some(idx)))
    };
    assert_eq!(
        att(&mut t, &e.meta.id, 0).unwrap_err().code,
        "InvalidParameterValue"
    );
    assert_eq!(
        att(&mut t, &other_az.meta.id, 1).unwrap_err().code,
        "InvalidParameterCombination"
    );
    let a = att(&mut t, &e.meta.id, 1).unwrap();
    assert!(a.starts_with("eni-attach-"));
    assert_eq!(
        att(&mut t, &e.meta.id, 2).unwrap_err().code,
        "InvalidNetworkInterface.InUse"
    );
    let e2 = t.w.get::<NetworkInterface>(&e.meta.id).unwrap().clone();
    assert_eq!(e2.status(), "in-use");
    assert!(is_realized(&t.w, &e2));
    assert_eq!(enis_of_instance(&t.w, &inst.meta.id).len(), 2);
    // In use: cannot delete.
    let id = e.meta.id.clone();
    assert_eq!(
        t.run(A, |w, ctx| delete(w, ctx, &id)).unwrap_err().code,
        "InvalidNetworkInterface.InUse"
    );
    // The primary cannot be detached.
    let pa = primary.attachment.clone().unwrap().id;
    assert_eq!(
        t.run(A, |w, ctx| detach(w, ctx, &pa)).unwrap_err().code,
        "OperationNotPermitted"
    );
    assert_eq!(
        t.run(A, |w, ctx| detach(w, ctx, "eni-attach-00000000000000001"))
            .unwrap_err()
            .code,
        "InvalidAttachmentID.NotFound"
    );
    // Attachment attribute.
    let a2 = a.clone();
    t.run(A, |w, ctx| {
        modify_attribute(
            w,
            ctx,
            &id,
            EniChange {
                attachment: Some((a2, Some(true))),
                ..EniChange::default()
            },
        )
    })
    .unwrap();
    assert!(
        t.w.get::<NetworkInterface>(&id)
            .unwrap()
            .attachment
            .as_ref()
            .unwrap()
            .delete_on_termination
    );
    t.run(A, |w, ctx| detach(w, ctx, &a)).unwrap();
    t.run(A, |w, ctx| delete(w, ctx, &id)).unwrap();
    assert!(t.w.get::<NetworkInterface>(&id).is_none());
}

#[test]
fn dns_names() {
    assert_eq!(
        private_dns_name("us-east-1", ip("10.0.0.5")),
        "ip-10-0-0-5.ec2.internal"
    );
    assert_eq!(
        private_dns_name("eu-west-1", ip("10.0.0.5")),
        "ip-10-0-0-5.eu-west-1.compute.internal"
    );
    assert_eq!(
        public_dns_name("us-east-1", ip("198.18.0.1")),
        "ec2-198-18-0-1.compute-1.amazonaws.com"
    );
    assert_eq!(
        public_dns_name("eu-west-1", ip("198.18.0.1")),
        "ec2-198-18-0-1.eu-west-1.compute.amazonaws.com"
    );
}
