//! Applications of the integration API (OA, ERP, scripts): what an
//! administrator registers, the rules on their fields, their secrets and
//! their bot accounts. The HTTP side is `admin.rs` (managing them) and
//! `api.rs` (what they call); this module knows neither.
//!
//! Secrets: the client secret is 32 random bytes shown once; only its
//! SHA-256 is stored and compared in constant time. The signing secret
//! (event deliveries are signed with it) is stored as is: the server needs
//! it to sign. Each application has a bot account (role `bot`, no password,
//! so no login over the client protocol): it is synced to clients like any
//! person so its name and avatar show on what it sends, but it belongs to
//! no department, so it is not in the org tree.

use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ServiceError;
pub use crate::storage::apps::{ApiToken, App, AppFields, PersonKey};
use crate::storage::Store;

pub mod messages;
pub mod notices;

/// What an application may be granted.
pub const SCOPES: &[&str] =
    &["notices:send", "messages:send", "receipts:read", "directory:read", "directory:write"];

const MAX_NAME_CHARS: usize = 64;
const MAX_URL_BYTES: usize = 512;
const MAX_CIDRS: usize = 32;

/// An administrator's input for a new application or a change of one
/// (absent fields keep their value on a change).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInput {
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub callback_url: Option<String>,
}

/// Secrets shown once, when an application is created or its secret rotated.
pub struct NewSecrets {
    pub client_secret: String,
    pub signing_secret: String,
}

impl std::fmt::Debug for NewSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewSecrets { .. }")
    }
}

fn random_hex<const N: usize>() -> String {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn secret_hash(secret: &str) -> Vec<u8> {
    secret_hash_bytes(secret.as_bytes())
}

/// SHA-256 of `bytes`.
pub fn secret_hash_bytes(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn new_secrets() -> NewSecrets {
    NewSecrets { client_secret: random_hex::<32>(), signing_secret: random_hex::<32>() }
}

pub use crate::util::{address_allowed, constant_time_eq, Cidr};

fn check_url(what: &str, url: &str) -> Result<(), ServiceError> {
    if url.is_empty() {
        return Ok(());
    }
    let ok = url.len() <= MAX_URL_BYTES
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "{what} must be an http(s) URL of at most {MAX_URL_BYTES} bytes"
        )))
    }
}

/// The fields after applying `input` to `base`, checked.
fn fields(base: AppFields, input: AppInput) -> Result<AppFields, ServiceError> {
    let mut f = base;
    if let Some(name) = input.name {
        f.name = name.trim().to_owned();
    }
    if f.name.is_empty() || f.name.chars().count() > MAX_NAME_CHARS || f.name.chars().any(char::is_control) {
        return Err(ServiceError::BadRequest(format!(
            "an application needs a name of 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if let Some(url) = input.avatar_url {
        f.avatar_url = url;
    }
    check_url("avatar_url", &f.avatar_url)?;
    if let Some(url) = input.callback_url {
        f.callback_url = url;
    }
    check_url("callback_url", &f.callback_url)?;
    if let Some(scopes) = input.scopes {
        let mut checked = Vec::new();
        for s in scopes {
            if !SCOPES.contains(&s.as_str()) {
                return Err(ServiceError::BadRequest(format!(
                    "unknown scope {s:?}; the scopes are {}",
                    SCOPES.join(", ")
                )));
            }
            if !checked.contains(&s) {
                checked.push(s);
            }
        }
        f.scopes = checked;
    }
    if f.scopes.is_empty() {
        return Err(ServiceError::BadRequest("an application needs at least one scope".into()));
    }
    if let Some(cidrs) = input.allowed_cidrs {
        if cidrs.len() > MAX_CIDRS {
            return Err(ServiceError::BadRequest(format!("at most {MAX_CIDRS} address blocks")));
        }
        for c in &cidrs {
            Cidr::parse(c)?;
        }
        f.allowed_cidrs = cidrs;
    }
    if f.allowed_cidrs.is_empty() {
        return Err(ServiceError::BadRequest(
            "an application needs the address blocks it calls from (0.0.0.0/0 and ::/0 for anywhere)".into(),
        ));
    }
    Ok(f)
}

/// Registers an application and its bot account; answers it with its
/// secrets (shown once). Runs in the caller's transaction.
pub fn create(store: &dyn Store, input: AppInput, now_ms: i64) -> Result<(App, NewSecrets), ServiceError> {
    let empty = AppFields {
        name: String::new(),
        avatar_url: String::new(),
        scopes: Vec::new(),
        allowed_cidrs: Vec::new(),
        callback_url: String::new(),
    };
    let f = fields(empty, input)?;
    let client_id = format!("app_{}", random_hex::<8>());
    let secrets = new_secrets();
    let version = store.next_dir_version()?;
    let bot = store.insert_bot_user(&format!("bot_{}", random_hex::<6>()), &f.name, version, now_ms)?;
    let id = store.insert_app(
        &f,
        &client_id,
        &secret_hash(&secrets.client_secret),
        &secrets.signing_secret,
        bot,
        now_ms,
    )?;
    Ok((app(store, id)?, secrets))
}

pub fn app(store: &dyn Store, id: u64) -> Result<App, ServiceError> {
    store.app(id)?.ok_or(ServiceError::NotFound("application"))
}

pub fn list(store: &dyn Store) -> Result<Vec<App>, ServiceError> {
    store.apps()
}

/// Changes an application's fields; a new name renames its bot account.
pub fn update(store: &dyn Store, id: u64, input: AppInput, now_ms: i64) -> Result<App, ServiceError> {
    let before = app(store, id)?;
    let base = AppFields {
        name: before.name.clone(),
        avatar_url: before.avatar_url.clone(),
        scopes: before.scopes.clone(),
        allowed_cidrs: before.allowed_cidrs.clone(),
        callback_url: before.callback_url.clone(),
    };
    let f = fields(base, input)?;
    store.update_app(id, &f, now_ms)?;
    if f.name != before.name {
        let version = store.next_dir_version()?;
        store.rename_bot_user(before.bot_user_id, &f.name, version)?;
    }
    app(store, id)
}

pub fn set_disabled(store: &dyn Store, id: u64, disabled: bool, now_ms: i64) -> Result<App, ServiceError> {
    store.set_app_disabled(id, disabled, now_ms)?;
    app(store, id)
}

/// New secrets; every token given out so far stops working.
pub fn rotate_secret(store: &dyn Store, id: u64, now_ms: i64) -> Result<(App, NewSecrets), ServiceError> {
    let secrets = new_secrets();
    store.set_app_secrets(id, &secret_hash(&secrets.client_secret), &secrets.signing_secret, now_ms)?;
    Ok((app(store, id)?, secrets))
}

/// Removes an application and its tokens; its bot account stays as a
/// deleted person, so what it sent still names it.
pub fn delete(store: &dyn Store, id: u64) -> Result<App, ServiceError> {
    let before = app(store, id)?;
    store.delete_app(id)?;
    let version = store.next_dir_version()?;
    store.delete_bot_user(before.bot_user_id, version)?;
    Ok(before)
}

/// How long a bearer token of the client-credentials grant is worth anything.
pub const TOKEN_LIFETIME_MS: i64 = 2 * 3600 * 1000;

/// The application `client_id` names when `client_secret` is its secret
/// (disabled or not: the caller says why it refuses). The comparison takes
/// as long whether the application exists or not, and whatever the secret.
pub fn authenticate(
    store: &dyn Store,
    client_id: &str,
    client_secret: &str,
) -> Result<Option<App>, ServiceError> {
    let offered = secret_hash(client_secret);
    let found = store.app_credentials(client_id)?;
    let stored = found.as_ref().map(|c| c.secret_hash.clone()).unwrap_or_else(|| vec![0xff; 32]);
    let matches = constant_time_eq(&offered, &stored);
    Ok(found.filter(|_| matches).map(|c| c.app))
}

/// A new bearer token and the hash to store.
pub fn new_token() -> (String, Vec<u8>) {
    let token = random_hex::<32>();
    let hash = secret_hash(&token);
    (token, hash)
}

/// The token `token` names with its application, `None` when there is no
/// such token (expired ones included: the caller checks `expires_at`).
pub fn token(store: &dyn Store, token: &str) -> Result<Option<(ApiToken, App)>, ServiceError> {
    let Some(t) = store.api_token(&secret_hash(token))? else {
        return Ok(None);
    };
    Ok(store.app(t.app_id)?.map(|app| (t, app)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_blocks() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "x", "::/129", "1.2.3.4/+8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
