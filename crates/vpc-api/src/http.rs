//! The HTTP boundary: the accept loop, per-connection timeouts, the connection
//! cap, and panic safety. Nothing here knows EC2 beyond its error envelope.

use crate::server::{internal_error, router, App};
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::any::Any;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;
use tower_http::catch_panic::CatchPanicLayer;

/// File descriptors kept back from connections for the store, the listener,
/// logs and the data plane.
pub const RESERVED_FDS: u64 = 64;

/// How much one client may hold of the server, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// The largest request body; a longer declared Content-Length is refused
    /// with 413 before any of the body is read. axum's default was 2 MiB.
    pub max_body_bytes: usize,
    /// Bytes of request bodies all connections together may be reading at
    /// once (by declared length); a request waits for room within its body timeout.
    pub max_buffered_body_bytes: usize,
    /// The largest request head (request line and headers); hyper answers 431 past it.
    pub max_header_bytes: usize,
    /// Time a connection gets to deliver a request's headers, counted from
    /// when it opens or its previous answer was sent. So it also bounds how
    /// long a keep-alive connection may sit between requests.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed
    /// (a client that stops reading its answer, or stops sending its body).
    pub idle_timeout: Duration,
    /// Time a request's whole body may take to arrive, from the end of its headers.
    pub body_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 2 * 1024 * 1024,
            max_buffered_body_bytes: 32 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

impl HttpLimits {
    /// Caps `max_connections` so connections cannot use up a process allowed
    /// `open_files` descriptors (keeping [`RESERVED_FDS`] back).
    pub fn fit_open_files(mut self, open_files: u64) -> Self {
        let room = usize::try_from(open_files.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
        self.max_connections = self.max_connections.min(room).max(1);
        self
    }
}

/// The app's router behind the layers every request passes: a panic in a
/// handler becomes an EC2 `InternalError` answer instead of a dropped connection.
pub fn app_service(app: Arc<App>) -> axum::Router {
    app_service_with(app, axum::Router::new())
}

/// [`app_service`] with more routes mounted beside the EC2 API on the same
/// listener (the web console's `/console`); every other path is the API's.
pub fn app_service_with(app: Arc<App>, extra: axum::Router) -> axum::Router {
    panic_safe(extra.merge(router(app)))
}

/// Wraps a router so that a panicking handler answers 500 `InternalError`.
pub fn panic_safe(router: axum::Router) -> axum::Router {
    router.layer(CatchPanicLayer::custom(panic_response))
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "handler panicked");
    internal_error()
}

/// Serves until the future `shutdown` completes, then lets open requests
/// finish (at most for one header plus one body timeout).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_with(app, axum::Router::new(), listener, shutdown).await;
}

/// [`serve`] with `extra` routes mounted beside the API (see [`app_service_with`]).
pub async fn serve_with(
    app: Arc<App>,
    extra: axum::Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = app.config.http.clone();
    spawn_ticker(app.clone());
    let service = TowerToHyperService::new(app_service_with(app, extra));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, slot) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let io = TokioIo::new(idle_bounded(stream, limits.idle_timeout));
        let conn =
            graceful.watch(connection_builder(&limits).serve_connection(io, service.clone()));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log_connection_error(&e);
            }
            drop(slot);
        });
    }
    drop(listener);
    let grace = limits.header_timeout + limits.body_timeout;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open after the shutdown grace period"
        );
    }
}

/// Waits for a free connection slot, then for a connection. While every slot
/// is taken, accepting pauses and clients queue in the kernel's backlog.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return (stream, slot),
            Err(e) => {
                // Out of descriptors or an aborted handshake: wait, do not stop serving.
                tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn connection_builder(limits: &HttpLimits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    b
}

/// A stream whose reads and writes fail once they have waited `idle` for a byte.
fn idle_bounded(stream: TcpStream, idle: Duration) -> Pin<Box<TimeoutStream<TcpStream>>> {
    let mut s = TimeoutStream::new(stream);
    s.set_read_timeout(Some(idle));
    s.set_write_timeout(Some(idle));
    Box::pin(s)
}

fn log_connection_error(e: &hyper::Error) {
    if e.is_timeout() {
        tracing::debug!("connection closed: headers not received within the header timeout");
    } else if io_timed_out(e) {
        tracing::debug!("connection closed: no byte moved within the idle timeout");
    } else {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

fn io_timed_out(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    false
}

/// Applies due timers on time: sleeps until the earliest is due (at most 250 ms).
fn spawn_ticker(app: Arc<App>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(app.until_next_deadline()).await;
            let a = app.clone();
            let _ = tokio::task::spawn_blocking(move || a.tick()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn buggy_handler() -> &'static str {
        panic!("handler bug")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_error_xml() {
        let router = axum::Router::new().fallback(buggy_handler);
        let response = panic_safe(router)
            .oneshot(Request::new(Body::empty()))
            .await
            .expect("the service is infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["content-type"], "text/xml;charset=UTF-8");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a small body");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("<Code>InternalError</Code>"), "{body}");
        assert!(body.contains("<RequestID>"), "{body}");
    }

    #[test]
    fn connections_leave_descriptors_for_the_rest_of_the_server() {
        let limits = HttpLimits::default().fit_open_files(256);
        assert_eq!(limits.max_connections, 256 - 64);
        let roomy = HttpLimits::default().fit_open_files(1 << 20);
        assert_eq!(roomy.max_connections, HttpLimits::default().max_connections);
        assert_eq!(HttpLimits::default().fit_open_files(10).max_connections, 1);
    }
}
