//! Accounts and sessions: Argon2id password hashes, random session tokens
//! stored hashed, throttling of failed logins, and the administrator's user
//! management (used by the `hutong-server user` subcommands). Nobody
//! self-registers: there is no protocol request that creates an account.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hutong_protocol::ErrorCode;
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::error::ServiceError;
use crate::storage::now_ms;

/// Argon2id with the OWASP minimum: 19 MiB, two passes, one lane.
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("valid params"),
    )
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hash: {e}"))?
        .to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// A new random secret: 32 bytes, hex.
pub fn new_token() -> String {
    hex::encode(random_bytes::<32>())
}

/// A random password of 16 readable characters for first start and resets.
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    random_bytes::<16>().iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub const MIN_PASSWORD_LEN: usize = 8;

pub fn check_password_policy(password: &str) -> anyhow::Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        anyhow::bail!("a password has at least {MIN_PASSWORD_LEN} characters");
    }
    Ok(())
}

pub fn check_account_name(account: &str) -> anyhow::Result<()> {
    let ok = !account.is_empty()
        && account.len() <= 64
        && account.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        anyhow::bail!("an account name has 1 to 64 characters: letters, digits, '.', '_' or '-'");
    }
    Ok(())
}

// ------------------------------------------------------------------ administration

#[derive(Debug, Clone, serde::Serialize)]
pub struct UserRow {
    pub id: u64,
    pub account: String,
    pub display_name: String,
    pub disabled: bool,
    pub is_admin: bool,
}

pub fn add_user(
    conn: &Connection,
    account: &str,
    display_name: &str,
    password: &str,
    is_admin: bool,
) -> anyhow::Result<u64> {
    check_account_name(account)?;
    check_password_policy(password)?;
    let display_name = if display_name.trim().is_empty() { account } else { display_name.trim() };
    let hash = hash_password(password)?;
    let exists: bool =
        conn.query_row("SELECT count(*) FROM users WHERE account = ?1", [account], |r| r.get(0))?;
    if exists {
        anyhow::bail!("the account {account:?} already exists");
    }
    let (pinyin, initials) = crate::util::pinyin_keys(display_name);
    let version = crate::storage::sqlite::directory::next_version(conn)?;
    conn.execute(
        "INSERT INTO users (account, display_name, password_hash, is_admin, roles, pinyin, initials, dir_version, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            account,
            display_name,
            hash,
            is_admin,
            if is_admin { "admin" } else { "" },
            pinyin,
            initials,
            version,
            now_ms()
        ],
    )?;
    Ok(conn.last_insert_rowid() as u64)
}

pub fn list_users(conn: &Connection) -> anyhow::Result<Vec<UserRow>> {
    let mut stmt =
        conn.prepare("SELECT id, account, display_name, disabled, is_admin FROM users ORDER BY id")?;
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

fn user_id(conn: &Connection, account: &str) -> anyhow::Result<u64> {
    conn.query_row("SELECT id FROM users WHERE account = ?1", [account], |r| r.get(0))
        .optional()?
        .ok_or_else(|| anyhow::anyhow!("no account named {account:?}"))
}

/// Disables (or re-enables) an account. Disabling deletes its sessions and
/// records a revocation, which the running server turns into closed
/// connections within a fraction of a second.
pub fn set_disabled(conn: &Connection, account: &str, disabled: bool) -> anyhow::Result<()> {
    let id = user_id(conn, account)?;
    let version = crate::storage::sqlite::directory::next_version(conn)?;
    conn.execute(
        "UPDATE users SET disabled = ?2, dir_version = ?3 WHERE id = ?1",
        params![id, disabled, version],
    )?;
    if disabled {
        conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        revoke(conn, id, None, ErrorCode::AccountDisabled)?;
    }
    Ok(())
}

/// Sets a new password and ends every session of the account.
pub fn set_password(conn: &Connection, account: &str, password: &str) -> anyhow::Result<()> {
    check_password_policy(password)?;
    let id = user_id(conn, account)?;
    let hash = hash_password(password)?;
    conn.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![id, hash])?;
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    revoke(conn, id, None, ErrorCode::SessionRevoked)?;
    Ok(())
}

fn revoke(
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

/// A revocation the running server has not acted on yet.
pub struct Revocation {
    pub id: u64,
    pub user_id: u64,
    pub session_id: Option<u64>,
    pub reason: ErrorCode,
}

pub fn revocations_after(conn: &Connection, after: u64) -> rusqlite::Result<Vec<Revocation>> {
    let mut stmt = conn.prepare_cached(
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
    rows.collect()
}

pub fn last_revocation(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT coalesce(max(id), 0) FROM revocations", [], |r| r.get(0))
}

// ------------------------------------------------------------------ login

/// Who logged in, on which session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: u64,
    pub session_id: u64,
    pub display_name: String,
    /// Set after a password login: the new session's token.
    pub token: Option<String>,
}

/// Counts failed logins per account and per address in a sliding window.
pub struct Throttle {
    per_account: u32,
    per_address: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    pub fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        Throttle { per_account, per_address, window, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(account: &str, addr: Option<IpAddr>) -> [Option<String>; 2] {
        [Some(format!("a:{}", account.to_lowercase())), addr.map(|a| format!("i:{a}"))]
    }

    /// `Err(RateLimited)` when the account or the address is locked out.
    fn check(&self, account: &str, addr: Option<IpAddr>) -> Result<(), ServiceError> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (key, limit) in Self::keys(account, addr).into_iter().zip([self.per_account, self.per_address]) {
            if let Some((count, since)) = key.and_then(|k| map.get(&k).copied()) {
                let elapsed = since.elapsed();
                if count >= limit && elapsed < self.window {
                    return Err(ServiceError::RateLimited((self.window - elapsed).as_millis() as u64));
                }
            }
        }
        Ok(())
    }

    fn fail(&self, account: &str, addr: Option<IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        for key in Self::keys(account, addr).into_iter().flatten() {
            let entry = map.entry(key).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= self.window {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
    }

    fn succeed(&self, account: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("a:{}", account.to_lowercase()));
    }
}

/// Checks credentials. Password checks run on the blocking pool, at most
/// `hashing` at a time, so a login storm cannot starve message traffic.
pub struct Authenticator {
    pub throttle: Throttle,
    pub hashing: Arc<Semaphore>,
}

impl Authenticator {
    /// A client's login. Refused with `PasswordChangeRequired` while the
    /// person must choose a new password (see [`Authenticator::change_password`]).
    pub async fn login(
        &self,
        db: &crate::storage::Db,
        req: hutong_protocol::v1::Login,
        addr: Option<IpAddr>,
    ) -> Result<Authenticated, ServiceError> {
        self.login_with(db, req, addr, false).await
    }

    /// The console's login: lets a person who must change their password in,
    /// but the API then allows nothing else until they have.
    pub async fn login_allowing_password_change(
        &self,
        db: &crate::storage::Db,
        req: hutong_protocol::v1::Login,
        addr: Option<IpAddr>,
    ) -> Result<Authenticated, ServiceError> {
        self.login_with(db, req, addr, true).await
    }

    async fn login_with(
        &self,
        db: &crate::storage::Db,
        req: hutong_protocol::v1::Login,
        addr: Option<IpAddr>,
        allow_must_change: bool,
    ) -> Result<Authenticated, ServiceError> {
        use hutong_protocol::v1::login::Secret;
        if req.account.len() > 64 || req.device.len() > 64 {
            return Err(ServiceError::BadRequest(
                "account and device names have at most 64 characters".into(),
            ));
        }
        let device = if req.device.is_empty() { "default".to_owned() } else { req.device.clone() };
        self.throttle.check(&req.account, addr)?;
        let result = match req.secret {
            Some(Secret::Token(token)) => {
                let account = req.account.clone();
                db.read(move |conn| token_login(conn, &account, &token, &device, allow_must_change)).await
            }
            Some(Secret::Password(password)) => {
                let _permit = self.hashing.acquire().await.map_err(|_| ServiceError::ShuttingDown)?;
                let account = req.account.clone();
                db.read(move |conn| password_login(conn, &account, &password, &device, allow_must_change))
                    .await
            }
            None => Err(ServiceError::BadRequest("a login needs a password or a token".into())),
        };
        match &result {
            Err(ServiceError::BadCredentials) => self.throttle.fail(&req.account, addr),
            Ok(_) => self.throttle.succeed(&req.account),
            Err(_) => {}
        }
        result
    }

    /// Hashes a password on the blocking pool, within the hashing limit.
    pub async fn hash(&self, password: String) -> Result<String, ServiceError> {
        let _permit = self.hashing.acquire().await.map_err(|_| ServiceError::ShuttingDown)?;
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Sets a new password after checking the old one (throttled like a
    /// login). Ends every session of the person except `keep`.
    pub async fn change_password(
        &self,
        db: &crate::storage::Db,
        account: &str,
        old: &str,
        new: &str,
        keep: Option<u64>,
    ) -> Result<(), ServiceError> {
        check_password_policy(new).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        if old == new {
            return Err(ServiceError::BadRequest("the new password must differ from the old one".into()));
        }
        self.throttle.check(account, None)?;
        let _permit = self.hashing.acquire().await.map_err(|_| ServiceError::ShuttingDown)?;
        let (account, old, new) = (account.to_owned(), old.to_owned(), new.to_owned());
        let result = db
            .read({
                let account = account.clone();
                move |conn| {
                    let row: Option<(u64, String, bool)> = conn
                        .query_row(
                            "SELECT id, password_hash, disabled FROM users WHERE account = ?1",
                            [&account],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()?;
                    let Some((id, _, disabled)) = row.filter(|(_, h, _)| verify_password(&old, h)) else {
                        return Err(ServiceError::BadCredentials);
                    };
                    if disabled {
                        return Err(ServiceError::AccountDisabled);
                    }
                    let new_hash = hash_password(&new).map_err(|e| ServiceError::Internal(e.to_string()))?;
                    conn.execute(
                        "UPDATE users SET password_hash = ?2, must_change_password = 0 WHERE id = ?1",
                        params![id, new_hash],
                    )?;
                    end_other_sessions(conn, id, keep)?;
                    Ok(())
                }
            })
            .await;
        match &result {
            Err(ServiceError::BadCredentials) => self.throttle.fail(&account, None),
            Ok(_) => self.throttle.succeed(&account),
            Err(_) => {}
        }
        result
    }
}

/// Stored instead of a hash for people who have no password yet (imported
/// without one): no password matches it.
pub const NO_PASSWORD: &str = "!";

fn password_login(
    conn: &Connection,
    account: &str,
    password: &str,
    device: &str,
    allow_must_change: bool,
) -> Result<Authenticated, ServiceError> {
    let row: Option<(u64, String, String, bool, bool)> = conn
        .prepare_cached(
            "SELECT id, display_name, password_hash, disabled, must_change_password FROM users WHERE account = ?1",
        )?
        .query_row([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    let Some((user_id, display_name, hash, disabled, must_change)) = row else {
        // Spend the same time as a real check so account names cannot be probed.
        let _ = verify_password(password, DUMMY_HASH);
        return Err(ServiceError::BadCredentials);
    };
    if !verify_password(password, &hash) {
        return Err(ServiceError::BadCredentials);
    }
    if disabled {
        return Err(ServiceError::AccountDisabled);
    }
    if must_change && !allow_must_change {
        return Err(ServiceError::PasswordChangeRequired);
    }
    let token = new_token();
    let now = now_ms();
    // One session per device: logging in again on a device replaces its session.
    conn.prepare_cached(
        "INSERT INTO sessions (user_id, device, token_hash, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (user_id, device) DO UPDATE SET token_hash = ?3, created_at = ?4, last_seen_at = ?4",
    )?
    .execute(params![user_id, device, token_hash(&token), now])?;
    let session_id: u64 = conn
        .prepare_cached("SELECT id FROM sessions WHERE user_id = ?1 AND device = ?2")?
        .query_row(params![user_id, device], |r| r.get(0))?;
    Ok(Authenticated { user_id, session_id, display_name, token: Some(token) })
}

/// A valid Argon2id hash of a random password, for constant-time failures.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2bUHq3E7dC9bS1n0C3WbI3m5fqO8xqgWIGVZtq9YIzs";

fn token_login(
    conn: &Connection,
    account: &str,
    token: &str,
    device: &str,
    allow_must_change: bool,
) -> Result<Authenticated, ServiceError> {
    let row: Option<(u64, u64, String, bool, String, bool)> = conn
        .prepare_cached(
            "SELECT s.id, u.id, u.display_name, u.disabled, s.device, u.must_change_password
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1 AND u.account = ?2",
        )?
        .query_row(params![token_hash(token), account], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    let Some((session_id, user_id, display_name, disabled, session_device, must_change)) = row else {
        return Err(ServiceError::SessionRevoked);
    };
    if disabled {
        return Err(ServiceError::AccountDisabled);
    }
    if must_change && !allow_must_change {
        return Err(ServiceError::PasswordChangeRequired);
    }
    if session_device != device {
        return Err(ServiceError::BadRequest("this token belongs to another device".into()));
    }
    // last_seen_at is advisory; a busy writer must not fail the login.
    let _ = conn
        .prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![session_id, now_ms()]));
    Ok(Authenticated { user_id, session_id, display_name, token: None })
}

/// Who calls the administration API, from the bearer token.
pub struct Caller {
    pub user_id: u64,
    pub account: String,
    pub session_id: u64,
    pub roles: Vec<String>,
    pub must_change_password: bool,
}

/// The administration API's caller, from a console session token.
pub fn caller_by_token(conn: &Connection, token: &str) -> Result<Option<Caller>, ServiceError> {
    let row = conn
        .prepare_cached(
            "SELECT u.id, u.account, s.id, u.roles, u.must_change_password FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ?1 AND u.disabled = 0 AND u.deleted = 0",
        )?
        .query_row([token_hash(token)], |r| {
            let roles: String = r.get(3)?;
            Ok(Caller {
                user_id: r.get(0)?,
                account: r.get(1)?,
                session_id: r.get(2)?,
                roles: roles.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect(),
                must_change_password: r.get(4)?,
            })
        })
        .optional()?;
    Ok(row)
}

/// Ends every session of a person and closes their live connections.
pub fn end_all_sessions(conn: &Connection, user_id: u64, reason: ErrorCode) -> Result<(), ServiceError> {
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
    revoke(conn, user_id, None, reason)?;
    Ok(())
}

/// Ends every session but `keep` (after a password change) and closes their connections.
fn end_other_sessions(conn: &Connection, user_id: u64, keep: Option<u64>) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT id FROM sessions WHERE user_id = ?1 AND id IS NOT ?2")?;
    let others: Vec<u64> = stmt.query_map(params![user_id, keep], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for id in others {
        conn.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
        revoke(conn, user_id, Some(id), ErrorCode::SessionRevoked)?;
    }
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    pub id: u64,
    pub user_id: u64,
    pub account: String,
    pub display_name: String,
    pub device: String,
    pub created_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub online: bool,
}

pub fn sessions(conn: &Connection) -> Result<Vec<SessionRow>, ServiceError> {
    let mut stmt = conn.prepare(
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

/// Ends one session (logout); the token stops working at once.
pub fn end_session(conn: &Connection, session_id: u64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM sessions WHERE id = ?1", [session_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("x", DUMMY_HASH));
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
    }

    #[test]
    fn throttle_locks_after_limit() {
        let t = Throttle::new(3, 100, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(t.check("alice", None).is_ok());
            t.fail("alice", None);
        }
        assert!(matches!(t.check("ALICE", None), Err(ServiceError::RateLimited(_))));
        assert!(t.check("bob", None).is_ok());
    }
}
