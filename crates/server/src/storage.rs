//! SQLite storage: opening the database, migrations, and a small pool of read
//! connections. All writes to conversation logs go through [`crate::writer`];
//! this module owns the schema and the read queries.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hutong_protocol::v1::{self, ConversationState, Member, Message};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ServiceError;

pub mod sqlite;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    is_admin INTEGER NOT NULL DEFAULT 0,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    device TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    UNIQUE (user_id, device)
);
-- Cross-process signal: the running server closes the sessions named here.
CREATE TABLE revocations (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    session_id INTEGER,
    reason INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    direct_key TEXT UNIQUE,
    last_seq INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE members (
    conversation_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    role INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    -- For members who left: the last seq they may still read.
    until_seq INTEGER,
    delivered_seq INTEGER NOT NULL DEFAULT 0,
    read_seq INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id);
CREATE TABLE messages (
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
    priority INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_dedupe ON messages (sender_id, client_msg_id);
"#,
    r#"
-- Directory: departments, people's directory fields, roles.
CREATE TABLE departments (
    id INTEGER PRIMARY KEY,
    parent_id INTEGER REFERENCES departments(id),
    name TEXT NOT NULL,
    sort_order INTEGER NOT NULL DEFAULT 0,
    hidden INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL
);
CREATE INDEX departments_by_parent ON departments (parent_id);
CREATE INDEX departments_by_version ON departments (version);
ALTER TABLE users ADD COLUMN employee_no TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN phone TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN avatar TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN primary_department_id INTEGER REFERENCES departments(id);
ALTER TABLE users ADD COLUMN manager_id INTEGER REFERENCES users(id);
-- Comma-separated: admin, auditor, agent. Everyone is staff.
ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN dir_version INTEGER NOT NULL DEFAULT 0;
-- Search keys: full pinyin and initials of the display name, lower case.
ALTER TABLE users ADD COLUMN pinyin TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN initials TEXT NOT NULL DEFAULT '';
UPDATE users SET roles = 'admin' WHERE is_admin = 1;
CREATE INDEX users_by_dir_version ON users (dir_version);
CREATE INDEX users_by_department ON users (primary_department_id);
-- Further departments beyond the primary one.
CREATE TABLE user_departments (
    user_id INTEGER NOT NULL REFERENCES users(id),
    department_id INTEGER NOT NULL REFERENCES departments(id),
    PRIMARY KEY (user_id, department_id)
) WITHOUT ROWID;
CREATE INDEX user_departments_by_department ON user_departments (department_id);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO settings (key, value) VALUES ('dir_version', '0'), ('dir_epoch', '1'),
    ('retention_direct_days', '0'), ('retention_group_days', '0');
-- Append-only, hash-chained (HMAC-SHA-256) log of administrator and auditor actions.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_id INTEGER,
    actor_account TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
-- Retention removes the oldest entries; seqs below first_seq are gone on purpose.
ALTER TABLE conversations ADD COLUMN first_seq INTEGER NOT NULL DEFAULT 1;
-- Keyword search of the archive: trigram full-text index keyed by
-- (conversation_id << 32 | seq); queries shorter than three characters use LIKE.
CREATE VIRTUAL TABLE message_text USING fts5 (text, content = '', contentless_delete = 1, tokenize = 'trigram');
INSERT INTO message_text (rowid, text) SELECT (conversation_id << 32) | seq, text FROM messages WHERE kind = 0;
CREATE INDEX messages_by_time ON messages (sent_at);
"#,
    r#"
-- Text messages not yet in the keyword index. The writer indexes them when it
-- has nothing else to do, so indexing never delays an acknowledgement.
CREATE TABLE message_text_pending (
    conversation_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
"#,
    r#"
-- Files (see files.rs): manifests of content-addressed chunks stored on disk.
CREATE TABLE files (
    id BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    content_hash BLOB NOT NULL,
    chunks BLOB NOT NULL,          -- 32-byte BLAKE3 hashes, in order
    committed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
-- Who uploaded what: quotas count it; uploaders may read their files.
CREATE TABLE file_owners (
    user_id INTEGER NOT NULL,
    file_id BLOB NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, file_id)
) WITHOUT ROWID;
CREATE INDEX file_owners_by_file ON file_owners (file_id);
-- Which messages hold which files (a folder's: its manifest and its files).
CREATE TABLE file_refs (
    file_id BLOB NOT NULL,
    conversation_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (file_id, conversation_id, seq)
) WITHOUT ROWID;
CREATE INDEX file_refs_by_message ON file_refs (conversation_id, seq);
ALTER TABLE messages ADD COLUMN attachment BLOB;
"#,
    r#"
-- Sync walks a person's memberships in the order of (version, conversation
-- id). The version is computed (a member row's or, while active, its
-- conversation's, whichever is newer), so no index can hold that order; this
-- one makes the walk read the index alone (the primary key's conversation_id
-- rides along) instead of every member row. It starts with user_id, so it
-- replaces members_by_user.
CREATE INDEX members_by_user_sync ON members (user_id, active, version);
DROP INDEX members_by_user;
-- Only sends (TEXT = 0, FILE = 3) live in the sender's client_msg_id space;
-- system and recall entries have ids of their own that a client can never
-- collide with, whatever id it picks.
DROP INDEX messages_dedupe;
CREATE UNIQUE INDEX messages_dedupe ON messages (sender_id, client_msg_id) WHERE kind IN (0, 3);
-- SHA-256 of what the send asked for (see writer::content_hash): a retry
-- with other content is refused instead of answered as a duplicate.
ALTER TABLE messages ADD COLUMN content_hash BLOB;
-- Dedupe keys of sends that retention removed, kept DEDUPE_KEEP_MS after the
-- removal so a late retry is still answered, not stored again.
CREATE TABLE dedupe_keys (
    sender_id INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    conversation_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    content_hash BLOB,
    removed_at INTEGER NOT NULL,
    PRIMARY KEY (sender_id, client_msg_id)
) WITHOUT ROWID;
CREATE INDEX dedupe_keys_by_removal ON dedupe_keys (removed_at);
"#,
    r#"
-- Accounts hardening. A session is a client's (desktop, CLI) or the
-- console's; each kind has its own lifetime and neither is accepted where the
-- other is. second_factor: this console session passed the TOTP check.
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'client';
ALTER TABLE sessions ADD COLUMN second_factor INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET kind = 'console' WHERE device LIKE 'console-%';
-- TOTP (RFC 6238): the confirmed secret, one being enrolled, and the last
-- time step used (a code is accepted once).
ALTER TABLE users ADD COLUMN totp_secret BLOB;
ALTER TABLE users ADD COLUMN totp_pending BLOB;
ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
-- Recovery codes, SHA-256 of each; used_at set when spent (single use).
CREATE TABLE recovery_codes (
    user_id INTEGER NOT NULL REFERENCES users(id),
    code_hash BLOB NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, code_hash)
) WITHOUT ROWID;
-- Changes an administrator asked for that take effect only once an auditor
-- (another person) confirms them: the auditor role, short retention,
-- resetting an auditor's password.
CREATE TABLE pending_changes (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    requested_by INTEGER NOT NULL REFERENCES users(id),
    requested_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    decided_by INTEGER REFERENCES users(id),
    decided_at INTEGER
);
"#,
];

/// Opens a connection with the pragmas every connection needs.
pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: an acknowledged message survives power loss, not just a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Opens (creating if needed) the database and applies pending migrations.
pub fn migrate(path: &Path) -> anyhow::Result<usize> {
    let mut conn = open_connection(path)?;
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tx = conn.transaction()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()?;
    Ok(MIGRATIONS.len() - done.min(MIGRATIONS.len()))
}

/// A few read connections; WAL lets them read while the writer commits.
#[derive(Clone)]
pub struct Db {
    readers: Arc<Vec<Mutex<Connection>>>,
    next: Arc<AtomicUsize>,
}

impl Db {
    pub fn open(path: &Path, readers: usize) -> anyhow::Result<Db> {
        let readers =
            (0..readers.max(1)).map(|_| open_connection(path).map(Mutex::new)).collect::<Result<_, _>>()?;
        Ok(Db { readers: Arc::new(readers), next: Arc::new(AtomicUsize::new(0)) })
    }

    /// Rows written through the read connections since they were opened.
    /// Message and login paths keep it at zero (their writes go through the
    /// writer); tests check that.
    pub fn rows_changed_by_readers(&self) -> u64 {
        self.readers.iter().map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).total_changes()).sum()
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ServiceError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let start = db.next.fetch_add(1, Ordering::Relaxed);
            let n = db.readers.len();
            for i in 0..n {
                if let Ok(conn) = db.readers[(start + i) % n].try_lock() {
                    return f(&conn);
                }
            }
            let conn = db.readers[start % n].lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("reader task failed: {e}")))?
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ------------------------------------------------------------------ row mapping

pub const MESSAGE_COLUMNS: &str = "conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text, mentions, reply_to_seq, recalled, system, target_seq, priority, attachment";

/// Maps a `messages` row (selected with [`MESSAGE_COLUMNS`]) to the wire type.
/// A recalled message keeps its text in the archive but never sends it.
pub fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    use prost::Message as _;
    let recalled: bool = row.get(9)?;
    let mentions: String = row.get(7)?;
    let system: Option<Vec<u8>> = row.get(10)?;
    let attachment: Option<Vec<u8>> = if recalled { None } else { row.get(13)? };
    Ok(Message {
        conversation_id: row.get(0)?,
        seq: row.get(1)?,
        sender_id: row.get(2)?,
        client_msg_id: row.get(3)?,
        sent_at_ms: row.get(4)?,
        kind: row.get(5)?,
        text: if recalled { String::new() } else { row.get(6)? },
        mentions: decode_ids(&mentions),
        reply_to_seq: row.get(8)?,
        recalled,
        system: system.and_then(|b| v1::SystemEvent::decode(&b[..]).ok()),
        target_seq: row.get(11)?,
        priority: row.get(12)?,
        attachment: attachment.and_then(|b| v1::Attachment::decode(&b[..]).ok()),
    })
}

pub fn encode_ids(ids: &[u64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

pub fn decode_ids(s: &str) -> Vec<u64> {
    s.split(',').filter_map(|p| p.parse().ok()).collect()
}

// ------------------------------------------------------------------ read queries

/// The caller's view of a member row: `None` if the user was never a member.
pub struct Membership {
    pub active: bool,
    pub until_seq: Option<u64>,
    pub role: i32,
}

pub fn membership(
    conn: &Connection,
    conversation_id: u64,
    user_id: u64,
) -> Result<Option<Membership>, ServiceError> {
    Ok(conn
        .prepare_cached(
            "SELECT active, until_seq, role FROM members WHERE conversation_id = ?1 AND user_id = ?2",
        )?
        .query_row(params![conversation_id, user_id], |r| {
            Ok(Membership { active: r.get(0)?, until_seq: r.get(1)?, role: r.get(2)? })
        })
        .optional()?)
}

/// Messages a member may read: all of them while active, up to `until_seq` after leaving.
pub fn fetch_messages(
    conn: &Connection,
    user_id: u64,
    req: &v1::FetchMessages,
    max_limit: u32,
) -> Result<v1::MessageBatch, ServiceError> {
    let m = membership(conn, req.conversation_id, user_id)?.ok_or(ServiceError::NotMember)?;
    let ceiling = if m.active { u64::MAX >> 1 } else { m.until_seq.unwrap_or(0) };
    let limit = req.limit.clamp(1, max_limit);
    let mut messages: Vec<Message> = if req.before_seq > 0 {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq < ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT ?4"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows =
            stmt.query_map(params![req.conversation_id, req.before_seq, ceiling, limit], message_from_row)?;
        let mut v = within_budget(rows.collect::<Result<Vec<_>, _>>()?);
        v.reverse();
        v
    } else {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows =
            stmt.query_map(params![req.conversation_id, req.after_seq, ceiling, limit], message_from_row)?;
        within_budget(rows.collect::<Result<Vec<_>, _>>()?)
    };
    messages.retain(|m| m.seq <= ceiling);
    let last_seq: u64 = conn
        .prepare_cached("SELECT last_seq FROM conversations WHERE id = ?1")?
        .query_row([req.conversation_id], |r| r.get(0))?;
    Ok(v1::MessageBatch { conversation_id: req.conversation_id, messages, last_seq: last_seq.min(ceiling) })
}

/// Bytes of payload one answer may carry, well under the frame limit.
const ANSWER_BUDGET: usize = hutong_protocol::MAX_FRAME_LEN / 2;

/// The longest prefix of `messages` that fits one answer (at least one message).
fn within_budget(mut messages: Vec<Message>) -> Vec<Message> {
    use prost::Message as _;
    let mut used = 0;
    let keep = messages
        .iter()
        .take_while(|m| {
            used += m.encoded_len() + 8;
            used <= ANSWER_BUDGET
        })
        .count();
    messages.truncate(keep.max(1));
    messages
}

/// One conversation as `user_id` sees it (members and their cursors included).
pub fn conversation_state(
    conn: &Connection,
    conversation_id: u64,
    user_id: u64,
) -> Result<ConversationState, ServiceError> {
    let (kind, name, last_seq, cversion, first_seq): (i32, String, u64, u64, u64) = conn
        .prepare_cached("SELECT kind, name, last_seq, version, first_seq FROM conversations WHERE id = ?1")?
        .query_row([conversation_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?
        .ok_or(ServiceError::NotFound("conversation"))?;
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, role, delivered_seq, read_seq, active, until_seq, version FROM members WHERE conversation_id = ?1",
    )?;
    let mut members = Vec::new();
    let mut me: Option<(bool, Option<u64>, u64)> = None;
    let rows = stmt.query_map([conversation_id], |r| {
        Ok((
            Member { user_id: r.get(0)?, role: r.get(1)?, delivered_seq: r.get(2)?, read_seq: r.get(3)? },
            r.get::<_, bool>(4)?,
            r.get::<_, Option<u64>>(5)?,
            r.get::<_, u64>(6)?,
        ))
    })?;
    for row in rows {
        let (member, active, until, version) = row?;
        if member.user_id == user_id {
            me = Some((active, until, version));
        }
        if active {
            members.push(member);
        }
    }
    let (active, until, mversion) = me.ok_or(ServiceError::NotMember)?;
    Ok(ConversationState {
        id: conversation_id,
        kind,
        name,
        last_seq: if active { last_seq } else { until.unwrap_or(0).min(last_seq) },
        members: if active { members } else { Vec::new() },
        active,
        version: if active { cversion.max(mversion) } else { mversion },
        first_seq,
    })
}

/// Most conversations one sync page holds.
pub const SYNC_PAGE_MAX: u32 = 500;

/// Conversations of `user_id` whose key (version, conversation id) comes
/// after `(since, since_id)`, in key order, paged.
///
/// The key is unique, so a page may end anywhere, even inside a run of
/// conversations with the same version (retention and migrations make such
/// runs), and the next page starts right after it. The answer's key is the
/// last conversation's (or the request's when nothing is newer).
pub fn sync(
    conn: &Connection,
    user_id: u64,
    since: u64,
    since_id: u64,
    limit: u32,
) -> Result<v1::SyncResponse, ServiceError> {
    let limit = limit.clamp(1, SYNC_PAGE_MAX);
    // The outer filter is the key comparison; the inner one only keeps the
    // walk over the membership index from computing keys that cannot qualify.
    let mut stmt = conn.prepare_cached(
        "SELECT id, v FROM (
            SELECT c.id AS id, CASE WHEN m.active THEN max(m.version, c.version) ELSE m.version END AS v
            FROM members m JOIN conversations c ON c.id = m.conversation_id
            WHERE m.user_id = ?1 AND (m.version >= ?2 OR (m.active AND c.version >= ?2)))
         WHERE v > ?2 OR (v = ?2 AND id > ?3)
         ORDER BY v, id LIMIT ?4",
    )?;
    let ids = stmt
        .query_map(params![user_id, since, since_id, limit + 1], |r| {
            Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut more = ids.len() > limit as usize;
    let mut key = (since, since_id);
    let mut conversations = Vec::new();
    let mut used = 0;
    for (id, v) in ids.into_iter().take(limit as usize) {
        if used > ANSWER_BUDGET {
            // The rest comes with the next request, from this key on.
            more = true;
            break;
        }
        let mut state = conversation_state(conn, id, user_id)?;
        // The state is read after the listing; pin the reported version to the
        // listing's so paging never skips a change that happened in between.
        state.version = v;
        key = (v, id);
        used += prost::Message::encoded_len(&state);
        conversations.push(state);
    }
    Ok(v1::SyncResponse { conversations, version: key.0, more, conversation_id: key.1 })
}

pub fn lookup_users(conn: &Connection, req: &v1::LookupUsers) -> Result<v1::UserList, ServiceError> {
    let mut users = Vec::new();
    let map = |r: &rusqlite::Row<'_>| {
        Ok(v1::User { id: r.get(0)?, account: r.get(1)?, display_name: r.get(2)?, disabled: r.get(3)? })
    };
    let mut by_account =
        conn.prepare_cached("SELECT id, account, display_name, disabled FROM users WHERE account = ?1")?;
    for account in req.accounts.iter().take(1000) {
        if let Some(u) = by_account.query_row([account], map).optional()? {
            users.push(u);
        }
    }
    let mut by_id =
        conn.prepare_cached("SELECT id, account, display_name, disabled FROM users WHERE id = ?1")?;
    for id in req.user_ids.iter().take(1000) {
        if let Some(u) = by_id.query_row([id], map).optional()? {
            users.push(u);
        }
    }
    Ok(v1::UserList { users })
}
