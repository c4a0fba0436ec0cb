//! Mass-send (群发): one text to people and departments (sub-departments
//! included) arrives as each person's own direct message from the sender,
//! with `{name}` and `{department}` filled in; a retry sends nothing twice;
//! the status follows the direct conversations' cursors; someone the sender
//! may not know of is refused.

use std::time::Duration;

use hutong_client::{Client, SendOptions};
use hutong_protocol::ErrorCode;
use hutong_tests::*;

const T: Duration = Duration::from_secs(30);

/// The texts of `c`'s direct conversation with `peer`.
fn direct_texts(c: &Client, peer: u64) -> Vec<(u64, String)> {
    let Some(conv) =
        c.conversations().unwrap().into_iter().find(|s| s.kind == "direct" && s.members.contains(&peer))
    else {
        return Vec::new();
    };
    c.cached_messages(conv.id)
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "text")
        .map(|m| (m.sender_id, m.text))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_send_reaches_people_and_departments_as_direct_messages() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["boss", "a", "b", "c", "d"]);
    let (boss, a, b, c, d) = (ids[0], ids[1], ids[2], ids[3], ids[4]);
    let (rd, backend) = {
        let db = server.db();
        db.execute("INSERT INTO departments (name, version) VALUES ('研发中心', 1)", []).unwrap();
        let rd = db.last_insert_rowid() as u64;
        db.execute("INSERT INTO departments (name, parent_id, version) VALUES ('后端组', ?1, 1)", [rd])
            .unwrap();
        let backend = db.last_insert_rowid() as u64;
        db.execute("INSERT INTO departments (name, version) VALUES ('销售部', 1)", []).unwrap();
        let sales = db.last_insert_rowid() as u64;
        for (user, dept, name) in [(a, rd, "张伟"), (b, backend, "李娜"), (d, sales, "王芳"), (c, 0, "刘洋")]
        {
            db.execute(
                "UPDATE users SET display_name = ?1, primary_department_id = nullif(?2, 0) WHERE id = ?3",
                rusqlite::params![name, dept, user],
            )
            .unwrap();
        }
        (rd, backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let sender = online_client(dir.path(), server.addr(), "boss", "d").await;
    let ca = online_client(dir.path(), server.addr(), "a", "d").await;
    let cb = online_client(dir.path(), server.addr(), "b", "d").await;
    let cd = online_client(dir.path(), server.addr(), "d", "d").await;

    // c is named, 研发中心 brings a and (through 后端组) b; d is elsewhere; boss is left out.
    let text = "{name}（{department}），周五前交周报";
    let mut first = None;
    for _ in 0..2 {
        let status = sender.mass_send_with_id(text, &[c, boss], &[rd], "weekly-1").await.unwrap();
        let who: Vec<u64> = status.recipients.iter().map(|r| r.user_id).collect();
        assert_eq!(who, {
            let mut v = vec![a, b, c];
            v.sort();
            v
        });
        first.get_or_insert(status);
    }
    until(&ca, T, "a has it", || {
        direct_texts(&ca, boss) == vec![(boss, "张伟（研发中心），周五前交周报".to_owned())]
    })
    .await;
    until(&cb, T, "b has it", || {
        direct_texts(&cb, boss) == vec![(boss, "李娜（后端组），周五前交周报".to_owned())]
    })
    .await;
    assert!(direct_texts(&cd, boss).is_empty(), "d was not chosen");
    assert_eq!(
        sender
            .cached_messages(first.unwrap().recipients[0].conversation_id)
            .unwrap()
            .iter()
            .filter(|m| m.kind == "text")
            .count(),
        1,
        "the retry sent nothing twice"
    );
    let _ = backend;

    // a and b are online: delivered; a reads; c is offline: only sent.
    let conv_a = ca.conversations().unwrap().into_iter().find(|s| s.kind == "direct").unwrap();
    ca.mark_read(conv_a.id, conv_a.last_seq).unwrap();
    let mut want = vec![(a, true, true), (b, true, false), (c, false, false)];
    want.sort();
    poll_until_async(
        T,
        "the status follows the cursors",
        || async {
            let s = sender.mass_send_status("weekly-1").await.unwrap();
            s.recipients.iter().map(|r| (r.user_id, r.delivered, r.read)).collect::<Vec<_>>()
        },
        |state| *state == want,
    )
    .await;

    // A reply comes back privately in the direct conversation.
    let conv_b = cb.conversations().unwrap().into_iter().find(|s| s.kind == "direct").unwrap();
    cb.send_text(conv_b.id, "收到", SendOptions::default()).unwrap();
    until(&sender, T, "the reply reaches the sender", || {
        direct_texts(&sender, b).iter().any(|(s, t)| *s == b && t == "收到")
    })
    .await;
    assert!(direct_texts(&ca, b).is_empty(), "nobody else sees it");

    // Someone unknown is refused, nothing is sent.
    let err = sender.mass_send("hi", &[987_654], &[]).await.unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::NotFound));
    let err = sender.mass_send("", &[a], &[]).await.unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::BadRequest));
    server.stop().await;
}
