//! The client core's sync end to end: a person's own cursors reach their
//! other devices, a recall wins whatever order it arrives in, periodic sync
//! heals a push that never arrived, and the CLI's history pages past 500.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use hutong_client::{Client, SendOptions};
use hutong_tests::*;

const T: Duration = Duration::from_secs(20);

fn unread(c: &Client, conv: u64) -> Option<u64> {
    c.conversations().unwrap().iter().find(|x| x.id == conv).map(|x| x.unread)
}

fn texts(c: &Client, conv: u64) -> Vec<String> {
    c.cached_messages(conv).unwrap().into_iter().filter(|m| m.kind == "text").map(|m| m.text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_one_device_reaches_the_other_after_it_was_offline() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let bob = online_client(dir.path(), server.addr(), "bob", "d1").await;
    let phone = online_client(dir.path(), server.addr(), "alice", "phone").await;
    let laptop = online_client(dir.path(), server.addr(), "alice", "laptop").await;

    let conv = bob.open_direct(ids[0]).await.unwrap().id;
    for i in 0..3 {
        bob.send_text(conv, &format!("m{i}"), SendOptions::default()).unwrap();
    }
    until(&laptop, T, "the laptop has bob's 3", || texts(&laptop, conv).len() == 3).await;
    until(&phone, T, "the phone has bob's 3", || texts(&phone, conv).len() == 3).await;
    assert_eq!(unread(&laptop, conv), Some(3));

    // The laptop goes away; the phone reads everything meanwhile.
    laptop.shutdown();
    drop(laptop);
    phone.mark_read(conv, 3).unwrap();
    within(T, phone.report_cursors()).await.unwrap();
    poll_until(T, "the server has alice's read cursor", || {
        server
            .db()
            .query_row(
                "SELECT read_seq FROM members WHERE conversation_id = ?1 AND user_id = ?2",
                [conv, ids[0]],
                |r| r.get::<_, u64>(0),
            )
            .unwrap()
            == 3
    })
    .await;

    // The laptop comes back: its first sync says what the phone read.
    let laptop = client_in(dir.path(), server.addr(), "alice", "laptop");
    wait_online_synced(&laptop).await;
    until(&laptop, T, "the laptop shows nothing unread", || unread(&laptop, conv) == Some(0)).await;
    assert_eq!(texts(&laptop, conv).len(), 3);

    // A device that never saw the conversation learns the cursor too.
    let tablet = online_client(dir.path(), server.addr(), "alice", "tablet").await;
    until(&tablet, T, "the tablet has the 3 messages", || texts(&tablet, conv).len() == 3).await;
    assert_eq!(unread(&tablet, conv), Some(0));
    server.stop().await;
}

/// "Was it acknowledged?" is answered by the cache, so a caller that
/// missed the event (it listened too late, or its channel lagged) still
/// learns the seq, and an id it never sent is not taken for one: what the CLI's `send` and the desktop's send command ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_acknowledgement_event_was_missed_is_reported_sent() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "d1").await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;
    // Nobody listens to alice's events while the send is acknowledged.
    let id = alice.send_text(conv, "acknowledged unseen", SendOptions::default()).unwrap();
    until(&alice, T, "alice's send is acknowledged", || alice.outbox(None).unwrap().is_empty()).await;
    let stored: u64 = server
        .db()
        .query_row("SELECT seq FROM messages WHERE client_msg_id = ?1", [&id], |r| r.get(0))
        .unwrap();
    assert_eq!(
        alice.send_outcome(&id).unwrap(),
        hutong_client::SendOutcome::Sent { conversation_id: conv, seq: stored }
    );

    assert_eq!(
        alice.send_outcome("0190aaaa-0000-7000-8000-00000000dead").unwrap(),
        hutong_client::SendOutcome::Waiting
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_sync_heals_a_push_that_never_arrived() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = PushDropper::start(server.tcp).await;
    let alice = online_client(dir.path(), server.addr(), "alice", "d1").await;
    let bob = client_with(dir.path(), proxy.server_addr(), "bob", "d1", |o| {
        o.sync_interval = Duration::from_millis(300);
    });
    wait_online_synced(&bob).await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;
    alice.send_text(conv, "first", SendOptions::default()).unwrap();
    until(&bob, T, "bob has the first message", || texts(&bob, conv) == ["first"]).await;

    // The push of the second one is lost; nothing else happens afterwards.
    proxy.drop_next_push();
    alice.send_text(conv, "second", SendOptions::default()).unwrap();
    until(&alice, T, "alice's second is acknowledged", || alice.outbox(None).unwrap().is_empty()).await;
    poll_until(T, "the proxy swallowed the push", || proxy.dropped() == 1).await;
    assert_eq!(proxy.dropped_texts(), ["second"]);
    until(&bob, T, "bob's periodic sync finds the second", || texts(&bob, conv) == ["first", "second"]).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recall_pushed_before_its_gap_fill_still_wins() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let OvertakenGapFill { alice, bob, proxy: _proxy, conversation_id: conv, missed: secret } =
        overtaken_gap_fill(&server, dir.path(), "secret").await;
    within(T, alice.recall(conv, secret)).await.unwrap();
    until(&bob, T, "bob has the recalled entry and its recall", || {
        let m = bob.cached_messages(conv).unwrap();
        m.iter().any(|m| m.seq == secret) && m.iter().any(|m| m.kind == "recall")
    })
    .await;
    let stored = bob.cached_messages(conv).unwrap();
    let target = stored.iter().find(|m| m.seq == secret).unwrap();
    assert!(target.recalled, "the recall wins: {target:?}");
    assert_eq!(target.text, "");
    assert!(stored.iter().all(|m| m.text != "secret"));
    server.stop().await;
}

async fn hutong(home: &Path, profile: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(cli_binary())
        .env("HUTONG_HOME", home)
        .env("HUTONG_PASSWORD", PASSWORD)
        .args(["--profile", profile, "--timeout", "20"])
        .args(args)
        .output()
        .await
        .expect("run hutong")
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Seqs of the messages `hutong history --json` printed.
fn seqs(out: &str) -> Vec<u64> {
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_history_pages_past_500_and_takes_before_and_after() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "d1").await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;
    for i in 1..=1200 {
        alice.send_text(conv, &format!("line {i}"), SendOptions::default()).unwrap();
    }
    until(&alice, Duration::from_secs(60), "1,200 acknowledged", || alice.outbox(None).unwrap().is_empty())
        .await;

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    ok(&hutong(h, "b", &["login", "--server", &addr, "--insecure-plaintext", "--account", "bob"]).await);
    let target = format!("#{conv}");
    // A fresh device: the cache holds what the first sync fetched; the rest comes from the server.
    let all = seqs(&ok(&hutong(h, "b", &["history", &target, "--limit", "5000", "--json"]).await));
    assert_eq!(all, (1..=1200).collect::<Vec<_>>());
    let newest = seqs(&ok(&hutong(h, "b", &["history", &target, "--limit", "700", "--json"]).await));
    assert_eq!(newest, (501..=1200).collect::<Vec<_>>());
    let before =
        seqs(&ok(
            &hutong(h, "b", &["history", &target, "--limit", "600", "--before", "1001", "--json"]).await
        ));
    assert_eq!(before, (401..=1000).collect::<Vec<_>>());
    let after =
        seqs(&ok(&hutong(h, "b", &["history", &target, "--limit", "600", "--after", "100", "--json"]).await));
    assert_eq!(after, (101..=700).collect::<Vec<_>>());
    let between =
        seqs(&ok(&hutong(h, "b", &["history", &target, "--after", "10", "--before", "20", "--json"]).await));
    assert_eq!(between, (11..=19).collect::<Vec<_>>());
    server.stop().await;
}
