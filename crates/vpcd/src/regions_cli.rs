//! `vpcd regions …`: the encrypted inter-region backbone's status and keys
//! (`vpc_dataplane::backbone`, `docs/dataplane.md`, "Region backbone").

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use vpc_dataplane::backbone::{self, keys::KeyStore, Status};

#[derive(Subcommand, Debug)]
pub enum RegionsCmd {
    /// Per region pair: last handshake, packets and bytes each way, drops
    /// (as the running vpcd last wrote them, at most a second old).
    Status {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// The region gateways' WireGuard keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Replace a region gateway's key pair (all of them without --region);
    /// the running vpcd handshakes again with the new keys within a second.
    Rotate {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        region: Option<String>,
    },
    /// The gateways' public keys.
    List {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: RegionsCmd, default_dir: impl Fn() -> PathBuf) -> Result<()> {
    match cmd {
        RegionsCmd::Status { data_dir, json } => {
            let dir = data_dir.unwrap_or_else(&default_dir);
            let Some(status) = Status::read(&dir)
                .with_context(|| format!("reading {}", Status::path(&dir).display()))?
            else {
                println!(
                    "no backbone status in {}: vpcd is not serving a data plane with inter-region peerings there",
                    dir.display()
                );
                return Ok(());
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render(&status));
            }
            Ok(())
        }
        RegionsCmd::Keys { cmd } => match cmd {
            KeysCmd::Rotate { data_dir, region } => {
                let dir = data_dir.unwrap_or_else(&default_dir);
                rotate(&dir, region.as_deref())
            }
            KeysCmd::List { data_dir } => {
                let dir = data_dir.unwrap_or_else(&default_dir);
                let ks = KeyStore::new(&dir);
                for r in ks.regions() {
                    if let Some(k) = ks.load(&r)? {
                        println!("{r}\t{}", backbone::keys::public_text(&k.public));
                    }
                }
                Ok(())
            }
        },
    }
}

fn rotate(dir: &Path, region: Option<&str>) -> Result<()> {
    let ks = KeyStore::new(dir);
    let regions = match region {
        Some(r) => vec![r.to_string()],
        None => ks.regions(),
    };
    if regions.is_empty() {
        println!("no region gateway has a key yet in {}", dir.display());
    }
    for r in regions {
        let k = ks
            .rotate(&r)
            .with_context(|| format!("rotating {r}'s key"))?;
        println!(
            "{r}\tnew public key {}",
            backbone::keys::public_text(&k.public)
        );
    }
    Ok(())
}

/// The status as a table, one line per region pair.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    out.push_str("PAIR\tHANDSHAKE\tA->B PACKETS/BYTES\tB->A PACKETS/BYTES\tDROPPED (invalid WireGuard, unknown peering, send failed, underlay nft)\tPEERINGS\n");
    let mut seen = std::collections::BTreeSet::new();
    for t in &s.tunnels {
        let key = if t.region < t.peer {
            (t.region.clone(), t.peer.clone())
        } else {
            (t.peer.clone(), t.region.clone())
        };
        if !seen.insert(key.clone()) {
            continue;
        }
        let (a, b) = key;
        let ab = s.tunnels.iter().find(|x| x.region == a && x.peer == b);
        let ba = s.tunnels.iter().find(|x| x.region == b && x.peer == a);
        let hs = [ab, ba]
            .iter()
            .flatten()
            .filter_map(|x| x.handshake_age_ms)
            .min()
            .map_or("never".to_string(), |ms| {
                format!("{:.1}s ago", ms as f64 / 1000.0)
            });
        let flow = |x: Option<&backbone::TunnelStatus>| {
            x.map_or("-".into(), |x| {
                format!("{}/{}", x.sent.packets, x.sent.bytes)
            })
        };
        let sum = |f: fn(&backbone::TunnelStatus) -> u64| {
            [ab, ba].iter().flatten().map(|x| f(x)).sum::<u64>()
        };
        let nft: u64 = s
            .gateways
            .iter()
            .filter(|g| g.region == a || g.region == b)
            .map(|g| g.underlay_dropped_in.packets)
            .sum();
        let peerings: std::collections::BTreeSet<&str> = [ab, ba]
            .iter()
            .flatten()
            .flat_map(|x| x.peerings.iter().map(String::as_str))
            .collect();
        out.push_str(&format!(
            "{a}<->{b}\t{hs}\t{}\t{}\t{} {} {} {}\t{}\n",
            flow(ab),
            flow(ba),
            sum(|x| x.invalid),
            sum(|x| x.unknown_peering),
            sum(|x| x.send_failed),
            nft,
            peerings.into_iter().collect::<Vec<_>>().join(",")
        ));
    }
    for g in &s.gateways {
        out.push_str(&format!(
            "gateway {}\t{}\t{}\tkey {}\tunderlay in/out: wireguard {}/{} dropped {}/{}\tunexpected {}\n",
            g.region,
            g.namespace,
            g.underlay_address,
            g.public_key,
            g.wireguard_in.packets,
            g.wireguard_out.packets,
            g.underlay_dropped_in.packets,
            g.underlay_dropped_out.packets,
            g.unexpected_datagrams
        ));
    }
    out
}
