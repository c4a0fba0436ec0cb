//! The HTTP listener: HTTPS with the server's own certificate by default
//! (plain HTTP only when `http_insecure_plaintext` is set), a cap on
//! connections served at once, a deadline for TLS and each request's
//! headers (a client trickling bytes cannot hold a connection), and the
//! security headers every response carries.
//!
//! Connections are served by hyper directly rather than `axum::serve`, which
//! has neither TLS nor a header deadline.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request};
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest request head (request line and headers) a client may send.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Time a connection gets to finish its request after a shutdown signal.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// The console may load only its own files, never be framed (clickjacking),
/// and talk only to this server. Inline styles stay allowed: the console
/// sets element styles (progress bars, tree indents).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to every response (API, console, `/health`,
/// the WebSocket handshake, errors).
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The read limit of a connection before it logs in, shared by the HTTP
/// connection's socket and the WebSocket session upgraded from it (see
/// [`Budgeted`]). `usize::MAX` means "not a WebSocket session yet": plain
/// HTTP requests are limited by the routes' body limits instead.
#[derive(Clone)]
pub struct FrameLimit(pub Arc<AtomicUsize>);

/// Marks a frame limit whose connection read more than it may before login.
pub const BUDGET_EXCEEDED: usize = 0;

/// A socket that, while its [`FrameLimit`] says "before login"
/// (`super::PRELOGIN_FRAME_LEN`), refuses to read more than
/// `super::PRELOGIN_READ_BYTES` in all. A WebSocket message is buffered whole
/// before the gateway sees it, so this is what keeps a client that has not
/// logged in from making the server buffer a large message.
pub struct Budgeted<IO> {
    io: IO,
    limit: Arc<AtomicUsize>,
    read_before_login: usize,
}

impl<IO> Budgeted<IO> {
    pub fn new(io: IO, limit: Arc<AtomicUsize>) -> Self {
        Budgeted { io, limit, read_before_login: 0 }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Budgeted<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        let limit = this.limit.load(Ordering::Relaxed);
        if limit == super::PRELOGIN_FRAME_LEN || limit == BUDGET_EXCEEDED {
            this.read_before_login += buf.filled().len() - before;
            if this.read_before_login > super::PRELOGIN_READ_BYTES {
                this.limit.store(BUDGET_EXCEEDED, Ordering::Relaxed);
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "more data than allowed before login",
                )));
            }
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Budgeted<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// What the HTTP listener needs besides its router.
pub struct HttpListener {
    pub listener: TcpListener,
    /// `None`: plain HTTP (`http_insecure_plaintext`).
    pub tls: Option<TlsAcceptor>,
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `router` until `shutdown`, then lets each connection finish the
/// request it is in (bounded) and returns.
pub async fn serve(http: HttpListener, router: axum::Router, shutdown: CancellationToken) {
    let HttpListener { listener, tls, max_connections, header_timeout } = http;
    let slots = Arc::new(Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => { backoff = Duration::from_millis(10); pair }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Over the cap the connection is closed at once: waiting for a slot
        // would let idle connections queue without bound.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP connection refused: too many connections");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (router, tls, shutdown) = (router.clone(), tls.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(socket, peer, router, header_timeout, shutdown).await,
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => connection(stream, peer, router, header_timeout, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                },
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    use tower_service::Service as _;
    let limit = Arc::new(AtomicUsize::new(usize::MAX));
    let io = hyper_util::rt::TokioIo::new(Budgeted::new(io, limit.clone()));
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(FrameLimit(limit.clone()));
        router.clone().call(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN, conn).await;
        }
    }
}
