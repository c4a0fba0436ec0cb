//! Bounded memory and liveness per connection: a client that never reads
//! holds at most its byte budget and is dropped at the write deadline; a
//! shutdown ends within its grace period whatever clients do; a dead writer
//! makes the server unhealthy and `run` fail; typing is rate-limited;
//! subscribing to a whole department's presence does not disconnect.
//!
//! The server's own figure (`/health`: `outbound_bytes`, `connections`) is
//! what these tests measure: the bytes every outbound queue holds, counted
//! by the server process itself.

use std::time::{Duration, Instant};

use hutong_client::SendOptions;
use hutong_protocol::v1::{self, PresenceStatus};
use hutong_protocol::{Envelope, ErrorCode, Payload, MAX_FRAME_LEN};
use hutong_tests::*;

const T: Duration = Duration::from_secs(60);
/// A message text of 60 KB: queues and kernel buffers fill after a few.
fn big_text() -> String {
    "x".repeat(60_000)
}

fn outbound_bytes(body: &serde_json::Value) -> u64 {
    body["outbound_bytes"].as_u64().expect("outbound_bytes in /health")
}

fn connections(body: &serde_json::Value) -> u64 {
    body["connections"].as_u64().expect("connections in /health")
}

/// Logs in on a raw connection with a small receive window.
async fn stuck_client(server: &TestServer, account: &str) -> RawConn {
    let mut raw = RawConn::connect_small_window(server.tcp).await;
    raw.hello().await;
    assert!(matches!(raw.login(account, PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    raw
}

/// Queues `n` fetches of the conversation's first messages without reading the answers.
async fn pipeline_fetches(raw: &mut RawConn, conversation_id: u64, n: u64, limit: u32) {
    for i in 0..n {
        let fetch = v1::FetchMessages { conversation_id, after_seq: 0, before_seq: 0, limit };
        raw.send(Envelope::new(1000 + i, Payload::FetchMessages(fetch))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_at_most_its_byte_budget_and_its_task_ends_when_closed() {
    const BUDGET: usize = 1 << 20;
    let server = TestServer::start_with(|c| {
        c.outbound_queue_bytes = BUDGET;
        c.write_timeout_ms = 2_000;
        c.idle_timeout_ms = 600_000;
    })
    .await;
    let ids = server.add_users(&["sender", "stuck"]);
    let dir = tempfile::tempdir().unwrap();
    let sender = online_client(dir.path(), server.addr(), "sender", "d").await;
    let conv = sender.open_direct(ids[1]).await.unwrap();
    for _ in 0..20 {
        sender.send_text(conv.id, &big_text(), SendOptions::default()).unwrap();
    }
    until(&sender, T, "20 sent", || sender.outbox(None).unwrap().is_empty()).await;

    // Asks for ~50 MB of answers and never reads them.
    let mut stuck = stuck_client(&server, "stuck").await;
    pipeline_fetches(&mut stuck, conv.id, 100, 500).await;

    // Watch the server's figure while the sender pushes 12 MB more at it.
    let http = server.http;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut most = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tokio::select! {
                _ = &mut stop_rx => return most,
                _ = tick.tick() => most = most.max(outbound_bytes(&health(http).await.1)),
            }
        }
    });
    for _ in 0..200 {
        sender.send_text(conv.id, &big_text(), SendOptions::default()).unwrap();
    }
    until(&sender, T, "200 more sent", || sender.outbox(None).unwrap().is_empty()).await;

    // Closed as a slow consumer, its writer missing the write deadline: the
    // connection's task ends and its bytes are freed, though the client
    // still holds its end of the socket open.
    poll_until_async(
        Duration::from_secs(15),
        "the stuck connection to end and free its queue",
        || health(server.http),
        |(_, body)| connections(body) == 1 && outbound_bytes(body) < 64 * 1024,
    )
    .await;
    let _ = stop_tx.send(());
    let most = sampler.await.unwrap();
    // The stated bound of one connection: its queue (the budget, or one
    // frame if larger), plus the large answers it may have in flight (one
    // frame each, budget / frame of them, at least one), plus small answers.
    let large = (BUDGET / MAX_FRAME_LEN).max(1);
    let bound = (BUDGET.max(MAX_FRAME_LEN) + large * MAX_FRAME_LEN + 256 * 1024) as u64;
    println!("most outbound bytes seen: {most} (bound {bound})");
    assert!(most > 0, "the figure counted nothing");
    assert!(most <= bound, "outbound queues held {most} bytes, over the bound of {bound}");
    drop(stuck);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_its_window_shut_is_dropped_at_the_write_deadline() {
    let server = TestServer::start_with(|c| {
        c.write_timeout_ms = 1_000;
        c.idle_timeout_ms = 600_000;
    })
    .await;
    let ids = server.add_users(&["sender", "stuck"]);
    let dir = tempfile::tempdir().unwrap();
    let sender = online_client(dir.path(), server.addr(), "sender", "d").await;
    let conv = sender.open_direct(ids[1]).await.unwrap();
    for _ in 0..20 {
        sender.send_text(conv.id, &big_text(), SendOptions::default()).unwrap();
    }
    until(&sender, T, "20 sent", || sender.outbox(None).unwrap().is_empty()).await;
    sender.shutdown();

    // Only answers (no pushes): nothing overflows, only the deadline can end it.
    let mut stuck = stuck_client(&server, "stuck").await;
    pipeline_fetches(&mut stuck, conv.id, 50, 500).await;
    let (_, body) = poll_until_async(
        Duration::from_secs(10),
        "the connection to end at its write deadline",
        || health(server.http),
        |(_, body)| connections(body) == 0,
    )
    .await;
    assert_eq!(outbound_bytes(&body), 0, "a closed connection's queue is freed");
    drop(stuck);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_server_within_the_grace_period_with_100_clients_that_never_read() {
    const GRACE_MS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = test_config(&data);
    hutong_server::prepare(&config, Some("admin-password-1".into())).unwrap();
    let ids = add_users(&config.database_path(), &["alice", "bob"]);
    let grace = GRACE_MS.to_string();
    let mut server = ServerChild::start(
        &data,
        &[
            ("HUTONG_SHUTDOWN_GRACE_MS", grace.as_str()),
            ("HUTONG_WRITE_TIMEOUT_MS", "600000"),
            ("HUTONG_IDLE_TIMEOUT_MS", "600000"),
            ("HUTONG_OUTBOUND_QUEUE_FRAMES", "16"),
            // 100 connections of one person: past the per-person cap.
            ("HUTONG_MAX_CONNECTIONS_PER_USER", "0"),
        ],
    );
    let addr: hutong_client::ServerAddr = format!("tcp://{}", server.tcp).parse().unwrap();
    let alice = online_client(dir.path(), addr, "alice", "d").await;
    let conv = alice.open_direct(ids[1]).await.unwrap();
    for _ in 0..10 {
        alice.send_text(conv.id, &big_text(), SendOptions::default()).unwrap();
    }
    until(&alice, T, "10 sent", || alice.outbox(None).unwrap().is_empty()).await;
    alice.shutdown();

    // One password login for a token, then 100 connections with it, each
    // asking for 7 MB of answers it never reads.
    let mut first = RawConn::connect(server.tcp).await;
    first.hello().await;
    let token = match first.login("bob", PASSWORD).await.payload {
        Some(Payload::LoginOk(ok)) => ok.token,
        other => panic!("login failed: {other:?}"),
    };
    let mut stuck = Vec::new();
    for _ in 0..100 {
        let mut raw = RawConn::connect_small_window(server.tcp).await;
        raw.hello().await;
        assert!(matches!(raw.login_token("bob", &token, "raw", false).await, Payload::LoginOk(_)));
        pipeline_fetches(&mut raw, conv.id, 60, 2).await;
        stuck.push(raw);
    }
    // Their answers back up (a full lane holds 4 answers of 120 KB).
    poll_until_async(
        T,
        "the clients' answers to back up",
        || health(server.http),
        |(_, body)| outbound_bytes(body) >= 100 * 4 * 100_000,
    )
    .await;

    let start = Instant::now();
    server.terminate();
    // The bound: the grace period, plus the second `run` allows itself
    // beyond it, plus a margin for the final commit and process exit.
    let bound = Duration::from_millis(GRACE_MS) + Duration::from_secs(1) + Duration::from_secs(2);
    let status = server.wait_for_exit(bound).await;
    let took = start.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM (bound {bound:?})"));
    println!("exited {status} {took:?} after SIGTERM");
    assert!(status.success(), "a graceful shutdown exits 0, got {status}");
    assert!(took >= Duration::from_millis(GRACE_MS) / 2, "the clients were not holding the shutdown up");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writer_makes_health_fail_and_run_return_an_error() {
    let server = TestServer::start_with(|c| {
        // The writer dies after its first batch (the retention run at start).
        c.writer_panic_after_batches = Some(1);
        c.shutdown_grace_ms = 5_000;
    })
    .await;
    let http = server.http;
    let (_, body) = poll_until_async(
        Duration::from_secs(10),
        "/health to report the dead writer",
        || health(http),
        |(code, body)| {
            assert!(*code == 200 || *code == 503, "/health answered {code}: {body}");
            *code == 503
        },
    )
    .await;
    assert_eq!(body["status"], "writer_stopped");
    let result = within(T, server.run_result()).await;
    let err = result.expect_err("run must fail when the writer died");
    assert!(err.to_string().contains("writer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_relayed_once_per_interval_per_person_and_conversation() {
    let server = TestServer::start_with(|c| c.typing_interval_ms = 600_000).await;
    let ids = server.add_users(&["typist", "reader"]);
    let mut typist = RawConn::connect(server.tcp).await;
    typist.hello().await;
    typist.login("typist", PASSWORD).await;
    let conv = match typist.call(3, Payload::OpenDirect(v1::OpenDirect { user_id: ids[1] })).await {
        Payload::Conversation(c) => c.id,
        other => panic!("open direct: {other:?}"),
    };
    let mut reader = RawConn::connect(server.tcp).await;
    reader.hello().await;
    reader.login("reader", PASSWORD).await;

    // 30 notices, each answered after it was relayed (or dropped).
    for i in 0..30 {
        typist
            .send(Envelope::new(100 + i, Payload::Typing(v1::Typing { conversation_id: conv, user_id: 0 })))
            .await;
    }
    let mut answered = 0;
    while answered < 30 {
        let env = typist.recv().await.expect("typist answers");
        if env.response_to >= 100 {
            answered += 1;
        }
    }
    // The live lane is in order: everything relayed before this answer.
    let set = v1::SetPresence { status: PresenceStatus::Online as i32 };
    reader.send(Envelope::new(9, Payload::SetPresence(set))).await;
    let mut relayed = 0;
    loop {
        let env = reader.recv().await.expect("reader answers");
        if env.response_to == 9 {
            break;
        }
        if let Some(Payload::Typing(t)) = env.payload {
            assert_eq!((t.conversation_id, t.user_id), (conv, ids[0]));
            relayed += 1;
        }
    }
    assert_eq!(relayed, 1, "30 notices within the interval relay one");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_5000_people_pages_their_presence_without_disconnecting() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["watcher", "colleague"]);
    let mut watcher = RawConn::connect(server.tcp).await;
    watcher.hello().await;
    watcher.login("watcher", PASSWORD).await;
    let mut colleague = RawConn::connect(server.tcp).await;
    colleague.hello().await;
    colleague.login("colleague", PASSWORD).await;

    // A department of 5,000: more than the live lane's 4,096 frames.
    let department: Vec<u64> = (ids[1]..ids[1] + 5000).collect();
    watcher
        .send(Envelope::new(7, Payload::SubscribePresence(v1::SubscribePresence { user_ids: department })))
        .await;
    let mut seen = std::collections::HashMap::new();
    loop {
        let env = watcher.recv().await.expect("the watcher stays connected");
        match env.payload {
            Some(Payload::Presence(p)) => {
                seen.insert(p.user_id, p.status);
            }
            Some(Payload::Disconnect(d)) => {
                panic!("disconnected: {:?} {}", ErrorCode::try_from(d.code), d.message)
            }
            Some(Payload::Done(_)) if env.response_to == 7 => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen.len(), 5000, "every subscribed person's state arrives");
    assert_eq!(seen[&ids[1]], PresenceStatus::Online as i32, "the colleague is online");
    assert_eq!(seen[&(ids[1] + 4999)], PresenceStatus::Offline as i32);
    // Still subscribed and connected: the colleague leaving is pushed.
    drop(colleague);
    let env = within(T, async {
        loop {
            let env = watcher.recv().await.expect("connected");
            if matches!(env.payload, Some(Payload::Presence(_))) {
                return env;
            }
        }
    })
    .await;
    match env.payload {
        Some(Payload::Presence(p)) => {
            assert_eq!((p.user_id, p.status), (ids[1], PresenceStatus::Offline as i32))
        }
        _ => unreachable!(),
    }
    server.stop().await;
}
