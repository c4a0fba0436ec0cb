//! Delivered and read reports (`UpdateCursor`), coalesced so that receipts
//! cost a group of N members O(N) work and frames per message, not O(N²).
//!
//! Rules:
//! - Reports wait here for a short window ([`WINDOW`]); all reports of one
//!   person in one conversation merge into one (the highest positions), and
//!   everything waiting goes to the writer as one `UpdateCursors` command.
//!   Every report is answered after that commit (the client waits for it).
//! - A moved cursor bumps only that member row's version (never the
//!   conversation's), so the person's own devices learn it by sync and nobody
//!   else re-fetches the conversation and its member list.
//! - A moved cursor is pushed live to the person's other devices.
//! - A read mark is pushed to the senders of the messages it covers (they
//!   show "read by N"), gathered per sender and conversation into one
//!   `CursorBatch` per window: a bounded rate of frames per sender.
//! - Delivered positions of others are not pushed: nothing shows them live;
//!   they arrive with the conversation's state on sync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hutong_protocol::v1;
use hutong_protocol::{encode_envelope, Envelope, Payload};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::error::ServiceError;
use crate::live::outbound::Lane;
use crate::writer::{Command, CursorOutcome, CursorReport, MAX_CURSOR_REPORTS};
use crate::Shared;

/// How long reports gather before they are written together. Short enough
/// that a read mark reaches its sender quickly, long enough that a group's
/// delivery reports for one message land in a handful of commands.
pub const WINDOW: Duration = Duration::from_millis(20);

/// Cursors per `CursorBatch` frame (~20 bytes each; far below the frame limit).
const BATCH_CURSORS: usize = 2048;

/// A read mark tells the senders of at most this many messages below it; a
/// longer jump (a first read of an old backlog) leaves older senders to sync.
const READ_SCAN: u64 = 10_000;

type Answer = oneshot::Sender<Result<(), ServiceError>>;

struct Waiting {
    report: CursorReport,
    /// Reporting connections and their own reports: a connection whose report
    /// equals the merged result needs no push of it.
    conns: Vec<(u64, u64, u64)>,
    answers: Vec<Answer>,
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<(u64, u64), Waiting>,
    closed: bool,
}

#[derive(Default)]
pub struct Receipts {
    inner: Mutex<Inner>,
    wake: Notify,
}

impl Receipts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a report of connection `conn`; the receiver yields its answer
    /// after the commit. The number waiting is bounded by the connections'
    /// in-flight request limits: each waiting report holds one request.
    pub fn report(&self, r: CursorReport, conn: u64) -> oneshot::Receiver<Result<(), ServiceError>> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if inner.closed {
            let _ = tx.send(Err(ServiceError::ShuttingDown));
            return rx;
        }
        let w = inner.waiting.entry((r.user, r.conversation_id)).or_insert_with(|| Waiting {
            report: CursorReport { delivered: 0, read: 0, ..r },
            conns: Vec::new(),
            answers: Vec::new(),
        });
        w.report.delivered = w.report.delivered.max(r.delivered);
        w.report.read = w.report.read.max(r.read);
        match w.conns.iter_mut().find(|c| c.0 == conn) {
            Some(c) => {
                c.1 = c.1.max(r.delivered);
                c.2 = c.2.max(r.read);
            }
            None => w.conns.push((conn, r.delivered, r.read)),
        }
        w.answers.push(tx);
        drop(inner);
        self.wake.notify_one();
        rx
    }

    fn take(&self) -> Vec<Waiting> {
        let mut inner = self.lock();
        if inner.waiting.len() <= MAX_CURSOR_REPORTS {
            return inner.waiting.drain().map(|(_, w)| w).collect();
        }
        let keys: Vec<(u64, u64)> = inner.waiting.keys().take(MAX_CURSOR_REPORTS).copied().collect();
        let batch = keys.iter().filter_map(|k| inner.waiting.remove(k)).collect();
        // The rest goes in the next round, without waiting for a new report.
        self.wake.notify_one();
        batch
    }

    /// Refuses everything waiting and everything reported from now on.
    fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for (_, w) in inner.waiting.drain() {
            for a in w.answers {
                let _ = a.send(Err(ServiceError::ShuttingDown));
            }
        }
    }
}

/// The same refusal again, for the second and later waiters of a report.
fn again(e: &ServiceError) -> ServiceError {
    match e {
        ServiceError::NotMember => ServiceError::NotMember,
        ServiceError::NotFound(what) => ServiceError::NotFound(what),
        ServiceError::ShuttingDown => ServiceError::ShuttingDown,
        ServiceError::Internal(m) => ServiceError::Internal(m.clone()),
        other => ServiceError::BadRequest(other.to_string()),
    }
}

fn answer_all(answers: Vec<Answer>, result: Result<(), &ServiceError>) {
    for a in answers {
        let _ = a.send(result.map_err(again));
    }
}

/// Writes waiting reports every [`WINDOW`] until `shutdown`, then writes
/// what is left and refuses later reports.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = shared.receipts.wake.notified() => {}
        }
        // Let the burst that woke us (a group's reports for one message) gather.
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(WINDOW) => {}
        }
        flush(&shared).await;
    }
    flush(&shared).await;
    shared.receipts.close();
}

async fn flush(shared: &Shared) {
    let batch = shared.receipts.take();
    if batch.is_empty() {
        return;
    }
    let reports: Vec<CursorReport> = batch.iter().map(|w| w.report).collect();
    let committed = match shared.writer.submit(Command::UpdateCursors { reports }).await {
        Ok(c) => c,
        Err(e) => {
            for w in batch {
                answer_all(w.answers, Err(&e));
            }
            return;
        }
    };
    let mut reads = Vec::new();
    for (w, outcome) in batch.into_iter().zip(committed.cursors) {
        match outcome {
            CursorOutcome::Refused(e) => answer_all(w.answers, Err(&e)),
            CursorOutcome::Unchanged => answer_all(w.answers, Ok(())),
            CursorOutcome::Moved { cursor, old_read } => {
                answer_all(w.answers, Ok(()));
                let except: Vec<u64> = w
                    .conns
                    .iter()
                    .filter(|(_, d, r)| *d >= cursor.delivered_seq && *r >= cursor.read_seq)
                    .map(|(c, _, _)| *c)
                    .collect();
                let frame = encode_envelope(&Envelope::new(0, Payload::Cursor(cursor)));
                shared.hub.push_user(cursor.user_id, Lane::Live, &frame, &except);
                if cursor.read_seq > old_read {
                    reads.push((cursor, old_read));
                }
            }
        }
    }
    if !reads.is_empty() {
        tell_senders(shared, reads).await;
    }
}

/// Pushes read marks to the senders of the messages they cover, one
/// `CursorBatch` per sender and conversation.
async fn tell_senders(shared: &Shared, reads: Vec<(v1::Cursor, u64)>) {
    let found = shared
        .db
        .read(move |conn| {
            let mut to: HashMap<(u64, u64), Vec<v1::Cursor>> = HashMap::new();
            for (cursor, old_read) in reads {
                let from = old_read.max(cursor.read_seq.saturating_sub(READ_SCAN));
                let senders =
                    conn.senders_between(cursor.conversation_id, from, cursor.read_seq, cursor.user_id)?;
                for sender in senders {
                    to.entry((sender, cursor.conversation_id)).or_default().push(cursor);
                }
            }
            Ok(to)
        })
        .await;
    let to = match found {
        Ok(to) => to,
        Err(e) => {
            // Live read marks are an optimisation: senders still get them with the
            // conversation's state the next time they sync it.
            tracing::warn!(error = %e, "finding the senders a read mark covers failed");
            return;
        }
    };
    for ((sender, _), cursors) in to {
        for chunk in cursors.chunks(BATCH_CURSORS) {
            let batch = v1::CursorBatch { cursors: chunk.to_vec() };
            let frame = encode_envelope(&Envelope::new(0, Payload::Cursors(batch)));
            shared.hub.push_user(sender, Lane::Live, &frame, &[]);
        }
    }
}
