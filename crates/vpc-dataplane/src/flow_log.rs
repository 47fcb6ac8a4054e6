//! The flow-log collector: ACCEPT records measured from each router
//! namespace's conntrack table (with `nf_conntrack_acct` on, its per-
//! direction packet and byte counters), REJECT records from the packets the
//! security-group and network-ACL rules drop (each drop rule logs to NFLOG
//! group [`DROP_LOG_GROUP`] with a prefix naming what dropped; the collector
//! reads the group in-process over netlink), aggregated per flow log over
//! its aggregation interval and written as S3-layout gzip files or a local
//! file (`docs/metering.md`).
//!
//! Every packet between interfaces passes a router namespace, so one
//! conntrack entry there describes a connection as both of its interfaces
//! saw it: the source interface sent the original direction and received
//! the reply, the destination interface the other way round. Each poll
//! reads the table (`conntrack -L -o extended,id`) and adds what every
//! entry's counters moved since the last read to the open window. A TCP
//! entry stays in the table for two minutes after it closes (`TIME_WAIT`)
//! and a UDP one for thirty seconds, so a poll every second sees a
//! connection's final counters.

use crate::error::CommandError;
use crate::kernel::Runner;
use crate::names;
pub use crate::nft::DROP_LOG_GROUP;
use netlink_sys::{Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use vpc_model::ops::flow_log::{self as model, FlowRecord};
use vpc_model::{FlowLog, NetworkInterface, World};

/// One direction of a conntrack tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// One conntrack entry with accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub id: u64,
    pub protocol: u8,
    /// The TCP state (`ESTABLISHED`, `TIME_WAIT`…), for TCP.
    pub tcp_state: Option<String>,
    pub orig: Tuple,
    pub reply: Tuple,
    /// (packets, bytes) in the original and the reply direction.
    pub orig_count: (u64, u64),
    pub reply_count: (u64, u64),
}

/// Parses `conntrack -L -o extended,id` output; lines it cannot read are skipped.
pub fn parse_conntrack(text: &str) -> Vec<CtEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// One direction of an entry while it is being read.
#[derive(Default)]
struct HalfTuple {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: u16,
    dport: u16,
    packets: u64,
    bytes: u64,
}

fn parse_line(line: &str) -> Option<CtEntry> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    // ipv4 2 tcp 6 117 TIME_WAIT src=…
    let protocol: u8 = tokens.get(3)?.parse().ok()?;
    let tcp_state = tokens
        .get(5)
        .filter(|t| !t.contains('='))
        .map(|t| t.to_string());
    let mut tuples: Vec<HalfTuple> = Vec::new();
    let mut trailer = false;
    let mut id = None;
    for t in &tokens[4..] {
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        if matches!(
            k,
            "mark" | "use" | "zone" | "secctx" | "delta-time" | "timeout"
        ) {
            trailer = true;
        }
        if trailer {
            if k == "id" {
                id = v.parse().ok();
            }
            continue;
        }
        if k == "src" {
            tuples.push(HalfTuple::default());
        }
        let cur = tuples.last_mut()?;
        match k {
            "src" => cur.src = v.parse().ok(),
            "dst" => cur.dst = v.parse().ok(),
            "sport" => cur.sport = v.parse().ok()?,
            "dport" => cur.dport = v.parse().ok()?,
            "packets" => cur.packets = v.parse().ok()?,
            "bytes" => cur.bytes = v.parse().ok()?,
            _ => {}
        }
    }
    let [o, r] = <[_; 2]>::try_from(tuples).ok()?;
    let tuple = |t: &HalfTuple| {
        Some(Tuple {
            src: t.src?,
            dst: t.dst?,
            sport: t.sport,
            dport: t.dport,
        })
    };
    Some(CtEntry {
        id: id?,
        protocol,
        tcp_state: if protocol == 6 { tcp_state } else { None },
        orig: tuple(&o)?,
        reply: tuple(&r)?,
        orig_count: (o.packets, o.bytes),
        reply_count: (r.packets, r.bytes),
    })
}

/// What a record is keyed by inside one window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RecordKey {
    eni: String,
    ingress: bool,
    src: IpAddr,
    dst: IpAddr,
    pkt_src: IpAddr,
    pkt_dst: IpAddr,
    sport: u16,
    dport: u16,
    protocol: u8,
    action: &'static str,
    dropped_by: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Totals {
    packets: u64,
    bytes: u64,
    start: i64,
    end: i64,
    tcp_flags: u8,
}

/// One flow log's open aggregation window.
#[derive(Debug, Default)]
struct Window {
    opened: i64,
    records: BTreeMap<RecordKey, Totals>,
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Records written, per flow log.
    pub written: BTreeMap<String, usize>,
    /// Files written (S3 objects or local files appended to).
    pub files: Vec<PathBuf>,
}

/// The collector. It keeps the last counters of every conntrack entry it
/// has seen and an open window per flow log.
#[derive(Debug)]
pub struct Collector {
    run: Runner,
    tag: String,
    out_dir: PathBuf,
    /// When set, windows are written this often instead of every
    /// `MaxAggregationInterval` (for tests; the records mean the same).
    flush_every: Option<i64>,
    acct_on: BTreeSet<String>,
    /// Router namespaces whose table has been read since they became
    /// covered. The first read only takes baselines: after a restart of
    /// vpcd, the entries' counters include what was already written.
    baselined: BTreeSet<String>,
    /// What each conntrack entry (namespace, id, original tuple) counted
    /// at the last read.
    last: HashMap<(String, u64, Tuple), LastRead>,
    windows: BTreeMap<String, Window>,
    files_written: u64,
    /// Router namespace → its NFLOG socket (and the namespace file's inode,
    /// so a re-created namespace gets a new socket).
    drop_logs: BTreeMap<String, (u64, Socket)>,
    /// On a cluster's host, the placement: only the interfaces this host
    /// holds are logged here (see [`Collector::set_placement`]).
    placement: Option<crate::placement::Placement>,
}

/// A conntrack entry's (packets, bytes) per direction and TCP state at a read.
#[derive(Debug, Clone, Default)]
struct LastRead {
    orig: (u64, u64),
    reply: (u64, u64),
    tcp_state: Option<String>,
}

/// An interface a flow log covers, with the flow logs that cover it.
struct Covered<'w> {
    eni: &'w NetworkInterface,
    flow_logs: Vec<&'w FlowLog>,
}

impl Collector {
    /// `out_dir` is the data directory's `flow-logs` directory.
    pub fn new(run: Runner, tag: String, out_dir: PathBuf, flush_every: Option<i64>) -> Collector {
        Collector {
            run,
            tag,
            out_dir,
            flush_every,
            acct_on: BTreeSet::new(),
            baselined: BTreeSet::new(),
            last: HashMap::new(),
            windows: BTreeMap::new(),
            files_written: 0,
            drop_logs: BTreeMap::new(),
            placement: None,
        }
    }

    /// Makes this the collector of one host of a cluster (`docs/cluster.md`).
    /// Every host has every VPC's router, and a connection between hosts
    /// passes a router of each VPC on both; but the router of an instance's
    /// own VPC on the instance's host sees the connection whole (both
    /// directions) and takes its ingress decisions. So a host logs the
    /// interfaces attached to instances it holds (the host each was
    /// placed on), and unattached ones (a NAT gateway's, which acts on every host
    /// for the instances there): each record is written once, by one host.
    pub fn set_placement(&mut self, placement: Option<crate::placement::Placement>) {
        self.placement = placement;
    }

    fn logs_here(&self, w: &World, eni: &NetworkInterface) -> bool {
        match &self.placement {
            None => true,
            Some(p) => {
                eni.attachment.is_none()
                    || p.host_of_interface(w, eni)
                        .is_some_and(|h| h.name == p.local)
            }
        }
    }

    /// Reads every covered router's conntrack table, adds the movement to
    /// the windows, and writes the windows that are due. `now` is Unix seconds.
    pub fn poll(&mut self, w: &World, now: i64) -> Result<PollReport, CommandError> {
        let live: BTreeSet<&str> = w.iter::<FlowLog>().map(|f| f.meta.id.as_str()).collect();
        // A deleted flow log writes nothing more, not even its open window.
        self.windows.retain(|id, _| live.contains(id.as_str()));
        if live.is_empty() {
            self.last.clear();
            self.drop_logs.clear();
            self.baselined.clear();
            return Ok(PollReport::default());
        }
        let mut per_vpc: BTreeMap<&str, Vec<Covered<'_>>> = BTreeMap::new();
        for eni in w
            .iter::<NetworkInterface>()
            .filter(|e| self.logs_here(w, e))
        {
            let fls: Vec<&FlowLog> = w
                .iter::<FlowLog>()
                .filter(|f| model::covers(f, eni))
                .collect();
            if !fls.is_empty() {
                per_vpc
                    .entry(eni.vpc_id.as_str())
                    .or_default()
                    .push(Covered {
                        eni,
                        flow_logs: fls,
                    });
            }
        }
        let mut seen_keys = BTreeSet::new();
        let mut first_error = None;
        for (vpc_id, covered) in &per_vpc {
            let ns = names::router_ns(&self.tag, vpc_id);
            if !Path::new("/run/netns").join(&ns).exists() {
                continue;
            }
            if !self.acct_on.contains(&ns) {
                // Counters exist only for connections made after this.
                match self.run.sysctl(
                    &ns,
                    &[("net.netfilter.nf_conntrack_acct".into(), "1".into())],
                ) {
                    Ok(()) => {
                        self.acct_on.insert(ns.clone());
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                        continue;
                    }
                }
            }
            match self.drain_drops(&ns) {
                Ok(drops) => {
                    let unlogged = unlogged_addresses(w, vpc_id);
                    for d in drops {
                        if unlogged.contains(&d.src) || unlogged.contains(&d.dst) {
                            continue;
                        }
                        self.account_drop(covered, &d, now);
                    }
                }
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "cannot read dropped packets for flow logs");
                    self.drop_logs.remove(&ns);
                }
            }
            let conntrack = self.run.tools().conntrack.clone();
            let text = match self
                .run
                .exec(&ns, &conntrack, &["-L", "-o", "extended,id"], None)
            {
                Ok(t) => t,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let unlogged = unlogged_addresses(w, vpc_id);
            let first_read = self.baselined.insert(ns.clone());
            for ct in parse_conntrack(&text) {
                let key = (ns.clone(), ct.id, ct.orig);
                let before = self.last.get(&key).cloned();
                let is_new = before.is_none();
                let LastRead {
                    orig: o0,
                    reply: r0,
                    tcp_state: state0,
                } = before.unwrap_or_default();
                seen_keys.insert(key.clone());
                self.last.insert(
                    key,
                    LastRead {
                        orig: ct.orig_count,
                        reply: ct.reply_count,
                        tcp_state: ct.tcp_state.clone(),
                    },
                );
                if first_read || unlogged.contains(&ct.orig.dst) || unlogged.contains(&ct.orig.src)
                {
                    continue;
                }
                let d_orig = (
                    ct.orig_count.0.saturating_sub(o0.0),
                    ct.orig_count.1.saturating_sub(o0.1),
                );
                let d_reply = (
                    ct.reply_count.0.saturating_sub(r0.0),
                    ct.reply_count.1.saturating_sub(r0.1),
                );
                let (f_orig, f_reply) = tcp_flags(&ct, is_new, state0.as_deref());
                self.account(covered, &ct, d_orig, d_reply, (f_orig, f_reply), now);
            }
        }
        self.last.retain(|k, _| seen_keys.contains(k));
        let routers: BTreeSet<String> = per_vpc
            .keys()
            .map(|v| names::router_ns(&self.tag, v))
            .collect();
        self.drop_logs.retain(|ns, _| routers.contains(ns));
        self.baselined.retain(|ns| routers.contains(ns));
        let report = self.flush_due(w, now);
        match first_error {
            Some(e) if report.written.is_empty() => Err(e),
            _ => Ok(report),
        }
    }

    fn add(&mut self, fl: &FlowLog, key: RecordKey, count: (u64, u64), flags: u8, now: i64) {
        if count.0 == 0 || !model::records(fl, key.action) {
            return;
        }
        let win = self
            .windows
            .entry(fl.meta.id.clone())
            .or_insert_with(|| Window {
                opened: now,
                records: BTreeMap::new(),
            });
        let t = win.records.entry(key).or_insert_with(|| Totals {
            start: now,
            ..Totals::default()
        });
        t.packets += count.0;
        t.bytes += count.1;
        t.end = now;
        t.tcp_flags |= flags;
    }

    fn account(
        &mut self,
        covered: &[Covered<'_>],
        ct: &CtEntry,
        d_orig: (u64, u64),
        d_reply: (u64, u64),
        flags: (u8, u8),
        now: i64,
    ) {
        // An IPv4 flow's interface holds an IPv4 address (IPv6-only ones
        // have none and so see no IPv4 flows); the packet's own address
        // stands in should that ever not hold.
        let ip_of = |c: &Covered<'_>, seen: IpAddr| c.eni.primary_ip().map_or(seen, IpAddr::V4);
        let holds = |c: &Covered<'_>, a: IpAddr| match a {
            IpAddr::V4(v4) => c.eni.private_ips.iter().any(|p| p.ip == v4),
            IpAddr::V6(v6) => c.eni.ipv6.contains(&v6),
        };
        // The interface that opened the connection.
        if let Some(c) = covered.iter().find(|c| holds(c, ct.orig.src)) {
            let me = if ct.orig.src.is_ipv4() {
                ip_of(c, ct.orig.src)
            } else {
                ct.orig.src
            };
            let out = RecordKey {
                eni: c.eni.meta.id.clone(),
                ingress: false,
                src: me,
                dst: ct.orig.dst,
                pkt_src: ct.orig.src,
                pkt_dst: ct.orig.dst,
                sport: ct.orig.sport,
                dport: ct.orig.dport,
                protocol: ct.protocol,
                action: "ACCEPT",
                dropped_by: None,
            };
            let back = RecordKey {
                ingress: true,
                src: ct.orig.dst,
                dst: me,
                pkt_src: ct.reply.src,
                pkt_dst: ct.orig.src,
                sport: ct.orig.dport,
                dport: ct.orig.sport,
                ..out.clone()
            };
            for fl in &c.flow_logs {
                self.add(fl, out.clone(), d_orig, flags.0, now);
                self.add(fl, back.clone(), d_reply, flags.1, now);
            }
        }
        // The interface that answered (after any DNAT, the reply's source).
        if let Some(c) = covered.iter().find(|c| holds(c, ct.reply.src)) {
            let me = if ct.reply.src.is_ipv4() {
                ip_of(c, ct.reply.src)
            } else {
                ct.reply.src
            };
            let inbound = RecordKey {
                eni: c.eni.meta.id.clone(),
                ingress: true,
                src: ct.orig.src,
                dst: me,
                pkt_src: ct.orig.src,
                pkt_dst: ct.reply.src,
                sport: ct.orig.sport,
                dport: ct.orig.dport,
                protocol: ct.protocol,
                action: "ACCEPT",
                dropped_by: None,
            };
            let answer = RecordKey {
                ingress: false,
                src: me,
                dst: ct.orig.src,
                pkt_src: ct.reply.src,
                pkt_dst: ct.reply.dst,
                sport: ct.reply.sport,
                dport: ct.reply.dport,
                ..inbound.clone()
            };
            for fl in &c.flow_logs {
                self.add(fl, inbound.clone(), d_orig, flags.0, now);
                self.add(fl, answer.clone(), d_reply, flags.1, now);
            }
        }
    }

    /// The packets dropped in `ns` since the last call (opening its NFLOG
    /// socket the first time).
    fn drain_drops(&mut self, ns: &str) -> std::io::Result<Vec<Dropped>> {
        let path = Path::new(crate::kernel::NETNS_DIR).join(ns);
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path)?);
        if self.drop_logs.get(ns).is_none_or(|(i, _)| *i != ino) {
            self.drop_logs.remove(ns);
            let socket = open_drop_log(&path)?;
            self.drop_logs.insert(ns.to_string(), (ino, socket));
        }
        let Some((_, socket)) = self.drop_logs.get(ns) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        loop {
            buf.clear();
            match socket.recv(&mut buf, libc::MSG_DONTWAIT) {
                Ok(_) => parse_nflog(&buf, &mut out)?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The receive buffer overflowed: some drops are lost (AWS's
                // SKIPDATA); the socket goes on.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn account_drop(&mut self, covered: &[Covered<'_>], d: &Dropped, now: i64) {
        let holds = |c: &Covered<'_>, a: IpAddr| match a {
            IpAddr::V4(v4) => c.eni.private_ips.iter().any(|p| p.ip == v4),
            IpAddr::V6(v6) => c.eni.ipv6.contains(&v6),
        };
        let ingress = d.direction == "in";
        let at = if ingress { d.dst } else { d.src };
        let Some(c) = covered.iter().find(|c| holds(c, at)) else {
            return;
        };
        let me = match at {
            IpAddr::V4(_) => c.eni.primary_ip().map_or(at, IpAddr::V4),
            v6 => v6,
        };
        let key = RecordKey {
            eni: c.eni.meta.id.clone(),
            ingress,
            src: if ingress { d.src } else { me },
            dst: if ingress { me } else { d.dst },
            pkt_src: d.src,
            pkt_dst: d.dst,
            sport: d.sport,
            dport: d.dport,
            protocol: d.protocol,
            action: "REJECT",
            dropped_by: Some(d.dropped_by.clone()),
        };
        for fl in &c.flow_logs {
            self.add(fl, key.clone(), (1, u64::from(d.length)), d.tcp_flags, now);
        }
    }

    /// Writes every window whose interval (or the test flush period) is over.
    fn flush_due(&mut self, w: &World, now: i64) -> PollReport {
        let mut report = PollReport::default();
        let due: Vec<String> = self
            .windows
            .iter()
            .filter(|(id, win)| {
                let interval = w
                    .get::<FlowLog>(id)
                    .map(|f| i64::from(f.max_aggregation_interval))
                    .unwrap_or(600);
                now - win.opened >= self.flush_every.unwrap_or(interval)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let (Some(win), Some(fl)) = (self.windows.remove(&id), w.get::<FlowLog>(&id)) else {
                continue;
            };
            if win.records.is_empty() {
                continue;
            }
            match self.write(w, fl, &win) {
                Ok(files) => {
                    report.written.insert(id.clone(), win.records.len());
                    report.files.extend(files);
                }
                Err(e) => {
                    tracing::warn!(flow_log = %id, error = %e, "cannot write flow-log records")
                }
            }
        }
        report
    }

    fn write(&mut self, w: &World, fl: &FlowLog, win: &Window) -> std::io::Result<Vec<PathBuf>> {
        let fields =
            model::parse_format(&fl.log_format).map_err(|e| std::io::Error::other(e.message))?;
        let lines: Vec<(i64, String)> = win
            .records
            .iter()
            .filter_map(|(k, t)| {
                let eni = w.get::<NetworkInterface>(&k.eni)?;
                let az_id = w
                    .get::<vpc_model::Subnet>(&eni.subnet_id)
                    .map(|s| s.az_id.clone())
                    .unwrap_or_default();
                let r = FlowRecord {
                    account_id: eni.meta.owner.clone(),
                    interface_id: k.eni.clone(),
                    srcaddr: k.src,
                    dstaddr: k.dst,
                    pkt_srcaddr: k.pkt_src,
                    pkt_dstaddr: k.pkt_dst,
                    srcport: k.sport,
                    dstport: k.dport,
                    protocol: k.protocol,
                    packets: t.packets,
                    bytes: t.bytes,
                    start: t.start,
                    end: t.end,
                    action: k.action,
                    vpc_id: eni.vpc_id.clone(),
                    subnet_id: eni.subnet_id.clone(),
                    instance_id: eni.attachment.as_ref().map(|a| a.instance_id.clone()),
                    tcp_flags: (k.protocol == 6).then_some(t.tcp_flags),
                    region: eni.meta.region.clone(),
                    az_id,
                    ingress: k.ingress,
                    traffic_path: (!k.ingress).then(|| traffic_path(w, eni, k.dst)),
                    dropped_by: k.dropped_by.clone(),
                };
                Some((t.end, model::render(&fields, &r)))
            })
            .collect();
        let mut files = Vec::new();
        if fl.destination_type == "s3" {
            let (bucket, folder) = model::parse_s3_arn(&fl.destination)
                .map_err(|e| std::io::Error::other(e.message))?;
            // One object per 5-minute slot of the records' end times.
            let mut slots: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
            for (end, line) in &lines {
                slots
                    .entry(end - end.rem_euclid(300))
                    .or_default()
                    .push(line);
            }
            for (slot, lines) in slots {
                self.files_written += 1;
                let hash = format!(
                    "{:08x}",
                    names::fnv1a32(&format!(
                        "{}:{}:{}",
                        fl.meta.id, win.opened, self.files_written
                    ))
                );
                let path = self
                    .out_dir
                    .join("s3")
                    .join(&bucket)
                    .join(model::s3_key(fl, &folder, slot, &hash));
                let mut text = model::header(&fields);
                text.push('\n');
                for l in lines {
                    text.push_str(l);
                    text.push('\n');
                }
                write_gzip(&path, text.as_bytes())?;
                files.push(path);
            }
        } else {
            let path = self.out_dir.join("files").join(&fl.destination);
            std::fs::create_dir_all(self.out_dir.join("files"))?;
            let fresh = !path.exists();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let mut text = String::new();
            if fresh {
                text.push_str(&model::header(&fields));
                text.push('\n');
            }
            for (_, l) in &lines {
                text.push_str(l);
                text.push('\n');
            }
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            files.push(path);
        }
        Ok(files)
    }
}

/// One packet a security group or network ACL dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// `in` or `out`: entering the destination or leaving the source.
    pub direction: String,
    /// What dropped it: `sg-a,sg-b` (the interface's groups) or
    /// `acl-x:<rule number or *>`.
    pub dropped_by: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    /// The IP packet's length.
    pub length: u32,
    /// FIN, SYN, RST and SYN-ACK as AWS ORs them.
    pub tcp_flags: u8,
}

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NLMSG_ERROR: u16 = 2;

/// A netlink socket in the namespace at `path`, bound to [`DROP_LOG_GROUP`]
/// and copying the first 128 bytes of every logged packet.
fn open_drop_log(path: &Path) -> std::io::Result<Socket> {
    let file = std::fs::File::open(path)?;
    // A socket belongs to the namespace of the thread that made it; this
    // thread ends right after.
    let mut socket = std::thread::scope(|s| {
        s.spawn(|| {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            Socket::new(NETLINK_NETFILTER)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the setns thread panicked")))
    })?;
    socket.bind(&SocketAddr::new(0, 0))?;
    socket.set_rx_buf_sz(4 << 20)?;
    let mut attrs = Vec::new();
    put_attr(&mut attrs, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    let mut mode = 128u32.to_be_bytes().to_vec();
    mode.extend([NFULNL_COPY_PACKET, 0]);
    put_attr(&mut attrs, NFULA_CFG_MODE, &mode);
    let msg = nfnl_message(NFULNL_MSG_CONFIG, DROP_LOG_GROUP, &attrs);
    socket.send(&msg, 0)?;
    // The acknowledgement: zero, or why the kernel refused.
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    socket.recv(&mut buf, 0)?;
    let mut none = Vec::new();
    parse_nflog(&buf, &mut none)?;
    socket.set_non_blocking(true)?;
    Ok(socket)
}

fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend((len as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

fn nfnl_message(msg: u16, group: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend((len as u32).to_ne_bytes());
    out.extend(((NFNL_SUBSYS_ULOG << 8) | msg).to_ne_bytes());
    // NLM_F_REQUEST | NLM_F_ACK
    out.extend(5u16.to_ne_bytes());
    out.extend(1u32.to_ne_bytes());
    out.extend(0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, the group (big-endian)
    out.extend([0u8, 0u8]);
    out.extend(group.to_be_bytes());
    out.extend(attrs);
    out
}

/// The dropped packets in a buffer of netlink messages; an error message
/// with a non-zero code is an error.
pub fn parse_nflog(buf: &[u8], out: &mut Vec<Dropped>) -> std::io::Result<()> {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let msg = &buf[off..off + len];
        let kind = u16_at(msg, 4);
        if kind == NLMSG_ERROR && msg.len() >= 20 {
            let code = i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]);
            if code != 0 {
                return Err(std::io::Error::from_raw_os_error(-code));
            }
        } else if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET && msg.len() >= 20 {
            let mut prefix = None;
            let mut payload = None;
            let mut a = 20;
            while a + 4 <= msg.len() {
                let alen = u16_at(msg, a) as usize;
                let akind = u16_at(msg, a + 2) & 0x3fff;
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                let body = &msg[a + 4..a + alen];
                match akind {
                    NFULA_PREFIX => {
                        let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
                        prefix = Some(String::from_utf8_lossy(&body[..end]).into_owned());
                    }
                    NFULA_PAYLOAD => payload = Some(body),
                    _ => {}
                }
                a += (alen + 3) & !3;
            }
            if let (Some(p), Some(pkt)) = (prefix, payload) {
                if let Some(d) = dropped(&p, pkt) {
                    out.push(d);
                }
            }
        }
        off += (len + 3) & !3;
    }
    Ok(())
}

/// A dropped packet from its log prefix and its first bytes.
pub fn dropped(prefix: &str, pkt: &[u8]) -> Option<Dropped> {
    let mut parts = prefix.splitn(3, ':');
    let (kind, direction, what) = (parts.next()?, parts.next()?, parts.next()?);
    if !matches!(kind, "sg" | "nacl") || !matches!(direction, "in" | "out") {
        return None;
    }
    let version = pkt.first()? >> 4;
    let (src, dst, protocol, length, l4): (IpAddr, IpAddr, u8, u32, usize) = match version {
        4 if pkt.len() >= 20 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let src: [u8; 4] = pkt[12..16].try_into().ok()?;
            let dst: [u8; 4] = pkt[16..20].try_into().ok()?;
            let len = u32::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            (src.into(), dst.into(), pkt[9], len, ihl)
        }
        6 if pkt.len() >= 40 => {
            let src: [u8; 16] = pkt[8..24].try_into().ok()?;
            let dst: [u8; 16] = pkt[24..40].try_into().ok()?;
            let len = 40 + u32::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            (src.into(), dst.into(), pkt[6], len, 40)
        }
        _ => return None,
    };
    let port = |i: usize| {
        pkt.get(l4 + i..l4 + i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .unwrap_or(0)
    };
    let (sport, dport) = if matches!(protocol, 6 | 17 | 132) {
        (port(0), port(2))
    } else {
        (0, 0)
    };
    let tcp_flags = if protocol == 6 {
        let f = pkt.get(l4 + 13).copied().unwrap_or(0);
        (f & 0x07) | if f & 0x12 == 0x12 { 0x10 } else { 0 }
    } else {
        0
    };
    Some(Dropped {
        direction: direction.to_string(),
        dropped_by: what.to_string(),
        src,
        dst,
        sport,
        dport,
        protocol,
        length,
        tcp_flags,
    })
}

/// The reply-side flags are the SYN-ACK when the connection got past
/// SYN_SENT; the closing states add FIN. Derived from the kernel's TCP
/// state machine, as the conntrack table does not keep flags.
fn tcp_flags(ct: &CtEntry, is_new: bool, before: Option<&str>) -> (u8, u8) {
    let Some(state) = ct.tcp_state.as_deref() else {
        return (0, 0);
    };
    let closing = |s: &str| {
        matches!(
            s,
            "FIN_WAIT" | "CLOSE_WAIT" | "LAST_ACK" | "TIME_WAIT" | "CLOSE"
        )
    };
    let mut orig = 0;
    let mut reply = 0;
    if is_new {
        orig |= 2;
        if state != "SYN_SENT" {
            reply |= 18;
        }
    }
    if closing(state) && !before.is_some_and(closing) {
        orig |= 1;
        reply |= 1;
    }
    (orig, reply)
}

/// Addresses AWS never logs traffic to: the Amazon DNS resolver (VPC base
/// + 2, 169.254.169.253 and fd00:ec2::253), instance metadata and time sync.
fn unlogged_addresses(w: &World, vpc_id: &str) -> BTreeSet<IpAddr> {
    let mut out: BTreeSet<IpAddr> = [
        "169.254.169.253",
        "169.254.169.254",
        "169.254.169.123",
        "fd00:ec2::253",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect();
    if let Some(vpc) = w.get::<vpc_model::Vpc>(vpc_id) {
        for c in &vpc.cidrs {
            let base = u32::from(c.cidr.network());
            out.insert(IpAddr::V4((base + 2).into()));
        }
    }
    out
}

/// AWS's traffic-path code of an egress record: 1 within the VPC, 4 over a
/// peering in the region, 5 across regions, 2 to anything else (internet
/// or NAT gateway).
fn traffic_path(w: &World, eni: &NetworkInterface, dst: IpAddr) -> u8 {
    let IpAddr::V4(d) = dst else { return 1 };
    let in_vpc = |vpc_id: &str| {
        w.get::<vpc_model::Vpc>(vpc_id)
            .is_some_and(|v| v.cidrs.iter().any(|c| c.cidr.contains(&d)))
    };
    if in_vpc(&eni.vpc_id) {
        return 1;
    }
    let peer = w
        .iter::<NetworkInterface>()
        .find(|o| o.private_ips.iter().any(|p| p.ip == d));
    match peer {
        Some(p) if p.meta.region == eni.meta.region => 4,
        Some(_) => 5,
        None => 2,
    }
}

fn write_gzip(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let f = std::fs::File::create(&tmp)?;
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    gz.write_all(data)?;
    let f = gz.finish()?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_lines_parse_with_both_directions_counters_and_the_id() {
        let text = "ipv4     2 tcp      6 117 TIME_WAIT src=10.0.0.10 dst=10.0.1.20 sport=40000 dport=8080 packets=6 bytes=412 src=10.0.1.20 dst=10.0.0.10 sport=8080 dport=40000 packets=4 bytes=1264 [ASSURED] mark=0 use=1 id=3405691582\n\
ipv4     2 icmp     1 29 src=10.0.0.10 dst=10.0.1.20 type=8 code=0 id=7 packets=3 bytes=252 src=10.0.1.20 dst=10.0.0.10 type=0 code=0 id=7 packets=3 bytes=252 mark=0 use=1 id=99\n\
ipv4     2 udp      17 20 src=10.0.0.10 dst=10.0.0.2 sport=5353 dport=53 packets=1 bytes=60 [UNREPLIED] src=10.0.0.2 dst=10.0.0.10 sport=53 dport=5353 packets=0 bytes=0 mark=0 use=1 id=5\n\
garbage line\n";
        let e = parse_conntrack(text);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].id, 3405691582);
        assert_eq!(e[0].protocol, 6);
        assert_eq!(e[0].tcp_state.as_deref(), Some("TIME_WAIT"));
        assert_eq!(e[0].orig.sport, 40000);
        assert_eq!(e[0].reply.src, "10.0.1.20".parse::<IpAddr>().unwrap());
        assert_eq!(e[0].orig_count, (6, 412));
        assert_eq!(e[0].reply_count, (4, 1264));
        assert_eq!(e[1].id, 99);
        assert_eq!(e[1].protocol, 1);
        assert_eq!(e[1].orig_count, (3, 252));
        assert_eq!(e[1].tcp_state, None);
        assert_eq!(e[2].reply_count, (0, 0));
    }

    #[test]
    fn a_logged_drop_names_what_dropped_and_its_packet() {
        // IPv4 TCP SYN 10.0.0.1:40000 -> 10.0.0.2:22, 60 bytes.
        let mut pkt = vec![
            0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        pkt.extend(40000u16.to_be_bytes());
        pkt.extend(22u16.to_be_bytes());
        pkt.extend([0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff]);
        let d = dropped("sg:in:sg-1,sg-2", &pkt).unwrap();
        assert_eq!(d.direction, "in");
        assert_eq!(d.dropped_by, "sg-1,sg-2");
        assert_eq!((d.sport, d.dport, d.protocol, d.length), (40000, 22, 6, 60));
        assert_eq!(d.tcp_flags, 2);
        assert_eq!(d.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        let d = dropped("nacl:out:acl-9:100", &pkt).unwrap();
        assert_eq!(
            (d.direction.as_str(), d.dropped_by.as_str()),
            ("out", "acl-9:100")
        );
        assert!(dropped("other", &pkt).is_none());
        assert!(dropped("sg:up:x", &pkt).is_none());
        assert!(dropped("sg:in:x", &pkt[..10]).is_none());
        // The same packet inside an NFLOG message.
        let mut attrs = Vec::new();
        put_attr(&mut attrs, NFULA_PREFIX, b"nacl:in:acl-9:*\0");
        put_attr(&mut attrs, NFULA_PAYLOAD, &pkt);
        let msg = nfnl_message(NFULNL_MSG_PACKET, DROP_LOG_GROUP, &attrs);
        let mut out = Vec::new();
        parse_nflog(&msg, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].dropped_by, "acl-9:*");
    }

    #[test]
    fn tcp_flags_come_from_state_transitions() {
        let ct = |s: &str| CtEntry {
            id: 1,
            protocol: 6,
            tcp_state: Some(s.to_string()),
            orig: Tuple {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                sport: 1,
                dport: 2,
            },
            reply: Tuple {
                src: "10.0.0.2".parse().unwrap(),
                dst: "10.0.0.1".parse().unwrap(),
                sport: 2,
                dport: 1,
            },
            orig_count: (1, 1),
            reply_count: (1, 1),
        };
        assert_eq!(tcp_flags(&ct("SYN_SENT"), true, None), (2, 0));
        assert_eq!(tcp_flags(&ct("ESTABLISHED"), true, None), (2, 18));
        assert_eq!(tcp_flags(&ct("TIME_WAIT"), true, None), (3, 19));
        assert_eq!(
            tcp_flags(&ct("TIME_WAIT"), false, Some("ESTABLISHED")),
            (1, 1)
        );
        assert_eq!(
            tcp_flags(&ct("TIME_WAIT"), false, Some("TIME_WAIT")),
            (0, 0)
        );
    }
}
