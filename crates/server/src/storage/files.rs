//! What the files domain stores: manifests (`files`), who uploaded what
//! (`file_owners`) and which messages hold which files (`file_refs`). The
//! chunks themselves are files on disk, not rows (see `files::BlobStore`).
//! The SQLite implementation is `storage/sqlite/files.rs`.

use std::collections::HashSet;

use hutong_protocol::files::{CheckedManifest, Hash};

use crate::error::ServiceError;

/// The files' rows. Writes run inside the caller's (the writer's) transaction.
pub trait FilesStore {
    /// Bytes of files `user` uploaded (what the quota counts).
    fn file_quota_used(&self, user: u64) -> Result<u64, ServiceError>;
    fn owns_file(&self, user: u64, id: &Hash) -> Result<bool, ServiceError>;
    /// Records an announced file (once, whoever announces it). Announcing
    /// makes nobody an owner: see `add_file_owner`.
    fn record_file(&self, file: &CheckedManifest, now_ms: i64) -> Result<(), ServiceError>;
    /// Makes `user` one of a recorded file's uploaders (counted by the quota,
    /// may read it); done at commit, once they showed every chunk.
    fn add_file_owner(&self, user: u64, id: &Hash, now_ms: i64) -> Result<(), ServiceError>;
    /// Marks a file complete (every chunk is on disk).
    fn commit_file(&self, id: &Hash) -> Result<(), ServiceError>;
    /// The size of a complete file, `None` if there is none.
    fn committed_file_size(&self, id: &Hash) -> Result<Option<u64>, ServiceError>;
    /// Whether `user` uploaded the file or may read a message holding it
    /// (all of a conversation while a member, up to `until_seq` after leaving).
    fn may_read_file(&self, user: u64, id: &Hash) -> Result<bool, ServiceError>;
    /// A file's manifest; with `committed_only`, only a complete file's.
    fn file_manifest(&self, id: &Hash, committed_only: bool)
        -> Result<Option<CheckedManifest>, ServiceError>;
    /// Records that message `(conversation_id, seq)` holds these files.
    fn add_file_refs(&self, conversation_id: u64, seq: u64, ids: &[Hash]) -> Result<(), ServiceError>;
    /// Whether any message holds the file (so the archive may hand it out).
    fn file_is_referenced(&self, id: &Hash) -> Result<bool, ServiceError>;
    /// Forgets files no message refers to, announced before `cutoff_ms`;
    /// returns how many went.
    fn forget_unreferenced_files(&self, cutoff_ms: i64) -> Result<usize, ServiceError>;
    /// Every chunk some file names.
    fn named_chunks(&self) -> Result<HashSet<Hash>, ServiceError>;
}
