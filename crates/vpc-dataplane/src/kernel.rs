//! The executor: the only code that changes the kernel. It reads a
//! namespace's state over rtnetlink (`netlink.rs`: links, addresses, routes,
//! rules) and its sysctls, compares them with its [`NsPlan`] and issues only
//! the differences as one pipelined batch of typed netlink requests, so
//! applying the same plan twice changes nothing. nftables tables are loaded
//! with one `nft -f` transaction; conntrack entries are deleted with
//! `conntrack -D`. Those two are the only programs it runs.

use crate::error::{CommandError, StartError};
use crate::names::{RULE_PREF, TABLE_BASE, TABLE_IGW, TABLE_MAIN, TABLE_PEERING};
use crate::netlink::{self, request, request::Target, Netlink, Request};
use crate::netns;
use crate::plan::{NsPlan, NsRole, RouteKind, RulePlan};
use ipnet::IpNet;
use netlink_packet_route::route::{RouteProtocol, RouteType};
use nftables::schema::Nftables;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where the network namespaces live (as with `ip netns add`).
pub use crate::netns::NETNS_DIR;

/// The programs the data plane runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub ip: PathBuf,
    pub nft: PathBuf,
    pub conntrack: PathBuf,
    pub sysctl: PathBuf,
}

impl Tools {
    /// Finds every tool in `PATH` (and the sbin directories, which a
    /// non-login root shell may lack).
    pub fn find() -> Result<Tools, StartError> {
        Ok(Tools {
            ip: find("ip")?,
            nft: find("nft")?,
            conntrack: find("conntrack")?,
            sysctl: find("sysctl")?,
        })
    }
}

fn find(name: &'static str) -> Result<PathBuf, StartError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(StartError::MissingTool(name))
}

/// The effective uid, from `/proc/self/status` (no libc needed).
pub fn euid() -> Result<u32, StartError> {
    let s =
        std::fs::read_to_string("/proc/self/status").map_err(|e| StartError::Uid(e.to_string()))?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StartError::Uid("no Uid line in /proc/self/status".into()))
}

/// Runs the tools and counts the changes it makes.
#[derive(Debug)]
pub struct Runner {
    tools: Tools,
    ops: AtomicUsize,
    /// The IPv4 GSO/GRO size of every veth (`offload`): BIG TCP or the default.
    gso_ipv4_max: u32,
    /// Namespaces whose nft tables matched the plan, at which ruleset
    /// generation (the periodic pass lists only those changed since).
    nft_verified: crate::nft_state::Verified,
    /// Rulesets listed so far (`nft_list`).
    nft_listings: AtomicUsize,
}

fn show(program: &Path, args: &[&str]) -> String {
    let mut s = program
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

impl Runner {
    pub fn new(tools: Tools) -> Runner {
        Runner {
            tools,
            ops: AtomicUsize::new(0),
            gso_ipv4_max: crate::offload::BIG_TCP_SIZE,
            nft_verified: Default::default(),
            nft_listings: AtomicUsize::new(0),
        }
    }

    /// The programs it runs.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// Turns the bulk-TCP fast path (large IPv4 GSO/GRO sizes on every
    /// veth, `offload`) on (the default) or off (the kernel's 64 KiB).
    pub fn set_big_tcp(&mut self, on: bool) {
        self.gso_ipv4_max = if on {
            crate::offload::BIG_TCP_SIZE
        } else {
            crate::offload::LEGACY_SIZE
        };
    }

    /// Kernel changes issued so far (netlink requests, nft transactions,
    /// sysctl writes, namespaces made or removed, conntrack deletions).
    pub fn ops(&self) -> usize {
        self.ops.load(Ordering::Relaxed)
    }

    fn count(&self, n: usize) {
        self.ops.fetch_add(n, Ordering::Relaxed);
    }

    /// Runs a program; its standard output on success.
    pub fn run(
        &self,
        program: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, CommandError> {
        let cmd = show(program, args);
        let mut child = Command::new(program)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CommandError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        let out = std::thread::scope(|s| {
            if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
                // A separate thread, so a child that writes a lot before it
                // has read everything cannot deadlock us.
                s.spawn(move || {
                    let _ = stdin.write_all(text.as_bytes());
                });
            }
            child.wait_with_output()
        })
        .map_err(|source| CommandError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(CommandError::Failed {
                cmd,
                code: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip args…`, inside `ns` when given: for a peering link type that needs
    /// an iproute2 feature the netlink requests here do not cover. The data
    /// plane's own links, addresses, routes and rules never go through it.
    pub fn ip(&self, ns: Option<&str>, args: &[&str]) -> Result<String, CommandError> {
        match ns {
            Some(ns) => {
                let ip = self.tools.ip.clone();
                self.exec(ns, &ip, args, None)
            }
            None => self.run(&self.tools.ip, args, None),
        }
    }

    /// Runs `program args…` inside a namespace.
    ///
    /// The child is started from a thread that entered the namespace
    /// (`netns::within`), so it is born in it: no `nsenter` or `ip netns
    /// exec` process in between. Only the network namespace is entered;
    /// `ip netns exec` also makes a private copy of the mount namespace and
    /// remounts /sys, which neither `nft` nor `conntrack` needs.
    pub fn exec(
        &self,
        ns: &str,
        program: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, CommandError> {
        netns::within(ns, || Ok(self.run(program, args, input))).map_err(|source| {
            CommandError::Spawn {
                cmd: format!("{} (in {ns})", show(program, args)),
                source,
            }
        })?
    }

    /// The names of all network namespaces (`ip netns list` reads the same directory).
    pub fn netns_list(&self) -> std::io::Result<BTreeSet<String>> {
        match std::fs::read_dir(NETNS_DIR) {
            Ok(rd) => rd
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(e) => Err(e),
        }
    }

    /// Which of these namespaces exist (one `stat` each, for a few names
    /// where listing thousands would cost more).
    pub fn netns_existing<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> BTreeSet<String> {
        names
            .into_iter()
            .filter(|n| std::path::Path::new(NETNS_DIR).join(n).exists())
            .cloned()
            .collect()
    }

    /// Creates a namespace under `/run/netns` (as `ip netns add` does).
    pub fn netns_add(&self, name: &str) -> Result<(), CommandError> {
        self.count(1);
        netns::add(name).map_err(|e| io_failure(&format!("netns add {name}"), &e))
    }

    /// Deletes a namespace (as `ip netns del` does) and its `/etc/netns` files.
    pub fn netns_del(&self, name: &str) -> Result<(), CommandError> {
        self.count(1);
        self.nft_verified.forget(name);
        netns::del(name).map_err(|e| io_failure(&format!("netns del {name}"), &e))?;
        if let Err(e) = crate::resolv::remove(name) {
            tracing::warn!(ns = %name, "cannot remove its /etc/netns files: {e}");
        }
        Ok(())
    }

    /// Sets sysctls inside a namespace, in order (written to its `/proc/sys`).
    pub fn sysctl(&self, ns: &str, kv: &[(String, String)]) -> Result<(), CommandError> {
        if kv.is_empty() {
            return Ok(());
        }
        self.count(kv.len());
        netns::within(ns, || netns::write_sysctls_here(kv))
            .map_err(|e| io_failure(&format!("sysctl -w (in {ns})"), &e))
    }

    /// Loads an nft script (one atomic transaction) inside a namespace.
    pub fn nft(&self, ns: &str, script: &str) -> Result<(), CommandError> {
        self.count(1);
        let nft = self.tools.nft.clone();
        self.exec(ns, &nft, &["-f", "-"], Some(script)).map(|_| ())
    }

    /// Loads an nftables JSON document (one atomic transaction) inside a
    /// namespace (`nft -j -f -`).
    pub fn nft_json(&self, ns: &str, document: &Nftables<'_>) -> Result<(), CommandError> {
        let json = serde_json::to_string(document).map_err(|e| CommandError::Output {
            cmd: format!("nft -j -f - (in {ns})"),
            detail: e.to_string(),
        })?;
        self.count(1);
        let nft = self.tools.nft.clone();
        self.exec(ns, &nft, &["-j", "-f", "-"], Some(&json))
            .map(|_| ())
    }

    /// Replaces a namespace's planned nft tables with `document` (one
    /// transaction, `nft -j -f -`). The ruleset generation is read just
    /// before and after, from the thread that runs `nft`: when it moved by
    /// exactly one, the only transaction in between was this one, so the
    /// tables are the plan's at the generation after, and the periodic pass
    /// need not list them until another transaction comes.
    pub(crate) fn nft_planned(
        &self,
        ns: &str,
        document: &Nftables<'_>,
    ) -> Result<(), CommandError> {
        use crate::nft_state::generation_here;
        self.nft_verified.forget(ns);
        let json = serde_json::to_string(document).map_err(|e| CommandError::Output {
            cmd: format!("nft -j -f - (in {ns})"),
            detail: e.to_string(),
        })?;
        self.count(1);
        let nft = self.tools.nft.clone();
        let args = ["-j", "-f", "-"];
        let (before, loaded, after) = netns::within(ns, || {
            let before = generation_here().ok();
            let loaded = self.run(&nft, &args, Some(&json));
            let after = generation_here().ok();
            Ok((before, loaded, after))
        })
        .map_err(|source| CommandError::Spawn {
            cmd: format!("{} (in {ns})", show(&nft, &args)),
            source,
        })?;
        loaded?;
        if let (Some(before), Some(after)) = (before, after) {
            if after.follows(before) {
                self.nft_verified.matched(ns, after);
            }
        }
        Ok(())
    }

    /// How many times the data plane listed a namespace's nft ruleset to
    /// compare it with the plan (the periodic pass).
    pub fn nft_listings(&self) -> usize {
        self.nft_listings.load(Ordering::Relaxed)
    }

    /// `nft -j list ruleset` inside a namespace (read-only).
    pub fn nft_list(&self, ns: &str) -> Result<String, CommandError> {
        self.nft_listings.fetch_add(1, Ordering::Relaxed);
        let nft = self.tools.nft.clone();
        self.exec(ns, &nft, &["-j", "list", "ruleset"], None)
    }

    /// Deletes the conntrack entries from or to an address. Nothing to delete is fine.
    pub fn conntrack_forget(&self, ns: &str, addr: IpAddr) -> Result<(), CommandError> {
        let a = addr.to_string();
        let fam = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
        let ct = self.tools.conntrack.clone();
        for dir in ["-s", "-d"] {
            self.count(1);
            match self.exec(ns, &ct, &["-D", "-f", fam, dir, &a], None) {
                Ok(_) => {}
                // conntrack exits 1 when no entry matched.
                Err(CommandError::Failed { code: Some(1), .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates a veth pair with one end in each namespace.
    pub fn create_veth(
        &self,
        ns: &str,
        name: &str,
        peer_ns: &str,
        peer: &str,
        mtu: u32,
    ) -> Result<(), CommandError> {
        let nl = Netlink::open(ns)?;
        let veth = NewVeth {
            name,
            peer_ns,
            peer,
            mtu,
            up: false,
        };
        match self.create_veths(&nl, &[veth], false)?.pop() {
            Some(Err(e)) => Err(netlink::failure(
                ns,
                &format!("add veth {name} (peer {peer} in {peer_ns})"),
                &e,
            )),
            _ => Ok(()),
        }
    }

    /// Creates veth pairs from namespace `nl`, all in one pipelined batch;
    /// each one's outcome. `planned`: links of a plan, made with the IPv4
    /// GSO/GRO size that `configure` would otherwise set on each end
    /// afterwards.
    pub(crate) fn create_veths(
        &self,
        nl: &Netlink,
        veths: &[NewVeth<'_>],
        planned: bool,
    ) -> Result<Vec<std::io::Result<()>>, CommandError> {
        let size = planned.then_some(self.gso_ipv4_max);
        let mut files = Vec::new();
        for v in veths {
            let f = std::fs::File::open(netns::path(v.peer_ns)).map_err(|e| {
                netlink::failure(nl.ns(), &format!("open namespace {}", v.peer_ns), &e)
            })?;
            files.push(f);
        }
        let requests = veths
            .iter()
            .zip(&files)
            .map(|(v, f)| request::add_veth(v, f, size))
            .collect();
        self.count(veths.len());
        nl.execute(requests)
    }

    /// Deletes a link; false when it was already gone.
    pub fn delete_link(&self, ns: &str, name: &str) -> Result<bool, CommandError> {
        self.count(1);
        let nl = Netlink::open(ns)?;
        match nl.execute(vec![request::del_link(name)])?.pop() {
            Some(Ok(())) | None => Ok(true),
            // Gone before we looked, or while we did (its other end was
            // deleted from the peer namespace at the same moment).
            Some(Err(e)) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(false),
            Some(Err(e)) => Err(netlink::failure(ns, &format!("delete link {name}"), &e)),
        }
    }

    /// The links of a namespace.
    pub(crate) fn links(&self, ns: &str) -> Result<BTreeMap<String, KLink>, CommandError> {
        Netlink::open(ns)?.links()
    }
}

/// A veth pair to create: `name` in the namespace that creates it, `peer`
/// in namespace `peer_ns`, both with `mtu`; `name` is up at once when its
/// plan says so (no request of its own later). The peer cannot be: the
/// kernel configures it before the two ends know each other, and a veth
/// without its other end refuses to come up (`ENOTCONN`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewVeth<'a> {
    pub name: &'a str,
    pub peer_ns: &'a str,
    pub peer: &'a str,
    pub mtu: u32,
    pub up: bool,
}

fn io_failure(cmd: &str, e: &std::io::Error) -> CommandError {
    CommandError::Failed {
        cmd: cmd.to_string(),
        code: e.raw_os_error(),
        stderr: e.to_string(),
    }
}

/// Everything `configure` compares: links, addresses, routes and (for
/// routers) rules, read over `nl`.
pub(crate) fn state(nl: &Netlink, rules: bool) -> Result<KState, CommandError> {
    let links = nl.links()?;
    let names: BTreeMap<u32, &str> = links.iter().map(|(n, l)| (l.index, n.as_str())).collect();
    let name = |i: Option<u32>| {
        i.and_then(|i| names.get(&i))
            .map(|n| n.to_string())
            .unwrap_or_default()
    };
    let addrs = nl
        .addrs()?
        .into_iter()
        .filter(|(_, a)| managed_addr(a))
        .map(|(i, a)| (name(Some(i)), a))
        .collect();
    let routes = nl
        .routes()?
        .into_iter()
        .map(|r| {
            let route = match (r.kind, r.gateway) {
                (RouteType::BlackHole, _) => KRoute::Blackhole,
                (RouteType::Unicast, Some(gw)) => KRoute::Via {
                    gw,
                    dev: name(r.oif),
                },
                (RouteType::Unicast, None) => KRoute::Dev(name(r.oif)),
                (other, _) => KRoute::Other(format!("{other:?}")),
            };
            (
                (r.table, r.dst),
                KRouteEntry {
                    route,
                    protocol: r.protocol,
                },
            )
        })
        .collect();
    let mut st = KState {
        links: BTreeMap::new(),
        addrs,
        routes,
        rules: BTreeSet::new(),
    };
    if rules {
        st.rules = nl
            .rules()?
            .into_iter()
            .filter(|r| r.priority == RULE_PREF)
            .filter_map(|r| {
                Some(RulePlan {
                    v6: r.v6,
                    iif: r.iif?,
                    table: r.table,
                })
            })
            .collect();
    }
    st.links = links;
    Ok(st)
}

/// A link as the kernel has it.
pub(crate) type KLink = netlink::LinkState;

/// A route as the kernel has it (only what we compare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KRoute {
    Blackhole,
    Dev(String),
    Via {
        gw: IpAddr,
        dev: String,
    },
    /// Another type (unreachable, local, …), never what we plan.
    Other(String),
}

/// A route with its protocol, before filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KRouteEntry {
    pub route: KRoute,
    pub protocol: RouteProtocol,
}

/// One namespace's relevant kernel state.
#[derive(Debug, Clone, Default)]
pub(crate) struct KState {
    pub links: BTreeMap<String, KLink>,
    /// (device, address with prefix), loopback and automatic link-local addresses excluded.
    pub addrs: BTreeSet<(String, IpNet)>,
    pub routes: BTreeMap<(u32, IpNet), KRouteEntry>,
    /// Rules at vpcd's priority.
    pub rules: BTreeSet<RulePlan>,
}

/// Addresses vpcd may manage: not loopback, and link-local only fe80::1 and fe80::2.
fn managed_addr(a: &IpNet) -> bool {
    match a {
        IpNet::V4(n) => !n.addr().is_loopback(),
        IpNet::V6(n) => {
            let ip = n.addr();
            if ip.is_loopback() {
                return false;
            }
            let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
            !link_local || ip == crate::names::LL_ONE || ip == crate::names::LL_TWO
        }
    }
}

/// Whether vpcd manages routes in this table of a namespace with this role.
fn managed_route(role: &NsRole, table: u32, e: &KRouteEntry) -> bool {
    match role {
        NsRole::Router { .. } => {
            table == TABLE_PEERING || table == TABLE_IGW || table >= TABLE_BASE
        }
        _ => {
            table == TABLE_MAIN
                && matches!(e.protocol, RouteProtocol::Boot | RouteProtocol::Static)
                && !matches!(e.route, KRoute::Other(_))
        }
    }
}

/// Whether the namespace makes any of its links (a router: its veths and
/// peering links); the other ends only receive theirs.
pub(crate) fn makes_links(ns: &NsPlan) -> bool {
    ns.links.values().any(|l| l.create.is_some())
}

/// Whether vpcd manages (and so may delete) a link of this name.
pub(crate) fn managed_link(role: &NsRole, name: &str) -> bool {
    match role {
        NsRole::Router { .. } => ["e-", "n-", "p-", "g-"].iter().any(|p| name.starts_with(p)),
        NsRole::Inet => name.starts_with("g-"),
        NsRole::Instance { .. } | NsRole::NatGateway { .. } => name
            .strip_prefix("eth")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
    }
}

fn same_route(k: &KRoute, p: &RouteKind) -> bool {
    match (k, p) {
        (KRoute::Blackhole, RouteKind::Blackhole) => true,
        (KRoute::Dev(a), RouteKind::Dev(b)) => a == b,
        (KRoute::Via { gw, dev }, RouteKind::Via { gw: g, dev: d, .. }) => gw == g && dev == d,
        _ => false,
    }
}

/// What a route request does, in `ip route` words (for errors and logs).
pub(crate) fn route_line(table: u32, dst: &IpNet, kind: &RouteKind) -> String {
    match kind {
        RouteKind::Blackhole => format!("route replace blackhole {dst} table {table}"),
        RouteKind::Dev(dev) => format!("route replace {dst} dev {dev} table {table}"),
        RouteKind::Via { gw, dev, onlink } => {
            let fam = if gw.is_ipv6() != dst.addr().is_ipv6() {
                "inet6 "
            } else {
                ""
            };
            let onlink = if *onlink { " onlink" } else { "" };
            format!("route replace {dst} via {fam}{gw} dev {dev}{onlink} table {table}")
        }
    }
}

/// The request that makes the kernel route to `dst` in `table` what the plan says.
fn route_request(
    table: u32,
    dst: &IpNet,
    kind: &RouteKind,
    index: impl Fn(&str) -> Option<u32>,
) -> Result<Request, String> {
    let what = route_line(table, dst, kind);
    let target = match kind {
        RouteKind::Blackhole => Target::Blackhole,
        RouteKind::Dev(dev) => Target::Dev(index(dev).ok_or_else(|| dev.clone())?),
        RouteKind::Via { gw, dev, onlink } => Target::Via {
            gw: *gw,
            oif: index(dev).ok_or_else(|| dev.clone())?,
            onlink: *onlink,
        },
    };
    Ok(request::replace_route(table, dst, target, what))
}

/// Which parts of a namespace to converge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Parts {
    pub sysctls: bool,
    pub links: bool,
    pub addrs: bool,
    pub routes: bool,
    pub rules: bool,
    pub nft: bool,
}

impl Parts {
    pub fn all() -> Parts {
        Parts {
            sysctls: true,
            links: true,
            addrs: true,
            routes: true,
            rules: true,
            nft: true,
        }
    }

    /// The parts whose plan changed.
    pub fn diff(old: &NsPlan, new: &NsPlan) -> Parts {
        Parts {
            sysctls: old.sysctls != new.sysctls,
            links: old.links != new.links,
            addrs: old.addrs != new.addrs,
            routes: old.routes != new.routes,
            rules: old.rules != new.rules,
            nft: old.nft != new.nft,
        }
    }

    pub fn any(&self) -> bool {
        self.sysctls || self.links || self.addrs || self.routes || self.rules || self.nft
    }

    fn kernel(&self) -> bool {
        self.links || self.addrs || self.routes || self.rules
    }
}

/// The sysctls a namespace's links need (proxy ARP on the router side of
/// instance and NAT gateway veths).
fn link_sysctls(ns: &NsPlan) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in ns.links.values().filter(|l| l.proxy_arp) {
        out.push((format!("net.ipv4.conf.{}.proxy_arp", l.name), "1".into()));
        out.push((format!("net.ipv4.neigh.{}.proxy_delay", l.name), "0".into()));
    }
    out
}

/// Writes those of `kv` whose value differs, inside `ns`; how many it wrote.
fn converge_sysctls(ns: &str, kv: &[(String, String)]) -> Result<usize, CommandError> {
    if kv.is_empty() {
        return Ok(0);
    }
    netns::converge_sysctls(ns, kv).map_err(|e| io_failure(&format!("sysctl -w (in {ns})"), &e))
}

/// Brings one namespace's links (settings), addresses, routes, rules and
/// nftables to the plan. Links must already exist (phase A). Everything but
/// the nft tables is compared with the kernel and only differences are
/// written; the nft tables are replaced when `parts.nft` says so, or, with
/// `verify`, only when the kernel's differ from the plan. Returns how many
/// kernel changes it made.
pub(crate) fn configure(
    run: &Runner,
    ns: &NsPlan,
    parts: Parts,
    verify: bool,
) -> Result<usize, CommandError> {
    let mut changes = 0;
    // A link that went down lost its routes and IPv6 addresses in the
    // kernel: whenever links are converged, so are those.
    let parts = if parts.links {
        Parts {
            addrs: true,
            routes: true,
            ..parts
        }
    } else {
        parts
    };
    let mut kv = Vec::new();
    if parts.sysctls {
        kv.extend(ns.sysctls.iter().cloned());
    }
    if parts.links {
        kv.extend(link_sysctls(ns));
    }
    // The namespace's nft ruleset generation, read in the periodic pass.
    let mut generation = None;
    if !parts.kernel() {
        changes += converge_sysctls(&ns.name, &kv)?;
    } else {
        let router = matches!(ns.role, NsRole::Router { .. });
        let nft_generation = verify && parts.nft && !ns.nft.is_empty();
        // Sysctls, the nft ruleset generation and the socket from one visit
        // to the namespace.
        let (written, nl) = Netlink::open_with(&ns.name, || {
            let written = netns::converge_sysctls_here(&kv);
            let generation = nft_generation
                .then(crate::nft_state::generation_here)
                .and_then(Result::ok);
            (written, generation)
        })?;
        let written = {
            generation = written.1;
            written.0
        };
        changes += written.map_err(|e| io_failure(&format!("sysctl -w (in {})", ns.name), &e))?;
        let st = state(&nl, router && parts.rules)?;
        let index = |dev: &str| st.links.get(dev).map(|l| l.index);
        let missing = |dev: &str| CommandError::MissingLink {
            ns: ns.name.clone(),
            link: dev.to_string(),
        };
        let mut requests: Vec<Request> = Vec::new();
        // Links this batch takes down: the kernel drops their routes itself.
        let mut going_down: BTreeSet<&str> = BTreeSet::new();
        if parts.links && !makes_links(ns) {
            // Links of vpcd's names that are not planned (the reconciler
            // removes those of a namespace that makes links before it makes
            // the missing ones); their routes go with them.
            for name in st.links.keys() {
                if managed_link(&ns.role, name) && !ns.links.contains_key(name) {
                    tracing::info!(ns = %ns.name, link = %name, "removing link");
                    requests.push(request::del_link(name));
                    going_down.insert(name);
                }
            }
        }
        if parts.links {
            for l in ns.links.values() {
                let Some(k) = st.links.get(&l.name) else {
                    return Err(missing(&l.name));
                };
                let mtu = l.mtu.filter(|m| *m != k.mtu);
                let alias = l.alias.as_deref().filter(|a| k.alias.as_deref() != Some(a));
                let up = (k.up != l.up).then_some(l.up);
                if mtu.is_some() || alias.is_some() || up.is_some() {
                    requests.push(request::set_link(&l.name, k.index, mtu, alias, up));
                }
                if !l.up && k.up {
                    going_down.insert(&l.name);
                }
            }
        }
        if parts.addrs {
            let want: BTreeSet<(String, IpNet)> =
                ns.addrs.iter().map(|a| (a.dev.clone(), a.addr)).collect();
            for a in &ns.addrs {
                if !st.addrs.contains(&(a.dev.clone(), a.addr)) {
                    let i = index(&a.dev).ok_or_else(|| missing(&a.dev))?;
                    requests.push(request::add_addr(&a.dev, i, &a.addr, a.noprefixroute));
                }
            }
            for (dev, addr) in &st.addrs {
                if !want.contains(&(dev.clone(), *addr)) && ns.links.contains_key(dev) {
                    if let Some(i) = index(dev) {
                        requests.push(request::del_addr(dev, i, addr));
                    }
                }
            }
        }
        if parts.routes {
            for ((t, dst), kind) in &ns.routes {
                let same = st
                    .routes
                    .get(&(*t, *dst))
                    .is_some_and(|k| same_route(&k.route, kind));
                if !same {
                    requests.push(route_request(*t, dst, kind, index).map_err(|d| missing(&d))?);
                }
            }
            for ((t, dst), e) in &st.routes {
                let dev = match &e.route {
                    KRoute::Dev(d) | KRoute::Via { dev: d, .. } => d.as_str(),
                    _ => "",
                };
                if going_down.contains(dev) {
                    continue;
                }
                if managed_route(&ns.role, *t, e) && !ns.routes.contains_key(&(*t, *dst)) {
                    requests.push(request::del_route(*t, dst));
                }
            }
        }
        if parts.rules && router {
            for r in &ns.rules {
                if !st.rules.contains(r) {
                    requests.push(request::add_rule(r.v6, &r.iif, r.table, RULE_PREF));
                }
            }
            for r in &st.rules {
                if !ns.rules.contains(r) {
                    requests.push(request::del_rule(r.v6, &r.iif, r.table, RULE_PREF));
                }
            }
        }
        changes += nl.apply(requests)?;
        if parts.links {
            // Every planned link but `lo` is a veth (or a peering link type
            // that says how much it accepts).
            let links: Vec<&str> = ns.links.keys().map(String::as_str).collect();
            let links: Vec<&str> = links.into_iter().filter(|l| *l != "lo").collect();
            changes += crate::offload::converge_with(&nl, &st.links, &links, run.gso_ipv4_max)?;
        }
    }
    run.count(changes);
    if parts.nft && !ns.nft.is_empty() && (!verify || nft_differs(run, ns, generation)?) {
        let document = Nftables {
            objects: Cow::Owned(ns.nft.iter().flat_map(|t| t.commands()).collect()),
        };
        run.nft_planned(&ns.name, &document)?;
        changes += 1;
    }
    Ok(changes)
}

/// Whether the namespace's nft tables differ from the plan: not when its
/// ruleset generation is the one seen before a listing that matched (no
/// nft transaction since), else as the listing says.
fn nft_differs(
    run: &Runner,
    ns: &NsPlan,
    generation: Option<crate::nft_state::Generation>,
) -> Result<bool, CommandError> {
    if let Some(g) = generation {
        if run.nft_verified.unchanged(&ns.name, g) {
            return Ok(false);
        }
    }
    let differs = crate::nft_state::differs(run, ns)?;
    if let (false, Some(g)) = (differs, generation) {
        run.nft_verified.matched(&ns.name, g);
    }
    Ok(differs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vpcds_routes_are_managed() {
        let role = NsRole::Instance {
            instance_id: "i-1".into(),
        };
        let entry = |route, protocol| KRouteEntry { route, protocol };
        // The kernel's own prefix routes stay; static and boot routes in the
        // main table are vpcd's.
        let kernel = entry(KRoute::Dev("eth0".into()), RouteProtocol::Kernel);
        assert!(!managed_route(&role, TABLE_MAIN, &kernel));
        let boot = entry(
            KRoute::Via {
                gw: "10.0.1.1".parse().unwrap(),
                dev: "eth0".into(),
            },
            RouteProtocol::Boot,
        );
        assert!(managed_route(&role, TABLE_MAIN, &boot));
        assert!(!managed_route(&role, 100, &boot));
        let local = entry(KRoute::Other("Local".into()), RouteProtocol::Boot);
        assert!(!managed_route(&role, TABLE_MAIN, &local));
        // In a router, vpcd's tables only.
        let router = NsRole::Router { vpc_id: "v".into() };
        assert!(managed_route(&router, TABLE_PEERING, &kernel));
        assert!(managed_route(&router, TABLE_BASE + 5, &kernel));
        assert!(!managed_route(&router, TABLE_MAIN, &boot));
    }

    #[test]
    fn planned_routes_become_requests_on_link_indices() {
        let index = |d: &str| (d == "p-1").then_some(7);
        let dst: IpNet = "10.1.0.0/16".parse().unwrap();
        let via = RouteKind::Via {
            gw: "fe80::2".parse().unwrap(),
            dev: "p-1".into(),
            onlink: false,
        };
        let r = route_request(65537, &dst, &via, index).unwrap();
        assert_eq!(
            r.what,
            "route replace 10.1.0.0/16 via inet6 fe80::2 dev p-1 table 65537"
        );
        // A route over a link that does not exist names the link.
        let gone = RouteKind::Dev("e-9".into());
        assert_eq!(
            route_request(254, &dst, &gone, index).err(),
            Some("e-9".to_string())
        );
        let r = route_request(251, &"::/0".parse().unwrap(), &RouteKind::Blackhole, index);
        assert_eq!(r.unwrap().what, "route replace blackhole ::/0 table 251");
    }

    #[test]
    fn addresses_vpcd_manages() {
        let m = |a: &str| managed_addr(&a.parse().unwrap());
        assert!(m("10.0.1.1/32"));
        assert!(m("fe80::1/64") && m("fe80::2/64"));
        assert!(!m("fe80::a8bb:ccff:fe00:1/64"));
        assert!(!m("127.0.0.1/8") && !m("::1/128"));
        assert!(m("2600:1f18:1:1::10/64"));
    }

    #[test]
    fn only_differing_sysctls_are_listed_for_links() {
        let mut ns = NsPlan {
            name: "x".into(),
            role: NsRole::Inet,
            sysctls: vec![],
            links: BTreeMap::new(),
            addrs: BTreeSet::new(),
            routes: BTreeMap::new(),
            rules: BTreeSet::new(),
            nft: vec![],
            tracked: BTreeSet::new(),
        };
        ns.links.insert(
            "e-1".into(),
            crate::plan::LinkPlan {
                name: "e-1".into(),
                mtu: Some(9001),
                up: true,
                proxy_arp: true,
                create: None,
                alias: None,
            },
        );
        assert_eq!(
            link_sysctls(&ns),
            vec![
                ("net.ipv4.conf.e-1.proxy_arp".to_string(), "1".to_string()),
                (
                    "net.ipv4.neigh.e-1.proxy_delay".to_string(),
                    "0".to_string()
                )
            ]
        );
    }

    #[test]
    fn link_ownership() {
        let r = NsRole::Router { vpc_id: "v".into() };
        assert!(managed_link(&r, "e-1"));
        assert!(!managed_link(&r, "lo"));
        let i = NsRole::Instance {
            instance_id: "i-1".into(),
        };
        assert!(managed_link(&i, "eth3"));
        assert!(!managed_link(&i, "eth"));
        assert!(!managed_link(&i, "lo"));
    }
}
