//! The delivery checker: many clients in many conversations send thousands of
//! messages while connections drop, clients restart and the server process is
//! killed with SIGKILL and restarted on the same data directory. In the end
//! every member's cache of every conversation must equal the server's log:
//! each message its sender's outbox accepted present exactly once, in seq
//! order, seqs gapless.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hutong_client::{Client, ClientOptions, Credential, SendOptions};
use hutong_tests::*;

const CLIENTS: usize = 20;
const MESSAGES_PER_CLIENT: usize = 250;
/// Chaos strikes each time this many more messages have been acknowledged.
const CHAOS_EVERY: usize = 350;
const DEADLINE: Duration = Duration::from_secs(600);

type Slot = Arc<Mutex<Client>>;

fn current(slot: &Slot) -> Client {
    slot.lock().unwrap().clone()
}

fn restart_client(slot: &Slot, dir: &Path, server: hutong_client::ServerAddr, account: &str) {
    let mut guard = slot.lock().unwrap();
    let token = guard.token().expect("logged in before");
    guard.shutdown();
    let mut options = ClientOptions::new(server, account, dir.join(format!("{account}-main.db")));
    options.device = "main".into();
    options.backoff_min = Duration::from_millis(20);
    options.backoff_max = Duration::from_millis(500);
    *guard = Client::start(options, Credential::Token(token)).expect("restart client");
}

/// (seq, sender, client_msg_id, kind, text) of one log entry.
type Entry = (u64, u64, String, String, String);

fn server_log(db: &rusqlite::Connection, conversation: u64) -> Vec<Entry> {
    let mut stmt = db
        .prepare("SELECT seq, sender_id, client_msg_id, kind, text FROM messages WHERE conversation_id = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([conversation], |r| {
        let kind: i32 = r.get(3)?;
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, if kind == 0 { "text" } else { "system" }.to_owned(), r.get(4)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn cache_log(client: &Client, conversation: u64) -> Vec<Entry> {
    client
        .cached_messages(conversation)
        .unwrap()
        .into_iter()
        .map(|m| (m.seq, m.sender_id, m.client_msg_id, m.kind.to_owned(), m.text))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_exactly_once_in_order_through_crashes() {
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let caches = tempfile::tempdir().unwrap();
    let config = test_config(data.path());
    hutong_server::prepare(&config, Some("admin-password-1".into())).unwrap();
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("user{i:02}")).collect();
    let ids = add_users(&config.database_path(), &names.iter().map(String::as_str).collect::<Vec<_>>());
    let server = Arc::new(Mutex::new(ServerProcess::start(data.path(), None)));
    let addr: hutong_client::ServerAddr = format!("tcp://{}", server.lock().unwrap().tcp).parse().unwrap();

    let mut slots: Vec<Slot> = Vec::new();
    for name in &names {
        slots.push(Arc::new(Mutex::new(online_client(caches.path(), addr.clone(), name, "main").await)));
    }

    // Conversations: three groups of different shapes and ten direct pairs.
    let c0 = current(&slots[0]);
    let mut conversations: Vec<(u64, Vec<usize>)> = Vec::new();
    let groups: [(&str, Vec<usize>); 4] = [
        ("everyone", (0..CLIENTS).collect()),
        ("first half", (0..CLIENTS / 2).collect()),
        ("second half", (CLIENTS / 2..CLIENTS).collect()),
        ("every fifth", (0..CLIENTS).step_by(5).collect()),
    ];
    for (name, members) in groups.iter() {
        let creator = current(&slots[members[0]]);
        let others: Vec<u64> = members[1..].iter().map(|&i| ids[i]).collect();
        conversations.push((creator.create_group(name, &others).await.unwrap().id, members.clone()));
    }
    for pair in 0..CLIENTS / 2 {
        let (a, b) = (2 * pair, 2 * pair + 1);
        let conv = current(&slots[a]).open_direct(ids[b]).await.unwrap();
        conversations.push((conv.id, vec![a, b]));
    }
    drop(c0);
    let mine: Vec<Vec<u64>> = (0..CLIENTS)
        .map(|i| conversations.iter().filter(|(_, m)| m.contains(&i)).map(|(c, _)| *c).collect())
        .collect();

    // Senders: each writes its share into its outbox, a little at a time.
    let accepted: Arc<Mutex<HashMap<String, (u64, usize)>>> = Arc::default();
    let mut senders = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let (slot, mine, accepted) = (slot.clone(), mine[i].clone(), accepted.clone());
        senders.push(tokio::spawn(async move {
            for n in 0..MESSAGES_PER_CLIENT {
                let conv = mine[(n * 7 + i) % mine.len()];
                let client = current(&slot);
                let id = client.send_text(conv, &format!("u{i} m{n} 消息"), SendOptions::default()).unwrap();
                accepted.lock().unwrap().insert(id, (conv, i));
                if n % 10 == 9 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let total = CLIENTS * MESSAGES_PER_CLIENT;
    let pending =
        |slots: &[Slot]| -> usize { slots.iter().map(|s| current(s).outbox(None).unwrap().len()).sum() };
    let acked = |slots: &[Slot], accepted: &Mutex<HashMap<String, (u64, usize)>>| -> usize {
        accepted.lock().unwrap().len().saturating_sub(pending(slots))
    };

    // Chaos, driven by progress rather than by the clock.
    let (mut kills, mut drops, mut restarts, mut round) = (0, 0, 0, 0usize);
    let mut next_strike = CHAOS_EVERY;
    let deadline = Instant::now() + DEADLINE;
    // Progress is the server's acknowledgements of everyone's outbox: re-read it often.
    let mut progress = tokio::time::interval(Duration::from_millis(20));
    loop {
        let done = acked(&slots, &accepted);
        if done >= total {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of {total} acknowledged before the deadline");
        if done >= next_strike {
            next_strike += CHAOS_EVERY;
            round += 1;
            match round % 3 {
                1 => {
                    let server = server.clone();
                    tokio::task::spawn_blocking(move || server.lock().unwrap().restart()).await.unwrap();
                    kills += 1;
                }
                2 => {
                    for (i, slot) in slots.iter().enumerate() {
                        if (i + round) % 3 == 0 {
                            current(slot).drop_connection();
                            drops += 1;
                        }
                    }
                }
                _ => {
                    for i in [round % CLIENTS, (round * 7) % CLIENTS] {
                        restart_client(&slots[i], caches.path(), addr.clone(), &names[i]);
                        restarts += 1;
                    }
                }
            }
        }
        progress.tick().await;
    }
    for s in senders {
        s.await.unwrap();
    }
    // One more SIGKILL after the last ack: acknowledged means durable.
    {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.lock().unwrap().restart()).await.unwrap();
        kills += 1;
    }

    // Wait until every member's cache holds the server's whole log.
    let db = hutong_server::storage::open_connection(&config.database_path()).unwrap();
    let last_seq = |conv: u64| -> u64 {
        db.query_row("SELECT last_seq FROM conversations WHERE id = ?1", [conv], |r| r.get(0)).unwrap()
    };
    let behind = || -> usize {
        conversations
            .iter()
            .map(|(conv, members)| {
                let last = last_seq(*conv);
                members
                    .iter()
                    .filter(|&&m| cache_log(&current(&slots[m]), *conv).len() as u64 != last)
                    .count()
            })
            .sum()
    };
    let left = deadline.saturating_duration_since(Instant::now());
    poll_until(left, "every member cache to hold the server's log", || behind() == 0).await;
    server.lock().unwrap().kill();

    // Verify.
    let accepted = accepted.lock().unwrap().clone();
    let mut per_conversation: BTreeMap<u64, usize> = BTreeMap::new();
    let mut checked_caches = 0;
    for (conv, members) in &conversations {
        let log = server_log(&db, *conv);
        let seqs: Vec<u64> = log.iter().map(|e| e.0).collect();
        assert_eq!(
            seqs,
            (1..=log.len() as u64).collect::<Vec<_>>(),
            "conversation {conv}: seqs dense from 1"
        );
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for e in log.iter().filter(|e| e.3 == "text") {
            *seen.entry(e.2.as_str()).or_default() += 1;
        }
        let expected: Vec<&String> =
            accepted.iter().filter(|(_, (c, _))| c == conv).map(|(id, _)| id).collect();
        for id in &expected {
            assert_eq!(
                seen.get(id.as_str()),
                Some(&1),
                "conversation {conv}: message {id} must be stored exactly once"
            );
        }
        assert_eq!(seen.len(), expected.len(), "conversation {conv}: no message the senders did not write");
        // Per sender, the log keeps the order in which the outbox accepted them.
        let mut last_n: HashMap<u64, i64> = HashMap::new();
        for e in log.iter().filter(|e| e.3 == "text") {
            let n: i64 = e.4.split(['m', ' ']).nth(2).and_then(|s| s.parse().ok()).unwrap();
            let prev = last_n.insert(e.1, n).unwrap_or(-1);
            assert!(n > prev, "conversation {conv}: sender {} out of order ({prev} then {n})", e.1);
        }
        for &m in members {
            assert_eq!(
                cache_log(&current(&slots[m]), *conv),
                log,
                "member {} of conversation {conv}",
                names[m]
            );
            checked_caches += 1;
        }
        per_conversation.insert(*conv, expected.len());
    }
    assert_eq!(per_conversation.values().sum::<usize>(), total);
    println!(
        "delivery checker: {total} messages from {CLIENTS} clients in {} conversations; \
         {kills} server SIGKILLs, {drops} dropped connections, {restarts} client restarts; \
         {checked_caches} member caches equal the server log; {:.1} s",
        conversations.len(),
        started.elapsed().as_secs_f64()
    );
    println!("messages per conversation: {per_conversation:?}");
    assert!(
        kills >= 3 && drops >= 3 && restarts >= 3,
        "chaos happened: {kills} kills, {drops} drops, {restarts} restarts"
    );
    for slot in &slots {
        current(slot).shutdown();
    }
}
