//! The bounded outbound queue of one connection, with priority lanes, and the
//! server-wide count of the bytes all such queues hold.
//!
//! Control frames (acks, errors, pongs, urgent messages) overtake live pushes,
//! which overtake bulk sync answers. Every lane has a cap in frames, and the
//! whole queue a cap in bytes (`outbound_queue_bytes`), counting the frames
//! queued, the batch the connection's writer task is writing, and answers
//! parked while there is no room; answers may fill only half of it, so
//! pushes always find room beside a sync. A push that finds no room closes the
//! connection with `SLOW_CONSUMER` (the client catches up by sync), so a slow
//! reader can never make the server's memory grow. Answers to the client's own
//! requests are parked instead; while any answer is parked the connection
//! stops reading requests, which pushes back on the client. The gateway also
//! caps the requests in flight whose answers may be large, so the parked bytes
//! are bounded too (see `gateway.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hutong_protocol::ErrorCode;
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Control = 0,
    Live = 1,
    Bulk = 2,
}

/// Why a queue was closed; sent to the client as a `Disconnect` frame.
#[derive(Clone, Debug)]
pub struct CloseReason {
    pub code: ErrorCode,
    pub message: String,
}

/// Figures of the whole server, shared by every connection; `/health`
/// reports them.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Bytes held by all outbound queues: queued frames, batches being
    /// written, parked answers.
    outbound_bytes: AtomicU64,
    /// Connection tasks running (each ends only after its writer task).
    connections: AtomicU64,
    /// Set when the writer thread stopped while the server was running.
    writer_failed: AtomicBool,
}

impl ServerStats {
    pub fn outbound_bytes(&self) -> u64 {
        self.outbound_bytes.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn writer_failed(&self) -> bool {
        self.writer_failed.load(Ordering::Relaxed)
    }

    pub fn set_writer_failed(&self) {
        self.writer_failed.store(true, Ordering::Relaxed);
    }

    /// Counts a connection task until the guard is dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    fn add(&self, n: usize) {
        self.outbound_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.outbound_bytes.fetch_sub(n as u64, Ordering::Relaxed);
    }
}

pub struct ConnectionGuard(Arc<ServerStats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Outbound {
    inner: Mutex<Inner>,
    /// Wakes the connection's single writer task.
    ready: Notify,
    /// Wakes whoever waits for room (answers, the gateway's reader).
    space: Notify,
    stats: Arc<ServerStats>,
}

struct Inner {
    lanes: [VecDeque<Bytes>; 3],
    caps: [usize; 3],
    /// Bytes of queued frames plus the batch handed to the writer task.
    bytes: usize,
    max_bytes: usize,
    /// Answers waiting for room, in the order they were produced.
    parked: VecDeque<(Lane, Bytes)>,
    parked_bytes: usize,
    closed: Option<CloseReason>,
}

impl Inner {
    /// Whether a push of `len` bytes fits in `lane`. A frame larger than the
    /// whole budget still goes into an empty queue, or it could never be sent.
    fn has_room(&self, lane: Lane, len: usize) -> bool {
        let i = lane as usize;
        self.lanes[i].len() < self.caps[i] && (self.bytes + len <= self.max_bytes || self.bytes == 0)
    }

    /// Whether an answer of `len` bytes fits: answers may fill only half the
    /// budget, so a client busy syncing (large answers) still has room for
    /// the live pushes that arrive meanwhile and is not taken for a slow one.
    fn has_answer_room(&self, lane: Lane, len: usize) -> bool {
        let i = lane as usize;
        self.lanes[i].len() < self.caps[i] && (self.bytes + len <= self.max_bytes / 2 || self.bytes == 0)
    }

    fn enqueue(&mut self, lane: Lane, frame: Bytes) {
        self.bytes += frame.len();
        self.lanes[lane as usize].push_back(frame);
    }
}

pub enum Next {
    Frames,
    Closed(CloseReason),
}

/// Largest batch handed to the writer task at once (one frame may be larger).
const BATCH_BYTES: usize = 256 * 1024;

impl Outbound {
    /// `live_cap` frames for live pushes; control gets a quarter of that and
    /// bulk a sixteenth (bulk frames are large sync batches). At most
    /// `max_bytes` in all lanes together.
    pub fn new(live_cap: usize, max_bytes: usize, stats: Arc<ServerStats>) -> Self {
        let live_cap = live_cap.max(16);
        Outbound {
            inner: Mutex::new(Inner {
                lanes: Default::default(),
                caps: [live_cap / 4, live_cap, (live_cap / 16).max(4)],
                bytes: 0,
                max_bytes,
                parked: VecDeque::new(),
                parked_bytes: 0,
                closed: None,
            }),
            ready: Notify::new(),
            space: Notify::new(),
            stats,
        }
    }

    /// Shrinks the bulk lane to `cap` frames and sets the byte budget (a bulk
    /// connection's frames are file chunks of up to 4 MiB).
    pub fn set_bulk_limits(&self, cap: usize, max_bytes: usize) {
        let mut inner = self.lock();
        inner.caps[Lane::Bulk as usize] = cap.max(1);
        inner.max_bytes = max_bytes;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a push. No room closes the connection as a slow consumer.
    pub fn push(&self, lane: Lane, frame: Bytes) {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return;
        }
        if inner.has_room(lane, frame.len()) {
            self.stats.add(frame.len());
            inner.enqueue(lane, frame);
        } else {
            inner.closed = Some(CloseReason {
                code: ErrorCode::SlowConsumer,
                message: "the connection fell too far behind; reconnect and sync".into(),
            });
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// Queues as many of `frames` on `lane` as fit now (within the answers'
    /// half of the budget), in order, and returns how many; never closes the
    /// connection. For pages of pushes
    /// that must not overflow the lane (presence states on subscribing).
    pub fn push_some(&self, lane: Lane, frames: &[Bytes]) -> usize {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return 0;
        }
        let mut n = 0;
        for f in frames {
            if !inner.has_answer_room(lane, f.len()) {
                break;
            }
            self.stats.add(f.len());
            inner.enqueue(lane, f.clone());
            n += 1;
        }
        drop(inner);
        if n > 0 {
            self.ready.notify_one();
        }
        n
    }

    /// Queues an answer without waiting: into its lane when there is room
    /// and nothing is parked before it, else parked (counted) until the
    /// writer makes room. Dropped once the connection is closed.
    pub fn answer(&self, lane: Lane, frame: Bytes) {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return;
        }
        self.stats.add(frame.len());
        if inner.parked.is_empty() && inner.has_answer_room(lane, frame.len()) {
            inner.enqueue(lane, frame);
            drop(inner);
            self.ready.notify_one();
        } else {
            inner.parked_bytes += frame.len();
            inner.parked.push_back((lane, frame));
        }
    }

    /// Whether the connection may take more requests: nothing parked and
    /// the answers' half of the byte budget not used up (or the queue closed: then answers are
    /// dropped and nothing needs to wait).
    pub fn accepting(&self) -> bool {
        let inner = self.lock();
        inner.closed.is_some() || (inner.parked.is_empty() && inner.bytes < inner.max_bytes / 2)
    }

    /// Resolves once [`Outbound::accepting`] holds.
    pub async fn until_accepting(&self) {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.accepting() {
                return;
            }
            notified.await;
        }
    }

    /// A future that resolves when something leaves the queue or it
    /// closes; it counts from this call, so take it before checking for room.
    pub fn room(&self) -> tokio::sync::futures::Notified<'_> {
        self.space.notified()
    }

    /// Queues an answer, waiting while there is no room. Returns false once
    /// the connection is closed. For answers sent from inside a request's
    /// own future (logout); the gateway uses [`Outbound::answer`].
    pub async fn push_wait(&self, lane: Lane, frame: Bytes) -> bool {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                if inner.closed.is_some() {
                    return false;
                }
                if inner.parked.is_empty() && inner.has_answer_room(lane, frame.len()) {
                    self.stats.add(frame.len());
                    inner.enqueue(lane, frame);
                    drop(inner);
                    self.ready.notify_one();
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Closes the queue; the writer sends the reason and ends. First reason wins.
    pub fn close(&self, code: ErrorCode, message: impl Into<String>) {
        let mut inner = self.lock();
        if inner.closed.is_none() {
            inner.closed = Some(CloseReason { code, message: message.into() });
        }
        drop(inner);
        self.ready.notify_one();
        self.space.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Waits for frames and moves up to `max` of them (and about
    /// [`BATCH_BYTES`]) into `out`, highest lane first. Their bytes stay
    /// counted until [`Outbound::written`]. Frames queued before a close are
    /// still delivered (so a final error frame reaches the client), then the
    /// reason.
    pub async fn next(&self, out: &mut Vec<Bytes>, max: usize) -> Next {
        let before = out.len();
        loop {
            {
                let mut inner = self.lock();
                let mut taken = 0;
                for lane in 0..3 {
                    while out.len() < max && (taken < BATCH_BYTES || out.is_empty()) {
                        match inner.lanes[lane].pop_front() {
                            Some(f) => {
                                taken += f.len();
                                out.push(f);
                            }
                            None => break,
                        }
                    }
                }
                if !out.is_empty() {
                    crate::live::stats::frames_sent_add(out.len() - before);
                    return Next::Frames;
                }
                if let Some(reason) = &inner.closed {
                    return Next::Closed(reason.clone());
                }
            }
            self.ready.notified().await;
        }
    }

    /// The writer task wrote a batch of `n` bytes: frees them, moves parked
    /// answers that now fit into their lanes, and wakes whoever waits.
    pub fn written(&self, n: usize) {
        let mut inner = self.lock();
        inner.bytes -= n;
        self.stats.sub(n);
        while let Some((lane, f)) = inner.parked.front() {
            if !inner.has_answer_room(*lane, f.len()) {
                break;
            }
            let (lane, f) = inner.parked.pop_front().expect("front exists");
            inner.parked_bytes -= f.len();
            inner.enqueue(lane, f);
        }
        drop(inner);
        self.ready.notify_one();
        self.space.notify_waiters();
    }

    /// Bytes this queue holds (queued, being written, parked).
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        let inner = self.lock();
        inner.bytes + inner.parked_bytes
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        self.stats.sub(inner.bytes + inner.parked_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(frames: usize, bytes: usize) -> (Outbound, Arc<ServerStats>) {
        let stats = Arc::new(ServerStats::default());
        (Outbound::new(frames, bytes, stats.clone()), stats)
    }

    async fn drain(q: &Outbound) -> Vec<Bytes> {
        let mut out = Vec::new();
        assert!(matches!(q.next(&mut out, 100).await, Next::Frames));
        q.written(out.iter().map(Bytes::len).sum());
        out
    }

    #[tokio::test]
    async fn control_overtakes_bulk_and_overflow_closes() {
        let (q, _) = queue(16, 1 << 20);
        q.push(Lane::Bulk, Bytes::from_static(b"bulk"));
        q.push(Lane::Live, Bytes::from_static(b"live"));
        q.push(Lane::Control, Bytes::from_static(b"ctl"));
        assert_eq!(
            drain(&q).await,
            vec![Bytes::from_static(b"ctl"), Bytes::from_static(b"live"), Bytes::from_static(b"bulk")]
        );
        for _ in 0..17 {
            q.push(Lane::Live, Bytes::from_static(b"x"));
        }
        assert!(q.is_closed());
        assert_eq!(drain(&q).await.len(), 16);
        let mut out = Vec::new();
        match q.next(&mut out, 100).await {
            Next::Closed(r) => assert_eq!(r.code, ErrorCode::SlowConsumer),
            Next::Frames => panic!("expected close"),
        }
    }

    #[tokio::test]
    async fn pushes_over_the_byte_budget_close_the_connection() {
        let (q, stats) = queue(4096, 10_000);
        for _ in 0..9 {
            q.push(Lane::Live, Bytes::from(vec![0u8; 1000]));
        }
        assert!(!q.is_closed());
        assert_eq!(stats.outbound_bytes(), 9_000);
        q.push(Lane::Live, Bytes::from(vec![0u8; 1001]));
        assert!(q.is_closed(), "10,001 bytes exceed a budget of 10,000");
        assert_eq!(stats.outbound_bytes(), 9_000);
        drop(q);
        assert_eq!(stats.outbound_bytes(), 0, "a dropped queue gives its bytes back");
    }

    #[tokio::test]
    async fn answers_park_in_order_and_are_counted_until_written() {
        let (q, stats) = queue(4096, 2000);
        q.answer(Lane::Bulk, Bytes::from(vec![1u8; 800]));
        q.answer(Lane::Bulk, Bytes::from(vec![2u8; 800]));
        q.answer(Lane::Control, Bytes::from(vec![3u8; 10]));
        // The second and third wait behind the first, though the third would fit.
        assert!(!q.accepting());
        assert_eq!(stats.outbound_bytes(), 1610);
        assert_eq!(q.held_bytes(), 1610);
        let mut out = Vec::new();
        assert!(matches!(q.next(&mut out, 100).await, Next::Frames));
        assert_eq!(out.len(), 1);
        // Still counted while the writer holds the batch.
        assert_eq!(stats.outbound_bytes(), 1610);
        q.written(800);
        assert_eq!(stats.outbound_bytes(), 810);
        let next = drain(&q).await;
        assert_eq!(next.iter().map(|f| f[0]).collect::<Vec<_>>(), vec![3, 2]);
        assert!(q.accepting());
        assert_eq!(stats.outbound_bytes(), 0);
    }

    #[tokio::test]
    async fn answers_leave_half_the_budget_to_pushes() {
        let (q, _) = queue(4096, 2000);
        q.answer(Lane::Bulk, Bytes::from(vec![0u8; 1000]));
        q.answer(Lane::Bulk, Bytes::from(vec![0u8; 1000]));
        assert!(!q.accepting(), "the second answer is parked");
        q.push(Lane::Live, Bytes::from(vec![0u8; 1000]));
        assert!(!q.is_closed(), "a push still fits beside the queued answer");
    }

    #[tokio::test]
    async fn a_page_takes_what_fits_and_never_closes() {
        let (q, _) = queue(16, 1 << 20);
        let page: Vec<Bytes> = (0..10).map(|_| Bytes::from_static(b"p")).collect();
        assert_eq!(q.push_some(Lane::Live, &page), 10);
        assert_eq!(q.push_some(Lane::Live, &page), 6, "a lane of 16 frames");
        assert!(!q.is_closed());
        assert_eq!(drain(&q).await.len(), 16);
        assert_eq!(q.push_some(Lane::Live, &page), 10);
    }
}
