use super::*;
use crate::ops::fixture::Fixture;
use crate::ops::{defaults, eip, route, vpc};

const A: &str = "111111111111";
const B: &str = "222222222222";

impl Fixture {
    fn step(&mut self) {
        self.advance(self.limits.instance_transition_ms);
    }

    fn init(&mut self, account: &str) -> Vpc {
        self.run(account, |w, ctx| {
            defaults::ensure_region(w, ctx).unwrap();
            let id = sg::default_vpc(w, ctx).unwrap();
            w.get::<Vpc>(&id).unwrap().clone()
        })
    }

    fn vpc_subnet(&mut self, account: &str, cidr: &str, sub: &str) -> (Vpc, Subnet) {
        self.run(account, |w, ctx| {
            let v = vpc::create_vpc(
                w,
                ctx,
                vpc::CreateVpc {
                    cidr_block: Some(cidr.into()),
                    ..vpc::CreateVpc::default()
                },
            )
            .unwrap();
            let s = subnet::create_subnet(
                w,
                ctx,
                subnet::CreateSubnet {
                    vpc_id: Some(v.meta.id.clone()),
                    cidr_block: Some(sub.into()),
                    availability_zone: Some("us-east-1a".into()),
                    ..subnet::CreateSubnet::default()
                },
            )
            .unwrap();
            (v, s)
        })
    }

    fn launch(&mut self, account: &str, req: RunInstances) -> Result<Vec<Instance>> {
        self.run(account, |w, ctx| run(w, ctx, req))
    }

    fn inst(&self, id: &str) -> &Instance {
        self.w.get::<Instance>(id).unwrap()
    }

    fn interface(&self, id: &str) -> &NetworkInterface {
        self.w.get::<NetworkInterface>(id).unwrap()
    }
}

fn base(subnet: Option<&str>) -> RunInstances {
    RunInstances {
        image_id: Some("ami-0123456789abcdef0".into()),
        min_count: Some(1),
        max_count: Some(1),
        subnet_id: subnet.map(str::to_string),
        ..RunInstances::default()
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn launch_in_default_vpc() {
    let mut t = Fixture::with_two_zones();
    let dv = t.init(A);
    let v = t.launch(A, base(None)).unwrap();
    assert_eq!(v.len(), 1);
    let i = &v[0];
    assert!(i.meta.id.starts_with("i-"));
    assert!(i.reservation_id.starts_with("r-"));
    assert_eq!(i.state, InstanceState::Pending);
    assert_eq!(i.instance_type, "t3.micro");
    assert_eq!(i.vpc_id, dv.meta.id);
    assert_eq!(i.az, "us-east-1a");
    let e = t.interface(&i.primary_eni).clone();
    assert_eq!(e.subnet_id, i.subnet_id);
    assert_eq!(e.primary_ip(), Some(ip("172.31.0.4")));
    assert_eq!(e.groups, vec![dv.default_sg.clone()]);
    // Default subnets map public IPs on launch.
    assert_eq!(e.public_ip, Some(ip("198.18.0.1")));
    let a = e.attachment.clone().unwrap();
    assert_eq!(a.device_index, 0);
    assert!(a.delete_on_termination);
    assert_eq!(a.instance_id, i.meta.id);
    // Placement picks the zone's default subnet.
    let v2 = t
        .launch(
            A,
            RunInstances {
                availability_zone: Some("us-east-1b".into()),
                ..base(None)
            },
        )
        .unwrap();
    assert_eq!(v2[0].az, "us-east-1b");
    assert_eq!(
        t.interface(&v2[0].primary_eni).primary_ip(),
        Some(ip("172.31.16.4"))
    );
    // Timers: pending → running.
    assert_eq!(next_deadline(&t.w), i.transition_due);
    t.step();
    assert_eq!(t.inst(&i.meta.id).state, InstanceState::Running);
    assert_eq!(next_deadline(&t.w), None);
}

#[test]
fn no_default_vpc_and_bad_parameters() {
    let mut t = Fixture::with_two_zones();
    assert_eq!(
        t.launch(A, base(None)).unwrap_err().code,
        "VPCIdNotSpecified"
    );
    let (_v, s) = t.vpc_subnet(A, "10.0.0.0/16", "10.0.1.0/24");
    let sid = Some(s.meta.id.as_str());
    for (req, code) in [
        (
            RunInstances {
                image_id: Some("ami-xyz".into()),
                ..base(sid)
            },
            "InvalidAMIID.Malformed",
        ),
        (
            RunInstances {
                image_id: None,
                ..base(sid)
            },
            "MissingParameter",
        ),
        (
            RunInstances {
                max_count: None,
                ..base(sid)
            },
            "MissingParameter",
        ),
        (
            RunInstances {
                min_count: Some(2),
                ..base(sid)
            },
            "InvalidParameterValue",
        ),
        (
            RunInstances {
                instance_type: Some("bogus".into()),
                ..base(sid)
            },
            "InvalidParameterValue",
        ),
        (
            RunInstances {
                subnet_id: Some("subnet-00000000000000abc".into()),
                ..base(sid)
            },
            "InvalidSubnetID.NotFound",
        ),
        (
            RunInstances {
                min_count: Some(21),
                max_count: Some(30),
                ..base(sid)
            },
            "InstanceLimitExceeded",
        ),
    ] {
        assert_eq!(t.launch(A, req).unwrap_err().code, code);
    }
    // Another account's subnet is not found.
    assert_eq!(
        t.launch(B, base(sid)).unwrap_err().code,
        "InvalidSubnetID.NotFound"
    );
}

#[test]
fn counts_addresses_and_capacity() {
    let mut t = Fixture::with_two_zones();
    let (_v, s) = t.vpc_subnet(A, "10.0.0.0/16", "10.0.1.0/28");
    let sid = Some(s.meta.id.as_str());
    // MaxCount 30: capped at 11 by the subnet's free addresses, MinCount 2 fits.
    let v = t
        .launch(
            A,
            RunInstances {
                min_count: Some(2),
                max_count: Some(30),
                ..base(sid)
            },
        )
        .unwrap();
    assert_eq!(v.len(), 11);
    assert!(v.iter().all(|i| i.reservation_id == v[0].reservation_id));
    assert_eq!(
        v.iter().map(|i| i.launch_index).collect::<Vec<_>>(),
        (0..11).collect::<Vec<_>>()
    );
    let ips: Vec<Ipv4Addr> = v
        .iter()
        .map(|i| t.interface(&i.primary_eni).primary_ip().unwrap())
        .collect();
    assert_eq!(ips[0], ip("10.0.1.4"));
    assert_eq!(ips[10], ip("10.0.1.14"));
    // No public IP: the subnet does not map one.
    assert!(t.interface(&v[0].primary_eni).public_ip.is_none());
    assert_eq!(subnet::available_ips(&t.w, &s), 0);
    let e = t.launch(A, base(sid)).unwrap_err();
    assert_eq!(e.code, "InsufficientFreeAddressesInSubnet");
    // Terminating frees the addresses once terminated.
    let id = v[3].meta.id.clone();
    let ch = t
        .run(A, |w, ctx| terminate(w, ctx, std::slice::from_ref(&id)))
        .unwrap();
    assert_eq!(ch[0].previous, InstanceState::Pending);
    assert_eq!(ch[0].current, InstanceState::ShuttingDown);
    assert_eq!(
        t.launch(A, base(sid)).unwrap_err().code,
        "InsufficientFreeAddressesInSubnet"
    );
    t.step();
    assert_eq!(t.inst(&id).state, InstanceState::Terminated);
    let again = t.launch(A, base(sid)).unwrap();
    assert_eq!(
        t.interface(&again[0].primary_eni).primary_ip(),
        Some(ip("10.0.1.7"))
    );
    // The region quota.
    t.limits.instances_per_region = 11;
    assert_eq!(
        t.launch(A, base(sid)).unwrap_err().code,
        "InstanceLimitExceeded"
    );
}

#[test]
fn private_ip_groups_and_public_ip() {
    let mut t = Fixture::with_two_zones();
    let (v, s) = t.vpc_subnet(A, "10.0.0.0/16", "10.0.1.0/24");
    let (v2, _s2) = t.vpc_subnet(A, "10.1.0.0/16", "10.1.1.0/24");
    let sid = Some(s.meta.id.as_str());
    let g = t
        .run(A, |w, ctx| {
            sg::create_group(
                w,
                ctx,
                sg::CreateGroup {
                    name: Some("web".into()),
                    description: Some("d".into()),
                    vpc_id: Some(v.meta.id.clone()),
                    tags: vec![],
                },
            )
        })
        .unwrap();
    let i = t
        .launch(
            A,
            RunInstances {
                private_ip: Some("10.0.1.10".into()),
                group_names: vec!["web".into()],
                group_ids: vec![v.default_sg.clone()],
                key_name: Some("k".into()),
                ..base(sid)
            },
        )
        .unwrap()
        .remove(0);
    let e = t.interface(&i.primary_eni).clone();
    assert_eq!(e.primary_ip(), Some(ip("10.0.1.10")));
    assert_eq!(e.groups, vec![v.default_sg.clone(), g.meta.id.clone()]);
    assert_eq!(i.key_name.as_deref(), Some("k"));
    for (req, code) in [
        (
            RunInstances {
                private_ip: Some("10.0.1.10".into()),
                ..base(sid)
            },
            "InvalidIPAddress.InUse",
        ),
        (
            RunInstances {
                private_ip: Some("10.0.1.11".into()),
                max_count: Some(2),
                ..base(sid)
            },
            "InvalidParameterCombination",
        ),
        (
            RunInstances {
                private_ip: Some("10.0.1.255".into()),
                ..base(sid)
            },
            "InvalidParameterValue",
        ),
        (
            RunInstances {
                group_ids: vec![v2.default_sg.clone()],
                ..base(sid)
            },
            "InvalidParameter",
        ),
        (
            RunInstances {
                group_names: vec!["nope".into()],
                ..base(sid)
            },
            "InvalidGroup.NotFound",
        ),
        (
            RunInstances {
                ipv6_count: Some(1),
                ..base(sid)
            },
            "InvalidParameterValue",
        ),
    ] {
        assert_eq!(t.launch(A, req).unwrap_err().code, code);
    }
    let e = t
        .launch(
            A,
            RunInstances {
                group_ids: vec![v2.default_sg.clone()],
                ..base(sid)
            },
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "Security group {} and subnet {} belong to different networks.",
            v2.default_sg, s.meta.id
        )
    );
    // Too many groups.
    t.limits.security_groups_per_eni = 1;
    assert_eq!(
        t.launch(
            A,
            RunInstances {
                group_names: vec!["web".into(), "default".into()],
                ..base(sid)
            }
        )
        .unwrap_err()
        .code,
        "SecurityGroupsPerInstanceLimitExceeded"
    );
    t.limits.security_groups_per_eni = 5;
    // AssociatePublicIpAddress on the primary interface.
    let i = t
        .launch(
            A,
            RunInstances {
                subnet_id: None,
                interfaces: vec![IfaceSpec {
                    device_index: Some(0),
                    associate_public_ip: Some(true),
                    eni: eni::EniSpec {
                        subnet_id: Some(s.meta.id.clone()),
                        secondary_count: Some(1),
                        description: Some("primary".into()),
                        ..eni::EniSpec::default()
                    },
                    ..IfaceSpec::default()
                }],
                ..base(None)
            },
        )
        .unwrap()
        .remove(0);
    let e = t.interface(&i.primary_eni).clone();
    assert_eq!(e.public_ip, Some(ip("198.18.0.1")));
    assert_eq!(e.private_ips.len(), 2);
    assert_eq!(e.description, "primary");
    // MapPublicIpOnLaunch=true, but AssociatePublicIpAddress=false wins.
    t.w.update::<Subnet>(&s.meta.id, |s| s.map_public_ip = true);
    let i = t
        .launch(
            A,
            RunInstances {
                subnet_id: None,
                interfaces: vec![IfaceSpec {
                    device_index: Some(0),
                    associate_public_ip: Some(false),
                    eni: eni::EniSpec {
                        subnet_id: Some(s.meta.id.clone()),
                        ..eni::EniSpec::default()
                    },
                    ..IfaceSpec::default()
                }],
                ..base(None)
            },
        )
        .unwrap()
        .remove(0);
    assert_eq!(t.interface(&i.primary_eni).public_ip, None);
    let i = t.launch(A, base(sid)).unwrap().remove(0);
    assert_eq!(
        t.interface(&i.primary_eni).public_ip,
        Some(ip("198.18.0.2"))
    );
}

#[test]
fn network_interface_specs() {
    let mut t = Fixture::with_two_zones();
    let (v, s) = t.vpc_subnet(A, "10.0.0.0/16", "10.0.1.0/24");
    let sid = s.meta.id.clone();
    let s2 = t.run(A, |w, ctx| {
        subnet::create_subnet(
            w,
            ctx,
            subnet::CreateSubnet {
                vpc_id: Some(v.meta.id.clone()),
                cidr_block: Some("10.0.2.0/24".into()),
                availability_zone: Some("us-east-1a".into()),
                ..subnet::CreateSubnet::default()
            },
        )
        .unwrap()
    });
    let sb = t.run(A, |w, ctx| {
        subnet::create_subnet(
            w,
            ctx,
            subnet::CreateSubnet {
                vpc_id: Some(v.meta.id.clone()),
                cidr_block: Some("10.0.3.0/24".into()),
                availability_zone: Some("us-east-1b".into()),
                ..subnet::CreateSubnet::default()
            },
        )
        .unwrap()
    });
    let existing = t
        .run(A, |w, ctx| {
            eni::create(
                w,
                ctx,
                eni::EniSpec {
                    subnet_id: Some(s2.meta.id.clone()),
                    ..eni::EniSpec::default()
                },
            )
        })
        .unwrap();
    let iface = |d: i64, subnet: &str| IfaceSpec {
        device_index: Some(d),
        eni: eni::EniSpec {
            subnet_id: Some(subnet.into()),
            ..eni::EniSpec::default()
        },
        ..IfaceSpec::default()
    };
    let i = t
        .launch(
            A,
            RunInstances {
                interfaces: vec![
                    IfaceSpec {
                        device_index: Some(1),
                        network_interface_id: Some(existing.meta.id.clone()),
                        ..IfaceSpec::default()
                    },
                    iface(0, &sid),
                ],
                ..base(None)
            },
        )
        .unwrap()
        .remove(0);
    let enis = eni::enis_of_instance(&t.w, &i.meta.id);
    assert_eq!(enis.len(), 2);
    assert_eq!(enis[0].meta.id, i.primary_eni);
    assert_eq!(enis[1].meta.id, existing.meta.id);
    assert!(!enis[1].attachment.as_ref().unwrap().delete_on_termination);
    assert_eq!(i.subnet_id, sid);
    // Errors.
    let many = |ifs: Vec<IfaceSpec>| RunInstances {
        interfaces: ifs,
        ..base(None)
    };
    for (req, code) in [
        (
            RunInstances {
                subnet_id: Some(sid.clone()),
                ..many(vec![iface(0, &sid)])
            },
            "InvalidParameterCombination",
        ),
        (many(vec![iface(1, &sid)]), "InvalidParameterValue"),
        (
            many(vec![iface(0, &sid), iface(0, &sid)]),
            "InvalidParameterValue",
        ),
        (
            many(vec![iface(0, &sid), iface(1, &sb.meta.id)]),
            "InvalidParameterCombination",
        ),
        (
            many(vec![
                IfaceSpec {
                    associate_public_ip: Some(true),
                    ..iface(0, &sid)
                },
                iface(1, &sid),
            ]),
            "InvalidParameterCombination",
        ),
        (
            many(vec![
                iface(0, &sid),
                IfaceSpec {
                    associate_public_ip: Some(false),
                    ..iface(1, &sid)
                },
            ]),
            "InvalidParameterCombination",
        ),
        (
            many(vec![IfaceSpec {
                device_index: Some(0),
                network_interface_id: Some(existing.meta.id.clone()),
                ..IfaceSpec::default()
            }]),
            "InvalidNetworkInterface.InUse",
        ),
    ] {
        assert_eq!(t.launch(A, req).unwrap_err().code, code);
    }
    // Terminate: the created interface goes, the attached one stays, detached.
    let id = i.meta.id.clone();
    t.run(A, |w, ctx| terminate(w, ctx, std::slice::from_ref(&id)))
        .unwrap();
    t.step();
    assert!(t.w.get::<NetworkInterface>(&i.primary_eni).is_none());
    let kept = t.interface(&existing.meta.id);
    assert!(kept.attachment.is_none());
    assert_eq!(kept.status(), "available");
    // Visible for an hour, then gone.
    t.advance(TERMINATED_VISIBLE_MS);
    assert!(t.w.get::<Instance>(&id).is_none());
    assert_eq!(
        t.run(A, |w, ctx| terminate(w, ctx, std::slice::from_ref(&id)))
            .unwrap_err()
            .code,
        "InvalidInstanceID.NotFound"
    );
}

#[test]
fn state_machine() {
    let mut t = Fixture::with_two_zones();
    let (_v, s) = t.vpc_subnet(A, "10.0.0.0/16", "10.0.1.0/24");
    let i = t.launch(A, base(Some(&s.meta.id))).unwrap().remove(0);
    let id = vec![i.meta.id.clone()];
    let e = t.run(A, |w, ctx| stop(w, ctx, &id)).unwrap_err();
    assert_eq!(e.code, "IncorrectInstanceState");
    t.step();
    let c = t.run(A, |w, ctx| stop(w, ctx, &id)).unwrap();
    assert_eq!(
        (c[0].previous, c[0].current),
        (InstanceState::Running, InstanceState::Stopping)
    );
    assert!(!t.inst(&i.meta.id).is_up());
    assert_eq!(
        t.run(A, |w, ctx| start(w, ctx, &id)).unwrap_err().code,
        "IncorrectInstanceState"
    );
    t.step();
    assert_eq!(t.inst(&i.meta.id).state, InstanceState::Stopped);
    let c = t.run(A, |w, ctx| stop(w, ctx, &id)).unwrap();
    assert_eq!(c[0].current, InstanceState::Stopped);
    // The interface keeps its address while stopped.
    assert!(t.w.get::<NetworkInterface>(&i.primary_eni).is_some());
    // Instance type changes only while stopped.
    t.run(A, |w, ctx| {
        modify_attribute(
            w,
            ctx,
            &i.meta.id,
            InstanceChange {
                instance_type: Some("m5.large".into()),
                ..InstanceChange::default()
            },
        )
    })
    .unwrap();
    assert_eq!(t.inst(&i.meta.id).instance_type, "m5.large");
    let c = t.run(A, |w, ctx| start(w, ctx, &id)).unwrap();
    assert_eq!(
        (c[0].previous, c[0].current),
        (InstanceState::Stopped, InstanceState::Pending)
    );
    t.step();
    assert_eq!(t.inst(&i.meta.id).state, InstanceState::Running);
    t.run(A, |w, ctx| reboot(w, ctx, &id)).unwrap();
    // Source/dest check goes to the primary interface.
    t.run(A, |w, ctx| {
        modify_attribute(
            w,
            ctx,
            &i.meta.id,
            InstanceChange {
                source_dest_check: Some(false),
                ..InstanceChange::default()
            },
        )
    })
    .unwrap();
    assert!(!t.interface(&i.primary_eni).source_dest_check);
    let c = t.run(A, |w, ctx| terminate(w, ctx, &id)).unwrap();
    assert_eq!(c[0].current, InstanceState::ShuttingDown);
    let c = t.run(A, |w, ctx| terminate(w, ctx, &id)).unwrap();
    assert_eq!(c[0].previous, InstanceState::ShuttingDown);
    t.step();
    assert_eq!(t.inst(&i.meta.id).state, InstanceState::Terminated);
    assert_eq!(
        t.run(A, |w, ctx| start(w, ctx, &id)).unwrap_err().code,
        "IncorrectInstanceState"
    );
    // Unknown and malformed IDs; other accounts see nothing.
    let two = vec![
        "i-00000000000000001".to_string(),
        "i-00000000000000002".into(),
    ];
    let e = t.run(A, |w, ctx| stop(w, ctx, &two)).unwrap_err();
    assert_eq!(
        e.message,
        "The instance IDs 'i-00000000000000001, i-00000000000000002' do not exist"
    );
    assert_eq!(
        t.run(A, |w, ctx| stop(w, ctx, &["x-1".into()]))
            .unwrap_err()
            .code,
        "InvalidInstanceID.Malformed"
    );
    let e = t.run(B, |w, ctx| terminate(w, ctx, &id)).unwrap_err();
    assert_eq!(
        e.message,
        format!("The instance ID '{}' does not exist", i.meta.id)
    );
}

#[test]
fn client_token_is_idempotent() {
    let mut t = Fixture::with_two_zones();
    let (_v, s) = t.vpc_subnet(A, "10.0.0.0/16", "10.0.1.0/24");
    let req = RunInstances {
        client_token: Some("tok-1".into()),
        max_count: Some(2),
        ..base(Some(&s.meta.id))
    };
    let a = t.launch(A, req.clone()).unwrap();
    let b = t.launch(A, req.clone()).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(
        a.iter().map(|i| &i.meta.id).collect::<Vec<_>>(),
        b.iter().map(|i| &i.meta.id).collect::<Vec<_>>()
    );
    assert_eq!(t.w.iter::<Instance>().count(), 2);
    // Tokens are per account.
    let (_v, s2) = t.vpc_subnet(B, "10.0.0.0/16", "10.0.1.0/24");
    let c = t
        .launch(
            B,
            RunInstances {
                subnet_id: Some(s2.meta.id.clone()),
                ..req
            },
        )
        .unwrap();
    assert_ne!(c[0].meta.id, a[0].meta.id);
}

#[test]
fn routes_to_instances_and_interfaces() {
    let mut t = Fixture::with_two_zones();
    let (v, s) = t.vpc_subnet(A, "10.0.0.0/16", "10.0.1.0/24");
    let i = t.launch(A, base(Some(&s.meta.id))).unwrap().remove(0);
    let rt = v.main_route_table.clone();
    let add = |t: &mut Fixture, dest: &str, spec: route::RouteSpec| {
        let spec = route::RouteSpec {
            destination_cidr_block: Some(dest.into()),
            ..spec
        };
        t.run(A, |w, ctx| route::create_route(w, ctx, &rt, &spec))
    };
    add(
        &mut t,
        "192.168.0.0/16",
        route::RouteSpec {
            instance_id: Some(i.meta.id.clone()),
            ..route::RouteSpec::default()
        },
    )
    .unwrap();
    add(
        &mut t,
        "192.169.0.0/16",
        route::RouteSpec {
            network_interface_id: Some(i.primary_eni.clone()),
            ..route::RouteSpec::default()
        },
    )
    .unwrap();
    let states = |t: &Fixture| -> Vec<&'static str> {
        let r = t.w.get::<RouteTable>(&rt).unwrap();
        r.routes
            .iter()
            .filter(|x| x.origin == "CreateRoute")
            .map(|x| route::route_state(&t.w, r, x))
            .collect()
    };
    t.step();
    assert_eq!(states(&t), vec!["active", "active"]);
    t.run(A, |w, ctx| stop(w, ctx, std::slice::from_ref(&i.meta.id)))
        .unwrap();
    t.step();
    assert_eq!(states(&t), vec!["blackhole", "blackhole"]);
    // Unknown targets, and targets in another VPC.
    assert_eq!(
        add(
            &mut t,
            "192.170.0.0/16",
            route::RouteSpec {
                instance_id: Some("i-00000000000000abc".into()),
                ..route::RouteSpec::default()
            }
        )
        .unwrap_err()
        .code,
        "InvalidInstanceID.NotFound"
    );
    let (_v2, s2) = t.vpc_subnet(A, "10.1.0.0/16", "10.1.1.0/24");
    let j = t.launch(A, base(Some(&s2.meta.id))).unwrap().remove(0);
    assert_eq!(
        add(
            &mut t,
            "192.170.0.0/16",
            route::RouteSpec {
                network_interface_id: Some(j.primary_eni.clone()),
                ..route::RouteSpec::default()
            }
        )
        .unwrap_err()
        .code,
        "InvalidParameterValue"
    );
    // Terminated and gone: blackhole.
    t.run(A, |w, ctx| {
        terminate(w, ctx, std::slice::from_ref(&i.meta.id))
    })
    .unwrap();
    t.step();
    assert_eq!(states(&t), vec!["blackhole", "blackhole"]);
}

#[test]
fn deletions_blocked_by_interfaces() {
    let mut t = Fixture::with_two_zones();
    let (v, s) = t.vpc_subnet(A, "10.0.0.0/16", "10.0.1.0/24");
    let g = t
        .run(A, |w, ctx| {
            sg::create_group(
                w,
                ctx,
                sg::CreateGroup {
                    name: Some("web".into()),
                    description: Some("d".into()),
                    vpc_id: Some(v.meta.id.clone()),
                    tags: vec![],
                },
            )
        })
        .unwrap();
    let i = t
        .launch(
            A,
            RunInstances {
                group_ids: vec![g.meta.id.clone()],
                ..base(Some(&s.meta.id))
            },
        )
        .unwrap()
        .remove(0);
    let gid = g.meta.id.clone();
    let e = t
        .run(A, |w, ctx| sg::delete_group(w, ctx, &gid))
        .unwrap_err();
    assert_eq!(e.code, "DependencyViolation");
    assert_eq!(
        sg::member_addresses(&t.w, &gid),
        (vec![ip("10.0.1.4")], vec![])
    );
    let sid = s.meta.id.clone();
    assert_eq!(
        t.run(A, |w, ctx| subnet::delete_subnet(w, ctx, &sid))
            .unwrap_err()
            .code,
        "DependencyViolation"
    );
    let vid = v.meta.id.clone();
    assert_eq!(
        t.run(A, |w, ctx| vpc::delete_vpc(w, ctx, &vid))
            .unwrap_err()
            .code,
        "DependencyViolation"
    );
    t.run(A, |w, ctx| {
        terminate(w, ctx, std::slice::from_ref(&i.meta.id))
    })
    .unwrap();
    t.step();
    t.run(A, |w, ctx| sg::delete_group(w, ctx, &gid)).unwrap();
    t.run(A, |w, ctx| subnet::delete_subnet(w, ctx, &sid))
        .unwrap();
    t.run(A, |w, ctx| vpc::delete_vpc(w, ctx, &vid)).unwrap();
    // The terminated instance is still listed until it expires.
    assert!(t.w.get::<Instance>(&i.meta.id).is_some());
    let _ = eip::pool();
}
