//! The etcd backend: several API servers share one World in an etcd cluster.
//!
//! Keys, under the prefix `P` (`--store-prefix`, default `/vpcd`):
//!
//! | key                     | value                                         |
//! |-------------------------|-----------------------------------------------|
//! | `P/r/<kind>/<id>`       | one record, JSON (as the SQLite `body`)       |
//! | `P/rev`                 | touched by every commit: the commit marker    |
//! | `P/accounts/<id>`       | an account (created with its first key)       |
//! | `P/keys/<akid>`         | `{"account":…,"secret":…}`                    |
//! | `P/settings/<name>`     | a setting, e.g. `clock_offset_ms`             |
//! | `P/settings/alive/<h>`  | a host's liveness, on its agent's lease       |
//! | `P/leader/<role>`       | the holder of a role, on its lease            |
//!
//! A commit is one etcd transaction: `if mod_revision(P/rev) == base then
//! put/delete every changed record and put P/rev`. Every commit moves
//! `P/rev`, so a writer whose World is not the newest fails the compare and
//! writes nothing: commits are serializable and no update is lost. Other
//! servers learn of a commit from a watch on `P/` (one watch response holds
//! all the events of one revision, so a commit arrives whole).
//!
//! Metered usage and the meters' baselines live under `P/usage/` and
//! `P/meter/` (see the `usage` module).
//!
//! The client is async (tonic); the store is used from blocking threads, so
//! every call runs on a small runtime of its own and the caller waits.

use crate::sqlite::check_account;
use crate::{
    AccessKey, Account, EtcdSecurity, EtcdTls, Leadership, Result, Revision, Snapshot, StoreError,
    Update,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;
use vpc_model::{Kind, World};

mod usage;

/// How long one request to etcd may take before the caller gets an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call may take with its retries: long enough to ride out an
/// etcd leader election after a member died (about 1 to 3 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts after the first; with the back-off about 5 s of retrying.
const RETRIES: u32 = 20;
/// Records read per page when loading the World.
const PAGE: i64 = 500;
/// The lease behind a role: a dead holder loses it after this many seconds.
pub const LEADER_TTL_SECS: i64 = 2;
/// How often a server that does not hold a role looks whether it is free.
const LEADER_POLL: Duration = Duration::from_millis(250);
/// How often the client pings etcd on a connection with open streams (a
/// watch), to find a member that stopped answering. etcd refuses pings
/// closer together than its `--grpc-keepalive-min-time` (5 s unless set):
/// after three such pings on a connection the server sends no data on, it
/// closes the connection with GOAWAY `too_many_pings`, which tore a quiet
/// watch down every 4 s when this was 1 s. Keep it well above 5 s.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection counts as dead
/// (the watch then resumes on another member).
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .expect("cannot start the etcd client runtime")
    })
}

/// The error with its causes (tonic hides the TLS reason in the source chain).
fn etcd_error(e: etcd_client::Error) -> StoreError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    StoreError::Etcd(text)
}

/// What a connection error says about a setting that retrying cannot fix
/// (TLS trust, TLS on one side only, credentials), in words for the operator.
fn refusal(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    if e.contains("authentication failed") || e.contains("invalid user id or password") {
        Some("wrong etcd user or password (--etcd-user, VPCD_ETCD_PASSWORD)")
    } else if e.contains("user name is empty") || e.contains("user name not found") {
        Some("etcd has authentication enabled: give --etcd-user and the password in VPCD_ETCD_PASSWORD")
    } else if e.contains("permission denied") {
        Some("the etcd user may not use this key prefix (grant it a role on it)")
    } else if e.contains("alert: badcertificate") || e.contains("alert: certificaterequired") {
        Some("etcd did not accept vpcd's client certificate (etcd has --client-cert-auth: give --etcd-cert and --etcd-key signed by its --trusted-ca-file)")
    } else if e.contains("unknownissuer")
        || e.contains("invalid peer certificate")
        || e.contains("certificate")
    {
        Some("the etcd member's TLS certificate is not trusted or does not match (check --etcd-ca, --etcd-cert, --etcd-key)")
    } else if e.contains("invalidcontenttype") || e.contains("corrupt message") {
        Some("TLS to a plaintext etcd (use etcd:// without --etcd-ca)")
    } else if e.contains("frame with invalid size")
        || e.contains("connection reset")
        || e.contains("broken pipe")
        || e.contains("connection closed")
        || e.contains("http2 error")
        || e.contains("h2 protocol error")
    {
        Some("the connection was dropped during set-up: does etcd expect TLS (etcds:// with --etcd-ca) or a client certificate?")
    } else {
        None
    }
}

/// Reads the PEM files TLS needs.
fn tls_options(tls: &EtcdTls) -> Result<etcd_client::TlsOptions> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            StoreError::Invalid(format!("{flag} {}: cannot read it: {e}", path.display()))
        })
    };
    let mut options = etcd_client::TlsOptions::new();
    if let Some(ca) = &tls.ca {
        options =
            options.ca_certificate(etcd_client::Certificate::from_pem(read("--etcd-ca", ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.identity(etcd_client::Identity::from_pem(
            read("--etcd-cert", cert)?,
            read("--etcd-key", key)?,
        ));
    }
    Ok(options)
}

/// Runs `f` on the client runtime and waits for it, at most `timeout`.
pub(crate) fn block<T: Send + 'static>(
    timeout: Duration,
    f: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let out = match tokio::time::timeout(timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Etcd(format!(
                "no answer within {} s",
                timeout.as_secs_f64()
            ))),
        };
        let _ = tx.send(out);
    });
    rx.recv()
        .map_err(|_| StoreError::Etcd("the etcd client task ended".into()))?
}

/// The first key after every key that starts with `prefix`.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Runs an etcd request again after a transport error (a member that died
/// refuses connections until the client stops choosing it), a few times
/// within the request timeout. `f` gets the attempt number; requests that
/// are not idempotent use it to find out whether an earlier attempt landed.
async fn with_retries<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match f(attempt).await {
            Err(StoreError::Etcd(e)) if attempt < RETRIES => {
                tracing::debug!(error = %e, attempt, "etcd request failed; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis((40 * u64::from(attempt)).min(300))).await;
            }
            r => return r,
        }
    }
}

/// A read, retried after transport errors.
async fn get_retrying(
    c: &Client,
    key: impl Into<Vec<u8>>,
    options: Option<GetOptions>,
) -> Result<etcd_client::GetResponse> {
    let key = key.into();
    with_retries(|_| {
        let (mut c, key, options) = (c.clone(), key.clone(), options.clone());
        async move { c.get(key, options).await.map_err(etcd_error) }
    })
    .await
}

/// A value no other commit writes to the marker key.
fn commit_token() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The first value the marker key took after revision `base`, and when.
async fn first_commit_after(
    c: &mut Client,
    rev_key: &str,
    base: Revision,
) -> Result<Option<(Revision, Vec<u8>)>> {
    let mut stream = c
        .watch(
            rev_key,
            Some(WatchOptions::new().with_start_revision(base + 1)),
        )
        .await
        .map_err(etcd_error)?;
    // Events already in the history arrive at once; a quiet key sends none.
    let first = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(resp) = stream.message().await.map_err(etcd_error)? {
            if resp.compact_revision() > 0 {
                return Err(StoreError::Etcd("history compacted".into()));
            }
            if let Some(kv) = resp.events().first().and_then(|e| e.kv()) {
                return Ok(Some((kv.mod_revision(), kv.value().to_vec())));
            }
        }
        Ok(None)
    })
    .await
    .unwrap_or(Ok(None));
    drop(stream);
    first
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    account: String,
    secret: String,
}

/// A connection to an etcd cluster, scoped to one key prefix.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    endpoints: Vec<String>,
    /// How many times a watch of this store (or a clone) broke and resumed.
    watch_breaks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// This connection's name as a meter (`P/meter-writer/<writer>`).
    writer: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`) and checks that the
    /// cluster answers. A cluster that listens but has no leader yet (it is
    /// just forming) is given up to 20 s; nothing listening fails at once.
    pub fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore> {
        Self::connect_with(endpoints, prefix, &EtcdSecurity::default())
    }

    /// [`EtcdStore::connect`] with TLS and/or an etcd user. A certificate
    /// the client does not trust, a TLS/plaintext mismatch or a refused
    /// user fails at once with what went wrong, not after the retries.
    pub fn connect_with(
        endpoints: &[String],
        prefix: &str,
        security: &EtcdSecurity,
    ) -> Result<EtcdStore> {
        let eps = endpoints.to_vec();
        // The first read is of a key this store uses, so an etcd user with
        // a role on the prefix only (not on `/`) gets in, and one without
        // it is told at once.
        let probe = format!("{prefix}/rev");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            // etcd takes pings on a connection without streams as abuse
            // whatever their interval (no PermitWithoutStream).
            .with_keep_alive_while_idle(false);
        if let Some(tls) = &security.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        if let Some(user) = &security.user {
            options = options
                .with_user(user.name.clone(), user.password.clone())
                .with_auto_token_refresh(true);
        }
        let client = block(Duration::from_secs(25), async move {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let attempt = async {
                    let mut c = Client::connect(eps.clone(), Some(options.clone()))
                        .await
                        .map_err(etcd_error)?;
                    c.get(probe.as_str(), Some(GetOptions::new().with_keys_only()))
                        .await
                        .map_err(etcd_error)?;
                    Ok(c)
                };
                match attempt.await {
                    Ok(c) => return Ok(c),
                    Err(StoreError::Etcd(e))
                        if !e.contains("Connection refused")
                            && refusal(&e).is_none()
                            && tokio::time::Instant::now() < give_up =>
                    {
                        tracing::info!(error = %e, "etcd does not answer yet; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .map_err(|e| {
            let e = e.to_string();
            match refusal(&e) {
                Some(why) => StoreError::Etcd(format!(
                    "etcd at {} refused vpcd: {why} ({e})",
                    endpoints.join(",")
                )),
                None => {
                    StoreError::Etcd(format!("cannot reach etcd at {}: {e}", endpoints.join(",")))
                }
            }
        })?;
        Ok(EtcdStore {
            client,
            prefix: prefix.to_string(),
            endpoints: endpoints.to_vec(),
            watch_breaks: Default::default(),
            writer: commit_token(),
        })
    }

    fn record_key(&self, kind: Kind, id: &str) -> String {
        format!("{}/r/{}/{}", self.prefix, kind.name(), id)
    }

    fn rev_key(&self) -> String {
        format!("{}/rev", self.prefix)
    }

    fn account_key(&self, id: &str) -> String {
        format!("{}/accounts/{id}", self.prefix)
    }

    fn access_key(&self, akid: &str) -> String {
        format!("{}/keys/{akid}", self.prefix)
    }

    fn setting_key(&self, name: &str) -> String {
        format!("{}/settings/{name}", self.prefix)
    }

    /// The endpoints this store talks to.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// How many times a watch started by [`crate::StateStore::follow`] on
    /// this store (or a clone) broke and resumed from its last revision.
    pub fn watch_breaks(&self) -> u64 {
        self.watch_breaks.load(Ordering::Relaxed)
    }
}

/// What a key under the prefix is.
enum KeyKind<'a> {
    Record(Kind, &'a str),
    Marker,
    Setting(&'a str),
    Other,
}

fn classify<'a>(prefix: &str, key: &'a str) -> KeyKind<'a> {
    let Some(rest) = key.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')) else {
        return KeyKind::Other;
    };
    if rest == "rev" {
        return KeyKind::Marker;
    }
    if let Some(name) = rest.strip_prefix("settings/") {
        return KeyKind::Setting(name);
    }
    if let Some(r) = rest.strip_prefix("r/") {
        if let Some((kind, id)) = r.split_once('/') {
            if let Some(kind) = Kind::from_name(kind) {
                return KeyKind::Record(kind, id);
            }
        }
    }
    KeyKind::Other
}

/// Reads the whole World at one revision, page by page.
async fn load_snapshot(mut c: Client, prefix: String) -> Result<Snapshot> {
    let rev = c
        .get(format!("{prefix}/rev"), None)
        .await
        .map_err(etcd_error)?;
    let as_of = rev.header().map_or(0, |h| h.revision());
    let revision = rev.kvs().first().map_or(0, |kv| kv.mod_revision());
    let records = format!("{prefix}/r/");
    let end = range_end(&records);
    let mut start = records.into_bytes();
    let mut world = World::default();
    loop {
        let page = c
            .get(
                start.clone(),
                Some(
                    GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(PAGE)
                        .with_revision(as_of),
                ),
            )
            .await
            .map_err(etcd_error)?;
        for kv in page.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let KeyKind::Record(kind, id) = classify(&prefix, &key) else {
                return Err(StoreError::Invalid(format!("unexpected key {key} in etcd")));
            };
            let body = String::from_utf8_lossy(kv.value());
            world
                .decode(kind, &body)
                .map_err(|source| StoreError::Decode {
                    kind: kind.name().to_string(),
                    id: id.to_string(),
                    source,
                })?;
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok(Snapshot {
        world,
        revision,
        as_of,
    })
}

/// The events of one revision, gathered from a watch response.
struct PendingCommit {
    revision: Revision,
    put: Vec<(Kind, String, String)>,
    removed: Vec<(Kind, String)>,
    /// Whether the revision touched records or the marker (not just settings).
    is_commit: bool,
}

/// How a watch stream ended.
enum WatchEnd {
    /// The receiver is gone: stop following.
    Closed,
    /// The store compacted past our position: start again from a snapshot.
    Lost,
}

/// Follows `P/` from revision `*from`, sending one [`Update`] per commit or
/// setting change and moving `*from` past what it sent.
async fn watch_once(
    c: &mut Client,
    prefix: &str,
    from: &mut Revision,
    tx: &std::sync::mpsc::Sender<Update>,
) -> Result<WatchEnd> {
    let mut stream = c
        .watch(
            format!("{prefix}/"),
            Some(WatchOptions::new().with_prefix().with_start_revision(*from)),
        )
        .await
        .map_err(etcd_error)?;
    while let Some(resp) = stream.message().await.map_err(etcd_error)? {
        if resp.compact_revision() > 0 {
            return Ok(WatchEnd::Lost);
        }
        if resp.canceled() {
            return Err(StoreError::Etcd(format!(
                "watch cancelled: {}",
                resp.cancel_reason()
            )));
        }
        // Events come in revision order; one revision is one commit.
        let mut pending: Option<PendingCommit> = None;
        let flush = |p: &mut Option<PendingCommit>| -> bool {
            match p.take() {
                Some(c) if c.is_commit => tx
                    .send(Update::Commit {
                        revision: c.revision,
                        put: c.put,
                        removed: c.removed,
                    })
                    .is_ok(),
                _ => true,
            }
        };
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let revision = kv.mod_revision();
            if pending.as_ref().is_some_and(|p| p.revision != revision) && !flush(&mut pending) {
                return Ok(WatchEnd::Closed);
            }
            let p = pending.get_or_insert_with(|| PendingCommit {
                revision,
                put: Vec::new(),
                removed: Vec::new(),
                is_commit: false,
            });
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match (classify(prefix, &key), ev.event_type()) {
                (KeyKind::Record(kind, id), EventType::Put) => {
                    p.put.push((
                        kind,
                        id.to_string(),
                        String::from_utf8_lossy(kv.value()).into_owned(),
                    ));
                    p.is_commit = true;
                }
                (KeyKind::Record(kind, id), EventType::Delete) => {
                    p.removed.push((kind, id.to_string()));
                    p.is_commit = true;
                }
                (KeyKind::Marker, _) => p.is_commit = true,
                (KeyKind::Setting(name), EventType::Put) => {
                    let update = Update::Setting {
                        key: name.to_string(),
                        value: String::from_utf8_lossy(kv.value()).into_owned(),
                    };
                    if tx.send(update).is_err() {
                        return Ok(WatchEnd::Closed);
                    }
                }
                (KeyKind::Setting(name), EventType::Delete) => {
                    let update = Update::SettingRemoved {
                        key: name.to_string(),
                    };
                    if tx.send(update).is_err() {
                        return Ok(WatchEnd::Closed);
                    }
                }
                _ => {}
            }
            *from = revision + 1;
        }
        if !flush(&mut pending) {
            return Ok(WatchEnd::Closed);
        }
    }
    Err(StoreError::Etcd("watch stream ended".into()))
}

impl crate::StateStore for EtcdStore {
    fn load(&mut self) -> Result<Snapshot> {
        let (c, prefix) = (self.client.clone(), self.prefix.clone());
        block(CALL_TIMEOUT * 3, async move {
            with_retries(|_| load_snapshot(c.clone(), prefix.clone())).await
        })
    }

    fn commit(
        &mut self,
        base: Revision,
        world: &World,
        changes: &[(Kind, String)],
    ) -> Result<Revision> {
        if changes.is_empty() {
            return Ok(base);
        }
        let rev_key = self.rev_key();
        let mut ops: Vec<TxnOp> = changes
            .iter()
            .map(|(kind, id)| {
                let key = self.record_key(*kind, id);
                match world.encode(*kind, id) {
                    Some(body) => TxnOp::put(key, body, None),
                    None => TxnOp::delete(key, None),
                }
            })
            .collect();
        let token = commit_token();
        ops.push(TxnOp::put(rev_key.clone(), token.clone(), None));
        let txn = Txn::new()
            .when([Compare::mod_revision(
                rev_key.clone(),
                CompareOp::Equal,
                base,
            )])
            .and_then(ops);
        let c = self.client.clone();
        block(CALL_TIMEOUT, async move {
            with_retries(|attempt| {
                let (mut c, txn, rev_key, token) =
                    (c.clone(), txn.clone(), rev_key.clone(), token.clone());
                async move {
                    if attempt > 0 {
                        if let Some(landed) =
                            earlier_attempt(&mut c, &rev_key, base, &token, "commit").await?
                        {
                            return landed;
                        }
                    }
                    let r = c.txn(txn).await.map_err(etcd_error)?;
                    if !r.succeeded() {
                        return Err(StoreError::Conflict { base });
                    }
                    r.header().map(|h| h.revision()).ok_or_else(|| {
                        StoreError::Etcd("transaction answer without a header".into())
                    })
                }
            })
            .await
        })
    }

    fn follow(&mut self, as_of: Revision) -> Result<Option<std::sync::mpsc::Receiver<Update>>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut c = self.client.clone();
        let prefix = self.prefix.clone();
        let breaks = self.watch_breaks.clone();
        runtime().spawn(async move {
            let mut from = as_of + 1;
            loop {
                match watch_once(&mut c, &prefix, &mut from, &tx).await {
                    Ok(WatchEnd::Closed) => return,
                    Ok(WatchEnd::Lost) => {
                        tracing::warn!(from, "etcd compacted past the watch; reloading the World");
                        match load_snapshot(c.clone(), prefix.clone()).await {
                            Ok(s) => {
                                from = s.as_of + 1;
                                if tx.send(Update::Reset(Box::new(s))).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "reloading the World failed; retrying");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                    Err(e) => {
                        breaks.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, from, "etcd watch broke; resuming");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    fn campaign(&mut self, name: &str, holder: &str) -> Result<Leadership> {
        let leadership = Leadership(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
            false,
        )));
        let flag = leadership.clone();
        let mut c = self.client.clone();
        let key = format!("{}/leader/{name}", self.prefix);
        let holder = holder.to_string();
        let role = name.to_string();
        runtime().spawn(async move {
            loop {
                if let Err(e) = hold_role(&mut c, &key, &holder, &flag).await {
                    tracing::debug!(error = %e, role, "election round failed");
                }
                if flag.flag().swap(false, Ordering::SeqCst) {
                    tracing::warn!(role, holder, "lost the role");
                }
                tokio::time::sleep(LEADER_POLL).await;
            }
        });
        Ok(leadership)
    }

    fn add_account(&mut self, id: &str, access_key_id: &str, secret: &str) -> Result<()> {
        check_account(id, access_key_id, secret)?;
        let (account_key, access_key) = (self.account_key(id), self.access_key(access_key_id));
        let (akid, id) = (access_key_id.to_string(), id.to_string());
        let body = serde_json::to_string(&StoredKey {
            account: id.clone(),
            secret: secret.to_string(),
        })
        .expect("strings serialise");
        let txn = Txn::new()
            .when([
                Compare::create_revision(account_key.clone(), CompareOp::Equal, 0),
                Compare::create_revision(access_key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(account_key.clone(), "", None),
                TxnOp::put(access_key.clone(), body.clone(), None),
            ]);
        let c = self.client.clone();
        block(CALL_TIMEOUT, async move {
            with_retries(|attempt| {
                let (mut c, txn) = (c.clone(), txn.clone());
                let (account_key, access_key, akid, id, body) = (
                    account_key.clone(),
                    access_key.clone(),
                    akid.clone(),
                    id.clone(),
                    body.clone(),
                );
                async move {
                    let r = c.txn(txn).await.map_err(etcd_error)?;
                    if r.succeeded() {
                        return Ok(());
                    }
                    let k = c.get(access_key, None).await.map_err(etcd_error)?;
                    if attempt > 0
                        && k.kvs()
                            .first()
                            .is_some_and(|kv| kv.value() == body.as_bytes())
                    {
                        // An earlier attempt added it; its answer was lost.
                        return Ok(());
                    }
                    let a = c.get(account_key, None).await.map_err(etcd_error)?;
                    Err(if a.kvs().is_empty() {
                        StoreError::KeyExists(akid)
                    } else {
                        StoreError::AccountExists(id)
                    })
                }
            })
            .await
        })
    }

    fn list_accounts(&mut self) -> Result<Vec<Account>> {
        let c = self.client.clone();
        let (accounts, keys) = (
            format!("{}/accounts/", self.prefix),
            format!("{}/keys/", self.prefix),
        );
        let (mut ids, keys) = block(CALL_TIMEOUT, async move {
            let a =
                get_retrying(&c, accounts.clone(), Some(GetOptions::new().with_prefix())).await?;
            let k = get_retrying(&c, keys, Some(GetOptions::new().with_prefix())).await?;
            let ids: Vec<(i64, String)> = a
                .kvs()
                .iter()
                .map(|kv| {
                    let key = String::from_utf8_lossy(kv.key());
                    (
                        kv.create_revision(),
                        key.strip_prefix(&accounts).unwrap_or(&key).to_string(),
                    )
                })
                .collect();
            let keys: Vec<(String, StoredKey)> = k
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let key = String::from_utf8_lossy(kv.key());
                    let akid = key.rsplit('/').next()?.to_string();
                    Some((akid, serde_json::from_slice(kv.value()).ok()?))
                })
                .collect();
            Ok((ids, keys))
        })?;
        ids.sort();
        Ok(ids
            .into_iter()
            .map(|(_, id)| {
                let mut keys: Vec<AccessKey> = keys
                    .iter()
                    .filter(|(_, k)| k.account == id)
                    .map(|(akid, k)| AccessKey {
                        access_key_id: akid.clone(),
                        secret_access_key: k.secret.clone(),
                    })
                    .collect();
                keys.sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
                Account { id, keys }
            })
            .collect())
    }

    fn find_key(&mut self, access_key_id: &str) -> Result<Option<(String, String)>> {
        self.find_key_inner(access_key_id)
    }

    fn get_setting(&mut self, key: &str) -> Result<Option<String>> {
        let c = self.client.clone();
        let key = self.setting_key(key);
        block(CALL_TIMEOUT, async move {
            let r = get_retrying(&c, key, None).await?;
            Ok(r.kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
        })
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        let c = self.client.clone();
        let (key, value) = (self.setting_key(key), value.to_string());
        block(CALL_TIMEOUT, async move {
            with_retries(|_| {
                let (mut c, key, value) = (c.clone(), key.clone(), value.clone());
                async move {
                    c.put(key, value, None).await.map_err(etcd_error)?;
                    Ok(())
                }
            })
            .await
        })
    }

    fn settings_with_prefix(&mut self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.settings_with_prefix_inner(prefix)
    }

    fn hold_setting(
        &mut self,
        key: &str,
        value: &str,
        ttl_secs: i64,
    ) -> Result<crate::HeldSetting> {
        let c = self.client.clone();
        let (key, value) = (self.setting_key(key), value.to_string());
        let ttl = ttl_secs.max(1);
        let first = {
            let (c, key, value) = (c.clone(), key.clone(), value.clone());
            block(CALL_TIMEOUT, async move {
                with_retries(|_| {
                    let (mut c, key, value) = (c.clone(), key.clone(), value.clone());
                    async move { put_on_lease(&mut c, &key, &value, ttl).await }
                })
                .await
            })?
        };
        let (held, stop) = crate::HeldSetting::new();
        runtime().spawn(async move {
            let mut c = c;
            let mut lease = Some(first);
            while !stop.load(Ordering::SeqCst) {
                let id = match lease.take() {
                    Some(id) => id,
                    None => match put_on_lease(&mut c, &key, &value, ttl).await {
                        Ok(id) => {
                            tracing::info!(key, "put the setting again on a new lease");
                            id
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, key, "cannot put the setting on a lease; retrying");
                            tokio::time::sleep(lease_period(ttl)).await;
                            continue;
                        }
                    },
                };
                if let Err(e) = keep_lease(&mut c, id, ttl, &stop).await {
                    tracing::warn!(error = %e, key, "the setting's lease was lost");
                }
            }
        });
        Ok(held)
    }

    fn remove_settings(
        &mut self,
        base: Revision,
        keys: &[String],
        unless: &[String],
    ) -> Result<Revision> {
        let rev_key = self.rev_key();
        let token = commit_token();
        let unless: Vec<String> = unless.iter().map(|k| self.setting_key(k)).collect();
        let mut ops: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::delete(self.setting_key(k), None))
            .collect();
        ops.push(TxnOp::put(rev_key.clone(), token.clone(), None));
        let mut guards = vec![Compare::mod_revision(
            rev_key.clone(),
            CompareOp::Equal,
            base,
        )];
        guards.extend(
            unless
                .iter()
                .map(|k| Compare::create_revision(k.clone(), CompareOp::Equal, 0)),
        );
        let txn = Txn::new().when(guards).and_then(ops);
        let (c, base_prefix) = (self.client.clone(), self.setting_key(""));
        block(CALL_TIMEOUT, async move {
            with_retries(|attempt| {
                let (mut c, txn, rev_key, token, unless, base_prefix) = (
                    c.clone(),
                    txn.clone(),
                    rev_key.clone(),
                    token.clone(),
                    unless.clone(),
                    base_prefix.clone(),
                );
                async move {
                    if attempt > 0 {
                        if let Some(landed) =
                            earlier_attempt(&mut c, &rev_key, base, &token, "removal").await?
                        {
                            return landed;
                        }
                    }
                    let r = c.txn(txn).await.map_err(etcd_error)?;
                    if r.succeeded() {
                        return r.header().map(|h| h.revision()).ok_or_else(|| {
                            StoreError::Etcd("transaction answer without a header".into())
                        });
                    }
                    let now = c.get(rev_key.clone(), None).await.map_err(etcd_error)?;
                    if now.kvs().first().map_or(0, |kv| kv.mod_revision()) != base {
                        return Err(StoreError::Conflict { base });
                    }
                    for k in &unless {
                        let r = c
                            .get(k.clone(), Some(GetOptions::new().with_keys_only()))
                            .await
                            .map_err(etcd_error)?;
                        if !r.kvs().is_empty() {
                            let name = k.strip_prefix(&base_prefix).unwrap_or(k);
                            return Err(StoreError::SettingPresent(name.to_string()));
                        }
                    }
                    // Whatever stood in the way is gone now: try again.
                    Err(StoreError::Etcd(
                        "the guarded removal raced; retrying".into(),
                    ))
                }
            })
            .await
        })
    }

    fn record_usage(
        &mut self,
        usage: &[vpc_model::usage::Usage],
        baselines: &std::collections::BTreeMap<crate::CounterId, crate::CounterValue>,
        forget: &[crate::CounterId],
    ) -> Result<()> {
        self.record_usage_inner(usage, baselines, forget)
    }

    fn meter_baselines(
        &mut self,
        namespace_prefix: &str,
    ) -> Result<std::collections::BTreeMap<crate::CounterId, crate::CounterValue>> {
        self.meter_baselines_inner(namespace_prefix)
    }

    fn usage(
        &mut self,
        account: Option<&str>,
        from: vpc_model::Timestamp,
        to: vpc_model::Timestamp,
    ) -> Result<Vec<vpc_model::usage::Usage>> {
        self.usage_inner(account, from, to)
    }
}

impl EtcdStore {
    fn settings_with_prefix_inner(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let c = self.client.clone();
        let base = self.setting_key("");
        let key = format!("{base}{prefix}");
        block(CALL_TIMEOUT, async move {
            let end = range_end(&key);
            let r = get_retrying(&c, key, Some(GetOptions::new().with_range(end))).await?;
            Ok(r.kvs()
                .iter()
                .map(|kv| {
                    let k = String::from_utf8_lossy(kv.key());
                    (
                        k.strip_prefix(&base).unwrap_or(&k).to_string(),
                        String::from_utf8_lossy(kv.value()).into_owned(),
                    )
                })
                .collect())
        })
    }

    fn find_key_inner(&self, access_key_id: &str) -> Result<Option<(String, String)>> {
        let c = self.client.clone();
        let key = self.access_key(access_key_id);
        block(CALL_TIMEOUT, async move {
            let r = get_retrying(&c, key, None).await?;
            Ok(r.kvs()
                .first()
                .and_then(|kv| serde_json::from_slice::<StoredKey>(kv.value()).ok())
                .map(|k| (k.account, k.secret)))
        })
    }
}

/// How often a lease of `ttl` seconds is renewed: three times per TTL.
fn lease_period(ttl: i64) -> Duration {
    Duration::from_millis(u64::try_from(ttl).unwrap_or(1).max(1) * 1000 / 3)
}

/// Grants a lease of `ttl` seconds and puts `key` = `value` on it.
async fn put_on_lease(c: &mut Client, key: &str, value: &str, ttl: i64) -> Result<i64> {
    let lease = c.lease_grant(ttl, None).await.map_err(etcd_error)?.id();
    if let Err(e) = c
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await
    {
        let _ = c.lease_revoke(lease).await;
        return Err(etcd_error(e));
    }
    Ok(lease)
}

/// Before a transaction guarded by `base` on `rev_key` is sent again: an
/// earlier attempt may have landed before its answer was lost, and only one
/// commit can follow `base`. None when the marker has not moved (send it
/// again); otherwise the outcome: the revision if the commit after `base`
/// carries this attempt's `token`, a conflict if another writer's does.
async fn earlier_attempt(
    c: &mut Client,
    rev_key: &str,
    base: Revision,
    token: &str,
    what: &str,
) -> Result<Option<Result<Revision>>> {
    let now = c.get(rev_key, None).await.map_err(etcd_error)?;
    if now.kvs().first().map_or(0, |kv| kv.mod_revision()) == base {
        return Ok(None);
    }
    Ok(Some(match first_commit_after(c, rev_key, base).await? {
        Some((revision, value)) if value == token.as_bytes() => Ok(revision),
        Some(_) => Err(StoreError::Conflict { base }),
        None => Err(StoreError::Etcd(format!(
            "cannot tell whether the {what} landed"
        ))),
    }))
}

/// Keeps lease `id` alive until a renewal fails, etcd says it expired, or
/// `stop` is raised (then the lease lapses by itself).
async fn keep_lease(
    c: &mut Client,
    id: i64,
    ttl: i64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<()> {
    let (mut keeper, mut answers) = c.lease_keep_alive(id).await.map_err(etcd_error)?;
    let period = lease_period(ttl);
    let life = Duration::from_secs(u64::try_from(ttl).unwrap_or(1).max(1));
    let mut renewed = tokio::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        keeper.keep_alive().await.map_err(etcd_error)?;
        match tokio::time::timeout(period / 2, answers.message()).await {
            Ok(Ok(Some(a))) if a.ttl() > 0 => {
                renewed = tokio::time::Instant::now();
                tokio::time::sleep(period).await;
            }
            Ok(Ok(_)) => return Err(StoreError::Etcd("lease expired".into())),
            Ok(Err(e)) => return Err(etcd_error(e)),
            // A slow answer: ask again on the same lease at once while it
            // may still live, rather than wait a whole period and let it
            // lapse; after its TTL without an answer it is surely gone.
            Err(_) if renewed.elapsed() < life => {}
            Err(_) => {
                return Err(StoreError::Etcd(
                    "no keep-alive answer within the lease's TTL".into(),
                ))
            }
        }
    }
    Ok(())
}

/// One round of the election for `key`: if it is free, take it on a fresh
/// lease and hold it (raising `flag`) until a keep-alive fails.
async fn hold_role(c: &mut Client, key: &str, holder: &str, flag: &Leadership) -> Result<()> {
    let current = c.get(key, None).await.map_err(etcd_error)?;
    if !current.kvs().is_empty() {
        return Ok(());
    }
    let lease = c
        .lease_grant(LEADER_TTL_SECS, None)
        .await
        .map_err(etcd_error)?
        .id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            holder,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let won = c.txn(txn).await.map_err(etcd_error)?.succeeded();
    if !won {
        let _ = c.lease_revoke(lease).await;
        return Ok(());
    }
    tracing::info!(key, holder, "took the role");
    let (mut keeper, mut answers) = c.lease_keep_alive(lease).await.map_err(etcd_error)?;
    flag.flag().store(true, Ordering::SeqCst);
    let period = Duration::from_millis(u64::try_from(LEADER_TTL_SECS).unwrap_or(2) * 1000 / 4);
    loop {
        tokio::time::sleep(period).await;
        keeper.keep_alive().await.map_err(etcd_error)?;
        match tokio::time::timeout(period * 2, answers.message()).await {
            Ok(Ok(Some(a))) if a.ttl() > 0 => {}
            Ok(Ok(_)) => return Err(StoreError::Etcd("lease expired".into())),
            Ok(Err(e)) => return Err(etcd_error(e)),
            Err(_) => return Err(StoreError::Etcd("no keep-alive answer".into())),
        }
    }
}
