//! Accounts and sessions: Argon2id password hashes, random session tokens
//! stored hashed, throttling of failed logins, and the administrator's user
//! management (used by the `hutong-server user` subcommands). Nobody
//! self-registers: there is no protocol request that creates an account.
//! Inside the server, logins read through the read pool and write only
//! through the writer thread; Argon2 never runs while a connection is held.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hutong_protocol::ErrorCode;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::error::ServiceError;
pub use crate::storage::accounts::{Caller, Revocation, SessionRow, UserRow, CONSOLE_DEVICE_PREFIX};
use crate::storage::accounts::{NewUser, PasswordRow};
use crate::storage::{now_ms, Store, WriteQueue};

pub mod totp;

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
    if store.user_deleted(id)? {
        // Deleting is final: enabling must not bring a deleted account back
        // (its name stays taken, its messages stay in the archive).
        anyhow::bail!("the account {account:?} was deleted; it cannot be enabled or disabled");
    }
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
    if store.user_deleted(id)? {
        anyhow::bail!("the account {account:?} was deleted");
    }
    let hash = hash_password(password)?;
    store.set_password_hash(id, &hash, None)?;
    store.delete_sessions_of(id)?;
    store.revoke(id, None, ErrorCode::SessionRevoked)?;
    Ok(())
}

/// Adds a role (the `user add --auditor` of the host's operator).
pub fn add_role(store: &dyn Store, id: u64, role: &str) -> anyhow::Result<()> {
    Ok(store.add_role(id, role)?)
}

/// Forgets a person's authenticator app and recovery codes and ends their
/// sessions; they enrol again at their next console login.
pub fn reset_totp(store: &dyn Store, account: &str) -> anyhow::Result<()> {
    let id = user_id(store, account)?;
    store.forget_totp(id)?;
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

/// Login throttling. Three counters of failed password checks, each over a
/// window of `window` from its first failure:
///
/// - per account *and* address (IPv6 by /64): the limit a person who mistypes
///   meets (5 by default); it does not touch anyone else behind the same NAT;
/// - per account over all addresses: guessing spread over many addresses
///   (20); it refuses password logins of that account from everywhere, but
///   token logins of devices already signed in never pass through it;
/// - per address over all accounts: one address trying many accounts (100).
///
/// An attempt is *reserved* (counted as a failure) before its password is
/// hashed and refunded when the password was right, so N parallel attempts
/// get exactly the budget N sequential ones get. Refusals carry the time
/// until the oldest counter that refused ends.
pub struct Throttle {
    per_pair: u32,
    per_account: u32,
    per_address: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Most counters kept; past it, expired ones are dropped first.
const MAX_THROTTLE_KEYS: usize = 100_000;

/// An attempt counted before its check; [`Throttle::refund`] gives it back.
#[must_use]
pub struct Attempt {
    keys: Vec<String>,
}

impl Throttle {
    pub fn new(per_pair: u32, per_account: u32, per_address: u32, window: Duration) -> Self {
        Throttle { per_pair, per_account, per_address, window, failures: Mutex::new(HashMap::new()) }
    }

    /// An address as the throttle counts it: IPv6 by its /64 (one host
    /// usually holds a whole /64), IPv4 as it is.
    fn address_key(addr: IpAddr) -> String {
        match addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = a.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }

    fn keys(&self, scope: &str, account: &str, addr: Option<IpAddr>) -> Vec<(String, u32)> {
        let account = account.to_lowercase();
        let addr = addr.map(Self::address_key).unwrap_or_else(|| "-".into());
        let mut keys = vec![
            (format!("{scope}p:{account}|{addr}"), self.per_pair),
            (format!("{scope}a:{account}"), self.per_account),
        ];
        if addr != "-" {
            keys.push((format!("{scope}i:{addr}"), self.per_address));
        }
        keys
    }

    /// Counts one password attempt of `account` from `addr` before it is
    /// checked, or refuses it (`RateLimited` with the time left) when any
    /// counter is at its limit.
    pub fn reserve(&self, account: &str, addr: Option<IpAddr>) -> Result<Attempt, ServiceError> {
        self.reserve_keys(self.keys("", account, addr))
    }

    /// Counts one second-factor code of `account` (its own counters: a wrong
    /// code does not use up the password budget, nor the other way round).
    pub fn reserve_code(&self, account: &str, addr: Option<IpAddr>) -> Result<Attempt, ServiceError> {
        self.reserve_keys(self.keys("t", account, addr))
    }

    fn reserve_keys(&self, keys: Vec<(String, u32)>) -> Result<Attempt, ServiceError> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        let mut wait = None::<Duration>;
        for (key, limit) in &keys {
            if let Some((count, since)) = map.get(key) {
                let elapsed = since.elapsed();
                if *count >= *limit && elapsed < window {
                    let left = window - elapsed;
                    wait = Some(wait.map_or(left, |w| w.max(left)));
                }
            }
        }
        if let Some(left) = wait {
            return Err(ServiceError::RateLimited((left.as_millis() as u64).max(1)));
        }
        if map.len() > MAX_THROTTLE_KEYS {
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        for (key, _) in &keys {
            let entry = map.entry(key.clone()).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= window {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
        Ok(Attempt { keys: keys.into_iter().map(|(k, _)| k).collect() })
    }

    /// The attempt was not a failure (the password was right): it stops
    /// counting, and the account's counter for that address starts afresh.
    pub fn refund(&self, attempt: Attempt) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (i, key) in attempt.keys.iter().enumerate() {
            if i == 0 {
                map.remove(key);
            } else if let Some(entry) = map.get_mut(key) {
                entry.0 = entry.0.saturating_sub(1);
            }
        }
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
    /// A client session unused this long expires (sliding).
    pub session_lifetime_ms: i64,
    /// A console session unused this long expires (sliding).
    pub console_lifetime_ms: i64,
    /// Argon2 computations run so far (tests hold every refusal to one).
    hash_runs: AtomicU64,
}

/// `last_seen_at` is advisory (the console shows it): a token login records
/// it only when the stored value is older than this, so a reconnect storm
/// costs the writer at most one tiny write per session and interval.
const TOUCH_EVERY_MS: i64 = 60_000;

impl Authenticator {
    pub fn new(config: &crate::Config, writer: Arc<dyn WriteQueue>) -> Self {
        Authenticator {
            throttle: Throttle::new(
                config.login_failures_per_account_and_address,
                config.login_failures_per_account,
                config.login_failures_per_address,
                Duration::from_secs(config.login_window_secs),
            ),
            hashing: Arc::new(Semaphore::new(config.max_concurrent_hashing)),
            writer,
            session_lifetime_ms: (config.session_lifetime_secs as i64).saturating_mul(1000),
            console_lifetime_ms: (config.console_session_lifetime_secs as i64).saturating_mul(1000),
            hash_runs: AtomicU64::new(0),
        }
    }

    /// How many Argon2 computations ran (each check or new hash is one).
    pub fn hash_runs(&self) -> u64 {
        self.hash_runs.load(Ordering::Relaxed)
    }

    /// A client's login. Refused with `PasswordChangeRequired` while the
    /// person must choose a new password (see [`Authenticator::change_password`]).
    pub async fn login(
        &self,
        db: &crate::storage::Db,
        req: hutong_protocol::v1::Login,
        addr: Option<IpAddr>,
    ) -> Result<Authenticated, ServiceError> {
        if req.device.starts_with(CONSOLE_DEVICE_PREFIX) {
            return Err(ServiceError::BadRequest(format!(
                "device names starting with {CONSOLE_DEVICE_PREFIX:?} are reserved"
            )));
        }
        self.login_with(db, req, addr, false).await
    }

    /// The console's login (a password, a device named
    /// [`CONSOLE_DEVICE_PREFIX`]…): lets a person who must change their
    /// password in, but the API then allows nothing else until they have.
    pub async fn login_allowing_password_change(
        &self,
        db: &crate::storage::Db,
        req: hutong_protocol::v1::Login,
        addr: Option<IpAddr>,
    ) -> Result<Authenticated, ServiceError> {
        if !req.device.starts_with(CONSOLE_DEVICE_PREFIX)
            || !matches!(req.secret, Some(hutong_protocol::v1::login::Secret::Password(_)))
        {
            return Err(ServiceError::BadRequest("the console logs in with a password".into()));
        }
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
        // Token logins are not throttled: a token is 256 random bits (nothing
        // to guess), and a person whose password someone is guessing keeps
        // their signed-in devices.
        match req.secret {
            Some(Secret::Token(token)) => {
                self.token_login(db, &req.account, &token, &device, allow_must_change).await
            }
            Some(Secret::Password(password)) => {
                self.password_login(db, &req.account, password, device, addr, allow_must_change).await
            }
            None => Err(ServiceError::BadRequest("a login needs a password or a token".into())),
        }
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
        if now - last_seen > self.session_lifetime_ms {
            // Gone for good: the next password login makes a new one.
            let session_id = auth.session_id;
            let end = Box::new(move |st: &dyn Store| st.end_session(session_id).map(|()| 0));
            if let Err(e) = self.writer.enqueue(end).await {
                tracing::debug!(error = %e, "expired session not removed");
            }
            return Err(ServiceError::SessionExpired);
        }
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
        addr: Option<IpAddr>,
        allow_must_change: bool,
    ) -> Result<Authenticated, ServiceError> {
        let name = account.to_owned();
        let row = db.read(move |conn| password_row(conn, &name)).await?;
        let stored = row.as_ref().map(|r| r.hash.clone());
        if !self.verify(account, addr, password, stored).await? {
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

    /// Checks `password` against `hash` on the blocking pool, within the
    /// hashing limit and holding no database connection. Exactly one Argon2
    /// computation runs whatever the account (a dummy hash when there is no
    /// account, no password or an unreadable hash), so neither the answer
    /// nor its timing tells whether an account exists.
    ///
    /// The attempt is counted by the throttle *after* the hashing permit is
    /// taken and *before* the hash runs: waiting logins hold no part of the
    /// budget (an office logging in at nine is not refused), and running
    /// ones cannot exceed it (500 parallel guesses get the budget of 500
    /// sequential ones).
    async fn verify(
        &self,
        account: &str,
        addr: Option<IpAddr>,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, ServiceError> {
        let _permit = self.hashing.acquire().await.map_err(|_| ServiceError::ShuttingDown)?;
        let attempt = self.throttle.reserve(account, addr)?;
        self.hash_runs.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::task::spawn_blocking(move || {
            let parsed = hash.as_deref().and_then(|h| PasswordHash::new(h).ok());
            let found = parsed.is_some();
            let target = parsed.unwrap_or_else(|| PasswordHash::new(DUMMY_HASH).expect("valid dummy hash"));
            let ok = argon2().verify_password(password.as_bytes(), &target).is_ok();
            found && ok
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("password check failed: {e}")))?;
        if ok {
            self.throttle.refund(attempt);
        }
        Ok(ok)
    }

    /// Hashes a password on the blocking pool, within the hashing limit.
    pub async fn hash(&self, password: String) -> Result<String, ServiceError> {
        let _permit = self.hashing.acquire().await.map_err(|_| ServiceError::ShuttingDown)?;
        self.hash_runs.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Sets a new password after checking the old one (throttled like a
    /// login from `addr`, and exactly as costly whether the account exists
    /// or not). Ends every session of the person except `keep`.
    pub async fn change_password(
        &self,
        db: &crate::storage::Db,
        account: &str,
        old: &str,
        new: &str,
        keep: Option<u64>,
        addr: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        if account.len() > 64 {
            return Err(ServiceError::BadRequest("account names have at most 64 characters".into()));
        }
        check_password_policy(new).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        if old == new {
            return Err(ServiceError::BadRequest("the new password must differ from the old one".into()));
        }
        let name = account.to_owned();
        let row = db.read(move |conn| password_row(conn, &name)).await?;
        if !self.verify(account, addr, old.to_owned(), row.as_ref().map(|r| r.hash.clone())).await? {
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

/// The administration API's caller, from a console session token: `None`
/// for an unknown token, a client's (desktop, CLI) token, or a disabled or
/// deleted person; `SessionExpired` when it was unused for `lifetime_ms`.
pub fn caller_by_token(
    store: &dyn Store,
    token: &str,
    lifetime_ms: i64,
) -> Result<Option<Caller>, ServiceError> {
    match store.caller_by_token_hash(&token_hash(token))? {
        Some(c) if now_ms() - c.last_seen_at_ms > lifetime_ms => Err(ServiceError::SessionExpired),
        other => Ok(other),
    }
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
        let auth = Authenticator::new(&crate::Config::default(), Arc::new(writer));
        let login =
            |secret| Login { account: "alice".into(), secret: Some(secret), device: "d".into(), bulk: false };

        let first = auth.login(&db, login(Secret::Password("password-1".into())), None).await.unwrap();
        let token = first.token.clone().unwrap();
        // Make the session look unused for a while, so the token login records it.
        admin.execute("UPDATE sessions SET last_seen_at = last_seen_at - 120000", []).unwrap();
        let again = auth.login(&db, login(Secret::Token(token.clone())), None).await.unwrap();
        assert_eq!(again.session_id, first.session_id);
        assert!(matches!(
            auth.login(&db, login(Secret::Password("wrong-password".into())), None).await,
            Err(ServiceError::BadCredentials)
        ));
        auth.change_password(&db, "alice", "password-1", "password-2", Some(first.session_id), None)
            .await
            .unwrap();
        let second = Login { device: "e".into(), ..login(Secret::Password("password-2".into())) };
        let other = auth.login(&db, second, None).await.unwrap();
        auth.end_session(other.session_id).await.unwrap();

        assert_eq!(db.rows_changed_by_readers(), 0, "a login wrote through the read pool");
        let (sessions, last_seen): (u64, i64) = admin
            .query_row("SELECT count(*), max(last_seen_at) FROM sessions", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(sessions, 1, "device e logged out, device d kept through the password change");
        assert!(last_seen > now_ms() - 60_000, "the token login recorded last_seen_at (through the writer)");
        drop(auth);
        thread.join().unwrap();
    }

    #[test]
    fn throttle_counts_before_the_check_and_refunds_successes() {
        let t = Throttle::new(3, 5, 100, Duration::from_secs(60));
        let office: IpAddr = "10.0.0.1".parse().unwrap();
        let home: IpAddr = "10.0.0.2".parse().unwrap();
        // Three attempts reserved at once (all running) use the whole budget.
        let running: Vec<Attempt> = (0..3).map(|_| t.reserve("alice", Some(office)).unwrap()).collect();
        assert!(matches!(t.reserve("ALICE", Some(office)), Err(ServiceError::RateLimited(ms)) if ms > 0));
        // One of them was right: it is given back and the pair starts afresh.
        let mut running = running.into_iter();
        t.refund(running.next().unwrap());
        assert!(t.reserve("alice", Some(office)).is_ok());
        // Another account behind the same address is not affected.
        assert!(t.reserve("bob", Some(office)).is_ok());
        // The account-wide limit (5) stops guessing from other addresses too.
        let _ = t.reserve("alice", Some(home)).unwrap();
        let _ = t.reserve("alice", Some(home)).unwrap();
        assert!(matches!(t.reserve("alice", Some(home)), Err(ServiceError::RateLimited(_))));
        // Codes have their own budget.
        assert!(t.reserve_code("alice", Some(home)).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_by_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(Throttle::address_key(a), Throttle::address_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Throttle::address_key(mapped), "10.0.0.1");
    }

    /// Every refused password check costs exactly one Argon2 run whether
    /// the account exists, has no password, or is deleted, on the login and
    /// on the change-password path alike: neither tells who has an account.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusals_cost_one_hash_whatever_the_account() {
        use hutong_protocol::v1::{login::Secret, Login};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        crate::storage::migrate(&path).unwrap();
        let admin = crate::storage::open_connection(&path).unwrap();
        add_user(&admin, "alice", "Alice", "password-1", false).unwrap();
        add_user(&admin, "nopass", "No Password", "password-1", false).unwrap();
        admin.execute("UPDATE users SET password_hash = ?1 WHERE account = 'nopass'", [NO_PASSWORD]).unwrap();
        add_user(&admin, "gone", "Gone", "password-1", false).unwrap();
        admin.execute("UPDATE users SET deleted = 1, disabled = 1 WHERE account = 'gone'", []).unwrap();
        let db = crate::storage::Db::open(&path, 2).unwrap();
        let (writer, thread, _committed) = crate::writer::Writer::start(&path, 0, 64).unwrap();
        let auth = Authenticator::new(&crate::Config::default(), Arc::new(writer));
        for account in ["alice", "nobody", "nopass", "gone"] {
            let before = auth.hash_runs();
            let login = Login {
                account: account.into(),
                secret: Some(Secret::Password("wrong-password".into())),
                device: "d".into(),
                bulk: false,
            };
            assert!(
                matches!(auth.login(&db, login, None).await, Err(ServiceError::BadCredentials)),
                "{account}"
            );
            assert_eq!(auth.hash_runs() - before, 1, "login of {account}");
            let before = auth.hash_runs();
            let changed =
                auth.change_password(&db, account, "wrong-password", "new-password-1", None, None).await;
            assert!(matches!(changed, Err(ServiceError::BadCredentials)), "{account}: {changed:?}");
            assert_eq!(auth.hash_runs() - before, 1, "password change of {account}");
        }
        // The right password of a deleted account does not open it either.
        let login = Login {
            account: "gone".into(),
            secret: Some(Secret::Password("password-1".into())),
            device: "d".into(),
            bulk: false,
        };
        assert!(matches!(auth.login(&db, login, None).await, Err(ServiceError::BadCredentials)));
        drop(auth);
        thread.join().unwrap();
    }

    #[test]
    fn deleted_accounts_cannot_be_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        crate::storage::migrate(&path).unwrap();
        let conn = crate::storage::open_connection(&path).unwrap();
        add_user(&conn, "gone", "Gone", "password-1", false).unwrap();
        conn.execute("UPDATE users SET deleted = 1, disabled = 1 WHERE account = 'gone'", []).unwrap();
        assert!(set_disabled(&conn, "gone", false).is_err());
        assert!(set_password(&conn, "gone", "password-2").is_err());
        let disabled: bool =
            conn.query_row("SELECT disabled FROM users WHERE account = 'gone'", [], |r| r.get(0)).unwrap();
        assert!(disabled);
    }
}
