//! The SQLite schema: migrations applied in order, and opening a connection
//! with the pragmas every connection needs.

use std::path::Path;

use rusqlite::Connection;

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
    r#"
-- Emoji reactions (kind REACTION = 5): whether the entry takes the emoji back.
ALTER TABLE messages ADD COLUMN reaction_removed INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Pins (kind PIN = 6): whether the entry unpins its target.
ALTER TABLE messages ADD COLUMN unpinned INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Merged forwards (kind FORWARD = 7): the record (a ForwardRecord), and
-- their own dedupe key space, so a retried forward stores nothing new.
ALTER TABLE messages ADD COLUMN forward BLOB;
CREATE UNIQUE INDEX messages_forward_dedupe ON messages (sender_id, client_msg_id) WHERE kind = 7;
"#,
    r#"
-- Notices with sign-off receipts. The recipients are fixed when a notice is
-- sent (departments expanded then); each recipient row records what that
-- person did, and every change to it takes the next `notice_version`, so a
-- recipient syncs their notices by (user_id, version).
CREATE TABLE notices (
    id INTEGER PRIMARY KEY,
    sender_id INTEGER NOT NULL REFERENCES users(id),
    client_id TEXT NOT NULL,
    content_hash BLOB NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    priority INTEGER NOT NULL,
    sign_required INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL DEFAULT 0,
    buttons TEXT NOT NULL DEFAULT '[]',
    targets TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    withdrawn_at INTEGER NOT NULL DEFAULT 0,
    deadline_done INTEGER NOT NULL DEFAULT 0,
    -- A manager's summary at a deadline: the notice it is about, and who in
    -- their team had not signed it.
    summary_of INTEGER NOT NULL DEFAULT 0,
    unsigned_users TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX notices_dedupe ON notices (sender_id, client_id);
CREATE INDEX notices_by_sender ON notices (sender_id, id);
CREATE INDEX notices_due ON notices (deadline_ms) WHERE deadline_ms > 0 AND deadline_done = 0;
CREATE TABLE notice_recipients (
    notice_id INTEGER NOT NULL REFERENCES notices(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    department_id INTEGER,
    version INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL DEFAULT 0,
    read_at INTEGER NOT NULL DEFAULT 0,
    signed_at INTEGER NOT NULL DEFAULT 0,
    signed_device TEXT NOT NULL DEFAULT '',
    chosen TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    reminded_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (notice_id, user_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX notice_recipients_sync ON notice_recipients (user_id, version);
INSERT INTO settings (key, value) VALUES ('notice_version', '0');
"#,
    r#"
-- Integration API (OA, ERP, scripts). An application is registered by an
-- administrator; bot_user_id is its account (users.roles = 'bot', no
-- password, no department), the sender people see. Only a SHA-256 of the
-- client secret is kept; signing_secret signs event deliveries, so the
-- server must hold it as is. scopes and allowed_cidrs: space-separated.
CREATE TABLE apps (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    avatar_url TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL,
    allowed_cidrs TEXT NOT NULL,
    callback_url TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL UNIQUE,
    secret_hash BLOB NOT NULL,
    signing_secret TEXT NOT NULL,
    bot_user_id INTEGER NOT NULL REFERENCES users(id),
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- Bearer tokens of the client-credentials grant: SHA-256 of each, the
-- scopes granted, when it stops being worth anything.
CREATE TABLE api_tokens (
    token_hash BLOB PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX api_tokens_by_expiry ON api_tokens (expires_at);
"#,
    r#"
-- Integration API: the first answer to a request with an Idempotency-Key,
-- kept a day; a repeat with the same body gets it again, another body 409.
CREATE TABLE api_idempotency (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    body_hash BLOB NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, key)
) WITHOUT ROWID;
CREATE INDEX api_idempotency_by_age ON api_idempotency (created_at);
"#,
    r#"
-- Group robots (incoming webhooks): the URL's token as a SHA-256; the
-- signing secret as is (the server checks HMACs with it) or NULL; the
-- robot's account (a bot, a member of the group); removed_at once removed.
CREATE TABLE group_robots (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    name TEXT NOT NULL,
    bot_user_id INTEGER NOT NULL REFERENCES users(id),
    created_by INTEGER NOT NULL REFERENCES users(id),
    token_hash BLOB NOT NULL UNIQUE,
    signing_secret TEXT,
    allowed_cidrs TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
);
CREATE INDEX group_robots_by_conversation ON group_robots (conversation_id);
-- Kind TEXT whose text is Markdown (a group robot's post).
ALTER TABLE messages ADD COLUMN markdown INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Integration API events (a person wrote to an application's bot, and
-- later a notice signed or a button clicked), kept for the application to
-- pull and POSTed to its callback URL: state pending until delivered, or
-- failed once retrying for a day did not deliver it.
CREATE TABLE app_events (
    id INTEGER PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    delivered_at INTEGER
);
CREATE INDEX app_events_due ON app_events (state, next_attempt_at);
CREATE INDEX app_events_by_app ON app_events (app_id, id);
CREATE INDEX apps_by_bot ON apps (bot_user_id);
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
