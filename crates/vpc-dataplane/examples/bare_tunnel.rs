//! The baselines of `scripts/bench-backbone.sh`: a WireGuard tunnel between
//! two bare namespaces, with none of vpcd's routers, rules or peerings
//! around it. Run inside a namespace (`ip netns exec NS bare_tunnel ...`);
//! it runs until killed.
//!
//! - `bare_tunnel device wgX [THREADS]`: boringtun's own WireGuard device
//!   (its `device` module, what `boringtun-cli` runs). It makes the TUN
//!   device `wgX` and serves WireGuard's configuration protocol on
//!   `/var/run/wireguard/wgX.sock`, which the script uses to set keys and
//!   the peer.
//! - `bare_tunnel engine wgX PRIVATE PEER_PUBLIC LOCAL PEER INNER`: vpcd's
//!   own backbone engine (`vpc_dataplane::backbone::tunnel`: the same
//!   batched TUN and UDP I/O and the same per-peering tag as between region
//!   gateways) over an offloading TUN device `wgX` with address `INNER`/24,
//!   its socket on `LOCAL`:51820, its peer at `PEER`:51820 (keys in hex).
//! - `bare_tunnel pubkey PRIVATE`: the public key (hex) of a private key (hex).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use vpc_dataplane::backbone::tunnel::{self, End, GatewayWorker, TunReader, WG_PORT};

fn key(hex: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    <[u8; 32]>::try_from(bytes).unwrap_or_else(|_| {
        eprintln!("a key is 64 hex digits");
        std::process::exit(2);
    })
}

fn addr(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or_else(|e| {
        eprintln!("{s}: {e}");
        std::process::exit(2);
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "pubkey" => {
            let public = boringtun::x25519::PublicKey::from(
                &boringtun::x25519::StaticSecret::from(key(&arg(2))),
            );
            let out: String = public
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!("{out}");
        }
        "device" => device(&arg(2), arg(3).parse().unwrap_or(2)),
        "engine" => {
            if let Err(e) = engine(&args[2..]) {
                eprintln!("cannot start the engine: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: bare_tunnel device|engine|pubkey ...");
            std::process::exit(2);
        }
    }
}

fn device(name: &str, threads: usize) {
    let config = boringtun::device::DeviceConfig {
        n_threads: threads,
        use_connected_socket: true,
        use_multi_queue: false,
        uapi_fd: -1,
    };
    match boringtun::device::DeviceHandle::new(name, config) {
        Ok(mut handle) => {
            println!("ready");
            handle.wait();
        }
        Err(e) => {
            eprintln!("cannot start the device {name}: {e:?}");
            std::process::exit(1);
        }
    }
}

fn engine(args: &[String]) -> std::io::Result<()> {
    let [name, private, peer_public, local, peer, inner] = args else {
        return Err(std::io::Error::other(
            "engine wgX PRIVATE PEER_PUBLIC LOCAL PEER INNER",
        ));
    };
    let (local, peer, inner) = (addr(local), addr(peer), addr(inner));
    let secret = boringtun::x25519::StaticSecret::from(key(private));
    let peer_public = boringtun::x25519::PublicKey::from(key(peer_public));
    let dev = Arc::new(
        tun_rs::DeviceBuilder::new()
            .name(name)
            .ipv4(inner, 24, None)
            .mtu(1500)
            .offload(true)
            .build_sync()?,
    );
    let worker = GatewayWorker::start(
        "bare",
        tunnel::bind_socket(SocketAddrV4::new(local, WG_PORT))?,
    )?;
    let end = Arc::new(End::new(
        "bare",
        "peer",
        SocketAddrV4::new(peer, WG_PORT),
        &secret,
        peer_public,
        worker.sock.clone(),
    ));
    worker.set_end(SocketAddrV4::new(peer, WG_PORT), Some(end.clone()));
    // The tag of one peering, the same at both ends.
    let tag = tunnel::peering_tag("pcx-0000000000000bare");
    end.attach(tag, dev.clone());
    let _reader = TunReader::start(name, dev, tunnel::Route::One(end), tag)?;
    println!("ready");
    loop {
        std::thread::park();
    }
}
