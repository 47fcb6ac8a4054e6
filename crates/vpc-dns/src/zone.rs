//! The zone data: what a VPC's resolver answers, computed purely from a
//! [`World`] with the model's decisions (`vpc_model::ops::dns`).
//!
//! [`Index::build`] indexes the World once per published state (every
//! private and public IPv4 of every instance interface); [`answer`] then
//! resolves one question for one querying VPC in constant time. No I/O and
//! no wire format here: the server turns an [`Outcome`] into a DNS message.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use vpc_model::ops::route53::{self, RecordData, ZoneLookup};
use vpc_model::ops::{dns, eni, hostname};
use vpc_model::{HostedZone, Instance, InstanceState, NetworkInterface, Vpc, World};

/// The question's type, as far as the resolver distinguishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    A,
    Ptr,
    /// `ANY`: answered with what the name has.
    Any,
    /// A type only Route 53 record sets can have (`AAAA`, `CNAME`, `TXT`,
    /// `SRV`, `MX`, `NS`, `SOA`, …), by its name.
    Zone(&'static str),
    /// Every other type: the names vpcd serves have none.
    Other,
}

impl QueryKind {
    /// The type's name as Route 53 spells it (`Other` matches no record set).
    fn rtype(self) -> &'static str {
        match self {
            QueryKind::A => "A",
            QueryKind::Ptr => "PTR",
            QueryKind::Any => "ANY",
            QueryKind::Zone(t) => t,
            QueryKind::Other => "",
        }
    }
}

/// How many CNAMEs and aliases one answer follows.
const MAX_CHAIN: usize = 8;

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `name A ip`.
    A { name: String, ip: Ipv4Addr },
    /// `name AAAA ip` (a resource name's IPv6 address).
    Aaaa { name: String, ip: Ipv6Addr },
    /// `name PTR target`.
    Ptr { name: String, target: String },
    /// A record of a Route 53 record set (`rtype` as Route 53 spells it).
    Zone {
        name: String,
        rtype: String,
        ttl: u32,
        data: RecordData,
    },
}

/// What the resolver says to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR with these records (authoritative).
    Records(Vec<Answer>),
    /// NOERROR, no records: the name exists but has no record of this type.
    NoData { zone: String },
    /// NXDOMAIN in one of vpcd's zones.
    NxDomain { zone: String },
    /// A name outside vpcd's zones: forwarded to the upstream resolver when
    /// the operator configured one, else NXDOMAIN at once (nothing leaves
    /// the machine; a search list goes on to its next domain).
    Outside,
}

/// An interface address the names are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    vpc_id: String,
    region: String,
    /// The private address (for a public one, the primary private address
    /// it maps to).
    private: Ipv4Addr,
}

/// The World's instance addresses, indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Regions of every VPC (the domains the names may be in).
    regions: BTreeSet<String>,
    /// Private IPv4 → the interfaces holding it (VPCs may overlap).
    private: HashMap<Ipv4Addr, Vec<Holder>>,
    /// Public IPv4 → the interface it maps to.
    public: HashMap<Ipv4Addr, Holder>,
    /// VPC → the private hosted zones associated with it.
    zones: HashMap<String, Vec<String>>,
}

/// Whether the interface's names exist: attached to an instance that is not terminated.
fn named(w: &World, e: &NetworkInterface) -> bool {
    eni::instance_of(w, e).is_some_and(|i| i.state != InstanceState::Terminated)
}

impl Index {
    /// Indexes every private and public IPv4 of every instance interface.
    pub fn build(w: &World) -> Index {
        let mut idx = Index {
            regions: w.iter::<Vpc>().map(|v| v.meta.region.clone()).collect(),
            ..Index::default()
        };
        for z in w.iter::<HostedZone>().filter(|z| z.private) {
            for v in &z.vpcs {
                idx.zones
                    .entry(v.vpc_id.clone())
                    .or_default()
                    .push(z.meta.id.clone());
            }
        }
        for e in w.iter::<NetworkInterface>().filter(|e| named(w, e)) {
            for p in &e.private_ips {
                idx.private.entry(p.ip).or_default().push(Holder {
                    vpc_id: e.vpc_id.clone(),
                    region: e.meta.region.clone(),
                    private: p.ip,
                });
            }
            for (private, public) in eni::public_ips_of(w, e) {
                idx.public.insert(
                    public,
                    Holder {
                        vpc_id: e.vpc_id.clone(),
                        region: e.meta.region.clone(),
                        private,
                    },
                );
            }
        }
        idx
    }

    fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.iter().map(String::as_str)
    }

    /// The holder of a private address in `region` whose name `querier`
    /// may resolve: its own VPC's first, then a peer's.
    fn visible_private(
        &self,
        w: &World,
        querier: &Vpc,
        region: Option<&str>,
        ip: Ipv4Addr,
    ) -> Option<&Holder> {
        let holders = self.private.get(&ip)?;
        let own = holders.iter().filter(|h| h.vpc_id == querier.meta.id);
        let others = holders.iter().filter(|h| h.vpc_id != querier.meta.id);
        own.chain(others)
            .filter(|h| region.is_none_or(|r| h.region == r))
            .find(|h| {
                w.get::<Vpc>(&h.vpc_id)
                    .is_some_and(|t| dns::private_name_visible(w, querier, t, ip))
            })
    }
}

/// `d.c.b.a.in-addr.arpa` → a.b.c.d.
fn parse_reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.len() != 4
        || labels
            .iter()
            .any(|l| l.is_empty() || l.len() > 3 || (l.len() > 1 && l.starts_with('0')))
    {
        return None;
    }
    let dotted: Vec<&str> = labels.into_iter().rev().collect();
    dotted.join(".").parse().ok()
}

/// The reverse name of an address: `10.1.0.10` → `10.0.1.10.in-addr.arpa`.
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// The forward zones vpcd answers for: a name in one of them that does not
/// exist is NXDOMAIN, never forwarded. None for every other name.
pub fn forward_zone(name: &str) -> Option<String> {
    for apex in [
        "ec2.internal",
        "compute-1.internal",
        "compute-1.amazonaws.com",
    ] {
        if name == apex || name.ends_with(&format!(".{apex}")) {
            return Some(apex.to_string());
        }
    }
    for parent in ["compute.internal", "compute.amazonaws.com"] {
        if name == parent {
            return Some(parent.to_string());
        }
        if let Some(head) = name.strip_suffix(&format!(".{parent}")) {
            let region = head.rsplit('.').next().unwrap_or(head);
            return Some(format!("{region}.{parent}"));
        }
    }
    None
}

/// The reverse zones vpcd answers for (AWS's autodefined ones): RFC 1918
/// space and 169.254/16, by their classful apex.
pub fn reverse_zone(ip: Ipv4Addr) -> Option<String> {
    let [a, b, ..] = ip.octets();
    match (a, b) {
        (10, _) => Some("10.in-addr.arpa".into()),
        (172, 16..=31) => Some(format!("{b}.172.in-addr.arpa")),
        (192, 168) => Some("168.192.in-addr.arpa".into()),
        (169, 254) => Some("254.169.in-addr.arpa".into()),
        _ => None,
    }
}

/// Resolves one question that reached `querier`'s resolver.
///
/// * `ip-a-b-c-d.<private domain>`: A = a.b.c.d, when an instance holds that
///   address in that region and its name is visible from `querier`
///   (`dns::private_name_visible`).
/// * `i-0123456789abcdef0.<private domain>` (a resource name): A and/or
///   AAAA as the instance's options say (`hostname::resource_name_records`),
///   visible from `querier` as its IP names are.
/// * `ec2-a-b-c-d.<public domain>`: A = the private or the public address
///   (`dns::public_name_answer`).
/// * `d.c.b.a.in-addr.arpa`: PTR = the private name of a visible instance
///   address, else the public name of a vpcd public address.
/// * Another name in vpcd's zones: NXDOMAIN; anything else: [`Outcome::Outside`].
pub fn answer(idx: &Index, w: &World, querier: &Vpc, qname: &str, kind: QueryKind) -> Outcome {
    answer_within(idx, w, querier, qname, kind, 0)
}

fn answer_within(
    idx: &Index,
    w: &World,
    querier: &Vpc,
    qname: &str,
    kind: QueryKind,
    depth: usize,
) -> Outcome {
    let name = qname
        .strip_suffix('.')
        .unwrap_or(qname)
        .to_ascii_lowercase();
    if let Some(z) = idx.private_zone(w, querier, &name) {
        return from_zone(idx, w, querier, z, &name, kind, depth);
    }
    if let Some(ip) = parse_reverse_v4(&name) {
        return reverse(idx, w, querier, &name, ip, kind);
    }
    if let Some((region, ip)) = dns::parse_private_dns_name(&name, idx.regions()) {
        let zone = dns::private_domain(region);
        return match idx.visible_private(w, querier, Some(region), ip) {
            Some(_) => address(&name, ip, kind, zone),
            None => Outcome::NxDomain { zone },
        };
    }
    if let Some((region, id)) = hostname::parse_resource_name(&name, idx.regions()) {
        let zone = dns::private_domain(region);
        return resource(w, querier, region, &id, &name, kind, zone);
    }
    if let Some((region, public)) = dns::parse_public_dns_name(&name, idx.regions()) {
        let zone = dns::public_domain(region);
        let resolved = idx
            .public
            .get(&public)
            .filter(|h| h.region == region)
            .and_then(|h| {
                let target = w.get::<Vpc>(&h.vpc_id)?;
                dns::public_name_answer(w, querier, target, h.private, public)
            });
        return match resolved {
            Some(ip) => address(&name, ip, kind, zone),
            None => Outcome::NxDomain { zone },
        };
    }
    match forward_zone(&name) {
        Some(zone) => Outcome::NxDomain { zone },
        None => Outcome::Outside,
    }
}

impl Index {
    /// The private hosted zone that answers `name` (no trailing dot) for
    /// `querier` (`route53::zone_for_query`), when it is at least as
    /// specific as vpcd's own zone for the name (AWS: the most specific
    /// domain wins; at equal specificity a private zone wins over the
    /// autodefined one).
    fn private_zone<'w>(&self, w: &'w World, querier: &Vpc, name: &str) -> Option<&'w HostedZone> {
        let ids = self.zones.get(&querier.meta.id)?;
        let fq = format!("{name}.");
        let z = route53::zone_for_query(
            querier,
            ids.iter().filter_map(|id| w.get::<HostedZone>(id)),
            &fq,
        )?;
        let own = forward_zone(name).or_else(|| parse_reverse_v4(name).and_then(reverse_zone));
        let labels = |s: &str| s.trim_end_matches('.').split('.').count();
        own.is_none_or(|o| labels(&z.name) >= labels(&o))
            .then_some(z)
    }
}

/// The zone's apex without the trailing dot (for the SOA of negative answers).
fn apex(z: &HostedZone) -> String {
    z.name.trim_end_matches('.').to_string()
}

fn zone_records(r: &vpc_model::RecordSet, owner: &str) -> Vec<Answer> {
    r.values
        .iter()
        .filter_map(|v| route53::parse_value(&r.rtype, v).ok())
        .filter(|d| *d != RecordData::Other)
        .map(|data| Answer::Zone {
            name: owner.to_string(),
            rtype: r.rtype.clone(),
            ttl: r.ttl.unwrap_or(dns::TTL),
            data,
        })
        .collect()
}

/// Renames answers to `owner` (an alias answers under its own name).
fn renamed(answers: Vec<Answer>, owner: &str) -> Vec<Answer> {
    answers
        .into_iter()
        .map(|a| match a {
            Answer::A { ip, .. } => Answer::A {
                name: owner.to_string(),
                ip,
            },
            Answer::Aaaa { ip, .. } => Answer::Aaaa {
                name: owner.to_string(),
                ip,
            },
            Answer::Ptr { target, .. } => Answer::Ptr {
                name: owner.to_string(),
                target,
            },
            Answer::Zone {
                rtype, ttl, data, ..
            } => Answer::Zone {
                name: owner.to_string(),
                rtype,
                ttl,
                data,
            },
        })
        .collect()
}

/// Answers from a private hosted zone (`route53::lookup`), following CNAMEs
/// and aliases through [`answer`] (so they may lead to instance names).
fn from_zone(
    idx: &Index,
    w: &World,
    querier: &Vpc,
    z: &HostedZone,
    name: &str,
    kind: QueryKind,
    depth: usize,
) -> Outcome {
    let fq = format!("{name}.");
    match route53::lookup(z, &fq, kind.rtype()) {
        ZoneLookup::Records(sets) => {
            Outcome::Records(sets.iter().flat_map(|r| zone_records(r, name)).collect())
        }
        ZoneLookup::Cname(c) => {
            let mut out = zone_records(c, name);
            if let (
                Some(Answer::Zone {
                    data: RecordData::Name(target),
                    ..
                }),
                true,
            ) = (out.first().cloned(), depth < MAX_CHAIN)
            {
                if let Outcome::Records(more) =
                    answer_within(idx, w, querier, &target, kind, depth + 1)
                {
                    out.extend(more);
                }
            }
            Outcome::Records(out)
        }
        ZoneLookup::Alias(a) if depth < MAX_CHAIN => {
            match answer_within(idx, w, querier, &a.dns_name, kind, depth + 1) {
                Outcome::Records(rs) => Outcome::Records(renamed(rs, name)),
                _ => Outcome::NoData { zone: apex(z) },
            }
        }
        ZoneLookup::Alias(_) | ZoneLookup::NoData => Outcome::NoData { zone: apex(z) },
        ZoneLookup::NxDomain => Outcome::NxDomain { zone: apex(z) },
    }
}

/// What an instance's resource name answers for `querier`: NXDOMAIN unless
/// the instance is in `region`, not terminated, its name visible from
/// `querier` (as its IP name would be) and at least one of its record flags
/// gives an address; NOERROR without records for a type it does not give.
fn resource(
    w: &World,
    querier: &Vpc,
    region: &str,
    id: &str,
    name: &str,
    kind: QueryKind,
    zone: String,
) -> Outcome {
    let found = w
        .get::<Instance>(id)
        .filter(|i| i.meta.region == region && i.state != InstanceState::Terminated)
        .filter(|i| {
            let primary = w.get::<NetworkInterface>(&i.primary_eni);
            match (w.get::<Vpc>(&i.vpc_id), primary) {
                (Some(t), Some(e)) => dns::resource_name_visible(w, querier, t, e.primary_ip()),
                _ => false,
            }
        })
        .map(|i| hostname::resource_name_records(w, i));
    let (a, aaaa) = match found {
        Some((None, None)) | None => return Outcome::NxDomain { zone },
        Some(records) => records,
    };
    let a = a.map(|ip| Answer::A {
        name: name.to_string(),
        ip,
    });
    let aaaa = aaaa.map(|ip| Answer::Aaaa {
        name: name.to_string(),
        ip,
    });
    let records: Vec<Answer> = match kind {
        QueryKind::A => a.into_iter().collect(),
        QueryKind::Zone("AAAA") => aaaa.into_iter().collect(),
        QueryKind::Any => a.into_iter().chain(aaaa).collect(),
        QueryKind::Ptr | QueryKind::Zone(_) | QueryKind::Other => Vec::new(),
    };
    if records.is_empty() {
        Outcome::NoData { zone }
    } else {
        Outcome::Records(records)
    }
}

fn address(name: &str, ip: Ipv4Addr, kind: QueryKind, zone: String) -> Outcome {
    match kind {
        QueryKind::A | QueryKind::Any => Outcome::Records(vec![Answer::A {
            name: name.to_string(),
            ip,
        }]),
        QueryKind::Ptr | QueryKind::Zone(_) | QueryKind::Other => Outcome::NoData { zone },
    }
}

fn reverse(
    idx: &Index,
    w: &World,
    querier: &Vpc,
    name: &str,
    ip: Ipv4Addr,
    kind: QueryKind,
) -> Outcome {
    let target = if let Some(h) = idx.visible_private(w, querier, None, ip) {
        Some((eni::private_dns_name(&h.region, ip), reverse_zone(ip)))
    } else {
        idx.public
            .get(&ip)
            .filter(|h| w.get::<Vpc>(&h.vpc_id).is_some_and(dns::names_resolve))
            .map(|h| (eni::public_dns_name(&h.region, ip), None))
    };
    match target {
        Some((target, zone)) => match kind {
            QueryKind::Ptr | QueryKind::Any => Outcome::Records(vec![Answer::Ptr {
                name: name.to_string(),
                target,
            }]),
            QueryKind::A | QueryKind::Zone(_) | QueryKind::Other => Outcome::NoData {
                zone: zone.unwrap_or_else(|| "in-addr.arpa".into()),
            },
        },
        None => match reverse_zone(ip) {
            Some(zone) => Outcome::NxDomain { zone },
            None => Outcome::Outside,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Env, Inst, A, B, EAST, WEST};
    use vpc_model::ops::peering::{self, OptionChange};
    use vpc_model::ops::vpc as vpc_ops;
    use vpc_model::Subnet;

    /// A VPC with both DNS attributes on, and one subnet.
    fn vpc(e: &mut Env, acct: &str, region: &str, cidr: &str, subnet: &str) -> (Vpc, Subnet) {
        let v = e.vpc_as(acct, region, cidr, None);
        hostnames(e, &v, true);
        let s = e.subnet(&v, subnet);
        (e.w.get::<Vpc>(&v.meta.id).unwrap().clone(), s)
    }

    fn hostnames(e: &mut Env, v: &Vpc, on: bool) {
        let id = v.meta.id.clone();
        e.run(&v.meta.owner.clone(), &v.meta.region.clone(), |w, c| {
            vpc_ops::modify_attribute(w, c, &id, None, Some(on))
        });
    }

    fn support(e: &mut Env, v: &Vpc, on: bool) {
        let id = v.meta.id.clone();
        e.run(&v.meta.owner.clone(), &v.meta.region.clone(), |w, c| {
            vpc_ops::modify_attribute(w, c, &id, Some(on), None)
        });
    }

    /// Sets one side's AllowDnsResolutionFromRemoteVpc, as that side's owner.
    fn allow_dns(e: &mut Env, pcx: &str, side: &Vpc, on: bool) {
        let p = e.w.get::<Peering>(pcx).unwrap().clone();
        let change = Some(OptionChange {
            allow_dns: Some(on),
            classic_link: false,
        });
        let (acc, req) = if p.accepter.vpc_id == side.meta.id {
            (change, None)
        } else {
            (None, change)
        };
        e.run(
            &side.meta.owner.clone(),
            &side.meta.region.clone(),
            |w, c| peering::modify_options(w, c, pcx, acc, req),
        );
    }

    fn ask(e: &Env, querier: &Vpc, name: &str, kind: QueryKind) -> Outcome {
        let q = e.w.get::<Vpc>(&querier.meta.id).unwrap();
        answer(&Index::build(&e.w), &e.w, q, name, kind)
    }

    fn a(name: &str, ip: &str) -> Outcome {
        Outcome::Records(vec![Answer::A {
            name: name.into(),
            ip: ip.parse().unwrap(),
        }])
    }

    fn ptr(name: &str, target: &str) -> Outcome {
        Outcome::Records(vec![Answer::Ptr {
            name: name.into(),
            target: target.into(),
        }])
    }

    fn nx(zone: &str) -> Outcome {
        Outcome::NxDomain { zone: zone.into() }
    }

    fn public_ip(e: &Env, i: &Inst) -> Ipv4Addr {
        let n = e.w.get::<NetworkInterface>(&i.eni).unwrap();
        eni::public_ip_of(&e.w, n).expect("a public IP")
    }

    use vpc_model::Peering;

    #[test]
    fn zones_vpcd_answers_for() {
        assert_eq!(
            forward_zone("ip-1-2-3-4.ec2.internal").as_deref(),
            Some("ec2.internal")
        );
        assert_eq!(
            forward_zone("x.eu-west-1.compute.internal").as_deref(),
            Some("eu-west-1.compute.internal")
        );
        assert_eq!(
            forward_zone("ec2-1-2-3-4.compute-1.amazonaws.com").as_deref(),
            Some("compute-1.amazonaws.com")
        );
        assert_eq!(forward_zone("example.com"), None);
        assert_eq!(forward_zone("notec2.internal"), None);
        assert_eq!(forward_zone("amazonaws.com"), None);
        assert_eq!(
            reverse_zone("10.9.8.7".parse().unwrap()).as_deref(),
            Some("10.in-addr.arpa")
        );
        assert_eq!(
            reverse_zone("172.20.0.1".parse().unwrap()).as_deref(),
            Some("20.172.in-addr.arpa")
        );
        assert_eq!(reverse_zone("172.32.0.1".parse().unwrap()), None);
        assert_eq!(reverse_zone("8.8.8.8".parse().unwrap()), None);
        assert_eq!(
            reverse_name("10.1.0.10".parse().unwrap()),
            "10.0.1.10.in-addr.arpa"
        );
        assert_eq!(
            parse_reverse_v4("10.0.1.10.in-addr.arpa"),
            Some("10.1.0.10".parse().unwrap())
        );
        assert_eq!(parse_reverse_v4("0.1.10.in-addr.arpa"), None);
        assert_eq!(parse_reverse_v4("010.0.1.10.in-addr.arpa"), None);
    }

    #[test]
    fn own_private_name_and_ptr() {
        let mut e = Env::new();
        let (v, s) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        e.launch(&s, "10.0.1.10", false);
        let name = "ip-10-0-1-10.ec2.internal";
        assert_eq!(ask(&e, &v, name, QueryKind::A), a(name, "10.0.1.10"));
        assert_eq!(
            ask(&e, &v, "IP-10-0-1-10.EC2.INTERNAL.", QueryKind::A),
            a(name, "10.0.1.10"),
            "case-insensitive, trailing dot"
        );
        assert_eq!(
            ask(&e, &v, name, QueryKind::Other),
            Outcome::NoData {
                zone: "ec2.internal".into()
            },
            "AAAA of an IP name: no data, not NXDOMAIN"
        );
        assert_eq!(
            ask(&e, &v, "10.1.0.10.in-addr.arpa", QueryKind::Ptr),
            ptr("10.1.0.10.in-addr.arpa", name)
        );
        // Nobody holds 10.0.1.11.
        assert_eq!(
            ask(&e, &v, "ip-10-0-1-11.ec2.internal", QueryKind::A),
            nx("ec2.internal")
        );
        assert_eq!(
            ask(&e, &v, "11.1.0.10.in-addr.arpa", QueryKind::Ptr),
            nx("10.in-addr.arpa")
        );
        // The right address in the wrong region's domain.
        assert_eq!(
            ask(
                &e,
                &v,
                "ip-10-0-1-10.us-west-2.compute.internal",
                QueryKind::A
            ),
            nx("us-west-2.compute.internal")
        );
        assert_eq!(ask(&e, &v, "example.com", QueryKind::A), Outcome::Outside);
        assert_eq!(
            ask(&e, &v, "8.8.8.8.in-addr.arpa", QueryKind::Ptr),
            Outcome::Outside
        );
    }

    #[test]
    fn names_go_with_the_dns_attributes_and_the_instance() {
        let mut e = Env::new();
        let (v, s) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        let i = e.launch(&s, "10.0.1.10", false);
        let name = "ip-10-0-1-10.ec2.internal";
        hostnames(&mut e, &v, false);
        assert_eq!(ask(&e, &v, name, QueryKind::A), nx("ec2.internal"));
        assert_eq!(
            ask(&e, &v, "10.1.0.10.in-addr.arpa", QueryKind::Ptr),
            nx("10.in-addr.arpa")
        );
        hostnames(&mut e, &v, true);
        assert_eq!(ask(&e, &v, name, QueryKind::A), a(name, "10.0.1.10"));
        e.set_state(&i.id, InstanceState::Terminated);
        assert_eq!(ask(&e, &v, name, QueryKind::A), nx("ec2.internal"));
    }

    #[test]
    fn other_regions_use_their_compute_internal_domain() {
        let mut e = Env::new();
        let (v, s) = vpc(&mut e, A, WEST, "10.5.0.0/16", "10.5.1.0/24");
        e.launch(&s, "10.5.1.10", false);
        let name = "ip-10-5-1-10.us-west-2.compute.internal";
        assert_eq!(ask(&e, &v, name, QueryKind::A), a(name, "10.5.1.10"));
        assert_eq!(
            ask(&e, &v, "ip-10-5-1-10.ec2.internal", QueryKind::A),
            nx("ec2.internal")
        );
        assert_eq!(
            ask(&e, &v, "10.1.5.10.in-addr.arpa", QueryKind::Ptr),
            ptr("10.1.5.10.in-addr.arpa", name)
        );
    }

    #[test]
    fn overlapping_vpcs_each_see_their_own_instance() {
        let mut e = Env::new();
        let (v1, s1) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        let (v2, s2) = vpc(&mut e, B, EAST, "10.0.0.0/16", "10.0.1.0/24");
        e.launch(&s1, "10.0.1.10", false);
        let name = "ip-10-0-1-10.ec2.internal";
        assert_eq!(ask(&e, &v1, name, QueryKind::A), a(name, "10.0.1.10"));
        assert_eq!(
            ask(&e, &v2, name, QueryKind::A),
            nx("ec2.internal"),
            "an unrelated VPC with the same CIDR does not see v1's instance"
        );
        e.launch(&s2, "10.0.1.10", false);
        assert_eq!(ask(&e, &v2, name, QueryKind::A), a(name, "10.0.1.10"));
    }

    #[test]
    fn public_names_split_horizon_and_the_peering_option() {
        let mut e = Env::new();
        let (va, sa) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        let (vb, sb) = vpc(&mut e, B, EAST, "10.1.0.0/16", "10.1.1.0/24");
        let (vc, _) = vpc(&mut e, A, EAST, "10.2.0.0/16", "10.2.1.0/24");
        e.igw(&vb);
        let ib = e.launch(&sb, "10.1.1.10", true);
        e.launch(&sa, "10.0.1.10", false);
        let pb = public_ip(&e, &ib);
        let name = eni::public_dns_name(EAST, pb);
        // Inside its own VPC: the private IP.
        assert_eq!(ask(&e, &vb, &name, QueryKind::A), a(&name, "10.1.1.10"));
        // From an unrelated VPC: the public IP.
        assert_eq!(ask(&e, &vc, &name, QueryKind::A), a(&name, &pb.to_string()));
        // Peered, option off: the public IP; b's private names resolve (same region, RFC 1918).
        let pcx = e.peer(&va, &vb, true);
        assert_eq!(ask(&e, &va, &name, QueryKind::A), a(&name, &pb.to_string()));
        let bname = "ip-10-1-1-10.ec2.internal";
        assert_eq!(ask(&e, &va, bname, QueryKind::A), a(bname, "10.1.1.10"));
        assert_eq!(
            ask(&e, &vc, bname, QueryKind::A),
            nx("ec2.internal"),
            "not peered"
        );
        // a's own side allowing it changes nothing for b's names.
        allow_dns(&mut e, &pcx, &va, true);
        assert_eq!(ask(&e, &va, &name, QueryKind::A), a(&name, &pb.to_string()));
        // b's side allowing it: the private IP, from a only.
        allow_dns(&mut e, &pcx, &vb, true);
        assert_eq!(ask(&e, &va, &name, QueryKind::A), a(&name, "10.1.1.10"));
        assert_eq!(ask(&e, &vc, &name, QueryKind::A), a(&name, &pb.to_string()));
        // Off again: at once.
        allow_dns(&mut e, &pcx, &vb, false);
        assert_eq!(ask(&e, &va, &name, QueryKind::A), a(&name, &pb.to_string()));
        // The public address's PTR is the public name, from anywhere.
        let rev = reverse_name(pb);
        assert_eq!(ask(&e, &vc, &rev, QueryKind::Ptr), ptr(&rev, &name));
        // Without hostnames in b, the public name does not exist.
        hostnames(&mut e, &vb, false);
        assert_eq!(
            ask(&e, &vc, &name, QueryKind::A),
            nx("compute-1.amazonaws.com")
        );
        assert_eq!(ask(&e, &vc, &rev, QueryKind::Ptr), Outcome::Outside);
    }

    #[test]
    fn inter_region_peer_names_need_the_option() {
        let mut e = Env::new();
        let (va, _) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        let (vb, sb) = vpc(&mut e, B, WEST, "10.1.0.0/16", "10.1.1.0/24");
        e.launch(&sb, "10.1.1.10", false);
        let name = "ip-10-1-1-10.us-west-2.compute.internal";
        let pcx = e.peer(&va, &vb, true);
        assert_eq!(
            ask(&e, &va, name, QueryKind::A),
            nx("us-west-2.compute.internal")
        );
        assert_eq!(
            ask(&e, &va, "10.1.1.10.in-addr.arpa", QueryKind::Ptr),
            nx("10.in-addr.arpa")
        );
        allow_dns(&mut e, &pcx, &vb, true);
        assert_eq!(ask(&e, &va, name, QueryKind::A), a(name, "10.1.1.10"));
        assert_eq!(
            ask(&e, &va, "10.1.1.10.in-addr.arpa", QueryKind::Ptr),
            ptr("10.1.1.10.in-addr.arpa", name)
        );
        e.delete_peering(&pcx, &va);
        assert_eq!(
            ask(&e, &va, name, QueryKind::A),
            nx("us-west-2.compute.internal")
        );
    }

    #[test]
    fn a_querier_without_hostnames_resolves_no_private_names_but_public_ones() {
        let mut e = Env::new();
        let (va, _) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        let (vb, sb) = vpc(&mut e, A, EAST, "10.1.0.0/16", "10.1.1.0/24");
        e.igw(&vb);
        let ib = e.launch(&sb, "10.1.1.10", true);
        let pcx = e.peer(&va, &vb, true);
        allow_dns(&mut e, &pcx, &vb, true);
        hostnames(&mut e, &va, false);
        let pb = public_ip(&e, &ib);
        let name = eni::public_dns_name(EAST, pb);
        assert_eq!(
            ask(&e, &va, "ip-10-1-1-10.ec2.internal", QueryKind::A),
            nx("ec2.internal")
        );
        assert_eq!(ask(&e, &va, &name, QueryKind::A), a(&name, &pb.to_string()));
        support(&mut e, &va, false);
        // The server does not answer at all then (ops::dns::admits_query); the
        // zone data is the same.
        assert!(!vpc_model::ops::dns::admits_query(
            e.w.get::<Vpc>(&va.meta.id).unwrap(),
            "10.0.1.10".parse().unwrap()
        ));
    }

    fn zone_with(e: &mut Env, v: &Vpc, name: &str, records: &[(&str, &str, &str)]) -> String {
        use vpc_model::ops::route53::{self as r53, CreateZone, RecordChange};
        let vid = v.meta.id.clone();
        let region = v.meta.region.clone();
        let (owner, name) = (v.meta.owner.clone(), name.to_string());
        let recs: Vec<(String, String, String)> = records
            .iter()
            .map(|(n, t, val)| (n.to_string(), t.to_string(), val.to_string()))
            .collect();
        e.run(&owner, &region.clone(), |w, c| {
            let (z, _) = r53::create_zone(
                w,
                c,
                CreateZone {
                    name,
                    caller_reference: format!("ref-{vid}"),
                    comment: None,
                    private_zone: None,
                    vpc: Some(vpc_model::ZoneVpc {
                        region,
                        vpc_id: vid,
                    }),
                },
            )?;
            let changes = recs
                .into_iter()
                .map(|(n, t, val)| RecordChange {
                    action: "CREATE".into(),
                    record: vpc_model::RecordSet {
                        name: n,
                        alias: (t == "ALIAS").then(|| vpc_model::AliasTarget {
                            hosted_zone_id: String::new(),
                            dns_name: format!("{val}."),
                            evaluate_target_health: false,
                        }),
                        ttl: (t != "ALIAS").then_some(60),
                        values: if t == "ALIAS" { vec![] } else { vec![val] },
                        rtype: if t == "ALIAS" { "A".into() } else { t },
                    },
                })
                .collect();
            r53::change_records(w, c, &z.meta.id, changes, None)?;
            Ok(z.meta.id)
        })
    }

    fn zone_a(name: &str, ip: &str) -> Answer {
        Answer::Zone {
            name: name.into(),
            rtype: "A".into(),
            ttl: 60,
            data: RecordData::A(ip.parse().unwrap()),
        }
    }

    #[test]
    fn private_zones_answer_in_associated_vpcs_only() {
        let mut e = Env::new();
        let (va, sa) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        let (vb, _) = vpc(&mut e, A, EAST, "10.1.0.0/16", "10.1.1.0/24");
        e.launch(&sa, "10.0.1.10", false);
        zone_with(
            &mut e,
            &va,
            "corp.example",
            &[
                ("db.corp.example", "A", "10.0.1.5"),
                ("www.corp.example", "CNAME", "db.corp.example"),
                ("app.corp.example", "ALIAS", "ip-10-0-1-10.ec2.internal"),
                ("host.corp.example", "CNAME", "ip-10-0-1-10.ec2.internal"),
            ],
        );
        let db = "db.corp.example";
        assert_eq!(
            ask(&e, &va, db, QueryKind::A),
            Outcome::Records(vec![zone_a(db, "10.0.1.5")])
        );
        assert_eq!(
            ask(&e, &vb, db, QueryKind::A),
            Outcome::Outside,
            "not associated: not vpcd's name there"
        );
        assert_eq!(
            ask(&e, &va, "nope.corp.example", QueryKind::A),
            nx("corp.example")
        );
        assert_eq!(
            ask(&e, &va, db, QueryKind::Zone("AAAA")),
            Outcome::NoData {
                zone: "corp.example".into()
            }
        );
        // A CNAME is followed, also to an instance's IP name; an alias answers under its own name.
        match ask(&e, &va, "www.corp.example", QueryKind::A) {
            Outcome::Records(rs) => assert_eq!(rs[1], zone_a(db, "10.0.1.5"), "{rs:?}"),
            other => panic!("{other:?}"),
        }
        match ask(&e, &va, "host.corp.example", QueryKind::A) {
            Outcome::Records(rs) => assert_eq!(
                rs[1],
                Answer::A {
                    name: "ip-10-0-1-10.ec2.internal".into(),
                    ip: "10.0.1.10".parse().unwrap()
                }
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ask(&e, &va, "app.corp.example", QueryKind::A),
            a("app.corp.example", "10.0.1.10")
        );
        // Without hostnames the querying VPC resolves no private zone.
        hostnames(&mut e, &va, false);
        assert_eq!(ask(&e, &va, db, QueryKind::A), Outcome::Outside);
    }

    #[test]
    fn a_private_zone_wins_over_vpcds_own_zone_at_equal_specificity() {
        let mut e = Env::new();
        let (va, sa) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        e.launch(&sa, "10.0.1.10", false);
        zone_with(
            &mut e,
            &va,
            "ec2.internal",
            &[("x.ec2.internal", "A", "10.0.0.9")],
        );
        assert_eq!(
            ask(&e, &va, "x.ec2.internal", QueryKind::A),
            Outcome::Records(vec![zone_a("x.ec2.internal", "10.0.0.9")])
        );
        assert_eq!(
            ask(&e, &va, "ip-10-0-1-10.ec2.internal", QueryKind::A),
            nx("ec2.internal"),
            "no fall-through from a private zone"
        );
    }

    fn dns_options(e: &mut Env, i: &Inst, a: Option<bool>, aaaa: Option<bool>) {
        let id = i.id.clone();
        let change = hostname::PrivateDnsChange {
            hostname_type: None,
            resource_name_a: a,
            resource_name_aaaa: aaaa,
        };
        e.run(A, EAST, |w, c| {
            hostname::modify_instance(w, c, &id, &change)
        });
    }

    #[test]
    fn resource_names_answer_a_and_aaaa_as_their_flags_say() {
        let mut e = Env::new();
        let (va, sa) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        let (vb, _) = vpc(&mut e, A, EAST, "10.1.0.0/16", "10.1.1.0/24");
        let (vc, _) = vpc(&mut e, A, EAST, "10.2.0.0/16", "10.2.1.0/24");
        let i = e.launch(&sa, "10.0.1.10", false);
        e.add_ipv6(&i.eni, "2600:1f18:1:1::10");
        let name = hostname::resource_name(EAST, &i.id);
        let zone = "ec2.internal";
        let nodata = || Outcome::NoData { zone: zone.into() };
        let aaaa = || Answer::Aaaa {
            name: name.clone(),
            ip: "2600:1f18:1:1::10".parse().unwrap(),
        };
        // Both flags off (the default): the name does not exist.
        assert_eq!(ask(&e, &va, &name, QueryKind::A), nx(zone));
        assert_eq!(ask(&e, &va, &name, QueryKind::Zone("AAAA")), nx(zone));
        dns_options(&mut e, &i, Some(true), None);
        assert_eq!(ask(&e, &va, &name, QueryKind::A), a(&name, "10.0.1.10"));
        assert_eq!(ask(&e, &va, &name, QueryKind::Zone("AAAA")), nodata());
        dns_options(&mut e, &i, None, Some(true));
        assert_eq!(
            ask(&e, &va, &name, QueryKind::Zone("AAAA")),
            Outcome::Records(vec![aaaa()])
        );
        let both = ask(&e, &va, &name, QueryKind::Any);
        assert_eq!(
            both,
            Outcome::Records(vec![
                Answer::A {
                    name: name.clone(),
                    ip: "10.0.1.10".parse().unwrap()
                },
                aaaa()
            ])
        );
        dns_options(&mut e, &i, Some(false), None);
        assert_eq!(ask(&e, &va, &name, QueryKind::A), nodata());
        assert_eq!(ask(&e, &va, &name, QueryKind::Ptr), nodata());
        // Case-insensitive; another region's domain, or another ID, is NXDOMAIN.
        assert_eq!(
            ask(&e, &va, &name.to_uppercase(), QueryKind::Zone("AAAA")),
            Outcome::Records(vec![aaaa()])
        );
        let elsewhere = hostname::resource_name(WEST, &i.id);
        assert_eq!(
            ask(&e, &va, &elsewhere, QueryKind::Zone("AAAA")),
            nx("us-west-2.compute.internal"),
            "us-west-2 has no VPC: its domain is still vpcd's"
        );
        assert_eq!(
            ask(
                &e,
                &va,
                "i-0123456789abcdef0.ec2.internal",
                QueryKind::Zone("AAAA")
            ),
            nx(zone)
        );
        // IP names never answer AAAA, whatever the flags.
        assert_eq!(
            ask(
                &e,
                &va,
                "ip-10-0-1-10.ec2.internal",
                QueryKind::Zone("AAAA")
            ),
            nodata()
        );
        // Visible from a peer as IP names are (same region, RFC 1918), not from elsewhere.
        assert_eq!(ask(&e, &vc, &name, QueryKind::Zone("AAAA")), nx(zone));
        e.peer(&va, &vb, true);
        assert_eq!(
            ask(&e, &vb, &name, QueryKind::Zone("AAAA")),
            Outcome::Records(vec![aaaa()])
        );
        assert_eq!(ask(&e, &vc, &name, QueryKind::Zone("AAAA")), nx(zone));
        // Hostnames off: gone; terminated: gone.
        hostnames(&mut e, &va, false);
        assert_eq!(ask(&e, &va, &name, QueryKind::Zone("AAAA")), nx(zone));
        hostnames(&mut e, &va, true);
        e.set_state(&i.id, InstanceState::Terminated);
        assert_eq!(ask(&e, &va, &name, QueryKind::Zone("AAAA")), nx(zone));
    }

    #[test]
    fn the_hostname_type_changes_only_while_stopped() {
        let mut e = Env::new();
        let (_, s) = vpc(&mut e, A, EAST, "10.0.0.0/16", "10.0.1.0/24");
        let i = e.launch(&s, "10.0.1.10", false);
        let change = hostname::PrivateDnsChange {
            hostname_type: Some("resource-name".into()),
            ..Default::default()
        };
        let mut w = e.w.clone();
        let mut ids = vpc_model::ctx::SeqIds::default();
        let limits = vpc_model::Limits::default();
        let mut ctx = vpc_model::Ctx {
            account: A.into(),
            region: EAST.into(),
            now: vpc_model::Timestamp::default(),
            ids: &mut ids,
            limits: &limits,
            zones: &[],
        };
        let err = hostname::modify_instance(&mut w, &mut ctx, &i.id, &change).unwrap_err();
        assert_eq!(err.code, "IncorrectInstanceState");
        e.set_state(&i.id, InstanceState::Stopped);
        e.run(A, EAST, |w, c| {
            hostname::modify_instance(w, c, &i.id, &change)
        });
        let inst = e.w.get::<Instance>(&i.id).unwrap();
        assert_eq!(
            hostname::private_dns_name_of(&e.w, inst),
            hostname::resource_name(EAST, &i.id)
        );
    }
}
