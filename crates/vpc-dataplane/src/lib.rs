//! vpcd's data plane: realises the published [`World`] in the Linux kernel
//! with network namespaces, veth pairs, policy routing and nftables, as
//! `docs/dataplane.md` describes.
//!
//! * [`plan`] computes the whole desired kernel state, purely.
//! * [`Dataplane::reconcile`] re-plans only the namespaces a change can
//!   affect ([`affected`]), compares them with what it last applied and
//!   applies only what changed; the first call after startup plans and
//!   applies everything idempotently, which is how a restart adopts the
//!   existing kernel state without interrupting traffic. A full re-plan runs
//!   every [`FULL_PLAN_EVERY`] as a safety pass.
//! * [`teardown`] removes every kernel object of a data directory.
//!
//! This crate is the only one that touches the kernel's networking: links,
//! addresses, routes and policy rules over rtnetlink ([`netlink`], sockets
//! made inside each namespace), sysctls through a private procfs seen from
//! inside the namespace ([`netns`]),
//! namespaces as bind mounts under `/run/netns` ([`netns`]), nftables with
//! one `nft -f` transaction per changed namespace (read back with
//! `nft -j list ruleset`), and `conntrack -D`. It never touches the host
//! namespace: every veth is created directly inside namespaces it created.
//!
//! Level-triggered, also against the kernel: every [`FULL_PLAN_EVERY`] a
//! full pass compares every namespace with what the kernel holds (not only
//! with what it applied) and repairs the difference, so a route, rule,
//! address, link, sysctl, nft chain, rule or set element, or a whole
//! namespace, changed by hand comes back.

pub mod affected;
pub mod backbone;
pub mod error;
pub mod flow_log;
pub mod kernel;
pub mod link;
pub mod meter;
pub mod names;
mod netlink;
pub mod netns;
mod nft;
mod nft_state;
pub mod offload;
pub mod placement;
pub mod plan;
pub mod resolv;
#[cfg(test)]
mod testkit;
pub mod underlay;

pub use backbone::Backbone;
pub use error::{ApplyError, CommandError, DataplaneError, StartError, TeardownError};
pub use kernel::{Runner, Tools};
pub use link::{PeeringLinkType, Veth};
pub use plan::{plan, plan_scope, NsPlan, NsRole, Plan, Scope};

use kernel::Parts;
use plan::LinkCreate;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use vpc_model::{Instance, World};

/// What one reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Namespaces created.
    pub created: Vec<String>,
    /// Existing namespaces whose contents were brought to the plan.
    pub updated: Vec<String>,
    /// Namespaces deleted.
    pub deleted: Vec<String>,
    /// Kernel changes issued (netlink requests, namespaces and links made or
    /// removed, nft transactions, sysctl writes, conntrack deletions). Zero
    /// means the kernel was left exactly as it was.
    pub kernel_ops: usize,
    pub duration: Duration,
}

impl Report {
    /// True when nothing was created, updated or deleted.
    pub fn is_noop(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.deleted.is_empty()
    }
}

/// How [`Dataplane::reconcile`] computes the desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Planning {
    /// Re-plan only the namespaces a change between the World last planned
    /// and the new one can affect, keeping the others' plans; re-plan the
    /// whole World every [`FULL_PLAN_EVERY`] and warn if that differs.
    #[default]
    Incremental,
    /// Re-plan the whole World on every pass (the baseline).
    Full,
}

/// How often the incremental planner re-plans the whole World as a safety pass.
pub const FULL_PLAN_EVERY: Duration = Duration::from_secs(30);

/// The desired state last computed, and what it was computed from.
#[derive(Debug)]
struct Desired {
    world: World,
    namespaces: BTreeMap<String, NsPlan>,
    /// When the whole World was last planned.
    full_at: Instant,
}

/// Which namespaces' plans may differ from the previous pass, with their previous plans.
#[derive(Debug)]
enum Changed {
    /// Any of them: the previous plan of every namespace (none on a first pass).
    All(BTreeMap<String, NsPlan>),
    /// Only these; the previous plans of those that had one.
    Only {
        names: BTreeSet<String>,
        previous: BTreeMap<String, NsPlan>,
    },
}

/// One pass's plan: every namespace's, and what it replaced.
#[derive(Debug)]
struct Pass {
    namespaces: BTreeMap<String, NsPlan>,
    warnings: Vec<String>,
    changed: Changed,
    /// When the whole World was last planned (now, for a full pass).
    full_at: Instant,
    full: bool,
}

impl Pass {
    /// What the namespace was planned as in the previous pass.
    fn previous(&self, name: &str) -> Option<&NsPlan> {
        match &self.changed {
            Changed::All(prev) => prev.get(name),
            Changed::Only { names, previous } if names.contains(name) => previous.get(name),
            Changed::Only { .. } => self.namespaces.get(name),
        }
    }
}

/// The namespaces whose plans differ between two plans.
fn differing(a: &BTreeMap<String, NsPlan>, b: &BTreeMap<String, NsPlan>) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .cloned()
        .collect()
}

/// The data plane of one data directory.
#[derive(Debug)]
pub struct Dataplane {
    tag: String,
    run: Runner,
    link_type: Box<dyn PeeringLinkType>,
    planning: Planning,
    full_plan_every: Duration,
    /// The plan of every namespace as of the last reconcile; None before the first.
    desired: Option<Desired>,
    /// Namespaces that failed to converge last time (they are converged in full next time).
    unconverged: BTreeSet<String>,
    /// Safety passes whose full plan differed from the incremental one.
    plan_mismatches: u64,
    /// Instance namespaces that belong to this data directory.
    instances: BTreeSet<String>,
    /// `i-…` namespaces seen to belong to someone else (checked once).
    foreign: BTreeSet<String>,
    /// When every namespace was last compared with the kernel (drift repair).
    verified_at: Instant,
    /// Which host this is among several sharing the World (`vpcd agent`);
    /// None: one host realizes everything.
    placement: Option<placement::Placement>,
    /// The next pass plans the whole World (the placement changed).
    replan_all: bool,
}

impl Dataplane {
    /// Checks that we are root and that the tools exist.
    pub fn new(tag: String) -> Result<Self, DataplaneError> {
        if !names::is_valid_tag(&tag) {
            return Err(StartError::BadTag(tag).into());
        }
        let uid = kernel::euid()?;
        if uid != 0 {
            return Err(StartError::NotRoot(uid).into());
        }
        let tools = Tools::find()?;
        Ok(Dataplane {
            tag,
            run: Runner::new(tools),
            link_type: Box::new(Veth),
            planning: Planning::default(),
            full_plan_every: FULL_PLAN_EVERY,
            desired: None,
            unconverged: BTreeSet::new(),
            plan_mismatches: 0,
            instances: BTreeSet::new(),
            foreign: BTreeSet::new(),
            verified_at: Instant::now(),
            placement: None,
            replan_all: false,
        })
    }

    /// Realizes only this host's share of the World (`placement`); a new
    /// placement takes effect on the next pass, which plans in full.
    pub fn set_placement(&mut self, placement: Option<placement::Placement>) {
        if self.placement != placement {
            self.placement = placement;
            // Plan everything again (and diff against what was applied).
            self.replan_all = true;
        }
    }

    /// The placement [`set_placement`](Self::set_placement) gave.
    pub fn placement(&self) -> Option<&placement::Placement> {
        self.placement.as_ref()
    }

    /// One plan of `world` for this host: the whole of it, or this host's
    /// share under a placement.
    fn plan_for_host(&self, world: &World, scope: Option<Option<&Scope>>) -> Plan {
        let mut p = match scope {
            None => plan::plan(world, &self.tag),
            Some(scope) => plan::plan_scope(world, &self.tag, scope),
        };
        if let Some(placement) = &self.placement {
            let warnings = placement.localize(world, &mut p.namespaces);
            p.warnings.extend(warnings);
        }
        p
    }

    /// Replaces the peering link type (a veth by default).
    pub fn with_peering_link(mut self, link_type: Box<dyn PeeringLinkType>) -> Self {
        self.link_type = link_type;
        self
    }

    /// Chooses incremental (the default) or full re-planning on every pass.
    pub fn with_planning(mut self, planning: Planning) -> Self {
        self.planning = planning;
        self
    }

    /// Sets how often the incremental planner re-plans the whole World and
    /// compares (every [`FULL_PLAN_EVERY`] by default).
    pub fn with_full_plan_every(mut self, every: Duration) -> Self {
        self.full_plan_every = every;
        self
    }

    /// The kernel objects of the plan last reconciled, by kind (namespaces
    /// by role, links, addresses, routes, policy rules, nft tables), for the
    /// metrics.
    pub fn object_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out: BTreeMap<&'static str, usize> = BTreeMap::new();
        let Some(d) = &self.desired else {
            return out;
        };
        for ns in d.namespaces.values() {
            let role = match ns.role {
                NsRole::Router { .. } => "router_namespaces",
                NsRole::Instance { .. } => "instance_namespaces",
                NsRole::NatGateway { .. } => "nat_namespaces",
                NsRole::Inet => "internet_namespaces",
            };
            *out.entry(role).or_default() += 1;
            *out.entry("links").or_default() += ns.links.len();
            *out.entry("addresses").or_default() += ns.addrs.len();
            *out.entry("routes").or_default() += ns.routes.len();
            *out.entry("rules").or_default() += ns.rules.len();
            *out.entry("nft_tables").or_default() += ns.nft.len();
        }
        out
    }

    /// How many safety passes found the incremental plan differing from the
    /// full one (each is logged at warn level; anything but 0 is a bug).
    pub fn plan_mismatches(&self) -> u64 {
        self.plan_mismatches
    }

    /// How many nft rulesets the periodic passes listed to compare them
    /// with the plan (those with no nft transaction since their last
    /// matching listing, or since vpcd's own, are not listed).
    pub fn nft_listings(&self) -> usize {
        self.run.nft_listings()
    }

    /// Turns the bulk-TCP fast path (`offload`: BIG TCP on every veth) on
    /// (the default) or off; the next full pass converges existing links.
    pub fn with_big_tcp(mut self, on: bool) -> Self {
        self.run.set_big_tcp(on);
        self
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Declares instance IDs that belong to this data directory (for example
    /// every instance the store has ever held), so that their namespaces are
    /// deleted when the World no longer plans them, even after a restart.
    pub fn claim_instances<I: IntoIterator<Item = String>>(&mut self, ids: I) {
        self.instances
            .extend(ids.into_iter().filter(|i| names::is_instance_ns(i)));
    }

    /// Forgets what was applied, so the next reconcile converges every
    /// namespace against the kernel again (a periodic full resync).
    pub fn forget(&mut self) {
        self.desired = None;
    }

    /// The plan of every namespace as of the last reconcile (None before
    /// the first), including those that failed to converge.
    pub fn applied(&self) -> Option<&BTreeMap<String, NsPlan>> {
        self.desired.as_ref().map(|d| &d.namespaces)
    }

    /// Plans the World: in full on a first pass, in [`Planning::Full`], on a
    /// safety pass or when a change affects most namespaces; otherwise only
    /// the namespaces the change can affect, keeping the others' plans.
    fn plan_pass(&mut self, world: &World) -> Pass {
        let replan_all = std::mem::take(&mut self.replan_all);
        let prev = self.desired.take();
        let full = |previous| {
            let p = self.plan_for_host(world, None);
            Pass {
                namespaces: p.namespaces,
                warnings: p.warnings,
                changed: Changed::All(previous),
                full_at: Instant::now(),
                full: true,
            }
        };
        let Some(prev) = prev else {
            return full(BTreeMap::new());
        };
        if self.planning == Planning::Full || replan_all {
            return full(prev.namespaces);
        }
        let full_at = prev.full_at;
        let affected = affected::affected(&prev.world, world);
        let names = affected.scope.namespaces(&self.tag);
        let safety = full_at.elapsed() >= self.full_plan_every;
        if !safety && names.len() * 2 > prev.namespaces.len().max(16) {
            return full(prev.namespaces);
        }
        let partial = self.plan_for_host(world, Some(Some(&affected.scope)));
        if safety {
            let mut incremental = prev.namespaces.clone();
            for n in &names {
                incremental.remove(n);
            }
            incremental.extend(partial.namespaces);
            let pass = full(prev.namespaces);
            let differ = differing(&incremental, &pass.namespaces);
            if !differ.is_empty() {
                self.plan_mismatches += 1;
                tracing::warn!(
                    tag = %self.tag,
                    namespaces = ?differ,
                    "the full plan differs from the incremental one (a missed dependency: a bug); converging to the full plan"
                );
            }
            return pass;
        }
        let mut namespaces = prev.namespaces;
        let mut previous = BTreeMap::new();
        for n in &names {
            if let Some(old) = namespaces.remove(n) {
                previous.insert(n.clone(), old);
            }
        }
        namespaces.extend(partial.namespaces);
        Pass {
            namespaces,
            warnings: partial.warnings,
            changed: Changed::Only { names, previous },
            full_at,
            full: false,
        }
    }

    /// Brings the kernel to the World's desired state.
    ///
    /// Only namespaces whose plan changed since the last call are touched
    /// (all of them on the first call, idempotently). A namespace that fails
    /// is reported and converged in full next time; the others are applied.
    pub fn reconcile(&mut self, world: &World) -> Result<Report, DataplaneError> {
        let start = Instant::now();
        let ops0 = self.run.ops();
        let had_plan = self.desired.is_some();
        let pass = self.plan_pass(world);
        // Drift repair: a full pass, once every `full_plan_every`, compares
        // every namespace with the kernel, not only with what it applied.
        let verify = pass.full && had_plan && self.verified_at.elapsed() >= self.full_plan_every;
        if verify {
            self.verified_at = Instant::now();
        }
        let planned = start.elapsed();
        for w in &pass.warnings {
            tracing::warn!(tag = %self.tag, "{w}");
        }
        let desired = &pass.namespaces;
        let unconverged = std::mem::take(&mut self.unconverged);
        let previous = |name: &str| {
            if unconverged.contains(name) {
                None
            } else {
                pass.previous(name)
            }
        };
        // The namespaces whose plan may differ, or that did not converge last
        // time; only these are compared, created or deleted. After a full
        // plan that is every namespace there is, planned or in the kernel.
        let (visit, existing): (Vec<&String>, BTreeSet<String>) = match &pass.changed {
            Changed::All(_) => (
                desired.keys().collect(),
                self.run.netns_list().map_err(ApplyError::List)?,
            ),
            Changed::Only { names, .. } => {
                let candidates: BTreeSet<&String> = names.iter().chain(&unconverged).collect();
                let visit = candidates
                    .iter()
                    .filter_map(|n| desired.get_key_value(*n).map(|(k, _)| k))
                    .collect();
                (visit, self.run.netns_existing(candidates))
            }
        };
        for name in &visit {
            if matches!(desired[*name].role, NsRole::Instance { .. }) {
                self.instances.insert(name.to_string());
            }
        }
        let mut report = Report::default();
        let mut phases = Phases::new();
        let mut failed: BTreeMap<String, CommandError> = BTreeMap::new();

        // 1. Namespaces that are ours and no longer planned. An instance
        // namespace nobody knows of is ours when its `lo` carries our marker.
        let unknown: Vec<&String> = existing
            .iter()
            .filter(|n| names::is_instance_ns(n) && !desired.contains_key(*n))
            .filter(|n| !self.instances.contains(*n) && !self.foreign.contains(*n))
            .filter(|n| world.get::<Instance>(n).is_none())
            .collect();
        let marks = par_map(&unknown, |n| is_marked(&self.run, n, &self.tag));
        for (n, mark) in unknown.into_iter().zip(marks) {
            match mark {
                Some(true) => {
                    self.instances.insert(n.clone());
                }
                Some(false) => {
                    self.foreign.insert(n.clone());
                }
                None => {}
            }
        }
        let prefix = names::ns_prefix(&self.tag);
        let doomed: Vec<&String> = existing
            .iter()
            .filter(|name| !desired.contains_key(*name))
            .filter(|name| !backbone::is_backbone_ns(&self.tag, name))
            // Another host's instances share this machine in a lab: not ours.
            .filter(|name| {
                !names::is_instance_ns(name)
                    || self.instances.contains(*name)
                    || self
                        .placement
                        .as_ref()
                        .is_none_or(|p| p.is_local(world, name))
            })
            .filter(|name| {
                name.starts_with(&prefix)
                    || (names::is_instance_ns(name)
                        && (self.instances.contains(*name)
                            || world.get::<Instance>(name).is_some()))
            })
            .collect();
        let results = par_map(&doomed, |name| self.run.netns_del(name));
        for (name, r) in doomed.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    tracing::info!(ns = %name, "deleted namespace");
                    self.instances.remove(name);
                    report.deleted.push(name.clone());
                }
                Err(e) => {
                    failed.insert(name.clone(), e);
                }
            }
        }

        phases.end("delete");
        // The instances' resolver configuration (/etc/netns/<id>/resolv.conf),
        // there before their namespaces are.
        // Only the namespaces this pass visits: a VPC's DNS settings are
        // among the records that make its instances' namespaces affected.
        // On the workers: each is a few file-system calls, 2,000 of them at scale.
        let files = resolv::planned(world, visit.iter().map(|n| &desired[*n]));
        let results = par_map(&files, |(id, content)| resolv::write(id, content));
        for ((id, _), r) in files.iter().zip(results) {
            if let Err(e) = r {
                tracing::warn!(instance = %id, "cannot write its resolv.conf: {e}");
            }
        }

        phases.end("resolv");
        // 2. Planned namespaces that do not exist yet.
        let missing: Vec<&NsPlan> = visit
            .iter()
            .map(|n| &desired[*n])
            .filter(|ns| !existing.contains(&ns.name))
            .collect();
        // The sysctls from a second thread entering the namespace: writing
        // them from the thread that made it (before the bind mount) measured
        // twice as slow at 2,200 namespaces (docs/perf.md).
        let results = par_map(&missing, |ns| {
            self.run
                .netns_add(&ns.name)
                .and_then(|()| self.run.sysctl(&ns.name, &ns.sysctls))
        });
        let mut created: BTreeSet<String> = BTreeSet::new();
        for (ns, r) in missing.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    created.insert(ns.name.clone());
                }
                Err(e) => {
                    failed.insert(ns.name.clone(), e);
                }
            }
        }

        phases.end("namespaces");
        // 3. What to converge in each namespace. `verifying` holds those
        // that are compared with the kernel only (their plan did not change).
        let mut work: BTreeMap<String, Parts> = BTreeMap::new();
        let mut verifying: BTreeSet<String> = BTreeSet::new();
        for name in visit.iter().copied().chain(&created) {
            let ns = &desired[name];
            if failed.contains_key(name) {
                continue;
            }
            let parts = match previous(name) {
                Some(old) if !created.contains(name) => Parts::diff(old, ns),
                _ => Parts::all(),
            };
            if parts.any() {
                work.insert(name.clone(), parts);
            } else if verify {
                work.insert(name.clone(), Parts::all());
                verifying.insert(name.clone());
            }
        }
        // A new namespace's links are made from the other side; both ends converge.
        if !created.is_empty() {
            for (name, ns) in desired {
                for c in ns.links.values().filter_map(|l| l.create.as_ref()) {
                    let peer = c.peer_ns();
                    if created.contains(name) || created.contains(peer) {
                        for n in [name.as_str(), peer] {
                            if desired.contains_key(n) && !failed.contains_key(n) {
                                work.insert(n.to_string(), Parts::all());
                            }
                        }
                    }
                }
            }
        }

        // 4. Links: remove what is not planned (or must be re-made), then create what is missing.
        let linked: Vec<&NsPlan> = work
            .iter()
            .filter(|(_, p)| p.links)
            .map(|(n, _)| &desired[n])
            .collect();
        // A namespace made in this pass has nothing to remove, and one that
        // makes none of its links (an instance's, a NAT gateway's, the
        // internet's) has its unplanned ones removed by `configure`, on the
        // visit that dumps it anyway.
        let results = par_map(&linked, |ns| {
            if created.contains(&ns.name) || !kernel::makes_links(ns) {
                Ok(())
            } else {
                self.remove_links(ns, previous(&ns.name))
            }
        });
        for (ns, r) in linked.iter().zip(results) {
            if let Err(e) = r {
                failed.insert(ns.name.clone(), e);
            }
        }
        let linked: Vec<&NsPlan> = linked
            .into_iter()
            .filter(|ns| !failed.contains_key(&ns.name))
            .collect();
        let results = {
            let failed = &failed;
            let fresh = &created;
            par_map(&linked, |ns| self.create_links(ns, desired, failed, fresh))
        };
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for (ns, r) in linked.iter().zip(results) {
            match r {
                Ok(made) => touched.extend(made),
                Err(e) => {
                    failed.insert(ns.name.clone(), e);
                }
            }
        }
        for t in touched {
            if desired.contains_key(&t) && !failed.contains_key(&t) {
                verifying.remove(&t);
                work.insert(t, Parts::all());
            }
        }

        phases.end("links");
        // 5. Everything else.
        // A namespace made in this pass got its sysctls as it was made:
        // `configure` does not read them back (every read of a namespace's
        // `/proc/sys` costs a walk over every namespace's entries in the
        // kernel, docs/perf.md).
        let jobs: Vec<(&NsPlan, Parts, bool)> = work
            .iter()
            .filter(|(n, _)| !failed.contains_key(*n))
            .map(|(n, p)| {
                let sysctls = p.sysctls && !created.contains(n);
                (&desired[n], Parts { sysctls, ..*p }, verifying.contains(n))
            })
            .collect();
        let results = par_map(&jobs, |(ns, parts, verify)| {
            kernel::configure(&self.run, ns, *parts, *verify)
        });
        for ((ns, _, verify), r) in jobs.iter().zip(results) {
            match r {
                Ok(changes) => {
                    if *verify && changes > 0 {
                        tracing::info!(ns = %ns.name, changes, "repaired drift from the plan");
                    }
                    if !created.contains(&ns.name) && (!*verify || changes > 0) {
                        report.updated.push(ns.name.clone());
                    }
                }
                Err(e) => {
                    failed.insert(ns.name.clone(), e);
                }
            }
        }

        phases.end("configure");
        // 6. Conntrack entries of addresses that left a router (after its rules changed).
        let forget: Vec<(&str, Vec<std::net::IpAddr>)> = visit
            .iter()
            .map(|n| (n.as_str(), &desired[*n]))
            .filter(|(n, ns)| !failed.contains_key(*n) && matches!(ns.role, NsRole::Router { .. }))
            .filter_map(|(n, ns)| {
                let old = previous(n)?;
                let gone: Vec<_> = old.tracked.difference(&ns.tracked).copied().collect();
                (!gone.is_empty()).then_some((n, gone))
            })
            .collect();
        let results = par_map(&forget, |(ns, addrs)| {
            addrs
                .iter()
                .try_for_each(|a| self.run.conntrack_forget(ns, *a))
        });
        for ((ns, _), r) in forget.iter().zip(results) {
            if let Err(e) = r {
                failed.insert(ns.to_string(), e);
            }
        }

        phases.end("conntrack");
        report.created = created.into_iter().collect();
        report.kernel_ops = self.run.ops() - ops0;
        report.duration = start.elapsed();
        let replanned = match &pass.changed {
            Changed::All(_) => desired.len(),
            Changed::Only { names, .. } => names.len(),
        };
        self.unconverged = failed.keys().cloned().collect();
        let links: Vec<&plan::PeeringLinkSpec> = pass
            .namespaces
            .values()
            .flat_map(|ns| ns.links.values())
            .filter_map(|l| match &l.create {
                Some(LinkCreate::Peering(spec)) => Some(spec),
                _ => None,
            })
            .collect();
        self.link_type.converge(&self.run, &links);
        self.desired = Some(Desired {
            world: world.clone(),
            namespaces: pass.namespaces,
            full_at: pass.full_at,
        });
        if failed.is_empty() {
            tracing::debug!(
                created = report.created.len(),
                updated = report.updated.len(),
                deleted = report.deleted.len(),
                ops = report.kernel_ops,
                full_plan = pass.full,
                replanned,
                plan_us = planned.as_micros() as u64,
                us = report.duration.as_micros() as u64,
                phases = %phases,
                "reconciled"
            );
            Ok(report)
        } else {
            for (ns, e) in &failed {
                tracing::warn!(ns = %ns, "data plane: {e}");
            }
            Err(ApplyError::Namespaces(failed.into_iter().collect()).into())
        }
    }

    /// Deletes managed links that are not planned, and created links whose
    /// other end moved (they are made again).
    fn remove_links(&self, ns: &NsPlan, old: Option<&NsPlan>) -> Result<(), CommandError> {
        let links = self.run.links(&ns.name)?;
        for name in links.keys() {
            if !kernel::managed_link(&ns.role, name) {
                continue;
            }
            let moved = match (ns.links.get(name), old.and_then(|o| o.links.get(name))) {
                (Some(new), Some(old)) => new.create.is_some() && new.create != old.create,
                (Some(_), None) => false,
                (None, _) => true,
            };
            if moved {
                tracing::info!(ns = %ns.name, link = %name, "removing link");
                if name.starts_with("p-") {
                    self.link_type.delete(&self.run, &ns.name, name)?;
                } else {
                    self.run.delete_link(&ns.name, name)?;
                }
            }
        }
        Ok(())
    }

    /// Creates the links this namespace owns that are missing; returns the
    /// namespaces that got a new link end.
    fn create_links(
        &self,
        ns: &NsPlan,
        desired: &BTreeMap<String, NsPlan>,
        failed: &BTreeMap<String, CommandError>,
        created: &BTreeSet<String>,
    ) -> Result<Vec<String>, CommandError> {
        let fresh = created.contains(&ns.name);
        let owned: Vec<(&str, &LinkCreate)> = ns
            .links
            .values()
            .filter_map(|l| Some((l.name.as_str(), l.create.as_ref()?)))
            .collect();
        if owned.is_empty() {
            return Ok(Vec::new());
        }
        // A namespace made in this pass holds only `lo`.
        let links = if fresh {
            BTreeMap::new()
        } else {
            self.run.links(&ns.name)?
        };
        // An end whose other end belongs in a namespace made in this pass is
        // stale (that namespace was deleted, by hand for example, and the
        // kernel has not yet taken the pair with it): it is made again.
        for (name, c) in &owned {
            if links.contains_key(*name) && created.contains(c.peer_ns()) {
                tracing::info!(ns = %ns.name, link = %name, "removing a link whose other end is gone");
                if name.starts_with("p-") {
                    self.link_type.delete(&self.run, &ns.name, name)?;
                } else {
                    self.run.delete_link(&ns.name, name)?;
                }
            }
        }
        let missing: Vec<(&str, &LinkCreate)> = owned
            .into_iter()
            .filter(|(name, c)| !links.contains_key(*name) || created.contains(c.peer_ns()))
            .collect();
        for (_, c) in &missing {
            let peer = c.peer_ns();
            if !desired.contains_key(peer) || failed.contains_key(peer) {
                return Err(CommandError::MissingLink {
                    ns: peer.to_string(),
                    link: format!("{} (namespace unavailable)", c.peer_name()),
                });
            }
        }
        // Veths in one pipelined netlink batch; whatever that leaves missing
        // goes one by one.
        // This end is made up when its plan says so.
        let veths: Vec<kernel::NewVeth<'_>> = missing
            .iter()
            .filter_map(|(name, c)| match c {
                LinkCreate::Veth { peer_ns, peer_name } => Some(kernel::NewVeth {
                    name,
                    peer_ns,
                    peer: peer_name,
                    mtu: ns.links[*name].mtu.unwrap_or(names::MTU),
                    up: ns.links[*name].up,
                }),
                LinkCreate::Peering(_) => None,
            })
            .collect();
        let mut pending = missing.clone();
        if !veths.is_empty() {
            let nl = netlink::Netlink::open(&ns.name)?;
            let outcomes = self.run.create_veths(&nl, &veths, true)?;
            let made: BTreeSet<&str> = veths
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.is_ok())
                .map(|(v, _)| v.name)
                .collect();
            pending.retain(|(name, _)| !made.contains(name));
        }
        for (name, c) in &pending {
            let peer = c.peer_ns();
            tracing::info!(ns = %ns.name, link = %name, peer = %peer, "creating link");
            let create = || match c {
                LinkCreate::Veth { peer_ns, peer_name } => {
                    let mtu = ns.links[*name].mtu.unwrap_or(names::MTU);
                    self.run
                        .create_veth(&ns.name, name, peer_ns, peer_name, mtu)
                }
                LinkCreate::Peering(spec) => self.link_type.create(&self.run, spec),
            };
            match create() {
                Ok(()) => {}
                // An orphaned far end (a half-made tunnel, a hand edit) blocks the
                // name: remove it and try once more.
                Err(CommandError::Failed { stderr, .. }) if stderr.contains("File exists") => {
                    if name.starts_with("p-") {
                        self.link_type.delete(&self.run, peer, c.peer_name())?;
                    } else {
                        self.run.delete_link(peer, c.peer_name())?;
                    }
                    create()?;
                }
                Err(e) => return Err(e),
            }
        }
        let mut made = Vec::new();
        for (_, c) in &missing {
            made.push(ns.name.clone());
            made.push(c.peer_ns().to_string());
        }
        Ok(made)
    }
}

/// Wall time of a reconcile pass's phases, for the debug log.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    /// The phase named `name` ended now.
    fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, d)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={}ms", d.as_millis())?;
        }
        Ok(())
    }
}

/// Whether a namespace's `lo` carries this data directory's marker; None
/// when it cannot be read (it vanished meanwhile).
fn is_marked(run: &Runner, ns: &str, tag: &str) -> Option<bool> {
    let links = run.links(ns).ok()?;
    Some(
        links.get("lo").and_then(|l| l.alias.as_deref()) == Some(names::owner_marker(tag).as_str()),
    )
}

/// How many namespaces are worked on at once (the work is mostly waiting for
/// `ip`, `nft` and the kernel).
const WORKERS: usize = 8;

/// `items.iter().map(f)` on up to [`WORKERS`] threads, results in order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let (f, next) = (&f, &next);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS.min(items.len()))
            .map(|_| {
                s.spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        got.push((i, f(item)));
                    }
                    got
                })
            })
            .collect();
        let mut all: Vec<(usize, R)> = Vec::with_capacity(items.len());
        for w in workers {
            match w.join() {
                Ok(got) => all.extend(got),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    })
}

/// Removes every kernel object the data directory `tag` created: its
/// router, NAT gateway and internet namespaces, the namespaces of the given
/// instances, and any other instance namespace carrying its marker (veths
/// die with their namespaces).
pub fn teardown(tag: &str, instance_ids: &[String]) -> Result<(), DataplaneError> {
    if !names::is_valid_tag(tag) {
        return Err(StartError::BadTag(tag.to_string()).into());
    }
    let run = Runner::new(Tools::find()?);
    let existing = run.netns_list().map_err(TeardownError::List)?;
    let prefix = names::ns_prefix(tag);
    let others: Vec<&String> = existing
        .iter()
        .filter(|n| names::is_instance_ns(n) && !instance_ids.contains(*n))
        .collect();
    let marks = par_map(&others, |n| is_marked(&run, n, tag));
    let marked: BTreeSet<&String> = others
        .into_iter()
        .zip(marks)
        .filter_map(|(n, m)| (m == Some(true)).then_some(n))
        .collect();
    let ours: Vec<String> = existing
        .iter()
        .filter(|name| {
            name.starts_with(&prefix)
                || (names::is_instance_ns(name)
                    && (instance_ids.contains(*name) || marked.contains(name)))
        })
        .cloned()
        .collect();
    let results = par_map(&ours, |name| run.netns_del(name));
    // Every instance whose namespace goes loses its /etc/netns files, whether
    // it was named by the caller or found by its owner marker.
    let gone: BTreeSet<&str> = instance_ids
        .iter()
        .map(String::as_str)
        .chain(
            ours.iter()
                .map(String::as_str)
                .filter(|n| names::is_instance_ns(n)),
        )
        .collect();
    for id in gone {
        if let Err(e) = resolv::remove(id) {
            tracing::warn!(instance = %id, "cannot remove its /etc/netns files: {e}");
        }
    }
    let failed: Vec<(String, CommandError)> = ours
        .into_iter()
        .zip(results)
        .filter_map(|(name, r)| r.err().map(|e| (name, e)))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(TeardownError::Namespaces(failed).into())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_data_plane_can_move_to_a_reconciler_thread() {
        fn send<T: Send + 'static>() {}
        send::<super::Dataplane>();
        send::<super::Report>();
        send::<super::DataplaneError>();
    }
}
