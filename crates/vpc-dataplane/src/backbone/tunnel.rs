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
//!
//! The workers move packets in batches, not one by one (per-packet system
//! calls, not the cipher, were what limited the first version):
//! - A TUN device is opened with `IFF_VNET_HDR` and TCP/UDP segmentation
//!   offload, so the router hands its reader a whole TCP super-packet (up to
//!   64 KiB) in one read; tun-rs cuts it into 1500-byte packets in
//!   userspace (what the kernel would have done before handing them over
//!   one read at a time). The reader keeps reading until the queue is empty
//!   or the batch is full, encrypts the batch under one lock of the
//!   session, and sends it with UDP GSO (`udp`): one `sendmsg` per ~40
//!   datagrams.
//! - The peer gateway receives them with UDP GRO in one `recvmsg`,
//!   decrypts each datagram on its own (each stays a complete, separately
//!   authenticated WireGuard message), and tun-rs coalesces the TCP
//!   segments of one flow back into a super-packet that goes into the
//!   peering's TUN device in one write, so the receiving router, its nft
//!   rules and conntrack see one packet per batch instead of forty.
//!
//! Every decrypted packet is still checked for its tag before anything is
//! written; nothing but authenticated plaintext is ever written to a TUN
//! device, and nothing but WireGuard messages to the socket.

use super::udp::{self, Outbox};
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tun_rs::{GROTable, InterruptEvent, SyncDevice, VIRTIO_NET_HDR_LEN};

/// The UDP port of every gateway's WireGuard socket.
pub const WG_PORT: u16 = 51820;
/// The size of the header naming a packet's peering inside the tunnel.
pub const TAG_LEN: usize = 40;
/// The prefix of the tag header's addresses.
const TAG_PREFIX: [u8; 8] = [0xfd, 0x76, 0x70, 0x63, 0x64, 0, 0, 0];
/// Room for the largest packet a TUN hands over plus the tag and WireGuard's overhead.
const BUF: usize = 65536 + TAG_LEN + 256;
/// Packets a TUN reader moves per batch.
const BATCH: usize = 128;
/// The most segments the kernel may put into one packet it hands a
/// peering's TUN device (the device's `gso_max_segs`; bigger ones it cuts
/// itself): a reader reads again only while its batch has room for that many.
pub const TUN_GSO_MAX_SEGS: u32 = 64;
/// WireGuard's overhead on a data packet: header, tag and padding to 16 bytes.
const WG_OVERHEAD: usize = 16 + 16 + 15;

fn relaxed_add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// One direction's packet and byte counts.
#[derive(Debug, Default)]
pub struct Flow {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
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

/// What decrypting one datagram gave.
enum Opened {
    /// A tagged inner packet of this many bytes, at `TAG_LEN` in the buffer.
    Packet(u64, usize),
    /// A message for the peer (a handshake answer) of this many bytes, at 0.
    Reply(usize),
    Nothing,
    Invalid(boringtun::noise::errors::WireGuardError),
    Unknown,
}

/// A gateway reader's buffers, reused from batch to batch.
struct Inbox {
    datagrams: Vec<u8>,
    cmsg: Vec<u8>,
    /// Decrypted packets (tag header at 0, inner packet at `TAG_LEN`), with room
    /// for tun-rs to coalesce a whole super-packet into the first of a flow.
    plain: Vec<Vec<u8>>,
    tags: Vec<u64>,
    scratch: Vec<u8>,
    gro: GROTable,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            datagrams: vec![0u8; udp::GRO_BUF],
            cmsg: udp::cmsg_buffer(),
            plain: Vec::new(),
            tags: Vec::with_capacity(udp::GSO_MAX_SEGMENTS),
            scratch: vec![0u8; BUF],
            gro: GROTable::default(),
        }
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

    fn flush(&self, out: &mut Outbox) {
        let f = out.flush(&self.sock, self.peer_addr);
        relaxed_add(&self.counters.sent.packets, f.packets);
        relaxed_add(&self.counters.sent.bytes, f.inner_bytes);
        relaxed_add(&self.counters.send_failed, f.failed);
    }

    /// Tags, encrypts and sends a batch of inner packets of one peering:
    /// packet `i` is `bufs[i][TAG_LEN..TAG_LEN + sizes[i]]`, with room for
    /// the tag before it.
    fn send_batch(&self, tag: u64, bufs: &mut [Vec<u8>], sizes: &[usize], out: &mut Outbox) {
        let mut t = self.lock();
        for (buf, &n) in bufs.iter_mut().zip(sizes) {
            let v6 = match buf[TAG_LEN] >> 4 {
                4 => false,
                6 => true,
                _ => continue,
            };
            write_tag(&mut buf[..TAG_LEN], tag, v6, n);
            let need = TAG_LEN + n + WG_OVERHEAD;
            if out.room(need).is_none() {
                self.flush(out);
            }
            let Some(room) = out.room(need) else {
                relaxed_add(&self.counters.send_failed, 1);
                continue;
            };
            match t.encapsulate(&buf[..TAG_LEN + n], room) {
                TunnResult::WriteToNetwork(p) if p.first() == Some(&4) => {
                    let len = p.len();
                    out.push(len, n);
                }
                // A handshake initiation: the packet waits in WireGuard's queue.
                TunnResult::WriteToNetwork(p) => {
                    if !self.send_to_peer(p) {
                        relaxed_add(&self.counters.send_failed, 1);
                    }
                }
                // Queued until the handshake completes.
                TunnResult::Done => {}
                _ => relaxed_add(&self.counters.send_failed, 1),
            }
        }
        drop(t);
        self.flush(out);
    }

    /// Decrypts one datagram into `plain`.
    fn open(tunn: &mut Tunn, from: Ipv4Addr, data: &[u8], plain: &mut Vec<u8>) -> Opened {
        plain.clear();
        plain.resize(data.len().max(256), 0);
        match tunn.decapsulate(Some(from.into()), data, plain) {
            TunnResult::Done => Opened::Nothing,
            TunnResult::Err(e) => Opened::Invalid(e),
            // A handshake answer, or packets queued while it ran: the caller sends them.
            TunnResult::WriteToNetwork(p) => Opened::Reply(p.len()),
            TunnResult::WriteToTunnelV6(p, _) => match read_tag(p) {
                Some((tag, inner)) => Opened::Packet(tag, inner.len()),
                None => Opened::Unknown,
            },
            // Authentic, but never something a gateway sends.
            TunnResult::WriteToTunnelV4(..) => Opened::Unknown,
        }
    }

    /// Handles one batch of datagrams (each `segment` bytes but the last)
    /// from the peer gateway's address.
    fn receive(&self, from: Ipv4Addr, data: &[u8], segment: usize, inbox: &mut Inbox) {
        let mut n = 0;
        inbox.tags.clear();
        let mut t = self.lock();
        for d in data.chunks(segment) {
            if inbox.plain.len() <= n {
                inbox.plain.push(Vec::with_capacity(BUF + TAG_LEN));
            }
            let plain = &mut inbox.plain[n];
            match End::open(&mut t, from, d, plain) {
                Opened::Reply(len) => {
                    if !self.send_to_peer(&plain[..len]) {
                        relaxed_add(&self.counters.send_failed, 1);
                    }
                    while let TunnResult::WriteToNetwork(p) =
                        t.decapsulate(None, &[], &mut inbox.scratch)
                    {
                        if !self.send_to_peer(p) {
                            relaxed_add(&self.counters.send_failed, 1);
                        }
                    }
                }
                Opened::Packet(tag, len) => {
                    plain.truncate(TAG_LEN + len);
                    inbox.tags.push(tag);
                    n += 1;
                }
                Opened::Nothing => {}
                Opened::Invalid(e) => {
                    tracing::debug!(region = %self.region, peer = %self.peer, error = ?e,
                        "backbone: an invalid WireGuard datagram");
                    relaxed_add(&self.counters.invalid, 1);
                }
                Opened::Unknown => relaxed_add(&self.counters.unknown_peering, 1),
            }
        }
        drop(t);
        if n > 0 {
            self.deliver(&mut inbox.plain[..n], &inbox.tags, &mut inbox.gro);
        }
    }

    /// Writes decrypted packets to their peerings' TUN devices, each
    /// peering's in one call (coalesced where they are one TCP or UDP flow).
    fn deliver(&self, plain: &mut [Vec<u8>], tags: &[u64], gro: &mut GROTable) {
        let tuns = self.tuns.read().unwrap_or_else(|p| p.into_inner());
        let first = tags[0];
        if tags.iter().all(|t| *t == first) {
            let bytes: usize = plain.iter().map(|p| p.len() - TAG_LEN).sum();
            self.write(tuns.get(&first), plain, bytes, gro);
            return;
        }
        let mut seen: Vec<u64> = Vec::new();
        for &tag in tags {
            if seen.contains(&tag) {
                continue;
            }
            seen.push(tag);
            let mut group: Vec<&mut Vec<u8>> = plain
                .iter_mut()
                .zip(tags)
                .filter(|(_, t)| **t == tag)
                .map(|(p, _)| p)
                .collect();
            let bytes: usize = group.iter().map(|p| p.len() - TAG_LEN).sum();
            self.write(tuns.get(&tag), &mut group, bytes, gro);
        }
    }

    fn write<B: tun_rs::ExpandBuffer>(
        &self,
        dev: Option<&Arc<SyncDevice>>,
        packets: &mut [B],
        bytes: usize,
        gro: &mut GROTable,
    ) {
        let count = packets.len() as u64;
        match dev {
            Some(d) if d.send_multiple(gro, packets, TAG_LEN).is_ok() => {
                relaxed_add(&self.counters.received.packets, count);
                relaxed_add(&self.counters.received.bytes, bytes as u64);
            }
            Some(_) => relaxed_add(&self.counters.send_failed, count),
            None => relaxed_add(&self.counters.unknown_peering, count),
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

/// The gateway socket's buffers: room for bursts the worker has not read yet
/// (the kernel's default of about 200 KiB holds some 130 datagrams, and a
/// datagram lost there is a TCP retransmission inside the tunnel).
const SOCKET_BUFFER: usize = 8 << 20;

/// A gateway's WireGuard socket, bound in the calling thread's namespace.
pub fn bind_socket(at: SocketAddrV4) -> std::io::Result<UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let sock = UdpSocket::bind(at)?;
    setsockopt(&sock, sockopt::RcvBufForce, &SOCKET_BUFFER).map_err(std::io::Error::from)?;
    setsockopt(&sock, sockopt::SndBufForce, &SOCKET_BUFFER).map_err(std::io::Error::from)?;
    Ok(sock)
}

/// A region gateway's running part: its UDP socket on the underlay, the
/// thread reading it and the thread running the WireGuard timers.
#[derive(Debug)]
pub struct GatewayWorker {
    pub region: String,
    pub sock: Arc<UdpSocket>,
    /// The ends of this gateway's region pairs, by the peer gateway's
    /// underlay address and port.
    pub ends: Arc<RwLock<BTreeMap<SocketAddrV4, Arc<End>>>>,
    /// Datagrams that reached the socket from an address or port that is no peer gateway's.
    pub unexpected: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl GatewayWorker {
    /// Starts the gateway's threads on a socket bound inside its namespace.
    pub fn start(region: &str, sock: UdpSocket) -> std::io::Result<GatewayWorker> {
        sock.set_read_timeout(Some(Duration::from_millis(250)))?;
        udp::enable_gro(&sock);
        let sock = Arc::new(sock);
        let ends: Arc<RwLock<BTreeMap<SocketAddrV4, Arc<End>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let unexpected = Arc::new(AtomicU64::new(0));
        let reader = {
            let (sock, ends, stop, unexpected) =
                (sock.clone(), ends.clone(), stop.clone(), unexpected.clone());
            std::thread::Builder::new()
                .name(format!("wg-rx-{region}"))
                .spawn(move || {
                    let mut inbox = Inbox::new();
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(r) = udp::recv(&sock, &mut inbox.datagrams, &mut inbox.cmsg) else {
                            continue;
                        };
                        let count = r.len.div_ceil(r.segment).max(1) as u64;
                        let Some(from) = r.from else {
                            relaxed_add(&unexpected, count);
                            continue;
                        };
                        let end = ends
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(&from)
                            .cloned();
                        match end {
                            Some(e) => {
                                let data = std::mem::take(&mut inbox.datagrams);
                                e.receive(*from.ip(), &data[..r.len], r.segment, &mut inbox);
                                inbox.datagrams = data;
                            }
                            _ => relaxed_add(&unexpected, count),
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

    pub fn end(&self, peer_addr: SocketAddrV4) -> Option<Arc<End>> {
        self.ends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer_addr)
            .cloned()
    }

    pub fn set_end(&self, peer_addr: SocketAddrV4, end: Option<Arc<End>>) {
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

/// Where a TUN reader sends what it reads.
#[derive(Debug, Clone)]
pub enum Route {
    /// Everything into one session (one host: the peer region's only gateway).
    One(Arc<End>),
    /// Each packet into the session with the gateway of the host its
    /// destination lives on (a cluster, `cluster`).
    ByDestination(Arc<Destinations>),
}

/// The sessions of a peering's side in a cluster, by destination address:
/// the peer VPC's instance addresses, each to the end whose peer gateway is
/// on the instance's host. A packet to an address it does not hold is
/// dropped (never sent anywhere in clear) and counted.
#[derive(Debug, Default)]
pub struct Destinations {
    ends: RwLock<BTreeMap<std::net::IpAddr, Arc<End>>>,
    pub unroutable: AtomicU64,
}

impl Destinations {
    /// Replaces the map.
    pub fn set(&self, ends: BTreeMap<std::net::IpAddr, Arc<End>>) {
        *self.ends.write().unwrap_or_else(|p| p.into_inner()) = ends;
    }

    /// The current map (for comparison and status).
    pub fn get(&self) -> BTreeMap<std::net::IpAddr, Arc<End>> {
        self.ends.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lookup(&self, packet: &[u8]) -> Option<Arc<End>> {
        let dst: std::net::IpAddr = match packet.first()? >> 4 {
            4 => <[u8; 4]>::try_from(packet.get(16..20)?).ok()?.into(),
            6 => <[u8; 16]>::try_from(packet.get(24..40)?).ok()?.into(),
            _ => return None,
        };
        self.ends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&dst)
            .cloned()
    }
}

impl TunReader {
    pub fn start(
        name: &str,
        dev: Arc<SyncDevice>,
        route: Route,
        tag: u64,
    ) -> std::io::Result<TunReader> {
        let stop = Arc::new(AtomicBool::new(false));
        let event = Arc::new(InterruptEvent::new()?);
        // Non-blocking reads: read while packets keep coming; poll (with the
        // stop event) only when the queue is empty.
        dev.set_nonblocking(true)?;
        let thread = {
            let (dev, stop, event) = (dev.clone(), stop.clone(), event.clone());
            std::thread::Builder::new()
                .name(format!("wg-tx-{name}"))
                .spawn(move || read_loop(&dev, &route, tag, &stop, &event))?
        };
        Ok(TunReader {
            dev,
            stop,
            event,
            thread: Some(thread),
        })
    }
}

/// A TUN reader's loop: a batch is what the device has queued (up to
/// `BATCH` packets), split out of its super-packets, sent in one go.
fn read_loop(dev: &SyncDevice, route: &Route, tag: u64, stop: &AtomicBool, event: &InterruptEvent) {
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65536];
    // Zeroed allocations: pages are only touched when a packet lands in them.
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; BUF]).collect();
    let mut sizes = vec![0usize; BATCH];
    let mut out = Outbox::new(BATCH * (TAG_LEN + 1500 + WG_OVERHEAD) + BUF);
    while !stop.load(Ordering::Relaxed) {
        let mut n = 0;
        while BATCH - n > TUN_GSO_MAX_SEGS as usize {
            match dev.recv_multiple(&mut original, &mut bufs[n..], &mut sizes[n..], TAG_LEN) {
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error().is_some() => {
                    // The device went away; the supervisor notices.
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
                // A packet tun-rs could not split: dropped, as a NIC would.
                Err(_) => match route {
                    Route::One(end) => relaxed_add(&end.counters.send_failed, 1),
                    Route::ByDestination(d) => relaxed_add(&d.unroutable, 1),
                },
            }
        }
        if n == 0 {
            let _ = dev.wait_readable_intr_timeout(event, Some(Duration::from_millis(500)));
            continue;
        }
        match route {
            Route::One(end) => end.send_batch(tag, &mut bufs[..n], &sizes[..n], &mut out),
            Route::ByDestination(d) => {
                send_by_destination(d, tag, &mut bufs[..n], &sizes[..n], &mut out)
            }
        }
    }
}

/// Sends a batch packet by packet to the session of each one's destination:
/// runs of packets for the same session go in one call, in order.
fn send_by_destination(
    d: &Destinations,
    tag: u64,
    bufs: &mut [Vec<u8>],
    sizes: &[usize],
    out: &mut Outbox,
) {
    let ends: Vec<Option<Arc<End>>> = bufs
        .iter()
        .zip(sizes)
        .map(|(b, &n)| d.lookup(&b[TAG_LEN..TAG_LEN + n]))
        .collect();
    let mut i = 0;
    while i < ends.len() {
        let mut j = i + 1;
        while j < ends.len()
            && match (&ends[i], &ends[j]) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        {
            j += 1;
        }
        match &ends[i] {
            Some(end) => end.send_batch(tag, &mut bufs[i..j], &sizes[i..j], out),
            None => relaxed_add(&d.unroutable, (j - i) as u64),
        }
        i = j;
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
