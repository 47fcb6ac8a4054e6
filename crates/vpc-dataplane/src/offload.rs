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
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// The IPv4 GSO/GRO size with the fast path on (BIG TCP).
pub const BIG_TCP_SIZE: u32 = 196_608;
/// The kernel's default, and the size with the fast path off.
pub const LEGACY_SIZE: u32 = 65_536;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_TSO_MAX_SIZE: u16 = 59;
const IFLA_GSO_IPV4_MAX_SIZE: u16 = 63;
const IFLA_GRO_IPV4_MAX_SIZE: u16 = 64;

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

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// A netlink message: header, `struct ifinfomsg` (all zero: by name), attributes.
fn message(kind: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 16 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0u8; 16]);
    m.extend_from_slice(attrs);
    m
}

/// `RTM_NEWLINK` for the link named `name`: both IPv4 sizes to `size`.
fn set_message(name: &str, size: u32, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut ifname = name.as_bytes().to_vec();
    ifname.push(0);
    push_attr(&mut attrs, IFLA_IFNAME, &ifname);
    push_attr(&mut attrs, IFLA_GSO_IPV4_MAX_SIZE, &size.to_ne_bytes());
    push_attr(&mut attrs, IFLA_GRO_IPV4_MAX_SIZE, &size.to_ne_bytes());
    message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, &attrs)
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// What one received datagram holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    links: Vec<(String, Sizes)>,
    /// (sequence number, errno as the kernel sends it: 0 or negative).
    acks: Vec<(u32, i32)>,
    done: bool,
}

/// Parses a datagram of netlink messages (links of a dump, acks, errors, done).
fn parse(buf: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let (Some(len), Some(kind), Some(seq)) =
            (u32_at(buf, off), u16_at(buf, off + 4), u32_at(buf, off + 8))
        else {
            break;
        };
        let len = len as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let body = &buf[off + 16..off + len];
        match kind {
            NLMSG_DONE => out.done = true,
            NLMSG_ERROR => {
                let err = u32_at(body, 0).map_or(-1, |e| e as i32);
                out.acks.push((seq, err));
            }
            RTM_NEWLINK if body.len() >= 16 => {
                let mut name = None;
                let mut s = Sizes::default();
                let mut a = 16;
                while a + 4 <= body.len() {
                    let (Some(alen), Some(akind)) = (u16_at(body, a), u16_at(body, a + 2)) else {
                        break;
                    };
                    let alen = alen as usize;
                    if alen < 4 || a + alen > body.len() {
                        break;
                    }
                    let data = &body[a + 4..a + alen];
                    match akind & 0x3fff {
                        IFLA_IFNAME => {
                            let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
                            name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
                        }
                        IFLA_GSO_IPV4_MAX_SIZE => s.gso_ipv4_max = u32_at(data, 0).unwrap_or(0),
                        IFLA_GRO_IPV4_MAX_SIZE => s.gro_ipv4_max = u32_at(data, 0).unwrap_or(0),
                        IFLA_TSO_MAX_SIZE => s.tso_max = u32_at(data, 0).unwrap_or(0),
                        _ => {}
                    }
                    a += (alen + 3) & !3;
                }
                if let Some(n) = name {
                    out.links.push((n, s));
                }
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    out
}

/// An rtnetlink socket inside namespace `ns` (made on a thread that entered it).
struct Rtnl {
    ns: String,
    fd: OwnedFd,
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
        let fd = std::thread::scope(|s| {
            s.spawn(|| {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| fail("setns", &e))?;
                socket(
                    AddressFamily::Netlink,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::NetlinkRoute,
                )
                .map_err(|e| fail("socket", &e))
            })
            .join()
            .unwrap_or_else(|_| Err(fail("thread", &"panicked")))
        })?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|e| fail("bind", &e))?;
        Ok(Rtnl {
            ns: ns.to_string(),
            fd,
        })
    }

    fn send(&self, msg: &[u8]) -> Result<(), CommandError> {
        send(self.fd.as_raw_fd(), msg, MsgFlags::empty())
            .map(|_| ())
            .map_err(|e| self.err("send", e))
    }

    fn recv(&self) -> Result<Parsed, CommandError> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| self.err("recv", e))?;
        Ok(parse(&buf[..n]))
    }

    /// Every link's sizes, by name.
    fn dump(&self) -> Result<BTreeMap<String, Sizes>, CommandError> {
        // struct ifinfomsg is required after the header even for a dump.
        self.send(&message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, &[]))?;
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

    #[test]
    fn a_set_message_names_the_link_and_both_sizes() {
        let m = set_message("e-0123456789ab", 196_608, 7);
        assert_eq!(u32_at(&m, 0), Some(m.len() as u32));
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWLINK));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(u32_at(&m, 8), Some(7));
        assert!(m.len().is_multiple_of(4));
        // Parsed back as if the kernel had sent it.
        let p = parse(&m);
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
    fn acks_errors_and_done_are_read() {
        let mut buf = Vec::new();
        for (seq, err) in [(2u32, 0i32), (3, -22)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&err.to_ne_bytes());
            buf.extend_from_slice(&[0u8; 16]);
        }
        buf.extend_from_slice(&20u32.to_ne_bytes());
        buf.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        buf.extend_from_slice(&[0u8; 14]);
        let p = parse(&buf);
        assert_eq!(p.acks, vec![(2, 0), (3, -22)]);
        assert!(p.done);
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
