//! What the session connection and the bulk connection share: numbering
//! requests, matching answers to them, and remembering why the server
//! closed the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hutong_protocol::{Envelope, ErrorCode, Payload};
use tokio::sync::oneshot;

use crate::error::ClientError;

#[derive(Default)]
pub(crate) struct Requests {
    pending: Mutex<HashMap<u64, oneshot::Sender<Payload>>>,
    next_id: AtomicU64,
    closed_reason: Mutex<Option<ClientError>>,
}

impl Requests {
    /// A fresh request id (never 0, which means "no answer wanted") and
    /// where its answer will arrive.
    pub(crate) fn register(&self) -> (u64, oneshot::Receiver<Payload>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, tx);
        (id, rx)
    }

    /// Forgets a request that never reached the wire.
    pub(crate) fn forget(&self, id: u64) {
        self.lock_pending().remove(&id);
    }

    /// Whether a request still waits for its answer.
    pub(crate) fn is_pending(&self, id: u64) -> bool {
        self.lock_pending().contains_key(&id)
    }

    /// Fails every waiting request at once (the connection is gone).
    pub(crate) fn fail_all(&self) {
        self.lock_pending().clear();
    }

    /// Hands an answer to its request. Returns what is not an answer (a
    /// push); a `Disconnect` is remembered as the reason the connection
    /// ended and returned too.
    pub(crate) fn route(&self, env: Envelope) -> Option<Payload> {
        let payload = env.payload?;
        if env.response_to != 0 {
            if let Some(tx) = self.lock_pending().remove(&env.response_to) {
                let _ = tx.send(payload);
            }
            return None;
        }
        if let Payload::Disconnect(d) = &payload {
            let code = ErrorCode::try_from(d.code).unwrap_or(ErrorCode::Unspecified);
            self.closed_because(ClientError::Remote { code, message: d.message.clone(), retry_after_ms: 0 });
        }
        Some(payload)
    }

    /// Records why the connection ended; the first reason stays.
    pub(crate) fn closed_because(&self, reason: ClientError) {
        let mut r = self.closed_reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
    }

    /// The error a request on an ended connection gets.
    pub(crate) fn lost(&self) -> ClientError {
        self.closed_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(ClientError::Disconnected)
    }

    /// An answer as a result: the server's error frames become errors.
    pub(crate) fn answer(
        &self,
        received: Result<Payload, oneshot::error::RecvError>,
    ) -> Result<Payload, ClientError> {
        match received {
            Ok(Payload::Error(e)) => Err(e.into()),
            Ok(p) => Ok(p),
            Err(_) => Err(self.lost()),
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Payload>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}
