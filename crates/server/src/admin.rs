//! The administration HTTP API (`/api/admin/v1/...`), its OpenAPI document
//! and the console's static files (`/admin`).
//!
//! Every request is checked in the same order: who is calling (bearer token,
//! else 401), may their role do this (else 403), then the input (400, 404,
//! 409, 422). Bodies are read as bytes and parsed only after the role check,
//! so a caller without the role learns nothing about the input rules.
//! Every change and every audit search or export is recorded in the audit
//! log in the same transaction as the change itself.

use std::sync::Arc;

use crate::storage::Store;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::handler::Handler;
use axum::http::{header, request::Parts, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::apps;
use crate::audit::{self, Actor};
use crate::directory::{self, DepartmentInput, PersonInput};
use crate::error::ServiceError;
use crate::import::{self, ImportError};
use crate::Shared;

include!(concat!(env!("OUT_DIR"), "/admin_files.rs"));

pub const OPENAPI: &str = include_str!("admin/openapi.json");

/// An error as the API answers it: a status and `{code, message}`.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    rows: Option<Vec<import::RowError>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), rows: None }
    }

    fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "log in first")
    }

    fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", "your role does not allow this")
    }

    fn second_factor_required(caller: &Caller) -> Self {
        let message = if caller.totp_enrolled {
            "enter the code of your authenticator app first"
        } else {
            "set up an authenticator app first (two-factor authentication is required for your role)"
        };
        Self::new(StatusCode::UNAUTHORIZED, "SECOND_FACTOR_REQUIRED", message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
            // The administration API never handles files, so it never
            // answers with the file-only codes.
            ServiceError::BadRequest(_) | ServiceError::UnsafePath(_) => {
                (StatusCode::BAD_REQUEST, "BAD_REQUEST")
            }
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ServiceError::NotMember | ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ServiceError::TooLarge(_) | ServiceError::QuotaExceeded(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE")
            }
            ServiceError::Conflict(_) | ServiceError::RecallWindowPassed => {
                (StatusCode::CONFLICT, "CONFLICT")
            }
            ServiceError::BadCredentials => (StatusCode::UNAUTHORIZED, "BAD_CREDENTIALS"),
            ServiceError::AccountDisabled => (StatusCode::FORBIDDEN, "ACCOUNT_DISABLED"),
            ServiceError::PasswordChangeRequired => (StatusCode::FORBIDDEN, "PASSWORD_CHANGE_REQUIRED"),
            ServiceError::RateLimited(_)
            | ServiceError::Busy(_)
            | ServiceError::Throttled { .. }
            | ServiceError::TooManyConnections(_) => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ServiceError::SessionRevoked => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            ServiceError::SessionExpired => (StatusCode::UNAUTHORIZED, "SESSION_EXPIRED"),
            ServiceError::ShuttingDown | ServiceError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
            }
        };
        ApiError { status, code, message: e.client_message(), rows: None }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Service(e) => e.into(),
            ImportError::Invalid(rows) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "IMPORT_INVALID",
                message: format!("{} problem(s) found; nothing was imported", rows.len()),
                rows: Some(rows),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(rows) = self.rows {
            body["errors"] = json!(rows);
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub use crate::accounts::Caller;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Admin,
    Auditor,
    AdminOrAuditor,
}

impl Caller {
    fn require(&self, need: Need) -> ApiResult<()> {
        if self.must_change_password {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "PASSWORD_CHANGE_REQUIRED",
                "choose a new password first",
            ));
        }
        let has = |r: &str| self.roles.iter().any(|x| x == r);
        let ok = match need {
            Need::Admin => has("admin"),
            Need::Auditor => has("auditor"),
            Need::AdminOrAuditor => has("admin") || has("auditor"),
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    fn actor(&self) -> Actor {
        Actor { id: Some(self.user_id), account: self.account.clone() }
    }
}

/// A console session's last use is recorded at most this often (its
/// lifetime slides with use; a write per request would be wasted).
const CONSOLE_TOUCH_EVERY_MS: i64 = 15_000;

/// The console session a bearer token names, whether or not it passed its
/// second factor. Desktop and CLI tokens are not console sessions (401).
async fn console_session(parts: &Parts, shared: &Arc<Shared>) -> Result<Caller, ApiError> {
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or_else(ApiError::unauthenticated)?
        .to_owned();
    let lifetime = shared.auth.console_lifetime_ms;
    let caller = shared
        .db
        .read(move |conn| crate::accounts::caller_by_token(conn, &token, lifetime))
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let now = crate::storage::now_ms();
    if now - caller.last_seen_at_ms >= CONSOLE_TOUCH_EVERY_MS {
        let session_id = caller.session_id;
        let touch = Box::new(move |st: &dyn Store| st.touch_session(session_id, now).map(|()| 0));
        if let Err(e) = shared.writes.enqueue(touch).await {
            tracing::debug!(error = %e, "console session use not recorded");
        }
    }
    Ok(caller)
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    /// A console session that passed its second factor when the person
    /// needs one: a token from a password alone is refused everywhere but
    /// on the routes that complete the login ([`LoginStep`]).
    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let caller = console_session(parts, shared).await?;
        if caller.needs_second_factor(shared.config.totp_required) && !caller.second_factor {
            return Err(ApiError::second_factor_required(&caller));
        }
        Ok(caller)
    }
}

/// A console session that may still lack its second factor: taken only by
/// the routes that complete a login (`/me`, `/logout`, the code, enrolling,
/// a first password change).
pub struct LoginStep(Caller);

impl FromRequestParts<Arc<Shared>> for LoginStep {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        console_session(parts, shared).await.map(LoginStep)
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", format!("invalid JSON body: {e}")))
}

/// Runs `f` in an IMMEDIATE transaction on a pooled connection; on success
/// the audit chain's head file is brought up to date.
async fn write<T, F>(shared: &Arc<Shared>, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
{
    let key = shared.audit_key.clone();
    shared
        .db
        .read(move |conn| {
            conn.begin_immediate()?;
            match f(conn) {
                Ok(v) => {
                    conn.commit()?;
                    if let Err(e) = key.write_head(conn) {
                        tracing::error!(error = %e, "cannot write the audit head file");
                    }
                    Ok(Ok(v))
                }
                Err(e) => {
                    conn.rollback()?;
                    Ok(Err(e))
                }
            }
        })
        .await?
}

/// Tells every online client that the directory changed; each syncs what it may see.
fn directory_changed(shared: &Shared) {
    let notice =
        hutong_protocol::Envelope::new(0, hutong_protocol::Payload::DirectoryDelta(Default::default()));
    shared.hub.push_all(crate::live::outbound::Lane::Live, &hutong_protocol::encode_envelope(&notice));
}

/// Records actions of one caller in the audit log (inside [`audited`]).
struct AuditLog {
    key: audit::AuditKey,
    actor: Actor,
}

impl AuditLog {
    fn record(
        &self,
        conn: &dyn Store,
        action: &str,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) -> ApiResult<()> {
        audit::record(conn, &self.key, &self.actor, action, &target.into(), detail)?;
        Ok(())
    }
}

/// [`write`] for an action of `caller`: `f` records it through the given log,
/// in the same transaction as the action itself.
async fn audited<T, F>(shared: &Arc<Shared>, caller: &Caller, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store, &AuditLog) -> Result<T, ApiError> + Send + 'static,
{
    let log = AuditLog { key: shared.audit_key.clone(), actor: caller.actor() };
    write(shared, move |conn| f(conn, &log)).await
}

/// One row of a route table: `handler` on `method` at `path` (the
/// integration API's table uses it too).
pub(crate) fn at<H, T>(
    method: Method,
    path: &'static str,
    handler: H,
) -> (Method, &'static str, MethodRouter<Arc<Shared>>)
where
    H: Handler<T, Arc<Shared>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
    (method, path, on(filter, handler))
}

/// The API's routes, one method and path each, with their handlers. [`router`]
/// registers exactly these, and [`routes`] lists them, so a test can hold
/// every registered route against the OpenAPI document and the role rules.
fn api_routes() -> Vec<(Method, &'static str, MethodRouter<Arc<Shared>>)> {
    vec![
        at(Method::POST, "/login", login),
        at(Method::POST, "/login/second-factor", second_factor),
        at(Method::POST, "/logout", logout),
        at(Method::GET, "/me", me),
        at(Method::POST, "/me/password", change_my_password),
        at(Method::POST, "/me/totp", start_totp),
        at(Method::POST, "/me/totp/confirm", confirm_totp),
        at(Method::GET, "/pending-changes", list_pending_changes),
        at(Method::POST, "/pending-changes/{id}/confirm", confirm_pending_change),
        at(Method::POST, "/pending-changes/{id}/reject", reject_pending_change),
        at(Method::GET, "/departments", list_departments),
        at(Method::POST, "/departments", create_department),
        at(Method::PATCH, "/departments/{id}", update_department),
        at(Method::DELETE, "/departments/{id}", delete_department),
        at(Method::GET, "/people", list_people),
        at(Method::POST, "/people", create_person),
        at(Method::GET, "/people/{id}", get_person),
        at(Method::PATCH, "/people/{id}", update_person),
        at(Method::DELETE, "/people/{id}", delete_person),
        at(Method::POST, "/people/{id}/reset-password", reset_password),
        at(Method::POST, "/people/{id}/logout", force_logout),
        at(Method::GET, "/sessions", list_sessions),
        at(Method::POST, "/import", import_people),
        at(Method::GET, "/export", export_people),
        at(Method::GET, "/audit/messages", search_messages),
        at(Method::GET, "/audit/messages/export", export_messages),
        at(Method::GET, "/audit/messages/files/{id}", download_file),
        at(Method::GET, "/audit/log", action_log),
        at(Method::GET, "/retention", get_retention),
        at(Method::PUT, "/retention", set_retention),
        at(Method::GET, "/apps", list_apps),
        at(Method::POST, "/apps", create_app),
        at(Method::PATCH, "/apps/{id}", update_app),
        at(Method::DELETE, "/apps/{id}", delete_app),
        at(Method::POST, "/apps/{id}/disable", disable_app),
        at(Method::POST, "/apps/{id}/enable", enable_app),
        at(Method::POST, "/apps/{id}/rotate-secret", rotate_app_secret),
        at(Method::GET, "/apps/{id}/events", list_app_events),
        at(Method::GET, "/openapi.json", || async {
            ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
        }),
    ]
}

/// Routes callable without a bearer token.
const UNAUTHENTICATED_ROUTES: &[&str] = &["/login"];
/// Largest body of a route callable without a bearer token.
pub const UNAUTHENTICATED_BODY_BYTES: usize = 4 * 1024;
/// Largest body of the other routes but the import.
pub const BODY_BYTES: usize = 64 * 1024;

/// Every route of the API as registered: (method, path under `/api/admin/v1`).
pub fn routes() -> Vec<(Method, &'static str)> {
    api_routes().into_iter().map(|(method, path, _)| (method, path)).collect()
}

pub fn router() -> Router<Arc<Shared>> {
    // Bodies are small except an import's; the routes anyone may call
    // before logging in get the smallest limit, so that an anonymous
    // client cannot make the server buffer megabytes.
    let api = api_routes().into_iter().fold(Router::new(), |api, (_, path, handler)| {
        let limit = match path {
            "/import" => import::MAX_IMPORT_BYTES + 1024,
            _ if UNAUTHENTICATED_ROUTES.contains(&path) => UNAUTHENTICATED_BODY_BYTES,
            _ => BODY_BYTES,
        };
        api.route(path, handler.layer(axum::extract::DefaultBodyLimit::max(limit)))
    });
    Router::new()
        .nest("/api/admin/v1", api)
        .route("/admin", get(|| console_file(String::new())))
        .route("/admin/", get(|| console_file(String::new())))
        .route("/admin/{*path}", get(|Path(path): Path<String>| console_file(path)))
}

async fn console_file(path: String) -> Response {
    let path = if path.is_empty() { "index.html".to_owned() } else { path };
    let found = ADMIN_FILES.iter().find(|(name, _)| *name == path);
    // Unknown paths without an extension are client-side routes: serve the app.
    let (name, bytes) = match found {
        Some(f) => *f,
        None if !path.contains('.') => match ADMIN_FILES.iter().find(|(n, _)| *n == "index.html") {
            Some(f) => *f,
            None => return StatusCode::NOT_FOUND.into_response(),
        },
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    let mime = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    };
    let cache = if name == "index.html" { "no-cache" } else { "public, max-age=31536000, immutable" };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
            ),
        ],
        bytes,
    )
        .into_response()
}

// ------------------------------------------------------------------ session

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    account: String,
    password: String,
    /// The authenticator app's code, for a login in one request.
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

async fn login(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let body: LoginBody = parse(&body)?;
    let request = hutong_protocol::v1::Login {
        account: body.account.clone(),
        secret: Some(hutong_protocol::v1::login::Secret::Password(body.password)),
        // Each console login is its own session, so two browsers do not log each other out.
        device: format!("{}{}", crate::accounts::CONSOLE_DEVICE_PREFIX, &crate::accounts::new_token()[..12]),
        bulk: false,
    };
    let auth = shared.auth.login_allowing_password_change(&shared.db, request, Some(peer.ip())).await?;
    let token = auth.token.clone().unwrap_or_default();
    let lifetime = shared.auth.console_lifetime_ms;
    let mut me = shared
        .db
        .read(move |conn| crate::accounts::caller_by_token(conn, &token, lifetime))
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let account = me.account.clone();
    audited(&shared, &me, move |conn, log| log.record(conn, "console.login", account, json!({}))).await?;
    if me.totp_enrolled && (body.code.is_some() || body.recovery_code.is_some()) {
        pass_second_factor(&shared, &me, body.code, body.recovery_code, peer.ip()).await?;
        me.second_factor = true;
    }
    Ok(Json(json!({ "token": auth.token, "me": me_json(&shared, &me, &auth.display_name) })))
}

fn me_json(shared: &Shared, c: &Caller, display_name: &str) -> serde_json::Value {
    let required = c.needs_second_factor(shared.config.totp_required);
    json!({
        "id": c.user_id,
        "account": c.account,
        "display_name": display_name,
        "roles": c.roles,
        "must_change_password": c.must_change_password,
        // What the console must ask before anything else: a code (enrolled),
        // an enrolment (required, not enrolled), or nothing.
        "second_factor": if !required || c.second_factor {
            "done"
        } else if c.totp_enrolled {
            "code"
        } else {
            "enrol"
        },
        "totp_enrolled": c.totp_enrolled,
    })
}

async fn logout(State(shared): State<Arc<Shared>>, LoginStep(caller): LoginStep) -> ApiResult<StatusCode> {
    let id = caller.session_id;
    shared.db.read(move |conn| crate::accounts::end_session(conn, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(
    State(shared): State<Arc<Shared>>,
    LoginStep(caller): LoginStep,
) -> ApiResult<Json<serde_json::Value>> {
    let id = caller.user_id;
    let name = shared.db.read(move |conn| Ok(directory::person(conn, id)?.display_name)).await?;
    Ok(Json(me_json(&shared, &caller, &name)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    old_password: String,
    new_password: String,
}

/// A person who enrolled proves the second factor before anything else,
/// a password change included; one who must enrol may change a one-time
/// password first.
fn check_login_step(shared: &Shared, caller: &Caller) -> ApiResult<()> {
    if caller.totp_enrolled
        && caller.needs_second_factor(shared.config.totp_required)
        && !caller.second_factor
    {
        return Err(ApiError::second_factor_required(caller));
    }
    Ok(())
}

async fn change_my_password(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    LoginStep(caller): LoginStep,
    body: Bytes,
) -> ApiResult<StatusCode> {
    check_login_step(&shared, &caller)?;
    let body: PasswordBody = parse(&body)?;
    shared
        .auth
        .change_password(
            &shared.db,
            &caller.account,
            &body.old_password,
            &body.new_password,
            Some(caller.session_id),
            Some(peer.ip()),
        )
        .await?;
    let account = caller.account.clone();
    audited(&shared, &caller, move |conn, log| log.record(conn, "password.change", account, json!({})))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ second factor

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

/// Checks a TOTP code or spends a recovery code and marks the session as
/// having passed its second factor. Wrong codes are throttled per account
/// and address like passwords (`RATE_LIMITED` with the time left).
async fn pass_second_factor(
    shared: &Arc<Shared>,
    caller: &Caller,
    code: Option<String>,
    recovery: Option<String>,
    addr: std::net::IpAddr,
) -> ApiResult<()> {
    use crate::accounts::totp;
    if code.as_ref().is_some_and(|c| c.len() > 64) || recovery.as_ref().is_some_and(|c| c.len() > 64) {
        return Err(ApiError::bad_request("a code has at most 64 characters"));
    }
    if code.is_none() && recovery.is_none() {
        return Err(ApiError::bad_request("send the code of your authenticator app or a recovery code"));
    }
    let attempt = shared.auth.throttle.reserve_code(&caller.account, Some(addr))?;
    let (user_id, session_id, account) = (caller.user_id, caller.session_id, caller.account.clone());
    let passed = audited(shared, caller, move |conn, log| {
        let state = conn.totp_state(user_id)?;
        let Some(secret) = state.secret else {
            return Err(ApiError::bad_request("no authenticator app is set up for this account"));
        };
        let method = if code.is_some() { "totp" } else { "recovery_code" };
        let ok = match (code, recovery) {
            (Some(code), _) => {
                match totp::matching_step(&secret, &account, &code, totp::now_secs(), state.last_step) {
                    Some(step) => conn.use_totp_step(user_id, step)?,
                    None => false,
                }
            }
            (None, Some(r)) => conn.use_recovery_code(user_id, &totp::recovery_hash(&r))?,
            (None, None) => false,
        };
        if !ok {
            return Ok(false);
        }
        conn.mark_second_factor(session_id)?;
        let left = conn.recovery_codes_left(user_id)?;
        log.record(
            conn,
            "console.second_factor",
            account,
            json!({ "method": method, "recovery_codes_left": left }),
        )?;
        Ok(true)
    })
    .await?;
    if !passed {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "BAD_CODE",
            "the code is wrong or was used already",
        ));
    }
    shared.auth.throttle.refund(attempt);
    Ok(())
}

async fn second_factor(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    LoginStep(mut caller): LoginStep,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let body: CodeBody = parse(&body)?;
    pass_second_factor(&shared, &caller, body.code, body.recovery_code, peer.ip()).await?;
    caller.second_factor = true;
    let id = caller.user_id;
    let name = shared.db.read(move |conn| Ok(directory::person(conn, id)?.display_name)).await?;
    Ok(Json(me_json(&shared, &caller, &name)))
}

/// Starts (or restarts) enrolling an authenticator app: a new secret, not
/// in force until a code of it is confirmed.
async fn start_totp(
    State(shared): State<Arc<Shared>>,
    LoginStep(caller): LoginStep,
) -> ApiResult<Json<crate::accounts::totp::Enrolment>> {
    check_login_step(&shared, &caller)?;
    let secret = crate::accounts::totp::new_secret();
    let enrolment = crate::accounts::totp::enrolment(&secret, &caller.account)?;
    let id = caller.user_id;
    shared.db.read(move |conn| conn.set_totp_pending(id, &secret)).await?;
    Ok(Json(enrolment))
}

/// Confirms the app with one of its codes: the secret takes effect, ten new
/// recovery codes are shown once (only their hashes are kept), and this
/// session counts as having passed its second factor.
async fn confirm_totp(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    LoginStep(caller): LoginStep,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    use crate::accounts::totp;
    check_login_step(&shared, &caller)?;
    let body: CodeBody = parse(&body)?;
    let code = body.code.ok_or_else(|| ApiError::bad_request("send a code of the new authenticator app"))?;
    let attempt = shared.auth.throttle.reserve_code(&caller.account, Some(peer.ip()))?;
    let (user_id, session_id, account) = (caller.user_id, caller.session_id, caller.account.clone());
    let codes = totp::new_recovery_codes();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|c| totp::recovery_hash(c)).collect();
    let confirmed = audited(&shared, &caller, move |conn, log| {
        let state = conn.totp_state(user_id)?;
        let Some(pending) = state.pending else {
            return Err(ApiError::bad_request("start setting up an authenticator app first"));
        };
        let Some(step) = totp::matching_step(&pending, &account, &code, totp::now_secs(), 0) else {
            return Ok(false);
        };
        if !conn.confirm_totp(user_id, &pending, step, &hashes)? {
            return Ok(false);
        }
        conn.mark_second_factor(session_id)?;
        log.record(conn, "totp.enrol", account, json!({ "recovery_codes": hashes.len() }))?;
        Ok(true)
    })
    .await?;
    if !confirmed {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "BAD_CODE",
            "the code is wrong or was used already",
        ));
    }
    shared.auth.throttle.refund(attempt);
    Ok(Json(json!({ "recovery_codes": codes })))
}

// ------------------------------------------------------------------ departments

async fn list_departments(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Admin)?;
    let list = shared.db.read(|conn| directory::departments(conn)).await?;
    Ok(Json(json!({ "departments": list })))
}

fn check_department_name(input: &DepartmentInput) -> ApiResult<()> {
    if input.name.as_deref().is_some_and(|n| n.contains('/')) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "a department name cannot contain '/'",
        ));
    }
    Ok(())
}

async fn create_department(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<directory::Department>)> {
    caller.require(Need::Admin)?;
    let input: DepartmentInput = parse(&body)?;
    check_department_name(&input)?;
    let d = audited(&shared, &caller, move |conn, log| {
        let id = directory::create_department(conn, &input)?;
        let d = directory::department(conn, id)?;
        log.record(conn, "department.create", format!("department:{id}"), json!(d))?;
        Ok(d)
    })
    .await?;
    directory_changed(&shared);
    Ok((StatusCode::CREATED, Json(d)))
}

async fn update_department(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult<Json<directory::Department>> {
    caller.require(Need::Admin)?;
    let input: DepartmentInput = parse(&body)?;
    check_department_name(&input)?;
    let d = audited(&shared, &caller, move |conn, log| {
        let before = directory::department(conn, id)?;
        directory::update_department(conn, id, &input)?;
        let after = directory::department(conn, id)?;
        log.record(
            conn,
            "department.update",
            format!("department:{id}"),
            json!({ "before": before, "after": after }),
        )?;
        Ok(after)
    })
    .await?;
    directory_changed(&shared);
    Ok(Json(d))
}

async fn delete_department(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    caller.require(Need::Admin)?;
    audited(&shared, &caller, move |conn, log| {
        let d = directory::department(conn, id)?;
        directory::delete_department(conn, id)?;
        log.record(conn, "department.delete", format!("department:{id}"), json!(d))
    })
    .await?;
    directory_changed(&shared);
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ people

fn with_online(shared: &Shared, mut p: directory::Person) -> directory::Person {
    p.online = shared.hub.is_online(p.id);
    p
}

async fn list_people(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(q): Query<directory::PeopleQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Admin)?;
    let (people, total) = shared.db.read(move |conn| directory::search_people(conn, &q)).await?;
    let people: Vec<_> = people.into_iter().map(|p| with_online(&shared, p)).collect();
    Ok(Json(json!({ "people": people, "total": total })))
}

async fn get_person(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<Json<directory::Person>> {
    caller.require(Need::Admin)?;
    let p = shared.db.read(move |conn| directory::person(conn, id)).await?;
    Ok(Json(with_online(&shared, p)))
}

async fn create_person(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    caller.require(Need::Admin)?;
    let input: PersonInput = parse(&body)?;
    if input.disabled.is_some() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", "a new person starts active"));
    }
    let (password, generated) = match input.password.clone() {
        Some(p) => {
            crate::accounts::check_password_policy(&p)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.to_string()))?;
            (p, false)
        }
        None => (crate::accounts::new_password(), true),
    };
    let hash = shared.auth.hash(password.clone()).await?;
    let requester = caller.user_id;
    let (person, pending) = audited(&shared, &caller, move |conn, log| {
        let mut input = input;
        // The auditor role waits for an auditor's confirmation.
        let wants_auditor = input.roles.as_ref().is_some_and(|r| r.iter().any(|x| x == AUDITOR));
        if let Some(roles) = &mut input.roles {
            roles.retain(|r| r != AUDITOR);
        }
        let id = directory::create_person(conn, &input, &hash, generated)?;
        let p = directory::person(conn, id)?;
        log.record(conn, "person.create", format!("person:{}", p.account), json!(p))?;
        let pending = if wants_auditor {
            let mut roles = p.roles.clone();
            roles.push(AUDITOR.into());
            Some(request_change(
                conn,
                log,
                requester,
                "person.roles",
                &p.account,
                json!({ "id": id, "roles": roles }),
            )?)
        } else {
            None
        };
        Ok((p, pending))
    })
    .await?;
    directory_changed(&shared);
    let mut body = json!({ "person": with_online(&shared, person) });
    if generated {
        body["initial_password"] = json!(password);
    }
    if let Some(change) = pending {
        body["pending_change"] = json!(change);
    }
    Ok((StatusCode::CREATED, Json(body)))
}

async fn update_person(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    caller.require(Need::Admin)?;
    let input: PersonInput = parse(&body)?;
    if input.password.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "use reset-password to change a password",
        ));
    }
    if id == caller.user_id
        && (input.disabled == Some(true)
            || input.roles.as_ref().is_some_and(|r| !r.iter().any(|x| x == "admin")))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "you cannot disable yourself or drop your own admin role",
        ));
    }
    let requester = caller.user_id;
    let (p, disabled_now, pending) = audited(&shared, &caller, move |conn, log| {
        let before = directory::person(conn, id)?;
        let mut input = input;
        // Giving or taking the auditor role waits for an auditor; the rest
        // of the change applies now.
        let mut pending = None;
        if let Some(roles) = &input.roles {
            let had = before.roles.iter().any(|r| r == AUDITOR);
            let wants = roles.iter().any(|r| r == AUDITOR);
            if had != wants && before.status != "deleted" {
                let change = json!({ "id": id, "roles": roles });
                pending =
                    Some(request_change(conn, log, requester, "person.roles", &before.account, change)?);
                let mut now: Vec<String> = roles.iter().filter(|r| *r != AUDITOR).cloned().collect();
                if had {
                    now.push(AUDITOR.into());
                }
                input.roles = Some(now);
            }
        }
        let disabled_now = directory::update_person(conn, id, &input)?;
        if disabled_now {
            crate::accounts::end_all_sessions(conn, id, hutong_protocol::ErrorCode::AccountDisabled)?;
        }
        let after = directory::person(conn, id)?;
        log.record(
            conn,
            "person.update",
            format!("person:{}", after.account),
            json!({ "before": before, "after": after }),
        )?;
        Ok((after, disabled_now, pending))
    })
    .await?;
    if disabled_now {
        close_sessions(&shared, id, hutong_protocol::ErrorCode::AccountDisabled);
    }
    directory_changed(&shared);
    let mut body = json!(with_online(&shared, p));
    match pending {
        Some(change) => {
            body["pending_change"] = json!(change);
            Ok((StatusCode::ACCEPTED, Json(body)))
        }
        None => Ok((StatusCode::OK, Json(body))),
    }
}

/// Closes a person's live connections as soon as the revocation is committed,
/// before the answer: nothing committed after the administrator's action
/// reaches them. (The revocation watcher would find it too, but only at its
/// next poll, and messages sent meanwhile would still be delivered.)
fn close_sessions(shared: &Shared, user_id: u64, reason: hutong_protocol::ErrorCode) {
    let message = match reason {
        hutong_protocol::ErrorCode::AccountDisabled => "this account was disabled",
        _ => "the session was ended by an administrator",
    };
    shared.hub.kick(user_id, None, reason, message);
}

async fn delete_person(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    caller.require(Need::Admin)?;
    if id == caller.user_id {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", "you cannot delete yourself"));
    }
    audited(&shared, &caller, move |conn, log| {
        let p = directory::person(conn, id)?;
        directory::delete_person(conn, id)?;
        crate::accounts::end_all_sessions(conn, id, hutong_protocol::ErrorCode::AccountDisabled)?;
        log.record(conn, "person.delete", format!("person:{}", p.account), json!({ "id": id }))
    })
    .await?;
    close_sessions(&shared, id, hutong_protocol::ErrorCode::AccountDisabled);
    directory_changed(&shared);
    Ok(StatusCode::NO_CONTENT)
}

async fn reset_password(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Admin)?;
    let password = crate::accounts::new_password();
    let hash = shared.auth.hash(password.clone()).await?;
    audited(&shared, &caller, move |conn, log| {
        let p = directory::person(conn, id)?;
        if p.status == "deleted" {
            return Err(ServiceError::NotFound("person").into());
        }
        if p.roles.iter().any(|r| r == AUDITOR) {
            // Whoever holds a fresh password of an auditor can read the
            // archive: not something one administrator may do alone.
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "an auditor's password is reset on the server host (`hutong-server user passwd`), not by an administrator",
            ));
        }
        crate::storage::AccountsStore::set_password_hash(conn, id, &hash, Some(true))?;
        crate::accounts::end_all_sessions(conn, id, hutong_protocol::ErrorCode::SessionRevoked)?;
        log.record(conn, "person.reset_password", format!("person:{}", p.account), json!({}))
    })
    .await?;
    close_sessions(&shared, id, hutong_protocol::ErrorCode::SessionRevoked);
    Ok(Json(json!({ "password": password })))
}

async fn force_logout(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    caller.require(Need::Admin)?;
    audited(&shared, &caller, move |conn, log| {
        let p = directory::person(conn, id)?;
        crate::accounts::end_all_sessions(conn, id, hutong_protocol::ErrorCode::SessionRevoked)?;
        log.record(conn, "person.logout", format!("person:{}", p.account), json!({}))
    })
    .await?;
    close_sessions(&shared, id, hutong_protocol::ErrorCode::SessionRevoked);
    Ok(StatusCode::NO_CONTENT)
}

async fn list_sessions(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Admin)?;
    let mut sessions = shared.db.read(|conn| crate::accounts::sessions(conn)).await?;
    let live = shared.hub.live_sessions();
    for s in &mut sessions {
        s.online = live.contains(&s.id);
    }
    sessions.sort_by_key(|s| (!s.online, std::cmp::Reverse(s.last_seen_at_ms)));
    Ok(Json(json!({ "sessions": sessions })))
}

#[derive(serde::Deserialize)]
struct ImportQuery {
    initial_password: Option<String>,
}

async fn import_people(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<import::ImportSummary>> {
    caller.require(Need::Admin)?;
    let initial = match q.initial_password {
        Some(p) => {
            crate::accounts::check_password_policy(&p)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.to_string()))?;
            Some(shared.auth.hash(p).await?)
        }
        None => None,
    };
    let bytes = body.len();
    let summary = audited(&shared, &caller, move |conn, log| {
        let auditors = conn.holders_of(AUDITOR)?;
        let summary = import::import(conn, &body, initial.as_deref())?;
        // Nobody becomes or stops being an auditor by a file: that waits for
        // an auditor's confirmation (the whole import is rolled back).
        if conn.holders_of(AUDITOR)? != auditors {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "an import cannot give or take the auditor role; change it on the person (an auditor confirms it)",
            ));
        }
        log.record(conn, "directory.import", "people", json!({ "bytes": bytes, "summary": summary }))?;
        Ok(summary)
    })
    .await?;
    directory_changed(&shared);
    Ok(Json(summary))
}

async fn export_people(State(shared): State<Arc<Shared>>, caller: Caller) -> ApiResult<Response> {
    caller.require(Need::Admin)?;
    let csv = audited(&shared, &caller, move |conn, log| {
        let csv = import::export(conn)?;
        log.record(conn, "directory.export", "people", json!({ "bytes": csv.len() }))?;
        Ok(csv)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"hutong-people.csv\""),
        ],
        csv,
    )
        .into_response())
}

// ------------------------------------------------------------------ audit

async fn search_messages(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(q): Query<audit::MessageQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Auditor)?;
    // Messages sent a moment ago may still wait for the keyword index.
    shared.writer.submit(crate::writer::Command::FlushIndex).await?;
    let messages = audited(&shared, &caller, move |conn, log| {
        let mut found = Vec::new();
        audit::search_messages(conn, &q, 1000, |m| {
            found.push(m);
            Ok(())
        })?;
        log.record(
            conn,
            "audit.search",
            "messages",
            json!({ "query": query_json(&q), "results": found.len() }),
        )?;
        Ok(found)
    })
    .await?;
    Ok(Json(json!({ "messages": messages })))
}

fn query_json(q: &audit::MessageQuery) -> serde_json::Value {
    json!({ "q": q.q, "person": q.person, "conversation_id": q.conversation_id, "from_ms": q.from_ms, "to_ms": q.to_ms })
}

#[derive(serde::Deserialize)]
struct FileQuery {
    name: Option<String>,
}

/// The bytes of a file an archived message holds, streamed chunk by chunk.
async fn download_file(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult<Response> {
    caller.require(Need::Auditor)?;
    let id: [u8; 32] = hex::decode(&id)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", "a file id is 64 hex digits"))?;
    let name = match q.name {
        Some(n) => {
            hutong_protocol::files::check_name(&n).map_err(|reason| {
                ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", format!("the name has {reason}"))
            })?;
            n
        }
        None => hex::encode(id),
    };
    let logged_name = name.clone();
    let manifest = audited(&shared, &caller, move |conn, log| {
        let archived = crate::storage::FilesStore::file_is_referenced(conn, &id)?;
        let manifest = if archived { crate::files::load_committed(conn, &id)? } else { None };
        let manifest = manifest.ok_or(ServiceError::NotFound("archived file"))?;
        log.record(
            conn,
            "audit.download",
            format!("file {}", hex::encode(id)),
            json!({ "name": logged_name, "size": manifest.size }),
        )?;
        Ok(manifest)
    })
    .await?;
    let store = shared.blobs.clone();
    use futures::StreamExt as _;
    let chunks =
        futures::stream::iter(manifest.chunks.clone()).then(move |hash| {
            let store = store.clone();
            async move {
                tokio::task::spawn_blocking(move || store.get(&hash)).await.map_err(std::io::Error::other)?
            }
        });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, manifest.size.to_string()),
            (header::CONTENT_DISPOSITION, content_disposition(&name)),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

/// `attachment` with the name as RFC 6266 asks: an ASCII fallback and the
/// UTF-8 name percent-encoded.
fn content_disposition(name: &str) -> String {
    let fallback: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_ ".contains(c) { c } else { '_' }).collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+.^_`|~-".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Most messages one export holds.
const EXPORT_MAX: u64 = 5_000_000;

async fn export_messages(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(q): Query<audit::MessageQuery>,
) -> ApiResult<Response> {
    caller.require(Need::Auditor)?;
    // Messages sent a moment ago may still wait for the keyword index.
    shared.writer.submit(crate::writer::Command::FlushIndex).await?;
    let csv = match q.format.as_deref() {
        Some("csv") => true,
        Some("jsonl") => false,
        _ => return Err(ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", "format is jsonl or csv")),
    };
    let body = audited(&shared, &caller, move |conn, log| {
        let mut out = if csv { format!("\u{feff}{}", audit::CSV_HEADER) } else { String::new() };
        let mut count = 0u64;
        audit::search_messages(
            conn,
            &audit::MessageQuery { limit: Some(EXPORT_MAX), offset: None, ..q.clone() },
            EXPORT_MAX,
            |m| {
                count += 1;
                if csv {
                    out.push_str(&audit::csv_line(&m));
                } else {
                    out.push_str(
                        &serde_json::to_string(&m).map_err(|e| ServiceError::Internal(e.to_string()))?,
                    );
                    out.push('\n');
                }
                Ok(())
            },
        )?;
        log.record(
            conn,
            "audit.export",
            "messages",
            json!({ "query": query_json(&q), "format": if csv { "csv" } else { "jsonl" }, "results": count }),
        )?;
        Ok(out)
    })
    .await?;
    let (mime, name) = if csv {
        ("text/csv; charset=utf-8", "messages.csv")
    } else {
        ("application/x-ndjson", "messages.jsonl")
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response())
}

#[derive(serde::Deserialize)]
struct Page {
    offset: Option<u64>,
    limit: Option<u64>,
}

async fn action_log(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(p): Query<Page>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::AdminOrAuditor)?;
    let (entries, total) = shared
        .db
        .read(move |conn| audit::entries(conn, p.offset.unwrap_or(0), p.limit.unwrap_or(100)))
        .await?;
    Ok(Json(json!({ "entries": entries, "total": total })))
}

async fn get_retention(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> ApiResult<Json<audit::Retention>> {
    caller.require(Need::Admin)?;
    Ok(Json(shared.db.read(|conn| audit::retention(conn)).await?))
}

async fn set_retention(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require(Need::Admin)?;
    let rules: audit::Retention = parse(&body)?;
    if rules.direct_days > 36_500 || rules.group_days > 36_500 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "keep messages at most 36500 days (0 = forever)",
        ));
    }
    let floor = shared.config.retention_floor_days;
    let requester = caller.user_id;
    let (saved, pending) = audited(&shared, &caller, move |conn, log| {
        let before = audit::retention(conn)?;
        // Shorter than the floor (and shorter than now) removes archived
        // messages an auditor may need: it waits for one to confirm.
        let short = |new: u32, old: u32| new != 0 && new < floor && (old == 0 || new < old);
        if short(rules.direct_days, before.direct_days) || short(rules.group_days, before.group_days) {
            let change = request_change(conn, log, requester, "retention.set", "messages", json!(rules))?;
            return Ok((before, Some(change)));
        }
        apply_retention_rules(conn, log, before, rules)?;
        Ok((rules, None))
    })
    .await?;
    if let Some(change) = pending {
        let mut body = json!(saved);
        body["pending_change"] = json!(change);
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    shared.retention_changed.notify_one();
    Ok(Json(saved).into_response())
}

fn apply_retention_rules(
    conn: &dyn Store,
    log: &AuditLog,
    before: audit::Retention,
    rules: audit::Retention,
) -> ApiResult<()> {
    audit::set_retention(conn, &rules)?;
    log.record(conn, "retention.set", "messages", json!({ "before": before, "after": rules }))
}

// ------------------------------------------------------------------ changes an auditor confirms

const AUDITOR: &str = "auditor";

/// Records a change that takes effect only when an auditor other than the
/// requester confirms it (see ARCHITECTURE.md, "Who may do what").
fn request_change(
    conn: &dyn Store,
    log: &AuditLog,
    requester: u64,
    kind: &str,
    target: &str,
    detail: serde_json::Value,
) -> ApiResult<crate::storage::accounts::PendingChange> {
    let id = conn.add_pending_change(kind, target, &detail, requester)?;
    log.record(
        conn,
        "change.request",
        format!("change:{id}"),
        json!({ "kind": kind, "target": target, "detail": detail }),
    )?;
    Ok(conn.pending_change(id)?.ok_or(ServiceError::NotFound("change"))?)
}

async fn list_pending_changes(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::AdminOrAuditor)?;
    let changes = shared.db.read(|conn| conn.pending_changes()).await?;
    Ok(Json(json!({ "changes": changes })))
}

async fn confirm_pending_change(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Auditor)?;
    let me = caller.user_id;
    let (change, affects_retention, affects_directory) = audited(&shared, &caller, move |conn, log| {
        let change = conn.pending_change(id)?.ok_or(ServiceError::NotFound("change"))?;
        if change.requested_by == me {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "another auditor confirms a change you asked for",
            ));
        }
        if !conn.decide_pending_change(id, "confirmed", me)? {
            return Err(ServiceError::Conflict("this change was decided already".into()).into());
        }
        log.record(
            conn,
            "change.confirm",
            format!("change:{id}"),
            json!({ "kind": change.kind, "requested_by": change.requested_by }),
        )?;
        match change.kind.as_str() {
            "person.roles" => {
                let person: u64 = change.detail["id"]
                    .as_u64()
                    .ok_or(ServiceError::Internal("change without a person".into()))?;
                let roles: Vec<String> = serde_json::from_value(change.detail["roles"].clone())
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                let before = directory::person(conn, person)?;
                directory::update_person(
                    conn,
                    person,
                    &PersonInput { roles: Some(roles), ..Default::default() },
                )?;
                let after = directory::person(conn, person)?;
                log.record(
                    conn,
                    "person.update",
                    format!("person:{}", after.account),
                    json!({ "before": before, "after": after, "change": id }),
                )?;
                Ok((change, false, true))
            }
            "retention.set" => {
                let rules: audit::Retention = serde_json::from_value(change.detail.clone())
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                let before = audit::retention(conn)?;
                apply_retention_rules(conn, log, before, rules)?;
                Ok((change, true, false))
            }
            other => Err(ServiceError::Internal(format!("unknown change kind {other}")).into()),
        }
    })
    .await?;
    if affects_retention {
        shared.retention_changed.notify_one();
    }
    if affects_directory {
        directory_changed(&shared);
    }
    let mut change = change;
    change.state = "confirmed".into();
    change.decided_by = Some(me);
    Ok(Json(json!({ "change": change })))
}

/// An auditor turns a change down, or the administrator who asked withdraws it.
async fn reject_pending_change(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    caller.require(Need::AdminOrAuditor)?;
    let (me, auditor) = (caller.user_id, caller.has_role(AUDITOR));
    audited(&shared, &caller, move |conn, log| {
        let change = conn.pending_change(id)?.ok_or(ServiceError::NotFound("change"))?;
        if !auditor && change.requested_by != me {
            return Err(ApiError::forbidden());
        }
        if !conn.decide_pending_change(id, "rejected", me)? {
            return Err(ServiceError::Conflict("this change was decided already".into()).into());
        }
        log.record(conn, "change.reject", format!("change:{id}"), json!({ "kind": change.kind }))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ applications (integration API)

async fn list_apps(State(shared): State<Arc<Shared>>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Admin)?;
    let list = shared.db.read(|conn| apps::list(conn)).await?;
    Ok(Json(json!({ "apps": list })))
}

/// An application with its secrets, the only time they are shown.
fn app_with_secrets(app: &apps::App, secrets: &apps::NewSecrets) -> serde_json::Value {
    json!({
        "app": app,
        "client_id": app.client_id,
        "client_secret": secrets.client_secret,
        "signing_secret": secrets.signing_secret,
    })
}

async fn create_app(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    caller.require(Need::Admin)?;
    let input: apps::AppInput = parse(&body)?;
    let (app, secrets) = audited(&shared, &caller, move |conn, log| {
        let (app, secrets) = apps::create(conn, input, crate::storage::now_ms())?;
        log.record(conn, "app.create", format!("app:{}", app.client_id), json!(app))?;
        Ok((app, secrets))
    })
    .await?;
    directory_changed(&shared);
    Ok((StatusCode::CREATED, Json(app_with_secrets(&app, &secrets))))
}

async fn update_app(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult<Json<apps::App>> {
    caller.require(Need::Admin)?;
    let input: apps::AppInput = parse(&body)?;
    let (app, renamed) = audited(&shared, &caller, move |conn, log| {
        let before = apps::app(conn, id)?;
        let after = apps::update(conn, id, input, crate::storage::now_ms())?;
        log.record(
            conn,
            "app.update",
            format!("app:{}", after.client_id),
            json!({ "before": before, "after": after }),
        )?;
        Ok((after.clone(), after.name != before.name))
    })
    .await?;
    if renamed {
        directory_changed(&shared);
    }
    Ok(Json(app))
}

async fn set_app_disabled(
    shared: Arc<Shared>,
    caller: Caller,
    id: u64,
    disabled: bool,
) -> ApiResult<Json<apps::App>> {
    caller.require(Need::Admin)?;
    let app = audited(&shared, &caller, move |conn, log| {
        let app = apps::set_disabled(conn, id, disabled, crate::storage::now_ms())?;
        let action = if disabled { "app.disable" } else { "app.enable" };
        log.record(conn, action, format!("app:{}", app.client_id), json!({ "id": id }))?;
        Ok(app)
    })
    .await?;
    Ok(Json(app))
}

async fn disable_app(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<Json<apps::App>> {
    set_app_disabled(shared, caller, id, true).await
}

async fn enable_app(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<Json<apps::App>> {
    set_app_disabled(shared, caller, id, false).await
}

async fn rotate_app_secret(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Admin)?;
    let (app, secrets) = audited(&shared, &caller, move |conn, log| {
        let (app, secrets) = apps::rotate_secret(conn, id, crate::storage::now_ms())?;
        log.record(conn, "app.rotate_secret", format!("app:{}", app.client_id), json!({ "id": id }))?;
        Ok((app, secrets))
    })
    .await?;
    Ok(Json(app_with_secrets(&app, &secrets)))
}

async fn delete_app(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    caller.require(Need::Admin)?;
    audited(&shared, &caller, move |conn, log| {
        let app = apps::delete(conn, id)?;
        log.record(conn, "app.delete", format!("app:{}", app.client_id), json!(app))
    })
    .await?;
    directory_changed(&shared);
    Ok(StatusCode::NO_CONTENT)
}

/// An application's latest events with their delivery: state, attempts,
/// last error (never the event's content: it may hold people's messages).
async fn list_app_events(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Need::Admin)?;
    let events = shared
        .db
        .read(move |conn| {
            apps::app(conn, id)?;
            conn.latest_events(id, 200)
        })
        .await?;
    Ok(Json(json!({ "events": events })))
}
