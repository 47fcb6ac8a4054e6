use super::*;
use crate::ctx::Timestamp;
use crate::ops::fixture::Fixture;
use crate::ops::peering::CreatePeering;

const A: &str = "111111111111";
const B: &str = "222222222222";

impl Fixture {
    fn group(&mut self, account: &str, vpc: &str, name: &str) -> String {
        self.run(account, |w, ctx| {
            create_group(
                w,
                ctx,
                CreateGroup {
                    name: Some(name.into()),
                    description: Some(format!("{name} group")),
                    vpc_id: Some(vpc.into()),
                    tags: vec![],
                },
            )
            .unwrap()
            .meta
            .id
        })
    }

    fn settle_peerings(&mut self) {
        self.now = self.now.plus_ms(self.limits.peering_transition_ms + 1);
        peering::tick(&mut self.w, self.now);
    }

    /// Requests a peering from `a` (owned by `oa`) to `b` (owned by `ob`) and makes it active.
    fn peer(&mut self, oa: &str, a: &str, ob: &str, b: &str) -> String {
        let p = self.run(oa, |w, ctx| {
            peering::create(
                w,
                ctx,
                CreatePeering {
                    vpc_id: Some(a.into()),
                    peer_vpc_id: Some(b.into()),
                    peer_owner_id: Some(ob.into()),
                    peer_region: None,
                    tags: vec![],
                },
                &|_| true,
            )
            .unwrap()
        });
        self.settle_peerings();
        self.run(ob, |w, ctx| peering::accept(w, ctx, &p.id).unwrap());
        self.settle_peerings();
        assert_eq!(
            self.w.get::<Peering>(&p.id).unwrap().state,
            PcxState::Active
        );
        p.id
    }

    fn sg(&self, id: &str) -> &SecurityGroup {
        self.w.get::<SecurityGroup>(id).unwrap()
    }
}

fn cidr_perm(proto: &str, from: Option<i64>, to: Option<i64>, cidr: &str) -> Permission {
    Permission {
        protocol: Some(proto.into()),
        from_port: from,
        to_port: to,
        ipv4: vec![Source {
            value: cidr.into(),
            description: None,
        }],
        ..Permission::default()
    }
}

fn group_perm(group: &str, user: Option<&str>) -> Permission {
    Permission {
        protocol: Some("tcp".into()),
        from_port: Some(443),
        to_port: Some(443),
        groups: vec![PairSpec {
            group_id: Some(group.into()),
            user_id: user.map(str::to_string),
            ..PairSpec::default()
        }],
        ..Permission::default()
    }
}

#[test]
fn create_defaults_and_errors() {
    let mut t = Fixture::new();
    let v = t.vpc(A, "10.0.0.0/16");
    let id = t.group(A, &v.meta.id, "web");
    let g = t.sg(&id).clone();
    assert!(g.ingress.is_empty());
    assert_eq!(g.egress.len(), 1);
    assert_eq!(g.egress[0].protocol, "-1");
    assert_eq!(
        g.egress[0].peer,
        SgPeer::Cidr4("0.0.0.0/0".parse().unwrap())
    );
    assert_eq!(
        arn(&g),
        format!("arn:aws:ec2:us-east-1:{A}:security-group/{id}")
    );
    let mk = |t: &mut Fixture, name: &str, vpc: Option<&str>| {
        t.run(A, |w, ctx| {
            create_group(
                w,
                ctx,
                CreateGroup {
                    name: Some(name.into()),
                    description: Some("d".into()),
                    vpc_id: vpc.map(str::to_string),
                    tags: vec![],
                },
            )
            .map(|g| g.meta.id)
        })
    };
    let e = mk(&mut t, "WEB", Some(&v.meta.id)).unwrap_err();
    assert_eq!(e.code, "InvalidGroup.Duplicate");
    assert_eq!(
        e.message,
        format!(
            "The security group 'WEB' already exists for VPC '{}'",
            v.meta.id
        )
    );
    assert_eq!(
        mk(&mut t, "default", Some(&v.meta.id)).unwrap_err().code,
        "InvalidGroup.Reserved"
    );
    assert_eq!(
        mk(&mut t, "sg-foo", Some(&v.meta.id)).unwrap_err().code,
        "InvalidParameterValue"
    );
    assert_eq!(
        mk(&mut t, "x", Some("vpc-00000000000000abc"))
            .unwrap_err()
            .code,
        "InvalidVpcID.NotFound"
    );
    assert_eq!(mk(&mut t, "x", None).unwrap_err().code, "VPCIdNotSpecified");
    // Same name in another VPC is fine.
    let v2 = t.vpc(A, "10.1.0.0/16");
    t.group(A, &v2.meta.id, "web");
    t.limits.security_groups_per_region = 4;
    assert_eq!(
        mk(&mut t, "more", Some(&v.meta.id)).unwrap_err().code,
        "SecurityGroupLimitExceeded"
    );
}

#[test]
fn protocol_normalisation() {
    for (i, o) in [
        ("6", "tcp"),
        ("TCP", "tcp"),
        ("17", "udp"),
        ("1", "icmp"),
        ("58", "icmpv6"),
        ("all", "-1"),
        ("-1", "-1"),
        ("47", "47"),
        ("006", "tcp"),
    ] {
        assert_eq!(normalise_protocol(i).unwrap(), o, "{i}");
    }
    assert!(normalise_protocol("foo").is_err());
    assert!(normalise_protocol("256").is_err());
    assert!(normalise_protocol("-2").is_err());

    let mut t = Fixture::new();
    let v = t.vpc(A, "10.0.0.0/16");
    let id = t.group(A, &v.meta.id, "web");
    // 6 is tcp: a later "tcp" rule with the same ports is a duplicate.
    let r = t
        .run(A, |w, ctx| {
            authorize(
                w,
                ctx,
                &id,
                false,
                &[cidr_perm("6", Some(22), Some(22), "10.0.0.0/16")],
                vec![],
            )
        })
        .unwrap();
    assert_eq!(r[0].protocol, "tcp");
    let e = t
        .run(A, |w, ctx| {
            authorize(
                w,
                ctx,
                &id,
                false,
                &[cidr_perm("tcp", Some(22), Some(22), "10.0.0.0/16")],
                vec![],
            )
        })
        .unwrap_err();
    assert_eq!(e.code, "InvalidPermission.Duplicate");
    // Protocol 47 (GRE) ignores ports; "all" is -1.
    let r = t
        .run(A, |w, ctx| {
            authorize(
                w,
                ctx,
                &id,
                false,
                &[
                    cidr_perm("47", Some(1), Some(2), "10.0.0.0/16"),
                    cidr_perm("all", None, None, "10.9.0.0/16"),
                ],
                vec![],
            )
        })
        .unwrap();
    assert_eq!((r[0].protocol.as_str(), r[0].from_port), ("47", None));
    assert_eq!(r[1].protocol, "-1");
    // Port checks.
    let bad = |t: &mut Fixture, p: Permission| {
        t.run(A, |w, ctx| authorize(w, ctx, &id, false, &[p], vec![]))
            .unwrap_err()
            .code
    };
    for p in [
        cidr_perm("tcp", None, Some(22), "1.2.3.4/32"),
        cidr_perm("tcp", Some(-1), Some(-1), "1.2.3.4/32"),
        cidr_perm("udp", Some(10), Some(5), "1.2.3.4/32"),
        cidr_perm("tcp", Some(1), Some(70000), "1.2.3.4/32"),
        cidr_perm("icmp", Some(-1), Some(3), "1.2.3.4/32"),
        cidr_perm("icmp", None, None, "1.2.3.4/32"),
        cidr_perm("tcp", Some(1), Some(2), "1.2.3/32"),
    ] {
        assert_eq!(bad(&mut t, p), "InvalidParameterValue");
    }
    let r = t
        .run(A, |w, ctx| {
            authorize(
                w,
                ctx,
                &id,
                false,
                &[cidr_perm("icmp", Some(8), Some(-1), "1.2.3.4/32")],
                vec![],
            )
        })
        .unwrap();
    assert_eq!((r[0].from_port, r[0].to_port), (Some(8), Some(-1)));
}

#[test]
fn authorize_revoke_duplicate() {
    let mut t = Fixture::new();
    let v = t.vpc(A, "10.0.0.0/16");
    let id = t.group(A, &v.meta.id, "web");
    let p = cidr_perm("tcp", Some(22), Some(22), "10.0.5.7/16");
    let tags = vec![Tag {
        key: "k".into(),
        value: "v".into(),
    }];
    let r = t
        .run(A, |w, ctx| {
            authorize(w, ctx, &id, false, std::slice::from_ref(&p), tags)
        })
        .unwrap();
    assert_eq!(r.len(), 1);
    assert!(r[0].id.starts_with("sgr-"));
    assert_eq!(r[0].peer, SgPeer::Cidr4("10.0.0.0/16".parse().unwrap()));
    assert_eq!(r[0].tags.len(), 1);
    assert_eq!(t.sg(&id).ingress.len(), 1);
    // The non-canonical spelling is a duplicate; the message names the canonical rule.
    let e = t
        .run(A, |w, ctx| {
            authorize(w, ctx, &id, false, std::slice::from_ref(&p), vec![])
        })
        .unwrap_err();
    assert_eq!(e.code, "InvalidPermission.Duplicate");
    assert_eq!(
            e.message,
            "the specified rule \"peer: 10.0.0.0/16, TCP, from port: 22, to port: 22, ALLOW\" already exists"
        );
    // A duplicate inside one request also fails, and nothing is added.
    let two = [
        cidr_perm("tcp", Some(80), Some(80), "0.0.0.0/0"),
        cidr_perm("tcp", Some(80), Some(80), "0.0.0.0/0"),
    ];
    assert_eq!(
        t.run(A, |w, ctx| authorize(w, ctx, &id, false, &two, vec![]))
            .unwrap_err()
            .code,
        "InvalidPermission.Duplicate"
    );
    // The egress allow-all is already there.
    let e = t
        .run(A, |w, ctx| {
            authorize(
                w,
                ctx,
                &id,
                true,
                &[cidr_perm("-1", None, None, "0.0.0.0/0")],
                vec![],
            )
        })
        .unwrap_err();
    assert_eq!(
        e.message,
        "the specified rule \"peer: 0.0.0.0/0, ALL, ALLOW\" already exists"
    );
    // Missing source.
    let none = Permission {
        protocol: Some("tcp".into()),
        from_port: Some(1),
        to_port: Some(1),
        ..Permission::default()
    };
    assert_eq!(
        t.run(A, |w, ctx| authorize(w, ctx, &id, false, &[none], vec![]))
            .unwrap_err()
            .code,
        "MissingParameter"
    );
    // Revoke by permission (non-canonical spelling matches), then again fails.
    let gone = t
        .run(A, |w, ctx| {
            revoke(w, ctx, &id, false, std::slice::from_ref(&p))
        })
        .unwrap();
    assert_eq!(gone[0].id, r[0].id);
    assert!(t.sg(&id).ingress.is_empty());
    let e = t
        .run(A, |w, ctx| {
            revoke(w, ctx, &id, false, std::slice::from_ref(&p))
        })
        .unwrap_err();
    assert_eq!(e.code, "InvalidPermission.NotFound");
    // Revoke by rule ID, egress.
    let eg = t.sg(&id).egress[0].id.clone();
    assert_eq!(
        t.run(A, |w, ctx| revoke_ids(
            w,
            ctx,
            &id,
            false,
            std::slice::from_ref(&eg)
        ))
        .unwrap_err()
        .code,
        "InvalidSecurityGroupRuleId.NotFound"
    );
    t.run(A, |w, ctx| revoke_ids(w, ctx, &id, true, &[eg]))
        .unwrap();
    assert!(t.sg(&id).egress.is_empty());
    // Another account cannot see the group.
    assert_eq!(
        t.run(B, |w, ctx| authorize(
            w,
            ctx,
            &id,
            false,
            std::slice::from_ref(&p),
            vec![]
        ))
        .unwrap_err()
        .code,
        "InvalidGroup.NotFound"
    );
}

#[test]
fn icmpv6_takes_ipv6_ranges_only() {
    let mut t = Fixture::new();
    let v = t.vpc(A, "10.0.0.0/16");
    let id = t.group(A, &v.meta.id, "icmp6");
    for proto in ["icmpv6", "58"] {
        let p = cidr_perm(proto, Some(-1), Some(-1), "10.0.0.0/8");
        let e = t
            .run(A, |w, ctx| authorize(w, ctx, &id, false, &[p], vec![]))
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameterCombination", "{proto}");
    }
    assert!(t.sg(&id).ingress.is_empty());
    let mut v6 = cidr_perm("icmpv6", Some(-1), Some(-1), "10.0.0.0/8");
    v6.ipv6 = std::mem::take(&mut v6.ipv4);
    v6.ipv6[0].value = "::/0".into();
    t.run(A, |w, ctx| authorize(w, ctx, &id, false, &[v6], vec![]))
        .unwrap();
    // ICMP (v4) with an IPv6 range is accepted, as AWS does.
    let mut v4_on_v6 = cidr_perm("icmp", Some(-1), Some(-1), "10.0.0.0/8");
    v4_on_v6.ipv6 = std::mem::take(&mut v4_on_v6.ipv4);
    v4_on_v6.ipv6[0].value = "::/0".into();
    t.run(A, |w, ctx| {
        authorize(w, ctx, &id, false, &[v4_on_v6], vec![])
    })
    .unwrap();
    assert_eq!(t.sg(&id).ingress.len(), 2);
}

#[test]
fn rule_quota_per_direction_and_family() {
    let mut t = Fixture::new();
    t.limits.rules_per_security_group = 3;
    let v = t.vpc(A, "10.0.0.0/16");
    let id = t.group(A, &v.meta.id, "web");
    let perms: Vec<Permission> = (1..=3)
        .map(|i| cidr_perm("tcp", Some(i), Some(i), "10.0.0.0/8"))
        .collect();
    t.run(A, |w, ctx| authorize(w, ctx, &id, false, &perms, vec![]))
        .unwrap();
    let more = cidr_perm("tcp", Some(9), Some(9), "10.0.0.0/8");
    assert_eq!(
        t.run(A, |w, ctx| authorize(w, ctx, &id, false, &[more], vec![]))
            .unwrap_err()
            .code,
        "RulesPerSecurityGroupLimitExceeded"
    );
    let v6 = Permission {
        protocol: Some("tcp".into()),
        from_port: Some(9),
        to_port: Some(9),
        ipv6: vec![Source {
            value: "2600::/16".into(),
            description: None,
        }],
        ..Permission::default()
    };
    t.run(A, |w, ctx| authorize(w, ctx, &id, false, &[v6], vec![]))
        .unwrap();
}

#[test]
fn cross_vpc_reference_needs_active_peering() {
    let mut t = Fixture::new();
    let a = t.vpc(A, "10.0.0.0/16");
    let b = t.vpc(B, "10.1.0.0/16");
    let ga = t.group(A, &a.meta.id, "app");
    let gb = t.group(B, &b.meta.id, "db");
    // No peering: another account's group looks exactly like a missing one,
    // so the caller learns nothing about its existence or owner.
    let e = t
        .run(A, |w, ctx| {
            authorize(w, ctx, &ga, false, &[group_perm(&gb, Some(B))], vec![])
        })
        .unwrap_err();
    assert_eq!(e.code, "InvalidGroup.NotFound");
    assert_eq!(
        e.message,
        format!("The security group '{gb}' does not exist")
    );
    // Without UserId, another account's group is simply not found.
    let e = t
        .run(A, |w, ctx| {
            authorize(w, ctx, &ga, false, &[group_perm(&gb, None)], vec![])
        })
        .unwrap_err();
    assert_eq!(
        e.message,
        format!("The security group '{gb}' does not exist")
    );
    let e = t
        .run(A, |w, ctx| {
            authorize(
                w,
                ctx,
                &ga,
                false,
                &[group_perm("sg-0000000000000dead", None)],
                vec![],
            )
        })
        .unwrap_err();
    assert_eq!(
        e.message,
        "The security group 'sg-0000000000000dead' does not exist"
    );
    // A pending peering is not enough.
    let p = t.run(A, |w, ctx| {
        peering::create(
            w,
            ctx,
            CreatePeering {
                vpc_id: Some(a.meta.id.clone()),
                peer_vpc_id: Some(b.meta.id.clone()),
                peer_owner_id: Some(B.into()),
                peer_region: None,
                tags: vec![],
            },
            &|_| true,
        )
        .unwrap()
    });
    t.settle_peerings();
    assert!(t
        .run(A, |w, ctx| authorize(
            w,
            ctx,
            &ga,
            false,
            &[group_perm(&gb, Some(B))],
            vec![]
        ))
        .is_err());
    t.run(B, |w, ctx| peering::accept(w, ctx, &p.id).unwrap());
    t.settle_peerings();
    let r = t
        .run(A, |w, ctx| {
            authorize(w, ctx, &ga, false, &[group_perm(&gb, Some(B))], vec![])
        })
        .unwrap();
    assert_eq!(
        r[0].peer,
        SgPeer::Group {
            group_id: gb.clone(),
            user_id: B.into(),
            vpc_id: Some(b.meta.id.clone()),
            peering_id: Some(p.id.clone()),
        }
    );
    let view = permissions(&t.w, t.sg(&ga), false);
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].groups[0].peering_status.as_deref(), Some("active"));
    assert_eq!(
        view[0].groups[0].vpc_id.as_deref(),
        Some(b.meta.id.as_str())
    );
    // The owner of gb sees the reference.
    let refs = t
        .run(B, |w, ctx| references(w, ctx, std::slice::from_ref(&gb)))
        .unwrap();
    assert_eq!(
        refs,
        vec![Reference {
            group_id: gb.clone(),
            referencing_vpc_id: a.meta.id.clone(),
            peering_id: Some(p.id.clone()),
        }]
    );
    // Egress references work the same way.
    t.run(A, |w, ctx| {
        authorize(w, ctx, &ga, true, &[group_perm(&gb, Some(B))], vec![])
    })
    .unwrap();
}

#[test]
fn inter_region_peer_group_refused() {
    let mut t = Fixture::new();
    let a = t.vpc(A, "10.0.0.0/16");
    let b = t.vpc_in(A, "eu-west-1", "10.1.0.0/16");
    let ga = t.group(A, &a.meta.id, "app");
    let gb = t.run_in(A, "eu-west-1", |w, ctx| {
        create_group(
            w,
            ctx,
            CreateGroup {
                name: Some("db".into()),
                description: Some("d".into()),
                vpc_id: Some(b.meta.id.clone()),
                tags: vec![],
            },
        )
        .unwrap()
        .meta
        .id
    });
    let p = t.run(A, |w, ctx| {
        peering::create(
            w,
            ctx,
            CreatePeering {
                vpc_id: Some(a.meta.id.clone()),
                peer_vpc_id: Some(b.meta.id.clone()),
                peer_owner_id: None,
                peer_region: Some("eu-west-1".into()),
                tags: vec![],
            },
            &|_| true,
        )
        .unwrap()
    });
    t.settle_peerings();
    t.run_in(A, "eu-west-1", |w, ctx| {
        peering::accept(w, ctx, &p.id).unwrap()
    });
    t.settle_peerings();
    assert_eq!(t.w.get::<Peering>(&p.id).unwrap().state, PcxState::Active);
    let e = t
        .run(A, |w, ctx| {
            authorize(w, ctx, &ga, false, &[group_perm(&gb, None)], vec![])
        })
        .unwrap_err();
    assert_eq!(
        e.message,
        "You have specified two resources that belong to different networks."
    );
}

#[test]
fn stale_after_peering_deleted_and_not_after_repeering() {
    let mut t = Fixture::new();
    let a = t.vpc(A, "10.0.0.0/16");
    let b = t.vpc(B, "10.1.0.0/16");
    let ga = t.group(A, &a.meta.id, "app");
    let gb = t.group(B, &b.meta.id, "db");
    let p1 = t.peer(A, &a.meta.id, B, &b.meta.id);
    t.run(A, |w, ctx| {
        authorize(w, ctx, &ga, false, &[group_perm(&gb, Some(B))], vec![])
    })
    .unwrap();
    let stale = |t: &mut Fixture| {
        let vpc = a.meta.id.clone();
        t.run(A, |w, ctx| stale_groups(w, ctx, &vpc)).unwrap()
    };
    assert!(stale(&mut t).is_empty());

    t.run(B, |w, ctx| peering::delete(w, ctx, &p1).unwrap());
    let s = stale(&mut t);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].group_id, ga);
    assert!(s[0].egress.is_empty());
    let pair = &s[0].ingress[0].groups[0];
    assert_eq!(pair.group_id, gb);
    assert_eq!(pair.user_id.as_deref(), Some(B));
    assert_eq!(pair.peering_id.as_deref(), Some(p1.as_str()));
    assert_eq!(pair.peering_status.as_deref(), Some("deleted"));
    assert_eq!(s[0].ingress[0].from_port, Some(443));
    // DescribeSecurityGroups shows the peering as deleted too.
    let view = permissions(&t.w, t.sg(&ga), false);
    assert_eq!(view[0].groups[0].peering_status.as_deref(), Some("deleted"));
    // No longer referenced from an active peering.
    assert!(t
        .run(B, |w, ctx| references(w, ctx, std::slice::from_ref(&gb)))
        .unwrap()
        .is_empty());
    // After the record itself disappears, the status is still "deleted".
    t.now = t.now.plus_ms(3 * Timestamp::DAY);
    peering::tick(&mut t.w, t.now);
    assert!(t.w.get::<Peering>(&p1).is_none());
    assert_eq!(
        stale(&mut t)[0].ingress[0].groups[0]
            .peering_status
            .as_deref(),
        Some("deleted")
    );

    // A new active peering between the same VPCs (either direction) heals the rule.
    let p2 = t.peer(B, &b.meta.id, A, &a.meta.id);
    assert!(stale(&mut t).is_empty());
    let view = permissions(&t.w, t.sg(&ga), false);
    assert_eq!(view[0].groups[0].peering_status.as_deref(), Some("active"));
    assert_eq!(view[0].groups[0].peering_id.as_deref(), Some(p2.as_str()));

    // Deleting the peer group (allowed: the reference is from another VPC) makes it stale again.
    t.run(B, |w, ctx| delete_group(w, ctx, &gb)).unwrap();
    let s = stale(&mut t);
    let pair = &s[0].ingress[0].groups[0];
    assert_eq!(pair.user_id, None);
    assert_eq!(pair.group_name, None);
    assert_eq!(pair.vpc_id.as_deref(), Some(b.meta.id.as_str()));
    // Revoking a stale rule works.
    t.run(A, |w, ctx| {
        revoke(w, ctx, &ga, false, &[group_perm(&gb, Some(B))])
    })
    .unwrap();
    assert!(stale(&mut t).is_empty());
    // The VPC must be the caller's.
    let vb = b.meta.id.clone();
    assert_eq!(
        t.run(A, |w, ctx| stale_groups(w, ctx, &vb))
            .unwrap_err()
            .code,
        "InvalidVpcID.NotFound"
    );
}

#[test]
fn delete_group_dependencies() {
    let mut t = Fixture::new();
    let a = t.vpc(A, "10.0.0.0/16");
    let b = t.vpc(A, "10.1.0.0/16");
    let web = t.group(A, &a.meta.id, "web");
    let db = t.group(A, &a.meta.id, "db");
    let peer = t.group(A, &b.meta.id, "peer");
    // Default group.
    let e = t
        .run(A, |w, ctx| delete_group(w, ctx, &a.default_sg))
        .unwrap_err();
    assert_eq!(e.code, "CannotDelete");
    assert_eq!(
        e.message,
        format!(
            "the specified group: \"{}\" name: \"default\" cannot be deleted by a user",
            a.default_sg
        )
    );
    // db is referenced by web in the same VPC.
    t.run(A, |w, ctx| {
        authorize(w, ctx, &web, false, &[group_perm(&db, None)], vec![])
    })
    .unwrap();
    let e = t.run(A, |w, ctx| delete_group(w, ctx, &db)).unwrap_err();
    assert_eq!(e.code, "DependencyViolation");
    assert_eq!(e.message, format!("resource {db} has a dependent object"));
    // A self-reference does not block.
    t.run(A, |w, ctx| {
        authorize(w, ctx, &web, true, &[group_perm(&web, None)], vec![])
    })
    .unwrap();
    // peer (VPC b) is referenced from VPC a through a peering: deletable.
    t.peer(A, &a.meta.id, A, &b.meta.id);
    t.run(A, |w, ctx| {
        authorize(w, ctx, &web, false, &[group_perm(&peer, None)], vec![])
    })
    .unwrap();
    t.run(A, |w, ctx| delete_group(w, ctx, &peer)).unwrap();
    assert!(is_stale(&t.w, &a.meta.id, &t.sg(&web).ingress[1]));
    // Revoke the same-VPC reference; then db can go, and so can web.
    t.run(A, |w, ctx| {
        revoke(w, ctx, &web, false, &[group_perm(&db, None)])
    })
    .unwrap();
    t.run(A, |w, ctx| delete_group(w, ctx, &db)).unwrap();
    t.run(A, |w, ctx| delete_group(w, ctx, &web)).unwrap();
    assert_eq!(
        t.run(A, |w, ctx| delete_group(w, ctx, &web))
            .unwrap_err()
            .code,
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        t.run(A, |w, ctx| delete_group(w, ctx, "xyz"))
            .unwrap_err()
            .code,
        "InvalidGroupId.Malformed"
    );
}

#[test]
fn grouped_permissions_view() {
    let mut t = Fixture::new();
    let v = t.vpc(A, "10.0.0.0/16");
    let id = t.group(A, &v.meta.id, "web");
    let perms = [
        Permission {
            protocol: Some("tcp".into()),
            from_port: Some(22),
            to_port: Some(22),
            ipv4: vec![
                Source {
                    value: "10.0.0.0/16".into(),
                    description: Some("ssh".into()),
                },
                Source {
                    value: "10.1.0.0/16".into(),
                    description: None,
                },
            ],
            ipv6: vec![Source {
                value: "2600:1f18::/32".into(),
                description: None,
            }],
            groups: vec![PairSpec {
                group_id: Some(v.default_sg.clone()),
                ..PairSpec::default()
            }],
            ..Permission::default()
        },
        cidr_perm("-1", None, None, "192.168.0.0/24"),
    ];
    let r = t
        .run(A, |w, ctx| authorize(w, ctx, &id, false, &perms, vec![]))
        .unwrap();
    assert_eq!(r.len(), 5);
    let view = permissions(&t.w, t.sg(&id), false);
    assert_eq!(view.len(), 2);
    assert_eq!(view[0].ipv4.len(), 2);
    assert_eq!(view[0].ipv4[0].description.as_deref(), Some("ssh"));
    assert_eq!(view[0].ipv6.len(), 1);
    assert_eq!(view[0].groups[0].user_id.as_deref(), Some(A));
    assert_eq!(view[0].groups[0].vpc_id, None);
    assert_eq!(view[1].protocol, "-1");
    assert_eq!(view[1].from_port, None);
    // Revoking part of an item leaves the rest.
    t.run(A, |w, ctx| {
        revoke(
            w,
            ctx,
            &id,
            false,
            &[cidr_perm("tcp", Some(22), Some(22), "10.1.0.0/16")],
        )
    })
    .unwrap();
    assert_eq!(permissions(&t.w, t.sg(&id), false)[0].ipv4.len(), 1);
}

#[test]
fn rule_admits_follows_the_data_plane() {
    let rule = |proto: &str, from: Option<i32>, to: Option<i32>, peer: SgPeer| SgRule {
        id: "sgr-1".into(),
        protocol: proto.into(),
        from_port: from,
        to_port: to,
        peer,
        description: None,
        tags: vec![],
    };
    let v4 = |s: &str| SgPeer::Cidr4(s.parse().unwrap());
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let none = |_: &str, _: std::net::IpAddr| false;
    let ssh = rule("tcp", Some(22), Some(22), v4("10.0.0.0/16"));
    assert!(rule_admits(
        &ssh,
        6,
        Some(22),
        None,
        ip("10.0.3.4"),
        none,
        none
    ));
    assert!(!rule_admits(
        &ssh,
        6,
        Some(23),
        None,
        ip("10.0.3.4"),
        none,
        none
    ));
    assert!(!rule_admits(
        &ssh,
        17,
        Some(22),
        None,
        ip("10.0.3.4"),
        none,
        none
    ));
    assert!(!rule_admits(
        &ssh,
        6,
        Some(22),
        None,
        ip("10.1.3.4"),
        none,
        none
    ));
    assert!(!rule_admits(
        &ssh,
        6,
        Some(22),
        None,
        ip("2600::1"),
        none,
        none
    ));
    // 0-65535 (or -1) is every port.
    let all_tcp = rule("tcp", Some(0), Some(65535), v4("0.0.0.0/0"));
    assert!(rule_admits(
        &all_tcp,
        6,
        Some(1),
        None,
        ip("1.2.3.4"),
        none,
        none
    ));
    let all = rule("-1", None, None, SgPeer::Cidr6("::/0".parse().unwrap()));
    assert!(rule_admits(
        &all,
        58,
        None,
        Some((128, 0)),
        ip("2600::1"),
        none,
        none
    ));
    assert!(!rule_admits(
        &all,
        1,
        None,
        Some((8, 0)),
        ip("1.2.3.4"),
        none,
        none
    ));
    // ICMP by type; icmp never matches ICMPv6.
    let echo = rule("icmp", Some(8), Some(-1), v4("0.0.0.0/0"));
    assert!(rule_admits(
        &echo,
        1,
        None,
        Some((8, 0)),
        ip("1.2.3.4"),
        none,
        none
    ));
    assert!(!rule_admits(
        &echo,
        1,
        None,
        Some((0, 0)),
        ip("1.2.3.4"),
        none,
        none
    ));
    let any_icmp = rule(
        "icmp",
        Some(-1),
        Some(-1),
        SgPeer::Cidr6("::/0".parse().unwrap()),
    );
    assert!(!rule_admits(
        &any_icmp,
        58,
        None,
        Some((128, 0)),
        ip("2600::1"),
        none,
        none
    ));
    // Group references match members' addresses, both families.
    let g = rule(
        "-1",
        None,
        None,
        SgPeer::Group {
            group_id: "sg-1".into(),
            user_id: A.into(),
            vpc_id: None,
            peering_id: None,
        },
    );
    let member = |gid: &str, a: std::net::IpAddr| gid == "sg-1" && a == ip("10.0.0.5");
    assert!(rule_admits(
        &g,
        17,
        Some(53),
        None,
        ip("10.0.0.5"),
        member,
        none
    ));
    assert!(!rule_admits(
        &g,
        17,
        Some(53),
        None,
        ip("10.0.0.6"),
        member,
        none
    ));
    // Prefix lists match their entries, in their family.
    let pl = rule("-1", None, None, SgPeer::PrefixList("pl-1".into()));
    let listed = |l: &str, a: std::net::IpAddr| l == "pl-1" && a == ip("1.2.3.4");
    assert!(rule_admits(
        &pl,
        6,
        Some(1),
        None,
        ip("1.2.3.4"),
        none,
        listed
    ));
    assert!(!rule_admits(
        &pl,
        6,
        Some(1),
        None,
        ip("1.2.3.5"),
        none,
        listed
    ));
}
