//! What the audit side stores: the hash-chained action log, the message
//! archive's search (keyword index included), and the retention rules and
//! their removal of old messages. The SQLite implementation is
//! `storage/sqlite/audit.rs`.

use serde::Serialize;

use crate::error::ServiceError;

/// One stored entry of the action log, as written and as checked.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: u64,
    pub at: i64,
    pub actor_id: Option<u64>,
    pub actor_account: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: u64,
    pub at_ms: i64,
    pub actor_id: Option<u64>,
    pub actor_account: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchivedMessage {
    pub conversation_id: u64,
    pub conversation_kind: &'static str,
    pub conversation_name: String,
    pub seq: u64,
    pub sender_id: u64,
    pub sender_account: String,
    pub sender_name: String,
    pub sent_at_ms: i64,
    pub kind: &'static str,
    pub text: String,
    pub recalled: bool,
    /// For a file, image or folder message: what it holds (the bytes are
    /// at `/audit/messages/files/{file_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<ArchivedFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchivedFile {
    pub kind: &'static str,
    /// Hex; for a folder, the file holding its manifest.
    pub file_id: String,
    pub size: u64,
    pub file_count: u32,
}

/// Which archived messages a search wants (checked by the domain).
#[derive(Debug, Default)]
pub struct ArchiveFilter {
    /// Text and file messages containing it. Three or more characters use
    /// the keyword index; shorter ones scan within the other filters.
    pub keyword: Option<String>,
    /// Sent by this person or in a conversation they are or were in.
    pub person: Option<u64>,
    pub conversation_id: Option<u64>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub offset: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub direct_days: u32,
    pub group_days: u32,
}

/// Messages of one conversation old enough for retention.
pub struct RetentionVictim {
    pub conversation_id: u64,
    /// The newest seq to remove: everything up to it goes.
    pub up_to: u64,
    pub count: u64,
}

/// The audit side's rows. Writes run inside the caller's transaction.
pub trait AuditStore {
    /// The newest entry of the action log: (id, hash).
    fn audit_head(&self) -> Result<Option<(u64, String)>, ServiceError>;
    fn append_audit(&self, row: &AuditRow) -> Result<(), ServiceError>;
    /// A page of the log, newest first, and how many entries there are.
    fn audit_entries(&self, offset: u64, limit: u64) -> Result<(Vec<AuditEntry>, u64), ServiceError>;
    /// The whole log, oldest first (for `verify`).
    fn audit_rows(&self) -> Result<Vec<AuditRow>, ServiceError>;
    /// Archived messages matching, newest first, each handed to `each`.
    fn search_archive(
        &self,
        filter: &ArchiveFilter,
        each: &mut dyn FnMut(ArchivedMessage) -> Result<(), ServiceError>,
    ) -> Result<(), ServiceError>;
    fn retention_rules(&self) -> Result<Retention, ServiceError>;
    fn set_retention_rules(&self, rules: &Retention) -> Result<(), ServiceError>;
    /// Per conversation of `kind` (0 direct, 1 group): the messages sent before `cutoff_ms`.
    fn retention_victims(&self, kind: i32, cutoff_ms: i64) -> Result<Vec<RetentionVictim>, ServiceError>;
    /// Removes a conversation's messages up to `up_to` (their index entries
    /// and file references too, moving its `first_seq`), keeping the dedupe
    /// keys of removed sends with `removed_at = now`.
    fn remove_messages(&self, conversation_id: u64, up_to: u64, now: i64) -> Result<(), ServiceError>;
    /// Forgets dedupe keys kept since before `before_ms`.
    fn forget_dedupe_keys(&self, before_ms: i64) -> Result<(), ServiceError>;
}
