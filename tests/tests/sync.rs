//! Conversation sync pages by the unique key (version, conversation id): a
//! page that ends inside a run of equal versions must not hide the rest of
//! that run from the next page. Checked over the raw protocol (what any
//! client gets) and with the client core.

use std::collections::BTreeSet;
use std::time::Duration;

use hutong_protocol::v1;
use hutong_protocol::{Envelope, Payload};
use hutong_tests::*;

const T: Duration = Duration::from_secs(60);
const GROUPS: usize = 250;

/// Logs `alice` in on a raw connection and creates `GROUPS` groups with `bob`,
/// pipelined; returns their ids.
async fn make_groups(server: &TestServer, bob: u64) -> BTreeSet<u64> {
    let mut raw = raw_logged_in(server, "alice").await;
    for i in 0..GROUPS {
        let create = v1::CreateGroup { name: format!("group {i}"), member_ids: vec![bob] };
        raw.send(Envelope::new(100 + i as u64, Payload::CreateGroup(create))).await;
    }
    let mut ids = BTreeSet::new();
    while ids.len() < GROUPS {
        let env = within(T, raw.recv()).await.expect("answers before the connection closed");
        if env.response_to >= 100 {
            match env.payload {
                Some(Payload::Conversation(c)) => {
                    ids.insert(c.id);
                }
                other => panic!("group not created: {other:?}"),
            }
        }
    }
    ids
}

/// (answered key, key of the last conversation returned) when they differ.
type Keys = ((u64, u64), (u64, u64));

/// A new device of `account` syncs from the start, `limit` conversations a
/// page, following the key the server answers with; returns every id seen.
async fn sync_from_scratch(server: &TestServer, account: &str, limit: u32) -> (Vec<u64>, usize, Vec<Keys>) {
    let mut raw = raw_logged_in(server, account).await;
    let (mut version, mut conversation_id) = (0, 0);
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut wrong_keys = Vec::new();
    loop {
        pages += 1;
        assert!(pages < 1000, "sync never ends");
        let request =
            v1::SyncRequest { since_version: version, limit, since_conversation_id: conversation_id };
        let page = match raw.call(1000 + pages as u64, Payload::Sync(request)).await {
            Payload::SyncResponse(r) => r,
            other => panic!("expected a sync answer, got {other:?}"),
        };
        assert!(page.conversations.len() <= limit as usize);
        let mut last = (version, conversation_id);
        for c in &page.conversations {
            // Strictly after the key sent, in key order.
            assert!((c.version, c.id) > last, "page goes back: {c:?}");
            last = (c.version, c.id);
            seen.push(c.id);
        }
        if (page.version, page.conversation_id) != last {
            wrong_keys.push(((page.version, page.conversation_id), last));
        }
        // What a client does: resume from the key the server answered with.
        (version, conversation_id) = (page.version, page.conversation_id);
        if !page.more {
            break;
        }
    }
    (seen, pages, wrong_keys)
}

fn assert_all_once(seen: &[u64], expected: &BTreeSet<u64>) {
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a conversation came twice");
    let missing: Vec<u64> = expected.difference(&unique).copied().collect();
    assert!(
        missing.is_empty(),
        "{} of {} conversations never synced: {missing:?}",
        missing.len(),
        expected.len()
    );
}

/// Retention trims all 250 groups in one run; a new device paging 7 at a
/// time still learns every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_device_sees_every_conversation_after_retention() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let groups = make_groups(&server, ids[1]).await;
    let stopped = server.stop_keeping_data().await;

    // Everything is three days old and groups keep one day: the next start
    // trims every group in one retention run.
    let server = stopped.start_again_with(|conn| {
        conn.execute("UPDATE messages SET sent_at = sent_at - 3 * 86400000", []).unwrap();
        conn.execute("UPDATE settings SET value = '1' WHERE key = 'retention_group_days'", []).unwrap();
    });
    let server = server.await;
    let db = server.db();
    poll_until(T, "retention trimmed every group", || {
        db.query_row("SELECT count(*) FROM conversations WHERE first_seq > 1", [], |r| r.get::<_, usize>(0))
            .unwrap()
            == GROUPS
    })
    .await;

    let (seen, pages, wrong_keys) = sync_from_scratch(&server, "bob", 7).await;
    assert_all_once(&seen, &groups);
    assert!(pages > GROUPS / 7, "paged: {pages} pages");
    assert!(wrong_keys.is_empty(), "answers name the last conversation's key: {wrong_keys:?}");
    server.stop().await;
}

/// Equal versions however they came about: 250 conversations at one
/// version, paged 7 (and 200) at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_equal_versions_returns_the_whole_run() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let groups = make_groups(&server, ids[1]).await;
    let stopped = server.stop_keeping_data().await;
    let server = stopped
        .start_again_with(|conn| {
            let top: u64 =
                conn.query_row("SELECT max(version) FROM conversations", [], |r| r.get(0)).unwrap();
            conn.execute("UPDATE conversations SET version = ?1", [top]).unwrap();
            conn.execute("UPDATE members SET version = ?1", [top]).unwrap();
        })
        .await;
    for limit in [7, 200] {
        let (seen, _, wrong_keys) = sync_from_scratch(&server, "bob", limit).await;
        assert_all_once(&seen, &groups);
        assert!(wrong_keys.is_empty(), "answers name the last conversation's key: {wrong_keys:?}");
    }
    // Resuming from the last key of a finished sync returns nothing more.
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    raw.login("bob", PASSWORD).await;
    let last = *groups.iter().max().unwrap();
    let top: u64 = server.db().query_row("SELECT max(version) FROM conversations", [], |r| r.get(0)).unwrap();
    let request = v1::SyncRequest { since_version: top, limit: 50, since_conversation_id: last };
    match raw.call(7, Payload::Sync(request)).await {
        Payload::SyncResponse(r) => {
            assert!(r.conversations.is_empty() && !r.more, "nothing after the last key: {r:?}");
            assert_eq!((r.version, r.conversation_id), (top, last), "an empty page echoes the key");
        }
        other => panic!("expected a sync answer, got {other:?}"),
    }
    server.stop().await;
}

/// The client core on a new device, after retention trimmed every group in
/// one run: it lists all 250 (its pages hold 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_client_device_lists_every_conversation_after_retention() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let groups = make_groups(&server, ids[1]).await;
    let server = server
        .stop_keeping_data()
        .await
        .start_again_with(|conn| {
            conn.execute("UPDATE messages SET sent_at = sent_at - 3 * 86400000", []).unwrap();
            conn.execute("UPDATE settings SET value = '1' WHERE key = 'retention_group_days'", []).unwrap();
        })
        .await;
    let db = server.db();
    poll_until(T, "retention trimmed every group", || {
        db.query_row("SELECT count(*) FROM conversations WHERE first_seq > 1", [], |r| r.get::<_, usize>(0))
            .unwrap()
            == GROUPS
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bob = online_client(dir.path(), server.addr(), "bob", "new").await;
    let listed = || -> BTreeSet<u64> { bob.conversations().unwrap().iter().map(|c| c.id).collect() };
    until(&bob, T, "the new device lists every group", || listed() == groups).await;
    server.stop().await;
}
