//! Live fan-out and receipts: a committed entry reaches everyone online
//! whatever becomes of its sender's connection, a retried send is pushed
//! again, and cursor reports reach only those who need them without
//! touching the conversation's version.

use std::time::Duration;

use hutong_client::Event;
use hutong_protocol::v1::{self, login::Secret, Login};
use hutong_protocol::{Envelope, Payload};
use hutong_tests::*;

const T: Duration = Duration::from_secs(20);

/// A raw connection logged in with the password as `device`.
async fn raw_login(server: &TestServer, account: &str, device: &str) -> RawConn {
    let mut conn = RawConn::connect(server.tcp).await;
    conn.hello().await;
    let login = Login {
        account: account.into(),
        secret: Some(Secret::Password(PASSWORD.into())),
        device: device.into(),
        bulk: false,
    };
    match conn.call(2, Payload::Login(login)).await {
        Payload::LoginOk(_) => conn,
        other => panic!("login failed: {other:?}"),
    }
}

fn send(conversation_id: u64, client_msg_id: &str, text: &str) -> Payload {
    Payload::SendMessage(v1::SendMessage {
        conversation_id,
        client_msg_id: client_msg_id.into(),
        text: text.into(),
        ..Default::default()
    })
}

/// Pushed frames until the answer to a `LookupUsers` sent now. Its answer
/// travels on the live lane behind every live push queued before it, so
/// what comes before it is everything that was pushed until then.
async fn pushes_until_flushed(conn: &mut RawConn, id: u64) -> Vec<Payload> {
    conn.send(Envelope::new(id, Payload::LookupUsers(v1::LookupUsers::default()))).await;
    let mut seen = Vec::new();
    loop {
        let env = conn.recv().await.expect("the connection stays open");
        if env.response_to == id {
            return seen;
        }
        if env.response_to == 0 {
            seen.extend(env.payload);
        }
    }
}

/// The commit happens only after the server has seen the sender's
/// connection end: the test holds the database's write lock while the
/// sender sends and vanishes, and lets the writer in only once the
/// server's own session list no longer shows that connection. Whatever
/// ran on the sender's connection is gone by then; the push must not be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_online_receivers_when_its_sender_vanishes_at_once() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["sender", "receiver"]);
    let admin = admin_token(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = online_client(dir.path(), server.addr(), "receiver", "d").await;
    let mut events = receiver.events();

    let mut conn = raw_login(&server, "sender", "raw").await;
    let conv = match conn.call(3, Payload::OpenDirect(v1::OpenDirect { user_id: ids[1] })).await {
        Payload::Conversation(c) => c.id,
        other => panic!("open direct failed: {other:?}"),
    };
    // Readers go on under a write lock (WAL); the writer's IMMEDIATE
    // transaction waits for it (busy timeout 10 s).
    let lock = server.db();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn.send(Envelope::new(4, send(conv, "0190aaaa-0000-7000-8000-000000000001", "gone at once"))).await;
    drop(conn);
    poll_until_async(
        T,
        "the sender's connection to end on the server",
        || online_devices(&server, &admin, "sender"),
        |devices| devices.is_empty(),
    )
    .await;
    lock.execute_batch("ROLLBACK").unwrap();

    let got = next_event(&mut events, T, |e| match e {
        Event::Message(m) if m.conversation_id == conv && m.kind == "text" => Some(m.text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, "gone at once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_is_pushed_again() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["sender", "receiver"]);
    let mut receiver = raw_login(&server, "receiver", "raw").await;
    let mut sender = raw_login(&server, "sender", "raw").await;
    let conv = match sender.call(3, Payload::OpenDirect(v1::OpenDirect { user_id: ids[1] })).await {
        Payload::Conversation(c) => c.id,
        other => panic!("open direct failed: {other:?}"),
    };
    let id = "0190aaaa-0000-7000-8000-000000000002";
    let first = match sender.call(4, send(conv, id, "twice")).await {
        Payload::SendAck(a) => a.seq,
        other => panic!("send failed: {other:?}"),
    };
    match sender.call(5, send(conv, id, "twice")).await {
        Payload::SendAck(a) => assert_eq!(a.seq, first, "a retry is answered with the original"),
        other => panic!("retry failed: {other:?}"),
    }
    // The fan-out task pushes after the writer hands the entry over, which
    // may be after the retry's answer: wait for the second copy.
    let mut pushes = Vec::new();
    let copies = |pushes: &[Payload]| {
        pushes
            .iter()
            .filter(|p| matches!(p, Payload::Message(m) if m.conversation_id == conv && m.seq == first))
            .count()
    };
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while copies(&pushes) < 2 {
            let env = receiver.recv().await.expect("the connection stays open");
            pushes.extend(env.payload);
        }
    })
    .await;
    assert!(waited.is_ok(), "the original push and the retry's push, got only: {pushes:?}");
    assert_eq!(copies(&pushes), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_only_who_needs_them_and_leave_the_conversation_version() {
    let server = TestServer::start().await;
    server.add_users(&["author", "reader", "bystander"]);
    let mut author = raw_login(&server, "author", "raw").await;
    let mut reader = raw_login(&server, "reader", "phone").await;
    let mut reader_desk = raw_login(&server, "reader", "desk").await;
    let mut bystander = raw_login(&server, "bystander", "raw").await;
    let lookup =
        v1::LookupUsers { accounts: vec!["reader".into(), "bystander".into()], ..Default::default() };
    let others: Vec<u64> = match author.call(3, Payload::LookupUsers(lookup)).await {
        Payload::UserList(l) => l.users.iter().map(|u| u.id).collect(),
        other => panic!("lookup failed: {other:?}"),
    };
    let create = v1::CreateGroup { name: "receipts".into(), member_ids: others };
    let conv = match author.call(4, Payload::CreateGroup(create)).await {
        Payload::Conversation(c) => c.id,
        other => panic!("create failed: {other:?}"),
    };
    let seq = match author.call(5, send(conv, "0190aaaa-0000-7000-8000-000000000003", "read me")).await {
        Payload::SendAck(a) => a.seq,
        other => panic!("send failed: {other:?}"),
    };
    let version = |db: &rusqlite::Connection| -> u64 {
        db.query_row("SELECT version FROM conversations WHERE id = ?1", [conv], |r| r.get(0)).unwrap()
    };
    let before = version(&server.db());

    // Delivered, then read, as the client core reports them.
    for (id, read) in [(6, 0), (7, seq)] {
        let report = v1::UpdateCursor { conversation_id: conv, delivered_seq: seq, read_seq: read };
        match reader.call(id, Payload::UpdateCursor(report)).await {
            Payload::Done(_) => {}
            other => panic!("report failed: {other:?}"),
        }
    }
    // The author gets the read mark (and only it) in a batch.
    let batch = loop {
        let env = author.recv().await.expect("the author's connection stays open");
        match env.payload {
            Some(Payload::Cursors(b)) => break b,
            Some(Payload::Message(_)) => {}
            other => panic!("the author got {other:?} instead of a read mark"),
        }
    };
    assert_eq!(batch.cursors.len(), 1);
    assert_eq!((batch.cursors[0].read_seq, batch.cursors[0].delivered_seq), (seq, seq));

    // The reader's other device learns both moves; the bystander nothing.
    let desk: Vec<(u64, u64)> = pushes_until_flushed(&mut reader_desk, 20)
        .await
        .into_iter()
        .filter_map(|p| match p {
            Payload::Cursor(c) => Some((c.delivered_seq, c.read_seq)),
            _ => None,
        })
        .collect();
    assert_eq!(desk.last(), Some(&(seq, seq)), "the reader's other device: {desk:?}");
    let seen = pushes_until_flushed(&mut bystander, 21).await;
    assert!(
        !seen.iter().any(|p| matches!(p, Payload::Cursor(_) | Payload::Cursors(_))),
        "a bystander gets no cursors: {seen:?}"
    );
    // The reporting connection is not told what it said itself.
    let own = pushes_until_flushed(&mut reader, 22).await;
    assert!(!own.iter().any(|p| matches!(p, Payload::Cursor(_))), "{own:?}");

    // Only the member row took a new version: nobody re-fetches the group.
    let db = server.db();
    assert_eq!(version(&db), before, "a cursor move must not bump the conversation's version");
    let member_version: u64 = db
        .query_row(
            "SELECT m.version FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = ?1 AND u.account = 'reader'",
            [conv],
            |r| r.get(0),
        )
        .unwrap();
    assert!(member_version > before, "the reader's own devices learn the move by sync");
    server.stop().await;
}
