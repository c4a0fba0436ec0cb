//! What messaging reads outside the writer: members, messages, conversation
//! states, sync keys, users by name. (The writer's own reads and writes of
//! these rows are still SQL in `messaging/writer.rs`.) The SQLite
//! implementation is `storage/sqlite/messages.rs`.

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
    /// Every member row of a conversation, those who left included.
    fn member_rows(&self, conversation_id: u64) -> Result<Vec<MemberRow>, ServiceError>;
    fn active_members(&self, conversation_id: u64) -> Result<Vec<u64>, ServiceError>;
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
