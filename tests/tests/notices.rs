//! Notices with sign-off (签收): a department's notice reaches the people in
//! it and its sub-departments when it is sent and nobody who joins later;
//! people offline get it when they return; signing records the time and the
//! device and reaches the sender at once; the sender's table agrees with
//! what each person did; a withdrawal reaches everyone; at the deadline the
//! unsigned (only they) are reminded and each of their managers is told
//! exactly who in their team has not signed; an urgent notice overtakes the
//! traffic queued ahead of it on the connection; staff cannot send urgent
//! notices or address departments, and a retry sends nothing twice.

use std::time::Duration;

use hutong_client::notices::NoticeDraft;
use hutong_client::{Client, Event, SendOptions};
use hutong_protocol::v1::{self, NoticeFilter, NoticePriority};
use hutong_protocol::{ErrorCode, Payload};
use hutong_tests::*;

const T: Duration = Duration::from_secs(30);

/// A department (under `parent` when given); its id.
fn department(server: &TestServer, name: &str, parent: Option<u64>) -> u64 {
    let db = server.db();
    db.execute(
        "INSERT INTO departments (name, parent_id, version) VALUES (?1, ?2, 1)",
        rusqlite::params![name, parent],
    )
    .unwrap();
    db.last_insert_rowid() as u64
}

fn place(server: &TestServer, user: u64, dept: u64) {
    server
        .db()
        .execute("UPDATE users SET primary_department_id = ?1 WHERE id = ?2", rusqlite::params![dept, user])
        .unwrap();
}

/// `n` people in `dept` written straight into the database (hashing that
/// many passwords would take minutes); they never log in.
fn crowd(server: &TestServer, prefix: &str, n: usize, dept: u64) -> Vec<u64> {
    let mut db = server.db();
    let tx = db.transaction().unwrap();
    let now = hutong_server::storage::now_ms();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        tx.execute(
            "INSERT INTO users (account, display_name, password_hash, created_at, primary_department_id)
             VALUES (?1, ?1, '!', ?2, ?3)",
            rusqlite::params![format!("{prefix}{i:03}"), now, dept],
        )
        .unwrap();
        ids.push(tx.last_insert_rowid() as u64);
    }
    tx.commit().unwrap();
    ids
}

fn set_role(server: &TestServer, account: &str, role: &str) {
    server.db().execute("UPDATE users SET roles = ?1 WHERE account = ?2", [role, account]).unwrap();
}

fn has_notice(c: &Client, id: u64) -> bool {
    c.notice(id).unwrap().is_some()
}

fn sign_off(title: &str) -> NoticeDraft {
    NoticeDraft {
        title: title.into(),
        body: "## 安全规定\n\n- 进入机房须登记\n- **周五前**签收".into(),
        sign_required: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_notice_is_fixed_at_send_time_signed_tracked_and_withdrawn() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["pub", "a", "b", "c", "late", "staff"]);
    let (publisher, a, b, c, late) = (ids[0], ids[1], ids[2], ids[3], ids[4]);
    set_role(&server, "pub", "publisher");
    let head_office = department(&server, "总部", None);
    let branch = department(&server, "分部", Some(head_office));
    let elsewhere = department(&server, "销售部", None);
    place(&server, a, head_office);
    place(&server, b, branch);
    place(&server, c, branch);
    place(&server, ids[5], elsewhere);
    let many = crowd(&server, "hq", 150, head_office);
    let more = crowd(&server, "br", 47, branch);
    let everyone = 3 + many.len() + more.len();

    let dir = tempfile::tempdir().unwrap();
    let sender = online_client(dir.path(), server.addr(), "pub", "desk").await;
    let ca = online_client(dir.path(), server.addr(), "a", "phone").await;
    let cb = online_client(dir.path(), server.addr(), "b", "desk").await;
    let mut progress = sender.events();

    // Sent to 总部: its sub-department 分部 included, 销售部 not, c offline.
    let draft = NoticeDraft { departments: vec![head_office], ..sign_off("机房安全规定") };
    let sent = sender.send_notice(draft).await.unwrap();
    assert_eq!(sent.recipients as usize, everyone);
    assert!(!sent.duplicate);
    let id = sent.notice_id;
    until(&ca, T, "a has the notice", || has_notice(&ca, id)).await;
    until(&cb, T, "b has the notice", || has_notice(&cb, id)).await;
    assert_eq!(ca.unread_notices().unwrap(), 1);
    let got = ca.notice(id).unwrap().unwrap();
    assert_eq!(got.title, "机房安全规定");
    assert!(got.body.contains("**周五前**"), "the body arrives as written: {}", got.body);
    assert!(got.awaiting_signature());

    // Someone who joins the department now does not get it.
    place(&server, late, branch);

    // a reads, then signs on the phone; the sender hears of it at once.
    ca.read_notices(&[id]).await.unwrap();
    assert_eq!(ca.unread_notices().unwrap(), 0);
    let signed = ca.sign_notice(id).await.unwrap();
    assert!(signed.signed_at_ms > 0);
    assert_eq!(signed.signed_device, "phone");
    assert!(!signed.awaiting_signature());
    let seen = next_event(&mut progress, T, |e| match e {
        Event::NoticeProgress { notice_id, recipient } if *notice_id == id && recipient.signed_at_ms > 0 => {
            Some(recipient.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!((seen.user_id, seen.signed_device.as_str(), seen.department_id), (a, "phone", head_office));
    // Signing again changes nothing.
    assert_eq!(ca.sign_notice(id).await.unwrap().signed_at_ms, signed.signed_at_ms);

    // c comes back: the notice arrives with the first sync, and its delivery is reported.
    let cc = online_client(dir.path(), server.addr(), "c", "desk").await;
    until(&cc, T, "c has the notice after returning", || has_notice(&cc, id)).await;
    let status = poll_until_async(
        T,
        "a, b and c delivered",
        || sender.notice_status_all(id, NoticeFilter::NoticeAll),
        |s| s.as_ref().is_ok_and(|s| s.counts.as_ref().is_some_and(|c| c.delivered == 3)),
    )
    .await
    .unwrap();
    let counts = status.counts.unwrap();
    assert_eq!((counts.recipients as usize, counts.read, counts.signed), (everyone, 1, 1));
    assert_eq!(status.recipients.len(), everyone);
    let row = |u: u64| status.recipients.iter().find(|r| r.user_id == u).unwrap().clone();
    assert!(row(a).signed_at_ms > 0 && row(a).read_at_ms > 0);
    assert!(row(b).delivered_at_ms > 0 && row(b).read_at_ms == 0);
    assert_eq!(row(b).department_id, branch);
    assert_eq!(row(many[0]).delivered_at_ms, 0, "never connected");
    assert!(status
        .recipients
        .iter()
        .all(|r| r.user_id != late && r.user_id != publisher && r.user_id != ids[5]));

    // The filters: everyone but a has not signed; everyone but a has not read.
    let unsigned = sender.notice_status_all(id, NoticeFilter::NoticeNotSigned).await.unwrap();
    assert_eq!(unsigned.recipients.len(), everyone - 1);
    assert!(unsigned.recipients.iter().all(|r| r.user_id != a));
    let unread = sender.notice_status_all(id, NoticeFilter::NoticeNotRead).await.unwrap();
    assert_eq!(unread.recipients.len(), everyone - 1);

    // The sender's list, with its counts; nobody else sees the table.
    let list = sender.sent_notices(0, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].counts.as_ref().unwrap().signed, 1);
    let err = ca.notice_status_all(id, NoticeFilter::NoticeAll).await.unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::NotFound));
    let err = ca.withdraw_notice(id).await.unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::NotFound));

    // late, who joined afterwards, sees only what was sent to them afterwards.
    let cl = online_client(dir.path(), server.addr(), "late", "desk").await;
    let later = sender.send_notice(NoticeDraft { users: vec![late], ..sign_off("欢迎") }).await.unwrap();
    until(&cl, T, "late has the later notice", || has_notice(&cl, later.notice_id)).await;
    assert_eq!(cl.notices().unwrap().iter().map(|n| n.id).collect::<Vec<_>>(), vec![later.notice_id]);

    // Withdrawn: everyone sees it so, the content gone; signing it is refused.
    sender.withdraw_notice(id).await.unwrap();
    until(&cb, T, "b sees it withdrawn", || cb.notice(id).unwrap().is_some_and(|n| n.withdrawn_at_ms > 0))
        .await;
    until(&cc, T, "c sees it withdrawn", || cc.notice(id).unwrap().is_some_and(|n| n.withdrawn_at_ms > 0))
        .await;
    let gone = cb.notice(id).unwrap().unwrap();
    assert_eq!(gone.title, "机房安全规定");
    assert!(gone.body.is_empty(), "a withdrawn notice keeps its title only");
    let err = cb.sign_notice(id).await.unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::Forbidden));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_deadline_only_the_unsigned_are_reminded_and_managers_get_their_teams() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["pub", "m1", "m2", "x1", "x2", "y1"]);
    let (m1, m2, x1, x2, y1) = (ids[1], ids[2], ids[3], ids[4], ids[5]);
    set_role(&server, "pub", "publisher");
    {
        let db = server.db();
        for (person, manager) in [(x1, m1), (x2, m1), (y1, m2)] {
            db.execute("UPDATE users SET manager_id = ?1 WHERE id = ?2", [manager, person]).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let sender = online_client(dir.path(), server.addr(), "pub", "d").await;
    let clients: Vec<Client> = {
        let mut v = Vec::new();
        for account in ["m1", "m2", "x1", "x2", "y1"] {
            v.push(online_client(dir.path(), server.addr(), account, "d").await);
        }
        v
    };
    let [cm1, cm2, cx1, cx2, cy1] = &clients[..] else { unreachable!() };

    let deadline = hutong_server::storage::now_ms() + 4_000;
    let draft =
        NoticeDraft { users: vec![x1, x2, y1], deadline_ms: deadline, ..sign_off("季度考勤确认") };
    let id = sender.send_notice(draft).await.unwrap().notice_id;
    until(cx1, T, "x1 has it", || has_notice(cx1, id)).await;
    cx1.sign_notice(id).await.unwrap();

    // At the deadline: x2 and y1 reminded, x1 (signed) not.
    let reminded = |c: &Client| c.notice(id).unwrap().is_some_and(|n| n.reminded_at_ms >= deadline);
    until(cx2, T, "x2 reminded at the deadline", || reminded(cx2)).await;
    until(cy1, T, "y1 reminded at the deadline", || reminded(cy1)).await;

    // Each manager's summary names exactly their people who have not signed.
    let summary = |c: &Client| c.notices().unwrap().into_iter().find(|n| n.summary_of == id);
    until(cm1, T, "m1's summary", || summary(cm1).is_some()).await;
    until(cm2, T, "m2's summary", || summary(cm2).is_some()).await;
    let s1 = summary(cm1).unwrap();
    assert_eq!(s1.unsigned_users, vec![x2]);
    assert_eq!(s1.title, "季度考勤确认");
    assert_eq!(summary(cm2).unwrap().unsigned_users, vec![y1]);
    assert_eq!(cm1.notices().unwrap().len(), 1, "m1 got one summary and nothing else");

    // The table says the same; x1 was never reminded and got no summary.
    let status = sender.notice_status_all(id, NoticeFilter::NoticeAll).await.unwrap();
    let reminded_rows: Vec<u64> =
        status.recipients.iter().filter(|r| r.reminded_at_ms > 0).map(|r| r.user_id).collect();
    assert_eq!(reminded_rows, {
        let mut v = vec![x2, y1];
        v.sort();
        v
    });
    assert_eq!(cx1.notice(id).unwrap().unwrap().reminded_at_ms, 0);
    assert!(summary(cx1).is_none());

    // A manual reminder reaches only those still unsigned.
    cx2.sign_notice(id).await.unwrap();
    assert_eq!(sender.remind_notice(id).await.unwrap(), 1);
    server.stop().await;
}

/// A raw connection whose receive window is a few KiB.
async fn stuck(server: &TestServer, account: &str) -> RawConn {
    let mut raw = RawConn::connect_small_window(server.tcp).await;
    raw.hello().await;
    assert!(matches!(raw.login(account, PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_notice_overtakes_the_messages_queued_ahead_of_it() {
    const QUEUED: usize = 200;
    let server = TestServer::start_with(|c| {
        c.outbound_queue_bytes = 64 << 20;
        c.write_timeout_ms = 120_000;
        c.idle_timeout_ms = 600_000;
    })
    .await;
    let ids = server.add_users(&["pub", "chatty", "reader"]);
    set_role(&server, "pub", "publisher");
    let dir = tempfile::tempdir().unwrap();
    let sender = online_client(dir.path(), server.addr(), "pub", "d").await;
    let chatty = online_client(dir.path(), server.addr(), "chatty", "d").await;
    let conv = chatty.open_direct(ids[2]).await.unwrap();

    // The reader stops reading; 12 MB of messages queue up for it.
    let mut reader = stuck(&server, "reader").await;
    let text = "字".repeat(20_000);
    for _ in 0..QUEUED {
        chatty.send_text(conv.id, &text, SendOptions::default()).unwrap();
    }
    until(&chatty, T, "all sent", || chatty.outbox(None).unwrap().is_empty()).await;
    poll_until_async(
        T,
        "the reader's queue to hold megabytes",
        || health(server.http),
        |(_, body)| body["outbound_bytes"].as_u64().unwrap_or(0) > 4 << 20,
    )
    .await;

    // A normal notice waits its turn; an urgent one goes first.
    let normal =
        sender.send_notice(NoticeDraft { users: vec![ids[2]], ..sign_off("普通通知") }).await.unwrap();
    let urgent =
        NoticeDraft {
            users: vec![ids[2]], priority: NoticePriority::NoticeUrgent, ..sign_off("紧急：停电")
        };
    let urgent = sender.send_notice(urgent).await.unwrap();

    let mut messages = 0;
    let (mut urgent_after, mut normal_after) = (None, None);
    while urgent_after.is_none() || normal_after.is_none() {
        let env = within(T, reader.recv()).await.expect("connection open");
        match env.payload {
            Some(Payload::Message(m)) if m.conversation_id == conv.id => messages += 1,
            Some(Payload::Notice(n)) if n.id == urgent.notice_id => urgent_after = Some(messages),
            Some(Payload::Notice(n)) if n.id == normal.notice_id => normal_after = Some(messages),
            _ => {}
        }
    }
    let (urgent_after, normal_after) = (urgent_after.unwrap(), normal_after.unwrap());
    println!("urgent after {urgent_after} messages, normal after {normal_after} of {QUEUED}");
    assert_eq!(normal_after, QUEUED, "a normal notice keeps its place behind the messages");
    assert!(urgent_after < QUEUED / 2, "the urgent notice came after {urgent_after} of {QUEUED} messages");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_address_people_and_groups_only_and_a_retry_sends_once() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["staff", "a", "b"]);
    let dept = department(&server, "研发部", None);
    place(&server, ids[1], dept);
    let dir = tempfile::tempdir().unwrap();
    let staff = online_client(dir.path(), server.addr(), "staff", "d").await;
    let ca = online_client(dir.path(), server.addr(), "a", "d").await;

    let to_dept = NoticeDraft { departments: vec![dept], ..sign_off("部门") };
    assert_eq!(staff.send_notice(to_dept).await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    let all = NoticeDraft { everyone: true, ..sign_off("全员") };
    assert_eq!(staff.send_notice(all).await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    let urgent =
        NoticeDraft { users: vec![ids[1]], priority: NoticePriority::NoticeUrgent, ..sign_off("紧急") };
    assert_eq!(staff.send_notice(urgent).await.unwrap_err().remote_code(), Some(ErrorCode::Forbidden));
    let nobody = NoticeDraft { users: vec![987_654], ..sign_off("谁") };
    assert_eq!(staff.send_notice(nobody).await.unwrap_err().remote_code(), Some(ErrorCode::NotFound));
    let untitled = NoticeDraft { users: vec![ids[1]], ..sign_off("") };
    assert_eq!(staff.send_notice(untitled).await.unwrap_err().remote_code(), Some(ErrorCode::BadRequest));
    let past = NoticeDraft { users: vec![ids[1]], deadline_ms: 1, ..sign_off("过期") };
    assert_eq!(staff.send_notice(past).await.unwrap_err().remote_code(), Some(ErrorCode::BadRequest));

    // To a group the sender is in: its members.
    let group = staff.create_group("项目组", &[ids[1], ids[2]]).await.unwrap();
    let to_group = NoticeDraft { groups: vec![group.id], ..sign_off("项目例会") };
    assert_eq!(staff.send_notice(to_group).await.unwrap().recipients, 2);

    // The same request twice (a retry after a lost answer): one notice.
    let mut raw = raw_logged_in(&server, "staff").await;
    let request = v1::SendNotice {
        client_id: "0190cccc-0000-7000-8000-000000000001".into(),
        title: "只发一次".into(),
        body: "重试".into(),
        targets: Some(v1::NoticeTargets { users: vec![ids[1]], ..Default::default() }),
        ..Default::default()
    };
    let Payload::NoticeSent(first) = raw.call(1, Payload::SendNotice(request.clone())).await else {
        panic!()
    };
    let Payload::NoticeSent(again) = raw.call(2, Payload::SendNotice(request.clone())).await else {
        panic!()
    };
    assert_eq!((again.notice_id, again.duplicate), (first.notice_id, true));
    let changed = v1::SendNotice { body: "别的内容".into(), ..request };
    let Payload::Error(e) = raw.call(3, Payload::SendNotice(changed)).await else { panic!() };
    assert_eq!(e.code, ErrorCode::Conflict as i32);
    until(&ca, T, "a has both notices", || ca.notices().unwrap().len() == 2).await;
    assert_eq!(ca.notices().unwrap().iter().filter(|n| n.title == "只发一次").count(), 1);
    server.stop().await;
}
