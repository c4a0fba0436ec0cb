//! Rate limits of traffic the server relays without storing it: typing
//! notices, per person and conversation and per person overall. In memory
//! only, and bounded: old entries are forgotten when the table grows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Typing notices one person may have relayed per interval over all conversations.
const PER_PERSON: u32 = 5;
/// Entries kept before old ones are swept (and, should they all be recent,
/// new notices refused until some age).
const MAX_ENTRIES: usize = 100_000;

pub struct TypingLimiter {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// (person, conversation) -> when a notice was last relayed.
    last: HashMap<(u64, u64), Instant>,
    /// person -> (start of the current interval, notices relayed in it).
    person: HashMap<u64, (Instant, u32)>,
}

impl TypingLimiter {
    pub fn new(interval: Duration) -> Self {
        TypingLimiter { interval, state: Mutex::default() }
    }

    /// Whether a typing notice of `user` in `conversation` may be relayed now
    /// (and counts it if so).
    pub fn allow(&self, user: u64, conversation: u64) -> bool {
        self.allow_at(user, conversation, Instant::now())
    }

    fn allow_at(&self, user: u64, conversation: u64, now: Instant) -> bool {
        let interval = self.interval;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.last.len() >= MAX_ENTRIES || s.person.len() >= MAX_ENTRIES {
            s.last.retain(|_, t| now.duration_since(*t) < interval);
            s.person.retain(|_, (t, _)| now.duration_since(*t) < interval);
            if s.last.len() >= MAX_ENTRIES || s.person.len() >= MAX_ENTRIES {
                return false;
            }
        }
        if s.last.get(&(user, conversation)).is_some_and(|t| now.duration_since(*t) < interval) {
            return false;
        }
        let (start, count) = s.person.entry(user).or_insert((now, 0));
        if now.duration_since(*start) >= interval {
            (*start, *count) = (now, 0);
        }
        if *count >= PER_PERSON {
            return false;
        }
        *count += 1;
        s.last.insert((user, conversation), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_per_conversation_and_a_few_per_person_per_interval() {
        let limiter = TypingLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(limiter.allow_at(1, 10, t0));
        assert!(!limiter.allow_at(1, 10, t0 + Duration::from_millis(999)));
        // Someone else in the same conversation is not held back.
        assert!(limiter.allow_at(2, 10, t0));
        // Person 1 in four more conversations: 5 in all, then no more.
        for c in 11..15 {
            assert!(limiter.allow_at(1, c, t0));
        }
        assert!(!limiter.allow_at(1, 15, t0));
        // The next interval starts afresh.
        let t1 = t0 + Duration::from_secs(1);
        assert!(limiter.allow_at(1, 10, t1));
        assert!(limiter.allow_at(1, 15, t1));
    }
}
