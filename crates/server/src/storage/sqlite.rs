//! The SQLite backend: the storage traits implemented for
//! `rusqlite::Connection`, one file per domain, the schema and its
//! migrations (`schema.rs`), and the helpers they share. The only code of
//! the server that names `rusqlite`.

pub mod accounts;
pub mod apps;
pub mod audit;
pub mod directory;
pub mod files;
pub mod messages;
pub mod notices;
pub mod schema;

use rusqlite::{params, Connection};

use crate::error::ServiceError;

/// A value of the `settings` table (counters, retention rules).
pub fn setting(conn: &Connection, key: &str) -> rusqlite::Result<String> {
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
}

/// Sets a value of the `settings` table, adding the key when it is new.
pub fn set_setting(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
pub fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

impl crate::storage::Transactions for Connection {
    fn begin_immediate(&self) -> Result<(), ServiceError> {
        Ok(self.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&self) -> Result<(), ServiceError> {
        Ok(self.execute_batch("COMMIT")?)
    }

    fn rollback(&self) -> Result<(), ServiceError> {
        Ok(self.execute_batch("ROLLBACK")?)
    }

    // One name for every level: SQLite's RELEASE and ROLLBACK TO act on the
    // innermost savepoint of that name, which is the one the caller opened last.
    fn savepoint(&self) -> Result<(), ServiceError> {
        Ok(self.execute_batch("SAVEPOINT hutong_sp")?)
    }

    fn release_savepoint(&self) -> Result<(), ServiceError> {
        Ok(self.execute_batch("RELEASE hutong_sp")?)
    }

    fn rollback_savepoint(&self) -> Result<(), ServiceError> {
        // ROLLBACK TO keeps the savepoint open; RELEASE then ends it (having
        // undone its writes, releasing keeps nothing of them).
        Ok(self.execute_batch("ROLLBACK TO hutong_sp; RELEASE hutong_sp")?)
    }

    fn rows_changed(&self) -> u64 {
        self.total_changes()
    }
}

impl From<rusqlite::Error> for ServiceError {
    fn from(e: rusqlite::Error) -> Self {
        ServiceError::Internal(format!("database: {e}"))
    }
}
