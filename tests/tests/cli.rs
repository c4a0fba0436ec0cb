//! The `hutong` CLI against a real TLS server: what scripts rely on (exit
//! codes, `--json` lines, the pinned fingerprint, queued sends while offline).

use std::path::Path;
use std::process::Output;

use hutong_protocol::{Envelope, ErrorCode, Payload};
use hutong_tests::*;

async fn hutong(home: &Path, profile: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(cli_binary())
        .env("HUTONG_HOME", home)
        .env("HUTONG_PASSWORD", PASSWORD)
        .args(["--profile", profile, "--timeout", "10"])
        .args(args)
        .output()
        .await
        .expect("run hutong")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_send_history_ls_tail_and_exit_codes() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice", "bob"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    let fingerprint = hutong_server::tls::load_or_create(server.dir.path()).unwrap().fingerprint;

    // Not logged in yet: usage error.
    check(&hutong(h, "a", &["ls"]).await, 2);
    let out = hutong(h, "a", &["login", "--server", &addr, "--account", "alice"]).await;
    check(&out, 0);
    assert!(stdout(&out).contains(&fingerprint), "login prints the pinned fingerprint");
    check(&hutong(h, "b", &["login", "--server", &addr, "--account", "bob"]).await, 0);
    let bad = tokio::process::Command::new(cli_binary())
        .env("HUTONG_HOME", h)
        .env("HUTONG_PASSWORD", "wrong-password")
        .args(["--profile", "x", "login", "--server", &addr, "--account", "bob"])
        .output()
        .await
        .unwrap();
    check(&bad, 3);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("BAD_CREDENTIALS"));

    // bob follows; alice sends two lines.
    let tail = tokio::process::Command::new(cli_binary())
        .env("HUTONG_HOME", h)
        .args(["--profile", "b", "tail", "--json", "--count", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until tail says it is following, so it only prints what is new.
    let mut tail = tail;
    let mut stderr = tokio::io::BufReader::new(tail.stderr.take().unwrap());
    within(std::time::Duration::from_secs(20), async {
        use tokio::io::AsyncBufReadExt as _;
        let mut line = String::new();
        while !line.contains("following") {
            line.clear();
            assert!(stderr.read_line(&mut line).await.unwrap() > 0, "tail exited early");
        }
    })
    .await;
    let out = hutong(h, "a", &["send", "bob", "第一条", "message"]).await;
    check(&out, 0);
    assert!(stdout(&out).starts_with("sent to #"), "{}", stdout(&out));
    check(&hutong(h, "a", &["send", "bob", "second"]).await, 0);
    let tailed = within(std::time::Duration::from_secs(20), tail.wait_with_output()).await.unwrap();
    let lines: Vec<serde_json::Value> =
        stdout(&tailed).lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    let texts: Vec<&str> = lines.iter().filter_map(|v| v["text"].as_str()).collect();
    assert_eq!(texts, ["第一条 message", "second"]);
    assert!(lines.iter().all(|v| v["sender"] == "alice"));

    let ls = hutong(h, "b", &["ls", "--json"]).await;
    check(&ls, 0);
    let conv: serde_json::Value = serde_json::from_str(stdout(&ls).lines().next().unwrap()).unwrap();
    assert_eq!(conv["unread"], 2);
    assert_eq!(conv["title"], "alice");
    let history = hutong(h, "b", &["history", "alice", "--json"]).await;
    check(&history, 0);
    let texts: Vec<String> = stdout(&history)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["第一条 message", "second"]);
    // Reading the history marked it read.
    let ls = hutong(h, "b", &["ls", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(stdout(&ls).lines().next().unwrap()).unwrap()["unread"],
        0
    );

    // Groups.
    let out = hutong(h, "a", &["group", "create", "项目组", "--members", "bob"]).await;
    check(&out, 0);
    assert!(stdout(&out).contains("2 member(s)"));
    let group = stdout(&out).split_whitespace().nth(1).unwrap().to_owned();
    assert!(group.starts_with('#'), "{}", stdout(&out));
    let out = hutong(h, "a", &["send", &group, "请大家看一下"]).await;
    check(&out, 0);
    let seq = stdout(&out).trim().rsplit(' ').next().unwrap().to_owned();
    let read_list = |h: &Path| {
        let (group, seq) = (group.clone(), seq.clone());
        let h = h.to_owned();
        async move {
            let out = hutong(&h, "a", &["read-list", &group, &seq, "--json"]).await;
            check(&out, 0);
            serde_json::from_str::<serde_json::Value>(stdout(&out).trim()).unwrap()
        }
    };
    assert_eq!(read_list(h).await, serde_json::json!({ "read": [], "unread": ["bob"] }));
    // bob reads it (history marks what it shows read); alice's read list says so.
    check(&hutong(h, "b", &["history", &group]).await, 0);
    within(std::time::Duration::from_secs(20), async {
        while read_list(h).await != serde_json::json!({ "read": ["bob"], "unread": [] }) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    check(&hutong(h, "a", &["send", "nobody", "x"]).await, 3);

    // Server down: the message is queued (exit 4) and goes out with the next command.
    let stopped = server.stop_keeping_data().await;
    let out = hutong(h, "a", &["--timeout", "2", "send", "bob", "while you were out"]).await;
    check(&out, 4);
    assert!(String::from_utf8_lossy(&out.stderr).contains("queued"));
    let server = stopped.start_again().await;
    check(&hutong(h, "a", &["ls"]).await, 0);
    let history = hutong(h, "b", &["history", "alice"]).await;
    assert_eq!(stdout(&history).matches("while you were out").count(), 1, "{}", stdout(&history));

    // A different certificate than the pinned one: refused with exit 5.
    let profile = h.join("profiles/a/profile.json");
    let text =
        std::fs::read_to_string(&profile).unwrap().replace(&fingerprint, &format!("{}AB", "AB:".repeat(31)));
    std::fs::write(&profile, &text).unwrap();
    let out = hutong(h, "a", &["ls"]).await;
    check(&out, 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate changed"));
    server.stop().await;
}

/// The code of an error or disconnect frame.
fn refusal(env: Envelope) -> ErrorCode {
    match env.payload {
        Some(Payload::Error(e)) => ErrorCode::try_from(e.code).unwrap(),
        Some(Payload::Disconnect(d)) => ErrorCode::try_from(d.code).unwrap(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_admin_subcommands() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(server_binary())
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["user", "list"], "");
    check(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("hutong-server migrate"), "says what to do");
    check(&run(&["migrate"], ""), 0);
    check(&run(&["user", "add", "mallory", "--name", "马洛里"], "long-enough-1\n"), 0);
    let dup = run(&["user", "add", "mallory"], "long-enough-1\n");
    check(&dup, 1);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let short = run(&["user", "add", "nina"], "short\n");
    check(&short, 1);
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8 characters"));
    check(&run(&["user", "disable", "mallory"], ""), 0);
    let list = run(&["user", "list", "--json"], "");
    check(&list, 0);
    let users: Vec<serde_json::Value> =
        stdout(&list).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["account"], "mallory");
    assert_eq!(users[0]["display_name"], "马洛里");
    assert_eq!(users[0]["disabled"], true);
    check(&run(&["user", "disable", "nobody"], ""), 1);

    // A disabled account cannot log in; enabled again, it can.
    let server = ServerProcess::start(data.path(), None);
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    assert_eq!(refusal(raw.login("mallory", "long-enough-1").await), ErrorCode::AccountDisabled);
    check(&run(&["user", "enable", "mallory"], ""), 0);
    let mut live = RawConn::connect(server.tcp).await;
    live.hello().await;
    let Some(Payload::LoginOk(ok)) = live.login("mallory", "long-enough-1").await.payload else {
        panic!("mallory logs in once enabled")
    };
    // A new password, set while the server runs: the session made with the
    // old one ends, its token and the old password are refused, the new one works.
    check(&run(&["user", "passwd", "mallory"], "another-one-2\n"), 0);
    let reason = loop {
        match live.recv().await {
            Some(env) if matches!(env.payload, Some(Payload::Disconnect(_))) => break refusal(env),
            Some(_) => {}
            None => panic!("the session made with the old password was not told why it ended"),
        }
    };
    assert_eq!(reason, ErrorCode::SessionRevoked);
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    assert_eq!(
        refusal(Envelope::new(0, raw.login_token("mallory", &ok.token, "raw", false).await)),
        ErrorCode::SessionRevoked
    );
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    assert_eq!(refusal(raw.login("mallory", "long-enough-1").await), ErrorCode::BadCredentials);
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    assert!(
        matches!(raw.login("mallory", "another-one-2").await.payload, Some(Payload::LoginOk(_))),
        "the new password logs in"
    );
    drop(server);
    let version = run(&["version"], "");
    check(&version, 0);
    assert!(stdout(&version).contains("protocol 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_org_browse_show_and_search() {
    let server = TestServer::start().await;
    server.add_users(&["viewer"]);
    {
        use hutong_server::directory::{self, DepartmentInput, PersonInput};
        let db = server.db();
        let dept = directory::create_department(
            &db,
            &DepartmentInput { name: Some("研发部".into()), ..Default::default() },
        )
        .unwrap();
        let input = PersonInput {
            account: Some("zhangsan".into()),
            display_name: Some("张三".into()),
            title: Some("架构师".into()),
            primary_department_id: Some(Some(dept)),
            ..Default::default()
        };
        directory::create_person(&db, &input, hutong_server::accounts::NO_PASSWORD, true).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    check(
        &hutong(h, "v", &["login", "--server", &addr, "--insecure-plaintext", "--account", "viewer"]).await,
        0,
    );
    let top = hutong(h, "v", &["org", "browse", "--json"]).await;
    check(&top, 0);
    let top: serde_json::Value = serde_json::from_str(stdout(&top).trim()).unwrap();
    assert_eq!(top["departments"][0]["name"], "研发部");
    let dept = top["departments"][0]["id"].as_u64().unwrap().to_string();
    let inside = hutong(h, "v", &["org", "browse", &dept]).await;
    check(&inside, 0);
    assert!(stdout(&inside).contains("张三 (zhangsan) · 架构师"), "{}", stdout(&inside));
    for q in ["zs", "zhangsan", "张"] {
        let found = hutong(h, "v", &["org", "search", q]).await;
        check(&found, 0);
        assert!(stdout(&found).contains("zhangsan"), "{q}: {}", stdout(&found));
    }
    let show = hutong(h, "v", &["org", "show", "zhangsan"]).await;
    assert!(stdout(&show).contains("研发部"), "{}", stdout(&show));
    check(&hutong(h, "v", &["org", "show", "nobody"]).await, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_edit_and_history_marks_the_edited_message() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice", "bob"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    check(&hutong(h, "a", &["login", "--server", &addr, "--account", "alice"]).await, 0);
    check(&hutong(h, "b", &["login", "--server", &addr, "--account", "bob"]).await, 0);
    check(&hutong(h, "a", &["send", "bob", "helo"]).await, 0);
    let out = hutong(h, "a", &["edit", "bob", "1", "hello"]).await;
    check(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    assert!(stdout(&out).starts_with("edited seq 1 in #"), "{}", stdout(&out));
    // Only the sender may edit: bob is refused.
    let refused = hutong(h, "b", &["edit", "alice", "1", "mine now"]).await;
    assert_ne!(refused.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("FORBIDDEN"));

    let history = hutong(h, "b", &["history", "alice"]).await;
    check(&history, 0);
    assert!(stdout(&history).contains("alice: hello (edited)"), "{}", stdout(&history));
    assert!(!stdout(&history).contains("helo"), "{}", stdout(&history));
    let json = hutong(h, "b", &["history", "alice", "--json"]).await;
    check(&json, 0);
    let lines: Vec<serde_json::Value> =
        stdout(&json).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let first = lines.iter().find(|v| v["seq"] == 1).unwrap();
    assert_eq!((first["text"].as_str(), first["edited"].as_bool()), (Some("hello"), Some(true)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_react_and_history_shows_the_reactions() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice", "bob"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    check(&hutong(h, "a", &["login", "--server", &addr, "--account", "alice"]).await, 0);
    check(&hutong(h, "b", &["login", "--server", &addr, "--account", "bob"]).await, 0);
    check(&hutong(h, "a", &["send", "bob", "lunch?"]).await, 0);
    let out = hutong(h, "a", &["react", "bob", "1", "👍"]).await;
    check(&out, 0);
    assert!(stdout(&out).starts_with("added 👍 on seq 1 in #"), "{}", stdout(&out));
    check(&hutong(h, "b", &["react", "alice", "1", "👍"]).await, 0);
    check(&hutong(h, "b", &["react", "alice", "1", "🎉"]).await, 0);
    check(&hutong(h, "b", &["react", "alice", "1", "🎉", "--remove"]).await, 0);
    let refused = hutong(h, "b", &["react", "alice", "1", "a b"]).await;
    assert_ne!(refused.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("BAD_REQUEST"));

    let history = hutong(h, "b", &["history", "alice"]).await;
    check(&history, 0);
    assert!(stdout(&history).contains("alice: lunch? [👍 2]\n"), "{}", stdout(&history));
    let json = hutong(h, "b", &["history", "alice", "--json"]).await;
    check(&json, 0);
    let lines: Vec<serde_json::Value> =
        stdout(&json).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let first = lines.iter().find(|v| v["seq"] == 1).unwrap();
    assert_eq!(first["reactions"][0]["emoji"], "👍");
    assert_eq!(first["reactions"][0]["user_ids"].as_array().unwrap().len(), 2);
    assert_eq!(first["reactions"].as_array().unwrap().len(), 1, "{first}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pin_and_pins_lists_what_is_pinned() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice", "bob"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    check(&hutong(h, "a", &["login", "--server", &addr, "--account", "alice"]).await, 0);
    check(&hutong(h, "b", &["login", "--server", &addr, "--account", "bob"]).await, 0);
    check(&hutong(h, "a", &["send", "bob", "the plan"]).await, 0);
    check(&hutong(h, "a", &["send", "bob", "chatter"]).await, 0);
    let out = hutong(h, "b", &["pin", "alice", "1"]).await;
    check(&out, 0);
    assert!(stdout(&out).starts_with("pinned seq 1 in #"), "{}", stdout(&out));
    check(&hutong(h, "a", &["pin", "bob", "2"]).await, 0);
    check(&hutong(h, "a", &["pin", "bob", "2", "--remove"]).await, 0);
    let refused = hutong(h, "b", &["pin", "alice", "99"]).await;
    assert_ne!(refused.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("NOT_FOUND"));

    let pins = hutong(h, "a", &["pins", "bob"]).await;
    check(&pins, 0);
    assert_eq!(stdout(&pins), "1 alice: the plan (pinned by bob)\n");
    let json = hutong(h, "a", &["pins", "bob", "--json"]).await;
    check(&json, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!((v["seq"].as_u64(), v["pinned_by_name"].as_str()), (Some(1), Some("bob")));
    let history = hutong(h, "b", &["history", "alice"]).await;
    assert!(stdout(&history).contains("bob: * pinned message 1\n"), "{}", stdout(&history));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_forward_one_by_one_and_merged() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice", "bob", "carol"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    for (p, a) in [("a", "alice"), ("b", "bob"), ("c", "carol")] {
        check(&hutong(h, p, &["login", "--server", &addr, "--account", a]).await, 0);
    }
    check(&hutong(h, "a", &["send", "bob", "the plan"]).await, 0);
    check(&hutong(h, "b", &["send", "alice", "agreed"]).await, 0);
    let out = hutong(h, "b", &["forward", "alice", "1", "2", "--to", "carol"]).await;
    check(&out, 0);
    assert!(stdout(&out).starts_with("forwarded 2 to #"), "{}", stdout(&out));
    let out = hutong(h, "b", &["forward", "alice", "1", "2", "--to", "carol", "--merged"]).await;
    check(&out, 0);
    assert!(stdout(&out).starts_with("forwarded 1 to #"), "{}", stdout(&out));
    let history = stdout(&hutong(h, "c", &["history", "bob"]).await).to_owned();
    assert!(history.contains("bob: the plan\n"), "{history}");
    assert!(history.contains("bob: agreed\n"), "{history}");
    assert!(
        history.contains("bob: [chat history: alice, bob]\n    | alice: the plan\n    | bob: agreed\n"),
        "{history}"
    );
    // carol was never in alice and bob's chat.
    let refused = hutong(h, "c", &["forward", "#1", "1", "--to", "bob"]).await;
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("FORBIDDEN"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_mass_send_and_its_status() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice", "bob", "carol"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    for (p, a) in [("a", "alice"), ("b", "bob"), ("c", "carol")] {
        check(&hutong(h, p, &["login", "--server", &addr, "--account", a]).await, 0);
    }
    let out = hutong(h, "a", &["mass-send", "hello {name}", "--to", "bob", "--to", "carol"]).await;
    check(&out, 0);
    let line = stdout(&out).trim().to_owned();
    assert!(line.starts_with("sent to 2 people, id "), "{line}");
    let id = line.rsplit(' ').next().unwrap().to_owned();
    let history = hutong(h, "b", &["history", "alice"]).await;
    assert!(stdout(&history).contains("alice: hello bob\n"), "{}", stdout(&history));
    let status = hutong(h, "a", &["mass-status", &id]).await;
    check(&status, 0);
    // bob's CLI read the history (delivered at least); carol's has not connected since.
    let printed = stdout(&status).to_owned();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("bob ") && lines[0] != "bob sent", "{lines:?}");
    assert_eq!(lines[1], "carol sent");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_notice_send_sign_and_status() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice", "bob", "carol"]);
    server.db().execute("UPDATE users SET roles = 'publisher' WHERE account = 'alice'", []).unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    for (p, a) in [("a", "alice"), ("b", "bob"), ("c", "carol")] {
        check(&hutong(h, p, &["login", "--server", &addr, "--account", a]).await, 0);
    }
    let body = "请于 **周五** 前完成 [盘点](https://oa.example.com/7)。";
    let args = [
        "notice",
        "send",
        "--title",
        "年终盘点",
        "--body",
        body,
        "--to",
        "bob",
        "--to",
        "carol",
        "--sign",
        "--deadline",
        "+1d",
        "--important",
    ];
    let out = hutong(h, "a", &args).await;
    check(&out, 0);
    let line = stdout(&out).trim().to_owned();
    assert!(line.starts_with("sent notice ") && line.ends_with(" to 2 people"), "{line}");
    let id = line.split(' ').nth(2).unwrap().to_owned();

    // Bob's inbox, the notice as plain text (now read), his signature.
    let ls = hutong(h, "b", &["notice", "ls"]).await;
    check(&ls, 0);
    assert_eq!(stdout(&ls).trim(), format!("{id} [important, to sign, unread] 年终盘点"));
    let show = hutong(h, "b", &["notice", "show", &id]).await;
    check(&show, 0);
    assert!(
        stdout(&show).contains("请于 周五 前完成 盘点 (https://oa.example.com/7)。"),
        "{}",
        stdout(&show)
    );
    check(&hutong(h, "b", &["notice", "sign", &id]).await, 0);

    // The sender's table: exactly bob signed.
    let status = hutong(h, "a", &["notice", "status", &id, "--json"]).await;
    check(&status, 0);
    let rows: Vec<serde_json::Value> =
        stdout(&status).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let signed: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| (r["account"].as_str().unwrap(), r["signed_at_ms"].as_i64().unwrap() > 0))
        .collect();
    assert_eq!(signed, [("bob", true), ("carol", false)]);
    assert_eq!(rows[0]["device"], "cli");
    let unsigned = hutong(h, "a", &["notice", "status", &id, "--not-signed", "--json"]).await;
    let accounts: Vec<String> = stdout(&unsigned)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["account"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(accounts, ["carol"]);

    // A staff member may not send urgent notices: the server's refusal, exit 3.
    let refused =
        hutong(h, "b", &["notice", "send", "--title", "急", "--body", "x", "--to", "alice", "--urgent"])
            .await;
    check(&refused, 3);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("FORBIDDEN") && err.contains("urgent"), "{err}");
    server.stop().await;
}
