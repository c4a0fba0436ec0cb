//! The integration API end to end (issue 14): applications registered
//! through the administration API, their tokens and what they call under
//! `/api/v1`. A real server on port 0, a real HTTP client.

use hutong_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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
