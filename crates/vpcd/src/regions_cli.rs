//! `vpcd regions …`: the encrypted inter-region backbone's status and keys
//! (`vpc_dataplane::backbone`, `docs/dataplane.md`, "Region backbone").

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use vpc_dataplane::backbone::{self, keys::KeyStore, Status};

#[derive(Subcommand, Debug)]
pub enum RegionsCmd {
    /// Per region pair: last handshake, packets and bytes each way, drops
    /// (as the running vpcd last wrote them, at most a second old). For a
    /// cluster host, give its agent's `--data-dir`.
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
                    "no backbone status in {}: no vpcd serve or agent with inter-region peerings runs with this data directory",
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

/// The status as a table, one line per region pair (summed over its
/// sessions: on a cluster host one per peer gateway's host), then one line
/// per gateway and, on a cluster host, one per session.
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
        let ab: Vec<&backbone::TunnelStatus> = s
            .tunnels
            .iter()
            .filter(|x| x.region == a && x.peer == b)
            .collect();
        let ba: Vec<&backbone::TunnelStatus> = s
            .tunnels
            .iter()
            .filter(|x| x.region == b && x.peer == a)
            .collect();
        let both = || ab.iter().chain(&ba);
        let hs = both()
            .filter_map(|x| x.handshake_age_ms)
            .min()
            .map_or("never".to_string(), |ms| {
                format!("{:.1}s ago", ms as f64 / 1000.0)
            });
        let flow = |xs: &[&backbone::TunnelStatus]| {
            if xs.is_empty() {
                return "-".to_string();
            }
            let packets: u64 = xs.iter().map(|x| x.sent.packets).sum();
            let bytes: u64 = xs.iter().map(|x| x.sent.bytes).sum();
            format!("{packets}/{bytes}")
        };
        let sum = |f: fn(&backbone::TunnelStatus) -> u64| both().map(|x| f(x)).sum::<u64>();
        let nft = s
            .gateways
            .iter()
            .filter(|g| g.region == a || g.region == b)
            .map(|g| g.underlay_dropped_in.map(|c| c.packets))
            .sum::<Option<u64>>()
            .map_or("-".to_string(), |n| n.to_string());
        let peerings: std::collections::BTreeSet<&str> = both()
            .flat_map(|x| x.peerings.iter().map(String::as_str))
            .collect();
        out.push_str(&format!(
            "{a}<->{b}\t{hs}\t{}\t{}\t{} {} {} {}\t{}\n",
            flow(&ab),
            flow(&ba),
            sum(|x| x.invalid),
            sum(|x| x.unknown_peering),
            sum(|x| x.send_failed),
            nft,
            peerings.into_iter().collect::<Vec<_>>().join(",")
        ));
    }
    let packets = |c: Option<backbone::Count>| c.map_or("-".to_string(), |c| c.packets.to_string());
    for g in &s.gateways {
        let place = match &g.host {
            Some(h) if g.namespace.is_empty() => format!("host {h}"),
            Some(h) => format!("host {h} (netns {})", g.namespace),
            None => g.namespace.clone(),
        };
        out.push_str(&format!(
            "gateway {}\t{place}\t{}\tkey {}\tunderlay in/out: wireguard {}/{} dropped {}/{}\tunexpected {}\n",
            g.region,
            g.underlay_address,
            g.public_key,
            packets(g.wireguard_in),
            packets(g.wireguard_out),
            packets(g.underlay_dropped_in),
            packets(g.underlay_dropped_out),
            g.unexpected_datagrams
        ));
    }
    for t in s
        .tunnels
        .iter()
        .filter(|t| t.peer_host.is_some() || t.peer_endpoint.is_some())
    {
        let hs = t.handshake_age_ms.map_or("never".to_string(), |ms| {
            format!("{:.1}s ago", ms as f64 / 1000.0)
        });
        out.push_str(&format!(
            "session {}->{} with host {} ({})\thandshake {hs}\tsent {}/{}\treceived {}/{}\tdropped {} {} {}\n",
            t.region,
            t.peer,
            t.peer_host.as_deref().unwrap_or("?"),
            t.peer_endpoint.as_deref().unwrap_or("?"),
            t.sent.packets,
            t.sent.bytes,
            t.received.packets,
            t.received.bytes,
            t.invalid,
            t.unknown_peering,
            t.send_failed,
        ));
    }
    out
}

/// Feeds the backbone's tunnel stats into `/metrics` (`docs/metering.md`,
/// "Metrics"): every second it reads the same status file `vpcd regions
/// status` prints from `data_dir` (`vpcd serve`'s data directory, or an
/// agent's `--data-dir`) and hands it to `export_to`, skipping a file no
/// running backbone has written for 5 s.
pub fn start_metrics(export_to: impl Fn(&Status) + Send + 'static, data_dir: &Path) -> Result<()> {
    let dir = data_dir.to_path_buf();
    std::thread::Builder::new()
        .name("backbone-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let fresh = std::fs::metadata(Status::path(&dir))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < std::time::Duration::from_secs(5));
            if !fresh {
                continue;
            }
            match Status::read(&dir) {
                Ok(Some(status)) => export_to(&status),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cannot read the backbone status"),
            }
        })
        .context("starting the backbone metrics thread")?;
    Ok(())
}

/// Sets the backbone families of `m` from one status. A pair's counters
/// are the sum of its sessions (each followed on its own, so one session
/// restarting from zero adds no other's count again); its handshake age is
/// the most recent session's.
pub fn export(m: &vpc_api::Metrics, s: &Status) {
    let mut ages: std::collections::BTreeMap<(&str, &str), Option<u64>> =
        std::collections::BTreeMap::new();
    for t in &s.tunnels {
        let (r, p) = (t.region.as_str(), t.peer.as_str());
        let session = t.peer_endpoint.as_deref().unwrap_or("");
        for (direction, c) in [("sent", t.sent), ("received", t.received)] {
            m.set_source_total(&m.tunnel_bytes, &[r, p, direction], session, c.bytes);
            m.set_source_total(&m.tunnel_packets, &[r, p, direction], session, c.packets);
        }
        for (reason, n) in [
            ("invalid_wireguard", t.invalid),
            ("unknown_peering", t.unknown_peering),
            ("send_failed", t.send_failed),
        ] {
            m.set_source_total(&m.tunnel_dropped, &[r, p, reason], session, n);
        }
        let age = ages.entry((r, p)).or_default();
        *age = match (*age, t.handshake_age_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    for ((r, p), age) in ages {
        match age {
            Some(ms) => m
                .tunnel_handshake_age
                .with_label_values(&[r, p])
                .set(ms as f64 / 1000.0),
            None => {
                let _ = m.tunnel_handshake_age.remove_label_values(&[r, p]);
            }
        }
    }
    for g in &s.gateways {
        let r = g.region.as_str();
        for (direction, c) in [
            ("in", g.underlay_dropped_in),
            ("out", g.underlay_dropped_out),
        ] {
            if let Some(c) = c {
                m.set_total(&m.underlay_dropped, &[r, direction], c.packets);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backbone::{Count, TunnelStatus};

    #[test]
    fn tunnel_stats_show_up_in_the_metrics_text() {
        let m = vpc_api::Metrics::new();
        let mut s = Status::default();
        s.tunnels.push(TunnelStatus {
            region: "us-east-1".into(),
            peer: "us-west-2".into(),
            handshake_age_ms: Some(2500),
            sent: Count {
                packets: 3,
                bytes: 300,
            },
            received: Count {
                packets: 2,
                bytes: 180,
            },
            invalid: 1,
            ..TunnelStatus::default()
        });
        export(&m, &s);
        s.tunnels[0].sent = Count {
            packets: 5,
            bytes: 700,
        };
        export(&m, &s);
        let text = m.render();
        let labels = "region=\"us-east-1\"";
        for want in [
            format!("vpcd_backbone_tunnel_bytes_total{{direction=\"sent\",peer=\"us-west-2\",{labels}}} 700"),
            format!("vpcd_backbone_tunnel_packets_total{{direction=\"received\",peer=\"us-west-2\",{labels}}} 2"),
            format!("vpcd_backbone_tunnel_dropped_total{{peer=\"us-west-2\",reason=\"invalid_wireguard\",{labels}}} 1"),
            format!("vpcd_backbone_tunnel_handshake_age_seconds{{peer=\"us-west-2\",{labels}}} 2.5"),
        ] {
            assert!(text.contains(&want), "{want} missing from\n{text}");
        }
    }

    fn session(peer_host: &str, sent: u64, age: Option<u64>) -> TunnelStatus {
        TunnelStatus {
            region: "us-east-1".into(),
            peer: "us-west-2".into(),
            handshake_age_ms: age,
            sent: Count {
                packets: sent,
                bytes: sent * 100,
            },
            peerings: vec!["pcx-1".into()],
            peer_host: Some(peer_host.into()),
            peer_endpoint: Some(format!("100.72.0.{}:52000", &peer_host[1..])),
            ..TunnelStatus::default()
        }
    }

    #[test]
    fn a_cluster_hosts_sessions_add_up_per_pair_and_one_restarting_re_adds_nothing() {
        let m = vpc_api::Metrics::new();
        let mut s = Status {
            tunnels: vec![session("h2", 10, Some(4000)), session("h3", 5, Some(1500))],
            ..Status::default()
        };
        export(&m, &s);
        // h3's session restarts from zero and sends 2; h2's goes on to 12.
        s.tunnels = vec![session("h2", 12, Some(5000)), session("h3", 2, None)];
        export(&m, &s);
        let text = m.render();
        let labels = "peer=\"us-west-2\",region=\"us-east-1\"";
        for want in [
            // 12 + (5 + 2): each session followed on its own.
            format!("vpcd_backbone_tunnel_packets_total{{direction=\"sent\",{labels}}} 19"),
            // The most recent handshake of the pair.
            format!("vpcd_backbone_tunnel_handshake_age_seconds{{{labels}}} 5"),
        ] {
            assert!(text.contains(&want), "{want} missing from\n{text}");
        }
        assert!(
            !text.contains("vpcd_backbone_underlay_dropped_packets_total{"),
            "{text}"
        );
        // The table sums the pair and lists each session with its host.
        let table = render(&s);
        assert!(
            table.contains("us-east-1<->us-west-2\t5.0s ago\t14/1400\t-"),
            "{table}"
        );
        assert!(table.contains("session us-east-1->us-west-2 with host h3 (100.72.0.3:52000)\thandshake never\tsent 2/200"), "{table}");
    }
}
