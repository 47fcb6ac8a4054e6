//! The WireGuard workers: userspace WireGuard (boringtun's noise layer) in
//! vpcd's process, between a region gateway's UDP socket on the underlay
//! and the peering TUN devices in the VPC routers.
//!
//! One WireGuard session per region pair. Several peerings can join the
//! same two regions with overlapping CIDRs, so every packet entering the
//! tunnel gets a 40-byte IPv6 header naming its peering (`fd76:7063:6400::`
//! plus the peering's 48-bit ID as the interface identifier, next header 4
//! or 41); the receiving gateway writes the inner packet to that peering's
//! TUN device and drops anything naming a peering it does not carry.

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tun_rs::{InterruptEvent, SyncDevice};

/// The UDP port of every gateway's WireGuard socket.
pub const WG_PORT: u16 = 51820;
/// The size of the header naming a packet's peering inside the tunnel.
pub const TAG_LEN: usize = 40;
/// The prefix of the tag header's addresses.
const TAG_PREFIX: [u8; 8] = [0xfd, 0x76, 0x70, 0x63, 0x64, 0, 0, 0];
/// Room for the largest packet a TUN hands over plus the tag and WireGuard's overhead.
const BUF: usize = 65536 + TAG_LEN + 256;

fn relaxed_add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// One direction's packet and byte counts.
#[derive(Debug, Default)]
pub struct Flow {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl Flow {
    fn add(&self, bytes: usize) {
        relaxed_add(&self.packets, 1);
        relaxed_add(&self.bytes, bytes as u64);
    }
}

/// What one end of a region pair's tunnel counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// Inner packets sent into the tunnel (towards the peer region).
    pub sent: Flow,
    /// Inner packets received from the tunnel and delivered.
    pub received: Flow,
    /// Datagrams from the peer's address that were not valid WireGuard for
    /// this session (forged, replayed, wrong key): dropped.
    pub invalid: AtomicU64,
    /// Authenticated packets naming a peering this pair does not carry: dropped.
    pub unknown_peering: AtomicU64,
    /// Packets that could not be sent (no session yet: queued by WireGuard
    /// up to a limit, then dropped; or a send error).
    pub send_failed: AtomicU64,
}

/// The tag of a peering: its ID's last 12 hex digits as a number.
pub fn peering_tag(pcx_id: &str) -> u64 {
    let short = crate::names::short(pcx_id);
    u64::from_str_radix(short, 16).unwrap_or_else(|_| u64::from(crate::names::fnv1a32(pcx_id)))
}

/// Writes the tag header for an inner packet of `len` bytes into `hdr`.
fn write_tag(hdr: &mut [u8], tag: u64, inner_v6: bool, len: usize) {
    hdr[..TAG_LEN].fill(0);
    hdr[0] = 0x60;
    hdr[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    hdr[6] = if inner_v6 { 41 } else { 4 };
    hdr[7] = 64;
    for at in [8, 24] {
        hdr[at..at + 8].copy_from_slice(&TAG_PREFIX);
        hdr[at + 8..at + 16].copy_from_slice(&tag.to_be_bytes());
    }
}

/// The peering tag and inner packet of a decrypted tunnel packet.
fn read_tag(p: &[u8]) -> Option<(u64, &[u8])> {
    if p.len() < TAG_LEN || p[0] >> 4 != 6 || !matches!(p[6], 4 | 41) {
        return None;
    }
    if p[24..32] != TAG_PREFIX {
        return None;
    }
    let tag = u64::from_be_bytes(p[32..40].try_into().ok()?);
    let len = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let inner = p.get(TAG_LEN..TAG_LEN + len)?;
    let version = inner.first()? >> 4;
    if (p[6] == 4 && version != 4) || (p[6] == 41 && version != 6) {
        return None;
    }
    Some((tag, inner))
}

/// One end of a region pair's tunnel: region `region`'s gateway, talking
/// to region `peer`'s gateway at `peer_addr`.
pub struct End {
    pub region: String,
    pub peer: String,
    pub peer_addr: SocketAddrV4,
    /// The public key this end expects of its peer.
    pub peer_public: PublicKey,
    /// The public key of this end's own static key.
    pub own_public: PublicKey,
    tunn: Mutex<Tunn>,
    sock: Arc<UdpSocket>,
    pub counters: Counters,
    /// The peering TUN devices (in this region's VPC routers) by tag.
    tuns: RwLock<BTreeMap<u64, Arc<SyncDevice>>>,
}

impl std::fmt::Debug for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("End")
            .field("region", &self.region)
            .field("peer", &self.peer)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

impl End {
    pub fn new(
        region: &str,
        peer: &str,
        peer_addr: SocketAddrV4,
        own: &StaticSecret,
        peer_public: PublicKey,
        sock: Arc<UdpSocket>,
    ) -> End {
        let index: u32 = rand::random::<u32>() >> 8;
        End {
            region: region.to_string(),
            peer: peer.to_string(),
            peer_addr,
            peer_public,
            own_public: PublicKey::from(own),
            tunn: Mutex::new(Tunn::new(own.clone(), peer_public, None, None, index, None)),
            sock,
            counters: Counters::default(),
            tuns: RwLock::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tunn> {
        self.tunn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send_to_peer(&self, p: &[u8]) -> bool {
        self.sock.send_to(p, self.peer_addr).is_ok()
    }

    /// Attaches a peering's TUN device.
    pub fn attach(&self, tag: u64, dev: Arc<SyncDevice>) {
        self.tuns
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tag, dev);
    }

    /// Detaches a peering's TUN device.
    pub fn detach(&self, tag: u64) {
        self.tuns
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tag);
    }

    /// How long ago the last handshake completed.
    pub fn handshake_age(&self) -> Option<Duration> {
        self.lock().stats().0
    }

    /// Encrypts one tagged packet and sends it to the peer gateway.
    fn send(&self, packet: &[u8], out: &mut [u8]) {
        let inner = packet.len() - TAG_LEN;
        let mut t = self.lock();
        match t.encapsulate(packet, out) {
            TunnResult::WriteToNetwork(p) => {
                let is_data = p.len() >= 4 && p[0] == 4;
                drop(t);
                if !self.send_to_peer(p) {
                    relaxed_add(&self.counters.send_failed, 1);
                } else if is_data {
                    self.counters.sent.add(inner);
                }
            }
            // Queued until the handshake completes.
            TunnResult::Done => {}
            _ => relaxed_add(&self.counters.send_failed, 1),
        }
    }

    /// Handles one datagram from the peer gateway's address.
    fn receive(&self, from: Ipv4Addr, data: &[u8], out: &mut [u8]) {
        let mut t = self.lock();
        let mut res = t.decapsulate(Some(from.into()), data, out);
        loop {
            match res {
                TunnResult::Done => return,
                TunnResult::Err(_) => {
                    relaxed_add(&self.counters.invalid, 1);
                    return;
                }
                TunnResult::WriteToNetwork(p) => {
                    // A handshake answer, or packets queued while it ran.
                    if !self.send_to_peer(p) {
                        relaxed_add(&self.counters.send_failed, 1);
                    }
                    res = t.decapsulate(None, &[], out);
                }
                TunnResult::WriteToTunnelV6(p, _) => {
                    drop(t);
                    self.deliver(p);
                    return;
                }
                TunnResult::WriteToTunnelV4(..) => {
                    // Authentic, but never something a gateway sends.
                    relaxed_add(&self.counters.unknown_peering, 1);
                    return;
                }
            }
        }
    }

    fn deliver(&self, p: &[u8]) {
        let Some((tag, inner)) = read_tag(p) else {
            relaxed_add(&self.counters.unknown_peering, 1);
            return;
        };
        let dev = self
            .tuns
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tag)
            .cloned();
        match dev {
            Some(d) if d.send(inner).is_ok() => self.counters.received.add(inner.len()),
            Some(_) => relaxed_add(&self.counters.send_failed, 1),
            None => relaxed_add(&self.counters.unknown_peering, 1),
        }
    }

    /// Runs WireGuard's timers (handshake retries, rekeying, expiry).
    fn tick(&self, out: &mut [u8]) {
        let mut t = self.lock();
        if let TunnResult::WriteToNetwork(p) = t.update_timers(out) {
            let _ = self.sock.send_to(p, self.peer_addr);
        }
    }
}

/// A region gateway's running part: its UDP socket on the underlay, the
/// thread reading it and the thread running the WireGuard timers.
#[derive(Debug)]
pub struct GatewayWorker {
    pub region: String,
    pub sock: Arc<UdpSocket>,
    /// The ends of this gateway's region pairs, by the peer gateway's underlay address.
    pub ends: Arc<RwLock<BTreeMap<Ipv4Addr, Arc<End>>>>,
    /// Datagrams that reached the socket from an address or port that is no peer gateway's.
    pub unexpected: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl GatewayWorker {
    /// Starts the gateway's threads on a socket bound inside its namespace.
    pub fn start(region: &str, sock: UdpSocket) -> std::io::Result<GatewayWorker> {
        sock.set_read_timeout(Some(Duration::from_millis(250)))?;
        let sock = Arc::new(sock);
        let ends: Arc<RwLock<BTreeMap<Ipv4Addr, Arc<End>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let unexpected = Arc::new(AtomicU64::new(0));
        let reader = {
            let (sock, ends, stop, unexpected) =
                (sock.clone(), ends.clone(), stop.clone(), unexpected.clone());
            std::thread::Builder::new()
                .name(format!("wg-rx-{region}"))
                .spawn(move || {
                    let mut buf = vec![0u8; BUF];
                    let mut out = vec![0u8; BUF];
                    while !stop.load(Ordering::Relaxed) {
                        let (n, from) = match sock.recv_from(&mut buf) {
                            Ok(x) => x,
                            Err(_) => continue,
                        };
                        let SocketAddr::V4(from) = from else {
                            relaxed_add(&unexpected, 1);
                            continue;
                        };
                        let end = ends
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(from.ip())
                            .cloned();
                        match end {
                            Some(e) if from.port() == WG_PORT => {
                                e.receive(*from.ip(), &buf[..n], &mut out)
                            }
                            _ => relaxed_add(&unexpected, 1),
                        }
                    }
                })?
        };
        let timers = {
            let (ends, stop) = (ends.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("wg-timers-{region}"))
                .spawn(move || {
                    let mut out = vec![0u8; 512];
                    while !stop.load(Ordering::Relaxed) {
                        let all: Vec<Arc<End>> = ends
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .values()
                            .cloned()
                            .collect();
                        for e in all {
                            e.tick(&mut out);
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })?
        };
        Ok(GatewayWorker {
            region: region.to_string(),
            sock,
            ends,
            unexpected,
            stop,
            threads: vec![reader, timers],
        })
    }

    pub fn end(&self, peer_addr: Ipv4Addr) -> Option<Arc<End>> {
        self.ends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer_addr)
            .cloned()
    }

    pub fn set_end(&self, peer_addr: Ipv4Addr, end: Option<Arc<End>>) {
        let mut ends = self.ends.write().unwrap_or_else(|p| p.into_inner());
        match end {
            Some(e) => {
                ends.insert(peer_addr, e);
            }
            None => {
                ends.remove(&peer_addr);
            }
        }
    }
}

impl Drop for GatewayWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The thread moving one peering's packets from its TUN device (in a VPC
/// router) into its region pair's tunnel.
pub struct TunReader {
    pub dev: Arc<SyncDevice>,
    stop: Arc<AtomicBool>,
    event: Arc<InterruptEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TunReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunReader").finish_non_exhaustive()
    }
}

impl TunReader {
    pub fn start(
        name: &str,
        dev: Arc<SyncDevice>,
        end: Arc<End>,
        tag: u64,
    ) -> std::io::Result<TunReader> {
        let stop = Arc::new(AtomicBool::new(false));
        let event = Arc::new(InterruptEvent::new()?);
        let thread = {
            let (dev, stop, event) = (dev.clone(), stop.clone(), event.clone());
            std::thread::Builder::new()
                .name(format!("wg-tx-{name}"))
                .spawn(move || {
                    let mut buf = vec![0u8; BUF];
                    let mut out = vec![0u8; BUF];
                    // Non-blocking reads: one system call per packet while
                    // packets keep coming; poll (with the stop event) only
                    // when the queue is empty.
                    let nonblocking = dev.set_nonblocking(true).is_ok();
                    while !stop.load(Ordering::Relaxed) {
                        let read = if nonblocking {
                            dev.recv(&mut buf[TAG_LEN..])
                        } else {
                            dev.recv_intr_timeout(
                                &mut buf[TAG_LEN..],
                                &event,
                                Some(Duration::from_millis(500)),
                            )
                        };
                        let n = match read {
                            Ok(0) => continue,
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                let _ = dev.wait_readable_intr_timeout(
                                    &event,
                                    Some(Duration::from_millis(500)),
                                );
                                continue;
                            }
                            Err(e) => {
                                if !matches!(
                                    e.kind(),
                                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                                ) {
                                    // The device went away; the supervisor notices.
                                    std::thread::sleep(Duration::from_millis(100));
                                }
                                continue;
                            }
                        };
                        let v6 = buf[TAG_LEN] >> 4 == 6;
                        if buf[TAG_LEN] >> 4 != 4 && !v6 {
                            continue;
                        }
                        write_tag(&mut buf[..TAG_LEN], tag, v6, n);
                        end.send(&buf[..TAG_LEN + n], &mut out);
                    }
                })?
        };
        Ok(TunReader {
            dev,
            stop,
            event,
            thread: Some(thread),
        })
    }
}

impl Drop for TunReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.event.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_reject_what_is_not_ours() {
        let inner = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let mut p = vec![0u8; TAG_LEN + inner.len()];
        p[TAG_LEN..].copy_from_slice(&inner);
        let tag = peering_tag("pcx-0123456789abcdef0");
        assert_eq!(tag, 0x56789abcdef0);
        write_tag(&mut p[..TAG_LEN], tag, false, inner.len());
        let (t, got) = read_tag(&p).expect("our own tag");
        assert_eq!(t, tag);
        assert_eq!(got, &inner);
        // A different prefix, a next header that disagrees with the inner
        // packet, or a truncated packet is not ours.
        let mut other = p.clone();
        other[24] = 0xfe;
        assert!(read_tag(&other).is_none());
        let mut lying = p.clone();
        lying[6] = 41;
        assert!(read_tag(&lying).is_none());
        assert!(read_tag(&p[..TAG_LEN + 4]).is_none());
    }
}
