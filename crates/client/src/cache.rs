//! The local SQLite cache: conversations, members, messages, cursors, the
//! persistent outbox and sync state. The UI reads from here, so history and
//! unread counts work offline; the connection fills it from the server.
//!
//! Every write is idempotent (messages are keyed by conversation and seq), so
//! a message that arrives by push, by sync and as an ack is stored once.

use std::path::Path;

use hutong_protocol::v1::{self, ConversationState, Message, MessageKind};
use prost::Message as _;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::ClientError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    last_seq INTEGER NOT NULL DEFAULT 0,
    -- Every seq up to here is in `messages`: the delivered cursor.
    contig_seq INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    read_seq INTEGER NOT NULL DEFAULT 0,
    reported_delivered INTEGER NOT NULL DEFAULT 0,
    reported_read INTEGER NOT NULL DEFAULT 0,
    last_activity INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS members (
    conversation_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    role INTEGER NOT NULL,
    delivered_seq INTEGER NOT NULL,
    read_seq INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    conversation_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sender_id INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    text TEXT NOT NULL,
    mentions TEXT NOT NULL DEFAULT '',
    reply_to_seq INTEGER NOT NULL DEFAULT 0,
    recalled INTEGER NOT NULL DEFAULT 0,
    system BLOB,
    target_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_msg_id TEXT NOT NULL UNIQUE,
    conversation_id INTEGER NOT NULL,
    text TEXT NOT NULL,
    mentions TEXT NOT NULL DEFAULT '',
    reply_to_seq INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    -- 'pending' until acked (then the row is deleted) or 'failed' with a reason.
    state TEXT NOT NULL DEFAULT 'pending',
    error_code TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, account TEXT NOT NULL, display_name TEXT NOT NULL);
-- The directory as this person may see it, kept current by directory sync.
CREATE TABLE IF NOT EXISTS departments (
    id INTEGER PRIMARY KEY,
    parent_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    sort_order INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    display_name TEXT NOT NULL,
    employee_no TEXT NOT NULL,
    title TEXT NOT NULL,
    phone TEXT NOT NULL,
    email TEXT NOT NULL,
    avatar TEXT NOT NULL,
    primary_department_id INTEGER NOT NULL,
    department_ids TEXT NOT NULL,
    manager_id INTEGER NOT NULL,
    disabled INTEGER NOT NULL,
    roles TEXT NOT NULL,
    pinyin TEXT NOT NULL,
    initials TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS people_by_department ON people (primary_department_id);
-- This device's own view of a conversation (never sent to the server).
CREATE TABLE IF NOT EXISTS conversation_prefs (
    conversation_id INTEGER PRIMARY KEY,
    pinned INTEGER NOT NULL DEFAULT 0,
    muted INTEGER NOT NULL DEFAULT 0
);
"#;

/// A message as the UI sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedMessage {
    pub conversation_id: u64,
    pub seq: u64,
    pub sender_id: u64,
    pub client_msg_id: String,
    pub sent_at_ms: i64,
    pub kind: &'static str,
    pub text: String,
    pub mentions: Vec<u64>,
    pub reply_to_seq: u64,
    pub recalled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub target_seq: u64,
}

impl From<&Message> for CachedMessage {
    fn from(m: &Message) -> Self {
        CachedMessage {
            conversation_id: m.conversation_id,
            seq: m.seq,
            sender_id: m.sender_id,
            client_msg_id: m.client_msg_id.clone(),
            sent_at_ms: m.sent_at_ms,
            kind: kind_name(m.kind),
            text: if m.recalled { String::new() } else { m.text.clone() },
            mentions: m.mentions.clone(),
            reply_to_seq: m.reply_to_seq,
            recalled: m.recalled,
            system: m.system.as_ref().map(describe_system),
            target_seq: m.target_seq,
        }
    }
}

/// A conversation row for lists, with the unread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationSummary {
    pub id: u64,
    pub kind: &'static str,
    pub name: String,
    pub last_seq: u64,
    pub unread: u64,
    pub active: bool,
    pub members: Vec<u64>,
    pub last_text: Option<String>,
    pub last_sender_id: u64,
    pub last_at_ms: i64,
    pub pinned: bool,
    pub muted: bool,
}

/// An outbox entry that has not been acknowledged yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub client_msg_id: String,
    pub conversation_id: u64,
    pub text: String,
    pub mentions: Vec<u64>,
    pub reply_to_seq: u64,
    pub priority: i32,
    pub state: String,
    pub error: Option<String>,
}

pub struct Cache {
    conn: Connection,
}

fn encode_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn decode_ids(s: &str) -> Vec<u64> {
    s.split(',').filter_map(|p| p.parse().ok()).collect()
}

fn kind_name(kind: i32) -> &'static str {
    match MessageKind::try_from(kind) {
        Ok(MessageKind::Text) => "text",
        Ok(MessageKind::System) => "system",
        Ok(MessageKind::Recall) => "recall",
        Ok(MessageKind::File) => "file",
        Err(_) => "unknown",
    }
}

/// A short English description of a system event, for logs and the CLI.
pub fn describe_system(e: &v1::SystemEvent) -> String {
    use v1::system_event::Kind;
    let ids = |v: &[u64]| v.iter().map(|i| format!("#{i}")).collect::<Vec<_>>().join(", ");
    match Kind::try_from(e.kind).unwrap_or(Kind::Unknown) {
        Kind::GroupCreated => {
            format!("#{} created the group {:?} with {}", e.actor_id, e.name, ids(&e.user_ids))
        }
        Kind::MembersAdded => format!("#{} added {}", e.actor_id, ids(&e.user_ids)),
        Kind::MemberRemoved => format!("#{} removed {}", e.actor_id, ids(&e.user_ids)),
        Kind::MemberLeft => format!("{} left", ids(&e.user_ids)),
        Kind::Renamed => format!("#{} renamed the group to {:?}", e.actor_id, e.name),
        Kind::RoleChanged => format!("#{} changed the role of {}", e.actor_id, ids(&e.user_ids)),
        Kind::Unknown => "unknown event".into(),
    }
}

const MESSAGE_COLUMNS: &str =
    "conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text, mentions, reply_to_seq, recalled, system, target_seq";

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CachedMessage> {
    let system: Option<Vec<u8>> = r.get(10)?;
    Ok(CachedMessage {
        conversation_id: r.get(0)?,
        seq: r.get(1)?,
        sender_id: r.get(2)?,
        client_msg_id: r.get(3)?,
        sent_at_ms: r.get(4)?,
        kind: kind_name(r.get(5)?),
        text: r.get(6)?,
        mentions: decode_ids(&r.get::<_, String>(7)?),
        reply_to_seq: r.get(8)?,
        recalled: r.get(9)?,
        system: system.and_then(|b| v1::SystemEvent::decode(&b[..]).ok()).map(|e| describe_system(&e)),
        target_seq: r.get(11)?,
    })
}

impl Cache {
    pub fn open(path: &Path) -> Result<Cache, ClientError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ClientError::Cache(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Everything but the outbox can be fetched again from the server, so
        // NORMAL (durable across crashes, not power cuts) is enough; `enqueue`
        // switches to FULL for the one write that must survive a power cut.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Cache { conn })
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, ClientError> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn user_id(&self) -> Result<u64, ClientError> {
        Ok(self.meta("user_id")?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    pub fn sync_version(&self) -> Result<u64, ClientError> {
        Ok(self.meta("sync_version")?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Stores conversation states from a sync or a group change.
    pub fn apply_conversations(&mut self, states: &[ConversationState]) -> Result<(), ClientError> {
        let tx = self.conn.transaction()?;
        for s in states {
            tx.execute(
                "INSERT INTO conversations (id, kind, name, last_seq, active) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET kind = ?2, name = ?3, last_seq = max(last_seq, ?4), active = ?5",
                params![s.id, s.kind, s.name, s.last_seq, s.active],
            )?;
            if s.first_seq > 1 {
                // Entries below first_seq were removed by retention: not a gap to fill.
                tx.execute(
                    "UPDATE conversations SET contig_seq = max(contig_seq, ?2 - 1) WHERE id = ?1",
                    params![s.id, s.first_seq],
                )?;
                advance_contig(&tx, s.id)?;
            }
            if s.active {
                tx.execute("DELETE FROM members WHERE conversation_id = ?1", [s.id])?;
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO members (conversation_id, user_id, role, delivered_seq, read_seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for m in &s.members {
                    stmt.execute(params![s.id, m.user_id, m.role, m.delivered_seq, m.read_seq])?;
                }
            } else {
                tx.execute("DELETE FROM members WHERE conversation_id = ?1", [s.id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn set_sync_version(&self, version: u64) -> Result<(), ClientError> {
        self.set_meta("sync_version", &version.to_string())
    }

    pub fn knows_conversation(&self, id: u64) -> Result<bool, ClientError> {
        Ok(self.conn.query_row("SELECT count(*) FROM conversations WHERE id = ?1", [id], |r| r.get(0))?)
    }

    /// Stores messages (idempotently), applies recalls, advances the
    /// contiguous cursor, and returns the entries that were new.
    pub fn insert_messages(&mut self, messages: &[Message]) -> Result<Vec<Message>, ClientError> {
        let tx = self.conn.transaction()?;
        let mut fresh = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text, mentions, reply_to_seq, recalled, system, target_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT DO NOTHING",
            )?;
            let mut ensure_conv = tx.prepare_cached(
                "INSERT INTO conversations (id, kind, last_seq, last_activity) VALUES (?1, 0, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET last_seq = max(last_seq, ?2), last_activity = max(last_activity, ?3)",
            )?;
            for m in messages {
                let n = insert.execute(params![
                    m.conversation_id,
                    m.seq,
                    m.sender_id,
                    m.client_msg_id,
                    m.sent_at_ms,
                    m.kind,
                    m.text,
                    encode_ids(&m.mentions),
                    m.reply_to_seq,
                    m.recalled,
                    m.system.as_ref().map(|s| s.encode_to_vec()),
                    m.target_seq
                ])?;
                ensure_conv.execute(params![m.conversation_id, m.seq, m.sent_at_ms])?;
                touched.insert(m.conversation_id);
                if n == 1 {
                    if m.kind == MessageKind::Recall as i32 {
                        tx.execute(
                            "UPDATE messages SET recalled = 1, text = '' WHERE conversation_id = ?1 AND seq = ?2",
                            params![m.conversation_id, m.target_seq],
                        )?;
                    }
                    fresh.push(m.clone());
                }
            }
        }
        for id in touched {
            advance_contig(&tx, id)?;
        }
        tx.commit()?;
        Ok(fresh)
    }

    /// Conversations whose cache is behind the server's last known seq.
    pub fn gaps(&self) -> Result<Vec<(u64, u64, u64)>, ClientError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, contig_seq, last_seq FROM conversations WHERE contig_seq < last_seq ORDER BY last_activity DESC",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn contig_seq(&self, conversation_id: u64) -> Result<u64, ClientError> {
        Ok(self
            .conn
            .query_row("SELECT contig_seq FROM conversations WHERE id = ?1", [conversation_id], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// Moves the server's answer to a send from the outbox into the log, in one transaction.
    /// Returns the message when this stored it (not when a sync got there first).
    pub fn ack(
        &mut self,
        entry: &OutboxEntry,
        ack: &v1::SendAck,
        me: u64,
    ) -> Result<Option<Message>, ClientError> {
        let message = Message {
            conversation_id: ack.conversation_id,
            seq: ack.seq,
            sender_id: me,
            client_msg_id: entry.client_msg_id.clone(),
            sent_at_ms: ack.sent_at_ms,
            kind: MessageKind::Text as i32,
            text: entry.text.clone(),
            mentions: entry.mentions.clone(),
            reply_to_seq: entry.reply_to_seq,
            ..Default::default()
        };
        let fresh = self.insert_messages(std::slice::from_ref(&message))?.pop();
        self.conn.execute("DELETE FROM outbox WHERE id = ?1", [entry.id])?;
        // What I sent, I have read.
        self.mark_read(ack.conversation_id, ack.seq)?;
        Ok(fresh)
    }

    pub fn enqueue(
        &self,
        client_msg_id: &str,
        conversation_id: u64,
        text: &str,
        mentions: &[u64],
        reply_to_seq: u64,
        priority: i32,
    ) -> Result<(), ClientError> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = self.conn.execute(
            "INSERT INTO outbox (client_msg_id, conversation_id, text, mentions, reply_to_seq, priority, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![client_msg_id, conversation_id, text, encode_ids(mentions), reply_to_seq, priority, now_ms()],
        );
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        result?;
        Ok(())
    }

    /// Pending outbox entries in the order they were written.
    pub fn outbox(&self, after_id: i64, limit: usize) -> Result<Vec<OutboxEntry>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, client_msg_id, conversation_id, text, mentions, reply_to_seq, priority, state, error
             FROM outbox WHERE state = 'pending' AND id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after_id, limit as i64], outbox_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// All unacknowledged entries (pending and failed), for the UI.
    pub fn outbox_all(&self, conversation_id: Option<u64>) -> Result<Vec<OutboxEntry>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, client_msg_id, conversation_id, text, mentions, reply_to_seq, priority, state, error
             FROM outbox WHERE ?1 IS NULL OR conversation_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([conversation_id], outbox_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn fail(&self, id: i64, code: &str, error: &str) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'failed', error_code = ?2, error = ?3 WHERE id = ?1",
            params![id, code, error],
        )?;
        Ok(())
    }

    /// Puts a failed entry back in line (the person pressed "retry").
    pub fn retry(&self, client_msg_id: &str) -> Result<bool, ClientError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET state = 'pending', error_code = NULL, error = NULL WHERE client_msg_id = ?1 AND state = 'failed'",
            [client_msg_id],
        )? == 1)
    }

    pub fn mark_read(&self, conversation_id: u64, seq: u64) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET read_seq = max(read_seq, min(?2, last_seq)) WHERE id = ?1",
            params![conversation_id, seq],
        )?;
        Ok(())
    }

    /// Cursors the server has not been told about: (conversation, delivered, read).
    pub fn unreported_cursors(&self) -> Result<Vec<(u64, u64, u64)>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, contig_seq, read_seq FROM conversations
             WHERE active AND (contig_seq > reported_delivered OR read_seq > reported_read) LIMIT 200",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn cursors_reported(
        &self,
        conversation_id: u64,
        delivered: u64,
        read: u64,
    ) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET reported_delivered = max(reported_delivered, ?2), reported_read = max(reported_read, ?3) WHERE id = ?1",
            params![conversation_id, delivered, read],
        )?;
        Ok(())
    }

    /// A member's cursor moved (pushed by the server).
    pub fn apply_cursor(&self, c: &v1::Cursor, me: u64) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE members SET delivered_seq = max(delivered_seq, ?3), read_seq = max(read_seq, ?4)
             WHERE conversation_id = ?1 AND user_id = ?2",
            params![c.conversation_id, c.user_id, c.delivered_seq, c.read_seq],
        )?;
        if c.user_id == me {
            // Read on another of my devices.
            self.conn.execute(
                "UPDATE conversations SET read_seq = max(read_seq, ?2), reported_read = max(reported_read, ?2) WHERE id = ?1",
                params![c.conversation_id, c.read_seq],
            )?;
        }
        Ok(())
    }

    /// A page of history, oldest first: the `limit` messages before
    /// `before_seq` (or the newest when `None`).
    pub fn history(
        &self,
        conversation_id: u64,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CachedMessage>, ClientError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let before = before_seq.unwrap_or(i64::MAX as u64);
        let rows = stmt.query_map(params![conversation_id, before, limit as i64], message_from_row)?;
        let mut v: Vec<CachedMessage> = rows.collect::<Result<_, _>>()?;
        v.reverse();
        Ok(v)
    }

    /// Every message of a conversation in seq order (for checks and export).
    pub fn all_messages(&self, conversation_id: u64) -> Result<Vec<CachedMessage>, ClientError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY seq");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([conversation_id], message_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn conversations(&self) -> Result<Vec<ConversationSummary>, ClientError> {
        let me = self.user_id()?;
        let mut stmt = self.conn.prepare(
            "SELECT c.id, c.kind, c.name, c.last_seq, c.active,
                (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id AND m.seq > c.read_seq
                    AND m.sender_id != ?1 AND m.kind = 0 AND m.recalled = 0),
                (SELECT group_concat(user_id) FROM members WHERE conversation_id = c.id),
                l.text, coalesce(l.sender_id, 0), coalesce(l.sent_at, 0),
                coalesce(p.pinned, 0), coalesce(p.muted, 0)
             FROM conversations c
             LEFT JOIN messages l ON l.conversation_id = c.id AND l.seq = (SELECT max(seq) FROM messages m
                WHERE m.conversation_id = c.id AND m.kind = 0)
             LEFT JOIN conversation_prefs p ON p.conversation_id = c.id
             ORDER BY coalesce(p.pinned, 0) DESC, c.last_activity DESC, c.id",
        )?;
        let rows = stmt.query_map([me], |r| {
            Ok(ConversationSummary {
                id: r.get(0)?,
                kind: if r.get::<_, i32>(1)? == v1::ConversationKind::Group as i32 {
                    "group"
                } else {
                    "direct"
                },
                name: r.get(2)?,
                last_seq: r.get(3)?,
                active: r.get(4)?,
                unread: r.get(5)?,
                members: decode_ids(&r.get::<_, Option<String>>(6)?.unwrap_or_default()),
                last_text: r.get(7)?,
                last_sender_id: r.get(8)?,
                last_at_ms: r.get(9)?,
                pinned: r.get(10)?,
                muted: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Member cursors of a conversation: (user, delivered, read).
    pub fn member_cursors(&self, conversation_id: u64) -> Result<Vec<(u64, u64, u64)>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user_id, delivered_seq, read_seq FROM members WHERE conversation_id = ?1 ORDER BY user_id",
        )?;
        let rows = stmt.query_map([conversation_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn remember_users(&self, users: &[v1::User]) -> Result<(), ClientError> {
        for u in users {
            self.conn.execute(
                "INSERT INTO users (id, account, display_name) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET account = ?2, display_name = ?3",
                params![u.id, u.account, u.display_name],
            )?;
        }
        Ok(())
    }

    pub fn user_by_account(&self, account: &str) -> Result<Option<u64>, ClientError> {
        Ok(self
            .conn
            .query_row("SELECT id FROM users WHERE account = ?1", [account], |r| r.get(0))
            .optional()?)
    }

    pub fn account_of(&self, id: u64) -> Result<Option<String>, ClientError> {
        Ok(self.conn.query_row("SELECT account FROM users WHERE id = ?1", [id], |r| r.get(0)).optional()?)
    }

    /// The name to show for a user: the directory's display name, else the
    /// looked-up user's, else the account; `None` if this user is unknown here.
    pub fn display_name(&self, id: u64) -> Result<Option<String>, ClientError> {
        Ok(self
            .conn
            .query_row(
                "SELECT coalesce(
                    (SELECT nullif(display_name, '') FROM people WHERE id = ?1),
                    (SELECT coalesce(nullif(display_name, ''), account) FROM users WHERE id = ?1))",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn set_pinned(&self, conversation_id: u64, pinned: bool) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO conversation_prefs (conversation_id, pinned) VALUES (?1, ?2)
             ON CONFLICT (conversation_id) DO UPDATE SET pinned = ?2",
            params![conversation_id, pinned],
        )?;
        Ok(())
    }

    pub fn set_muted(&self, conversation_id: u64, muted: bool) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO conversation_prefs (conversation_id, muted) VALUES (?1, ?2)
             ON CONFLICT (conversation_id) DO UPDATE SET muted = ?2",
            params![conversation_id, muted],
        )?;
        Ok(())
    }

    pub fn is_muted(&self, conversation_id: u64) -> Result<bool, ClientError> {
        Ok(self
            .conn
            .query_row(
                "SELECT muted FROM conversation_prefs WHERE conversation_id = ?1",
                [conversation_id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// Text messages containing `query` (any language, case-insensitive for
    /// ASCII), newest first. A substring scan: the cache of one person stays
    /// in the low hundreds of thousands of messages.
    pub fn search_messages(&self, query: &str, limit: usize) -> Result<Vec<CachedMessage>, ClientError> {
        let q = query.trim();
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let pattern = format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE kind = 0 AND recalled = 0 AND text LIKE ?1 ESCAPE '\\'
             ORDER BY sent_at DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![pattern, limit as i64], message_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A department as the directory browser shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectoryDepartment {
    pub id: u64,
    pub parent_id: u64,
    pub name: String,
    pub sort_order: i64,
}

/// A person from the cached directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectoryPerson {
    pub id: u64,
    pub account: String,
    pub display_name: String,
    pub employee_no: String,
    pub title: String,
    pub phone: String,
    pub email: String,
    pub avatar: String,
    pub primary_department_id: u64,
    pub department_ids: Vec<u64>,
    pub manager_id: u64,
    pub disabled: bool,
    pub roles: Vec<String>,
}

const PERSON_COLUMNS: &str = "id, account, display_name, employee_no, title, phone, email, avatar, primary_department_id, department_ids, manager_id, disabled, roles";

fn person_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DirectoryPerson> {
    let roles: String = r.get(12)?;
    Ok(DirectoryPerson {
        id: r.get(0)?,
        account: r.get(1)?,
        display_name: r.get(2)?,
        employee_no: r.get(3)?,
        title: r.get(4)?,
        phone: r.get(5)?,
        email: r.get(6)?,
        avatar: r.get(7)?,
        primary_department_id: r.get(8)?,
        department_ids: decode_ids(&r.get::<_, String>(9)?),
        manager_id: r.get(10)?,
        disabled: r.get(11)?,
        roles: roles.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect(),
    })
}

impl Cache {
    /// (version, epoch) of the cached directory.
    pub fn directory_version(&self) -> Result<(u64, u64), ClientError> {
        let get =
            |k| -> Result<u64, ClientError> { Ok(self.meta(k)?.and_then(|v| v.parse().ok()).unwrap_or(0)) };
        Ok((get("dir_version")?, get("dir_epoch")?))
    }

    /// Applies one directory answer; `reset` drops the old copy first.
    pub fn apply_directory(&mut self, d: &v1::DirectoryDelta) -> Result<bool, ClientError> {
        let tx = self.conn.transaction()?;
        if d.reset {
            tx.execute("DELETE FROM departments", [])?;
            tx.execute("DELETE FROM people", [])?;
        }
        for dep in &d.departments {
            tx.execute(
                "INSERT INTO departments (id, parent_id, name, sort_order) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET parent_id = ?2, name = ?3, sort_order = ?4",
                params![dep.id, dep.parent_id, dep.name, dep.sort_order],
            )?;
        }
        for p in &d.people {
            tx.execute(
                "INSERT OR REPLACE INTO people (id, account, display_name, employee_no, title, phone, email, avatar,
                    primary_department_id, department_ids, manager_id, disabled, roles, pinyin, initials)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    p.id,
                    p.account,
                    p.display_name,
                    p.employee_no,
                    p.title,
                    p.phone,
                    p.email,
                    p.avatar,
                    p.primary_department_id,
                    encode_ids(&p.department_ids),
                    p.manager_id,
                    p.disabled,
                    p.roles.join(","),
                    p.pinyin,
                    p.pinyin_initials
                ],
            )?;
            tx.execute(
                "INSERT INTO users (id, account, display_name) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET account = ?2, display_name = ?3",
                params![p.id, p.account, p.display_name],
            )?;
        }
        for id in &d.removed_departments {
            tx.execute("DELETE FROM departments WHERE id = ?1", [id])?;
        }
        for id in &d.removed_people {
            tx.execute("DELETE FROM people WHERE id = ?1", [id])?;
        }
        for (k, v) in [("dir_version", d.version), ("dir_epoch", d.epoch)] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![k, v.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(d.reset
            || !d.departments.is_empty()
            || !d.people.is_empty()
            || !d.removed_departments.is_empty()
            || !d.removed_people.is_empty())
    }

    /// Sub-departments and people of a department (0: the top level), in display order.
    pub fn directory_children(
        &self,
        parent: u64,
    ) -> Result<(Vec<DirectoryDepartment>, Vec<DirectoryPerson>), ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, parent_id, name, sort_order FROM departments WHERE parent_id = ?1 ORDER BY sort_order, id",
        )?;
        let departments = stmt
            .query_map([parent], |r| {
                Ok(DirectoryDepartment {
                    id: r.get(0)?,
                    parent_id: r.get(1)?,
                    name: r.get(2)?,
                    sort_order: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM people WHERE primary_department_id = ?1
                OR (',' || department_ids || ',') LIKE '%,' || ?1 || ',%' ORDER BY pinyin, id"
        );
        let people = self
            .conn
            .prepare_cached(&sql)?
            .query_map([parent], person_from_row)?
            .collect::<Result<_, _>>()?;
        Ok((departments, people))
    }

    pub fn directory_department(&self, id: u64) -> Result<Option<DirectoryDepartment>, ClientError> {
        Ok(self
            .conn
            .query_row("SELECT id, parent_id, name, sort_order FROM departments WHERE id = ?1", [id], |r| {
                Ok(DirectoryDepartment {
                    id: r.get(0)?,
                    parent_id: r.get(1)?,
                    name: r.get(2)?,
                    sort_order: r.get(3)?,
                })
            })
            .optional()?)
    }

    pub fn directory_person_by_id(&self, id: u64) -> Result<Option<DirectoryPerson>, ClientError> {
        let sql = format!("SELECT {PERSON_COLUMNS} FROM people WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], person_from_row).optional()?)
    }

    /// People in a department and all departments below it.
    pub fn department_member_count(&self, id: u64) -> Result<u64, ClientError> {
        Ok(self.conn.query_row(
            "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION SELECT d.id FROM departments d JOIN sub ON d.parent_id = sub.id)
             SELECT count(*) FROM people WHERE disabled = 0 AND primary_department_id IN (SELECT id FROM sub)",
            [id],
            |r| r.get(0),
        )?)
    }

    pub fn directory_person(&self, account: &str) -> Result<Option<DirectoryPerson>, ClientError> {
        let sql = format!("SELECT {PERSON_COLUMNS} FROM people WHERE account = ?1 COLLATE NOCASE");
        Ok(self.conn.query_row(&sql, [account], person_from_row).optional()?)
    }

    /// Finds people by name (Chinese characters), full pinyin or initials
    /// (张三: "zhangsan", "zs"), account, title or department name.
    pub fn search_directory(&self, query: &str, limit: usize) -> Result<Vec<DirectoryPerson>, ClientError> {
        let q = query.trim();
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let escape = |s: &str| s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let contains = format!("%{}%", escape(q));
        let prefix = format!("{}%", escape(&q.to_lowercase()));
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM people WHERE display_name LIKE ?1 ESCAPE '\\' OR account LIKE ?2 ESCAPE '\\'
                OR pinyin LIKE ?2 ESCAPE '\\' OR initials LIKE ?2 ESCAPE '\\' OR title LIKE ?1 ESCAPE '\\'
                OR employee_no = ?3
                OR primary_department_id IN (SELECT id FROM departments WHERE name LIKE ?1 ESCAPE '\\')
             ORDER BY (display_name = ?3 OR account = ?3 OR pinyin = ?4 OR initials = ?4) DESC, pinyin, id LIMIT ?5"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows =
            stmt.query_map(params![contains, prefix, q, q.to_lowercase(), limit as i64], person_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn directory_counts(&self) -> Result<(u64, u64), ClientError> {
        let d = self.conn.query_row("SELECT count(*) FROM departments", [], |r| r.get(0))?;
        let p = self.conn.query_row("SELECT count(*) FROM people", [], |r| r.get(0))?;
        Ok((d, p))
    }
}

fn outbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: r.get(0)?,
        client_msg_id: r.get(1)?,
        conversation_id: r.get(2)?,
        text: r.get(3)?,
        mentions: decode_ids(&r.get::<_, String>(4)?),
        reply_to_seq: r.get(5)?,
        priority: r.get(6)?,
        state: r.get(7)?,
        error: r.get(8)?,
    })
}

/// Advances `contig_seq` over every stored seq that follows it.
fn advance_contig(conn: &Connection, conversation_id: u64) -> rusqlite::Result<()> {
    let contig: u64 =
        conn.query_row("SELECT contig_seq FROM conversations WHERE id = ?1", [conversation_id], |r| {
            r.get(0)
        })?;
    let mut stmt =
        conn.prepare_cached("SELECT seq FROM messages WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq")?;
    let mut next = contig;
    let mut rows = stmt.query(params![conversation_id, contig])?;
    while let Some(row) = rows.next()? {
        let seq: u64 = row.get(0)?;
        if seq != next + 1 {
            break;
        }
        next = seq;
    }
    drop(rows);
    if next != contig {
        conn.execute(
            "UPDATE conversations SET contig_seq = ?2 WHERE id = ?1",
            params![conversation_id, next],
        )?;
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: u64, seq: u64) -> Message {
        Message {
            conversation_id: conv,
            seq,
            sender_id: 2,
            client_msg_id: format!("m{seq}"),
            text: format!("t{seq}"),
            ..Default::default()
        }
    }

    #[test]
    fn inserts_are_idempotent_and_contig_tracks_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        assert_eq!(c.insert_messages(&[msg(1, 1), msg(1, 2), msg(1, 4)]).unwrap().len(), 3);
        assert_eq!(c.contig_seq(1).unwrap(), 2);
        assert_eq!(c.gaps().unwrap(), vec![(1, 2, 4)]);
        assert_eq!(c.insert_messages(&[msg(1, 2), msg(1, 3)]).unwrap().len(), 1);
        assert_eq!(c.contig_seq(1).unwrap(), 4);
        assert!(c.gaps().unwrap().is_empty());
        assert_eq!(c.all_messages(1).unwrap().len(), 4);
    }

    #[test]
    fn recall_blanks_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        let recall =
            Message { kind: MessageKind::Recall as i32, target_seq: 1, text: String::new(), ..msg(1, 2) };
        c.insert_messages(&[msg(1, 1), recall]).unwrap();
        let all = c.all_messages(1).unwrap();
        assert!(all[0].recalled);
        assert_eq!(all[0].text, "");
    }

    #[test]
    fn pinned_conversations_lead_and_muting_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        let at = |conv, seq, sent_at_ms| Message { sent_at_ms, ..msg(conv, seq) };
        c.insert_messages(&[at(1, 1, 1_000), at(2, 1, 2_000)]).unwrap();
        let order = |c: &Cache| c.conversations().unwrap().iter().map(|x| x.id).collect::<Vec<_>>();
        assert_eq!(order(&c), vec![2, 1], "the most recent first");
        c.set_pinned(1, true).unwrap();
        assert_eq!(order(&c), vec![1, 2], "pinned first");
        c.set_muted(2, true).unwrap();
        let list = c.conversations().unwrap();
        assert!(list[0].pinned && !list[0].muted && list[1].muted && !list[1].pinned);
        assert_eq!(
            (list[1].last_sender_id, list[1].last_at_ms, list[1].last_text.as_deref()),
            (2, 2_000, Some("t1"))
        );
        assert!(c.is_muted(2).unwrap() && !c.is_muted(1).unwrap());
        c.set_pinned(1, false).unwrap();
        assert_eq!(order(&c), vec![2, 1]);
    }

    #[test]
    fn message_search_finds_chinese_and_treats_wildcards_literally() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        let text = |seq, t: &str| Message { text: t.into(), sent_at_ms: seq as i64, ..msg(1, seq) };
        c.insert_messages(&[
            text(1, "请把季度报告发给财务部"),
            text(2, "100% done"),
            text(3, "1000 done"),
            text(4, "Report ready"),
        ])
        .unwrap();
        let found = |q: &str| c.search_messages(q, 10).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(found("季度"), vec![1]);
        assert_eq!(found("100%"), vec![2], "% is not a wildcard");
        assert_eq!(found("report"), vec![4], "ASCII case does not matter");
        assert!(found("  ").is_empty());
    }

    #[test]
    fn display_names_prefer_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(&dir.path().join("c.db")).unwrap();
        assert_eq!(c.display_name(7).unwrap(), None);
        c.remember_users(&[v1::User { id: 7, account: "lina".into(), ..Default::default() }]).unwrap();
        assert_eq!(c.display_name(7).unwrap().as_deref(), Some("lina"));
        c.remember_users(&[v1::User {
            id: 7,
            account: "lina".into(),
            display_name: "李娜".into(),
            ..Default::default()
        }])
        .unwrap();
        assert_eq!(c.display_name(7).unwrap().as_deref(), Some("李娜"));
    }
}
