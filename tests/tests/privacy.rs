//! What a person may learn about others and about stored files: lookups,
//! presence and direct chats answer for hidden and deleted people exactly as
//! for ids that do not exist, and deduplication needs proof of possession (a
//! manifest alone tells nothing about what the server holds and grants no
//! right to read it), while a real owner still uploads no bytes twice.

use hutong_protocol::files::{chunk_proof, manifest_of, CheckedManifest, CHUNK_SIZE};
use hutong_protocol::v1::{self, PresenceStatus};
use hutong_protocol::{Envelope, Payload};
use hutong_tests::*;

/// An id no account has.
const NOBODY: u64 = 987_654;

/// Puts `ids` into a new department, hidden from everyone outside it.
fn hide_in_new_department(server: &TestServer, ids: &[u64]) {
    let db = server.db();
    db.execute("INSERT INTO departments (name, hidden, version) VALUES ('董事会', 1, 1)", []).unwrap();
    let dept = db.last_insert_rowid();
    for id in ids {
        db.execute("UPDATE users SET primary_department_id = ?1 WHERE id = ?2", rusqlite::params![dept, id])
            .unwrap();
    }
}

fn users_of(p: Payload) -> Vec<String> {
    match p {
        Payload::UserList(l) => l.users.into_iter().map(|u| u.account).collect(),
        other => panic!("expected a user list, got {other:?}"),
    }
}

fn error_of(p: Payload) -> (i32, String) {
    match p {
        Payload::Error(e) => (e.code, e.message),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Subscribes to `ids` and returns the presence states pushed before `Done`.
async fn presence_of(conn: &mut RawConn, ids: &[u64]) -> Vec<(u64, i32)> {
    conn.send(Envelope::new(
        77,
        Payload::SubscribePresence(v1::SubscribePresence { user_ids: ids.to_vec() }),
    ))
    .await;
    let mut seen = Vec::new();
    loop {
        let env = conn.recv().await.expect("presence before the connection closed");
        match env.payload {
            Some(Payload::Presence(p)) => seen.push((p.user_id, p.status)),
            Some(Payload::Done(_)) if env.response_to == 77 => return seen,
            Some(Payload::Error(e)) if env.response_to == 77 => panic!("subscribe refused: {e:?}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_learn_a_hidden_persons_name() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["outsider", "colleague", "chairman", "secretary", "ghost"]);
    let (colleague, chairman, ghost) = (ids[1], ids[2], ids[4]);
    hide_in_new_department(&server, &[chairman, ids[3]]);
    server.db().execute("UPDATE users SET deleted = 1, disabled = 1 WHERE id = ?1", [ghost]).unwrap();

    let mut outsider = raw_logged_in(&server, "outsider").await;
    // The chairman is online, so presence would give them away.
    let mut chair = raw_logged_in(&server, "chairman").await;

    // Lookups: by account and by id, the hidden and the deleted person are
    // missing exactly as an account or id nobody has.
    let lookup = v1::LookupUsers {
        accounts: vec!["chairman".into(), "ghost".into(), "no-such-account".into(), "colleague".into()],
        user_ids: vec![chairman, ghost, NOBODY, colleague],
    };
    let found = users_of(outsider.call(10, Payload::LookupUsers(lookup.clone())).await);
    assert_eq!(found, ["colleague", "colleague"], "only the visible colleague may be looked up");

    // Opening a direct chat: the same error, word for word, as for nobody.
    let open = |id| Payload::OpenDirect(v1::OpenDirect { user_id: id });
    let hidden = error_of(outsider.call(11, open(chairman)).await);
    let unknown = error_of(outsider.call(12, open(NOBODY)).await);
    assert_eq!(hidden, unknown);
    let deleted = error_of(outsider.call(13, open(ghost)).await);
    assert_eq!(deleted, unknown);
    // Nor as a group member.
    let group =
        |id| Payload::CreateGroup(v1::CreateGroup { name: "g".into(), member_ids: vec![colleague, id] });
    assert_eq!(
        error_of(outsider.call(14, group(chairman)).await),
        error_of(outsider.call(15, group(NOBODY)).await)
    );

    // Presence: an online hidden person looks like an id nobody has.
    let states = presence_of(&mut outsider, &[chairman, NOBODY]).await;
    let offline = PresenceStatus::Offline as i32;
    assert_eq!(states, [(chairman, offline), (NOBODY, offline)]);

    // Inside the hidden department the chairman is there and online.
    let mut secretary = raw_logged_in(&server, "secretary").await;
    assert_eq!(
        users_of(
            secretary
                .call(
                    10,
                    Payload::LookupUsers(v1::LookupUsers { user_ids: vec![chairman], ..Default::default() })
                )
                .await
        ),
        ["chairman"]
    );
    assert_eq!(presence_of(&mut secretary, &[chairman]).await, [(chairman, PresenceStatus::Online as i32)]);

    // Once the chairman opens a chat with the outsider, the outsider sees
    // whom they are talking to.
    let outsider_id = ids[0];
    assert!(matches!(chair.call(10, open(outsider_id)).await, Payload::Conversation(_)));
    let found = users_of(
        outsider
            .call(
                20,
                Payload::LookupUsers(v1::LookupUsers { user_ids: vec![chairman], ..Default::default() }),
            )
            .await,
    );
    assert_eq!(found, ["chairman"]);
}

/// A person's session and bulk connection.
struct Uploader {
    main: RawConn,
    bulk: RawConn,
    next: u64,
}

impl Uploader {
    async fn login(server: &TestServer, account: &str) -> Uploader {
        let mut main = RawConn::connect(server.tcp).await;
        main.hello().await;
        let token = match main.login(account, PASSWORD).await.payload {
            Some(Payload::LoginOk(ok)) => ok.token,
            other => panic!("login failed: {other:?}"),
        };
        let mut bulk = RawConn::connect_bulk(server.tcp).await;
        bulk.hello().await;
        assert!(matches!(bulk.login_token(account, &token, "raw", true).await, Payload::LoginOk(_)));
        Uploader { main, bulk, next: 100 }
    }

    async fn call(&mut self, p: Payload) -> Payload {
        self.next += 1;
        self.main.call(self.next, p).await
    }

    async fn bulk_call(&mut self, p: Payload) -> Payload {
        self.next += 1;
        self.bulk.call(self.next, p).await
    }

    async fn prepare(&mut self, m: &CheckedManifest) -> v1::UploadPlan {
        match self.call(Payload::PrepareUpload(v1::PrepareUpload { files: vec![m.to_wire()] })).await {
            Payload::UploadPlan(p) => p,
            other => panic!("prepare refused: {other:?}"),
        }
    }

    async fn prove(&mut self, challenge: &[u8], proofs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Vec<u8>> {
        let proofs = proofs.into_iter().map(|(hash, proof)| v1::ChunkProof { hash, proof }).collect();
        let req = v1::ProveChunks { challenge: challenge.to_vec(), proofs };
        match self.call(Payload::ProveChunks(req)).await {
            Payload::ChunksProven(p) => p.hashes,
            other => panic!("proof refused: {other:?}"),
        }
    }

    async fn commit(&mut self, m: &CheckedManifest) -> Payload {
        self.call(Payload::CommitUpload(v1::CommitUpload { file_ids: vec![m.id.to_vec()] })).await
    }

    /// Uploads `data`, proving before sending; returns how many chunks went over the wire.
    async fn upload(&mut self, data: &[u8]) -> usize {
        let m = manifest_of(data);
        let plan = self.prepare(&m).await;
        let challenge: [u8; 32] = plan.challenge.as_slice().try_into().unwrap();
        let proofs = plan
            .missing
            .iter()
            .map(|h| (h.clone(), chunk_proof(&challenge, chunk(data, &m, h)).to_vec()))
            .collect();
        let proven = self.prove(&plan.challenge, proofs).await;
        let mut sent = 0;
        for h in plan.missing.iter().filter(|h| !proven.contains(h)) {
            let put = v1::PutChunk { hash: h.clone(), data: chunk(data, &m, h).to_vec().into() };
            assert!(matches!(self.bulk_call(Payload::PutChunk(put)).await, Payload::ChunkStored(_)));
            sent += 1;
        }
        assert!(matches!(self.commit(&m).await, Payload::UploadCommitted(_)));
        sent
    }
}

fn chunk<'a>(data: &'a [u8], m: &CheckedManifest, hash: &[u8]) -> &'a [u8] {
    let i = m.chunks.iter().position(|c| c[..] == hash[..]).expect("a chunk of this file");
    let start = i * CHUNK_SIZE as usize;
    &data[start..start + m.chunk_len(i) as usize]
}

/// Random-looking content, different for each seed.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowing_a_manifest_tells_nothing_and_reads_nothing_but_owners_still_deduplicate() {
    let server = TestServer::start().await;
    server.add_users(&["owner", "snoop", "colleague"]);
    let stored = content(2 * CHUNK_SIZE as usize + 777, 1);
    let never = content(2 * CHUNK_SIZE as usize + 777, 2);
    let mut owner = Uploader::login(&server, "owner").await;
    assert_eq!(owner.upload(&stored).await, 3, "a first upload sends everything");

    // The snoop knows both manifests (say, from a leaked hash list) but not
    // the content. The server's answers are the same for the file it holds
    // and for the one it never saw.
    let mut snoop = Uploader::login(&server, "snoop").await;
    let (m_stored, m_never) = (manifest_of(&stored), manifest_of(&never));
    let shape = |p: &v1::UploadPlan| (p.missing.len(), p.quota_used, p.quota_limit, p.challenge.len());
    let plan_stored = snoop.prepare(&m_stored).await;
    let plan_never = snoop.prepare(&m_never).await;
    assert_eq!(plan_stored.missing.len(), 3, "every chunk is to show, stored or not");
    assert_eq!(shape(&plan_stored), shape(&plan_never));
    // Guessed proofs prove nothing either way.
    let guesses = |m: &CheckedManifest| m.chunks.iter().map(|c| (c.to_vec(), c.to_vec())).collect();
    assert!(snoop.prove(&plan_stored.challenge, guesses(&m_stored)).await.is_empty());
    assert!(snoop.prove(&plan_never.challenge, guesses(&m_never)).await.is_empty());
    // Committing without showing the chunks: the same refusal for both.
    let (a, b) = (error_of(snoop.commit(&m_stored).await), error_of(snoop.commit(&m_never).await));
    assert_eq!(a, b);
    // And no right to read the stored one.
    let get = |m: &CheckedManifest| Payload::GetFile(v1::GetFile { id: m.id.to_vec() });
    assert_eq!(error_of(snoop.call(get(&m_stored)).await), error_of(snoop.call(get(&m_never)).await));
    let chunk0 = Payload::GetChunk(v1::GetChunk { file_id: m_stored.id.to_vec(), index: 0 });
    assert!(matches!(snoop.bulk_call(chunk0).await, Payload::Error(_)));

    // Someone who really has the content proves it and sends no bytes; the
    // owner re-sending it sends none either; both may then read it.
    let mut colleague = Uploader::login(&server, "colleague").await;
    assert_eq!(colleague.upload(&stored).await, 0, "a real owner deduplicates");
    assert_eq!(owner.upload(&stored).await, 0);
    assert!(matches!(colleague.call(get(&m_stored)).await, Payload::FileManifest(_)));
}
