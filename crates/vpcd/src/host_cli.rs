//! `vpcd host list|remove --store …`: the hosts of a cluster
//! (`docs/cluster.md`, "A host's life"): what each registered, whether its
//! agent is live, what it holds; and deregistering a host that is gone for
//! good.

use crate::store_args::StoreArgs;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use vpc_dataplane::backbone::cluster::{gateway_key, HostGateways, GATEWAY_KEY_PREFIX};
use vpc_model::placement::{self, HostDirectory, Liveness};
use vpc_store::{StateStore, StoreError};

#[derive(clap::Subcommand, Debug)]
pub enum HostCmd {
    /// Every registered host: its zones, underlay address, whether its
    /// agent is live (holds its liveness lease) and how many instances it holds.
    List {
        /// Print JSON (a list of objects) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Deregister a host that is gone for good: its registration
    /// (`host/<name>`) and its region gateways (`gateway/<name>`). Refused
    /// while its agent is live or instances are placed on it. Its agent,
    /// started again, registers it again.
    Remove {
        /// The host's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove the kernel objects a host's agent made on this machine (its
    /// routers', NAT gateways', gateways' and internet namespaces, and its
    /// instances' namespaces), as `vpcd teardown` does for a data directory.
    /// Run it on that host, after stopping its agent and before `host remove`
    /// (the registration names the host's data-plane tag). Refused while its
    /// agent is live.
    Teardown {
        /// The host's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(cmd: HostCmd) -> Result<()> {
    match cmd {
        HostCmd::List { json, store } => list(&store, json),
        HostCmd::Remove { name, store } => remove(&store, &name),
        HostCmd::Teardown { name, store } => teardown(&store, &name),
    }
}

fn open(args: &StoreArgs) -> Result<Box<dyn StateStore>> {
    let location = args.location(std::path::Path::new("."))?;
    if !location.is_shared() {
        bail!("hosts exist only on a cluster: give --store etcd://HOST:PORT[,...] (or VPCD_STORE)");
    }
    vpc_store::open(&location).with_context(|| format!("opening {location}"))
}

/// The hosts' registrations and liveness, and each live one's agent pid.
fn directory(store: &mut dyn StateStore) -> Result<(HostDirectory, BTreeMap<String, u32>)> {
    let pids = store
        .settings_with_prefix(placement::ALIVE_KEY_PREFIX)?
        .iter()
        .filter_map(|(_, v)| serde_json::from_str::<Liveness>(v).ok())
        .map(|l| (l.host, l.pid))
        .collect();
    Ok((vpc_store::host_directory(store)?, pids))
}

fn list(args: &StoreArgs, json: bool) -> Result<()> {
    let mut store = open(args)?;
    let world = store.load()?.world;
    let (dir, pids) = directory(&mut *store)?;
    let gateways: BTreeMap<String, HostGateways> = store
        .settings_with_prefix(GATEWAY_KEY_PREFIX)?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_str::<HostGateways>(&v).ok())
        .map(|g| (g.host.clone(), g))
        .collect();
    let rows: Vec<serde_json::Value> = dir
        .hosts
        .values()
        .map(|h| {
            let live = dir.is_live(&h.name);
            serde_json::json!({
                "name": h.name,
                "zones": h.zones,
                "underlay_address": h.underlay.to_string(),
                "live": live,
                "agent_pid": if live { pids.get(&h.name).copied() } else { None },
                "instances": placement::instances_on(&world, &dir.hosts, &h.name).len(),
                "gateway_regions": gateways
                    .get(&h.name)
                    .map(|g| g.gateways.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default(),
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("NAME\tZONES\tUNDERLAY\tLIVE\tINSTANCES");
    for r in &rows {
        let zones: Vec<&str> = r["zones"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|z| z.as_str())
            .collect();
        println!(
            "{}\t{}\t{}\t{}\t{}",
            r["name"].as_str().unwrap_or_default(),
            zones.join(","),
            r["underlay_address"].as_str().unwrap_or_default(),
            if r["live"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            r["instances"]
        );
    }
    Ok(())
}

/// The registration of host `name`, which must exist and whose agent must
/// not be live; otherwise one line saying which (with `unregistered` or
/// `live` appended).
fn stopped_host<'d>(
    dir: &'d HostDirectory,
    pids: &BTreeMap<String, u32>,
    name: &str,
    unregistered: &str,
    live: &str,
) -> Result<&'d placement::HostRecord> {
    let Some(host) = dir.hosts.get(name) else {
        bail!("no host {name:?} is registered (`vpcd host list` shows the hosts){unregistered}");
    };
    if dir.live.contains(name) {
        let pid = pids
            .get(name)
            .map(|p| format!(", pid {p}"))
            .unwrap_or_default();
        bail!(
            "host {name} is live (its agent{pid} holds its liveness lease): stop the agent first{live}"
        );
    }
    Ok(host)
}

/// How often a removal looks again when commits keep landing meanwhile.
const ATTEMPTS: usize = 20;

fn remove(args: &StoreArgs, name: &str) -> Result<()> {
    let mut store = open(args)?;
    for _ in 0..ATTEMPTS {
        // The World and the hosts as of one revision: the removal below
        // happens only if no commit (a placement on this host) came after.
        let snap = store.load()?;
        let (dir, pids) = directory(&mut *store)?;
        stopped_host(
            &dir,
            &pids,
            name,
            "",
            "; the host can be removed once its liveness lapsed",
        )?;
        let held = placement::instances_on(&snap.world, &dir.hosts, name);
        if !held.is_empty() {
            let mut ids: Vec<&str> = held.iter().map(|i| i.meta.id.as_str()).collect();
            ids.sort_unstable();
            let shown = ids.iter().take(5).copied().collect::<Vec<_>>().join(", ");
            let more = if ids.len() > 5 { ", …" } else { "" };
            bail!(
                "host {name} still holds {} instance(s) ({shown}{more}): terminate them first (an instance stays on the host it was placed on)",
                ids.len()
            );
        }
        let keys = [placement::host_key(name), gateway_key(name)];
        match store.remove_settings(snap.revision, &keys, &[placement::alive_key(name)]) {
            Ok(_) => {
                println!("removed host {name}: its registration and region gateways");
                return Ok(());
            }
            // Something was committed meanwhile: look again.
            Err(StoreError::Conflict { .. }) | Err(StoreError::SettingPresent(_)) => continue,
            Err(e) => return Err(e).context("removing the host"),
        }
    }
    bail!("host {name}: the cluster kept changing; nothing was removed, try again")
}

fn teardown(args: &StoreArgs, name: &str) -> Result<()> {
    let mut store = open(args)?;
    let (dir, pids) = directory(&mut *store)?;
    let host = stopped_host(
        &dir,
        &pids,
        name,
        "; its data-plane tag is known only while it is",
        ", or it rebuilds what is removed",
    )?;
    // Instance namespaces go only if they carry this host's tag marker
    // (the agent's own), whatever the World says was placed here.
    vpc_dataplane::teardown(&host.tag, &[])
        .with_context(|| format!("removing host {name}'s kernel objects"))?;
    println!(
        "removed the kernel objects of host {name} (tag {}) on this machine",
        host.tag
    );
    Ok(())
}
