//! The connection task: connect, say hello, log in, then run the session's
//! jobs (reader, sync, outbox sender, cursor reporter, heartbeats) until the
//! connection ends; then wait with exponential back-off and jitter and start
//! again. Correctness comes from sync: every (re)connect asks the server what
//! changed and fills every gap, so missed pushes cost time, never messages.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use hutong_protocol::v1::{self, login::Secret, MessageKind};
use hutong_protocol::{decode_envelope, encode_envelope, Envelope, ErrorCode, Payload, PROTOCOL_VERSION};
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::cache::OutboxEntry;
use crate::error::ClientError;
use crate::requests::Requests;
use crate::transport::{self, FrameSink, FrameStream};
use crate::{Credential, Event, Inner, Status};

/// Messages sent per outbox round; all are in flight together.
const OUTBOX_WINDOW: usize = 128;
/// Attempts of one outbox entry that the server fails on (`INTERNAL`)
/// before it is parked as failed; between attempts the connection waits
/// out the reconnect back-off.
const MAX_SEND_ATTEMPTS: u32 = 5;
/// Messages asked for per fetch while filling a gap.
const FETCH_BATCH: u32 = 500;
/// Pushes taken from the socket and stored in one cache transaction.
const PUSH_BATCH: usize = 256;

/// One live connection: sends requests and matches answers to them.
pub(crate) struct Connection {
    tx: mpsc::Sender<Bytes>,
    requests: Requests,
    pub(crate) sync_wanted: Notify,
}

impl Connection {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Connection { tx, requests: Requests::default(), sync_wanted: Notify::new() }
    }

    /// Puts a request on the wire (in call order) and returns where its answer will arrive.
    pub(crate) async fn start(&self, payload: Payload) -> Result<oneshot::Receiver<Payload>, ClientError> {
        Ok(self.start_numbered(payload).await?.1)
    }

    /// As [`Connection::start`], with the request's id.
    async fn start_numbered(
        &self,
        payload: Payload,
    ) -> Result<(u64, oneshot::Receiver<Payload>), ClientError> {
        let (id, rx) = self.requests.register();
        if self.tx.send(encode_envelope(&Envelope::new(id, payload))).await.is_err() {
            self.requests.forget(id);
            return Err(self.requests.lost());
        }
        Ok((id, rx))
    }

    pub(crate) async fn finish(&self, rx: oneshot::Receiver<Payload>) -> Result<Payload, ClientError> {
        self.requests.answer(rx.await)
    }

    pub(crate) async fn call(&self, payload: Payload) -> Result<Payload, ClientError> {
        let rx = self.start(payload).await?;
        self.finish(rx).await
    }

    /// Sends without wanting an answer (request id 0).
    pub(crate) fn fire(&self, payload: Payload) {
        let _ = self.tx.try_send(encode_envelope(&Envelope::new(0, payload)));
    }
}

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut failures: u32 = 0;
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        inner.set_status(Status::Connecting);
        let mut was_online = false;
        let result = connect_and_serve(&inner, &mut was_online).await;
        *inner.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let error = match result {
            Ok(()) => break,
            Err(e) => e,
        };
        // A refused hello or login (a lockout included) is the server's
        // answer, not a network fault: retrying the same secret cannot help,
        // so stop and say why instead of reconnecting until a timeout.
        if error.give_up(!was_online) {
            tracing::warn!(error = %error, "giving up until the person acts");
            *inner.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.clone());
            inner.set_status(Status::Offline { code: error.code().into(), reason: error.explain() });
            return;
        }
        // An outbox entry the server keeps failing on backs off like a connection that keeps failing.
        let send_failures = count_send_failure(&inner, &error).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot count a failed send");
            0
        });
        failures = if was_online { send_failures.max(1) } else { failures.saturating_add(1) };
        let delay = backoff(&inner, failures, &error);
        tracing::info!(error = %error, delay_ms = delay.as_millis() as u64, "connection lost; reconnecting");
        *inner.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.clone());
        inner.set_status(Status::Reconnecting {
            in_ms: delay.as_millis() as u64,
            code: error.code().into(),
            reason: error.explain(),
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inner.shutdown.cancelled() => break,
        }
    }
    inner.set_status(Status::Offline { code: "CLOSED".into(), reason: "the client was stopped".into() });
}

/// Exponential back-off with jitter (50–100 % of the step), never shorter
/// than a server-requested retry delay.
fn backoff(inner: &Inner, failures: u32, error: &ClientError) -> Duration {
    backoff_delay(&inner.options, failures, error)
}

/// The delay before retry number `failures` (from 1) after `error`; shared
/// with the transfer engine.
pub(crate) fn backoff_delay(options: &crate::ClientOptions, failures: u32, error: &ClientError) -> Duration {
    let min = options.backoff_min.as_millis() as u64;
    let max = options.backoff_max.as_millis() as u64;
    let step = min.saturating_mul(1u64 << failures.saturating_sub(1).min(20)).min(max).max(1);
    let jittered = rand::rng().random_range(step / 2..=step);
    let floor = match error {
        ClientError::Remote { retry_after_ms, .. } => *retry_after_ms,
        _ => 0,
    };
    Duration::from_millis(jittered.max(floor))
}

async fn connect_and_serve(inner: &Arc<Inner>, was_online: &mut bool) -> Result<(), ClientError> {
    let options = &inner.options;
    // A client that pinned nothing yet insists, on every reconnect, on the
    // certificate its first connection accepted: a certificate that changes
    // within a session is refused, not trusted anew.
    let pinned = options
        .pinned_fingerprint
        .clone()
        .or_else(|| inner.fingerprint.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let connected = transport::connect(&options.server, pinned.as_deref()).await?;
    if connected.fingerprint.is_some() {
        *inner.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) = connected.fingerprint.clone();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let conn = Arc::new(Connection::new(tx));
    let writer = tokio::spawn(write_loop(connected.sink, rx));
    let mut reader = tokio::spawn(read_loop(inner.clone(), conn.clone(), connected.stream));

    let session = async {
        let hello = v1::Hello { protocol_version: PROTOCOL_VERSION, client_name: "hutong-client".into() };
        let heartbeat = match conn.call(Payload::Hello(hello)).await? {
            Payload::HelloOk(ok) => Duration::from_millis(u64::from(ok.heartbeat_ms.max(100))),
            other => return Err(ClientError::Protocol(format!("expected HelloOk, got {other:?}"))),
        };
        let credential = inner.credential.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let secret = match credential {
            Credential::Password(p) => Secret::Password(p),
            Credential::Token(t) => Secret::Token(t),
        };
        let login = v1::Login {
            account: options.account.clone(),
            secret: Some(secret),
            device: options.device.clone(),
            bulk: false,
        };
        let ok = match conn.call(Payload::Login(login)).await? {
            Payload::LoginOk(ok) => ok,
            other => return Err(ClientError::Protocol(format!("expected LoginOk, got {other:?}"))),
        };
        if !ok.token.is_empty() {
            *inner.credential.lock().unwrap_or_else(|e| e.into_inner()) = Credential::Token(ok.token.clone());
        }
        inner.user_id.store(ok.user_id, Ordering::Relaxed);
        inner.cache().set_meta("user_id", &ok.user_id.to_string())?;
        *inner.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        *was_online = true;
        inner.set_status(Status::Online);
        tokio::select! {
            r = sync_loop(inner, &conn) => r,
            r = outbox_loop(inner, &conn) => r,
            r = cursor_loop(inner, &conn) => r,
            r = notice_report_loop(inner, &conn) => r,
            r = heartbeat_loop(&conn, heartbeat) => r,
        }
    };
    let result = tokio::select! {
        r = session => r,
        _ = &mut reader => Err(conn.requests.lost()),
        _ = inner.drop_now.notified() => Err(ClientError::Transport("connection dropped".into())),
        _ = inner.shutdown.cancelled() => Ok(()),
    };
    reader.abort();
    writer.abort();
    // The outbox entry the connection ended on, unless its answer did arrive
    // (an acknowledgement not yet handled is not a failure).
    let sending = inner.sending.lock().unwrap_or_else(|e| e.into_inner()).take();
    *inner.failed_send.lock().unwrap_or_else(|e| e.into_inner()) =
        sending.filter(|(_, request)| conn.requests.is_pending(*request)).map(|(entry, _)| entry);
    // Unblock anyone still waiting for an answer on this connection.
    conn.requests.fail_all();
    result
}

pub(crate) async fn change_password(
    server: &transport::ServerAddr,
    pinned: Option<&str>,
    account: &str,
    old: &str,
    new: &str,
) -> Result<(), ClientError> {
    let connected = transport::connect(server, pinned).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let conn = Arc::new(Connection::new(tx));
    let writer = tokio::spawn(write_loop(connected.sink, rx));
    let mut stream = connected.stream;
    let reader_conn = conn.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(body)) = stream.next().await {
            let Ok(env) = decode_envelope(&body) else { break };
            // Only answers matter before login; pushes cannot come yet.
            let _ = reader_conn.requests.route(env);
        }
    });
    let result = async {
        let hello = v1::Hello { protocol_version: PROTOCOL_VERSION, client_name: "hutong-client".into() };
        conn.call(Payload::Hello(hello)).await?;
        let req = v1::ChangePassword {
            account: account.to_owned(),
            old_password: old.to_owned(),
            new_password: new.to_owned(),
        };
        conn.call(Payload::ChangePassword(req)).await.map(drop)
    }
    .await;
    reader.abort();
    writer.abort();
    result
}

async fn write_loop(mut sink: FrameSink, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(frame) = rx.recv().await {
        if sink.feed(frame).await.is_err() {
            return;
        }
        while let Ok(more) = rx.try_recv() {
            if sink.feed(more).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

async fn read_loop(inner: Arc<Inner>, conn: Arc<Connection>, mut stream: FrameStream) {
    let mut pushes = Vec::with_capacity(PUSH_BATCH);
    while let Some(next) = stream.next().await {
        let mut frames = vec![next];
        // Take what is already buffered so a burst is stored in one transaction.
        while frames.len() < PUSH_BATCH {
            match stream.next().now_or_never() {
                Some(Some(f)) => frames.push(f),
                _ => break,
            }
        }
        for frame in frames {
            let env = match frame
                .map_err(|e| e.to_string())
                .and_then(|b| decode_envelope(&b).map_err(|e| e.to_string()))
            {
                Ok(env) => env,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping the connection after a bad frame");
                    return;
                }
            };
            match conn.requests.route(env) {
                // Remembered by `route` as the reason the connection ends.
                None | Some(Payload::Disconnect(_)) => {}
                Some(push) => pushes.push(push),
            }
        }
        if let Err(e) = apply_pushes(&inner, &conn, &mut pushes) {
            tracing::error!(error = %e, "cannot store pushed data");
            return;
        }
    }
}

fn apply_pushes(inner: &Inner, conn: &Connection, pushes: &mut Vec<Payload>) -> Result<(), ClientError> {
    let me = inner.user_id.load(Ordering::Relaxed);
    let mut messages = Vec::new();
    for p in pushes.drain(..) {
        match p {
            Payload::Message(m) => messages.push(m),
            Payload::Cursor(c) => {
                inner.cache().apply_cursor(&c, me)?;
                emit_cursor(inner, &c);
            }
            // Read marks of others on my messages, gathered by the server.
            Payload::Cursors(batch) => {
                inner.cache().apply_cursors(&batch.cursors, me)?;
                for c in &batch.cursors {
                    emit_cursor(inner, c);
                }
            }
            Payload::Presence(p) => {
                let status = match v1::PresenceStatus::try_from(p.status) {
                    Ok(v1::PresenceStatus::Online) => "online",
                    Ok(v1::PresenceStatus::Away) => "away",
                    _ => "offline",
                };
                inner.emit(Event::Presence { user_id: p.user_id, status });
            }
            Payload::Typing(t) => {
                inner.emit(Event::Typing { conversation_id: t.conversation_id, user_id: t.user_id })
            }
            // The directory changed: the next sync round fetches what this person may see.
            Payload::DirectoryDelta(_) => conn.sync_wanted.notify_one(),
            Payload::Notice(n) => {
                for n in inner.cache().apply_notices(&[n])? {
                    inner.emit(Event::Notice(n));
                }
                inner.notices_dirty.notify_one();
            }
            Payload::NoticeProgress(p) => {
                if let Some(recipient) = p.recipient {
                    inner.emit(Event::NoticeProgress {
                        notice_id: p.notice_id,
                        recipient: (&recipient).into(),
                    });
                }
            }
            Payload::Error(e) => tracing::warn!(error = %e, "the server reported an error"),
            other => tracing::debug!(?other, "ignoring an unexpected push"),
        }
    }
    if messages.is_empty() {
        return Ok(());
    }
    let mut need_sync = false;
    let fresh = {
        let mut cache = inner.cache();
        for m in &messages {
            // A conversation I do not know yet, a membership change, or a
            // hole before this entry: sync fetches what is missing.
            if m.kind == MessageKind::System as i32 || !cache.knows_conversation(m.conversation_id)? {
                need_sync = true;
            }
        }
        let fresh = cache.insert_messages(&messages)?;
        for m in &messages {
            if cache.contig_seq(m.conversation_id)? < m.seq {
                need_sync = true;
            }
        }
        fresh
    };
    for m in &fresh {
        inner.emit(Event::Message(m.into()));
    }
    if need_sync {
        conn.sync_wanted.notify_one();
    }
    inner.cursors_dirty.notify_one();
    Ok(())
}

fn emit_cursor(inner: &Inner, c: &v1::Cursor) {
    inner.emit(Event::Cursor {
        conversation_id: c.conversation_id,
        user_id: c.user_id,
        delivered_seq: c.delivered_seq,
        read_seq: c.read_seq,
    });
}

async fn heartbeat_loop(conn: &Connection, every: Duration) -> Result<(), ClientError> {
    let mut nonce = 0;
    loop {
        tokio::time::sleep(every).await;
        nonce += 1;
        match tokio::time::timeout(every * 2, conn.call(Payload::Ping(v1::Ping { nonce }))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ClientError::Transport("the server stopped answering heartbeats".into())),
        }
    }
}

async fn sync_loop(inner: &Arc<Inner>, conn: &Connection) -> Result<(), ClientError> {
    loop {
        sync_round(inner, conn).await?;
        inner.sync_rounds.fetch_add(1, Ordering::Relaxed);
        inner.emit(Event::Synced);
        // Pushes are an optimisation: one that never arrived (and no other
        // activity to reveal the gap) is found by the next periodic round.
        tokio::select! {
            _ = conn.sync_wanted.notified() => {}
            _ = tokio::time::sleep(sync_pause(inner.options.sync_interval)) => {}
        }
    }
}

/// The pause before the next periodic sync: the interval, 75–125 %, so
/// many clients started together do not ask together.
fn sync_pause(interval: Duration) -> Duration {
    let ms = interval.as_millis().min(u128::from(u64::MAX / 2)) as u64;
    Duration::from_millis(rand::rng().random_range(ms * 3 / 4..=ms * 5 / 4).max(1))
}

/// Asks what changed since the stored version, stores it, then fills every
/// conversation's gap between what the cache holds and the server's last seq.
async fn sync_round(inner: &Inner, conn: &Connection) -> Result<(), ClientError> {
    // Notices first: they are few, and an urgent one must not wait behind
    // thousands of messages.
    sync_notices(inner, conn).await?;
    loop {
        let since = inner.cache().sync_key()?;
        let req = v1::SyncRequest { since_version: since.0, limit: 200, since_conversation_id: since.1 };
        let resp = match conn.call(Payload::Sync(req)).await? {
            Payload::SyncResponse(r) => r,
            other => return Err(ClientError::Protocol(format!("expected a sync answer, got {other:?}"))),
        };
        let next = next_sync_key(since, &resp);
        {
            let mut cache = inner.cache();
            cache.apply_conversations(&resp.conversations)?;
            cache.set_sync_key(next.0, next.1)?;
        }
        if !resp.conversations.is_empty() {
            inner.emit(Event::ConversationsChanged);
        }
        if !resp.more {
            break;
        }
        if next <= since {
            // A server that says "more" without moving on would keep us here forever.
            tracing::warn!(
                version = next.0,
                conversation = next.1,
                "sync did not advance; stopping this round"
            );
            break;
        }
    }
    sync_directory(inner, conn).await?;
    let gaps = inner.cache().gaps()?;
    for (conversation_id, contig, last) in gaps {
        let mut after = contig;
        while after < last {
            let req =
                v1::FetchMessages { conversation_id, after_seq: after, before_seq: 0, limit: FETCH_BATCH };
            let batch = match conn.call(Payload::FetchMessages(req)).await {
                Ok(Payload::MessageBatch(b)) => b,
                Ok(other) => return Err(ClientError::Protocol(format!("expected messages, got {other:?}"))),
                // No longer allowed to read (removed): keep what we have.
                Err(ClientError::Remote { code: ErrorCode::Forbidden | ErrorCode::NotFound, .. }) => break,
                Err(e) => return Err(e),
            };
            let Some(newest) = batch.messages.last().map(|m| m.seq) else { break };
            let fresh = inner.cache().insert_messages(&batch.messages)?;
            for m in &fresh {
                inner.emit(Event::Message(m.into()));
            }
            after = newest;
        }
    }
    inner.cursors_dirty.notify_one();
    Ok(())
}

/// Where the next sync page starts: after the key (version, conversation id)
/// of the last conversation of this answer. A server that pages by version
/// alone answers 0 for the conversation id; the last conversation's id then
/// stands in (such a server ignores it, a keyed one resumes exactly there).
/// An empty answer leaves the key where it was (unless the version moved).
pub(crate) fn next_sync_key(since: (u64, u64), resp: &v1::SyncResponse) -> (u64, u64) {
    let conversation = if resp.conversation_id != 0 {
        resp.conversation_id
    } else {
        match resp.conversations.last() {
            Some(last) if resp.version == last.version || last.version == 0 => last.id,
            Some(_) => 0,
            None if resp.version == since.0 => since.1,
            None => 0,
        }
    };
    let next = (resp.version, conversation);
    // Never move back (a stale or odd answer must not make us start over).
    next.max(since)
}

/// Fetches the notices addressed to me that changed since the stored version.
async fn sync_notices(inner: &Inner, conn: &Connection) -> Result<(), ClientError> {
    loop {
        let since = inner.cache().notice_version()?;
        let req = v1::NoticeSync { since_version: since, limit: 200 };
        let batch = match conn.call(Payload::NoticeSync(req)).await? {
            Payload::NoticeBatch(b) => b,
            other => return Err(ClientError::Protocol(format!("expected notices, got {other:?}"))),
        };
        let stored = {
            let mut cache = inner.cache();
            let stored = cache.apply_notices(&batch.notices)?;
            cache.set_notice_version(batch.version.max(since))?;
            stored
        };
        if !stored.is_empty() {
            inner.notices_dirty.notify_one();
        }
        for n in stored {
            inner.emit(Event::Notice(n));
        }
        if !batch.more || batch.version <= since {
            return Ok(());
        }
    }
}

/// Tells the server which notices reached this device.
async fn notice_report_loop(inner: &Arc<Inner>, conn: &Connection) -> Result<(), ClientError> {
    loop {
        let ids = inner.cache().unreported_notices()?;
        if !ids.is_empty() {
            let req = v1::MarkNotice {
                notice_ids: ids.clone(),
                action: v1::NoticeAction::NoticeDelivered as i32,
                ..Default::default()
            };
            conn.call(Payload::MarkNotice(req)).await?;
            inner.cache().notices_reported(&ids, crate::cache::now_ms())?;
            if ids.len() == 500 {
                continue;
            }
        }
        inner.notices_dirty.notified().await;
    }
}

/// Brings the cached directory up to the server's version, a page at a time.
async fn sync_directory(inner: &Inner, conn: &Connection) -> Result<(), ClientError> {
    let mut changed = false;
    loop {
        let (since, epoch) = inner.cache().directory_version()?;
        let req = v1::DirectorySync { since_version: since, epoch, limit: 1000 };
        let delta = match conn.call(Payload::DirectorySync(req)).await? {
            Payload::DirectoryDelta(d) => d,
            other => {
                return Err(ClientError::Protocol(format!("expected a directory answer, got {other:?}")))
            }
        };
        changed |= inner.cache().apply_directory(&delta)?;
        if !delta.more {
            break;
        }
    }
    if changed {
        inner.emit(Event::DirectoryChanged);
    }
    Ok(())
}

fn send_request(e: &OutboxEntry) -> Payload {
    Payload::SendMessage(v1::SendMessage {
        conversation_id: e.conversation_id,
        client_msg_id: e.client_msg_id.clone(),
        text: e.text.clone(),
        mentions: e.mentions.clone(),
        reply_to_seq: e.reply_to_seq,
        priority: e.priority,
        attachment: e.attachment.as_ref().map(crate::files::Attachment::to_wire),
        // The apps send plain text; Markdown comes from group robots.
        markdown: false,
    })
}

/// Sends the outbox in order, a window at a time, until the connection ends.
async fn outbox_loop(inner: &Arc<Inner>, conn: &Connection) -> Result<(), ClientError> {
    loop {
        let entries = inner.cache().outbox(0, OUTBOX_WINDOW)?;
        if entries.is_empty() {
            inner.outbox_ready.notified().await;
            continue;
        }
        let mut waiting = Vec::with_capacity(entries.len());
        for e in &entries {
            waiting.push(conn.start_numbered(send_request(e)).await?);
        }
        let me = inner.user_id.load(Ordering::Relaxed);
        for (entry, (request, rx)) in entries.iter().zip(waiting) {
            // Earlier entries are answered: if the connection ends before
            // this one's answer arrives, this one is why.
            *inner.sending.lock().unwrap_or_else(|e| e.into_inner()) = Some((entry.id, request));
            match conn.finish(rx).await {
                Ok(Payload::SendAck(ack)) => {
                    let stored = inner.cache().ack(entry, &ack, me)?;
                    inner.emit(Event::Acked {
                        client_msg_id: ack.client_msg_id.clone(),
                        conversation_id: ack.conversation_id,
                        seq: ack.seq,
                    });
                    if let Some(m) = stored {
                        inner.emit(Event::Message((&m).into()));
                    }
                }
                Ok(other) => return Err(ClientError::Protocol(format!("expected an ack, got {other:?}"))),
                Err(
                    e @ ClientError::Remote {
                        code:
                            ErrorCode::Forbidden
                            | ErrorCode::NotFound
                            | ErrorCode::TooLarge
                            | ErrorCode::BadRequest
                            | ErrorCode::UnsafePath
                            | ErrorCode::QuotaExceeded
                            // The id was used before for another message: sending it again cannot help.
                            | ErrorCode::Conflict,
                        ..
                    },
                ) => {
                    let collected = matches!(&e, ClientError::Remote { code: ErrorCode::NotFound, .. })
                        && crate::transfer::reupload(inner, entry)?;
                    if !collected {
                        park(inner, entry, &e)?;
                    }
                }
                // Anything else ends the connection; an INTERNAL on this
                // entry is counted against it when it does (`count_send_failure`).
                Err(e) => return Err(e),
            }
        }
        *inner.sending.lock().unwrap_or_else(|e| e.into_inner()) = None;
        inner.cursors_dirty.notify_one();
    }
}

/// The connection ended with an `INTERNAL` failure while an outbox entry
/// was waiting for its answer (the server answers that, or closes the
/// connection so the later sends keep their order): count it against that
/// entry, and after [`MAX_SEND_ATTEMPTS`] park it so the entries behind it
/// go on. Returns the entry's failures so far, for the reconnect's back-off.
fn count_send_failure(inner: &Inner, error: &ClientError) -> Result<u32, ClientError> {
    let sending = inner.failed_send.lock().unwrap_or_else(|e| e.into_inner()).take();
    let (Some(id), ClientError::Remote { code: ErrorCode::Internal, .. }) = (sending, error) else {
        return Ok(0);
    };
    let Some(attempts) = inner.cache().count_attempt(id)? else { return Ok(0) };
    if attempts < MAX_SEND_ATTEMPTS {
        return Ok(attempts);
    }
    tracing::warn!(error = %error, attempts, "parking an outbox entry the server keeps failing on");
    let entry = inner.cache().outbox_entry(id)?;
    if let Some(entry) = entry {
        park(inner, &entry, error)?;
    }
    Ok(0)
}

/// Parks an outbox entry as failed with its reason, for the person to see (and retry).
fn park(inner: &Inner, entry: &OutboxEntry, e: &ClientError) -> Result<(), ClientError> {
    inner.cache().fail(entry.id, e.code(), &e.to_string())?;
    inner.emit(Event::SendFailed {
        client_msg_id: entry.client_msg_id.clone(),
        code: e.code().into(),
        message: e.to_string(),
    });
    Ok(())
}

/// Reports delivered and read cursors the server has not heard of yet.
async fn cursor_loop(inner: &Arc<Inner>, conn: &Connection) -> Result<(), ClientError> {
    loop {
        let dirty = inner.cache().unreported_cursors()?;
        for (conversation_id, delivered, read) in dirty {
            let req = v1::UpdateCursor { conversation_id, delivered_seq: delivered, read_seq: read };
            match conn.call(Payload::UpdateCursor(req)).await {
                Ok(_) | Err(ClientError::Remote { code: ErrorCode::Forbidden | ErrorCode::NotFound, .. }) => {
                    inner.cache().cursors_reported(conversation_id, delivered, read)?;
                }
                Err(e) => return Err(e),
            }
        }
        inner.cursors_dirty.notified().await;
        // Let a burst settle into one report.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: u64, version: u64) -> v1::ConversationState {
        v1::ConversationState { id, version, ..Default::default() }
    }

    fn answer(states: Vec<v1::ConversationState>, version: u64, conversation_id: u64) -> v1::SyncResponse {
        v1::SyncResponse { conversations: states, version, more: true, conversation_id }
    }

    #[test]
    fn sync_resumes_after_the_last_key_it_stored() {
        // A keyed server: its key is taken as it is.
        assert_eq!(next_sync_key((0, 0), &answer(vec![state(3, 9), state(4, 9)], 9, 4)), (9, 4));
        // A server paging by version alone (0): the last conversation's id stands in.
        assert_eq!(next_sync_key((0, 0), &answer(vec![state(3, 9), state(4, 9)], 9, 0)), (9, 4));
        // Nothing new: the key stays where it was.
        assert_eq!(next_sync_key((9, 4), &answer(vec![], 9, 0)), (9, 4));
        // Never backwards.
        assert_eq!(next_sync_key((9, 4), &answer(vec![], 3, 0)), (9, 4));
    }

    #[test]
    fn periodic_sync_pauses_are_jittered_around_the_interval() {
        let interval = Duration::from_secs(60);
        for _ in 0..100 {
            let p = sync_pause(interval);
            assert!(p >= Duration::from_secs(45) && p <= Duration::from_secs(75), "{p:?}");
        }
    }
}
