//! HTTP front: authentication, dispatch, the single writer, and error envelopes.

use crate::actions::{self, Handler, Req};
use crate::commit::GroupCommit;
use crate::http::HttpLimits;
use crate::params::Params;
use crate::sigv4::{self, AuthError, SignedRequest};
use crate::xml::{self, Xml};
use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use vpc_model::ops::cost::RateTable;
use vpc_model::region::Regions;
use vpc_model::usage::Usage;
use vpc_model::{ops, Ctx, Fault, IdSource, Limits, Timestamp, World};
use vpc_store::{Leadership, Location, StateStore, Update};

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub regions: Regions,
    pub limits: Limits,
    /// Serve `POST /_vpcd/clock` so tests can move the simulated clock.
    pub test_clock: bool,
    /// Let concurrent writes share one transaction and fsync (on by default;
    /// off only to measure the baseline).
    pub group_commit: bool,
    /// Timeouts and sizes at the HTTP boundary.
    pub http: HttpLimits,
    /// How metered data transfer is priced (Cost Explorer).
    pub rates: RateTable,
    /// Serve `GET /metrics` (Prometheus text, no authentication).
    pub serve_metrics: bool,
}

/// Random hex for resource IDs.
#[derive(Debug, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn hex17(&mut self) -> String {
        let hi: u8 = rand::random::<u8>() & 0x0f;
        let lo: u64 = rand::random();
        format!("{hi:x}{lo:016x}")
    }
}

/// Shared server state.
pub struct App {
    world: ArcSwap<World>,
    writer: GroupCommit,
    reader: Mutex<Box<dyn StateStore>>,
    /// Metered usage lives beside the SQLite state (the data plane records
    /// it); a server on etcd runs no data plane and has none.
    usage_reader: Mutex<Box<dyn StateStore>>,
    /// Whether this server runs the timers (always, on SQLite; the elected
    /// one of the cluster, on etcd).
    clock: Leadership,
    keys: RwLock<HashMap<String, (String, String)>>,
    /// The hosts agents registered in a shared store (`host/<name>`) and
    /// which are live (`alive/<name>`).
    hosts: Arc<crate::actions::HostsCell>,
    clock_offset: AtomicI64,
    next_deadline: AtomicI64,
    /// Bumped on every publish; watchers (the data plane) wait on it.
    generation: Mutex<u64>,
    published: Condvar,
    /// Room for request bodies being read, in bytes (see `HttpLimits::max_buffered_body_bytes`).
    body_budget: tokio::sync::Semaphore,
    /// What `/metrics` exports; the binary feeds the data-plane parts.
    pub metrics: crate::metrics::Metrics,
    pub config: Config,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("config", &self.config).finish()
    }
}

use vpc_store::clock::{wall_clock_ms as real_now_ms, CLOCK_OFFSET_KEY};

/// The one EC2 API version vpcd speaks (its shapes and semantics).
pub const EC2_API_VERSION: &str = "2016-11-15";
/// The STS API version of `GetCallerIdentity`.
const STS_API_VERSION: &str = "2011-06-15";

/// A request must name the API version it was written for, and vpcd answers
/// only the one whose shapes it speaks (older EC2 versions differ in shape).
fn check_version(p: &Params, version: &str, service: &str) -> Result<(), Fault> {
    match p.get("Version") {
        None | Some("") => Err(Fault::missing("Version")),
        Some(v) if v == version => Ok(()),
        Some(v) => Err(Fault::new(
            "NoSuchVersion",
            format!("The requested version ({v}) of service {service} does not exist"),
        )),
    }
}

/// The HTTP status EC2 uses for an error code.
pub fn status_for(code: &str) -> StatusCode {
    match code {
        "DryRunOperation" => StatusCode::PRECONDITION_FAILED,
        "UnauthorizedOperation"
        | "SignatureDoesNotMatch"
        | "InvalidClientTokenId"
        | "OptInRequired"
        | "Blocked" => StatusCode::FORBIDDEN,
        "AuthFailure" | "MissingAuthenticationToken" => StatusCode::UNAUTHORIZED,
        "RequestTimeout" => StatusCode::REQUEST_TIMEOUT,
        "MissingContentLength" => StatusCode::LENGTH_REQUIRED,
        "RequestEntityTooLarge" => StatusCode::PAYLOAD_TOO_LARGE,
        // Capacity errors are server errors (5xx), as EC2 lists them.
        "InternalError"
        | "InternalFailure"
        | "ServerInternal"
        | "InsufficientInstanceCapacity"
        | "InsufficientAddressCapacity" => StatusCode::INTERNAL_SERVER_ERROR,
        "ServiceUnavailable" | "Unavailable" | "RequestLimitExceeded" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

pub(crate) fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

/// The error code an error response carries (for the request metrics).
#[derive(Debug, Clone)]
struct ErrorCode(String);

fn with_code(mut r: Response, code: &str) -> Response {
    r.extensions_mut().insert(ErrorCode(code.to_string()));
    r
}

fn ec2_error(f: &Fault, request_id: &str) -> Response {
    with_code(
        xml_response(
            status_for(&f.code),
            xml::error_body(&f.code, &f.message, request_id),
            request_id,
        ),
        &f.code,
    )
}

/// An AWS JSON 1.1 error (Cost Explorer): HTTP 400 unless the code says
/// otherwise. Authentication failures take the JSON services' names.
fn json_error(f: &Fault, request_id: &str) -> Response {
    let code = match f.code.as_ref() {
        "InvalidClientTokenId" => "UnrecognizedClientException",
        "SignatureDoesNotMatch" => "InvalidSignatureException",
        c => c,
    };
    let body = serde_json::json!({"__type": code, "Message": f.message}).to_string();
    let mut r = json_response(status_for(&f.code), body, request_id);
    r.extensions_mut().insert(ErrorCode(f.code.to_string()));
    r
}

fn json_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

/// The answer to a request whose handling failed unexpectedly (a panic).
pub(crate) fn internal_error() -> Response {
    ec2_error(
        &Fault::new("InternalError", "An internal error has occurred"),
        &uuid::Uuid::new_v4().to_string(),
    )
}

fn sts_error(f: &Fault, request_id: &str) -> Response {
    let mut out = String::from("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>");
    xml::escape_into(&mut out, &f.code);
    out.push_str("</Code><Message>");
    xml::escape_into(&mut out, &f.message);
    out.push_str("</Message></Error><RequestId>");
    out.push_str(request_id);
    out.push_str("</RequestId></ErrorResponse>");
    with_code(xml_response(status_for(&f.code), out, request_id), &f.code)
}

fn auth_fault(e: &AuthError, sts: bool) -> Fault {
    match e {
        AuthError::Missing => Fault::new(
            "MissingAuthenticationToken",
            "The request must contain either a valid (registered) AWS access key ID or X.509 certificate.",
        ),
        AuthError::Incomplete(m) => Fault::new("IncompleteSignature", m.clone()),
        AuthError::Expired => Fault::new("RequestExpired", "Request has expired."),
        AuthError::WrongService(s) => Fault::new(
            if sts { "SignatureDoesNotMatch" } else { "AuthFailure" },
            format!("Credential should be scoped to correct service: '{s}'."),
        ),
        AuthError::UnknownKey(_) | AuthError::UnknownToken if sts => Fault::new(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ),
        AuthError::Mismatch if sts => Fault::new(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ),
        AuthError::UnknownKey(_) | AuthError::UnknownToken | AuthError::Mismatch => Fault::new(
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
        ),
    }
}

/// The hosts' registrations and liveness settings in the store.
use vpc_store::host_directory as read_hosts;

impl App {
    /// Opens the store in the data directory and loads the state.
    pub fn open(config: Config) -> Result<Arc<App>, vpc_store::StoreError> {
        let location = Location::Dir(config.data_dir.clone());
        App::open_at(config, &location)
    }

    /// Opens the store at `location` (SQLite or etcd) and loads the state.
    /// On a shared store it follows the other servers' commits and joins
    /// the election for the clock work.
    pub fn open_at(config: Config, location: &Location) -> Result<Arc<App>, vpc_store::StoreError> {
        let mut writer = vpc_store::open_writer(location)?;
        let mut reader = vpc_store::open(location)?;
        let snapshot = writer.load()?;
        let offset = vpc_store::clock::stored_offset_ms(&mut *writer)?;
        let world = snapshot.world;
        let next = ops::next_deadline(&world).map_or(i64::MAX, |t| t.0);
        let mut keys = HashMap::new();
        for a in reader.list_accounts()? {
            for k in a.keys {
                keys.insert(k.access_key_id, (a.id.clone(), k.secret_access_key));
            }
        }
        let hosts = read_hosts(&mut *reader)?;
        let updates = writer.follow(snapshot.as_of)?;
        let holder = format!(
            "{}:{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            std::process::id()
        );
        let clock = writer.campaign("clock", &holder)?;
        let app = Arc::new(App {
            world: ArcSwap::from_pointee(world.clone()),
            writer: GroupCommit::new(writer, world, snapshot.revision, config.group_commit),
            reader: Mutex::new(reader),
            // Its own connection: a Cost Explorer query never waits for a commit.
            usage_reader: Mutex::new(match location {
                Location::Dir(dir) => Box::new(vpc_store::Store::open(dir)?),
                Location::Etcd { .. } => vpc_store::open(location)?,
            }),
            clock,
            keys: RwLock::new(keys),
            hosts: Arc::new(RwLock::new(Arc::new(hosts))),
            clock_offset: AtomicI64::new(offset),
            next_deadline: AtomicI64::new(next),
            generation: Mutex::new(0),
            published: Condvar::new(),
            body_budget: tokio::sync::Semaphore::new(config.http.max_buffered_body_bytes),
            metrics: crate::metrics::Metrics::new(),
            config,
        });
        app.metrics.set_hosts(&app.hosts());
        {
            // A writer that reloads the World itself (its follower lagged)
            // reads the hosts again too, so a re-run never places on a host
            // removed meanwhile.
            let (cell, metrics) = (app.hosts.clone(), app.metrics.clone());
            app.writer.on_reload(move |store| match read_hosts(store) {
                Ok(d) => {
                    metrics.set_hosts(&d);
                    *cell.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(d);
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the hosts again"),
            });
        }
        if let Some(updates) = updates {
            let weak = Arc::downgrade(&app);
            std::thread::Builder::new()
                .name("store-follower".into())
                .spawn(move || {
                    for update in updates {
                        let Some(app) = weak.upgrade() else { return };
                        app.follow(update);
                    }
                })
                .map_err(|e| {
                    vpc_store::StoreError::Invalid(format!("cannot start the follower: {e}"))
                })?;
        }
        Ok(app)
    }

    /// Applies what another server committed (or a setting it changed).
    /// Settings come before the commit of their revision, so a World is
    /// published only after the hosts it was made with.
    fn follow(&self, update: Update) {
        match &update {
            Update::Setting { key, value } => {
                if key == CLOCK_OFFSET_KEY {
                    if let Ok(off) = value.parse() {
                        self.clock_offset.store(off, Ordering::SeqCst);
                    }
                }
                self.change_hosts(|d| d.set(key, value));
                return;
            }
            Update::SettingRemoved { key } => {
                self.change_hosts(|d| d.remove(key));
                return;
            }
            Update::Reset(_) => {
                // The stream lost its place: the settings may have moved too.
                let read =
                    read_hosts(&mut **self.reader.lock().unwrap_or_else(PoisonError::into_inner));
                match read {
                    Ok(d) => {
                        *self.hosts.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(d);
                        self.metrics.set_hosts(&self.hosts());
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the hosts again"),
                }
            }
            Update::Commit { .. } => {}
        }
        if let Err(e) = self.writer.follow(update, |w| self.publish(w)) {
            tracing::error!(error = %e, "cannot apply another server's commit");
        }
    }

    /// Applies `f` to a copy of the host directory and installs it if `f`
    /// says it changed something.
    fn change_hosts(&self, f: impl FnOnce(&mut vpc_model::placement::HostDirectory) -> bool) {
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = (**hosts).clone();
        if f(&mut next) {
            *hosts = Arc::new(next);
            drop(hosts);
            self.metrics.set_hosts(&self.hosts());
        }
    }

    /// The hosts agents registered and which are live (empty on one host).
    pub fn hosts(&self) -> Arc<vpc_model::placement::HostDirectory> {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether this server runs the timers now (see [`Leadership`]).
    pub fn is_clock_leader(&self) -> bool {
        self.clock.is_leader()
    }

    /// Now on the simulated clock.
    pub fn now(&self) -> Timestamp {
        Timestamp(real_now_ms() + self.clock_offset.load(Ordering::Relaxed))
    }

    /// Waits until a state newer than generation `seen` is published, or the
    /// timeout passes; returns the current generation and state either way.
    pub fn wait_newer(&self, seen: u64, timeout: std::time::Duration) -> (u64, Arc<World>) {
        let g = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (g, _) = self
            .published
            .wait_timeout_while(g, timeout, |g| *g == seen)
            .unwrap_or_else(PoisonError::into_inner);
        let gen = *g;
        drop(g);
        (gen, self.world.load_full())
    }

    /// The current published state.
    pub fn snapshot(&self) -> Arc<World> {
        self.world.load_full()
    }

    /// (account, secret) for an access key; new accounts are picked up without a restart.
    fn cached_key(&self, akid: &str) -> Option<(String, String)> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(akid)
            .cloned()
    }

    /// Whether an access key exists; on a cache miss the store is asked off
    /// the async workers. None when the store cannot say.
    async fn knows_key(self: &Arc<Self>, akid: &str) -> Option<bool> {
        if self.cached_key(akid).is_some() {
            return Some(true);
        }
        let (app, akid) = (self.clone(), akid.to_string());
        tokio::task::spawn_blocking(move || app.lookup_key(&akid).ok().map(|k| k.is_some()))
            .await
            .ok()
            .flatten()
    }

    ///
    /// A store that cannot answer is an error, not an unknown key: the caller
    /// answers `InternalError` (500, which SDKs retry) rather than
    /// `AuthFailure` for a key that may well exist.
    fn lookup_key(&self, akid: &str) -> Result<Option<(String, String)>, vpc_store::StoreError> {
        if let Some(v) = self.cached_key(akid) {
            return Ok(Some(v));
        }
        let found = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .find_key(akid)
            .inspect_err(|e| tracing::error!(error = %e, "cannot look up an access key"))?;
        if let Some(found) = &found {
            self.keys
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(akid.to_string(), found.clone());
        }
        Ok(found)
    }

    /// The account an access key id and secret sign in as (the web console's
    /// sign-in): the same key store SigV4 verifies against, the secret compared
    /// in constant time. None for an unknown key or a wrong secret.
    pub fn account_for_secret(&self, akid: &str, secret: &str) -> Option<String> {
        let (account, expected) = self.lookup_key(akid).ok().flatten()?;
        let (a, b) = (expected.as_bytes(), secret.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (x, y) in a.iter().zip(b.iter().cycle()) {
            diff |= x ^ y;
        }
        (diff == 0 && !b.is_empty()).then_some(account)
    }

    /// Makes the caller's region ready to be read, as a request does before
    /// its action runs: due timers applied, the default VPC made on first use.
    /// Blocks on the store when either needs a write.
    pub fn prepare(&self, account: &str, region: &str) -> Result<(), Fault> {
        if self.config.regions.get(region).is_none() {
            return Err(Fault::new(
                "InvalidParameterValue",
                format!("Unknown region '{region}'."),
            ));
        }
        self.maintain(account, region)
    }

    fn zones(&self, region: &str) -> Vec<(String, String)> {
        self.config
            .regions
            .get(region)
            .map(|r| r.zones())
            .unwrap_or_default()
    }

    /// Runs `f` as one all-or-nothing write and answers once it is durable
    /// (group commit, see [`crate::commit`]). Nothing is published unless
    /// the store committed it.
    pub(crate) fn write<T>(
        &self,
        account: &str,
        region: &str,
        f: impl Fn(&mut World, &mut Ctx<'_>) -> Result<T, Fault>,
        dry_run: bool,
    ) -> Result<T, Fault> {
        let zones = self.zones(region);
        let operation = |w: &mut World| {
            let now = self.now();
            let mut ids = RandomIds;
            let mut ctx = Ctx {
                account: account.to_string(),
                region: region.to_string(),
                now,
                ids: &mut ids,
                limits: &self.config.limits,
                zones: &zones,
            };
            // Timers due by now apply before the action sees the world, so no
            // action ever acts on a connection that should already have moved on.
            ops::tick(w, now);
            let out = f(w, &mut ctx)?;
            if dry_run {
                return Err(Fault::new(
                    "DryRunOperation",
                    "Request would have succeeded, but DryRun flag is set.",
                ));
            }
            Ok(out)
        };
        self.writer.write(operation, |w| self.publish(w))
    }

    /// Runs a read against the published World with a context for `account` in `region`.
    pub(crate) fn read<T>(
        &self,
        account: &str,
        region: &str,
        f: impl FnOnce(&World, &Ctx<'_>) -> T,
    ) -> T {
        let w = self.world.load();
        let zones = self.zones(region);
        let mut ids = RandomIds;
        let ctx = Ctx {
            account: account.to_string(),
            region: region.to_string(),
            now: self.now(),
            ids: &mut ids,
            limits: &self.config.limits,
            zones: &zones,
        };
        f(&w, &ctx)
    }

    /// Whether `region` is one this server serves.
    pub(crate) fn serves_region(&self, region: &str) -> bool {
        self.config.regions.get(region).is_some()
    }

    /// Makes a committed World the one reads and watchers see.
    fn publish(&self, w: &World) {
        let next = ops::next_deadline(w).map_or(i64::MAX, |t| t.0);
        self.next_deadline.store(next, Ordering::Relaxed);
        self.world.store(Arc::new(w.clone()));
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        self.published.notify_all();
    }

    /// Whether the caller's first use of a region or a due timer needs a write first.
    fn needs_maintenance(&self, account: &str, region: &str) -> (bool, bool) {
        let key = format!("{account}:{region}");
        let need_init = self
            .world
            .load()
            .get::<vpc_model::RegionInit>(&key)
            .is_none();
        let need_tick = self.now().0 >= self.next_deadline.load(Ordering::Relaxed);
        (need_init, need_tick)
    }

    /// Applies due timers and makes the caller's default VPC, if either is needed.
    fn maintain(&self, account: &str, region: &str) -> Result<(), Fault> {
        let (need_init, need_tick) = self.needs_maintenance(account, region);
        // Timers alone are the clock leader's work; a write that happens
        // anyway applies those due (inside its own guarded commit).
        if !need_init && (!need_tick || !self.is_clock_leader()) {
            return Ok(());
        }
        self.write(
            account,
            region,
            |w, ctx| {
                ops::tick(w, ctx.now);
                if need_init {
                    ops::defaults::ensure_region(w, ctx)?;
                }
                Ok(())
            },
            false,
        )
    }

    /// Applies due peering timers and runs the store's upkeep while no
    /// write waits (the background ticker calls this).
    pub fn tick(&self) {
        self.writer.maintain(std::time::Duration::from_millis(20));
        if self.is_clock_leader() && self.now().0 >= self.next_deadline.load(Ordering::Relaxed) {
            let r = self.write(
                "000000000000",
                "",
                |w, ctx| {
                    ops::tick(w, ctx.now);
                    Ok(())
                },
                false,
            );
            if let Err(e) = r {
                tracing::warn!(error = %e, "timer tick failed");
            }
        }
    }

    /// How long until the earliest timer is due, between 2 and 250 ms.
    pub fn until_next_deadline(&self) -> std::time::Duration {
        if !self.is_clock_leader() {
            // Another server runs the timers; look again whether this one
            // took the role by then.
            return std::time::Duration::from_millis(250);
        }
        let left = self
            .next_deadline
            .load(Ordering::Relaxed)
            .saturating_sub(self.now().0);
        std::time::Duration::from_millis(u64::try_from(left.clamp(2, 250)).unwrap_or(250))
    }

    /// Moves the simulated clock forward and persists the offset.
    pub fn advance_clock(&self, ms: i64) -> Result<i64, Fault> {
        let cur = self.clock_offset.load(Ordering::SeqCst);
        let off = cur
            .checked_add(ms)
            .filter(|o| o.checked_add(real_now_ms()).is_some())
            .ok_or_else(|| Fault::invalid_param("clock offset out of range"))?;
        self.clock_offset.store(off, Ordering::SeqCst);
        self.writer
            .with_store(|s| s.set_setting(CLOCK_OFFSET_KEY, &off.to_string()))
            .map_err(|e| Fault::new("InternalError", e.to_string()))?;
        self.tick();
        // In a cluster the leader applies the timers: wait (a little) until
        // they show here, so a caller sees what the new time implies.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.now().0 >= self.next_deadline.load(Ordering::Relaxed)
            && std::time::Instant::now() < give_up
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(off)
    }

    /// Handles one EC2/STS request end to end, blocking on the store if it writes.
    pub fn handle(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
        self.handle_inner(method, uri, headers, body, true)
            .expect("blocking allowed")
    }

    /// Handles a request without blocking, or returns None when it must write
    /// (a write action, a first use of a region, or a due timer).
    pub fn try_handle_nonblocking(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Response> {
        self.handle_inner(method, uri, headers, body, false)
    }

    /// Handles a request and records it in the request metrics (once, when answered).
    fn handle_inner(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        may_block: bool,
    ) -> Option<Response> {
        let started = std::time::Instant::now();
        let mut action = "unknown";
        let r = self.handle_unmetered(method, uri, headers, body, may_block, &mut action)?;
        let outcome = r
            .extensions()
            .get::<ErrorCode>()
            .map_or("ok", |c| c.0.as_str());
        self.metrics
            .api_request(action, outcome, started.elapsed().as_secs_f64());
        Some(r)
    }

    fn handle_unmetered(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        may_block: bool,
        action: &mut &'static str,
    ) -> Option<Response> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (query, hmap) = signing_view(uri, headers);
        let is_form = hmap
            .get("content-type")
            .and_then(|v| v.first())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| !k.starts_with("X-Amz-"))
            .cloned()
            .collect();
        if *method == Method::POST && (is_form || !body.is_empty()) {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        let params = Params::from_pairs(pairs);
        let target = hmap
            .get("x-amz-target")
            .and_then(|v| v.first())
            .map(String::as_str);
        let is_json = target.is_some();
        *action = match target {
            Some(t) => match t.strip_prefix(crate::ce::TARGET_PREFIX) {
                Some("GetCostAndUsage") => "GetCostAndUsage",
                _ if t == "AmazonSSM.GetParameter" => "GetParameter",
                _ => "unknown",
            },
            None => params
                .get("Action")
                .and_then(|a| {
                    if a == "GetCallerIdentity" {
                        Some("GetCallerIdentity")
                    } else {
                        actions::all_actions().iter().find(|n| **n == a).copied()
                    }
                })
                .unwrap_or("unknown"),
        };
        // Cost Explorer reads the store: never on the async workers.
        if is_json && !may_block {
            return None;
        }
        // A write goes to the blocking path anyway: don't verify it twice.
        let writes = params
            .get("Action")
            .and_then(actions::lookup)
            .is_some_and(|h| matches!(h, Handler::Write(_)));
        if writes && !may_block {
            return None;
        }
        let is_sts = params.get("Version") == Some(STS_API_VERSION)
            || params.get("Action") == Some("GetCallerIdentity");
        let fail = |f: Fault| {
            if is_json {
                json_error(&f, &request_id)
            } else if is_sts {
                sts_error(&f, &request_id)
            } else {
                ec2_error(&f, &request_id)
            }
        };

        let sreq = SignedRequest {
            method: method.as_str(),
            path: uri.path(),
            query: &query,
            headers: &hmap,
            body,
        };
        // Without blocking, only cached keys are known; an unknown key goes
        // to the blocking path, which asks the store (new accounts work at once).
        let mut uncached = false;
        let mut store_failed = false;
        let verified = match sigv4::verify(&sreq, time::OffsetDateTime::now_utc(), |akid| {
            let k = if may_block {
                self.lookup_key(akid).unwrap_or_else(|_| {
                    store_failed = true;
                    None
                })
            } else {
                self.cached_key(akid)
            };
            uncached = k.is_none() && !may_block;
            k.map(|(_, s)| s)
        }) {
            Err(_) if uncached => return None,
            Err(_) if store_failed => {
                return Some(fail(Fault::new(
                    "InternalError",
                    "An internal error has occurred",
                )))
            }
            Ok(v) => v,
            Err(e) => return Some(fail(auth_fault(&e, is_sts || is_json))),
        };
        let Some((account, _)) = self.cached_key(&verified.access_key_id) else {
            return Some(fail(auth_fault(
                &AuthError::UnknownKey(verified.access_key_id),
                is_sts,
            )));
        };
        if verified.service == "sts" {
            return Some(self.sts(&params, &account, &request_id));
        }
        if verified.service == "route53" {
            return crate::route53::handle(
                self,
                method,
                uri,
                body,
                &account,
                &verified.region,
                &request_id,
                may_block,
            );
        }
        if verified.service == "ce" {
            return Some(match self.cost_explorer(target, body, &account) {
                Ok(body) => json_response(StatusCode::OK, body, &request_id),
                Err(f) => fail(f),
            });
        }
        if verified.service == "ssm" {
            let now = self.now().0 as f64 / 1000.0;
            return Some(
                match crate::ssm::answer(target, body, &verified.region, now) {
                    Ok(body) => json_response(StatusCode::OK, body, &request_id),
                    Err(f) => fail(f),
                },
            );
        }
        if verified.service != "ec2" {
            return Some(fail(auth_fault(
                &AuthError::WrongService(verified.service),
                false,
            )));
        }
        if params.has("Action") {
            if let Err(f) = check_version(&params, EC2_API_VERSION, "AmazonEC2") {
                return Some(fail(f));
            }
        }
        let region = verified.region;
        let result = self.dispatch_inner(&account, &region, &params, &request_id, may_block)?;
        Some(match result {
            Ok(body) => xml_response(StatusCode::OK, body, &request_id),
            Err(f) => fail(f),
        })
    }

    /// Runs one EC2 action for an already-authenticated caller and returns the
    /// XML body, or the fault to answer with.
    ///
    /// This is what an HTTP request runs after SigV4: the region check, the
    /// action lookup, the XML-character check, `DryRun`, region setup and due
    /// timers, then the handler (a write through the single writer). It blocks
    /// on the store when the action writes.
    pub fn dispatch(
        &self,
        account: &str,
        region: &str,
        params: &Params,
        request_id: &str,
    ) -> Result<String, Fault> {
        self.dispatch_inner(account, region, params, request_id, true)
            .expect("blocking allowed")
    }

    /// [`App::dispatch`]; without `may_block`, None when the request must write.
    fn dispatch_inner(
        &self,
        account: &str,
        region: &str,
        params: &Params,
        request_id: &str,
        may_block: bool,
    ) -> Option<Result<String, Fault>> {
        if self.config.regions.get(region).is_none() {
            return Some(Err(Fault::new(
                "AuthFailure",
                format!("Credential should be scoped to a valid region, not '{region}'."),
            )));
        }
        let Some(action) = params.get("Action") else {
            return Some(Err(Fault::new(
                "MissingAction",
                "The request must contain the parameter Action",
            )));
        };
        let Some(handler) = actions::lookup(action) else {
            return Some(Err(Fault::new(
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            )));
        };
        if let Some((name, _)) = params
            .iter()
            .find(|(_, v)| !v.chars().all(xml::is_xml_char))
        {
            return Some(Err(Fault::invalid_param(format!(
                "Value for parameter {name} contains characters that are not allowed"
            ))));
        }
        let dry_run = match params.dry_run() {
            Ok(d) => d,
            Err(f) => return Some(Err(f)),
        };
        if !may_block {
            let (init, tick) = self.needs_maintenance(account, region);
            if init || tick || matches!(handler, Handler::Write(_)) {
                return None;
            }
        }
        if may_block {
            if let Err(f) = self.maintain(account, region) {
                return Some(Err(f));
            }
        }
        let req = Req {
            p: params,
            action,
            request_id,
            regions: &self.config.regions,
            hosts: &self.hosts,
        };
        Some(match handler {
            Handler::Read(h) => {
                if dry_run {
                    Err(Fault::new(
                        "DryRunOperation",
                        "Request would have succeeded, but DryRun flag is set.",
                    ))
                } else {
                    let w = self.world.load();
                    let zones = self.zones(region);
                    let mut ids = RandomIds;
                    let ctx = Ctx {
                        account: account.to_string(),
                        region: region.to_string(),
                        now: self.now(),
                        ids: &mut ids,
                        limits: &self.config.limits,
                        zones: &zones,
                    };
                    h(&w, &ctx, &req)
                }
            }
            Handler::Write(h) => self.write(account, region, |w, ctx| h(w, ctx, &req), dry_run),
        })
    }

    /// Metered usage within `[from, to)`: one account's (never another's), or everyone's.
    pub fn usage(
        &self,
        account: Option<&str>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Usage>, vpc_store::StoreError> {
        self.usage_reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .usage(account, from, to)
    }

    /// Cost Explorer (`X-Amz-Target: AWSInsightsIndexService.*`) for `account`.
    fn cost_explorer(
        &self,
        target: Option<&str>,
        body: &[u8],
        account: &str,
    ) -> Result<String, Fault> {
        let op = target.and_then(|t| t.strip_prefix(crate::ce::TARGET_PREFIX));
        if op != Some("GetCostAndUsage") {
            return Err(Fault::new(
                "UnknownOperationException",
                format!(
                    "vpcd's Cost Explorer answers GetCostAndUsage only, not {}",
                    target.unwrap_or("(no X-Amz-Target)")
                ),
            ));
        }
        let q = crate::ce::parse_query(body)?;
        let usage = self
            .usage(Some(account), q.start.start(), q.end.start())
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read usage");
                Fault::new("InternalFailure", "The usage records could not be read")
            })?;
        let periods = ops::cost::cost_and_usage(&q, &usage, &self.config.rates, self.now());
        Ok(crate::ce::render(&q, &periods))
    }

    fn sts(&self, p: &Params, account: &str, request_id: &str) -> Response {
        if p.has("Action") {
            if let Err(f) = check_version(p, STS_API_VERSION, "AWSSecurityTokenServiceV20110615") {
                return sts_error(&f, request_id);
            }
        }
        match p.get("Action") {
            Some("GetCallerIdentity") => {
                let mut x = Xml::default();
                x.out.push_str("<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">");
                x.open("GetCallerIdentityResult")
                    .leaf("Arn", &format!("arn:aws:iam::{account}:root"))
                    .leaf("UserId", account)
                    .leaf("Account", account)
                    .close("GetCallerIdentityResult");
                x.open("ResponseMetadata")
                    .leaf("RequestId", request_id)
                    .close("ResponseMetadata");
                x.out.push_str("</GetCallerIdentityResponse>");
                xml_response(StatusCode::OK, x.out, request_id)
            }
            other => sts_error(
                &Fault::new(
                    "InvalidAction",
                    format!(
                        "Could not find operation {} for version 2011-06-15",
                        other.unwrap_or("")
                    ),
                ),
                request_id,
            ),
        }
    }
}

/// Lower-cased header names and their values, as SigV4 reads them.
type SigningHeaders = BTreeMap<String, Vec<String>>;

/// A request head as SigV4 sees it: decoded query pairs and lower-cased headers.
fn signing_view(uri: &Uri, headers: &HeaderMap) -> (Vec<(String, String)>, SigningHeaders) {
    let query = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let mut hmap = SigningHeaders::new();
    for (k, v) in headers {
        hmap.entry(k.as_str().to_ascii_lowercase())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    (query, hmap)
}

fn too_large(max: usize) -> Fault {
    Fault::new(
        "RequestEntityTooLarge",
        format!("The request body is larger than the limit of {max} bytes."),
    )
}

/// The Content-Length of an admitted request (0 when it has none).
fn declared_length(head: &Parts) -> usize {
    head.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// Refuses a body that is too long, or whose length is not declared up front.
fn check_declared_length(headers: &HeaderMap, max: usize) -> Result<(), Fault> {
    match headers.get(header::CONTENT_LENGTH) {
        Some(v) => match v.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(n) if n <= max as u64 => Ok(()),
            Some(_) => Err(too_large(max)),
            None => Err(Fault::invalid_param("Content-Length is not a number")),
        },
        None if headers.contains_key(header::TRANSFER_ENCODING) => Err(Fault::new(
            "MissingContentLength",
            "A request with a body must declare its Content-Length.",
        )),
        None => Ok(()),
    }
}

/// Decides from the head alone whether a request's body is worth reading: a
/// declared length within the limit, a well-formed SigV4 credential and a
/// known access key. The full signature check runs once the body is read, so
/// an unauthenticated request never makes the server buffer its body.
async fn admit(app: &Arc<App>, head: &Parts) -> Result<(), Response> {
    check_declared_length(&head.headers, app.config.http.max_body_bytes)
        .map_err(|f| refusal(&f, false))?;
    let (query, headers) = signing_view(&head.uri, &head.headers);
    let signed = SignedRequest {
        method: head.method.as_str(),
        path: head.uri.path(),
        query: &query,
        headers: &headers,
        body: &[],
    };
    // Before the body is read, an STS request is known only by its credential scope.
    let (akid, service) =
        sigv4::claimed_credential(&signed).map_err(|e| refusal(&auth_fault(&e, false), false))?;
    match app.knows_key(&akid).await {
        Some(true) => return Ok(()),
        Some(false) => {}
        None => {
            let f = Fault::new("InternalError", "An internal error has occurred");
            return Err(if head.headers.contains_key("x-amz-target") {
                json_error(&f, &uuid::Uuid::new_v4().to_string())
            } else {
                refusal(&f, service == "sts")
            });
        }
    }
    if head.headers.contains_key("x-amz-target") {
        let f = auth_fault(&AuthError::UnknownKey(akid), true);
        let mut r = json_error(&f, &uuid::Uuid::new_v4().to_string());
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Err(r)
    } else {
        let sts = service == "sts";
        Err(refusal(&auth_fault(&AuthError::UnknownKey(akid), sts), sts))
    }
}

/// Reads an admitted body, within the size limit and the body timeout, once
/// its declared length fits in what all bodies together may hold.
async fn read_body(app: &App, head: &Parts, body: Body) -> Result<Bytes, Fault> {
    let limits = &app.config.http;
    let room = |n: usize| u32::try_from(n.min(limits.max_buffered_body_bytes)).unwrap_or(u32::MAX);
    let read = async {
        let _room = app
            .body_budget
            .acquire_many(room(declared_length(head)))
            .await;
        Limited::new(body, limits.max_body_bytes).collect().await
    };
    match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large(limits.max_body_bytes)),
        Ok(Err(e)) => Err(Fault::new(
            "IncompleteBody",
            format!("The request body could not be read: {e}"),
        )),
        Err(_) => {
            tracing::debug!(timeout = ?limits.body_timeout, "closing a connection: its body did not arrive in time");
            Err(Fault::new(
                "RequestTimeout",
                format!(
                    "The request body did not arrive within {} seconds.",
                    limits.body_timeout.as_secs_f64()
                ),
            ))
        }
    }
}

/// An error answered before or while reading the body; the connection is closed after it.
fn refusal(f: &Fault, sts: bool) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut r = if sts {
        sts_error(f, &request_id)
    } else {
        ec2_error(f, &request_id)
    };
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn entry(State(app): State<Arc<App>>, request: Request) -> Response {
    let (head, body) = request.into_parts();
    if head.uri.path() == "/_vpcd/clock" && app.config.test_clock {
        return clock(&app, &head.uri).await;
    }
    if head.uri.path() == "/metrics" && head.method == Method::GET && app.config.serve_metrics {
        let mut r = (StatusCode::OK, app.metrics.render()).into_response();
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return r;
    }
    if let Err(refused) = admit(&app, &head).await {
        return refused;
    }
    match read_body(&app, &head, body).await {
        Ok(body) => dispatch(app, head, body).await,
        Err(f) => refusal(&f, false),
    }
}

/// `POST /_vpcd/clock?advance=SECONDS` (with `--test-clock` only).
async fn clock(app: &Arc<App>, uri: &Uri) -> Response {
    let q: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let secs: i64 = q.get("advance").and_then(|v| v.parse().ok()).unwrap_or(0);
    let Some(ms) = secs.checked_mul(1000) else {
        return (StatusCode::BAD_REQUEST, "advance out of range").into_response();
    };
    let app2 = app.clone();
    let r = tokio::task::spawn_blocking(move || app2.advance_clock(ms)).await;
    match r {
        Ok(Ok(off)) => (
            StatusCode::OK,
            format!("{{\"offset_ms\":{off},\"now_ms\":{}}}", app.now().0),
        )
            .into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "clock update failed").into_response(),
    }
}

/// Runs an admitted request. Reads are in-memory and answered on this worker;
/// anything that writes waits for an fsync, so it moves to the blocking pool.
async fn dispatch(app: Arc<App>, head: Parts, body: Bytes) -> Response {
    let (method, uri, headers) = (head.method, head.uri, head.headers);
    if let Some(r) = app.try_handle_nonblocking(&method, &uri, &headers, &body) {
        return r;
    }
    tokio::task::spawn_blocking(move || app.handle(&method, &uri, &headers, &body))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "handler panicked");
            internal_error()
        })
}

/// The axum router for an app.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(entry).with_state(app)
}

#[cfg(test)]
mod tests {
    use super::status_for;
    use axum::http::StatusCode;

    /// EC2 lists capacity and internal errors as server errors: the SDKs
    /// see 5xx and retry them; everything else a client sent is 4xx.
    #[test]
    fn capacity_and_internal_errors_are_server_errors() {
        for code in [
            "InternalError",
            "InsufficientInstanceCapacity",
            "InsufficientAddressCapacity",
        ] {
            assert_eq!(
                status_for(code),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{code}"
            );
        }
        assert_eq!(
            status_for("ServiceUnavailable"),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_for("AddressLimitExceeded"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for("AuthFailure"), StatusCode::UNAUTHORIZED);
    }
}
