//! Notices through the integration API end to end: an application (OA,
//! ERP) sends a notice to be signed off, tracks who received, read and
//! signed it, reminds, withdraws, and hears of each sign-off as an event.
//! A real server on port 0, real client cores, a real HTTP client.

use std::time::Duration;

use hutong_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

/// An application registered by the administrator: its client id and secret.
async fn register(server: &TestServer, admin: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let body = json!({ "name": name, "scopes": scopes, "allowed_cidrs": ["127.0.0.1/32", "::1"] });
    let (status, created) = admin_api(server, Method::POST, "/apps", Some(admin), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (created["client_id"].as_str().unwrap().to_owned(), created["client_secret"].as_str().unwrap().to_owned())
}

/// The integration API as one application calls it.
struct App {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl App {
    async fn new(server: &TestServer, (client_id, secret): (String, String)) -> App {
        let base = format!("http://{}/api/v1", server.http);
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/oauth/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let token = resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        App { base, token, http }
    }

    /// Status, JSON answer, and whether it was an idempotent replay.
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, bool) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let (status, replayed) = (resp.status(), resp.headers().contains_key("idempotent-replayed"));
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), replayed)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, body, _) = self.call(Method::GET, path, None, None).await;
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, body, _) = self.call(Method::POST, path, None, Some(body)).await;
        (status, body)
    }
}

fn accounts(rows: &Value) -> Vec<&str> {
    rows.as_array().unwrap().iter().map(|r| r["account"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_sends_a_notice_to_sign_and_tracks_who_signed() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob", "carol", "dave", "erin"]);
    let admin = admin_token(&server).await;
    let (status, office) =
        admin_api(&server, Method::POST, "/departments", Some(&admin), Some(json!({ "name": "行政部" })))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{office}");
    let office = office["id"].as_u64().unwrap();
    let body = json!({ "name": "北京", "parent_id": office });
    let (status, beijing) = admin_api(&server, Method::POST, "/departments", Some(&admin), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{beijing}");
    let beijing = beijing["id"].as_u64().unwrap();
    let db = server.db();
    db.execute("UPDATE users SET primary_department_id = ?1 WHERE account IN ('alice', 'bob')", [office])
        .unwrap();
    db.execute("UPDATE users SET primary_department_id = ?1 WHERE account = 'carol'", [beijing]).unwrap();
    db.execute("UPDATE users SET employee_no = 'E004' WHERE account = 'dave'", []).unwrap();
    drop(db);
    let oa = App::new(&server, register(&server, &admin, "OA 审批", &["notices:send"]).await).await;
    let other = App::new(&server, register(&server, &admin, "ERP", &["notices:send"]).await).await;
    let reader = App::new(&server, register(&server, &admin, "HR", &["directory:read"]).await).await;
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "pc").await;
    let bob = online_client(dir.path(), server.addr(), "bob", "pc").await;

    // Refused requests send nothing; errors are {code, message}.
    let deadline = hutong_protocol::time::format_rfc3339_ms(now_ms() + 24 * 3600 * 1000);
    let to = json!({ "department_ids": [office], "employee_nos": ["E004"] });
    for (body, status) in [
        (json!({ "title": "x", "to": { "accounts": ["alice", "nobody"] } }), StatusCode::BAD_REQUEST),
        (json!({ "title": "x", "to": { "department_ids": [999999] } }), StatusCode::BAD_REQUEST),
        (json!({ "title": "x", "to": {} }), StatusCode::BAD_REQUEST),
        (json!({ "title": " ", "to": to }), StatusCode::BAD_REQUEST),
        (json!({ "title": "x", "to": to, "deadline": deadline }), StatusCode::BAD_REQUEST),
        (
            json!({ "title": "x", "to": to, "sign_required": true, "deadline": "tomorrow" }),
            StatusCode::BAD_REQUEST,
        ),
        (json!({ "title": "x", "to": to, "sign_required": true, "deadline": 1000 }), StatusCode::BAD_REQUEST),
        (json!({ "title": "x", "to": to, "priority": "loud" }), StatusCode::BAD_REQUEST),
        (json!({ "title": "x", "to": to, "extra": 1 }), StatusCode::BAD_REQUEST),
    ] {
        let (got, answer) = oa.post("/notices", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["code"].is_string() && answer["message"].is_string(), "{answer}");
    }
    let (got, answer) = reader.post("/notices", json!({ "title": "x", "to": to })).await;
    assert_eq!((got, answer["code"].as_str()), (StatusCode::FORBIDDEN, Some("INSUFFICIENT_SCOPE")));

    // The department with its sub-department, and dave by employee number.
    let notice = json!({
        "title": "关于年终盘点的通知",
        "body": "请各部门于 **周五** 前完成盘点。",
        "priority": "important",
        "sign_required": true,
        "deadline": deadline,
        "to": to,
    });
    let (status, first, replayed) =
        oa.call(Method::POST, "/notices", Some("oa-1"), Some(notice.clone())).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!replayed);
    assert_eq!(first["recipients"], 4, "{first}");
    let id = first["notice_id"].as_u64().unwrap();

    // The same key and body: the first answer, nothing sent; another body: 409.
    let (status, again, replayed) =
        oa.call(Method::POST, "/notices", Some("oa-1"), Some(notice.clone())).await;
    assert_eq!((status, &again, replayed), (StatusCode::OK, &first, true));
    let changed = json!({ "title": "另一个通知", "to": to });
    let (status, answer, _) = oa.call(Method::POST, "/notices", Some("oa-1"), Some(changed)).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::CONFLICT, Some("IDEMPOTENCY_KEY_REUSED")));
    let sent: i64 = server
        .db()
        .query_row("SELECT COUNT(*) FROM notices WHERE title = '关于年终盘点的通知'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(sent, 1, "sent once");

    // Someone who joins the department afterwards does not get it.
    server
        .db()
        .execute("UPDATE users SET primary_department_id = ?1 WHERE account = 'erin'", [office])
        .unwrap();
    let erin = online_client(dir.path(), server.addr(), "erin", "pc").await;
    assert!(erin.notices().unwrap().is_empty(), "erin joined after the notice");

    // Online people get it pushed; carol, offline, gets it when her client syncs.
    until(&bob, T, "bob has the notice", || bob.notice(id).unwrap().is_some()).await;
    until(&alice, T, "alice has the notice", || alice.notice(id).unwrap().is_some()).await;
    let carol = online_client(dir.path(), server.addr(), "carol", "pc").await;
    until(&carol, T, "carol has the notice", || carol.notice(id).unwrap().is_some()).await;
    let got = carol.notice(id).unwrap().unwrap();
    assert_eq!(
        (got.title.as_str(), got.priority, got.sign_required),
        ("关于年终盘点的通知", "important", true)
    );
    assert!(got.awaiting_signature());

    // A long poll waits for the sign-off's event.
    let poll_url = format!("{}/events?after=0&wait=20", oa.base);
    let poll_token = oa.token.clone();
    let mut poll = tokio::spawn(async move {
        let resp = reqwest::Client::new().get(poll_url).bearer_auth(poll_token).send().await.unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut poll).await.is_err(),
        "nothing to answer yet"
    );
    let signed = bob.sign_notice(id).await.unwrap();
    assert!(signed.signed_at_ms > 0);
    let (status, polled) = within(T, poll).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{polled}");
    let events = polled["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{polled}");
    assert_eq!(events[0]["kind"], "notice.signed");
    let data = &events[0]["data"];
    assert_eq!((data["notice_id"].as_u64(), data["account"].as_str()), (Some(id), Some("bob")), "{data}");
    assert_eq!((data["user_id"].as_u64(), data["device"].as_str()), (Some(ids[1]), Some("pc")), "{data}");

    // The table: exactly bob signed; names and departments as sent. Carol's
    // client reports the delivery after its sync.
    let path = format!("/notices/{id}");
    let (status, table) = poll_until_async(
        T,
        "carol's delivery reported",
        || oa.get(&path),
        |(_, t)| t["recipients"][2]["delivered_at_ms"].is_i64(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{table}");
    assert_eq!(table["counts"]["recipients"], 4, "{table}");
    assert_eq!(table["counts"]["signed"], 1, "{table}");
    assert_eq!(table["notice"]["title"], "关于年终盘点的通知");
    assert_eq!(table["notice"]["withdrawn_at_ms"], Value::Null);
    let rows = &table["recipients"];
    assert_eq!(accounts(rows), ["alice", "bob", "carol", "dave"]);
    for r in rows.as_array().unwrap() {
        let is_bob = r["account"] == "bob";
        assert_eq!(r["signed_at_ms"].is_i64(), is_bob, "{r}");
        assert_eq!(r["device"].as_str(), is_bob.then_some("pc"), "{r}");
    }
    assert_eq!((rows[1]["name"].as_str(), rows[1]["department"].as_str()), (Some("bob"), Some("行政部")));
    assert_eq!(
        (rows[2]["department_id"].as_u64(), rows[2]["department"].as_str()),
        (Some(beijing), Some("北京"))
    );
    assert_eq!(rows[3]["department"], Value::Null, "dave is in no department");
    let (_, unsigned) = oa.get(&format!("/notices/{id}?filter=not_signed")).await;
    assert_eq!(accounts(&unsigned["recipients"]), ["alice", "carol", "dave"]);
    assert_eq!(unsigned["counts"]["signed"], 1, "the counts are over everyone");
    let (_, page) = oa.get(&format!("/notices/{id}?limit=2")).await;
    assert_eq!(accounts(&page["recipients"]), ["alice", "bob"]);
    let after = page["next_after"].as_u64().unwrap();
    let (_, page) = oa.get(&format!("/notices/{id}?limit=2&after={after}")).await;
    assert_eq!((accounts(&page["recipients"]), &page["next_after"]), (vec!["carol", "dave"], &Value::Null));
    let (status, _) = oa.get(&format!("/notices/{id}?filter=everyone")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Another application's notice is not there for it; a missing scope is 403.
    for (method, path) in [
        (Method::GET, format!("/notices/{id}")),
        (Method::POST, format!("/notices/{id}/remind")),
        (Method::POST, format!("/notices/{id}/withdraw")),
    ] {
        let (status, answer, _) = other.call(method.clone(), &path, None, Some(json!({}))).await;
        assert_eq!((status, answer["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "{path}");
        let (status, answer, _) = reader.call(method, &path, None, Some(json!({}))).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("INSUFFICIENT_SCOPE")),
            "{path}"
        );
    }
    let (status, _) = oa.get("/notices/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A reminder reaches those who have not signed.
    let (status, reminded) = oa.post(&format!("/notices/{id}/remind"), json!({})).await;
    assert_eq!((status, reminded["reminded"].as_u64()), (StatusCode::OK, Some(3)), "{reminded}");
    until(&alice, T, "alice reminded", || alice.notice(id).unwrap().is_some_and(|n| n.reminded_at_ms > 0))
        .await;
    assert_eq!(bob.notice(id).unwrap().unwrap().reminded_at_ms, 0, "bob signed: not reminded");

    // Withdrawn: the recipients see it so; it is reminded no more.
    let (status, answer) = oa.post(&format!("/notices/{id}/withdraw"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    until(&carol, T, "carol sees it withdrawn", || {
        carol.notice(id).unwrap().is_some_and(|n| n.withdrawn_at_ms > 0)
    })
    .await;
    assert!(!carol.notice(id).unwrap().unwrap().awaiting_signature());
    let (_, table) = oa.get(&format!("/notices/{id}")).await;
    assert!(table["notice"]["withdrawn_at_ms"].is_i64(), "{table}");
    let (status, _) = oa.post(&format!("/notices/{id}/remind"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = oa.post(&format!("/notices/{id}/withdraw"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "withdrawing again changes nothing");

    // Only sign-offs are events: one in all.
    let (_, pulled) = oa.get("/events?after=0").await;
    let kinds: Vec<&str> =
        pulled["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["notice.signed"]);
    for c in [alice, bob, carol, erin] {
        c.shutdown();
    }
    server.stop().await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
