//! The accounts' queries (as they move out of `accounts.rs` and `admin.rs`),
//! among them the login writes the writer thread runs for `accounts`.

use hutong_protocol::ErrorCode;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ServiceError;
use crate::storage::now_ms;

/// Sets a person's password hash; `must_change` makes them choose a new one
/// at their next login.
pub fn set_password_hash(conn: &Connection, id: u64, hash: &str, must_change: bool) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE users SET password_hash = ?2, must_change_password = ?3 WHERE id = ?1",
        params![id, hash, must_change],
    )?;
    Ok(())
}

pub fn revoke(
    conn: &Connection,
    user_id: u64,
    session_id: Option<u64>,
    reason: ErrorCode,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO revocations (user_id, session_id, reason, at) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, session_id, reason as i32, now_ms()],
    )?;
    Ok(())
}

/// Stores a new session for a password login (one per device: logging in
/// again on a device replaces its session) and returns its id. Refused if
/// the account was disabled or its password changed since the password was
/// checked, so a login racing a disable or a reset cannot outlive it.
pub fn create_session(
    conn: &Connection,
    user_id: u64,
    device: &str,
    token_hash: &[u8],
    password_hash: &str,
) -> Result<u64, ServiceError> {
    let (current, disabled): (String, bool) = conn
        .prepare_cached("SELECT password_hash, disabled FROM users WHERE id = ?1")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or(ServiceError::BadCredentials)?;
    if current != password_hash {
        return Err(ServiceError::BadCredentials);
    }
    if disabled {
        return Err(ServiceError::AccountDisabled);
    }
    let now = now_ms();
    Ok(conn
        .prepare_cached(
            "INSERT INTO sessions (user_id, device, token_hash, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (user_id, device) DO UPDATE SET token_hash = ?3, created_at = ?4, last_seen_at = ?4
             RETURNING id",
        )?
        .query_row(params![user_id, device, token_hash, now], |r| r.get(0))?)
}

/// Records when a session was last used.
pub fn touch_session(conn: &Connection, session_id: u64, at: i64) -> Result<(), ServiceError> {
    conn.prepare_cached("UPDATE sessions SET last_seen_at = max(last_seen_at, ?2) WHERE id = ?1")?
        .execute(params![session_id, at])?;
    Ok(())
}

/// Replaces a password checked against `old_hash` (refused if it changed
/// meanwhile) and ends every other session of the person.
pub fn replace_password(
    conn: &Connection,
    user_id: u64,
    old_hash: &str,
    new_hash: &str,
    keep: Option<u64>,
) -> Result<(), ServiceError> {
    let changed = conn
        .prepare_cached(
            "UPDATE users SET password_hash = ?3, must_change_password = 0 WHERE id = ?1 AND password_hash = ?2",
        )?
        .execute(params![user_id, old_hash, new_hash])?;
    if changed == 0 {
        return Err(ServiceError::BadCredentials);
    }
    end_other_sessions(conn, user_id, keep)?;
    Ok(())
}

/// Ends every session but `keep` (after a password change) and closes their connections.
pub fn end_other_sessions(conn: &Connection, user_id: u64, keep: Option<u64>) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT id FROM sessions WHERE user_id = ?1 AND id IS NOT ?2")?;
    let others: Vec<u64> = stmt.query_map(params![user_id, keep], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for id in others {
        conn.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
        revoke(conn, user_id, Some(id), ErrorCode::SessionRevoked)?;
    }
    Ok(())
}

/// Ends one session (logout); the token stops working at once.
pub fn end_session(conn: &Connection, session_id: u64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM sessions WHERE id = ?1", [session_id])?;
    Ok(())
}
