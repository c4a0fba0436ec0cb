//! Process-wide counters for tests and benchmarks (the server keeps no
//! per-instance metrics yet). Relaxed atomics: exact totals, no ordering.

use std::sync::atomic::{AtomicU64, Ordering};

static FRAMES_SENT: AtomicU64 = AtomicU64::new(0);

/// Counts frames handed to connections' sockets.
pub(crate) fn frames_sent_add(n: usize) {
    FRAMES_SENT.fetch_add(n as u64, Ordering::Relaxed);
}

/// Frames this process has sent to clients (all servers in it, since start).
pub fn frames_sent() -> u64 {
    FRAMES_SENT.load(Ordering::Relaxed)
}
