//! Accounts hardening end to end: login throttling counted before the hash
//! (parallel guesses get the sequential budget), token logins untouched by
//! password guessing, session kinds and lifetimes, the one-time bootstrap
//! password, deleted accounts, the host's `user` commands in the audit log,
//! and changes that wait for an auditor.

use std::time::Duration;

use hutong_protocol::v1::{login::Secret, Login};
use hutong_protocol::{Envelope, ErrorCode, Payload};
use hutong_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADMIN_PASSWORD: &str = "admin-password-1";

fn code_of(env: &Envelope) -> (ErrorCode, u64) {
    match &env.payload {
        Some(Payload::Error(e)) => (ErrorCode::try_from(e.code).unwrap(), e.retry_after_ms),
        Some(Payload::LoginOk(_)) => (ErrorCode::Unspecified, 0),
        other => panic!("expected an error or LoginOk, got {other:?}"),
    }
}

async fn console_login(server: &TestServer, account: &str, password: &str) -> String {
    let (s, b) = admin_api(
        server,
        Method::POST,
        "/login",
        None,
        Some(json!({ "account": account, "password": password })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{account}: {b}");
    b["token"].as_str().unwrap().to_owned()
}

/// One wrong-password login on its own connection.
async fn guess(server: std::net::SocketAddr, account: String) -> (ErrorCode, u64) {
    let mut raw = RawConn::connect(server).await;
    raw.hello().await;
    code_of(&raw.login(&account, "wrong-password").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_get_the_sequential_budget() {
    let server = TestServer::start().await;
    server.add_users(&["seq", "par", "colleague"]);
    let budget = server.config.login_failures_per_account_and_address;

    // Sequential: one connection, 500 guesses one after another.
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    let mut sequential = (0, 0);
    for _ in 0..500 {
        match code_of(&raw.login("seq", "wrong-password").await) {
            (ErrorCode::BadCredentials, _) => sequential.0 += 1,
            (ErrorCode::RateLimited, ms) => {
                assert!(ms > 0, "a refusal says how long to wait");
                sequential.1 += 1
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }

    // Parallel: 500 connections guessing at once.
    let tasks: Vec<_> = (0..500).map(|_| tokio::spawn(guess(server.tcp, "par".into()))).collect();
    let mut parallel = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (ErrorCode::BadCredentials, _) => parallel.0 += 1,
            (ErrorCode::RateLimited, ms) => {
                assert!(ms > 0);
                parallel.1 += 1
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    println!(
        "guesses that reached the hash: sequential {sequential:?}, parallel {parallel:?} (bad, rate-limited)"
    );
    assert_eq!(sequential, (budget, 500 - budget));
    assert_eq!(parallel, sequential, "500 parallel guesses got another budget than 500 sequential ones");

    // The locked pair waits even with the right password; a colleague
    // behind the same address is not locked out.
    assert_eq!(code_of(&raw.login("par", PASSWORD).await).0, ErrorCode::RateLimited);
    assert_eq!(code_of(&raw.login("colleague", PASSWORD).await).0, ErrorCode::Unspecified);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_logins_are_not_locked_out_by_password_guessing() {
    let server = TestServer::start().await;
    server.add_users(&["carol"]);
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    let token = match raw.login("carol", PASSWORD).await.payload {
        Some(Payload::LoginOk(ok)) => ok.token,
        other => panic!("{other:?}"),
    };
    // Someone guesses carol's password until the account is locked everywhere.
    for _ in 0..server.config.login_failures_per_account + 5 {
        let _ = guess(server.tcp, "carol".into()).await;
    }
    assert_eq!(guess(server.tcp, "carol".into()).await.0, ErrorCode::RateLimited);
    // Her signed-in device reconnects with its token all the same.
    let mut again = RawConn::connect(server.tcp).await;
    again.hello().await;
    match again.login_token("carol", &token, "raw", false).await {
        Payload::LoginOk(_) => {}
        other => panic!("the token login was refused: {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_expire_slide_and_stay_in_their_lane() {
    let server = TestServer::start().await;
    server.add_users(&["dora"]);
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    let (token, session) = match raw.login("dora", PASSWORD).await.payload {
        Some(Payload::LoginOk(ok)) => (ok.token, ok.session_id),
        other => panic!("{other:?}"),
    };
    let lifetime_ms = server.config.session_lifetime_secs as i64 * 1000;
    let age = |ms: i64| {
        server
            .db()
            .execute("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1", [session as i64, now() - ms])
            .unwrap();
    };
    let last_seen = || -> i64 {
        server
            .db()
            .query_row("SELECT last_seen_at FROM sessions WHERE id = ?1", [session], |r| r.get(0))
            .unwrap()
    };
    // Used a day before it would expire: accepted, and the lifetime slides.
    age(lifetime_ms - 86_400_000);
    let mut c = RawConn::connect(server.tcp).await;
    c.hello().await;
    assert!(matches!(c.login_token("dora", &token, "raw", false).await, Payload::LoginOk(_)));
    poll_until(Duration::from_secs(10), "the use is recorded", || last_seen() > now() - 60_000).await;
    // Unused for longer than the lifetime: SESSION_EXPIRED.
    age(lifetime_ms + 1000);
    let mut c = RawConn::connect(server.tcp).await;
    c.hello().await;
    match c.login_token("dora", &token, "raw", false).await {
        Payload::Error(e) => {
            assert_eq!(ErrorCode::try_from(e.code).unwrap(), ErrorCode::SessionExpired, "{e:?}")
        }
        other => panic!("an expired token was accepted: {other:?}"),
    }

    // A client's token is no bearer token for the administration API.
    let (_, fresh) = {
        let mut c = RawConn::connect(server.tcp).await;
        c.hello().await;
        match c.login("dora", PASSWORD).await.payload {
            Some(Payload::LoginOk(ok)) => ((), ok.token),
            other => panic!("{other:?}"),
        }
    };
    server.db().execute("UPDATE users SET roles = 'admin', is_admin = 1 WHERE account = 'dora'", []).unwrap();
    let (s, b) = admin_api(&server, Method::GET, "/me", Some(&fresh), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a desktop token opened the admin API: {b}");
    let (s, _) = admin_api(&server, Method::GET, "/people", Some(&fresh), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A console token is no client token either, and its device name is reserved.
    let console = console_login(&server, "dora", PASSWORD).await;
    let device: String = server
        .db()
        .query_row("SELECT device FROM sessions WHERE kind = 'console' ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let mut c = RawConn::connect(server.tcp).await;
    c.hello().await;
    assert!(matches!(c.login_token("dora", &console, &device, false).await, Payload::Error(_)));
    let login = Login {
        account: "dora".into(),
        secret: Some(Secret::Password(PASSWORD.into())),
        device: "console-fake".into(),
        bulk: false,
    };
    match c.call(3, Payload::Login(login)).await {
        Payload::Error(e) => assert_eq!(ErrorCode::try_from(e.code).unwrap(), ErrorCode::BadRequest),
        other => panic!("a client took a console device name: {other:?}"),
    }

    // Console sessions are short-lived: 30 minutes without a request ends them.
    let (s, _) = admin_api(&server, Method::GET, "/people", Some(&console), None).await;
    assert_eq!(s, StatusCode::OK);
    let console_ms = server.config.console_session_lifetime_secs as i64 * 1000;
    server
        .db()
        .execute("UPDATE sessions SET last_seen_at = ?1 WHERE kind = 'console'", [now() - console_ms - 1000])
        .unwrap();
    let (s, b) = admin_api(&server, Method::GET, "/people", Some(&console), None).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("SESSION_EXPIRED")), "{b}");
    server.stop().await;
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_bootstrap_password_must_be_changed() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let prepared = hutong_server::prepare(&config, None).unwrap();
    let one_time = prepared.admin_password.expect("a generated password");
    let listeners = hutong_server::Listeners::bind(&config).await.unwrap();
    let (tcp, http) = (listeners.tcp_addr(), listeners.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(hutong_server::run(config.clone(), listeners, async move {
        let _ = stopped.await;
    }));
    // The client protocol refuses it until it is changed.
    let mut raw = RawConn::connect(tcp).await;
    raw.hello().await;
    assert_eq!(code_of(&raw.login("admin", &one_time).await).0, ErrorCode::PasswordChangeRequired);
    // The console lets the administrator in to change it, and nothing else.
    let base = format!("http://{http}/api/admin/v1");
    let http_client = reqwest::Client::new();
    let answer: Value = http_client
        .post(format!("{base}/login"))
        .json(&json!({ "account": "admin", "password": one_time }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["me"]["must_change_password"], true, "{answer}");
    let token = answer["token"].as_str().unwrap();
    let people = http_client.get(format!("{base}/people")).bearer_auth(token).send().await.unwrap();
    assert_eq!(people.status(), StatusCode::FORBIDDEN);
    let body: Value = people.json().await.unwrap();
    assert_eq!(body["code"], "PASSWORD_CHANGE_REQUIRED");
    let changed = http_client
        .post(format!("{base}/me/password"))
        .bearer_auth(token)
        .json(&json!({ "old_password": one_time, "new_password": "a-new-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let people = http_client.get(format!("{base}/people")).bearer_auth(token).send().await.unwrap();
    assert_eq!(people.status(), StatusCode::OK);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

fn run_cli(data_dir: &std::path::Path, args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(server_binary());
    cmd.arg("--data-dir").arg(data_dir).args(["user"]).args(args).env("HUTONG_LOG", "warn");
    if let Some(p) = password {
        cmd.env("HUTONG_NEW_PASSWORD", p);
    }
    cmd.output().expect("run hutong-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_user_commands_are_audited_and_deleted_accounts_stay_deleted() {
    let server = TestServer::start().await;
    let data = server.config.data_dir.clone();
    for (args, password) in [
        (vec!["add", "erin", "--name", "Erin"], Some("erin-password-1")),
        (vec!["passwd", "erin"], Some("erin-password-2")),
        (vec!["disable", "erin"], None),
        (vec!["enable", "erin"], None),
    ] {
        let out = run_cli(&data, &args, password);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let actions: Vec<String> = {
        let db = server.db();
        let mut stmt =
            db.prepare("SELECT action FROM audit_log WHERE target = 'person:erin' ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(actions, ["person.create", "person.set_password", "person.disable", "person.enable"]);
    let verify = std::process::Command::new(server_binary())
        .arg("--data-dir")
        .arg(&data)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    // Deleted on the console: neither the host's `enable` nor a password brings it back.
    let token = console_login(&server, "admin", ADMIN_PASSWORD).await;
    let id: u64 =
        server.db().query_row("SELECT id FROM users WHERE account = 'erin'", [], |r| r.get(0)).unwrap();
    let (s, _) = admin_api(&server, Method::DELETE, &format!("/people/{id}"), Some(&token), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let out = run_cli(&data, &["enable", "erin"], None);
    assert!(!out.status.success(), "a deleted account was enabled");
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    assert_eq!(code_of(&raw.login("erin", "erin-password-2").await).0, ErrorCode::BadCredentials);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditor_role_and_short_retention_wait_for_an_auditor() {
    let server = TestServer::start().await;
    server.add_users(&["ann", "otto"]);
    server.db().execute("UPDATE users SET roles = 'auditor' WHERE account = 'otto'", []).unwrap();
    let admin = console_login(&server, "admin", ADMIN_PASSWORD).await;
    let auditor = console_login(&server, "otto", PASSWORD).await;
    let admin_id: u64 =
        server.db().query_row("SELECT id FROM users WHERE account = 'admin'", [], |r| r.get(0)).unwrap();

    // The administrator asks for the auditor role for themselves: not granted yet.
    let (s, b) = admin_api(
        &server,
        Method::PATCH,
        &format!("/people/{admin_id}"),
        Some(&admin),
        Some(json!({ "roles": ["admin", "auditor"] })),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["roles"], json!(["admin"]), "{b}");
    let change = b["pending_change"]["id"].as_u64().unwrap();
    let (s, _) = admin_api(&server, Method::GET, "/audit/messages?q=x", Some(&admin), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the archive stays closed to administrators");
    // The administrator cannot confirm it; an auditor can.
    let (s, _) =
        admin_api(&server, Method::POST, &format!("/pending-changes/{change}/confirm"), Some(&admin), None)
            .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) =
        admin_api(&server, Method::POST, &format!("/pending-changes/{change}/confirm"), Some(&auditor), None)
            .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let roles: String =
        server.db().query_row("SELECT roles FROM users WHERE id = ?1", [admin_id], |r| r.get(0)).unwrap();
    assert!(roles.split(',').any(|r| r == "auditor"), "{roles}");
    let (s, _) =
        admin_api(&server, Method::POST, &format!("/pending-changes/{change}/confirm"), Some(&auditor), None)
            .await;
    assert_eq!(s, StatusCode::CONFLICT, "a change is confirmed once");

    // Retention below the floor waits; above it applies at once.
    let (s, b) = admin_api(
        &server,
        Method::PUT,
        "/retention",
        Some(&admin),
        Some(json!({ "direct_days": 0, "group_days": 7 })),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (_, now) = admin_api(&server, Method::GET, "/retention", Some(&admin), None).await;
    assert_eq!(now["group_days"], 0, "{now}");
    let change = b["pending_change"]["id"].as_u64().unwrap();
    // The administrator is an auditor now, but nobody confirms their own request.
    let (s, _) =
        admin_api(&server, Method::POST, &format!("/pending-changes/{change}/confirm"), Some(&admin), None)
            .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) =
        admin_api(&server, Method::POST, &format!("/pending-changes/{change}/confirm"), Some(&auditor), None)
            .await;
    assert_eq!(s, StatusCode::OK);
    let (_, now) = admin_api(&server, Method::GET, "/retention", Some(&admin), None).await;
    assert_eq!(now["group_days"], 7, "{now}");
    let (s, _) = admin_api(
        &server,
        Method::PUT,
        "/retention",
        Some(&admin),
        Some(json!({ "direct_days": 400, "group_days": 7 })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "long retention needs no confirmation");

    // An auditor's password is not reset by an administrator.
    let otto: u64 =
        server.db().query_row("SELECT id FROM users WHERE account = 'otto'", [], |r| r.get(0)).unwrap();
    let (s, _) =
        admin_api(&server, Method::POST, &format!("/people/{otto}/reset-password"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, log) = admin_api(&server, Method::GET, "/audit/log?limit=50", Some(&auditor), None).await;
    let actions: Vec<&str> =
        log["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"change.request") && actions.contains(&"change.confirm"), "{actions:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_cannot_make_an_auditor() {
    let server = TestServer::start().await;
    let admin = console_login(&server, "admin", ADMIN_PASSWORD).await;
    let csv = "account,display_name,roles\nmallory,Mallory,auditor\n";
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/admin/v1/import", server.http))
        .bearer_auth(&admin)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{}", resp.text().await.unwrap_or_default());
    let exists: u64 = server
        .db()
        .query_row("SELECT count(*) FROM users WHERE account = 'mallory'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(exists, 0, "nothing was imported");
    server.stop().await;
}
