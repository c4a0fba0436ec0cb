//! The delivery checker: many clients in many conversations send thousands of
//! messages while connections drop, clients restart and the server process is
//! killed with SIGKILL and restarted on the same data directory. Every person
//! has a second device that is offline for long stretches; senders recall
//! some of their messages; people read on either device; and the retention
//! rules remove the oldest messages of a group during the run. In the end
//! every device's cache of every conversation must equal the server's log
//! (from the first seq retention kept): each message its sender's outbox
//! accepted present exactly once (or removed by retention, never stored
//! again), in seq order, seqs gapless, recalls applied; and every device's
//! read cursor and unread counts must equal the server's.

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
    options.insecure_plaintext = true;
    options.backoff_min = Duration::from_millis(20);
    options.backoff_max = Duration::from_millis(500);
    *guard = Client::start(options, Credential::Token(token)).expect("restart client");
}

/// (seq, sender, client_msg_id, kind, text, recalled) of one log entry; a
/// recalled message's text is gone for clients.
type Entry = (u64, u64, String, String, String, bool);

const KINDS: [&str; 4] = ["text", "system", "recall", "file"];

fn server_log(db: &rusqlite::Connection, conversation: u64) -> Vec<Entry> {
    let mut stmt = db
        .prepare(
            "SELECT seq, sender_id, client_msg_id, kind, text, recalled FROM messages WHERE conversation_id = ?1 ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([conversation], |r| {
        let kind: usize = r.get(3)?;
        let recalled: bool = r.get(5)?;
        let text: String = if recalled { String::new() } else { r.get(4)? };
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, KINDS[kind].to_owned(), text, recalled))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The cached entries from `first_seq` on (a cache keeps what retention
/// removed from the server later).
fn cache_log(client: &Client, conversation: u64, first_seq: u64) -> Vec<Entry> {
    client
        .cached_messages(conversation)
        .unwrap()
        .into_iter()
        .filter(|m| m.seq >= first_seq)
        .map(|m| (m.seq, m.sender_id, m.client_msg_id, m.kind.to_owned(), m.text, m.recalled))
        .collect()
}

/// What a device shows as unread in a conversation, and what it should show
/// given the server's read cursor of that person: its cached messages from
/// others after the cursor, not recalled.
fn unread(client: &Client, conversation: u64, server_read: u64) -> (u64, u64, u64, u64) {
    let me = client.user_id();
    let summary = client.conversations().unwrap().into_iter().find(|c| c.id == conversation);
    let (shown, read) = summary.map(|c| (c.unread, c.read_seq)).unwrap_or((u64::MAX, 0));
    let expected = client
        .cached_messages(conversation)
        .unwrap()
        .iter()
        .filter(|m| {
            m.seq > server_read && m.sender_id != me && (m.kind == "text" || m.kind == "file") && !m.recalled
        })
        .count() as u64;
    (shown, expected, read, server_read)
}

/// Starts (or stops) a person's second device.
async fn toggle_second(
    second: &Mutex<Option<Client>>,
    dir: &Path,
    server: hutong_client::ServerAddr,
    account: &str,
) {
    let old = second.lock().unwrap().take();
    match old {
        Some(client) => client.shutdown(),
        None => {
            let client = client_in(dir, server, account, "second");
            *second.lock().unwrap() = Some(client);
        }
    }
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
    // Second devices: each logs in once, then stays offline most of the run.
    let seconds: Vec<Arc<Mutex<Option<Client>>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    for (i, name) in names.iter().enumerate() {
        let client = online_client(caches.path(), addr.clone(), name, "second").await;
        if i % 4 != 0 {
            client.shutdown();
        } else {
            *seconds[i].lock().unwrap() = Some(client);
        }
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
    let (mut toggles, mut recalls, mut reads) = (0, 0, 0);
    // Messages the retention rules removed, by client_msg_id.
    let mut removed: HashMap<String, u64> = HashMap::new();
    let db_path = config.database_path();
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
                    if round == 4 || round == 10 {
                        // While the server is down, the oldest half of one group's log
                        // becomes older than the retention rules allow; the restart
                        // applies them (as the hourly run would).
                        let conv = conversations[if round == 4 { 0 } else { 1 }].0;
                        let db_path = db_path.clone();
                        let gone = tokio::task::spawn_blocking(move || {
                            let mut server = server.lock().unwrap();
                            server.kill();
                            let ids = backdate_half(&db_path, conv);
                            server.restart();
                            ids
                        })
                        .await
                        .unwrap();
                        removed.extend(gone.into_iter().map(|id| (id, conv)));
                    } else {
                        tokio::task::spawn_blocking(move || server.lock().unwrap().restart()).await.unwrap();
                    }
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
            // Every round: a few second devices come online or go offline
            // again, a few people read on one of their devices, and a few
            // senders recall their newest stored message.
            for k in 0..3 {
                let i = (round * 5 + k * 7) % CLIENTS;
                toggle_second(&seconds[i], caches.path(), addr.clone(), &names[i]).await;
                toggles += 1;
            }
            for k in 0..4 {
                let i = (round * 3 + k * 11) % CLIENTS;
                let device =
                    if k % 2 == 0 { Some(current(&slots[i])) } else { seconds[i].lock().unwrap().clone() };
                if let Some(device) = device {
                    for conv in &mine[i] {
                        let last = device.cached_messages(*conv).unwrap().last().map_or(0, |m| m.seq);
                        // Half the people read everything, half up to the middle.
                        let upto = if (i + round).is_multiple_of(2) { last } else { last / 2 };
                        device.mark_read(*conv, upto).unwrap();
                    }
                    reads += 1;
                }
            }
            for k in 0..2 {
                let i = (round * 13 + k * 3) % CLIENTS;
                let client = current(&slots[i]);
                let me = client.user_id();
                let target = mine[i].iter().find_map(|conv| {
                    client
                        .cached_messages(*conv)
                        .unwrap()
                        .into_iter()
                        .rev()
                        .find(|m| m.sender_id == me && m.kind == "text" && !m.recalled)
                        .map(|m| (*conv, m.seq))
                });
                if let Some((conv, seq)) = target {
                    // The connection may be down right now; only stored recalls count.
                    if let Ok(Ok(())) =
                        tokio::time::timeout(Duration::from_secs(2), client.recall(conv, seq)).await
                    {
                        recalls += 1;
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

    // Every second device comes back, some after days offline in this run's terms.
    for (i, second) in seconds.iter().enumerate() {
        if second.lock().unwrap().is_none() {
            toggle_second(second, caches.path(), addr.clone(), &names[i]).await;
        }
    }
    let devices = |m: usize| -> Vec<Client> {
        let mut v = vec![current(&slots[m])];
        v.extend(seconds[m].lock().unwrap().clone());
        v
    };

    // Wait until every device's cache holds the server's log and shows the
    // server's read cursor and unread counts.
    let db = hutong_server::storage::open_connection(&config.database_path()).unwrap();
    let first_seq = |conv: u64| -> u64 {
        db.query_row("SELECT first_seq FROM conversations WHERE id = ?1", [conv], |r| r.get(0)).unwrap()
    };
    let server_read = |conv: u64, user: u64| -> u64 {
        db.query_row(
            "SELECT read_seq FROM members WHERE conversation_id = ?1 AND user_id = ?2",
            [conv, user],
            |r| r.get(0),
        )
        .unwrap()
    };
    let differences = || -> Vec<String> {
        let mut out = Vec::new();
        for (conv, members) in &conversations {
            let (log, first) = (server_log(&db, *conv), first_seq(*conv));
            for &m in members {
                for (d, device) in devices(m).iter().enumerate() {
                    if cache_log(device, *conv, first) != log {
                        out.push(format!("{} device {d}: log of conversation {conv}", names[m]));
                    }
                    let (shown, expected, read, server) = unread(device, *conv, server_read(*conv, ids[m]));
                    if (shown, read) != (expected, server) {
                        out.push(format!(
                            "{} device {d}: conversation {conv} shows {shown} unread with read cursor {read}; \
                             the server's cursor {server} means {expected}",
                            names[m]
                        ));
                    }
                }
            }
        }
        out
    };
    let left = deadline.saturating_duration_since(Instant::now());
    poll_until(left, "every device to show the server's log, read cursors and unread counts", || {
        differences().is_empty()
    })
    .await;
    server.lock().unwrap().kill();

    // Verify.
    let accepted = accepted.lock().unwrap().clone();
    let mut per_conversation: BTreeMap<u64, usize> = BTreeMap::new();
    let mut checked_caches = 0;
    for (conv, members) in &conversations {
        let log = server_log(&db, *conv);
        let seqs: Vec<u64> = log.iter().map(|e| e.0).collect();
        let start = seqs.first().copied().unwrap_or(1);
        assert_eq!(
            seqs,
            (start..start + log.len() as u64).collect::<Vec<_>>(),
            "conversation {conv}: seqs dense"
        );
        let first = first_seq(*conv);
        assert_eq!(
            seqs.first().copied().unwrap_or(first),
            first,
            "conversation {conv}: log starts where retention left it"
        );
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for e in log.iter().filter(|e| e.3 == "text") {
            *seen.entry(e.2.as_str()).or_default() += 1;
        }
        // Removed by retention: never stored again, even when a retry of it came later.
        for (id, c) in &removed {
            if c == conv {
                assert_eq!(
                    seen.get(id.as_str()),
                    None,
                    "conversation {conv}: message {id} came back after retention"
                );
            }
        }
        let expected: Vec<&String> = accepted
            .iter()
            .filter(|(id, (c, _))| c == conv && !removed.contains_key(id.as_str()))
            .map(|(id, _)| id)
            .collect();
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
        for e in log.iter().filter(|e| e.3 == "text" && !e.5) {
            let n: i64 = e.4.split(['m', ' ']).nth(2).and_then(|s| s.parse().ok()).unwrap();
            let prev = last_n.insert(e.1, n).unwrap_or(-1);
            assert!(n > prev, "conversation {conv}: sender {} out of order ({prev} then {n})", e.1);
        }
        for &m in members {
            for device in devices(m) {
                assert_eq!(
                    cache_log(&device, *conv, first),
                    log,
                    "member {} of conversation {conv}",
                    names[m]
                );
                let (shown, expected_unread, read, server) =
                    unread(&device, *conv, server_read(*conv, ids[m]));
                assert_eq!((shown, read), (expected_unread, server), "{}: unread and read cursor", names[m]);
                checked_caches += 1;
            }
        }
        per_conversation.insert(*conv, expected.len());
    }
    assert_eq!(per_conversation.values().sum::<usize>() + removed.len(), total);
    println!(
        "delivery checker: {total} messages from {CLIENTS} clients (two devices each) in {} conversations; \
         {kills} server SIGKILLs, {drops} dropped connections, {restarts} client restarts, \
         {toggles} second-device starts and stops, {recalls} recalls, {reads} read marks, \
         {} messages removed by retention; {checked_caches} device caches equal the server log \
         with its read cursors and unread counts; {:.1} s",
        conversations.len(),
        removed.len(),
        started.elapsed().as_secs_f64()
    );
    println!("messages per conversation: {per_conversation:?}");
    assert!(
        kills >= 3 && drops >= 3 && restarts >= 3,
        "chaos happened: {kills} kills, {drops} drops, {restarts} restarts"
    );
    assert!(recalls >= 3 && reads >= 3 && !removed.is_empty(), "{recalls} recalls, {reads} reads, retention");
    for slot in &slots {
        current(slot).shutdown();
    }
    for second in &seconds {
        if let Some(c) = second.lock().unwrap().take() {
            c.shutdown();
        }
    }
}

/// Makes the first half of a conversation's log 400 days old and sets the
/// group retention to a year (the server must be down); returns the
/// client_msg_ids of the text messages the next retention run removes.
fn backdate_half(db_path: &Path, conversation: u64) -> Vec<String> {
    let db = hutong_server::storage::open_connection(db_path).unwrap();
    let last: u64 = db
        .query_row("SELECT last_seq FROM conversations WHERE id = ?1", [conversation], |r| r.get(0))
        .unwrap();
    let upto = last / 2;
    db.execute(
        "UPDATE messages SET sent_at = sent_at - 400 * 86400000 WHERE conversation_id = ?1 AND seq <= ?2",
        [conversation, upto],
    )
    .unwrap();
    db.execute("UPDATE settings SET value = '365' WHERE key = 'retention_group_days'", []).unwrap();
    let mut stmt = db
        .prepare("SELECT client_msg_id FROM messages WHERE conversation_id = ?1 AND seq <= ?2 AND kind = 0")
        .unwrap();
    let ids = stmt.query_map([conversation, upto], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    ids
}
