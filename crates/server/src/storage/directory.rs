//! What the directory stores: departments, people's directory fields, the
//! directory's version counter and epoch. The trait is the boundary; the
//! SQLite implementation is `storage/sqlite/directory.rs`.

use crate::error::ServiceError;

/// The directory's rows. Writes run inside the caller's transaction.
pub trait DirectoryStore {
    /// Takes the next directory version (inside the caller's transaction).
    fn next_dir_version(&self) -> Result<u64, ServiceError>;
}
