//! What the notices domain stores: a notice (`notices`) and one row per
//! recipient (`notice_recipients`) with what they did and when. Each change to
//! a recipient's row takes a new value of the notices' own change counter, so
//! a recipient syncs their notices by it. The SQLite implementation is
//! `storage/sqlite/notices.rs`.

use hutong_protocol::v1;

use crate::error::ServiceError;

/// A notice as sent (everything but the recipients).
#[derive(Debug, Clone, Default)]
pub struct NewNotice {
    pub sender_id: u64,
    pub client_id: String,
    /// SHA-256 of what the send asked for: a retry with other content is a conflict.
    pub content_hash: Vec<u8>,
    pub title: String,
    pub body: String,
    pub priority: i32,
    pub sign_required: bool,
    pub deadline_ms: i64,
    pub buttons: Vec<String>,
    /// What was asked for (people, departments, groups, everyone), as JSON.
    pub targets: String,
    pub sent_at_ms: i64,
    /// For a manager's summary: the notice it is about, and who has not signed it.
    pub summary_of: u64,
    pub unsigned_users: Vec<u64>,
}

/// A recipient at send time: the person and their department then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addressee {
    pub user_id: u64,
    pub department_id: u64,
}

/// A recipient row that changed, for the pushes after commit.
/// What a recipient does to their notices (`mark_notices`).
#[derive(Debug, Clone, Copy)]
pub struct Mark<'a> {
    pub action: v1::NoticeAction,
    /// The session's device, recorded with a signature.
    pub device: &'a str,
    /// A choice's button and comment.
    pub button: &'a str,
    pub comment: &'a str,
    pub now_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Changed {
    pub notice_id: u64,
    pub sender_id: u64,
    pub recipient: v1::NoticeRecipient,
}

/// A notice's header as its sender's tools need it.
#[derive(Debug, Clone)]
pub struct NoticeHead {
    pub id: u64,
    pub sender_id: u64,
    pub content_hash: Vec<u8>,
    pub sign_required: bool,
    pub withdrawn: bool,
    pub deadline_ms: i64,
    pub buttons: Vec<String>,
    pub summary_of: u64,
}

pub trait NoticesStore {
    /// The notice `sender` sent with this client id, if any.
    fn notice_by_client_id(&self, sender: u64, client_id: &str) -> Result<Option<NoticeHead>, ServiceError>;
    fn notice_head(&self, id: u64) -> Result<Option<NoticeHead>, ServiceError>;
    /// Stores a notice and its recipients (each row a new change); returns its id.
    fn insert_notice(&self, notice: &NewNotice, recipients: &[Addressee]) -> Result<u64, ServiceError>;
    /// Enabled people (not applications) in these departments or any
    /// department below them, primary or further membership.
    fn people_in_departments(&self, departments: &[u64]) -> Result<Vec<Addressee>, ServiceError>;
    /// Every enabled person but applications.
    fn everyone(&self) -> Result<Vec<Addressee>, ServiceError>;
    /// These people, when they exist and are enabled.
    fn addressees(&self, users: &[u64]) -> Result<Vec<Addressee>, ServiceError>;
    /// `user`'s notices whose row changed after `since`, oldest change first.
    fn notices_for(&self, user: u64, since: u64, limit: u32) -> Result<Vec<v1::Notice>, ServiceError>;
    /// One notice as `user` (a recipient) sees it.
    fn notice_for(&self, user: u64, id: u64) -> Result<Option<v1::Notice>, ServiceError>;
    /// One notice's content, without any recipient's state.
    fn notice_content(&self, id: u64) -> Result<Option<v1::Notice>, ServiceError>;
    /// Applies a recipient's action to the notices of `ids` addressed to
    /// them (withdrawn ones excepted); returns the rows that changed.
    fn mark_notices(&self, user: u64, ids: &[u64], mark: &Mark<'_>) -> Result<Vec<Changed>, ServiceError>;
    /// Marks a notice withdrawn; every recipient's row changes. Returns the recipients.
    fn withdraw_notice(&self, id: u64, now_ms: i64) -> Result<Vec<u64>, ServiceError>;
    /// Reminds the recipients who have not signed; returns them.
    fn remind_unsigned(&self, id: u64, now_ms: i64) -> Result<Vec<u64>, ServiceError>;
    fn notice_counts(&self, id: u64) -> Result<v1::NoticeCounts, ServiceError>;
    fn notice_recipients(
        &self,
        id: u64,
        filter: v1::NoticeFilter,
        after_user: u64,
        limit: u32,
    ) -> Result<Vec<v1::NoticeRecipient>, ServiceError>;
    /// Notices `sender` sent (not summaries), newest first, before `before_id` (0: all).
    fn sent_notices(&self, sender: u64, before_id: u64, limit: u32) -> Result<Vec<v1::Notice>, ServiceError>;
    /// Notices whose deadline has passed and were not yet handled.
    fn due_notices(&self, now_ms: i64) -> Result<Vec<u64>, ServiceError>;
    /// The earliest deadline not yet handled.
    fn next_deadline(&self) -> Result<Option<i64>, ServiceError>;
    fn finish_deadline(&self, id: u64) -> Result<(), ServiceError>;
    /// The managers (from the directory) of these people: `(person, manager)`.
    fn managers_of(&self, users: &[u64]) -> Result<Vec<(u64, u64)>, ServiceError>;
}
