//! Messaging end to end: real server on port 0, real client cores.

use std::time::Duration;

use hutong_client::{ClientError, Event, SendOptions};
use hutong_protocol::v1::MemberRole;
use hutong_protocol::ErrorCode;
use hutong_tests::*;

const T: Duration = Duration::from_secs(20);

fn texts(c: &hutong_client::Client, conv: u64) -> Vec<String> {
    c.cached_messages(conv).unwrap().into_iter().filter(|m| m.kind == "text").map(|m| m.text).collect()
}

fn unread(c: &hutong_client::Client, conv: u64) -> u64 {
    c.conversations().unwrap().iter().find(|x| x.id == conv).unwrap().unread
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_flow_both_ways_in_order() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "d1").await;
    let bob = online_client(dir.path(), server.addr(), "bob", "d1").await;

    let conv = alice.open_direct(ids[1]).await.unwrap();
    // Opening again finds the same conversation, from either side.
    assert_eq!(bob.open_direct(ids[0]).await.unwrap().id, conv.id);

    let mut bob_events = bob.events();
    for i in 0..20 {
        alice.send_text(conv.id, &format!("hello {i} 你好"), SendOptions::default()).unwrap();
    }
    let first = next_event(&mut bob_events, T, |e| match e {
        Event::Message(m) if m.kind == "text" => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(first.text, "hello 0 你好");
    assert_eq!(first.sender_id, ids[0]);
    until(&bob, T, "bob has 20 messages", || texts(&bob, conv.id).len() == 20).await;
    let expected: Vec<String> = (0..20).map(|i| format!("hello {i} 你好")).collect();
    assert_eq!(texts(&bob, conv.id), expected);
    let seqs: Vec<u64> = bob.cached_messages(conv.id).unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "seqs are dense and ordered");
    // Unread counts come from the cache: bob has not read alice's 20 yet.
    assert_eq!(unread(&bob, conv.id), 20);

    bob.send_text(conv.id, "reply", SendOptions { reply_to_seq: 3, ..Default::default() }).unwrap();
    until(&alice, T, "alice sees the reply", || texts(&alice, conv.id).last().is_some_and(|t| t == "reply"))
        .await;
    let reply = alice.cached_messages(conv.id).unwrap().pop().unwrap();
    assert_eq!(reply.reply_to_seq, 3);
    // Replying marks what came before as read.
    until(&bob, T, "bob's reply is acked", || bob.outbox(None).unwrap().is_empty()).await;
    assert_eq!(unread(&bob, conv.id), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_membership_roles_and_system_events() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["owner", "m1", "m2", "m3"]);
    let dir = tempfile::tempdir().unwrap();
    let owner = online_client(dir.path(), server.addr(), "owner", "d").await;
    let m1 = online_client(dir.path(), server.addr(), "m1", "d").await;
    let m3 = online_client(dir.path(), server.addr(), "m3", "d").await;

    let group = owner.create_group("设计组", &[ids[1], ids[2]]).await.unwrap();
    assert_eq!(group.members.len(), 3);
    until(&m1, T, "m1 learns of the group", || {
        m1.conversations().unwrap().iter().any(|c| c.id == group.id && c.name == "设计组")
    })
    .await;

    m1.send_text(group.id, "hi all", SendOptions::default()).unwrap();
    until(&owner, T, "owner sees m1's message", || texts(&owner, group.id) == ["hi all"]).await;

    // m3 is not a member: cannot write or read.
    let refused = m3
        .call(hutong_protocol::Payload::FetchMessages(hutong_protocol::v1::FetchMessages {
            conversation_id: group.id,
            after_seq: 0,
            before_seq: 0,
            limit: 10,
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.remote_code(), Some(ErrorCode::Forbidden));
    // Subscribed before sending: the refusal may come back at once.
    let mut m3_events = m3.events();
    let id = m3.send_text(group.id, "let me in", SendOptions::default()).unwrap();
    let failed = next_event(&mut m3_events, T, |e| match e {
        Event::SendFailed { client_msg_id, code, .. } if *client_msg_id == id => Some(code.clone()),
        _ => None,
    })
    .await;
    assert_eq!(failed, "FORBIDDEN");
    assert_eq!(m3.outbox(None).unwrap()[0].state, "failed");

    // Plain members cannot remove; admins can; add, rename, leave.
    let err = m1.remove_member(group.id, ids[2]).await.unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::Forbidden));
    owner.set_member_role(group.id, ids[1], MemberRole::Admin).await.unwrap();
    let state = m1.remove_member(group.id, ids[2]).await.unwrap();
    assert!(!state.members.iter().any(|m| m.user_id == ids[2]));
    owner.add_members(group.id, &[ids[3]]).await.unwrap();
    until(&m3, T, "m3 gets the group after being added", || {
        m3.conversations().unwrap().iter().any(|c| c.id == group.id && c.active)
    })
    .await;
    owner.rename_group(group.id, "Design").await.unwrap();
    until(&m1, T, "rename reaches m1", || {
        m1.conversations().unwrap().iter().any(|c| c.id == group.id && c.name == "Design")
    })
    .await;
    let left = owner.leave_group(group.id).await.unwrap();
    assert!(!left.active);
    // Ownership passed to the admin.
    let state = m1.rename_group(group.id, "Design 2").await.unwrap();
    let m1_role = state.members.iter().find(|m| m.user_id == ids[1]).unwrap().role;
    assert_eq!(m1_role, MemberRole::Owner as i32);

    // The log records every change, in the order it happened, as system
    // entries between the messages.
    let (o, a, b, c) = (ids[0], ids[1], ids[2], ids[3]);
    let expected = [
        format!("#{o} created the group \"设计组\" with #{a}, #{b}"),
        "text: hi all".to_owned(),
        format!("#{o} changed the role of #{a}"),
        format!("#{a} removed #{b}"),
        format!("#{o} added #{c}"),
        format!("#{o} renamed the group to \"Design\""),
        format!("#{o} left"),
        format!("#{a} renamed the group to \"Design 2\""),
    ];
    let log = |client: &hutong_client::Client| -> Vec<String> {
        client
            .cached_messages(group.id)
            .unwrap()
            .into_iter()
            .map(|m| match m.system {
                Some(event) => event,
                None => format!("{}: {}", m.kind, m.text),
            })
            .collect()
    };
    until(&m1, T, "m1 has the whole log", || log(&m1).len() >= expected.len()).await;
    assert_eq!(log(&m1), expected);
    let seqs: Vec<u64> = m1.cached_messages(group.id).unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=expected.len() as u64).collect::<Vec<_>>(), "one entry per change, gapless");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_members_get_everything_when_they_return() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["a", "b", "c"]);
    let dir = tempfile::tempdir().unwrap();
    let a = online_client(dir.path(), server.addr(), "a", "d").await;
    let b = online_client(dir.path(), server.addr(), "b", "d").await;
    let group = a.create_group("g", &[ids[1], ids[2]]).await.unwrap();
    let direct = a.open_direct(ids[1]).await.unwrap();
    until(&b, T, "b synced the group", || b.conversations().unwrap().iter().any(|c| c.id == group.id)).await;
    b.shutdown();
    // c has never been online; b is offline now.
    for i in 0..300 {
        a.send_text(group.id, &format!("g{i}"), SendOptions::default()).unwrap();
        a.send_text(direct.id, &format!("d{i}"), SendOptions::default()).unwrap();
    }
    until(&a, T, "a's outbox drains", || a.outbox(None).unwrap().is_empty()).await;

    let b = online_client(dir.path(), server.addr(), "b", "d").await;
    let c = online_client(dir.path(), server.addr(), "c", "d").await;
    let g: Vec<String> = (0..300).map(|i| format!("g{i}")).collect();
    let d: Vec<String> = (0..300).map(|i| format!("d{i}")).collect();
    until(&b, T, "b catches up", || texts(&b, group.id) == g && texts(&b, direct.id) == d).await;
    until(&c, T, "c catches up", || texts(&c, group.id) == g).await;
    assert!(
        c.conversations().unwrap().iter().all(|conv| conv.id != direct.id),
        "c never sees a's and b's direct chat"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_devices_get_live_traffic_including_own_sends() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["u", "v"]);
    let dir = tempfile::tempdir().unwrap();
    let laptop = online_client(dir.path(), server.addr(), "u", "laptop").await;
    let phone = online_client(dir.path(), server.addr(), "u", "phone").await;
    let v = online_client(dir.path(), server.addr(), "v", "d").await;
    let conv = laptop.open_direct(ids[1]).await.unwrap();
    laptop.send_text(conv.id, "from laptop", SendOptions::default()).unwrap();
    until(&phone, T, "phone sees its own user's message", || texts(&phone, conv.id) == ["from laptop"]).await;
    v.send_text(conv.id, "to both", SendOptions::default()).unwrap();
    until(&laptop, T, "laptop gets v's message", || texts(&laptop, conv.id).len() == 2).await;
    until(&phone, T, "phone gets v's message", || texts(&phone, conv.id).len() == 2).await;
    // Reading on one device moves the cursor on the other.
    let last = phone.cached_messages(conv.id).unwrap().last().unwrap().seq;
    phone.mark_read(conv.id, last).unwrap();
    until(&laptop, T, "laptop's unread drops to 0", || {
        laptop.conversations().unwrap().iter().find(|c| c.id == conv.id).is_some_and(|c| c.unread == 0)
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_within_window_only() {
    let server = TestServer::start_with(|c| c.recall_window_secs = 1).await;
    let ids = server.add_users(&["x", "y"]);
    let dir = tempfile::tempdir().unwrap();
    let x = online_client(dir.path(), server.addr(), "x", "d").await;
    let y = online_client(dir.path(), server.addr(), "y", "d").await;
    let conv = x.open_direct(ids[1]).await.unwrap();
    x.send_text(conv.id, "oops", SendOptions::default()).unwrap();
    until(&y, T, "y has the message", || texts(&y, conv.id) == ["oops"]).await;
    // Only the sender may recall.
    assert_eq!(y.recall(conv.id, 1).await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    x.recall(conv.id, 1).await.unwrap();
    until(&y, T, "y sees the recall", || y.cached_messages(conv.id).unwrap()[0].recalled).await;
    assert_eq!(y.cached_messages(conv.id).unwrap()[0].text, "");
    // The archive keeps the original text for audit.
    let archived: String = server
        .db()
        .query_row("SELECT text FROM messages WHERE conversation_id = ?1 AND seq = 1", [conv.id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(archived, "oops");

    x.send_text(conv.id, "too late", SendOptions::default()).unwrap();
    until(&x, T, "acked", || x.outbox(None).unwrap().is_empty()).await;
    let seq = x.cached_messages(conv.id).unwrap().last().unwrap().seq;
    // Wait out the one-second window on the server's clock.
    let sent_at: i64 = server
        .db()
        .query_row(
            "SELECT sent_at FROM messages WHERE conversation_id = ?1 AND seq = ?2",
            [conv.id, seq],
            |r| r.get(0),
        )
        .unwrap();
    // The window is wall-clock time on the server: let exactly that much pass.
    let expires_in = (sent_at + 1001 - hutong_server::storage::now_ms()).max(0) as u64;
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(expires_in)).await;
    assert_eq!(x.recall(conv.id, seq).await.unwrap_err().remote_code(), Some(ErrorCode::RecallWindowPassed));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_cursors_reach_the_sender() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["s", "r1", "r2"]);
    let dir = tempfile::tempdir().unwrap();
    let s = online_client(dir.path(), server.addr(), "s", "d").await;
    let r1 = online_client(dir.path(), server.addr(), "r1", "d").await;
    let r2 = online_client(dir.path(), server.addr(), "r2", "d").await;
    let group = s.create_group("read", &[ids[1], ids[2]]).await.unwrap();
    s.send_text(group.id, "please read", SendOptions::default()).unwrap();
    until(&r1, T, "r1 has it", || texts(&r1, group.id).len() == 1).await;
    until(&r2, T, "r2 has it", || texts(&r2, group.id).len() == 1).await;
    let seq = r1.cached_messages(group.id).unwrap().last().unwrap().seq;
    // Delivered cursors move by themselves once the message is stored (the
    // server keeps them; only read marks are pushed to the sender).
    let read_count = |c: &hutong_client::Client| {
        c.member_cursors(group.id).unwrap().iter().filter(|(u, _, read)| *u != ids[0] && *read >= seq).count()
    };
    let delivered = || -> u64 {
        server
            .db()
            .query_row(
                "SELECT count(*) FROM members WHERE conversation_id = ?1 AND user_id != ?2 AND delivered_seq >= ?3",
                rusqlite::params![group.id, ids[0], seq],
                |r| r.get(0),
            )
            .unwrap()
    };
    poll_until(T, "both delivered", || delivered() == 2).await;
    assert_eq!(read_count(&s), 0);
    r1.mark_read(group.id, seq).unwrap();
    until(&s, T, "1 read", || read_count(&s) == 1).await;
    r2.mark_read(group.id, seq).unwrap();
    until(&s, T, "2 read", || read_count(&s) == 2).await;
    // Cursors survive a reconnect: a fresh device of s learns them by sync.
    let s2 = online_client(dir.path(), server.addr(), "s", "d2").await;
    until(&s2, T, "synced cursors", || read_count(&s2) == 2).await;
    server.stop().await;
}

/// "Who has read / who has not" for a group message comes from the
/// members' read cursors as the server has them: the sender in neither list,
/// members who left in neither, people outside the group refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_list_names_who_has_read_and_who_has_not() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["s", "r1", "r2", "r3", "r4", "outsider"]);
    let dir = tempfile::tempdir().unwrap();
    let s = online_client(dir.path(), server.addr(), "s", "d").await;
    let readers = [
        online_client(dir.path(), server.addr(), "r1", "d").await,
        online_client(dir.path(), server.addr(), "r2", "d").await,
        online_client(dir.path(), server.addr(), "r3", "d").await,
        online_client(dir.path(), server.addr(), "r4", "d").await,
    ];
    let outsider = online_client(dir.path(), server.addr(), "outsider", "d").await;
    let group = s.create_group("read list", &ids[1..5]).await.unwrap();
    s.send_text(group.id, "first", SendOptions::default()).unwrap();
    s.send_text(group.id, "second", SendOptions::default()).unwrap();
    for r in &readers {
        until(r, T, "the messages", || texts(r, group.id).len() == 2).await;
    }
    let first = readers[0].cached_messages(group.id).unwrap()[0].seq;
    let second = first + 1;
    let read_seq = |user: u64| -> u64 {
        server
            .db()
            .query_row(
                "SELECT read_seq FROM members WHERE conversation_id = ?1 AND user_id = ?2",
                rusqlite::params![group.id, user],
                |r| r.get(0),
            )
            .unwrap()
    };
    // r1 read both, r2 only the first; r3 and r4 nothing.
    readers[0].mark_read(group.id, second).unwrap();
    readers[1].mark_read(group.id, first).unwrap();
    poll_until(T, "the read marks stored", || read_seq(ids[1]) == second && read_seq(ids[2]) == first).await;
    let sorted = |mut v: Vec<u64>| {
        v.sort_unstable();
        v
    };
    let list = s.read_list(group.id, first).await.unwrap();
    assert_eq!(sorted(list.read_user_ids), vec![ids[1], ids[2]]);
    assert_eq!(sorted(list.unread_user_ids), vec![ids[3], ids[4]]);
    // Any member may ask; the sender is never listed.
    let list = readers[2].read_list(group.id, second).await.unwrap();
    assert_eq!(list.read_user_ids, vec![ids[1]]);
    assert_eq!(sorted(list.unread_user_ids), vec![ids[2], ids[3], ids[4]]);
    // Someone who left is in neither list.
    readers[3].leave_group(group.id).await.unwrap();
    let list = s.read_list(group.id, second).await.unwrap();
    assert_eq!(sorted(list.unread_user_ids), vec![ids[2], ids[3]]);
    // Outside the group, or a message that is not there: refused.
    let code = |r: Result<hutong_protocol::v1::ReadList, ClientError>| match r {
        Err(ClientError::Remote { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(code(outsider.read_list(group.id, first).await), ErrorCode::Forbidden);
    assert_eq!(code(readers[3].read_list(group.id, first).await), ErrorCode::Forbidden, "left the group");
    assert_eq!(code(s.read_list(group.id, second + 100).await), ErrorCode::NotFound);
    server.stop().await;
}

async fn presence_of(events: &mut tokio::sync::broadcast::Receiver<Event>, who: u64) -> &'static str {
    next_event(events, T, |e| match e {
        Event::Presence { user_id, status } if *user_id == who => Some(*status),
        _ => None,
    })
    .await
}

/// Subscribes again, which answers with the person's current aggregate: the
/// next presence event then says what the server thinks now (had anything
/// pushed a change before, that change would come first and fail the test).
async fn presence_now(
    watcher: &hutong_client::Client,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    who: u64,
) -> &'static str {
    watcher.subscribe_presence(&[who]).await.unwrap();
    presence_of(events, who).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_aggregates_devices_and_typing_is_relayed() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["watcher", "p"]);
    let dir = tempfile::tempdir().unwrap();
    let watcher = online_client(dir.path(), server.addr(), "watcher", "d").await;
    let mut events = watcher.events();
    watcher.subscribe_presence(&[ids[1]]).await.unwrap();
    assert_eq!(presence_of(&mut events, ids[1]).await, "offline");
    let p1 = online_client(dir.path(), server.addr(), "p", "one").await;
    assert_eq!(presence_of(&mut events, ids[1]).await, "online");
    let p2 = online_client(dir.path(), server.addr(), "p", "two").await;
    p1.set_away(true).await.unwrap();
    assert_eq!(
        presence_now(&watcher, &mut events, ids[1]).await,
        "online",
        "one device away, the other active: still online"
    );
    p2.set_away(true).await.unwrap();
    assert_eq!(presence_of(&mut events, ids[1]).await, "away", "every device away");
    p1.set_away(false).await.unwrap();
    assert_eq!(presence_of(&mut events, ids[1]).await, "online");

    // One device goes while the other stays: still online.
    let token = admin_token(&server).await;
    p2.shutdown();
    let deadline = tokio::time::Instant::now() + T;
    let mut recheck = tokio::time::interval(Duration::from_millis(25));
    let mut devices = online_devices(&server, &token, "p").await;
    while devices != ["one"] && tokio::time::Instant::now() < deadline {
        recheck.tick().await;
        devices = online_devices(&server, &token, "p").await;
    }
    assert_eq!(devices, ["one"], "the server has seen device two go");
    assert_eq!(
        presence_now(&watcher, &mut events, ids[1]).await,
        "online",
        "one device left, and it is active: still online"
    );
    // The last one goes: offline.
    p1.shutdown();
    assert_eq!(presence_of(&mut events, ids[1]).await, "offline");
    assert!(online_devices(&server, &token, "p").await.is_empty());

    let p = online_client(dir.path(), server.addr(), "p", "three").await;
    let conv = p.open_direct(ids[0]).await.unwrap();
    p.typing(conv.id);
    let typing = next_event(&mut events, T, |e| match e {
        Event::Typing { conversation_id, user_id } => Some((*conversation_id, *user_id)),
        _ => None,
    })
    .await;
    assert_eq!(typing, (conv.id, ids[1]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_chat_with_tcp_clients() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["ws", "tcp"]);
    let dir = tempfile::tempdir().unwrap();
    let ws = online_client(dir.path(), server.ws_addr(), "ws", "d").await;
    let tcp = online_client(dir.path(), server.addr(), "tcp", "d").await;
    let conv = ws.open_direct(ids[1]).await.unwrap();
    ws.send_text(conv.id, "over websocket", SendOptions::default()).unwrap();
    until(&tcp, T, "tcp client receives", || texts(&tcp, conv.id) == ["over websocket"]).await;
    tcp.send_text(conv.id, "over tcp", SendOptions::default()).unwrap();
    until(&ws, T, "ws client receives", || texts(&ws, conv.id).len() == 2).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_written_offline_are_sent_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let ids = server.add_users(&["w", "z"]);
    let w = online_client(dir.path(), server.addr(), "w", "d").await;
    let z = online_client(dir.path(), server.addr(), "z", "d").await;
    let conv = w.open_direct(ids[1]).await.unwrap();
    let stopped = server.stop_keeping_data().await;
    until(&w, T, "w notices the server is gone", || {
        !matches!(*w.status().borrow(), hutong_client::Status::Online)
    })
    .await;
    for i in 0..10 {
        w.send_text(conv.id, &format!("offline {i}"), SendOptions::default()).unwrap();
    }
    // The app quits while offline: the outbox is on disk.
    w.shutdown();
    assert_eq!(w.outbox(None).unwrap().len(), 10);
    let server = stopped.start_again().await;
    let w = online_client(dir.path(), server.addr(), "w", "d").await;
    let expected: Vec<String> = (0..10).map(|i| format!("offline {i}")).collect();
    until(&z, T, "z receives the offline messages", || texts(&z, conv.id) == expected).await;
    until(&w, T, "w's outbox drains", || w.outbox(None).unwrap().is_empty()).await;
    let stored: u64 = server
        .db()
        .query_row("SELECT count(*) FROM messages WHERE conversation_id = ?1", [conv.id], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 10, "each message stored exactly once");
    server.stop().await;
}
