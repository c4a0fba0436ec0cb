//! Editing a sent text message: only its sender, only within the edit
//! window; members online and offline end with the newest version marked
//! edited; the server's archive keeps every version; an edit that overtakes
//! its target's gap fill still wins.

use std::time::Duration;

use hutong_client::{Client, SendOptions};
use hutong_protocol::ErrorCode;
use hutong_tests::*;

const T: Duration = Duration::from_secs(20);

fn texts(c: &Client, conv: u64) -> Vec<String> {
    c.cached_messages(conv).unwrap().into_iter().filter(|m| m.kind == "text").map(|m| m.text).collect()
}

fn edited(c: &Client, conv: u64, seq: u64) -> bool {
    c.cached_messages(conv).unwrap().iter().any(|m| m.seq == seq && m.edited && m.edited_at_ms > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_edits_and_every_device_ends_with_the_new_text() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["x", "y"]);
    let dir = tempfile::tempdir().unwrap();
    let x = online_client(dir.path(), server.addr(), "x", "d").await;
    let y = online_client(dir.path(), server.addr(), "y", "d").await;
    let y2 = online_client(dir.path(), server.addr(), "y", "d2").await;
    let conv = x.open_direct(ids[1]).await.unwrap().id;
    x.send_text(conv, "helo", SendOptions::default()).unwrap();
    until(&y, T, "y has the message", || texts(&y, conv) == ["helo"]).await;
    until(&y2, T, "y's second device has the message", || texts(&y2, conv) == ["helo"]).await;
    let seq = y.cached_messages(conv).unwrap()[0].seq;

    // y's second device goes offline before the edit.
    y2.shutdown();
    drop(y2);

    // Only the sender may edit.
    assert_eq!(y.edit(conv, seq, "hijacked").await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    // Text limits are those of a send.
    assert_eq!(x.edit(conv, seq, "  ").await.unwrap_err().remote_code(), Some(ErrorCode::BadRequest));
    let huge = "a".repeat(hutong_protocol::MAX_TEXT_LEN + 1);
    assert_eq!(x.edit(conv, seq, &huge).await.unwrap_err().remote_code(), Some(ErrorCode::TooLarge));
    // An unknown message.
    assert_eq!(x.edit(conv, seq + 100, "x").await.unwrap_err().remote_code(), Some(ErrorCode::NotFound));

    x.edit(conv, seq, "hello").await.unwrap();
    assert_eq!(texts(&x, conv), ["hello"], "the sender's cache has the new text at once");
    assert!(edited(&x, conv, seq));
    until(&y, T, "the online member sees the new text", || texts(&y, conv) == ["hello"]).await;
    assert!(edited(&y, conv, seq), "and the edited mark");

    // The offline device comes back and catches up by sync.
    let y2 = client_in(dir.path(), server.addr(), "y", "d2");
    wait_online_synced(&y2).await;
    until(&y2, T, "the returning device sees the new text", || texts(&y2, conv) == ["hello"]).await;
    assert!(edited(&y2, conv, seq), "and the edited mark");

    // A second edit: the newest version wins.
    x.edit(conv, seq, "hello!").await.unwrap();
    until(&y, T, "the second edit arrives", || texts(&y, conv) == ["hello!"]).await;

    // The archive keeps every version: the original row and each edit entry.
    let versions: Vec<(i64, String)> = {
        let db = server.db();
        let mut stmt = db
            .prepare(
                "SELECT kind, text FROM messages WHERE conversation_id = ?1 AND (seq = ?2 OR target_seq = ?2)
                 ORDER BY seq",
            )
            .unwrap();
        let rows = stmt.query_map([conv, seq], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(versions, [(0, "helo".to_owned()), (4, "hello".to_owned()), (4, "hello!".to_owned())]);

    // A recall after an edit still recalls.
    x.recall(conv, seq).await.unwrap();
    until(&y, T, "y sees the recall", || {
        y.cached_messages(conv).unwrap().iter().any(|m| m.seq == seq && m.recalled && m.text.is_empty())
    })
    .await;
    // And a recalled message cannot be edited.
    assert_eq!(x.edit(conv, seq, "back").await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_after_the_window_is_refused() {
    let server = TestServer::start_with(|c| c.edit_window_secs = 60).await;
    let ids = server.add_users(&["x", "y"]);
    let dir = tempfile::tempdir().unwrap();
    let x = online_client(dir.path(), server.addr(), "x", "d").await;
    let conv = x.open_direct(ids[1]).await.unwrap().id;
    x.send_text(conv, "old", SendOptions::default()).unwrap();
    x.send_text(conv, "new", SendOptions::default()).unwrap();
    until(&x, T, "acked", || x.outbox(None).unwrap().is_empty()).await;
    let seqs: Vec<u64> =
        x.cached_messages(conv).unwrap().iter().filter(|m| m.kind == "text").map(|m| m.seq).collect();
    // The first was sent two minutes ago, as far as the server knows.
    server
        .db()
        .execute(
            "UPDATE messages SET sent_at = sent_at - 120000 WHERE conversation_id = ?1 AND seq = ?2",
            [conv, seqs[0]],
        )
        .unwrap();
    assert_eq!(x.edit(conv, seqs[0], "changed").await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    x.edit(conv, seqs[1], "newer").await.unwrap();
    assert_eq!(texts(&x, conv), ["old", "newer"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_pushed_before_its_gap_fill_still_wins() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Bob misses "typo"; the sync he runs fetches it, but that answer is
    // overtaken by the edit's push.
    let OvertakenGapFill { alice, bob, proxy: _proxy, conversation_id: conv, missed: target } =
        overtaken_gap_fill(&server, dir.path(), "typo").await;
    within(T, alice.edit(conv, target, "fixed")).await.unwrap();
    until(&bob, T, "bob has the edited entry and its edit", || {
        let m = bob.cached_messages(conv).unwrap();
        m.iter().any(|m| m.seq == target) && m.iter().any(|m| m.kind == "edit")
    })
    .await;
    assert_eq!(texts(&bob, conv), ["kept", "fixed"], "the edit wins");
    assert!(edited(&bob, conv, target));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_edit_in_a_group_one_has_left() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["x", "y"]);
    let dir = tempfile::tempdir().unwrap();
    let x = online_client(dir.path(), server.addr(), "x", "d").await;
    let y = online_client(dir.path(), server.addr(), "y", "d").await;
    let group = x.create_group("g", &[ids[1]]).await.unwrap().id;
    y.send_text(group, "from y", SendOptions::default()).unwrap();
    until(&y, T, "acked", || y.outbox(None).unwrap().is_empty()).await;
    let seq = y.cached_messages(group).unwrap().iter().find(|m| m.text == "from y").unwrap().seq;
    y.leave_group(group).await.unwrap();
    assert_eq!(y.edit(group, seq, "changed").await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    let kinds: Vec<i64> = {
        let db = server.db();
        let mut stmt =
            db.prepare("SELECT kind FROM messages WHERE conversation_id = ?1 AND kind = 4").unwrap();
        let rows = stmt.query_map([group], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    assert!(kinds.is_empty(), "nothing stored");
    server.stop().await;
}
