//! The UDP path of a resolver socket: a thread of its own that receives a
//! datagram, answers it and sends the answer, with no task hand-off in
//! between.
//!
//! hickory's UDP server hands every datagram to a new tokio task and every
//! answer back to the socket's task through a channel: three wake-ups per
//! query, which cost more than the answer itself (docs/perf.md, "VPC DNS
//! resolver"). Here the socket is blocking and its thread does the whole
//! exchange. The answer still comes from the one request handler
//! ([`VpcResolver`]'s `handle_request`, the same code TCP uses): it is polled
//! once on this thread, and a query it answers from the zone (every one but
//! a name forwarded to `--dns-upstream`) is finished by then; one that waits
//! for the upstream continues as a tokio task, which sends its answer itself.
//!
//! The thread is started from the manager (a tokio worker in vpcd's own
//! network namespace), so a forwarded question leaves from that namespace,
//! as it does on the TCP path; the socket itself stays in the router
//! namespace it was bound in.

use crate::server::VpcResolver;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{
    Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How long a receive waits before the thread looks whether it was stopped
/// (stopping also shuts the socket down, which ends the wait at once).
const STOP_CHECK: Duration = Duration::from_secs(1);

/// The largest datagram read (a query is far smaller; EDNS allows 4096).
const MAX_DATAGRAM: usize = 4096;

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
    // Forwarded questions open tokio sockets and timers on their first poll.
    let _rt = rt.enter();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::SeqCst) {
        let (n, src) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
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
        match answer(handler, buf[..n].to_vec(), src) {
            Handled::Reply(bytes) => {
                if let Err(e) = socket.send_to(&bytes, src) {
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
    /// The answer, to send now.
    Reply(Vec<u8>),
    /// The handler waits for the upstream: finish it on the runtime.
    Waits(Pending),
    /// No answer (not a query, too short to have a header, or not admitted).
    Nothing,
}

/// A query whose handler is still running, and where its answer will be.
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
/// task hand-offs: a message too short for a header or that is itself a
/// response gets nothing; one that does not parse gets FORMERR if it came
/// from inside the VPC (nothing otherwise); a query goes to the handler.
pub(crate) fn answer(handler: &Arc<VpcResolver>, bytes: Vec<u8>, src: SocketAddr) -> Handled {
    if src.port() == 0 || src.ip().is_unspecified() {
        return Handled::Nothing;
    }
    let Ok(header) = Header::read(&mut BinDecoder::new(&bytes)) else {
        return Handled::Nothing;
    };
    if header.metadata.message_type == MessageType::Response {
        return Handled::Nothing;
    }
    let request = match Request::from_bytes(bytes, src, Protocol::Udp) {
        Ok(r) => r,
        Err(e) => {
            if !handler.admits(src.ip()) {
                return Handled::Nothing;
            }
            tracing::debug!(%src, "malformed DNS query: {e}");
            handler.counted("FORMERR");
            let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                return Handled::Nothing;
            };
            let response = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            return Handled::Reply(encode(response).1);
        }
    };
    let slot: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let capture = Capture(slot.clone());
    let h = handler.clone();
    let mut run: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
        h.handle_request::<_, TokioTime>(&request, capture).await;
    });
    match run.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(()) => take(&slot).map_or(Handled::Nothing, Handled::Reply),
        Poll::Pending => Handled::Waits(Pending { run, answer: slot }),
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
        let (info, bytes) = encode(response);
        match self.0.lock() {
            Ok(mut g) => *g = Some(bytes),
            Err(p) => *p.into_inner() = Some(bytes),
        }
        Ok(info)
    }
}

/// The answer's bytes, limited to what a UDP answer may be (the EDNS payload
/// size, else 512; truncated with TC set past it), as hickory's UDP server
/// encodes them; SERVFAIL if it cannot be encoded.
fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> (ResponseInfo, Vec<u8>) {
    let id = response.metadata().id;
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(response.edns().map_or(512, |e| e.max_payload()));
    match response.destructive_emit(&mut encoder) {
        Ok(info) => (info, bytes),
        Err(e) => {
            tracing::warn!("cannot encode a DNS response: {e}");
            bytes.clear();
            let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
            metadata.response_code = ResponseCode::ServFail;
            let header = Header {
                metadata,
                counts: HeaderCounts::default(),
            };
            let mut encoder = BinEncoder::new(&mut bytes);
            let _ = header.emit(&mut encoder);
            (ResponseInfo::from(header), bytes)
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
    fn resolver(upstream: Option<SocketAddr>) -> (Arc<VpcResolver>, Arc<Mutex<Vec<&'static str>>>) {
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
        (Arc::new(r), seen)
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

    fn reply(h: Handled) -> Message {
        match h {
            Handled::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            Handled::Waits(_) => panic!("the answer waits"),
            Handled::Nothing => panic!("no answer"),
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
        let (r, seen) = resolver(None);
        let mut answered = BTreeMap::new();
        for id in 0..500u16 {
            let host = 10 + id % 2;
            let m = reply(answer(
                &r,
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
        let m = reply(answer(&r, query(7, "ip-10-0-1-99.ec2.internal."), inside()));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // No upstream: a name outside vpcd's zones is NXDOMAIN at once.
        let m = reply(answer(&r, query(8, "example.com."), inside()));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.iter().filter(|o| **o == "NOERROR").count(), 500);
        assert_eq!(seen.iter().filter(|o| **o == "NXDOMAIN").count(), 2);
    }

    #[test]
    fn malformed_datagrams_get_formerr_or_nothing_and_the_next_query_its_answer() {
        let (r, seen) = resolver(None);
        // A header saying one question, then a question cut short: FORMERR with its id.
        let mut cut = query(0x4242, "ip-10-0-1-10.ec2.internal.");
        cut.truncate(20);
        let m = reply(answer(&r, cut.clone(), inside()));
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // Shorter than a header, or a response: no answer.
        assert!(matches!(
            answer(&r, vec![1, 2, 3], inside()),
            Handled::Nothing
        ));
        let mut response = query(9, "ip-10-0-1-10.ec2.internal.");
        response[2] |= 0x80;
        assert!(matches!(answer(&r, response, inside()), Handled::Nothing));
        // The cut-short one from outside the VPC: nothing, not even FORMERR.
        let outside: SocketAddr = "10.1.0.5:40000".parse().unwrap();
        assert!(matches!(answer(&r, cut, outside), Handled::Nothing));
        // And the next query is answered as ever.
        let m = reply(answer(
            &r,
            query(10, "ip-10-0-1-11.ec2.internal."),
            inside(),
        ));
        assert_eq!(addresses(&m), vec!["10.0.1.11".to_string()]);
        assert_eq!(*seen.lock().unwrap(), vec!["FORMERR", "dropped", "NOERROR"]);
    }

    #[test]
    fn queries_from_outside_the_vpc_or_an_unusable_source_get_nothing() {
        let (r, seen) = resolver(None);
        for src in ["10.1.0.5:40000", "192.0.2.1:53", "[fd00::1]:40000"] {
            let q = query(1, "ip-10-0-1-10.ec2.internal.");
            assert!(
                matches!(answer(&r, q, src.parse().unwrap()), Handled::Nothing),
                "{src}"
            );
        }
        // Port 0 or an unspecified address cannot be answered.
        for src in ["10.0.1.10:0", "0.0.0.0:40000"] {
            let q = query(1, "ip-10-0-1-10.ec2.internal.");
            assert!(
                matches!(answer(&r, q, src.parse().unwrap()), Handled::Nothing),
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
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = upstream.recv_from(&mut buf) {
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
        let (r, _) = resolver(Some(at));
        let _guard = rt.enter();
        let pending = match answer(&r, query(77, "www.example.com."), inside()) {
            Handled::Waits(p) => p,
            _ => panic!("a forwarded question finished without waiting for the upstream"),
        };
        // Zone names are still answered at once meanwhile.
        let m = reply(answer(
            &r,
            query(78, "ip-10-0-1-10.ec2.internal."),
            inside(),
        ));
        assert_eq!(addresses(&m), vec!["10.0.1.10".to_string()]);
        let bytes = rt.block_on(pending.finish()).expect("an answer");
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, 77);
        assert!(!m.metadata.authoritative);
        assert_eq!(addresses(&m), vec!["198.51.100.7".to_string()]);
    }

    #[test]
    fn a_running_loop_ignores_outsiders_and_dropping_it_frees_its_port() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (r, seen) = resolver(None);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = sock.local_addr().unwrap();
        let running = start(sock, r, rt.handle().clone()).unwrap();
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
        // Dropped: the thread ends and closes the socket, so the port can be
        // bound again by a socket without SO_REUSEADDR.
        assert!(UdpSocket::bind(at).is_err());
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
}
