//! Security groups: create, delete, describe, rules, references and stale rules.

use super::{Handler, Req};
use crate::params::Params;
use crate::query::{self, tag_field};
use crate::xml::Xml;
use vpc_model::ops::sg::{
    self as model, CreateGroup, PairSpec, PairView, PermView, Permission, Source,
};
use vpc_model::{Ctx, Fault, SecurityGroup, SgPeer, SgRule, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateSecurityGroup", Handler::Write(create_group)),
    ("DeleteSecurityGroup", Handler::Write(delete_group)),
    ("DescribeSecurityGroups", Handler::Read(describe_groups)),
    (
        "AuthorizeSecurityGroupIngress",
        Handler::Write(authorize_ingress),
    ),
    (
        "AuthorizeSecurityGroupEgress",
        Handler::Write(authorize_egress),
    ),
    ("RevokeSecurityGroupIngress", Handler::Write(revoke_ingress)),
    ("RevokeSecurityGroupEgress", Handler::Write(revoke_egress)),
    ("DescribeSecurityGroupRules", Handler::Read(describe_rules)),
    (
        "DescribeSecurityGroupReferences",
        Handler::Read(describe_references),
    ),
    ("DescribeStaleSecurityGroups", Handler::Read(describe_stale)),
];

// ---- Parameters ----------------------------------------------------------

/// `prefix.N.<key>` / `prefix.N.Description` entries.
fn sources(p: &Params, prefix: &str, key: &str) -> Result<Vec<Source>, Fault> {
    p.indexed(prefix)?
        .into_iter()
        .map(|s| {
            s.allow_only(&[key, "Description"])?;
            let value = s
                .get(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Fault::missing(&s.wire(key)))?;
            Ok(Source {
                value: value.to_string(),
                description: s.string("Description"),
            })
        })
        .collect()
}

fn pair(g: &Params) -> Result<PairSpec, Fault> {
    g.allow_only(&[
        "GroupId",
        "GroupName",
        "UserId",
        "VpcId",
        "VpcPeeringConnectionId",
        "Description",
        "PeeringStatus",
    ])?;
    Ok(PairSpec {
        group_id: g.string("GroupId"),
        group_name: g.string("GroupName"),
        user_id: g.string("UserId"),
        vpc_id: g.string("VpcId"),
        peering_id: g.string("VpcPeeringConnectionId"),
        description: g.string("Description"),
    })
}

/// `IpPermissions.N.*`, plus the legacy flat form (`IpProtocol`, `CidrIp`, …).
pub(super) fn permissions(p: &Params) -> Result<Vec<Permission>, Fault> {
    let mut out = Vec::new();
    for ip in p.indexed("IpPermissions")? {
        ip.allow_only(&[
            "IpProtocol",
            "FromPort",
            "ToPort",
            "IpRanges.",
            "Ipv6Ranges.",
            "PrefixListIds.",
            "Groups.",
            "UserIdGroupPairs.",
        ])?;
        let mut groups: Vec<PairSpec> = ip
            .indexed("Groups")?
            .iter()
            .map(pair)
            .collect::<Result<_, _>>()?;
        // The member's name, in case a client sends it instead of the wire name.
        for g in ip.indexed("UserIdGroupPairs")? {
            groups.push(pair(&g)?);
        }
        out.push(Permission {
            protocol: ip.string("IpProtocol"),
            from_port: ip.int("FromPort")?,
            to_port: ip.int("ToPort")?,
            ipv4: sources(&ip, "IpRanges", "CidrIp")?,
            ipv6: sources(&ip, "Ipv6Ranges", "CidrIpv6")?,
            prefix_lists: sources(&ip, "PrefixListIds", "PrefixListId")?,
            groups,
        });
    }
    const FLAT: &[&str] = &[
        "IpProtocol",
        "FromPort",
        "ToPort",
        "CidrIp",
        "SourceSecurityGroupName",
        "SourceSecurityGroupOwnerId",
    ];
    if FLAT.iter().any(|k| p.has(k)) {
        let source_group = p.string("SourceSecurityGroupName");
        let mut perm = Permission {
            protocol: p
                .string("IpProtocol")
                .or_else(|| source_group.as_ref().map(|_| "-1".to_string())),
            from_port: p.int("FromPort")?,
            to_port: p.int("ToPort")?,
            ..Permission::default()
        };
        if let Some(c) = p.string("CidrIp") {
            perm.ipv4.push(Source {
                value: c,
                description: None,
            });
        }
        if let Some(n) = source_group {
            let (group_id, group_name) = if n.starts_with("sg-") {
                (Some(n), None)
            } else {
                (None, Some(n))
            };
            perm.groups.push(PairSpec {
                group_id,
                group_name,
                user_id: p.string("SourceSecurityGroupOwnerId"),
                ..PairSpec::default()
            });
        }
        out.push(perm);
    }
    Ok(out)
}

/// The addressed group: `GroupId`, or (ingress only) `GroupName` in the default VPC.
pub(super) fn target(w: &World, ctx: &Ctx<'_>, p: &Params, by_name: bool) -> Result<String, Fault> {
    let name = if by_name { p.get("GroupName") } else { None };
    model::resolve(w, ctx, p.get("GroupId"), name)
}

// ---- Rendering -----------------------------------------------------------

fn render_pair(x: &mut Xml, v: &PairView) {
    x.opt("userId", v.user_id.as_deref())
        .leaf("groupId", &v.group_id)
        .opt("groupName", v.group_name.as_deref())
        .opt("vpcId", v.vpc_id.as_deref())
        .opt("vpcPeeringConnectionId", v.peering_id.as_deref())
        .opt("peeringStatus", v.peering_status.as_deref())
        .opt("description", v.description.as_deref());
}

fn render_perm(x: &mut Xml, p: &PermView) {
    x.leaf("ipProtocol", &p.protocol);
    if let Some(f) = p.from_port {
        x.num("fromPort", f);
    }
    if let Some(t) = p.to_port {
        x.num("toPort", t);
    }
    x.set("groups", &p.groups, render_pair);
    x.set("ipRanges", &p.ipv4, |x, s| {
        x.leaf("cidrIp", &s.value)
            .opt("description", s.description.as_deref());
    });
    x.set("ipv6Ranges", &p.ipv6, |x, s| {
        x.leaf("cidrIpv6", &s.value)
            .opt("description", s.description.as_deref());
    });
    x.set("prefixListIds", &p.prefix_lists, |x, s| {
        x.leaf("prefixListId", &s.value)
            .opt("description", s.description.as_deref());
    });
}

fn render_group(x: &mut Xml, w: &World, g: &SecurityGroup) {
    x.leaf("ownerId", &g.meta.owner)
        .leaf("groupId", &g.meta.id)
        .leaf("groupName", &g.name)
        .leaf("groupDescription", &g.description);
    x.set("ipPermissions", model::permissions(w, g, false), |x, p| {
        render_perm(x, &p)
    });
    x.set(
        "ipPermissionsEgress",
        model::permissions(w, g, true),
        |x, p| render_perm(x, &p),
    );
    x.leaf("vpcId", &g.vpc_id)
        .leaf("securityGroupArn", &model::arn(g))
        .tags(&g.meta.tags);
}

fn render_peer(x: &mut Xml, w: &World, g: &SecurityGroup, r: &SgRule) {
    match &r.peer {
        SgPeer::Cidr4(n) => {
            x.leaf("cidrIpv4", &n.to_string());
        }
        SgPeer::Cidr6(n) => {
            x.leaf("cidrIpv6", &n.to_string());
        }
        SgPeer::PrefixList(id) => {
            x.leaf("prefixListId", id);
        }
        SgPeer::Group { .. } => {
            if let Some(v) = model::pair_view(w, &g.vpc_id, r) {
                x.open("referencedGroupInfo")
                    .leaf("groupId", &v.group_id)
                    .opt("peeringStatus", v.peering_status.as_deref())
                    .opt("userId", v.user_id.as_deref())
                    .opt("vpcId", v.vpc_id.as_deref())
                    .opt("vpcPeeringConnectionId", v.peering_id.as_deref())
                    .close("referencedGroupInfo");
            }
        }
    }
}

/// One `SecurityGroupRule` item.
fn render_rule(x: &mut Xml, w: &World, g: &SecurityGroup, r: &SgRule, egress: bool) {
    x.leaf("securityGroupRuleId", &r.id)
        .leaf("groupId", &g.meta.id)
        .leaf("groupOwnerId", &g.meta.owner)
        .bool("isEgress", egress)
        .leaf("ipProtocol", &r.protocol)
        .num("fromPort", r.from_port.unwrap_or(-1))
        .num("toPort", r.to_port.unwrap_or(-1));
    render_peer(x, w, g, r);
    x.opt("description", r.description.as_deref())
        .tags(&r.tags)
        .leaf("securityGroupRuleArn", &model::rule_arn(g, r));
}

/// One `RevokedSecurityGroupRule` item.
fn render_revoked(x: &mut Xml, g: &SecurityGroup, r: &SgRule, egress: bool) {
    x.leaf("securityGroupRuleId", &r.id)
        .leaf("groupId", &g.meta.id)
        .bool("isEgress", egress)
        .leaf("ipProtocol", &r.protocol)
        .num("fromPort", r.from_port.unwrap_or(-1))
        .num("toPort", r.to_port.unwrap_or(-1));
    match &r.peer {
        SgPeer::Cidr4(n) => x.leaf("cidrIpv4", &n.to_string()),
        SgPeer::Cidr6(n) => x.leaf("cidrIpv6", &n.to_string()),
        SgPeer::PrefixList(id) => x.leaf("prefixListId", id),
        SgPeer::Group { group_id, .. } => x.leaf("referencedGroupId", group_id),
    };
    x.opt("description", r.description.as_deref());
}

// ---- Groups --------------------------------------------------------------

fn create_group(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let g = model::create_group(
        w,
        ctx,
        CreateGroup {
            name: p.string("GroupName"),
            description: p.string("GroupDescription"),
            vpc_id: p.string("VpcId"),
            tags: p.tag_specs("security-group")?,
        },
    )?;
    let mut x = r.xml();
    x.leaf("groupId", &g.meta.id)
        .tags(&g.meta.tags)
        .leaf("securityGroupArn", &model::arn(&g));
    r.done(x)
}

fn delete_group(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = target(w, ctx, r.p, true)?;
    model::delete_group(w, ctx, &id)?;
    let mut x = r.xml();
    x.bool("return", true).leaf("groupId", &id);
    r.done(x)
}

fn rule_values(w: &World, rules: &[SgRule], name: &str) -> Option<Vec<String>> {
    let collect =
        |f: &dyn Fn(&SgRule) -> Option<String>| Some(rules.iter().filter_map(f).collect());
    match name {
        "cidr" => collect(&|r| match &r.peer {
            SgPeer::Cidr4(n) => Some(n.to_string()),
            _ => None,
        }),
        "ipv6-cidr" => collect(&|r| match &r.peer {
            SgPeer::Cidr6(n) => Some(n.to_string()),
            _ => None,
        }),
        "prefix-list-id" => collect(&|r| match &r.peer {
            SgPeer::PrefixList(id) => Some(id.clone()),
            _ => None,
        }),
        "group-id" => collect(&|r| match &r.peer {
            SgPeer::Group { group_id, .. } => Some(group_id.clone()),
            _ => None,
        }),
        "user-id" => collect(&|r| match &r.peer {
            SgPeer::Group { user_id, .. } => Some(user_id.clone()),
            _ => None,
        }),
        "group-name" => collect(&|r| match &r.peer {
            SgPeer::Group { group_id, .. } => {
                w.get::<SecurityGroup>(group_id).map(|g| g.name.clone())
            }
            _ => None,
        }),
        "from-port" => collect(&|r| r.from_port.map(|p| p.to_string())),
        "to-port" => collect(&|r| r.to_port.map(|p| p.to_string())),
        "protocol" => {
            let mut v = Vec::new();
            for r in rules {
                v.push(r.protocol.clone());
                let num = match r.protocol.as_str() {
                    "tcp" => "6",
                    "udp" => "17",
                    "icmp" => "1",
                    "icmpv6" => "58",
                    _ => continue,
                };
                v.push(num.to_string());
            }
            Some(v)
        }
        _ => None,
    }
}

const RULE_FILTERS: &[&str] = &[
    "cidr",
    "ipv6-cidr",
    "prefix-list-id",
    "group-id",
    "user-id",
    "group-name",
    "from-port",
    "to-port",
    "protocol",
];

fn group_filters() -> Vec<String> {
    let mut v: Vec<String> = [
        "group-id",
        "group-name",
        "vpc-id",
        "owner-id",
        "description",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for f in RULE_FILTERS {
        v.push(format!("ip-permission.{f}"));
        v.push(format!("egress.ip-permission.{f}"));
    }
    v
}

fn describe_groups(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("GroupId")?;
    let names = r.p.list("GroupName")?;
    let mut items: Vec<&SecurityGroup> = if ids.is_empty() && names.is_empty() {
        w.scoped::<SecurityGroup>(&ctx.account, &ctx.region)
            .collect()
    } else {
        let mut v = Vec::new();
        for id in &ids {
            v.push(model::get(w, ctx, id)?);
        }
        for n in &names {
            v.push(model::by_name(w, ctx, n)?);
        }
        v
    };
    items.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    items.dedup_by(|a, b| a.meta.id == b.meta.id);
    let field = |g: &&SecurityGroup, name: &str| -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        match name {
            "group-id" => one(&g.meta.id),
            "group-name" => one(&g.name),
            "vpc-id" => one(&g.vpc_id),
            "owner-id" => one(&g.meta.owner),
            "description" => one(&g.description),
            n => {
                if let Some(f) = n.strip_prefix("egress.ip-permission.") {
                    rule_values(w, &g.egress, f)
                } else if let Some(f) = n.strip_prefix("ip-permission.") {
                    rule_values(w, &g.ingress, f)
                } else {
                    tag_field(&g.meta.tags, n)
                }
            }
        }
    };
    let known = group_filters();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let items = query::apply(items, &r.p.filters()?, &field, &known)?;
    let (page, next) = query::paginate(items, r.p, |g| g.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("securityGroupInfo", page, |x, g| render_group(x, w, g));
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- Rules ---------------------------------------------------------------

fn authorize(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>, egress: bool) -> Result<String, Fault> {
    let id = target(w, ctx, r.p, !egress)?;
    let perms = permissions(r.p)?;
    let tags = r.p.tag_specs("security-group-rule")?;
    let rules = model::authorize(w, ctx, &id, egress, &perms, tags)?;
    let g = w
        .get::<SecurityGroup>(&id)
        .ok_or_else(|| vpc_model::ops::sg_not_found(&id))?;
    let mut x = r.xml();
    x.bool("return", true);
    x.set("securityGroupRuleSet", &rules, |x, rule| {
        render_rule(x, w, g, rule, egress)
    });
    r.done(x)
}

fn authorize_ingress(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    authorize(w, ctx, r, false)
}

fn authorize_egress(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    authorize(w, ctx, r, true)
}

fn revoke(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>, egress: bool) -> Result<String, Fault> {
    let id = target(w, ctx, r.p, !egress)?;
    let perms = permissions(r.p)?;
    let rule_ids = r.p.list("SecurityGroupRuleId")?;
    let removed = match (perms.is_empty(), rule_ids.is_empty()) {
        (false, false) => return Err(Fault::new(
            "InvalidParameterCombination",
            "The parameter SecurityGroupRuleIds cannot be used with the parameter IpPermissions",
        )),
        (true, false) => model::revoke_ids(w, ctx, &id, egress, &rule_ids)?,
        _ => model::revoke(w, ctx, &id, egress, &perms)?,
    };
    let g = w
        .get::<SecurityGroup>(&id)
        .ok_or_else(|| vpc_model::ops::sg_not_found(&id))?;
    let mut x = r.xml();
    x.bool("return", true);
    x.set("revokedSecurityGroupRuleSet", &removed, |x, rule| {
        render_revoked(x, g, rule, egress)
    });
    r.done(x)
}

fn revoke_ingress(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    revoke(w, ctx, r, false)
}

fn revoke_egress(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    revoke(w, ctx, r, true)
}

fn describe_rules(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("SecurityGroupRuleId")?;
    let items = if ids.is_empty() {
        model::all_rules(w, ctx)
    } else {
        let mut v = Vec::new();
        for id in &ids {
            v.push(model::find_rule(w, ctx, id)?);
        }
        v.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        v.dedup_by(|a, b| a.1.id == b.1.id);
        v
    };
    type Row<'w> = (&'w SecurityGroup, &'w SgRule, bool);
    let field = |row: &Row<'_>, name: &str| -> Option<Vec<String>> {
        match name {
            "group-id" => Some(vec![row.0.meta.id.clone()]),
            "security-group-rule-id" => Some(vec![row.1.id.clone()]),
            n => tag_field(&row.1.tags, n),
        }
    };
    let filters = r.p.filters()?;
    // A `group-id` value that cannot be a group ID is refused, as AWS does
    // (a wildcard pattern is not an ID and is not checked).
    for f in filters.iter().filter(|f| f.name == "group-id") {
        for v in f.values.iter().filter(|v| !v.contains(['*', '?'])) {
            vpc_model::ops::SG.check(v)?;
        }
    }
    let items = query::apply(
        items,
        &filters,
        &field,
        &["group-id", "security-group-rule-id"],
    )?;
    let (page, next) = query::paginate(items, r.p, |row| row.1.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("securityGroupRuleSet", page, |x, (g, rule, egress)| {
        render_rule(x, w, g, rule, egress)
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- References and stale rules -----------------------------------------

fn describe_references(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let refs = model::references(w, ctx, &r.p.list("GroupId")?)?;
    let mut x = r.xml();
    x.set("securityGroupReferenceSet", &refs, |x, f| {
        x.leaf("groupId", &f.group_id)
            .leaf("referencingVpcId", &f.referencing_vpc_id)
            .opt("vpcPeeringConnectionId", f.peering_id.as_deref());
    });
    r.done(x)
}

fn render_stale_perm(x: &mut Xml, p: &PermView) {
    x.leaf("ipProtocol", &p.protocol);
    if let Some(f) = p.from_port {
        x.num("fromPort", f);
    }
    if let Some(t) = p.to_port {
        x.num("toPort", t);
    }
    x.set("groups", &p.groups, render_pair);
}

fn describe_stale(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let vpc_id = r.p.req("VpcId")?;
    let groups = model::stale_groups(w, ctx, vpc_id)?;
    let (page, next) = query::paginate(groups, r.p, |g| g.group_id.clone(), 5, 255)?;
    let mut x = r.xml();
    x.set("staleSecurityGroupSet", &page, |x, g| {
        x.leaf("groupId", &g.group_id)
            .leaf("groupName", &g.name)
            .leaf("description", &g.description)
            .leaf("vpcId", &g.vpc_id);
        x.set("staleIpPermissions", &g.ingress, |x, p| {
            render_stale_perm(x, p)
        });
        x.set("staleIpPermissionsEgress", &g.egress, |x, p| {
            render_stale_perm(x, p)
        });
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpc_model::ops::peering::{self, CreatePeering};
    use vpc_model::region::Regions;
    use vpc_model::{Limits, Timestamp};

    use vpc_model::ctx::SeqIds as Seq;

    struct Env {
        w: World,
        ids: Seq,
        limits: Limits,
        now: Timestamp,
        regions: Regions,
    }

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    impl Env {
        fn with<R>(&mut self, account: &str, f: impl FnOnce(&mut World, &mut Ctx<'_>) -> R) -> R {
            let zones = vec![("us-east-1a".to_string(), "use1-az1".to_string())];
            let mut ctx = Ctx {
                account: account.into(),
                region: "us-east-1".into(),
                now: self.now,
                ids: &mut self.ids,
                limits: &self.limits,
                zones: &zones,
            };
            f(&mut self.w, &mut ctx)
        }

        fn call(
            &mut self,
            account: &str,
            action: &str,
            pairs: &[(&str, &str)],
        ) -> Result<String, Fault> {
            let params = p(pairs);
            let handler = crate::actions::lookup(action).expect("known action");
            let regions = std::mem::take(&mut self.regions);
            let out = self.with(account, |w, ctx| {
                let req = Req {
                    p: &params,
                    action,
                    request_id: "req-1",
                    regions: &regions,
                    hosts: &Default::default(),
                };
                match handler {
                    Handler::Read(f) => f(w, ctx, &req),
                    Handler::Write(f) => f(w, ctx, &req),
                }
            });
            self.regions = regions;
            out
        }

        fn advance(&mut self) {
            self.now = self.now.plus_ms(self.limits.peering_transition_ms + 1);
            peering::tick(&mut self.w, self.now);
        }
    }

    /// The text of the first `<tag>` in `xml`.
    fn first<'a>(xml: &'a str, tag: &str) -> &'a str {
        let open = format!("<{tag}>");
        let start = xml.find(&open).expect(tag) + open.len();
        let end = xml[start..].find(&format!("</{tag}>")).expect(tag);
        &xml[start..start + end]
    }

    #[test]
    fn peer_reference_round_trip() {
        let mut e = Env {
            w: World::default(),
            ids: Seq(0),
            limits: Limits::default(),
            now: Timestamp(1_000_000),
            regions: Regions::default(),
        };
        let va = e
            .call(A, "CreateVpc", &[("CidrBlock", "10.0.0.0/16")])
            .unwrap();
        let va = first(&va, "vpcId").to_string();
        let vb = e
            .call(B, "CreateVpc", &[("CidrBlock", "10.1.0.0/16")])
            .unwrap();
        let vb = first(&vb, "vpcId").to_string();
        let ga = e
            .call(
                A,
                "CreateSecurityGroup",
                &[
                    ("GroupName", "app"),
                    ("GroupDescription", "app"),
                    ("VpcId", &va),
                ],
            )
            .unwrap();
        let ga = first(&ga, "groupId").to_string();
        let gb = e
            .call(
                B,
                "CreateSecurityGroup",
                &[
                    ("GroupName", "db"),
                    ("GroupDescription", "db"),
                    ("VpcId", &vb),
                ],
            )
            .unwrap();
        let gb = first(&gb, "groupId").to_string();
        let rule = [
            ("GroupId", ga.as_str()),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "5432"),
            ("IpPermissions.1.ToPort", "5432"),
            ("IpPermissions.1.Groups.1.GroupId", gb.as_str()),
            ("IpPermissions.1.Groups.1.UserId", B),
        ];
        let err = e
            .call(A, "AuthorizeSecurityGroupIngress", &rule)
            .unwrap_err();
        assert_eq!(err.code, "InvalidGroup.NotFound");

        let pcx = e.with(A, |w, ctx| {
            peering::create(
                w,
                ctx,
                CreatePeering {
                    vpc_id: Some(va.clone()),
                    peer_vpc_id: Some(vb.clone()),
                    peer_owner_id: Some(B.into()),
                    peer_region: None,
                    tags: vec![],
                },
                &|_| true,
            )
            .unwrap()
            .id
        });
        e.advance();
        e.with(B, |w, ctx| peering::accept(w, ctx, &pcx).unwrap());
        e.advance();

        let out = e.call(A, "AuthorizeSecurityGroupIngress", &rule).unwrap();
        let info = first(&out, "referencedGroupInfo");
        assert!(
            info.contains("<peeringStatus>active</peeringStatus>"),
            "{out}"
        );
        assert!(info.contains(&format!(
            "<vpcPeeringConnectionId>{pcx}</vpcPeeringConnectionId>"
        )));
        let d = e
            .call(A, "DescribeSecurityGroups", &[("GroupId.1", &ga)])
            .unwrap();
        assert!(
            first(&d, "ipPermissions").contains(&format!("<vpcId>{vb}</vpcId>")),
            "{d}"
        );
        let refs = e
            .call(B, "DescribeSecurityGroupReferences", &[("GroupId.1", &gb)])
            .unwrap();
        assert_eq!(first(&refs, "referencingVpcId"), va);
        let stale = e
            .call(A, "DescribeStaleSecurityGroups", &[("VpcId", &va)])
            .unwrap();
        assert!(stale.contains("<staleSecurityGroupSet/>"), "{stale}");

        e.with(B, |w, ctx| peering::delete(w, ctx, &pcx).unwrap());
        let stale = e
            .call(A, "DescribeStaleSecurityGroups", &[("VpcId", &va)])
            .unwrap();
        let item = first(&stale, "staleIpPermissions");
        assert!(
            item.contains("<peeringStatus>deleted</peeringStatus>"),
            "{stale}"
        );
        assert!(item.contains(&format!("<groupId>{gb}</groupId>")));
        assert!(item.contains("<groupName>db</groupName>"));
        let d = e
            .call(A, "DescribeSecurityGroups", &[("GroupId.1", &ga)])
            .unwrap();
        assert!(d.contains("<peeringStatus>deleted</peeringStatus>"), "{d}");
        let refs = e
            .call(B, "DescribeSecurityGroupReferences", &[("GroupId.1", &gb)])
            .unwrap();
        assert!(refs.contains("<securityGroupReferenceSet/>"), "{refs}");
        // The peer group can go; the stale rule can still be revoked.
        e.call(B, "DeleteSecurityGroup", &[("GroupId", &gb)])
            .unwrap();
        let stale = e
            .call(A, "DescribeStaleSecurityGroups", &[("VpcId", &va)])
            .unwrap();
        assert!(
            !first(&stale, "staleIpPermissions").contains("<userId>"),
            "{stale}"
        );
        e.call(A, "RevokeSecurityGroupIngress", &rule).unwrap();
        let stale = e
            .call(A, "DescribeStaleSecurityGroups", &[("VpcId", &va)])
            .unwrap();
        assert!(stale.contains("<staleSecurityGroupSet/>"), "{stale}");
    }

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn parses_permissions() {
        let x = p(&[
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "22"),
            ("IpPermissions.1.ToPort", "22"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/16"),
            ("IpPermissions.1.IpRanges.1.Description", "ssh"),
            ("IpPermissions.1.Ipv6Ranges.1.CidrIpv6", "::/0"),
            ("IpPermissions.1.Groups.1.GroupId", "sg-12345678"),
            ("IpPermissions.1.Groups.1.UserId", "222222222222"),
            ("IpPermissions.2.IpProtocol", "-1"),
            (
                "IpPermissions.2.PrefixListIds.1.PrefixListId",
                "pl-12345678",
            ),
        ]);
        let v = permissions(&x).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].from_port, Some(22));
        assert_eq!(v[0].ipv4[0].description.as_deref(), Some("ssh"));
        assert_eq!(v[0].ipv6[0].value, "::/0");
        assert_eq!(v[0].groups[0].user_id.as_deref(), Some("222222222222"));
        assert_eq!(v[1].prefix_lists[0].value, "pl-12345678");

        let legacy = p(&[
            ("IpProtocol", "tcp"),
            ("FromPort", "80"),
            ("ToPort", "80"),
            ("CidrIp", "0.0.0.0/0"),
        ]);
        let v = permissions(&legacy).unwrap();
        assert_eq!(v[0].ipv4[0].value, "0.0.0.0/0");
        let named = p(&[("SourceSecurityGroupName", "web")]);
        let v = permissions(&named).unwrap();
        assert_eq!(v[0].protocol.as_deref(), Some("-1"));
        assert_eq!(v[0].groups[0].group_name.as_deref(), Some("web"));
        assert!(permissions(&p(&[])).unwrap().is_empty());
    }
}
