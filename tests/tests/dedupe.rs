//! Dedupe keys of sends, over the raw protocol: a retry gets the original's
//! acknowledgement only when it asks for the same message; the acknowledgement
//! carries the entry as stored; system and recall entries never share the
//! sender's id space; retention keeps the keys of removed messages.

use std::time::Duration;

use hutong_protocol::v1;
use hutong_protocol::{ErrorCode, Payload};
use hutong_tests::*;

const T: Duration = Duration::from_secs(30);

/// Request ids of one connection, so every call has its own.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

fn text(conversation_id: u64, id: &str, text: &str) -> v1::SendMessage {
    v1::SendMessage { conversation_id, client_msg_id: id.into(), text: text.into(), ..Default::default() }
}

async fn send(raw: &mut RawConn, ids: &mut Ids, msg: v1::SendMessage) -> Result<v1::SendAck, v1::Error> {
    match within(T, raw.call(ids.next(), Payload::SendMessage(msg))).await {
        Payload::SendAck(ack) => Ok(ack),
        Payload::Error(e) => Err(e),
        other => panic!("expected an ack or an error, got {other:?}"),
    }
}

async fn conversation(raw: &mut RawConn, ids: &mut Ids, payload: Payload) -> v1::ConversationState {
    match within(T, raw.call(ids.next(), payload)).await {
        Payload::Conversation(c) => c,
        other => panic!("expected a conversation, got {other:?}"),
    }
}

fn last_seq(server: &TestServer, conversation_id: u64) -> u64 {
    server
        .db()
        .query_row("SELECT last_seq FROM conversations WHERE id = ?1", [conversation_id], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_other_content_is_refused() {
    let server = TestServer::start().await;
    let users = server.add_users(&["alice", "bob", "carol"]);
    // Alice may send urgent messages (see `urgent_roles`), so only the id decides.
    server.db().execute("UPDATE users SET roles = 'admin' WHERE id = ?1", [users[0]]).unwrap();
    let mut alice = raw_logged_in(&server, "alice").await;
    let mut ids = Ids(10);
    let direct =
        conversation(&mut alice, &mut ids, Payload::OpenDirect(v1::OpenDirect { user_id: users[1] })).await;
    let other =
        conversation(&mut alice, &mut ids, Payload::OpenDirect(v1::OpenDirect { user_id: users[2] })).await;

    let first = text(direct.id, "0190a0b0-0000-7000-8000-000000000001", "hello");
    let ack = send(&mut alice, &mut ids, first.clone()).await.expect("stored");
    // The same request again: the original's acknowledgement, nothing new stored.
    let again = send(&mut alice, &mut ids, first.clone()).await.expect("a retry is answered");
    assert_eq!((again.seq, again.sent_at_ms), (ack.seq, ack.sent_at_ms));
    assert_eq!(last_seq(&server, direct.id), ack.seq);

    let changed: Vec<(&str, v1::SendMessage)> = vec![
        ("text", v1::SendMessage { text: "hello?".into(), ..first.clone() }),
        ("mentions", v1::SendMessage { mentions: vec![users[1]], ..first.clone() }),
        ("reply", v1::SendMessage { reply_to_seq: 1, ..first.clone() }),
        ("priority", v1::SendMessage { priority: v1::Priority::Urgent as i32, ..first.clone() }),
        ("conversation", v1::SendMessage { conversation_id: other.id, ..first.clone() }),
    ];
    for (what, msg) in changed {
        let e = send(&mut alice, &mut ids, msg).await.expect_err(&format!("other {what} refused"));
        assert_eq!(e.code, ErrorCode::Conflict as i32, "other {what}: {e:?}");
        assert!(e.message.contains("client_msg_id") && e.message.contains("different"), "{}", e.message);
    }
    assert_eq!(last_seq(&server, direct.id), ack.seq, "nothing stored by the refused retries");
    assert_eq!(last_seq(&server, other.id), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ack_carries_the_entry_as_stored() {
    let server = TestServer::start().await;
    let users = server.add_users(&["alice", "bob", "carol"]);
    let mut alice = raw_logged_in(&server, "alice").await;
    let mut ids = Ids(10);
    let group = conversation(
        &mut alice,
        &mut ids,
        Payload::CreateGroup(v1::CreateGroup { name: "g".into(), member_ids: vec![users[1]] }),
    )
    .await;
    // carol is no member: the server drops her mention.
    let msg = v1::SendMessage {
        mentions: vec![users[1], users[2]],
        reply_to_seq: 1,
        ..text(group.id, "0190a0b0-0000-7000-8000-000000000002", "hi @bob @carol")
    };
    // A message stored as sent needs no copy in its acknowledgement.
    let plain =
        send(&mut alice, &mut ids, text(group.id, "0190a0b0-0000-7000-8000-000000000001", "hi")).await;
    assert_eq!(plain.expect("stored").message, None, "the sender's copy is the entry");
    let ack = send(&mut alice, &mut ids, msg.clone()).await.expect("stored");
    let stored = ack.message.clone().expect("the ack carries the entry");
    assert_eq!(stored.mentions, vec![users[1]], "mentions as filtered by the server");
    assert_eq!((stored.seq, stored.conversation_id, stored.sender_id), (ack.seq, group.id, users[0]));
    assert_eq!((stored.text.as_str(), stored.reply_to_seq), ("hi @bob @carol", 1));
    assert_eq!(stored.sent_at_ms, ack.sent_at_ms);
    // What a later fetch returns is what the ack said.
    let fetch = v1::FetchMessages {
        conversation_id: group.id,
        after_seq: ack.seq - 1,
        limit: 1,
        ..Default::default()
    };
    match within(T, alice.call(ids.next(), Payload::FetchMessages(fetch))).await {
        Payload::MessageBatch(b) => assert_eq!(b.messages, vec![stored.clone()]),
        other => panic!("expected messages, got {other:?}"),
    }
    // A retry's ack carries the same entry.
    let again = send(&mut alice, &mut ids, msg).await.expect("a retry is answered");
    assert_eq!(again.message, Some(stored));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_and_recall_entries_do_not_share_the_senders_ids() {
    let server = TestServer::start().await;
    let users = server.add_users(&["alice", "bob"]);
    let mut alice = raw_logged_in(&server, "alice").await;
    let mut ids = Ids(10);
    let group = conversation(
        &mut alice,
        &mut ids,
        Payload::CreateGroup(v1::CreateGroup { name: "g".into(), member_ids: vec![users[1]] }),
    )
    .await;
    let system_id: String = server
        .db()
        .query_row(
            "SELECT client_msg_id FROM messages WHERE conversation_id = ?1 AND seq = 1",
            [group.id],
            |r| r.get(0),
        )
        .unwrap();

    // A send whose id happens to be the group's system entry's is a new message.
    let ack =
        send(&mut alice, &mut ids, text(group.id, &system_id, "same id as the system entry")).await.unwrap();
    assert_eq!(ack.seq, 2, "stored as a new entry, not answered with the system entry");

    // A send takes the id the recall of seq 3 would have; the recall still works.
    let target = send(&mut alice, &mut ids, text(group.id, "0190a0b0-0000-7000-8000-000000000003", "oops"))
        .await
        .unwrap();
    let taken = format!("recall-{}-{}", group.id, target.seq);
    let squatter = send(&mut alice, &mut ids, text(group.id, &taken, "an id like a recall's")).await.unwrap();
    assert_eq!(squatter.seq, target.seq + 1);
    let recall = v1::Recall { conversation_id: group.id, seq: target.seq };
    let recalled = match within(T, alice.call(ids.next(), Payload::Recall(recall))).await {
        Payload::Message(m) => m,
        other => panic!("the recall failed: {other:?}"),
    };
    assert_eq!((recalled.kind, recalled.target_seq), (v1::MessageKind::Recall as i32, target.seq));

    // And the other way round: the id a recall took first is free for a send.
    let recall = v1::Recall { conversation_id: group.id, seq: squatter.seq };
    let recalled = match within(T, alice.call(ids.next(), Payload::Recall(recall))).await {
        Payload::Message(m) => m,
        other => panic!("the recall failed: {other:?}"),
    };
    let used = recalled.client_msg_id.clone();
    assert_eq!(used, format!("recall-{}-{}", group.id, squatter.seq));
    let after = send(&mut alice, &mut ids, text(group.id, &used, "after the recall")).await.unwrap();
    assert_eq!(after.seq, recalled.seq + 1, "stored as a new entry, not answered with the recall");
    let fetch = v1::FetchMessages {
        conversation_id: group.id,
        after_seq: after.seq - 1,
        limit: 1,
        ..Default::default()
    };
    match within(T, alice.call(ids.next(), Payload::FetchMessages(fetch))).await {
        Payload::MessageBatch(b) => assert_eq!(b.messages[0].text, "after the recall"),
        other => panic!("expected messages, got {other:?}"),
    }
    server.stop().await;
}

/// Retention removes a message; a retry of it within the stated bound is
/// still answered with the original, not stored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_dedupe_keys_of_removed_messages() {
    let server = TestServer::start().await;
    let users = server.add_users(&["alice", "bob"]);
    let mut alice = raw_logged_in(&server, "alice").await;
    let mut ids = Ids(10);
    let direct =
        conversation(&mut alice, &mut ids, Payload::OpenDirect(v1::OpenDirect { user_id: users[1] })).await;
    let msg = text(direct.id, "0190a0b0-0000-7000-8000-000000000004", "kept for a day");
    let ack = send(&mut alice, &mut ids, msg.clone()).await.unwrap();
    drop(alice);
    let stopped = server.stop_keeping_data().await;
    let server = stopped
        .start_again_with(|conn| {
            conn.execute("UPDATE messages SET sent_at = sent_at - 3 * 86400000", []).unwrap();
            conn.execute("UPDATE settings SET value = '1' WHERE key = 'retention_direct_days'", []).unwrap();
        })
        .await;
    let db = server.db();
    poll_until(T, "retention removed the message", || {
        db.query_row("SELECT count(*) FROM messages WHERE conversation_id = ?1", [direct.id], |r| {
            r.get::<_, u64>(0)
        })
        .unwrap()
            == 0
    })
    .await;

    let mut alice = raw_logged_in(&server, "alice").await;
    let again = send(&mut alice, &mut ids, msg.clone()).await.expect("a late retry is answered");
    // The test moved the message three days back to make retention take it.
    let aged = ack.sent_at_ms - 3 * 86_400_000;
    assert_eq!((again.seq, again.sent_at_ms), (ack.seq, aged), "the original's acknowledgement");
    assert!(again.message.is_none(), "no entry to give: retention removed it");
    assert_eq!(last_seq(&server, direct.id), ack.seq, "not stored again");
    let other = v1::SendMessage { text: "other words".into(), ..msg };
    let e = send(&mut alice, &mut ids, other).await.expect_err("other content refused");
    assert_eq!(e.code, ErrorCode::Conflict as i32);
    assert_eq!(last_seq(&server, direct.id), ack.seq);
    server.stop().await;
}
