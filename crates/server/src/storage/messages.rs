//! Messaging's rows: what is read outside the writer (members, messages,
//! conversation states, sync keys, users by name: `MessagesRead`) and what
//! the writer thread reads and writes inside its transaction
//! (`MessagesWrite`). The SQLite implementation is
//! `storage/sqlite/messages.rs`.

use hutong_protocol::v1::{self, Member, Message};

use crate::error::ServiceError;

/// The caller's view of a member row: `None` if the user was never a member.
pub struct Membership {
    pub active: bool,
    pub until_seq: Option<u64>,
    pub role: i32,
}

/// A conversation's own row.
pub struct ConversationRow {
    pub kind: i32,
    pub name: String,
    pub last_seq: u64,
    pub version: u64,
    pub first_seq: u64,
}

/// One member row of a conversation, cursors included.
pub struct MemberRow {
    pub member: Member,
    pub active: bool,
    pub until_seq: Option<u64>,
    pub version: u64,
}

/// Messaging's reads.
pub trait MessagesRead {
    fn membership(&self, conversation_id: u64, user_id: u64) -> Result<Option<Membership>, ServiceError>;
    /// Up to `limit` messages with `after < seq <= ceiling`, oldest first.
    fn messages_after(
        &self,
        conversation_id: u64,
        after: u64,
        ceiling: u64,
        limit: u32,
    ) -> Result<Vec<Message>, ServiceError>;
    /// Up to `limit` messages with `seq < before` and `seq <= ceiling`, newest first.
    fn messages_before(
        &self,
        conversation_id: u64,
        before: u64,
        ceiling: u64,
        limit: u32,
    ) -> Result<Vec<Message>, ServiceError>;
    fn conversation(&self, conversation_id: u64) -> Result<Option<ConversationRow>, ServiceError>;
    /// One log entry, as the wire carries it (a recalled one without its content).
    fn message_at(&self, conversation_id: u64, seq: u64) -> Result<Option<Message>, ServiceError>;
    /// The sends of `sender` whose `client_msg_id` starts with `prefix`.
    fn sends_with_id_prefix(&self, sender: u64, prefix: &str) -> Result<Vec<Message>, ServiceError>;
    /// The text of the newest EDIT entry of a TEXT message, if it was edited.
    fn newest_edit(&self, conversation_id: u64, seq: u64) -> Result<Option<String>, ServiceError>;
    /// Every member row of a conversation, those who left included.
    fn member_rows(&self, conversation_id: u64) -> Result<Vec<MemberRow>, ServiceError>;
    fn active_members(&self, conversation_id: u64) -> Result<Vec<u64>, ServiceError>;
    /// Whether `a` and `b` are (or were) members of a common conversation.
    fn share_a_conversation(&self, a: u64, b: u64) -> Result<bool, ServiceError>;
    /// `user_id`'s conversations whose key (version, conversation id) comes
    /// after `(since, since_id)`, in key order, at most `limit`: the version
    /// is the member row's, or while active its conversation's if newer.
    fn sync_keys(
        &self,
        user_id: u64,
        since: u64,
        since_id: u64,
        limit: u32,
    ) -> Result<Vec<(u64, u64)>, ServiceError>;
    fn user_by_account(&self, account: &str) -> Result<Option<v1::User>, ServiceError>;
    fn user_by_id(&self, id: u64) -> Result<Option<v1::User>, ServiceError>;
    /// Senders (other than `reader`) of text and file messages with
    /// `from < seq <= to`: who a read mark concerns.
    fn senders_between(
        &self,
        conversation_id: u64,
        from: u64,
        to: u64,
        reader: u64,
    ) -> Result<Vec<u64>, ServiceError>;
}

/// A message as a recall checks it.
pub struct RecallTarget {
    pub sender_id: u64,
    pub sent_at: i64,
    pub kind: i32,
    pub recalled: bool,
}

/// An earlier send with the same `(sender, client_msg_id)`: stored, or
/// removed by retention with its dedupe key kept.
pub enum EarlierSend {
    /// `attachment` is the stored attachment's encoding, as kept in the row.
    Stored { message: Message, content_hash: Option<Vec<u8>>, attachment: Option<Vec<u8>> },
    /// `message` holds only what the acknowledgement needs (conversation,
    /// seq, sent time, sender, id).
    Removed { message: Message, content_hash: Option<Vec<u8>> },
}

/// The writer's own rows, inside its transaction: appending log entries and
/// the dedupe look-ups of sends, group changes, recalls, cursors and the
/// keyword index.
pub trait MessagesWrite {
    /// Appends `entry` to its conversation's log: takes the conversation's
    /// next seq (giving the conversation `version`), stores the entry with
    /// `content_hash` (sends only) and queues text and file entries for the
    /// keyword index. `entry.seq` and `entry.recalled` are ignored; returns
    /// the seq taken.
    fn append_entry(
        &self,
        entry: &Message,
        content_hash: Option<&[u8; 32]>,
        version: u64,
    ) -> Result<u64, ServiceError>;
    /// The send of `sender` with this id, if there was one (the dedupe
    /// key space holds sends only).
    fn earlier_send(&self, sender: u64, client_msg_id: &str) -> Result<Option<EarlierSend>, ServiceError>;
    /// The merged forward (kind FORWARD) of `sender` with this id, if there
    /// was one (its own dedupe key space).
    fn earlier_forward(&self, sender: u64, client_msg_id: &str) -> Result<Option<Message>, ServiceError>;
    /// The newest version any conversation or member row holds.
    fn max_version(&self) -> Result<u64, ServiceError>;
    fn conversation_kind(&self, conversation_id: u64) -> Result<Option<i32>, ServiceError>;
    /// Active members and their roles.
    fn active_member_roles(&self, conversation_id: u64) -> Result<Vec<(u64, i32)>, ServiceError>;
    /// `None` if there is no such person; else whether they are disabled.
    fn user_disabled(&self, id: u64) -> Result<Option<bool>, ServiceError>;
    fn set_conversation_version(&self, conversation_id: u64, version: u64) -> Result<(), ServiceError>;
    fn recall_target(&self, conversation_id: u64, seq: u64) -> Result<Option<RecallTarget>, ServiceError>;
    fn mark_recalled(&self, conversation_id: u64, seq: u64) -> Result<(), ServiceError>;
    /// Makes `user` an active member with `role` (again, if they had left).
    fn upsert_member(
        &self,
        conversation_id: u64,
        user: u64,
        role: i32,
        version: u64,
    ) -> Result<(), ServiceError>;
    /// The direct conversation with this key (`"<lower id>:<higher id>"`).
    fn direct_conversation(&self, key: &str) -> Result<Option<u64>, ServiceError>;
    /// A new, empty conversation; returns its id.
    fn insert_conversation(
        &self,
        kind: i32,
        name: &str,
        direct_key: Option<&str>,
        version: u64,
        created_at: i64,
    ) -> Result<u64, ServiceError>;
    fn rename_conversation(&self, conversation_id: u64, name: &str) -> Result<(), ServiceError>;
    /// A member leaves: they may still read up to `until_seq`.
    fn deactivate_member(
        &self,
        conversation_id: u64,
        user: u64,
        until_seq: u64,
        version: u64,
    ) -> Result<(), ServiceError>;
    fn set_member_role(
        &self,
        conversation_id: u64,
        user: u64,
        role: i32,
        version: u64,
    ) -> Result<(), ServiceError>;
    /// The conversation's last seq and the member's delivered and read positions.
    fn cursors(&self, conversation_id: u64, user: u64) -> Result<(u64, u64, u64), ServiceError>;
    fn set_cursors(
        &self,
        conversation_id: u64,
        user: u64,
        delivered: u64,
        read: u64,
        version: u64,
    ) -> Result<(), ServiceError>;
    /// Moves up to `limit` waiting text messages into the keyword index;
    /// returns how many it took.
    fn index_pending(&self, limit: usize) -> Result<usize, ServiceError>;
}
