//! Emoji reactions: members react and take reactions back; every device,
//! online or offline at the time, ends with the same counts and who; a
//! repeated add counts once; non-members, unknown messages and bad emoji
//! are refused; reactions are neither unread nor the last message.

use std::time::Duration;

use hutong_client::{Client, Reaction, SendOptions};
use hutong_protocol::ErrorCode;
use hutong_tests::*;

const T: Duration = Duration::from_secs(20);

fn reactions(c: &Client, conv: u64, seq: u64) -> Vec<Reaction> {
    c.cached_messages(conv)
        .unwrap()
        .into_iter()
        .find(|m| m.seq == seq)
        .map(|m| m.reactions)
        .unwrap_or_default()
}

fn r(emoji: &str, user_ids: &[u64]) -> Reaction {
    Reaction { emoji: emoji.into(), user_ids: user_ids.to_vec() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_react_and_every_device_sees_counts_and_who() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["x", "y", "z", "out"]);
    let dir = tempfile::tempdir().unwrap();
    let x = online_client(dir.path(), server.addr(), "x", "d").await;
    let y = online_client(dir.path(), server.addr(), "y", "d").await;
    let y2 = online_client(dir.path(), server.addr(), "y", "d2").await;
    let out = online_client(dir.path(), server.addr(), "out", "d").await;
    let conv = x.create_group("g", &[ids[1], ids[2]]).await.unwrap().id;
    x.send_text(conv, "lunch?", SendOptions::default()).unwrap();
    let has_text = |c: &Client| c.cached_messages(conv).unwrap().iter().any(|m| m.kind == "text");
    until(&y, T, "y has the message", || has_text(&y)).await;
    until(&y2, T, "y's second device has the message", || has_text(&y2)).await;
    let seq = y.cached_messages(conv).unwrap().iter().find(|m| m.kind == "text").unwrap().seq;
    y.mark_read(conv, seq).unwrap();

    // y's second device goes offline before anyone reacts.
    y2.shutdown();
    drop(y2);

    // Refusals: a non-member, an unknown message, bad emoji (checked before the writer).
    assert_eq!(
        out.react(conv, seq, "👍", false).await.unwrap_err().remote_code(),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        x.react(conv, seq + 100, "👍", false).await.unwrap_err().remote_code(),
        Some(ErrorCode::NotFound)
    );
    for bad in [String::new(), "a".repeat(100), "👍 👍".to_owned(), "\u{7}".to_owned()] {
        assert_eq!(
            x.react(conv, seq, &bad, false).await.unwrap_err().remote_code(),
            Some(ErrorCode::BadRequest),
            "{bad:?}"
        );
    }
    let stored: i64 = server
        .db()
        .query_row("SELECT count(*) FROM messages WHERE conversation_id = ?1 AND kind = 5", [conv], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, 0, "no refused reaction was stored");

    // Two members react 👍 (one twice: it counts once), one 🎉.
    x.react(conv, seq, "👍", false).await.unwrap();
    y.react(conv, seq, "👍", false).await.unwrap();
    y.react(conv, seq, "👍", false).await.unwrap();
    y.react(conv, seq, "🎉", false).await.unwrap();
    let expected = vec![r("👍", &[ids[0], ids[1]]), r("🎉", &[ids[1]])];
    assert_eq!(reactions(&y, conv, seq), expected, "the reacting device at once");
    until(&x, T, "x sees who reacted", || reactions(&x, conv, seq) == expected).await;

    // Reactions are not unread and not the last message.
    let summary = y.conversations().unwrap().into_iter().find(|c| c.id == conv).unwrap();
    assert_eq!(summary.unread, 0, "reactions are not unread");
    assert_eq!(summary.last_text.as_deref(), Some("lunch?"), "nor the last message");

    // The offline device comes back and catches up by sync.
    let y2 = client_in(dir.path(), server.addr(), "y", "d2");
    wait_online_synced(&y2).await;
    until(&y2, T, "the returning device sees who reacted", || reactions(&y2, conv, seq) == expected).await;

    // A removal; a removal of nothing changes nothing.
    y.react(conv, seq, "🎉", true).await.unwrap();
    x.react(conv, seq, "🎉", true).await.unwrap();
    let after = vec![r("👍", &[ids[0], ids[1]])];
    until(&x, T, "x sees the removal", || reactions(&x, conv, seq) == after).await;
    until(&y2, T, "y's second device sees the removal", || reactions(&y2, conv, seq) == after).await;

    // Someone who left can no longer react.
    let z = online_client(dir.path(), server.addr(), "z", "d").await;
    z.leave_group(conv).await.unwrap();
    assert_eq!(z.react(conv, seq, "👍", false).await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    server.stop().await;
}
