//! The DNS servers: one per VPC, listening on UDP and TCP port 53 at the
//! VPC's resolver addresses inside its router namespace.
//!
//! Every query is answered from the World published at that moment (its
//! [`Index`] is built once per World, by the first to see it), so a change
//! such as a peering DNS option turned off is in effect as soon as the API
//! has answered. A manager task starts a server for every VPC that should
//! have one (`ops::dns::resolver_addresses`) and whose router namespace
//! exists, stops the others, and re-binds when a router namespace was made
//! again (its inode changed). It converges whenever
//! [`DnsService::changed`] is called and every [`RECHECK`] (router
//! namespaces appear after the World that asks for them).
//!
//! Sockets are opened by a short-lived thread that enters the router
//! namespace (`setns`), binds once the reconciler has put the addresses
//! there (until then the bind fails and the next pass tries again); they stay
//! in that namespace whatever thread serves them. TCP listeners go to a
//! hickory-dns [`Server`] on tokio, UDP sockets to threads of their own
//! ([`crate::udp`]); both answer through [`VpcResolver`].

use crate::error::DnsError;
use crate::zone::{self, Answer, Index, Outcome, QueryKind};
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use nix::sched::CloneFlags;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use vpc_model::ops::dns;
use vpc_model::ops::route53::RecordData;
use vpc_model::{Vpc, World};

/// How often the manager looks for router namespaces that appeared.
pub const RECHECK: Duration = Duration::from_millis(200);

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// Where `ip netns` keeps named namespaces.
const NETNS_RUN: &str = "/run/netns";

/// One published state and its index.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub world: Arc<World>,
    pub index: Index,
    /// Different for every snapshot built (a World seen again after another
    /// gets a new one): an answer remembered under one generation is the
    /// answer to the same question for as long as `current` returns that
    /// generation (`crate::cache`).
    pub generation: u64,
}

/// Settings of the DNS service.
#[derive(Clone)]
pub struct DnsConfig {
    /// The data directory's data-plane tag (router namespaces are `vpcd<tag>-vpc-…`).
    pub tag: String,
    /// The port to listen on (53).
    pub port: u16,
    /// Where names outside vpcd's zones are forwarded (`--dns-upstream`);
    /// None: they get NXDOMAIN at once and nothing leaves the machine.
    pub upstream: Option<SocketAddr>,
    /// Told the outcome of every query (`NOERROR`, `NXDOMAIN`, `SERVFAIL`
    /// (the upstream did not answer), `FORMERR`, `NOTIMP`, or `dropped` for
    /// one not admitted), e.g. to count them.
    pub on_query: Option<QueryHook>,
}

impl std::fmt::Debug for DnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsConfig")
            .field("tag", &self.tag)
            .field("port", &self.port)
            .field("upstream", &self.upstream)
            .field("on_query", &self.on_query.is_some())
            .finish()
    }
}

/// See [`DnsConfig::on_query`].
pub type QueryHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// How long a forwarded question may wait for the upstream's answer before
/// the instance gets SERVFAIL (under a client's usual one-second try).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(800);

/// Where the latest published World comes from (`vpc_api::App::snapshot`).
pub type WorldSource = Arc<dyn Fn() -> Arc<World> + Send + Sync>;

/// The latest World and its index, shared by the manager and every server.
struct Latest {
    source: WorldSource,
    cache: RwLock<Arc<Snapshot>>,
    /// The last generation given to a snapshot.
    generations: AtomicU64,
    on_query: Option<QueryHook>,
}

impl Latest {
    fn counted(&self, outcome: &'static str) {
        if let Some(hook) = &self.on_query {
            hook(outcome);
        }
    }
}

impl std::fmt::Debug for Latest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latest").finish_non_exhaustive()
    }
}

impl Latest {
    /// The latest published World and its index; the index is rebuilt once
    /// per new World, by whoever sees it first.
    fn current(&self) -> Arc<Snapshot> {
        let world = (self.source)();
        let cached = match self.cache.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if Arc::ptr_eq(&cached.world, &world) {
            return cached;
        }
        let snap = Arc::new(Snapshot {
            index: Index::build(&world),
            world,
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
        });
        match self.cache.write() {
            Ok(mut g) => *g = snap.clone(),
            Err(p) => *p.into_inner() = snap.clone(),
        }
        snap
    }
}

type Shared = Arc<Latest>;

/// The Amazon-provided DNS servers of every VPC of one data directory.
#[derive(Debug)]
pub struct DnsService {
    shared: Shared,
    changed: Arc<Notify>,
}

impl DnsService {
    /// Starts the manager task on `rt`. Every query is answered from the
    /// World `source` returns at that moment, so a change is in effect as
    /// soon as it is published; [`changed`](Self::changed) makes the
    /// manager start and stop servers without waiting for its next look.
    pub fn start(
        config: DnsConfig,
        source: WorldSource,
        rt: &tokio::runtime::Handle,
    ) -> DnsService {
        let shared: Shared = Arc::new(Latest {
            source,
            cache: RwLock::default(),
            generations: AtomicU64::new(0),
            on_query: config.on_query.clone(),
        });
        let changed = Arc::new(Notify::new());
        let manager = Manager {
            config,
            shared: shared.clone(),
            running: BTreeMap::new(),
        };
        rt.spawn(manager.run(changed.clone()));
        DnsService { shared, changed }
    }

    /// A new World was published: index it now (so the first query does not
    /// pay for it) and let the manager converge the set of servers.
    pub fn changed(&self) {
        self.shared.current();
        self.changed.notify_one();
    }
}

/// A running server and what it was bound for.
struct Running {
    ns_inode: u64,
    addrs: Vec<IpAddr>,
    /// Dropping the server aborts its TCP tasks and closes its listeners.
    _server: Server<VpcResolver>,
    /// Dropping them stops the UDP threads and closes their sockets.
    _udp: Vec<crate::udp::UdpLoop>,
}

struct Manager {
    config: DnsConfig,
    shared: Shared,
    running: BTreeMap<String, Running>,
}

/// The inode of a named network namespace, if it exists: its file must be
/// mounted (another device than its directory's), not the empty file a
/// namespace is mounted on an instant later.
fn netns_inode(name: &str) -> Option<u64> {
    let dir = std::fs::metadata(NETNS_RUN).ok()?;
    let m = std::fs::metadata(PathBuf::from(NETNS_RUN).join(name)).ok()?;
    (m.dev() != dir.dev()).then(|| m.ino())
}

impl Manager {
    async fn run(mut self, changed: Arc<Notify>) {
        loop {
            self.converge().await;
            let _ = tokio::time::timeout(RECHECK, changed.notified()).await;
        }
    }

    /// What should run: (VPC, router namespace, its inode, addresses).
    fn wanted(&self) -> Vec<(String, String, u64, Vec<IpAddr>)> {
        let snap = self.shared.current();
        snap.world
            .iter::<Vpc>()
            .filter(|v| vpc_dataplane::names::is_safe(&v.meta.id))
            .filter_map(|v| {
                let addrs = dns::resolver_addresses(v);
                if addrs.is_empty() {
                    return None;
                }
                let ns = vpc_dataplane::names::router_ns(&self.config.tag, &v.meta.id);
                let inode = netns_inode(&ns)?;
                Some((v.meta.id.clone(), ns, inode, addrs))
            })
            .collect()
    }

    async fn converge(&mut self) {
        let wanted = self.wanted();
        let keep: std::collections::BTreeSet<&str> =
            wanted.iter().map(|(v, ..)| v.as_str()).collect();
        self.running.retain(|vpc, _| {
            let k = keep.contains(vpc.as_str());
            if !k {
                tracing::info!(vpc = %vpc, "DNS server stopped");
            }
            k
        });
        for (vpc, ns, inode, addrs) in wanted {
            if self
                .running
                .get(&vpc)
                .is_some_and(|r| r.ns_inode == inode && r.addrs == addrs)
            {
                continue;
            }
            self.running.remove(&vpc);
            let port = self.config.port;
            let bind_addrs = addrs.clone();
            let ns_name = ns.clone();
            let bound =
                tokio::task::spawn_blocking(move || bind_in_netns(&ns_name, &bind_addrs, port))
                    .await
                    .map_err(|e| DnsError::Thread(e.to_string()))
                    .and_then(|r| r);
            match bound {
                Ok(sockets) => {
                    let handler = VpcResolver {
                        vpc_id: vpc.clone(),
                        shared: self.shared.clone(),
                        upstream: self.config.upstream,
                    };
                    let udp_handler = Arc::new(handler.clone());
                    let rt = tokio::runtime::Handle::current();
                    let mut server = Server::new(handler);
                    let mut udp_loops = Vec::new();
                    let mut failed = None;
                    for (udp, tcp) in sockets {
                        match tokio::net::TcpListener::from_std(tcp) {
                            Ok(t) => server.register_listener(t, TCP_IDLE, 64),
                            Err(e) => failed = Some(e),
                        }
                        match crate::udp::start(udp, udp_handler.clone(), rt.clone()) {
                            Ok(u) => udp_loops.push(u),
                            Err(e) => failed = Some(e),
                        }
                    }
                    if let Some(e) = failed {
                        tracing::warn!(vpc = %vpc, ns = %ns, "DNS server: {e}");
                        continue;
                    }
                    tracing::info!(vpc = %vpc, ns = %ns, ?addrs, "DNS server listening");
                    self.running.insert(
                        vpc,
                        Running {
                            ns_inode: inode,
                            addrs,
                            _server: server,
                            _udp: udp_loops,
                        },
                    );
                }
                Err(e) if e.is_address_not_yet_there() => {
                    tracing::debug!(vpc = %vpc, ns = %ns, "DNS server waits for its addresses: {e}")
                }
                Err(e) => tracing::warn!(vpc = %vpc, ns = %ns, "DNS server not started: {e}"),
            }
        }
    }
}

/// Opens UDP and TCP sockets on `port` at each address inside the named
/// network namespace, from a thread of its own (the namespace is per thread).
pub fn bind_in_netns(
    ns: &str,
    addrs: &[IpAddr],
    port: u16,
) -> Result<Vec<(std::net::UdpSocket, std::net::TcpListener)>, DnsError> {
    let path = PathBuf::from(NETNS_RUN).join(ns);
    let addrs = addrs.to_vec();
    let ns_name = ns.to_string();
    std::thread::Builder::new()
        .name("dns-bind".into())
        .spawn(move || {
            let file = std::fs::File::open(&path).map_err(|e| DnsError::Netns {
                ns: ns_name.clone(),
                source: e,
            })?;
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| DnsError::Netns {
                ns: ns_name.clone(),
                source: e.into(),
            })?;
            addrs
                .iter()
                .map(|a| bind_pair(SocketAddr::new(*a, port)))
                .collect()
        })
        .map_err(|e| DnsError::Thread(e.to_string()))?
        .join()
        .map_err(|_| DnsError::Thread("the binding thread panicked".into()))?
}

/// A non-blocking UDP socket and TCP listener at `at`, which must already be
/// an address of the namespace (`EADDRNOTAVAIL` otherwise: the manager tries
/// again on its next pass).
///
/// No `IP_FREEBIND`: an IPv4 socket bound to an address the namespace does
/// not have yet, before its local routing table exists, is taken for a
/// broadcast bind and keeps no source address, so its replies would leave
/// from whatever address routing picks (base + 2), and a client that asked
/// 169.254.169.253 drops them (see `tests/e2e/test_dns_names.py`,
/// `test_every_resolver_address_answers_as_soon_as_the_vpc_has_one`).
fn bind_pair(at: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind_err = |e| DnsError::Bind {
        addr: at,
        source: e,
    };
    let open = |ty, proto| -> Result<Socket, DnsError> {
        let s = Socket::new(Domain::for_address(at), ty, Some(proto)).map_err(bind_err)?;
        if at.is_ipv6() {
            s.set_only_v6(true).map_err(bind_err)?;
        }
        s.set_reuse_address(true).map_err(bind_err)?;
        s.set_nonblocking(true).map_err(bind_err)?;
        s.bind(&at.into()).map_err(bind_err)?;
        Ok(s)
    };
    let udp = open(Type::DGRAM, Protocol::UDP)?;
    let tcp = open(Type::STREAM, Protocol::TCP)?;
    tcp.listen(128).map_err(bind_err)?;
    Ok((udp.into(), tcp.into()))
}

/// Answers the queries that reach one VPC's resolver, over TCP (through
/// hickory's server) and UDP (through [`crate::udp`]).
#[derive(Debug, Clone)]
pub(crate) struct VpcResolver {
    vpc_id: String,
    shared: Shared,
    upstream: Option<SocketAddr>,
}

impl VpcResolver {
    /// The latest published World and its index.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current()
    }

    /// Whether a query from `src` gets an answer in `snap`: it comes from
    /// inside the VPC and the VPC's DNS support is on.
    pub(crate) fn admits_in(&self, snap: &Snapshot, src: IpAddr) -> bool {
        snap.world
            .get::<Vpc>(&self.vpc_id)
            .is_some_and(|v| dns::admits_query(v, src))
    }

    /// Whether a query from `src` gets an answer now; tells the query hook
    /// `dropped` when it does not.
    pub(crate) fn admits(&self, src: IpAddr) -> bool {
        let admitted = self.admits_in(&self.shared.current(), src);
        if !admitted {
            tracing::debug!(vpc = %self.vpc_id, %src, "query not admitted");
            self.shared.counted("dropped");
        }
        admitted
    }

    /// Tells the query hook an outcome.
    pub(crate) fn counted(&self, outcome: &'static str) {
        self.shared.counted(outcome);
    }

    /// What this resolver makes of `request` in `snap`, with nothing sent
    /// and nothing counted yet.
    pub(crate) fn decide(&self, snap: &Snapshot, request: &Request) -> Decision {
        // Only queries from inside the VPC, and only while DNS support is on:
        // anything else gets no answer at all.
        let admitted = snap
            .world
            .get::<Vpc>(&self.vpc_id)
            .filter(|v| dns::admits_query(v, request.src().ip()));
        let Some(vpc) = admitted else {
            return Decision::Dropped;
        };
        let edns = request.edns.is_some().then(|| {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            edns
        });
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let query = match request.queries.queries() {
            [q] if request.metadata.op_code == OpCode::Query
                && request.metadata.message_type == MessageType::Query =>
            {
                q
            }
            _ => {
                let (code, outcome) = if request.metadata.op_code == OpCode::Query {
                    (ResponseCode::FormErr, "FORMERR")
                } else {
                    (ResponseCode::NotImp, "NOTIMP")
                };
                metadata.response_code = code;
                return Decision::Local(LocalAnswer {
                    metadata,
                    answers: Vec::new(),
                    negative: Vec::new(),
                    edns,
                    outcome,
                });
            }
        };
        metadata.recursion_available = true;
        let qname = query.name().to_string();
        let outcome = zone::answer(
            &snap.index,
            &snap.world,
            vpc,
            &qname,
            kind_of(query.query_type()),
        );
        let (answers, negative) = match (outcome, self.upstream) {
            (Outcome::Outside, Some(upstream)) => {
                metadata.authoritative = false;
                return Decision::Forward(Forwarded {
                    upstream,
                    metadata,
                    edns,
                });
            }
            (Outcome::Records(rs), _) => {
                metadata.authoritative = true;
                (rs.iter().filter_map(record).collect(), Vec::new())
            }
            (Outcome::NoData { zone }, _) => {
                metadata.authoritative = true;
                (Vec::new(), soa(&zone).into_iter().collect())
            }
            (Outcome::NxDomain { zone }, _) => {
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
                (Vec::new(), soa(&zone).into_iter().collect())
            }
            (Outcome::Outside, None) => {
                metadata.response_code = ResponseCode::NXDomain;
                (Vec::new(), Vec::new())
            }
        };
        Decision::Local(LocalAnswer {
            outcome: outcome_name(metadata.response_code),
            metadata,
            answers,
            negative,
            edns,
        })
    }

    /// Asks the upstream `request`'s question and sends its answer
    /// (SERVFAIL when none came in time).
    pub(crate) async fn forward_and_send<R: ResponseHandler>(
        &self,
        request: &Request,
        forwarded: Forwarded,
        mut response: R,
    ) -> ResponseInfo {
        let Forwarded {
            upstream,
            mut metadata,
            edns,
        } = forwarded;
        let (answers, negative) = match request.queries.queries() {
            [query] => match forward(upstream, query.original()).await {
                Some(r) => {
                    metadata.response_code = r.metadata.response_code;
                    (r.answers, r.authorities)
                }
                None => {
                    tracing::debug!(vpc = %self.vpc_id, %upstream, "no answer from the upstream resolver");
                    metadata.response_code = ResponseCode::ServFail;
                    (Vec::new(), Vec::new())
                }
            },
            _ => {
                metadata.response_code = ResponseCode::ServFail;
                (Vec::new(), Vec::new())
            }
        };
        self.shared.counted(outcome_name(metadata.response_code));
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let msg = builder.build(metadata, answers.iter(), [], negative.iter(), []);
        send(&mut response, msg, request).await
    }

    /// The resolver of `vpc_id` answering from `world` (for tests).
    #[cfg(test)]
    pub(crate) fn for_world(
        vpc_id: &str,
        world: World,
        upstream: Option<SocketAddr>,
        on_query: Option<QueryHook>,
    ) -> VpcResolver {
        let world = Arc::new(world);
        Self::for_source(vpc_id, Arc::new(move || world.clone()), upstream, on_query)
    }

    /// The resolver of `vpc_id` answering from the World `source` returns
    /// at each query (for tests).
    #[cfg(test)]
    pub(crate) fn for_source(
        vpc_id: &str,
        source: WorldSource,
        upstream: Option<SocketAddr>,
        on_query: Option<QueryHook>,
    ) -> VpcResolver {
        VpcResolver {
            vpc_id: vpc_id.to_string(),
            shared: Arc::new(Latest {
                source,
                cache: RwLock::default(),
                generations: AtomicU64::new(0),
                on_query,
            }),
            upstream,
        }
    }
}

/// What a resolver makes of one request ([`VpcResolver::decide`]).
pub(crate) enum Decision {
    /// Not from inside the VPC, or its DNS support is off: no answer at all.
    Dropped,
    /// Answered from the World at once (or FORMERR / NOTIMP).
    Local(LocalAnswer),
    /// A name outside vpcd's zones, for the upstream resolver.
    Forward(Forwarded),
}

/// An answer made from the World alone: the same request bytes get the same
/// answer for as long as the World is the same.
pub(crate) struct LocalAnswer {
    metadata: Metadata,
    answers: Vec<Record>,
    negative: Vec<Record>,
    edns: Option<Edns>,
    /// What the query hook is told.
    pub(crate) outcome: &'static str,
}

impl LocalAnswer {
    /// The response to `request`, to encode.
    pub(crate) fn message<'a>(
        &'a self,
        request: &'a Request,
    ) -> hickory_server::zone_handler::MessageResponse<
        'a,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    > {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &self.edns {
            builder.edns(e);
        }
        builder.build(
            self.metadata,
            self.answers.iter(),
            std::iter::empty(),
            self.negative.iter(),
            std::iter::empty(),
        )
    }
}

/// A question for the upstream and the response's header so far.
pub(crate) struct Forwarded {
    upstream: SocketAddr,
    metadata: Metadata,
    edns: Option<Edns>,
}

/// What the query hook is told for a response code.
fn outcome_name(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::Refused => "REFUSED",
        _ => "other",
    }
}

/// Asks `upstream` one question over UDP, from the host's network namespace
/// (the one vpcd runs in); None when no matching answer came in time.
async fn forward(upstream: SocketAddr, query: &Query) -> Option<Message> {
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xffff) as u16;
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(query.clone());
    let bytes = m.to_vec().ok()?;
    let any: SocketAddr = if upstream.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let exchange = async {
        let sock = tokio::net::UdpSocket::bind(any).await.ok()?;
        sock.connect(upstream).await.ok()?;
        sock.send(&bytes).await.ok()?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await.ok()?;
            if let Ok(r) = Message::from_vec(&buf[..n]) {
                if r.metadata.id == id && r.queries.first() == Some(query) {
                    return Some(r);
                }
            }
        }
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
}

fn kind_of(t: RecordType) -> QueryKind {
    match t {
        RecordType::A => QueryKind::A,
        RecordType::PTR => QueryKind::Ptr,
        RecordType::ANY => QueryKind::Any,
        RecordType::AAAA => QueryKind::Zone("AAAA"),
        RecordType::CNAME => QueryKind::Zone("CNAME"),
        RecordType::TXT => QueryKind::Zone("TXT"),
        RecordType::SRV => QueryKind::Zone("SRV"),
        RecordType::MX => QueryKind::Zone("MX"),
        RecordType::NS => QueryKind::Zone("NS"),
        RecordType::SOA => QueryKind::Zone("SOA"),
        _ => QueryKind::Other,
    }
}

fn name(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn record(a: &Answer) -> Option<Record> {
    Some(match a {
        Answer::A { name: n, ip } => Record::from_rdata(name(n)?, dns::TTL, RData::A(A(*ip))),
        Answer::Aaaa { name: n, ip } => {
            Record::from_rdata(name(n)?, dns::TTL, RData::AAAA(AAAA(*ip)))
        }
        Answer::Ptr { name: n, target } => {
            Record::from_rdata(name(n)?, dns::TTL, RData::PTR(PTR(name(target)?)))
        }
        Answer::Zone {
            name: n,
            rtype,
            ttl,
            data,
        } => Record::from_rdata(name(n)?, *ttl, zone_rdata(rtype, data)?),
    })
}

/// A Route 53 record value as DNS data.
fn zone_rdata(rtype: &str, data: &RecordData) -> Option<RData> {
    Some(match data {
        RecordData::A(ip) => RData::A(A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RecordData::Name(target) => {
            let target = name(target)?;
            match rtype {
                "CNAME" => RData::CNAME(CNAME(target)),
                "NS" => RData::NS(NS(target)),
                "PTR" => RData::PTR(PTR(target)),
                _ => return None,
            }
        }
        RecordData::Txt(strings) => RData::TXT(TXT::new(strings.clone())),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, name(exchange)?)),
        RecordData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => RData::SOA(SOA::new(
            name(mname)?,
            name(rname)?,
            *serial,
            *refresh,
            *retry,
            *expire,
            *minimum,
        )),
        RecordData::Other => return None,
    })
}

/// The zone's SOA, for negative answers (RFC 2308).
fn soa(zone: &str) -> Option<Record> {
    let apex = name(zone)?;
    let mname = name(&format!("ns.{zone}"))?;
    let rname = name(&format!("hostmaster.{zone}"))?;
    Some(Record::from_rdata(
        apex,
        dns::TTL,
        RData::SOA(SOA::new(mname, rname, 1, 7200, 900, 1_209_600, dns::TTL)),
    ))
}

/// The response when nothing is sent: the caller only logs it.
fn dropped(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::Refused;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for VpcResolver {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let snap = self.shared.current();
        match self.decide(&snap, request) {
            Decision::Dropped => {
                tracing::debug!(vpc = %self.vpc_id, src = %request.src(), "query not admitted");
                self.shared.counted("dropped");
                dropped(request)
            }
            Decision::Local(answer) => {
                self.shared.counted(answer.outcome);
                send(&mut response, answer.message(request), request).await
            }
            Decision::Forward(forwarded) => {
                self.forward_and_send(request, forwarded, response).await
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("cannot send a DNS response: {e}");
            dropped(request)
        }
    }
}
