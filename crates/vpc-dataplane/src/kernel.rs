//! The executor: the only code that runs `ip`, `nft`, `sysctl` and
//! `conntrack`. It reads a namespace's state, compares it with its
//! [`NsPlan`] and issues only the differences, so applying the same plan
//! twice changes nothing.

use crate::error::{CommandError, StartError};
use crate::names::{RULE_PREF, TABLE_BASE, TABLE_IGW, TABLE_MAIN, TABLE_PEERING};
use crate::plan::{AddrPlan, NsPlan, NsRole, RouteKind, RulePlan};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where the network namespaces created by `ip netns add` live.
pub const NETNS_DIR: &str = "/run/netns";

/// The programs the data plane runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub ip: PathBuf,
    pub nft: PathBuf,
    pub conntrack: PathBuf,
    pub sysctl: PathBuf,
    pub nsenter: PathBuf,
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
            nsenter: find("nsenter")?,
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

    /// Kernel changes issued so far (batch lines, nft transactions, sysctl
    /// writes, link creations and deletions, conntrack deletions).
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

    /// `ip args…`, inside `ns` when given.
    pub fn ip(&self, ns: Option<&str>, args: &[&str]) -> Result<String, CommandError> {
        match ns {
            Some(ns) => {
                let ip = self.tools.ip.clone();
                self.exec(ns, &ip, args, None)
            }
            None => self.run(&self.tools.ip, args, None),
        }
    }

    /// `ip [-6] -force -batch -` inside `ns`, with the lines on stdin.
    pub fn ip_batch(&self, ns: &str, v6: bool, lines: &[String]) -> Result<(), CommandError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut args = Vec::new();
        if v6 {
            args.push("-6");
        }
        args.extend(["-force", "-batch", "-"]);
        let mut text = lines.join("\n");
        text.push('\n');
        self.count(lines.len());
        let ip = self.tools.ip.clone();
        self.exec(ns, &ip, &args, Some(&text)).map(|_| ())
    }

    /// Runs `program args…` inside a namespace.
    ///
    /// This enters only the network namespace (`nsenter --net=/run/netns/NS`).
    /// `ip -n` and `ip netns exec` also make a private copy of the mount
    /// namespace and remount /sys on every call, which costs time in
    /// proportion to the number of namespaces (each is a bind mount): about
    /// 8 ms per call at 1,500 namespaces against 3 ms here. None of the
    /// tools needs /sys.
    pub fn exec(
        &self,
        ns: &str,
        program: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, CommandError> {
        let net = format!("--net={NETNS_DIR}/{ns}");
        let p = program.to_string_lossy();
        let mut all = vec![net.as_str(), p.as_ref()];
        all.extend_from_slice(args);
        self.run(&self.tools.nsenter, &all, input)
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

    pub fn netns_add(&self, name: &str) -> Result<(), CommandError> {
        self.count(1);
        self.ip(None, &["netns", "add", name]).map(|_| ())
    }

    pub fn netns_del(&self, name: &str) -> Result<(), CommandError> {
        self.count(1);
        self.ip(None, &["netns", "del", name])?;
        if let Err(e) = crate::resolv::remove(name) {
            tracing::warn!(ns = %name, "cannot remove its /etc/netns files: {e}");
        }
        Ok(())
    }

    /// Sets sysctls inside a namespace, in order.
    pub fn sysctl(&self, ns: &str, kv: &[(String, String)]) -> Result<(), CommandError> {
        if kv.is_empty() {
            return Ok(());
        }
        let pairs: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["-qw"];
        args.extend(pairs.iter().map(String::as_str));
        self.count(kv.len());
        let sysctl = self.tools.sysctl.clone();
        self.exec(ns, &sysctl, &args, None).map(|_| ())
    }

    /// Loads an nft script (one atomic transaction) inside a namespace.
    pub fn nft(&self, ns: &str, script: &str) -> Result<(), CommandError> {
        self.count(1);
        let nft = self.tools.nft.clone();
        self.exec(ns, &nft, &["-f", "-"], Some(script)).map(|_| ())
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
        let m = mtu.to_string();
        self.count(1);
        self.ip(
            Some(ns),
            &[
                "link", "add", name, "mtu", &m, "type", "veth", "peer", "name", peer, "netns",
                peer_ns, "mtu", &m,
            ],
        )
        .map(|_| ())
    }

    /// Deletes a link; false when it was already gone.
    pub fn delete_link(&self, ns: &str, name: &str) -> Result<bool, CommandError> {
        self.count(1);
        match self.ip(Some(ns), &["link", "del", name]) {
            Ok(_) => Ok(true),
            // Gone before we looked, or while we did (its other end was
            // deleted from the peer namespace at the same moment).
            Err(CommandError::Failed { stderr, .. })
                if stderr.contains("Cannot find device") || stderr.contains("No such device") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The links of a namespace.
    pub(crate) fn links(&self, ns: &str) -> Result<BTreeMap<String, KLink>, CommandError> {
        let out = self.ip(Some(ns), &["-j", "link", "show"])?;
        let v: Value = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
            .map_err(|e| CommandError::Output {
                cmd: format!("ip -j link show (in {ns})"),
                detail: e.to_string(),
            })?;
        Ok(parse_links(&v))
    }

    /// Everything `configure` compares: links, addresses, routes and (for routers) rules.
    pub(crate) fn state(&self, ns: &str, rules: bool) -> Result<KState, CommandError> {
        let cmd = format!("ip -j -batch - (in {ns})");
        let ip = self.tools.ip.clone();
        let out = self.exec(
            ns,
            &ip,
            &["-j", "-batch", "-"],
            Some("link show\naddr show\nroute show table all\nrule show\n"),
        )?;
        let docs: Vec<Value> = serde_json::Deserializer::from_str(&out)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|e| CommandError::Output {
                cmd: cmd.clone(),
                detail: e.to_string(),
            })?;
        let [links, addrs, routes, rules4] = docs.as_slice() else {
            return Err(CommandError::Output {
                cmd,
                detail: format!("expected 4 JSON documents, got {}", docs.len()),
            });
        };
        let mut st = KState {
            links: parse_links(links),
            addrs: parse_addrs(addrs),
            routes: parse_routes(routes),
            rules: BTreeSet::new(),
        };
        if rules {
            st.rules.extend(parse_rules(rules4, false));
            let out6 = self.ip(Some(ns), &["-6", "-j", "rule", "show"])?;
            let v6: Value = serde_json::from_str(&out6).map_err(|e| CommandError::Output {
                cmd: format!("ip -6 -j rule show (in {ns})"),
                detail: e.to_string(),
            })?;
            st.rules.extend(parse_rules(&v6, true));
        }
        Ok(st)
    }
}

/// A link as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KLink {
    pub mtu: u32,
    pub up: bool,
    pub alias: Option<String>,
}

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
    pub protocol: Option<String>,
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

fn parse_links(v: &Value) -> BTreeMap<String, KLink> {
    let mut out = BTreeMap::new();
    for l in v.as_array().into_iter().flatten() {
        let Some(name) = l.get("ifname").and_then(Value::as_str) else {
            continue;
        };
        let up = l
            .get("flags")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
        let mtu = l
            .get("mtu")
            .and_then(Value::as_u64)
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0);
        let alias = l.get("ifalias").and_then(Value::as_str).map(str::to_string);
        out.insert(name.to_string(), KLink { mtu, up, alias });
    }
    out
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

fn parse_addrs(v: &Value) -> BTreeSet<(String, IpNet)> {
    let mut out = BTreeSet::new();
    for l in v.as_array().into_iter().flatten() {
        let Some(name) = l.get("ifname").and_then(Value::as_str) else {
            continue;
        };
        for a in l
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(local), Some(len)) = (
                a.get("local").and_then(Value::as_str),
                a.get("prefixlen").and_then(Value::as_u64),
            ) else {
                continue;
            };
            let Ok(ip) = local.parse::<IpAddr>() else {
                continue;
            };
            let Ok(len) = u8::try_from(len) else { continue };
            let Ok(net) = IpNet::new(ip, len) else {
                continue;
            };
            if managed_addr(&net) {
                out.insert((name.to_string(), net));
            }
        }
    }
    out
}

fn parse_table(v: &Value) -> Option<u32> {
    match v.get("table").and_then(Value::as_str) {
        None | Some("main") => Some(TABLE_MAIN),
        Some("local") => Some(255),
        Some("default") => Some(253),
        Some(n) => n.parse().ok(),
    }
}

fn parse_routes(v: &Value) -> BTreeMap<(u32, IpNet), KRouteEntry> {
    let mut out = BTreeMap::new();
    for r in v.as_array().into_iter().flatten() {
        let Some(table) = parse_table(r) else {
            continue;
        };
        let Some(dst) = r.get("dst").and_then(Value::as_str) else {
            continue;
        };
        // IPv6 routes always carry a preference; IPv4 routes never do.
        let v6 = dst.contains(':') || r.get("pref").is_some();
        let dst: IpNet = if dst == "default" {
            if v6 {
                IpNet::V6(Default::default())
            } else {
                IpNet::V4(Default::default())
            }
        } else if let Ok(n) = dst.parse::<IpNet>() {
            n
        } else if let Ok(a) = dst.parse::<IpAddr>() {
            IpNet::from(a)
        } else {
            continue;
        };
        let dev = r
            .get("dev")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let gw = r
            .get("gateway")
            .and_then(Value::as_str)
            .or_else(|| {
                r.get("via")
                    .and_then(|v| v.get("host"))
                    .and_then(Value::as_str)
            })
            .and_then(|g| g.parse::<IpAddr>().ok());
        let route = match (r.get("type").and_then(Value::as_str), gw) {
            (Some("blackhole"), _) => KRoute::Blackhole,
            (None | Some("unicast"), Some(gw)) => KRoute::Via { gw, dev },
            (None | Some("unicast"), None) => KRoute::Dev(dev),
            (Some(t), _) => KRoute::Other(t.to_string()),
        };
        let protocol = r
            .get("protocol")
            .and_then(Value::as_str)
            .map(str::to_string);
        out.insert((table, dst), KRouteEntry { route, protocol });
    }
    out
}

fn parse_rules(v: &Value, v6: bool) -> Vec<RulePlan> {
    let mut out = Vec::new();
    for r in v.as_array().into_iter().flatten() {
        if r.get("priority").and_then(Value::as_u64) != Some(u64::from(RULE_PREF)) {
            continue;
        }
        let (Some(iif), Some(table)) = (
            r.get("iif").and_then(Value::as_str),
            r.get("table")
                .and_then(Value::as_str)
                .and_then(|t| match t {
                    "main" => Some(TABLE_MAIN),
                    n => n.parse().ok(),
                }),
        ) else {
            continue;
        };
        out.push(RulePlan {
            v6,
            iif: iif.to_string(),
            table,
        });
    }
    out
}

/// Whether vpcd manages routes in this table of a namespace with this role.
fn managed_route(role: &NsRole, table: u32, e: &KRouteEntry) -> bool {
    match role {
        NsRole::Router { .. } => {
            table == TABLE_PEERING || table == TABLE_IGW || table >= TABLE_BASE
        }
        _ => {
            table == TABLE_MAIN
                && matches!(e.protocol.as_deref(), None | Some("boot") | Some("static"))
                && !matches!(e.route, KRoute::Other(_))
        }
    }
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

/// `route replace` arguments for one planned route.
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

fn addr_line(op: &str, a: &AddrPlan) -> String {
    let mut s = format!("addr {op} {} dev {}", a.addr, a.dev);
    if op == "add" {
        if a.noprefixroute {
            s.push_str(" noprefixroute");
        }
        if a.addr.addr().is_ipv6() {
            s.push_str(" nodad");
        }
    }
    s
}

fn rule_line(op: &str, r: &RulePlan) -> String {
    format!(
        "rule {op} iif {} lookup {} pref {RULE_PREF}",
        r.iif, r.table
    )
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

/// Brings one namespace's links (settings), addresses, routes, rules and
/// nftables to the plan. Links must already exist (phase A).
pub(crate) fn configure(run: &Runner, ns: &NsPlan, parts: Parts) -> Result<(), CommandError> {
    if parts.sysctls {
        run.sysctl(&ns.name, &ns.sysctls)?;
    }
    if parts.kernel() {
        let router = matches!(ns.role, NsRole::Router { .. });
        let st = run.state(&ns.name, router && parts.rules)?;
        let mut lines = Vec::new();
        let mut lines6 = Vec::new();
        // Links this batch takes down: the kernel drops their routes itself.
        let mut going_down: BTreeSet<&str> = BTreeSet::new();
        if parts.links {
            let mut link_sysctls = Vec::new();
            for l in ns.links.values() {
                let Some(k) = st.links.get(&l.name) else {
                    return Err(CommandError::MissingLink {
                        ns: ns.name.clone(),
                        link: l.name.clone(),
                    });
                };
                if let Some(m) = l.mtu {
                    if k.mtu != m {
                        lines.push(format!("link set {} mtu {m}", l.name));
                    }
                }
                if let Some(a) = &l.alias {
                    if k.alias.as_ref() != Some(a) {
                        lines.push(format!("link set {} alias {a}", l.name));
                    }
                }
                if k.up != l.up {
                    let s = if l.up { "up" } else { "down" };
                    lines.push(format!("link set {} {s}", l.name));
                    if !l.up {
                        going_down.insert(&l.name);
                    }
                }
                if l.proxy_arp {
                    link_sysctls.push((format!("net.ipv4.conf.{}.proxy_arp", l.name), "1".into()));
                    link_sysctls
                        .push((format!("net.ipv4.neigh.{}.proxy_delay", l.name), "0".into()));
                }
            }
            run.sysctl(&ns.name, &link_sysctls)?;
        }
        if parts.addrs {
            let want: BTreeSet<(String, IpNet)> =
                ns.addrs.iter().map(|a| (a.dev.clone(), a.addr)).collect();
            for a in &ns.addrs {
                if !st.addrs.contains(&(a.dev.clone(), a.addr)) {
                    lines.push(addr_line("add", a));
                }
            }
            for (dev, addr) in &st.addrs {
                if !want.contains(&(dev.clone(), *addr)) && ns.links.contains_key(dev) {
                    lines.push(addr_line(
                        "del",
                        &AddrPlan {
                            dev: dev.clone(),
                            addr: *addr,
                            noprefixroute: false,
                        },
                    ));
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
                    lines.push(route_line(*t, dst, kind));
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
                    lines.push(format!("route del {dst} table {t}"));
                }
            }
        }
        if parts.rules && router {
            for r in &ns.rules {
                if !st.rules.contains(r) {
                    let l = rule_line("add", r);
                    if r.v6 {
                        lines6.push(l)
                    } else {
                        lines.push(l)
                    }
                }
            }
            for r in &st.rules {
                if !ns.rules.contains(r) {
                    let l = rule_line("del", r);
                    if r.v6 {
                        lines6.push(l)
                    } else {
                        lines.push(l)
                    }
                }
            }
        }
        run.ip_batch(&ns.name, false, &lines)?;
        run.ip_batch(&ns.name, true, &lines6)?;
        if parts.links {
            // Every planned link but `lo` is a veth (or a peering link type
            // that says how much it accepts).
            let links: Vec<&str> = ns.links.keys().map(String::as_str).collect();
            let links: Vec<&str> = links.into_iter().filter(|l| *l != "lo").collect();
            run.count(crate::offload::converge(
                &ns.name,
                &links,
                run.gso_ipv4_max,
            )?);
        }
    }
    if parts.nft && !ns.nft.is_empty() {
        let script: String = ns.nft.iter().map(|t| t.script()).collect();
        run.nft(&ns.name, &script)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_route_listing() {
        let v: Value = serde_json::from_str(
            r#"[{"type":"blackhole","dst":"10.9.0.0/16","table":"65540","flags":[]},
                {"dst":"10.1.0.0/16","via":{"family":"inet6","host":"fe80::2"},"dev":"p-1","table":"65540","flags":[]},
                {"dst":"default","gateway":"10.0.1.1","dev":"eth0","flags":[]},
                {"type":"blackhole","dst":"default","dev":"lo","table":"65540","metric":1024,"flags":[],"pref":"medium"},
                {"dst":"10.0.1.10","dev":"e-1","table":"250","flags":[]},
                {"dst":"fe80::/64","dev":"e-1","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},
                {"type":"local","dst":"::1","dev":"lo","table":"local","protocol":"kernel","metric":0,"flags":[],"pref":"medium"}]"#,
        )
        .unwrap();
        let r = parse_routes(&v);
        let get = |t: u32, d: &str| r.get(&(t, d.parse().unwrap())).map(|e| e.route.clone());
        assert_eq!(get(65540, "10.9.0.0/16"), Some(KRoute::Blackhole));
        assert_eq!(
            get(65540, "10.1.0.0/16"),
            Some(KRoute::Via {
                gw: "fe80::2".parse().unwrap(),
                dev: "p-1".into()
            })
        );
        assert_eq!(
            get(254, "0.0.0.0/0"),
            Some(KRoute::Via {
                gw: "10.0.1.1".parse().unwrap(),
                dev: "eth0".into()
            })
        );
        assert_eq!(get(65540, "::/0"), Some(KRoute::Blackhole));
        assert_eq!(get(250, "10.0.1.10/32"), Some(KRoute::Dev("e-1".into())));
        let role = NsRole::Instance {
            instance_id: "i-1".into(),
        };
        let kernel = r.get(&(254, "fe80::/64".parse().unwrap())).unwrap();
        assert!(!managed_route(&role, 254, kernel));
        let boot = r.get(&(254, "0.0.0.0/0".parse().unwrap())).unwrap();
        assert!(managed_route(&role, 254, boot));
    }

    #[test]
    fn renders_route_lines() {
        let dst: IpNet = "10.1.0.0/16".parse().unwrap();
        assert_eq!(
            route_line(
                65537,
                &dst,
                &RouteKind::Via {
                    gw: "fe80::2".parse().unwrap(),
                    dev: "p-1".into(),
                    onlink: false
                }
            ),
            "route replace 10.1.0.0/16 via inet6 fe80::2 dev p-1 table 65537"
        );
        let v6: IpNet = "2600::/56".parse().unwrap();
        assert_eq!(
            route_line(
                254,
                &v6,
                &RouteKind::Via {
                    gw: "fe80::1".parse().unwrap(),
                    dev: "g-1".into(),
                    onlink: false
                }
            ),
            "route replace 2600::/56 via fe80::1 dev g-1 table 254"
        );
        assert_eq!(
            route_line(251, &"::/0".parse().unwrap(), &RouteKind::Blackhole),
            "route replace blackhole ::/0 table 251"
        );
    }

    #[test]
    fn parses_rules_and_addresses() {
        let v: Value = serde_json::from_str(
            r#"[{"priority":0,"src":"all","table":"local"},{"priority":1000,"src":"all","iif":"e-x","iif_detached":null,"table":"65540"}]"#,
        )
        .unwrap();
        assert_eq!(
            parse_rules(&v, true),
            vec![RulePlan {
                v6: true,
                iif: "e-x".into(),
                table: 65540
            }]
        );
        let a: Value = serde_json::from_str(
            r#"[{"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet","local":"10.0.1.1","prefixlen":32},{"family":"inet6","local":"::1","prefixlen":128}]},
                {"ifname":"e-1","flags":["BROADCAST"],"mtu":9001,"addr_info":[{"family":"inet6","local":"fe80::1","prefixlen":64},{"family":"inet6","local":"fe80::a8bb:ccff:fe00:1","prefixlen":64}]}]"#,
        )
        .unwrap();
        let addrs: Vec<(String, String)> = parse_addrs(&a)
            .into_iter()
            .map(|(d, n)| (d, n.to_string()))
            .collect();
        assert_eq!(
            addrs,
            vec![
                ("e-1".to_string(), "fe80::1/64".to_string()),
                ("lo".to_string(), "10.0.1.1/32".to_string())
            ]
        );
        let links = parse_links(&a);
        assert_eq!(
            links["lo"],
            KLink {
                mtu: 65536,
                up: true,
                alias: None
            }
        );
        assert_eq!(
            links["e-1"],
            KLink {
                mtu: 9001,
                up: false,
                alias: None
            }
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
