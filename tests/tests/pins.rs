//! Pins: any member pins or unpins a text or file message; every device,
//! online or offline at the time and after a restart, ends with the same
//! pinned list; the newest pin entry decides whatever the arrival order;
//! non-members, unknown and recalled messages are refused; pins are
//! neither unread nor the last message.

use std::time::Duration;

use hutong_client::{Client, SendOptions};
use hutong_protocol::ErrorCode;
use hutong_tests::*;

const T: Duration = Duration::from_secs(20);

/// The pinned seqs, most recently pinned first.
fn pinned(c: &Client, conv: u64) -> Vec<u64> {
    c.pins(conv).unwrap().into_iter().map(|p| p.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_pin_and_every_device_sees_the_pinned_list() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["x", "y", "out"]);
    let dir = tempfile::tempdir().unwrap();
    let x = online_client(dir.path(), server.addr(), "x", "d").await;
    let y = online_client(dir.path(), server.addr(), "y", "d").await;
    let y2 = online_client(dir.path(), server.addr(), "y", "d2").await;
    let out = online_client(dir.path(), server.addr(), "out", "d").await;
    let conv = x.create_group("g", &[ids[1]]).await.unwrap().id;
    for text in ["first", "second", "third"] {
        x.send_text(conv, text, SendOptions::default()).unwrap();
    }
    let texts = |c: &Client| {
        c.cached_messages(conv)
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == "text")
            .map(|m| m.seq)
            .collect::<Vec<_>>()
    };
    until(&y, T, "y has the messages", || texts(&y).len() == 3).await;
    until(&y2, T, "y's second device has the messages", || texts(&y2).len() == 3).await;
    let seqs = texts(&y);
    let (first, second, third) = (seqs[0], seqs[1], seqs[2]);
    let last_read = y.cached_messages(conv).unwrap().last().unwrap().seq;
    y.mark_read(conv, last_read).unwrap();

    // y's second device goes offline before anyone pins.
    y2.shutdown();
    drop(y2);

    // Refusals: a non-member, an unknown message, a system entry.
    assert_eq!(out.pin(conv, first, false).await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    assert_eq!(x.pin(conv, third + 100, false).await.unwrap_err().remote_code(), Some(ErrorCode::NotFound));
    let system_seq = y.cached_messages(conv).unwrap().iter().find(|m| m.kind == "system").unwrap().seq;
    assert_eq!(y.pin(conv, system_seq, false).await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));

    // Both pin; x pins one twice; y unpins one; the newest entry decides.
    x.pin(conv, first, false).await.unwrap();
    y.pin(conv, second, false).await.unwrap();
    x.pin(conv, first, false).await.unwrap();
    y.pin(conv, third, false).await.unwrap();
    y.pin(conv, second, true).await.unwrap();
    let expected = vec![third, first];
    assert_eq!(pinned(&y, conv), expected, "the pinning device at once");
    until(&x, T, "x sees the pinned list", || pinned(&x, conv) == expected).await;
    let pin = x.pins(conv).unwrap().into_iter().find(|p| p.seq == third).unwrap();
    assert_eq!(pin.pinned_by, ids[1]);
    assert_eq!(pin.message.map(|m| m.text).as_deref(), Some("third"), "the pin carries its message");

    // Pins are not unread and not the last message.
    let summary = y.conversations().unwrap().into_iter().find(|c| c.id == conv).unwrap();
    assert_eq!(summary.unread, 0, "pins are not unread");
    assert_eq!(summary.last_text.as_deref(), Some("third"), "nor the last message");

    // The offline device comes back and catches up by sync.
    let y2 = client_in(dir.path(), server.addr(), "y", "d2");
    wait_online_synced(&y2).await;
    until(&y2, T, "the returning device sees the pinned list", || pinned(&y2, conv) == expected).await;

    // A restart keeps the list (read from the cache before any sync).
    x.shutdown();
    drop(x);
    let x = client_in(dir.path(), server.addr(), "x", "d");
    assert_eq!(pinned(&x, conv), expected, "the restarted client's cache");
    wait_online_synced(&x).await;

    // A recalled message leaves the list, and cannot be pinned again.
    x.recall(conv, first).await.unwrap();
    until(&y, T, "y sees the recalled pin go", || pinned(&y, conv) == vec![third]).await;
    assert_eq!(y.pin(conv, first, false).await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    server.stop().await;
}
