//! A group of 2,000 members, all online in several load-generator processes
//! that report delivery as the client core does, receives 20 messages:
//! nobody is disconnected, and the frames the server sends per message grow
//! linearly with the group (measured at 200, 1,000 and 2,000 members).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use hutong_protocol::v1;
use hutong_protocol::{Envelope, Payload};
use hutong_tests::*;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc::UnboundedReceiver;

const MEMBERS: usize = 2000;
const PROCESSES: usize = 4;
const MESSAGES: u64 = 20;
/// Frames per message per member the server may send: the message itself and
/// the answer to its delivery report, with room for a few extra.
const MAX_FRAMES_PER_MEMBER: f64 = 4.0;
const T: Duration = Duration::from_secs(120);

/// Accounts and session tokens written straight into the database: hashing
/// 2,000 passwords (and logging in with them) would take minutes.
fn make_accounts(server: &TestServer, n: usize) -> (Vec<u64>, String) {
    let mut db = server.db();
    let tx = db.transaction().unwrap();
    let now = hutong_server::storage::now_ms();
    let mut ids = Vec::with_capacity(n);
    let mut tokens = String::new();
    for i in 0..n {
        let account = format!("m{i:04}");
        tx.execute(
            "INSERT INTO users (account, display_name, password_hash, created_at) VALUES (?1, ?1, '!', ?2)",
            rusqlite::params![account, now],
        )
        .unwrap();
        let id = tx.last_insert_rowid() as u64;
        let token = format!("big-group-token-{i}-{}", rand::random::<u64>());
        let hash = Sha256::digest(token.as_bytes()).to_vec();
        tx.execute(
            "INSERT INTO sessions (user_id, device, token_hash, created_at, last_seen_at) VALUES (?1, 'load', ?2, ?3, ?3)",
            rusqlite::params![id, hash, now],
        )
        .unwrap();
        ids.push(id);
        tokens.push_str(&format!("{account}\t{token}\n"));
    }
    tx.commit().unwrap();
    (ids, tokens)
}

struct Loadgen {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (process, received, unsettled, lost)
type Stat = (usize, u64, i64, u64);

fn start_loadgens(server: &TestServer, tokens: &std::path::Path) -> (Vec<Loadgen>, UnboundedReceiver<Stat>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let per = MEMBERS.div_ceil(PROCESSES);
    let mut gens = Vec::new();
    for p in 0..PROCESSES {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hutong-loadgen"))
            .arg(server.tcp.to_string())
            .arg(tokens)
            .args([(p * per).to_string(), per.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hutong-loadgen");
        let stdout = child.stdout.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let f: Vec<&str> = line.split_whitespace().collect();
                let stat = match f.as_slice() {
                    ["ready", _] => (p, 0, -1, 0),
                    ["stat", r, u, l] => (p, r.parse().unwrap(), u.parse().unwrap(), l.parse().unwrap()),
                    _ => continue,
                };
                if tx.send(stat).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        gens.push(Loadgen { child, stdin });
    }
    (gens, rx)
}

/// The latest line of every process.
struct Progress {
    rx: UnboundedReceiver<Stat>,
    latest: Vec<Option<Stat>>,
}

impl Progress {
    /// Waits until `done` holds for the sums over all processes; panics if a
    /// connection was lost or at the deadline.
    async fn wait(&mut self, what: &str, done: impl Fn(u64, i64) -> bool) {
        let deadline = Instant::now() + T;
        loop {
            if self.latest.iter().all(Option::is_some) {
                let received: u64 = self.latest.iter().flatten().map(|s| s.1).sum();
                let unsettled: i64 = self.latest.iter().flatten().map(|s| s.2.max(0)).sum();
                let lost: u64 = self.latest.iter().flatten().map(|s| s.3).sum();
                assert_eq!(lost, 0, "connections were closed by the server");
                if self.latest.iter().flatten().all(|s| s.2 >= 0) && done(received, unsettled) {
                    return;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(s)) => self.latest[s.0] = Some(s),
                _ => panic!("timed out waiting for {what}: {:?}", self.latest),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_2000_online_members_costs_linear_frames_per_message() {
    let server = TestServer::start_with(|c| {
        // The run is long on a busy machine; liveness is not under test here.
        c.idle_timeout_ms = 600_000;
    })
    .await;
    server.add_users(&["sender"]);
    let (ids, tokens) = make_accounts(&server, MEMBERS);
    let tokens_path = server.dir.path().join("tokens.tsv");
    std::fs::write(&tokens_path, tokens).unwrap();

    let mut sender = RawConn::connect(server.tcp).await;
    sender.hello().await;
    assert!(matches!(sender.login("sender", PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    let (gens, rx) = start_loadgens(&server, &tokens_path);
    let mut progress = Progress { rx, latest: vec![None; PROCESSES] };
    progress.wait("every account online", |_, _| true).await;

    let mut next_id = 10;
    let mut expected = 0;
    let mut results = Vec::new();
    for size in [200, 1000, MEMBERS] {
        // The sender is a member too: `size` members in all.
        let members = ids[..size - 1].to_vec();
        next_id += 1;
        let create = v1::CreateGroup { name: format!("all {size}"), member_ids: members };
        let conv = match sender.call(next_id, Payload::CreateGroup(create)).await {
            Payload::Conversation(c) => c.id,
            other => panic!("creating the group failed: {other:?}"),
        };
        // The creation's entry is pushed and reported too: let it settle first.
        progress.wait("the group's creation to settle", |r, u| r == expected && u == 0).await;
        let before = hutong_server::stats::frames_sent();
        for i in 0..MESSAGES {
            next_id += 1;
            let send = v1::SendMessage {
                conversation_id: conv,
                client_msg_id: format!("0190bbbb-0000-7000-8000-{size:06}{i:06}"),
                text: format!("to everyone {i}"),
                ..Default::default()
            };
            sender.send(Envelope::new(next_id, Payload::SendMessage(send))).await;
        }
        expected += MESSAGES * (size as u64 - 1);
        progress
            .wait("every member to receive and report every message", |r, u| r == expected && u == 0)
            .await;
        // The sender's own acknowledgements are part of the cost.
        let mut acks = 0;
        while acks < MESSAGES {
            if let Some(Payload::SendAck(_)) = sender.recv().await.and_then(|e| e.payload) {
                acks += 1;
            }
        }
        let frames = hutong_server::stats::frames_sent() - before;
        let per_message = frames as f64 / MESSAGES as f64;
        let per_member = per_message / size as f64;
        println!("{size} members: {per_message:.0} frames per message, {per_member:.2} per member");
        results.push((size, per_member));
    }
    drop(gens);
    for (size, per_member) in &results {
        assert!(
            *per_member <= MAX_FRAMES_PER_MEMBER,
            "{size} members: {per_member:.2} frames per message per member is not linear growth"
        );
    }
    server.stop().await;
}
