//! Rate limits: typing notices (relayed, never stored), per person and
//! conversation and per person overall; and messages sent, per person, as a
//! token bucket. In memory only, and bounded: old entries are forgotten when
//! the table grows.

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

/// Messages per person: a token bucket of `burst` tokens refilled at `rate`
/// per second. Checked before a send is queued, so what a flooder sends
/// beyond it costs a decode and a refusal, never a place in the writer's
/// queue.
pub struct SendLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<u64, (Instant, f64)>>,
}

impl SendLimiter {
    /// `rate` 0 turns the limit off.
    pub fn new(rate: u32, burst: u32) -> Self {
        SendLimiter { rate: f64::from(rate), burst: f64::from(burst.max(1)), buckets: Mutex::default() }
    }

    /// Takes a token of `user`'s, or says how many milliseconds until one is back.
    pub fn take(&self, user: u64) -> Result<(), u64> {
        self.take_at(user, Instant::now())
    }

    fn take_at(&self, user: u64, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_ENTRIES {
            // A full bucket is the same as none.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (t, tokens)| *tokens + now.duration_since(*t).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_ENTRIES {
                return Err(1000);
            }
        }
        let (at, tokens) = buckets.entry(user).or_insert((now, self.burst));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err((((1.0 - refilled) / self.rate) * 1000.0).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_with_an_honest_delay() {
        let limiter = SendLimiter::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at(1, t0).is_ok());
        }
        // Empty: a token is back in 100 ms at 10 per second.
        assert_eq!(limiter.take_at(1, t0), Err(100));
        // Others are not held back.
        assert!(limiter.take_at(2, t0).is_ok());
        assert_eq!(limiter.take_at(1, t0 + Duration::from_millis(60)), Err(40));
        assert!(limiter.take_at(1, t0 + Duration::from_millis(100)).is_ok());
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.take_at(1, later).is_ok());
        }
        assert!(limiter.take_at(1, later).is_err());
        // Off.
        let off = SendLimiter::new(0, 0);
        for _ in 0..10_000 {
            assert!(off.take_at(1, t0).is_ok());
        }
    }

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
