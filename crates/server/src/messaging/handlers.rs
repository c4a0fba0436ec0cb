//! Request handlers of an authenticated session: one free function per
//! request message, all registered in [`route`].
//!
//! Writes are put in the writer's queue inside `route` itself, so requests of
//! one connection are committed in the order they arrived; waiting for the
//! commit and reading run in the returned future, so a connection can have
//! many requests in flight. Committed entries are fanned out by the writer's
//! side (`hub::fan_out`), cursor reports coalesced by `receipts`.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use hutong_protocol::v1::{self, MemberRole, PresenceStatus};
use hutong_protocol::{encode_envelope, Envelope, ErrorCode, Payload};

use crate::error::ServiceError;
use crate::live::outbound::{Lane, Outbound};

use crate::writer::{Command, Committed, CursorReport};
use crate::Shared;

/// An authenticated connection.
#[derive(Clone)]
pub struct Session {
    pub shared: Arc<Shared>,
    pub user_id: u64,
    pub session_id: u64,
    pub conn_id: u64,
    pub outbound: Arc<Outbound>,
    /// Set by the writer when a send of this connection failed retryably;
    /// later sends are refused and the connection is closed, so the client
    /// retries from its outbox in order on a new connection.
    pub send_order_broken: Arc<std::sync::atomic::AtomicBool>,
    /// A bulk connection (`Login.bulk`): file requests only, chunk data allowed.
    pub bulk: bool,
    /// Files this connection has been allowed to read, with their manifests.
    pub readable: Arc<std::sync::Mutex<crate::files::ReadableFiles>>,
    /// Set when a send was refused for its rate: later sends are refused too.
    pub throttled: Arc<std::sync::atomic::AtomicBool>,
    /// The device name the session logged in with.
    pub device: Arc<str>,
}

impl Session {
    /// What the notice requests need of this session.
    fn notices(&self) -> crate::notices::Session {
        crate::notices::Session {
            shared: self.shared.clone(),
            user_id: self.user_id,
            device: self.device.clone(),
            conn_id: self.conn_id,
        }
    }

    /// What the file requests need of this session.
    pub(crate) fn files(&self) -> crate::files::Session {
        crate::files::Session {
            shared: self.shared.clone(),
            user_id: self.user_id,
            bulk: self.bulk,
            readable: self.readable.clone(),
        }
    }
}

/// The answer to one request: `None` when nothing is sent back.
pub type Reply = Result<Option<(Lane, Payload)>, ServiceError>;

// Ready answers are built and consumed at once; boxing them would cost an
// allocation per request to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum Step {
    Ready(Reply),
    Pending(BoxFuture<'static, Reply>),
}

/// Most messages one fetch returns.
const FETCH_LIMIT: u32 = 500;

pub async fn route(s: &Session, request_id: u64, payload: Payload) -> Step {
    let user = s.user_id;
    if s.bulk {
        return route_bulk(s, payload);
    }
    match payload {
        Payload::SendMessage(msg) => {
            // The writer's own checks of size and form, before queueing: an
            // oversize send never takes a place in the writer's queue.
            if let Err(e) = crate::writer::check_send(&msg) {
                return Step::Ready(Err(e));
            }
            if let Err(e) = check_send_rights(s, &msg).await {
                return refuse(e);
            }
            // A folder's manifest is read here, before the send is queued, so
            // this connection's sends still enter the writer in order.
            let folder = match &msg.attachment {
                Some(a) if a.kind == v1::AttachmentKind::AttachmentFolder as i32 => {
                    match crate::files::folder_contents(&s.files(), a).await {
                        Ok(contents) => Some(contents),
                        Err(e) => return Step::Ready(Err(e)),
                    }
                }
                _ => None,
            };
            let cmd = Command::Send { sender: user, msg, ordered: s.send_order_broken.clone(), folder };
            match write(s, cmd, after_send).await {
                Step::Pending(reply) => {
                    let s = s.clone();
                    Step::Pending(
                        async move {
                            let reply = reply.await;
                            // A send stored before the one that failed is answered
                            // (its acknowledgement is queued before this close, as
                            // the writer answers a batch in order); a failed or
                            // refused one is not: close rather than answer, and
                            // the client resends its outbox, in order, on a new
                            // connection.
                            if reply.is_err()
                                && s.send_order_broken.load(std::sync::atomic::Ordering::Acquire)
                            {
                                s.outbound.close(
                                    ErrorCode::Internal,
                                    "a message could not be stored; reconnect and retry",
                                );
                            }
                            reply
                        }
                        .boxed(),
                    )
                }
                ready => ready,
            }
        }
        Payload::Recall(r) => {
            if let Err(e) = take_send_token(s) {
                return refuse(e);
            }
            write(s, Command::Recall { user, conversation_id: r.conversation_id, seq: r.seq }, after_recall)
                .await
        }
        Payload::EditMessage(r) => {
            if let Err(e) = crate::writer::check_edit(&r) {
                return refuse(e);
            }
            if let Err(e) = take_send_token(s) {
                return refuse(e);
            }
            let window_ms = (s.shared.config.edit_window_secs as i64).saturating_mul(1000);
            write(s, Command::Edit { user, msg: r, window_ms }, after_recall).await
        }
        Payload::React(r) => {
            if let Err(e) = crate::writer::check_react(&r) {
                return refuse(e);
            }
            if let Err(e) = take_send_token(s) {
                return refuse(e);
            }
            write(s, Command::React { user, msg: r }, after_recall).await
        }
        Payload::ForwardMessages(r) => {
            if let Err(e) = super::forward::check_forward(&r) {
                return Step::Ready(Err(e));
            }
            if let Err(e) = take_send_token(s) {
                return refuse(e);
            }
            match super::forward::forward(s, r).await {
                Ok(step) => step,
                Err(e) => Step::Ready(Err(e)),
            }
        }
        Payload::MassSend(r) => {
            if let Err(e) = super::mass_send::check_mass_send(&r) {
                return Step::Ready(Err(e));
            }
            if let Err(e) = take_send_token(s) {
                return refuse(e);
            }
            match super::mass_send::mass_send(s, r).await {
                Ok(step) => step,
                Err(e) => Step::Ready(Err(e)),
            }
        }
        Payload::GetMassSendStatus(r) => Step::Pending(super::mass_send::get_status(s.clone(), r).boxed()),
        Payload::PinMessage(r) => {
            if let Err(e) = take_send_token(s) {
                return refuse(e);
            }
            write(s, Command::Pin { user, msg: r }, after_recall).await
        }
        Payload::OpenDirect(r) => {
            if let Err(e) = check_knowable(s, vec![r.user_id]).await {
                return Step::Ready(Err(e));
            }
            write(s, Command::OpenDirect { user, peer: r.user_id }, after_change).await
        }
        Payload::CreateGroup(r) => {
            if r.member_ids.len() > crate::writer::MAX_GROUP_MEMBERS {
                return Step::Ready(Err(ServiceError::TooLarge("too many members in one request".into())));
            }
            if let Err(e) = check_knowable(s, r.member_ids.clone()).await {
                return Step::Ready(Err(e));
            }
            write(s, Command::CreateGroup { owner: user, name: r.name, members: r.member_ids }, after_change)
                .await
        }
        Payload::RenameGroup(r) => {
            write(
                s,
                Command::RenameGroup { user, conversation_id: r.conversation_id, name: r.name },
                after_change,
            )
            .await
        }
        Payload::AddMembers(r) => {
            if r.user_ids.len() > crate::writer::MAX_GROUP_MEMBERS {
                return Step::Ready(Err(ServiceError::TooLarge("too many members in one request".into())));
            }
            if let Err(e) = check_knowable(s, r.user_ids.clone()).await {
                return Step::Ready(Err(e));
            }
            let cmd = Command::AddMembers { user, conversation_id: r.conversation_id, user_ids: r.user_ids };
            write(s, cmd, after_change).await
        }
        Payload::RemoveMember(r) => {
            let cmd = Command::RemoveMember { user, conversation_id: r.conversation_id, target: r.user_id };
            write(s, cmd, after_change).await
        }
        Payload::LeaveGroup(r) => {
            write(s, Command::Leave { user, conversation_id: r.conversation_id }, after_change).await
        }
        Payload::SetMemberRole(r) => {
            let role = MemberRole::try_from(r.role).unwrap_or(MemberRole::Member);
            let cmd = Command::SetRole { user, conversation_id: r.conversation_id, target: r.user_id, role };
            write(s, cmd, after_change).await
        }
        Payload::UpdateCursor(r) => {
            let report = CursorReport {
                user,
                conversation_id: r.conversation_id,
                delivered: r.delivered_seq,
                read: r.read_seq,
            };
            // Coalesced with other reports and answered after their commit.
            let answer = s.shared.receipts.report(report, s.conn_id);
            Step::Pending(
                async move {
                    answer.await.map_err(|_| ServiceError::ShuttingDown)??;
                    Ok(Some((Lane::Live, Payload::Done(v1::Done {}))))
                }
                .boxed(),
            )
        }
        Payload::Sync(r) => Step::Pending(sync(s.clone(), r).boxed()),
        Payload::FetchMessages(r) => Step::Pending(fetch_messages(s.clone(), r).boxed()),
        Payload::LookupUsers(r) => Step::Pending(lookup_users(s.clone(), r).boxed()),
        Payload::AddRobot(r) => Step::Pending(super::robots::add_robot(s.clone(), r).boxed()),
        Payload::ListRobots(r) => Step::Pending(super::robots::list_robots(s.clone(), r).boxed()),
        Payload::RemoveRobot(r) => Step::Pending(super::robots::remove_robot(s.clone(), r).boxed()),
        Payload::GetReadList(r) => Step::Pending(read_list(s.clone(), r).boxed()),
        Payload::DirectorySync(r) => Step::Pending(directory_sync(s.clone(), r).boxed()),
        Payload::Typing(r) => Step::Pending(typing(s.clone(), r).boxed()),
        Payload::SubscribePresence(r) => Step::Pending(subscribe_presence(s.clone(), r).boxed()),
        Payload::SetPresence(r) => Step::Ready(set_presence(s, r)),
        Payload::Ping(p) => {
            Step::Ready(Ok(Some((Lane::Control, Payload::Pong(v1::Pong { nonce: p.nonce })))))
        }
        Payload::Logout(_) => Step::Pending(logout(s.clone(), request_id).boxed()),
        Payload::PrepareUpload(r) => Step::Pending(crate::files::prepare_upload(s.files(), r).boxed()),
        Payload::CommitUpload(r) => Step::Pending(crate::files::commit_upload(s.files(), r).boxed()),
        Payload::ProveChunks(r) => Step::Pending(crate::files::prove_chunks(s.files(), r).boxed()),
        Payload::GetFile(r) => Step::Pending(crate::files::get_file(s.files(), r).boxed()),
        p @ (Payload::SendNotice(_)
        | Payload::NoticeSync(_)
        | Payload::MarkNotice(_)
        | Payload::WithdrawNotice(_)
        | Payload::RemindNotice(_)
        | Payload::GetNoticeStatus(_)
        | Payload::ListSentNotices(_)) => Step::Pending(crate::notices::route(s.notices(), p).boxed()),
        Payload::PutChunk(_) | Payload::GetChunk(_) => {
            Step::Ready(Err(ServiceError::BadRequest("chunk data travels on a bulk connection only".into())))
        }
        Payload::Hello(_) | Payload::Login(_) => {
            Step::Ready(Err(ServiceError::BadRequest("this connection is already logged in".into())))
        }
        _ => {
            Step::Ready(Err(ServiceError::BadRequest("this frame is not a request a client may send".into())))
        }
    }
}

/// A bulk connection carries file requests (and pings) only.
fn route_bulk(s: &Session, payload: Payload) -> Step {
    match payload {
        Payload::PutChunk(r) => Step::Pending(crate::files::put_chunk(s.files(), r).boxed()),
        Payload::GetChunk(r) => Step::Pending(crate::files::get_chunk(s.files(), r).boxed()),
        Payload::PrepareUpload(r) => Step::Pending(crate::files::prepare_upload(s.files(), r).boxed()),
        Payload::CommitUpload(r) => Step::Pending(crate::files::commit_upload(s.files(), r).boxed()),
        Payload::ProveChunks(r) => Step::Pending(crate::files::prove_chunks(s.files(), r).boxed()),
        Payload::GetFile(r) => Step::Pending(crate::files::get_file(s.files(), r).boxed()),
        Payload::Ping(p) => {
            Step::Ready(Ok(Some((Lane::Control, Payload::Pong(v1::Pong { nonce: p.nonce })))))
        }
        _ => {
            Step::Ready(Err(ServiceError::BadRequest("a bulk connection carries file requests only".into())))
        }
    }
}

/// How long a connection that was refused for its send rate waits for each
/// later refusal (and is told to wait).
const THROTTLED_HOLD_MS: u64 = 1000;

/// Answers a refusal; one for the send rate only once its delay has passed.
/// A connection has at most `max_in_flight` requests open, so a flooder
/// whose refusals are held stops being read: what it costs the server is
/// bounded by that many frames per delay, not by how fast it can write.
fn refuse(e: ServiceError) -> Step {
    match e {
        ServiceError::Throttled { retry_after_ms, .. } => Step::Pending(
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(retry_after_ms.min(THROTTLED_HOLD_MS)))
                    .await;
                Err(e)
            }
            .boxed(),
        ),
        e => Step::Ready(Err(e)),
    }
}

/// Takes one of the person's send tokens. Once a send of this connection
/// was refused for its rate, every later one is refused too until the
/// connection ends, so no later message is stored before the refused one
/// (the client resends its outbox, in order, after the delay it was given).
fn take_send_token(s: &Session) -> Result<(), ServiceError> {
    use std::sync::atomic::Ordering;
    let refused = |retry_after_ms| ServiceError::Throttled { what: "messages", retry_after_ms };
    if s.throttled.load(Ordering::Acquire) {
        return Err(refused(THROTTLED_HOLD_MS));
    }
    s.shared.sends.take(s.user_id).map_err(|ms| {
        s.throttled.store(true, Ordering::Release);
        refused(ms)
    })
}

/// What a send needs beyond its form: a token of the sender's rate, and for
/// an URGENT message one of the roles `urgent_roles` names.
async fn check_send_rights(s: &Session, msg: &v1::SendMessage) -> Result<(), ServiceError> {
    take_send_token(s)?;
    if msg.priority == v1::Priority::Urgent as i32 {
        let (user, allowed) = (s.user_id, s.shared.config.urgent_roles.clone());
        let may = s
            .shared
            .db
            .read(move |conn| {
                let roles = crate::directory::person(conn, user)?.roles;
                Ok(roles.iter().any(|r| allowed.iter().any(|a| a.eq_ignore_ascii_case(r))))
            })
            .await?;
        if !may {
            return Err(ServiceError::Forbidden(
                "only people with a role this server names in urgent_roles may send urgent messages".into(),
            ));
        }
    }
    Ok(())
}

/// Refuses people the caller may not know of (hidden from them, deleted)
/// with the writer's own answer for an id that does not exist, so opening a
/// chat or adding someone to a group tells nothing a lookup would not.
async fn check_knowable(s: &Session, mut ids: Vec<u64>) -> Result<(), ServiceError> {
    let viewer = s.user_id;
    ids.sort_unstable();
    ids.dedup();
    let known = s
        .shared
        .db
        .read(move |conn| Ok(crate::directory::knowable(conn, viewer, &ids)?.len() == ids.len()))
        .await?;
    if known {
        Ok(())
    } else {
        Err(ServiceError::NotFound("user"))
    }
}

/// Queues `cmd` now; waits for the commit and answers in the returned future.
///
/// The log entry a command commits is pushed to the members' live sessions by
/// the writer's fan-out (`hub::fan_out`), not here: this future dies with the
/// connection, and an entry must reach everyone online even if its sender's
/// connection ended right after sending. The asking connection is left out
/// of sends and recalls (its answer carries the entry) and gets group changes
/// like everyone else.
async fn write<F, Fut>(s: &Session, cmd: Command, after: F) -> Step
where
    F: FnOnce(Session, Committed) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let except = match &cmd {
        Command::Send { .. }
        | Command::Recall { .. }
        | Command::Edit { .. }
        | Command::React { .. }
        | Command::Pin { .. } => Some(s.conn_id),
        _ => None,
    };
    match s.shared.writer.enqueue_fanned(cmd, except).await {
        Err(e) => Step::Ready(Err(e)),
        Ok(rx) => {
            let s = s.clone();
            Step::Pending(
                async move {
                    let committed = rx.await.map_err(|_| ServiceError::ShuttingDown)??;
                    after(s, committed).await
                }
                .boxed(),
            )
        }
    }
}

async fn after_send(s: Session, c: Committed) -> Reply {
    // The members' devices (the sender's other ones too, and again for a
    // retried send) got the entry from the fan-out; this connection gets the ack.
    let m = c.message.as_ref().ok_or_else(|| ServiceError::Internal("send without an entry".into()))?;
    if !c.duplicate && c.members.len() == 2 {
        message_to_bot(&s, &c, m);
    }
    let ack = v1::SendAck {
        conversation_id: m.conversation_id,
        seq: m.seq,
        sent_at_ms: m.sent_at_ms,
        client_msg_id: m.client_msg_id.clone(),
        // The entry as stored is what the sender's cache keeps: sent back
        // only when it differs from what was sent (mentions filtered), so an
        // acknowledgement does not repeat every message to its sender; a
        // retry of a send retention removed has none to give.
        message: if c.altered && !c.entry_removed { c.message.clone() } else { None },
    };
    Ok(Some((Lane::Control, Payload::SendAck(ack))))
}

/// A message to an integration application's bot is an event of that
/// application (recorded through the writer after the send's commit; see
/// `events`).
fn message_to_bot(s: &Session, c: &Committed, m: &v1::Message) {
    let Some(&to) = c.members.iter().find(|&&u| u != m.sender_id) else {
        return;
    };
    let message = m.clone();
    let record = Box::new(move |st: &dyn crate::storage::Store| {
        crate::events::message_to_bot(st, to, &message).map(|id| id.unwrap_or(0))
    });
    let shared = s.shared.clone();
    tokio::spawn(async move {
        match shared.writes.submit(record).await {
            Ok(0) => {}
            Ok(_) => shared.events_recorded.notify_waiters(),
            Err(e) => tracing::warn!(error = %e, "event of a message to a bot not recorded"),
        }
    });
}

async fn after_recall(_s: Session, c: Committed) -> Reply {
    Ok(c.message.map(|m| (Lane::Control, Payload::Message(m))))
}

/// Group and direct-conversation changes: everyone (this connection too)
/// got the system entry from the fan-out; the caller gets its new view of
/// the conversation.
async fn after_change(s: Session, c: Committed) -> Reply {
    let (user, id) = (s.user_id, c.conversation_id);
    let state = s.shared.db.read(move |conn| super::reads::conversation_state(conn, id, user)).await?;
    Ok(Some((Lane::Live, Payload::Conversation(state))))
}

async fn sync(s: Session, r: v1::SyncRequest) -> Reply {
    let user = s.user_id;
    let limit = if r.limit == 0 { 100 } else { r.limit };
    let resp = s
        .shared
        .db
        .read(move |conn| super::reads::sync(conn, user, r.since_version, r.since_conversation_id, limit))
        .await?;
    Ok(Some((Lane::Bulk, Payload::SyncResponse(resp))))
}

async fn fetch_messages(s: Session, r: v1::FetchMessages) -> Reply {
    let user = s.user_id;
    let batch =
        s.shared.db.read(move |conn| super::reads::fetch_messages(conn, user, &r, FETCH_LIMIT)).await?;
    Ok(Some((Lane::Bulk, Payload::MessageBatch(batch))))
}

async fn read_list(s: Session, r: v1::GetReadList) -> Reply {
    let user = s.user_id;
    let list = s.shared.db.read(move |store| super::reads::read_list(store, user, &r)).await?;
    Ok(Some((Lane::Live, Payload::ReadList(list))))
}

async fn lookup_users(s: Session, r: v1::LookupUsers) -> Reply {
    if r.accounts.len() + r.user_ids.len() > 1000 {
        return Err(ServiceError::TooLarge("look up at most 1000 users at once".into()));
    }
    let viewer = s.user_id;
    let list = s
        .shared
        .db
        .read(move |conn| {
            let mut list = super::reads::lookup_users(conn, &r)?;
            // People the caller may not see are left out exactly like ids
            // that do not exist: a lookup is no way around hidden departments.
            let ids: Vec<u64> = list.users.iter().map(|u| u.id).collect();
            let known = crate::directory::knowable(conn, viewer, &ids)?;
            list.users.retain(|u| known.contains(&u.id));
            Ok(list)
        })
        .await?;
    Ok(Some((Lane::Live, Payload::UserList(list))))
}

async fn directory_sync(s: Session, r: v1::DirectorySync) -> Reply {
    let user = s.user_id;
    let limit = if r.limit == 0 { 1000 } else { r.limit };
    let delta = s
        .shared
        .db
        .read(move |conn| crate::directory::sync(conn, user, r.since_version, r.epoch, limit))
        .await?;
    Ok(Some((Lane::Bulk, Payload::DirectoryDelta(delta))))
}

/// Typing is relayed to the other members' devices and never stored. At
/// most one notice per person and conversation per `typing_interval_ms` (and
/// a few per person over all conversations) is relayed; the rest are
/// dropped quietly (typing is sent without a request id, so there is nobody
/// to tell; a request that wants an answer still gets `Done`).
async fn typing(s: Session, r: v1::Typing) -> Reply {
    let (user, id) = (s.user_id, r.conversation_id);
    if !s.shared.typing.allow(user, id) {
        return Ok(Some((Lane::Live, Payload::Done(v1::Done {}))));
    }
    let members: Vec<u64> = s
        .shared
        .db
        .read(move |conn| {
            let m = conn.membership(id, user)?;
            if !m.is_some_and(|m| m.active) {
                return Err(ServiceError::NotMember);
            }
            conn.active_members(id)
        })
        .await?;
    let others: Vec<u64> = members.into_iter().filter(|m| *m != user).collect();
    let frame = encode_envelope(&Envelope::new(
        0,
        Payload::Typing(v1::Typing { conversation_id: id, user_id: user }),
    ));
    s.shared.hub.push(&others, Lane::Live, &frame, None);
    Ok(Some((Lane::Live, Payload::Done(v1::Done {}))))
}

/// Watches people's presence. Their current states are queued page by page
/// as the client reads (a department of 5,000 is more than the live lane
/// holds, and overflowing it would disconnect the client), then `Done`.
async fn subscribe_presence(s: Session, r: v1::SubscribePresence) -> Reply {
    if r.user_ids.len() > 5000 {
        return Err(ServiceError::TooLarge("subscribe to at most 5000 people".into()));
    }
    let mut seen = std::collections::HashSet::with_capacity(r.user_ids.len());
    let users: Vec<u64> = r.user_ids.into_iter().filter(|u| seen.insert(*u)).collect();
    // People the caller may not know of are answered as ids that do not
    // exist: OFFLINE once, never followed by a change.
    let (viewer, asked) = (s.user_id, users.clone());
    let known = s.shared.db.read(move |conn| crate::directory::knowable(conn, viewer, &asked)).await?;
    let masked: std::collections::HashSet<u64> =
        users.iter().filter(|u| !known.contains(u)).copied().collect();
    let watched: Vec<u64> = users.iter().filter(|u| known.contains(u)).copied().collect();
    s.shared.hub.subscribe(s.conn_id, s.outbound.clone(), watched);
    let mut done = 0;
    while done < users.len() {
        let room = s.outbound.room();
        let n = s.shared.hub.presence_page(s.conn_id, &s.outbound, &users[done..], &masked);
        done += n;
        if done < users.len() {
            if s.outbound.is_closed() {
                return Ok(None);
            }
            room.await;
        }
    }
    Ok(Some((Lane::Live, Payload::Done(v1::Done {}))))
}

fn set_presence(s: &Session, r: v1::SetPresence) -> Reply {
    let status = match PresenceStatus::try_from(r.status) {
        Ok(PresenceStatus::Away) => PresenceStatus::Away,
        Ok(PresenceStatus::Online) => PresenceStatus::Online,
        _ => return Err(ServiceError::BadRequest("a device is either ONLINE or AWAY".into())),
    };
    s.shared.hub.set_status(s.user_id, s.conn_id, status);
    Ok(Some((Lane::Live, Payload::Done(v1::Done {}))))
}

async fn logout(s: Session, request_id: u64) -> Reply {
    let id = s.session_id;
    s.shared.auth.end_session(id).await?;
    // Answer first, then close: frames queued before a close still go out.
    let done = Envelope::reply(request_id, Payload::Done(v1::Done {}));
    s.outbound.push_wait(Lane::Control, encode_envelope(&done)).await;
    s.outbound.close(ErrorCode::SessionRevoked, "logged out");
    Ok(None)
}
