//! Admission of connections that have not logged in, per client address:
//! how many may be open at once and how many may start per minute (a token
//! bucket). A connection holds a [`Ticket`] until it logs in or ends; a
//! refused one learns how long to wait.
//!
//! Someone who cannot log in can still open sockets; these limits keep one
//! address from holding the server's connection slots, its handshake work
//! and its password hashing queue.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Addresses tracked before idle entries are swept (a bound on the map,
/// whatever the number of addresses a scan comes from).
const SWEEP_AT: usize = 4096;

pub struct Admission {
    per_address: usize,
    per_minute: u32,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

struct Entry {
    /// Connections from this address that have not logged in.
    open: usize,
    /// Connections this address may still start (refilled over time).
    tokens: f64,
    updated: Instant,
}

/// Why a connection was refused, and when to try again (0: when one of the
/// address's connections logs in or ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub retry_after_ms: u64,
}

/// An admitted connection that has not logged in. Dropping it (the
/// connection ended) or [`Ticket::logged_in`] frees its place.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    held: bool,
}

impl Admission {
    pub fn new(per_address: usize, per_minute: u32) -> Arc<Admission> {
        Arc::new(Admission { per_address, per_minute, table: Mutex::new(HashMap::new()) })
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let now = Instant::now();
        let capacity = f64::from(self.per_minute);
        let per_ms = capacity / 60_000.0;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= SWEEP_AT {
            table.retain(|_, e| e.open > 0 || refilled(e, now, per_ms, capacity) < capacity);
        }
        let entry = table.entry(ip).or_insert(Entry { open: 0, tokens: capacity, updated: now });
        entry.tokens = refilled(entry, now, per_ms, capacity);
        entry.updated = now;
        if entry.open >= self.per_address {
            return Err(Refused {
                message: format!(
                    "too many connections from {ip} have not logged in ({} at most); try again shortly",
                    self.per_address
                ),
                retry_after_ms: 1_000,
            });
        }
        if entry.tokens < 1.0 {
            let wait = ((1.0 - entry.tokens) / per_ms).ceil() as u64;
            return Err(Refused {
                message: format!(
                    "too many new connections from {ip} ({} a minute at most); try again in {} s",
                    self.per_minute,
                    Duration::from_millis(wait).as_secs().max(1)
                ),
                retry_after_ms: wait.max(1),
            });
        }
        entry.tokens -= 1.0;
        entry.open += 1;
        Ok(Ticket { admission: self.clone(), ip, held: true })
    }

    fn release(&self, ip: IpAddr) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = table.get_mut(&ip) {
            e.open = e.open.saturating_sub(1);
        }
    }
}

fn refilled(e: &Entry, now: Instant, per_ms: f64, capacity: f64) -> f64 {
    let elapsed = now.saturating_duration_since(e.updated).as_secs_f64() * 1000.0;
    (e.tokens + elapsed * per_ms).min(capacity)
}

impl Ticket {
    /// The connection logged in: it no longer counts as unauthenticated.
    pub fn logged_in(&mut self) {
        if std::mem::take(&mut self.held) {
            self.admission.release(self.ip);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.logged_in();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_open_connections_and_frees_them_on_login() {
        let a = Admission::new(2, 1000);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut t1 = a.admit(ip).unwrap();
        let _t2 = a.admit(ip).unwrap();
        let refused = a.admit(ip).err().unwrap();
        assert!(refused.retry_after_ms > 0);
        // Another address is not affected.
        let _other = a.admit("10.0.0.2".parse().unwrap()).unwrap();
        t1.logged_in();
        let _t3 = a.admit(ip).unwrap();
    }

    #[test]
    fn limits_the_rate_with_the_time_to_wait() {
        let a = Admission::new(100, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            drop(a.admit(ip).unwrap());
        }
        let refused = a.admit(ip).err().unwrap();
        // One connection per 20 s at 3 a minute.
        assert!(refused.retry_after_ms > 15_000 && refused.retry_after_ms <= 20_000, "{refused:?}");
    }
}
