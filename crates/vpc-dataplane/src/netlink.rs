//! rtnetlink inside a namespace: typed requests and dumps of links,
//! addresses, routes and policy rules (netlink-packet-route messages over a
//! netlink-sys socket), the only way the data plane reads or changes them.
//!
//! A socket belongs to the namespace of the thread that made it, so
//! [`Netlink::open`] makes it on a thread that entered the namespace
//! ([`netns::within`]); everything after that runs on the caller's thread.
//! Requests are pipelined: up to [`WINDOW`] go out before their
//! acknowledgements are read, in order, so a namespace's whole change is
//! a handful of system calls.

use crate::error::CommandError;
use crate::netns;
use crate::offload::Sizes;
use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_ALIGNTO, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// How many requests may await their acknowledgement at once.
const WINDOW: usize = 64;

/// The kernel's table numbers that fit in a route or rule header; larger
/// ones go in an attribute.
const RT_TABLE_UNSPEC: u8 = 0;

/// A link as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkState {
    pub index: u32,
    pub mtu: u32,
    pub up: bool,
    pub alias: Option<String>,
    pub sizes: Sizes,
    /// Its hardware address (empty for a link without one).
    pub mac: Vec<u8>,
}

/// A route as a dump reports it (only what the data plane compares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteState {
    pub table: u32,
    pub dst: IpNet,
    pub kind: RouteType,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub protocol: RouteProtocol,
}

/// A policy rule as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleState {
    pub v6: bool,
    pub priority: u32,
    pub iif: Option<String>,
    pub table: u32,
}

/// One request of a batch, with what it does (for errors).
#[derive(Debug)]
pub(crate) struct Request {
    pub what: String,
    pub message: RouteNetlinkMessage,
    pub flags: u16,
}

/// An rtnetlink socket inside one namespace.
pub(crate) struct Netlink {
    ns: String,
    socket: Socket,
    seq: Cell<u32>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Netlink({})", self.ns)
    }
}

/// A failed netlink step as the data plane reports it.
pub(crate) fn failure(ns: &str, what: &str, e: &io::Error) -> CommandError {
    CommandError::Failed {
        cmd: format!("rtnetlink {what} (in {ns})"),
        code: e.raw_os_error(),
        stderr: e.to_string(),
    }
}

fn serialize(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// What one datagram from the kernel holds.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub messages: Vec<RouteNetlinkMessage>,
    /// (sequence number, errno as the kernel sends it: 0 or negative).
    pub acks: Vec<(u32, i32)>,
    pub done: bool,
    /// A dump changed while it was read (`NLM_F_DUMP_INTR`).
    pub interrupted: bool,
}

/// Parses a datagram of netlink messages.
pub(crate) fn parse(buf: &[u8]) -> Result<Received, String> {
    let mut out = Received::default();
    let mut rest = buf;
    while !rest.is_empty() {
        let len = NetlinkBuffer::new_checked(rest)
            .map_err(|e| e.to_string())?
            .length() as usize;
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
            .map_err(|e| e.to_string())?;
        let seq = msg.header.sequence_number;
        if msg.header.flags & NLM_F_DUMP_INTR != 0 {
            out.interrupted = true;
        }
        match msg.payload {
            NetlinkPayload::Done(_) => out.done = true,
            NetlinkPayload::Error(e) => out.acks.push((seq, e.raw_code())),
            NetlinkPayload::InnerMessage(m) => out.messages.push(m),
            _ => {}
        }
        // Messages are 4-byte aligned; the last one's padding may be cut.
        rest = rest
            .get(len.next_multiple_of(usize::from(NLMSG_ALIGNTO))..)
            .unwrap_or_default();
    }
    Ok(out)
}

impl Netlink {
    /// A socket inside namespace `ns`.
    pub fn open(ns: &str) -> Result<Netlink, CommandError> {
        Ok(Netlink::open_with(ns, || ())?.1)
    }

    /// Runs `first` inside namespace `ns` (on the thread that makes the
    /// socket, so the namespace is entered once for both), then opens a
    /// socket there.
    pub fn open_with<R: Send>(
        ns: &str,
        first: impl FnOnce() -> R + Send,
    ) -> Result<(R, Netlink), CommandError> {
        let (first, socket) = netns::within(ns, || Ok((first(), Socket::new(NETLINK_ROUTE))))
            .map_err(|e| failure(ns, "enter namespace", &e))?;
        let mut socket = socket.map_err(|e| failure(ns, "socket", &e))?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .map_err(|e| failure(ns, "bind", &e))?;
        Ok((
            first,
            Netlink {
                ns: ns.to_string(),
                socket,
                seq: Cell::new(0),
            },
        ))
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    fn fail(&self, what: &str, e: &io::Error) -> CommandError {
        failure(&self.ns, what, e)
    }

    fn next_seq(&self) -> u32 {
        let s = self.seq.get().wrapping_add(1);
        self.seq.set(s);
        s
    }

    fn send(&self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32, CommandError> {
        let seq = self.next_seq();
        self.socket
            .send(&serialize(msg, flags, seq), 0)
            .map_err(|e| self.fail("send", &e))?;
        Ok(seq)
    }

    fn recv(&self) -> Result<Received, CommandError> {
        let (buf, _) = self
            .socket
            .recv_from_full()
            .map_err(|e| self.fail("recv", &e))?;
        parse(&buf).map_err(|e| self.fail("decode", &io::Error::other(e)))
    }

    /// Every message a dump request answers with (retried when the kernel
    /// says the dump was interrupted by a change).
    pub fn dump(
        &self,
        what: &str,
        request: impl Fn() -> RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, CommandError> {
        for _ in 0..5 {
            let seq = self.send(request(), NLM_F_REQUEST | NLM_F_DUMP)?;
            let mut got = Vec::new();
            let mut interrupted = false;
            loop {
                let r = self.recv()?;
                if let Some((_, e)) = r.acks.iter().find(|(s, e)| *s == seq && *e != 0) {
                    return Err(self.fail(what, &io::Error::from_raw_os_error(-e)));
                }
                interrupted |= r.interrupted;
                got.extend(r.messages);
                if r.done {
                    break;
                }
            }
            if !interrupted {
                return Ok(got);
            }
        }
        Err(self.fail(
            what,
            &io::Error::other("dump interrupted by changes five times"),
        ))
    }

    /// Sends every request, in order, and returns each one's outcome.
    pub fn execute(&self, requests: Vec<Request>) -> Result<Vec<io::Result<()>>, CommandError> {
        let mut outcomes: Vec<io::Result<()>> = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let mut pending: BTreeMap<u32, usize> = BTreeMap::new();
            for r in requests.by_ref().take(WINDOW) {
                let seq = self.send(r.message, r.flags | NLM_F_REQUEST | NLM_F_ACK)?;
                pending.insert(seq, outcomes.len());
                outcomes.push(Ok(()));
            }
            while !pending.is_empty() {
                for (seq, e) in self.recv()?.acks {
                    if let Some(i) = pending.remove(&seq) {
                        if e != 0 {
                            outcomes[i] = Err(io::Error::from_raw_os_error(-e));
                        }
                    }
                }
            }
        }
        Ok(outcomes)
    }

    /// Sends every request; the first failure is the error (all are tried,
    /// as `ip -force -batch` does).
    pub fn apply(&self, requests: Vec<Request>) -> Result<usize, CommandError> {
        let whats: Vec<String> = requests.iter().map(|r| r.what.clone()).collect();
        let n = whats.len();
        for (what, outcome) in whats.iter().zip(self.execute(requests)?) {
            if let Err(e) = outcome {
                return Err(self.fail(what, &e));
            }
        }
        Ok(n)
    }

    /// Every link, by name.
    pub fn links(&self) -> Result<BTreeMap<String, LinkState>, CommandError> {
        let msgs = self.dump("dump links", || {
            RouteNetlinkMessage::GetLink(LinkMessage::default())
        })?;
        let mut out = BTreeMap::new();
        for m in msgs {
            let RouteNetlinkMessage::NewLink(l) = m else {
                continue;
            };
            let mut name = None;
            let mut st = LinkState {
                index: l.header.index,
                mtu: 0,
                up: l.header.flags.contains(LinkFlags::Up),
                alias: None,
                sizes: Sizes::default(),
                mac: Vec::new(),
            };
            for a in l.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n),
                    LinkAttribute::Mtu(m) => st.mtu = m,
                    LinkAttribute::IfAlias(a) => st.alias = Some(a),
                    LinkAttribute::Address(m) => st.mac = m,
                    LinkAttribute::GsoIpv4MaxSize(v) => st.sizes.gso_ipv4_max = v,
                    LinkAttribute::GroIpv4MaxSize(v) => st.sizes.gro_ipv4_max = v,
                    LinkAttribute::TsoMaxSize(v) => st.sizes.tso_max = v,
                    _ => {}
                }
            }
            if let Some(n) = name {
                out.insert(n, st);
            }
        }
        Ok(out)
    }

    /// Every address: (link index, address with prefix).
    pub fn addrs(&self) -> Result<Vec<(u32, IpNet)>, CommandError> {
        let msgs = self.dump("dump addresses", || {
            RouteNetlinkMessage::GetAddress(AddressMessage::default())
        })?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            let (mut local, mut address) = (None, None);
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    _ => {}
                }
            }
            let Some(ip) = local.or(address) else {
                continue;
            };
            if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                out.push((a.header.index, net));
            }
        }
        Ok(out)
    }

    /// Every route of every table, both families (cached exceptions left out).
    pub fn routes(&self) -> Result<Vec<RouteState>, CommandError> {
        let msgs = self.dump("dump routes", || {
            RouteNetlinkMessage::GetRoute(RouteMessage::default())
        })?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            if r.header.flags.contains(RouteFlags::Cloned) {
                continue;
            }
            let v6 = match r.header.address_family {
                AddressFamily::Inet => false,
                AddressFamily::Inet6 => true,
                _ => continue,
            };
            let mut table = u32::from(r.header.table);
            let mut dst: Option<IpAddr> = None;
            let mut oif = None;
            let mut gateway = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Destination(d) => dst = route_ip(d),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Gateway(g) => gateway = route_ip(g),
                    RouteAttribute::Via(RouteVia::Inet(g)) => gateway = Some(IpAddr::V4(*g)),
                    RouteAttribute::Via(RouteVia::Inet6(g)) => gateway = Some(IpAddr::V6(*g)),
                    _ => {}
                }
            }
            let dst = dst.unwrap_or(if v6 {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            });
            let Ok(dst) = IpNet::new(dst, r.header.destination_prefix_length) else {
                continue;
            };
            out.push(RouteState {
                table,
                dst,
                kind: r.header.kind,
                oif,
                gateway,
                protocol: r.header.protocol,
            });
        }
        Ok(out)
    }

    /// Every policy rule, both families.
    pub fn rules(&self) -> Result<Vec<RuleState>, CommandError> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            let msgs = self.dump("dump rules", || {
                let mut m = RuleMessage::default();
                m.header.family = family(v6);
                RouteNetlinkMessage::GetRule(m)
            })?;
            for m in msgs {
                let RouteNetlinkMessage::NewRule(r) = m else {
                    continue;
                };
                let mut st = RuleState {
                    v6,
                    priority: 0,
                    iif: None,
                    table: u32::from(r.header.table),
                };
                for a in r.attributes {
                    match a {
                        RuleAttribute::Priority(p) => st.priority = p,
                        RuleAttribute::Iifname(n) => st.iif = Some(n),
                        RuleAttribute::Table(t) => st.table = t,
                        _ => {}
                    }
                }
                out.push(st);
            }
        }
        Ok(out)
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// Requests, built from what the plan says (each says what it does).
pub(crate) mod request {
    use super::*;

    /// Creates a veth: `v.name` here, `v.peer` in the namespace whose file
    /// is open as `peer_ns_fd`, both with `v.mtu`, `v.name` up when `v` says
    /// so, and, when given, this IPv4 GSO/GRO size (`offload`; set at creation,
    /// it costs no request of its own later).
    pub fn add_veth(
        v: &crate::kernel::NewVeth<'_>,
        peer_ns_fd: &std::fs::File,
        ipv4_size: Option<u32>,
    ) -> Request {
        let (name, peer, mtu) = (v.name, v.peer, v.mtu);
        let sizes = |attributes: &mut Vec<LinkAttribute>| {
            if let Some(size) = ipv4_size {
                attributes.push(LinkAttribute::GsoIpv4MaxSize(size));
                attributes.push(LinkAttribute::GroIpv4MaxSize(size));
            }
        };
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::NetNsFd(peer_ns_fd.as_raw_fd()),
        ];
        sizes(&mut peer_msg.attributes);
        let mut m = LinkMessage::default();
        // The kernel applies the header's flags once both ends are made.
        if v.up {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        }
        m.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Mtu(mtu),
        ];
        sizes(&mut m.attributes);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        Request {
            what: format!("add veth {name} (peer {peer}, mtu {mtu})"),
            message: RouteNetlinkMessage::NewLink(m),
            flags: NLM_F_CREATE | NLM_F_EXCL,
        }
    }

    /// Deletes a link by name.
    pub fn del_link(name: &str) -> Request {
        let mut m = LinkMessage::default();
        m.attributes = vec![LinkAttribute::IfName(name.to_string())];
        Request {
            what: format!("delete link {name}"),
            message: RouteNetlinkMessage::DelLink(m),
            flags: 0,
        }
    }

    /// Sets a link's MTU, alias and state (each when given).
    pub fn set_link(
        name: &str,
        index: u32,
        mtu: Option<u32>,
        alias: Option<&str>,
        up: Option<bool>,
    ) -> Request {
        let mut m = LinkMessage::default();
        m.header.index = index;
        let mut what = format!("set link {name}");
        if let Some(up) = up {
            m.header.change_mask = LinkFlags::Up;
            if up {
                m.header.flags = LinkFlags::Up;
            }
            what.push_str(if up { " up" } else { " down" });
        }
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
            what.push_str(&format!(" mtu {mtu}"));
        }
        if let Some(a) = alias {
            m.attributes.push(LinkAttribute::IfAlias(a.to_string()));
            what.push_str(&format!(" alias {a}"));
        }
        Request {
            what,
            message: RouteNetlinkMessage::NewLink(m),
            flags: 0,
        }
    }

    /// Both IPv4 GSO/GRO sizes of a link.
    pub fn set_ipv4_sizes(name: &str, size: u32) -> Request {
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::GsoIpv4MaxSize(size),
            LinkAttribute::GroIpv4MaxSize(size),
        ];
        Request {
            what: format!("set gso_ipv4_max_size of {name} to {size}"),
            message: RouteNetlinkMessage::NewLink(link),
            flags: 0,
        }
    }

    /// Sets a link's IPv4 GRO maximum size alone (its GSO size stays).
    pub fn set_ipv4_gro_size(name: &str, size: u32) -> Request {
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::GroIpv4MaxSize(size),
        ];
        Request {
            what: format!("set gro_ipv4_max_size of {name} to {size}"),
            message: RouteNetlinkMessage::NewLink(link),
            flags: 0,
        }
    }

    /// Creates a bridge (down).
    pub fn add_bridge(name: &str) -> Request {
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        Request {
            what: format!("add bridge {name}"),
            message: RouteNetlinkMessage::NewLink(m),
            flags: NLM_F_CREATE | NLM_F_EXCL,
        }
    }

    /// Sets a link (found by name) up, as a port of the bridge with index
    /// `controller` when given.
    pub fn set_up(name: &str, controller: Option<u32>) -> Request {
        let mut m = LinkMessage::default();
        m.header.change_mask = LinkFlags::Up;
        m.header.flags = LinkFlags::Up;
        m.attributes = vec![LinkAttribute::IfName(name.to_string())];
        let mut what = format!("set link {name} up");
        if let Some(c) = controller {
            m.attributes.push(LinkAttribute::Controller(c));
            what.push_str(&format!(" master {c}"));
        }
        Request {
            what,
            message: RouteNetlinkMessage::NewLink(m),
            flags: 0,
        }
    }

    /// A link's transmit queue length (packets) and the most segments one
    /// GSO packet handed to it may have (the kernel cuts bigger ones).
    pub fn set_queue(name: &str, txqueuelen: u32, gso_max_segs: u32) -> Request {
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::TxQueueLen(txqueuelen),
            LinkAttribute::GsoMaxSegs(gso_max_segs),
        ];
        Request {
            what: format!("set link {name} txqueuelen {txqueuelen} gso_max_segs {gso_max_segs}"),
            message: RouteNetlinkMessage::NewLink(m),
            flags: 0,
        }
    }

    fn address(index: u32, addr: &IpNet) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family(addr.addr().is_ipv6());
        m.header.prefix_len = addr.prefix_len();
        m.header.index = index;
        m.attributes = vec![
            AddressAttribute::Local(addr.addr()),
            AddressAttribute::Address(addr.addr()),
        ];
        m
    }

    /// Adds an address (IPv6 ones without duplicate address detection).
    pub fn add_addr(dev: &str, index: u32, addr: &IpNet, noprefixroute: bool) -> Request {
        let mut m = address(index, addr);
        let mut flags = AddressFlags::empty();
        if noprefixroute {
            flags |= AddressFlags::Noprefixroute;
        }
        if addr.addr().is_ipv6() {
            flags |= AddressFlags::Nodad;
        }
        if !flags.is_empty() {
            m.attributes.push(AddressAttribute::Flags(flags));
        }
        Request {
            what: format!("add address {addr} to {dev}"),
            message: RouteNetlinkMessage::NewAddress(m),
            flags: NLM_F_CREATE | NLM_F_EXCL,
        }
    }

    pub fn del_addr(dev: &str, index: u32, addr: &IpNet) -> Request {
        Request {
            what: format!("delete address {addr} from {dev}"),
            message: RouteNetlinkMessage::DelAddress(address(index, addr)),
            flags: 0,
        }
    }

    fn route_base(table: u32, dst: &IpNet) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family(dst.addr().is_ipv6());
        m.header.destination_prefix_length = dst.prefix_len();
        match u8::try_from(table) {
            Ok(t) => m.header.table = t,
            Err(_) => {
                m.header.table = RT_TABLE_UNSPEC;
                m.attributes.push(RouteAttribute::Table(table));
            }
        }
        if dst.prefix_len() > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    dst.trunc().addr(),
                )));
        }
        m
    }

    /// What a planned route is, in the kernel's terms.
    pub enum Target {
        Blackhole,
        Dev(u32),
        Via { gw: IpAddr, oif: u32, onlink: bool },
    }

    /// Adds or replaces the route to `dst` in `table` (as `ip route replace`).
    pub fn replace_route(table: u32, dst: &IpNet, target: Target, what: String) -> Request {
        let mut m = route_base(table, dst);
        m.header.protocol = RouteProtocol::Boot;
        match target {
            Target::Blackhole => {
                m.header.kind = RouteType::BlackHole;
                m.header.scope = RouteScope::Universe;
            }
            Target::Dev(oif) => {
                m.header.kind = RouteType::Unicast;
                m.header.scope = RouteScope::Link;
                m.attributes.push(RouteAttribute::Oif(oif));
            }
            Target::Via { gw, oif, onlink } => {
                m.header.kind = RouteType::Unicast;
                m.header.scope = RouteScope::Universe;
                if gw.is_ipv6() == dst.addr().is_ipv6() {
                    m.attributes
                        .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
                } else {
                    m.attributes.push(RouteAttribute::Via(match gw {
                        IpAddr::V4(g) => RouteVia::Inet(g),
                        IpAddr::V6(g) => RouteVia::Inet6(g),
                    }));
                }
                m.attributes.push(RouteAttribute::Oif(oif));
                if onlink {
                    m.header.flags |= RouteFlags::Onlink;
                }
            }
        }
        Request {
            what,
            message: RouteNetlinkMessage::NewRoute(m),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
        }
    }

    /// Deletes the route to `dst` in `table`, whatever it is.
    pub fn del_route(table: u32, dst: &IpNet) -> Request {
        let mut m = route_base(table, dst);
        m.header.scope = RouteScope::NoWhere;
        Request {
            what: format!("delete route {dst} table {table}"),
            message: RouteNetlinkMessage::DelRoute(m),
            flags: 0,
        }
    }

    fn rule(v6: bool, iif: &str, table: u32, priority: u32) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = family(v6);
        m.header.action = RuleAction::ToTable;
        m.header.table = u8::try_from(table).unwrap_or(RT_TABLE_UNSPEC);
        m.attributes = vec![
            RuleAttribute::Priority(priority),
            RuleAttribute::Iifname(iif.to_string()),
            RuleAttribute::Table(table),
        ];
        m
    }

    /// `ip rule add iif IIF lookup TABLE pref PRIORITY`.
    pub fn add_rule(v6: bool, iif: &str, table: u32, priority: u32) -> Request {
        Request {
            what: format!(
                "add {}rule iif {iif} lookup {table} pref {priority}",
                if v6 { "IPv6 " } else { "" }
            ),
            message: RouteNetlinkMessage::NewRule(rule(v6, iif, table, priority)),
            flags: NLM_F_CREATE | NLM_F_EXCL,
        }
    }

    pub fn del_rule(v6: bool, iif: &str, table: u32, priority: u32) -> Request {
        Request {
            what: format!(
                "delete {}rule iif {iif} lookup {table} pref {priority}",
                if v6 { "IPv6 " } else { "" }
            ),
            message: RouteNetlinkMessage::DelRule(rule(v6, iif, table, priority)),
            flags: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::request::*;
    use super::*;

    fn round_trip(r: &Request) -> RouteNetlinkMessage {
        let bytes = serialize(r.message.clone(), r.flags, 9);
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        assert_eq!(msg.header.length as usize, bytes.len());
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_route_to_a_large_table_carries_the_table_as_an_attribute() {
        let dst: IpNet = "10.1.0.0/16".parse().unwrap();
        let r = replace_route(
            65540,
            &dst,
            Target::Via {
                gw: "fe80::2".parse().unwrap(),
                oif: 7,
                onlink: false,
            },
            "x".into(),
        );
        assert_eq!(r.flags, NLM_F_CREATE | NLM_F_REPLACE);
        let RouteNetlinkMessage::NewRoute(m) = round_trip(&r) else {
            panic!()
        };
        assert_eq!(m.header.table, RT_TABLE_UNSPEC);
        assert_eq!(m.header.destination_prefix_length, 16);
        assert_eq!(m.header.protocol, RouteProtocol::Boot);
        assert!(m.attributes.contains(&RouteAttribute::Table(65540)));
        // An IPv4 route over an IPv6 next hop says so with RTA_VIA.
        assert!(m.attributes.contains(&RouteAttribute::Via(RouteVia::Inet6(
            "fe80::2".parse().unwrap()
        ))));
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
    }

    #[test]
    fn a_default_route_has_no_destination_and_a_link_route_link_scope() {
        let r = replace_route(254, &"::/0".parse().unwrap(), Target::Dev(3), "x".into());
        let RouteNetlinkMessage::NewRoute(m) = round_trip(&r) else {
            panic!()
        };
        assert_eq!(m.header.table, 254);
        assert_eq!(m.header.scope, RouteScope::Link);
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
        let d = del_route(251, &"10.0.1.10/32".parse().unwrap());
        let RouteNetlinkMessage::DelRoute(m) = round_trip(&d) else {
            panic!()
        };
        assert_eq!(m.header.scope, RouteScope::NoWhere);
        assert_eq!(m.header.table, 251);
    }

    #[test]
    fn addresses_and_rules_carry_their_flags_and_tables() {
        let a = add_addr("eth0", 2, &"2600::10/64".parse().unwrap(), true);
        let RouteNetlinkMessage::NewAddress(m) = round_trip(&a) else {
            panic!()
        };
        assert_eq!(m.header.prefix_len, 64);
        assert!(m.attributes.contains(&AddressAttribute::Flags(
            AddressFlags::Noprefixroute | AddressFlags::Nodad
        )));
        let r = add_rule(true, "e-1", 65540, 1000);
        let RouteNetlinkMessage::NewRule(m) = round_trip(&r) else {
            panic!()
        };
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert_eq!(m.header.table, RT_TABLE_UNSPEC);
        assert!(m.attributes.contains(&RuleAttribute::Table(65540)));
        assert!(m.attributes.contains(&RuleAttribute::Priority(1000)));
    }

    #[test]
    fn bridge_port_and_queue_requests_name_their_link() {
        let RouteNetlinkMessage::NewLink(m) = round_trip(&add_bridge("br0")) else {
            panic!()
        };
        assert!(m
            .attributes
            .contains(&LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge
            )])));
        let RouteNetlinkMessage::NewLink(m) = round_trip(&set_up("u-1", Some(4))) else {
            panic!()
        };
        assert_eq!(m.header.flags, LinkFlags::Up);
        assert_eq!(m.header.change_mask, LinkFlags::Up);
        assert!(m.attributes.contains(&LinkAttribute::Controller(4)));
        assert!(m
            .attributes
            .contains(&LinkAttribute::IfName("u-1".to_string())));
        let RouteNetlinkMessage::NewLink(m) = round_trip(&set_queue("p-1", 4096, 64)) else {
            panic!()
        };
        assert!(m.attributes.contains(&LinkAttribute::TxQueueLen(4096)));
        assert!(m.attributes.contains(&LinkAttribute::GsoMaxSegs(64)));
    }

    #[test]
    fn a_truncated_datagram_is_an_error() {
        let r = del_link("e-0123456789ab");
        let bytes = serialize(r.message, 0, 1);
        assert!(parse(&bytes[..bytes.len() - 4]).is_err());
        assert_eq!(parse(&bytes).unwrap().messages.len(), 1);
    }
}
