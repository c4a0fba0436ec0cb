//! The local SQLite cache: conversations, members, messages, cursors, the
//! persistent outbox and sync state. The UI reads from here, so history and
//! unread counts work offline; the connection fills it from the server.
//!
//! Every write is idempotent (messages are keyed by conversation and seq), so
//! a message that arrives by push, by sync and as an ack is stored once.

use std::path::{Path, PathBuf};

use hutong_protocol::v1::{self, ConversationState, Message, MessageKind};
use prost::Message as _;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::ClientError;
use crate::files::{Attachment, AttachmentKind, Transfer, TransferDirection, TransferState};

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

/// Schema changes after the first release, applied in order once each
/// (`PRAGMA user_version` counts them).
const MIGRATIONS: &[&str] = &[
    // 1: files. Attachments of messages and outbox entries (protobuf
    // `Attachment`), and transfers with what the engine needs to resume.
    r#"
    ALTER TABLE messages ADD COLUMN attachment BLOB;
    ALTER TABLE outbox ADD COLUMN attachment BLOB;
    CREATE TABLE transfers (
        id TEXT PRIMARY KEY,
        direction TEXT NOT NULL,
        state TEXT NOT NULL,
        conversation_id INTEGER NOT NULL,
        seq INTEGER NOT NULL DEFAULT 0,
        client_msg_id TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        local_path BLOB NOT NULL,
        total_bytes INTEGER NOT NULL DEFAULT 0,
        done_bytes INTEGER NOT NULL DEFAULT 0,
        wire_bytes INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        error_code TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        -- Download: the message's attachment (protobuf).
        attachment BLOB,
        -- Upload: '' while sending data, 'message' once its message is in the outbox.
        -- Download of a folder: 'root' once its fresh top directory exists.
        phase TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX transfers_by_client_msg ON transfers (client_msg_id);
    "#,
    // 2: manifests of files hashed for upload, keyed by what changes when
    // the file does (path, size, modification and change times, inode), so
    // sending the same file again does not read it again.
    r#"
    CREATE TABLE file_hashes (
        path BLOB PRIMARY KEY,
        stamp TEXT NOT NULL,
        manifest BLOB NOT NULL
    );
    "#,
    // 3: a recall may arrive before the entry it recalls (a gap fill
    // overtaken by a live push): storing an entry looks its recall up here.
    // Outbox entries count failed attempts, so one the server keeps failing
    // is parked instead of blocking every later one.
    r#"
    CREATE INDEX messages_recalls ON messages (conversation_id, target_seq) WHERE kind = 2;
    ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: edits. A message's text is its newest version; `edited_at` is when
    // that version was sent (0: never edited). An edit may arrive before
    // the entry it edits: storing an entry looks its edits up here.
    r#"
    ALTER TABLE messages ADD COLUMN edited_at INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_edits ON messages (conversation_id, target_seq, seq) WHERE kind = 4;
    "#,
    // 5: emoji reactions. `reactions` is who reacted with what to a message
    // (`seq`), folded from its REACTION entries (kind 5) in seq order, so
    // the same whatever order entries and target arrive in; `added_seq` is
    // the entry that added the emoji (the display orders by first use).
    r#"
    ALTER TABLE messages ADD COLUMN reaction_removed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_reactions ON messages (conversation_id, target_seq, seq) WHERE kind = 5;
    CREATE TABLE reactions (
        conversation_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        emoji TEXT NOT NULL,
        added_seq INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, seq, user_id, emoji)
    ) WITHOUT ROWID;
    "#,
    // 6: pins. A message is pinned when the newest (by seq) of its PIN
    // entries (kind 6) does not unpin it; read by `pins`, so the same
    // whatever order the entries and their target arrive in.
    r#"
    ALTER TABLE messages ADD COLUMN unpinned INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_pins ON messages (conversation_id, target_seq, seq) WHERE kind = 6;
    "#,
    // 7: merged forwards (kind 7): the record as it came off the wire. Their
    // `text` is the record's title names, so the conversation list has
    // something to show.
    r#"
    ALTER TABLE messages ADD COLUMN forward BLOB;
    "#,
    // 8: notices. One row per notice addressed to me (content and my own
    // state, which only moves forward), folded from pushes and `NoticeSync`;
    // `reported` is 1 once the server has heard that it was delivered.
    r#"
    CREATE TABLE notices (
        id INTEGER PRIMARY KEY,
        sender_id INTEGER NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        priority INTEGER NOT NULL,
        sign_required INTEGER NOT NULL,
        deadline_ms INTEGER NOT NULL,
        sent_at INTEGER NOT NULL,
        withdrawn_at INTEGER NOT NULL DEFAULT 0,
        delivered_at INTEGER NOT NULL DEFAULT 0,
        read_at INTEGER NOT NULL DEFAULT 0,
        signed_at INTEGER NOT NULL DEFAULT 0,
        signed_device TEXT NOT NULL DEFAULT '',
        reminded_at INTEGER NOT NULL DEFAULT 0,
        buttons TEXT NOT NULL DEFAULT '[]',
        chosen TEXT NOT NULL DEFAULT '',
        comment TEXT NOT NULL DEFAULT '',
        summary_of INTEGER NOT NULL DEFAULT 0,
        unsigned_users TEXT NOT NULL DEFAULT '[]',
        reported INTEGER NOT NULL DEFAULT 0
    );
    "#,
];

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
    /// Kind "system": the event itself, for apps that describe it in the
    /// reader's language with people's names.
    #[serde(skip)]
    pub event: Option<SystemEventData>,
    pub target_seq: u64,
    /// Kind "file": the file, image or folder (cleared once recalled).
    pub attachment: Option<Attachment>,
    /// Whether the text was edited: `text` is then its newest version.
    pub edited: bool,
    /// When the newest version was sent (0 when never edited).
    pub edited_at_ms: i64,
    /// Emoji reactions, ordered by first use (empty once recalled).
    pub reactions: Vec<Reaction>,
    /// Kind "pin": the entry unpins its target.
    pub unpinned: bool,
    /// Kind "forward": the messages forwarded as one record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardRecord>,
}

/// One emoji on a message and who reacted with it (in the order they did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<u64>,
}

/// Messages forwarded as one record (合并转发).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardRecord {
    /// The title is worded from `title_names`: the group's name when true,
    /// else the (at most two) people who wrote the messages.
    pub from_group: bool,
    pub title_names: Vec<String>,
    pub items: Vec<ForwardItem>,
}

/// One message of a [`ForwardRecord`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardItem {
    pub sender_id: u64,
    pub sender_name: String,
    pub sent_at_ms: i64,
    /// "text" or "file".
    pub kind: &'static str,
    pub text: String,
    pub attachment: Option<Attachment>,
}

impl ForwardRecord {
    fn from_wire(r: &v1::ForwardRecord) -> ForwardRecord {
        ForwardRecord {
            from_group: r.from_group,
            title_names: r.title_names.clone(),
            items: r
                .items
                .iter()
                .map(|i| ForwardItem {
                    sender_id: i.sender_id,
                    sender_name: i.sender_name.clone(),
                    sent_at_ms: i.sent_at_ms,
                    kind: kind_name(i.kind),
                    text: i.text.clone(),
                    attachment: i.attachment.as_ref().map(Attachment::from_wire),
                })
                .collect(),
        }
    }
}

/// A message pinned in a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pin {
    /// The pinned message's seq.
    pub seq: u64,
    /// Who pinned it (the newest pin entry's sender).
    pub pinned_by: u64,
    pub pinned_at_ms: i64,
    /// The pinned message, once it is in the cache.
    pub message: Option<CachedMessage>,
}

/// A group's event as data: what happened, who did it, to whom.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemEventData {
    /// "group_created", "members_added", "member_removed", "member_left",
    /// "renamed", "role_changed" or "unknown".
    pub kind: &'static str,
    pub actor_id: u64,
    pub user_ids: Vec<u64>,
    /// The group's name (created, renamed).
    pub name: String,
    /// The role given (role changed): "owner", "admin" or "member".
    pub role: &'static str,
}

impl SystemEventData {
    pub fn from_wire(e: &v1::SystemEvent) -> SystemEventData {
        use v1::system_event::Kind;
        let kind = match Kind::try_from(e.kind).unwrap_or(Kind::Unknown) {
            Kind::GroupCreated => "group_created",
            Kind::MembersAdded => "members_added",
            Kind::MemberRemoved => "member_removed",
            Kind::MemberLeft => "member_left",
            Kind::Renamed => "renamed",
            Kind::RoleChanged => "role_changed",
            Kind::Unknown => "unknown",
        };
        let role = match v1::MemberRole::try_from(e.role).unwrap_or(v1::MemberRole::Member) {
            v1::MemberRole::Owner => "owner",
            v1::MemberRole::Admin => "admin",
            v1::MemberRole::Member => "member",
        };
        SystemEventData {
            kind,
            actor_id: e.actor_id,
            user_ids: e.user_ids.clone(),
            name: e.name.clone(),
            role,
        }
    }
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
            event: m.system.as_ref().map(SystemEventData::from_wire),
            target_seq: m.target_seq,
            attachment: if m.recalled { None } else { m.attachment.as_ref().map(Attachment::from_wire) },
            edited: false,
            edited_at_ms: 0,
            reactions: Vec::new(),
            unpinned: m.unpinned,
            forward: m.forward.as_ref().filter(|_| !m.recalled).map(ForwardRecord::from_wire),
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
    /// This person's read cursor as this device knows it.
    pub read_seq: u64,
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
    /// A file message's attachment (its file is uploaded before the entry is written).
    pub attachment: Option<Attachment>,
}

pub struct Cache {
    pub(crate) conn: Connection,
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
        Ok(MessageKind::Edit) => "edit",
        Ok(MessageKind::Reaction) => "reaction",
        Ok(MessageKind::Pin) => "pin",
        Ok(MessageKind::Forward) => "forward",
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
    "conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text, mentions, reply_to_seq, recalled, system, target_seq, attachment, edited_at, unpinned, forward";

fn decode_attachment(blob: Option<Vec<u8>>) -> Option<v1::Attachment> {
    blob.and_then(|b| v1::Attachment::decode(&b[..]).ok())
}

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CachedMessage> {
    let system: Option<Vec<u8>> = r.get(10)?;
    let event = system.and_then(|b| v1::SystemEvent::decode(&b[..]).ok());
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
        system: event.as_ref().map(describe_system),
        event: event.as_ref().map(SystemEventData::from_wire),
        target_seq: r.get(11)?,
        attachment: decode_attachment(r.get(12)?).map(|a| Attachment::from_wire(&a)),
        edited: r.get::<_, i64>(13)? != 0,
        edited_at_ms: r.get(13)?,
        reactions: Vec::new(),
        unpinned: r.get(14)?,
        forward: r
            .get::<_, Option<Vec<u8>>>(15)?
            .and_then(|b| v1::ForwardRecord::decode(&b[..]).ok())
            .map(|f| ForwardRecord::from_wire(&f)),
    })
}

/// Recomputes who reacted with what to one message from its REACTION
/// entries in seq order: an add of what is there, or a removal of what is
/// not, changes nothing.
fn fold_reactions(tx: &rusqlite::Transaction<'_>, conversation_id: u64, seq: u64) -> rusqlite::Result<()> {
    let entries: Vec<(u64, u64, String, bool)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, sender_id, text, reaction_removed FROM messages
             WHERE conversation_id = ?1 AND target_seq = ?2 AND kind = 5 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map(params![conversation_id, seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut state: Vec<(u64, String, u64)> = Vec::new();
    for (entry_seq, user, emoji, removed) in entries {
        let at = state.iter().position(|(u, e, _)| *u == user && *e == emoji);
        match (at, removed) {
            (None, false) => state.push((user, emoji, entry_seq)),
            (Some(i), true) => {
                state.remove(i);
            }
            _ => {}
        }
    }
    tx.execute(
        "DELETE FROM reactions WHERE conversation_id = ?1 AND seq = ?2",
        params![conversation_id, seq],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO reactions (conversation_id, seq, user_id, emoji, added_seq) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (user, emoji, added) in state {
        insert.execute(params![conversation_id, seq, user, emoji, added])?;
    }
    Ok(())
}

impl Cache {
    /// Fills the reactions of messages read from the cache (none for a
    /// recalled message).
    fn with_reactions(&self, mut messages: Vec<CachedMessage>) -> Result<Vec<CachedMessage>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user_id, emoji FROM reactions WHERE conversation_id = ?1 AND seq = ?2 ORDER BY added_seq",
        )?;
        for m in messages.iter_mut().filter(|m| !m.recalled && (m.kind == "text" || m.kind == "file")) {
            let rows = stmt.query_map(params![m.conversation_id, m.seq], |r| {
                Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut reactions: Vec<Reaction> = Vec::new();
            for row in rows {
                let (user, emoji) = row?;
                match reactions.iter_mut().find(|x| x.emoji == emoji) {
                    Some(x) => x.user_ids.push(user),
                    None => reactions.push(Reaction { emoji, user_ids: vec![user] }),
                }
            }
            m.reactions = reactions;
        }
        Ok(messages)
    }

    pub fn open(path: &Path) -> Result<Cache, ClientError> {
        // Owner-only: the cache holds every message this person can read.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::profile::private_dir(dir)
                .map_err(|e| ClientError::Cache(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        // SQLite gives -wal and -shm the database file's mode, so a private
        // database keeps them private; ones an older version left are fixed too.
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            crate::profile::private_file(Path::new(&name))
                .map_err(|e| ClientError::Cache(format!("protecting {}: {e}", Path::new(&name).display())))?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Everything but the outbox can be fetched again from the server, so
        // NORMAL (durable across crashes, not power cuts) is enough; `enqueue`
        // switches to FULL for the one write that must survive a power cut.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
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

    /// Where conversation sync goes on: the key (version, conversation id)
    /// of the last conversation stored.
    pub fn sync_key(&self) -> Result<(u64, u64), ClientError> {
        let conversation = self.meta("sync_conversation_id")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((self.sync_version()?, conversation))
    }

    pub fn set_sync_key(&self, version: u64, conversation_id: u64) -> Result<(), ClientError> {
        self.set_meta("sync_version", &version.to_string())?;
        self.set_meta("sync_conversation_id", &conversation_id.to_string())
    }

    /// Stores conversation states from a sync or a group change.
    pub fn apply_conversations(&mut self, states: &[ConversationState]) -> Result<(), ClientError> {
        let me = self.user_id()?;
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
                    if m.user_id == me && me != 0 {
                        // My cursors as my other devices left them: what I
                        // read there is read here, and the server knows it.
                        tx.execute(
                            "UPDATE conversations SET read_seq = max(read_seq, min(?2, last_seq)),
                                reported_read = max(reported_read, ?2),
                                reported_delivered = max(reported_delivered, ?3) WHERE id = ?1",
                            params![s.id, m.read_seq, m.delivered_seq],
                        )?;
                    }
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
                "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text, mentions, reply_to_seq, recalled, system, target_seq, attachment, reaction_removed, unpinned, forward)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT DO NOTHING",
            )?;
            let mut ensure_conv = tx.prepare_cached(
                "INSERT INTO conversations (id, kind, last_seq, last_activity) VALUES (?1, 0, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET last_seq = max(last_seq, ?2), last_activity = max(last_activity, ?3)",
            )?;
            let mut recalled_already = tx.prepare_cached(
                "SELECT 1 FROM messages WHERE conversation_id = ?1 AND target_seq = ?2 AND kind = 2",
            )?;
            // The newest edit of a message (by seq, whatever order they
            // arrived in) gives its text; a recalled message stays blank.
            let mut apply_edits = tx.prepare_cached(
                "UPDATE messages SET (text, edited_at) = (
                     SELECT e.text, e.sent_at FROM messages e
                     WHERE e.conversation_id = ?1 AND e.target_seq = ?2 AND e.kind = 4
                     ORDER BY e.seq DESC LIMIT 1)
                 WHERE conversation_id = ?1 AND seq = ?2 AND kind = 0 AND recalled = 0
                   AND EXISTS (SELECT 1 FROM messages e
                               WHERE e.conversation_id = ?1 AND e.target_seq = ?2 AND e.kind = 4)",
            )?;
            for m in messages {
                let n = insert.execute(params![
                    m.conversation_id,
                    m.seq,
                    m.sender_id,
                    m.client_msg_id,
                    m.sent_at_ms,
                    m.kind,
                    match &m.forward {
                        Some(f) if m.kind == MessageKind::Forward as i32 => f.title_names.join(", "),
                        _ => m.text.clone(),
                    },
                    encode_ids(&m.mentions),
                    m.reply_to_seq,
                    m.recalled,
                    m.system.as_ref().map(|s| s.encode_to_vec()),
                    m.target_seq,
                    m.attachment.as_ref().filter(|_| !m.recalled).map(|a| a.encode_to_vec()),
                    m.reaction_removed,
                    m.unpinned,
                    m.forward.as_ref().filter(|_| !m.recalled).map(|f| f.encode_to_vec())
                ])?;
                ensure_conv.execute(params![m.conversation_id, m.seq, m.sent_at_ms])?;
                touched.insert(m.conversation_id);
                if n == 1 {
                    if m.kind == MessageKind::Recall as i32 {
                        tx.execute(
                            "UPDATE messages SET recalled = 1, text = '', attachment = NULL WHERE conversation_id = ?1 AND seq = ?2",
                            params![m.conversation_id, m.target_seq],
                        )?;
                        fresh.push(m.clone());
                    } else if m.kind == MessageKind::Edit as i32 {
                        apply_edits.execute(params![m.conversation_id, m.target_seq])?;
                        fresh.push(m.clone());
                    } else if m.kind == MessageKind::Reaction as i32 {
                        fold_reactions(&tx, m.conversation_id, m.target_seq)?;
                        fresh.push(m.clone());
                    } else if !m.recalled && recalled_already.exists(params![m.conversation_id, m.seq])? {
                        // Its recall came first (a gap fill overtaken by a push): the recall wins.
                        tx.execute(
                            "UPDATE messages SET recalled = 1, text = '', attachment = NULL WHERE conversation_id = ?1 AND seq = ?2",
                            params![m.conversation_id, m.seq],
                        )?;
                        fresh.push(Message {
                            recalled: true,
                            text: String::new(),
                            attachment: None,
                            ..m.clone()
                        });
                    } else if m.kind == MessageKind::Text as i32
                        && !m.recalled
                        && apply_edits.execute(params![m.conversation_id, m.seq])? == 1
                    {
                        // Its edit came first (a gap fill overtaken by a push): the UI
                        // hears of the newest version.
                        let text: String = tx.query_row(
                            "SELECT text FROM messages WHERE conversation_id = ?1 AND seq = ?2",
                            params![m.conversation_id, m.seq],
                            |r| r.get(0),
                        )?;
                        fresh.push(Message { text, ..m.clone() });
                    } else {
                        fresh.push(m.clone());
                    }
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
        let message = match &ack.message {
            // The server's stored version (mentions it filtered, for
            // instance) is the truth; what this device sent is not.
            Some(m) if m.conversation_id == ack.conversation_id && m.seq == ack.seq => m.clone(),
            _ => Message {
                conversation_id: ack.conversation_id,
                seq: ack.seq,
                sender_id: me,
                client_msg_id: entry.client_msg_id.clone(),
                sent_at_ms: ack.sent_at_ms,
                kind: if entry.attachment.is_some() { MessageKind::File } else { MessageKind::Text } as i32,
                text: entry.text.clone(),
                mentions: entry.mentions.clone(),
                reply_to_seq: entry.reply_to_seq,
                attachment: entry.attachment.as_ref().map(Attachment::to_wire),
                ..Default::default()
            },
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

    /// Writes an uploaded file's message to the outbox and moves its
    /// transfer to the "message" phase, in one durable transaction, so the
    /// message is written exactly once whatever happens around it.
    pub(crate) fn enqueue_file_message(
        &mut self,
        transfer_id: &str,
        client_msg_id: &str,
        conversation_id: u64,
        attachment: &v1::Attachment,
    ) -> Result<(), ClientError> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = (|| -> Result<(), ClientError> {
            let tx = self.conn.transaction()?;
            let phase: Option<String> = tx
                .query_row("SELECT phase FROM transfers WHERE id = ?1", [transfer_id], |r| r.get(0))
                .optional()?;
            if matches!(phase.as_deref(), Some("message" | "resent")) {
                return Ok(());
            }
            tx.execute(
                "INSERT INTO outbox (client_msg_id, conversation_id, text, mentions, reply_to_seq, priority, created_at, attachment)
                 VALUES (?1, ?2, ?3, '', 0, 0, ?4, ?5) ON CONFLICT (client_msg_id) DO NOTHING",
                params![client_msg_id, conversation_id, attachment.name, now_ms(), attachment.encode_to_vec()],
            )?;
            // Uploaded again (the server had collected it): the entry that
            // waited goes back in line where it was.
            tx.execute(
                "UPDATE outbox SET state = 'pending' WHERE client_msg_id = ?1 AND state = 'uploading'",
                [client_msg_id],
            )?;
            let next = if phase.as_deref() == Some("reupload") { "resent" } else { "message" };
            tx.execute(
                "UPDATE transfers SET phase = ?6, kind = ?2, name = ?3, total_bytes = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![
                    transfer_id,
                    AttachmentKind::from_wire(attachment.kind).as_str(),
                    attachment.name,
                    attachment.size,
                    now_ms(),
                    next
                ],
            )?;
            tx.commit()?;
            Ok(())
        })();
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        result
    }

    /// Where my message with this client id stands.
    pub fn my_message_outcome(&self, client_msg_id: &str) -> Result<SendOutcome, ClientError> {
        let me = self.user_id()?;
        let sent: Option<(u64, u64)> = self
            .conn
            .query_row(
                "SELECT conversation_id, seq FROM messages WHERE client_msg_id = ?1 AND sender_id = ?2 LIMIT 1",
                params![client_msg_id, me],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((conversation_id, seq)) = sent {
            return Ok(SendOutcome::Sent { conversation_id, seq });
        }
        let failed: Option<(Option<String>, Option<String>)> = self
            .conn
            .query_row(
                "SELECT error_code, error FROM outbox WHERE client_msg_id = ?1 AND state = 'failed'",
                [client_msg_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match failed {
            Some((code, message)) => SendOutcome::Failed {
                code: code.unwrap_or_else(|| "FAILED".into()),
                message: message.unwrap_or_else(|| "the send failed".into()),
            },
            None => SendOutcome::Waiting,
        })
    }

    /// The messages pinned in a conversation, most recently pinned first:
    /// for each target, the newest PIN entry by seq decides; a recalled
    /// target is not pinned.
    pub fn pins(&self, conversation_id: u64) -> Result<Vec<Pin>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.target_seq, p.sender_id, p.sent_at FROM messages p
             WHERE p.conversation_id = ?1 AND p.kind = 6 AND p.unpinned = 0
               AND p.seq = (SELECT max(q.seq) FROM messages q
                            WHERE q.conversation_id = ?1 AND q.kind = 6 AND q.target_seq = p.target_seq)
               AND NOT EXISTS (SELECT 1 FROM messages r
                               WHERE r.conversation_id = ?1 AND r.kind = 2 AND r.target_seq = p.target_seq)
               AND NOT EXISTS (SELECT 1 FROM messages t
                               WHERE t.conversation_id = ?1 AND t.seq = p.target_seq AND t.recalled = 1)
             ORDER BY p.seq DESC",
        )?;
        let rows = stmt.query_map([conversation_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let rows: Vec<(u64, u64, i64)> = rows.collect::<Result<_, _>>()?;
        let mut pins = Vec::with_capacity(rows.len());
        for (seq, pinned_by, pinned_at_ms) in rows {
            let message = self.message(conversation_id, seq)?;
            pins.push(Pin { seq, pinned_by, pinned_at_ms, message });
        }
        Ok(pins)
    }

    /// The attachment of item `index` of a cached merged forward, as it
    /// came off the wire.
    pub(crate) fn forwarded_attachment(
        &self,
        conversation_id: u64,
        seq: u64,
        index: usize,
    ) -> Result<Option<v1::Attachment>, ClientError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT forward FROM messages WHERE conversation_id = ?1 AND seq = ?2 AND kind = 7 AND recalled = 0",
                params![conversation_id, seq],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let record = blob.and_then(|b| v1::ForwardRecord::decode(&b[..]).ok());
        Ok(record.and_then(|r| r.items.into_iter().nth(index)).and_then(|i| i.attachment))
    }

    /// A cached message by conversation and seq.
    pub fn message(&self, conversation_id: u64, seq: u64) -> Result<Option<CachedMessage>, ClientError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq = ?2");
        let m = self.conn.query_row(&sql, params![conversation_id, seq], message_from_row).optional()?;
        Ok(self.with_reactions(m.into_iter().collect())?.pop())
    }

    /// The attachment of a cached message, as it came off the wire.
    pub(crate) fn message_attachment(
        &self,
        conversation_id: u64,
        seq: u64,
    ) -> Result<Option<v1::Attachment>, ClientError> {
        let blob: Option<Option<Vec<u8>>> = self
            .conn
            .query_row(
                "SELECT attachment FROM messages WHERE conversation_id = ?1 AND seq = ?2 AND recalled = 0",
                params![conversation_id, seq],
                |r| r.get(0),
            )
            .optional()?;
        Ok(decode_attachment(blob.flatten()))
    }

    /// Pending outbox entries in the order they were written.
    pub fn outbox(&self, after_id: i64, limit: usize) -> Result<Vec<OutboxEntry>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, client_msg_id, conversation_id, text, mentions, reply_to_seq, priority, state, error, attachment
             FROM outbox WHERE state = 'pending' AND id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after_id, limit as i64], outbox_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// All unacknowledged entries (pending and failed), for the UI.
    pub fn outbox_all(&self, conversation_id: Option<u64>) -> Result<Vec<OutboxEntry>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, client_msg_id, conversation_id, text, mentions, reply_to_seq, priority, state, error, attachment
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

    /// A queued file message the server no longer has the file for: when
    /// its upload is known here and was not made again already, the entry
    /// waits ('uploading') while the transfer uploads it again ('reupload'),
    /// and the transfer's id is returned.
    pub(crate) fn begin_reupload(&mut self, entry: &OutboxEntry) -> Result<Option<String>, ClientError> {
        if entry.attachment.is_none() {
            return Ok(None);
        }
        let tx = self.conn.transaction()?;
        let id: Option<String> = tx
            .query_row(
                "SELECT id FROM transfers WHERE client_msg_id = ?1 AND direction = 'upload' AND phase = 'message'",
                [&entry.client_msg_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = &id {
            tx.execute("UPDATE outbox SET state = 'uploading' WHERE id = ?1", [entry.id])?;
            tx.execute(
                "UPDATE transfers SET phase = 'reupload', done_bytes = 0, updated_at = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// The attachment of the outbox entry with this client id.
    pub(crate) fn outbox_attachment(
        &self,
        client_msg_id: &str,
    ) -> Result<Option<v1::Attachment>, ClientError> {
        let blob: Option<Option<Vec<u8>>> = self
            .conn
            .query_row("SELECT attachment FROM outbox WHERE client_msg_id = ?1", [client_msg_id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(decode_attachment(blob.flatten()))
    }

    /// Parks an entry that waited for its file to be uploaded again; true if there was one.
    pub(crate) fn fail_uploading(
        &self,
        client_msg_id: &str,
        code: &str,
        error: &str,
    ) -> Result<bool, ClientError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET state = 'failed', error_code = ?2, error = ?3 WHERE client_msg_id = ?1 AND state = 'uploading'",
            params![client_msg_id, code, error],
        )? == 1)
    }

    /// Counts one more failed attempt of a pending entry; returns how many
    /// it has had (`None` when it is no longer pending).
    pub(crate) fn count_attempt(&self, id: i64) -> Result<Option<u32>, ClientError> {
        Ok(self
            .conn
            .query_row(
                "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?1 AND state = 'pending' RETURNING attempts",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// One outbox entry by its row id.
    pub(crate) fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, ClientError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, client_msg_id, conversation_id, text, mentions, reply_to_seq, priority, state, error, attachment
                 FROM outbox WHERE id = ?1",
                [id],
                outbox_from_row,
            )
            .optional()?)
    }

    /// Puts a failed entry back in line (the person pressed "retry").
    pub fn retry(&self, client_msg_id: &str) -> Result<bool, ClientError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET state = 'pending', error_code = NULL, error = NULL, attempts = 0 WHERE client_msg_id = ?1 AND state = 'failed'",
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
        self.conn
            .prepare_cached(
                "UPDATE members SET delivered_seq = max(delivered_seq, ?3), read_seq = max(read_seq, ?4)
                 WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .execute(params![c.conversation_id, c.user_id, c.delivered_seq, c.read_seq])?;
        if c.user_id == me {
            // Read on another of my devices.
            self.conn
                .prepare_cached(
                    "UPDATE conversations SET read_seq = max(read_seq, ?2), reported_read = max(reported_read, ?2) WHERE id = ?1",
                )?
                .execute(params![c.conversation_id, c.read_seq])?;
        }
        Ok(())
    }

    /// A batch of cursors (a group's read marks), in one transaction.
    pub fn apply_cursors(&self, cursors: &[v1::Cursor], me: u64) -> Result<(), ClientError> {
        let tx = self.conn.unchecked_transaction()?;
        for c in cursors {
            self.apply_cursor(c, me)?;
        }
        tx.commit()?;
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
        self.with_reactions(v)
    }

    /// A page of history, oldest first: the `limit` messages after
    /// `after_seq` and before `before_seq` (no upper bound when `None`).
    pub fn history_after(
        &self,
        conversation_id: u64,
        after_seq: u64,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CachedMessage>, ClientError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq LIMIT ?4"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let before = before_seq.unwrap_or(i64::MAX as u64);
        let rows =
            stmt.query_map(params![conversation_id, after_seq, before, limit as i64], message_from_row)?;
        let v = rows.collect::<Result<_, _>>()?;
        self.with_reactions(v)
    }

    /// Every message of a conversation in seq order (for checks and export).
    pub fn all_messages(&self, conversation_id: u64) -> Result<Vec<CachedMessage>, ClientError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY seq");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([conversation_id], message_from_row)?;
        let v = rows.collect::<Result<_, _>>()?;
        self.with_reactions(v)
    }

    pub fn conversations(&self) -> Result<Vec<ConversationSummary>, ClientError> {
        let me = self.user_id()?;
        let mut stmt = self.conn.prepare(
            "SELECT c.id, c.kind, c.name, c.last_seq, c.active,
                (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id AND m.seq > c.read_seq
                    AND m.sender_id != ?1 AND m.kind IN (0, 3, 7) AND m.recalled = 0),
                (SELECT group_concat(user_id) FROM members WHERE conversation_id = c.id),
                l.text, coalesce(l.sender_id, 0), coalesce(l.sent_at, 0),
                coalesce(p.pinned, 0), coalesce(p.muted, 0), c.read_seq
             FROM conversations c
             LEFT JOIN messages l ON l.conversation_id = c.id AND l.seq = (SELECT max(seq) FROM messages m
                WHERE m.conversation_id = c.id AND m.kind IN (0, 3, 7))
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
                read_seq: r.get(12)?,
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
        let v = rows.collect::<Result<_, _>>()?;
        self.with_reactions(v)
    }
}

/// Where a message I sent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// In the outbox (or not known here yet).
    Waiting,
    /// In the log with this seq.
    Sent { conversation_id: u64, seq: u64 },
    /// Refused; it will not be retried on its own.
    Failed { code: String, message: String },
}

/// A transfer row with what the engine needs beside the public view.
#[derive(Debug, Clone)]
pub(crate) struct TransferRecord {
    pub transfer: Transfer,
    /// Download: the message's attachment.
    pub attachment: Option<v1::Attachment>,
    pub phase: String,
}

const TRANSFER_COLUMNS: &str =
    "id, direction, state, conversation_id, seq, client_msg_id, kind, name, local_path,
    total_bytes, done_bytes, wire_bytes, error, error_code, created_at, attachment, phase";

#[cfg(unix)]
fn path_to_blob(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt as _;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_to_blob(p: &Path) -> Vec<u8> {
    p.to_string_lossy().as_bytes().to_vec()
}

#[cfg(unix)]
fn path_from_blob(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(not(unix))]
fn path_from_blob(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

fn transfer_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TransferRecord> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown transfer {what}").into(),
        )
    };
    let direction: String = r.get(1)?;
    let state: String = r.get(2)?;
    let kind: String = r.get(6)?;
    Ok(TransferRecord {
        transfer: Transfer {
            id: r.get(0)?,
            direction: TransferDirection::parse(&direction).ok_or_else(|| bad(1, "direction"))?,
            state: TransferState::parse(&state).ok_or_else(|| bad(2, "state"))?,
            conversation_id: r.get(3)?,
            seq: r.get(4)?,
            client_msg_id: r.get(5)?,
            kind: AttachmentKind::parse(&kind).ok_or_else(|| bad(6, "kind"))?,
            name: r.get(7)?,
            local_path: path_from_blob(r.get(8)?),
            total_bytes: r.get(9)?,
            done_bytes: r.get(10)?,
            wire_bytes: r.get(11)?,
            error: r.get(12)?,
            error_code: r.get(13)?,
            created_at_ms: r.get(14)?,
        },
        attachment: decode_attachment(r.get(15)?),
        phase: r.get(16)?,
    })
}

impl Cache {
    /// The manifest hashed earlier for `path`, if the file has not changed
    /// since (`stamp` says so).
    pub(crate) fn file_hash(
        &self,
        path: &Path,
        stamp: &str,
    ) -> Result<Option<hutong_protocol::files::CheckedManifest>, ClientError> {
        let key = path.as_os_str().as_encoded_bytes();
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT manifest FROM file_hashes WHERE path = ?1 AND stamp = ?2")?
            .query_row(params![key, stamp], |r| r.get(0))
            .optional()?;
        Ok(bytes
            .and_then(|b| v1::FileManifest::decode(&b[..]).ok())
            .and_then(|m| hutong_protocol::files::check_manifest(&m).ok()))
    }

    pub(crate) fn save_file_hash(
        &self,
        path: &Path,
        stamp: &str,
        manifest: &hutong_protocol::files::CheckedManifest,
    ) -> Result<(), ClientError> {
        let key = path.as_os_str().as_encoded_bytes();
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO file_hashes (path, stamp, manifest) VALUES (?1, ?2, ?3)")?
            .execute(params![key, stamp, manifest.to_wire().encode_to_vec()])?;
        Ok(())
    }

    pub(crate) fn insert_transfer(
        &self,
        t: &Transfer,
        attachment: Option<&v1::Attachment>,
    ) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO transfers (id, direction, state, conversation_id, seq, client_msg_id, kind, name, local_path,
                total_bytes, done_bytes, wire_bytes, created_at, updated_at, attachment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14)
             ON CONFLICT (id) DO NOTHING",
            params![
                t.id,
                t.direction.as_str(),
                t.state.as_str(),
                t.conversation_id,
                t.seq,
                t.client_msg_id,
                t.kind.as_str(),
                t.name,
                path_to_blob(&t.local_path),
                t.total_bytes,
                t.done_bytes,
                t.wire_bytes,
                t.created_at_ms,
                attachment.map(|a| a.encode_to_vec()),
            ],
        )?;
        Ok(())
    }

    pub(crate) fn transfer_record(&self, id: &str) -> Result<Option<TransferRecord>, ClientError> {
        let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], transfer_from_row).optional()?)
    }

    /// Every transfer, newest first.
    pub fn transfers(&self) -> Result<Vec<Transfer>, ClientError> {
        let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY created_at DESC, id DESC");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([], transfer_from_row)?;
        Ok(rows.map(|r| r.map(|t| t.transfer)).collect::<Result<_, _>>()?)
    }

    /// Ids of transfers in these states, oldest first.
    pub(crate) fn transfer_ids_in(&self, states: &[TransferState]) -> Result<Vec<String>, ClientError> {
        let list = states.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(",");
        let sql = format!("SELECT id FROM transfers WHERE state IN ({list}) ORDER BY created_at, id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves a transfer to `to` if it is in one of `from`; returns whether it did.
    /// An error (sentence and code) is stored with a failure and cleared otherwise.
    pub(crate) fn set_transfer_state(
        &self,
        id: &str,
        from: &[TransferState],
        to: TransferState,
        error: Option<(&str, &str)>,
    ) -> Result<bool, ClientError> {
        let list = from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(",");
        let sql = format!(
            "UPDATE transfers SET state = ?2, error_code = ?3, error = ?4, updated_at = ?5
             WHERE id = ?1 AND state IN ({list})"
        );
        let (code, sentence) = match error {
            Some((c, s)) => (Some(c), Some(s)),
            None => (None, None),
        };
        Ok(self.conn.execute(&sql, params![id, to.as_str(), code, sentence, now_ms()])? == 1)
    }

    pub(crate) fn set_transfer_progress(
        &self,
        id: &str,
        total: u64,
        done: u64,
        wire: u64,
    ) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE transfers SET total_bytes = ?2, done_bytes = ?3, wire_bytes = ?4, updated_at = ?5 WHERE id = ?1",
            params![id, total, done, wire, now_ms()],
        )?;
        Ok(())
    }

    pub(crate) fn set_transfer_path(&self, id: &str, path: &Path) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE transfers SET local_path = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, path_to_blob(path), now_ms()],
        )?;
        Ok(())
    }

    pub(crate) fn set_transfer_phase(&self, id: &str, phase: &str) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE transfers SET phase = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, phase, now_ms()],
        )?;
        Ok(())
    }

    pub(crate) fn set_transfer_kind(&self, id: &str, kind: AttachmentKind) -> Result<(), ClientError> {
        self.conn.execute("UPDATE transfers SET kind = ?2 WHERE id = ?1", params![id, kind.as_str()])?;
        Ok(())
    }

    pub(crate) fn set_transfer_seq(&self, id: &str, seq: u64) -> Result<(), ClientError> {
        self.conn.execute("UPDATE transfers SET seq = ?2 WHERE id = ?1", params![id, seq])?;
        Ok(())
    }

    /// Bytes on the wire are counted per process: a new start begins at zero.
    pub(crate) fn reset_wire_bytes(&self) -> Result<(), ClientError> {
        self.conn.execute("UPDATE transfers SET wire_bytes = 0 WHERE wire_bytes != 0", [])?;
        Ok(())
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
        attachment: decode_attachment(r.get(9)?).map(|a| Attachment::from_wire(&a)),
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
    fn a_recall_that_arrives_before_its_target_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        let recall =
            Message { kind: MessageKind::Recall as i32, target_seq: 1, text: String::new(), ..msg(1, 2) };
        c.insert_messages(&[recall]).unwrap();
        let fresh = c.insert_messages(&[msg(1, 1)]).unwrap();
        assert!(fresh[0].recalled && fresh[0].text.is_empty(), "the UI hears of it as recalled");
        let all = c.all_messages(1).unwrap();
        assert!(all[0].recalled, "the late target is stored as recalled");
        assert_eq!(all[0].text, "");
        assert!(!all[1].recalled);
        // Another conversation's seq 1 is not touched.
        c.insert_messages(&[msg(2, 1)]).unwrap();
        assert!(!c.message(2, 1).unwrap().unwrap().recalled);
    }

    fn edit(conv: u64, seq: u64, target: u64, text: &str) -> Message {
        Message {
            kind: MessageKind::Edit as i32,
            target_seq: target,
            text: text.into(),
            sent_at_ms: 1_000 + seq as i64,
            ..msg(conv, seq)
        }
    }

    #[test]
    fn the_newest_edit_wins_whatever_the_order_and_a_recall_still_blanks() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        // The newer edit and the older one arrive before their target.
        c.insert_messages(&[edit(1, 3, 1, "second")]).unwrap();
        c.insert_messages(&[edit(1, 2, 1, "first")]).unwrap();
        let fresh = c.insert_messages(&[msg(1, 1)]).unwrap();
        assert_eq!(fresh[0].text, "second", "the UI hears of the newest version");
        let target = c.message(1, 1).unwrap().unwrap();
        assert_eq!(target.text, "second");
        assert!(target.edited);
        assert_eq!(target.edited_at_ms, 1_003);
        // A message never edited is not marked; another conversation is untouched.
        c.insert_messages(&[msg(2, 1)]).unwrap();
        assert!(!c.message(2, 1).unwrap().unwrap().edited);
        // A recall after the edits blanks the message; a later edit does not bring it back.
        c.insert_messages(&[Message { kind: MessageKind::Recall as i32, target_seq: 1, ..msg(1, 4) }])
            .unwrap();
        c.insert_messages(&[edit(1, 5, 1, "third")]).unwrap();
        let target = c.message(1, 1).unwrap().unwrap();
        assert!(target.recalled);
        assert_eq!(target.text, "");
    }

    fn pin(conv: u64, seq: u64, target: u64, unpinned: bool) -> Message {
        Message {
            kind: MessageKind::Pin as i32,
            target_seq: target,
            unpinned,
            text: String::new(),
            ..msg(conv, seq)
        }
    }

    #[test]
    fn the_newest_pin_entry_decides_whatever_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        let pinned = |c: &Cache| c.pins(1).unwrap().into_iter().map(|p| p.seq).collect::<Vec<_>>();
        // The unpin (seq 5) arrives before the pin it undoes (seq 4); 2 is pinned before its target arrives.
        c.insert_messages(&[pin(1, 5, 1, true), pin(1, 6, 2, false)]).unwrap();
        assert_eq!(pinned(&c), vec![2], "a pin before its target is listed");
        assert!(c.pins(1).unwrap()[0].message.is_none());
        c.insert_messages(&[pin(1, 4, 1, false), pin(1, 3, 1, false)]).unwrap();
        assert_eq!(pinned(&c), vec![2], "the late older pins do not override the newer unpin");
        c.insert_messages(&[msg(1, 1), msg(1, 2), pin(1, 7, 1, false)]).unwrap();
        assert_eq!(pinned(&c), vec![1, 2], "most recently pinned first");
        assert_eq!(c.pins(1).unwrap()[1].message.as_ref().map(|m| m.text.as_str()), Some("t2"));
        // Another conversation is untouched; a recall takes the pin away.
        assert!(c.pins(2).unwrap().is_empty());
        c.insert_messages(&[Message { kind: MessageKind::Recall as i32, target_seq: 1, ..msg(1, 8) }])
            .unwrap();
        assert_eq!(pinned(&c), vec![2]);
    }

    #[test]
    fn sync_carries_my_own_cursors_from_my_other_devices() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        c.set_meta("user_id", "5").unwrap();
        c.insert_messages(&[msg(1, 1), msg(1, 2), msg(1, 3)]).unwrap();
        assert_eq!(c.conversations().unwrap()[0].unread, 3);
        let member = |user_id, read_seq| v1::Member { user_id, role: 0, delivered_seq: 3, read_seq };
        let state = ConversationState {
            id: 1,
            kind: v1::ConversationKind::Direct as i32,
            last_seq: 3,
            active: true,
            members: vec![member(5, 2), member(2, 0)],
            ..Default::default()
        };
        c.apply_conversations(std::slice::from_ref(&state)).unwrap();
        assert_eq!(c.conversations().unwrap()[0].unread, 1, "read to 2 on another device");
        assert!(c.unreported_cursors().unwrap().is_empty(), "nothing to tell the server back");
        // Never backwards: a local read further on stays.
        c.mark_read(1, 3).unwrap();
        c.apply_conversations(std::slice::from_ref(&state)).unwrap();
        assert_eq!(c.conversations().unwrap()[0].unread, 0);
    }

    #[test]
    fn an_ack_with_the_stored_entry_keeps_the_servers_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        c.set_meta("user_id", "5").unwrap();
        c.enqueue("cm1", 1, "hi @all", &[7, 8], 0, 0).unwrap();
        let entry = c.outbox(0, 10).unwrap().remove(0);
        let stored = Message {
            conversation_id: 1,
            seq: 4,
            sender_id: 5,
            client_msg_id: "cm1".into(),
            sent_at_ms: 10,
            text: "hi @all".into(),
            mentions: vec![7],
            ..Default::default()
        };
        let ack = v1::SendAck {
            conversation_id: 1,
            seq: 4,
            sent_at_ms: 10,
            client_msg_id: "cm1".into(),
            message: Some(stored),
        };
        c.ack(&entry, &ack, 5).unwrap();
        assert_eq!(c.message(1, 4).unwrap().unwrap().mentions, vec![7], "the server filtered a mention");
        // Without the entry (an older server) the sent content is kept, as before.
        c.enqueue("cm2", 1, "again", &[8], 0, 0).unwrap();
        let entry = c.outbox(0, 10).unwrap().remove(0);
        let ack = v1::SendAck {
            conversation_id: 1,
            seq: 5,
            sent_at_ms: 11,
            client_msg_id: "cm2".into(),
            message: None,
        };
        c.ack(&entry, &ack, 5).unwrap();
        assert_eq!(c.message(1, 5).unwrap().unwrap().mentions, vec![8]);
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

    fn attachment() -> v1::Attachment {
        v1::Attachment {
            kind: v1::AttachmentKind::AttachmentImage as i32,
            file_id: vec![1; 32],
            name: "图.png".into(),
            size: 3,
            mime: "image/png".into(),
            width: 2,
            height: 1,
            thumbnail: vec![9, 9],
            ..Default::default()
        }
    }

    #[test]
    fn an_old_cache_gains_attachments_and_keeps_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            // A cache written before files existed.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute(
                "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text)
                 VALUES (1, 1, 2, 'm1', 0, 0, 'old')",
                [],
            )
            .unwrap();
        }
        let mut c = Cache::open(&path).unwrap();
        let file = Message { kind: MessageKind::File as i32, attachment: Some(attachment()), ..msg(1, 2) };
        c.insert_messages(&[file]).unwrap();
        let all = c.all_messages(1).unwrap();
        assert_eq!((all[0].text.as_str(), &all[0].attachment), ("old", &None));
        assert_eq!(all[1].kind, "file");
        assert_eq!(all[1].attachment, Some(Attachment::from_wire(&attachment())));
        assert_eq!(all[1].attachment.as_ref().unwrap().thumbnail, vec![9, 9], "thumbnails are kept");
        assert_eq!(c.message_attachment(1, 2).unwrap(), Some(attachment()));
        drop(c);
        // Opening again applies nothing twice; a recall clears the attachment.
        let mut c = Cache::open(&path).unwrap();
        let recall = Message { kind: MessageKind::Recall as i32, target_seq: 2, ..msg(1, 3) };
        c.insert_messages(&[recall]).unwrap();
        assert_eq!(c.message(1, 2).unwrap().unwrap().attachment, None);
        assert_eq!(c.message_attachment(1, 2).unwrap(), None);
    }

    #[test]
    fn a_file_message_enters_the_outbox_once_and_its_transfer_moves_only_as_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("c.db")).unwrap();
        c.set_meta("user_id", "5").unwrap();
        let t = Transfer {
            id: "t1".into(),
            direction: TransferDirection::Upload,
            state: TransferState::Queued,
            conversation_id: 1,
            seq: 0,
            client_msg_id: "cm1".into(),
            kind: AttachmentKind::Image,
            name: "图.png".into(),
            local_path: PathBuf::from("/tmp/图.png"),
            total_bytes: 3,
            done_bytes: 0,
            wire_bytes: 0,
            error: None,
            error_code: None,
            created_at_ms: 1,
        };
        c.insert_transfer(&t, None).unwrap();
        c.insert_transfer(&Transfer { id: "t2".into(), created_at_ms: 2, ..t.clone() }, None).unwrap();
        let ids: Vec<String> = c.transfers().unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["t2", "t1"], "newest first");
        assert!(c.set_transfer_state("t1", &[TransferState::Queued], TransferState::Running, None).unwrap());
        assert!(!c.set_transfer_state("t1", &[TransferState::Queued], TransferState::Paused, None).unwrap());
        assert!(c
            .set_transfer_state(
                "t2",
                &[TransferState::Queued],
                TransferState::Failed,
                Some(("QUOTA_EXCEEDED", "full"))
            )
            .unwrap());
        let failed = c.transfer_record("t2").unwrap().unwrap().transfer;
        assert_eq!(
            (failed.error_code.as_deref(), failed.error.as_deref()),
            (Some("QUOTA_EXCEEDED"), Some("full"))
        );
        assert_eq!(c.transfer_ids_in(&[TransferState::Running]).unwrap(), ["t1"]);

        c.enqueue_file_message("t1", "cm1", 1, &attachment()).unwrap();
        c.enqueue_file_message("t1", "cm1", 1, &attachment()).unwrap();
        let outbox = c.outbox(0, 10).unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].text, "图.png");
        assert_eq!(outbox[0].attachment, Some(Attachment::from_wire(&attachment())));
        assert_eq!(c.transfer_record("t1").unwrap().unwrap().phase, "message");
        assert_eq!(c.my_message_outcome("cm1").unwrap(), SendOutcome::Waiting);
        let ack = v1::SendAck {
            conversation_id: 1,
            seq: 7,
            sent_at_ms: 10,
            client_msg_id: "cm1".into(),
            message: None,
        };
        c.ack(&outbox[0], &ack, 5).unwrap();
        assert_eq!(c.my_message_outcome("cm1").unwrap(), SendOutcome::Sent { conversation_id: 1, seq: 7 });
        let stored = c.message(1, 7).unwrap().unwrap();
        assert_eq!((stored.kind, stored.text.as_str()), ("file", "图.png"));
        assert_eq!(stored.attachment.unwrap().width, 2);
        assert!(c.outbox(0, 10).unwrap().is_empty());

        // Wire bytes start again at zero in a new process; paths survive as they are.
        c.set_transfer_progress("t1", 3, 3, 3).unwrap();
        c.reset_wire_bytes().unwrap();
        let again = c.transfer_record("t1").unwrap().unwrap().transfer;
        assert_eq!((again.done_bytes, again.wire_bytes), (3, 0));
        assert_eq!(again.local_path, PathBuf::from("/tmp/图.png"));
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
