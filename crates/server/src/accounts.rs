//! Accounts and sessions: Argon2id password hashes, random session tokens
//! stored hashed, throttling of failed logins, and the administrator's user
//! management (used by the `hutong-server user` subcommands). Nobody
//! self-registers: there is no protocol request that creates an account.
//! Inside the server, logins read through the read pool and write only
//! through the writer thread; Argon2 never runs while a connection is held.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hutong_protocol::ErrorCode;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::error::ServiceError;
pub use crate::storage::accounts::{Caller, Revocation, SessionRow, UserRow};
use crate::storage::accounts::{NewUser, PasswordRow};
use crate::storage::{now_ms, Store, WriteQueue};

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

pub fn add_user(
    store: &dyn Store,
    account: &str,
    display_name: &str,
    password: &str,
    is_admin: bool,
) -> anyhow::Result<u64> {
    check_account_name(account)?;
    check_password_policy(password)?;
    let display_name = if display_name.trim().is_empty() { account } else { display_name.trim() };
    let hash = hash_password(password)?;
    if store.account_exists(account)? {
        anyhow::bail!("the account {account:?} already exists");
    }
    let (pinyin, initials) = crate::util::pinyin_keys(display_name);
    let dir_version = store.next_dir_version()?;
    Ok(store.insert_user(&NewUser {
        account,
        display_name,
        password_hash: &hash,
        is_admin,
        pinyin: &pinyin,
        initials: &initials,
        dir_version,
        created_at: now_ms(),
    })?)
}

pub fn list_users(store: &dyn Store) -> anyhow::Result<Vec<UserRow>> {
    Ok(store.list_users()?)
}

fn user_id(store: &dyn Store, account: &str) -> anyhow::Result<u64> {
    store.user_id_by_account(account)?.ok_or_else(|| anyhow::anyhow!("no account named {account:?}"))
}

/// Disables (or re-enables) an account. Disabling deletes its sessions and
/// records a revocation, which the running server turns into closed
/// connections within a fraction of a second.
pub fn set_disabled(store: &dyn Store, account: &str, disabled: bool) -> anyhow::Result<()> {
    let id = user_id(store, account)?;
    let version = store.next_dir_version()?;
    store.set_user_disabled(id, disabled, version)?;
    if disabled {
        store.delete_sessions_of(id)?;
        store.revoke(id, None, ErrorCode::AccountDisabled)?;
    }
    Ok(())
}

/// Sets a new password and ends every session of the account.
pub fn set_password(store: &dyn Store, account: &str, password: &str) -> anyhow::Result<()> {
    check_password_policy(password)?;
    let id = user_id(store, account)?;
    let hash = hash_password(password)?;
    store.set_password_hash(id, &hash, None)?;
    store.delete_sessions_of(id)?;
    store.revoke(id, None, ErrorCode::SessionRevoked)?;
    Ok(())
}

pub fn revocations_after(store: &dyn Store, after: u64) -> Result<Vec<Revocation>, ServiceError> {
    store.revocations_after(after)
}

pub fn last_revocation(store: &dyn Store) -> Result<u64, ServiceError> {
    store.last_revocation()
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
///
/// Logins only read through the read pool, and only for a moment: Argon2
/// runs with no database connection held, and every write (a new session,
/// `last_seen_at`, a changed password, a logout) is a command to the
/// writer thread. So logins never compete with the writer for the write
/// lock (no batch of sends can time out waiting for it), and their writes
/// share the writer's group commit instead of an fsync each.
pub struct Authenticator {
    pub throttle: Throttle,
    pub hashing: Arc<Semaphore>,
    /// The writer thread's queue: every login write goes through it.
    pub writer: Arc<dyn WriteQueue>,
}

/// `last_seen_at` is advisory (the console shows it): a token login records
/// it only when the stored value is older than this, so a reconnect storm
/// costs the writer at most one tiny write per session and interval.
const TOUCH_EVERY_MS: i64 = 60_000;

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
                self.token_login(db, &req.account, &token, &device, allow_must_change).await
            }
            Some(Secret::Password(password)) => {
                self.password_login(db, &req.account, password, device, allow_must_change).await
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

    async fn token_login(
        &self,
        db: &crate::storage::Db,
        account: &str,
        token: &str,
        device: &str,
        allow_must_change: bool,
    ) -> Result<Authenticated, ServiceError> {
        let (account, hash, device) = (account.to_owned(), token_hash(token), device.to_owned());
        let (auth, last_seen) =
            db.read(move |conn| token_session(conn, &account, &hash, &device, allow_must_change)).await?;
        let now = now_ms();
        if now - last_seen >= TOUCH_EVERY_MS {
            // Not awaited past the queue: the login does not wait for a
            // commit of an advisory timestamp.
            let session_id = auth.session_id;
            let touch = Box::new(move |st: &dyn Store| st.touch_session(session_id, now).map(|()| 0));
            if let Err(e) = self.writer.enqueue(touch).await {
                tracing::debug!(error = %e, "last_seen_at not recorded");
            }
        }
        Ok(auth)
    }

    async fn password_login(
        &self,
        db: &crate::storage::Db,
        account: &str,
        password: String,
        device: String,
        allow_must_change: bool,
    ) -> Result<Authenticated, ServiceError> {
        let account = account.to_owned();
        let row = db.read(move |conn| password_row(conn, &account)).await?;
        let stored = row.as_ref().map(|r| r.hash.clone());
        if !self.verify(password, stored).await? {
            return Err(ServiceError::BadCredentials);
        }
        let row = row.ok_or(ServiceError::BadCredentials)?;
        if row.disabled {
            return Err(ServiceError::AccountDisabled);
        }
        if row.must_change && !allow_must_change {
            return Err(ServiceError::PasswordChangeRequired);
        }
        let token = new_token();
        let (user_id, hash, password_hash) = (row.id, token_hash(&token), row.hash);
        let create =
            Box::new(move |st: &dyn Store| st.create_session(user_id, &device, &hash, &password_hash));
        let session_id = self.writer.submit(create).await?;
        Ok(Authenticated { user_id: row.id, session_id, display_name: row.display_name, token: Some(token) })
    }

    /// Checks `password` against `hash` (a dummy one when there is none, so
    /// account names cannot be probed by timing) on the blocking pool,
    /// within the hashing limit and holding no database connection.
    async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ServiceError> {
        let _permit = self.hashing.acquire().await.map_err(|_| ServiceError::ShuttingDown)?;
        tokio::task::spawn_blocking(move || {
            let found = hash.is_some();
            let ok = verify_password(&password, hash.as_deref().unwrap_or(DUMMY_HASH));
            found && ok
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("password check failed: {e}")))
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
        let result = async {
            let name = account.to_owned();
            let row = db.read(move |conn| password_row(conn, &name)).await?;
            if !self.verify(old.to_owned(), row.as_ref().map(|r| r.hash.clone())).await? {
                return Err(ServiceError::BadCredentials);
            }
            let row = row.ok_or(ServiceError::BadCredentials)?;
            if row.disabled {
                return Err(ServiceError::AccountDisabled);
            }
            let new_hash = self.hash(new.to_owned()).await?;
            let (user_id, old_hash) = (row.id, row.hash);
            let change = Box::new(move |st: &dyn Store| {
                st.replace_password(user_id, &old_hash, &new_hash, keep).map(|()| 0)
            });
            self.writer.submit(change).await.map(|_| ())
        }
        .await;
        match &result {
            Err(ServiceError::BadCredentials) => self.throttle.fail(account, None),
            Ok(_) => self.throttle.succeed(account),
            Err(_) => {}
        }
        result
    }

    /// Ends one session (logout) through the writer; the token stops
    /// working once this returns.
    pub async fn end_session(&self, session_id: u64) -> Result<(), ServiceError> {
        let end = Box::new(move |st: &dyn Store| st.end_session(session_id).map(|()| 0));
        self.writer.submit(end).await.map(|_| ())
    }
}

/// Stored instead of a hash for people who have no password yet (imported
/// without one): no password matches it.
pub const NO_PASSWORD: &str = "!";

fn password_row(store: &dyn Store, account: &str) -> Result<Option<PasswordRow>, ServiceError> {
    store.password_row(account)
}

/// A valid Argon2id hash of a random password, for constant-time failures.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2bUHq3E7dC9bS1n0C3WbI3m5fqO8xqgWIGVZtq9YIzs";

/// The session a token names, with its `last_seen_at`. Reads only.
fn token_session(
    store: &dyn Store,
    account: &str,
    token_hash: &[u8],
    device: &str,
    allow_must_change: bool,
) -> Result<(Authenticated, i64), ServiceError> {
    let Some(row) = store.token_session(account, token_hash)? else {
        return Err(ServiceError::SessionRevoked);
    };
    if row.disabled {
        return Err(ServiceError::AccountDisabled);
    }
    if row.must_change && !allow_must_change {
        return Err(ServiceError::PasswordChangeRequired);
    }
    if row.device != device {
        return Err(ServiceError::BadRequest("this token belongs to another device".into()));
    }
    let auth = Authenticated {
        user_id: row.user_id,
        session_id: row.session_id,
        display_name: row.display_name,
        token: None,
    };
    Ok((auth, row.last_seen_at))
}

// ------------------------------------------------------------------ the console

/// The administration API's caller, from a console session token.
pub fn caller_by_token(store: &dyn Store, token: &str) -> Result<Option<Caller>, ServiceError> {
    store.caller_by_token_hash(&token_hash(token))
}

/// Ends every session of a person and closes their live connections.
pub fn end_all_sessions(store: &dyn Store, user_id: u64, reason: ErrorCode) -> Result<(), ServiceError> {
    store.delete_sessions_of(user_id)?;
    store.revoke(user_id, None, reason)
}

/// Ends one session (logout); the token stops working at once.
pub fn end_session(store: &dyn Store, session_id: u64) -> Result<(), ServiceError> {
    store.end_session(session_id)
}

pub fn sessions(store: &dyn Store) -> Result<Vec<SessionRow>, ServiceError> {
    store.sessions()
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

    /// Logins read through the pool and write only through the writer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logins_write_only_through_the_writer() {
        use hutong_protocol::v1::{login::Secret, Login};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        crate::storage::migrate(&path).unwrap();
        let admin = crate::storage::open_connection(&path).unwrap();
        add_user(&admin, "alice", "Alice", "password-1", false).unwrap();
        let db = crate::storage::Db::open(&path, 2).unwrap();
        let (writer, thread, _committed) = crate::writer::Writer::start(&path, 0, 64).unwrap();
        let auth = Authenticator {
            throttle: Throttle::new(100, 100, Duration::from_secs(60)),
            hashing: Arc::new(Semaphore::new(2)),
            writer: Arc::new(writer),
        };
        let login =
            |secret| Login { account: "alice".into(), secret: Some(secret), device: "d".into(), bulk: false };

        let first = auth.login(&db, login(Secret::Password("password-1".into())), None).await.unwrap();
        let token = first.token.clone().unwrap();
        // Make the session look unused for a while, so the token login records it.
        admin.execute("UPDATE sessions SET last_seen_at = 0", []).unwrap();
        let again = auth.login(&db, login(Secret::Token(token.clone())), None).await.unwrap();
        assert_eq!(again.session_id, first.session_id);
        assert!(matches!(
            auth.login(&db, login(Secret::Password("wrong-password".into())), None).await,
            Err(ServiceError::BadCredentials)
        ));
        auth.change_password(&db, "alice", "password-1", "password-2", Some(first.session_id)).await.unwrap();
        let second = Login { device: "e".into(), ..login(Secret::Password("password-2".into())) };
        let other = auth.login(&db, second, None).await.unwrap();
        auth.end_session(other.session_id).await.unwrap();

        assert_eq!(db.rows_changed_by_readers(), 0, "a login wrote through the read pool");
        let (sessions, last_seen): (u64, i64) = admin
            .query_row("SELECT count(*), max(last_seen_at) FROM sessions", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(sessions, 1, "device e logged out, device d kept through the password change");
        assert!(last_seen > 0, "the token login recorded last_seen_at (through the writer)");
        drop(auth);
        thread.join().unwrap();
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
