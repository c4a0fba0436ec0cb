//! Limits on what one account may do to everyone else: a send rate per
//! person (a token bucket, refused with `RATE_LIMITED` and an honest
//! `retry_after_ms`), a cap on connections per person, and urgent messages
//! only from the roles the configuration names.

use std::time::Duration;

use hutong_client::SendOptions;
use hutong_protocol::v1::{self, Priority};
use hutong_protocol::{Envelope, ErrorCode, Payload};
use hutong_tests::*;

const T: Duration = Duration::from_secs(20);

fn send(conversation_id: u64, id: &str, priority: Priority) -> Payload {
    Payload::SendMessage(v1::SendMessage {
        conversation_id,
        client_msg_id: id.into(),
        text: format!("text {id}"),
        priority: priority as i32,
        ..Default::default()
    })
}

async fn open_direct(conn: &mut RawConn, peer: u64) -> u64 {
    match conn.call(5, Payload::OpenDirect(v1::OpenDirect { user_id: peer })).await {
        Payload::Conversation(c) => c.id,
        other => panic!("open direct failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_sender_is_refused_with_a_retry_delay_and_others_are_not() {
    let server = TestServer::start_with(|c| {
        c.send_rate_per_sec = 5;
        c.send_burst = 3;
    })
    .await;
    let ids = server.add_users(&["flood", "quiet", "peer"]);
    let mut flood = raw_logged_in(&server, "flood").await;
    let conv = open_direct(&mut flood, ids[2]).await;
    // Ten sends pipelined: the burst is stored, the rest refused in order.
    for i in 0..10u64 {
        flood.send(Envelope::new(100 + i, send(conv, &format!("f{i}"), Priority::Normal))).await;
    }
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 10 {
        let env = flood.recv().await.expect("answers");
        if (100..110).contains(&env.response_to) {
            answers.insert(env.response_to, env.payload.unwrap());
        }
    }
    let acked = answers.values().take_while(|p| matches!(p, Payload::SendAck(_))).count();
    assert_eq!(acked, 3, "the burst is accepted: {answers:?}");
    for p in answers.values().skip(3) {
        match p {
            Payload::Error(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited as i32);
                assert!(e.retry_after_ms > 0 && e.retry_after_ms <= 1000, "{e:?}");
                assert!(e.message.contains("too many messages"), "{e:?}");
            }
            other => panic!("after a refusal every later send is refused too: {other:?}"),
        }
    }
    // Someone else sends at once.
    let mut quiet = raw_logged_in(&server, "quiet").await;
    let conv2 = open_direct(&mut quiet, ids[2]).await;
    assert!(matches!(quiet.call(7, send(conv2, "q0", Priority::Normal)).await, Payload::SendAck(_)));
    // The flooder may send again once a token is back (on a new connection,
    // as the client core does).
    poll_until_async(
        T,
        "the flooder's next send after the delay",
        || async {
            let mut again = raw_logged_in(&server, "flood").await;
            again.call(9, send(conv, "f-later", Priority::Normal)).await
        },
        |p| matches!(p, Payload::SendAck(_)),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_core_gets_its_outbox_through_a_rate_limit_in_order() {
    let server = TestServer::start_with(|c| {
        c.send_rate_per_sec = 20;
        c.send_burst = 5;
    })
    .await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "d1").await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;
    let sent: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    for t in &sent {
        alice.send_text(conv, t, SendOptions::default()).unwrap();
    }
    poll_until(T, "the outbox to empty", || alice.outbox(None).unwrap().is_empty()).await;
    let mut bob = raw_logged_in(&server, "bob").await;
    let fetch = v1::FetchMessages { conversation_id: conv, limit: 100, ..Default::default() };
    let Payload::MessageBatch(batch) = bob.call(3, Payload::FetchMessages(fetch)).await else { panic!() };
    let texts: Vec<String> = batch.messages.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, sent, "every message once, in order");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_person_are_capped() {
    let server = TestServer::start_with(|c| c.max_connections_per_user = 2).await;
    server.add_users(&["alice", "bob"]);
    let first = raw_logged_in(&server, "alice").await;
    let _second = raw_logged_in(&server, "alice").await;
    let mut third = RawConn::connect(server.tcp).await;
    third.hello().await;
    match third.login("alice", PASSWORD).await.payload {
        Some(Payload::Error(e)) => {
            assert_eq!(e.code, ErrorCode::TooManyConnections as i32, "{e:?}");
            assert_eq!(e.code, 21);
            assert!(e.message.contains("at most 2 connections"), "{e:?}");
        }
        other => panic!("a third connection must be refused: {other:?}"),
    }
    // Others are not affected, and a freed place can be taken again.
    let _bob = raw_logged_in(&server, "bob").await;
    drop(first);
    poll_until_async(
        T,
        "a login once a connection ended",
        || async {
            let mut c = RawConn::connect(server.tcp).await;
            c.hello().await;
            c.login("alice", PASSWORD).await.payload
        },
        |p| matches!(p, Some(Payload::LoginOk(_))),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_roles_send_urgent_messages() {
    let server = TestServer::start_with(|c| c.urgent_roles = vec!["admin".into(), "agent".into()]).await;
    let ids = server.add_users(&["staff", "boss", "desk"]);
    let db = server.db();
    db.execute("UPDATE users SET roles = 'admin' WHERE id = ?1", [ids[1]]).unwrap();
    db.execute("UPDATE users SET roles = 'agent' WHERE id = ?1", [ids[2]]).unwrap();
    let mut staff = raw_logged_in(&server, "staff").await;
    let conv = open_direct(&mut staff, ids[1]).await;
    match staff.call(10, send(conv, "u1", Priority::Urgent)).await {
        Payload::Error(e) => {
            assert_eq!(e.code, ErrorCode::Forbidden as i32);
            assert!(e.message.contains("urgent"), "{e:?}");
        }
        other => panic!("staff may not send urgent messages: {other:?}"),
    }
    assert!(matches!(staff.call(11, send(conv, "n1", Priority::Normal)).await, Payload::SendAck(_)));
    let mut boss = raw_logged_in(&server, "boss").await;
    assert!(matches!(boss.call(10, send(conv, "u2", Priority::Urgent)).await, Payload::SendAck(_)));
    let mut desk = raw_logged_in(&server, "desk").await;
    let conv2 = open_direct(&mut desk, ids[0]).await;
    assert!(matches!(desk.call(10, send(conv2, "u3", Priority::Urgent)).await, Payload::SendAck(_)));
    server.stop().await;
}
