//! The bulk-TCP fast path: large IPv4 GSO/GRO sizes ("BIG TCP") on every
//! veth the data plane makes.
//!
//! A TCP sender hands the stack one super-packet of up to `gso_ipv4_max_size`
//! bytes, and a veth passes it on whole: it is segmented nowhere on the way,
//! because every hop is a veth. Every per-packet cost of the path across a
//! peering (three veth hops, two forwarding decisions, the routers' nft
//! `forward` chains and conntrack, softirq hand-offs and cross-CPU wake-ups)
//! is paid once per super-packet. Measured on the 2-core VM (docs/perf.md):
//! the path's CPU cost per byte is dominated by those per-packet costs, and
//! 192 KiB super-packets instead of 64 KiB ones about halve it.
//!
//! Nothing about filtering changes: nft and conntrack see each super-packet
//! once, with the headers every one of its segments carries, so an ACL or
//! security-group verdict is the verdict each segment would get; every packet
//! still walks the whole `forward` chain (no flowtable: this kernel has no
//! `CONFIG_NF_FLOW_TABLE`). A hop to a smaller MTU (an inter-region link)
//! checks the segment size, not the super-packet's, exactly as before.
//! IPv6 keeps the kernel's 64 KiB default.
//!
//! iproute2 6.1 cannot set `gso_ipv4_max_size` (it came in 6.3), so this
//! module speaks rtnetlink itself: a thread enters the namespace, dumps its
//! links and sets the sizes that differ (`RTM_NEWLINK` by name).

use crate::error::CommandError;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_ALIGNTO, NLM_F_ACK,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};
use std::collections::BTreeMap;
use std::os::fd::AsFd;

/// The IPv4 GSO/GRO size with the fast path on (BIG TCP).
pub const BIG_TCP_SIZE: u32 = 196_608;
/// The kernel's default, and the size with the fast path off.
pub const LEGACY_SIZE: u32 = 65_536;

/// One link's IPv4 offload sizes as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sizes {
    pub gso_ipv4_max: u32,
    pub gro_ipv4_max: u32,
    /// The most the device accepts (0 when the kernel did not say).
    pub tso_max: u32,
}

/// What a link should be set to for `want`, clamped to what it accepts;
/// None when it already is, or when the kernel does not report the size at
/// all (before Linux 6.3 there is no IPv4 BIG TCP to set).
fn target(have: &Sizes, want: u32) -> Option<u32> {
    if have.gso_ipv4_max == 0 {
        return None;
    }
    let size = if have.tso_max > 0 {
        want.min(have.tso_max)
    } else {
        want
    };
    (have.gso_ipv4_max != size || have.gro_ipv4_max != size).then_some(size)
}

/// One rtnetlink request, serialized.
fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// `RTM_GETLINK` dump of every link.
fn dump_message(seq: u32) -> Vec<u8> {
    // The (all-zero) `struct ifinfomsg` goes along even for a dump.
    let msg = RouteNetlinkMessage::GetLink(LinkMessage::default());
    encode(msg, NLM_F_REQUEST | NLM_F_DUMP, seq)
}

/// `RTM_NEWLINK` for the link named `name`: both IPv4 sizes to `size`.
fn set_message(name: &str, size: u32, seq: u32) -> Vec<u8> {
    let mut link = LinkMessage::default();
    link.attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::GsoIpv4MaxSize(size),
        LinkAttribute::GroIpv4MaxSize(size),
    ];
    encode(
        RouteNetlinkMessage::NewLink(link),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
    )
}

/// What one received datagram holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    links: Vec<(String, Sizes)>,
    /// (sequence number, errno as the kernel sends it: 0 or negative).
    acks: Vec<(u32, i32)>,
    done: bool,
}

/// A link's name and sizes (None for a link without a name).
fn link_sizes(link: &LinkMessage) -> Option<(String, Sizes)> {
    let mut name = None;
    let mut s = Sizes::default();
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::GsoIpv4MaxSize(v) => s.gso_ipv4_max = *v,
            LinkAttribute::GroIpv4MaxSize(v) => s.gro_ipv4_max = *v,
            LinkAttribute::TsoMaxSize(v) => s.tso_max = *v,
            _ => {}
        }
    }
    Some((name?, s))
}

/// Parses a datagram of netlink messages (links of a dump, acks, errors, done).
fn parse(buf: &[u8]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut rest = buf;
    while !rest.is_empty() {
        let len = NetlinkBuffer::new_checked(rest)
            .map_err(|e| e.to_string())?
            .length() as usize;
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
            .map_err(|e| e.to_string())?;
        let seq = msg.header.sequence_number;
        match msg.payload {
            NetlinkPayload::Done(_) => out.done = true,
            NetlinkPayload::Error(e) => out.acks.push((seq, e.raw_code())),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                out.links.extend(link_sizes(&link));
            }
            _ => {}
        }
        // Messages are 4-byte aligned; the last one's padding may be cut.
        rest = rest
            .get(len.next_multiple_of(usize::from(NLMSG_ALIGNTO))..)
            .unwrap_or_default();
    }
    Ok(out)
}

/// An rtnetlink socket inside namespace `ns` (made on a thread that entered it).
struct Rtnl {
    ns: String,
    socket: Socket,
}

impl Rtnl {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> CommandError {
        CommandError::Failed {
            cmd: format!("rtnetlink {what} (in {})", self.ns),
            code: None,
            stderr: e.to_string(),
        }
    }

    fn open(ns: &str) -> Result<Rtnl, CommandError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| CommandError::Failed {
            cmd: format!("rtnetlink {what} (in {ns})"),
            code: None,
            stderr: e.to_string(),
        };
        let path = format!("{}/{ns}", crate::kernel::NETNS_DIR);
        let file = std::fs::File::open(&path).map_err(|e| fail("open", &e))?;
        // A socket belongs to the namespace of the thread that made it; this
        // thread ends right after, so nothing else ever runs in `ns`.
        let mut socket = std::thread::scope(|s| {
            s.spawn(|| {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| fail("setns", &e))?;
                Socket::new(NETLINK_ROUTE).map_err(|e| fail("socket", &e))
            })
            .join()
            .unwrap_or_else(|_| Err(fail("thread", &"panicked")))
        })?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .map_err(|e| fail("bind", &e))?;
        Ok(Rtnl {
            ns: ns.to_string(),
            socket,
        })
    }

    fn send(&self, msg: &[u8]) -> Result<(), CommandError> {
        self.socket
            .send(msg, 0)
            .map(|_| ())
            .map_err(|e| self.err("send", e))
    }

    fn recv(&self) -> Result<Parsed, CommandError> {
        let (buf, _) = self
            .socket
            .recv_from_full()
            .map_err(|e| self.err("recv", e))?;
        parse(&buf).map_err(|e| self.err("decode", e))
    }

    /// Every link's sizes, by name.
    fn dump(&self) -> Result<BTreeMap<String, Sizes>, CommandError> {
        self.send(&dump_message(1))?;
        let mut links = BTreeMap::new();
        loop {
            let p = self.recv()?;
            if let Some((_, e)) = p.acks.iter().find(|(_, e)| *e != 0) {
                return Err(self.err("dump", std::io::Error::from_raw_os_error(-e)));
            }
            links.extend(p.links);
            if p.done {
                return Ok(links);
            }
        }
    }
}

/// The IPv4 offload sizes of every link in namespace `ns`.
pub fn ipv4_sizes(ns: &str) -> Result<BTreeMap<String, Sizes>, CommandError> {
    Rtnl::open(ns)?.dump()
}

/// Brings the IPv4 GSO/GRO sizes of `links` in namespace `ns` to `size`
/// (clamped to what each device accepts); returns how many links changed.
/// Links that are missing are left to the caller's own checks.
pub fn converge(ns: &str, links: &[&str], size: u32) -> Result<usize, CommandError> {
    let nl = Rtnl::open(ns)?;
    let have = nl.dump()?;
    let mut pending: BTreeMap<u32, &str> = BTreeMap::new();
    for (i, name) in links.iter().enumerate() {
        let Some(s) = have.get(*name) else { continue };
        if let Some(size) = target(s, size) {
            let seq = i as u32 + 2;
            nl.send(&set_message(name, size, seq))?;
            pending.insert(seq, name);
        }
    }
    let changed = pending.len();
    while !pending.is_empty() {
        let p = nl.recv()?;
        for (seq, e) in p.acks {
            if let Some(name) = pending.remove(&seq) {
                if e != 0 {
                    return Err(nl.err(
                        &format!("set gso_ipv4_max_size of {name}"),
                        std::io::Error::from_raw_os_error(-e),
                    ));
                }
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage};

    #[test]
    fn a_set_message_names_the_link_and_both_sizes() {
        let m = set_message("e-0123456789ab", 196_608, 7);
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&m).unwrap();
        assert_eq!(msg.header.length, m.len() as u32);
        assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(msg.header.sequence_number, 7);
        assert!(matches!(
            msg.payload,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(_))
        ));
        assert!(m.len().is_multiple_of(4));
        // Parsed back as if the kernel had sent it.
        let p = parse(&m).unwrap();
        assert_eq!(
            p.links,
            vec![(
                "e-0123456789ab".to_string(),
                Sizes {
                    gso_ipv4_max: 196_608,
                    gro_ipv4_max: 196_608,
                    tso_max: 0
                }
            )]
        );
    }

    #[test]
    fn a_dump_request_is_a_getlink_dump() {
        let m = dump_message(1);
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&m).unwrap();
        assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(msg.header.sequence_number, 1);
        assert!(matches!(
            msg.payload,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(_))
        ));
    }

    #[test]
    fn acks_errors_and_done_are_read() {
        let emit = |buf: &mut Vec<u8>, seq: u32, payload: NetlinkPayload<RouteNetlinkMessage>| {
            let mut header = NetlinkHeader::default();
            header.sequence_number = seq;
            let mut m = NetlinkMessage::new(header, payload);
            m.finalize();
            let at = buf.len();
            buf.resize(at + m.buffer_len(), 0);
            m.serialize(&mut buf[at..]);
        };
        let mut buf = Vec::new();
        for (seq, err) in [(2u32, 0i32), (3, -22)] {
            let mut e = ErrorMessage::default();
            e.code = std::num::NonZeroI32::new(err);
            e.header = vec![0u8; 16];
            emit(&mut buf, seq, NetlinkPayload::Error(e));
        }
        emit(&mut buf, 4, NetlinkPayload::Done(DoneMessage::default()));
        let p = parse(&buf).unwrap();
        assert_eq!(p.acks, vec![(2, 0), (3, -22)]);
        assert!(p.done);
    }

    #[test]
    fn a_truncated_datagram_is_an_error() {
        let m = set_message("e-0123456789ab", 196_608, 7);
        assert!(parse(&m[..m.len() - 8]).is_err());
    }

    #[test]
    fn targets_clamp_to_the_device_and_skip_what_is_already_set() {
        let veth = Sizes {
            gso_ipv4_max: LEGACY_SIZE,
            gro_ipv4_max: LEGACY_SIZE,
            tso_max: 524_280,
        };
        assert_eq!(target(&veth, BIG_TCP_SIZE), Some(BIG_TCP_SIZE));
        assert_eq!(target(&veth, LEGACY_SIZE), None);
        let big = Sizes {
            gso_ipv4_max: BIG_TCP_SIZE,
            gro_ipv4_max: BIG_TCP_SIZE,
            ..veth
        };
        assert_eq!(target(&big, BIG_TCP_SIZE), None);
        assert_eq!(target(&big, LEGACY_SIZE), Some(LEGACY_SIZE));
        // A device that takes no more than 64 KiB (a TUN) is left alone.
        let small = Sizes {
            tso_max: 65_536,
            ..veth
        };
        assert_eq!(target(&small, BIG_TCP_SIZE), None);
        // A kernel without IPv4 BIG TCP reports no size: nothing to set.
        assert_eq!(target(&Sizes::default(), BIG_TCP_SIZE), None);
    }
}
