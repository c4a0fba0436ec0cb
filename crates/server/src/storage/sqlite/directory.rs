//! The directory's queries: the directory's version counter.

use rusqlite::Connection;

/// Takes the next directory version (inside the caller's transaction).
pub fn next_version(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dir_version' RETURNING CAST(value AS INTEGER)",
        [],
        |r| r.get(0),
    )
}
