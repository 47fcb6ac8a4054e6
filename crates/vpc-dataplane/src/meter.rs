//! Data-transfer metering from kernel counters (`docs/metering.md`).
//!
//! Each VPC router gets its own small table, `table inet vpcd_meter`, beside
//! the filter table `vpcd`: a `forward` chain at priority `filter + 10`
//! (so it sees only what the filter let through) that sends traffic on a
//! peering link to a chain per peering and direction, where one rule per
//! (own zone, peer zone) pair bumps a named counter, and counts internet
//! gateway and NAT gateway traffic with one named counter each.
//!
//! The table is separate so that the filter table can be replaced as a whole
//! (which it is, on every change) without resetting the counters; the meter
//! itself updates its table in place: rules are flushed and re-added, named
//! counters are added once and deleted only after their last value was read.
//!
//! [`plan`] is pure (World → the table every router should hold, with what
//! each counter measures as a [`UsageKey`]). [`Meter::poll`] reads the
//! counters, turns their growth since the last recorded value (the
//! *baseline*) into hourly [`Usage`], and brings the tables up to date. The
//! caller persists the usage and the new baselines together and then calls
//! [`Meter::persisted`]; a restart resumes from the stored baselines, so
//! traffic counted by the kernel while vpcd was down is not lost either.

use crate::error::CommandError;
use crate::kernel::Runner;
use crate::names::{igw_link, is_safe, nat_link, peering_link, router_ns, short};
use crate::nft::{self, Rule};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nftables::expr::MetaKey;
use nftables::schema::{self, FlushObject, NfCmd, NfListObject, NfObject, Nftables};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use vpc_model::usage::{hour_of, TransferKind, Usage, UsageKey};
use vpc_model::{ops, InternetGateway, NatGateway, Peering, Subnet, Timestamp, Vpc, World};

/// The meter's table in every router namespace (family `inet`).
pub const TABLE: &str = "vpcd_meter";

/// A counter: (namespace, counter name).
pub type CounterId = (String, String);
/// A counter's value: (bytes, packets).
pub type CounterValue = (u64, u64);

/// What one router's meter table should hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeterPlan {
    /// Named counters and what each measures.
    pub counters: BTreeMap<String, UsageKey>,
    /// Regular chains (one per peering and direction) and their rules.
    pub chains: BTreeMap<String, Vec<Rule>>,
    /// The rules of the base `forward` chain.
    pub dispatch: Vec<Rule>,
}

/// A VPC's subnet blocks, by zone.
type Zones = BTreeMap<String, (Vec<Ipv4Net>, Vec<Ipv6Net>)>;

fn zones_of(w: &World, vpc_id: &str) -> Zones {
    let mut out: Zones = BTreeMap::new();
    for s in w.iter::<Subnet>().filter(|s| s.vpc_id == vpc_id) {
        let e = out.entry(s.az.clone()).or_default();
        e.0.extend(s.cidr);
        e.1.extend(
            s.ipv6
                .iter()
                .filter(|a| a.state == "associated")
                .map(|a| a.cidr),
        );
    }
    out
}

/// A zone name as it may appear in an nft object name.
fn ident(az: &str) -> String {
    az.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `HEADER saddr { … } HEADER daddr { … } counter name "COUNTER" return`.
fn pair_rule<N: Into<IpNet> + Copy>(
    header: &'static str,
    from: &[N],
    to: &[N],
    counter: &str,
) -> Rule {
    let nets = |ns: &[N]| ns.iter().map(|n| (*n).into()).collect::<Vec<IpNet>>();
    vec![
        nft::in_prefixes(header, "saddr", &nets(from)),
        nft::in_prefixes(header, "daddr", &nets(to)),
        nft::named_counter(counter),
        Statement::Return(None),
    ]
}

/// The meter table of every VPC's router, keyed by namespace (one host).
pub fn plan(w: &World, tag: &str) -> BTreeMap<String, MeterPlan> {
    plan_for(w, tag, false)
}

/// The meter table of every VPC's router; `cross_host` for a host of a
/// cluster (`docs/cluster.md`), whose routers reach the VPC's instances on
/// other hosts over VXLAN links.
///
/// A peering is crossed on the sender's host, where both VPCs' routers
/// are (every host has every router), so `peering-out` is counted there as
/// on one host, once. The receiver's ingress rules, though, are enforced by
/// its router on the destination instance's host: `peering-in` is counted
/// on the peering link only for packets that stay on this host, and for
/// the others when they arrive over the VPC's VXLAN link on the
/// destination's host, from the peer's subnets, after that router's filter
/// let them in. So each byte is counted once per side, and what a receiver
/// refuses is not counted, as on one host.
pub fn plan_for(w: &World, tag: &str, cross_host: bool) -> BTreeMap<String, MeterPlan> {
    let mut out: BTreeMap<String, MeterPlan> = BTreeMap::new();
    let mut zones: BTreeMap<String, Zones> = BTreeMap::new();
    let mut zones_for = |vpc: &str| {
        zones
            .entry(vpc.to_string())
            .or_insert_with(|| zones_of(w, vpc))
            .clone()
    };
    for p in w.iter::<Peering>() {
        if !ops::peering::is_realized(w, p)
            || !is_safe(&p.id)
            || !is_safe(&p.requester.vpc_id)
            || !is_safe(&p.accepter.vpc_id)
        {
            continue;
        }
        for (own, peer) in [(&p.requester, &p.accepter), (&p.accepter, &p.requester)] {
            let Some(vpc) = w.get::<Vpc>(&own.vpc_id) else {
                continue;
            };
            let mine = zones_for(&own.vpc_id);
            let theirs = zones_for(&peer.vpc_id);
            let m = out.entry(router_ns(tag, &own.vpc_id)).or_default();
            let link = peering_link(&p.id);
            let s = short(&p.id);
            for (dir, kind, hook) in [
                ("out", TransferKind::PeeringOut, MetaKey::Oifname),
                ("in", TransferKind::PeeringIn, MetaKey::Iifname),
            ] {
                let chain = format!("pcx_{s}_{dir}");
                let mut rules = Vec::new();
                for (oaz, (o4, o6)) in &mine {
                    for (paz, (p4, p6)) in &theirs {
                        let counter = format!("pcx_{s}_{dir}_{}_{}", ident(oaz), ident(paz));
                        // Out: from our zone to theirs; in: from theirs to ours.
                        let (s4, d4, s6, d6) = if kind == TransferKind::PeeringOut {
                            (o4, p4, o6, p6)
                        } else {
                            (p4, o4, p6, o6)
                        };
                        if !s4.is_empty() && !d4.is_empty() {
                            rules.push(pair_rule("ip", s4, d4, &counter));
                        }
                        if !s6.is_empty() && !d6.is_empty() {
                            rules.push(pair_rule("ip6", s6, d6, &counter));
                        }
                        m.counters.insert(
                            counter,
                            UsageKey {
                                account: vpc.meta.owner.clone(),
                                region: vpc.meta.region.clone(),
                                vpc_id: own.vpc_id.clone(),
                                resource_id: p.id.clone(),
                                kind,
                                az: oaz.clone(),
                                peer_region: peer.region.clone(),
                                peer_az: paz.clone(),
                            },
                        );
                    }
                }
                let jump = || {
                    Statement::Jump(nftables::stmt::JumpTarget {
                        target: Cow::Owned(chain.clone()),
                    })
                };
                if cross_host && kind == TransferKind::PeeringIn {
                    // Across hosts the receiver's router on the instance's
                    // host takes the ingress decision: count there, what
                    // arrives on the VXLAN link and its filter let through,
                    // and here only what stays on this host.
                    let vxlan = crate::placement::vxlan_link(&own.vpc_id);
                    m.dispatch.push(vec![
                        nft::interface(hook, &link),
                        nft::interface_ne(MetaKey::Oifname, &vxlan),
                        jump(),
                    ]);
                    m.dispatch
                        .push(vec![nft::interface(MetaKey::Iifname, &vxlan), jump()]);
                } else {
                    m.dispatch.push(vec![nft::interface(hook, &link), jump()]);
                }
                m.chains.insert(chain, rules);
            }
        }
    }
    for g in w.iter::<InternetGateway>() {
        let Some(vpc) = g.vpc_id.as_deref().and_then(|v| w.get::<Vpc>(v)) else {
            continue;
        };
        if !is_safe(&g.meta.id) || !is_safe(&vpc.meta.id) {
            continue;
        }
        let m = out.entry(router_ns(tag, &vpc.meta.id)).or_default();
        let link = igw_link(&g.meta.id);
        let s = short(&g.meta.id);
        for (dir, kind, hook) in [
            ("out", TransferKind::InternetOut, MetaKey::Oifname),
            ("in", TransferKind::InternetIn, MetaKey::Iifname),
        ] {
            let counter = format!("igw_{s}_{dir}");
            m.dispatch.push(vec![
                nft::interface(hook, &link),
                nft::named_counter(&counter),
            ]);
            m.counters
                .insert(counter, gateway_key(vpc, &g.meta.id, kind));
        }
    }
    for n in w.iter::<NatGateway>() {
        let Some(vpc) = w.get::<Vpc>(&n.vpc_id) else {
            continue;
        };
        if !ops::nat::is_realized(w, n) || !is_safe(&n.meta.id) || !is_safe(&n.vpc_id) {
            continue;
        }
        let m = out.entry(router_ns(tag, &n.vpc_id)).or_default();
        let counter = format!("nat_{}", short(&n.meta.id));
        // Every byte the gateway handles leaves the router towards it once:
        // requests on their way out, replies on their way back.
        m.dispatch.push(vec![
            nft::interface(MetaKey::Oifname, &nat_link(&n.meta.id)),
            nft::named_counter(&counter),
        ]);
        m.counters.insert(
            counter,
            gateway_key(vpc, &n.meta.id, TransferKind::NatProcessed),
        );
    }
    out
}

fn gateway_key(vpc: &Vpc, resource: &str, kind: TransferKind) -> UsageKey {
    UsageKey {
        account: vpc.meta.owner.clone(),
        region: vpc.meta.region.clone(),
        vpc_id: vpc.meta.id.clone(),
        resource_id: resource.to_string(),
        kind,
        az: String::new(),
        peer_region: String::new(),
        peer_az: String::new(),
    }
}

/// What a router's meter table holds in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterState {
    pub exists: bool,
    pub counters: BTreeMap<String, CounterValue>,
    /// Regular chains (not `forward`).
    pub chains: BTreeSet<String>,
}

/// A named counter as nft lists it. The `nftables` crate's `Counter`
/// object holds its values in 32 bits, which a busy peering passes within
/// seconds (4 GiB), so this one schema node is declared here.
#[derive(Debug, Deserialize)]
struct ListedCounter {
    name: String,
    #[serde(default)]
    packets: u64,
    #[serde(default)]
    bytes: u64,
}

/// Reads `nft -j list table inet vpcd_meter`: counters into
/// [`ListedCounter`], every other object into the crate's schema.
pub fn parse_listing(json: &str) -> Result<MeterState, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or("no nftables array")?;
    let mut st = MeterState::default();
    for item in items {
        if let Some(c) = item.get("counter") {
            let c = ListedCounter::deserialize(c).map_err(|e| format!("counter: {e}"))?;
            st.counters.insert(c.name, (c.bytes, c.packets));
            continue;
        }
        if item.get("metainfo").is_some() {
            continue;
        }
        let object = NfListObject::deserialize(item).map_err(|e| e.to_string())?;
        match object {
            NfListObject::Table(_) => st.exists = true,
            NfListObject::Chain(c) if c.name != "forward" => {
                st.chains.insert(c.name.into_owned());
            }
            _ => {}
        }
    }
    Ok(st)
}

fn table() -> NfListObject<'static> {
    NfListObject::Table(schema::Table {
        family: NfFamily::INet,
        name: Cow::Borrowed(TABLE),
        handle: None,
    })
}

fn chain(name: &str, base: bool) -> schema::Chain<'static> {
    schema::Chain {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(name.to_string()),
        newname: None,
        handle: None,
        _type: base.then_some(NfChainType::Filter),
        hook: base.then_some(NfHook::Forward),
        // After the filter (priority 0): it sees only what the filter let through.
        prio: base.then_some(10),
        dev: None,
        policy: base.then_some(NfChainPolicy::Accept),
    }
}

fn counter(name: &str) -> NfListObject<'static> {
    NfListObject::Counter(schema::Counter {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(name.to_string()),
        handle: None,
        packets: None,
        bytes: None,
    })
}

fn rule(chain: &str, expr: &Rule) -> NfListObject<'static> {
    NfListObject::Rule(schema::Rule {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE),
        chain: Cow::Owned(chain.to_string()),
        expr: Cow::Owned(expr.clone()),
        handle: None,
        index: None,
        comment: None,
    })
}

/// The nft transaction that turns `st` into `plan` without touching the
/// value of any counter both keep. An empty plan removes the table.
pub fn commands(st: &MeterState, plan: &MeterPlan) -> Vec<NfObject<'static>> {
    let add = |o| NfObject::CmdObject(NfCmd::Add(o));
    let mut out = Vec::new();
    if plan.counters.is_empty() && plan.dispatch.is_empty() {
        if st.exists {
            out.push(NfObject::CmdObject(NfCmd::Delete(table())));
        }
        return out;
    }
    out.push(add(table()));
    out.push(add(NfListObject::Chain(chain("forward", true))));
    out.push(NfObject::CmdObject(NfCmd::Flush(FlushObject::Chain(
        chain("forward", false),
    ))));
    for c in &st.chains {
        out.push(NfObject::CmdObject(NfCmd::Flush(FlushObject::Chain(
            chain(c, false),
        ))));
        if !plan.chains.contains_key(c) {
            out.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Chain(
                chain(c, false),
            ))));
        }
    }
    for c in plan
        .counters
        .keys()
        .filter(|c| !st.counters.contains_key(*c))
    {
        out.push(add(counter(c)));
    }
    for (c, rules) in &plan.chains {
        if !st.chains.contains(c) {
            out.push(add(NfListObject::Chain(chain(c, false))));
        }
        for r in rules {
            out.push(add(rule(c, r)));
        }
    }
    for r in &plan.dispatch {
        out.push(add(rule("forward", r)));
    }
    for c in st
        .counters
        .keys()
        .filter(|c| !plan.counters.contains_key(*c))
    {
        out.push(NfObject::CmdObject(NfCmd::Delete(counter(c))));
    }
    out
}

/// Reads a router's meter table; a missing table is an empty state.
pub fn read(run: &Runner, ns: &str) -> Result<MeterState, CommandError> {
    let nft = run.tools().nft.clone();
    match run.exec(ns, &nft, &["-j", "list", "table", "inet", TABLE], None) {
        Ok(out) => parse_listing(&out).map_err(|detail| CommandError::Output {
            cmd: format!("nft -j list table inet {TABLE} in {ns}"),
            detail,
        }),
        Err(CommandError::Failed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            Ok(MeterState::default())
        }
        Err(e) => Err(e),
    }
}

/// What one poll found: usage to add and counter values to record, together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Poll {
    pub usage: Vec<Usage>,
    /// The value of every counter read, the new baselines.
    pub baselines: BTreeMap<CounterId, CounterValue>,
    /// Counters that are gone (deleted, or their namespace is).
    pub forget: Vec<CounterId>,
}

/// The meter of one data directory: the tables it applied, what each
/// counter measures, and the last recorded counter values.
#[derive(Debug)]
pub struct Meter {
    run: Runner,
    tag: String,
    applied: BTreeMap<String, MeterPlan>,
    baselines: BTreeMap<CounterId, CounterValue>,
    /// The plan of the World last polled, and that World's generation.
    desired: Option<(u64, BTreeMap<String, MeterPlan>)>,
    /// Whether this is a cluster host's meter ([`plan_for`]).
    cross_host: bool,
}

impl Meter {
    /// A meter resuming from recorded baselines (empty on a new data directory).
    pub fn new(
        tag: String,
        baselines: BTreeMap<CounterId, CounterValue>,
    ) -> Result<Meter, crate::DataplaneError> {
        let tools = crate::kernel::Tools::find()?;
        Ok(Meter {
            run: Runner::new(tools),
            tag,
            applied: BTreeMap::new(),
            baselines,
            desired: None,
            cross_host: false,
        })
    }

    /// The meter of a cluster host ([`plan_for`] with `cross_host`).
    pub fn across_hosts(mut self) -> Meter {
        self.cross_host = true;
        self
    }

    /// Brings every router's meter table up to date with `w` (published as
    /// generation `generation`; it is planned once per generation); with
    /// `read_all`, first reads every counter and returns its growth as usage
    /// in the hour of `now`. A table about to change is always read first,
    /// so no counted byte is dropped with a counter. Cheap when nothing
    /// changed, so callers may poll often: a router namespace the data plane
    /// creates later gets its table on the first poll that sees it.
    pub fn poll(&mut self, w: &World, generation: u64, now: Timestamp, read_all: bool) -> Poll {
        if self.desired.as_ref().is_none_or(|(g, _)| *g != generation) {
            self.desired = Some((generation, plan_for(w, &self.tag, self.cross_host)));
        }
        let desired = match &self.desired {
            Some((_, d)) => d.clone(),
            None => BTreeMap::new(),
        };
        let names: BTreeSet<String> = desired.keys().chain(self.applied.keys()).cloned().collect();
        let existing = self.run.netns_existing(&names);
        let mut poll = Poll::default();
        let empty = MeterPlan::default();
        for ns in &names {
            let want = desired.get(ns).unwrap_or(&empty);
            let had = self.applied.get(ns);
            if !existing.contains(ns) {
                self.applied.remove(ns);
                poll.forget
                    .extend(self.baselines.keys().filter(|(n, _)| n == ns).cloned());
                continue;
            }
            if !read_all && had == Some(want) {
                continue;
            }
            let st = match read(&self.run, ns) {
                Ok(st) => st,
                Err(e) => {
                    tracing::warn!(%ns, error = %e, "cannot read the meter counters");
                    continue;
                }
            };
            for (name, value) in &st.counters {
                let id = (ns.clone(), name.clone());
                let key = had
                    .and_then(|h| h.counters.get(name))
                    .or_else(|| want.counters.get(name));
                let Some(key) = key else {
                    continue;
                };
                let base = self.baselines.get(&id).copied().unwrap_or((0, 0));
                // A counter below its baseline was recreated (its namespace
                // was, while vpcd was away): all of it is new.
                let (bytes, packets) = if value.0 >= base.0 && value.1 >= base.1 {
                    (value.0 - base.0, value.1 - base.1)
                } else {
                    *value
                };
                if bytes > 0 || packets > 0 {
                    poll.usage.push(Usage {
                        key: key.clone(),
                        hour: hour_of(now),
                        bytes,
                        packets,
                    });
                }
                poll.baselines.insert(id, *value);
            }
            if had != Some(want) || !st.exists {
                let objects = commands(&st, want);
                if !objects.is_empty() {
                    let document = Nftables {
                        objects: Cow::Owned(objects),
                    };
                    if let Err(e) = self.run.nft_json(ns, &document) {
                        tracing::warn!(%ns, error = %e, "cannot apply the meter table");
                        continue;
                    }
                }
                for name in st
                    .counters
                    .keys()
                    .filter(|c| !want.counters.contains_key(*c))
                {
                    let id = (ns.clone(), name.clone());
                    poll.baselines.remove(&id);
                    poll.forget.push(id);
                }
                self.applied.insert(ns.clone(), want.clone());
            }
        }
        poll
    }

    /// The last recorded value of a counter.
    pub fn baseline(&self, id: &CounterId) -> Option<CounterValue> {
        self.baselines.get(id).copied()
    }

    /// Adopts a poll's baselines once the store holds them with its usage.
    pub fn persisted(&mut self, poll: &Poll) {
        for id in &poll.forget {
            self.baselines.remove(id);
        }
        self.baselines
            .extend(poll.baselines.iter().map(|(k, v)| (k.clone(), *v)));
    }
}

#[cfg(test)]
mod tests;
