//! What the integration API stores: applications (`apps`) with their bot
//! accounts, the bearer tokens of the client-credentials grant
//! (`api_tokens`), idempotent answers and group robots (`group_robots`). The SQLite implementation is `storage/sqlite/apps.rs`.

use serde::Serialize;

use crate::error::ServiceError;

/// An application as the administration API shows it: never its secrets.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct App {
    pub id: u64,
    pub name: String,
    pub avatar_url: String,
    pub scopes: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    pub callback_url: String,
    pub client_id: String,
    /// The account people see as the sender of what the application sends.
    pub bot_user_id: u64,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The fields an administrator sets (create, update).
#[derive(Clone, Debug)]
pub struct AppFields {
    pub name: String,
    pub avatar_url: String,
    pub scopes: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    pub callback_url: String,
}

/// An application's credentials as stored: a hash of the client secret, the
/// signing secret as is (the server signs event deliveries with it).
pub struct AppCredentials {
    pub app: App,
    pub secret_hash: Vec<u8>,
    pub signing_secret: String,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials").field("app", &self.app).finish_non_exhaustive()
    }
}

/// A field people are looked up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersonKey {
    Account,
    EmployeeNo,
    Phone,
}

/// The answer kept for a request with an Idempotency-Key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotentAnswer {
    /// SHA-256 of the request body.
    pub body_hash: Vec<u8>,
    pub status: u16,
    pub response: String,
    pub created_at: i64,
}

/// A group robot (incoming webhook).
#[derive(Clone)]
pub struct RobotRow {
    pub id: u64,
    pub conversation_id: u64,
    pub name: String,
    pub bot_user_id: u64,
    pub created_by: u64,
    pub signing_secret: Option<String>,
    pub allowed_cidrs: Vec<String>,
    pub created_at: i64,
    pub removed: bool,
}

impl std::fmt::Debug for RobotRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotRow")
            .field("id", &self.id)
            .field("conversation_id", &self.conversation_id)
            .field("name", &self.name)
            .field("signed", &self.signing_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// An event of an application and how its delivery goes.
#[derive(Clone, Debug, Serialize)]
pub struct AppEvent {
    pub id: u64,
    pub app_id: u64,
    pub kind: String,
    /// JSON.
    #[serde(skip)]
    pub data: String,
    pub created_at: i64,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: String,
    pub delivered_at: Option<i64>,
}

/// An event due for delivery, with where and how to send it.
pub struct DueEvent {
    pub event: AppEvent,
    pub callback_url: String,
    pub signing_secret: String,
}

/// What a bearer token grants.
#[derive(Clone, Debug)]
pub struct ApiToken {
    pub app_id: u64,
    pub scopes: Vec<String>,
    pub expires_at: i64,
}

/// The applications' rows. Writes run in the caller's transaction.
pub trait AppsStore {
    /// Adds a bot account (role `bot`, no password, no department) and
    /// answers its id.
    fn insert_bot_user(
        &self,
        account: &str,
        display_name: &str,
        dir_version: u64,
        now_ms: i64,
    ) -> Result<u64, ServiceError>;
    /// Renames a bot account (its application was renamed).
    fn rename_bot_user(&self, id: u64, display_name: &str, dir_version: u64) -> Result<(), ServiceError>;
    /// Marks a bot account deleted and disabled (its application was deleted).
    fn delete_bot_user(&self, id: u64, dir_version: u64) -> Result<(), ServiceError>;
    #[allow(clippy::too_many_arguments)] // one row's columns
    fn insert_app(
        &self,
        fields: &AppFields,
        client_id: &str,
        secret_hash: &[u8],
        signing_secret: &str,
        bot_user_id: u64,
        now_ms: i64,
    ) -> Result<u64, ServiceError>;
    fn apps(&self) -> Result<Vec<App>, ServiceError>;
    fn app(&self, id: u64) -> Result<Option<App>, ServiceError>;
    fn app_credentials(&self, client_id: &str) -> Result<Option<AppCredentials>, ServiceError>;
    fn update_app(&self, id: u64, fields: &AppFields, now_ms: i64) -> Result<(), ServiceError>;
    fn set_app_disabled(&self, id: u64, disabled: bool, now_ms: i64) -> Result<(), ServiceError>;
    /// Replaces the secrets and forgets every token given out so far.
    fn set_app_secrets(
        &self,
        id: u64,
        secret_hash: &[u8],
        signing_secret: &str,
        now_ms: i64,
    ) -> Result<(), ServiceError>;
    /// Removes the application and its tokens.
    fn delete_app(&self, id: u64) -> Result<(), ServiceError>;
    fn insert_api_token(&self, token_hash: &[u8], token: &ApiToken) -> Result<(), ServiceError>;
    fn api_token(&self, token_hash: &[u8]) -> Result<Option<ApiToken>, ServiceError>;
    /// Ids of the people (not deleted, not bots) whose `field` (`account`,
    /// `employee_no` or `phone`) is `value`; at most `limit`.
    fn people_by(&self, field: PersonKey, value: &str, limit: u32) -> Result<Vec<u64>, ServiceError>;
    /// The first answer to `app_id`'s request with this Idempotency-Key.
    fn idempotent_answer(&self, app_id: u64, key: &str) -> Result<Option<IdempotentAnswer>, ServiceError>;
    /// Keeps the first answer to a request with an Idempotency-Key (a
    /// second one with the same key changes nothing) and forgets those
    /// kept since before `forget_before_ms`.
    fn keep_idempotent_answer(
        &self,
        app_id: u64,
        key: &str,
        answer: &IdempotentAnswer,
        forget_before_ms: i64,
    ) -> Result<(), ServiceError>;
    #[allow(clippy::too_many_arguments)] // one row's columns
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
    ) -> Result<u64, ServiceError>;
    /// A group's robots that were not removed.
    fn robots(&self, conversation_id: u64) -> Result<Vec<RobotRow>, ServiceError>;
    /// The robot whose URL token hashes to `token_hash`, removed or not.
    fn robot_by_token(&self, token_hash: &[u8]) -> Result<Option<RobotRow>, ServiceError>;
    /// Marks a group's robot removed; `None` if it has no such robot.
    fn remove_robot(&self, conversation_id: u64, id: u64, now_ms: i64) -> Result<Option<u64>, ServiceError>;
    /// The application whose bot account is `user_id`, if any.
    fn app_of_bot(&self, user_id: u64) -> Result<Option<u64>, ServiceError>;
    fn insert_event(&self, app_id: u64, kind: &str, data: &str, now_ms: i64) -> Result<u64, ServiceError>;
    /// Pending events whose next attempt is due, of enabled applications with
    /// a callback URL, oldest first.
    fn due_events(&self, now_ms: i64, limit: u32) -> Result<Vec<DueEvent>, ServiceError>;
    /// Records an attempt: delivered, or the error and the next attempt
    /// (`None`: given up, state `failed`).
    fn record_attempt(
        &self,
        id: u64,
        delivered_at: Option<i64>,
        error: &str,
        next_attempt_at: Option<i64>,
    ) -> Result<(), ServiceError>;
    /// An application's events after `after`, oldest first.
    fn events_after(&self, app_id: u64, after: u64, limit: u32) -> Result<Vec<AppEvent>, ServiceError>;
    /// An application's latest events, newest first.
    fn latest_events(&self, app_id: u64, limit: u32) -> Result<Vec<AppEvent>, ServiceError>;
    /// Forgets tokens that expired before `now_ms`.
    fn forget_expired_api_tokens(&self, now_ms: i64) -> Result<usize, ServiceError>;
    /// Forgets events recorded before `before_ms` that are no longer
    /// pending (delivered or given up); answers how many.
    fn forget_old_events(&self, before_ms: i64) -> Result<usize, ServiceError>;
}
