//! The transfer engine: uploads and downloads of files, images and folders,
//! chunked, resumable and deduplicated.
//!
//! Every transfer is a row of the cache's `transfers` table and, while it is
//! queued or running in this process, one task. At most [`MAX_RUNNING`]
//! transfers move data at a time; each keeps [`WINDOW`] chunk requests in
//! flight on the shared bulk connection, reading or writing one chunk at a
//! time, so memory stays flat whatever the size.
//!
//! Upload: hash the file(s) in chunks, `PrepareUpload` (the server answers
//! which chunks are still to show, with a challenge), `ProveChunks` (a keyed
//! hash of each chunk's bytes: what the server holds needs no upload),
//! `PutChunk` each chunk not proven, `CommitUpload`, then
//! the message goes to the outbox in the same transaction that marks the
//! transfer's "message" phase, so it is sent exactly once; the transfer is
//! done when the message is acknowledged. A resumed upload starts again with
//! `PrepareUpload` and proves what was sent before, so only what the server
//! lacks is sent again.
//!
//! Download: `GetFile`, check the manifest and the id, then `GetChunk` into a
//! preallocated hidden part file, each chunk checked before it is written;
//! the whole content hash is checked at the end, the file is synced and
//! renamed to a name that was free. A resumed download re-hashes its part
//! file and fetches only the chunks that do not match.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::StreamExt as _;
use hutong_protocol::files::{
    self, check_manifest, manifest_of, CheckedManifest, Hash, MAX_FOLDER_MANIFEST_LEN,
};
use hutong_protocol::v1;
use hutong_protocol::{ErrorCode, Payload};
use prost::Message as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::bulk::{Bulk, Lease};
use crate::cache::{SendOutcome, TransferRecord};
use crate::error::ClientError;
use crate::files::{AttachmentKind, Transfer, TransferDirection, TransferState};
use crate::folder::{self, FolderFile};
use crate::{media, Event, Inner};

/// Chunk requests in flight per transfer.
pub const WINDOW: usize = 4;
/// Transfers moving data at the same time.
pub const MAX_RUNNING: usize = 2;
/// Largest `PrepareUpload` or `CommitUpload` request built, in bytes.
const BATCH_BYTES: usize = 900 * 1024;

/// Chunks proven per `ProveChunks` request.
const PROOF_BATCH: usize = 256;
/// Progress events per transfer at most this often.
const EVENT_EVERY: Duration = Duration::from_millis(125);
/// Progress written to the cache at most this often.
const SAVE_EVERY: Duration = Duration::from_millis(500);

/// The engine's shared state, one per client.
pub(crate) struct Transfers {
    /// Transfers with a task in this process: id → (generation, stop).
    live: Mutex<HashMap<String, (u64, CancellationToken)>>,
    generation: std::sync::atomic::AtomicU64,
    /// One task at a time per transfer: a resumed one waits for the paused one to end.
    runs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    slots: Arc<Semaphore>,
    pub(crate) bulk: Bulk,
}

impl Default for Transfers {
    fn default() -> Self {
        Transfers {
            live: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            runs: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
            bulk: Bulk::default(),
        }
    }
}

impl Transfers {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, CancellationToken)>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_owned()).or_default().clone()
    }

    /// Stops the task of a transfer, if it has one here.
    pub(crate) fn stop(&self, id: &str) {
        if let Some((_, token)) = self.live().remove(id) {
            token.cancel();
        }
    }

    fn is_live(&self, id: &str) -> bool {
        self.live().contains_key(id)
    }
}

/// Starts the task of a queued or running transfer (once).
pub(crate) fn spawn(inner: &Arc<Inner>, id: &str) {
    let transfers = &inner.transfers;
    let (generation, token) = {
        let mut live = transfers.live();
        if live.contains_key(id) {
            return;
        }
        let generation = transfers.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = inner.shutdown.child_token();
        live.insert(id.to_owned(), (generation, token.clone()));
        (generation, token)
    };
    let inner = inner.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        let lock = inner.transfers.run_lock(&id);
        let guard = tokio::select! {
            g = lock.lock() => g,
            _ = token.cancelled() => return,
        };
        drive(&inner, &id, &token).await;
        drop(guard);
        let mut live = inner.transfers.live();
        if live.get(&id).is_some_and(|(g, _)| *g == generation) {
            live.remove(&id);
        }
    });
}

/// A queued file message was refused with NOT_FOUND: its file may have
/// been collected by the server while the message waited (offline longer
/// than the server's grace period). Upload it again from the local copy
/// (once) and send the message after; returns false when there is no
/// upload to make again here (then the refusal stands).
pub(crate) fn reupload(inner: &Arc<Inner>, entry: &crate::cache::OutboxEntry) -> Result<bool, ClientError> {
    let Some(id) = inner.cache().begin_reupload(entry)? else { return Ok(false) };
    tracing::info!(transfer = %id, "the server no longer has a queued message's file; uploading it again");
    // The task waiting for the acknowledgement starts over with the upload.
    inner.transfers.stop(&id);
    spawn(inner, &id);
    Ok(true)
}

/// Resumes what a previous process left queued or running.
pub(crate) fn resume_unfinished(inner: &Arc<Inner>) -> Result<(), ClientError> {
    let ids = {
        let cache = inner.cache();
        cache.reset_wire_bytes()?;
        cache.transfer_ids_in(&[TransferState::Queued, TransferState::Running])?
    };
    for id in ids {
        spawn(inner, &id);
    }
    Ok(())
}

/// Reads a transfer and tells the UI about it.
pub(crate) fn announce(inner: &Inner, id: &str) -> Result<Option<Transfer>, ClientError> {
    let t = inner.cache().transfer_record(id)?.map(|r| r.transfer);
    if let Some(t) = &t {
        inner.emit(Event::Transfer(t.clone()));
    }
    Ok(t)
}

/// Moves a transfer from one of `from` to `to` and announces it; false when
/// it was in none of `from` (someone else moved it first).
pub(crate) fn transition(
    inner: &Inner,
    id: &str,
    from: &[TransferState],
    to: TransferState,
    error: Option<&ClientError>,
) -> bool {
    let code = error.map(|e| (e.code(), e.to_string()));
    let moved = inner
        .cache()
        .set_transfer_state(id, from, to, code.as_ref().map(|(c, s)| (*c, s.as_str())))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot store a transfer's state");
            false
        });
    if moved {
        let _ = announce(inner, id);
    }
    moved
}

/// What an attempt achieved.
enum Step {
    Done,
    /// The data is on the server and the message in the outbox.
    AwaitAck,
}

/// Errors a later attempt may not meet: a lost connection, a server that is
/// restarting or busy, a commit that found a chunk gone (the server's
/// collector took it meanwhile: announcing the files again sends it again).
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Remote { code, .. } => matches!(
            code,
            ErrorCode::ShuttingDown
                | ErrorCode::Conflict
                | ErrorCode::RateLimited
                | ErrorCode::SlowConsumer
                | ErrorCode::IdleTimeout
                | ErrorCode::Internal
                | ErrorCode::NotAuthenticated
                | ErrorCode::Unspecified
        ),
        ClientError::Offline | ClientError::Disconnected | ClientError::Transport(_) => true,
        _ => false,
    }
}

/// A transfer's counters as it runs: events at most every [`EVENT_EVERY`],
/// cache writes at most every [`SAVE_EVERY`].
struct Progress {
    inner: Arc<Inner>,
    t: Transfer,
    last_event: Instant,
    last_save: Instant,
}

impl Progress {
    fn new(inner: &Arc<Inner>, t: Transfer) -> Self {
        Progress { inner: inner.clone(), t, last_event: Instant::now(), last_save: Instant::now() }
    }

    fn set(&mut self, total: u64, done: u64) {
        self.t.total_bytes = total;
        self.t.done_bytes = done.min(total);
        self.tick();
    }

    fn add_done(&mut self, n: u64) {
        self.t.done_bytes = (self.t.done_bytes + n).min(self.t.total_bytes);
        self.tick();
    }

    fn add_wire(&mut self, n: u64) {
        self.t.wire_bytes += n;
    }

    fn tick(&mut self) {
        if self.last_save.elapsed() >= SAVE_EVERY {
            self.save();
        }
        if self.last_event.elapsed() >= EVENT_EVERY {
            self.last_event = Instant::now();
            self.inner.emit(Event::Transfer(self.t.clone()));
        }
    }

    fn save(&mut self) {
        self.last_save = Instant::now();
        let t = &self.t;
        if let Err(e) =
            self.inner.cache().set_transfer_progress(&t.id, t.total_bytes, t.done_bytes, t.wire_bytes)
        {
            tracing::warn!(error = %e, "cannot store a transfer's progress");
        }
    }
}

/// Runs one transfer until it is done, fails, or is stopped (paused,
/// cancelled, shut down).
async fn drive(inner: &Arc<Inner>, id: &str, token: &CancellationToken) {
    let permit = tokio::select! {
        p = inner.transfers.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        _ = token.cancelled() => return,
    };
    if !transition(inner, id, &[TransferState::Queued, TransferState::Running], TransferState::Running, None)
    {
        return;
    }
    let mut permit = Some(permit);
    let mut failures = 0u32;
    loop {
        let record = match inner.cache().transfer_record(id) {
            Ok(Some(r)) if r.transfer.state == TransferState::Running => r,
            _ => return,
        };
        let mut progress = Progress::new(inner, record.transfer.clone());
        let before = record.transfer.done_bytes;
        let outcome = tokio::select! {
            r = attempt(inner, &record, token, &mut progress) => r,
            _ = token.cancelled() => {
                progress.save();
                return;
            }
        };
        progress.save();
        match outcome {
            Ok(Step::Done) => {
                transition(inner, id, &[TransferState::Running], TransferState::Done, None);
                return;
            }
            Ok(Step::AwaitAck) => {
                // Waiting for the acknowledgement moves no data: free the slot.
                drop(permit.take());
                let waited = tokio::select! {
                    r = wait_ack(inner, &record.transfer.client_msg_id) => r,
                    _ = token.cancelled() => return,
                };
                match waited {
                    Ok(seq) => {
                        let _ = inner.cache().set_transfer_seq(id, seq);
                        transition(inner, id, &[TransferState::Running], TransferState::Done, None);
                    }
                    Err(e) => {
                        transition(inner, id, &[TransferState::Running], TransferState::Failed, Some(&e));
                    }
                }
                return;
            }
            Err(e) if transient(&e) => {
                failures = if progress.t.done_bytes > before { 1 } else { failures.saturating_add(1) };
                let delay = crate::session::backoff_delay(&inner.options, failures, &e);
                tracing::info!(transfer = id, error = %e, delay_ms = delay.as_millis() as u64, "transfer interrupted; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = token.cancelled() => return,
                }
                if permit.is_none() {
                    permit = tokio::select! {
                        p = inner.transfers.slots.clone().acquire_owned() => p.ok(),
                        _ = token.cancelled() => return,
                    };
                }
            }
            Err(e) => {
                tracing::warn!(transfer = id, error = %e, code = e.code(), "transfer failed");
                // A message that waited for this upload to be made again
                // fails with it (first, so whoever sees the transfer fail sees it too).
                let client_msg_id = &record.transfer.client_msg_id;
                if inner.cache().fail_uploading(client_msg_id, e.code(), &e.to_string()).unwrap_or(false) {
                    inner.emit(Event::SendFailed {
                        client_msg_id: client_msg_id.clone(),
                        code: e.code().into(),
                        message: e.to_string(),
                    });
                }
                transition(inner, id, &[TransferState::Running], TransferState::Failed, Some(&e));
                return;
            }
        }
    }
}

async fn attempt(
    inner: &Arc<Inner>,
    record: &TransferRecord,
    token: &CancellationToken,
    progress: &mut Progress,
) -> Result<Step, ClientError> {
    match record.transfer.direction {
        TransferDirection::Upload => upload(inner, record, token, progress).await,
        TransferDirection::Download => download(inner, record, progress).await,
    }
}

/// Waits until my message with this client id is acknowledged (its seq) or refused.
async fn wait_ack(inner: &Inner, client_msg_id: &str) -> Result<u64, ClientError> {
    let mut events = inner.events.subscribe();
    loop {
        match inner.cache().my_message_outcome(client_msg_id)? {
            SendOutcome::Sent { seq, .. } => return Ok(seq),
            SendOutcome::Failed { code, message } => {
                return Err(match ErrorCode::from_str_name(&code) {
                    Some(code) => ClientError::Remote { code, message, retry_after_ms: 0 },
                    None => ClientError::local("SEND_FAILED", message),
                })
            }
            SendOutcome::Waiting => {}
        }
        loop {
            match events.recv().await {
                Ok(Event::Acked { client_msg_id: c, .. } | Event::SendFailed { client_msg_id: c, .. })
                    if c == client_msg_id =>
                {
                    break
                }
                Ok(Event::Synced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Err(ClientError::Closed),
            }
        }
    }
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClientError::local("IO", format!("file task failed: {e}")))?
}

// ---------------------------------------------------------------- upload

/// Where the data of a chunk to send is.
#[derive(Clone)]
enum ChunkSource {
    File { path: PathBuf, offset: u64, len: usize },
    Memory { bytes: Arc<Vec<u8>>, offset: usize, len: usize },
}

/// Everything hashed, ready to offer the server.
struct UploadPlan {
    /// Unique files (for a folder: its files and the manifest file).
    files: Vec<CheckedManifest>,
    sources: HashMap<Hash, ChunkSource>,
    /// Bytes of the item each chunk hash stands for (every place it occurs).
    weight: HashMap<Hash, u64>,
    /// Chunk hashes in the order they are sent.
    order: Vec<Hash>,
    total: u64,
    attachment: v1::Attachment,
}

impl UploadPlan {
    fn add_file(&mut self, m: CheckedManifest, source: impl Fn(usize) -> ChunkSource, counted: bool) {
        for (i, h) in m.chunks.iter().enumerate() {
            if counted {
                *self.weight.entry(*h).or_default() += m.chunk_len(i);
            }
            if !self.sources.contains_key(h) {
                self.sources.insert(*h, source(i));
                self.order.push(*h);
            }
        }
        if !self.files.iter().any(|f| f.id == m.id) {
            self.files.push(m);
        }
    }
}

fn file_source(path: &Path, m: &CheckedManifest) -> impl Fn(usize) -> ChunkSource {
    let path = path.to_owned();
    let chunk_size = u64::from(m.chunk_size);
    let lens: Vec<u64> = (0..m.chunks.len()).map(|i| m.chunk_len(i)).collect();
    move |i| ChunkSource::File { path: path.clone(), offset: i as u64 * chunk_size, len: lens[i] as usize }
}

fn stopped() -> ClientError {
    ClientError::local("STOPPED", "the transfer was stopped")
}

/// The manifest of a file to send: remembered from an earlier hash while
/// the file is unchanged, else hashed now (blocking) and remembered.
fn hash_remembered(
    inner: &Inner,
    path: &Path,
    stop: &dyn Fn() -> bool,
) -> Result<CheckedManifest, ClientError> {
    let stamp = std::fs::metadata(path).map(|m| folder::stamp(&m)).map_err(|e| ClientError::io(path, &e))?;
    if let Some(m) = inner.cache().file_hash(path, &stamp)? {
        return Ok(m);
    }
    let m = folder::hash_file(path, stop)?;
    // Remembered only if the file did not change while it was read.
    let after = std::fs::metadata(path).map(|m| folder::stamp(&m)).map_err(|e| ClientError::io(path, &e))?;
    if after == stamp {
        inner.cache().save_file_hash(path, &stamp, &m)?;
    }
    Ok(m)
}

/// Hashes what is to be sent (blocking), with `hash` for each file.
fn plan_upload(
    path: &Path,
    kind: AttachmentKind,
    name: &str,
    stop: &(dyn Fn() -> bool + Sync),
    hash: &dyn Fn(&Path) -> Result<CheckedManifest, ClientError>,
) -> Result<UploadPlan, ClientError> {
    let mut plan = UploadPlan {
        files: Vec::new(),
        sources: HashMap::new(),
        weight: HashMap::new(),
        order: Vec::new(),
        total: 0,
        attachment: v1::Attachment::default(),
    };
    let interrupted = |e: ClientError| if stop() { stopped() } else { e };
    if kind == AttachmentKind::Folder {
        let walked = folder::walk(path)?;
        if walked.skipped > 0 {
            tracing::warn!(skipped = walked.skipped, folder = %path.display(), "links and special files were left out");
        }
        folder::check_walked(&walked)?;
        let mut ids = Vec::with_capacity(walked.files.len());
        for f in &walked.files {
            let m = hash(&f.path).map_err(interrupted)?;
            ids.push((m.id, m.size));
            plan.total += m.size;
            let source = file_source(&f.path, &m);
            plan.add_file(m, source, true);
        }
        let manifest = folder::folder_manifest(&walked, &ids);
        files::check_folder(&manifest).map_err(folder::file_error)?;
        let bytes = manifest.encode_to_vec();
        if bytes.len() as u64 > MAX_FOLDER_MANIFEST_LEN {
            return Err(ClientError::local("TOO_LARGE", "the folder holds too many entries to send at once"));
        }
        let m = manifest_of(&bytes);
        let bytes = Arc::new(bytes);
        let (chunk_size, file_id) = (m.chunk_size as usize, m.id);
        let lens: Vec<usize> = (0..m.chunks.len()).map(|i| m.chunk_len(i) as usize).collect();
        plan.add_file(
            m,
            |i| ChunkSource::Memory { bytes: bytes.clone(), offset: i * chunk_size, len: lens[i] },
            false,
        );
        plan.attachment = v1::Attachment {
            kind: AttachmentKind::Folder.to_wire(),
            file_id: file_id.to_vec(),
            name: walked.name.clone(),
            size: plan.total,
            mime: "inode/directory".into(),
            file_count: walked.files.len() as u32,
            ..Default::default()
        };
        return Ok(plan);
    }
    let meta = std::fs::metadata(path).map_err(|e| ClientError::io(path, &e))?;
    if !meta.is_file() {
        return Err(ClientError::local("NOT_A_FILE", format!("{} is not a regular file", path.display())));
    }
    let mut attachment = v1::Attachment {
        kind: AttachmentKind::File.to_wire(),
        name: name.to_owned(),
        mime: media::mime_for_name(name).into(),
        ..Default::default()
    };
    if let Some((format, width, height)) = media::sniff_image(path) {
        if let Some(thumbnail) = media::thumbnail(path) {
            attachment.kind = AttachmentKind::Image.to_wire();
            attachment.mime = media::image_mime(format).into();
            attachment.width = width;
            attachment.height = height;
            attachment.thumbnail = thumbnail;
        }
    }
    let m = hash(path).map_err(interrupted)?;
    attachment.file_id = m.id.to_vec();
    attachment.size = m.size;
    plan.total = m.size;
    let source = file_source(path, &m);
    plan.add_file(m, source, true);
    plan.attachment = attachment;
    Ok(plan)
}

/// Reads one chunk to send and checks it is still what was hashed.
fn read_chunk(source: &ChunkSource, hash: &Hash) -> Result<Vec<u8>, ClientError> {
    let data = match source {
        ChunkSource::File { path, offset, len } => folder::read_at(path, *offset, *len).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ClientError::local(
                    "FILE_CHANGED",
                    format!("{} changed while it was being sent", path.display()),
                )
            } else {
                ClientError::io(path, &e)
            }
        })?,
        ChunkSource::Memory { bytes, offset, len } => bytes[*offset..*offset + *len].to_vec(),
    };
    if blake3::hash(&data).as_bytes() != hash {
        let what = match source {
            ChunkSource::File { path, .. } => path.display().to_string(),
            ChunkSource::Memory { .. } => "the folder's manifest".into(),
        };
        return Err(ClientError::local("FILE_CHANGED", format!("{what} changed while it was being sent")));
    }
    Ok(data)
}

/// Splits items into requests of at most [`BATCH_BYTES`] (by `size`).
fn batches<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(&item) + 8;
        if !current.is_empty() && (bytes + n > BATCH_BYTES || current.len() >= files::MAX_FILES_PER_UPLOAD) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += n;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

async fn upload(
    inner: &Arc<Inner>,
    record: &TransferRecord,
    token: &CancellationToken,
    progress: &mut Progress,
) -> Result<Step, ClientError> {
    let t = &record.transfer;
    if matches!(record.phase.as_str(), "message" | "resent") {
        return Ok(Step::AwaitAck);
    }
    let again = record.phase == "reupload";
    let (path, kind, name) = (t.local_path.clone(), t.kind, t.name.clone());
    let stop = token.clone();
    let cache_owner = inner.clone();
    let plan = blocking(move || {
        let stop = move || stop.is_cancelled();
        let hash = |p: &Path| hash_remembered(&cache_owner, p, &stop);
        plan_upload(&path, kind, &name, &stop, &hash)
    })
    .await
    .map_err(|e| {
        if again && !transient(&e) {
            ClientError::local(
                "FILE_GONE",
                format!("{} could not be read to send it again: {e}", t.local_path.display()),
            )
        } else {
            e
        }
    })?;
    if again {
        // The queued message names the file by its content: a changed copy is another file.
        let queued = inner.cache().outbox_attachment(&t.client_msg_id)?;
        if queued.is_some_and(|a| a.file_id != plan.attachment.file_id) {
            return Err(ClientError::local(
                "FILE_CHANGED",
                format!(
                    "{} changed after its message was queued, and the server no longer has the queued version",
                    t.local_path.display()
                ),
            ));
        }
    }
    let actual_kind = AttachmentKind::from_wire(plan.attachment.kind);
    if actual_kind != t.kind {
        inner.cache().set_transfer_kind(&t.id, actual_kind)?;
        progress.t.kind = actual_kind;
    }
    let conn = inner.transfers.bulk.get(inner).await?;

    // Offer everything (the server checks limits and quota); it answers which
    // chunks are still to show, with a challenge. Proving possession of a
    // chunk costs a local read and 64 bytes on the wire; what the server
    // cannot check (it lacks the content) is sent.
    let mut missing = HashSet::new();
    let mut to_prove: Vec<([u8; files::PROOF_LEN], Vec<Hash>)> = Vec::new();
    let manifests: Vec<v1::FileManifest> = plan.files.iter().map(CheckedManifest::to_wire).collect();
    for batch in batches(manifests, |m| m.encoded_len()) {
        match conn.call(Payload::PrepareUpload(v1::PrepareUpload { files: batch })).await? {
            Payload::UploadPlan(p) => {
                let challenge: [u8; files::PROOF_LEN] = p
                    .challenge
                    .as_slice()
                    .try_into()
                    .map_err(|_| ClientError::Protocol("an upload plan without a challenge".into()))?;
                let mut these = Vec::new();
                for h in p.missing {
                    let h = files::hash_from(&h).map_err(|e| ClientError::Protocol(e.to_string()))?;
                    if missing.insert(h) {
                        these.push(h);
                    }
                }
                to_prove.push((challenge, these));
            }
            other => return Err(ClientError::Protocol(format!("expected an upload plan, got {other:?}"))),
        }
    }
    let outstanding: u64 = missing.iter().map(|h| plan.weight.get(h).copied().unwrap_or(0)).sum();
    progress.set(plan.total, plan.total.saturating_sub(outstanding));
    for (challenge, hashes) in to_prove {
        // A few hundred chunks a request: the server reads each to check it.
        for batch in hashes.chunks(PROOF_BATCH) {
            let sources: Vec<(Hash, ChunkSource)> =
                batch.iter().filter_map(|h| plan.sources.get(h).map(|s| (*h, s.clone()))).collect();
            let proofs = blocking(move || {
                sources
                    .iter()
                    .map(|(h, source)| {
                        let data = read_chunk(source, h)?;
                        Ok(v1::ChunkProof {
                            hash: h.to_vec(),
                            proof: files::chunk_proof(&challenge, &data).to_vec(),
                        })
                    })
                    .collect::<Result<Vec<_>, ClientError>>()
            })
            .await?;
            let request = v1::ProveChunks { challenge: challenge.to_vec(), proofs };
            match conn.call(Payload::ProveChunks(request)).await? {
                Payload::ChunksProven(p) => {
                    for h in p.hashes {
                        let h = files::hash_from(&h).map_err(|e| ClientError::Protocol(e.to_string()))?;
                        if missing.remove(&h) {
                            progress.add_done(plan.weight.get(&h).copied().unwrap_or(0));
                        }
                    }
                }
                other => return Err(ClientError::Protocol(format!("expected proven chunks, got {other:?}"))),
            }
        }
    }
    let queue: VecDeque<Hash> = plan.order.iter().filter(|h| missing.contains(*h)).copied().collect();
    put_chunks(&conn, &plan, queue, progress).await?;

    let ids: Vec<Vec<u8>> = plan.files.iter().map(|f| f.id.to_vec()).collect();
    for batch in batches(ids, Vec::len) {
        match conn.call(Payload::CommitUpload(v1::CommitUpload { file_ids: batch })).await? {
            Payload::UploadCommitted(_) => {}
            other => return Err(ClientError::Protocol(format!("expected a commit, got {other:?}"))),
        }
    }
    drop(conn);
    progress.set(plan.total, plan.total);
    inner.cache().enqueue_file_message(&t.id, &t.client_msg_id, t.conversation_id, &plan.attachment)?;
    inner.outbox_ready.notify_one();
    let _ = announce(inner, &t.id);
    Ok(Step::AwaitAck)
}

/// Sends the missing chunks with [`WINDOW`] in flight, reading each from
/// disk just before it goes out.
async fn put_chunks(
    conn: &Lease,
    plan: &UploadPlan,
    mut queue: VecDeque<Hash>,
    progress: &mut Progress,
) -> Result<(), ClientError> {
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < WINDOW {
            let Some(hash) = queue.pop_front() else { break };
            let source = plan.sources[&hash].clone();
            let data = blocking(move || read_chunk(&source, &hash)).await?;
            let len = data.len() as u64;
            let rx = conn
                .start(Payload::PutChunk(v1::PutChunk { hash: hash.to_vec(), data: Bytes::from(data) }))
                .await?;
            progress.add_wire(len);
            in_flight.push(async move { (hash, conn.finish(rx).await) });
        }
        let Some((hash, answer)) = in_flight.next().await else { return Ok(()) };
        match answer? {
            Payload::ChunkStored(_) => progress.add_done(plan.weight.get(&hash).copied().unwrap_or(0)),
            other => return Err(ClientError::Protocol(format!("expected a stored chunk, got {other:?}"))),
        }
    }
}

// ---------------------------------------------------------------- download

/// One file to fetch into its part file, then place (and copy to `copies`).
struct Target {
    manifest: CheckedManifest,
    part: PathBuf,
    final_path: PathBuf,
    /// Chunk indexes still to fetch.
    needed: Vec<u32>,
    /// Folder entries with the same content, copied once this one is done.
    copies: Vec<FolderFile>,
    /// A single-file download may move to another free name at the end.
    rename_if_taken: bool,
    /// The whole-content hash taken as chunks arrive, when every chunk is
    /// fetched in this run (so the finished file need not be read again);
    /// shared by the jobs that write the chunks.
    whole: Option<Arc<Mutex<InOrderHash>>>,
}

/// Hashes a file's content in order from chunks that arrive out of order
/// (at most the window's worth are held back).
struct InOrderHash {
    hasher: blake3::Hasher,
    next: u32,
    held: std::collections::BTreeMap<u32, Bytes>,
}

impl InOrderHash {
    /// Only for a download that fetches every chunk, first to last.
    fn for_target(needed: &[u32], chunks: usize) -> Option<Arc<Mutex<InOrderHash>>> {
        let all = needed.len() == chunks && needed.iter().enumerate().all(|(i, c)| *c as usize == i);
        all.then(|| {
            Arc::new(Mutex::new(InOrderHash {
                hasher: blake3::Hasher::new(),
                next: 0,
                held: Default::default(),
            }))
        })
    }

    fn add(&mut self, index: u32, data: Bytes) {
        self.held.insert(index, data);
        while let Some(data) = self.held.remove(&self.next) {
            self.hasher.update(&data);
            self.next += 1;
        }
    }

    /// True when every chunk went in and the content hash matches.
    fn matches(&self, m: &CheckedManifest) -> bool {
        self.next as usize == m.chunks.len() && self.hasher.finalize().as_bytes() == &m.content_hash
    }
}

async fn get_manifest(conn: &Lease, id: &Hash) -> Result<CheckedManifest, ClientError> {
    match conn.call(Payload::GetFile(v1::GetFile { id: id.to_vec() })).await? {
        Payload::FileManifest(m) => {
            let checked = check_manifest(&m)
                .map_err(|e| ClientError::local("CORRUPT", format!("the server sent a bad manifest: {e}")))?;
            if &checked.id != id {
                return Err(ClientError::local("CORRUPT", "the server sent the manifest of another file"));
            }
            Ok(checked)
        }
        other => Err(ClientError::Protocol(format!("expected a file manifest, got {other:?}"))),
    }
}

/// Checks one received chunk.
fn check_chunk(m: &CheckedManifest, index: u32, answer: Payload) -> Result<Bytes, ClientError> {
    let data = chunk_payload(m, index, answer)?;
    check_chunk_hash(index, m.chunks[index as usize], m.chunk_len(index as usize), &data)?;
    Ok(data)
}

/// The data of the answer to `GetChunk` for chunk `index` (not yet checked
/// against its hash).
fn chunk_payload(m: &CheckedManifest, index: u32, answer: Payload) -> Result<Bytes, ClientError> {
    match answer {
        Payload::ChunkData(c) if c.index == index && c.file_id[..] == m.id[..] => Ok(c.data),
        other => Err(ClientError::Protocol(format!("expected chunk {index}, got {other:?}"))),
    }
}

fn check_chunk_hash(index: u32, expected: Hash, expected_len: u64, data: &[u8]) -> Result<(), ClientError> {
    if data.len() as u64 != expected_len || blake3::hash(data).as_bytes() != &expected {
        return Err(ClientError::local("CORRUPT", format!("chunk {index} of a file arrived damaged")));
    }
    Ok(())
}

/// A small file (a folder's manifest) fetched into memory.
async fn fetch_into_memory(
    conn: &Lease,
    m: &CheckedManifest,
    progress: &mut Progress,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::with_capacity(m.size as usize);
    let mut in_flight = FuturesOrdered::new();
    let mut next = 0u32;
    loop {
        while in_flight.len() < WINDOW && (next as usize) < m.chunks.len() {
            let rx =
                conn.start(Payload::GetChunk(v1::GetChunk { file_id: m.id.to_vec(), index: next })).await?;
            let index = next;
            in_flight.push_back(async move { (index, conn.finish(rx).await) });
            next += 1;
        }
        let Some((index, answer)) = in_flight.next().await else { break };
        let data = check_chunk(m, index, answer?)?;
        progress.add_wire(data.len() as u64);
        out.extend_from_slice(&data);
    }
    if blake3::hash(&out).as_bytes() != &m.content_hash {
        return Err(ClientError::local("CORRUPT", "the folder's manifest arrived damaged"));
    }
    Ok(out)
}

async fn download(
    inner: &Arc<Inner>,
    record: &TransferRecord,
    progress: &mut Progress,
) -> Result<Step, ClientError> {
    let t = &record.transfer;
    let attachment = record
        .attachment
        .clone()
        .ok_or_else(|| ClientError::local("CORRUPT", "the transfer lost its message's attachment"))?;
    let file_id = files::hash_from(&attachment.file_id).map_err(folder::file_error)?;
    let conn = inner.transfers.bulk.get(inner).await?;
    let targets = if t.kind == AttachmentKind::Folder {
        folder_targets(inner, record, &conn, &file_id, progress).await?
    } else {
        let manifest = get_manifest(&conn, &file_id).await?;
        let final_path = t.local_path.clone();
        let part = folder::part_path(&final_path);
        let m = manifest.clone();
        let p = part.clone();
        let good = blocking(move || folder::open_part(&p, &m)).await?;
        let done: u64 =
            good.iter().enumerate().filter(|(_, g)| **g).map(|(i, _)| manifest.chunk_len(i)).sum();
        progress.set(manifest.size, done);
        let needed: Vec<u32> = good.iter().enumerate().filter(|(_, g)| !**g).map(|(i, _)| i as u32).collect();
        let whole = InOrderHash::for_target(&needed, manifest.chunks.len());
        vec![Target { manifest, part, final_path, needed, copies: Vec::new(), rename_if_taken: true, whole }]
    };
    fetch_targets(inner, &conn, &targets, progress).await?;
    Ok(Step::Done)
}

/// Fetches and checks a folder's manifest, creates its directories, and
/// lists the files to fetch (each distinct content once).
async fn folder_targets(
    inner: &Arc<Inner>,
    record: &TransferRecord,
    conn: &Lease,
    manifest_id: &Hash,
    progress: &mut Progress,
) -> Result<Vec<Target>, ClientError> {
    let t = &record.transfer;
    let m = get_manifest(conn, manifest_id).await?;
    if m.size > MAX_FOLDER_MANIFEST_LEN {
        return Err(ClientError::local("TOO_LARGE", "the folder's manifest is larger than allowed"));
    }
    let bytes = fetch_into_memory(conn, &m, progress).await?;
    let (manifest, total) = folder::decode_folder(&bytes)?;
    let resuming = record.phase == "root";
    let mut root = t.local_path.clone();
    if !resuming && std::fs::symlink_metadata(&root).is_ok() {
        // Someone took the name since `fetch`: take the next free one.
        let dir = root.parent().map(Path::to_owned).unwrap_or_default();
        let taken = taken_by_downloads(inner, &t.id)?;
        root = folder::free_name(&dir, &t.name, &|p| taken.contains(p));
        inner.cache().set_transfer_path(&t.id, &root)?;
        progress.t.local_path = root.clone();
    }
    let r = root.clone();
    let files = blocking(move || folder::materialise(&r, &manifest, resuming)).await?;
    if !resuming {
        inner.cache().set_transfer_phase(&t.id, "root")?;
    }

    // Manifests of the distinct contents.
    let mut groups: Vec<(Hash, Vec<FolderFile>)> = Vec::new();
    let mut index: HashMap<Hash, usize> = HashMap::new();
    for f in files {
        match index.get(&f.file_id) {
            Some(&i) => groups[i].1.push(f),
            None => {
                index.insert(f.file_id, groups.len());
                groups.push((f.file_id, vec![f]));
            }
        }
    }
    let mut manifests: Vec<CheckedManifest> = Vec::with_capacity(groups.len());
    let mut lookups = FuturesOrdered::new();
    let mut ids = groups.iter().map(|(id, _)| *id);
    loop {
        while lookups.len() < 16 {
            let Some(id) = ids.next() else { break };
            lookups.push_back(async move { get_manifest(conn, &id).await });
        }
        let Some(m) = lookups.next().await else { break };
        manifests.push(m?);
    }
    for ((_, fs), m) in groups.iter().zip(&manifests) {
        if fs.iter().any(|f| f.size != m.size) {
            return Err(ClientError::local(
                "CORRUPT",
                format!("{} does not have the size its folder says", fs[0].rel),
            ));
        }
    }
    // Part files: what each already holds (a resumed download).
    let prepared = blocking(move || {
        let mut out = Vec::new();
        let mut done = 0u64;
        for ((_, mut fs), m) in groups.into_iter().zip(manifests) {
            // Copies that are already in place are finished.
            fs.retain(|f| {
                let finished = folder::file_matches(&f.final_path, &m);
                if finished {
                    done += m.size;
                }
                !finished
            });
            if fs.is_empty() {
                continue;
            }
            let first = fs.remove(0);
            if std::fs::symlink_metadata(&first.final_path).is_ok() {
                // Ours, from an earlier attempt, but not right: fetch it again.
                std::fs::remove_file(&first.final_path)
                    .map_err(|e| ClientError::io(&first.final_path, &e))?;
            }
            let good = folder::open_part(&first.part_path, &m)?;
            done += good.iter().enumerate().filter(|(_, g)| **g).map(|(i, _)| m.chunk_len(i)).sum::<u64>();
            let needed: Vec<u32> =
                good.iter().enumerate().filter(|(_, g)| !**g).map(|(i, _)| i as u32).collect();
            let whole = InOrderHash::for_target(&needed, m.chunks.len());
            out.push(Target {
                manifest: m,
                part: first.part_path,
                final_path: first.final_path,
                needed,
                copies: fs,
                rename_if_taken: false,
                whole,
            });
        }
        Ok((out, done))
    })
    .await?;
    let (targets, done) = prepared;
    progress.set(total, done);
    Ok(targets)
}

/// Paths other unfinished downloads are writing to.
fn taken_by_downloads(inner: &Inner, except: &str) -> Result<HashSet<PathBuf>, ClientError> {
    Ok(inner
        .cache()
        .transfers()?
        .into_iter()
        .filter(|t| t.direction == TransferDirection::Download && !t.state.is_final() && t.id != except)
        .map(|t| t.local_path)
        .collect())
}

/// Fetches every needed chunk of every target with [`WINDOW`] in flight,
/// writing each checked chunk at its place; each target is finished
/// (verified, synced, renamed, copied) as soon as its last chunk is in.
async fn fetch_targets(
    inner: &Arc<Inner>,
    conn: &Lease,
    targets: &[Target],
    progress: &mut Progress,
) -> Result<(), ClientError> {
    let mut remaining: Vec<usize> = targets.iter().map(|t| t.needed.len()).collect();
    let mut queue: VecDeque<(usize, u32)> =
        targets.iter().enumerate().flat_map(|(ti, t)| t.needed.iter().map(move |&c| (ti, c))).collect();
    for ti in 0..targets.len() {
        if remaining[ti] == 0 {
            finish_target(inner, &targets[ti], progress).await?;
        }
    }
    // Received chunks are checked and written on the blocking pool, several
    // at once (their places in the file differ).
    let mut in_flight = FuturesUnordered::new();
    let mut writing = FuturesUnordered::new();
    loop {
        while in_flight.len() < WINDOW {
            let Some((ti, index)) = queue.pop_front() else { break };
            let file_id = targets[ti].manifest.id.to_vec();
            let rx = conn.start(Payload::GetChunk(v1::GetChunk { file_id, index })).await?;
            in_flight.push(async move { (ti, index, conn.finish(rx).await) });
        }
        if in_flight.is_empty() && writing.is_empty() {
            return Ok(());
        }
        tokio::select! {
            Some((ti, index, answer)) = in_flight.next(), if writing.len() < WINDOW => {
                let target = &targets[ti];
                let data = chunk_payload(&target.manifest, index, answer?)?;
                progress.add_wire(data.len() as u64);
                let i = index as usize;
                let (expected, expected_len) = (target.manifest.chunks[i], target.manifest.chunk_len(i));
                let offset = u64::from(index) * u64::from(target.manifest.chunk_size);
                let (part, hasher) = (target.part.clone(), target.whole.clone());
                writing.push(blocking(move || {
                    check_chunk_hash(index, expected, expected_len, &data)?;
                    let len = data.len() as u64;
                    folder::write_chunk(&part, offset, &data)?;
                    if let Some(h) = hasher {
                        h.lock().unwrap_or_else(|e| e.into_inner()).add(index, data);
                    }
                    Ok((ti, len))
                }));
            }
            Some(written) = writing.next() => {
                let (ti, len) = written?;
                progress.add_done(len);
                remaining[ti] -= 1;
                if remaining[ti] == 0 {
                    finish_target(inner, &targets[ti], progress).await?;
                }
            }
        }
    }
}

/// Verifies a complete part file, moves it to its final name (a free one
/// for a single file), and makes the copies of the same content.
async fn finish_target(
    inner: &Arc<Inner>,
    target: &Target,
    progress: &mut Progress,
) -> Result<(), ClientError> {
    let (part, m) = (target.part.clone(), target.manifest.clone());
    let hashed =
        target.whole.as_ref().is_some_and(|w| w.lock().unwrap_or_else(|e| e.into_inner()).matches(&m));
    let ok = blocking(move || folder::verify_part(&part, &m, hashed)).await?;
    if !ok {
        let _ = std::fs::remove_file(&target.part);
        return Err(ClientError::local("CORRUPT", "the file on disk does not match what was received"));
    }
    let (part, mut final_path) = (target.part.clone(), target.final_path.clone());
    loop {
        let (p, f) = (part.clone(), final_path.clone());
        if blocking(move || folder::place(&p, &f)).await? {
            break;
        }
        if !target.rename_if_taken {
            return Err(folder::unsafe_path(format!(
                "{} appeared while it was being received",
                final_path.display()
            )));
        }
        let dir = final_path.parent().map(Path::to_owned).unwrap_or_default();
        let taken = taken_by_downloads(inner, &progress.t.id)?;
        let name = progress.t.name.clone();
        final_path = folder::free_name(&dir, &name, &|p| taken.contains(p));
        inner.cache().set_transfer_path(&progress.t.id, &final_path)?;
        progress.t.local_path = final_path.clone();
    }
    for copy in &target.copies {
        let (from, to, part) = (final_path.clone(), copy.final_path.clone(), copy.part_path.clone());
        blocking(move || {
            let _ = std::fs::remove_file(&part);
            std::fs::copy(&from, &part).map_err(|e| ClientError::io(&part, &e))?;
            std::fs::File::open(&part).and_then(|f| f.sync_all()).map_err(|e| ClientError::io(&part, &e))?;
            if !folder::place(&part, &to)? {
                return Err(folder::unsafe_path(format!(
                    "{} appeared while it was being received",
                    to.display()
                )));
            }
            Ok(())
        })
        .await?;
        progress.add_done(target.manifest.size);
    }
    Ok(())
}

/// Removes what a cancelled download left: its part file(s).
pub(crate) async fn clean_up_cancelled(inner: Arc<Inner>, id: String) {
    // Wait for the transfer's task to end first.
    let lock = inner.transfers.run_lock(&id);
    let _guard = lock.lock().await;
    let Ok(Some(record)) = inner.cache().transfer_record(&id) else { return };
    let t = record.transfer;
    if t.direction != TransferDirection::Download || t.state != TransferState::Cancelled {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        if t.kind == AttachmentKind::Folder {
            if record.phase == "root" {
                folder::remove_parts(&t.local_path);
            }
        } else {
            let _ = std::fs::remove_file(folder::part_path(&t.local_path));
        }
    })
    .await;
}

// ---------------------------------------------------------------- starting

pub(crate) fn new_transfer(
    direction: TransferDirection,
    conversation_id: u64,
    seq: u64,
    kind: AttachmentKind,
    name: String,
    local_path: PathBuf,
    total_bytes: u64,
) -> Transfer {
    Transfer {
        id: uuid::Uuid::now_v7().to_string(),
        direction,
        state: TransferState::Queued,
        conversation_id,
        seq,
        client_msg_id: if direction == TransferDirection::Upload {
            uuid::Uuid::now_v7().to_string()
        } else {
            String::new()
        },
        kind,
        name,
        local_path,
        total_bytes,
        done_bytes: 0,
        wire_bytes: 0,
        error: None,
        error_code: None,
        created_at_ms: crate::cache::now_ms(),
    }
}

/// Stores a new transfer, announces it and starts it.
pub(crate) fn start(
    inner: &Arc<Inner>,
    transfer: Transfer,
    attachment: Option<&v1::Attachment>,
) -> Result<Transfer, ClientError> {
    inner.cache().insert_transfer(&transfer, attachment)?;
    inner.emit(Event::Transfer(transfer.clone()));
    spawn(inner, &transfer.id);
    Ok(transfer)
}

/// A free destination for a download into `dir`.
pub(crate) fn destination(inner: &Inner, dir: &Path, name: &str) -> Result<PathBuf, ClientError> {
    let taken = taken_by_downloads(inner, "")?;
    Ok(folder::free_name(dir, name, &|p| taken.contains(p)))
}

pub(crate) fn pause(inner: &Arc<Inner>, id: &str) -> Result<(), ClientError> {
    let from = [TransferState::Queued, TransferState::Running];
    if !transition(inner, id, &from, TransferState::Paused, None) {
        return match inner.cache().transfer_record(id)? {
            None => Err(unknown(id)),
            Some(r) if r.transfer.state == TransferState::Paused => Ok(()),
            Some(r) => Err(conflict(format!("the transfer is {}", r.transfer.state.as_str()))),
        };
    }
    inner.transfers.stop(id);
    Ok(())
}

pub(crate) fn resume(inner: &Arc<Inner>, id: &str) -> Result<(), ClientError> {
    let record = inner.cache().transfer_record(id)?.ok_or_else(|| unknown(id))?;
    match record.transfer.state {
        TransferState::Queued | TransferState::Running => {
            if !inner.transfers.is_live(id) {
                spawn(inner, id);
            }
            Ok(())
        }
        TransferState::Paused | TransferState::Failed => {
            if record.transfer.direction == TransferDirection::Upload && record.phase == "message" {
                // The file is up; it was the message that was refused: send it again.
                inner.cache().retry(&record.transfer.client_msg_id)?;
                inner.outbox_ready.notify_one();
            }
            if transition(
                inner,
                id,
                &[TransferState::Paused, TransferState::Failed],
                TransferState::Queued,
                None,
            ) {
                spawn(inner, id);
            }
            Ok(())
        }
        s => Err(conflict(format!("the transfer is {}", s.as_str()))),
    }
}

pub(crate) fn cancel(inner: &Arc<Inner>, id: &str) -> Result<(), ClientError> {
    let record = inner.cache().transfer_record(id)?.ok_or_else(|| unknown(id))?;
    if record.transfer.direction == TransferDirection::Upload && record.phase == "message" {
        return Err(conflict("the file is uploaded and its message is on its way".into()));
    }
    let from = [TransferState::Queued, TransferState::Running, TransferState::Paused, TransferState::Failed];
    if !transition(inner, id, &from, TransferState::Cancelled, None) {
        return match inner.cache().transfer_record(id)?.map(|r| r.transfer.state) {
            Some(TransferState::Cancelled) => Ok(()),
            Some(s) => Err(conflict(format!("the transfer is {}", s.as_str()))),
            None => Err(unknown(id)),
        };
    }
    inner.transfers.stop(id);
    tokio::spawn(clean_up_cancelled(inner.clone(), id.to_owned()));
    Ok(())
}

fn unknown(id: &str) -> ClientError {
    ClientError::Remote { code: ErrorCode::NotFound, message: format!("no transfer {id}"), retry_after_ms: 0 }
}

fn conflict(message: String) -> ClientError {
    ClientError::Remote { code: ErrorCode::Conflict, message, retry_after_ms: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_under_the_frame_budget() {
        let items: Vec<usize> = vec![400 * 1024, 400 * 1024, 400 * 1024, 10, 10];
        let b = batches(items, |n| *n);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].len(), 2);
        assert_eq!(b[1], vec![400 * 1024, 10, 10]);
        assert!(batches(Vec::<usize>::new(), |n| *n).is_empty());
        // One oversized item still goes out (alone).
        assert_eq!(batches(vec![2_000_000usize, 1], |n| *n).len(), 2);
    }

    #[test]
    fn a_plan_counts_repeated_chunks_once_on_the_wire_and_everywhere_in_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("dup");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), b"same").unwrap();
        std::fs::write(root.join("sub/b.txt"), b"same").unwrap();
        std::fs::write(root.join("c.txt"), b"other").unwrap();
        let plan = plan_upload(&root, AttachmentKind::Folder, "dup", &|| false, &|p| {
            folder::hash_file(p, &|| false)
        })
        .unwrap();
        assert_eq!(plan.total, 13);
        // Two distinct contents plus the folder's manifest.
        assert_eq!(plan.files.len(), 3);
        assert_eq!(plan.order.len(), 3);
        let same = *blake3::hash(b"same").as_bytes();
        assert_eq!(plan.weight[&same], 8);
        assert_eq!(plan.attachment.file_count, 3);
        assert_eq!(plan.attachment.size, 13);
        assert_eq!(plan.attachment.name, "dup");
        let manifest_id: Hash = plan.attachment.file_id[..].try_into().unwrap();
        let m = plan.files.iter().find(|f| f.id == manifest_id).unwrap();
        let data = read_chunk(&plan.sources[&m.chunks[0]], &m.chunks[0]).unwrap();
        let (folder, total) = folder::decode_folder(&data).unwrap();
        assert_eq!(total, 13);
        assert_eq!(folder.entries.len(), 4);
        // A file that changes after hashing is noticed before it is sent.
        std::fs::write(root.join("c.txt"), b"changed").unwrap();
        let other = *blake3::hash(b"other").as_bytes();
        assert_eq!(read_chunk(&plan.sources[&other], &other).unwrap_err().code(), "FILE_CHANGED");
    }
}
