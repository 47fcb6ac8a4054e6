//! The UDP path of a resolver socket: a thread of its own that receives a
//! datagram, answers it and sends the answer, with no task hand-off in
//! between.
//!
//! hickory's UDP server hands every datagram to a new tokio task and every
//! answer back to the socket's task through a channel: three wake-ups per
//! query, which cost more than the answer itself (docs/perf.md, "VPC DNS
//! resolver"). Here the socket is blocking and its thread does the whole
//! exchange. The answer still comes from the one request handler
//! ([`VpcResolver::decide`], which TCP's `handle_request` calls too): a query
//! it answers from the zone (every one but a name forwarded to
//! `--dns-upstream`) is encoded and sent at once, and remembered in the
//! thread's [`AnswerCache`] so the same request bytes get the same answer
//! bytes (with their own ID) without being parsed or answered again until the
//! World changes; one that waits for the upstream continues as a tokio task,
//! which sends its answer itself.
//!
//! The thread is started from the manager (a tokio worker in vpcd's own
//! network namespace), so a forwarded question leaves from that namespace,
//! as it does on the TCP path; the socket itself stays in the router
//! namespace it was bound in.

use crate::cache::AnswerCache;
use crate::server::{Decision, VpcResolver};
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{
    Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a receive waits before the thread looks whether it was stopped
/// (stopping also shuts the socket down, which ends the wait at once).
const STOP_CHECK: Duration = Duration::from_secs(1);

/// The largest datagram read (a query is far smaller; EDNS allows 4096).
const MAX_DATAGRAM: usize = 4096;

/// Under a stream of queries (consecutive datagrams closer together than
/// this), the loop stops sleeping between them: it polls the socket
/// without blocking for up to [`SPIN`] before it blocks again, so the next
/// query does not pay a cross-CPU wake-up (expensive in a VM). A lone
/// query, or a rate under about 50,000 a second, never spins.
const SPIN_TRIGGER: Duration = Duration::from_micros(20);
/// How long the loop polls an empty socket before it sleeps again.
const SPIN: Duration = Duration::from_micros(50);

/// A running UDP loop; dropping it stops the thread and closes the socket.
pub(crate) struct UdpLoop {
    stop: Arc<AtomicBool>,
    socket: Arc<UdpSocket>,
}

impl Drop for UdpLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Ends a receive under way (Linux wakes a blocked recvfrom with 0).
        let _ = socket2::SockRef::from(&*self.socket).shutdown(std::net::Shutdown::Read);
    }
}

/// Starts the thread that serves `socket` with `handler`; queries that wait
/// for the upstream run on `rt`.
pub(crate) fn start(
    socket: UdpSocket,
    handler: Arc<VpcResolver>,
    rt: tokio::runtime::Handle,
) -> std::io::Result<UdpLoop> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(STOP_CHECK))?;
    let socket = Arc::new(socket);
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (socket.clone(), stop.clone());
    std::thread::Builder::new()
        .name("dns-udp".into())
        .stack_size(512 * 1024)
        .spawn(move || run(&s, &st, &handler, &rt))?;
    Ok(UdpLoop { stop, socket })
}

fn run(
    socket: &Arc<UdpSocket>,
    stop: &AtomicBool,
    handler: &Arc<VpcResolver>,
    rt: &tokio::runtime::Handle,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    let mut cache = AnswerCache::default();
    // Whether the socket is non-blocking (polled, see SPIN_TRIGGER), and
    // when the last datagram arrived.
    let mut polling = false;
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let (n, src) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if polling && e.kind() == std::io::ErrorKind::WouldBlock => {
                if last.elapsed() < SPIN {
                    std::hint::spin_loop();
                } else if socket.set_nonblocking(false).is_ok() {
                    polling = false;
                }
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                // Idle: answers of a World that is no longer the latest
                // are of no use, give their memory back.
                cache.keep_only(handler.snapshot().generation);
                continue;
            }
            Err(e) => {
                if !stop.load(Ordering::SeqCst) {
                    tracing::warn!("DNS UDP socket: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let now = std::time::Instant::now();
        if !polling
            && now.duration_since(last) < SPIN_TRIGGER
            && socket.set_nonblocking(true).is_ok()
        {
            polling = true;
        }
        last = now;
        match answer(handler, &mut cache, &buf[..n], src, &mut out) {
            Handled::Reply => {
                if let Err(e) = socket.send_to(&out, src) {
                    tracing::debug!(%src, "cannot send a DNS response: {e}");
                }
            }
            Handled::Waits(pending) => {
                let socket = socket.clone();
                rt.spawn(async move {
                    if let Some(bytes) = pending.finish().await {
                        if let Err(e) = socket.send_to(&bytes, src) {
                            tracing::debug!(%src, "cannot send a DNS response: {e}");
                        }
                    }
                });
            }
            Handled::Nothing => {}
        }
    }
}

/// What became of one datagram.
pub(crate) enum Handled {
    /// The answer is in the output buffer, to send now.
    Reply,
    /// The question goes to the upstream: finish it on the runtime.
    Waits(Pending),
    /// No answer (not a query, too short to have a header, or not admitted).
    Nothing,
}

/// A forwarded question, and the answer it will send.
pub(crate) struct Pending {
    run: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    answer: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Pending {
    /// Runs the handler to its end; the answer, if it gave one.
    pub(crate) async fn finish(self) -> Option<Vec<u8>> {
        self.run.await;
        take(&self.answer)
    }
}

fn take(slot: &Mutex<Option<Vec<u8>>>) -> Option<Vec<u8>> {
    match slot.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    }
}

/// Answers one datagram from `src` as hickory's server would, without its
/// task hand-offs, writing the answer into `out`: a message too short for a
/// header or that is itself a response gets nothing; one that does not parse
/// gets FORMERR if it came from inside the VPC (nothing otherwise); a query
/// gets the handler's decision ([`VpcResolver::decide`]). An answer made
/// from the World alone is remembered in `cache` for the next request with
/// the same bytes (`crate::cache`), which gets it after the same admission
/// check.
pub(crate) fn answer(
    handler: &Arc<VpcResolver>,
    cache: &mut AnswerCache,
    bytes: &[u8],
    src: SocketAddr,
    out: &mut Vec<u8>,
) -> Handled {
    if src.port() == 0 || src.ip().is_unspecified() {
        return Handled::Nothing;
    }
    let snap = handler.snapshot();
    if let Some(remembered) = cache.get(snap.generation, bytes) {
        if !handler.admits_in(&snap, src.ip()) {
            handler.counted("dropped");
            return Handled::Nothing;
        }
        AnswerCache::reply_into(remembered, bytes, out);
        handler.counted(remembered.outcome);
        return Handled::Reply;
    }
    let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
        return Handled::Nothing;
    };
    if header.metadata.message_type == MessageType::Response {
        return Handled::Nothing;
    }
    let request = match Request::from_bytes(bytes.to_vec(), src, Protocol::Udp) {
        Ok(r) => r,
        Err(e) => {
            if !handler.admits(src.ip()) {
                return Handled::Nothing;
            }
            tracing::debug!(%src, "malformed DNS query: {e}");
            let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                return Handled::Nothing;
            };
            let response = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            if let Encoded::ServFail(_) = encode(response, out) {
                handler.counted("SERVFAIL");
            } else {
                handler.counted("FORMERR");
            }
            return Handled::Reply;
        }
    };
    match handler.decide(&snap, &request) {
        Decision::Dropped => {
            tracing::debug!(%src, "query not admitted");
            handler.counted("dropped");
            Handled::Nothing
        }
        Decision::Local(local) => {
            match encode(local.message(&request), out) {
                Encoded::Made(_) => {
                    cache.insert(snap.generation, bytes, out, local.outcome);
                    handler.counted(local.outcome);
                }
                // Not the answer: never remembered, and told as what was sent.
                Encoded::ServFail(_) => handler.counted("SERVFAIL"),
            }
            Handled::Reply
        }
        Decision::Forward(forwarded) => {
            let slot: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
            let capture = Capture(slot.clone());
            let h = handler.clone();
            Handled::Waits(Pending {
                run: Box::pin(async move {
                    h.forward_and_send(&request, forwarded, capture).await;
                }),
                answer: slot,
            })
        }
    }
}

/// Keeps the encoded answer for the loop to send.
#[derive(Clone)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let info = encode(response, &mut bytes).info();
        match self.0.lock() {
            Ok(mut g) => *g = Some(bytes),
            Err(p) => *p.into_inner() = Some(bytes),
        }
        Ok(info)
    }
}

/// What [`encode`] put in its buffer.
#[derive(Debug)]
enum Encoded {
    /// The answer.
    Made(ResponseInfo),
    /// A bare SERVFAIL header in its place: the answer could not be encoded.
    ServFail(ResponseInfo),
}

impl Encoded {
    fn info(self) -> ResponseInfo {
        match self {
            Encoded::Made(info) | Encoded::ServFail(info) => info,
        }
    }
}

/// Encodes the answer into `bytes` (emptied first), limited to what a UDP
/// answer may be (the EDNS payload size, else 512; truncated with TC set
/// past it), as hickory's UDP server encodes it; a bare SERVFAIL if it
/// cannot be encoded (the question alone past the limit), which it says.
fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    bytes: &mut Vec<u8>,
) -> Encoded {
    let id = response.metadata().id;
    bytes.clear();
    let mut encoder = BinEncoder::new(bytes);
    encoder.set_max_size(response.edns().map_or(512, |e| e.max_payload()));
    match response.destructive_emit(&mut encoder) {
        Ok(info) => Encoded::Made(info),
        Err(e) => {
            tracing::warn!("cannot encode a DNS response: {e}");
            bytes.clear();
            let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
            metadata.response_code = ResponseCode::ServFail;
            let header = Header {
                metadata,
                counts: HeaderCounts::default(),
            };
            let mut encoder = BinEncoder::new(bytes);
            let _ = header.emit(&mut encoder);
            Encoded::ServFail(ResponseInfo::from(header))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Env;
    use hickory_server::proto::op::{Message, Query};
    use hickory_server::proto::rr::{Name, RData, RecordType};
    use std::collections::BTreeMap;
    use vpc_model::ops::vpc as vpc_ops;

    /// A VPC 10.0.0.0/16 with DNS hostnames on and instances at 10.0.1.10
    /// and .11; its resolver, forwarding outside names to `upstream`, and
    /// the outcomes its hook was told.
    fn resolver(upstream: Option<SocketAddr>) -> (Sock, Arc<Mutex<Vec<&'static str>>>) {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let id = v.meta.id.clone();
        e.run(&v.meta.owner.clone(), &v.meta.region.clone(), |w, c| {
            vpc_ops::modify_attribute(w, c, &id, None, Some(true))
        });
        let s = e.subnet(&v, "10.0.1.0/24");
        e.instance(&s, "10.0.1.10");
        e.instance(&s, "10.0.1.11");
        let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let hook_seen = seen.clone();
        let hook: crate::QueryHook = Arc::new(move |o| hook_seen.lock().unwrap().push(o));
        let r = VpcResolver::for_world(&v.meta.id, e.w, upstream, Some(hook));
        (Sock::new(r), seen)
    }

    /// What one socket's thread keeps: the handler, its answers and its
    /// output buffer.
    struct Sock {
        handler: Arc<VpcResolver>,
        cache: AnswerCache,
        out: Vec<u8>,
    }

    /// What became of a datagram, with the answer's bytes.
    enum Got {
        Reply(Vec<u8>),
        Waits(Pending),
        Nothing,
    }

    impl Sock {
        fn new(r: VpcResolver) -> Sock {
            Sock {
                handler: Arc::new(r),
                cache: AnswerCache::default(),
                out: Vec::new(),
            }
        }

        fn answer(&mut self, bytes: Vec<u8>, src: SocketAddr) -> Got {
            match answer(&self.handler, &mut self.cache, &bytes, src, &mut self.out) {
                Handled::Reply => Got::Reply(self.out.clone()),
                Handled::Waits(p) => Got::Waits(p),
                Handled::Nothing => Got::Nothing,
            }
        }
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    fn inside() -> SocketAddr {
        "10.0.1.10:40000".parse().unwrap()
    }

    fn reply(h: Got) -> Message {
        match h {
            Got::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            Got::Waits(_) => panic!("the answer waits"),
            Got::Nothing => panic!("no answer"),
        }
    }

    fn addresses(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn many_queries_each_get_their_own_answer() {
        let (mut r, seen) = resolver(None);
        let mut answered = BTreeMap::new();
        for id in 0..500u16 {
            let host = 10 + id % 2;
            let m = reply(r.answer(
                query(id, &format!("ip-10-0-1-{host}.ec2.internal.")),
                inside(),
            ));
            assert_eq!(m.metadata.id, id);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative);
            answered.insert(id, addresses(&m));
        }
        for (id, ips) in answered {
            assert_eq!(ips, vec![format!("10.0.1.{}", 10 + id % 2)], "query {id}");
        }
        let m = reply(r.answer(query(7, "ip-10-0-1-99.ec2.internal."), inside()));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // No upstream: a name outside vpcd's zones is NXDOMAIN at once.
        let m = reply(r.answer(query(8, "example.com."), inside()));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.iter().filter(|o| **o == "NOERROR").count(), 500);
        assert_eq!(seen.iter().filter(|o| **o == "NXDOMAIN").count(), 2);
    }

    #[test]
    fn malformed_datagrams_get_formerr_or_nothing_and_the_next_query_its_answer() {
        let (mut r, seen) = resolver(None);
        // A header saying one question, then a question cut short: FORMERR with its id.
        let mut cut = query(0x4242, "ip-10-0-1-10.ec2.internal.");
        cut.truncate(20);
        let m = reply(r.answer(cut.clone(), inside()));
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // Shorter than a header, or a response: no answer.
        assert!(matches!(r.answer(vec![1, 2, 3], inside()), Got::Nothing));
        let mut response = query(9, "ip-10-0-1-10.ec2.internal.");
        response[2] |= 0x80;
        assert!(matches!(r.answer(response, inside()), Got::Nothing));
        // The cut-short one from outside the VPC: nothing, not even FORMERR.
        let outside: SocketAddr = "10.1.0.5:40000".parse().unwrap();
        assert!(matches!(r.answer(cut, outside), Got::Nothing));
        // And the next query is answered as ever.
        let m = reply(r.answer(query(10, "ip-10-0-1-11.ec2.internal."), inside()));
        assert_eq!(addresses(&m), vec!["10.0.1.11".to_string()]);
        assert_eq!(*seen.lock().unwrap(), vec!["FORMERR", "dropped", "NOERROR"]);
    }

    #[test]
    fn queries_from_outside_the_vpc_or_an_unusable_source_get_nothing() {
        let (mut r, seen) = resolver(None);
        for src in ["10.1.0.5:40000", "192.0.2.1:53", "[fd00::1]:40000"] {
            let q = query(1, "ip-10-0-1-10.ec2.internal.");
            assert!(
                matches!(r.answer(q, src.parse().unwrap()), Got::Nothing),
                "{src}"
            );
        }
        // Port 0 or an unspecified address cannot be answered.
        for src in ["10.0.1.10:0", "0.0.0.0:40000"] {
            let q = query(1, "ip-10-0-1-10.ec2.internal.");
            assert!(
                matches!(r.answer(q, src.parse().unwrap()), Got::Nothing),
                "{src}"
            );
        }
        assert_eq!(*seen.lock().unwrap(), vec!["dropped"; 3]);
    }

    #[test]
    fn a_forwarded_question_finishes_on_the_runtime_with_the_upstreams_answer() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // The upstream: answers every question with 198.51.100.7, 200 ms
        // later (so the first poll cannot have the answer yet).
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = upstream.local_addr().unwrap();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let upstream_asked = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = upstream.recv_from(&mut buf) {
                upstream_asked.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                let q = Message::from_vec(&buf[..n]).unwrap();
                let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
                m.add_query(q.queries[0].clone());
                m.add_answer(Record::from_rdata(
                    q.queries[0].name().clone(),
                    60,
                    RData::A("198.51.100.7".parse().unwrap()),
                ));
                let _ = upstream.send_to(&m.to_vec().unwrap(), from);
            }
        });
        let (mut r, _) = resolver(Some(at));
        let _guard = rt.enter();
        let pending = match r.answer(query(77, "www.example.com."), inside()) {
            Got::Waits(p) => p,
            _ => panic!("a forwarded question finished without waiting for the upstream"),
        };
        // Zone names are still answered at once meanwhile.
        let m = reply(r.answer(query(78, "ip-10-0-1-10.ec2.internal."), inside()));
        assert_eq!(addresses(&m), vec!["10.0.1.10".to_string()]);
        let bytes = rt.block_on(pending.finish()).expect("an answer");
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, 77);
        assert!(!m.metadata.authoritative);
        assert_eq!(addresses(&m), vec!["198.51.100.7".to_string()]);
        // The same question again is forwarded again: upstream answers are
        // never remembered (only the zone name asked above is).
        assert_eq!(r.cache.len(), 1);
        let pending = match r.answer(query(79, "www.example.com."), inside()) {
            Got::Waits(p) => p,
            _ => panic!("the second ask did not go to the upstream"),
        };
        let bytes = rt.block_on(pending.finish()).expect("an answer");
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, 79);
        assert_eq!(addresses(&m), vec!["198.51.100.7".to_string()]);
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "the upstream was asked twice"
        );
        assert_eq!(r.cache.len(), 1, "the forwarded answer was remembered");
        assert_eq!(r.cache.hits(), 0);
    }

    #[test]
    fn an_answer_that_cannot_be_encoded_is_servfail_and_never_remembered() {
        let (mut r, seen) = resolver(None);
        // Nine questions of ~60 bytes: FORMERR (more than one question), but
        // the echoed questions alone are past the 512 bytes of a UDP answer
        // without EDNS, so it cannot be encoded.
        let mut m = Message::new(0x5151, MessageType::Query, OpCode::Query);
        for i in 0..9 {
            let name = format!("q{i}-{}.ec2.internal.", "x".repeat(50));
            m.add_query(Query::query(
                Name::from_ascii(&name).unwrap(),
                RecordType::A,
            ));
        }
        let big = m.to_vec().unwrap();
        assert!(big.len() > 512);
        for id in [0x5151u16, 0x5252] {
            let mut q = big.clone();
            q[..2].copy_from_slice(&id.to_be_bytes());
            let got = reply(r.answer(q, inside()));
            assert_eq!(got.metadata.id, id);
            assert_eq!(got.metadata.response_code, ResponseCode::ServFail);
            assert!(got.queries.is_empty());
        }
        assert_eq!(r.cache.len(), 0, "the fallback was remembered");
        assert_eq!(r.cache.hits(), 0);
        // Told as what was sent.
        assert_eq!(*seen.lock().unwrap(), vec!["SERVFAIL", "SERVFAIL"]);
        // A request that fits is answered and remembered as ever.
        reply(r.answer(query(1, "ip-10-0-1-10.ec2.internal."), inside()));
        assert_eq!(r.cache.len(), 1);
    }

    /// A UDP loop serving a resolver (whose query hook records outcomes in
    /// `seen`) on a loopback port.
    #[allow(clippy::type_complexity)]
    fn running_loop() -> (
        tokio::runtime::Runtime,
        Sock,
        Arc<Mutex<Vec<&'static str>>>,
        SocketAddr,
        UdpLoop,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (r, seen) = resolver(None);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = sock.local_addr().unwrap();
        let running = start(sock, r.handler.clone(), rt.handle().clone()).unwrap();
        (rt, r, seen, at, running)
    }

    /// Drops the loop: its thread ends and closes the socket, so the port
    /// can be bound again by a socket without SO_REUSEADDR.
    fn stop_and_see_the_port_freed(running: UdpLoop, at: SocketAddr) {
        drop(running);
        let since = std::time::Instant::now();
        while UdpSocket::bind(at).is_err() {
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "the loop's socket is still open"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_running_loop_ignores_outsiders_and_dropping_it_frees_its_port() {
        let (_rt, _r, seen, at, running) = running_loop();
        // 127.0.0.1 is not inside the VPC: the loop reads the query and
        // sends nothing.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        client
            .send_to(&query(5, "ip-10-0-1-10.ec2.internal."), at)
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(
            client.recv_from(&mut buf).is_err(),
            "an outsider got an answer"
        );
        assert_eq!(*seen.lock().unwrap(), vec!["dropped"]);
        // While it runs, the port is taken.
        assert!(UdpSocket::bind(at).is_err());
        stop_and_see_the_port_freed(running, at);
    }

    /// CPU ticks the loop's thread (named `dns-udp`) used so far.
    fn loop_thread_ticks() -> u64 {
        let tasks = std::fs::read_dir("/proc/self/task").unwrap();
        let mut found = Vec::new();
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() == "dns-udp" {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
                let fields: Vec<&str> = stat
                    .rsplit(')')
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .collect();
                found.push(fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap());
            }
        }
        assert_eq!(found.len(), 1, "one loop thread in this test process");
        found[0]
    }

    #[test]
    fn a_burst_makes_the_loop_poll_and_it_sleeps_again_once_the_burst_ends() {
        let (_rt, _r, seen, at, running) = running_loop();
        // Back-to-back datagrams (from an outsider: read, never answered)
        // switch the loop to polling.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let q = query(5, "ip-10-0-1-10.ec2.internal.");
        for _ in 0..3000 {
            client.send_to(&q, at).unwrap();
        }
        // (Some overflow the socket's buffer; the rest are read.)
        let mut read = 0;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = seen.lock().unwrap().len();
            if now == read {
                break;
            }
            read = now;
        }
        assert!(read > 100, "only {read} datagrams of the burst were read");
        // Once it ends, the loop blocks again: it burns no CPU while idle
        // (a polling thread would use all of the 500 ms below).
        std::thread::sleep(Duration::from_millis(50));
        let before = loop_thread_ticks();
        std::thread::sleep(Duration::from_millis(500));
        let used = loop_thread_ticks() - before;
        assert!(used <= 5, "the idle loop used {used} ticks in 500 ms");
        // And it still answers, and stops when dropped.
        client.send_to(&q, at).unwrap();
        let since = std::time::Instant::now();
        while seen.lock().unwrap().len() < read + 1 {
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "the next datagram was not read"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        stop_and_see_the_port_freed(running, at);
    }

    /// A query with every knob the cache must tell apart.
    fn query_with(id: u16, name: &str, rtype: RecordType, rd: bool, edns: Option<bool>) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = rd;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        if let Some(dnssec_ok) = edns {
            let mut e = hickory_server::proto::op::Edns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn a_remembered_answer_is_byte_for_byte_the_answer_made_afresh() {
        let (mut cached, seen) = resolver(None);
        let mut requests = Vec::new();
        for name in [
            "ip-10-0-1-10.ec2.internal.",
            "IP-10-0-1-10.EC2.Internal.",
            "ip-10-0-1-99.ec2.internal.",
            "10.1.0.10.in-addr.arpa.",
            "example.com.",
        ] {
            for rtype in [
                RecordType::A,
                RecordType::AAAA,
                RecordType::PTR,
                RecordType::ANY,
            ] {
                for rd in [true, false] {
                    for edns in [None, Some(false), Some(true)] {
                        requests.push(query_with(1, name, rtype, rd, edns));
                    }
                }
            }
        }
        // Two questions in one message (FORMERR), and an opcode other than QUERY (NOTIMP).
        let mut two = Message::new(1, MessageType::Query, OpCode::Query);
        for n in ["ip-10-0-1-10.ec2.internal.", "ip-10-0-1-11.ec2.internal."] {
            two.add_query(Query::query(Name::from_ascii(n).unwrap(), RecordType::A));
        }
        requests.push(two.to_vec().unwrap());
        let mut status = query(1, "ip-10-0-1-10.ec2.internal.");
        status[2] = (status[2] & 0x87) | (2 << 3);
        requests.push(status);
        for (i, first) in requests.iter().enumerate() {
            // The first ask makes the answer; the second, with another ID, gets the remembered one.
            let made = match cached.answer(first.clone(), inside()) {
                Got::Reply(b) => b,
                _ => panic!("request {i}: no answer"),
            };
            let mut again = first.clone();
            again[..2].copy_from_slice(&(0x8000 + i as u16).to_be_bytes());
            let hits_before = cached.cache.hits();
            let remembered = match cached.answer(again.clone(), inside()) {
                Got::Reply(b) => b,
                _ => panic!("request {i}: no answer the second time"),
            };
            assert_eq!(
                cached.cache.hits(),
                hits_before + 1,
                "request {i}: not a hit"
            );
            // A resolver that never saw the request answers it the same, byte for byte.
            let (mut fresh, _) = resolver(None);
            let afresh = match fresh.answer(again.clone(), inside()) {
                Got::Reply(b) => b,
                _ => panic!("request {i}: no fresh answer"),
            };
            assert_eq!(remembered, afresh, "request {i}");
            assert_eq!(remembered[2..], made[2..], "request {i}");
            assert_eq!(remembered[..2], again[..2], "request {i}: the asker's ID");
        }
        assert_eq!(
            cached.cache.len(),
            requests.len(),
            "each request its own answer"
        );
        // The question is echoed as sent, whatever the case.
        let upper = query_with(3, "IP-10-0-1-10.EC2.Internal.", RecordType::A, true, None);
        for _ in 0..2 {
            let hits_before = cached.cache.hits();
            let m = reply(cached.answer(upper.clone(), inside()));
            assert_eq!(
                cached.cache.hits(),
                hits_before + 1,
                "remembered from above"
            );
            assert_eq!(
                m.queries[0].name().to_string(),
                "IP-10-0-1-10.EC2.Internal."
            );
            assert_eq!(addresses(&m), vec!["10.0.1.10".to_string()]);
        }
        // Every ask told the hook, remembered or not.
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), requests.len() * 2 + 2);
        assert_eq!(seen.iter().filter(|o| **o == "NOTIMP").count(), 2);
        assert_eq!(seen.iter().filter(|o| **o == "FORMERR").count(), 2);
    }

    #[test]
    fn a_remembered_answer_still_goes_only_to_askers_inside_the_vpc() {
        let (mut r, seen) = resolver(None);
        let q = query(1, "ip-10-0-1-10.ec2.internal.");
        reply(r.answer(q.clone(), inside()));
        reply(r.answer(q.clone(), inside()));
        assert_eq!((r.cache.len(), r.cache.hits()), (1, 1));
        for src in ["10.1.0.5:40000", "[fd00::1]:40000"] {
            let hits_before = r.cache.hits();
            assert!(
                matches!(r.answer(q.clone(), src.parse().unwrap()), Got::Nothing),
                "{src}"
            );
            assert_eq!(
                r.cache.hits(),
                hits_before + 1,
                "{src}: found, then refused"
            );
        }
        assert!(matches!(
            r.answer(q.clone(), "10.0.1.10:0".parse().unwrap()),
            Got::Nothing
        ));
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["NOERROR", "NOERROR", "dropped", "dropped"]
        );
    }

    /// Two VPCs in us-east-1: a (10.0.0.0/16, an instance at 10.0.1.10, a
    /// private hosted zone `corp.example` with `db` → 10.0.1.5) and b
    /// (10.1.0.0/16, an instance at 10.1.1.10 with a public IP), peered, b
    /// allowing DNS resolution from a. Returns the Env, a, b, the peering,
    /// b's public name and public IP, and the zone's ID.
    struct Peered {
        e: Env,
        a: vpc_model::Vpc,
        b: vpc_model::Vpc,
        pcx: String,
        public_name: String,
        public_ip: String,
        zone: String,
    }

    fn peered() -> Peered {
        use vpc_model::ops::{eni, peering, route53 as r53};
        let mut e = Env::new();
        let a = e.vpc("10.0.0.0/16");
        let b = e.vpc("10.1.0.0/16");
        for v in [&a, &b] {
            let id = v.meta.id.clone();
            e.run(&v.meta.owner.clone(), &v.meta.region.clone(), |w, c| {
                vpc_ops::modify_attribute(w, c, &id, None, Some(true))
            });
        }
        let sa = e.subnet(&a, "10.0.1.0/24");
        let sb = e.subnet(&b, "10.1.1.0/24");
        e.launch(&sa, "10.0.1.10", false);
        e.igw(&b);
        let ib = e.launch(&sb, "10.1.1.10", true);
        let pcx = e.peer(&a, &b, true);
        let (owner, region) = (b.meta.owner.clone(), b.meta.region.clone());
        let p = e.w.get::<vpc_model::Peering>(&pcx).unwrap().clone();
        let allow = Some(peering::OptionChange {
            allow_dns: Some(true),
            classic_link: false,
        });
        let (acc, req) = if p.accepter.vpc_id == b.meta.id {
            (allow, None)
        } else {
            (None, allow)
        };
        e.run(&owner, &region, |w, c| {
            peering::modify_options(w, c, &pcx, acc, req)
        });
        let n = e.w.get::<vpc_model::NetworkInterface>(&ib.eni).unwrap();
        let public = eni::public_ip_of(&e.w, n).expect("a public IP");
        let public_name = format!("{}.", eni::public_dns_name(&region, public));
        let (aid, aregion, aowner) = (
            a.meta.id.clone(),
            a.meta.region.clone(),
            a.meta.owner.clone(),
        );
        let zone = e.run(&aowner, &aregion.clone(), |w, c| {
            let (z, _) = r53::create_zone(
                w,
                c,
                r53::CreateZone {
                    name: "corp.example".into(),
                    caller_reference: "cache-test".into(),
                    comment: None,
                    private_zone: None,
                    vpc: Some(vpc_model::ZoneVpc {
                        region: aregion,
                        vpc_id: aid,
                    }),
                },
            )?;
            r53::change_records(w, c, &z.meta.id, vec![db_record("CREATE")], None)?;
            Ok(z.meta.id)
        });
        Peered {
            a: e.w.get::<vpc_model::Vpc>(&a.meta.id).unwrap().clone(),
            b: e.w.get::<vpc_model::Vpc>(&b.meta.id).unwrap().clone(),
            e,
            pcx,
            public_name,
            public_ip: public.to_string(),
            zone,
        }
    }

    fn db_record(action: &str) -> vpc_model::ops::route53::RecordChange {
        vpc_model::ops::route53::RecordChange {
            action: action.into(),
            record: vpc_model::RecordSet {
                name: "db.corp.example".into(),
                rtype: "A".into(),
                ttl: Some(60),
                values: vec!["10.0.1.5".into()],
                alias: None,
            },
        }
    }

    /// The World a resolver answers from, replaced as the API would publish a new one.
    #[derive(Clone, Default)]
    struct Published(Arc<Mutex<Arc<vpc_model::World>>>);

    impl Published {
        fn publish(&self, w: &vpc_model::World) {
            *self.0.lock().unwrap() = Arc::new(w.clone());
        }

        fn resolver_of(&self, vpc: &vpc_model::Vpc) -> Sock {
            let source = self.0.clone();
            Sock::new(VpcResolver::for_source(
                &vpc.meta.id,
                Arc::new(move || source.lock().unwrap().clone()),
                None,
                None,
            ))
        }
    }

    /// Asks twice (the second from the cache when nothing changed) and
    /// gives the answer's code and addresses; both asks must agree.
    fn ask_twice(r: &mut Sock, name: &str) -> (ResponseCode, Vec<String>) {
        let mut got = Vec::new();
        let mut hits = Vec::new();
        for id in [1, 2] {
            let m = reply(r.answer(query(id, name), "10.0.1.10:40000".parse().unwrap()));
            got.push((m.metadata.response_code, addresses(&m)));
            hits.push(r.cache.hits());
        }
        assert_eq!(got[0], got[1], "{name}: the remembered answer differs");
        assert_eq!(hits[1], hits[0] + 1, "{name}: the second ask was not a hit");
        got.remove(0)
    }

    #[test]
    fn every_change_to_the_world_takes_effect_at_the_next_query() {
        use vpc_model::ops::{peering, route53 as r53};
        let mut p = peered();
        let published = Published::default();
        published.publish(&p.e.w);
        let mut r = published.resolver_of(&p.a);
        let own = "ip-10-0-1-10.ec2.internal.";
        let peer = "ip-10-1-1-10.ec2.internal.";
        let noerror = |ip: &str| (ResponseCode::NoError, vec![ip.to_string()]);
        let nx = (ResponseCode::NXDomain, vec![]);
        assert_eq!(ask_twice(&mut r, own), noerror("10.0.1.10"));
        assert_eq!(ask_twice(&mut r, peer), noerror("10.1.1.10"));
        assert_eq!(ask_twice(&mut r, &p.public_name), noerror("10.1.1.10"));
        assert_eq!(ask_twice(&mut r, "db.corp.example."), noerror("10.0.1.5"));

        // The peering's DNS option off on b's side: b's public name is its public IP at once.
        let pc = p.e.w.get::<vpc_model::Peering>(&p.pcx).unwrap().clone();
        let off = Some(peering::OptionChange {
            allow_dns: Some(false),
            classic_link: false,
        });
        let (acc, req) = if pc.accepter.vpc_id == p.b.meta.id {
            (off, None)
        } else {
            (None, off)
        };
        let (owner, region, pcx) = (
            p.b.meta.owner.clone(),
            p.b.meta.region.clone(),
            p.pcx.clone(),
        );
        p.e.run(&owner, &region, |w, c| {
            peering::modify_options(w, c, &pcx, acc, req)
        });
        published.publish(&p.e.w);
        assert_eq!(ask_twice(&mut r, &p.public_name), noerror(&p.public_ip));

        // The record set deleted: NXDOMAIN at once.
        let (owner, region, zone) = (
            p.a.meta.owner.clone(),
            p.a.meta.region.clone(),
            p.zone.clone(),
        );
        p.e.run(&owner, &region, |w, c| {
            r53::change_records(w, c, &zone, vec![db_record("DELETE")], None)
        });
        published.publish(&p.e.w);
        assert_eq!(ask_twice(&mut r, "db.corp.example."), nx);

        // The peering deleted: b's private name is gone from a.
        let a = p.a.clone();
        p.e.delete_peering(&pcx, &a);
        published.publish(&p.e.w);
        assert_eq!(ask_twice(&mut r, peer), nx);

        // enableDnsHostnames off in a: a's own name no longer resolves there.
        let id = a.meta.id.clone();
        p.e.run(&owner, &region, |w, c| {
            vpc_ops::modify_attribute(w, c, &id, None, Some(false))
        });
        published.publish(&p.e.w);
        assert_eq!(ask_twice(&mut r, own), nx);

        // enableDnsSupport off: no answer at all, not even the remembered one.
        p.e.run(&owner, &region, |w, c| {
            vpc_ops::modify_attribute(w, c, &id, Some(false), None)
        });
        published.publish(&p.e.w);
        assert!(matches!(
            r.answer(query(9, own), "10.0.1.10:40000".parse().unwrap()),
            Got::Nothing
        ));
    }

    #[test]
    fn an_unchanged_world_republished_still_answers_the_same() {
        let p = peered();
        let published = Published::default();
        published.publish(&p.e.w);
        let mut r = published.resolver_of(&p.a);
        let own = "ip-10-0-1-10.ec2.internal.";
        let before = ask_twice(&mut r, own);
        // A new World with the same content (another API call that changed
        // nothing DNS sees): the cache starts over and answers the same.
        published.publish(&p.e.w);
        assert_eq!(ask_twice(&mut r, own), before);
        assert_eq!(r.cache.len(), 1);
    }

    #[test]
    fn an_idle_socket_forgets_the_answers_of_an_older_world() {
        let p = peered();
        let published = Published::default();
        published.publish(&p.e.w);
        let mut r = published.resolver_of(&p.a);
        ask_twice(&mut r, "ip-10-0-1-10.ec2.internal.");
        assert_eq!(r.cache.len(), 1);
        // What the loop does when a second passes without a datagram.
        r.cache.keep_only(r.handler.snapshot().generation);
        assert_eq!(r.cache.len(), 1, "the World did not change");
        published.publish(&p.e.w);
        r.cache.keep_only(r.handler.snapshot().generation);
        assert_eq!(r.cache.len(), 0, "a new World: the old answers are gone");
    }
}
