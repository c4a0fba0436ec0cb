//! The administration API, directory and audit archive end to end: a real
//! server on port 0, HTTP requests, real client cores for what reaches clients.

use std::collections::BTreeMap;
use std::time::Duration;

use hutong_client::SendOptions;
use hutong_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);
const ADMIN_PASSWORD: &str = "admin-password-1";

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &TestServer) -> Api {
        Api { base: format!("http://{}/api/admin/v1", server.http), http: reqwest::Client::new() }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn raw(&self, method: Method, path: &str, token: &str, body: Vec<u8>) -> (StatusCode, String) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .expect("request");
        (resp.status(), resp.text().await.unwrap_or_default())
    }

    async fn login(&self, account: &str, password: &str) -> String {
        let (status, body) = self
            .call(Method::POST, "/login", None, Some(json!({ "account": account, "password": password })))
            .await;
        assert_eq!(status, StatusCode::OK, "login {account}: {body}");
        body["token"].as_str().unwrap().to_owned()
    }
}

fn set_roles(server: &TestServer, account: &str, roles: &str) {
    server.db().execute("UPDATE users SET roles = ?2 WHERE account = ?1", [account, roles]).unwrap();
}

/// Routes anyone may call: logging in, and the API's own description.
const PUBLIC: [(&str, &str); 2] = [("POST", "/login"), ("GET", "/openapi.json")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_over_every_registered_route() {
    let server = TestServer::start().await;
    server.add_users(&["staff1", "agent1", "auditor1", "admin2", "disabled1", "deleted1", "expired1"]);
    set_roles(&server, "agent1", "agent");
    set_roles(&server, "auditor1", "auditor");
    for admin in ["admin2", "disabled1", "deleted1", "expired1"] {
        set_roles(&server, admin, "admin");
    }
    let api = Api::new(&server);
    // Callers whose token gives no rights, every one answered 401 like
    // nobody: administrators disabled, deleted, or whose console session
    // went unused past its lifetime after they signed in, and a desktop or
    // CLI token (a client session, not a console one).
    let refused = ["disabled", "deleted", "expired", "client"];
    let roles =
        ["anonymous", "staff", "agent", "auditor", "admin", "disabled", "deleted", "expired", "client"];
    let mut tokens = BTreeMap::new();
    for (role, account) in [
        ("staff", "staff1"),
        ("agent", "agent1"),
        ("auditor", "auditor1"),
        ("admin", "admin2"),
        ("disabled", "disabled1"),
        ("deleted", "deleted1"),
        ("expired", "expired1"),
    ] {
        tokens.insert(role, api.login(account, PASSWORD).await);
    }
    let mut native = RawConn::connect(server.tcp).await;
    native.hello().await;
    match native.login("admin2", PASSWORD).await.payload {
        Some(hutong_protocol::Payload::LoginOk(ok)) => tokens.insert("client", ok.token),
        other => panic!("native login: {other:?}"),
    };
    let db = server.db();
    db.execute("UPDATE users SET disabled = 1 WHERE account = 'disabled1'", []).unwrap();
    db.execute("UPDATE users SET disabled = 1, deleted = 1 WHERE account = 'deleted1'", []).unwrap();
    db.execute(
        "UPDATE sessions SET last_seen_at = 0 WHERE user_id = (SELECT id FROM users WHERE account = 'expired1')",
        [],
    )
    .unwrap();
    drop(db);
    // The expired session says so the first time it is used.
    let (status, answer) = api.call(Method::GET, "/me", Some(&tokens["expired"]), None).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("SESSION_EXPIRED")),
        "{answer}"
    );
    // The routes as the router registers them, not as the document says: a
    // route someone forgot to document (or to guard) cannot hide.
    let registered: Vec<(String, String)> = hutong_server::admin::routes()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_owned(), path.to_owned()))
        .collect();
    let spec: Value = serde_json::from_str(hutong_server::admin::OPENAPI).unwrap();
    let mut documented = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap().iter().filter(|(m, _)| *m != "parameters") {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut failures = Vec::new();
    for route in &registered {
        if route.0 == "GET" && route.1 == "/openapi.json" {
            // The document does not list itself; anyone may read it.
            let (status, _) = api.call(Method::GET, "/openapi.json", None, None).await;
            if status != StatusCode::OK {
                failures.push(format!("GET /openapi.json as anonymous: {status} (expected 200)"));
            }
        } else if !documented.contains(route) {
            failures.push(format!("{} {} is registered but not in the OpenAPI document", route.0, route.1));
        }
    }
    for route in &documented {
        if !registered.contains(route) {
            failures.push(format!("{} {} is documented but the router has no such route", route.0, route.1));
        }
    }
    let mut matrix = Vec::new();
    for (method, path) in &registered {
        if PUBLIC.contains(&(method.as_str(), path.as_str())) {
            continue;
        }
        let concrete = path.replace("{id}", "999999");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let everyone =
            ["/me", "/me/password", "/logout", "/login/second-factor", "/me/totp", "/me/totp/confirm"]
                .contains(&path.as_str());
        let auditor_only = path.starts_with("/audit/messages") || path == "/pending-changes/{id}/confirm";
        let both =
            ["/audit/log", "/pending-changes", "/pending-changes/{id}/reject"].contains(&path.as_str());
        let mut row = Vec::new();
        for role in roles {
            let allowed = match role {
                "anonymous" => false,
                r if refused.contains(&r) => false,
                "staff" | "agent" => everyone,
                "auditor" => everyone || auditor_only || both,
                _ => everyone || both || !auditor_only,
            };
            // Logging out ends the session: use a throwaway one.
            let token = match (role, path.as_str()) {
                ("anonymous", _) => None,
                (r, _) if refused.contains(&r) => Some(tokens[r].clone()),
                (r, "/logout") => {
                    let account = match r {
                        "staff" => "staff1",
                        "agent" => "agent1",
                        "auditor" => "auditor1",
                        _ => "admin2",
                    };
                    Some(api.login(account, PASSWORD).await)
                }
                (r, _) => Some(tokens[r].clone()),
            };
            let body = matches!(method, Method::POST | Method::PATCH | Method::PUT).then(|| json!({}));
            let (status, answer) = api.call(method.clone(), &concrete, token.as_deref(), body).await;
            let got = !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
            if (role == "anonymous" || refused.contains(&role)) && status != StatusCode::UNAUTHORIZED {
                failures.push(format!("{method} {path} as {role}: {status} (expected 401)"));
            } else if got != allowed {
                failures.push(format!("{method} {path} as {role}: {status} {answer}"));
            }
            // A route that answers 404 or 405 to its own method is not the route the list names.
            if status == StatusCode::METHOD_NOT_ALLOWED
                || status == StatusCode::NOT_FOUND && answer.get("code").is_none()
            {
                failures.push(format!("{method} {path} as {role}: the router does not serve it: {status}"));
            }
            if !(200..600).contains(&status.as_u16()) || answer.get("code").is_none() && !status.is_success()
            {
                failures
                    .push(format!("{method} {path} as {role}: error without {{code, message}}: {answer}"));
            }
            row.push(format!("{:>3}", status.as_u16()));
        }
        matrix.push(format!("{:<7} {:<34} {}", method.as_str(), path, row.join("  ")));
    }
    println!("{:<7} {:<34} {}", "METHOD", "PATH", roles.map(|r| format!("{r:.4}")).join(" "));
    for line in &matrix {
        println!("{line}");
    }
    assert!(matrix.len() >= 20, "checked {} routes", matrix.len());
    assert!(failures.is_empty(), "authorization mismatches:\n{}", failures.join("\n"));
    server.stop().await;
}

fn people_csv(people: usize, departments: usize) -> String {
    let mut csv =
        String::from("account,display_name,employee_no,title,phone,email,department,manager,roles\n");
    let surnames = ["张", "王", "李", "赵", "刘", "陈", "杨", "黄"];
    let given = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰"];
    for i in 0..people {
        let d = i % departments;
        let name = format!("{}{}{}", surnames[i % 8], given[(i / 8) % 10], given[(i / 80) % 10]);
        let manager = if i % 50 == 0 { String::new() } else { format!("p{:05}", i - i % 50) };
        csv.push_str(&format!(
            "p{i:05},{name},E{i:05},工程师,138{i:08},p{i}@example.com,总部/事业部{}/部门{d},{manager},\n",
            d / 20
        ));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_of_5000_people_all_or_nothing_and_gbk() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let token = api.login("admin", ADMIN_PASSWORD).await;
    let count = |server: &TestServer| -> u64 {
        server.db().query_row("SELECT count(*) FROM users WHERE deleted = 0", [], |r| r.get(0)).unwrap()
    };
    let before = count(&server);

    // One bad row: nothing is imported, and the answer names it.
    let mut bad = people_csv(5000, 200);
    bad = bad.replacen("p03000,", "p 03000,", 1);
    let (status, body) = api.raw(Method::POST, "/import", &token, bad.into_bytes()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "IMPORT_INVALID");
    let errors = body["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["row"] == 3002 && e["column"] == "account"), "{errors:?}");
    assert_eq!(count(&server), before, "nothing imported");

    let started = std::time::Instant::now();
    let (status, body) = api.raw(Method::POST, "/import", &token, people_csv(5000, 200).into_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let summary: Value = serde_json::from_str(&body).unwrap();
    println!("imported 5,000 people in 200 departments in {:?}: {summary}", started.elapsed());
    assert_eq!(summary["created"], 5000);
    assert_eq!(summary["departments_created"], 211); // 总部 + 10 事业部 + 200 部门
    assert_eq!(count(&server), before + 5000);

    // GBK, as Excel on a Chinese Windows writes it.
    let (gbk, _, _) = encoding_rs::GBK.encode("账号,姓名,部门,职务\ngbk1,欧阳娜娜,总部/市场部,经理\n");
    let (status, body) = api.raw(Method::POST, "/import", &token, gbk.into_owned()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, found) = api.call(Method::GET, "/people?q=oynn", Some(&token), None).await;
    assert_eq!(found["people"][0]["display_name"], "欧阳娜娜");
    assert_eq!(found["people"][0]["title"], "经理");

    // Export: UTF-8 with BOM, the same columns back.
    let resp = api.http.get(format!("{}/export", api.base)).bearer_auth(&token).send().await.unwrap();
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("gbk1,欧阳娜娜,,经理,,,总部/市场部"), "{}", &text[..300]);
    assert_eq!(text.lines().count(), 1 + count(&server) as usize);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinyin_search_and_hidden_departments_in_client_caches() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let token = api.login("admin", ADMIN_PASSWORD).await;
    let dept = |name: &str, parent: Option<u64>, hidden: bool| {
        let api = &api;
        let token = token.clone();
        let name = name.to_owned();
        async move {
            let (s, d) = api
                .call(
                    Method::POST,
                    "/departments",
                    Some(&token),
                    Some(json!({ "name": name, "parent_id": parent, "hidden": hidden })),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{d}");
            d["id"].as_u64().unwrap()
        }
    };
    let hq = dept("总部", None, false).await;
    let rd = dept("研发部", Some(hq), false).await;
    let board = dept("董事会", Some(hq), true).await;
    let secret = dept("战略小组", Some(board), false).await;
    let person = |account: &str, name: &str, dept: u64, title: &str| json!({ "account": account, "display_name": name, "password": PASSWORD, "primary_department_id": dept, "title": title });
    for body in [
        person("zhangsan", "张三", rd, "前端工程师"),
        person("lisi", "李四", rd, "Designer"),
        person("chairman", "王董", board, "董事长"),
        person("strategist", "赵策", secret, "分析师"),
    ] {
        let (s, b) = api.call(Method::POST, "/people", Some(&token), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // Server-side search for the console.
    for q in ["zhangsan", "zs", "张", "张三", "前端", "zhang"] {
        let (_, found) =
            api.call(Method::GET, &format!("/people?q={}", urlencode(q)), Some(&token), None).await;
        assert_eq!(found["people"][0]["account"], "zhangsan", "query {q}: {found}");
    }

    // An outsider's client never receives the hidden part, not even as counts.
    let dir = tempfile::tempdir().unwrap();
    let outsider = online_client(dir.path(), server.addr(), "zhangsan", "d").await;
    let insider = online_client(dir.path(), server.addr(), "strategist", "d").await;
    let (top, _) = outsider.directory_children(0).unwrap();
    assert_eq!(top.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["总部"]);
    let (children, _) = outsider.directory_children(hq).unwrap();
    assert_eq!(children.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["研发部"]);
    assert!(outsider.directory_person("chairman").unwrap().is_none());
    assert!(outsider.directory_person("strategist").unwrap().is_none());
    assert!(outsider.directory_department(board).unwrap().is_none());
    assert!(outsider.search_directory("董", 10).unwrap().is_empty());
    let (depts, people) = outsider.directory_counts().unwrap();
    assert_eq!((depts, people), (2, 3), "outsider sees 总部, 研发部; zhangsan, lisi, admin");
    // Pinyin and CJK search in the client's own cache.
    for q in ["lisi", "ls", "李", "李四", "designer"] {
        assert_eq!(
            outsider.search_directory(q, 5).unwrap().first().map(|p| p.account.as_str()),
            Some("lisi"),
            "query {q}"
        );
    }
    // Inside the hidden department everything is visible.
    until(&insider, T, "insider sees the board", || insider.directory_person("chairman").unwrap().is_some())
        .await;
    assert!(insider.directory_department(secret).unwrap().is_some());

    // Moving someone into the hidden part removes them from outsiders' caches.
    let lisi = outsider.directory_person("lisi").unwrap().unwrap().id;
    let (s, _) = api
        .call(
            Method::PATCH,
            &format!("/people/{lisi}"),
            Some(&token),
            Some(json!({ "primary_department_id": board })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Directory changes reach online clients on their next sync round.
    until(&outsider, T, "lisi disappears for the outsider", || {
        outsider.directory_person("lisi").unwrap().is_none()
    })
    .await;
    // Renaming a visible department travels incrementally.
    let (s, _) = api
        .call(Method::PATCH, &format!("/departments/{rd}"), Some(&token), Some(json!({ "name": "研发中心" })))
        .await;
    assert_eq!(s, StatusCode::OK);
    until(&outsider, T, "rename arrives", || {
        outsider.directory_department(rd).unwrap().is_some_and(|d| d.name == "研发中心")
    })
    .await;
    server.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_through_the_api_closes_sessions_before_the_next_event() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["worker", "boss"]);
    let api = Api::new(&server);
    let token = api.login("admin", ADMIN_PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = online_client(dir.path(), server.addr(), "worker", "d").await;
    let boss = online_client(dir.path(), server.addr(), "boss", "d").await;
    let conv = boss.open_direct(ids[0]).await.unwrap().id;
    let texts = |c: &hutong_client::Client| -> Vec<String> {
        c.cached_messages(conv).unwrap().into_iter().filter(|m| m.kind == "text").map(|m| m.text).collect()
    };
    boss.send_text(conv, "before", SendOptions::default()).unwrap();
    until(&worker, T, "the worker has the first message", || texts(&worker) == ["before"]).await;
    let mut status = worker.status();
    let (s, b) = api
        .call(Method::PATCH, &format!("/people/{}", ids[0]), Some(&token), Some(json!({ "disabled": true })))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "disabled");
    // The next event for the worker, committed after the disable was answered:
    // the session is already closed, so it never reaches the disabled person.
    boss.send_text(conv, "after the disable", SendOptions::default()).unwrap();
    until(&boss, T, "the message after the disable is committed", || boss.outbox(None).unwrap().is_empty())
        .await;
    within(T, async {
        while !matches!(&*status.borrow_and_update(), hutong_client::Status::Offline { code, .. } if code == "ACCOUNT_DISABLED") {
            status.changed().await.unwrap();
        }
    })
    .await;
    assert_eq!(texts(&worker), ["before"], "nothing reached the session after it was disabled");
    let (s, b) = api
        .call(Method::POST, "/login", None, Some(json!({ "account": "worker", "password": PASSWORD })))
        .await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("ACCOUNT_DISABLED")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_forces_a_new_password() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["forgetful"]);
    let api = Api::new(&server);
    let token = api.login("admin", ADMIN_PASSWORD).await;
    let (s, b) =
        api.call(Method::POST, &format!("/people/{}/reset-password", ids[0]), Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    let temporary = b["password"].as_str().unwrap().to_owned();
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    match raw.login("forgetful", &temporary).await.payload {
        Some(hutong_protocol::Payload::Error(e)) => {
            assert_eq!(e.code, hutong_protocol::ErrorCode::PasswordChangeRequired as i32)
        }
        other => panic!("expected PASSWORD_CHANGE_REQUIRED, got {other:?}"),
    }
    hutong_client::change_password(&server.addr(), None, true, "forgetful", &temporary, "brand-new-pass")
        .await
        .unwrap();
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    assert!(matches!(
        raw.login("forgetful", "brand-new-pass").await.payload,
        Some(hutong_protocol::Payload::LoginOk(_))
    ));
    // The console lets a must-change person in only to change the password.
    let (s, b) =
        api.call(Method::POST, &format!("/people/{}/reset-password", ids[0]), Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    set_roles(&server, "forgetful", "admin");
    let t2 = api.login("forgetful", b["password"].as_str().unwrap()).await;
    let (s, b2) = api.call(Method::GET, "/departments", Some(&t2), None).await;
    assert_eq!((s, b2["code"].as_str()), (StatusCode::FORBIDDEN, Some("PASSWORD_CHANGE_REQUIRED")));
    let body = json!({ "old_password": b["password"], "new_password": "another-new-pass" });
    assert_eq!(api.call(Method::POST, "/me/password", Some(&t2), Some(body)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.call(Method::GET, "/departments", Some(&t2), None).await.0, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_search_and_export_the_archive_in_chinese_and_english() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["finance", "sales", "auditor1"]);
    set_roles(&server, "auditor1", "auditor");
    let dir = tempfile::tempdir().unwrap();
    let finance = online_client(dir.path(), server.addr(), "finance", "d").await;
    let conv = finance.open_direct(ids[1]).await.unwrap();
    for text in
        ["请把季度报告发给财务部", "The quarterly report is late", "好", "午饭吃什么", "recalled secret"]
    {
        finance.send_text(conv.id, text, SendOptions::default()).unwrap();
    }
    until(&finance, T, "all sent", || finance.outbox(None).unwrap().is_empty()).await;
    finance.recall(conv.id, 5).await.unwrap();
    let api = Api::new(&server);
    let token = api.login("auditor1", PASSWORD).await;
    let search = |q: &str| {
        let path = format!("/audit/messages?q={}", urlencode(q));
        let api = &api;
        let token = token.clone();
        async move {
            let (s, b) = api.call(Method::GET, &path, Some(&token), None).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("季度报").await, ["请把季度报告发给财务部"]);
    assert_eq!(search("财务").await, ["请把季度报告发给财务部"], "two characters");
    assert_eq!(search("好").await, ["好"], "one character");
    assert_eq!(search("QUARTERLY report").await, ["The quarterly report is late"]);
    assert_eq!(search("secret").await, ["recalled secret"], "recalled messages stay in the archive");
    assert!(search("nothing like this").await.is_empty());
    let (s, b) =
        api.call(Method::GET, "/audit/messages?person=sales&q=%E5%8D%88%E9%A5%AD", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["messages"][0]["sender_account"], "finance");

    let resp = api
        .http
        .get(format!("{}/audit/messages/export?format=jsonl&q=report", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let jsonl = resp.text().await.unwrap();
    let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{jsonl}");
    assert_eq!(lines[0]["text"], "The quarterly report is late");
    let resp = api
        .http
        .get(format!("{}/audit/messages/export?format=csv", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let csv = resp.text().await.unwrap();
    assert!(csv.starts_with("\u{feff}conversation_id,"));
    assert_eq!(csv.lines().count(), 1 + 6, "header + 5 messages + the recall entry");

    // Searches and exports are themselves recorded.
    let (_, log) = api.call(Method::GET, "/audit/log", Some(&token), None).await;
    let actions: Vec<&str> =
        log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"audit.export") && actions.contains(&"audit.search"), "{actions:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_edited_deleted_and_inserted_entries() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let token = api.login("admin", ADMIN_PASSWORD).await;
    for i in 0..6 {
        let (s, _) = api
            .call(Method::POST, "/departments", Some(&token), Some(json!({ "name": format!("部门{i}") })))
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let data = server.dir.path().to_owned();
    let _kept = server.stop_keeping_data().await;
    let verify = || {
        std::process::Command::new(server_binary())
            .arg("--data-dir")
            .arg(&data)
            .args(["audit", "verify"])
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("intact: 7 entries"),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let db = hutong_server::storage::open_connection(&data.join("hutong.db")).unwrap();
    db.execute("UPDATE audit_log SET target = 'department:999' WHERE id = 3", []).unwrap();
    db.execute("DELETE FROM audit_log WHERE id = 5", []).unwrap();
    db.execute(
        "INSERT INTO audit_log (id, at, actor_id, actor_account, action, target, detail, prev_hash, hash)
         SELECT 100, at, actor_id, actor_account, 'department.delete', 'department:1', '{}', hash, hash FROM audit_log WHERE id = 7",
        [],
    )
    .unwrap();
    let bad = verify();
    let out = String::from_utf8_lossy(&bad.stdout);
    println!("{out}");
    assert_eq!(bad.status.code(), Some(1));
    assert!(out.contains("entry 3: edited"), "{out}");
    assert!(out.contains("deleted between entry 4 and entry 6"), "{out}");
    assert!(out.contains("entry 100: inserted"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_messages_and_records_it() {
    // Short retention waiting for an auditor is accounts_security.rs's; here it applies at once.
    let server = TestServer::start_with(|c| c.retention_floor_days = 0).await;
    let ids = server.add_users(&["old", "timer"]);
    let dir = tempfile::tempdir().unwrap();
    let old = online_client(dir.path(), server.addr(), "old", "d").await;
    let group = old.create_group("g", &[ids[1]]).await.unwrap();
    let direct = old.open_direct(ids[1]).await.unwrap();
    for i in 0..10 {
        old.send_text(group.id, &format!("g{i}"), SendOptions::default()).unwrap();
        old.send_text(direct.id, &format!("d{i}"), SendOptions::default()).unwrap();
    }
    until(&old, T, "sent", || old.outbox(None).unwrap().is_empty()).await;
    // Age the first five group messages by ten days.
    let ten_days = 10 * 86_400_000i64;
    server
        .db()
        .execute(
            "UPDATE messages SET sent_at = sent_at - ?2 WHERE conversation_id = ?1 AND seq <= 6",
            [group.id as i64, ten_days],
        )
        .unwrap();
    let api = Api::new(&server);
    let token = api.login("admin", ADMIN_PASSWORD).await;
    let (s, b) = api
        .call(Method::PUT, "/retention", Some(&token), Some(json!({ "direct_days": 0, "group_days": 7 })))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let applied = || -> bool {
        server
            .db()
            .query_row("SELECT count(*) FROM audit_log WHERE action = 'retention.apply'", [], |r| {
                r.get::<_, u64>(0)
            })
            .unwrap()
            > 0
    };
    until(&old, T, "the retention job ran", applied).await;
    let remaining: Vec<u64> = {
        let db = server.db();
        let mut stmt =
            db.prepare("SELECT seq FROM messages WHERE conversation_id = ?1 ORDER BY seq").unwrap();
        stmt.query_map([group.id], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(remaining, (7..=11).collect::<Vec<_>>(), "group created entry + 5 old messages removed");
    let direct_left: u64 = server
        .db()
        .query_row("SELECT count(*) FROM messages WHERE conversation_id = ?1", [direct.id], |r| r.get(0))
        .unwrap();
    assert_eq!(direct_left, 10, "direct messages are kept forever");
    let (_, log) = api.call(Method::GET, "/audit/log", Some(&token), None).await;
    let entry =
        log["entries"].as_array().unwrap().iter().find(|e| e["action"] == "retention.apply").unwrap().clone();
    assert_eq!(entry["detail"]["group"]["messages"], 6, "{entry}");
    // A fresh client starts from the first kept seq and is not stuck on the hole.
    let fresh = online_client(dir.path(), server.addr(), "timer", "fresh").await;
    until(&fresh, T, "fresh client has the kept messages", || {
        fresh.cached_messages(group.id).unwrap().len() == 5
    })
    .await;
    server.stop().await;
}
