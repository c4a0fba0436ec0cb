//! The client's outbox end to end: an entry the server keeps failing on is
//! parked and the rest go on in order; a file message whose upload the server
//! collected while it waited is uploaded again and delivered.

use std::time::Duration;

use hutong_client::{Client, SendOptions};
use hutong_tests::*;

const T: Duration = Duration::from_secs(30);

fn texts(c: &Client, conv: u64) -> Vec<String> {
    c.cached_messages(conv).unwrap().into_iter().filter(|m| m.kind == "text").map(|m| m.text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_error_on_one_entry_does_not_hold_the_ones_behind_it() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "d1").await;
    let bob = online_client(dir.path(), server.addr(), "bob", "d1").await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;
    // The server's database refuses exactly this one entry, every time: its
    // writer answers INTERNAL for it (and closes the connection to keep order).
    server
        .db()
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text = 'poison'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();

    alice.send_text(conv, "before", SendOptions::default()).unwrap();
    let poison = alice.send_text(conv, "poison", SendOptions::default()).unwrap();
    for i in 0..5 {
        alice.send_text(conv, &format!("after {i}"), SendOptions::default()).unwrap();
    }
    let expected = ["before", "after 0", "after 1", "after 2", "after 3", "after 4"];
    until(&bob, T, "bob has every message but the poisoned one", || texts(&bob, conv) == expected).await;
    poll_until_async(
        T,
        "alice's outbox to hold only the poisoned one",
        || std::future::ready(alice.outbox(None).unwrap()),
        |outbox| outbox.len() == 1,
    )
    .await;
    let outbox = alice.outbox(None).unwrap();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].client_msg_id, poison);
    assert_eq!(outbox[0].state, "failed");
    assert!(outbox[0].error.as_deref().is_some_and(|e| !e.is_empty()), "parked with its reason");
    assert_eq!(texts(&alice, conv), expected, "alice's own log in the same order");

    // Once the server can store it, a retry sends it.
    server.db().execute_batch("DROP TRIGGER poison").unwrap();
    assert!(alice.retry(&poison).unwrap());
    until(&bob, T, "the retried entry arrives", || texts(&bob, conv).last().is_some_and(|t| t == "poison"))
        .await;
    server.stop().await;
}

fn file_rows(server: &TestServer) -> u64 {
    server.db().query_row("SELECT count(*) FROM files", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_file_message_whose_upload_was_collected_is_uploaded_again_and_delivered() {
    // The server forgets unreferenced files after a second, and looks every second.
    let server = TestServer::start_with(|c| {
        c.files_orphan_grace_secs = 1;
        c.files_gc_interval_secs = 1;
    })
    .await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = PushDropper::start(server.tcp).await;
    let alice = client_in(dir.path(), proxy.server_addr(), "alice", "d1");
    wait_online_synced(&alice).await;
    let bob = online_client(dir.path(), server.addr(), "bob", "d1").await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;

    let content: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let path = dir.path().join("report.bin");
    std::fs::write(&path, &content).unwrap();
    // The file goes up, but its message cannot reach the server for now.
    proxy.block_sends(true);
    let t = alice.send_file(conv, &path).unwrap();
    poll_until(T, "the message was held back", || proxy.blocked() >= 1).await;
    poll_until(T, "the upload is committed", || {
        alice.transfer(&t.id).unwrap().unwrap().done_bytes == content.len() as u64
    })
    .await;
    // Meanwhile the server collects the file nobody refers to.
    poll_until(T, "the server collected the file", || file_rows(&server) == 0).await;

    proxy.block_sends(false);
    let done = within(T, alice.wait_transfer(&t.id)).await.unwrap();
    assert_eq!(done.state, hutong_client::TransferState::Done, "{done:?}");
    until(&bob, T, "bob has the file message", || {
        bob.cached_messages(conv).unwrap().iter().any(|m| m.kind == "file")
    })
    .await;
    let seq = bob.cached_messages(conv).unwrap().iter().find(|m| m.kind == "file").unwrap().seq;
    let into = tempfile::tempdir().unwrap();
    let got = bob.fetch(conv, seq, into.path()).unwrap();
    let got = within(T, bob.wait_transfer(&got.id)).await.unwrap();
    assert_eq!(got.state, hutong_client::TransferState::Done, "{got:?}");
    assert_eq!(std::fs::read(&got.local_path).unwrap(), content);
    assert!(alice.outbox(None).unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_file_message_whose_local_copy_changed_is_parked_with_its_reason() {
    let server = TestServer::start_with(|c| {
        c.files_orphan_grace_secs = 1;
        c.files_gc_interval_secs = 1;
    })
    .await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = PushDropper::start(server.tcp).await;
    let alice = client_in(dir.path(), proxy.server_addr(), "alice", "d1");
    wait_online_synced(&alice).await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"the first version").unwrap();
    proxy.block_sends(true);
    let t = alice.send_file(conv, &path).unwrap();
    poll_until(T, "the message was held back", || proxy.blocked() >= 1).await;
    poll_until(T, "the server collected the file", || {
        alice.transfer(&t.id).unwrap().unwrap().done_bytes > 0 && file_rows(&server) == 0
    })
    .await;
    std::fs::write(&path, b"another version, longer").unwrap();
    proxy.block_sends(false);
    let done = within(T, alice.wait_transfer(&t.id)).await.unwrap();
    assert_eq!(done.state, hutong_client::TransferState::Failed);
    assert_eq!(done.error_code.as_deref(), Some("FILE_CHANGED"), "{done:?}");
    let outbox = alice.outbox(None).unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].state, "failed");
    assert!(outbox[0].error.as_deref().is_some_and(|e| e.contains("changed")), "{outbox:?}");
    server.stop().await;
}
