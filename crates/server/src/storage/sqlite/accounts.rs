//! The accounts' rows in SQLite (`users`, `sessions`, `revocations`,
//! `recovery_codes`, `pending_changes`).

use hutong_protocol::ErrorCode;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ServiceError;
use crate::storage::accounts::{
    AccountsStore, Caller, NewUser, PasswordRow, PendingChange, Revocation, SessionRow, TokenSession,
    TotpState, UserRow, CONSOLE_DEVICE_PREFIX,
};
use crate::storage::now_ms;
use crate::storage::DirectoryStore;

impl AccountsStore for Connection {
    fn has_users(&self) -> Result<bool, ServiceError> {
        Ok(self.query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))?)
    }

    fn account_exists(&self, account: &str) -> Result<bool, ServiceError> {
        Ok(self.query_row("SELECT count(*) FROM users WHERE account = ?1", [account], |r| r.get(0))?)
    }

    fn insert_user(&self, u: &NewUser<'_>) -> Result<u64, ServiceError> {
        self.execute(
            "INSERT INTO users (account, display_name, password_hash, is_admin, roles, pinyin, initials, dir_version, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                u.account,
                u.display_name,
                u.password_hash,
                u.is_admin,
                if u.is_admin { "admin" } else { "" },
                u.pinyin,
                u.initials,
                u.dir_version,
                u.created_at
            ],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn list_users(&self) -> Result<Vec<UserRow>, ServiceError> {
        let mut stmt =
            self.prepare("SELECT id, account, display_name, disabled, is_admin FROM users ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(UserRow {
                id: r.get(0)?,
                account: r.get(1)?,
                display_name: r.get(2)?,
                disabled: r.get(3)?,
                is_admin: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn user_id_by_account(&self, account: &str) -> Result<Option<u64>, ServiceError> {
        Ok(self.query_row("SELECT id FROM users WHERE account = ?1", [account], |r| r.get(0)).optional()?)
    }

    fn set_user_disabled(&self, id: u64, disabled: bool, dir_version: u64) -> Result<(), ServiceError> {
        self.execute(
            "UPDATE users SET disabled = ?2, dir_version = ?3 WHERE id = ?1",
            params![id, disabled, dir_version],
        )?;
        Ok(())
    }

    fn set_password_hash(&self, id: u64, hash: &str, must_change: Option<bool>) -> Result<(), ServiceError> {
        match must_change {
            Some(must_change) => self.execute(
                "UPDATE users SET password_hash = ?2, must_change_password = ?3 WHERE id = ?1",
                params![id, hash, must_change],
            )?,
            None => self.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![id, hash])?,
        };
        Ok(())
    }

    fn delete_sessions_of(&self, user_id: u64) -> Result<(), ServiceError> {
        self.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
        Ok(())
    }

    fn revoke(&self, user_id: u64, session_id: Option<u64>, reason: ErrorCode) -> Result<(), ServiceError> {
        self.execute(
            "INSERT INTO revocations (user_id, session_id, reason, at) VALUES (?1, ?2, ?3, ?4)",
            params![user_id, session_id, reason as i32, now_ms()],
        )?;
        Ok(())
    }

    fn revocations_after(&self, after: u64) -> Result<Vec<Revocation>, ServiceError> {
        let mut stmt = self.prepare_cached(
            "SELECT id, user_id, session_id, reason FROM revocations WHERE id > ?1 ORDER BY id LIMIT 1000",
        )?;
        let rows = stmt.query_map([after], |r| {
            Ok(Revocation {
                id: r.get(0)?,
                user_id: r.get(1)?,
                session_id: r.get(2)?,
                reason: ErrorCode::try_from(r.get::<_, i32>(3)?).unwrap_or(ErrorCode::SessionRevoked),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_revocation(&self) -> Result<u64, ServiceError> {
        Ok(self.query_row("SELECT coalesce(max(id), 0) FROM revocations", [], |r| r.get(0))?)
    }

    fn password_row(&self, account: &str) -> Result<Option<PasswordRow>, ServiceError> {
        Ok(self
            .prepare_cached(
                // A deleted account is as absent as one that never existed.
                "SELECT id, display_name, password_hash, disabled, must_change_password FROM users
                 WHERE account = ?1 AND deleted = 0",
            )?
            .query_row([account], |r| {
                Ok(PasswordRow {
                    id: r.get(0)?,
                    display_name: r.get(1)?,
                    hash: r.get(2)?,
                    disabled: r.get(3)?,
                    must_change: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn token_session(&self, account: &str, token_hash: &[u8]) -> Result<Option<TokenSession>, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT s.id, u.id, u.display_name, u.disabled, s.device, u.must_change_password, s.last_seen_at
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND u.account = ?2 AND s.kind = 'client' AND u.deleted = 0",
            )?
            .query_row(params![token_hash, account], |r| {
                Ok(TokenSession {
                    session_id: r.get(0)?,
                    user_id: r.get(1)?,
                    display_name: r.get(2)?,
                    disabled: r.get(3)?,
                    device: r.get(4)?,
                    must_change: r.get(5)?,
                    last_seen_at: r.get(6)?,
                })
            })
            .optional()?)
    }

    fn caller_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<Caller>, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT u.id, u.account, s.id, u.roles, u.must_change_password, s.second_factor,
                        u.totp_secret IS NOT NULL, s.last_seen_at
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.kind = 'console' AND u.disabled = 0 AND u.deleted = 0",
            )?
            .query_row([token_hash], |r| {
                let roles: String = r.get(3)?;
                Ok(Caller {
                    user_id: r.get(0)?,
                    account: r.get(1)?,
                    session_id: r.get(2)?,
                    roles: roles.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect(),
                    must_change_password: r.get(4)?,
                    second_factor: r.get(5)?,
                    totp_enrolled: r.get(6)?,
                    last_seen_at_ms: r.get(7)?,
                })
            })
            .optional()?)
    }

    fn sessions(&self) -> Result<Vec<SessionRow>, ServiceError> {
        let mut stmt = self.prepare(
            "SELECT s.id, s.user_id, u.account, u.display_name, s.device, s.created_at, s.last_seen_at
             FROM sessions s JOIN users u ON u.id = s.user_id ORDER BY s.last_seen_at DESC LIMIT 10000",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SessionRow {
                id: r.get(0)?,
                user_id: r.get(1)?,
                account: r.get(2)?,
                display_name: r.get(3)?,
                device: r.get(4)?,
                created_at_ms: r.get(5)?,
                last_seen_at_ms: r.get(6)?,
                online: false,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn create_session(
        &self,
        user_id: u64,
        device: &str,
        token_hash: &[u8],
        password_hash: &str,
    ) -> Result<u64, ServiceError> {
        let (current, disabled): (String, bool) = self
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
        Ok(self
            .prepare_cached(
                "INSERT INTO sessions (user_id, device, token_hash, created_at, last_seen_at, kind) VALUES (?1, ?2, ?3, ?4, ?4, ?5)
                 ON CONFLICT (user_id, device) DO UPDATE SET token_hash = ?3, created_at = ?4, last_seen_at = ?4, kind = ?5, second_factor = 0
                 RETURNING id",
            )?
            .query_row(params![user_id, device, token_hash, now, kind], |r| r.get(0))?)
    }

    fn touch_session(&self, session_id: u64, at: i64) -> Result<(), ServiceError> {
        self.prepare_cached("UPDATE sessions SET last_seen_at = max(last_seen_at, ?2) WHERE id = ?1")?
            .execute(params![session_id, at])?;
        Ok(())
    }

    fn replace_password(
        &self,
        user_id: u64,
        old_hash: &str,
        new_hash: &str,
        keep: Option<u64>,
    ) -> Result<(), ServiceError> {
        let changed = self
            .prepare_cached(
                "UPDATE users SET password_hash = ?3, must_change_password = 0 WHERE id = ?1 AND password_hash = ?2",
            )?
            .execute(params![user_id, old_hash, new_hash])?;
        if changed == 0 {
            return Err(ServiceError::BadCredentials);
        }
        let mut stmt = self.prepare("SELECT id FROM sessions WHERE user_id = ?1 AND id IS NOT ?2")?;
        let others: Vec<u64> =
            stmt.query_map(params![user_id, keep], |r| r.get(0))?.collect::<Result<_, _>>()?;
        for id in others {
            self.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
            self.revoke(user_id, Some(id), ErrorCode::SessionRevoked)?;
        }
        Ok(())
    }

    fn end_session(&self, session_id: u64) -> Result<(), ServiceError> {
        self.execute("DELETE FROM sessions WHERE id = ?1", [session_id])?;
        Ok(())
    }

    fn user_deleted(&self, id: u64) -> Result<bool, ServiceError> {
        Ok(self.query_row("SELECT deleted FROM users WHERE id = ?1", [id], |r| r.get(0))?)
    }

    fn require_password_change(&self, user_id: u64) -> Result<(), ServiceError> {
        self.execute("UPDATE users SET must_change_password = 1 WHERE id = ?1", [user_id])?;
        Ok(())
    }

    fn totp_state(&self, user_id: u64) -> Result<TotpState, ServiceError> {
        Ok(self.query_row(
            "SELECT totp_secret, totp_pending, totp_last_step FROM users WHERE id = ?1",
            [user_id],
            |r| Ok(TotpState { secret: r.get(0)?, pending: r.get(1)?, last_step: r.get(2)? }),
        )?)
    }

    fn set_totp_pending(&self, user_id: u64, secret: &[u8]) -> Result<(), ServiceError> {
        self.execute("UPDATE users SET totp_pending = ?2 WHERE id = ?1", params![user_id, secret])?;
        Ok(())
    }

    fn confirm_totp(
        &self,
        user_id: u64,
        secret: &[u8],
        step: i64,
        recovery_hashes: &[Vec<u8>],
    ) -> Result<bool, ServiceError> {
        let changed = self.execute(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?3
             WHERE id = ?1 AND totp_pending = ?2",
            params![user_id, secret, step],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        self.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
        for h in recovery_hashes {
            self.execute(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
                params![user_id, h],
            )?;
        }
        Ok(true)
    }

    fn use_totp_step(&self, user_id: u64, step: i64) -> Result<bool, ServiceError> {
        Ok(self.execute(
            "UPDATE users SET totp_last_step = ?2 WHERE id = ?1 AND totp_last_step < ?2",
            params![user_id, step],
        )? == 1)
    }

    fn use_recovery_code(&self, user_id: u64, code_hash: &[u8]) -> Result<bool, ServiceError> {
        Ok(self.execute(
            "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
            params![user_id, code_hash, now_ms()],
        )? == 1)
    }

    fn recovery_codes_left(&self, user_id: u64) -> Result<u64, ServiceError> {
        Ok(self.query_row(
            "SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
            [user_id],
            |r| r.get(0),
        )?)
    }

    fn mark_second_factor(&self, session_id: u64) -> Result<(), ServiceError> {
        self.execute("UPDATE sessions SET second_factor = 1 WHERE id = ?1", [session_id])?;
        Ok(())
    }

    fn add_pending_change(
        &self,
        kind: &str,
        target: &str,
        detail: &serde_json::Value,
        requested_by: u64,
    ) -> Result<u64, ServiceError> {
        self.execute(
            "INSERT INTO pending_changes (kind, target, detail, requested_by, requested_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![kind, target, detail.to_string(), requested_by, now_ms()],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn pending_changes(&self) -> Result<Vec<PendingChange>, ServiceError> {
        let mut stmt = self.prepare(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending_changes ORDER BY state = 'pending' DESC, id DESC LIMIT 200"
        ))?;
        let rows = stmt.query_map([], pending_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn pending_change(&self, id: u64) -> Result<Option<PendingChange>, ServiceError> {
        Ok(self
            .query_row(
                &format!("SELECT {PENDING_COLUMNS} FROM pending_changes WHERE id = ?1"),
                [id],
                pending_from_row,
            )
            .optional()?)
    }

    fn decide_pending_change(&self, id: u64, state: &str, by: u64) -> Result<bool, ServiceError> {
        Ok(self.execute(
            "UPDATE pending_changes SET state = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1 AND state = 'pending'",
            params![id, state, by, now_ms()],
        )? == 1)
    }

    fn add_role(&self, id: u64, role: &str) -> Result<(), ServiceError> {
        let roles: String = self.query_row("SELECT roles FROM users WHERE id = ?1", [id], |r| r.get(0))?;
        let mut list: Vec<&str> = roles.split(',').filter(|r| !r.is_empty()).collect();
        if !list.contains(&role) {
            list.push(role);
        }
        let version = self.next_dir_version()?;
        self.execute(
            "UPDATE users SET roles = ?2, dir_version = ?3 WHERE id = ?1",
            params![id, list.join(","), version],
        )?;
        Ok(())
    }

    fn forget_totp(&self, user_id: u64) -> Result<(), ServiceError> {
        self.execute("UPDATE users SET totp_secret = NULL, totp_pending = NULL WHERE id = ?1", [user_id])?;
        self.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
        Ok(())
    }

    fn holders_of(&self, role: &str) -> Result<Vec<u64>, ServiceError> {
        let mut stmt = self.prepare(
            "SELECT id FROM users WHERE deleted = 0 AND ',' || roles || ',' LIKE '%,' || ?1 || ',%' ORDER BY id",
        )?;
        let rows = stmt.query_map([role], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
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
