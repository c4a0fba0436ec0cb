//! The bounded outbound queue of one connection, with priority lanes.
//!
//! Control frames (acks, errors, pongs, urgent messages) overtake live pushes,
//! which overtake bulk sync answers. Every lane has a cap: a push that finds
//! its lane full closes the connection with `SLOW_CONSUMER` (the client
//! catches up by sync), so a slow reader can never make the server's memory
//! grow. Answers to the client's own requests wait for space instead, which
//! stops the connection's reader and pushes back on the client.

use std::collections::VecDeque;
use std::sync::Mutex;

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

pub struct Outbound {
    inner: Mutex<Inner>,
    /// Wakes the connection's single writer task.
    ready: Notify,
    /// Wakes answers waiting for room in a lane.
    space: Notify,
}

struct Inner {
    lanes: [VecDeque<Bytes>; 3],
    caps: [usize; 3],
    closed: Option<CloseReason>,
}

pub enum Next {
    Frames,
    Closed(CloseReason),
}

impl Outbound {
    /// `live_cap` frames for live pushes; control gets a quarter of that and
    /// bulk a sixteenth (bulk frames are large sync batches).
    pub fn new(live_cap: usize) -> Self {
        let live_cap = live_cap.max(16);
        Outbound {
            inner: Mutex::new(Inner {
                lanes: Default::default(),
                caps: [live_cap / 4, live_cap, (live_cap / 16).max(4)],
                closed: None,
            }),
            ready: Notify::new(),
            space: Notify::new(),
        }
    }

    /// Shrinks the bulk lane to `cap` frames (a bulk connection's frames are
    /// file chunks of up to 4 MiB).
    pub fn set_bulk_cap(&self, cap: usize) {
        self.lock().caps[Lane::Bulk as usize] = cap.max(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a push. A full lane closes the connection as a slow consumer.
    pub fn push(&self, lane: Lane, frame: Bytes) {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return;
        }
        let i = lane as usize;
        if inner.lanes[i].len() >= inner.caps[i] {
            inner.closed = Some(CloseReason {
                code: ErrorCode::SlowConsumer,
                message: "the connection fell too far behind; reconnect and sync".into(),
            });
        } else {
            inner.lanes[i].push_back(frame);
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// Queues an answer, waiting while its lane is full. Returns false once
    /// the connection is closed.
    pub async fn push_wait(&self, lane: Lane, frame: Bytes) -> bool {
        let i = lane as usize;
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                if inner.closed.is_some() {
                    return false;
                }
                if inner.lanes[i].len() < inner.caps[i] {
                    inner.lanes[i].push_back(frame);
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

    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Waits for frames and moves up to `max` of them into `out`, highest lane
    /// first. Frames queued before a close are still delivered (so a final
    /// error frame reaches the client), then the reason.
    pub async fn next(&self, out: &mut Vec<Bytes>, max: usize) -> Next {
        loop {
            {
                let mut inner = self.lock();
                for lane in 0..3 {
                    while out.len() < max {
                        match inner.lanes[lane].pop_front() {
                            Some(f) => out.push(f),
                            None => break,
                        }
                    }
                }
                if !out.is_empty() {
                    drop(inner);
                    self.space.notify_waiters();
                    return Next::Frames;
                }
                if let Some(reason) = &inner.closed {
                    return Next::Closed(reason.clone());
                }
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn control_overtakes_bulk_and_overflow_closes() {
        let q = Outbound::new(16);
        q.push(Lane::Bulk, Bytes::from_static(b"bulk"));
        q.push(Lane::Live, Bytes::from_static(b"live"));
        q.push(Lane::Control, Bytes::from_static(b"ctl"));
        let mut out = Vec::new();
        assert!(matches!(q.next(&mut out, 10).await, Next::Frames));
        assert_eq!(
            out,
            vec![Bytes::from_static(b"ctl"), Bytes::from_static(b"live"), Bytes::from_static(b"bulk")]
        );
        for _ in 0..17 {
            q.push(Lane::Live, Bytes::from_static(b"x"));
        }
        assert!(q.is_closed());
        out.clear();
        assert!(matches!(q.next(&mut out, 100).await, Next::Frames));
        assert_eq!(out.len(), 16);
        out.clear();
        match q.next(&mut out, 100).await {
            Next::Closed(r) => assert_eq!(r.code, ErrorCode::SlowConsumer),
            Next::Frames => panic!("expected close"),
        }
    }
}
