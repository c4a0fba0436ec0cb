//! The integration API end to end (issue 14): applications registered
//! through the administration API, their tokens and what they call under
//! `/api/v1`. A real server on port 0, a real HTTP client.

use std::time::Duration;

use hutong_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(30);

struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn new(server: &TestServer) -> Admin {
        Admin {
            base: format!("http://{}/api/admin/v1", server.http),
            token: admin_token(server).await,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn sha256(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_manage_applications_and_their_bot_accounts() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server).await;
    use reqwest::Method;

    // Inputs are checked.
    for (body, what) in [
        (json!({ "name": "OA", "scopes": ["messages:fly"], "allowed_cidrs": ["0.0.0.0/0"] }), "scope"),
        (json!({ "name": "OA", "scopes": ["messages:send"], "allowed_cidrs": ["10.0.0.0/33"] }), "cidr"),
        (json!({ "name": "OA", "scopes": ["messages:send"], "allowed_cidrs": [] }), "no cidr"),
        (json!({ "name": "", "scopes": ["messages:send"], "allowed_cidrs": ["::/0"] }), "name"),
        (json!({ "name": "OA", "scopes": [], "allowed_cidrs": ["::/0"] }), "no scope"),
        (
            json!({ "name": "OA", "scopes": ["messages:send"], "allowed_cidrs": ["::/0"], "callback_url": "ftp://x" }),
            "callback",
        ),
        (
            json!({ "name": "OA", "scopes": ["messages:send"], "allowed_cidrs": ["::/0"], "secret": "x" }),
            "field",
        ),
    ] {
        let (status, answer) = admin.call(Method::POST, "/apps", Some(body)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("BAD_REQUEST")),
            "{what}"
        );
    }

    let (status, created) = admin
        .call(
            Method::POST,
            "/apps",
            Some(json!({
                "name": "审批系统",
                "avatar_url": "https://oa.example.com/logo.png",
                "scopes": ["messages:send", "directory:read", "messages:send"],
                "allowed_cidrs": ["127.0.0.1/32", "::1"],
                "callback_url": "https://oa.example.com/hutong/events",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let client_id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let signing = created["signing_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 64 && signing.len() >= 64, "high-entropy secrets");
    let app = &created["app"];
    let id = app["id"].as_u64().unwrap();
    assert_eq!(app["scopes"], json!(["messages:send", "directory:read"]));
    assert_eq!(app["disabled"], json!(false));

    // Only a hash of the client secret is kept; the list never shows secrets.
    let db = server.db();
    let stored: Vec<u8> =
        db.query_row("SELECT secret_hash FROM apps WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    assert_eq!(stored, sha256(&secret));
    let (status, list) = admin.call(Method::GET, "/apps", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["apps"].as_array().unwrap().len(), 1);
    let listed = list.to_string();
    assert!(!listed.contains(&secret) && !listed.contains(&signing), "{listed}");

    // The bot account: the app's name, role bot, no department, no login.
    let bot = app["bot_user_id"].as_u64().unwrap();
    let (name, roles, account, departments): (String, String, String, Option<i64>) = db
        .query_row(
            "SELECT display_name, roles, account, primary_department_id FROM users WHERE id = ?1",
            [bot],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((name.as_str(), roles.as_str(), departments), ("审批系统", "bot", None));
    for password in ["", "!", &secret] {
        let (status, _) = reqwest::Client::new()
            .post(format!("{}/login", admin.base))
            .json(&json!({ "account": account, "password": password }))
            .send()
            .await
            .map(|r| (r.status(), ()))
            .unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the bot logs in with {password:?}");
    }
    let mut native = RawConn::connect(server.tcp).await;
    native.hello().await;
    let answer = native.login(&account, &secret).await;
    assert!(
        matches!(answer.payload, Some(hutong_protocol::Payload::Error(_))),
        "the bot logs in over the client protocol: {answer:?}"
    );

    // A new name renames the bot; disable, enable.
    let (status, updated) =
        admin.call(Method::PATCH, &format!("/apps/{id}"), Some(json!({ "name": "OA 审批" }))).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["scopes"], json!(["messages:send", "directory:read"]), "kept");
    let name: String =
        db.query_row("SELECT display_name FROM users WHERE id = ?1", [bot], |r| r.get(0)).unwrap();
    assert_eq!(name, "OA 审批");
    let (status, disabled) = admin.call(Method::POST, &format!("/apps/{id}/disable"), Some(json!({}))).await;
    assert_eq!((status, &disabled["disabled"]), (StatusCode::OK, &json!(true)));
    let (status, enabled) = admin.call(Method::POST, &format!("/apps/{id}/enable"), Some(json!({}))).await;
    assert_eq!((status, &enabled["disabled"]), (StatusCode::OK, &json!(false)));

    // Rotating gives new secrets once and forgets the old hash.
    let (status, rotated) =
        admin.call(Method::POST, &format!("/apps/{id}/rotate-secret"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["client_id"].as_str(), Some(client_id.as_str()));
    let stored: Vec<u8> =
        db.query_row("SELECT secret_hash FROM apps WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    assert_eq!(stored, sha256(new_secret));

    // Deleting keeps the bot as a deleted person (what it sent still names it).
    let (status, _) = admin.call(Method::DELETE, &format!("/apps/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = admin.call(Method::PATCH, &format!("/apps/{id}"), Some(json!({}))).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
    let deleted: bool = db.query_row("SELECT deleted FROM users WHERE id = ?1", [bot], |r| r.get(0)).unwrap();
    assert!(deleted);

    // Every change is in the action log, and no secret is.
    let mut stmt =
        db.prepare("SELECT action, detail FROM audit_log WHERE action LIKE 'app.%' ORDER BY id").unwrap();
    let log: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap();
    let actions: Vec<&str> = log.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["app.create", "app.update", "app.disable", "app.enable", "app.rotate_secret", "app.delete"]
    );
    for (_, detail) in &log {
        for s in [&secret, &signing, &new_secret.to_owned()] {
            assert!(!detail.contains(s.as_str()), "a secret in the action log: {detail}");
        }
    }
    drop(stmt);
    drop(db);
    server.stop().await;
}

/// An application registered by the administrator; its id, client id and secret.
async fn register(admin: &Admin, name: &str, scopes: &[&str], cidrs: &[&str]) -> (u64, String, String) {
    let (status, created) = admin
        .call(
            reqwest::Method::POST,
            "/apps",
            Some(json!({ "name": name, "scopes": scopes, "allowed_cidrs": cidrs })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["app"]["id"].as_u64().unwrap(),
        created["client_id"].as_str().unwrap().to_owned(),
        created["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// The integration API as an application calls it.
struct AppApi {
    base: String,
    http: reqwest::Client,
}

impl AppApi {
    fn new(server: &TestServer) -> AppApi {
        AppApi { base: format!("http://{}/api/v1", server.http), http: reqwest::Client::new() }
    }

    async fn token_response(&self, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(format!("{}/oauth/token", self.base)).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.expect("token request")
    }

    async fn token(&self, client_id: &str, secret: &str) -> String {
        let resp =
            self.token_response(Some((client_id, secret)), &[("grant_type", "client_credentials")]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scopes_addresses_and_rates_are_checked_on_every_call() {
    let server = TestServer::start_with(|c| {
        c.api_rate_per_sec = 1;
        c.api_burst = 12;
    })
    .await;
    server.add_users(&["alice"]);
    server
        .db()
        .execute("UPDATE users SET employee_no = 'E001', phone = '13800000001' WHERE account = 'alice'", [])
        .unwrap();
    let admin = Admin::new(&server).await;
    let local = ["127.0.0.1/32", "::1"];
    let (reader_id, reader, reader_secret) = register(&admin, "HR", &["directory:read"], &local).await;
    let (_, sender, sender_secret) = register(&admin, "ERP", &["messages:send"], &local).await;
    let (moved_id, moved, moved_secret) = register(&admin, "Moved", &["directory:read"], &local).await;
    let api = AppApi::new(&server);

    // The grant, by Basic and by form body.
    let resp =
        api.token_response(Some((&reader, &reader_secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_u64()), (Some("Bearer"), Some(7200)));
    assert_eq!(body["scope"], "directory:read");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let resp = api
        .token_response(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &sender),
                ("client_secret", &sender_secret),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let sender_token = resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();

    // Refused grants, RFC 6749 §5.2 shaped.
    for (basic, form, status, error) in [
        (Some((reader.as_str(), "wrong")), vec![("grant_type", "client_credentials")], 401, "invalid_client"),
        (
            Some(("app_nobody", reader_secret.as_str())),
            vec![("grant_type", "client_credentials")],
            401,
            "invalid_client",
        ),
        (None, vec![("grant_type", "client_credentials")], 401, "invalid_client"),
        (
            Some((reader.as_str(), reader_secret.as_str())),
            vec![("grant_type", "password")],
            400,
            "unsupported_grant_type",
        ),
        (
            Some((reader.as_str(), reader_secret.as_str())),
            vec![("grant_type", "client_credentials"), ("scope", "directory:write")],
            400,
            "invalid_scope",
        ),
    ] {
        let resp = api.token_response(basic, &form).await;
        let got = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{form:?}");
    }

    // Lookups by account, employee number, phone.
    for query in ["account=alice", "employee_no=E001", "phone=13800000001"] {
        let (status, body, _) = api.get(&format!("/directory/people?{query}"), Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["people"][0]["account"], "alice", "{query}");
    }
    let (status, body, _) = api.get("/directory/people?account=nobody", Some(&token)).await;
    assert_eq!((status, body["people"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    let (status, _, _) = api.get("/directory/people?account=alice&phone=1", Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // No token, an invalid one, an expired one, a wrongly scoped one.
    let lookup = "/directory/people?account=alice";
    let (status, body, headers) = api.get(lookup, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED")));
    assert!(headers.contains_key("www-authenticate"));
    let (status, body, _) = api.get(lookup, Some(&"0".repeat(64))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("INVALID_TOKEN")));
    let (status, body, _) = api.get(lookup, Some(&sender_token)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("INSUFFICIENT_SCOPE")));
    let expired = api.token(&reader, &reader_secret).await;
    server
        .db()
        .execute("UPDATE api_tokens SET expires_at = 1 WHERE token_hash = ?1", [sha256(&expired)])
        .unwrap();
    let (status, body, _) = api.get(lookup, Some(&expired)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("TOKEN_EXPIRED")));

    // A token used from an address the application may not call from.
    let moved_token = api.token(&moved, &moved_secret).await;
    let (status, _, _) = api.get(lookup, Some(&moved_token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/apps/{moved_id}"),
            Some(json!({ "allowed_cidrs": ["10.0.0.0/8"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = api.get(lookup, Some(&moved_token)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("ADDRESS_NOT_ALLOWED")));
    let resp =
        api.token_response(Some((&moved, &moved_secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "a token for a refused address");

    // The rate: a burst of 12 per application, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..40 {
        let (status, body, headers) = api.get(lookup, Some(&token)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((body, headers));
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (body, headers) = limited.expect("429 within 40 requests at 1 per second after a burst of 12");
    assert_eq!(body["code"], "RATE_LIMITED");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another application has its own bucket.
    let (status, _, _) = api.get("/directory/people?account=alice", Some(&sender_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "scope, not rate");

    // A disabled application's tokens are refused.
    let (status, _) = admin.call(reqwest::Method::POST, &format!("/apps/{reader_id}/disable"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = api.get(lookup, Some(&token)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("APP_DISABLED")));
    server.stop().await;
}

impl AppApi {
    async fn post_message(&self, token: &str, key: Option<&str>, body: &Value) -> (StatusCode, Value, bool) {
        let mut req = self.http.post(format!("{}/messages", self.base)).bearer_auth(token).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.expect("request");
        let (status, replayed) = (resp.status(), resp.headers().contains_key("idempotent-replayed"));
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), replayed)
    }
}

/// Texts `client` holds from `sender`, in seq order.
fn texts_from(client: &hutong_client::Client, sender: u64) -> Vec<String> {
    let mut texts = Vec::new();
    for c in client.conversations().unwrap() {
        for m in client.cached_messages(c.id).unwrap() {
            if m.sender_id == sender && m.kind == "text" {
                texts.push(m.text);
            }
        }
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_messages_people_and_departments_once_per_idempotency_key() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob", "carol", "dave"]);
    let admin = Admin::new(&server).await;
    let (status, sales) =
        admin.call(reqwest::Method::POST, "/departments", Some(json!({ "name": "销售部" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{sales}");
    let sales = sales["id"].as_u64().unwrap();
    let (status, east) = admin
        .call(reqwest::Method::POST, "/departments", Some(json!({ "name": "华东", "parent_id": sales })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{east}");
    let east = east["id"].as_u64().unwrap();
    let db = server.db();
    db.execute("UPDATE users SET primary_department_id = ?1 WHERE account = 'bob'", [sales]).unwrap();
    db.execute("UPDATE users SET primary_department_id = ?1 WHERE account = 'carol'", [east]).unwrap();
    drop(db);
    let (_, client_id, secret) =
        register(&admin, "ERP 助手", &["messages:send"], &["127.0.0.1/32", "::1"]).await;
    let (_, reader_id, reader_secret) =
        register(&admin, "Reader", &["directory:read"], &["127.0.0.1/32", "::1"]).await;
    let api = AppApi::new(&server);
    let token = api.token(&client_id, &secret).await;
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "pc").await;

    // Refused requests send nothing.
    let to = json!({ "accounts": ["alice"], "department_ids": [sales] });
    for (body, status) in [
        (json!({ "to": { "accounts": ["alice", "nobody"] }, "text": "x" }), StatusCode::BAD_REQUEST),
        (json!({ "to": { "department_ids": [999999] }, "text": "x" }), StatusCode::BAD_REQUEST),
        (json!({ "to": {}, "text": "x" }), StatusCode::BAD_REQUEST),
        (json!({ "to": to, "text": "  " }), StatusCode::BAD_REQUEST),
        (json!({ "to": to, "text": "x", "extra": 1 }), StatusCode::BAD_REQUEST),
        (json!({ "to": to, "text": "x".repeat(200 * 1024) }), StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let (got, answer, _) = api.post_message(&token, None, &body).await;
        assert_eq!(got, status, "{answer}");
        if got != StatusCode::PAYLOAD_TOO_LARGE {
            assert!(answer["code"].is_string() && answer["message"].is_string(), "{answer}");
        }
    }
    let reader_token = api.token(&reader_id, &reader_secret).await;
    let (got, answer, _) = api.post_message(&reader_token, None, &json!({ "to": to, "text": "x" })).await;
    assert_eq!((got, answer["code"].as_str()), (StatusCode::FORBIDDEN, Some("INSUFFICIENT_SCOPE")));

    // One request: alice by account, bob and carol through the department
    // and its sub-department; dave is in neither.
    let body = json!({ "to": to, "text": "请于周五前提交报销单" });
    let (status, first, replayed) = api.post_message(&token, Some("req-1"), &body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!replayed);
    assert_eq!(first["recipients"], 3);
    let reached: Vec<u64> =
        first["messages"].as_array().unwrap().iter().map(|m| m["user_id"].as_u64().unwrap()).collect();
    assert_eq!(reached, ids[..3].to_vec());

    // The same key and body: the first answer, nothing sent; another body: 409.
    let (status, again, replayed) = api.post_message(&token, Some("req-1"), &body).await;
    assert_eq!((status, &again, replayed), (StatusCode::OK, &first, true));
    let other = json!({ "to": to, "text": "another text" });
    let (status, answer, _) = api.post_message(&token, Some("req-1"), &other).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::CONFLICT, Some("IDEMPOTENCY_KEY_REUSED")));

    // Alice sees it once from the bot, named after the application: a
    // later message arrives after it with nothing between.
    let bot: u64 = server
        .db()
        .query_row("SELECT bot_user_id FROM apps WHERE client_id = ?1", [&client_id], |r| r.get(0))
        .unwrap();
    let (status, _, _) = api
        .post_message(&token, Some("req-2"), &json!({ "to": { "user_ids": [ids[0]] }, "text": "marker" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    until(&alice, T, "alice has both messages", || texts_from(&alice, bot).len() >= 2).await;
    assert_eq!(texts_from(&alice, bot), ["请于周五前提交报销单", "marker"]);
    until(&alice, T, "the bot's name in alice's directory", || {
        alice.display_name(bot).ok().flatten().as_deref() == Some("ERP 助手")
    })
    .await;

    // Carol was offline: she gets it on sync, once; dave gets nothing.
    let carol = online_client(dir.path(), server.addr(), "carol", "pc").await;
    until(&carol, T, "carol has the message", || !texts_from(&carol, bot).is_empty()).await;
    assert_eq!(texts_from(&carol, bot), ["请于周五前提交报销单"]);
    let sent_by_bot: i64 = server
        .db()
        .query_row("SELECT COUNT(*) FROM messages WHERE sender_id = ?1", [bot], |r| r.get(0))
        .unwrap();
    assert_eq!(sent_by_bot, 4, "three recipients once, and the marker");
    server.stop().await;
}

/// One request a callback receiver got: its headers (lower-case names) and body.
#[derive(Clone, Debug)]
struct Received {
    headers: std::collections::HashMap<String, String>,
    body: String,
}

/// A callback receiver on port 0 that answers 500 to the first `fail_first`
/// requests and 200 afterwards.
async fn receiver(
    fail_first: usize,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    break (Some(i + 4), length);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buf.len() < head_end + length {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                .collect();
            let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
            let n = {
                let mut got = seen.lock().unwrap();
                got.push(Received { headers, body });
                got.len()
            };
            let status = if n <= fail_first { "500 Internal Server Error" } else { "200 OK" };
            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_retried_listed_and_pulled() {
    use hmac::{Hmac, Mac};
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice"]);
    let admin = Admin::new(&server).await;
    let (callback, received) = receiver(1).await;
    let (status, created) = admin
        .call(
            reqwest::Method::POST,
            "/apps",
            Some(json!({
                "name": "工单",
                "scopes": ["messages:send"],
                "allowed_cidrs": ["127.0.0.1/32", "::1"],
                "callback_url": format!("http://{callback}/hutong/events"),
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let app_id = created["app"]["id"].as_u64().unwrap();
    let signing = created["signing_secret"].as_str().unwrap().to_owned();
    let api = AppApi::new(&server);
    let token =
        api.token(created["client_id"].as_str().unwrap(), created["client_secret"].as_str().unwrap()).await;
    let (status, sent, _) = api
        .post_message(&token, None, &json!({ "to": { "user_ids": [ids[0]] }, "text": "工单 #7 已创建" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let conversation = sent["messages"][0]["conversation_id"].as_u64().unwrap();

    // Alice answers the bot: an event, delivered after one failure.
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "pc").await;
    alice.send_text(conversation, "请加急", hutong_client::SendOptions::default()).unwrap();
    poll_until(T, "a failed attempt and a retry", || received.lock().unwrap().len() >= 2).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "delivered once after the failure");
    assert_eq!(got[0].body, got[1].body, "the retry carries the same event");
    for r in &got {
        let timestamp = &r.headers["x-hutong-timestamp"];
        let mut mac = Hmac::<Sha256>::new_from_slice(signing.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.{}", r.body).as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(r.headers["x-hutong-signature"], expected, "the signature verifies");
    }
    let event: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(event["kind"], "message.received");
    assert_eq!(event["data"]["text"], "请加急");
    assert_eq!(event["data"]["sender_id"], ids[0]);

    // The administrator sees the delivery: two attempts, the failure's error.
    let listed = poll_until_async(
        T,
        "the delivery recorded",
        || async { admin.call(reqwest::Method::GET, &format!("/apps/{app_id}/events"), None).await.1 },
        |listed| listed["events"][0]["state"] == "delivered",
    )
    .await;
    let e = &listed["events"][0];
    assert_eq!((e["attempts"].as_u64(), e["last_error"].as_str()), (Some(2), Some("HTTP 500")), "{listed}");
    assert!(e.get("data").is_none(), "the console list does not show what people wrote");

    // Pull: the same event; then a long poll that an event ends.
    let (status, pulled, _) = api.get("/events?after=0", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{pulled}");
    assert_eq!(pulled["events"].as_array().unwrap().len(), 1);
    assert_eq!(pulled["events"][0]["data"]["text"], "请加急");
    let after = pulled["next_after"].as_u64().unwrap();
    let (status, _, _) = api.get("/events?wait=31", Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let started = std::time::Instant::now();
    let poll_url = format!("http://{}/api/v1/events?after={after}&wait=20", server.http);
    let poll_token = token.clone();
    let mut poll = tokio::spawn(async move {
        let resp = reqwest::Client::new().get(poll_url).bearer_auth(poll_token).send().await.unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    });
    // Nothing to answer yet: the poll waits.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut poll).await.is_err(),
        "the poll did not wait"
    );
    alice.send_text(conversation, "还有一件事", hutong_client::SendOptions::default()).unwrap();
    let (status, polled) = within(T, poll).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{polled}");
    assert_eq!(polled["events"][0]["data"]["text"], "还有一件事", "{polled}");
    assert!(started.elapsed() < Duration::from_secs(15), "the poll ended with the event");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route() {
    let server = TestServer::start().await;
    let resp = reqwest::get(format!("http://{}/api/v1/openapi.json", server.http)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.push((method.to_uppercase(), path.clone()));
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
        }
    }
    let registered: Vec<(String, String)> = hutong_server::api::routes()
        .into_iter()
        .filter(|(_, path)| *path != "/openapi.json")
        .map(|(method, path)| (method.as_str().to_owned(), path.to_owned()))
        .collect();
    let mut missing: Vec<_> = registered.iter().filter(|r| !documented.contains(r)).collect();
    let mut stale: Vec<_> = documented.iter().filter(|d| !registered.contains(d)).collect();
    missing.sort();
    stale.sort();
    assert!(missing.is_empty(), "routes not in the document: {missing:?}");
    assert!(stale.is_empty(), "documented routes the router lacks: {stale:?}");
    // Generated from the handlers' types: the request and answer shapes are there.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "SendRequest",
        "Recipients",
        "SendAnswer",
        "TokenAnswer",
        "HookBody",
        "ErrorBody",
        "NoticeRequest",
        "NoticeStatusAnswer",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    server.stop().await;
}
