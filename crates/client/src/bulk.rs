//! The bulk connection: a second connection of the same session for file
//! data (`Login.bulk`), so chunks never delay chat traffic. One per client,
//! opened when a transfer needs it, shared by all transfers, pipelined with
//! request ids like the session, and closed after a while without use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::{
    decode_frame, encode_envelope, Envelope, Payload, MAX_BULK_FRAME_LEN, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::ClientError;
use crate::requests::Requests;
use crate::transport::{self, FrameSink, FrameStream};
use crate::{Credential, Inner, Status};

/// A bulk connection unused this long is closed.
pub const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// An answer that takes longer than this means the connection is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) struct BulkConn {
    tx: mpsc::Sender<Bytes>,
    requests: Requests,
    closed: CancellationToken,
    leases: AtomicUsize,
    last_used: Mutex<Instant>,
}

impl BulkConn {
    /// Puts a request on the wire and returns where its answer will arrive.
    pub(crate) async fn start(&self, payload: Payload) -> Result<oneshot::Receiver<Payload>, ClientError> {
        if self.closed.is_cancelled() {
            return Err(self.requests.lost());
        }
        let (id, rx) = self.requests.register();
        let frame = encode_envelope(&Envelope::new(id, payload));
        let sent = tokio::select! {
            r = self.tx.send(frame) => r.is_ok(),
            _ = self.closed.cancelled() => false,
        };
        if !sent {
            self.requests.forget(id);
            return Err(self.requests.lost());
        }
        Ok(rx)
    }

    pub(crate) async fn finish(&self, rx: oneshot::Receiver<Payload>) -> Result<Payload, ClientError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(received) => self.requests.answer(received),
            Err(_) => {
                self.close(ClientError::Transport("the server stopped answering file requests".into()));
                Err(self.requests.lost())
            }
        }
    }

    pub(crate) async fn call(&self, payload: Payload) -> Result<Payload, ClientError> {
        let rx = self.start(payload).await?;
        self.finish(rx).await
    }

    /// Ends the connection: every waiting request fails at once.
    pub(crate) fn close(&self, reason: ClientError) {
        self.requests.closed_because(reason);
        self.closed.cancel();
        self.requests.fail_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }
}

/// A transfer's use of the bulk connection; the connection counts as idle
/// when no lease is held.
pub(crate) struct Lease {
    conn: Arc<BulkConn>,
}

impl std::ops::Deref for Lease {
    type Target = BulkConn;
    fn deref(&self) -> &BulkConn {
        &self.conn
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.conn.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.conn.leases.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client's one bulk connection, opened on demand.
#[derive(Default)]
pub(crate) struct Bulk {
    current: tokio::sync::Mutex<Option<Arc<BulkConn>>>,
    /// The open connection, for closing it without waiting for the lock.
    open: Mutex<Option<Arc<BulkConn>>>,
}

impl Bulk {
    /// The open bulk connection, or a new one.
    pub(crate) async fn get(&self, inner: &Arc<Inner>) -> Result<Lease, ClientError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref().filter(|c| !c.is_closed()) {
            c.leases.fetch_add(1, Ordering::Relaxed);
            return Ok(Lease { conn: c.clone() });
        }
        let conn = open(inner).await?;
        conn.leases.fetch_add(1, Ordering::Relaxed);
        *current = Some(conn.clone());
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(Lease { conn })
    }

    /// Drops the connection as a network failure would (a test hook).
    pub(crate) fn drop_connection(&self) {
        if let Some(c) = self.open.lock().unwrap_or_else(|e| e.into_inner()).take() {
            c.close(ClientError::Transport("bulk connection dropped".into()));
        }
    }
}

/// Waits until the session holds a token (it logged in at least once).
async fn session_token(inner: &Inner) -> Result<String, ClientError> {
    let mut status = inner.status.subscribe();
    loop {
        if let Credential::Token(t) = &*inner.credential.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(t.clone());
        }
        if let Status::Offline { .. } = &*status.borrow_and_update() {
            let fatal = inner.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(fatal.unwrap_or(ClientError::Offline));
        }
        status.changed().await.map_err(|_| ClientError::Closed)?;
    }
}

async fn open(inner: &Arc<Inner>) -> Result<Arc<BulkConn>, ClientError> {
    let token = session_token(inner).await?;
    let options = &inner.options;
    let pinned = options
        .pinned_fingerprint
        .clone()
        .or_else(|| inner.fingerprint.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let connected = transport::connect_bulk(&options.server, pinned.as_deref()).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let conn = Arc::new(BulkConn {
        tx,
        requests: Requests::default(),
        closed: inner.shutdown.child_token(),
        leases: AtomicUsize::new(0),
        last_used: Mutex::new(Instant::now()),
    });
    tokio::spawn(write_loop(connected.sink, rx, conn.closed.clone()));
    tokio::spawn(read_loop(conn.clone(), connected.stream));
    let handshake = async {
        let hello = v1::Hello { protocol_version: PROTOCOL_VERSION, client_name: "hutong-client".into() };
        let heartbeat = match conn.call(Payload::Hello(hello)).await? {
            Payload::HelloOk(ok) => Duration::from_millis(u64::from(ok.heartbeat_ms.max(100))),
            other => return Err(ClientError::Protocol(format!("expected HelloOk, got {other:?}"))),
        };
        let login = v1::Login {
            account: options.account.clone(),
            secret: Some(Secret::Token(token)),
            device: options.device.clone(),
            bulk: true,
        };
        match conn.call(Payload::Login(login)).await? {
            Payload::LoginOk(_) => Ok(heartbeat),
            other => Err(ClientError::Protocol(format!("expected LoginOk, got {other:?}"))),
        }
    };
    match handshake.await {
        Ok(heartbeat) => {
            tokio::spawn(keeper(conn.clone(), heartbeat));
            tracing::debug!("bulk connection open");
            Ok(conn)
        }
        Err(e) => {
            conn.close(e.clone());
            Err(e)
        }
    }
}

/// Heartbeats, and closing after [`IDLE_CLOSE`] without a lease.
async fn keeper(conn: Arc<BulkConn>, heartbeat: Duration) {
    let tick = heartbeat.min(Duration::from_secs(5));
    let mut nonce = 0;
    loop {
        tokio::select! {
            _ = conn.closed.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let idle = conn.leases.load(Ordering::Relaxed) == 0
            && conn.last_used.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= IDLE_CLOSE;
        if idle {
            tracing::debug!("closing the idle bulk connection");
            conn.close(ClientError::Disconnected);
            return;
        }
        nonce += 1;
        let conn = conn.clone();
        // The answer is not awaited here, so a long chunk ahead of it never
        // delays the next tick; a dead connection fails the transfers' requests.
        tokio::spawn(async move {
            if let Ok(rx) = conn.start(Payload::Ping(v1::Ping { nonce })).await {
                let _ = conn.finish(rx).await;
            }
        });
    }
}

async fn write_loop(mut sink: FrameSink, mut rx: mpsc::Receiver<Bytes>, closed: CancellationToken) {
    loop {
        let frame = tokio::select! {
            f = rx.recv() => match f { Some(f) => f, None => break },
            _ = closed.cancelled() => break,
        };
        let ok = tokio::select! {
            r = sink.send(frame) => r.is_ok(),
            _ = closed.cancelled() => false,
        };
        if !ok {
            break;
        }
    }
    let _ = sink.close().await;
}

async fn read_loop(conn: Arc<BulkConn>, mut stream: FrameStream) {
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = conn.closed.cancelled() => return,
        };
        let body = match next {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                conn.close(e);
                return;
            }
            None => break,
        };
        let env = match decode_frame(body, MAX_BULK_FRAME_LEN) {
            Ok(env) => env,
            Err(e) => {
                conn.close(ClientError::Protocol(format!("bad frame on the bulk connection: {e}")));
                return;
            }
        };
        match conn.requests.route(env) {
            Some(Payload::Disconnect(_)) => {
                // `route` kept the server's reason; close with it.
                conn.close(conn.requests.lost());
                return;
            }
            Some(Payload::Error(e)) => {
                tracing::warn!(error = %e, "the server reported an error on the bulk connection")
            }
            _ => {}
        }
    }
    conn.close(ClientError::Disconnected);
}
