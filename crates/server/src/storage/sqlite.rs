//! The SQLite backend's queries, one file per domain (as the domains move
//! their SQL here), plus the helpers they share. A second backend implements
//! the same functions over its own connection type; the domains call these
//! and hold no SQL of their own.

pub mod accounts;
pub mod audit;
pub mod directory;
pub mod files;

use rusqlite::{params, Connection};

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
