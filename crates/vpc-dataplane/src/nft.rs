//! nftables rulesets as typed objects of libnftables' JSON schema (pure),
//! built with the `nftables` crate and loaded with `nft -j -f -`.
//!
//! One `table inet vpcd` per router holds the `forward` chain of
//! `docs/dataplane.md` ("Filtering"): guards, source/destination check,
//! network ACLs, the conntrack shortcut, then security groups. Dispatch on
//! interface names goes through anonymous verdict maps inside a rule
//! (`iifname vmap { "e-…" : goto … }`: the crate's schema has no `verdict`
//! set type, so a named verdict map can neither be declared nor listed
//! back; the table is replaced as a whole on every change, so a named map
//! would buy nothing), and group references through named sets of member
//! addresses. `table ip vpcd_nat` holds the 1:1 NAT for public IPs.
//!
//! Objects are written leaves first (sets, then chains in the order they are
//! referenced from the bottom up), so every reference is to something
//! already defined.

use crate::plan::{ChainShape, NftShape, NftTable, RealEni, RealNat};
use ipnet::IpNet;
use nftables::expr::{
    Expression, Map, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, Range, SetItem,
    CT,
};
use nftables::schema::{self, NfListObject, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{self, JumpTarget, Log, Match, Operator, Statement, VerdictMap, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use vpc_model::ops::defaults::{STAR_V4, STAR_V6};
use vpc_model::rule_match::{self, AddressMatch, Family, RuleMatch, TrafficMatch};
use vpc_model::{ops, AclAction, AclEntry, NetworkAcl, SecurityGroup, SgPeer, SgRule, World};

/// One rule: its statements, in order.
pub(crate) type Rule = Vec<Statement<'static>>;

/// A string (an interface name, an address, a keyword, `@set`).
fn s(text: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(text.into()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

fn is(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    is(left, Operator::EQ, right)
}

fn ne(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    is(left, Operator::NEQ, right)
}

fn iifname(pattern: &str) -> Statement<'static> {
    eq(meta(MetaKey::Iifname), s(pattern))
}

fn oifname(pattern: &str) -> Statement<'static> {
    eq(meta(MetaKey::Oifname), s(pattern))
}

fn nfproto(family: &'static str) -> Statement<'static> {
    eq(meta(MetaKey::Nfproto), s(family))
}

/// `ct state …` (a list for several states).
fn ct_state(states: &[&'static str]) -> Statement<'static> {
    let right = match states {
        [one] => s(*one),
        many => Expression::List(many.iter().map(|x| s(*x)).collect()),
    };
    is(ct("state"), Operator::IN, right)
}

fn counter() -> Statement<'static> {
    Statement::Counter(stmt::Counter::Anonymous(None))
}

fn drop() -> Statement<'static> {
    Statement::Drop(None)
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn ret() -> Statement<'static> {
    Statement::Return(None)
}

fn jump(chain: impl Into<String>) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: Cow::Owned(chain.into()),
    })
}

fn goto(chain: impl Into<String>) -> Statement<'static> {
    Statement::Goto(JumpTarget {
        target: Cow::Owned(chain.into()),
    })
}

/// `iifname NAME` or `oifname NAME` (`key`).
pub(crate) fn interface(key: MetaKey, name: &str) -> Statement<'static> {
    eq(meta(key), s(name))
}

/// `KEY != "NAME"` on an interface name (`oifname != "x-…"`).
pub(crate) fn interface_ne(key: MetaKey, name: &str) -> Statement<'static> {
    ne(meta(key), s(name))
}

/// `counter name "NAME"`: bumps a named counter object.
pub(crate) fn named_counter(name: &str) -> Statement<'static> {
    Statement::Counter(stmt::Counter::Named(Cow::Owned(name.to_string())))
}

/// `HEADER FIELD { prefix, … }` (`ip saddr { 10.1.0.0/24 }`): the address
/// lies in one of the prefixes.
pub(crate) fn in_prefixes(
    header: &'static str,
    field: &'static str,
    nets: &[IpNet],
) -> Statement<'static> {
    let items = nets
        .iter()
        .map(|n| SetItem::Element(net_expr(*n)))
        .collect();
    eq(
        payload(header, field),
        Expression::Named(NamedExpression::Set(items)),
    )
}

/// `KEY vmap { name : verdict, … }`, or None without entries (such a rule
/// would never match).
fn vmap(key: MetaKey, entries: Vec<(String, Statement<'static>)>) -> Option<Rule> {
    if entries.is_empty() {
        return None;
    }
    let items = entries
        .into_iter()
        .map(|(name, verdict)| SetItem::MappingStatement(s(name), verdict))
        .collect();
    Some(vec![Statement::VerdictMap(VerdictMap {
        key: meta(key),
        data: Expression::Named(NamedExpression::Set(items)),
    })])
}

/// A prefix as a set element or match value (a host address without its length).
fn net_expr(net: IpNet) -> Expression<'static> {
    let net = net.trunc();
    if net.prefix_len() == net.max_prefix_len() {
        s(net.addr().to_string())
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(s(net.addr().to_string())),
            len: u32::from(net.prefix_len()),
        }))
    }
}

/// The objects of one table, in definition order, and its shape.
struct Body {
    family: NfFamily,
    table: &'static str,
    objects: Vec<NfListObject<'static>>,
    shape: NftShape,
}

impl Body {
    fn new(family: NfFamily, table: &'static str) -> Body {
        Body {
            family,
            table,
            objects: Vec::new(),
            shape: NftShape::default(),
        }
    }

    fn add_set(
        &mut self,
        name: &str,
        ty: SetTypeValue<'static>,
        flags: Option<HashSet<SetFlag>>,
        elems: Vec<Expression<'static>>,
    ) {
        self.shape.sets.insert(name.to_string(), elems.len());
        self.objects.push(NfListObject::Set(Box::new(schema::Set {
            family: self.family,
            table: Cow::Borrowed(self.table),
            name: Cow::Owned(name.to_string()),
            handle: None,
            set_type: ty,
            policy: None,
            flags,
            elem: (!elems.is_empty()).then(|| Cow::Owned(elems)),
            timeout: None,
            gc_interval: None,
            size: None,
            comment: None,
        })));
    }

    fn set(
        &mut self,
        name: &str,
        ty: SetType,
        elems: impl IntoIterator<Item = Expression<'static>>,
    ) {
        self.add_set(
            name,
            SetTypeValue::Single(ty),
            None,
            elems.into_iter().collect(),
        );
    }

    /// A set of `ifname . address` pairs.
    fn pair_set(&mut self, name: &str, addr: SetType, elems: Vec<(String, String)>) {
        let elems = elems
            .into_iter()
            .map(|(ifname, a)| Expression::Named(NamedExpression::Concat(vec![s(ifname), s(a)])))
            .collect();
        let ty = SetTypeValue::Concatenated(Cow::Owned(vec![SetType::Ifname, addr]));
        self.add_set(name, ty, None, elems);
    }

    /// A set of prefixes (overlapping and adjacent ones merged first, as an
    /// interval set holds no overlaps).
    fn prefix_set(&mut self, name: &str, ty: SetType, elems: &[IpNet]) {
        let merged = IpNet::aggregate(&elems.iter().map(IpNet::trunc).collect());
        self.add_set(
            name,
            SetTypeValue::Single(ty),
            Some(HashSet::from([SetFlag::Interval])),
            merged.into_iter().map(net_expr).collect(),
        );
    }

    /// A map from IPv4 addresses to IPv4 addresses.
    fn address_map(&mut self, name: &str, elems: &[(Ipv4Addr, Ipv4Addr)]) {
        self.shape.sets.insert(name.to_string(), elems.len());
        let elem: Vec<Expression<'static>> = elems
            .iter()
            .map(|(k, v)| Expression::List(vec![s(k.to_string()), s(v.to_string())]))
            .collect();
        self.objects.push(NfListObject::Map(Box::new(schema::Map {
            family: self.family,
            table: Cow::Borrowed(self.table),
            name: Cow::Owned(name.to_string()),
            handle: None,
            set_type: SetTypeValue::Single(SetType::Ipv4Addr),
            map: SetTypeValue::Single(SetType::Ipv4Addr),
            policy: None,
            flags: None,
            elem: (!elem.is_empty()).then(|| Cow::Owned(elem)),
            timeout: None,
            gc_interval: None,
            size: None,
            comment: None,
        })));
    }

    /// A chain and its rules; a base chain's `hook` gives its type, hook,
    /// priority and policy.
    fn chain(
        &mut self,
        name: &str,
        hook: Option<(NfChainType, NfHook, i32, NfChainPolicy)>,
        rules: Vec<Rule>,
    ) {
        let policy = hook.map(|(.., p)| match p {
            NfChainPolicy::Drop => "drop",
            NfChainPolicy::Accept => "accept",
        });
        self.shape.chains.insert(
            name.to_string(),
            ChainShape {
                rules: rules.len(),
                policy,
            },
        );
        self.objects.push(NfListObject::Chain(schema::Chain {
            family: self.family,
            table: Cow::Borrowed(self.table),
            name: Cow::Owned(name.to_string()),
            newname: None,
            handle: None,
            _type: hook.map(|h| h.0),
            hook: hook.map(|h| h.1),
            prio: hook.map(|h| h.2),
            dev: None,
            policy: hook.map(|h| h.3),
        }));
        for expr in rules {
            self.objects.push(NfListObject::Rule(schema::Rule {
                family: self.family,
                table: Cow::Borrowed(self.table),
                chain: Cow::Owned(name.to_string()),
                expr: Cow::Owned(expr),
                handle: None,
                index: None,
                comment: None,
            }));
        }
    }

    fn done(self) -> NftTable {
        NftTable {
            family: self.family,
            name: self.table,
            objects: self.objects,
            shape: self.shape,
        }
    }
}

/// Priorities of the base chains (`filter`, `dstnat`, `srcnat`).
const PRIO_FILTER: i32 = 0;
const PRIO_DSTNAT: i32 = -100;
const PRIO_SRCNAT: i32 = 100;

/// What the router filter needs to know.
pub(crate) struct RouterInput<'a, 'w> {
    pub w: &'w World,
    pub enis: &'a [&'a RealEni<'w>],
    pub nats: &'a [&'a RealNat<'w>],
    /// Private to public IPv4 of this VPC.
    pub public: &'a BTreeMap<Ipv4Addr, Ipv4Addr>,
    /// Member addresses of every group.
    pub members: &'a BTreeMap<&'w str, (BTreeSet<Ipv4Addr>, BTreeSet<Ipv6Addr>)>,
    /// The VPC's internet link is an egress-only gateway's (the internet may
    /// not connect, `ops::eigw::internet_may_connect`): new connections
    /// arriving over it are dropped.
    pub egress_only_link: bool,
    /// The router's inter-region peering links: what arrives on them never
    /// leaves over the VXLAN link (it would cross the underlay in clear; the
    /// backbone across hosts delivers it on its destination's host).
    pub inter_region_links: Vec<String>,
}

/// Which end of a packet an address match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Source,
    Destination,
}

impl End {
    fn field(self) -> &'static str {
        match self {
            End::Source => "saddr",
            End::Destination => "daddr",
        }
    }
}

/// Matches `net` at `end`; /0 matches the family.
fn addr_match(end: End, net: IpNet) -> Statement<'static> {
    match net {
        IpNet::V4(n) if n.prefix_len() == 0 => nfproto("ipv4"),
        IpNet::V6(n) if n.prefix_len() == 0 => nfproto("ipv6"),
        IpNet::V4(_) => eq(payload("ip", end.field()), net_expr(net)),
        IpNet::V6(_) => eq(payload("ip6", end.field()), net_expr(net)),
    }
}

/// `th dport FROM[-TO]`.
fn ports(from: u16, to: u16) -> Statement<'static> {
    let right = if from == to {
        Expression::Number(u32::from(from))
    } else {
        Expression::Range(Box::new(Range {
            range: [
                Expression::Number(u32::from(from)),
                Expression::Number(u32::from(to)),
            ],
        }))
    };
    eq(payload("th", "dport"), right)
}

fn l4proto(protocol: u8) -> Statement<'static> {
    eq(
        meta(MetaKey::L4proto),
        Expression::Number(u32::from(protocol)),
    )
}

/// A normalized match as statements, at `end` of the packet. Records the
/// groups whose member sets, and the prefix lists (`pl-…`) whose entry
/// sets, it uses. Every kind of match is translated here and nowhere else,
/// by an exhaustive `match`.
pub(crate) fn compile_match(m: &RuleMatch, end: End, sets: &mut BTreeSet<String>) -> Rule {
    let field = end.field();
    let address = match &m.address {
        AddressMatch::Prefix(net) => addr_match(end, *net),
        AddressMatch::GroupMembers { group_id, family } => {
            sets.insert(group_id.clone());
            match family {
                Family::Ipv4 => eq(payload("ip", field), s(format!("@sgm_{group_id}"))),
                Family::Ipv6 => eq(payload("ip6", field), s(format!("@sgm6_{group_id}"))),
            }
        }
        AddressMatch::PrefixList { list_id, family } => {
            sets.insert(list_id.clone());
            match family {
                Family::Ipv4 => eq(payload("ip", field), s(format!("@pl4_{list_id}"))),
                Family::Ipv6 => eq(payload("ip6", field), s(format!("@pl6_{list_id}"))),
            }
        }
    };
    let mut rule = vec![address];
    match &m.traffic {
        TrafficMatch::Any => {}
        TrafficMatch::Ports {
            protocol,
            ports: None,
        } => rule.push(l4proto(*protocol)),
        TrafficMatch::Ports {
            protocol,
            ports: Some((from, to)),
        } => {
            rule.push(l4proto(*protocol));
            rule.push(ports(*from, *to));
        }
        TrafficMatch::Icmp {
            family,
            icmp_type,
            code,
        } => {
            let (header, number) = match family {
                Family::Ipv4 => ("icmp", rule_match::ICMP),
                Family::Ipv6 => ("icmpv6", rule_match::ICMPV6),
            };
            rule.push(l4proto(number));
            if let Some(t) = icmp_type {
                rule.push(eq(
                    payload(header, "type"),
                    Expression::Number(u32::from(*t)),
                ));
            }
            if let Some(c) = code {
                rule.push(eq(
                    payload(header, "code"),
                    Expression::Number(u32::from(*c)),
                ));
            }
        }
        TrafficMatch::Protocol(n) => rule.push(l4proto(*n)),
    }
    rule
}

/// One network-ACL entry as a rule; `end` is the destination leaving the
/// subnet, the source entering.
///
/// None when the entry cannot match any packet (ICMPv4 type matching on an
/// IPv6 CIDR, or the reverse).
pub(crate) fn acl_rule(e: &AclEntry, end: End, drop_prefix: &str) -> Option<Rule> {
    if e.rule_number == STAR_V4 || e.rule_number == STAR_V6 {
        let fam = if e.cidr.addr().is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        };
        let mut rule = vec![nfproto(fam)];
        rule.extend(logged_drop(&format!("{drop_prefix}:*")));
        return Some(rule);
    }
    let m = rule_match::lower_acl_entry(e)?;
    let mut rule = compile_match(&m, end, &mut BTreeSet::new());
    match e.action {
        AclAction::Allow => rule.push(ret()),
        AclAction::Deny => rule.extend(logged_drop(&format!("{drop_prefix}:{}", e.rule_number))),
    }
    Some(rule)
}

/// The rules of one subnet's ACL chain in one direction: the same-subnet
/// shortcut, the entries in rule-number order, then the implicit deny.
pub(crate) fn acl_chain(acl: Option<&NetworkAcl>, egress: bool, subnet_set: &str) -> Vec<Rule> {
    let (end, other) = if egress {
        (End::Destination, MetaKey::Oifname)
    } else {
        (End::Source, MetaKey::Iifname)
    };
    let mut rules = vec![vec![eq(meta(other), s(format!("@{subnet_set}"))), ret()]];
    if let Some(acl) = acl {
        let mut entries: Vec<&AclEntry> =
            acl.entries.iter().filter(|e| e.egress == egress).collect();
        entries.sort_by_key(|e| e.rule_number);
        let prefix = format!("nacl:{}:{}", if egress { "out" } else { "in" }, acl.meta.id);
        rules.extend(
            entries
                .into_iter()
                .filter_map(|e| acl_rule(e, end, &prefix)),
        );
    }
    let id = acl.map_or("-", |a| a.meta.id.as_str());
    let dir = if egress { "out" } else { "in" };
    rules.push(logged_drop(&format!("nacl:{dir}:{id}:*")));
    rules
}

/// The NFLOG group that security-group and network-ACL drops are logged to
/// (per network namespace), for flow logs' REJECT records.
pub const DROP_LOG_GROUP: u16 = 100;

/// `log … counter drop`, logged to [`DROP_LOG_GROUP`] with a prefix that
/// names what dropped: `sg:<in|out>:<group,…>` or
/// `nacl:<in|out>:<acl>:<rule|*>` (`crate::flow_log` reads it back).
pub(crate) fn logged_drop(prefix: &str) -> Rule {
    // The kernel keeps at most 127 bytes of a prefix.
    let mut p = prefix.to_string();
    p.truncate(127);
    let mut log = Log::new(Some(u32::from(DROP_LOG_GROUP)));
    log.prefix = Some(Cow::Owned(p));
    vec![Statement::Log(Some(log)), counter(), drop()]
}

/// One security-group rule as nft rules (one per address family it can
/// match); ingress matches the source, egress the destination. Records the
/// groups whose member sets it uses.
pub(crate) fn sg_rules(
    r: &SgRule,
    ingress: bool,
    verdict: &Statement<'static>,
    sets: &mut BTreeSet<String>,
) -> Vec<Rule> {
    let end = if ingress {
        End::Source
    } else {
        End::Destination
    };
    rule_match::lower_sg_rule(r)
        .iter()
        .map(|m| {
            let mut rule = compile_match(m, end, sets);
            rule.push(verdict.clone());
            rule
        })
        .collect()
}

/// The filter and NAT tables of one router.
pub(crate) fn router(inp: &RouterInput<'_, '_>) -> Vec<NftTable> {
    vec![filter(inp), nat(inp.public)]
}

fn filter(inp: &RouterInput<'_, '_>) -> NftTable {
    let w = inp.w;
    let mut b = Body::new(NfFamily::INet, "vpcd");

    // Interfaces per subnet (instances and NAT gateways).
    let mut subnets: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in inp.enis {
        subnets
            .entry(e.subnet.meta.id.as_str())
            .or_default()
            .push(e.link.as_str());
    }
    for n in inp.nats {
        subnets
            .entry(n.subnet.meta.id.as_str())
            .or_default()
            .push(n.link.as_str());
    }

    // Security groups used by this router's interfaces, and the member sets they reference.
    let mut groups: BTreeMap<&str, &SecurityGroup> = BTreeMap::new();
    for e in inp.enis {
        for g in &e.eni.groups {
            if let Some(sg) = w.get::<SecurityGroup>(g) {
                if crate::names::is_safe(g) {
                    groups.insert(g.as_str(), sg);
                }
            }
        }
    }
    let mut sets: BTreeSet<String> = BTreeSet::new();
    let mut group_rules: Vec<(&str, Vec<Rule>, Vec<Rule>)> = Vec::new();
    for (id, g) in &groups {
        let live = |r: &&SgRule| {
            !ops::sg::is_stale(w, &g.vpc_id, r)
                && match &r.peer {
                    SgPeer::Group { group_id, .. } => crate::names::is_safe(group_id),
                    SgPeer::PrefixList(list) => crate::names::is_safe(list),
                    _ => true,
                }
        };
        let ingress: Vec<Rule> = g
            .ingress
            .iter()
            .filter(live)
            .flat_map(|r| sg_rules(r, true, &accept(), &mut sets))
            .collect();
        let egress: Vec<Rule> = g
            .egress
            .iter()
            .filter(live)
            .flat_map(|r| sg_rules(r, false, &goto("sg_ingress"), &mut sets))
            .collect();
        group_rules.push((id, ingress, egress));
    }

    // Sets.
    let checked: Vec<&&RealEni<'_>> = inp
        .enis
        .iter()
        .filter(|e| e.eni.source_dest_check)
        .collect();
    b.set(
        "sdc_if",
        SetType::Ifname,
        checked.iter().map(|e| s(&e.link)),
    );
    b.pair_set(
        "eni_addr4",
        SetType::Ipv4Addr,
        checked
            .iter()
            .flat_map(|e| e.v4().map(|a| (e.link.clone(), a.to_string())))
            .collect(),
    );
    b.pair_set(
        "eni_addr6",
        SetType::Ipv6Addr,
        checked
            .iter()
            .flat_map(|e| e.v6().map(|a| (e.link.clone(), a.to_string())))
            .collect(),
    );
    b.set(
        "pub_src",
        SetType::Ipv4Addr,
        inp.public.keys().map(|a| s(a.to_string())),
    );
    for (sn, links) in &subnets {
        b.set(
            &format!("sn_{sn}"),
            SetType::Ifname,
            links.iter().map(|l| s(*l)),
        );
    }
    // The groups' region, for the AWS-managed lists a rule may name.
    let region = groups
        .values()
        .next()
        .map_or("", |g| g.meta.region.as_str());
    for g in &sets {
        if g.starts_with("pl-") {
            let cidrs = ops::prefix_list::cidrs(w, region, g);
            let (v4, v6): (Vec<IpNet>, Vec<IpNet>) =
                cidrs.into_iter().partition(|n| n.addr().is_ipv4());
            b.prefix_set(&format!("pl4_{g}"), SetType::Ipv4Addr, &v4);
            b.prefix_set(&format!("pl6_{g}"), SetType::Ipv6Addr, &v6);
            continue;
        }
        let (v4, v6) = inp.members.get(g.as_str()).cloned().unwrap_or_default();
        b.set(
            &format!("sgm_{g}"),
            SetType::Ipv4Addr,
            v4.iter().map(|a: &Ipv4Addr| s(a.to_string())),
        );
        b.set(
            &format!("sgm6_{g}"),
            SetType::Ipv6Addr,
            v6.iter().map(|a: &Ipv6Addr| s(a.to_string())),
        );
    }

    // Security-group ingress: per-group chains, per-interface chains, the dispatcher.
    for (id, ingress, _) in &group_rules {
        b.chain(&format!("sg_{id}_in"), None, ingress.clone());
    }
    let jumps = |e: &RealEni<'_>, dir: &str| -> Vec<Rule> {
        let names = e.eni.groups.join(",");
        e.eni
            .groups
            .iter()
            .filter(|g| groups.contains_key(g.as_str()))
            .map(|g| vec![jump(format!("sg_{g}_{dir}"))])
            .chain(std::iter::once(logged_drop(&format!("sg:{dir}:{names}"))))
            .collect()
    };
    let mut sgin = Vec::new();
    for e in inp.enis {
        let chain = format!("sgin_{}", e.eni.meta.id);
        b.chain(&chain, None, jumps(e, "in"));
        sgin.push((e.link.clone(), goto(chain)));
    }
    // Destinations without groups (peerings, the internet, NAT gateways) accept here;
    // a peer's router checks its own interfaces' groups.
    b.chain(
        "sg_ingress",
        None,
        vmap(MetaKey::Oifname, sgin)
            .into_iter()
            .chain([vec![accept()]])
            .collect(),
    );

    // Security-group egress.
    for (id, _, egress) in &group_rules {
        b.chain(&format!("sg_{id}_out"), None, egress.clone());
    }
    let mut sgout = Vec::new();
    for e in inp.enis {
        let chain = format!("sgout_{}", e.eni.meta.id);
        b.chain(&chain, None, jumps(e, "out"));
        sgout.push((e.link.clone(), goto(chain)));
    }

    // Network ACLs.
    let mut nacl_out = Vec::new();
    let mut nacl_in = Vec::new();
    for (sn, links) in &subnets {
        let acl = ops::acl::acl_for_subnet(w, sn);
        let set = format!("sn_{sn}");
        b.chain(&format!("nacl_out_{sn}"), None, acl_chain(acl, true, &set));
        b.chain(&format!("nacl_in_{sn}"), None, acl_chain(acl, false, &set));
        for l in links {
            nacl_out.push((l.to_string(), jump(format!("nacl_out_{sn}"))));
            nacl_in.push((l.to_string(), jump(format!("nacl_in_{sn}"))));
        }
    }

    // The forward chain.
    let mut rules: Vec<Rule> = Vec::new();
    if inp.egress_only_link {
        rules.push(vec![iifname("g-*"), ct_state(&["new"]), counter(), drop()]);
    }
    // 1. Guards: no transit through a peering, no edge-to-edge routing.
    // From a peering only to this VPC's interfaces, here or on another
    // host (`x-`: the VPC's VXLAN link, `placement`).
    rules.push(vec![
        iifname("p-*"),
        ne(meta(MetaKey::Oifname), s("e-*")),
        ne(meta(MetaKey::Oifname), s("x-*")),
        counter(),
        drop(),
    ]);
    rules.push(vec![
        oifname("p-*"),
        ne(meta(MetaKey::Iifname), s("e-*")),
        counter(),
        drop(),
    ]);
    for link in &inp.inter_region_links {
        rules.push(vec![iifname(link), oifname("x-*"), counter(), drop()]);
    }
    // From another host's router only to an interface here.
    rules.push(vec![
        iifname("x-*"),
        ne(meta(MetaKey::Oifname), s("e-*")),
        counter(),
        drop(),
    ]);
    rules.push(vec![
        oifname("x-*"),
        ne(meta(MetaKey::Iifname), s("e-*")),
        ne(meta(MetaKey::Iifname), s("p-*")),
        counter(),
        drop(),
    ]);
    // Through a middlebox link (another host's route through an interface
    // here, `placement::middlebox_link`) only to an interface (its table
    // holds the one route to that interface); nothing is routed out of one.
    rules.push(vec![
        iifname("m-*"),
        ne(meta(MetaKey::Oifname), s("e-*")),
        counter(),
        drop(),
    ]);
    rules.push(vec![oifname("m-*"), counter(), drop()]);
    rules.push(vec![
        iifname("g-*"),
        ne(meta(MetaKey::Oifname), s("e-*")),
        ne(meta(MetaKey::Oifname), s("n-*")),
        counter(),
        drop(),
    ]);
    rules.push(vec![
        oifname("g-*"),
        nfproto("ipv4"),
        ne(payload("ip", "saddr"), s("@pub_src")),
        counter(),
        drop(),
    ]);
    // 2. Source/destination check.
    for (key, family, header, field, set) in [
        (MetaKey::Iifname, "ipv4", "ip", "saddr", "@eni_addr4"),
        (MetaKey::Iifname, "ipv6", "ip6", "saddr", "@eni_addr6"),
        (MetaKey::Oifname, "ipv4", "ip", "daddr", "@eni_addr4"),
        (MetaKey::Oifname, "ipv6", "ip6", "daddr", "@eni_addr6"),
    ] {
        let pair = Expression::Named(NamedExpression::Concat(vec![
            meta(key),
            payload(header, field),
        ]));
        rules.push(vec![
            eq(meta(key), s("@sdc_if")),
            nfproto(family),
            ne(pair, s(set)),
            counter(),
            drop(),
        ]);
    }
    // 3. Network ACLs, stateless.
    rules.extend(vmap(MetaKey::Iifname, nacl_out));
    rules.extend(vmap(MetaKey::Oifname, nacl_in));
    // 4. A peer's packet for this VPC's interface on another host: that
    // host's router applies the checks (its conntrack sees both
    // directions; this one sees one).
    rules.push(vec![iifname("p-*"), oifname("x-*"), accept()]);
    // Tracked connections.
    rules.push(vec![ct_state(&["established", "related"]), accept()]);
    rules.push(vec![ct_state(&["invalid"]), counter(), drop()]);
    // 5. Security groups for new connections.
    rules.extend(vmap(MetaKey::Iifname, sgout));
    rules.push(vec![goto("sg_ingress")]);
    b.chain(
        "forward",
        Some((
            NfChainType::Filter,
            NfHook::Forward,
            PRIO_FILTER,
            NfChainPolicy::Drop,
        )),
        rules,
    );
    b.done()
}

/// The router's 1:1 NAT between private and public IPv4 at the internet gateway.
fn nat(public: &BTreeMap<Ipv4Addr, Ipv4Addr>) -> NftTable {
    let mut b = Body::new(NfFamily::IP, "vpcd_nat");
    let to_priv: Vec<(Ipv4Addr, Ipv4Addr)> = public
        .iter()
        .map(|(private, public)| (*public, *private))
        .collect();
    let to_pub: Vec<(Ipv4Addr, Ipv4Addr)> = public
        .iter()
        .map(|(private, public)| (*private, *public))
        .collect();
    b.address_map("pub2priv", &to_priv);
    b.address_map("priv2pub", &to_pub);
    let translate = |field: &'static str, map: &str| NAT {
        addr: Some(Expression::Named(NamedExpression::Map(Box::new(Map {
            key: payload("ip", field),
            data: s(format!("@{map}")),
        })))),
        family: None,
        port: None,
        flags: None,
    };
    b.chain(
        "prerouting",
        Some((
            NfChainType::NAT,
            NfHook::Prerouting,
            PRIO_DSTNAT,
            NfChainPolicy::Accept,
        )),
        vec![vec![
            iifname("g-*"),
            Statement::DNAT(Some(translate("daddr", "pub2priv"))),
        ]],
    );
    b.chain(
        "postrouting",
        Some((
            NfChainType::NAT,
            NfHook::Postrouting,
            PRIO_SRCNAT,
            NfChainPolicy::Accept,
        )),
        vec![vec![
            oifname("g-*"),
            Statement::SNAT(Some(translate("saddr", "priv2pub"))),
        ]],
    );
    b.done()
}

/// A NAT gateway masquerades what it forwards to its own private address.
pub(crate) fn nat_gateway(ip: Ipv4Addr) -> Vec<NftTable> {
    let mut b = Body::new(NfFamily::IP, "vpcd_natgw");
    b.chain(
        "postrouting",
        Some((
            NfChainType::NAT,
            NfHook::Postrouting,
            PRIO_SRCNAT,
            NfChainPolicy::Accept,
        )),
        vec![vec![
            oifname("eth0"),
            ne(payload("ip", "saddr"), s(ip.to_string())),
            Statement::Masquerade(None),
        ]],
    );
    vec![b.done()]
}

/// The tables in nft's text syntax, for tests to read what was compiled
/// (the data plane itself never writes or parses nft text).
#[cfg(test)]
pub(crate) mod text {
    use super::*;
    use nftables::stmt::NATFamily;

    fn name_of<T: serde::Serialize>(v: &T) -> String {
        match serde_json::to_value(v) {
            Ok(serde_json::Value::String(s)) => s,
            other => format!("{other:?}"),
        }
    }

    fn set_type(t: &SetTypeValue<'_>) -> String {
        match t {
            SetTypeValue::Single(t) => name_of(t),
            SetTypeValue::Concatenated(ts) => {
                ts.iter().map(name_of).collect::<Vec<_>>().join(" . ")
            }
        }
    }

    fn is_keyword(x: &str) -> bool {
        x.starts_with('@')
            || x.parse::<std::net::IpAddr>().is_ok()
            || ["ipv4", "ipv6", "established", "related", "invalid", "new"].contains(&x)
    }

    pub(crate) fn expr(e: &Expression<'_>) -> String {
        match e {
            Expression::String(x) if is_keyword(x) => x.to_string(),
            Expression::String(x) => format!("\"{x}\""),
            Expression::Number(n) => n.to_string(),
            Expression::Boolean(b) => b.to_string(),
            Expression::List(items)
                if items.len() == 2 && items.iter().all(|i| matches!(i, Expression::String(_))) =>
            {
                // A map element.
                format!("{} : {}", expr(&items[0]), expr(&items[1]))
            }
            Expression::List(items) => items.iter().map(expr).collect::<Vec<_>>().join(","),
            Expression::Range(r) => format!("{}-{}", expr(&r.range[0]), expr(&r.range[1])),
            Expression::Named(NamedExpression::Prefix(p)) => format!("{}/{}", expr(&p.addr), p.len),
            Expression::Named(NamedExpression::Concat(parts)) => {
                parts.iter().map(expr).collect::<Vec<_>>().join(" . ")
            }
            Expression::Named(NamedExpression::Meta(m)) => match m.key {
                MetaKey::Iifname => "iifname".into(),
                MetaKey::Oifname => "oifname".into(),
                k => format!("meta {}", name_of(&k)),
            },
            Expression::Named(NamedExpression::Payload(Payload::PayloadField(p))) => {
                format!("{} {}", p.protocol, p.field)
            }
            Expression::Named(NamedExpression::CT(c)) => format!("ct {}", c.key),
            Expression::Named(NamedExpression::Map(m)) => {
                format!("{} map {}", expr(&m.key), expr(&m.data))
            }
            Expression::Named(NamedExpression::Set(items)) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        SetItem::Element(e) => expr(e),
                        SetItem::Mapping(k, v) => format!("{} : {}", expr(k), expr(v)),
                        SetItem::MappingStatement(k, v) => {
                            format!("{} : {}", expr(k), statement(v))
                        }
                    })
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
            other => format!("{other:?}"),
        }
    }

    fn protocol_name(n: &Expression<'_>) -> String {
        match n {
            Expression::Number(6) => "tcp".into(),
            Expression::Number(17) => "udp".into(),
            Expression::Number(1) => "icmp".into(),
            Expression::Number(58) => "icmpv6".into(),
            other => expr(other),
        }
    }

    pub(crate) fn statement(st: &Statement<'_>) -> String {
        match st {
            Statement::Match(m) => {
                let left = expr(&m.left);
                let right = if left == "meta l4proto" {
                    protocol_name(&m.right)
                } else {
                    expr(&m.right)
                };
                match m.op {
                    Operator::EQ | Operator::IN => format!("{left} {right}"),
                    Operator::NEQ => format!("{left} != {right}"),
                    op => format!("{left} {} {right}", name_of(&op)),
                }
            }
            Statement::Counter(stmt::Counter::Named(n)) => format!("counter name \"{n}\""),
            Statement::Counter(_) => "counter".into(),
            Statement::Drop(_) => "drop".into(),
            Statement::Accept(_) => "accept".into(),
            Statement::Return(_) => "return".into(),
            Statement::Jump(t) => format!("jump {}", t.target),
            Statement::Goto(t) => format!("goto {}", t.target),
            Statement::Log(Some(l)) => format!(
                "log prefix \"{}\" group {}",
                l.prefix.as_deref().unwrap_or_default(),
                l.group.unwrap_or_default()
            ),
            Statement::VerdictMap(v) => format!("{} vmap {}", expr(&v.key), expr(&v.data)),
            Statement::DNAT(Some(n)) | Statement::SNAT(Some(n)) => {
                let kind = if matches!(st, Statement::DNAT(_)) {
                    "dnat"
                } else {
                    "snat"
                };
                let family = match n.family {
                    Some(NATFamily::IP) => "ip ",
                    Some(NATFamily::IP6) => "ip6 ",
                    None => "",
                };
                format!(
                    "{kind} {family}to {}",
                    n.addr.as_ref().map(expr).unwrap_or_default()
                )
            }
            Statement::Masquerade(_) => "masquerade".into(),
            other => format!("{other:?}"),
        }
    }

    fn family(f: NfFamily) -> &'static str {
        crate::plan::family_name(f)
    }

    /// A transaction as `nft -f` lines (`add table inet t`, `flush chain
    /// inet t c`, `add rule inet t c …`), one a line.
    pub(crate) fn commands(objects: &[schema::NfObject<'_>]) -> String {
        use schema::{FlushObject, NfCmd, NfObject};
        let what = |o: &NfListObject<'_>| match o {
            NfListObject::Table(t) => format!("table {} {}", family(t.family), t.name),
            NfListObject::Chain(c) => {
                let base = match (&c._type, &c.hook, c.prio, &c.policy) {
                    (Some(ty), Some(hook), Some(prio), Some(policy)) => format!(
                        " {{ type {} hook {} priority {prio} ; policy {} ; }}",
                        name_of(ty),
                        name_of(hook),
                        name_of(policy)
                    ),
                    _ => String::new(),
                };
                format!("chain {} {} {}{base}", family(c.family), c.table, c.name)
            }
            NfListObject::Counter(c) => {
                format!("counter {} {} {}", family(c.family), c.table, c.name)
            }
            NfListObject::Rule(r) => format!(
                "rule {} {} {} {}",
                family(r.family),
                r.table,
                r.chain,
                rule(&r.expr)
            ),
            other => format!("{other:?}"),
        };
        let mut out = String::new();
        for o in objects {
            let line = match o {
                NfObject::CmdObject(NfCmd::Add(x)) => format!("add {}", what(x)),
                NfObject::CmdObject(NfCmd::Delete(x)) => format!("delete {}", what(x)),
                NfObject::CmdObject(NfCmd::Flush(FlushObject::Chain(c))) => {
                    format!("flush chain {} {} {}", family(c.family), c.table, c.name)
                }
                other => format!("{other:?}"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// A rule's statements, space separated.
    pub(crate) fn rule(r: &[Statement<'_>]) -> String {
        r.iter().map(statement).collect::<Vec<_>>().join(" ")
    }

    /// The body of a table as the old text scripts had it (two-space
    /// indented objects, one rule a line).
    pub(crate) fn table(t: &NftTable) -> String {
        let mut out = String::new();
        let mut chain_open: Option<String> = None;
        let close = |out: &mut String, open: &mut Option<String>| {
            if open.take().is_some() {
                out.push_str("  }\n");
            }
        };
        for o in &t.objects {
            match o {
                NfListObject::Set(set) => {
                    close(&mut out, &mut chain_open);
                    let flags = if set.flags.is_some() {
                        " flags interval;"
                    } else {
                        ""
                    };
                    let elems = match &set.elem {
                        Some(e) => format!(
                            " elements = {{ {} }}",
                            e.iter().map(expr).collect::<Vec<_>>().join(", ")
                        ),
                        None => String::new(),
                    };
                    out.push_str(&format!(
                        "  set {} {{ type {};{flags}{elems} }}\n",
                        set.name,
                        set_type(&set.set_type)
                    ));
                }
                NfListObject::Map(map) => {
                    close(&mut out, &mut chain_open);
                    let elems = match &map.elem {
                        Some(e) => format!(
                            " elements = {{ {} }}",
                            e.iter().map(expr).collect::<Vec<_>>().join(", ")
                        ),
                        None => String::new(),
                    };
                    out.push_str(&format!(
                        "  map {} {{ type {} : {};{elems} }}\n",
                        map.name,
                        set_type(&map.set_type),
                        set_type(&map.map)
                    ));
                }
                NfListObject::Chain(c) => {
                    close(&mut out, &mut chain_open);
                    out.push_str(&format!("  chain {} {{\n", c.name));
                    if let (Some(ty), Some(hook), Some(prio), Some(policy)) =
                        (&c._type, &c.hook, c.prio, &c.policy)
                    {
                        let prio = match prio {
                            PRIO_FILTER => "filter".to_string(),
                            PRIO_DSTNAT => "dstnat".to_string(),
                            PRIO_SRCNAT => "srcnat".to_string(),
                            p => p.to_string(),
                        };
                        out.push_str(&format!(
                            "    type {} hook {} priority {prio}; policy {};\n",
                            name_of(ty),
                            name_of(hook),
                            name_of(policy)
                        ));
                    }
                    chain_open = Some(c.name.to_string());
                }
                NfListObject::Rule(r) => {
                    out.push_str(&format!("    {}\n", rule(&r.expr)));
                }
                other => out.push_str(&format!("  {other:?}\n")),
            }
        }
        close(&mut out, &mut chain_open);
        out
    }
}
