//! The accounts' queries (as they move out of `accounts.rs` and `admin.rs`),
//! among them the login writes the writer thread runs for `accounts`.

use hutong_protocol::ErrorCode;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ServiceError;
use crate::storage::now_ms;

/// Devices whose names start with this are console sessions; the native
/// protocol refuses them, so no client can pass for the console.
pub const CONSOLE_DEVICE_PREFIX: &str = "console-";

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
        .prepare_cached("SELECT password_hash, disabled FROM users WHERE id = ?1 AND deleted = 0")?
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
    // The console names its devices so; the native login refuses such names.
    let kind = if device.starts_with(CONSOLE_DEVICE_PREFIX) { "console" } else { "client" };
    Ok(conn
        .prepare_cached(
            "INSERT INTO sessions (user_id, device, token_hash, created_at, last_seen_at, kind) VALUES (?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT (user_id, device) DO UPDATE SET token_hash = ?3, created_at = ?4, last_seen_at = ?4, kind = ?5, second_factor = 0
             RETURNING id",
        )?
        .query_row(params![user_id, device, token_hash, now, kind], |r| r.get(0))?)
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

/// Marks the bootstrap administrator's generated password as one-time.
pub fn require_password_change(conn: &Connection, user_id: u64) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET must_change_password = 1 WHERE id = ?1", [user_id])?;
    Ok(())
}

/// A person's TOTP state: confirmed secret, secret being enrolled, last step used.
pub struct TotpState {
    pub secret: Option<Vec<u8>>,
    pub pending: Option<Vec<u8>>,
    pub last_step: i64,
}

pub fn totp_state(conn: &Connection, user_id: u64) -> rusqlite::Result<TotpState> {
    conn.query_row(
        "SELECT totp_secret, totp_pending, totp_last_step FROM users WHERE id = ?1",
        [user_id],
        |r| Ok(TotpState { secret: r.get(0)?, pending: r.get(1)?, last_step: r.get(2)? }),
    )
}

pub fn set_totp_pending(conn: &Connection, user_id: u64, secret: &[u8]) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET totp_pending = ?2 WHERE id = ?1", params![user_id, secret])?;
    Ok(())
}

/// Makes the pending secret the person's (checked with a code of `step`)
/// and replaces their recovery codes. False if the pending secret changed
/// meanwhile.
pub fn confirm_totp(
    conn: &Connection,
    user_id: u64,
    secret: &[u8],
    step: i64,
    recovery_hashes: &[Vec<u8>],
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?3
         WHERE id = ?1 AND totp_pending = ?2",
        params![user_id, secret, step],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    for h in recovery_hashes {
        conn.execute("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)", params![user_id, h])?;
    }
    Ok(true)
}

/// Records that a code of `step` was used; false if that step (or a later
/// one) was used already, so two requests with one code cannot both pass.
pub fn use_totp_step(conn: &Connection, user_id: u64, step: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE users SET totp_last_step = ?2 WHERE id = ?1 AND totp_last_step < ?2",
        params![user_id, step],
    )? == 1)
}

/// Spends a recovery code; false if it is unknown or spent.
pub fn use_recovery_code(conn: &Connection, user_id: u64, code_hash: &[u8]) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
        params![user_id, code_hash, now_ms()],
    )? == 1)
}

pub fn recovery_codes_left(conn: &Connection, user_id: u64) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
        [user_id],
        |r| r.get(0),
    )
}

/// The console session passed its second factor.
pub fn mark_second_factor(conn: &Connection, session_id: u64) -> rusqlite::Result<()> {
    conn.execute("UPDATE sessions SET second_factor = 1 WHERE id = ?1", [session_id])?;
    Ok(())
}

/// A change waiting for an auditor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingChange {
    pub id: u64,
    pub kind: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub requested_by: u64,
    pub requested_at_ms: i64,
    pub state: String,
    pub decided_by: Option<u64>,
}

pub fn add_pending_change(
    conn: &Connection,
    kind: &str,
    target: &str,
    detail: &serde_json::Value,
    requested_by: u64,
) -> rusqlite::Result<u64> {
    conn.execute(
        "INSERT INTO pending_changes (kind, target, detail, requested_by, requested_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![kind, target, detail.to_string(), requested_by, now_ms()],
    )?;
    Ok(conn.last_insert_rowid() as u64)
}

fn pending_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingChange> {
    let detail: String = r.get(3)?;
    Ok(PendingChange {
        id: r.get(0)?,
        kind: r.get(1)?,
        target: r.get(2)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        requested_by: r.get(4)?,
        requested_at_ms: r.get(5)?,
        state: r.get(6)?,
        decided_by: r.get(7)?,
    })
}

const PENDING_COLUMNS: &str = "id, kind, target, detail, requested_by, requested_at, state, decided_by";

pub fn pending_changes(conn: &Connection) -> rusqlite::Result<Vec<PendingChange>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {PENDING_COLUMNS} FROM pending_changes ORDER BY state = 'pending' DESC, id DESC LIMIT 200"
    ))?;
    let rows = stmt.query_map([], pending_from_row)?;
    rows.collect()
}

pub fn pending_change(conn: &Connection, id: u64) -> rusqlite::Result<Option<PendingChange>> {
    conn.query_row(
        &format!("SELECT {PENDING_COLUMNS} FROM pending_changes WHERE id = ?1"),
        [id],
        pending_from_row,
    )
    .optional()
}

/// Decides a pending change; false if it was decided already.
pub fn decide_pending_change(conn: &Connection, id: u64, state: &str, by: u64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE pending_changes SET state = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1 AND state = 'pending'",
        params![id, state, by, now_ms()],
    )? == 1)
}

/// Adds a role to a person (a directory change: clients see it at their next sync).
pub fn add_role(conn: &Connection, id: u64, role: &str) -> rusqlite::Result<()> {
    let roles: String = conn.query_row("SELECT roles FROM users WHERE id = ?1", [id], |r| r.get(0))?;
    let mut list: Vec<&str> = roles.split(',').filter(|r| !r.is_empty()).collect();
    if !list.contains(&role) {
        list.push(role);
    }
    let version = super::directory::next_version(conn)?;
    conn.execute(
        "UPDATE users SET roles = ?2, dir_version = ?3 WHERE id = ?1",
        params![id, list.join(","), version],
    )?;
    Ok(())
}

/// Removes a person's TOTP secret and recovery codes.
pub fn forget_totp(conn: &Connection, user_id: u64) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET totp_secret = NULL, totp_pending = NULL WHERE id = ?1", [user_id])?;
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    Ok(())
}

/// Everyone holding a role, by id (to hold an import to the auditor rule).
pub fn holders_of(conn: &Connection, role: &str) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM users WHERE deleted = 0 AND ',' || roles || ',' LIKE '%,' || ?1 || ',%' ORDER BY id",
    )?;
    let rows = stmt.query_map([role], |r| r.get(0))?;
    rows.collect()
}
