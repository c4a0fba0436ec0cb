//! Forwarding: messages copied one by one or merged into one record reach
//! every target exactly once however often the request is retried; a file
//! forwarded is referenced, never uploaded again, and its recipients
//! download it byte-identical (from a plain copy and from a merged record);
//! one may forward only what one may read, only to where one is a member.

use std::time::Duration;

use hutong_client::{Client, SendOptions, TransferState};
use hutong_protocol::ErrorCode;
use hutong_tests::*;

const T: Duration = Duration::from_secs(30);

fn of_kind(c: &Client, conv: u64, kind: &str) -> Vec<hutong_client::CachedMessage> {
    c.cached_messages(conv).unwrap().into_iter().filter(|m| m.kind == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_arrive_once_and_files_are_not_uploaded_again() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["zhang", "li", "wang", "out"]);
    server
        .db()
        .execute_batch(&format!(
            "UPDATE users SET display_name = '张伟' WHERE id = {}; UPDATE users SET display_name = '李娜' WHERE id = {};",
            ids[0], ids[1]
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zhang = online_client(dir.path(), server.addr(), "zhang", "d").await;
    let li = online_client(dir.path(), server.addr(), "li", "d").await;
    let wang = online_client(dir.path(), server.addr(), "wang", "d").await;
    let out = online_client(dir.path(), server.addr(), "out", "d").await;

    // The source: a direct chat of 张伟 and 李娜 with two texts (one edited) and a file.
    let source = zhang.open_direct(ids[1]).await.unwrap().id;
    zhang.send_text(source, "周四开会", SendOptions::default()).unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let path = dir.path().join("纪要.bin");
    std::fs::write(&path, &content).unwrap();
    let upload = zhang.send_file(source, &path).unwrap();
    let upload = within(T, zhang.wait_transfer(&upload.id)).await.unwrap();
    assert_eq!(upload.state, TransferState::Done, "{upload:?}");
    until(&li, T, "李娜 has the file", || of_kind(&li, source, "file").len() == 1).await;
    let text_seq = of_kind(&li, source, "text")[0].seq;
    li.send_text(source, "好的", SendOptions::default()).unwrap();
    until(&li, T, "李娜's reply is stored", || {
        of_kind(&li, source, "text").iter().all(|m| m.seq > 0) && of_kind(&li, source, "text").len() == 2
    })
    .await;
    zhang.edit(source, text_seq, "周四下午开会").await.unwrap();
    let file_seq = of_kind(&li, source, "file")[0].seq;
    let reply_seq = of_kind(&li, source, "text")[1].seq;
    let files_before: i64 = server.db().query_row("SELECT count(*) FROM files", [], |r| r.get(0)).unwrap();

    // The targets: 李娜 forwards to her chat with 王 and to a group with 王.
    let direct = li.open_direct(ids[2]).await.unwrap().id;
    let group = li.create_group("项目组", &[ids[2]]).await.unwrap().id;
    let seqs = [text_seq, file_seq, reply_seq];

    // Not merged, sent three times with one id: one copy of each per target.
    for _ in 0..3 {
        let stored = li.forward_with_id(source, &seqs, &[direct, group], false, "fwd-1").await.unwrap();
        assert_eq!(stored.len(), 6, "{stored:?}");
    }
    // Merged, twice with one id: one record per target.
    for _ in 0..2 {
        let stored = li.forward_with_id(source, &seqs, &[direct, group], true, "fwd-2").await.unwrap();
        assert_eq!(stored.len(), 2);
    }
    let complete = |c: &Client| {
        [direct, group].iter().all(|&conv| {
            of_kind(c, conv, "text").len() == 2
                && of_kind(c, conv, "file").len() == 1
                && of_kind(c, conv, "forward").len() == 1
        })
    };
    until(&wang, T, "王 has every forward", || complete(&wang)).await;
    let files_after: i64 = server.db().query_row("SELECT count(*) FROM files", [], |r| r.get(0)).unwrap();
    assert_eq!(files_after, files_before, "nothing was uploaded again");
    assert_eq!(li.transfers().unwrap().len(), 0, "李娜 uploaded nothing");

    // The copies are 李娜's messages, with the newest version of the edited text.
    let texts: Vec<(u64, String)> =
        of_kind(&wang, direct, "text").into_iter().map(|m| (m.sender_id, m.text)).collect();
    assert_eq!(texts, vec![(ids[1], "周四下午开会".to_owned()), (ids[1], "好的".to_owned())]);
    // Retries made no second copy on the server either.
    let stored: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM messages WHERE conversation_id = ?1 AND kind IN (0, 3, 7)",
            [group],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 4, "three copies and one record");

    // The merged record: its title's names and its items as data.
    let merged = of_kind(&wang, group, "forward").pop().unwrap();
    let record = merged.forward.clone().unwrap();
    assert!(!record.from_group);
    assert_eq!(record.title_names, vec!["张伟".to_owned(), "李娜".to_owned()]);
    let items: Vec<(&str, &str, &str)> =
        record.items.iter().map(|i| (i.sender_name.as_str(), i.kind, i.text.as_str())).collect();
    assert_eq!(
        items,
        vec![("张伟", "text", "周四下午开会"), ("张伟", "file", "纪要.bin"), ("李娜", "text", "好的")]
    );
    let summary = wang.conversations().unwrap().into_iter().find(|c| c.id == group).unwrap();
    assert!(summary.unread >= 4, "forwards are unread: {summary:?}");

    // 王 downloads the file from the plain copy and from the record: byte-identical.
    let inbox = dir.path().join("wang-inbox");
    std::fs::create_dir(&inbox).unwrap();
    let copy_seq = of_kind(&wang, direct, "file")[0].seq;
    let got = within(T, wang.wait_transfer(&wang.fetch(direct, copy_seq, &inbox).unwrap().id)).await.unwrap();
    assert_eq!(got.state, TransferState::Done, "{got:?}");
    assert_eq!(std::fs::read(&got.local_path).unwrap(), content);
    let got = within(T, wang.wait_transfer(&wang.fetch_forwarded(group, merged.seq, 1, &inbox).unwrap().id))
        .await
        .unwrap();
    assert_eq!(got.state, TransferState::Done, "{got:?}");
    assert_eq!(std::fs::read(&got.local_path).unwrap(), content);
    assert!(wang.fetch_forwarded(group, merged.seq, 0, &inbox).is_err(), "a text item has no file");

    // Refusals: not a member of the source, of a target; an unknown seq; a recalled message; limits.
    let code = |r: Result<Vec<hutong_client::CachedMessage>, hutong_client::ClientError>| {
        r.unwrap_err().remote_code()
    };
    let out_direct = out.open_direct(ids[1]).await.unwrap().id;
    assert_eq!(
        code(out.forward(source, &[text_seq], &[out_direct], false).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(code(out.forward(source, &[text_seq], &[out_direct], true).await), Some(ErrorCode::Forbidden));
    assert_eq!(
        code(li.forward(source, &[text_seq], &[out_direct + 1000], false).await),
        Some(ErrorCode::Forbidden)
    );
    let wang_out = wang.open_direct(ids[3]).await.unwrap().id;
    assert_eq!(code(li.forward(source, &[text_seq], &[wang_out], true).await), Some(ErrorCode::Forbidden));
    assert_eq!(
        code(li.forward(source, &[reply_seq + 100], &[direct], false).await),
        Some(ErrorCode::NotFound)
    );
    let many: Vec<u64> = (1..=101).collect();
    assert_eq!(code(li.forward(source, &many, &[direct], false).await), Some(ErrorCode::TooLarge));
    assert_eq!(code(li.forward(source, &[], &[direct], false).await), Some(ErrorCode::BadRequest));
    li.recall(source, reply_seq).await.unwrap();
    assert_eq!(code(li.forward(source, &[reply_seq], &[direct], false).await), Some(ErrorCode::BadRequest));
    let after: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM messages WHERE conversation_id IN (?1, ?2) AND kind IN (0, 3, 7)",
            [direct, wang_out],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(after, 4, "no refused forward stored anything");
    server.stop().await;
}
