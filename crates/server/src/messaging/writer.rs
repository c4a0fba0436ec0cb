//! The single writer of conversation state, with group commit.
//!
//! Every change to conversations, members, messages and cursors is a
//! [`Command`] sent to one thread. The thread takes all commands waiting,
//! applies each inside its own savepoint (a bad command never spoils the
//! batch), commits the batch in one transaction with one fsync, and only then
//! answers each caller. So an acknowledgement always means "on disk", and
//! throughput comes from batching rather than from acknowledging early.
//!
//! The thread owns the only mutable copies of two caches: the active members
//! of each conversation (checked on every send) and the global change counter
//! (`version`), which orders every change for sync.
//!
//! Logins write through it too (new sessions, `last_seen_at`, password
//! changes, logouts: see `accounts::Authenticator`), so no other connection
//! of this process takes the write lock its `BEGIN IMMEDIATE` waits for.
//!
//! Dedupe: a send's `(sender, client_msg_id)` is unique among sends (system
//! and recall entries are outside that space); a retry with the same content
//! gets the original's acknowledgement, one with other content CONFLICT.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use hutong_protocol::v1::{
    self, system_event::Kind as SystemKind, ConversationKind, MemberRole, Message, MessageKind,
};
use hutong_protocol::MAX_TEXT_LEN;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use crate::error::ServiceError;
pub use crate::live::hub::Fanout;
use crate::storage::{now_ms, EarlierSend, Store, WriteFn, WriteQueue};

/// Most members a group may have; bounds fan-out and every membership list.
pub const MAX_GROUP_MEMBERS: usize = 10_000;
const MAX_NAME_CHARS: usize = 100;

/// Where a command's result goes: its caller, and for commands that add a
/// log entry, the live fan-out first.
pub struct Reply {
    tx: oneshot::Sender<Result<Committed, ServiceError>>,
    fanout: Option<(mpsc::Sender<Vec<Fanout>>, Option<u64>)>,
}

impl Reply {
    /// What the fan-out gets of a committed result, if anything.
    fn fanout_item(&self, result: &Result<Committed, ServiceError>) -> Option<Fanout> {
        let (Some((_, except)), Ok(c)) = (&self.fanout, result) else { return None };
        // A retry of a message retention removed has nothing left to push.
        let message = c.message.as_ref().filter(|_| !c.entry_removed)?;
        Some(Fanout { members: c.members.clone(), message: message.clone(), except: *except })
    }
}

/// Hands a batch's committed entries to the fan-out in one piece (one
/// wake-up of its task per batch, in commit order, whatever became of the
/// callers), then answers the callers. Runs on the writer thread only.
fn answer_batch(replies: Vec<(Reply, Result<Committed, ServiceError>)>) {
    let mut items = Vec::new();
    let mut channel = None;
    for (reply, result) in &replies {
        if let Some(item) = reply.fanout_item(result) {
            items.push(item);
            channel = channel.or_else(|| reply.fanout.as_ref().map(|(tx, _)| tx.clone()));
        }
    }
    if let Some(channel) = channel {
        // Bounded: a fan-out that falls behind slows commits instead of
        // growing memory. Closed only when the server stops.
        let _ = channel.blocking_send(items);
    }
    for (reply, result) in replies {
        let _ = reply.tx.send(result);
    }
}

/// Batches waiting for the fan-out task; bounds the writer's lead over it
/// (a batch holds at most `batch_max` entries).
const FANOUT_QUEUE: usize = 32;

/// Most cursor reports one `UpdateCursors` command carries.
pub const MAX_CURSOR_REPORTS: usize = 4096;

/// Counters of the writer, process-wide (a server process runs one writer;
/// tests that read them run alone in their test binary).
pub struct WriterStats {
    /// Send commands that entered a batch.
    pub sends: AtomicU64,
    /// Batches whose commit failed (every command in them answered INTERNAL).
    pub failed_batches: AtomicU64,
    /// Batches run again with a savepoint per command after a send failed
    /// in the fast pass.
    pub safe_reruns: AtomicU64,
}

pub static STATS: WriterStats = WriterStats {
    sends: AtomicU64::new(0),
    failed_batches: AtomicU64::new(0),
    safe_reruns: AtomicU64::new(0),
};

// Sends dominate the queue, so the enum is as large as they are either way.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// `ordered` belongs to the sending connection: once one of its sends
    /// fails for a reason a retry may fix, the writer refuses its later sends
    /// too, so a retry can never land after a message sent behind it.
    Send {
        sender: u64,
        msg: v1::SendMessage,
        ordered: Arc<AtomicBool>,
        /// For a folder attachment: what its manifest lists (read before queueing).
        folder: Option<crate::files::FolderContents>,
    },
    Recall {
        user: u64,
        conversation_id: u64,
        seq: u64,
    },
    /// A new version of a TEXT message (`check_edit` ran before queueing).
    Edit {
        user: u64,
        msg: v1::EditMessage,
        window_ms: i64,
    },
    /// An emoji reaction added or taken back (`check_react` ran before queueing).
    React {
        user: u64,
        msg: v1::React,
    },
    /// A message pinned or unpinned.
    Pin {
        user: u64,
        msg: v1::PinMessage,
    },
    /// One target's merged forward (the record was read and checked by
    /// `forward::sources` before queueing; the writer checks membership and
    /// the files again). `folders`: each item's folder contents, if a folder.
    ForwardMerged {
        sender: u64,
        conversation_id: u64,
        client_msg_id: String,
        record: v1::ForwardRecord,
        folders: Vec<Option<crate::files::FolderContents>>,
    },
    OpenDirect {
        user: u64,
        peer: u64,
    },
    CreateGroup {
        owner: u64,
        name: String,
        members: Vec<u64>,
    },
    RenameGroup {
        user: u64,
        conversation_id: u64,
        name: String,
    },
    AddMembers {
        user: u64,
        conversation_id: u64,
        user_ids: Vec<u64>,
    },
    RemoveMember {
        user: u64,
        conversation_id: u64,
        target: u64,
    },
    Leave {
        user: u64,
        conversation_id: u64,
    },
    SetRole {
        user: u64,
        conversation_id: u64,
        target: u64,
        role: MemberRole,
    },
    /// Delivered/read reports of many people, coalesced by `receipts`: one
    /// command (and one savepoint per report) for all of them.
    UpdateCursors {
        reports: Vec<CursorReport>,
    },
    /// Brings the keyword index up to date (before an audit search).
    FlushIndex,
    /// Removes messages older than the retention rules allow and records it.
    ApplyRetention {
        now: i64,
        key: crate::audit::AuditKey,
    },
    /// A write of another domain (logins: see `accounts::Authenticator`;
    /// files), handed over as a [`WriteFn`] so those domains need not know
    /// this module: through this thread, so no other connection of this
    /// process holds the write lock the writer waits for.
    Write(WriteFn),
}

/// What a committed command changed, so the caller can answer and fan out.
#[derive(Debug, Default)]
pub struct Committed {
    pub conversation_id: u64,
    /// The new log entry, or for a retried send the original one.
    pub message: Option<Message>,
    /// True when a send was a retry of an already stored message.
    pub duplicate: bool,
    /// For a retry of a send retention has since removed: `message` holds
    /// only what the acknowledgement needs (no content to store).
    pub entry_removed: bool,
    /// For a send: the stored entry differs from what was sent (the server
    /// dropped mentions of people who are not members), so the sender's
    /// acknowledgement carries it; otherwise the sender's copy is the entry.
    pub altered: bool,
    /// Active members after the change: who receives live pushes.
    pub members: Arc<[u64]>,
    /// For `UpdateCursors`: one outcome per report, in order.
    pub cursors: Vec<CursorOutcome>,
    /// The number a `Write` answers with (an id, a count).
    pub value: u64,
}

/// One person's delivered and read positions in one conversation.
#[derive(Debug, Clone, Copy)]
pub struct CursorReport {
    pub user: u64,
    pub conversation_id: u64,
    pub delivered: u64,
    pub read: u64,
}

/// What became of one [`CursorReport`].
#[derive(Debug)]
pub enum CursorOutcome {
    Refused(ServiceError),
    /// Nothing moved (an old or repeated report).
    Unchanged,
    /// The stored cursor moved; `old_read` is the read position before.
    Moved {
        cursor: v1::Cursor,
        old_read: u64,
    },
}

/// Cheap handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<(Command, Reply)>,
    fanout: mpsc::Sender<Vec<Fanout>>,
}

impl Writer {
    /// Starts the writer thread. It stops after the last `Writer` is dropped
    /// and the commands already queued have been committed and answered.
    /// The receiver yields the committed entries of commands queued with
    /// [`Writer::enqueue_fanned`], in commit order; it ends after the thread.
    pub fn start(
        path: &Path,
        recall_window_ms: i64,
        batch_max: usize,
    ) -> anyhow::Result<(Writer, std::thread::JoinHandle<()>, mpsc::Receiver<Vec<Fanout>>)> {
        Self::start_with_fault(path, recall_window_ms, batch_max, None)
    }

    /// [`Writer::start`], with a test hook: when `panic_after` is set, the
    /// thread panics after committing that many batches (so tests can see
    /// the server notice a dead writer).
    pub fn start_with_fault(
        path: &Path,
        recall_window_ms: i64,
        batch_max: usize,
        panic_after: Option<u64>,
    ) -> anyhow::Result<(Writer, std::thread::JoinHandle<()>, mpsc::Receiver<Vec<Fanout>>)> {
        let conn = crate::storage::open(path)?;
        let mut state = WriterState::load(conn, recall_window_ms)?;
        let (tx, mut rx) = mpsc::channel::<(Command, Reply)>(batch_max * 8);
        let (fanout, fanout_rx) = mpsc::channel(FANOUT_QUEUE);
        let mut panic_after = panic_after;
        let handle = std::thread::Builder::new().name("hutong-writer".into()).spawn(move || {
            let mut batch = Vec::with_capacity(batch_max);
            loop {
                // With index work waiting, take commands without blocking and
                // index a slice whenever none is queued.
                let first = if state.index_waiting {
                    match rx.try_recv() {
                        Ok(cmd) => cmd,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            state.index_step();
                            continue;
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                    }
                } else {
                    match rx.blocking_recv() {
                        Some(cmd) => cmd,
                        None => break,
                    }
                };
                batch.push(first);
                while batch.len() < batch_max {
                    match rx.try_recv() {
                        Ok(cmd) => batch.push(cmd),
                        Err(_) => break,
                    }
                }
                if batch.iter().any(|(c, _)| matches!(c, Command::Send { .. })) {
                    state.index_waiting = true;
                }
                state.apply_batch(&mut batch);
                if let Some(left) = panic_after.as_mut() {
                    *left = left.saturating_sub(1);
                    assert!(*left > 0, "writer fault injected by the test hook");
                }
            }
        })?;
        Ok((Writer { tx, fanout }, handle, fanout_rx))
    }

    /// Queues a command; the receiver yields its result after the commit.
    /// Commands queued by one task are committed in the order queued.
    pub async fn enqueue(
        &self,
        cmd: Command,
    ) -> Result<oneshot::Receiver<Result<Committed, ServiceError>>, ServiceError> {
        self.enqueue_with(cmd, None).await
    }

    /// Like [`Writer::enqueue`], and the entry the command commits (if any)
    /// goes to every live session of the conversation's members except
    /// connection `except`, even if the caller is gone by then.
    pub async fn enqueue_fanned(
        &self,
        cmd: Command,
        except: Option<u64>,
    ) -> Result<oneshot::Receiver<Result<Committed, ServiceError>>, ServiceError> {
        self.enqueue_with(cmd, Some((self.fanout.clone(), except))).await
    }

    async fn enqueue_with(
        &self,
        cmd: Command,
        fanout: Option<(mpsc::Sender<Vec<Fanout>>, Option<u64>)>,
    ) -> Result<oneshot::Receiver<Result<Committed, ServiceError>>, ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((cmd, Reply { tx, fanout })).await.map_err(|_| ServiceError::ShuttingDown)?;
        Ok(rx)
    }

    /// Queues a command and waits for its commit.
    pub async fn submit(&self, cmd: Command) -> Result<Committed, ServiceError> {
        self.enqueue(cmd).await?.await.map_err(|_| ServiceError::ShuttingDown)?
    }
}

impl WriteQueue for Writer {
    fn submit(&self, write: WriteFn) -> BoxFuture<'static, Result<u64, ServiceError>> {
        let writer = self.clone();
        Box::pin(async move { Ok(writer.submit(Command::Write(write)).await?.value) })
    }

    fn enqueue(&self, write: WriteFn) -> BoxFuture<'static, Result<(), ServiceError>> {
        let writer = self.clone();
        Box::pin(async move { writer.enqueue(Command::Write(write)).await.map(drop) })
    }
}

struct ConvMembers {
    kind: i32,
    /// Active members and their roles.
    roles: HashMap<u64, i32>,
    list: Arc<[u64]>,
}

impl ConvMembers {
    fn rebuild_list(&mut self) {
        let mut ids: Vec<u64> = self.roles.keys().copied().collect();
        ids.sort_unstable();
        self.list = ids.into();
    }
}

struct WriterState {
    /// The writer's own connection: the only one of this process that
    /// writes conversations.
    conn: Box<dyn Store + Send>,
    /// Messages may be waiting for the keyword index (true at start: a
    /// crash may have left some).
    index_waiting: bool,
    version: u64,
    recall_window_ms: i64,
    members: HashMap<u64, ConvMembers>,
}

impl WriterState {
    fn load(conn: Box<dyn Store + Send>, recall_window_ms: i64) -> anyhow::Result<Self> {
        let version = Self::max_version(&*conn)?;
        Ok(WriterState { conn, index_waiting: true, version, recall_window_ms, members: HashMap::new() })
    }

    fn max_version(conn: &dyn Store) -> Result<u64, ServiceError> {
        conn.max_version()
    }

    /// Indexes one slice of waiting messages in its own short transaction.
    fn index_step(&mut self) {
        // Small slices: a command that arrives meanwhile waits at most one slice.
        const SLICE: usize = 256;
        let conn = &*self.conn;
        let result = (|| -> Result<usize, ServiceError> {
            conn.begin_immediate()?;
            let n = conn.index_pending(SLICE)?;
            conn.commit()?;
            Ok(n)
        })();
        if result.is_err() {
            // Nothing of the slice is kept (a failed COMMIT may leave the
            // transaction open); with none open this fails harmlessly.
            let _ = conn.rollback();
        }
        match result {
            Ok(n) => self.index_waiting = n == SLICE,
            Err(e) => {
                tracing::error!(error = %e, "indexing messages failed; retrying with the next batch");
                self.index_waiting = false;
            }
        }
    }

    fn apply_batch(&mut self, batch: &mut Vec<(Command, Reply)>) {
        let sends = batch.iter().filter(|(c, _)| matches!(c, Command::Send { .. })).count();
        STATS.sends.fetch_add(sends as u64, Ordering::Relaxed);
        let mut results = Vec::with_capacity(batch.len());
        // Sends run without a savepoint of their own (most of a batch, and a
        // savepoint costs a statement each way plus a copy of every page it
        // touches again). A send refuses before its first write, so only a
        // database failure can leave half of one behind; then the whole
        // pass is rolled back and the batch runs again with a savepoint per
        // command, as if the fast pass had never happened.
        let commit = match self.apply_all(batch, &mut results, false) {
            Err(Pass::Unsafe) => {
                STATS.safe_reruns.fetch_add(1, Ordering::Relaxed);
                self.forget_cached_state();
                results.clear();
                self.apply_all(batch, &mut results, true)
            }
            other => other,
        };
        if let Err(e) = commit {
            STATS.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "commit failed; answering the whole batch with an error");
            self.forget_cached_state();
            for (cmd, reply) in batch.drain(..) {
                if let Command::Send { ordered, .. } = &cmd {
                    ordered.store(true, Ordering::Release);
                }
                let _ = reply.tx.send(Err(ServiceError::Internal(format!("commit failed: {e}"))));
            }
            return;
        }
        answer_batch(batch.drain(..).map(|(_, reply)| reply).zip(results).collect());
    }

    /// After a rollback the member cache may be ahead of the database.
    fn forget_cached_state(&mut self) {
        self.members.clear();
        if let Ok(v) = Self::max_version(&*self.conn) {
            self.version = self.version.max(v);
        }
    }

    /// Applies the batch's commands, then commits. With `safe`, each command
    /// runs in its own savepoint; without, sends run directly in the
    /// transaction and a database failure inside one ends the pass with
    /// [`Pass::Unsafe`] (nothing committed).
    fn apply_all(
        &mut self,
        batch: &[(Command, Reply)],
        results: &mut Vec<Result<Committed, ServiceError>>,
        safe: bool,
    ) -> Result<(), Pass> {
        // IMMEDIATE: take the write lock up front (waiting for it), so a batch
        // that has read never fails to upgrade because of a concurrent login.
        self.conn.begin_immediate()?;
        let outcome = match self.apply_commands(batch, results, safe) {
            Ok(()) => self.conn.commit().map_err(Pass::from),
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            // Nothing of the pass is kept. After a failed COMMIT the
            // transaction may already be gone; then this fails harmlessly.
            let _ = self.conn.rollback();
        }
        outcome
    }

    /// The commands of [`WriterState::apply_all`], inside its transaction.
    fn apply_commands(
        &mut self,
        batch: &[(Command, Reply)],
        results: &mut Vec<Result<Committed, ServiceError>>,
        safe: bool,
    ) -> Result<(), Pass> {
        let conn = &*self.conn;
        for (cmd, _) in batch {
            if !safe && matches!(cmd, Command::Send { .. }) {
                match apply(conn, &mut self.members, &mut self.version, self.recall_window_ms, cmd) {
                    // Only a database failure comes after a write.
                    Err(ServiceError::Internal(_)) => return Err(Pass::Unsafe),
                    // Refused before any write (the ordering guard's refusal
                    // included): nothing to undo.
                    result => results.push(result),
                }
                continue;
            }
            conn.savepoint()?;
            let result = apply(conn, &mut self.members, &mut self.version, self.recall_window_ms, cmd);
            match result {
                Ok(committed) => {
                    conn.release_savepoint()?;
                    results.push(Ok(committed));
                }
                Err(e) => {
                    conn.rollback_savepoint()?;
                    results.push(match (e, cmd) {
                        (
                            e @ (ServiceError::Internal(_) | ServiceError::ShuttingDown),
                            Command::Send { ordered, .. },
                        ) => {
                            ordered.store(true, Ordering::Release);
                            self.members.clear();
                            Err(e)
                        }
                        (e, _) => {
                            // Commands touch the cache only after their checks, so
                            // only a database failure can leave it ahead of the rollback.
                            if matches!(e, ServiceError::Internal(_)) {
                                self.members.clear();
                            }
                            Err(e)
                        }
                    });
                }
            }
        }
        Ok(())
    }
}

/// How a pass over a batch failed.
#[derive(Debug, thiserror::Error)]
enum Pass {
    /// A send failed after it may have written: run the batch again safely.
    #[error("a send failed inside the fast pass")]
    Unsafe,
    #[error(transparent)]
    Database(#[from] ServiceError),
}

fn load_members<'a>(
    conn: &dyn Store,
    cache: &'a mut HashMap<u64, ConvMembers>,
    conversation_id: u64,
) -> Result<&'a mut ConvMembers, ServiceError> {
    if !cache.contains_key(&conversation_id) {
        let kind = conn.conversation_kind(conversation_id)?.ok_or(ServiceError::NotFound("conversation"))?;
        let roles: HashMap<u64, i32> = conn.active_member_roles(conversation_id)?.into_iter().collect();
        let mut m = ConvMembers { kind, roles, list: Arc::from(Vec::new()) };
        m.rebuild_list();
        // Bound the cache: conversations are reloaded on demand.
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(conversation_id, m);
    }
    Ok(cache.get_mut(&conversation_id).expect("inserted above"))
}

fn next_version(version: &mut u64) -> u64 {
    *version += 1;
    *version
}

fn check_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::BadRequest(format!("a group name has 1 to {MAX_NAME_CHARS} characters")));
    }
    Ok(name.to_owned())
}

fn check_users_exist(conn: &dyn Store, ids: &[u64]) -> Result<(), ServiceError> {
    for id in ids {
        match conn.user_disabled(*id)? {
            None => return Err(ServiceError::NotFound("user")),
            Some(true) => return Err(ServiceError::BadRequest(format!("user {id} is disabled"))),
            Some(false) => {}
        }
    }
    Ok(())
}

/// Appends one entry to a conversation log and returns it.
fn append(
    conn: &dyn Store,
    version: &mut u64,
    conversation_id: u64,
    sender: u64,
    client_msg_id: &str,
    extra: AppendExtra,
) -> Result<Message, ServiceError> {
    let v = next_version(version);
    let mut message = Message {
        conversation_id,
        seq: 0,
        sender_id: sender,
        client_msg_id: client_msg_id.to_owned(),
        sent_at_ms: now_ms(),
        kind: extra.kind,
        text: extra.text,
        mentions: extra.mentions,
        reply_to_seq: extra.reply_to_seq,
        recalled: false,
        system: extra.system,
        target_seq: extra.target_seq,
        priority: extra.priority,
        attachment: extra.attachment,
        reaction_removed: extra.reaction_removed,
        unpinned: extra.unpinned,
        forward: extra.forward,
        markdown: extra.markdown,
    };
    message.seq = conn.append_entry(&message, extra.content_hash.as_ref(), v)?;
    Ok(message)
}

#[derive(Default)]
struct AppendExtra {
    /// A `MessageKind`; the default is TEXT.
    kind: i32,
    text: String,
    mentions: Vec<u64>,
    reply_to_seq: u64,
    system: Option<v1::SystemEvent>,
    target_seq: u64,
    priority: i32,
    attachment: Option<v1::Attachment>,
    /// Sends only: see [`content_hash`].
    content_hash: Option<[u8; 32]>,
    /// Reactions only: the entry takes the emoji back.
    reaction_removed: bool,
    /// Pins only: the entry unpins its target.
    unpinned: bool,
    /// Merged forwards only: the record.
    forward: Option<v1::ForwardRecord>,
    /// Sends of text only: the text is Markdown.
    markdown: bool,
}

fn system_entry(
    conn: &dyn Store,
    version: &mut u64,
    conversation_id: u64,
    actor: u64,
    event: v1::SystemEvent,
) -> Result<Message, ServiceError> {
    // Unique: the version this entry is about to take. System entries are
    // outside the senders' id space (messages_dedupe holds sends only).
    let id = format!("sys-{}", *version + 1);
    let extra = AppendExtra { system: Some(event), ..Default::default() };
    let extra = AppendExtra { kind: MessageKind::System as i32, ..extra };
    append(conn, version, conversation_id, actor, &id, extra)
}

fn apply(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    recall_window_ms: i64,
    cmd: &Command,
) -> Result<Committed, ServiceError> {
    match cmd {
        Command::Send { ordered, .. } if ordered.load(Ordering::Acquire) => Err(ServiceError::ShuttingDown),
        Command::Send { sender, msg, folder, .. } => {
            send(conn, cache, version, *sender, msg, folder.as_ref())
        }
        Command::Recall { user, conversation_id, seq } => {
            recall(conn, cache, version, recall_window_ms, *user, *conversation_id, *seq)
        }
        Command::Edit { user, msg, window_ms } => edit(conn, cache, version, *window_ms, *user, msg),
        Command::React { user, msg } => react(conn, cache, version, *user, msg),
        Command::Pin { user, msg } => pin(conn, cache, version, *user, msg),
        Command::ForwardMerged { sender, conversation_id, client_msg_id, record, folders } => {
            forward_merged(conn, cache, version, *sender, *conversation_id, client_msg_id, record, folders)
        }
        Command::OpenDirect { user, peer } => open_direct(conn, cache, version, *user, *peer),
        Command::CreateGroup { owner, name, members } => {
            create_group(conn, cache, version, *owner, name, members)
        }
        Command::RenameGroup { user, conversation_id, name } => {
            rename_group(conn, cache, version, *user, *conversation_id, name)
        }
        Command::AddMembers { user, conversation_id, user_ids } => {
            add_members(conn, cache, version, *user, *conversation_id, user_ids)
        }
        Command::RemoveMember { user, conversation_id, target } => {
            remove_member(conn, cache, version, *user, *conversation_id, *target, false)
        }
        Command::Leave { user, conversation_id } => {
            remove_member(conn, cache, version, *user, *conversation_id, *user, true)
        }
        Command::SetRole { user, conversation_id, target, role } => {
            set_role(conn, cache, version, *user, *conversation_id, *target, *role)
        }
        Command::UpdateCursors { reports } => update_cursors(conn, cache, version, reports),
        Command::FlushIndex => {
            conn.index_pending(usize::MAX)?;
            Ok(Committed::default())
        }
        Command::Write(write) => {
            let value = write(conn)?;
            Ok(Committed { value, ..Default::default() })
        }
        Command::ApplyRetention { now, key } => {
            let applied = crate::audit::apply_retention(conn, key, *now)?;
            // first_seq moved: clients learn of it through the conversation
            // version. Only the conversations this run trimmed change, each
            // to a version of its own.
            for id in &applied.conversations {
                conn.set_conversation_version(*id, next_version(version))?;
            }
            Ok(Committed { value: applied.removed, ..Default::default() })
        }
    }
}

/// Most people one message may mention.
pub const MAX_MENTIONS: usize = 100;
/// Longest `client_msg_id` (a UUID is 36 characters).
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;

/// The checks of a send that need no state: run in `route` before the send
/// is queued (so an oversize send never occupies the writer) and again by
/// the writer (which trusts no caller).
pub fn check_send(msg: &v1::SendMessage) -> Result<(), ServiceError> {
    if msg.text.len() > MAX_TEXT_LEN {
        return Err(ServiceError::TooLarge(format!("a message holds at most {MAX_TEXT_LEN} bytes of text")));
    }
    if msg.mentions.len() > MAX_MENTIONS {
        return Err(ServiceError::TooLarge(format!("a message mentions at most {MAX_MENTIONS} people")));
    }
    if msg.text.trim().is_empty() && msg.attachment.is_none() {
        return Err(ServiceError::BadRequest("the message is empty".into()));
    }
    if msg.client_msg_id.is_empty() || msg.client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
        return Err(ServiceError::BadRequest(format!(
            "client_msg_id must have 1 to {MAX_CLIENT_MSG_ID_LEN} characters"
        )));
    }
    Ok(())
}

/// SHA-256 of everything a send asks for but its id: the conversation, the
/// text, the attachment, the mentions as sent, the reply and the priority.
/// Two sends with one id and different hashes are different messages.
pub fn content_hash(msg: &v1::SendMessage) -> [u8; 32] {
    use sha2::Digest as _;
    // prost encodes fields in tag order, so equal requests encode equally.
    let content = v1::SendMessage { client_msg_id: String::new(), ..msg.clone() };
    sha2::Sha256::digest(content.encode_to_vec()).into()
}

/// Stores a send. **Invariant** (the fast pass of `apply_batch` relies on
/// it): every refusal comes before the first write; after it, only a
/// database failure (`Internal`) can end the command.
fn send(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    sender: u64,
    msg: &v1::SendMessage,
    folder: Option<&crate::files::FolderContents>,
) -> Result<Committed, ServiceError> {
    check_send(msg)?;
    let hash = content_hash(msg);
    // A retry is answered before any other check: the message is stored,
    // even if the sender has left the conversation since.
    if let Some(earlier) = conn.earlier_send(sender, &msg.client_msg_id)? {
        return retry_answer(conn, cache, earlier, msg, &hash);
    }
    let members = load_members(conn, cache, msg.conversation_id)?;
    if !members.roles.contains_key(&sender) {
        return Err(ServiceError::NotMember);
    }
    let mentions: Vec<u64> = msg.mentions.iter().copied().filter(|m| members.roles.contains_key(m)).collect();
    let altered = mentions != msg.mentions;
    let list = members.list.clone();
    let mut extra = AppendExtra {
        text: msg.text.clone(),
        mentions,
        reply_to_seq: msg.reply_to_seq,
        priority: msg.priority,
        content_hash: Some(hash),
        markdown: msg.markdown && msg.attachment.is_none(),
        ..Default::default()
    };
    let mut files = Vec::new();
    if let Some(attachment) = &msg.attachment {
        files = crate::files::check_attachment(conn, sender, attachment, folder)?;
        // The name is the text: previews show it and the archive search finds it.
        extra.kind = MessageKind::File as i32;
        extra.text = attachment.name.clone();
        extra.attachment = Some(attachment.clone());
    }
    let message = append(conn, version, msg.conversation_id, sender, &msg.client_msg_id, extra)?;
    crate::files::add_refs(conn, message.conversation_id, message.seq, &files)?;
    Ok(Committed {
        conversation_id: msg.conversation_id,
        message: Some(message),
        altered,
        members: list,
        ..Default::default()
    })
}

/// The answer to a send whose id was used before: the original's
/// acknowledgement when the content is the same, CONFLICT when it is not.
fn retry_answer(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    earlier: EarlierSend,
    msg: &v1::SendMessage,
    hash: &[u8; 32],
) -> Result<Committed, ServiceError> {
    let (message, same, entry_removed) = match earlier {
        EarlierSend::Stored { message, content_hash: Some(h), .. } => {
            let same = h[..] == hash[..];
            (message, same, false)
        }
        // Stored before content hashes were: compare what the row keeps
        // (mentions were filtered, so they cannot be compared).
        EarlierSend::Stored { message, content_hash: None, attachment } => {
            let wanted_attachment = msg.attachment.as_ref().map(|a| a.encode_to_vec());
            let text = msg.attachment.as_ref().map(|a| a.name.as_str()).unwrap_or(&msg.text);
            let same = message.conversation_id == msg.conversation_id
                && message.reply_to_seq == msg.reply_to_seq
                && message.priority == msg.priority
                && attachment == wanted_attachment
                && (message.recalled || message.text == text);
            (message, same, false)
        }
        EarlierSend::Removed { message, content_hash } => {
            let same = match content_hash {
                Some(h) => h[..] == hash[..],
                None => message.conversation_id == msg.conversation_id,
            };
            (message, same, true)
        }
    };
    if !same {
        return Err(ServiceError::Conflict(
            "this client_msg_id was already used for a different message; send it with a new id".into(),
        ));
    }
    let members = match load_members(conn, cache, message.conversation_id) {
        Ok(m) => m.list.clone(),
        Err(ServiceError::NotFound(_)) => Arc::from(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(Committed {
        conversation_id: message.conversation_id,
        altered: message.mentions != msg.mentions,
        message: Some(message),
        duplicate: true,
        entry_removed,
        members,
        ..Default::default()
    })
}

fn recall(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    window_ms: i64,
    user: u64,
    conversation_id: u64,
    seq: u64,
) -> Result<Committed, ServiceError> {
    let members = load_members(conn, cache, conversation_id)?;
    if !members.roles.contains_key(&user) {
        return Err(ServiceError::NotMember);
    }
    let list = members.list.clone();
    let target = conn.recall_target(conversation_id, seq)?.ok_or(ServiceError::NotFound("message"))?;
    let (sender, sent_at, kind, recalled) = (target.sender_id, target.sent_at, target.kind, target.recalled);
    if sender != user || kind != MessageKind::Text as i32 {
        return Err(ServiceError::Forbidden("only the sender can recall a message".into()));
    }
    if recalled {
        return Err(ServiceError::Conflict("the message was already recalled".into()));
    }
    if now_ms() - sent_at > window_ms {
        return Err(ServiceError::RecallWindowPassed);
    }
    conn.mark_recalled(conversation_id, seq)?;
    // Outside the senders' id space (messages_dedupe holds sends only), so
    // no client-chosen id can collide with it.
    let id = format!("recall-{conversation_id}-{seq}");
    let extra = AppendExtra { kind: MessageKind::Recall as i32, target_seq: seq, ..Default::default() };
    let message = append(conn, version, conversation_id, user, &id, extra)?;
    Ok(Committed { conversation_id, message: Some(message), members: list, ..Default::default() })
}

/// The checks of an edit that need no state: run in `route` before the edit
/// is queued and again by the writer. Text limits are those of a send.
pub fn check_edit(msg: &v1::EditMessage) -> Result<(), ServiceError> {
    if msg.text.len() > MAX_TEXT_LEN {
        return Err(ServiceError::TooLarge(format!("a message holds at most {MAX_TEXT_LEN} bytes of text")));
    }
    if msg.text.trim().is_empty() {
        return Err(ServiceError::BadRequest("the message is empty".into()));
    }
    if msg.client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
        return Err(ServiceError::TooLarge(format!(
            "a client_msg_id holds at most {MAX_CLIENT_MSG_ID_LEN} bytes"
        )));
    }
    Ok(())
}

/// An edit is a new EDIT entry naming its target: the target's row is left
/// as it was, so the archive keeps every version.
fn edit(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    window_ms: i64,
    user: u64,
    msg: &v1::EditMessage,
) -> Result<Committed, ServiceError> {
    check_edit(msg)?;
    let (conversation_id, seq) = (msg.conversation_id, msg.seq);
    let members = load_members(conn, cache, conversation_id)?;
    if !members.roles.contains_key(&user) {
        return Err(ServiceError::NotMember);
    }
    let list = members.list.clone();
    let target = conn.recall_target(conversation_id, seq)?.ok_or(ServiceError::NotFound("message"))?;
    if target.sender_id != user || target.kind != MessageKind::Text as i32 {
        return Err(ServiceError::Forbidden("only the sender can edit a text message".into()));
    }
    if target.recalled {
        return Err(ServiceError::Forbidden("a recalled message cannot be edited".into()));
    }
    if now_ms() - target.sent_at > window_ms {
        return Err(ServiceError::Forbidden("the edit window of this message has passed".into()));
    }
    // Edits live outside the senders' dedupe space (kind EDIT), so any id is
    // safe; one is made up when the client sent none.
    let id = if msg.client_msg_id.is_empty() {
        format!("edit-{conversation_id}-{seq}-{}", *version + 1)
    } else {
        msg.client_msg_id.clone()
    };
    let extra = AppendExtra {
        kind: MessageKind::Edit as i32,
        target_seq: seq,
        text: msg.text.clone(),
        ..Default::default()
    };
    let message = append(conn, version, conversation_id, user, &id, extra)?;
    Ok(Committed { conversation_id, message: Some(message), members: list, ..Default::default() })
}

/// Most bytes of a reaction's emoji.
pub const MAX_EMOJI_LEN: usize = 32;

/// The checks of a reaction that need no state: run in `route` before the
/// reaction is queued and again by the writer.
pub fn check_react(msg: &v1::React) -> Result<(), ServiceError> {
    if msg.emoji.is_empty() || msg.emoji.len() > MAX_EMOJI_LEN {
        return Err(ServiceError::BadRequest(format!("an emoji has 1 to {MAX_EMOJI_LEN} bytes")));
    }
    if msg.emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServiceError::BadRequest("an emoji holds no whitespace or control characters".into()));
    }
    Ok(())
}

/// A reaction is a new REACTION entry naming its target; clients fold the
/// entries (in seq order) into who reacted with what.
fn react(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    user: u64,
    msg: &v1::React,
) -> Result<Committed, ServiceError> {
    check_react(msg)?;
    let (conversation_id, seq) = (msg.conversation_id, msg.seq);
    let members = load_members(conn, cache, conversation_id)?;
    if !members.roles.contains_key(&user) {
        return Err(ServiceError::NotMember);
    }
    let list = members.list.clone();
    let target = conn.recall_target(conversation_id, seq)?.ok_or(ServiceError::NotFound("message"))?;
    if target.kind != MessageKind::Text as i32 && target.kind != MessageKind::File as i32 {
        return Err(ServiceError::Forbidden("only a text or file message takes reactions".into()));
    }
    if target.recalled {
        return Err(ServiceError::Forbidden("a recalled message takes no reactions".into()));
    }
    // Reactions live outside the senders' dedupe space (kind REACTION).
    let id = format!("react-{conversation_id}-{seq}-{}", *version + 1);
    let extra = AppendExtra {
        kind: MessageKind::Reaction as i32,
        target_seq: seq,
        text: msg.emoji.clone(),
        reaction_removed: msg.remove,
        ..Default::default()
    };
    let message = append(conn, version, conversation_id, user, &id, extra)?;
    Ok(Committed { conversation_id, message: Some(message), members: list, ..Default::default() })
}

/// A pin is a new PIN entry naming its target; clients fold a target's
/// entries (in seq order) into whether it is pinned.
fn pin(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    user: u64,
    msg: &v1::PinMessage,
) -> Result<Committed, ServiceError> {
    let (conversation_id, seq) = (msg.conversation_id, msg.seq);
    let members = load_members(conn, cache, conversation_id)?;
    if !members.roles.contains_key(&user) {
        return Err(ServiceError::NotMember);
    }
    let list = members.list.clone();
    let target = conn.recall_target(conversation_id, seq)?.ok_or(ServiceError::NotFound("message"))?;
    if target.kind != MessageKind::Text as i32 && target.kind != MessageKind::File as i32 {
        return Err(ServiceError::Forbidden("only a text or file message can be pinned".into()));
    }
    if target.recalled {
        return Err(ServiceError::Forbidden("a recalled message cannot be pinned".into()));
    }
    // Pins live outside the senders' dedupe space (kind PIN).
    let id = format!("pin-{conversation_id}-{seq}-{}", *version + 1);
    let extra = AppendExtra {
        kind: MessageKind::Pin as i32,
        target_seq: seq,
        unpinned: msg.unpin,
        ..Default::default()
    };
    let message = append(conn, version, conversation_id, user, &id, extra)?;
    Ok(Committed { conversation_id, message: Some(message), members: list, ..Default::default() })
}

/// Stores one target's merged forward: a FORWARD entry holding the record,
/// referring to the items' files so the target's members may download
/// them. A retry (same sender and id) is answered with the stored entry.
#[allow(clippy::too_many_arguments)] // one command's fields, passed as they are
fn forward_merged(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    sender: u64,
    conversation_id: u64,
    client_msg_id: &str,
    record: &v1::ForwardRecord,
    folders: &[Option<crate::files::FolderContents>],
) -> Result<Committed, ServiceError> {
    if let Some(earlier) = conn.earlier_forward(sender, client_msg_id)? {
        if earlier.conversation_id != conversation_id {
            return Err(ServiceError::Conflict("this forward id was used for another conversation".into()));
        }
        let members = load_members(conn, cache, conversation_id)?.list.clone();
        return Ok(Committed {
            conversation_id,
            message: Some(earlier),
            duplicate: true,
            members,
            ..Default::default()
        });
    }
    let members = load_members(conn, cache, conversation_id)?;
    if !members.roles.contains_key(&sender) {
        return Err(ServiceError::NotMember);
    }
    let list = members.list.clone();
    let mut files = Vec::new();
    for (i, item) in record.items.iter().enumerate() {
        if let Some(a) = &item.attachment {
            let folder = folders.get(i).and_then(|f| f.as_ref());
            files.extend(crate::files::check_attachment(conn, sender, a, folder)?);
        }
    }
    files.sort_unstable();
    files.dedup();
    let extra = AppendExtra {
        kind: MessageKind::Forward as i32,
        forward: Some(record.clone()),
        ..Default::default()
    };
    let message = append(conn, version, conversation_id, sender, client_msg_id, extra)?;
    crate::files::add_refs(conn, conversation_id, message.seq, &files)?;
    Ok(Committed { conversation_id, message: Some(message), members: list, ..Default::default() })
}

fn insert_member(
    conn: &dyn Store,
    conversation_id: u64,
    user: u64,
    role: MemberRole,
    v: u64,
) -> Result<(), ServiceError> {
    conn.upsert_member(conversation_id, user, role as i32, v)
}

fn open_direct(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    user: u64,
    peer: u64,
) -> Result<Committed, ServiceError> {
    if user == peer {
        return Err(ServiceError::BadRequest("a direct conversation needs two different people".into()));
    }
    check_users_exist(conn, &[peer])?;
    let key = format!("{}:{}", user.min(peer), user.max(peer));
    let existing = conn.direct_conversation(&key)?;
    if let Some(id) = existing {
        let members = load_members(conn, cache, id)?;
        return Ok(Committed { conversation_id: id, members: members.list.clone(), ..Default::default() });
    }
    let v = next_version(version);
    let id = conn.insert_conversation(ConversationKind::Direct as i32, "", Some(&key), v, now_ms())?;
    insert_member(conn, id, user, MemberRole::Member, v)?;
    insert_member(conn, id, peer, MemberRole::Member, v)?;
    let members = load_members(conn, cache, id)?;
    Ok(Committed { conversation_id: id, members: members.list.clone(), ..Default::default() })
}

fn create_group(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    owner: u64,
    name: &str,
    member_ids: &[u64],
) -> Result<Committed, ServiceError> {
    let name = check_name(name)?;
    let mut ids: Vec<u64> = member_ids.iter().copied().filter(|&m| m != owner).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() + 1 > MAX_GROUP_MEMBERS {
        return Err(ServiceError::TooLarge(format!("a group has at most {MAX_GROUP_MEMBERS} members")));
    }
    check_users_exist(conn, &ids)?;
    let v = next_version(version);
    let id = conn.insert_conversation(ConversationKind::Group as i32, &name, None, v, now_ms())?;
    insert_member(conn, id, owner, MemberRole::Owner, v)?;
    for m in &ids {
        insert_member(conn, id, *m, MemberRole::Member, v)?;
    }
    let event = v1::SystemEvent {
        kind: SystemKind::GroupCreated as i32,
        actor_id: owner,
        user_ids: ids.clone(),
        name: name.clone(),
        role: 0,
    };
    let message = system_entry(conn, version, id, owner, event)?;
    let members = load_members(conn, cache, id)?;
    let list = members.list.clone();
    Ok(Committed { conversation_id: id, message: Some(message), members: list, ..Default::default() })
}

fn require_group_member(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    conversation_id: u64,
    user: u64,
) -> Result<i32, ServiceError> {
    let members = load_members(conn, cache, conversation_id)?;
    if members.kind != ConversationKind::Group as i32 {
        return Err(ServiceError::BadRequest("this is not a group".into()));
    }
    members.roles.get(&user).copied().ok_or(ServiceError::NotMember)
}

fn rename_group(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    user: u64,
    conversation_id: u64,
    name: &str,
) -> Result<Committed, ServiceError> {
    require_group_member(conn, cache, conversation_id, user)?;
    let name = check_name(name)?;
    conn.rename_conversation(conversation_id, &name)?;
    let event =
        v1::SystemEvent { kind: SystemKind::Renamed as i32, actor_id: user, name, ..Default::default() };
    let message = system_entry(conn, version, conversation_id, user, event)?;
    let list = cache[&conversation_id].list.clone();
    Ok(Committed { conversation_id, message: Some(message), members: list, ..Default::default() })
}

fn add_members(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    user: u64,
    conversation_id: u64,
    user_ids: &[u64],
) -> Result<Committed, ServiceError> {
    require_group_member(conn, cache, conversation_id, user)?;
    let members = &cache[&conversation_id];
    let mut new: Vec<u64> = user_ids.iter().copied().filter(|u| !members.roles.contains_key(u)).collect();
    new.sort_unstable();
    new.dedup();
    if new.is_empty() {
        return Err(ServiceError::Conflict("everyone named is already a member".into()));
    }
    if members.roles.len() + new.len() > MAX_GROUP_MEMBERS {
        return Err(ServiceError::TooLarge(format!("a group has at most {MAX_GROUP_MEMBERS} members")));
    }
    check_users_exist(conn, &new)?;
    let v = next_version(version);
    for m in &new {
        insert_member(conn, conversation_id, *m, MemberRole::Member, v)?;
    }
    let members = cache.get_mut(&conversation_id).expect("loaded above");
    for m in &new {
        members.roles.insert(*m, MemberRole::Member as i32);
    }
    members.rebuild_list();
    let event = v1::SystemEvent {
        kind: SystemKind::MembersAdded as i32,
        actor_id: user,
        user_ids: new,
        ..Default::default()
    };
    let message = system_entry(conn, version, conversation_id, user, event)?;
    let list = cache[&conversation_id].list.clone();
    Ok(Committed { conversation_id, message: Some(message), members: list, ..Default::default() })
}

fn remove_member(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    user: u64,
    conversation_id: u64,
    target: u64,
    leaving: bool,
) -> Result<Committed, ServiceError> {
    let role = require_group_member(conn, cache, conversation_id, user)?;
    let members = &cache[&conversation_id];
    let target_role = *members.roles.get(&target).ok_or(ServiceError::NotFound("member"))?;
    if !leaving {
        if role < MemberRole::Admin as i32 {
            return Err(ServiceError::Forbidden(
                "only the group's owner or an admin can remove members".into(),
            ));
        }
        if target_role >= role {
            return Err(ServiceError::Forbidden("you cannot remove a member of equal or higher role".into()));
        }
    }
    // An owner who leaves hands the group to the senior remaining member.
    let successor = if leaving && target_role == MemberRole::Owner as i32 {
        members
            .roles
            .iter()
            .filter(|(u, _)| **u != target)
            .max_by_key(|(u, r)| (**r, std::cmp::Reverse(**u)))
            .map(|(u, _)| *u)
    } else {
        None
    };
    let before: Arc<[u64]> = members.list.clone();
    let event = v1::SystemEvent {
        kind: if leaving { SystemKind::MemberLeft } else { SystemKind::MemberRemoved } as i32,
        actor_id: user,
        user_ids: vec![target],
        ..Default::default()
    };
    // The departure is the last entry the departed member can read.
    let message = system_entry(conn, version, conversation_id, user, event)?;
    let v = next_version(version);
    conn.deactivate_member(conversation_id, target, message.seq, v)?;
    let members = cache.get_mut(&conversation_id).expect("loaded above");
    members.roles.remove(&target);
    if let Some(s) = successor {
        conn.set_member_role(conversation_id, s, MemberRole::Owner as i32, v)?;
        members.roles.insert(s, MemberRole::Owner as i32);
    }
    members.rebuild_list();
    Ok(Committed { conversation_id, message: Some(message), members: before, ..Default::default() })
}

fn set_role(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    user: u64,
    conversation_id: u64,
    target: u64,
    role: MemberRole,
) -> Result<Committed, ServiceError> {
    let my_role = require_group_member(conn, cache, conversation_id, user)?;
    if my_role != MemberRole::Owner as i32 {
        return Err(ServiceError::Forbidden("only the group's owner can change roles".into()));
    }
    if !cache[&conversation_id].roles.contains_key(&target) {
        return Err(ServiceError::NotFound("member"));
    }
    if target == user {
        return Err(ServiceError::BadRequest(
            "the owner cannot change their own role; make someone else owner".into(),
        ));
    }
    let v = next_version(version);
    conn.set_member_role(conversation_id, target, role as i32, v)?;
    let members = cache.get_mut(&conversation_id).expect("loaded above");
    members.roles.insert(target, role as i32);
    if role == MemberRole::Owner {
        // Ownership moves: the old owner becomes an admin.
        conn.set_member_role(conversation_id, user, MemberRole::Admin as i32, v)?;
        members.roles.insert(user, MemberRole::Admin as i32);
    }
    let event = v1::SystemEvent {
        kind: SystemKind::RoleChanged as i32,
        actor_id: user,
        user_ids: vec![target],
        role: role as i32,
        ..Default::default()
    };
    let message = system_entry(conn, version, conversation_id, user, event)?;
    let list = cache[&conversation_id].list.clone();
    Ok(Committed { conversation_id, message: Some(message), members: list, ..Default::default() })
}

/// Applies every report; one refused report (a person who left) never
/// spoils the others. A report is refused only by checks made before it
/// writes, so a refusal leaves nothing to roll back; a database failure
/// fails the whole command (and its savepoint).
fn update_cursors(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    reports: &[CursorReport],
) -> Result<Committed, ServiceError> {
    let mut outcomes = Vec::with_capacity(reports.len());
    for r in reports.iter().take(MAX_CURSOR_REPORTS) {
        match update_cursor(conn, cache, version, r) {
            Ok(outcome) => outcomes.push(outcome),
            Err(e @ ServiceError::Internal(_)) => return Err(e),
            Err(e) => outcomes.push(CursorOutcome::Refused(e)),
        }
    }
    Ok(Committed { cursors: outcomes, ..Default::default() })
}

fn update_cursor(
    conn: &dyn Store,
    cache: &mut HashMap<u64, ConvMembers>,
    version: &mut u64,
    r: &CursorReport,
) -> Result<CursorOutcome, ServiceError> {
    let (user, conversation_id) = (r.user, r.conversation_id);
    let members = load_members(conn, cache, conversation_id)?;
    if !members.roles.contains_key(&user) {
        return Err(ServiceError::NotMember);
    }
    let (last_seq, old_delivered, old_read) = conn.cursors(conversation_id, user)?;
    let read = r.read.min(last_seq).max(old_read);
    let delivered = r.delivered.min(last_seq).max(old_delivered).max(read);
    if read == old_read && delivered == old_delivered {
        return Ok(CursorOutcome::Unchanged);
    }
    // Only the member row takes a new version: the person's own devices learn
    // the move by sync, and nobody else re-fetches the conversation (with its
    // member list) because one member's cursor moved.
    let v = next_version(version);
    conn.set_cursors(conversation_id, user, delivered, read, v)?;
    Ok(CursorOutcome::Moved {
        cursor: v1::Cursor { conversation_id, user_id: user, delivered_seq: delivered, read_seq: read },
        old_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::open_connection;
    use rusqlite::Connection;

    fn setup() -> (tempfile::TempDir, Connection, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        crate::storage::migrate(&path).unwrap();
        let conn = open_connection(&path).unwrap();
        let users = ["a", "b"]
            .iter()
            .map(|n| {
                conn.execute(
                    "INSERT INTO users (account, display_name, password_hash, created_at) VALUES (?1, ?1, '', 0)",
                    [n],
                )
                .unwrap();
                conn.last_insert_rowid() as u64
            })
            .collect();
        (dir, conn, users)
    }

    #[test]
    fn content_hash_tells_every_field_apart() {
        let base = v1::SendMessage {
            conversation_id: 1,
            client_msg_id: "x".into(),
            text: "hi".into(),
            mentions: vec![2],
            reply_to_seq: 3,
            priority: 0,
            attachment: None,
            markdown: false,
        };
        let attachment = v1::Attachment { name: "hi".into(), file_id: vec![7; 32], ..Default::default() };
        let variants = [
            v1::SendMessage { conversation_id: 2, ..base.clone() },
            v1::SendMessage { text: "ho".into(), ..base.clone() },
            v1::SendMessage { markdown: true, ..base.clone() },
            v1::SendMessage { mentions: vec![], ..base.clone() },
            v1::SendMessage { reply_to_seq: 4, ..base.clone() },
            v1::SendMessage { priority: 1, ..base.clone() },
            // A file (kind FILE) whose name is the same text.
            v1::SendMessage { attachment: Some(attachment), ..base.clone() },
        ];
        let h = content_hash(&base);
        assert_eq!(h, content_hash(&v1::SendMessage { client_msg_id: "y".into(), ..base.clone() }));
        for v in &variants {
            assert_ne!(h, content_hash(v), "{v:?}");
        }
    }

    /// Retention gives new versions only to the conversations it trimmed,
    /// each its own, and a run that trims nothing changes no version.
    #[test]
    fn retention_renumbers_only_what_it_trimmed() {
        let (dir, mut conn, users) = setup();
        let key = crate::audit::AuditKey::load_or_create(dir.path()).unwrap();
        let mut cache = HashMap::new();
        let mut version = WriterState::max_version(&conn).unwrap();
        let mut groups = Vec::new();
        for name in ["old 1", "old 2", "new"] {
            let cmd = Command::CreateGroup { owner: users[0], name: name.into(), members: vec![users[1]] };
            groups.push(apply(&conn, &mut cache, &mut version, 0, &cmd).unwrap().conversation_id);
        }
        conn.execute(
            "UPDATE messages SET sent_at = 0 WHERE conversation_id IN (?1, ?2)",
            [groups[0], groups[1]],
        )
        .unwrap();
        conn.execute("UPDATE settings SET value = '1' WHERE key = 'retention_group_days'", []).unwrap();
        let versions = |conn: &Connection| -> Vec<u64> {
            groups
                .iter()
                .map(|g| {
                    conn.query_row("SELECT version FROM conversations WHERE id = ?1", [g], |r| r.get(0))
                        .unwrap()
                })
                .collect()
        };
        let before = versions(&conn);
        let run = |conn: &mut Connection, version: &mut u64, cache: &mut HashMap<u64, ConvMembers>| {
            let tx = conn.transaction().unwrap();
            let cmd = Command::ApplyRetention { now: now_ms(), key: key.clone() };
            let removed = apply(&*tx, cache, version, 0, &cmd).unwrap().value;
            tx.commit().unwrap();
            removed
        };
        assert_eq!(run(&mut conn, &mut version, &mut cache), 2);
        let after = versions(&conn);
        assert!(after[0] > before[0] && after[1] > before[1], "{before:?} -> {after:?}");
        assert_ne!(after[0], after[1], "each trimmed conversation has a version of its own");
        assert_eq!(after[2], before[2], "the untouched conversation keeps its version");
        // The next run removes nothing and changes nothing.
        assert_eq!(run(&mut conn, &mut version, &mut cache), 0);
        assert_eq!(versions(&conn), after);
    }

    /// A send that fails after it wrote (here: the log insert refused after
    /// the conversation's counter moved) makes the batch run again with
    /// savepoints: the sends around it are stored with dense seqs, the
    /// failed one leaves nothing behind, and its connection's later sends
    /// are refused to keep order.
    #[test]
    fn a_send_failing_mid_write_reruns_its_batch_safely() {
        let (dir, conn, users) = setup();
        // The writer's own connection; `conn` sets up and inspects the file.
        let store = crate::storage::open(&dir.path().join("t.db")).unwrap();
        let mut state = WriterState::load(store, 0).unwrap();
        let cmd = Command::CreateGroup { owner: users[0], name: "g".into(), members: vec![users[1]] };
        let group = {
            state.conn.begin_immediate().unwrap();
            let c = apply(&*state.conn, &mut state.members, &mut state.version, 0, &cmd).unwrap();
            state.conn.commit().unwrap();
            c.conversation_id
        };
        conn.execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
        let first = Arc::new(AtomicBool::new(false));
        let second = Arc::new(AtomicBool::new(false));
        let mut answers = Vec::new();
        let mut batch = Vec::new();
        for (i, (text, ordered)) in
            [("a", &first), ("poison", &first), ("after on the same connection", &first), ("b", &second)]
                .into_iter()
                .enumerate()
        {
            let msg = v1::SendMessage {
                conversation_id: group,
                client_msg_id: format!("0190aaaa-0000-7000-8000-00000000000{i}"),
                text: text.into(),
                ..Default::default()
            };
            let (tx, rx) = oneshot::channel();
            answers.push(rx);
            let cmd = Command::Send { sender: users[0], msg, ordered: ordered.clone(), folder: None };
            batch.push((cmd, Reply { tx, fanout: None }));
        }
        let reruns = STATS.safe_reruns.load(Ordering::Relaxed);
        state.apply_batch(&mut batch);
        assert!(STATS.safe_reruns.load(Ordering::Relaxed) > reruns, "the batch ran again with savepoints");
        let answers: Vec<_> = answers.into_iter().map(|rx| rx.blocking_recv().unwrap()).collect();
        let seq = |r: &Result<Committed, ServiceError>| {
            r.as_ref().ok().and_then(|c| c.message.as_ref()).map(|m| m.seq)
        };
        assert!(matches!(answers[1], Err(ServiceError::Internal(_))), "{:?}", answers[1].as_ref().err());
        assert!(
            matches!(answers[2], Err(ServiceError::ShuttingDown)),
            "the guard keeps the connection's order"
        );
        // Seq 1 is the group's creation entry.
        assert_eq!((seq(&answers[0]), seq(&answers[3])), (Some(2), Some(3)));
        let stored: Vec<(u64, String)> = conn
            .prepare("SELECT seq, text FROM messages WHERE conversation_id = ?1 AND kind = 0 ORDER BY seq")
            .unwrap()
            .query_map([group], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored, [(2, "a".to_owned()), (3, "b".to_owned())]);
        let last: u64 = conn
            .query_row("SELECT last_seq FROM conversations WHERE id = ?1", [group], |r| r.get(0))
            .unwrap();
        assert_eq!(last, 3, "no seq was taken by the failed send");
    }
}
