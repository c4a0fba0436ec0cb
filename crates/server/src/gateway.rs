//! Connections: the TCP/TLS and WebSocket listeners, the hello/login
//! handshake, heartbeats and idle timeout, and the per-connection loop that
//! reads requests, keeps a bounded number in flight and writes answers and
//! pushes from the connection's [`Outbound`] queue.
//!
//! The gateway never touches SQL; it talks to services through
//! [`crate::messaging::handlers`] and [`crate::accounts`].

pub mod admission;
pub mod http;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};
use hutong_protocol::v1::{self, Hello};
use hutong_protocol::{
    decode_frame, encode_envelope, Envelope, ErrorCode, FrameCodec, FrameError, Payload, MAX_BULK_FRAME_LEN,
    MAX_FRAME_LEN,
};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::admission::{Refused, Ticket};
use crate::live::outbound::{Lane, Next, Outbound};
use crate::messaging::handlers::{self, Reply, Session, Step};
use crate::Shared;

/// Time a new connection has to finish TLS.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame before login: Hello, Login (account, password or token,
/// device name), Ping and ChangePassword all fit in far less.
pub const PRELOGIN_FRAME_LEN: usize = 16 * 1024;
/// Bytes a WebSocket connection may send in all before it logs in (a
/// WebSocket message is buffered whole before its size can be checked).
pub const PRELOGIN_READ_BYTES: usize = 64 * 1024;
/// Time a refused connection gets to send its first frame, so that the
/// refusal answers it (its Hello) with the time to wait.
const REFUSE_WAIT: Duration = Duration::from_secs(2);
/// Time in-flight requests get to finish when a connection ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests a bulk connection may have in flight (each may hold a 4 MiB chunk).
const BULK_MAX_IN_FLIGHT: usize = 8;
/// Chunk answers queued on a bulk connection before its reader waits.
const BULK_QUEUE_FRAMES: usize = 2;
/// Bulk connections one person may have open at once (a client keeps one).
const BULK_PER_PERSON: usize = 4;

/// The frame codec with a limit that grows when the connection logs in as a
/// bulk connection; until then a frame can never exceed `MAX_FRAME_LEN`.
struct GatewayCodec {
    inner: FrameCodec,
    limit: Arc<AtomicUsize>,
}

impl Decoder for GatewayCodec {
    type Item = bytes::BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<bytes::BytesMut>, FrameError> {
        self.inner.set_max_len(self.limit.load(Ordering::Relaxed));
        self.inner.decode(src)
    }
}

/// Accepts native-protocol connections until `shutdown`.
pub async fn accept_tcp(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => { backoff = Duration::from_millis(10); pair }
                Err(e) => {
                    // Out of descriptors and similar: wait, then try again.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let _ = socket.set_nodelay(true);
        let admitted = shared.admission.admit(peer.ip());
        let (shared, tls, shutdown) = (shared.clone(), tls.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            match tls {
                // Boxed: the TLS branch must not size the plain one.
                None => Box::pin(serve_io(shared, socket, peer, admitted, shutdown)).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, Box::pin(acceptor.accept(socket))).await {
                        Ok(Ok(stream)) => Box::pin(serve_io(shared, stream, peer, admitted, shutdown)).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_io<IO>(
    shared: Arc<Shared>,
    io: IO,
    peer: SocketAddr,
    admitted: Result<Ticket, Refused>,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    // Idle connections must stay cheap: a small read buffer that grows on
    // demand, and a write buffer that exists only while a batch is written.
    let (read, write) = tokio::io::split(io);
    let limit = Arc::new(AtomicUsize::new(PRELOGIN_FRAME_LEN));
    let codec = GatewayCodec { inner: FrameCodec::default(), limit: limit.clone() };
    let stream = FramedRead::with_capacity(read, codec, 256).map(|r| r.map(bytes::BytesMut::freeze));
    let sink = FrameWriter { io: write, buf: Vec::new() };
    match admitted {
        Ok(ticket) => serve(shared, stream, sink, Some(peer), limit, ticket, shutdown).await,
        Err(refused) => refuse(stream, sink, refused).await,
    }
}

/// Answers a connection over the per-address limits: its first request (the
/// Hello, if it comes soon) gets `TOO_MANY_CONNECTIONS` with the time to
/// wait, then the connection closes.
async fn refuse<S, K>(mut stream: S, mut sink: K, refused: Refused)
where
    S: Stream<Item = Result<Bytes, FrameError>> + Unpin,
    K: Sink<Bytes> + Unpin,
{
    let first = tokio::time::timeout(REFUSE_WAIT, stream.next()).await;
    let id = match first {
        Ok(Some(Ok(body))) => decode_frame(body, PRELOGIN_FRAME_LEN).map(|e| e.id).unwrap_or(0),
        _ => 0,
    };
    let error = v1::Error {
        code: ErrorCode::TooManyConnections as i32,
        message: refused.message.clone(),
        retry_after_ms: refused.retry_after_ms,
    };
    let bye = v1::Disconnect { code: ErrorCode::TooManyConnections as i32, message: refused.message };
    let _ = tokio::time::timeout(REFUSE_WAIT, async {
        let _ = sink.feed(frame(&Envelope::reply(id, Payload::Error(error)))).await;
        let _ = sink.feed(frame(&Envelope::new(0, Payload::Disconnect(bye)))).await;
        let _ = sink.close().await;
    })
    .await;
}

/// Writes length-prefixed frames. Unlike a codec's `FramedWrite`, which keeps
/// an 8 KiB buffer per connection for its whole life, this one gathers a
/// batch, writes it, and frees the buffer.
struct FrameWriter<W> {
    io: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Sink<Bytes> for FrameWriter<W> {
    type Error = std::io::Error;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, frame: Bytes) -> std::io::Result<()> {
        if frame.len() > MAX_BULK_FRAME_LEN {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "frame over the size limit"));
        }
        let this = self.get_mut();
        this.buf.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        this.buf.extend_from_slice(&frame);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut written = 0;
        while written < this.buf.len() {
            match Pin::new(&mut this.io).poll_write(cx, &this.buf[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.buf.drain(..written);
                    return Poll::Pending;
                }
            }
        }
        this.buf = Vec::new();
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// State shared by the HTTP routes.
#[derive(Clone)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub limit: Arc<Semaphore>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

pub fn http_router(state: HttpState) -> axum::Router {
    let admin = crate::admin::router().with_state(state.shared.clone());
    let api = crate::api::router().with_state(state.shared.clone());
    axum::Router::new()
        .route("/ws", axum::routing::get(ws_upgrade))
        .route("/health", axum::routing::get(health))
        .with_state(state)
        .merge(admin)
        .merge(api)
        // Outermost, so that every answer carries them: unknown paths,
        // refused bodies and the WebSocket handshake included.
        .layer(axum::middleware::map_response(http::security_headers))
}

/// `/health`: 200 while the server can serve, 503 once its writer stopped
/// (a supervisor should restart it; the server is exiting by then). The body
/// carries the figures an operator watches: open connections and the bytes
/// held by their outbound queues.
async fn health(State(state): State<HttpState>) -> Response {
    let stats = &state.shared.stats;
    let (code, status) = if stats.writer_failed() {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "writer_stopped")
    } else {
        (axum::http::StatusCode::OK, "ok")
    };
    // `tls: false` makes the console warn that Hutong does not encrypt
    // this connection (a proxy in front may, but the server cannot tell).
    let body = serde_json::json!({
        "status": status,
        "connections": stats.connections(),
        "outbound_bytes": stats.outbound_bytes(),
        "tls": !state.shared.config.http_insecure_plaintext,
    });
    (code, axum::Json(body)).into_response()
}

async fn ws_upgrade(
    ws: WebSocketUpgrade,
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    limit: Option<axum::Extension<http::FrameLimit>>,
) -> Response {
    let Ok(permit) = state.limit.clone().try_acquire_owned() else {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    };
    let admitted = state.shared.admission.admit(peer.ip());
    let token = state.tracker.token();
    // The HTTP connection's socket reads at most PRELOGIN_READ_BYTES until
    // the session logs in (`http::Budgeted`), and `serve` refuses any frame
    // over PRELOGIN_FRAME_LEN until then; a bulk connection's frames are
    // larger once it has logged in.
    let limit = match limit {
        Some(axum::Extension(http::FrameLimit(limit))) => limit,
        None => Arc::new(AtomicUsize::new(0)),
    };
    limit.store(PRELOGIN_FRAME_LEN, Ordering::Relaxed);
    ws.max_message_size(MAX_BULK_FRAME_LEN).max_frame_size(MAX_BULK_FRAME_LEN).on_upgrade(
        move |socket: WebSocket| async move {
            let _permit = permit;
            let _token = token;
            let (sink, stream) = socket.split();
            // One binary message is one frame; text is refused; a close ends the stream.
            let stream = stream
                .take_while(|m| {
                    futures::future::ready(matches!(m, Ok(msg) if !matches!(msg, WsMessage::Close(_))))
                })
                .filter_map(|m| {
                    futures::future::ready(match m {
                        Ok(WsMessage::Binary(b)) => Some(Ok(b)),
                        Ok(WsMessage::Text(_)) => {
                            Some(Err(FrameError::Unsupported("text WebSocket messages")))
                        }
                        _ => None,
                    })
                });
            let sink =
                sink.with(|b: Bytes| futures::future::ready(Ok::<_, axum::Error>(WsMessage::Binary(b))));
            match admitted {
                Ok(ticket) => {
                    serve(
                        state.shared,
                        Box::pin(stream),
                        Box::pin(sink),
                        Some(peer),
                        limit,
                        ticket,
                        state.shutdown,
                    )
                    .await
                }
                Err(refused) => refuse(Box::pin(stream), Box::pin(sink), refused).await,
            }
        },
    )
}

fn frame(env: &Envelope) -> Bytes {
    encode_envelope(env)
}

/// Writes the queue to the socket until the queue closes, the socket fails
/// or a batch misses the write deadline (a peer that stopped reading).
async fn write_loop<K>(mut sink: K, outbound: Arc<Outbound>, deadline: Duration)
where
    K: Sink<Bytes> + Unpin,
    K::Error: std::fmt::Display,
{
    // Grows only under load; an idle connection keeps no batch buffer.
    let mut batch = Vec::new();
    loop {
        match outbound.next(&mut batch, 64).await {
            Next::Frames => {
                let bytes: usize = batch.iter().map(Bytes::len).sum();
                let write = async {
                    for f in batch.drain(..) {
                        sink.feed(f).await?;
                    }
                    sink.flush().await
                };
                let result = tokio::time::timeout(deadline, write).await;
                batch.clear();
                outbound.written(bytes);
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "writing to a connection failed");
                        outbound.close(ErrorCode::Internal, "socket closed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("a connection missed its write deadline");
                        outbound.close(ErrorCode::SlowConsumer, "the connection stopped reading");
                        return;
                    }
                }
            }
            Next::Closed(reason) => {
                let bye = Envelope::new(
                    0,
                    Payload::Disconnect(v1::Disconnect { code: reason.code as i32, message: reason.message }),
                );
                let _ = tokio::time::timeout(deadline, async {
                    let _ = sink.send(frame(&bye)).await;
                    let _ = sink.close().await;
                })
                .await;
                return;
            }
        }
    }
}

/// Queues the answer to request `id` without waiting (it is parked when
/// there is no room, and the connection stops reading until it leaves).
fn deliver(outbound: &Outbound, id: u64, reply: Reply) {
    let (lane, payload) = match reply {
        Ok(Some(pair)) => pair,
        Ok(None) => return,
        Err(e) => (Lane::Control, Payload::Error(e.to_frame())),
    };
    // Request id 0 means "no answer wanted" (typing, for instance).
    if id != 0 {
        outbound.answer(lane, frame(&Envelope::reply(id, payload)));
    }
}

/// Requests whose answers may be large (up to a frame): the gateway limits
/// how many of them a connection has in flight, so the answers it holds are
/// bounded in bytes, not only in number.
fn large_answer(payload: &Payload) -> bool {
    matches!(
        payload,
        Payload::Sync(_)
            | Payload::FetchMessages(_)
            | Payload::DirectorySync(_)
            | Payload::LookupUsers(_)
            | Payload::GetReadList(_)
            | Payload::GetFile(_)
            | Payload::GetChunk(_)
    )
}

/// Runs `fut` until it ends (`Some`), `limit` passes, or the shutdown grace
/// runs out (`None`). `stop` is when this connection must be gone: set the
/// first time it sees the shutdown signal, `grace` later.
async fn bounded<F: std::future::Future>(
    fut: F,
    limit: Instant,
    shutdown: &CancellationToken,
    grace: Duration,
    stop: &mut Option<Instant>,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        let until = stop.map_or(limit, |s| s.min(limit));
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep_until(until) => return None,
            _ = shutdown.cancelled(), if stop.is_none() => *stop = Some(Instant::now() + grace),
        }
    }
}

/// Serves one connection of any transport until it closes.
///
/// The loop never waits on the client: answers are parked rather than
/// awaited, so the shutdown signal, the idle deadline and the writer's end
/// are always polled, whatever the client does.
pub async fn serve<S, K>(
    shared: Arc<Shared>,
    mut stream: S,
    sink: K,
    peer: Option<SocketAddr>,
    frame_limit: Arc<AtomicUsize>,
    mut ticket: Ticket,
    shutdown: CancellationToken,
) where
    S: Stream<Item = Result<Bytes, FrameError>> + Unpin + Send,
    K: Sink<Bytes> + Unpin + Send + 'static,
    K::Error: std::fmt::Display,
{
    // The futures of rare or heavy steps (login, routing a request) are boxed
    // where they are awaited, so this task stays small while a connection idles.
    let config = &shared.config;
    let _counted = shared.stats.connection();
    let outbound = Arc::new(Outbound::new(
        config.outbound_queue_frames,
        config.outbound_queue_bytes,
        shared.stats.clone(),
    ));
    let write_deadline = Duration::from_millis(config.write_timeout_ms);
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let mut writer = tokio::spawn(write_loop(sink, outbound.clone(), write_deadline));
    let mut writer_done = false;
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut max_in_flight = config.max_in_flight;
    // Requests with large answers in flight: each may hold up to a frame.
    let mut max_large = (config.outbound_queue_bytes / MAX_FRAME_LEN).max(1);
    let mut large_in_flight = 0usize;
    let mut session: Option<Session> = None;
    let mut said_hello = false;
    let mut in_flight = FuturesUnordered::new();
    // Until login, the deadline is fixed from the connection's start (pings
    // do not move it); after login it is the idle timeout, moved by any frame.
    let login_timeout = Duration::from_millis(config.login_timeout_ms);
    let deadline = tokio::time::sleep(login_timeout);
    tokio::pin!(deadline);
    // When this connection must be gone after a shutdown signal.
    let mut stop: Option<Instant> = None;

    loop {
        let accepting = outbound.accepting();
        let can_read = accepting && in_flight.len() < max_in_flight && large_in_flight < max_large;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                outbound.close(ErrorCode::ShuttingDown, "the server is shutting down");
                stop = Some(Instant::now() + grace);
                break;
            }
            Some((id, large, reply)) = in_flight.next(), if !in_flight.is_empty() => {
                large_in_flight -= usize::from(large);
                deliver(&outbound, id, reply);
            }
            _ = &mut writer => { writer_done = true; break; }
            _ = &mut deadline => {
                if session.is_some() {
                    outbound.close(ErrorCode::IdleTimeout, "no traffic within the heartbeat timeout");
                } else {
                    let secs = login_timeout.as_secs_f64();
                    outbound.close(ErrorCode::IdleTimeout, format!("not logged in within {secs} s of connecting"));
                }
                break;
            }
            _ = outbound.until_accepting(), if !accepting => {}
            next = stream.next(), if can_read => {
                if session.is_some() {
                    deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                let body = match next {
                    None if frame_limit.load(Ordering::Relaxed) == http::BUDGET_EXCEEDED => {
                        let n = PRELOGIN_READ_BYTES;
                        outbound.close(ErrorCode::TooLarge, format!("more than {n} bytes sent before login"));
                        break;
                    }
                    None => break,
                    Some(Ok(body)) if body.len() > frame_limit.load(Ordering::Relaxed) => {
                        let n = body.len();
                        outbound.close(ErrorCode::TooLarge, format!("a frame of {n} bytes exceeds the limit"));
                        break;
                    }
                    Some(Ok(body)) => body,
                    Some(Err(FrameError::TooLarge(n))) => {
                        outbound.close(ErrorCode::TooLarge, format!("a frame of {n} bytes exceeds the limit"));
                        break;
                    }

                    Some(Err(e)) => {
                        outbound.close(ErrorCode::BadRequest, e.to_string());
                        break;
                    }
                };
                let env = match decode_frame(body, frame_limit.load(Ordering::Relaxed)) {
                    Ok(env) => env,
                    Err(e) => {
                        let err = Envelope::error(0, ErrorCode::BadRequest, format!("could not decode the frame: {e}"));
                        outbound.answer(Lane::Control, frame(&err));
                        continue;
                    }
                };
                let (id, Some(payload)) = (env.id, env.payload) else {
                    deliver(&outbound, env.id, Err(crate::error::ServiceError::BadRequest("the frame has no payload".into())));
                    continue;
                };
                if !said_hello {
                    match payload {
                        Payload::Hello(hello) => {
                            if let Err(message) = check_hello(&hello) {
                                outbound.close(ErrorCode::UnsupportedVersion, message);
                                break;
                            }
                            said_hello = true;
                            let ok = v1::HelloOk {
                                protocol_version: hutong_protocol::PROTOCOL_VERSION,
                                server_version: env!("CARGO_PKG_VERSION").into(),
                                heartbeat_ms: config.heartbeat_ms,
                            };
                            deliver(&outbound, id, Ok(Some((Lane::Control, Payload::HelloOk(ok)))));
                        }
                        _ => {
                            outbound.close(ErrorCode::BadRequest, "the first frame must be Hello");
                            break;
                        }
                    }
                    continue;
                }
                match &session {
                    Some(s) => {
                        let large = large_answer(&payload);
                        // Routing may wait (for room in the writer's queue): still
                        // honour the shutdown signal meanwhile.
                        let step = tokio::select! {
                            step = Box::pin(handlers::route(s, id, payload)) => step,
                            _ = shutdown.cancelled() => {
                                outbound.close(ErrorCode::ShuttingDown, "the server is shutting down");
                                stop = Some(Instant::now() + grace);
                                break;
                            }
                        };
                        match step {
                            Step::Ready(reply) => deliver(&outbound, id, reply),
                            Step::Pending(fut) => {
                                large_in_flight += usize::from(large);
                                in_flight.push(async move { (id, large, fut.await) });
                            }
                        }
                    }
                    None => match payload {
                        Payload::Login(login) => {
                            let bulk = login.bulk;
                            let device: Arc<str> = login.device.as_str().into();
                            if bulk && !matches!(login.secret, Some(v1::login::Secret::Token(_))) {
                                let e = crate::error::ServiceError::BadRequest("a bulk connection logs in with a session token".into());
                                deliver(&outbound, id, Err(e));
                                continue;
                            }
                            let result = tokio::select! {
                                r = Box::pin(shared.auth.login(&shared.db, login, peer.map(|p| p.ip()))) => r,
                                _ = shutdown.cancelled() => {
                                    outbound.close(ErrorCode::ShuttingDown, "the server is shutting down");
                                    stop = Some(Instant::now() + grace);
                                    break;
                                }
                            };
                            match result {
                                Ok(auth) => {
                                    if bulk {
                                        if !shared.hub.register_bulk(auth.user_id, conn_id, auth.session_id, outbound.clone(), BULK_PER_PERSON) {
                                            let e = crate::error::ServiceError::Busy(format!(
                                                "at most {BULK_PER_PERSON} file connections per person; try again when one ends"
                                            ));
                                            deliver(&outbound, id, Err(e));
                                            continue;
                                        }
                                        frame_limit.store(MAX_BULK_FRAME_LEN, Ordering::Relaxed);
                                        ticket.logged_in();
                                        // Answers may fill half the budget: BULK_QUEUE_FRAMES chunks.
                                        outbound.set_bulk_limits(BULK_QUEUE_FRAMES, 2 * BULK_QUEUE_FRAMES * MAX_BULK_FRAME_LEN);
                                        max_in_flight = max_in_flight.min(BULK_MAX_IN_FLIGHT);
                                        max_large = BULK_MAX_IN_FLIGHT;
                                    } else if !shared.hub.register(auth.user_id, conn_id, auth.session_id, outbound.clone(), shared.config.max_connections_per_user) {
                                        let e = crate::error::ServiceError::TooManyConnections(format!(
                                            "at most {} connections per person; close one on another device first",
                                            shared.config.max_connections_per_user
                                        ));
                                        deliver(&outbound, id, Err(e));
                                        continue;
                                    } else {
                                        frame_limit.store(MAX_FRAME_LEN, Ordering::Relaxed);
                                        ticket.logged_in();
                                    }
                                    deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                                    session = Some(Session {
                                        shared: shared.clone(),
                                        user_id: auth.user_id,
                                        session_id: auth.session_id,
                                        conn_id,
                                        outbound: outbound.clone(),
                                        send_order_broken: Default::default(),
                                        bulk,
                                        readable: Default::default(),
                                        throttled: Default::default(),
                                        device,
                                    });
                                    let ok = v1::LoginOk {
                                        user_id: auth.user_id,
                                        token: auth.token.unwrap_or_default(),
                                        display_name: auth.display_name,
                                        session_id: auth.session_id,
                                    };
                                    deliver(&outbound, id, Ok(Some((Lane::Control, Payload::LoginOk(ok)))));
                                }
                                Err(e) => deliver(&outbound, id, Err(e)),
                            }
                        }
                        Payload::Ping(p) => {
                            deliver(&outbound, id, Ok(Some((Lane::Control, Payload::Pong(v1::Pong { nonce: p.nonce })))))
                        }
                        Payload::ChangePassword(c) => {
                            let result = Box::pin(shared.auth.change_password(&shared.db, &c.account, &c.old_password, &c.new_password, None, peer.map(|p| p.ip()))).await;
                            deliver(&outbound, id, result.map(|()| Some((Lane::Control, Payload::Done(v1::Done {})))))
                        }
                        _ => {
                            let err = Envelope::error(id, ErrorCode::NotAuthenticated, "log in first");
                            outbound.answer(Lane::Control, frame(&err));
                        }
                    },
                }
            }
        }
    }

    // Let requests already taken finish (a send in the commit batch is
    // answered), but no longer than DRAIN_TIMEOUT, or the shutdown grace.
    let drain = async {
        while let Some((id, _, reply)) = in_flight.next().await {
            deliver(&outbound, id, reply);
        }
    };
    let _ = bounded(drain, Instant::now() + DRAIN_TIMEOUT, &shutdown, grace, &mut stop).await;
    drop(in_flight);
    if let Some(s) = &session {
        shared.hub.unregister(s.user_id, conn_id);
    }
    outbound.close(ErrorCode::Unspecified, "connection closed");
    // The writer sends what is queued and the reason, each batch within the
    // write deadline; whatever it still does after that ends with the
    // connection, so a peer that never reads holds nothing.
    if !writer_done
        && bounded(&mut writer, Instant::now() + write_deadline, &shutdown, grace, &mut stop).await.is_none()
    {
        writer.abort();
    }
}

fn check_hello(hello: &Hello) -> Result<(), String> {
    if hello.protocol_version != hutong_protocol::PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} is not supported; this server speaks version {}",
            hello.protocol_version,
            hutong_protocol::PROTOCOL_VERSION
        ));
    }
    Ok(())
}
