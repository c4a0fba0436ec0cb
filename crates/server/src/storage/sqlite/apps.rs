//! The integration API's rows in SQLite (`apps`, `api_tokens`, and the bot
//! accounts in `users`).

use rusqlite::{params, Connection, OptionalExtension as _};

use crate::error::ServiceError;
use crate::storage::apps::{
    ApiToken, App, AppCredentials, AppEvent, AppFields, AppsStore, DueEvent, IdempotentAnswer, PersonKey,
    RobotRow,
};

const APP_COLUMNS: &str = "id, name, avatar_url, scopes, allowed_cidrs, callback_url, client_id, \
                           bot_user_id, disabled, created_at, updated_at";

fn words(text: String) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn app_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        id: r.get(0)?,
        name: r.get(1)?,
        avatar_url: r.get(2)?,
        scopes: words(r.get(3)?),
        allowed_cidrs: words(r.get(4)?),
        callback_url: r.get(5)?,
        client_id: r.get(6)?,
        bot_user_id: r.get(7)?,
        disabled: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

const ROBOT_COLUMNS: &str =
    "id, conversation_id, name, bot_user_id, created_by, signing_secret, allowed_cidrs, \
                             created_at, removed_at IS NOT NULL";

fn robot_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RobotRow> {
    Ok(RobotRow {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        name: r.get(2)?,
        bot_user_id: r.get(3)?,
        created_by: r.get(4)?,
        signing_secret: r.get(5)?,
        allowed_cidrs: words(r.get(6)?),
        created_at: r.get(7)?,
        removed: r.get(8)?,
    })
}

const EVENT_COLUMNS: &str =
    "e.id, e.app_id, e.kind, e.data, e.created_at, e.state, e.attempts, e.next_attempt_at, \
                             e.last_error, e.delivered_at";

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppEvent> {
    Ok(AppEvent {
        id: r.get(0)?,
        app_id: r.get(1)?,
        kind: r.get(2)?,
        data: r.get(3)?,
        created_at: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: r.get(7)?,
        last_error: r.get(8)?,
        delivered_at: r.get(9)?,
    })
}

fn changed_one(n: usize) -> Result<(), ServiceError> {
    if n == 0 {
        Err(ServiceError::NotFound("application"))
    } else {
        Ok(())
    }
}

impl AppsStore for Connection {
    fn insert_bot_user(
        &self,
        account: &str,
        display_name: &str,
        dir_version: u64,
        now_ms: i64,
    ) -> Result<u64, ServiceError> {
        let (pinyin, initials) = crate::util::pinyin_keys(display_name);
        // '!' is no password hash: a password login finds nothing to match.
        self.execute(
            "INSERT INTO users (account, display_name, password_hash, roles, pinyin, initials, dir_version, created_at)
             VALUES (?1, ?2, '!', 'bot', ?3, ?4, ?5, ?6)",
            params![account, display_name, pinyin, initials, dir_version, now_ms],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn rename_bot_user(&self, id: u64, display_name: &str, dir_version: u64) -> Result<(), ServiceError> {
        let (pinyin, initials) = crate::util::pinyin_keys(display_name);
        self.execute(
            "UPDATE users SET display_name = ?2, pinyin = ?3, initials = ?4, dir_version = ?5
             WHERE id = ?1 AND roles = 'bot'",
            params![id, display_name, pinyin, initials, dir_version],
        )?;
        Ok(())
    }

    fn delete_bot_user(&self, id: u64, dir_version: u64) -> Result<(), ServiceError> {
        self.execute(
            "UPDATE users SET deleted = 1, disabled = 1, dir_version = ?2 WHERE id = ?1 AND roles = 'bot'",
            params![id, dir_version],
        )?;
        Ok(())
    }

    fn insert_app(
        &self,
        f: &AppFields,
        client_id: &str,
        secret_hash: &[u8],
        signing_secret: &str,
        bot_user_id: u64,
        now_ms: i64,
    ) -> Result<u64, ServiceError> {
        self.execute(
            "INSERT INTO apps (name, avatar_url, scopes, allowed_cidrs, callback_url, client_id, secret_hash,
                               signing_secret, bot_user_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            params![
                f.name,
                f.avatar_url,
                f.scopes.join(" "),
                f.allowed_cidrs.join(" "),
                f.callback_url,
                client_id,
                secret_hash,
                signing_secret,
                bot_user_id,
                now_ms
            ],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn apps(&self) -> Result<Vec<App>, ServiceError> {
        let mut stmt = self.prepare(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY id"))?;
        let rows = stmt.query_map([], app_from_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn app(&self, id: u64) -> Result<Option<App>, ServiceError> {
        Ok(self
            .query_row(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1"), [id], app_from_row)
            .optional()?)
    }

    fn app_credentials(&self, client_id: &str) -> Result<Option<AppCredentials>, ServiceError> {
        Ok(self
            .query_row(
                &format!("SELECT {APP_COLUMNS}, secret_hash, signing_secret FROM apps WHERE client_id = ?1"),
                [client_id],
                |r| {
                    Ok(AppCredentials {
                        app: app_from_row(r)?,
                        secret_hash: r.get(11)?,
                        signing_secret: r.get(12)?,
                    })
                },
            )
            .optional()?)
    }

    fn update_app(&self, id: u64, f: &AppFields, now_ms: i64) -> Result<(), ServiceError> {
        changed_one(self.execute(
            "UPDATE apps SET name = ?2, avatar_url = ?3, scopes = ?4, allowed_cidrs = ?5, callback_url = ?6,
                             updated_at = ?7
             WHERE id = ?1",
            params![
                id,
                f.name,
                f.avatar_url,
                f.scopes.join(" "),
                f.allowed_cidrs.join(" "),
                f.callback_url,
                now_ms
            ],
        )?)
    }

    fn set_app_disabled(&self, id: u64, disabled: bool, now_ms: i64) -> Result<(), ServiceError> {
        changed_one(self.execute(
            "UPDATE apps SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, disabled, now_ms],
        )?)
    }

    fn set_app_secrets(
        &self,
        id: u64,
        secret_hash: &[u8],
        signing_secret: &str,
        now_ms: i64,
    ) -> Result<(), ServiceError> {
        changed_one(self.execute(
            "UPDATE apps SET secret_hash = ?2, signing_secret = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, secret_hash, signing_secret, now_ms],
        )?)?;
        self.execute("DELETE FROM api_tokens WHERE app_id = ?1", [id])?;
        Ok(())
    }

    fn delete_app(&self, id: u64) -> Result<(), ServiceError> {
        self.execute("DELETE FROM api_tokens WHERE app_id = ?1", [id])?;
        changed_one(self.execute("DELETE FROM apps WHERE id = ?1", [id])?)
    }

    fn insert_api_token(&self, token_hash: &[u8], t: &ApiToken) -> Result<(), ServiceError> {
        self.execute(
            "INSERT INTO api_tokens (token_hash, app_id, scopes, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, t.app_id, t.scopes.join(" "), t.expires_at],
        )?;
        Ok(())
    }

    fn api_token(&self, token_hash: &[u8]) -> Result<Option<ApiToken>, ServiceError> {
        Ok(self
            .query_row(
                "SELECT app_id, scopes, expires_at FROM api_tokens WHERE token_hash = ?1",
                [token_hash],
                |r| Ok(ApiToken { app_id: r.get(0)?, scopes: words(r.get(1)?), expires_at: r.get(2)? }),
            )
            .optional()?)
    }

    fn people_by(&self, field: PersonKey, value: &str, limit: u32) -> Result<Vec<u64>, ServiceError> {
        let column = match field {
            PersonKey::Account => "account",
            PersonKey::EmployeeNo => "employee_no",
            PersonKey::Phone => "phone",
        };
        let mut stmt = self.prepare(&format!(
            "SELECT id FROM users WHERE {column} = ?1 AND ?1 != '' AND deleted = 0 AND roles != 'bot'
             ORDER BY id LIMIT ?2"
        ))?;
        let ids = stmt.query_map(params![value, limit], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(ids)
    }

    fn idempotent_answer(&self, app_id: u64, key: &str) -> Result<Option<IdempotentAnswer>, ServiceError> {
        Ok(self
            .query_row(
                "SELECT body_hash, status, response, created_at FROM api_idempotency WHERE app_id = ?1 AND key = ?2",
                params![app_id, key],
                |r| {
                    Ok(IdempotentAnswer {
                        body_hash: r.get(0)?,
                        status: r.get(1)?,
                        response: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn keep_idempotent_answer(
        &self,
        app_id: u64,
        key: &str,
        a: &IdempotentAnswer,
        forget_before_ms: i64,
    ) -> Result<(), ServiceError> {
        self.execute("DELETE FROM api_idempotency WHERE created_at < ?1", [forget_before_ms])?;
        self.execute(
            "INSERT OR IGNORE INTO api_idempotency (app_id, key, body_hash, status, response, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![app_id, key, a.body_hash, a.status, a.response, a.created_at],
        )?;
        Ok(())
    }

    fn insert_robot(
        &self,
        conversation_id: u64,
        name: &str,
        bot_user_id: u64,
        created_by: u64,
        token_hash: &[u8],
        signing_secret: Option<&str>,
        allowed_cidrs: &[String],
        now_ms: i64,
    ) -> Result<u64, ServiceError> {
        self.execute(
            "INSERT INTO group_robots (conversation_id, name, bot_user_id, created_by, token_hash, signing_secret,
                                       allowed_cidrs, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                conversation_id,
                name,
                bot_user_id,
                created_by,
                token_hash,
                signing_secret,
                allowed_cidrs.join(" "),
                now_ms
            ],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn robots(&self, conversation_id: u64) -> Result<Vec<RobotRow>, ServiceError> {
        let mut stmt = self.prepare(&format!(
            "SELECT {ROBOT_COLUMNS} FROM group_robots WHERE conversation_id = ?1 AND removed_at IS NULL ORDER BY id"
        ))?;
        let rows = stmt.query_map([conversation_id], robot_from_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn robot_by_token(&self, token_hash: &[u8]) -> Result<Option<RobotRow>, ServiceError> {
        Ok(self
            .query_row(
                &format!("SELECT {ROBOT_COLUMNS} FROM group_robots WHERE token_hash = ?1"),
                [token_hash],
                robot_from_row,
            )
            .optional()?)
    }

    fn remove_robot(&self, conversation_id: u64, id: u64, now_ms: i64) -> Result<Option<u64>, ServiceError> {
        Ok(self
            .query_row(
                "UPDATE group_robots SET removed_at = ?3
                 WHERE id = ?2 AND conversation_id = ?1 AND removed_at IS NULL RETURNING bot_user_id",
                params![conversation_id, id, now_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn app_of_bot(&self, user_id: u64) -> Result<Option<u64>, ServiceError> {
        Ok(self
            .prepare_cached("SELECT id FROM apps WHERE bot_user_id = ?1")?
            .query_row([user_id], |r| r.get(0))
            .optional()?)
    }

    fn insert_event(&self, app_id: u64, kind: &str, data: &str, now_ms: i64) -> Result<u64, ServiceError> {
        self.execute(
            "INSERT INTO app_events (app_id, kind, data, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![app_id, kind, data, now_ms],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn due_events(&self, now_ms: i64, limit: u32) -> Result<Vec<DueEvent>, ServiceError> {
        let mut stmt = self.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS}, a.callback_url, a.signing_secret FROM app_events e JOIN apps a ON a.id = e.app_id
             WHERE e.state = 'pending' AND e.next_attempt_at <= ?1 AND a.disabled = 0 AND a.callback_url != ''
             ORDER BY e.next_attempt_at, e.id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![now_ms, limit], |r| {
                Ok(DueEvent {
                    event: event_from_row(r)?,
                    callback_url: r.get(10)?,
                    signing_secret: r.get(11)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn record_attempt(
        &self,
        id: u64,
        delivered_at: Option<i64>,
        error: &str,
        next_attempt_at: Option<i64>,
    ) -> Result<(), ServiceError> {
        let state = match (delivered_at, next_attempt_at) {
            (Some(_), _) => "delivered",
            (None, Some(_)) => "pending",
            (None, None) => "failed",
        };
        self.execute(
            "UPDATE app_events SET state = ?2, attempts = attempts + 1, delivered_at = ?3,
                    last_error = CASE WHEN ?4 = '' THEN last_error ELSE ?4 END,
                    next_attempt_at = COALESCE(?5, next_attempt_at)
             WHERE id = ?1",
            params![id, state, delivered_at, error, next_attempt_at],
        )?;
        Ok(())
    }

    fn events_after(&self, app_id: u64, after: u64, limit: u32) -> Result<Vec<AppEvent>, ServiceError> {
        let mut stmt = self.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM app_events e WHERE e.app_id = ?1 AND e.id > ?2 ORDER BY e.id LIMIT ?3"
        ))?;
        let rows =
            stmt.query_map(params![app_id, after, limit], event_from_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn latest_events(&self, app_id: u64, limit: u32) -> Result<Vec<AppEvent>, ServiceError> {
        let mut stmt = self.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM app_events e WHERE e.app_id = ?1 ORDER BY e.id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![app_id, limit], event_from_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn forget_old_events(&self, before_ms: i64) -> Result<usize, ServiceError> {
        Ok(self.execute("DELETE FROM app_events WHERE created_at < ?1 AND state != 'pending'", [before_ms])?)
    }

    fn forget_expired_api_tokens(&self, now_ms: i64) -> Result<usize, ServiceError> {
        Ok(self.execute("DELETE FROM api_tokens WHERE expires_at < ?1", [now_ms])?)
    }
}
