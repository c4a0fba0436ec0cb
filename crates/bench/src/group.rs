//! `group`: one message to an all-online group. Worker processes
//! (`group-worker`) hold the members' connections and report delivery as
//! the client core does; the main process sends one message at a time,
//! waits until every member has it, and records the time from the send to
//! the last delivery and the server's CPU time per message (`/proc`).
//!
//! Accounts and session tokens are written straight into a fresh database
//! (no password hashing), so a group of thousands is ready in a second.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use futures::StreamExt as _;
use hutong_protocol::v1::{self, login::Secret, MessageKind};
use hutong_protocol::Payload;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::procfs;
use crate::server::{server_binary, ServerProcess};
use crate::wire::{Conn, DEVICE, SETUP_TIMEOUT};

#[derive(clap::Args, Clone, Debug)]
pub struct GroupArgs {
    /// Members of the group, the sender included.
    #[arg(long, default_value_t = 2000)]
    members: usize,
    /// Messages measured per run (sent one at a time).
    #[arg(long, default_value_t = 50)]
    messages: usize,
    /// Worker processes holding the members' connections.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Runs, each on a fresh server; the table shows the median run.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The `hutong-server` binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
}

#[derive(clap::Args, Clone, Debug)]
pub struct GroupWorkerArgs {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    tokens: PathBuf,
    #[arg(long)]
    offset: usize,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    source: IpAddr,
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Per message (by its send time in the text): connections that got it and
/// the latest arrival.
type Arrivals = Arc<Mutex<HashMap<u64, (usize, u64)>>>;

/// One member: receive, record arrivals, report delivery with one report in
/// flight (as `session.rs`'s cursor loop does).
async fn member(mut conn: Conn, arrivals: Arrivals) {
    let mut newest = 0;
    let mut reported = 0;
    let mut in_flight: Option<(u64, u64)> = None;
    let mut conv = 0;
    loop {
        let Ok(env) = conn.recv().await else { return };
        match env.payload {
            Some(Payload::Message(m)) if env.response_to == 0 => {
                if m.kind == MessageKind::Text as i32 {
                    if let Ok(sent) = m.text.parse::<u64>() {
                        let at = now_us();
                        let mut a = arrivals.lock().await;
                        let e = a.entry(sent).or_default();
                        e.0 += 1;
                        e.1 = e.1.max(at);
                    }
                }
                conv = m.conversation_id;
                newest = newest.max(m.seq);
            }
            // A notice (the `notices` benchmark) carries its send time as its title.
            Some(Payload::Notice(n)) if env.response_to == 0 => {
                if let Ok(sent) = n.title.parse::<u64>() {
                    let at = now_us();
                    let mut a = arrivals.lock().await;
                    let e = a.entry(sent).or_default();
                    e.0 += 1;
                    e.1 = e.1.max(at);
                }
            }
            Some(_) if in_flight.is_some_and(|(id, _)| id == env.response_to) => {
                reported = in_flight.take().map(|(_, s)| s).unwrap_or(reported);
            }
            _ => {}
        }
        if in_flight.is_none() && newest > reported {
            let report = v1::UpdateCursor { conversation_id: conv, delivered_seq: newest, read_seq: 0 };
            match conn.send(Payload::UpdateCursor(report)).await {
                Ok(id) => in_flight = Some((id, newest)),
                Err(_) => return,
            }
        }
    }
}

pub async fn worker(args: GroupWorkerArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.tokens)?;
    let accounts: Vec<(String, String)> = text
        .lines()
        .skip(args.offset)
        .take(args.count)
        .filter_map(|l| l.split_once('\t').map(|(a, t)| (a.to_owned(), t.to_owned())))
        .collect();
    let conns: Vec<Conn> = futures::stream::iter(accounts)
        .map(|(a, t)| async move {
            let (conn, _) = Conn::open(args.addr, Some(args.source), &a, Secret::Token(t)).await?;
            Ok::<_, anyhow::Error>(conn)
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let arrivals: Arrivals = Default::default();
    for conn in conns {
        tokio::spawn(member(conn, arrivals.clone()));
    }
    println!("ready");
    // On each stdin line (a message's send time), answer "got COUNT LAST_US"
    // once this worker's connections all have it.
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        let sent: u64 = line.trim().parse()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = arrivals.lock().await.get(&sent).copied().unwrap_or_default();
            if got.0 >= args.count || tokio::time::Instant::now() > deadline {
                println!("got {} {}", got.0, got.1);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}

/// Users and sessions (device [`DEVICE`]) written into a migrated database;
/// returns the tokens file's text.
pub(crate) fn make_accounts(db: &Path, n: usize) -> anyhow::Result<String> {
    hutong_server::storage::migrate(db)?;
    let mut conn = hutong_server::storage::open_connection(db)?;
    let tx = conn.transaction()?;
    let now = hutong_server::storage::now_ms();
    let mut tokens = String::new();
    for i in 0..n {
        let account = format!("g{i:05}");
        tx.execute(
            "INSERT INTO users (account, display_name, password_hash, created_at) VALUES (?1, ?1, '!', ?2)",
            rusqlite::params![account, now],
        )?;
        let id = tx.last_insert_rowid();
        let token = format!("bench-group-{i}-{}", rand::random::<u64>());
        tx.execute(
            "INSERT INTO sessions (user_id, device, token_hash, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            rusqlite::params![id, DEVICE, Sha256::digest(token.as_bytes()).to_vec(), now],
        )?;
        tokens.push_str(&format!("{account}\t{token}\n"));
    }
    tx.commit()?;
    Ok(tokens)
}

/// The first account of `tokens` (from [`make_accounts`]) signed in, and
/// the group it made of all `members` accounts (user ids are 1.. in the
/// order the accounts were made; the first is its owner).
pub(crate) async fn everyone_group(
    addr: std::net::SocketAddr,
    tokens: &str,
    members: usize,
) -> anyhow::Result<(Conn, u64)> {
    let first = tokens.lines().next().and_then(|l| l.split_once('\t')).context("no accounts")?;
    let (mut owner, _) = Conn::open(addr, None, first.0, Secret::Token(first.1.to_owned())).await?;
    let member_ids: Vec<u64> = (2..=members as u64).collect();
    let create = v1::CreateGroup { name: "everyone".into(), member_ids };
    match owner.call(Payload::CreateGroup(create)).await? {
        Payload::Conversation(c) => Ok((owner, c.id)),
        other => bail!("creating the group failed: {other:?}"),
    }
}

/// Worker processes holding the connections of accounts `first..first +
/// count` of `tokens_path`, `workers` of them, each from its own loopback
/// address; returns once all are connected.
pub(crate) async fn start_workers(
    addr: SocketAddr,
    tokens_path: &Path,
    first: usize,
    count: usize,
    workers: usize,
) -> anyhow::Result<Vec<Worker>> {
    let exe = std::env::current_exe()?;
    let per = count.div_ceil(workers.max(1));
    let mut started = Vec::new();
    for w in 0..workers.max(1) {
        let offset = first + w * per;
        let n = per.min((first + count).saturating_sub(offset));
        if n == 0 {
            break;
        }
        let mut child = Command::new(&exe)
            .args(crate::wire::tls().then_some("--tls"))
            .arg("group-worker")
            .args(["--addr", &addr.to_string()])
            .arg("--tokens")
            .arg(tokens_path)
            .args(["--offset", &offset.to_string(), "--count", &n.to_string()])
            .args(["--source", &IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2 + w as u8)).to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        let stdin = child.stdin.take().expect("piped");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        match tokio::time::timeout(SETUP_TIMEOUT * 4, lines.next_line()).await {
            Ok(Ok(Some(l))) if l == "ready" => {}
            other => bail!("worker {w} did not get ready: {other:?}"),
        }
        started.push(Worker { _child: child, stdin, lines });
    }
    Ok(started)
}

/// Waits until the workers' connections all have what was sent at `sent`
/// (µs; a message's text or a notice's title), at most 30 s; returns how
/// many got it and the last arrival (µs).
pub(crate) async fn arrivals(workers: &mut [Worker], sent: u64) -> anyhow::Result<(usize, u64)> {
    let (mut got, mut last) = (0, 0);
    for w in workers.iter_mut() {
        w.stdin.write_all(format!("{sent}\n").as_bytes()).await?;
    }
    for w in workers.iter_mut() {
        let line = w.lines.next_line().await?.context("a worker ended")?;
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, n, at] = f.as_slice() else { bail!("unexpected worker line {line:?}") };
        got += n.parse::<usize>()?;
        last = last.max(at.parse::<u64>()?);
    }
    Ok((got, last))
}

pub(crate) struct Worker {
    _child: Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

#[derive(Debug, Clone, Copy)]
struct RunResult {
    median_ms: f64,
    p90_ms: f64,
    max_ms: f64,
    cpu_ms_per_message: f64,
}

async fn one_run(args: &GroupArgs, bin: &Path, ticks: u64) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let tokens = make_accounts(&dir.path().join("hutong.db"), args.members)?;
    let tokens_path = dir.path().join("tokens.tsv");
    std::fs::write(&tokens_path, &tokens)?;
    let server = {
        let (bin, data) = (bin.to_owned(), dir.path().to_owned());
        tokio::task::spawn_blocking(move || ServerProcess::start(&bin, &data, &[])).await??
    };
    // Account 0 sends; the others are spread over the workers.
    let receivers = args.members - 1;
    let mut workers = start_workers(server.addr, &tokens_path, 1, receivers, args.workers).await?;
    let (mut sender, conv) = everyone_group(server.addr, &tokens, args.members).await?;
    // Let the creation's pushes and reports settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = procfs::sample(server.pid)?;
    let mut latencies = Vec::with_capacity(args.messages);
    for i in 0..args.messages {
        let sent = now_us();
        let send = v1::SendMessage {
            conversation_id: conv,
            client_msg_id: format!("0190cccc-0000-7000-8000-{i:012}"),
            text: sent.to_string(),
            ..Default::default()
        };
        sender.send(Payload::SendMessage(send)).await?;
        let (got, last) = arrivals(&mut workers, sent).await?;
        if got < receivers {
            bail!("message {i}: only {got} of {receivers} members got it within 30 s");
        }
        latencies.push(last.saturating_sub(sent) as f64 / 1000.0);
    }
    // The delivery reports of the last message are part of its cost.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = procfs::sample(server.pid)?;
    let cpu_ms = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 * 1000.0 / ticks as f64;
    drop(workers);
    tokio::task::spawn_blocking(move || server.stop()).await??;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(RunResult {
        median_ms: at(0.5),
        p90_ms: at(0.9),
        max_ms: at(1.0),
        cpu_ms_per_message: cpu_ms / args.messages as f64,
    })
}

pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    if args.members < 2 || args.messages == 0 {
        bail!("a group needs at least 2 members and 1 message");
    }
    let bin = server_binary(args.server.clone())?;
    let ticks = procfs::clock_ticks();
    let mut runs = Vec::new();
    for run in 0..args.runs.max(1) {
        let r = one_run(&args, &bin, ticks).await?;
        println!(
            "run {run}: {} members, {} messages: last delivery median {:.1} ms, p90 {:.1} ms, max {:.1} ms; server CPU {:.2} ms per message",
            args.members, args.messages, r.median_ms, r.p90_ms, r.max_ms, r.cpu_ms_per_message
        );
        println!(
            "{}",
            serde_json::json!({"bench": "group", "run": run, "members": args.members, "messages": args.messages,
                "last_delivery_median_ms": r.median_ms, "last_delivery_p90_ms": r.p90_ms,
                "last_delivery_max_ms": r.max_ms, "server_cpu_ms_per_message": r.cpu_ms_per_message})
        );
        runs.push(r);
    }
    runs.sort_by(|a, b| a.median_ms.total_cmp(&b.median_ms));
    let m = runs[runs.len() / 2];
    println!(
        "median run: last delivery median {:.1} ms (p90 {:.1}, max {:.1}); server CPU {:.2} ms per message",
        m.median_ms, m.p90_ms, m.max_ms, m.cpu_ms_per_message
    );
    Ok(())
}
