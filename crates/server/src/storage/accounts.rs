//! What the accounts domain stores: people's login rows, sessions (tokens
//! kept as SHA-256 hashes) and revocations. The trait is the boundary; each
//! backend implements it (SQLite: `storage/sqlite/accounts.rs`).

use hutong_protocol::ErrorCode;

use crate::error::ServiceError;

/// Devices whose names start with this are console sessions; the native
/// protocol refuses them, so no client can pass for the console.
pub const CONSOLE_DEVICE_PREFIX: &str = "console-";

/// One account, as the `user list` subcommand shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserRow {
    pub id: u64,
    pub account: String,
    pub display_name: String,
    pub disabled: bool,
    pub is_admin: bool,
}

/// A new account's row; the directory version is the caller's.
pub struct NewUser<'a> {
    pub account: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
    pub pinyin: &'a str,
    pub initials: &'a str,
    pub dir_version: u64,
    pub created_at: i64,
}

/// A revocation the running server has not acted on yet.
pub struct Revocation {
    pub id: u64,
    pub user_id: u64,
    pub session_id: Option<u64>,
    pub reason: ErrorCode,
}

/// What a password login reads, before any hashing.
pub struct PasswordRow {
    pub id: u64,
    pub display_name: String,
    pub hash: String,
    pub disabled: bool,
    pub must_change: bool,
}

/// The session a token names, with its person's state.
pub struct TokenSession {
    pub session_id: u64,
    pub user_id: u64,
    pub display_name: String,
    pub disabled: bool,
    pub device: String,
    pub must_change: bool,
    pub last_seen_at: i64,
}

/// Who calls the administration API, from the bearer token.
pub struct Caller {
    pub user_id: u64,
    pub account: String,
    pub session_id: u64,
    pub roles: Vec<String>,
    pub must_change_password: bool,
    /// This console session passed the TOTP check.
    pub second_factor: bool,
    /// The person has a confirmed TOTP secret.
    pub totp_enrolled: bool,
    /// When the session was last used (the extractor slides it).
    pub last_seen_at_ms: i64,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether this person must pass a second factor on the console: they
    /// enrolled, or they are an administrator or auditor and the setting
    /// requires it.
    pub fn needs_second_factor(&self, required: bool) -> bool {
        self.totp_enrolled || (required && (self.has_role("admin") || self.has_role("auditor")))
    }
}

/// A person's TOTP state: confirmed secret, secret being enrolled, last step used.
pub struct TotpState {
    pub secret: Option<Vec<u8>>,
    pub pending: Option<Vec<u8>>,
    pub last_step: i64,
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

/// The accounts' rows. Writes run inside the caller's transaction.
pub trait AccountsStore {
    /// Whether any account exists (first start makes the administrator).
    fn has_users(&self) -> Result<bool, ServiceError>;
    fn account_exists(&self, account: &str) -> Result<bool, ServiceError>;
    /// Adds an account and returns its id.
    fn insert_user(&self, user: &NewUser<'_>) -> Result<u64, ServiceError>;
    fn list_users(&self) -> Result<Vec<UserRow>, ServiceError>;
    fn user_id_by_account(&self, account: &str) -> Result<Option<u64>, ServiceError>;
    /// Marks an account disabled (or not) at directory version `dir_version`.
    fn set_user_disabled(&self, id: u64, disabled: bool, dir_version: u64) -> Result<(), ServiceError>;
    /// Sets a person's password hash; `must_change` (when given) makes them
    /// choose a new one at their next login, or clears that.
    fn set_password_hash(&self, id: u64, hash: &str, must_change: Option<bool>) -> Result<(), ServiceError>;
    /// Deletes every session of a person (the caller records the revocation).
    fn delete_sessions_of(&self, user_id: u64) -> Result<(), ServiceError>;
    /// Records a revocation the running server turns into closed connections.
    fn revoke(&self, user_id: u64, session_id: Option<u64>, reason: ErrorCode) -> Result<(), ServiceError>;
    /// At most 1,000 revocations after `after`, oldest first.
    fn revocations_after(&self, after: u64) -> Result<Vec<Revocation>, ServiceError>;
    fn last_revocation(&self) -> Result<u64, ServiceError>;
    fn password_row(&self, account: &str) -> Result<Option<PasswordRow>, ServiceError>;
    fn token_session(&self, account: &str, token_hash: &[u8]) -> Result<Option<TokenSession>, ServiceError>;
    /// The console caller a token names (enabled, not deleted people only).
    fn caller_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<Caller>, ServiceError>;
    /// The newest 10,000 sessions, most recently used first.
    fn sessions(&self) -> Result<Vec<SessionRow>, ServiceError>;
    /// Stores a new session for a password login (one per device: logging in
    /// again on a device replaces its session) and returns its id. Refused
    /// (`BadCredentials`, `AccountDisabled`) if the account was disabled or
    /// its password changed since `password_hash` was checked.
    fn create_session(
        &self,
        user_id: u64,
        device: &str,
        token_hash: &[u8],
        password_hash: &str,
    ) -> Result<u64, ServiceError>;
    /// Records when a session was last used (never moving it back).
    fn touch_session(&self, session_id: u64, at: i64) -> Result<(), ServiceError>;
    /// Replaces a password checked against `old_hash` (`BadCredentials` if
    /// it changed meanwhile), clears "must change", and ends every other
    /// session of the person but `keep`, recording their revocations.
    fn replace_password(
        &self,
        user_id: u64,
        old_hash: &str,
        new_hash: &str,
        keep: Option<u64>,
    ) -> Result<(), ServiceError>;
    /// Ends one session (logout); the token stops working at once.
    fn end_session(&self, session_id: u64) -> Result<(), ServiceError>;

    /// Whether the account was deleted (deleting is final).
    fn user_deleted(&self, id: u64) -> Result<bool, ServiceError>;
    /// Marks the bootstrap administrator's generated password as one-time.
    fn require_password_change(&self, user_id: u64) -> Result<(), ServiceError>;
    fn totp_state(&self, user_id: u64) -> Result<TotpState, ServiceError>;
    fn set_totp_pending(&self, user_id: u64, secret: &[u8]) -> Result<(), ServiceError>;
    /// Makes the pending secret the person's (checked with a code of `step`)
    /// and replaces their recovery codes. False if the pending secret changed
    /// meanwhile.
    fn confirm_totp(
        &self,
        user_id: u64,
        secret: &[u8],
        step: i64,
        recovery_hashes: &[Vec<u8>],
    ) -> Result<bool, ServiceError>;
    /// Records that a code of `step` was used; false if that step (or a later
    /// one) was used already, so two requests with one code cannot both pass.
    fn use_totp_step(&self, user_id: u64, step: i64) -> Result<bool, ServiceError>;
    /// Spends a recovery code; false if it is unknown or spent.
    fn use_recovery_code(&self, user_id: u64, code_hash: &[u8]) -> Result<bool, ServiceError>;
    fn recovery_codes_left(&self, user_id: u64) -> Result<u64, ServiceError>;
    /// The console session passed its second factor.
    fn mark_second_factor(&self, session_id: u64) -> Result<(), ServiceError>;
    /// Records a change waiting for an auditor and returns its id.
    fn add_pending_change(
        &self,
        kind: &str,
        target: &str,
        detail: &serde_json::Value,
        requested_by: u64,
    ) -> Result<u64, ServiceError>;
    /// At most 200, those still pending first, newest first.
    fn pending_changes(&self) -> Result<Vec<PendingChange>, ServiceError>;
    fn pending_change(&self, id: u64) -> Result<Option<PendingChange>, ServiceError>;
    /// Decides a pending change; false if it was decided already.
    fn decide_pending_change(&self, id: u64, state: &str, by: u64) -> Result<bool, ServiceError>;
    /// Adds a role to a person (a directory change: clients see it at their next sync).
    fn add_role(&self, id: u64, role: &str) -> Result<(), ServiceError>;
    /// Removes a person's TOTP secret and recovery codes.
    fn forget_totp(&self, user_id: u64) -> Result<(), ServiceError>;
    /// Everyone holding a role, by id (to hold an import to the auditor rule).
    fn holders_of(&self, role: &str) -> Result<Vec<u64>, ServiceError>;
}
