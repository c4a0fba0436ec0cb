//! The accounts' queries (as they move out of `accounts.rs` and `admin.rs`).

use rusqlite::{params, Connection};

/// Sets a person's password hash; `must_change` makes them choose a new one
/// at their next login.
pub fn set_password_hash(conn: &Connection, id: u64, hash: &str, must_change: bool) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE users SET password_hash = ?2, must_change_password = ?3 WHERE id = ?1",
        params![id, hash, must_change],
    )?;
    Ok(())
}
