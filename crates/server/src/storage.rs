//! The storage boundary: every row the server keeps is read and written
//! through the per-domain traits declared here and in `storage/<domain>.rs`
//! (`AccountsStore`, `AppsStore`, `DirectoryStore`, `FilesStore`, `AuditStore`,
//! `MessagesRead`, `MessagesWrite`, `NoticesStore`, `Transactions`), whose methods take and return domain types, never a
//! database's. `Store` is all of them: one connection. The SQLite backend
//! (`storage/sqlite*`, schema and migrations included) implements them, and
//! only it names `rusqlite` (`layering.rs` checks that); a second backend
//! implements the same traits over its own connections.
//!
//! Reads run on a small pool (`Db`); writes to conversations, and the login
//! and file writes, go through the one writer thread (`WriteQueue`, in its
//! IMMEDIATE transaction with savepoints); the administration API and the
//! CLI write in their own transactions (`Transactions` for both).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::error::ServiceError;

pub mod accounts;
pub mod apps;
pub mod audit;
pub mod directory;
pub mod files;
pub mod messages;
pub mod notices;
pub mod sqlite;

pub use accounts::AccountsStore;
pub use apps::AppsStore;
pub use audit::AuditStore;
pub use directory::DirectoryStore;
pub use files::FilesStore;
pub use messages::{EarlierSend, MessagesRead, MessagesWrite};
pub use notices::NoticesStore;
// The SQLite file's own handles, for the tools and tests that seed or
// inspect a database directly.
pub use sqlite::schema::{migrate, open_connection};

/// One connection to the database, whatever the backend: every domain's
/// rows. Domains take `&dyn Store` and call only these traits; a second
/// backend implements them over its own connection type.
/// (`MessagesWrite` is part of it so the writer thread runs every command,
/// a `WriteFn` included, over one `&dyn Store`.)
pub trait Store:
    AccountsStore
    + AppsStore
    + AuditStore
    + DirectoryStore
    + FilesStore
    + MessagesRead
    + MessagesWrite
    + NoticesStore
    + Transactions
{
}

impl<T> Store for T where
    T: AccountsStore
        + AppsStore
        + AuditStore
        + DirectoryStore
        + FilesStore
        + MessagesRead
        + MessagesWrite
        + NoticesStore
        + Transactions
{
}

/// Transactions of a connection: the writer's batch (an IMMEDIATE
/// transaction, a savepoint per command when it must be able to undo one),
/// the administration API's and the CLI's; and what the tests measure of it.
pub trait Transactions {
    /// Begins a transaction that takes the write lock at once.
    fn begin_immediate(&self) -> Result<(), ServiceError>;
    fn commit(&self) -> Result<(), ServiceError>;
    fn rollback(&self) -> Result<(), ServiceError>;
    /// Opens a savepoint inside the current transaction. Savepoints nest;
    /// each is ended by exactly one `release_savepoint` or
    /// `rollback_savepoint`, innermost first.
    fn savepoint(&self) -> Result<(), ServiceError>;
    /// Keeps what the innermost savepoint's span wrote and ends it.
    fn release_savepoint(&self) -> Result<(), ServiceError>;
    /// Undoes what the innermost savepoint's span wrote and ends it.
    fn rollback_savepoint(&self) -> Result<(), ServiceError>;
    /// Rows this connection has changed since it was opened.
    fn rows_changed(&self) -> u64;
}

/// Runs `f` in an IMMEDIATE transaction on `store`: committed when `f`
/// answers `Ok`, rolled back otherwise.
pub fn in_transaction<T, E: From<ServiceError>>(
    store: &dyn Store,
    f: impl FnOnce(&dyn Store) -> Result<T, E>,
) -> Result<T, E> {
    store.begin_immediate()?;
    match f(store) {
        Ok(v) => {
            store.commit()?;
            Ok(v)
        }
        Err(e) => {
            store.rollback()?;
            Err(e)
        }
    }
}

/// A write a domain hands to the one writer thread: it runs inside the
/// writer's transaction (in a savepoint of its own) and answers a number
/// (an id, a count) after the commit.
pub type WriteFn = Box<dyn Fn(&dyn Store) -> Result<u64, ServiceError> + Send>;

/// The writer's queue as the domains below messaging see it, so logins and
/// file uploads write through the one writer without importing it.
pub trait WriteQueue: Send + Sync {
    /// Queues `write` and waits for its commit.
    fn submit(&self, write: WriteFn) -> BoxFuture<'static, Result<u64, ServiceError>>;
    /// Queues `write` and returns once it is queued, not committed.
    fn enqueue(&self, write: WriteFn) -> BoxFuture<'static, Result<(), ServiceError>>;
}

/// A connection of its own outside the pools (the `user` subcommands,
/// first start, tests).
pub fn open(path: &Path) -> anyhow::Result<Box<dyn Store + Send>> {
    Ok(Box::new(open_connection(path)?))
}

/// A few read connections; WAL lets them read while the writer commits.
#[derive(Clone)]
pub struct Db {
    readers: Arc<Vec<Mutex<Box<dyn Store + Send>>>>,
    next: Arc<AtomicUsize>,
}

impl Db {
    /// A pool of `readers` SQLite connections to the database at `path`.
    pub fn open(path: &Path, readers: usize) -> anyhow::Result<Db> {
        let readers = (0..readers.max(1)).map(|_| open(path).map(Mutex::new)).collect::<Result<_, _>>()?;
        Ok(Db { readers: Arc::new(readers), next: Arc::new(AtomicUsize::new(0)) })
    }

    /// Rows written through the read connections since they were opened.
    /// Message and login paths keep it at zero (their writes go through the
    /// writer); tests check that.
    pub fn rows_changed_by_readers(&self) -> u64 {
        self.readers.iter().map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).rows_changed()).sum()
    }

    /// Runs `f` on a pooled connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, ServiceError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let start = db.next.fetch_add(1, Ordering::Relaxed);
            let n = db.readers.len();
            for i in 0..n {
                if let Ok(conn) = db.readers[(start + i) % n].try_lock() {
                    return f(&**conn);
                }
            }
            let conn = db.readers[start % n].lock().unwrap_or_else(|e| e.into_inner());
            f(&**conn)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("reader task failed: {e}")))?
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
