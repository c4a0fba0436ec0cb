//! The files' queries (as they move out of `files.rs` and `admin.rs`).

use rusqlite::Connection;

/// Whether any message holds the file (so the archive may hand it out).
pub fn is_referenced(conn: &Connection, file_id: &[u8]) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM file_refs WHERE file_id = ?1")?.exists([file_id])
}
