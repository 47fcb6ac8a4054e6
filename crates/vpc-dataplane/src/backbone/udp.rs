//! Batched UDP on a gateway's WireGuard socket: many encrypted datagrams
//! per system call each way.
//!
//! Sending uses UDP GSO (`UDP_SEGMENT`): a run of equal-sized datagrams
//! (the last may be shorter) laid end to end in one buffer goes out in one
//! `sendmsg`, and the kernel cuts it into datagrams of that size. Receiving
//! uses UDP GRO (`UDP_GRO`): consecutive datagrams of one flow arrive in one
//! `recvmsg`, end to end, with the size they were cut at. Across the
//! underlay (veths and a bridge, all able to carry such super-packets) a
//! batch stays one packet from socket to socket. Each datagram in it is
//! still a complete WireGuard message, encrypted and authenticated on its
//! own: nothing about the wire format changes.

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// The most datagrams one GSO send carries (the kernel's `UDP_MAX_SEGMENTS`).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// The most payload bytes one GSO send carries (an IPv4 UDP datagram's limit).
pub const GSO_MAX_BYTES: usize = 65_507;
/// Room for the largest batch one receive hands over.
pub const GRO_BUF: usize = 65_536;

/// Asks the kernel to hand over coalesced datagrams (UDP GRO); false when it cannot.
pub fn enable_gro(sock: &UdpSocket) -> bool {
    setsockopt(sock, sockopt::UdpGroSegment, &true).is_ok()
}

/// Encrypted datagrams waiting to go to one peer, end to end in one buffer.
#[derive(Debug)]
pub struct Outbox {
    buf: Vec<u8>,
    used: usize,
    /// Each datagram's size, and the inner bytes it carries (for the counters).
    datagrams: Vec<(usize, usize)>,
    /// Whether GSO sends work on this socket (cleared on the first refusal).
    gso: bool,
}

/// What a flush sent and what it could not.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub packets: u64,
    pub inner_bytes: u64,
    pub failed: u64,
}

impl Outbox {
    /// An outbox with room for `capacity` bytes of datagrams.
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            buf: vec![0u8; capacity],
            used: 0,
            datagrams: Vec::with_capacity(GSO_MAX_SEGMENTS * 2),
            gso: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// The free space after the queued datagrams, if it holds `need` bytes.
    pub fn room(&mut self, need: usize) -> Option<&mut [u8]> {
        self.buf.get_mut(self.used..).filter(|r| r.len() >= need)
    }

    /// Queues the datagram of `len` bytes just written at the start of `room()`.
    pub fn push(&mut self, len: usize, inner: usize) {
        self.used += len;
        self.datagrams.push((len, inner));
    }

    /// Sends every queued datagram to `to`, as few system calls as GSO allows.
    pub fn flush(&mut self, sock: &UdpSocket, to: SocketAddrV4) -> Flushed {
        let mut res = Flushed::default();
        let dest = SockaddrIn::from(to);
        let (mut i, mut at) = (0, 0);
        while i < self.datagrams.len() {
            let seg = self.datagrams[i].0;
            let (mut j, mut len) = (i + 1, seg);
            if self.gso {
                while j < self.datagrams.len()
                    && j - i < GSO_MAX_SEGMENTS
                    && len + self.datagrams[j].0 <= GSO_MAX_BYTES
                {
                    let next = self.datagrams[j].0;
                    if next > seg {
                        break;
                    }
                    len += next;
                    j += 1;
                    if next < seg {
                        break;
                    }
                }
            }
            let group = &self.datagrams[i..j];
            let inner: usize = group.iter().map(|d| d.1).sum();
            let bytes = &self.buf[at..at + len];
            let ok = if j - i == 1 {
                sock.send_to(bytes, to).is_ok()
            } else {
                let size = seg as u16;
                let cmsg = [ControlMessage::UdpGsoSegments(&size)];
                match sendmsg(
                    sock.as_raw_fd(),
                    &[IoSlice::new(bytes)],
                    &cmsg,
                    MsgFlags::empty(),
                    Some(&dest),
                ) {
                    Ok(_) => true,
                    Err(nix::errno::Errno::EIO | nix::errno::Errno::EINVAL) => {
                        // No GSO here: one datagram per call from now on.
                        self.gso = false;
                        let mut off = at;
                        let mut all = true;
                        for d in group {
                            all &= sock.send_to(&self.buf[off..off + d.0], to).is_ok();
                            off += d.0;
                        }
                        all
                    }
                    Err(_) => false,
                }
            };
            if ok {
                res.packets += (j - i) as u64;
                res.inner_bytes += inner as u64;
            } else {
                res.failed += (j - i) as u64;
            }
            i = j;
            at += len;
        }
        self.used = 0;
        self.datagrams.clear();
        res
    }
}

/// One receive: `len` bytes of datagrams from `from`, each `segment` bytes
/// long but the last (which may be shorter).
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: Option<SocketAddrV4>,
    pub segment: usize,
}

/// Receives one (possibly coalesced) batch of datagrams into `buf`.
#[allow(clippy::ptr_arg)] // nix's recvmsg takes the control buffer as a Vec
pub fn recv(sock: &UdpSocket, buf: &mut [u8], cmsg: &mut Vec<u8>) -> std::io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(sock.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty())
        .map_err(std::io::Error::from)?;
    let len = msg.bytes;
    let mut segment = len;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::UdpGroSegments(s) = c {
                if s > 0 {
                    segment = s as usize;
                }
            }
        }
    }
    let from = msg.address.map(|a| SocketAddrV4::new(a.ip(), a.port()));
    Ok(Received {
        len,
        from,
        segment: segment.max(1),
    })
}

/// The space `recv` needs for its control message.
pub fn cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!(i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Over loopback: a batch of equal datagrams and a shorter last one
    /// arrive intact and in order, each its own WireGuard-sized datagram,
    /// whether or not the kernel coalesces them on the way in.
    #[test]
    fn a_batch_goes_out_and_comes_back_datagram_by_datagram() {
        let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let gro = enable_gro(&rx);
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to = match rx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let mut out = Outbox::new(1 << 20);
        let mut want = Vec::new();
        for i in 0..50u8 {
            let len = if i == 49 { 700 } else { 1584 };
            let room = out.room(len).unwrap();
            room[..len].fill(i);
            out.push(len, len - 80);
            want.push(vec![i; len]);
        }
        let f = out.flush(&tx, to);
        assert_eq!(f.failed, 0);
        assert_eq!(f.packets, 50);
        assert!(out.is_empty());
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut buf = vec![0u8; GRO_BUF];
        let mut cmsg = cmsg_buffer();
        let mut calls = 0;
        while got.len() < want.len() {
            let r = recv(&rx, &mut buf, &mut cmsg).unwrap();
            calls += 1;
            assert_eq!(r.from.unwrap().port(), tx.local_addr().unwrap().port());
            got.extend(buf[..r.len].chunks(r.segment).map(|c| c.to_vec()));
        }
        assert_eq!(got, want);
        if gro {
            assert!(
                calls < want.len(),
                "GRO coalesced nothing ({calls} receives)"
            );
        }
    }
}
