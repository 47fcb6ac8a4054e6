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
        let child = Command::new("etcd")
            .arg(format!("--data-dir={}", dir.display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--max-txn-ops=100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start etcd ({e}): install it (Debian: apt-get install etcd-server)")
            })?;
        let server = EtcdServer {
            child,
            dir,
            endpoint,
        };
        let give_up = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
            if Instant::now() > give_up {
                return Err("etcd did not start listening within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
