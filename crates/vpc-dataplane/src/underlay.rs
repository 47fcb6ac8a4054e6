//! The VXLAN underlay between hosts (`docs/cluster.md`, "Hosts and the
//! VXLAN fabric").
//!
//! Every VPC router of a host that shares its World with other hosts gets
//! one kernel VXLAN device, `x-<vpc>` (VNI [`placement::vni`] of the VPC,
//! UDP 4789, MTU 9001). The device is created in the host's *underlay
//! namespace* (the namespace holding the host's underlay address: a lab
//! host's namespace, or the agent's own on a real machine), so its UDP
//! socket lives there, and is then moved into the router namespace: the
//! router sees an ordinary link, and the encapsulated packets leave from
//! the underlay address. On the link the router has its host's link-local
//! address ([`placement::host_link_local`]); broadcast and unknown frames
//! (neighbour discovery) go to every other host's underlay address (one
//! all-zero FDB entry per remote host), and the kernel learns each remote
//! router's MAC from what it receives.
//!
//! A router holding an interface that a route of the VPC targets (a
//! middlebox) also gets, for each such interface, a macvlan `m-<eni>` on its
//! `x-` link ([`placement::middlebox_link`]) with the address
//! [`placement::middlebox_address`] (no automatic link-local address):
//! other hosts' routes through that interface lead there, and what arrives
//! on it is handed to the interface (`placement`).
//!
//! The reconciler leaves `x-` and `m-` links alone (they are not among the
//! prefixes it owns); it plans only the routes over them and the rules
//! sending what arrives on them to table 250 or to a middlebox's table.
//! [`Underlay::converge`] keeps the devices and their FDB entries in step
//! with the routers and the hosts.
//!
//! [`lab_fabric_up`] builds a lab's simulated hosts: one namespace per host
//! with an `ul0` port on a bridge in the lab's underlay namespace, all of
//! them vpcd's own (nothing touches the machine's real interfaces).

use crate::error::CommandError;
use crate::kernel::{Runner, Tools, NETNS_DIR};
use crate::offload;
use crate::placement::{self, Placement, VXLAN_PORT};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The MTU of a VXLAN link: the routers' 9001.
const VXLAN_MTU: u32 = crate::names::MTU;
/// The underlay's MTU: a 9001-byte inner packet plus VXLAN's 50 bytes.
pub const UNDERLAY_MTU: u32 = 9100;
/// The lab host's port on the underlay bridge (inside the host namespace).
pub const HOST_LINK: &str = "ul0";
/// The nft table counting VXLAN datagrams in a lab host's namespace.
pub const HOST_TABLE: &str = "vpcdhost";

/// Keeps the VXLAN links of one host's routers.
#[derive(Debug)]
pub struct Underlay {
    run: Runner,
    bridge_tool: PathBuf,
    /// Where the devices are created (None: the agent's own namespace).
    netns: Option<String>,
    local: Ipv4Addr,
    /// The IPv4 GRO size of every link ([`offload::vxlan_gro_target`]).
    gro_size: u32,
    /// Whether the links were swept since the cluster shrank to this host
    /// alone (then nothing else needs their forwarding entries).
    swept_alone: std::sync::atomic::AtomicBool,
}

impl Underlay {
    pub fn new(netns: Option<String>, local: Ipv4Addr) -> Result<Underlay, CommandError> {
        let tools = Tools::find().map_err(|e| CommandError::Failed {
            cmd: "finding ip, nft, nsenter".into(),
            code: None,
            stderr: e.to_string(),
        })?;
        let bridge_tool = which("bridge").ok_or_else(|| CommandError::Failed {
            cmd: "bridge".into(),
            code: None,
            stderr: "iproute2's `bridge` is not installed".into(),
        })?;
        if let Some(ns) = &netns {
            if !Path::new(NETNS_DIR).join(ns).exists() {
                return Err(CommandError::Failed {
                    cmd: format!("underlay namespace {ns}"),
                    code: None,
                    stderr: "no such network namespace".into(),
                });
            }
        }
        Ok(Underlay {
            run: Runner::new(tools),
            bridge_tool,
            netns,
            local,
            gro_size: offload::BIG_TCP_SIZE,
            swept_alone: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// With the bulk-TCP fast path off (`VPCD_BIG_TCP=0`), the links keep
    /// the kernel's 64 KiB GRO size too.
    pub fn with_big_tcp(mut self, on: bool) -> Self {
        self.gro_size = if on {
            offload::BIG_TCP_SIZE
        } else {
            offload::LEGACY_SIZE
        };
        self
    }

    /// The IPv4 GRO size the links are given.
    pub fn gro_size(&self) -> u32 {
        self.gro_size
    }

    /// Makes the missing `x-` links of these routers and sets every link's
    /// FDB to the other hosts (flooding to each, and no entry, flooding or
    /// learned, towards an address that is no longer a host's, a removed
    /// host, whose neighbour entry goes too), and makes each router's
    /// middlebox links (removing those no longer wanted). Returns how many
    /// `x-` links were made (the reconciler's routes over them can go in now).
    pub fn converge(
        &self,
        placement: &Placement,
        routers: &[VxlanRouter],
    ) -> Result<usize, CommandError> {
        use std::sync::atomic::Ordering;
        if !placement.spans_hosts() {
            // Alone now: links left from when there were others keep no
            // entry towards them (once; links are made only with others).
            if !self.swept_alone.swap(true, Ordering::SeqCst) {
                for r in routers {
                    let link = placement::vxlan_link(&r.vpc);
                    let has_link = Path::new(NETNS_DIR).join(&r.ns).exists()
                        && self.run.links(&r.ns).is_ok_and(|l| l.contains_key(&link));
                    if has_link {
                        if let Err(e) = self.forget_others(&r.ns, &link, &BTreeSet::new()) {
                            tracing::warn!(ns = %r.ns, "VXLAN link: {e}");
                        }
                    }
                }
            }
            return Ok(0);
        }
        self.swept_alone.store(false, Ordering::SeqCst);
        let remotes = placement.remote_endpoints();
        let mut made = 0;
        let mut first_error = None;
        for r in routers {
            let ns = &r.ns;
            if !Path::new(NETNS_DIR).join(ns).exists() {
                continue;
            }
            let result = self
                .converge_router(ns, &r.vpc, &remotes)
                .and_then(|(made, links)| {
                    self.converge_middleboxes(ns, &r.vpc, &r.middleboxes, &links)
                        .map(|_| made)
                });
            match result {
                Ok(true) => made += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(ns = %ns, "VXLAN link: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if made == 0 => Err(e),
            _ => Ok(made),
        }
    }

    fn converge_router(
        &self,
        ns: &str,
        vpc: &str,
        remotes: &BTreeSet<Ipv4Addr>,
    ) -> Result<(bool, BTreeSet<String>), CommandError> {
        let link = placement::vxlan_link(vpc);
        let mut made = false;
        let links = self.run.links(ns)?;
        if !links.contains_key(&link) {
            let vni = placement::vni(vpc).to_string();
            let local = self.local.to_string();
            let port = VXLAN_PORT.to_string();
            let mtu = VXLAN_MTU.to_string();
            // A half-made device from an interrupted run blocks the name.
            let _ = self.run.ip(self.netns.as_deref(), &["link", "del", &link]);
            self.run.ip(
                self.netns.as_deref(),
                &[
                    "link", "add", &link, "mtu", &mtu, "type", "vxlan", "id", &vni, "local",
                    &local, "dstport", &port, "learning",
                ],
            )?;
            self.run.ip(
                self.netns.as_deref(),
                &["link", "set", &link, "netns", &format!("{NETNS_DIR}/{ns}")],
            )?;
            let ll = format!("{}/64", placement::host_link_local(self.local));
            self.run
                .ip(Some(ns), &["addr", "add", &ll, "dev", &link, "nodad"])?;
            self.run.ip(Some(ns), &["link", "set", &link, "up"])?;
            tracing::info!(ns = %ns, link = %link, vni = %vni, "made VXLAN link");
            made = true;
        }
        // What arrives is coalesced up to the fast path's size (a new link,
        // or one an earlier agent made with another setting).
        let stale = links
            .get(&link)
            .is_some_and(|l| offload::vxlan_gro_target(&l.sizes, self.gro_size).is_some());
        if made || stale {
            offload::converge_vxlan_gro(ns, &link, self.gro_size)?;
        }
        // Flooding (neighbour discovery) to every other host.
        let have = self.forget_others(ns, &link, remotes)?;
        for r in remotes.difference(&have) {
            self.bridge(
                ns,
                &[
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    &link,
                    "dst",
                    &r.to_string(),
                ],
            )?;
        }
        // The router's links now (a new `x-` link came without middlebox links).
        let names = links
            .into_keys()
            .filter(|n| !made || !n.starts_with("m-"))
            .collect();
        Ok((made, names))
    }

    /// Makes the router's wanted middlebox links on its `x-` link and
    /// removes the others (`links`: the router's links).
    fn converge_middleboxes(
        &self,
        ns: &str,
        vpc: &str,
        wanted: &BTreeSet<String>,
        links: &BTreeSet<String>,
    ) -> Result<(), CommandError> {
        let x = placement::vxlan_link(vpc);
        for name in links.iter().filter(|n| n.starts_with("m-")) {
            if !wanted.contains(name) {
                self.run.ip(Some(ns), &["link", "del", name])?;
                tracing::info!(ns = %ns, link = %name, "removed middlebox link");
            }
        }
        for name in wanted.iter().filter(|n| !links.contains(*n)) {
            let addr = format!("{}/64", placement::middlebox_address(name));
            for args in [
                vec![
                    "link", "add", "link", &x, "name", name, "type", "macvlan", "mode", "private",
                ],
                vec!["link", "set", name, "addrgenmode", "none"],
                vec!["addr", "add", &addr, "dev", name, "nodad"],
                vec!["link", "set", name, "up"],
            ] {
                self.run.ip(Some(ns), &args)?;
            }
            tracing::info!(ns = %ns, link = %name, address = %addr, "made middlebox link");
        }
        Ok(())
    }

    /// Removes every FDB entry of `link` towards an address not in
    /// `remotes` (flooding and learned ones), and the router's neighbour
    /// entry for each such host; returns the remote ends of the flooding
    /// entries that stay.
    fn forget_others(
        &self,
        ns: &str,
        link: &str,
        remotes: &BTreeSet<Ipv4Addr>,
    ) -> Result<BTreeSet<Ipv4Addr>, CommandError> {
        let entries = self.fdb_entries(ns, link)?;
        let mut gone: BTreeSet<Ipv4Addr> = BTreeSet::new();
        for (mac, dst) in &entries {
            if remotes.contains(dst) {
                continue;
            }
            self.bridge(
                ns,
                &["fdb", "del", mac, "dev", link, "dst", &dst.to_string()],
            )?;
            gone.insert(*dst);
        }
        for dst in &gone {
            let ll = placement::host_link_local(*dst).to_string();
            // Absent already (never resolved, or expired): nothing to do.
            let _ = self
                .run
                .ip(Some(ns), &["-6", "neigh", "del", &ll, "dev", link]);
            tracing::info!(ns = %ns, link = %link, host = %dst, "forgot a host that left the cluster");
        }
        Ok(entries
            .into_iter()
            .filter(|(mac, dst)| mac == "00:00:00:00:00:00" && remotes.contains(dst))
            .map(|(_, dst)| dst)
            .collect())
    }

    fn bridge(&self, ns: &str, args: &[&str]) -> Result<String, CommandError> {
        self.run.exec(ns, &self.bridge_tool, args, None)
    }

    /// The link's FDB entries that lead to a remote end: (MAC, address).
    fn fdb_entries(&self, ns: &str, link: &str) -> Result<Vec<(String, Ipv4Addr)>, CommandError> {
        let out = self.bridge(ns, &["-j", "fdb", "show", "dev", link])?;
        let entries: Vec<FdbEntry> = serde_json::from_str(out.trim()).unwrap_or_default();
        Ok(entries
            .into_iter()
            .filter_map(|e| Some((e.mac, e.dst?.parse().ok()?)))
            .collect())
    }
}

/// A router of this host, as [`Underlay::converge`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanRouter {
    /// Its namespace.
    pub ns: String,
    pub vpc: String,
    /// Its middlebox links ([`placement::middlebox_links`] of its plan).
    pub middleboxes: BTreeSet<String>,
}

#[derive(serde::Deserialize)]
struct FdbEntry {
    mac: String,
    #[serde(default)]
    dst: Option<String>,
}

fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

/// A lab's underlay namespace (the bridge joining its hosts).
pub fn lab_underlay_ns(lab_tag: &str) -> String {
    format!("vpcdlab{lab_tag}-ul")
}

/// A lab host's namespace (its underlay address, its VXLAN sockets).
pub fn lab_host_ns(lab_tag: &str, host: &str) -> String {
    format!("vpcdlab{lab_tag}-{host}")
}

/// The bridge port of a lab host.
pub fn lab_host_port(host: &str) -> String {
    format!("h-{host}")
}

/// A lab host's underlay address: 100.72.0.0/16, by its index.
pub fn lab_host_addr(index: usize) -> Ipv4Addr {
    let n = u32::try_from(index).unwrap_or(0) + 1;
    Ipv4Addr::from(0x6448_0000u32 | (n & 0xffff))
}

/// Makes a lab's underlay: a bridge namespace and one namespace per host
/// (`hosts`: name and underlay address) with its port on the bridge, and
/// in each host an nft table counting VXLAN datagrams in and out
/// (`vxlan_in`, `vxlan_out`).
pub fn lab_fabric_up(lab_tag: &str, hosts: &[(String, Ipv4Addr)]) -> Result<(), CommandError> {
    let tools = Tools::find().map_err(|e| CommandError::Failed {
        cmd: "finding ip, nft, nsenter".into(),
        code: None,
        stderr: e.to_string(),
    })?;
    let run = Runner::new(tools);
    let ul = lab_underlay_ns(lab_tag);
    let no_v6 = |ns: &str| {
        run.sysctl(
            ns,
            &[
                ("net.ipv6.conf.all.disable_ipv6".into(), "1".into()),
                ("net.ipv6.conf.default.disable_ipv6".into(), "1".into()),
            ],
        )
    };
    run.netns_add(&ul)?;
    no_v6(&ul)?;
    // The bridge stands for the hosts' physical switch: with br_netfilter
    // loaded, every frame it forwards would also walk the (empty) IP hooks
    // of its namespace, a per-packet cost no real switch puts on a host.
    let nf_calls = bridge_nf_call_sysctls();
    if Path::new(BRIDGE_NF_PROC).exists() {
        run.sysctl(&ul, &nf_calls)?;
    }
    let mtu = UNDERLAY_MTU.to_string();
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["link", "add", "br0", "mtu", &mtu, "type", "bridge"],
        vec!["link", "set", "br0", "up"],
    ] {
        run.ip(Some(&ul), &args)?;
    }
    for (name, addr) in hosts {
        let ns = lab_host_ns(lab_tag, name);
        let port = lab_host_port(name);
        run.netns_add(&ns)?;
        no_v6(&ns)?;
        run.create_veth(&ul, &port, &ns, HOST_LINK, UNDERLAY_MTU)?;
        run.ip(Some(&ul), &["link", "set", &port, "master", "br0", "up"])?;
        let cidr = format!("{addr}/16");
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &cidr, "dev", HOST_LINK],
            vec!["link", "set", HOST_LINK, "up"],
        ] {
            run.ip(Some(&ns), &args)?;
        }
        run.nft(&ns, &host_counters())?;
    }
    Ok(())
}

/// Where br_netfilter shows its switch (absent when the module is not
/// loaded: then the bridge calls no IP hooks anyway).
const BRIDGE_NF_PROC: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// The sysctls that stop a lab's bridge from calling the IP, IPv6 and ARP
/// netfilter hooks (per namespace since Linux 5.3).
fn bridge_nf_call_sysctls() -> Vec<(String, String)> {
    ["iptables", "ip6tables", "arptables"]
        .iter()
        .map(|t| (format!("net.bridge.bridge-nf-call-{t}"), "0".to_string()))
        .collect()
}

/// The counters of VXLAN datagrams on a lab host's underlay port.
fn host_counters() -> String {
    format!(
        "table inet {HOST_TABLE} {{}}\ndelete table inet {HOST_TABLE}\ntable inet {HOST_TABLE} {{\n  counter vxlan_in {{}}\n  counter vxlan_out {{}}\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"{HOST_LINK}\" udp dport {VXLAN_PORT} counter name vxlan_in\n  }}\n  chain output {{\n    type filter hook output priority 0; policy accept;\n    oifname \"{HOST_LINK}\" udp dport {VXLAN_PORT} counter name vxlan_out\n  }}\n}}\n"
    )
}

/// Sets a lab host's bridge port down (`up == false`: the host is cut off
/// the underlay) or up again.
pub fn lab_host_link(lab_tag: &str, host: &str, up: bool) -> Result<(), CommandError> {
    let tools = Tools::find().map_err(|e| CommandError::Failed {
        cmd: "finding ip".into(),
        code: None,
        stderr: e.to_string(),
    })?;
    let run = Runner::new(tools);
    run.ip(
        Some(&lab_underlay_ns(lab_tag)),
        &[
            "link",
            "set",
            &lab_host_port(host),
            if up { "up" } else { "down" },
        ],
    )
    .map(|_| ())
}

/// Removes a lab's underlay and host namespaces (whatever of them exists).
pub fn lab_fabric_down(lab_tag: &str, hosts: &[String]) -> Result<(), CommandError> {
    let tools = Tools::find().map_err(|e| CommandError::Failed {
        cmd: "finding ip".into(),
        code: None,
        stderr: e.to_string(),
    })?;
    let run = Runner::new(tools);
    let mut names: BTreeSet<String> = hosts.iter().map(|h| lab_host_ns(lab_tag, h)).collect();
    names.insert(lab_underlay_ns(lab_tag));
    let mut first = None;
    for ns in &names {
        if Path::new(NETNS_DIR).join(ns).exists() {
            if let Err(e) = run.netns_del(ns) {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}
