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
        Self::start_serving("http", &[])
    }

    /// An etcd that serves clients over TLS only, with the server
    /// certificate from `certs`; with `client_certs` it also demands a
    /// client certificate signed by the test CA (`--client-cert-auth`).
    pub fn start_tls(certs: &TestCerts, client_certs: bool) -> Result<EtcdServer, String> {
        let mut extra = vec![
            format!("--cert-file={}", certs.server_cert.display()),
            format!("--key-file={}", certs.server_key.display()),
        ];
        if client_certs {
            extra.push("--client-cert-auth".into());
            extra.push(format!("--trusted-ca-file={}", certs.ca.display()));
        }
        Self::start_serving("https", &extra)
    }

    /// A plaintext etcd with `extra` flags (e.g. `--auth-token-ttl=1`).
    pub fn start_with(extra: &[String]) -> Result<EtcdServer, String> {
        Self::start_serving("http", extra)
    }

    fn start_serving(scheme: &str, extra: &[String]) -> Result<EtcdServer, String> {
        let (client, peer) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
        let dir =
            std::env::temp_dir().join(format!("vpcd-etcd-test-{}-{client}", std::process::id()));
        let endpoint = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut args = vec!["--max-txn-ops=100000".to_string()];
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = spawn_member(
            "default",
            &dir,
            &endpoint,
            client,
            &peer_url,
            &format!("default={peer_url}"),
            &args,
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

impl EtcdServer {
    /// Runs `etcdctl` against this server (plaintext only) with `args`.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        self.etcdctl_as("", args)
    }

    /// [`EtcdServer::etcdctl`] logged in as `user:password` (none if empty).
    pub fn etcdctl_as(&self, user: &str, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint));
        if !user.is_empty() {
            command.arg(format!("--user={user}"));
        }
        let out = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "cannot run etcdctl ({e}): install it (Debian: apt-get install etcd-client)"
                )
            })?;
        if !out.status.success() {
            return Err(format!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Turns etcd's authentication on with a `root` user whose password is
    /// `password`; from then on every client must log in.
    pub fn enable_auth(&self, password: &str) -> Result<(), String> {
        self.etcdctl(&["user", "add", &format!("root:{password}")])?;
        self.etcdctl(&["auth", "enable"])?;
        Ok(())
    }
}

/// Certificates made at test time with the `openssl` command: a CA, a
/// server certificate for 127.0.0.1 signed by it, a client certificate
/// signed by it, and a second CA that signed nothing the server uses.
#[derive(Debug)]
pub struct TestCerts {
    dir: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    pub other_ca: std::path::PathBuf,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

impl TestCerts {
    pub fn generate() -> Result<TestCerts, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vpcd-etcd-certs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let certs = TestCerts {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            dir,
        };
        let d = |name: &str| certs.dir.join(name).display().to_string();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (ca, name) in [("ca", "vpcd-test-ca"), ("other-ca", "vpcd-other-ca")] {
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            let (key, pem, subj) = (
                d(&format!("{ca}.key")),
                d(&format!("{ca}.pem")),
                format!("/CN={name}"),
            );
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            openssl(&args)?;
        }
        for (who, cn, usage) in [
            (
                "server",
                "etcd",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
            ),
            ("client", "vpcd", "extendedKeyUsage=clientAuth"),
        ] {
            let (key, csr, pem, ext) = (
                d(&format!("{who}.key")),
                d(&format!("{who}.csr")),
                d(&format!("{who}.pem")),
                d(&format!("{who}.ext")),
            );
            std::fs::write(&ext, usage).map_err(|e| format!("{ext}: {e}"))?;
            let mut args = vec!["req"];
            args.extend(ec);
            let subj = format!("/CN={cn}");
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(&args)?;
            let (ca, ca_key) = (d("ca.pem"), d("ca.key"));
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ])?;
        }
        Ok(certs)
    }
}

fn openssl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run openssl ({e}): install it (Debian: apt-get install openssl)")
        })?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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
            &self.endpoint(i),
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
/// clients at `endpoint` (loopback port `client`) and peers at `peer_url`,
/// and waits until it listens.
fn spawn_member(
    name: &str,
    dir: &std::path::Path,
    endpoint: &str,
    client: u16,
    peer_url: &str,
    initial_cluster: &str,
    extra: &[&str],
) -> Result<Child, String> {
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
