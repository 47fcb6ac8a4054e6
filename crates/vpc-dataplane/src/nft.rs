//! nftables rulesets as text (pure).
//!
//! One `table inet vpcd` per router holds the `forward` chain of
//! `docs/dataplane.md` ("Filtering"): guards, source/destination check,
//! network ACLs, the conntrack shortcut, then security groups. Rules are
//! plain rules without anonymous sets; dispatch on interface names goes
//! through named verdict maps, and group references through named sets of
//! member addresses. `table ip vpcd_nat` holds the 1:1 NAT for public IPs.
//!
//! Objects are written leaves first (sets, then chains in the order they are
//! referenced from the bottom up), so every reference is to something
//! already defined.

use crate::plan::{ChainShape, NftShape, NftTable, RealEni, RealNat};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use vpc_model::ops::defaults::{STAR_V4, STAR_V6};
use vpc_model::rule_match::{self, AddressMatch, Family, RuleMatch, TrafficMatch};
use vpc_model::{ops, AclAction, AclEntry, NetworkAcl, SecurityGroup, SgPeer, SgRule, World};

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
}

/// Text of one table's body, in definition order, and its shape.
#[derive(Default)]
struct Body {
    text: String,
    shape: NftShape,
}

impl Body {
    fn set<T: std::fmt::Display>(
        &mut self,
        name: &str,
        ty: &str,
        elems: impl IntoIterator<Item = T>,
    ) {
        let elems: Vec<String> = elems.into_iter().map(|e| e.to_string()).collect();
        self.shape.sets.insert(name.to_string(), elems.len());
        if elems.is_empty() {
            let _ = writeln!(self.text, "  set {name} {{ type {ty}; }}");
        } else {
            let _ = writeln!(
                self.text,
                "  set {name} {{ type {ty}; elements = {{ {} }} }}",
                elems.join(", ")
            );
        }
    }

    /// A set of prefixes (overlapping ones merged).
    fn prefix_set(&mut self, name: &str, ty: &str, elems: &[IpNet]) {
        let flags = "flags interval; auto-merge;";
        if elems.is_empty() {
            let _ = writeln!(self.text, "  set {name} {{ type {ty}; {flags} }}");
        } else {
            let elems: Vec<String> = elems.iter().map(|n| n.trunc().to_string()).collect();
            let _ = writeln!(
                self.text,
                "  set {name} {{ type {ty}; {flags} elements = {{ {} }} }}",
                elems.join(", ")
            );
        }
    }

    fn map(&mut self, name: &str, ty: &str, elems: &[(String, String)]) {
        self.shape.sets.insert(name.to_string(), elems.len());
        if elems.is_empty() {
            let _ = writeln!(self.text, "  map {name} {{ type {ty}; }}");
        } else {
            let items: Vec<String> = elems.iter().map(|(k, v)| format!("{k} : {v}")).collect();
            let _ = writeln!(
                self.text,
                "  map {name} {{ type {ty}; elements = {{ {} }} }}",
                items.join(", ")
            );
        }
    }

    /// A chain; a base chain's `header` gives its hook and policy.
    fn chain(&mut self, name: &str, header: Option<&str>, rules: &[String]) {
        let policy = header.map(|h| {
            if h.contains("policy drop") {
                "drop"
            } else {
                "accept"
            }
        });
        self.shape.chains.insert(
            name.to_string(),
            ChainShape {
                rules: rules.len(),
                policy,
            },
        );
        let _ = writeln!(self.text, "  chain {name} {{");
        if let Some(h) = header {
            let _ = writeln!(self.text, "    {h}");
        }
        for r in rules {
            let _ = writeln!(self.text, "    {r}");
        }
        let _ = writeln!(self.text, "  }}");
    }
}

fn q(ifname: &str) -> String {
    format!("\"{ifname}\"")
}

/// Matches `net` on the source (`saddr`) or destination (`daddr`); /0 matches the family.
fn addr_match(dir: &str, net: IpNet) -> String {
    match net {
        IpNet::V4(n) if n.prefix_len() == 0 => "meta nfproto ipv4".into(),
        IpNet::V6(n) if n.prefix_len() == 0 => "meta nfproto ipv6".into(),
        IpNet::V4(n) => format!("ip {dir} {}", n.trunc()),
        IpNet::V6(n) => format!("ip6 {dir} {}", n.trunc()),
    }
}

fn ports(from: u16, to: u16) -> String {
    if from == to {
        format!("th dport {from}")
    } else {
        format!("th dport {from}-{to}")
    }
}

/// ICMP (`icmp` or `icmpv6`) with a type and code, each when given.
fn icmp(keyword: &str, icmp_type: Option<u8>, code: Option<u8>) -> String {
    let mut parts = vec![format!("meta l4proto {keyword}")];
    if let Some(t) = icmp_type {
        parts.push(format!("{keyword} type {t}"));
    }
    if let Some(c) = code {
        parts.push(format!("{keyword} code {c}"));
    }
    parts.join(" ")
}

/// A normalized match as nft expressions; `dir` is `saddr` or `daddr`.
/// Records the groups whose member sets, and the prefix lists (`pl-…`)
/// whose entry sets, it uses. Every kind of match is translated here and
/// nowhere else, by an exhaustive `match`.
fn compile_match(m: &RuleMatch, dir: &str, sets: &mut BTreeSet<String>) -> String {
    let address = match &m.address {
        AddressMatch::Prefix(net) => addr_match(dir, *net),
        AddressMatch::GroupMembers { group_id, family } => {
            sets.insert(group_id.clone());
            match family {
                Family::Ipv4 => format!("ip {dir} @sgm_{group_id}"),
                Family::Ipv6 => format!("ip6 {dir} @sgm6_{group_id}"),
            }
        }
        AddressMatch::PrefixList { list_id, family } => {
            sets.insert(list_id.clone());
            match family {
                Family::Ipv4 => format!("ip {dir} @pl4_{list_id}"),
                Family::Ipv6 => format!("ip6 {dir} @pl6_{list_id}"),
            }
        }
    };
    let protocol_name = |n: u8| match n {
        rule_match::TCP => "tcp".to_string(),
        rule_match::UDP => "udp".to_string(),
        n => n.to_string(),
    };
    let traffic = match &m.traffic {
        TrafficMatch::Any => String::new(),
        TrafficMatch::Ports {
            protocol,
            ports: None,
        } => format!(" meta l4proto {}", protocol_name(*protocol)),
        TrafficMatch::Ports {
            protocol,
            ports: Some((from, to)),
        } => format!(
            " meta l4proto {} {}",
            protocol_name(*protocol),
            ports(*from, *to)
        ),
        TrafficMatch::Icmp {
            family,
            icmp_type,
            code,
        } => {
            let keyword = match family {
                Family::Ipv4 => "icmp",
                Family::Ipv6 => "icmpv6",
            };
            format!(" {}", icmp(keyword, *icmp_type, *code))
        }
        TrafficMatch::Protocol(n) => format!(" meta l4proto {n}"),
    };
    format!("{address}{traffic}")
}

/// One network-ACL entry as a rule; `dir` is `daddr` leaving the subnet, `saddr` entering.
///
/// None when the entry cannot match any packet (ICMPv4 type matching on an
/// IPv6 CIDR, or the reverse).
pub(crate) fn acl_rule(e: &AclEntry, dir: &str, drop_prefix: &str) -> Option<String> {
    if e.rule_number == STAR_V4 || e.rule_number == STAR_V6 {
        let fam = if e.cidr.addr().is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        };
        return Some(format!(
            "meta nfproto {fam} {}",
            logged_drop(&format!("{drop_prefix}:*"))
        ));
    }
    let m = rule_match::lower_acl_entry(e)?;
    let deny = logged_drop(&format!("{drop_prefix}:{}", e.rule_number));
    let verdict = match e.action {
        AclAction::Allow => "return",
        AclAction::Deny => deny.as_str(),
    };
    Some(format!(
        "{} {verdict}",
        compile_match(&m, dir, &mut BTreeSet::new())
    ))
}

/// The rules of one subnet's ACL chain in one direction: the same-subnet
/// shortcut, the entries in rule-number order, then the implicit deny.
pub(crate) fn acl_chain(acl: Option<&NetworkAcl>, egress: bool, subnet_set: &str) -> Vec<String> {
    let (dir, other) = if egress {
        ("daddr", "oifname")
    } else {
        ("saddr", "iifname")
    };
    let mut rules = vec![format!("{other} @{subnet_set} return")];
    if let Some(acl) = acl {
        let mut entries: Vec<&AclEntry> =
            acl.entries.iter().filter(|e| e.egress == egress).collect();
        entries.sort_by_key(|e| e.rule_number);
        let prefix = format!("nacl:{}:{}", if egress { "out" } else { "in" }, acl.meta.id);
        rules.extend(
            entries
                .into_iter()
                .filter_map(|e| acl_rule(e, dir, &prefix)),
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

/// `counter drop`, logged to [`DROP_LOG_GROUP`] with a prefix that names
/// what dropped: `sg:<in|out>:<group,…>` or `nacl:<in|out>:<acl>:<rule|*>`
/// (`crate::flow_log` reads it back).
pub(crate) fn logged_drop(prefix: &str) -> String {
    // The kernel keeps at most 127 bytes of a prefix.
    let mut p = prefix.to_string();
    p.truncate(127);
    format!("log prefix \"{p}\" group {DROP_LOG_GROUP} counter drop")
}

/// One security-group rule as nft rules (one per address family it can
/// match); `ingress` matches the source, egress the destination. Records the
/// groups whose member sets it uses.
pub(crate) fn sg_rules(
    r: &SgRule,
    ingress: bool,
    verdict: &str,
    sets: &mut BTreeSet<String>,
) -> Vec<String> {
    let dir = if ingress { "saddr" } else { "daddr" };
    rule_match::lower_sg_rule(r)
        .iter()
        .map(|m| format!("{} {verdict}", compile_match(m, dir, sets)))
        .collect()
}

/// The filter and NAT tables of one router.
pub(crate) fn router(inp: &RouterInput<'_, '_>) -> Vec<NftTable> {
    vec![filter(inp), nat(inp.public)]
}

fn filter(inp: &RouterInput<'_, '_>) -> NftTable {
    let w = inp.w;
    let mut b = Body::default();

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
    let mut group_rules: Vec<(&str, Vec<String>, Vec<String>)> = Vec::new();
    for (id, g) in &groups {
        let live = |r: &&SgRule| {
            !ops::sg::is_stale(w, &g.vpc_id, r)
                && match &r.peer {
                    SgPeer::Group { group_id, .. } => crate::names::is_safe(group_id),
                    SgPeer::PrefixList(list) => crate::names::is_safe(list),
                    _ => true,
                }
        };
        let ingress: Vec<String> = g
            .ingress
            .iter()
            .filter(live)
            .flat_map(|r| sg_rules(r, true, "accept", &mut sets))
            .collect();
        let egress: Vec<String> = g
            .egress
            .iter()
            .filter(live)
            .flat_map(|r| sg_rules(r, false, "goto sg_ingress", &mut sets))
            .collect();
        group_rules.push((id, ingress, egress));
    }

    // Sets.
    let checked: Vec<&&RealEni<'_>> = inp
        .enis
        .iter()
        .filter(|e| e.eni.source_dest_check)
        .collect();
    b.set("sdc_if", "ifname", checked.iter().map(|e| q(&e.link)));
    b.set(
        "eni_addr4",
        "ifname . ipv4_addr",
        checked
            .iter()
            .flat_map(|e| e.v4().map(|a| format!("{} . {a}", q(&e.link)))),
    );
    b.set(
        "eni_addr6",
        "ifname . ipv6_addr",
        checked
            .iter()
            .flat_map(|e| e.v6().map(|a| format!("{} . {a}", q(&e.link)))),
    );
    b.set("pub_src", "ipv4_addr", inp.public.keys());
    for (s, links) in &subnets {
        b.set(&format!("sn_{s}"), "ifname", links.iter().map(|l| q(l)));
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
            b.prefix_set(&format!("pl4_{g}"), "ipv4_addr", &v4);
            b.prefix_set(&format!("pl6_{g}"), "ipv6_addr", &v6);
            continue;
        }
        let (v4, v6) = inp.members.get(g.as_str()).cloned().unwrap_or_default();
        b.set(&format!("sgm_{g}"), "ipv4_addr", v4);
        b.set(&format!("sgm6_{g}"), "ipv6_addr", v6);
    }

    // Security-group ingress: per-group chains, per-interface chains, the map, the dispatcher.
    for (id, ingress, _) in &group_rules {
        b.chain(&format!("sg_{id}_in"), None, ingress);
    }
    let jumps = |e: &RealEni<'_>, dir: &str| -> Vec<String> {
        let names = e.eni.groups.join(",");
        e.eni
            .groups
            .iter()
            .filter(|g| groups.contains_key(g.as_str()))
            .map(|g| format!("jump sg_{g}_{dir}"))
            .chain(std::iter::once(logged_drop(&format!("sg:{dir}:{names}"))))
            .collect()
    };
    let mut sgin = Vec::new();
    for e in inp.enis {
        let chain = format!("sgin_{}", e.eni.meta.id);
        b.chain(&chain, None, &jumps(e, "in"));
        sgin.push((q(&e.link), format!("goto {chain}")));
    }
    b.map("sgin", "ifname : verdict", &sgin);
    // Destinations without groups (peerings, the internet, NAT gateways) accept here;
    // a peer's router checks its own interfaces' groups.
    b.chain(
        "sg_ingress",
        None,
        &["oifname vmap @sgin".to_string(), "accept".to_string()],
    );

    // Security-group egress.
    for (id, _, egress) in &group_rules {
        b.chain(&format!("sg_{id}_out"), None, egress);
    }
    let mut sgout = Vec::new();
    for e in inp.enis {
        let chain = format!("sgout_{}", e.eni.meta.id);
        b.chain(&chain, None, &jumps(e, "out"));
        sgout.push((q(&e.link), format!("goto {chain}")));
    }
    b.map("sgout", "ifname : verdict", &sgout);

    // Network ACLs.
    let mut nacl_out = Vec::new();
    let mut nacl_in = Vec::new();
    for (s, links) in &subnets {
        let acl = ops::acl::acl_for_subnet(w, s);
        let set = format!("sn_{s}");
        b.chain(&format!("nacl_out_{s}"), None, &acl_chain(acl, true, &set));
        b.chain(&format!("nacl_in_{s}"), None, &acl_chain(acl, false, &set));
        for l in links {
            nacl_out.push((q(l), format!("jump nacl_out_{s}")));
            nacl_in.push((q(l), format!("jump nacl_in_{s}")));
        }
    }
    b.map("nacl_out", "ifname : verdict", &nacl_out);
    b.map("nacl_in", "ifname : verdict", &nacl_in);

    // The forward chain.
    let egress_only: &[&str] = if inp.egress_only_link {
        &[r#"iifname "g-*" ct state new counter drop"#]
    } else {
        &[]
    };
    let rules: Vec<String> = egress_only
        .iter()
        .chain(
            [
                // 1. Guards: no transit through a peering, no edge-to-edge routing.
                // From a peering only to this VPC's interfaces, here or on
                // another host (`x-`: the VPC's VXLAN link, `placement`).
                r#"iifname "p-*" oifname != "e-*" oifname != "x-*" counter drop"#,
                r#"oifname "p-*" iifname != "e-*" counter drop"#,
                // From another host's router only to an interface here.
                r#"iifname "x-*" oifname != "e-*" counter drop"#,
                r#"oifname "x-*" iifname != "e-*" iifname != "p-*" counter drop"#,
                r#"iifname "g-*" oifname != "e-*" oifname != "n-*" counter drop"#,
                r#"oifname "g-*" meta nfproto ipv4 ip saddr != @pub_src counter drop"#,
                // 2. Source/destination check.
                "iifname @sdc_if meta nfproto ipv4 iifname . ip saddr != @eni_addr4 counter drop",
                "iifname @sdc_if meta nfproto ipv6 iifname . ip6 saddr != @eni_addr6 counter drop",
                "oifname @sdc_if meta nfproto ipv4 oifname . ip daddr != @eni_addr4 counter drop",
                "oifname @sdc_if meta nfproto ipv6 oifname . ip6 daddr != @eni_addr6 counter drop",
                // 3. Network ACLs, stateless.
                "iifname vmap @nacl_out",
                "oifname vmap @nacl_in",
                // 4. A peer's packet for this VPC's interface on another
                // host: that host's router applies the checks (its
                // conntrack sees both directions; this one sees one).
                r#"iifname "p-*" oifname "x-*" accept"#,
                // Tracked connections.
                "ct state established,related accept",
                "ct state invalid counter drop",
                // 5. Security groups for new connections.
                "iifname vmap @sgout",
                "goto sg_ingress",
            ]
            .iter(),
        )
        .map(|s| s.to_string())
        .collect();
    b.chain(
        "forward",
        Some("type filter hook forward priority filter; policy drop;"),
        &rules,
    );
    NftTable {
        family: "inet",
        name: "vpcd",
        body: b.text,
        shape: b.shape,
    }
}

/// The router's 1:1 NAT between private and public IPv4 at the internet gateway.
fn nat(public: &BTreeMap<Ipv4Addr, Ipv4Addr>) -> NftTable {
    let mut b = Body::default();
    let to_priv: Vec<(String, String)> = public
        .iter()
        .map(|(private, public)| (public.to_string(), private.to_string()))
        .collect();
    let to_pub: Vec<(String, String)> = public
        .iter()
        .map(|(private, public)| (private.to_string(), public.to_string()))
        .collect();
    b.map("pub2priv", "ipv4_addr : ipv4_addr", &to_priv);
    b.map("priv2pub", "ipv4_addr : ipv4_addr", &to_pub);
    b.chain(
        "prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
        &[r#"iifname "g-*" dnat to ip daddr map @pub2priv"#.to_string()],
    );
    b.chain(
        "postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        &[r#"oifname "g-*" snat to ip saddr map @priv2pub"#.to_string()],
    );
    NftTable {
        family: "ip",
        name: "vpcd_nat",
        body: b.text,
        shape: b.shape,
    }
}

/// A NAT gateway masquerades what it forwards to its own private address.
pub(crate) fn nat_gateway(ip: Ipv4Addr) -> Vec<NftTable> {
    let mut b = Body::default();
    b.chain(
        "postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        &[format!(r#"oifname "eth0" ip saddr != {ip} masquerade"#)],
    );
    vec![NftTable {
        family: "ip",
        name: "vpcd_natgw",
        body: b.text,
        shape: b.shape,
    }]
}
