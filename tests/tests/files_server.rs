//! The server's side of files over the raw protocol: bulk connections,
//! deduplication, limits and quotas checked before any data, who may read a
//! file, malicious folder manifests, and collection of unreferenced files.

use std::time::Duration;

use hutong_protocol::files::{manifest_of, CheckedManifest, CHUNK_SIZE};
use hutong_protocol::v1::{self, AttachmentKind, EntryKind, FolderEntry, FolderManifest};
use hutong_protocol::{ErrorCode, Payload};
use hutong_tests::*;
use prost::Message as _;

fn code_of(p: &Payload) -> ErrorCode {
    match p {
        Payload::Error(e) => ErrorCode::try_from(e.code).unwrap(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn message_of(p: &Payload) -> String {
    match p {
        Payload::Error(e) => e.message.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Random-looking content of `len` bytes, different for each `seed`.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A person's two connections: the session and its bulk connection.
struct Person {
    main: RawConn,
    bulk: RawConn,
    next: u64,
}

impl Person {
    async fn login(server: &TestServer, account: &str) -> Person {
        let mut main = RawConn::connect(server.tcp).await;
        main.hello().await;
        let token = match main.login(account, PASSWORD).await.payload {
            Some(Payload::LoginOk(ok)) => ok.token,
            other => panic!("login failed: {other:?}"),
        };
        let mut bulk = RawConn::connect_bulk(server.tcp).await;
        bulk.hello().await;
        assert!(matches!(bulk.login_token(account, &token, "raw", true).await, Payload::LoginOk(_)));
        Person { main, bulk, next: 10 }
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    async fn call(&mut self, p: Payload) -> Payload {
        let id = self.id();
        self.main.call(id, p).await
    }

    async fn bulk_call(&mut self, p: Payload) -> Payload {
        let id = self.id();
        self.bulk.call(id, p).await
    }

    async fn prepare(&mut self, files: &[&CheckedManifest]) -> Payload {
        let files = files.iter().map(|m| m.to_wire()).collect();
        self.call(Payload::PrepareUpload(v1::PrepareUpload { files })).await
    }

    /// Uploads `data` completely, proving what the server can check first;
    /// returns its manifest and the chunks sent.
    async fn upload(&mut self, data: &[u8]) -> (CheckedManifest, usize) {
        let m = manifest_of(data);
        let Payload::UploadPlan(mut plan) = self.prepare(&[&m]).await else { panic!("prepare refused") };
        let challenge: [u8; 32] = plan.challenge.as_slice().try_into().unwrap();
        let chunk_of = |hash: &[u8]| {
            let i = m.chunks.iter().position(|c| c[..] == hash[..]).expect("a chunk of this file");
            let start = i * CHUNK_SIZE as usize;
            data[start..(start + m.chunk_len(i) as usize)].to_vec()
        };
        let proofs = plan
            .missing
            .iter()
            .map(|h| v1::ChunkProof {
                hash: h.clone(),
                proof: hutong_protocol::files::chunk_proof(&challenge, &chunk_of(h)).to_vec(),
            })
            .collect();
        let prove = v1::ProveChunks { challenge: plan.challenge.clone(), proofs };
        let Payload::ChunksProven(proven) = self.call(Payload::ProveChunks(prove)).await else { panic!() };
        plan.missing.retain(|h| !proven.hashes.contains(h));
        for hash in &plan.missing {
            let i = m.chunks.iter().position(|c| c[..] == hash[..]).expect("a chunk of this file");
            let start = i * CHUNK_SIZE as usize;
            let data = data[start..(start + m.chunk_len(i) as usize)].to_vec();
            let put = v1::PutChunk { hash: hash.clone(), data: data.into() };
            assert!(matches!(self.bulk_call(Payload::PutChunk(put)).await, Payload::ChunkStored(_)));
        }
        let commit = v1::CommitUpload { file_ids: vec![m.id.to_vec()] };
        assert!(matches!(self.call(Payload::CommitUpload(commit)).await, Payload::UploadCommitted(_)));
        (m, plan.missing.len())
    }

    async fn open_direct(&mut self, peer: u64) -> u64 {
        match self.call(Payload::OpenDirect(v1::OpenDirect { user_id: peer })).await {
            Payload::Conversation(c) => c.id,
            other => panic!("open direct failed: {other:?}"),
        }
    }

    async fn send_attachment(&mut self, conversation_id: u64, attachment: v1::Attachment) -> Payload {
        let id = self.id();
        let msg = v1::SendMessage {
            conversation_id,
            client_msg_id: format!("file-{id}"),
            text: attachment.name.clone(),
            attachment: Some(attachment),
            ..Default::default()
        };
        self.main.call(id, Payload::SendMessage(msg)).await
    }
}

/// Where the server keeps the chunk `hash`.
fn chunk_file(server: &TestServer, hash: &[u8; 32]) -> std::path::PathBuf {
    let hex = hex::encode(hash);
    server.dir.path().join("blobs").join(&hex[..2]).join(hex)
}

fn file_attachment(m: &CheckedManifest, name: &str) -> v1::Attachment {
    v1::Attachment {
        kind: AttachmentKind::AttachmentFile as i32,
        file_id: m.id.to_vec(),
        name: name.into(),
        size: m.size,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_deduplicate_and_read_with_permission() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob", "carol"]);
    let mut alice = Person::login(&server, "alice").await;
    let mut carol = Person::login(&server, "carol").await;

    // A bulk connection logs in with a token only; chunk data needs one.
    let mut raw = RawConn::connect_bulk(server.tcp).await;
    raw.hello().await;
    let login = v1::Login {
        account: "alice".into(),
        secret: Some(v1::login::Secret::Password(PASSWORD.into())),
        device: "other".into(),
        bulk: true,
    };
    assert_eq!(code_of(&raw.call(2, Payload::Login(login)).await), ErrorCode::BadRequest);

    let data = content(2 * CHUNK_SIZE as usize + 12_345, 1);
    let m = manifest_of(&data);
    let Payload::UploadPlan(plan) = alice.prepare(&[&m]).await else { panic!() };
    assert_eq!(plan.missing.len(), 3);
    assert_eq!(plan.quota_used, data.len() as u64);
    // Not on the session connection, not unannounced, not with other data.
    let chunk0 = data[..CHUNK_SIZE as usize].to_vec();
    let put = |hash: &[u8], data: Vec<u8>| {
        Payload::PutChunk(v1::PutChunk { hash: hash.to_vec(), data: data.into() })
    };
    let tail = data[2 * CHUNK_SIZE as usize..].to_vec();
    assert_eq!(code_of(&alice.call(put(&m.chunks[2], tail)).await), ErrorCode::BadRequest);
    let stranger = content(1000, 9);
    let stranger_hash = blake3::hash(&stranger);
    assert_eq!(
        code_of(&alice.bulk_call(put(stranger_hash.as_bytes(), stranger)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code_of(&alice.bulk_call(put(&m.chunks[0], content(CHUNK_SIZE as usize, 5))).await),
        ErrorCode::BadRequest
    );
    assert!(matches!(alice.bulk_call(put(&m.chunks[0], chunk0)).await, Payload::ChunkStored(_)));
    // Committing with chunks missing is refused.
    let commit = Payload::CommitUpload(v1::CommitUpload { file_ids: vec![m.id.to_vec()] });
    assert_eq!(code_of(&alice.call(commit.clone()).await), ErrorCode::Conflict);
    // Announcing again lists only what is still missing.
    let Payload::UploadPlan(plan) = alice.prepare(&[&m]).await else { panic!() };
    assert_eq!(plan.missing.len(), 2);
    let (_, sent) = alice.upload(&data).await;
    assert_eq!(sent, 2);

    // Someone else uploading the same content sends nothing.
    let mut bob = Person::login(&server, "bob").await;
    let (_, sent) = bob.upload(&data).await;
    assert_eq!(sent, 0);

    // Carol may not read it until a message in her conversation holds it.
    let get = Payload::GetFile(v1::GetFile { id: m.id.to_vec() });
    assert_eq!(code_of(&carol.call(get.clone()).await), ErrorCode::NotFound);
    let chunk_req = |i: u32| Payload::GetChunk(v1::GetChunk { file_id: m.id.to_vec(), index: i });
    assert_eq!(code_of(&carol.bulk_call(chunk_req(0)).await), ErrorCode::NotFound);
    let conv = alice.open_direct(ids[2]).await;
    let sent = alice.send_attachment(conv, file_attachment(&m, "报告 2026.pdf")).await;
    assert!(matches!(sent, Payload::SendAck(_)), "{sent:?}");
    let Payload::FileManifest(wire) = carol.call(get).await else { panic!("carol may read it now") };
    assert_eq!(wire, m.to_wire());
    let mut fetched = Vec::new();
    for i in 0..3 {
        let Payload::ChunkData(c) = carol.bulk_call(chunk_req(i)).await else { panic!("chunk {i}") };
        assert_eq!(blake3::hash(&c.data).as_bytes(), &m.chunks[i as usize]);
        fetched.extend_from_slice(&c.data);
    }
    assert_eq!(fetched, data);
    assert_eq!(code_of(&carol.bulk_call(chunk_req(3)).await), ErrorCode::NotFound);
    // The message carries the attachment, and its name is searchable text.
    let fetch =
        Payload::FetchMessages(v1::FetchMessages { conversation_id: conv, limit: 10, ..Default::default() });
    let Payload::MessageBatch(batch) = carol.call(fetch).await else { panic!() };
    let msg = batch.messages.iter().find(|m| m.attachment.is_some()).expect("the file message");
    assert_eq!(msg.kind, v1::MessageKind::File as i32);
    assert_eq!(msg.text, "报告 2026.pdf");

    // An attachment must name a complete file the sender may read.
    let unknown = manifest_of(b"never uploaded");
    assert_eq!(
        code_of(&carol.send_attachment(conv, file_attachment(&unknown, "x.bin")).await),
        ErrorCode::NotFound
    );
    let mut wrong_size = file_attachment(&m, "a.bin");
    wrong_size.size += 1;
    assert_eq!(code_of(&carol.send_attachment(conv, wrong_size).await), ErrorCode::BadRequest);
    assert_eq!(
        code_of(&carol.send_attachment(conv, file_attachment(&m, "CON.txt")).await),
        ErrorCode::BadRequest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_quotas_are_checked_before_any_data() {
    let server = TestServer::start_with(|c| {
        c.files_max_size = 10 << 20;
        c.files_quota_bytes = 20 << 20;
    })
    .await;
    server.add_users(&["dave"]);
    let mut dave = Person::login(&server, "dave").await;

    // Over the size limit: refused with the limit in the sentence; nothing may be sent.
    let big = CheckedManifest::new(11 << 20, CHUNK_SIZE, [1; 32], vec![[2; 32], [3; 32], [4; 32]]);
    let refused = dave.prepare(&[&big]).await;
    assert_eq!(code_of(&refused), ErrorCode::TooLarge);
    assert!(message_of(&refused).contains("10.0 MiB"), "{}", message_of(&refused));
    let put = Payload::PutChunk(v1::PutChunk { hash: vec![2; 32], data: vec![0u8; 10].into() });
    assert_eq!(code_of(&dave.bulk_call(put).await), ErrorCode::Forbidden);

    // The quota counts what was uploaded; an announcement that would pass it is refused whole.
    let (_first, _) = dave.upload(&content(9 << 20, 2)).await;
    let a = CheckedManifest::new(6 << 20, CHUNK_SIZE, [5; 32], vec![[6; 32], [7; 32]]);
    let b = CheckedManifest::new(6 << 20, CHUNK_SIZE, [8; 32], vec![[9; 32], [10; 32]]);
    let refused = dave.prepare(&[&a, &b]).await;
    assert_eq!(code_of(&refused), ErrorCode::QuotaExceeded);
    assert!(message_of(&refused).contains("quota"), "{}", message_of(&refused));
    let Payload::UploadPlan(plan) = dave.prepare(&[&a]).await else { panic!("one of them fits") };
    assert_eq!(plan.quota_used, 15 << 20);
    assert_eq!(plan.quota_limit, 20 << 20);
    // Announcing the same file again costs nothing more.
    let Payload::UploadPlan(plan) = dave.prepare(&[&a]).await else { panic!() };
    assert_eq!(plan.quota_used, 15 << 20);
}

fn entry(path: &str, kind: EntryKind, file: Option<&CheckedManifest>) -> FolderEntry {
    FolderEntry {
        path: path.into(),
        kind: kind as i32,
        size: file.map_or(0, |f| f.size),
        file_id: file.map_or(Vec::new(), |f| f.id.to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_folder_manifests_are_refused() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["erin", "frank"]);
    let mut erin = Person::login(&server, "erin").await;
    let conv = erin.open_direct(ids[1]).await;
    let (file, _) = erin.upload(b"inside").await;
    let f = Some(&file);
    use EntryKind::*;
    let cases: Vec<(&str, Vec<FolderEntry>)> = vec![
        ("a parent reference", vec![entry("../x", EntryFile, f)]),
        (
            "a nested parent reference",
            vec![entry("a", EntryDirectory, None), entry("a/../../x", EntryFile, f)],
        ),
        ("an absolute path", vec![entry("/etc/passwd", EntryFile, f)]),
        ("a drive path", vec![entry("C:/x", EntryFile, f)]),
        ("a symbolic link", vec![entry("link", EntrySymlink, f)]),
        ("a device", vec![entry("dev", EntrySpecial, None)]),
        ("a reserved name", vec![entry("CON.txt", EntryFile, f)]),
        ("a case collision", vec![entry("a.txt", EntryFile, f), entry("A.txt", EntryFile, f)]),
    ];
    for (what, entries) in cases {
        let bytes = FolderManifest { entries }.encode_to_vec();
        let (manifest, _) = erin.upload(&bytes).await;
        let attachment = v1::Attachment {
            kind: AttachmentKind::AttachmentFolder as i32,
            file_id: manifest.id.to_vec(),
            name: "folder".into(),
            size: file.size,
            file_count: 1,
            ..Default::default()
        };
        let answer = erin.send_attachment(conv, attachment).await;
        assert_eq!(code_of(&answer), ErrorCode::UnsafePath, "{what}: {answer:?}");
    }
    // A sound folder goes through, with its counts checked.
    let entries = vec![entry("目录", EntryDirectory, None), entry("目录/文件.txt", EntryFile, f)];
    let (manifest, _) = erin.upload(&FolderManifest { entries }.encode_to_vec()).await;
    let mut attachment = v1::Attachment {
        kind: AttachmentKind::AttachmentFolder as i32,
        file_id: manifest.id.to_vec(),
        name: "项目".into(),
        size: file.size,
        file_count: 2,
        ..Default::default()
    };
    assert_eq!(code_of(&erin.send_attachment(conv, attachment.clone()).await), ErrorCode::BadRequest);
    attachment.file_count = 1;
    assert!(matches!(erin.send_attachment(conv, attachment).await, Payload::SendAck(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_files_are_collected() {
    let server = TestServer::start_with(|c| {
        c.files_orphan_grace_secs = 0;
        c.files_gc_interval_secs = 1;
    })
    .await;
    let ids = server.add_users(&["gina", "hank"]);
    let mut gina = Person::login(&server, "gina").await;
    let conv = gina.open_direct(ids[1]).await;
    let (kept, _) = gina.upload(&content(100_000, 3)).await;
    assert!(matches!(
        gina.send_attachment(conv, file_attachment(&kept, "kept.bin")).await,
        Payload::SendAck(_)
    ));
    let (orphan, _) = gina.upload(&content(100_000, 4)).await;
    let blob = |h: &[u8; 32]| chunk_file(&server, h);
    assert!(blob(&orphan.chunks[0]).is_file());
    poll_until(Duration::from_secs(20), "the orphaned chunk to be collected", || {
        !blob(&orphan.chunks[0]).is_file()
    })
    .await;
    assert!(blob(&kept.chunks[0]).is_file(), "a file a message holds stays");
    let get = Payload::GetFile(v1::GetFile { id: orphan.id.to_vec() });
    assert_eq!(code_of(&gina.call(get).await), ErrorCode::NotFound);
    let get = Payload::GetFile(v1::GetFile { id: kept.id.to_vec() });
    assert!(matches!(gina.call(get).await, Payload::FileManifest(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_lets_go_of_files_only_removed_messages_held() {
    let server = TestServer::start_with(|c| {
        c.files_orphan_grace_secs = 0;
        c.files_gc_interval_secs = 1;
    })
    .await;
    let ids = server.add_users(&["ivy", "jon"]);
    let mut ivy = Person::login(&server, "ivy").await;
    let group = v1::CreateGroup { name: "旧项目".into(), member_ids: vec![ids[1]] };
    let Payload::Conversation(group) = ivy.call(Payload::CreateGroup(group)).await else { panic!("group") };
    let direct = ivy.open_direct(ids[1]).await;
    let (old_only, _) = ivy.upload(&content(100_000, 8)).await;
    let (shared, _) = ivy.upload(&content(100_000, 9)).await;
    for (conv, m, name) in
        [(group.id, &old_only, "old.bin"), (group.id, &shared, "shared.bin"), (direct, &shared, "shared.bin")]
    {
        assert!(matches!(ivy.send_attachment(conv, file_attachment(m, name)).await, Payload::SendAck(_)));
    }
    // The group's messages are ten days old, and groups keep seven days.
    let db = server.db();
    db.execute(
        "UPDATE messages SET sent_at = sent_at - ?2 WHERE conversation_id = ?1",
        [group.id as i64, 10 * 86_400_000],
    )
    .unwrap();
    db.execute("UPDATE settings SET value = '7' WHERE key = 'retention_group_days'", []).unwrap();
    drop(db);
    // Retention runs when the server starts (and when an administrator changes the rules).
    let server = server.stop_keeping_data().await.start_again().await;
    let blob = |h: &[u8; 32]| chunk_file(&server, h);
    assert!(blob(&shared.chunks[0]).is_file());
    poll_until(Duration::from_secs(20), "the chunk only removed messages held to be collected", || {
        !blob(&old_only.chunks[0]).is_file()
    })
    .await;
    let group_messages: u64 = server
        .db()
        .query_row("SELECT count(*) FROM messages WHERE conversation_id = ?1", [group.id], |r| r.get(0))
        .unwrap();
    assert_eq!(group_messages, 0, "retention removed the group's messages");
    assert!(blob(&shared.chunks[0]).is_file(), "a file a kept message holds stays");
    let mut ivy = Person::login(&server, "ivy").await;
    let get = Payload::GetFile(v1::GetFile { id: old_only.id.to_vec() });
    assert_eq!(code_of(&ivy.call(get).await), ErrorCode::NotFound);
    let get = Payload::GetFile(v1::GetFile { id: shared.id.to_vec() });
    assert!(matches!(ivy.call(get).await, Payload::FileManifest(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_to_a_group_of_200_is_stored_once() {
    let server = TestServer::start().await;
    server.add_users(&["kim", "lee"]);
    let db = server.db();
    for i in 0..198 {
        db.execute(
            "INSERT INTO users (account, display_name, password_hash, created_at) VALUES (?1, ?1, 'x', 0)",
            [format!("member{i:03}")],
        )
        .unwrap();
    }
    let members: Vec<u64> = db
        .prepare("SELECT id FROM users WHERE account <> 'kim' AND account <> 'admin'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(members.len(), 199);
    let mut kim = Person::login(&server, "kim").await;
    let group = v1::CreateGroup { name: "全员".into(), member_ids: members };
    let Payload::Conversation(conv) = kim.call(Payload::CreateGroup(group)).await else { panic!("group") };
    assert_eq!(conv.members.len(), 200);
    let data = content(2 * CHUNK_SIZE as usize + 1, 7);
    let (m, _) = kim.upload(&data).await;
    assert!(matches!(
        kim.send_attachment(conv.id, file_attachment(&m, "全员通知.pdf")).await,
        Payload::SendAck(_)
    ));

    // One message, one reference, one copy of each chunk, whoever reads it.
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, u64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM messages WHERE kind = 3"), 1);
    assert_eq!(count("SELECT count(*) FROM file_refs"), 1);
    assert_eq!(count("SELECT count(*) FROM files"), 1);
    let blobs = std::fs::read_dir(server.dir.path().join("blobs"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|d| d.file_name().len() == 2)
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(blobs, 3);
    // A member who was offline when it was sent reads it now.
    let mut lee = Person::login(&server, "lee").await;
    let Payload::FileManifest(got) = lee.call(Payload::GetFile(v1::GetFile { id: m.id.to_vec() })).await
    else {
        panic!("a member may read it")
    };
    assert_eq!(got.chunks.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_may_hold_only_a_few_bulk_connections() {
    let server = TestServer::start().await;
    server.add_users(&["mia"]);
    let mut main = RawConn::connect(server.tcp).await;
    main.hello().await;
    let Some(Payload::LoginOk(ok)) = main.login("mia", PASSWORD).await.payload else { panic!("login") };
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut bulk = RawConn::connect_bulk(server.tcp).await;
        bulk.hello().await;
        assert!(matches!(bulk.login_token("mia", &ok.token, "raw", true).await, Payload::LoginOk(_)));
        open.push(bulk);
    }
    let mut fifth = RawConn::connect_bulk(server.tcp).await;
    fifth.hello().await;
    let refused = fifth.login_token("mia", &ok.token, "raw", true).await;
    assert_eq!(code_of(&refused), ErrorCode::RateLimited);
    assert!(message_of(&refused).contains("file connections"), "{}", message_of(&refused));
    // Once one closes, another may open.
    drop(open.pop());
    let mut attempt = 10;
    loop {
        match fifth.login_token("mia", &ok.token, "raw", true).await {
            Payload::LoginOk(_) => break,
            other => {
                assert_eq!(code_of(&other), ErrorCode::RateLimited);
                attempt += 1;
                assert!(attempt < 10_000, "the closed connection was never released");
                // Ping round trips give the server time to see the close.
                let _ = main.call(attempt, Payload::Ping(v1::Ping { nonce: attempt })).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_find_and_download_archived_files() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["nina", "omar", "audrey"]);
    server.db().execute("UPDATE users SET roles = 'auditor' WHERE account = 'audrey'", []).unwrap();
    let mut nina = Person::login(&server, "nina").await;
    let conv = nina.open_direct(ids[1]).await;
    let data = content(CHUNK_SIZE as usize + 4321, 11);
    let (m, _) = nina.upload(&data).await;
    assert!(matches!(
        nina.send_attachment(conv, file_attachment(&m, "季度报告.pdf")).await,
        Payload::SendAck(_)
    ));

    let http = reqwest::Client::new();
    let base = format!("http://{}/api/admin/v1", server.http);
    let login = |account: &'static str, password: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let body = serde_json::json!({ "account": account, "password": password });
            let answer: serde_json::Value =
                http.post(format!("{base}/login")).json(&body).send().await.unwrap().json().await.unwrap();
            answer["token"].as_str().expect("a token").to_owned()
        }
    };
    let auditor = login("audrey", PASSWORD).await;
    // The archive search finds the file by name and says what it holds.
    let found: serde_json::Value = http
        .get(format!("{base}/audit/messages"))
        .query(&[("q", "季度报告")])
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = &found["messages"][0];
    assert_eq!(message["kind"], "file", "{found}");
    assert_eq!(message["file"]["file_id"], hex::encode(m.id));
    assert_eq!(message["file"]["size"], data.len() as u64);
    // The bytes, named as asked.
    let url = format!("{base}/audit/messages/files/{}", hex::encode(m.id));
    let resp = http.get(&url).query(&[("name", "季度报告.pdf")]).bearer_auth(&auditor).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let disposition = resp.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.contains("filename*=UTF-8''%E5%AD%A3"), "{disposition}");
    assert_eq!(resp.bytes().await.unwrap(), data);
    // Unknown or unarchived files are not found; a name with a path is refused.
    let stranger = manifest_of(b"not in any message");
    let resp = http
        .get(format!("{base}/audit/messages/files/{}", hex::encode(stranger.id)))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http.get(&url).query(&[("name", "../x")]).bearer_auth(&auditor).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    // Administrators are not auditors.
    let admin = login("admin", "admin-password-1").await;
    assert_eq!(http.get(&url).bearer_auth(&admin).send().await.unwrap().status(), 403);
    // The download is in the action log.
    let log: serde_json::Value = http
        .get(format!("{base}/audit/log"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let downloads: Vec<_> =
        log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "audit.download").collect();
    assert_eq!(downloads.len(), 1, "{log}");
}
