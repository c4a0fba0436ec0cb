//! TOTP two-factor authentication on the console and the administration
//! API: enrolment, login with a code, a wrong code, recovery codes (single
//! use), throttling of wrong codes, and tokens from a password alone refused.

use hutong_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

const ADMIN_PASSWORD: &str = "admin-password-1";

async fn login(server: &TestServer, account: &str, password: &str) -> (String, Value) {
    let (s, b) = admin_api(
        server,
        Method::POST,
        "/login",
        None,
        Some(json!({ "account": account, "password": password })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (b["token"].as_str().unwrap().to_owned(), b["me"].clone())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The app's code `steps` time steps from now, as an authenticator computes it.
fn code(app: &TOTP, steps: i64) -> String {
    app.generate((now_secs() as i64 + steps * 30) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_code_wrong_code_and_recovery_codes() {
    let server = TestServer::start_with(|c| c.totp_required = true).await;
    server.add_users(&["sam"]);

    // Required and not enrolled: the password alone opens nothing but enrolment.
    let (token, me) = login(&server, "admin", ADMIN_PASSWORD).await;
    assert_eq!(me["second_factor"], "enrol", "{me}");
    let (s, b) = admin_api(&server, Method::GET, "/people", Some(&token), None).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("SECOND_FACTOR_REQUIRED")));
    let (s, enrolment) = admin_api(&server, Method::POST, "/me/totp", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{enrolment}");
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Hutong:admin?"), "{uri}");
    let secret = Secret::Encoded(enrolment["secret"].as_str().unwrap().to_owned()).to_bytes().unwrap();
    let app = TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, Some("Hutong".into()), "admin".into()).unwrap();
    // Same secret in the URI as in the text.
    assert_eq!(TOTP::from_url(uri).unwrap().get_secret_base32(), app.get_secret_base32());

    let (s, b) =
        admin_api(&server, Method::POST, "/me/totp/confirm", Some(&token), Some(json!({ "code": "000000" })))
            .await;
    if code(&app, 0) != "000000" {
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("BAD_CODE")), "{b}");
    }
    let enrolled_with = code(&app, 0);
    let (s, b) = admin_api(
        &server,
        Method::POST,
        "/me/totp/confirm",
        Some(&token),
        Some(json!({ "code": enrolled_with })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let recovery: Vec<String> =
        b["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    let stored: u64 = server.db().query_row("SELECT count(*) FROM recovery_codes", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 10);
    let plain: u64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM recovery_codes WHERE code_hash = ?1",
            [recovery[0].as_bytes()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(plain, 0, "recovery codes are stored hashed");
    // This session passed its second factor by enrolling.
    let (s, _) = admin_api(&server, Method::GET, "/people", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);

    // A new login: the password alone is refused everywhere.
    let (token, me) = login(&server, "admin", ADMIN_PASSWORD).await;
    assert_eq!(me["second_factor"], "code", "{me}");
    for path in ["/people", "/sessions", "/audit/log", "/retention"] {
        let (s, _) = admin_api(&server, Method::GET, path, Some(&token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} opened without the second factor");
    }
    let (s, _) = admin_api(&server, Method::POST, "/me/totp", Some(&token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "re-enrolling without the code would bypass it");
    // A wrong code, then the code already used at enrolment (a replay), then the next step's.
    let (s, b) = admin_api(
        &server,
        Method::POST,
        "/login/second-factor",
        Some(&token),
        Some(json!({ "code": "12345" })),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("BAD_CODE")));
    let (s, _) = admin_api(
        &server,
        Method::POST,
        "/login/second-factor",
        Some(&token),
        Some(json!({ "code": enrolled_with })),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a code is accepted once");
    let (s, b) = admin_api(
        &server,
        Method::POST,
        "/login/second-factor",
        Some(&token),
        Some(json!({ "code": code(&app, 1) })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["second_factor"], "done");
    let (s, _) = admin_api(&server, Method::GET, "/people", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);

    // A recovery code works once, in one request with the password.
    let body = json!({ "account": "admin", "password": ADMIN_PASSWORD, "recovery_code": recovery[3].to_uppercase() });
    let (s, b) = admin_api(&server, Method::POST, "/login", None, Some(body.clone())).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["me"]["second_factor"], "done");
    let (s, _) = admin_api(&server, Method::GET, "/people", Some(b["token"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = admin_api(&server, Method::POST, "/login", None, Some(body)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("BAD_CODE")),
        "a recovery code is used once"
    );

    // People without an administrative role are not asked.
    let (_, me) = login(&server, "sam", PASSWORD).await;
    assert_eq!(me["second_factor"], "done");

    let (_, log) = {
        let (t, _) = login(&server, "admin", ADMIN_PASSWORD).await;
        let (_, r) = admin_api(
            &server,
            Method::POST,
            "/login/second-factor",
            Some(&t),
            Some(json!({ "recovery_code": recovery[4] })),
        )
        .await;
        assert_eq!(r["second_factor"], "done");
        admin_api(&server, Method::GET, "/audit/log?limit=100", Some(&t), None).await
    };
    let actions: Vec<&str> =
        log["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"totp.enrol") && actions.contains(&"console.second_factor"), "{actions:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_are_throttled() {
    let server = TestServer::start_with(|c| c.totp_required = true).await;
    server.add_users(&["aud"]);
    server.db().execute("UPDATE users SET roles = 'auditor' WHERE account = 'aud'", []).unwrap();
    let (token, me) = login(&server, "aud", PASSWORD).await;
    assert_eq!(me["second_factor"], "enrol", "auditors are asked too");
    let (_, enrolment) = admin_api(&server, Method::POST, "/me/totp", Some(&token), None).await;
    let secret = Secret::Encoded(enrolment["secret"].as_str().unwrap().to_owned()).to_bytes().unwrap();
    let app = TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, Some("Hutong".into()), "aud".into()).unwrap();
    let (s, _) = admin_api(
        &server,
        Method::POST,
        "/me/totp/confirm",
        Some(&token),
        Some(json!({ "code": code(&app, 0) })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (token, _) = login(&server, "aud", PASSWORD).await;
    let wrong = if code(&app, 1) == "999999" || code(&app, 0) == "999999" { "999998" } else { "999999" };
    let mut statuses = Vec::new();
    for _ in 0..server.config.login_failures_per_account_and_address + 1 {
        let (_, b) = admin_api(
            &server,
            Method::POST,
            "/login/second-factor",
            Some(&token),
            Some(json!({ "code": wrong })),
        )
        .await;
        statuses.push(b["code"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(statuses.last().map(String::as_str), Some("RATE_LIMITED"), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "BAD_CODE").count(), 5, "{statuses:?}");
    server.stop().await;
}
