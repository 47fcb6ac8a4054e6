//! The baseline of `scripts/bench-backbone.sh`: boringtun's own WireGuard
//! device (its `device` module, what `boringtun-cli` runs), with none of
//! vpcd's routers, rules or peering tags. Run it inside a namespace
//! (`ip netns exec NS bare_tunnel wgX`); it makes the TUN device `wgX` and
//! serves WireGuard's configuration protocol on
//! `/var/run/wireguard/wgX.sock`, which the script uses to set keys and the
//! peer. It runs until killed.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "wg0".into());
    // `bare_tunnel pubkey HEX`: the public key (hex) of a private key (hex).
    if name == "pubkey" {
        let hex = std::env::args().nth(2).unwrap_or_default();
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        let Ok(key) = <[u8; 32]>::try_from(bytes) else {
            eprintln!("a private key is 64 hex digits");
            std::process::exit(2);
        };
        let public =
            boringtun::x25519::PublicKey::from(&boringtun::x25519::StaticSecret::from(key));
        let out: String = public
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("{out}");
        return;
    }
    let threads = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let config = boringtun::device::DeviceConfig {
        n_threads: threads,
        use_connected_socket: true,
        use_multi_queue: false,
        uapi_fd: -1,
    };
    match boringtun::device::DeviceHandle::new(&name, config) {
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
