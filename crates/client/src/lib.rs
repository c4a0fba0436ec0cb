//! The headless Hutong client core. It owns the connection (connect, log in,
//! heartbeats, reconnect with back-off), the local cache, the persistent
//! outbox and sync; a UI (the CLI today, the desktop app later) reads the
//! cache, calls the methods of [`Client`] and listens to [`Event`]s. No GUI
//! dependency lives here.
//!
//! Delivery guarantee: a message accepted by [`Client::send_text`] is in the
//! outbox on disk before the call returns and leaves it only when the server
//! acknowledges its durable commit; retries carry the same `client_msg_id`,
//! which the server deduplicates. So it is sent exactly once, across
//! reconnects and crashes of either side.

mod bulk;
pub mod cache;
pub mod error;
pub mod files;
pub mod folder;
pub mod media;
pub mod notices;
pub mod profile;
mod requests;
mod session;
mod transfer;
pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hutong_protocol::v1::{self, ConversationState, Priority};
use hutong_protocol::{Payload, MAX_TEXT_LEN};
use serde::Serialize;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;

pub use cache::{
    Cache, CachedMessage, ConversationSummary, DirectoryDepartment, DirectoryPerson, ForwardItem,
    ForwardRecord, OutboxEntry, Pin, Reaction, SendOutcome, SystemEventData,
};
pub use error::ClientError;
pub use files::{Attachment, AttachmentKind, Transfer, TransferDirection, TransferState};
pub use profile::Profile;
pub use transport::ServerAddr;

/// Messages read from the cache (or fetched) per page of history.
pub const HISTORY_PAGE: usize = 500;
/// Most messages one [`Client::history_range`] call returns.
pub const MAX_HISTORY: usize = 100_000;

/// How to log in on the next connection.
#[derive(Clone)]
pub enum Credential {
    Password(String),
    Token(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs.
        f.write_str(match self {
            Credential::Password(_) => "Password(..)",
            Credential::Token(_) => "Token(..)",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub server: ServerAddr,
    pub account: String,
    /// One session per device; use a stable name per installation.
    pub device: String,
    pub cache_path: PathBuf,
    /// The certificate fingerprint to insist on; `None` trusts the first one
    /// seen, which is then insisted on for the rest of this client's life.
    pub pinned_fingerprint: Option<String>,
    /// The person chose an unencrypted connection (`tcp://`, `ws://`)
    /// explicitly; without it such addresses are refused.
    pub insecure_plaintext: bool,
    /// First reconnect delay; doubles per failure up to `backoff_max`, with jitter.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often to sync while online without being asked (with ±25 %
    /// jitter), so a push that never arrived is found without other activity.
    pub sync_interval: Duration,
}

impl ClientOptions {
    pub fn new(server: ServerAddr, account: &str, cache_path: PathBuf) -> Self {
        ClientOptions {
            server,
            account: account.to_owned(),
            device: "default".into(),
            cache_path,
            pinned_fingerprint: None,
            insecure_plaintext: false,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            sync_interval: Duration::from_secs(60),
        }
    }
}

/// The connection as a person should see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Connecting,
    Online,
    /// Waiting `in_ms` before the next attempt; `reason` says what failed.
    Reconnecting {
        in_ms: u64,
        reason: String,
        /// The error's stable code (`NETWORK`, `TOO_MANY_CONNECTIONS`, ...):
        /// a server's answer is told apart from an unreachable server.
        code: String,
    },
    /// Given up until the person acts (bad password, disabled account, changed certificate...).
    Offline {
        code: String,
        reason: String,
    },
}

/// What happened, for the UI.
// Messages are most of the events, so boxing them would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Status(Status),
    /// A new log entry stored in the cache (from anyone, me included).
    Message(CachedMessage),
    /// An outbox entry was committed by the server.
    Acked {
        client_msg_id: String,
        conversation_id: u64,
        seq: u64,
    },
    /// An outbox entry was refused and will not be retried on its own.
    SendFailed {
        client_msg_id: String,
        code: String,
        message: String,
    },
    Cursor {
        conversation_id: u64,
        user_id: u64,
        delivered_seq: u64,
        read_seq: u64,
    },
    Presence {
        user_id: u64,
        status: &'static str,
    },
    Typing {
        conversation_id: u64,
        user_id: u64,
    },
    ConversationsChanged,
    /// The cached directory changed.
    DirectoryChanged,
    /// A sync round finished: the cache holds everything the server had.
    Synced,
    /// A transfer changed state, or moved bytes (at most ~8 times a second).
    Transfer(Transfer),
    /// A notice addressed to me arrived or changed (withdrawn, reminded,
    /// signed on another device).
    Notice(notices::CachedNotice),
    /// A recipient of a notice I sent received, read, signed or chose.
    NoticeProgress {
        notice_id: u64,
        recipient: notices::RecipientState,
    },
}

pub(crate) struct Inner {
    pub(crate) options: ClientOptions,
    pub(crate) cache: Mutex<Cache>,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) credential: Mutex<Credential>,
    pub(crate) user_id: AtomicU64,
    pub(crate) connection: Mutex<Option<Arc<session::Connection>>>,
    /// Wakes the outbox sender.
    pub(crate) outbox_ready: Notify,
    /// Wakes the cursor reporter.
    pub(crate) cursors_dirty: Notify,
    /// Notices arrived whose delivery the server has not heard of.
    pub(crate) notices_dirty: Notify,
    /// Test hook: ends the current connection as if the network dropped.
    pub(crate) drop_now: Notify,
    /// Fingerprint accepted on the first TLS connection; later connections
    /// of this client insist on it.
    pub(crate) fingerprint: Mutex<Option<String>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sync_rounds: AtomicU64,
    /// The outbox entry (and its request id) whose answer the sender waits for, if any.
    pub(crate) sending: Mutex<Option<(i64, u64)>>,
    /// The outbox entry the last connection ended on without its answer.
    pub(crate) failed_send: Mutex<Option<i64>>,
    /// Why the client gave up, when it did.
    pub(crate) fatal: Mutex<Option<ClientError>>,
    /// Why the last connection attempt failed (the client retries).
    pub(crate) last_error: Mutex<Option<ClientError>>,
    /// Uploads and downloads.
    pub(crate) transfers: transfer::Transfers,
}

impl Inner {
    pub(crate) fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub(crate) fn set_status(&self, s: Status) {
        self.status.send_replace(s.clone());
        self.emit(Event::Status(s));
    }
}

/// A running client. Cheap to clone; the connection task stops when
/// [`Client::shutdown`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Opens the cache and starts connecting in the background.
    pub fn start(options: ClientOptions, credential: Credential) -> Result<Client, ClientError> {
        options.server.check_secure(options.insecure_plaintext)?;
        let cache = Cache::open(&options.cache_path)?;
        let user_id = cache.user_id()?;
        let (status, _) = watch::channel(Status::Connecting);
        let (events, _) = broadcast::channel(8192);
        let inner = Arc::new(Inner {
            options,
            cache: Mutex::new(cache),
            status,
            events,
            credential: Mutex::new(credential),
            user_id: AtomicU64::new(user_id),
            connection: Mutex::new(None),
            outbox_ready: Notify::new(),
            cursors_dirty: Notify::new(),
            notices_dirty: Notify::new(),
            drop_now: Notify::new(),
            fingerprint: Mutex::new(None),
            shutdown: CancellationToken::new(),
            sync_rounds: AtomicU64::new(0),
            sending: Mutex::new(None),
            failed_send: Mutex::new(None),
            fatal: Mutex::new(None),
            last_error: Mutex::new(None),
            transfers: transfer::Transfers::default(),
        });
        tokio::spawn(session::run(inner.clone()));
        // Transfers a previous run left queued or running go on by themselves.
        transfer::resume_unfinished(&inner)?;
        Ok(Client { inner })
    }

    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// My user id (0 until the first login).
    pub fn user_id(&self) -> u64 {
        self.inner.user_id.load(Ordering::Relaxed)
    }

    /// The session token of the current login, to store for later starts.
    pub fn token(&self) -> Option<String> {
        match &*self.inner.credential.lock().unwrap_or_else(|e| e.into_inner()) {
            Credential::Token(t) => Some(t.clone()),
            Credential::Password(_) => None,
        }
    }

    /// The server certificate fingerprint seen on the last TLS connection.
    pub fn fingerprint(&self) -> Option<String> {
        self.inner.fingerprint.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until online, or fails with the reason the client gave up.
    pub async fn wait_online(&self) -> Result<(), ClientError> {
        let mut rx = self.status();
        loop {
            match &*rx.borrow_and_update() {
                Status::Online => return Ok(()),
                Status::Offline { .. } => {
                    let fatal = self.inner.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    return Err(fatal.unwrap_or(ClientError::Closed));
                }
                _ => {}
            }
            rx.changed().await.map_err(|_| ClientError::Closed)?;
        }
    }

    /// Why the last connection attempt failed, while the client retries
    /// (`None` once online or before any failure).
    pub fn last_error(&self) -> Option<ClientError> {
        if *self.inner.status.borrow() == Status::Online {
            return None;
        }
        self.inner.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for the next completed sync round (started after this call).
    pub async fn wait_synced(&self) -> Result<(), ClientError> {
        let mut events = self.events();
        loop {
            match events.recv().await {
                Ok(Event::Synced) => return Ok(()),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(ClientError::Closed),
            }
        }
    }

    /// Asks the connection to run a sync round now.
    pub fn request_sync(&self) {
        if let Some(c) = self.connection() {
            c.sync_wanted.notify_one();
        }
    }

    /// Writes a message to the outbox (durably) and returns its `client_msg_id`.
    /// It is sent now if online, else as soon as the connection is back.
    pub fn send_text(
        &self,
        conversation_id: u64,
        text: &str,
        options: SendOptions,
    ) -> Result<String, ClientError> {
        if text.trim().is_empty() {
            return Err(ClientError::Remote {
                code: hutong_protocol::ErrorCode::BadRequest,
                message: "the message is empty".into(),
                retry_after_ms: 0,
            });
        }
        if text.len() > MAX_TEXT_LEN {
            return Err(ClientError::Remote {
                code: hutong_protocol::ErrorCode::TooLarge,
                message: format!("a message holds at most {MAX_TEXT_LEN} bytes"),
                retry_after_ms: 0,
            });
        }
        let id = uuid::Uuid::now_v7().to_string();
        let priority = if options.urgent { Priority::Urgent as i32 } else { Priority::Normal as i32 };
        self.inner.cache().enqueue(
            &id,
            conversation_id,
            text,
            &options.mentions,
            options.reply_to_seq,
            priority,
        )?;
        self.inner.outbox_ready.notify_one();
        Ok(id)
    }

    /// Puts a failed message back in the outbox.
    pub fn retry(&self, client_msg_id: &str) -> Result<bool, ClientError> {
        let ok = self.inner.cache().retry(client_msg_id)?;
        self.inner.outbox_ready.notify_one();
        Ok(ok)
    }

    /// Where a message from [`Client::send_text`] stands, from the cache:
    /// the answer to "was it acknowledged?" even when its event was missed.
    pub fn send_outcome(&self, client_msg_id: &str) -> Result<SendOutcome, ClientError> {
        self.inner.cache().my_message_outcome(client_msg_id)
    }

    /// Messages written but not yet acknowledged (pending or failed).
    pub fn outbox(&self, conversation_id: Option<u64>) -> Result<Vec<OutboxEntry>, ClientError> {
        self.inner.cache().outbox_all(conversation_id)
    }

    pub fn conversations(&self) -> Result<Vec<ConversationSummary>, ClientError> {
        self.inner.cache().conversations()
    }

    /// A page of history, oldest first, from the cache; when the cache has a
    /// hole in that page and the server is reachable, the hole is fetched first.
    pub async fn history(
        &self,
        conversation_id: u64,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CachedMessage>, ClientError> {
        let limit = limit.clamp(1, 500);
        let page = self.inner.cache().history(conversation_id, before_seq, limit)?;
        let top = before_seq
            .map(|b| b.saturating_sub(1))
            .unwrap_or_else(|| page.last().map(|m| m.seq).unwrap_or(0));
        let expected = (top as usize).min(limit);
        if page.len() >= expected || self.connection().is_none() {
            return Ok(page);
        }
        let req = v1::FetchMessages {
            conversation_id,
            after_seq: 0,
            before_seq: before_seq.unwrap_or(top + 1),
            limit: limit as u32,
        };
        if let Ok(Payload::MessageBatch(batch)) = self.call(Payload::FetchMessages(req)).await {
            self.inner.cache().insert_messages(&batch.messages)?;
        }
        self.inner.cache().history(conversation_id, before_seq, limit)
    }

    /// Up to `limit` messages (at most [`MAX_HISTORY`]) oldest first, between
    /// `after_seq` and `before_seq` (both exclusive): the oldest ones after
    /// `after_seq` when it is given, else the newest before `before_seq`.
    /// Pages through the cache [`HISTORY_PAGE`] at a time, fetching what
    /// the cache lacks from the server when it is reachable.
    pub async fn history_range(
        &self,
        conversation_id: u64,
        after_seq: Option<u64>,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CachedMessage>, ClientError> {
        let limit = limit.min(MAX_HISTORY);
        let mut out: Vec<CachedMessage> = Vec::new();
        match after_seq {
            None => {
                // Backwards from the newest (or `before_seq`); each page ends below the last.
                let mut before = before_seq;
                while out.len() < limit {
                    let want = (limit - out.len()).min(HISTORY_PAGE);
                    let page = self.history(conversation_id, before, want).await?;
                    let Some(first) = page.first().map(|m| m.seq) else { break };
                    if before.is_some_and(|b| first >= b) {
                        break;
                    }
                    out.splice(0..0, page);
                    before = Some(first);
                }
            }
            Some(after) => {
                // Forwards: a page from the cache; if it has holes, ask the server for that page.
                let mut after = after;
                while out.len() < limit {
                    let want = (limit - out.len()).min(HISTORY_PAGE);
                    let mut page =
                        self.inner.cache().history_after(conversation_id, after, before_seq, want)?;
                    let dense = page.iter().enumerate().all(|(i, m)| m.seq == after + 1 + i as u64);
                    let reaches_end = before_seq.is_some_and(|b| after + 1 + page.len() as u64 >= b);
                    if (!dense || (page.len() < want && !reaches_end)) && self.connection().is_some() {
                        let req = v1::FetchMessages {
                            conversation_id,
                            after_seq: after,
                            before_seq: 0,
                            limit: want as u32,
                        };
                        if let Ok(Payload::MessageBatch(batch)) = self.call(Payload::FetchMessages(req)).await
                        {
                            self.inner.cache().insert_messages(&batch.messages)?;
                        }
                        page = self.inner.cache().history_after(conversation_id, after, before_seq, want)?;
                    }
                    let Some(last) = page.last().map(|m| m.seq) else { break };
                    out.extend(page);
                    after = last;
                }
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Marks everything up to `seq` as read; the server and my other devices learn of it.
    pub fn mark_read(&self, conversation_id: u64, seq: u64) -> Result<(), ClientError> {
        self.inner.cache().mark_read(conversation_id, seq)?;
        self.inner.cursors_dirty.notify_one();
        Ok(())
    }

    /// Tells the server now about cursors it has not heard of (the background
    /// reporter does this too; a short-lived CLI command cannot wait for it).
    pub async fn report_cursors(&self) -> Result<(), ClientError> {
        let dirty = self.inner.cache().unreported_cursors()?;
        for (conversation_id, delivered, read) in dirty {
            let req = v1::UpdateCursor { conversation_id, delivered_seq: delivered, read_seq: read };
            self.call(Payload::UpdateCursor(req)).await?;
            self.inner.cache().cursors_reported(conversation_id, delivered, read)?;
        }
        Ok(())
    }

    /// Sub-departments and people of a department (0: the top level), from the cache.
    pub fn directory_children(
        &self,
        parent: u64,
    ) -> Result<(Vec<DirectoryDepartment>, Vec<DirectoryPerson>), ClientError> {
        self.inner.cache().directory_children(parent)
    }

    pub fn directory_department(&self, id: u64) -> Result<Option<DirectoryDepartment>, ClientError> {
        self.inner.cache().directory_department(id)
    }

    pub fn directory_person(&self, account: &str) -> Result<Option<DirectoryPerson>, ClientError> {
        self.inner.cache().directory_person(account)
    }

    /// Searches the cached directory: Chinese name, pinyin (zhangsan), initials (zs), account, title, department.
    pub fn search_directory(&self, query: &str, limit: usize) -> Result<Vec<DirectoryPerson>, ClientError> {
        self.inner.cache().search_directory(query, limit.clamp(1, 1000))
    }

    /// (departments, people) in the cached directory.
    pub fn directory_counts(&self) -> Result<(u64, u64), ClientError> {
        self.inner.cache().directory_counts()
    }

    pub fn directory_person_by_id(&self, user_id: u64) -> Result<Option<DirectoryPerson>, ClientError> {
        self.inner.cache().directory_person_by_id(user_id)
    }

    /// People in a department and every department below it.
    pub fn department_member_count(&self, id: u64) -> Result<u64, ClientError> {
        self.inner.cache().department_member_count(id)
    }

    /// The name to show for a user, from the cache (`None` when unknown here).
    pub fn display_name(&self, user_id: u64) -> Result<Option<String>, ClientError> {
        self.inner.cache().display_name(user_id)
    }

    /// Text messages in the cache containing `query`, newest first.
    pub fn search_messages(&self, query: &str, limit: usize) -> Result<Vec<CachedMessage>, ClientError> {
        self.inner.cache().search_messages(query, limit.clamp(1, 500))
    }

    /// Pins a conversation to the top of this device's list.
    pub fn set_pinned(&self, conversation_id: u64, pinned: bool) -> Result<(), ClientError> {
        self.inner.cache().set_pinned(conversation_id, pinned)?;
        self.inner.emit(Event::ConversationsChanged);
        Ok(())
    }

    /// Mutes a conversation on this device: no notifications, no unread in the total.
    pub fn set_muted(&self, conversation_id: u64, muted: bool) -> Result<(), ClientError> {
        self.inner.cache().set_muted(conversation_id, muted)?;
        self.inner.emit(Event::ConversationsChanged);
        Ok(())
    }

    pub fn is_muted(&self, conversation_id: u64) -> Result<bool, ClientError> {
        self.inner.cache().is_muted(conversation_id)
    }

    /// Member cursors (user, delivered, read) as last known.
    pub fn member_cursors(&self, conversation_id: u64) -> Result<Vec<(u64, u64, u64)>, ClientError> {
        self.inner.cache().member_cursors(conversation_id)
    }

    /// One cached message.
    pub fn cached_message(
        &self,
        conversation_id: u64,
        seq: u64,
    ) -> Result<Option<CachedMessage>, ClientError> {
        self.inner.cache().message(conversation_id, seq)
    }

    /// Every cached message of a conversation, in seq order.
    pub fn cached_messages(&self, conversation_id: u64) -> Result<Vec<CachedMessage>, ClientError> {
        self.inner.cache().all_messages(conversation_id)
    }

    fn connection(&self) -> Option<Arc<session::Connection>> {
        self.inner.connection.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends one request on the current connection and waits for its answer.
    pub async fn call(&self, payload: Payload) -> Result<Payload, ClientError> {
        let conn = self.connection().ok_or(ClientError::Offline)?;
        conn.call(payload).await
    }

    async fn conversation_call(&self, payload: Payload) -> Result<ConversationState, ClientError> {
        match self.call(payload).await? {
            Payload::Conversation(state) => {
                self.inner.cache().apply_conversations(std::slice::from_ref(&state))?;
                self.inner.emit(Event::ConversationsChanged);
                Ok(state)
            }
            other => Err(ClientError::Protocol(format!("expected a conversation, got {other:?}"))),
        }
    }

    /// Adds an incoming webhook to a group the caller owns; the answer's URL
    /// and signing secret (when `signed`) are shown this once.
    pub async fn add_robot(
        &self,
        conversation_id: u64,
        name: &str,
        signed: bool,
        allowed_cidrs: &[String],
    ) -> Result<v1::RobotAdded, ClientError> {
        let req = v1::AddRobot {
            conversation_id,
            name: name.to_owned(),
            signed,
            allowed_cidrs: allowed_cidrs.to_vec(),
        };
        match self.call(Payload::AddRobot(req)).await? {
            Payload::RobotAdded(added) => Ok(added),
            other => Err(ClientError::Protocol(format!("expected a robot, got {other:?}"))),
        }
    }

    /// The robots of a group the caller owns.
    pub async fn robots(&self, conversation_id: u64) -> Result<Vec<v1::Robot>, ClientError> {
        match self.call(Payload::ListRobots(v1::ListRobots { conversation_id })).await? {
            Payload::RobotList(list) => Ok(list.robots),
            other => Err(ClientError::Protocol(format!("expected robots, got {other:?}"))),
        }
    }

    /// Removes a robot of a group the caller owns (its URL stops working);
    /// answers the robots left.
    pub async fn remove_robot(
        &self,
        conversation_id: u64,
        robot_id: u64,
    ) -> Result<Vec<v1::Robot>, ClientError> {
        match self.call(Payload::RemoveRobot(v1::RemoveRobot { conversation_id, robot_id })).await? {
            Payload::RobotList(list) => Ok(list.robots),
            other => Err(ClientError::Protocol(format!("expected robots, got {other:?}"))),
        }
    }

    /// Who of the conversation's members has read message `seq` and who has
    /// not (the sender in neither list), as the server knows it now.
    pub async fn read_list(&self, conversation_id: u64, seq: u64) -> Result<v1::ReadList, ClientError> {
        match self.call(Payload::GetReadList(v1::GetReadList { conversation_id, seq })).await? {
            Payload::ReadList(list) => Ok(list),
            other => Err(ClientError::Protocol(format!("expected a read list, got {other:?}"))),
        }
    }

    /// Sends `text` (with `{name}` and `{department}` filled in per person)
    /// to each person named and everyone in the departments named (with
    /// their sub-departments) as my direct message to them. Returns who got
    /// it; `status.client_msg_id` names it for [`Client::mass_send_status`].
    pub async fn mass_send(
        &self,
        text: &str,
        user_ids: &[u64],
        department_ids: &[u64],
    ) -> Result<v1::MassSendStatus, ClientError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.mass_send_with_id(text, user_ids, department_ids, &id).await
    }

    /// [`Client::mass_send`] with my own id: a retry stores nothing new.
    pub async fn mass_send_with_id(
        &self,
        text: &str,
        user_ids: &[u64],
        department_ids: &[u64],
        client_msg_id: &str,
    ) -> Result<v1::MassSendStatus, ClientError> {
        let req = v1::MassSend {
            text: text.to_owned(),
            attachment: None,
            user_ids: user_ids.to_vec(),
            department_ids: department_ids.to_vec(),
            client_msg_id: client_msg_id.to_owned(),
        };
        match self.call(Payload::MassSend(req)).await? {
            Payload::MassSendStatus(s) => Ok(s),
            other => Err(ClientError::Protocol(format!("expected a mass-send status, got {other:?}"))),
        }
    }

    /// Who has a mass-send's message and who has read it, per person.
    pub async fn mass_send_status(&self, client_msg_id: &str) -> Result<v1::MassSendStatus, ClientError> {
        let req = v1::GetMassSendStatus { client_msg_id: client_msg_id.to_owned() };
        match self.call(Payload::GetMassSendStatus(req)).await? {
            Payload::MassSendStatus(s) => Ok(s),
            other => Err(ClientError::Protocol(format!("expected a mass-send status, got {other:?}"))),
        }
    }

    /// Resolves account names to user ids (and remembers them in the cache).
    pub async fn lookup(&self, accounts: &[String]) -> Result<Vec<v1::User>, ClientError> {
        let req = v1::LookupUsers { accounts: accounts.to_vec(), user_ids: Vec::new() };
        match self.call(Payload::LookupUsers(req)).await? {
            Payload::UserList(list) => {
                self.inner.cache().remember_users(&list.users)?;
                Ok(list.users)
            }
            other => Err(ClientError::Protocol(format!("expected users, got {other:?}"))),
        }
    }

    /// Account names of user ids: from the cache, else asked of the server.
    pub async fn names(&self, ids: &[u64]) -> Result<std::collections::HashMap<u64, String>, ClientError> {
        let mut names = std::collections::HashMap::new();
        let mut missing = Vec::new();
        for &id in ids {
            match self.inner.cache().account_of(id)? {
                Some(a) => {
                    names.insert(id, a);
                }
                None => missing.push(id),
            }
        }
        if !missing.is_empty() && self.connection().is_some() {
            let req = v1::LookupUsers { accounts: Vec::new(), user_ids: missing };
            if let Ok(Payload::UserList(list)) = self.call(Payload::LookupUsers(req)).await {
                self.inner.cache().remember_users(&list.users)?;
                for u in list.users {
                    names.insert(u.id, u.account);
                }
            }
        }
        Ok(names)
    }

    /// User id of an account: from the cache, else asked of the server.
    pub async fn resolve(&self, account: &str) -> Result<u64, ClientError> {
        if let Some(id) = self.inner.cache().user_by_account(account)? {
            return Ok(id);
        }
        self.lookup(&[account.to_owned()])
            .await?
            .into_iter()
            .find(|u| u.account.eq_ignore_ascii_case(account))
            .map(|u| u.id)
            .ok_or(ClientError::Remote {
                code: hutong_protocol::ErrorCode::NotFound,
                message: format!("no account named {account:?}"),
                retry_after_ms: 0,
            })
    }

    pub async fn open_direct(&self, user_id: u64) -> Result<ConversationState, ClientError> {
        self.conversation_call(Payload::OpenDirect(v1::OpenDirect { user_id })).await
    }

    pub async fn create_group(
        &self,
        name: &str,
        member_ids: &[u64],
    ) -> Result<ConversationState, ClientError> {
        let req = v1::CreateGroup { name: name.to_owned(), member_ids: member_ids.to_vec() };
        self.conversation_call(Payload::CreateGroup(req)).await
    }

    pub async fn rename_group(
        &self,
        conversation_id: u64,
        name: &str,
    ) -> Result<ConversationState, ClientError> {
        let req = v1::RenameGroup { conversation_id, name: name.to_owned() };
        self.conversation_call(Payload::RenameGroup(req)).await
    }

    pub async fn add_members(
        &self,
        conversation_id: u64,
        user_ids: &[u64],
    ) -> Result<ConversationState, ClientError> {
        let req = v1::AddMembers { conversation_id, user_ids: user_ids.to_vec() };
        self.conversation_call(Payload::AddMembers(req)).await
    }

    pub async fn remove_member(
        &self,
        conversation_id: u64,
        user_id: u64,
    ) -> Result<ConversationState, ClientError> {
        self.conversation_call(Payload::RemoveMember(v1::RemoveMember { conversation_id, user_id })).await
    }

    pub async fn leave_group(&self, conversation_id: u64) -> Result<ConversationState, ClientError> {
        self.conversation_call(Payload::LeaveGroup(v1::LeaveGroup { conversation_id })).await
    }

    pub async fn set_member_role(
        &self,
        conversation_id: u64,
        user_id: u64,
        role: v1::MemberRole,
    ) -> Result<ConversationState, ClientError> {
        let req = v1::SetMemberRole { conversation_id, user_id, role: role as i32 };
        self.conversation_call(Payload::SetMemberRole(req)).await
    }

    /// Recalls one of my messages (within the server's recall window).
    pub async fn recall(&self, conversation_id: u64, seq: u64) -> Result<(), ClientError> {
        match self.call(Payload::Recall(v1::Recall { conversation_id, seq })).await? {
            Payload::Message(entry) => {
                self.inner.cache().insert_messages(&[entry])?;
                Ok(())
            }
            other => Err(ClientError::Protocol(format!("expected the recall entry, got {other:?}"))),
        }
    }

    /// Edits one of my text messages (within the server's edit window): the
    /// server keeps every version; the cache shows the newest one.
    pub async fn edit(&self, conversation_id: u64, seq: u64, text: &str) -> Result<(), ClientError> {
        let req =
            v1::EditMessage { conversation_id, seq, text: text.to_owned(), client_msg_id: String::new() };
        match self.call(Payload::EditMessage(req)).await? {
            Payload::Message(entry) => {
                self.inner.cache().insert_messages(&[entry])?;
                Ok(())
            }
            other => Err(ClientError::Protocol(format!("expected the edit entry, got {other:?}"))),
        }
    }

    /// Adds (or, with `remove`, takes back) my emoji reaction to a text or
    /// file message; the cache folds every reaction into who reacted with what.
    pub async fn react(
        &self,
        conversation_id: u64,
        seq: u64,
        emoji: &str,
        remove: bool,
    ) -> Result<(), ClientError> {
        let req = v1::React { conversation_id, seq, emoji: emoji.to_owned(), remove };
        match self.call(Payload::React(req)).await? {
            Payload::Message(entry) => {
                self.inner.cache().insert_messages(&[entry])?;
                Ok(())
            }
            other => Err(ClientError::Protocol(format!("expected the reaction entry, got {other:?}"))),
        }
    }

    /// Pins (or, with `unpin`, unpins) a text or file message for every
    /// member; [`Client::pins`] lists what is pinned.
    pub async fn pin(&self, conversation_id: u64, seq: u64, unpin: bool) -> Result<(), ClientError> {
        let req = v1::PinMessage { conversation_id, seq, unpin };
        match self.call(Payload::PinMessage(req)).await? {
            Payload::Message(entry) => {
                self.inner.cache().insert_messages(&[entry])?;
                Ok(())
            }
            other => Err(ClientError::Protocol(format!("expected the pin entry, got {other:?}"))),
        }
    }

    /// Forwards messages `seqs` of one conversation to others: each as a new
    /// message of mine, or with `merged` as one record per target (files
    /// referenced, never uploaded again). Returns the stored entries.
    pub async fn forward(
        &self,
        from_conversation_id: u64,
        seqs: &[u64],
        to_conversation_ids: &[u64],
        merged: bool,
    ) -> Result<Vec<CachedMessage>, ClientError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.forward_with_id(from_conversation_id, seqs, to_conversation_ids, merged, &id).await
    }

    /// [`Client::forward`] with my own id: a retry with the same id stores
    /// nothing new (exactly once per target) and returns what was stored.
    pub async fn forward_with_id(
        &self,
        from_conversation_id: u64,
        seqs: &[u64],
        to_conversation_ids: &[u64],
        merged: bool,
        client_msg_id: &str,
    ) -> Result<Vec<CachedMessage>, ClientError> {
        let req = v1::ForwardMessages {
            from_conversation_id,
            seqs: seqs.to_vec(),
            to_conversation_ids: to_conversation_ids.to_vec(),
            merged,
            client_msg_id: client_msg_id.to_owned(),
        };
        match self.call(Payload::ForwardMessages(req)).await? {
            Payload::ForwardResult(r) => {
                let mut cache = self.inner.cache();
                cache.insert_messages(&r.messages)?;
                let mut out = Vec::with_capacity(r.messages.len());
                for m in &r.messages {
                    out.extend(cache.message(m.conversation_id, m.seq)?);
                }
                Ok(out)
            }
            other => Err(ClientError::Protocol(format!("expected the forward's result, got {other:?}"))),
        }
    }

    /// The messages pinned in a conversation, most recently pinned first.
    pub fn pins(&self, conversation_id: u64) -> Result<Vec<Pin>, ClientError> {
        self.inner.cache().pins(conversation_id)
    }

    /// Tells the other members I am typing (never stored, best effort).
    pub fn typing(&self, conversation_id: u64) {
        if let Some(c) = self.connection() {
            c.fire(Payload::Typing(v1::Typing { conversation_id, user_id: 0 }));
        }
    }

    /// Watch these people's presence; `Event::Presence` follows.
    pub async fn subscribe_presence(&self, user_ids: &[u64]) -> Result<(), ClientError> {
        self.call(Payload::SubscribePresence(v1::SubscribePresence { user_ids: user_ids.to_vec() }))
            .await
            .map(drop)
    }

    pub async fn set_away(&self, away: bool) -> Result<(), ClientError> {
        let status = if away { v1::PresenceStatus::Away } else { v1::PresenceStatus::Online };
        self.call(Payload::SetPresence(v1::SetPresence { status: status as i32 })).await.map(drop)
    }

    /// Ends this device's session on the server and stops the client.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let result = self.call(Payload::Logout(v1::Logout {})).await.map(drop);
        self.shutdown();
        result
    }

    /// Drops the current connection as a network failure would (the client
    /// reconnects with back-off). For tests and a "reconnect now" button.
    pub fn drop_connection(&self) {
        self.inner.drop_now.notify_one();
    }

    /// Drops the bulk (file data) connection as a network failure would;
    /// running transfers reconnect and go on. For tests.
    pub fn drop_bulk_connection(&self) {
        self.inner.transfers.bulk.drop_connection();
    }

    fn known_conversation(&self, conversation_id: u64) -> Result<(), ClientError> {
        if self.inner.cache().knows_conversation(conversation_id)? {
            Ok(())
        } else {
            Err(ClientError::Remote {
                code: hutong_protocol::ErrorCode::NotFound,
                message: format!("no conversation #{conversation_id} here"),
                retry_after_ms: 0,
            })
        }
    }

    /// Sends a file (an image when its content is a PNG, JPEG, GIF, WebP or
    /// BMP: then with its size and a thumbnail). Returns at once; the upload
    /// runs in the background (`Event::Transfer`, [`Client::wait_transfer`])
    /// and ends with a message of kind "file", sent exactly once.
    pub fn send_file(&self, conversation_id: u64, path: &Path) -> Result<Transfer, ClientError> {
        self.known_conversation(conversation_id)?;
        let meta = std::fs::metadata(path).map_err(|e| ClientError::io(path, &e))?;
        if !meta.is_file() {
            return Err(ClientError::local(
                "NOT_A_FILE",
                format!("{} is not a regular file", path.display()),
            ));
        }
        let name = folder::name_of(path)?;
        let path = std::path::absolute(path).map_err(|e| ClientError::io(path, &e))?;
        let kind =
            if media::sniff_image(&path).is_some() { AttachmentKind::Image } else { AttachmentKind::File };
        let t = transfer::new_transfer(
            TransferDirection::Upload,
            conversation_id,
            0,
            kind,
            name,
            path,
            meta.len(),
        );
        transfer::start(&self.inner, t, None)
    }

    /// Sends a whole folder: its files, empty directories and names (links,
    /// devices, sockets and pipes inside are left out). A name another
    /// system could not write fails here, with `UNSAFE_PATH`. Returns at once.
    pub fn send_folder(&self, conversation_id: u64, path: &Path) -> Result<Transfer, ClientError> {
        self.known_conversation(conversation_id)?;
        let walked = folder::walk(path)?;
        folder::check_walked(&walked)?;
        let path = std::path::absolute(path).map_err(|e| ClientError::io(path, &e))?;
        let t = transfer::new_transfer(
            TransferDirection::Upload,
            conversation_id,
            0,
            AttachmentKind::Folder,
            walked.name,
            path,
            walked.total,
        );
        transfer::start(&self.inner, t, None)
    }

    /// Downloads the file, image or folder of a cached message into
    /// `dest_dir` (as `<name>`, or "name (1).ext"... when taken; nothing is
    /// ever overwritten). Returns at once; the download runs in the background.
    pub fn fetch(&self, conversation_id: u64, seq: u64, dest_dir: &Path) -> Result<Transfer, ClientError> {
        let attachment = self.inner.cache().message_attachment(conversation_id, seq)?.ok_or_else(|| {
            ClientError::Remote {
                code: hutong_protocol::ErrorCode::NotFound,
                message: format!("no file in message {seq} of conversation #{conversation_id} here"),
                retry_after_ms: 0,
            }
        })?;
        self.fetch_attachment(conversation_id, seq, attachment, dest_dir)
    }

    /// Downloads the file of item `index` (from 0) of the merged forward
    /// `seq`, as [`Client::fetch`] does a message's.
    pub fn fetch_forwarded(
        &self,
        conversation_id: u64,
        seq: u64,
        index: usize,
        dest_dir: &Path,
    ) -> Result<Transfer, ClientError> {
        let attachment =
            self.inner.cache().forwarded_attachment(conversation_id, seq, index)?.ok_or_else(|| {
                ClientError::Remote {
                    code: hutong_protocol::ErrorCode::NotFound,
                    message: format!(
                        "no file in item {index} of message {seq} of conversation #{conversation_id} here"
                    ),
                    retry_after_ms: 0,
                }
            })?;
        self.fetch_attachment(conversation_id, seq, attachment, dest_dir)
    }

    fn fetch_attachment(
        &self,
        conversation_id: u64,
        seq: u64,
        attachment: v1::Attachment,
        dest_dir: &Path,
    ) -> Result<Transfer, ClientError> {
        hutong_protocol::files::check_name(&attachment.name)
            .map_err(|reason| folder::unsafe_path(format!("unsafe name {:?}: {reason}", attachment.name)))?;
        if attachment.file_id.len() != 32 {
            return Err(ClientError::local("CORRUPT", "the message's file id is not 32 bytes long"));
        }
        let meta = std::fs::metadata(dest_dir).map_err(|e| ClientError::io(dest_dir, &e))?;
        if !meta.is_dir() {
            return Err(ClientError::local(
                "NOT_A_FOLDER",
                format!("{} is not a folder", dest_dir.display()),
            ));
        }
        let dest_dir = std::path::absolute(dest_dir).map_err(|e| ClientError::io(dest_dir, &e))?;
        let local_path = transfer::destination(&self.inner, &dest_dir, &attachment.name)?;
        let t = transfer::new_transfer(
            TransferDirection::Download,
            conversation_id,
            seq,
            AttachmentKind::from_wire(attachment.kind),
            attachment.name.clone(),
            local_path,
            attachment.size,
        );
        transfer::start(&self.inner, t, Some(&attachment))
    }

    /// Every transfer, newest first.
    pub fn transfers(&self) -> Result<Vec<Transfer>, ClientError> {
        self.inner.cache().transfers()
    }

    pub fn transfer(&self, id: &str) -> Result<Option<Transfer>, ClientError> {
        Ok(self.inner.cache().transfer_record(id)?.map(|r| r.transfer))
    }

    /// Stops a queued or running transfer where it is; it stays paused
    /// (across restarts too) until resumed.
    pub fn pause_transfer(&self, id: &str) -> Result<(), ClientError> {
        transfer::pause(&self.inner, id)
    }

    /// Goes on with a paused (or failed) transfer, from where it stopped.
    pub fn resume_transfer(&self, id: &str) -> Result<(), ClientError> {
        transfer::resume(&self.inner, id)
    }

    /// Gives a transfer up; a download's partial files are removed.
    pub fn cancel_transfer(&self, id: &str) -> Result<(), ClientError> {
        transfer::cancel(&self.inner, id)
    }

    /// Waits until a transfer is done, failed or cancelled, and returns it.
    pub async fn wait_transfer(&self, id: &str) -> Result<Transfer, ClientError> {
        let mut events = self.events();
        loop {
            let t = self.transfer(id)?.ok_or_else(|| ClientError::Remote {
                code: hutong_protocol::ErrorCode::NotFound,
                message: format!("no transfer {id}"),
                retry_after_ms: 0,
            })?;
            if t.state.is_final() {
                return Ok(t);
            }
            loop {
                match events.recv().await {
                    Ok(Event::Transfer(t)) if t.id == id && t.state.is_final() => break,
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Err(ClientError::Closed),
                    Ok(_) => {}
                }
            }
        }
    }

    /// Stops the background task; the cache stays as it is.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Number of completed sync rounds (tests use it to wait for catch-up).
    pub fn sync_rounds(&self) -> u64 {
        self.inner.sync_rounds.load(Ordering::Relaxed)
    }
}

/// Changes a password without logging in: the answer to a login refused
/// with `PASSWORD_CHANGE_REQUIRED` (after an administrator's reset).
pub async fn change_password(
    server: &ServerAddr,
    pinned_fingerprint: Option<&str>,
    insecure_plaintext: bool,
    account: &str,
    old_password: &str,
    new_password: &str,
) -> Result<(), ClientError> {
    server.check_secure(insecure_plaintext)?;
    session::change_password(server, pinned_fingerprint, account, old_password, new_password).await
}

/// Options of one outgoing message.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    pub mentions: Vec<u64>,
    pub reply_to_seq: u64,
    pub urgent: bool,
}
