//! Files: content-addressed chunks on disk, manifests in the database.
//!
//! A chunk is stored once under `blobs/<first two hex digits>/<hash>`,
//! whoever uploaded it; a file is a row in `files` naming its chunks in
//! order. `file_owners` says who uploaded what (quotas count it, and an
//! uploader may read their own files). Deduplication needs proof of
//! possession: an uploader becomes an owner only after showing every chunk,
//! by sending it or by a keyed hash of its bytes under a fresh challenge, and
//! nothing they are told depends on whether the server already holds the
//! content; `file_refs` says which messages hold
//! which files (a folder's message holds its manifest and every file in it),
//! which is what lets members of a conversation read them. Files nobody
//! refers to are collected after a grace period, then chunks no file names.
//!
//! The database rows (through the `FilesStore` trait) are written by the
//! writer thread (the writes at the bottom of this file, handed over as
//! closures), chunk files by the request handlers.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use hutong_protocol::files::{
    check_folder, check_manifest, check_name, chunk_proof, hash_from, CheckedManifest, Hash, CHUNK_SIZE,
    MAX_FILES_PER_UPLOAD, MAX_FOLDER_MANIFEST_LEN, MAX_THUMBNAIL_LEN, PROOF_LEN,
};
use hutong_protocol::v1::{self, AttachmentKind, EntryKind};
use prost::Message as _;

use crate::error::ServiceError;
use crate::live::outbound::Lane;
use crate::storage::Store;
use hutong_protocol::Payload;

/// Who asks, as the file requests need it (the messaging router builds it
/// from its connection's session).
pub struct Session {
    pub shared: Arc<crate::Shared>,
    pub user_id: u64,
    /// A bulk connection: chunk data allowed.
    pub bulk: bool,
    /// Files this connection has been allowed to read, with their manifests.
    pub readable: Arc<Mutex<ReadableFiles>>,
}

/// The answer to one request: `None` when nothing is sent back.
pub type Reply = Result<Option<(Lane, Payload)>, ServiceError>;

/// Most chunks one person may have announced and not yet sent.
const MAX_PENDING_CHUNKS: usize = 1 << 20;

/// Chunk files on disk.
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn open(root: PathBuf) -> std::io::Result<BlobStore> {
        fs::create_dir_all(root.join("tmp"))?;
        Ok(BlobStore { root })
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hex::encode(hash);
        self.root.join(&hex[..2]).join(hex)
    }

    /// Stores a chunk whose hash the caller has checked: written under a
    /// temporary name (past the page cache where the system allows it, see
    /// `hutong_chunkio`), then renamed into place, so a chunk file is either
    /// whole or absent. It is known to be on disk after
    /// [`BlobStore::make_durable`], which a commit runs before any message
    /// can refer to the file.
    pub fn put(&self, hash: &Hash, data: &[u8]) -> std::io::Result<()> {
        let target = self.path(hash);
        if target.is_file() {
            return Ok(());
        }
        let tmp = self.root.join("tmp").join(format!("{}.{}", hex::encode(hash), rand::random::<u64>()));
        let result = (|| {
            fs::File::create(&tmp)?;
            hutong_chunkio::write_at(&tmp, 0, data)?;
            if let Some(dir) = target.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::rename(&tmp, &target)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Waits until the chunks and their directory entries are on disk.
    pub fn make_durable(&self, hashes: &[Hash]) -> std::io::Result<()> {
        let mut dirs = HashSet::new();
        for hash in hashes {
            let path = self.path(hash);
            fs::File::open(&path)?.sync_data()?;
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_owned());
            }
        }
        for dir in dirs {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    pub fn get(&self, hash: &Hash) -> std::io::Result<Bytes> {
        hutong_chunkio::read_all(&self.path(hash))
    }

    /// Every chunk on disk with its modification time.
    fn list(&self) -> std::io::Result<Vec<(Hash, SystemTime)>> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if dir.file_name().len() != 2 || !dir.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                let f = f?;
                let Some(hash) = f.file_name().to_str().and_then(|n| hex::decode(n).ok()) else { continue };
                let Ok(hash) = Hash::try_from(&hash[..]) else { continue };
                out.push((hash, f.metadata()?.modified()?));
            }
        }
        Ok(out)
    }

    fn remove(&self, hash: &Hash) -> std::io::Result<()> {
        fs::remove_file(self.path(hash))
    }
}

/// Challenges kept per person: a few uploads may run at once.
const MAX_CHALLENGES: usize = 16;

/// Most proofs one `ProveChunks` may carry (a 16 GiB file in 4 MiB chunks).
const MAX_PROOFS: usize = 4096;

/// One person's uploads in progress, in memory only (a restart makes them
/// announce again). Possession is shown per chunk, by sending it or by a
/// proof keyed with a challenge of theirs, and commit needs every chunk
/// shown: announcing a manifest alone grants nothing and tells nothing.
#[derive(Default)]
pub struct Uploads {
    /// Files announced and not yet committed, with their sizes.
    announced: HashMap<Hash, u64>,
    /// Chunks of announced files not yet shown.
    unshown: HashSet<Hash>,
    /// Chunks shown (sent, or proven against stored content).
    shown: HashSet<Hash>,
    /// The newest challenges handed out, oldest first.
    challenges: std::collections::VecDeque<[u8; PROOF_LEN]>,
}

/// Every person's [`Uploads`].
#[derive(Default)]
pub struct PendingChunks {
    by_user: Mutex<HashMap<u64, Uploads>>,
}

impl PendingChunks {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Uploads>> {
        self.by_user.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one connection has learnt about files it may read.
#[derive(Default)]
pub struct ReadableFiles {
    files: HashMap<Hash, Arc<CheckedManifest>>,
}

async fn blocking<T, F>(f: F) -> Result<T, ServiceError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ServiceError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("file task failed: {e}")))?
}

fn io_error(e: std::io::Error) -> ServiceError {
    ServiceError::Internal(format!("blob store: {e}"))
}

fn bad_manifest(e: hutong_protocol::files::FileError) -> ServiceError {
    match e {
        hutong_protocol::files::FileError::UnsafePath { .. } => ServiceError::UnsafePath(e.to_string()),
        other => ServiceError::BadRequest(other.to_string()),
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

// ------------------------------------------------------------------ requests

/// Checks limits and the quota, records the files, and answers which chunks
/// the caller has still to show (send or prove), with a challenge for proofs.
pub async fn prepare_upload(s: Session, req: v1::PrepareUpload) -> Reply {
    if req.files.is_empty() || req.files.len() > MAX_FILES_PER_UPLOAD {
        return Err(ServiceError::BadRequest(format!("announce 1 to {MAX_FILES_PER_UPLOAD} files at once")));
    }
    let config = &s.shared.config;
    let mut files = Vec::with_capacity(req.files.len());
    for m in &req.files {
        let m = check_manifest(m).map_err(bad_manifest)?;
        if m.size > config.files_max_size {
            return Err(ServiceError::TooLarge(format!(
                "a file of {} is larger than this server's limit of {}",
                human(m.size),
                human(config.files_max_size)
            )));
        }
        files.push(m);
    }
    let (user, quota, announced) = (s.user_id, config.files_quota_bytes, files.clone());
    let quota_used = s
        .shared
        .writes
        .submit(Box::new(move |st: &dyn Store| prepare_files(st, user, &announced, quota)))
        .await?;
    // What is still to show is decided by what this person has shown, never
    // by what the server holds: the answer is the same whether the content
    // is stored or not.
    let challenge: [u8; PROOF_LEN] = rand::random();
    let missing = {
        let mut all = s.shared.pending_chunks.lock();
        let mine = all.entry(s.user_id).or_default();
        let new_chunks: HashSet<Hash> = files
            .iter()
            .flat_map(|f| f.chunks.iter())
            .filter(|c| !mine.shown.contains(*c) && !mine.unshown.contains(*c))
            .copied()
            .collect();
        if mine.unshown.len() + mine.shown.len() + new_chunks.len() > MAX_PENDING_CHUNKS {
            // Older announcements were abandoned (or are too many): start
            // afresh rather than lock the person out until a restart.
            *mine = Uploads::default();
            if new_chunks.len() > MAX_PENDING_CHUNKS {
                return Err(ServiceError::TooLarge("too many chunks announced and not yet sent".into()));
            }
        }
        for f in &files {
            mine.announced.insert(f.id, f.size);
        }
        mine.unshown.extend(new_chunks);
        if mine.challenges.len() >= MAX_CHALLENGES {
            mine.challenges.pop_front();
        }
        mine.challenges.push_back(challenge);
        let mut seen = HashSet::new();
        files
            .iter()
            .flat_map(|f| f.chunks.iter())
            .filter(|c| !mine.shown.contains(*c) && seen.insert(**c))
            .copied()
            .collect::<Vec<Hash>>()
    };
    let plan = v1::UploadPlan {
        missing: missing.iter().map(|h| h.to_vec()).collect(),
        quota_used,
        quota_limit: config.files_quota_bytes,
        challenge: challenge.to_vec(),
    };
    Ok(Some((Lane::Control, Payload::UploadPlan(plan))))
}

/// Checks proofs of possession of announced chunks against the stored
/// content and counts the ones that hold as shown. A chunk the server lacks
/// and a wrong proof get the same answer: not proven, send it.
pub async fn prove_chunks(s: Session, req: v1::ProveChunks) -> Reply {
    if req.proofs.len() > MAX_PROOFS {
        return Err(ServiceError::TooLarge(format!("prove at most {MAX_PROOFS} chunks at once")));
    }
    let challenge: [u8; PROOF_LEN] = req
        .challenge
        .as_slice()
        .try_into()
        .map_err(|_| ServiceError::BadRequest("a challenge is 32 bytes long".into()))?;
    let mut claims = Vec::with_capacity(req.proofs.len());
    {
        let all = s.shared.pending_chunks.lock();
        let mine = all.get(&s.user_id);
        if !mine.is_some_and(|m| m.challenges.contains(&challenge)) {
            return Err(ServiceError::Conflict(
                "this challenge is unknown or too old; announce the files again".into(),
            ));
        }
        let mine = mine.expect("checked above");
        for p in &req.proofs {
            let hash = hash_from(&p.hash).map_err(bad_manifest)?;
            let proof: [u8; PROOF_LEN] = p
                .proof
                .as_slice()
                .try_into()
                .map_err(|_| ServiceError::BadRequest("a proof is 32 bytes long".into()))?;
            // Only chunks this person announced are checked at all.
            if mine.unshown.contains(&hash) {
                claims.push((hash, proof));
            }
        }
    }
    let store = s.shared.blobs.clone();
    let proven = blocking(move || {
        let mut proven = Vec::new();
        for (hash, proof) in claims {
            let data = match store.get(&hash) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(e)),
            };
            // blake3::Hash compares in constant time.
            if blake3::Hash::from(chunk_proof(&challenge, &data)) == blake3::Hash::from(proof) {
                proven.push(hash);
            }
        }
        Ok(proven)
    })
    .await?;
    if let Some(mine) = s.shared.pending_chunks.lock().get_mut(&s.user_id) {
        for h in &proven {
            if mine.unshown.remove(h) {
                mine.shown.insert(*h);
            }
        }
    }
    let answer = v1::ChunksProven { hashes: proven.iter().map(|h| h.to_vec()).collect() };
    Ok(Some((Lane::Control, Payload::ChunksProven(answer))))
}

/// Stores one announced chunk after checking its hash.
pub async fn put_chunk(s: Session, req: v1::PutChunk) -> Reply {
    if !s.bulk {
        return Err(ServiceError::BadRequest("chunk data travels on a bulk connection only".into()));
    }
    let hash = hash_from(&req.hash).map_err(bad_manifest)?;
    if req.data.len() > CHUNK_SIZE as usize {
        return Err(ServiceError::TooLarge("a chunk is at most 4 MiB".into()));
    }
    let announced = s.shared.pending_chunks.lock().get(&s.user_id).is_some_and(|m| m.unshown.contains(&hash));
    if !announced {
        return Err(ServiceError::Forbidden("announce this chunk with PrepareUpload first".into()));
    }
    let store = s.shared.blobs.clone();
    let data: Bytes = req.data;
    blocking(move || {
        if blake3::hash(&data).as_bytes() != &hash {
            return Err(ServiceError::BadRequest("the chunk's data does not match its hash".into()));
        }
        store.put(&hash, &data).map_err(io_error)
    })
    .await?;
    if let Some(mine) = s.shared.pending_chunks.lock().get_mut(&s.user_id) {
        if mine.unshown.remove(&hash) {
            mine.shown.insert(hash);
        }
    }
    Ok(Some((Lane::Bulk, Payload::ChunkStored(v1::ChunkStored { hash: hash.to_vec() }))))
}

/// Marks the caller's announced files complete once every chunk is stored.
pub async fn commit_upload(s: Session, req: v1::CommitUpload) -> Reply {
    if req.file_ids.is_empty() || req.file_ids.len() > MAX_FILES_PER_UPLOAD {
        return Err(ServiceError::BadRequest(format!("commit 1 to {MAX_FILES_PER_UPLOAD} files at once")));
    }
    let ids =
        req.file_ids.iter().map(|id| hash_from(id)).collect::<Result<Vec<_>, _>>().map_err(bad_manifest)?;
    let user = s.user_id;
    {
        let all = s.shared.pending_chunks.lock();
        if ids.iter().any(|id| !all.get(&user).is_some_and(|m| m.announced.contains_key(id))) {
            return Err(ServiceError::Conflict("a file was not announced; announce the files again".into()));
        }
    }
    let ids2 = ids.clone();
    let manifests = s
        .shared
        .db
        .read(move |conn| {
            ids2.iter()
                .map(|id| conn.file_manifest(id, false)?.ok_or(ServiceError::NotFound("announced file")))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let chunks: Vec<Hash> = manifests.iter().flat_map(|m| m.chunks.iter()).copied().collect();
    {
        // Every chunk must have been shown by this person, whatever the
        // server holds: the same answer for content stored or not.
        let all = s.shared.pending_chunks.lock();
        let shown = |c: &Hash| all.get(&user).is_some_and(|m| m.shown.contains(c));
        let missing = chunks.iter().filter(|c| !shown(c)).count();
        if missing > 0 {
            return Err(ServiceError::Conflict(format!(
                "{missing} chunks were neither sent nor proven; announce the files again and send them"
            )));
        }
    }
    let store = s.shared.blobs.clone();
    blocking(move || store.make_durable(&chunks).map_err(io_error)).await?;
    let (quota, done) = (s.shared.config.files_quota_bytes, ids.clone());
    s.shared
        .writes
        .submit(Box::new(move |st: &dyn Store| commit_files(st, user, &done, quota).map(|()| 0)))
        .await?;
    {
        let mut all = s.shared.pending_chunks.lock();
        if let Some(mine) = all.get_mut(&user) {
            for id in &ids {
                mine.announced.remove(id);
            }
            if mine.announced.is_empty() {
                all.remove(&user);
            }
        }
    }
    let answer = v1::UploadCommitted { file_ids: ids.iter().map(|h| h.to_vec()).collect() };
    Ok(Some((Lane::Control, Payload::UploadCommitted(answer))))
}

/// The manifest of a file the caller may read.
pub async fn get_file(s: Session, req: v1::GetFile) -> Reply {
    let id = hash_from(&req.id).map_err(bad_manifest)?;
    let manifest = readable(&s, id).await?;
    Ok(Some((Lane::Control, Payload::FileManifest(manifest.to_wire()))))
}

/// One chunk of a file the caller may read.
pub async fn get_chunk(s: Session, req: v1::GetChunk) -> Reply {
    if !s.bulk {
        return Err(ServiceError::BadRequest("chunk data travels on a bulk connection only".into()));
    }
    let id = hash_from(&req.file_id).map_err(bad_manifest)?;
    let manifest = readable(&s, id).await?;
    let hash = *manifest.chunks.get(req.index as usize).ok_or(ServiceError::NotFound("chunk"))?;
    let store = s.shared.blobs.clone();
    let data = blocking(move || match store.get(&hash) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ServiceError::NotFound("chunk")),
        Err(e) => Err(io_error(e)),
    })
    .await?;
    let answer = v1::ChunkData { file_id: req.file_id, index: req.index, data };
    Ok(Some((Lane::Bulk, Payload::ChunkData(answer))))
}

/// The manifest of `id` if the session's person may read it: they uploaded
/// it, or a message holding it is in a conversation they may read.
async fn readable(s: &Session, id: Hash) -> Result<Arc<CheckedManifest>, ServiceError> {
    if let Some(m) = s.readable.lock().unwrap_or_else(|e| e.into_inner()).files.get(&id) {
        return Ok(m.clone());
    }
    let manifest = Arc::new(load_readable(s, id, "file").await?);
    let mut cache = s.readable.lock().unwrap_or_else(|e| e.into_inner());
    if cache.files.len() >= 256 {
        cache.files.clear();
    }
    cache.files.insert(id, manifest.clone());
    Ok(manifest)
}

/// The complete file `id` if the session's person may read it; otherwise
/// NOT_FOUND naming `what` (whether it exists is nobody else's business).
async fn load_readable(s: &Session, id: Hash, what: &'static str) -> Result<CheckedManifest, ServiceError> {
    let user = s.user_id;
    s.shared
        .db
        .read(move |conn| {
            if !may_read(conn, user, &id)? {
                return Err(ServiceError::NotFound(what));
            }
            load_committed(conn, &id)?.ok_or(ServiceError::NotFound(what))
        })
        .await
}

/// Whether `user` uploaded the file or may read a message holding it.
pub fn may_read(store: &dyn Store, user: u64, id: &Hash) -> Result<bool, ServiceError> {
    store.may_read_file(user, id)
}

pub(crate) fn load_committed(store: &dyn Store, id: &Hash) -> Result<Option<CheckedManifest>, ServiceError> {
    store.file_manifest(id, true)
}

/// What a folder message refers to, read from its manifest before the send
/// is queued (the writer only checks the rows).
#[derive(Debug, Clone)]
pub struct FolderContents {
    pub file_ids: Vec<Hash>,
    pub total: u64,
    pub files: u32,
}

/// Reads and checks the folder manifest an attachment names. Runs inside
/// `route`, before the send is queued, so sends keep their order.
pub async fn folder_contents(
    s: &Session,
    attachment: &v1::Attachment,
) -> Result<FolderContents, ServiceError> {
    let id = hash_from(&attachment.file_id).map_err(bad_manifest)?;
    let manifest = load_readable(s, id, "folder manifest").await?;
    if manifest.size > MAX_FOLDER_MANIFEST_LEN {
        return Err(ServiceError::TooLarge("the folder's manifest is larger than 32 MiB".into()));
    }
    let store = s.shared.blobs.clone();
    blocking(move || {
        let mut bytes = Vec::with_capacity(manifest.size as usize);
        for c in &manifest.chunks {
            bytes.extend_from_slice(&store.get(c).map_err(io_error)?);
        }
        let folder = v1::FolderManifest::decode(&bytes[..])
            .map_err(|_| ServiceError::BadRequest("the folder's manifest is not a folder manifest".into()))?;
        let total = check_folder(&folder).map_err(bad_manifest)?;
        let mut file_ids = vec![id];
        let mut files = 0u32;
        for e in &folder.entries {
            if e.kind == EntryKind::EntryFile as i32 {
                file_ids.push(hash_from(&e.file_id).map_err(bad_manifest)?);
                files += 1;
            }
        }
        Ok(FolderContents { file_ids, total, files })
    })
    .await
}

// ------------------------------------------------------------------ writer side

/// Records announced files, refusing what the quota does not allow. Returns
/// the bytes that would count against the uploader afterwards. The uploader
/// becomes an owner (who may read the file) only at commit, once they have
/// shown every chunk.
pub fn prepare_files(
    store: &dyn Store,
    user: u64,
    files: &[CheckedManifest],
    quota: u64,
) -> Result<u64, ServiceError> {
    let used = store.file_quota_used(user)?;
    let mut new = HashSet::new();
    let mut added = 0u64;
    for f in files {
        if !store.owns_file(user, &f.id)? && new.insert(f.id) {
            added += f.size;
        }
    }
    if quota > 0 && used + added > quota {
        return Err(ServiceError::QuotaExceeded(format!(
            "this needs {} more but only {} of your {} file quota is left",
            human(added),
            human(quota.saturating_sub(used)),
            human(quota)
        )));
    }
    let now = crate::storage::now_ms();
    for f in files {
        store.record_file(f, now)?;
    }
    Ok(used + added)
}

/// Completes files whose every chunk `user` has shown: checks the quota
/// again (announcements are not reservations), makes `user` an owner and
/// marks the files complete.
pub fn commit_files(store: &dyn Store, user: u64, ids: &[Hash], quota: u64) -> Result<(), ServiceError> {
    let used = store.file_quota_used(user)?;
    let mut added = 0u64;
    let mut new = HashSet::new();
    for id in ids {
        if !store.owns_file(user, id)? && new.insert(*id) {
            let manifest = store.file_manifest(id, false)?.ok_or(ServiceError::NotFound("announced file"))?;
            added += manifest.size;
        }
    }
    if quota > 0 && used + added > quota {
        return Err(ServiceError::QuotaExceeded(format!(
            "this needs {} more but only {} of your {} file quota is left",
            human(added),
            human(quota.saturating_sub(used)),
            human(quota)
        )));
    }
    let now = crate::storage::now_ms();
    for id in ids {
        store.add_file_owner(user, id, now)?;
        store.commit_file(id)?;
    }
    Ok(())
}

/// Checks a send's attachment inside the writer's transaction: the files
/// exist, are complete, and the sender may pass them on. Returns the file
/// ids the message refers to.
pub fn check_attachment(
    conn: &dyn Store,
    sender: u64,
    attachment: &v1::Attachment,
    folder: Option<&FolderContents>,
) -> Result<Vec<Hash>, ServiceError> {
    check_name(&attachment.name)
        .map_err(|reason| ServiceError::BadRequest(format!("the file name has {reason}")))?;
    if attachment.thumbnail.len() > MAX_THUMBNAIL_LEN {
        return Err(ServiceError::TooLarge("a thumbnail is at most 64 KiB".into()));
    }
    if attachment.mime.len() > 255 {
        return Err(ServiceError::BadRequest("the media type is too long".into()));
    }
    let id = hash_from(&attachment.file_id).map_err(bad_manifest)?;
    let size = conn.committed_file_size(&id)?.ok_or(ServiceError::NotFound("file"))?;
    let kind = AttachmentKind::try_from(attachment.kind)
        .map_err(|_| ServiceError::BadRequest("unknown attachment kind".into()))?;
    let ids = match (kind, folder) {
        (AttachmentKind::AttachmentFolder, Some(folder)) => {
            if attachment.size != folder.total || attachment.file_count != folder.files {
                return Err(ServiceError::BadRequest(
                    "the folder's size or file count does not match".into(),
                ));
            }
            folder.file_ids.clone()
        }
        (AttachmentKind::AttachmentFolder, None) => {
            return Err(ServiceError::BadRequest("a folder without its contents".into()))
        }
        (_, _) => {
            if attachment.size != size {
                return Err(ServiceError::BadRequest("the attachment's size does not match its file".into()));
            }
            vec![id]
        }
    };
    for id in &ids {
        if conn.committed_file_size(id)?.is_none() {
            return Err(ServiceError::NotFound("file"));
        }
        if !may_read(conn, sender, id)? {
            return Err(ServiceError::Forbidden("you may not pass on a file you cannot read".into()));
        }
    }
    Ok(ids)
}

pub fn add_refs(store: &dyn Store, conversation_id: u64, seq: u64, ids: &[Hash]) -> Result<(), ServiceError> {
    store.add_file_refs(conversation_id, seq, ids)
}

/// One collection pass: files nobody refers to, then chunk files no file
/// names, both only when older than the grace period.
pub async fn collect(shared: &crate::Shared, now_ms: i64) -> Result<(usize, usize), ServiceError> {
    let grace_ms = (shared.config.files_orphan_grace_secs as i64).saturating_mul(1000);
    let cutoff_ms = now_ms.saturating_sub(grace_ms);
    // Files nobody refers to, older than the grace period, go first.
    let forget = Box::new(move |st: &dyn Store| st.forget_unreferenced_files(cutoff_ms).map(|n| n as u64));
    let files = shared.writes.submit(forget).await? as usize;
    let named: HashSet<Hash> = shared.db.read(|conn| conn.named_chunks()).await?;
    let store = shared.blobs.clone();
    let cutoff = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(cutoff_ms.max(0) as u64);
    let chunks = blocking(move || {
        let mut removed = 0;
        for (hash, modified) in store.list().map_err(io_error)? {
            if modified < cutoff && !named.contains(&hash) && store.remove(&hash).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    })
    .await?;
    Ok((files, chunks))
}

/// Runs [`collect`] every `files_gc_interval_secs` until shutdown.
pub async fn collector(shared: Arc<crate::Shared>, shutdown: tokio_util::sync::CancellationToken) {
    let every = std::time::Duration::from_secs(shared.config.files_gc_interval_secs.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        match collect(&shared, crate::storage::now_ms()).await {
            Ok((0, 0)) => {}
            Ok((files, chunks)) => tracing::info!(files, chunks, "collected unreferenced files"),
            Err(e) => tracing::warn!(error = %e, "collecting unreferenced files failed"),
        }
    }
}
