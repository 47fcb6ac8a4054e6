//! A throwaway single-member etcd for tests of the etcd backend and of what
//! is built on it: its own data directory and loopback ports, stopped (by
//! its pid) and removed on drop. Needs the `etcd` binary (Debian
//! `etcd-server`); without it, [`EtcdServer::start`] says so.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd process serving `endpoint`.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    dir: std::path::PathBuf,
    pub endpoint: String,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdServer {
    pub fn start() -> Result<EtcdServer, String> {
        let (client, peer) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
        let dir =
            std::env::temp_dir().join(format!("vpcd-etcd-test-{}-{client}", std::process::id()));
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = spawn_member(
            "default",
            &dir,
            client,
            &peer_url,
            &format!("default={peer_url}"),
            &["--max-txn-ops=100000"],
        )?;
        let server = EtcdServer {
            child,
            dir,
            endpoint,
        };
        Ok(server)
    }

    /// A fresh store on this server under its own prefix.
    pub fn store(&self, prefix: &str) -> crate::etcd::EtcdStore {
        crate::etcd::EtcdStore::connect(std::slice::from_ref(&self.endpoint), prefix)
            .expect("connect to the test etcd")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-member etcd cluster on loopback whose members can be killed and
/// started again (same ports, same data), to test what a follower does when
/// the member it is connected to dies.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    clients: Vec<u16>,
    peers: Vec<u16>,
    dir: std::path::PathBuf,
}

impl EtcdCluster {
    pub fn start() -> Result<EtcdCluster, String> {
        let mut ports = Vec::new();
        // Hold every listener until all ports are chosen, so none repeats.
        let held: Vec<TcpListener> = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        for l in &held {
            ports.push(l.local_addr().map_err(|e| e.to_string())?.port());
        }
        drop(held);
        let dir = std::env::temp_dir().join(format!(
            "vpcd-etcd-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        let mut cluster = EtcdCluster {
            members: vec![None, None, None],
            clients: ports[..3].to_vec(),
            peers: ports[3..].to_vec(),
            dir,
        };
        for i in 0..3 {
            cluster.start_member(i)?;
        }
        // Ready when a store can talk to it (it waits for a leader).
        crate::etcd::EtcdStore::connect(&cluster.endpoints(), "/ready")
            .map_err(|e| e.to_string())?;
        Ok(cluster)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..3).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoint(&self, member: usize) -> String {
        format!("http://127.0.0.1:{}", self.clients[member])
    }

    /// A store that talks to `member` only.
    pub fn store_on(&self, member: usize, prefix: &str) -> crate::etcd::EtcdStore {
        crate::etcd::EtcdStore::connect(&[self.endpoint(member)], prefix)
            .expect("connect to the test etcd member")
    }

    /// Starts member `i` (again, on its ports and data after a kill).
    pub fn start_member(&mut self, i: usize) -> Result<(), String> {
        let peer = |j: usize| format!("http://127.0.0.1:{}", self.peers[j]);
        let initial = (0..3)
            .map(|j| format!("m{j}={}", peer(j)))
            .collect::<Vec<_>>()
            .join(",");
        let child = spawn_member(
            &format!("m{i}"),
            &self.dir.join(format!("m{i}")),
            self.clients[i],
            &peer(i),
            &initial,
            &["--initial-cluster-token=vpcd-test"],
        )?;
        self.members[i] = Some(child);
        Ok(())
    }

    /// Kills member `i` (SIGKILL, by its pid) and waits for it to be gone.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Compacts the history of the etcd at `endpoint` up to `revision`: a watch
/// that starts before it can no longer be served.
pub fn compact(endpoint: &str, revision: i64) -> Result<(), String> {
    let endpoint = endpoint.to_string();
    crate::etcd::block(Duration::from_secs(10), async move {
        let etcd = |e: etcd_client::Error| crate::StoreError::Etcd(e.to_string());
        let mut c = etcd_client::Client::connect([endpoint], None)
            .await
            .map_err(etcd)?;
        c.compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .map_err(etcd)?;
        Ok(())
    })
    .map_err(|e| e.to_string())
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts one etcd member named `name` with its data in `dir`, serving
/// clients on loopback port `client` and peers at `peer_url`, and waits until
/// it listens.
fn spawn_member(
    name: &str,
    dir: &std::path::Path,
    client: u16,
    peer_url: &str,
    initial_cluster: &str,
    extra: &[&str],
) -> Result<Child, String> {
    let endpoint = format!("http://127.0.0.1:{client}");
    let mut child = Command::new("etcd")
        .arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", dir.display()))
        .arg(format!("--listen-client-urls={endpoint}"))
        .arg(format!("--advertise-client-urls={endpoint}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("cannot start etcd ({e}): install it (Debian: apt-get install etcd-server)")
        })?;
    let give_up = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        if Instant::now() > give_up {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("etcd member {name} did not listen within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}
