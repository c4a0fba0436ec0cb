//! Who is online right now: the live sessions of every user, their presence,
//! and who watches whose presence. Fan-out of live traffic goes through here,
//! committed log entries by [`fan_out`].
//! In-memory only: on a restart clients reconnect and sync, so nothing here
//! needs to be durable.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hutong_protocol::v1::{Message, Presence, PresenceStatus, Priority};
use hutong_protocol::{encode_envelope, Envelope, ErrorCode, Payload};
use tokio::sync::mpsc;

use crate::live::outbound::{Lane, Outbound};

struct Live {
    conn_id: u64,
    session_id: u64,
    outbound: Arc<Outbound>,
    status: PresenceStatus,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<u64, Vec<Live>>,
    /// watched user -> connections that subscribed to them
    watchers: HashMap<u64, HashSet<u64>>,
    /// connection -> (its outbound, whom it watches)
    subscriptions: HashMap<u64, (Arc<Outbound>, Vec<u64>)>,
    /// Bulk connections per user: no pushes, no presence; only kicked.
    bulk: HashMap<u64, Vec<Live>>,
}

#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
}

fn aggregate(lives: Option<&Vec<Live>>) -> PresenceStatus {
    match lives {
        None => PresenceStatus::Offline,
        Some(v) if v.is_empty() => PresenceStatus::Offline,
        Some(v) if v.iter().any(|l| l.status == PresenceStatus::Online) => PresenceStatus::Online,
        Some(_) => PresenceStatus::Away,
    }
}

fn presence_frame(user_id: u64, status: PresenceStatus) -> Bytes {
    encode_envelope(&Envelope::new(0, Payload::Presence(Presence { user_id, status: status as i32 })))
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `change` on a user's sessions and tells watchers if the
    /// aggregated presence moved.
    fn with_presence(&self, user_id: u64, change: impl FnOnce(&mut Inner)) {
        let mut inner = self.lock();
        let before = aggregate(inner.sessions.get(&user_id));
        change(&mut inner);
        let after = aggregate(inner.sessions.get(&user_id));
        if before != after {
            let frame = presence_frame(user_id, after);
            if let Some(watchers) = inner.watchers.get(&user_id) {
                for conn in watchers {
                    if let Some((out, _)) = inner.subscriptions.get(conn) {
                        out.push(Lane::Live, frame.clone());
                    }
                }
            }
        }
    }

    /// A chat connection. Refused (false) when the person already has `max`
    /// of them (0: no cap), so one account cannot take the server's
    /// connections from everyone else.
    pub fn register(
        &self,
        user_id: u64,
        conn_id: u64,
        session_id: u64,
        outbound: Arc<Outbound>,
        max: usize,
    ) -> bool {
        let mut registered = false;
        self.with_presence(user_id, |inner| {
            let mine = inner.sessions.entry(user_id).or_default();
            if max == 0 || mine.len() < max {
                mine.push(Live { conn_id, session_id, outbound, status: PresenceStatus::Online });
                registered = true;
            } else if mine.is_empty() {
                inner.sessions.remove(&user_id);
            }
        });
        registered
    }

    /// A bulk connection (file data): closed with its session, never pushed
    /// to. Refused (false) when the person already has `max` of them, so
    /// nobody can hold more than a few connections' worth of chunks in
    /// server memory.
    pub fn register_bulk(
        &self,
        user_id: u64,
        conn_id: u64,
        session_id: u64,
        outbound: Arc<Outbound>,
        max: usize,
    ) -> bool {
        let mut inner = self.lock();
        let mine = inner.bulk.entry(user_id).or_default();
        if mine.len() >= max {
            return false;
        }
        mine.push(Live { conn_id, session_id, outbound, status: PresenceStatus::Offline });
        true
    }

    pub fn unregister(&self, user_id: u64, conn_id: u64) {
        {
            let mut inner = self.lock();
            if let Some(v) = inner.bulk.get_mut(&user_id) {
                v.retain(|l| l.conn_id != conn_id);
                if v.is_empty() {
                    inner.bulk.remove(&user_id);
                }
            }
        }
        self.with_presence(user_id, |inner| {
            if let Some(v) = inner.sessions.get_mut(&user_id) {
                v.retain(|l| l.conn_id != conn_id);
                if v.is_empty() {
                    inner.sessions.remove(&user_id);
                }
            }
            if let Some((_, watched)) = inner.subscriptions.remove(&conn_id) {
                for w in watched {
                    if let Some(set) = inner.watchers.get_mut(&w) {
                        set.remove(&conn_id);
                        if set.is_empty() {
                            inner.watchers.remove(&w);
                        }
                    }
                }
            }
        });
    }

    pub fn set_status(&self, user_id: u64, conn_id: u64, status: PresenceStatus) {
        self.with_presence(user_id, |inner| {
            for l in inner.sessions.get_mut(&user_id).into_iter().flatten() {
                if l.conn_id == conn_id {
                    l.status = status;
                }
            }
        });
    }

    /// Replaces a connection's presence subscriptions. Their current states
    /// are not queued here: a list may be longer than the live lane (a
    /// department of 5,000), so the caller sends them page by page with
    /// [`Hub::presence_page`] as the client reads.
    pub fn subscribe(&self, conn_id: u64, outbound: Arc<Outbound>, users: Vec<u64>) {
        let mut inner = self.lock();
        if let Some((_, old)) = inner.subscriptions.remove(&conn_id) {
            for w in old {
                if let Some(set) = inner.watchers.get_mut(&w) {
                    set.remove(&conn_id);
                    if set.is_empty() {
                        inner.watchers.remove(&w);
                    }
                }
            }
        }
        for &u in &users {
            inner.watchers.entry(u).or_default().insert(conn_id);
        }
        inner.subscriptions.insert(conn_id, (outbound, users));
    }

    /// Queues the current presence of as many of `users` as fit in the
    /// connection's live lane and returns how many were handled. Done under
    /// the hub's lock, so a change pushed meanwhile is never overtaken by an
    /// older state. People the connection no longer watches (it subscribed
    /// again) are skipped. People in `masked` (whom the caller may not know
    /// of) are shown OFFLINE, as an id nobody has.
    pub fn presence_page(
        &self,
        conn_id: u64,
        outbound: &Outbound,
        users: &[u64],
        masked: &std::collections::HashSet<u64>,
    ) -> usize {
        let inner = self.lock();
        // Index in `users` of each state built.
        let mut at = Vec::with_capacity(users.len());
        let mut frames = Vec::with_capacity(users.len());
        for (i, &u) in users.iter().enumerate() {
            if masked.contains(&u) {
                at.push(i);
                frames.push(presence_frame(u, PresenceStatus::Offline));
            } else if inner.watchers.get(&u).is_some_and(|set| set.contains(&conn_id)) {
                at.push(i);
                frames.push(presence_frame(u, aggregate(inner.sessions.get(&u))));
            }
        }
        let queued = outbound.push_some(Lane::Live, &frames);
        at.get(queued).copied().unwrap_or(users.len())
    }

    /// Queues `frame` on every live session of `users`, except connection `except`.
    pub fn push(&self, users: &[u64], lane: Lane, frame: &Bytes, except: Option<u64>) {
        let inner = self.lock();
        for u in users {
            for l in inner.sessions.get(u).into_iter().flatten() {
                if Some(l.conn_id) != except {
                    l.outbound.push(lane, frame.clone());
                }
            }
        }
    }

    /// Queues `frame` on every live session of one user, except the connections in `except`.
    pub fn push_user(&self, user: u64, lane: Lane, frame: &Bytes, except: &[u64]) {
        let inner = self.lock();
        for l in inner.sessions.get(&user).into_iter().flatten() {
            if !except.contains(&l.conn_id) {
                l.outbound.push(lane, frame.clone());
            }
        }
    }

    /// Closes a user's sessions (all of them, or one) with a reason.
    pub fn kick(&self, user_id: u64, session_id: Option<u64>, code: ErrorCode, message: &str) {
        let inner = self.lock();
        let bulk = inner.bulk.get(&user_id).into_iter().flatten();
        for l in inner.sessions.get(&user_id).into_iter().flatten().chain(bulk) {
            if session_id.is_none_or(|s| s == l.session_id) {
                l.outbound.close(code, message);
            }
        }
    }

    /// Queues `frame` on every live session (rare, small notices such as
    /// "the directory changed").
    pub fn push_all(&self, lane: Lane, frame: &Bytes) {
        let inner = self.lock();
        for l in inner.sessions.values().flatten() {
            l.outbound.push(lane, frame.clone());
        }
    }

    pub fn is_online(&self, user_id: u64) -> bool {
        self.lock().sessions.get(&user_id).is_some_and(|v| !v.is_empty())
    }

    /// Session ids with a live connection.
    pub fn live_sessions(&self) -> HashSet<u64> {
        self.lock().sessions.values().flatten().map(|l| l.session_id).collect()
    }
}

/// A committed log entry for the live sessions of its conversation's members
/// (see [`fan_out`]), handed over by the writer one committed batch at a time. A retried send's original is handed over again:
/// clients store entries by (conversation, seq), so a second push is harmless
/// and a receiver that missed the first one gets it.
pub struct Fanout {
    pub members: Arc<[u64]>,
    pub message: Message,
    /// The connection that asked (it gets the entry in its answer instead).
    pub except: Option<u64>,
}

/// Pushes the entries the writer committed to the live sessions of their
/// conversations' members, in commit order (so receivers see no reordering
/// gaps). Owned by the server, not by any connection: an entry whose sender
/// disconnected right after sending still reaches everyone online. Ends when
/// the writer thread has stopped.
pub async fn fan_out(hub: Arc<Hub>, mut committed: mpsc::Receiver<Vec<Fanout>>) {
    // One batch of the writer at a time: one wake-up per commit, not per entry.
    while let Some(batch) = committed.recv().await {
        for item in batch {
            let urgent = item.message.priority == Priority::Urgent as i32;
            let lane = if urgent { Lane::Control } else { Lane::Live };
            let frame = encode_envelope(&Envelope::new(0, Payload::Message(item.message)));
            hub.push(&item.members, lane, &frame, item.except);
        }
    }
}
