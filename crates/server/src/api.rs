//! The integration API (`/api/v1/...`): what OA, ERP and scripts call as an
//! application an administrator registered (`apps.rs`).
//!
//! `POST /oauth/token` is the OAuth 2.0 client-credentials grant (RFC 6749
//! §4.4; HTTP Basic or form body; errors as in §5.2). Every other route
//! checks, in this order: the bearer token (401), its expiry (401), the
//! application not disabled (403), the caller's address against the
//! application's allow-list (403), the application's request rate (429
//! with `Retry-After`), then the scope the route needs (403), then the
//! input (400, 404, 409, 413). Errors are `{code, message}`. Group robots'
//! URLs (`POST /hooks/<token>`) take no bearer token: the URL is the key
//! (`messaging/robots.rs` checks it, the address and the signature).
//!
//! The caller's address is the TCP peer's: a proxy in front of the server
//! makes every application call from the proxy's address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::apps::{self, ApiToken, App, PersonKey};
use crate::error::ServiceError;
use crate::storage::Store;
use crate::Shared;

/// An error as the API answers it: a status and `{code, message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after_secs: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
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
            ServiceError::RateLimited(_)
            | ServiceError::Busy(_)
            | ServiceError::Throttled { .. }
            | ServiceError::TooManyConnections(_) => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ServiceError::BadCredentials
            | ServiceError::SessionRevoked
            | ServiceError::SessionExpired
            | ServiceError::AccountDisabled
            | ServiceError::PasswordChangeRequired => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            ServiceError::ShuttingDown | ServiceError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
            }
        };
        ApiError::new(status, code, e.client_message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(json!({ "code": self.code, "message": self.message }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"hutong\""));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The body of every error but the token endpoint's.
#[derive(Serialize, ToSchema)]
struct ErrorBody {
    /// Stable: clients branch on it (`INVALID_TOKEN`, `INSUFFICIENT_SCOPE`, …).
    code: String,
    /// A sentence for people.
    message: String,
}

/// The application calling, after its token, address and rate were checked.
pub struct AppCaller {
    pub app: App,
    token: ApiToken,
}

impl AppCaller {
    /// Refuses unless both the token and the application (now) hold `scope`.
    fn require(&self, scope: &str) -> ApiResult<()> {
        let has = |list: &[String]| list.iter().any(|s| s == scope);
        if has(&self.token.scopes) && has(&self.app.scopes) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "INSUFFICIENT_SCOPE",
                format!("this needs the scope {scope}"),
            ))
        }
    }
}

fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

impl FromRequestParts<Arc<Shared>> for AppCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "send a bearer token from /oauth/token",
                )
            })?
            .to_owned();
        let (token, app) = shared.db.read(move |conn| apps::token(conn, &token)).await?.ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "the token is not valid")
        })?;
        if token.expires_at <= crate::storage::now_ms() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "the token expired; get a new one",
            ));
        }
        if app.disabled {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "APP_DISABLED", "the application is disabled"));
        }
        if !peer_ip(parts).is_some_and(|ip| apps::address_allowed(&app.allowed_cidrs, ip)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ADDRESS_NOT_ALLOWED",
                "the application may not call from this address",
            ));
        }
        if let Err(wait_ms) = shared.api_requests.take(app.id) {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many requests; retry later",
            );
            e.retry_after_secs = Some(wait_ms.div_ceil(1000).max(1));
            return Err(e);
        }
        Ok(AppCaller { app, token })
    }
}

/// The API's routes, one method and path each, with their handlers;
/// [`router`] registers exactly these and [`routes`] lists them.
fn api_routes() -> Vec<(Method, &'static str, MethodRouter<Arc<Shared>>)> {
    use crate::admin::at;
    vec![
        at(Method::POST, "/oauth/token", issue_token),
        at(Method::POST, "/messages", send_message),
        at(Method::POST, "/notices", send_notice),
        at(Method::GET, "/notices/{id}", notice_status),
        at(Method::POST, "/notices/{id}/remind", remind_notice),
        at(Method::POST, "/notices/{id}/withdraw", withdraw_notice),
        at(Method::POST, "/hooks/{token}", post_to_robot),
        at(Method::GET, "/events", pull_events),
        at(Method::GET, "/openapi.json", || async { Json(ApiDoc::openapi()) }),
        at(Method::GET, "/directory/people", lookup_people),
        at(Method::GET, "/directory/departments/{id}", department_with_members),
    ]
}

/// Largest body of the token request.
const TOKEN_BODY_BYTES: usize = 4 * 1024;
/// Largest body of a message or notice request (the text may have 64 KiB).
const MESSAGE_BODY_BYTES: usize = 160 * 1024;
/// Largest body of the other routes.
pub const BODY_BYTES: usize = 64 * 1024;

/// Every route of the API as registered: (method, path under `/api/v1`).
pub fn routes() -> Vec<(Method, &'static str)> {
    api_routes().into_iter().map(|(method, path, _)| (method, path)).collect()
}

pub fn router() -> Router<Arc<Shared>> {
    let api = api_routes().into_iter().fold(Router::new(), |api, (_, path, handler)| {
        let limit = match path {
            "/oauth/token" => TOKEN_BODY_BYTES,
            "/messages" | "/notices" => MESSAGE_BODY_BYTES,
            _ => BODY_BYTES,
        };
        api.route(path, handler.layer(axum::extract::DefaultBodyLimit::max(limit)))
    });
    Router::new().nest("/api/v1", api)
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

// ------------------------------------------------------------------ token (RFC 6749 §4.4)

#[derive(Deserialize, ToSchema)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

impl std::fmt::Debug for TokenForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenForm")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A token, as RFC 6749 §5.1 gives it.
#[derive(Serialize, ToSchema)]
struct TokenAnswer {
    access_token: String,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds: 7200.
    expires_in: i64,
    /// The scopes granted, space-separated.
    scope: String,
}

/// The body of a token endpoint's error (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope`, `slow_down`.
    error: String,
    error_description: String,
}

/// An error of the token endpoint, shaped as RFC 6749 §5.2 says.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    basic: bool,
}

impl OAuthError {
    fn new(error: &'static str, description: &'static str) -> Self {
        OAuthError { status: StatusCode::BAD_REQUEST, error, description, basic: false }
    }

    fn invalid_client(description: &'static str, basic: bool) -> Self {
        OAuthError { status: StatusCode::UNAUTHORIZED, error: "invalid_client", description, basic }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody { error: self.error.into(), error_description: self.description.into() };
        let mut response = (self.status, no_store(), Json(body)).into_response();
        if self.basic {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hutong\""));
        }
        response
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")]
}

/// `client_id:client_secret` from `Authorization: Basic …`, if present.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let parsed = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(id, secret)| (id.to_owned(), secret.to_owned())));
    Some(parsed.ok_or(()))
}

/// OAuth 2.0 client credentials (RFC 6749 §4.4): `client_id` and
/// `client_secret` by HTTP Basic or in the form body.
#[utoipa::path(post, path = "/oauth/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenAnswer),
        (status = 400, body = OAuthErrorBody),
        (status = 401, body = OAuthErrorBody),
        (status = 429, body = OAuthErrorBody),
    ))]
async fn issue_token(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(form) = form
        .map_err(|_| OAuthError::new("invalid_request", "send an application/x-www-form-urlencoded body"))?;
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(OAuthError::new("unsupported_grant_type", "only client_credentials is supported"));
    }
    let (basic, (client_id, secret)) = match (basic_credentials(&headers), form.client_id, form.client_secret)
    {
        (Some(Ok(credentials)), None, None) => (true, credentials),
        (Some(Err(())), _, _) => return Err(OAuthError::invalid_client("malformed Basic credentials", true)),
        (None, Some(id), Some(secret)) => (false, (id, secret)),
        (Some(_), _, _) => {
            return Err(OAuthError::new("invalid_request", "send the credentials one way, not both"));
        }
        (None, _, _) => return Err(OAuthError::invalid_client("client authentication failed", false)),
    };
    if client_id.len() > 64 || secret.len() > 128 {
        return Err(OAuthError::invalid_client("client authentication failed", basic));
    }
    let app = shared
        .db
        .read(move |conn| apps::authenticate(conn, &client_id, &secret))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "token request failed");
            OAuthError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                ..OAuthError::new("server_error", "try again")
            }
        })?
        .ok_or_else(|| OAuthError::invalid_client("client authentication failed", basic))?;
    if app.disabled {
        return Err(OAuthError::invalid_client("the application is disabled", basic));
    }
    if !apps::address_allowed(&app.allowed_cidrs, peer.ip()) {
        return Err(OAuthError::invalid_client("the application may not call from this address", basic));
    }
    if shared.api_requests.take(app.id).is_err() {
        return Err(OAuthError {
            status: StatusCode::TOO_MANY_REQUESTS,
            ..OAuthError::new("slow_down", "too many requests; retry later")
        });
    }
    let scopes: Vec<String> = match form.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => app.scopes.clone(),
        Some(asked) => {
            let asked: Vec<String> = asked.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if asked.len() > apps::SCOPES.len() || asked.iter().any(|s| !app.scopes.contains(s)) {
                return Err(OAuthError::new("invalid_scope", "a scope the application was not granted"));
            }
            asked
        }
    };
    let (token, hash) = apps::new_token();
    let now = crate::storage::now_ms();
    let row = ApiToken { app_id: app.id, scopes: scopes.clone(), expires_at: now + apps::TOKEN_LIFETIME_MS };
    // Through the writer, like a login's session row.
    let write = Box::new(move |st: &dyn Store| {
        st.forget_expired_api_tokens(now)?;
        st.insert_api_token(&hash, &row).map(|()| 0)
    });
    shared.writes.submit(write).await.map_err(|e| {
        tracing::error!(error = %e, "token not stored");
        OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ..OAuthError::new("server_error", "try again")
        }
    })?;
    let body = TokenAnswer {
        access_token: token,
        token_type: "Bearer",
        expires_in: apps::TOKEN_LIFETIME_MS / 1000,
        scope: scopes.join(" "),
    };
    Ok((StatusCode::OK, no_store(), Json(body)).into_response())
}

// ------------------------------------------------------------------ directory (directory:read)

/// Exactly one of the fields: who to look up.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PeopleLookup {
    account: Option<String>,
    employee_no: Option<String>,
    phone: Option<String>,
}

/// People found by account, employee number or phone. An application sees
/// the whole directory (hidden departments included): it acts for the
/// company, not for a person.
/// People, as the administration API shows them.
#[derive(Serialize, ToSchema)]
struct PeopleAnswer {
    #[schema(value_type = Vec<Object>)]
    people: Vec<serde_json::Value>,
}

#[utoipa::path(get, path = "/directory/people", tag = "directory", params(PeopleLookup),
    security(("bearer" = ["directory:read"])),
    responses((status = 200, body = PeopleAnswer), (status = "4XX", body = ErrorBody)))]
async fn lookup_people(
    State(shared): State<Arc<Shared>>,
    caller: AppCaller,
    query: Result<Query<PeopleLookup>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<PeopleAnswer>> {
    caller.require("directory:read")?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (key, value) = match (q.account, q.employee_no, q.phone) {
        (Some(v), None, None) => (PersonKey::Account, v),
        (None, Some(v), None) => (PersonKey::EmployeeNo, v),
        (None, None, Some(v)) => (PersonKey::Phone, v),
        _ => return Err(ApiError::bad_request("give exactly one of account, employee_no, phone")),
    };
    if value.is_empty() || value.len() > 128 {
        return Err(ApiError::bad_request("the value must have 1 to 128 bytes"));
    }
    let people = shared
        .db
        .read(move |conn| {
            conn.people_by(key, &value, 100)?
                .into_iter()
                .map(|id| crate::directory::person(conn, id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let people = people.into_iter().map(|p| json!(p)).collect();
    Ok(Json(PeopleAnswer { people }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Page {
    offset: Option<u64>,
    limit: Option<u64>,
}

/// A department and a page of its active members (its own, not its
/// sub-departments'), with its child departments.
/// A department, its child departments and a page of its members.
#[derive(Serialize, ToSchema)]
struct DepartmentAnswer {
    #[schema(value_type = Object)]
    department: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    children: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    members: Vec<serde_json::Value>,
    total: u64,
}

#[utoipa::path(get, path = "/directory/departments/{id}", tag = "directory",
    params(("id" = u64, Path, description = "department id"), Page),
    security(("bearer" = ["directory:read"])),
    responses((status = 200, body = DepartmentAnswer), (status = "4XX", body = ErrorBody)))]
async fn department_with_members(
    State(shared): State<Arc<Shared>>,
    caller: AppCaller,
    Path(id): Path<u64>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<DepartmentAnswer>> {
    caller.require("directory:read")?;
    let Query(page) = page.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let body = shared
        .db
        .read(move |conn| {
            let department = crate::directory::department(conn, id)?;
            let children: Vec<_> = crate::directory::departments(conn)?
                .into_iter()
                .filter(|d| d.parent_id == Some(id))
                .collect();
            let filter = crate::storage::directory::PeopleFilter {
                status: "active",
                departments: Some(vec![id]),
                text: None,
                offset: page.offset.unwrap_or(0),
                limit: page.limit.unwrap_or(100).clamp(1, 1000),
            };
            let (members, total) = conn.search_people(&filter)?;
            Ok(DepartmentAnswer {
                department: json!(department),
                children: children.iter().map(|d| json!(d)).collect(),
                members: members.iter().map(|p| json!(p)).collect(),
                total,
            })
        })
        .await?;
    Ok(Json(body))
}

// ------------------------------------------------------------------ messages (messages:send)

/// How long the first answer to a request with an Idempotency-Key is kept.
const IDEMPOTENCY_KEPT_MS: i64 = 24 * 3600 * 1000;
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    to: apps::messages::Recipients,
    text: String,
}

/// The `Idempotency-Key` header: 1 to 128 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| {
        !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_BYTES && k.bytes().all(|b| b.is_ascii_graphic())
    });
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"
        ))
    })
}

/// A text from the application's bot to people and departments, one
/// direct message each. A repeat with the same Idempotency-Key and body
/// gets the first answer and sends nothing; another body gets 409.
/// What a send did: one direct message per person.
#[derive(Serialize, ToSchema)]
struct SendAnswer {
    recipients: usize,
    messages: Vec<apps::messages::Sent>,
}

#[utoipa::path(post, path = "/messages", tag = "messages", request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 128 visible ASCII characters")),
    security(("bearer" = ["messages:send"])),
    responses(
        (status = 200, body = SendAnswer, description = "sent; `Idempotent-Replayed: true` when this is the first answer again"),
        (status = 409, body = ErrorBody, description = "IDEMPOTENCY_KEY_REUSED"),
        (status = 429, body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ))]
async fn send_message(
    State(shared): State<Arc<Shared>>,
    caller: AppCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require("messages:send")?;
    let key = idempotency_key(&headers)?;
    let body_hash = apps::secret_hash_bytes(&body);
    let app_id = caller.app.id;
    if let Some(earlier) = replay(&shared, app_id, key.as_deref(), &body_hash).await? {
        return Ok(earlier);
    }
    let request: SendRequest = parse(&body)?;
    let to = request.to;
    let people = shared.db.read(move |conn| apps::messages::resolve(conn, &to)).await?;
    let sent = apps::messages::send_text(
        &shared.writer,
        app_id,
        caller.app.bot_user_id,
        &people,
        &request.text,
        key.as_deref(),
    )
    .await?;
    let answer = json!(SendAnswer { recipients: sent.len(), messages: sent });
    keep_answer(&shared, app_id, key, body_hash, &answer).await;
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// The first answer to a request with this Idempotency-Key, when there was
/// one with the same body; 409 when the key came with another body.
async fn replay(
    shared: &Arc<Shared>,
    app_id: u64,
    key: Option<&str>,
    body_hash: &[u8],
) -> ApiResult<Option<Response>> {
    let Some(key) = key.map(str::to_owned) else {
        return Ok(None);
    };
    let Some(earlier) = shared.db.read(move |conn| conn.idempotent_answer(app_id, &key)).await? else {
        return Ok(None);
    };
    if earlier.body_hash != body_hash {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used for another request",
        ));
    }
    let status = StatusCode::from_u16(earlier.status).unwrap_or(StatusCode::OK);
    let replayed = [(header::HeaderName::from_static("idempotent-replayed"), "true")];
    let content = [(header::CONTENT_TYPE, "application/json")];
    Ok(Some((status, replayed, content, earlier.response).into_response()))
}

/// Keeps the answer to a request with an Idempotency-Key for a day.
async fn keep_answer(
    shared: &Arc<Shared>,
    app_id: u64,
    key: Option<String>,
    body_hash: Vec<u8>,
    answer: &serde_json::Value,
) {
    let Some(key) = key else { return };
    let now = crate::storage::now_ms();
    let kept = crate::storage::apps::IdempotentAnswer {
        body_hash,
        status: StatusCode::OK.as_u16(),
        response: answer.to_string(),
        created_at: now,
    };
    let write = Box::new(move |st: &dyn Store| {
        st.keep_idempotent_answer(app_id, &key, &kept, now - IDEMPOTENCY_KEPT_MS).map(|()| 0)
    });
    // What the request did is committed; should keeping the answer fail, a
    // repeat does nothing anyway (the sends' own dedupe on ids derived from
    // the key) and is answered afresh.
    if let Err(e) = shared.writes.submit(write).await {
        tracing::warn!(error = %e, "idempotent answer not kept");
    }
}

// ------------------------------------------------------------------ notices (notices:send)

/// A notice from the application's bot to people, departments (with their
/// sub-departments, expanded now) or everyone, optionally to be signed off.
/// A repeat with the same Idempotency-Key and body gets the first answer
/// and sends nothing; another body gets 409.
#[utoipa::path(post, path = "/notices", tag = "notices", request_body = apps::notices::NoticeRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 128 visible ASCII characters")),
    security(("bearer" = ["notices:send"])),
    responses(
        (status = 200, body = apps::notices::NoticeSentAnswer, description = "sent; `Idempotent-Replayed: true` when this is the first answer again"),
        (status = 409, body = ErrorBody, description = "IDEMPOTENCY_KEY_REUSED"),
        (status = 429, body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ))]
async fn send_notice(
    State(shared): State<Arc<Shared>>,
    caller: AppCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require("notices:send")?;
    let key = idempotency_key(&headers)?;
    let body_hash = apps::secret_hash_bytes(&body);
    let app_id = caller.app.id;
    if let Some(earlier) = replay(&shared, app_id, key.as_deref(), &body_hash).await? {
        return Ok(earlier);
    }
    let request: apps::notices::NoticeRequest = parse(&body)?;
    let sent = apps::notices::send(&shared, app_id, caller.app.bot_user_id, request, key.as_deref()).await?;
    let answer = json!(sent);
    keep_answer(&shared, app_id, key, body_hash, &answer).await;
    Ok((StatusCode::OK, Json(answer)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// `all` (default), `not_read` or `not_signed`.
    #[param(value_type = Option<String>)]
    filter: Option<apps::notices::Filter>,
    /// The `next_after` of the previous page.
    after: Option<u64>,
    /// 1 to 1000 (default 1000).
    limit: Option<u32>,
}

/// Who received, read and signed one of the application's own notices
/// (others' are 404), a page at a time by user id, with the counts.
#[utoipa::path(get, path = "/notices/{id}", tag = "notices",
    params(("id" = u64, Path, description = "notice id"), StatusQuery),
    security(("bearer" = ["notices:send"])),
    responses(
        (status = 200, body = apps::notices::NoticeStatusAnswer),
        (status = 404, body = ErrorBody, description = "no such notice, or another sender's"),
        (status = "4XX", body = ErrorBody),
    ))]
async fn notice_status(
    State(shared): State<Arc<Shared>>,
    caller: AppCaller,
    Path(id): Path<u64>,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<apps::notices::NoticeStatusAnswer>> {
    caller.require("notices:send")?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    apps::notices::own(&shared, caller.app.bot_user_id, id).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 1000);
    let answer =
        apps::notices::status(&shared, id, q.filter.unwrap_or_default(), q.after.unwrap_or(0), limit).await?;
    Ok(Json(answer))
}

/// How many were reminded.
#[derive(Serialize, ToSchema)]
struct RemindAnswer {
    reminded: usize,
}

/// Reminds everyone who has not signed one of the application's notices.
#[utoipa::path(post, path = "/notices/{id}/remind", tag = "notices",
    params(("id" = u64, Path, description = "notice id")),
    security(("bearer" = ["notices:send"])),
    responses(
        (status = 200, body = RemindAnswer),
        (status = 400, body = ErrorBody, description = "the notice needs no sign-off, or was withdrawn"),
        (status = 404, body = ErrorBody, description = "no such notice, or another sender's"),
        (status = "4XX", body = ErrorBody),
    ))]
async fn remind_notice(
    State(shared): State<Arc<Shared>>,
    caller: AppCaller,
    Path(id): Path<u64>,
) -> ApiResult<Json<RemindAnswer>> {
    caller.require("notices:send")?;
    let reminded = apps::notices::remind(&shared, caller.app.bot_user_id, id).await?;
    Ok(Json(RemindAnswer { reminded }))
}

/// A withdrawn notice.
#[derive(Serialize, ToSchema)]
struct WithdrawAnswer {
    notice_id: u64,
    withdrawn: bool,
}

/// Withdraws one of the application's notices: its recipients see it
/// withdrawn (its title only). Withdrawing again changes nothing.
#[utoipa::path(post, path = "/notices/{id}/withdraw", tag = "notices",
    params(("id" = u64, Path, description = "notice id")),
    security(("bearer" = ["notices:send"])),
    responses(
        (status = 200, body = WithdrawAnswer),
        (status = 404, body = ErrorBody, description = "no such notice, or another sender's"),
        (status = "4XX", body = ErrorBody),
    ))]
async fn withdraw_notice(
    State(shared): State<Arc<Shared>>,
    caller: AppCaller,
    Path(id): Path<u64>,
) -> ApiResult<Json<WithdrawAnswer>> {
    caller.require("notices:send")?;
    apps::notices::withdraw(&shared, caller.app.bot_user_id, id).await?;
    Ok(Json(WithdrawAnswer { notice_id: id, withdrawn: true }))
}

// ------------------------------------------------------------------ group robots (no bearer token: the URL is the key)

/// Robots share the per-application bucket map under keys no application
/// id reaches.
const ROBOT_RATE_KEY: u64 = 1 << 62;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HookQuery {
    timestamp: Option<i64>,
    sign: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct HookText {
    content: String,
}

#[derive(Debug, Deserialize, ToSchema)]
struct HookMarkdown {
    #[allow(dead_code)] // DingTalk's notification title: read for the shape, not shown
    title: String,
    text: String,
}

/// DingTalk's and WeCom's body shape; other fields (`at`) are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
enum HookBody {
    Text { text: HookText },
    Markdown { markdown: HookMarkdown },
}

/// `POST /hooks/<token>`: a script posts text or Markdown into a group as
/// its robot. Unknown, removed and orphaned robots are answered 404, a
/// refused address 403, a missing or wrong signature 401.
/// Where a robot's post went.
#[derive(Serialize, ToSchema)]
struct HookAnswer {
    conversation_id: u64,
    seq: u64,
}

#[utoipa::path(post, path = "/hooks/{token}", tag = "robots", request_body = HookBody,
    params(("token" = String, Path, description = "the robot's URL token"), HookQuery),
    security(()),
    responses(
        (status = 200, body = HookAnswer),
        (status = 401, body = ErrorBody, description = "BAD_SIGNATURE"),
        (status = 403, body = ErrorBody, description = "ADDRESS_NOT_ALLOWED"),
        (status = 404, body = ErrorBody, description = "no such robot, removed, or its creator left the group"),
        (status = "4XX", body = ErrorBody),
    ))]
async fn post_to_robot(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    query: Result<Query<HookQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> ApiResult<Json<HookAnswer>> {
    use crate::messaging::robots::{self, Refusal};
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let signature = match (query.timestamp, query.sign) {
        (Some(timestamp_ms), Some(sign)) => Some(robots::Signature { timestamp_ms, sign }),
        _ => None,
    };
    let robot = robots::check(&shared, &token, Some(peer.ip()), signature).await.map_err(|r| match r {
        Refusal::Gone => ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such robot"),
        Refusal::AddressNotAllowed => ApiError::new(
            StatusCode::FORBIDDEN,
            "ADDRESS_NOT_ALLOWED",
            "this robot may not be called from this address",
        ),
        Refusal::BadSignature(why) => ApiError::new(StatusCode::UNAUTHORIZED, "BAD_SIGNATURE", why),
        Refusal::Service(e) => e.into(),
    })?;
    if let Err(wait_ms) = shared.api_requests.take(ROBOT_RATE_KEY | robot.id) {
        let mut e =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "too many posts; retry later");
        e.retry_after_secs = Some(wait_ms.div_ceil(1000).max(1));
        return Err(e);
    }
    let post = match parse::<HookBody>(&body)? {
        HookBody::Text { text } => robots::Post { text: text.content, markdown: false },
        HookBody::Markdown { markdown } => robots::Post { text: markdown.text, markdown: true },
    };
    let message = robots::post(&shared, &robot, post).await?;
    Ok(Json(HookAnswer { conversation_id: message.conversation_id, seq: message.seq }))
}

// ------------------------------------------------------------------ events (pull)

/// The longest a pull waits for an event.
const MAX_WAIT_SECS: u64 = 30;
/// Events one pull answers at most.
const PULL_LIMIT: u32 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PullQuery {
    after: Option<u64>,
    wait: Option<u64>,
}

/// `GET /events?after=<id>&wait=<secs>`: the application's events after
/// `after`, oldest first; with `wait` (at most 30 s) an empty answer waits
/// that long for one (long polling). Any token of the application.
/// Events, oldest first, and the id to pull after next time.
#[derive(Serialize, ToSchema)]
struct EventsAnswer {
    /// `{id, kind, created_at_ms, data}` each.
    #[schema(value_type = Vec<Object>)]
    events: Vec<serde_json::Value>,
    next_after: u64,
}

#[utoipa::path(get, path = "/events", tag = "events", params(PullQuery),
    security(("bearer" = [])),
    responses((status = 200, body = EventsAnswer), (status = "4XX", body = ErrorBody)))]
async fn pull_events(
    State(shared): State<Arc<Shared>>,
    caller: AppCaller,
    query: Result<Query<PullQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<EventsAnswer>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_request(format!("wait is at most {MAX_WAIT_SECS} seconds")));
    }
    let (app_id, after) = (caller.app.id, q.after.unwrap_or(0));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        // Registered before the read, so an event recorded meanwhile wakes it.
        let woken = shared.events_recorded.notified();
        let events = shared.db.read(move |conn| conn.events_after(app_id, after, PULL_LIMIT)).await?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            let next = events.last().map_or(after, |e| e.id);
            let events: Vec<_> = events.iter().map(crate::events::body).collect();
            return Ok(Json(EventsAnswer { events, next_after: next }));
        }
        // Events recorded by another process or without a notice are found
        // within a second.
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

// ------------------------------------------------------------------ the OpenAPI document

/// The API's OpenAPI document, generated from the handlers' own types
/// (served at `/api/v1/openapi.json`; a test holds it against [`routes`]).
#[derive(OpenApi)]
#[openapi(
    info(title = "Hutong integration API", version = "1.0.0",
        description = "What OA, ERP and scripts call as an application an administrator registered. Get a token at /oauth/token (client credentials), then send `Authorization: Bearer <token>`. Errors are an HTTP status with {code, message}; the token endpoint's are RFC 6749's {error, error_description}."),
    servers((url = "/api/v1")),
    paths(issue_token, send_message, send_notice, notice_status, remind_notice, withdraw_notice, lookup_people, department_with_members, post_to_robot, pull_events),
    modifiers(&BearerScheme),
)]
pub struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
