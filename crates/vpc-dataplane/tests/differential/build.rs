//! Building a generated topology through the model's operations.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct BVpc {
    pub(crate) vpc: Vpc,
    pub(crate) block: u8,
    pub(crate) extra_sg: Option<String>,
    pub(crate) igw: Option<String>,
    pub(crate) subnets: Vec<BSubnet>,
}

#[derive(Debug, Clone)]
pub(crate) struct BSubnet {
    pub(crate) subnet: Subnet,
    pub(crate) own_table: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct BInst {
    pub(crate) id: String,
    pub(crate) vpc: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Built {
    pub(crate) vpcs: Vec<BVpc>,
    pub(crate) instances: Vec<BInst>,
    /// (pcx id, requester index, accepter index)
    pub(crate) peerings: Vec<(String, usize, usize)>,
    /// Every operation tried, with its outcome.
    pub(crate) log: Vec<String>,
}

/// Runs a model operation as `acct` in `region`; a refusal leaves the world as it was.
pub(crate) fn try_op<T>(
    e: &mut Env,
    acct: &str,
    region: &str,
    f: impl FnOnce(&mut World, &mut Ctx<'_>) -> Result<T, Fault>,
) -> Result<T, Fault> {
    ops::tick(&mut e.w, e.now);
    let mut w = e.w.clone();
    let mut ctx = Ctx {
        account: acct.to_string(),
        region: region.to_string(),
        now: e.now,
        ids: e.ids.as_mut(),
        limits: &e.limits,
        zones: &[],
    };
    let out = f(&mut w, &mut ctx)?;
    e.w = w;
    Ok(out)
}

/// Moves the clock on and applies the due timers (peerings, instances).
pub(crate) fn advance(e: &mut Env, ms: i64) {
    e.now = e.now.plus_ms(ms);
    ops::tick(&mut e.w, e.now);
}

pub(crate) fn note<T>(log: &mut Vec<String>, what: String, r: &Result<T, Fault>) {
    match r {
        Ok(_) => log.push(what),
        Err(f) => log.push(format!("{what}  -> refused: {}", f.code)),
    }
}

impl Built {
    pub(crate) fn owner(&self, v: usize) -> (String, String) {
        let m = &self.vpcs[v].vpc.meta;
        (m.owner.clone(), m.region.clone())
    }

    /// The CIDR a generated choice names (a host /32 needs the world).
    pub(crate) fn cidr(&self, w: &World, c: CidrG) -> Option<String> {
        let nv = self.vpcs.len();
        Some(match c {
            CidrG::All => "0.0.0.0/0".into(),
            CidrG::Vpc(v) => format!("10.{}.0.0/16", self.vpcs[usize::from(v) % nv].block),
            CidrG::Subnet(v, s) => {
                let b = &self.vpcs[usize::from(v) % nv];
                b.subnets[usize::from(s) % b.subnets.len()]
                    .subnet
                    .cidr?
                    .to_string()
            }
            CidrG::Host(i) => {
                if self.instances.is_empty() {
                    return None;
                }
                let inst = &self.instances[usize::from(i) % self.instances.len()];
                format!("{}/32", primary_ip(w, &inst.id)?)
            }
            CidrG::Internet => "198.51.100.0/24".into(),
            CidrG::PublicPool => "198.18.0.0/15".into(),
            CidrG::Wide => "10.0.0.0/8".into(),
        })
    }
}

pub(crate) fn primary_ip(w: &World, instance: &str) -> Option<Ipv4Addr> {
    let i = w.get::<Instance>(instance)?;
    w.get::<NetworkInterface>(&i.primary_eni)?.primary_ip()
}

pub(crate) fn ports_of(p: PortsG) -> (i64, i64) {
    match p {
        PortsG::One(i) => {
            let x = i64::from(SERVICE_PORTS[usize::from(i) % SERVICE_PORTS.len()]);
            (x, x)
        }
        PortsG::Range(a, b) => (
            i64::from(PORT_BOUNDS[usize::from(a) % PORT_BOUNDS.len()]),
            i64::from(PORT_BOUNDS[usize::from(b) % PORT_BOUNDS.len()]),
        ),
        PortsG::Return(i) => {
            let (a, b) = RETURN_RANGES[usize::from(i) % RETURN_RANGES.len()];
            (i64::from(a), i64::from(b))
        }
        PortsG::All => (0, 65535),
    }
}

pub(crate) fn icmp_of(i: IcmpG) -> (i64, i64) {
    match i {
        IcmpG::Any => (-1, -1),
        IcmpG::EchoRequest => (8, -1),
        IcmpG::EchoReply => (0, -1),
    }
}

pub(crate) fn build(e: &mut Env, spec: &Spec) -> Built {
    let mut b = Built::default();
    for (i, g) in spec.vpcs.iter().enumerate() {
        let block = g.block.unwrap_or(u8::try_from(i + 1).unwrap_or(1));
        let owner = ACCOUNTS[usize::from(g.owner) % 3];
        let region = if g.west { WEST } else { EAST };
        let vpc = e.vpc_as(owner, region, &format!("10.{block}.0.0/16"), None);
        let vid = vpc.meta.id.clone();
        b.log.push(format!(
            "CreateVpc 10.{block}.0.0/16 as {owner} in {region} -> {vid}"
        ));
        let mut bv = BVpc {
            vpc: vpc.clone(),
            block,
            extra_sg: None,
            igw: None,
            subnets: Vec::new(),
        };
        if g.extra_group {
            let req = sg::CreateGroup {
                name: Some("extra".into()),
                description: Some("extra".into()),
                vpc_id: Some(vid.clone()),
                tags: vec![],
            };
            let r = try_op(e, owner, region, |w, c| sg::create_group(w, c, req));
            note(
                &mut b.log,
                format!("CreateSecurityGroup extra in {vid}"),
                &r,
            );
            bv.extra_sg = r.ok().map(|g| g.meta.id);
        }
        if g.open {
            let p = sg::Permission {
                protocol: Some("-1".into()),
                ipv4: vec![sg::Source {
                    value: "0.0.0.0/0".into(),
                    description: None,
                }],
                ..Default::default()
            };
            let gid = vpc.default_sg.clone();
            let r = try_op(e, owner, region, |w, c| {
                sg::authorize(w, c, &gid, false, &[p], vec![])
            });
            note(
                &mut b.log,
                format!("AuthorizeIngress {gid} -1 0.0.0.0/0"),
                &r,
            );
        }
        if g.igw.is_some() {
            let r = try_op(e, owner, region, |w, c| {
                let g = ops::igw::create(w, c, vec![])?;
                ops::igw::attach(w, c, &g.meta.id, &vid)?;
                Ok(g.meta.id)
            });
            note(
                &mut b.log,
                format!("CreateInternetGateway + attach to {vid}"),
                &r,
            );
            bv.igw = r.ok();
        }
        for (k, sg_) in g.subnets.iter().enumerate() {
            let cidr = format!("10.{block}.{}.0/24", k + 1);
            let s = e.subnet(&vpc, &cidr);
            let sid = s.meta.id.clone();
            b.log.push(format!("CreateSubnet {cidr} in {vid} -> {sid}"));
            let mut own_table = None;
            if sg_.own_table {
                let r = try_op(e, owner, region, |w, c| {
                    let rt = route::create_table(w, c, &vid, vec![])?;
                    route::associate(w, c, &rt.meta.id, Some(&sid), None)?;
                    Ok(rt.meta.id)
                });
                note(
                    &mut b.log,
                    format!("CreateRouteTable + associate {sid}"),
                    &r,
                );
                own_table = r.ok();
            }
            if sg_.custom_acl {
                let r = try_op(e, owner, region, |w, c| {
                    let a = acl::create(w, c, &vid, vec![])?;
                    let assoc = w
                        .iter::<NetworkAcl>()
                        .flat_map(|x| x.assocs.iter())
                        .find(|x| x.subnet_id == sid)
                        .map(|x| x.id.clone())
                        .ok_or_else(|| Fault::missing("association"))?;
                    acl::replace_association(w, c, &assoc, &a.meta.id)?;
                    Ok(a.meta.id)
                });
                note(
                    &mut b.log,
                    format!("CreateNetworkAcl + associate {sid}"),
                    &r,
                );
            }
            for (j, ig) in sg_.instances.iter().enumerate() {
                let ip = format!("10.{block}.{}.{}", k + 1, 10 + j);
                let mut groups = Vec::new();
                if ig.groups != 1 || bv.extra_sg.is_none() {
                    groups.push(vpc.default_sg.clone());
                }
                if ig.groups != 0 {
                    groups.extend(bv.extra_sg.clone());
                }
                let req = ops::instance::RunInstances {
                    image_id: Some("ami-0123456789abcdef0".into()),
                    min_count: Some(1),
                    max_count: Some(1),
                    interfaces: vec![ops::instance::IfaceSpec {
                        device_index: Some(0),
                        associate_public_ip: Some(ig.public),
                        delete_on_termination: Some(true),
                        eni: ops::eni::EniSpec {
                            subnet_id: Some(sid.clone()),
                            private_ip: Some(ip.clone()),
                            group_ids: groups.clone(),
                            ..Default::default()
                        },
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let r = try_op(e, owner, region, |w, c| ops::instance::run(w, c, req));
                note(
                    &mut b.log,
                    format!("RunInstances {ip} public={} groups={groups:?}", ig.public),
                    &r,
                );
                advance(e, 1_000);
                let Ok(mut v) = r else { continue };
                let id = v.remove(0).meta.id;
                if ig.stopped {
                    let ids = vec![id.clone()];
                    let r = try_op(e, owner, region, |w, c| ops::instance::stop(w, c, &ids));
                    note(&mut b.log, format!("StopInstances {id}"), &r);
                    advance(e, 1_000);
                }
                b.instances.push(BInst { id, vpc: i });
            }
            bv.subnets.push(BSubnet {
                subnet: s,
                own_table,
            });
        }
        if let (Some(ig), Some(gid)) = (&g.igw, bv.igw.clone()) {
            let mut tables = Vec::new();
            if ig.default_route {
                tables.push(vpc.main_route_table.clone());
                if ig.all_tables {
                    tables.extend(bv.subnets.iter().filter_map(|s| s.own_table.clone()));
                }
            }
            for rtb in tables {
                let spec = route::RouteSpec {
                    destination_cidr_block: Some("0.0.0.0/0".into()),
                    gateway_id: Some(gid.clone()),
                    ..Default::default()
                };
                let r = try_op(e, owner, region, |w, c| {
                    route::create_route(w, c, &rtb, &spec)
                });
                note(
                    &mut b.log,
                    format!("CreateRoute {rtb} 0.0.0.0/0 -> {gid}"),
                    &r,
                );
            }
        }
        b.vpcs.push(bv);
    }
    for op in spec.peers.iter().chain(&spec.ops) {
        apply(e, &mut b, *op);
        advance(e, 1_000);
    }
    b
}

pub(crate) fn apply(e: &mut Env, b: &mut Built, op: OpG) {
    let nv = b.vpcs.len();
    match op {
        OpG::Peer {
            a,
            b: pb,
            fate,
            routes,
            all_tables,
        } => {
            let ia = usize::from(a) % nv;
            let mut ib = usize::from(pb) % nv;
            if ib == ia {
                ib = (ia + 1) % nv;
            }
            let (va, vb) = (b.vpcs[ia].vpc.clone(), b.vpcs[ib].vpc.clone());
            let req = peering::CreatePeering {
                vpc_id: Some(va.meta.id.clone()),
                peer_vpc_id: Some(vb.meta.id.clone()),
                peer_owner_id: Some(vb.meta.owner.clone()),
                peer_region: Some(vb.meta.region.clone()),
                tags: vec![],
            };
            let r = try_op(e, &va.meta.owner, &va.meta.region, |w, c| {
                peering::create(w, c, req, &|_| true)
            });
            note(
                &mut b.log,
                format!(
                    "CreateVpcPeeringConnection {} -> {}",
                    va.meta.id, vb.meta.id
                ),
                &r,
            );
            let Ok(p) = r else { return };
            let id = p.id.clone();
            b.peerings.push((id.clone(), ia, ib));
            advance(e, 1_000);
            let (ao, ar) = (va.meta.owner.clone(), va.meta.region.clone());
            let (bo, br) = (vb.meta.owner.clone(), vb.meta.region.clone());
            match fate {
                Fate::Pending => {}
                Fate::Active | Fate::Deleted => {
                    let r = try_op(e, &bo, &br, |w, c| peering::accept(w, c, &id));
                    note(&mut b.log, format!("AcceptVpcPeeringConnection {id}"), &r);
                    advance(e, 1_000);
                }
                Fate::Rejected => {
                    let r = try_op(e, &bo, &br, |w, c| peering::reject(w, c, &id));
                    note(&mut b.log, format!("RejectVpcPeeringConnection {id}"), &r);
                }
            }
            let tables = |x: &BVpc| {
                let mut t = vec![x.vpc.main_route_table.clone()];
                if all_tables {
                    t.extend(x.subnets.iter().filter_map(|s| s.own_table.clone()));
                }
                t
            };
            let (ta, tb) = (tables(&b.vpcs[ia]), tables(&b.vpcs[ib]));
            let add_route = |e: &mut Env, v: &Vpc, rtb: &str, to: &Vpc, log: &mut Vec<String>| {
                let spec = route::RouteSpec {
                    destination_cidr_block: Some(to.primary_cidr().to_string()),
                    vpc_peering_connection_id: Some(id.clone()),
                    ..Default::default()
                };
                let r = try_op(e, &v.meta.owner, &v.meta.region, |w, c| {
                    route::create_route(w, c, rtb, &spec)
                });
                note(
                    log,
                    format!("CreateRoute {rtb} {} -> {id}", to.primary_cidr()),
                    &r,
                );
            };
            if routes & 1 != 0 {
                for rtb in &ta {
                    add_route(e, &va, rtb, &vb, &mut b.log);
                }
            }
            if routes & 2 != 0 {
                for rtb in &tb {
                    add_route(e, &vb, rtb, &va, &mut b.log);
                }
            }
            if let Fate::Deleted = fate {
                let r = try_op(e, &ao, &ar, |w, c| peering::delete(w, c, &id));
                note(&mut b.log, format!("DeleteVpcPeeringConnection {id}"), &r);
            }
        }
        OpG::Route {
            vpc,
            table,
            dest,
            target,
        } => {
            let v = usize::from(vpc) % nv;
            let bv = &b.vpcs[v];
            let rtb = match table {
                0 => bv.vpc.main_route_table.clone(),
                t => bv
                    .subnets
                    .get(usize::from(t - 1))
                    .and_then(|s| s.own_table.clone())
                    .unwrap_or_else(|| bv.vpc.main_route_table.clone()),
            };
            let Some(dest) = b.cidr(&e.w, dest) else {
                return;
            };
            let mut spec = route::RouteSpec {
                destination_cidr_block: Some(dest.clone()),
                ..Default::default()
            };
            match target {
                TargetG::Peering(k) => {
                    let mine: Vec<&String> = b
                        .peerings
                        .iter()
                        .filter(|(_, x, y)| *x == v || *y == v)
                        .map(|(id, _, _)| id)
                        .collect();
                    if mine.is_empty() {
                        b.log
                            .push(format!("CreateRoute {rtb} {dest} -> (no peering: skipped)"));
                        return;
                    }
                    spec.vpc_peering_connection_id =
                        Some(mine[usize::from(k) % mine.len()].clone());
                }
                TargetG::Igw => match &bv.igw {
                    Some(g) => spec.gateway_id = Some(g.clone()),
                    None => {
                        b.log.push(format!(
                            "CreateRoute {rtb} {dest} -> (no internet gateway: skipped)"
                        ));
                        return;
                    }
                },
            }
            let t = spec
                .vpc_peering_connection_id
                .clone()
                .or(spec.gateway_id.clone())
                .unwrap_or_default();
            let (o, r) = b.owner(v);
            let res = try_op(e, &o, &r, |w, c| route::create_route(w, c, &rtb, &spec));
            note(&mut b.log, format!("CreateRoute {rtb} {dest} -> {t}"), &res);
        }
        OpG::Sg {
            vpc,
            extra,
            egress,
            proto,
            ports,
            icmp,
            peer,
        } => {
            let v = usize::from(vpc) % nv;
            let bv = &b.vpcs[v];
            let group = if extra {
                bv.extra_sg.clone().unwrap_or(bv.vpc.default_sg.clone())
            } else {
                bv.vpc.default_sg.clone()
            };
            let (pname, range) = match proto {
                ProtoG::Icmp => ("icmp", Some(icmp_of(icmp))),
                ProtoG::Tcp => ("tcp", Some(ports_of(ports))),
                ProtoG::Udp => ("udp", Some(ports_of(ports))),
                ProtoG::All => ("-1", None),
            };
            let mut p = sg::Permission {
                protocol: Some(pname.into()),
                from_port: range.map(|r| r.0),
                to_port: range.map(|r| r.1),
                ..Default::default()
            };
            let label = match peer {
                SgPeerG::Cidr(c) => {
                    let Some(c) = b.cidr(&e.w, c) else {
                        return;
                    };
                    p.ipv4.push(sg::Source {
                        value: c.clone(),
                        description: None,
                    });
                    c
                }
                SgPeerG::Group { vpc, extra } => {
                    let other = &b.vpcs[usize::from(vpc) % nv];
                    let gid = if extra {
                        other
                            .extra_sg
                            .clone()
                            .unwrap_or(other.vpc.default_sg.clone())
                    } else {
                        other.vpc.default_sg.clone()
                    };
                    p.groups.push(sg::PairSpec {
                        group_id: Some(gid.clone()),
                        user_id: Some(other.vpc.meta.owner.clone()),
                        ..Default::default()
                    });
                    gid
                }
            };
            let (o, r) = b.owner(v);
            let res = try_op(e, &o, &r, |w, c| {
                sg::authorize(w, c, &group, egress, &[p], vec![])
            });
            note(
                &mut b.log,
                format!(
                    "Authorize{} {group} {pname} {range:?} {label}",
                    if egress { "Egress" } else { "Ingress" }
                ),
                &res,
            );
        }
        OpG::RevokeEgress { vpc, extra } => {
            let v = usize::from(vpc) % nv;
            let bv = &b.vpcs[v];
            let group = if extra {
                bv.extra_sg.clone().unwrap_or(bv.vpc.default_sg.clone())
            } else {
                bv.vpc.default_sg.clone()
            };
            let ids: Vec<String> =
                e.w.get::<SecurityGroup>(&group)
                    .map(|g| {
                        g.egress
                            .iter()
                            .filter(|r| {
                                r.protocol == "-1"
                                    && matches!(r.peer, SgPeer::Cidr4(n) if n.prefix_len() == 0)
                            })
                            .map(|r| r.id.clone())
                            .collect()
                    })
                    .unwrap_or_default();
            let (o, r) = b.owner(v);
            let res = try_op(e, &o, &r, |w, c| sg::revoke_ids(w, c, &group, true, &ids));
            note(
                &mut b.log,
                format!("RevokeSecurityGroupEgress {group} all to 0.0.0.0/0"),
                &res,
            );
        }
        OpG::Acl {
            vpc,
            subnet,
            rule,
            egress,
            allow,
            proto,
            ports,
            icmp,
            cidr,
        } => {
            let v = usize::from(vpc) % nv;
            let bv = &b.vpcs[v];
            let s = &bv.subnets[usize::from(subnet) % bv.subnets.len()];
            let Some(a) = acl::acl_for_subnet(&e.w, &s.subnet.meta.id).map(|a| a.meta.id.clone())
            else {
                return;
            };
            let Some(cidr) = b.cidr(&e.w, cidr) else {
                return;
            };
            let (pname, range, ic) = match proto {
                ProtoG::Icmp => ("1", None, Some(icmp_of(icmp))),
                ProtoG::Tcp => ("6", Some(ports_of(ports)), None),
                ProtoG::Udp => ("17", Some(ports_of(ports)), None),
                ProtoG::All => ("-1", None, None),
            };
            let spec = acl::EntrySpec {
                rule_number: Some(RULE_NUMBERS[usize::from(rule) % RULE_NUMBERS.len()]),
                protocol: Some(pname.into()),
                rule_action: Some(if allow { "allow" } else { "deny" }.into()),
                egress,
                cidr_block: Some(cidr.clone()),
                port_from: range.map(|r| r.0),
                port_to: range.map(|r| r.1),
                icmp_type: ic.map(|r| r.0),
                icmp_code: ic.map(|r| r.1),
                ..Default::default()
            };
            let label = format!(
                "CreateNetworkAclEntry {a} #{} {} {} proto={pname} ports={range:?} icmp={ic:?} {cidr}",
                spec.rule_number.unwrap_or(0),
                if egress { "egress" } else { "ingress" },
                if allow { "allow" } else { "deny" },
            );
            let (o, r) = b.owner(v);
            let res = try_op(e, &o, &r, |w, c| acl::create_entry(w, c, &a, &spec));
            note(&mut b.log, label, &res);
        }
        OpG::DeletePeering { k, by_accepter } => {
            if b.peerings.is_empty() {
                return;
            }
            let (id, ia, ib) = b.peerings[usize::from(k) % b.peerings.len()].clone();
            let by = if by_accepter { ib } else { ia };
            let (o, r) = b.owner(by);
            let res = try_op(e, &o, &r, |w, c| peering::delete(w, c, &id));
            note(
                &mut b.log,
                format!("DeleteVpcPeeringConnection {id} by {o}"),
                &res,
            );
        }
    }
}
