//! The `idle` mode: memory per idle, authenticated connection.
//!
//! One process may hold at most 20,000 descriptors here, so the connections
//! are spread over worker processes (this same binary, `idle-worker`), each
//! from its own loopback source address. Every connection completes Hello
//! and a token Login, then only pings often enough to stay under the server's
//! idle timeout. The result is (server RSS with N connections − RSS before)/N.
//!
//! Accounts and tokens: password logins cost an Argon2id hash each (~50 ms,
//! two at a time), far too slow for thousands of connections. A token is
//! tied to a device but not to one connection, so the bench logs each of a
//! few hundred accounts in once with a password on device "bench" and then
//! opens many connections per account with that token. Those password logins
//! run against a *separate* server process that is then stopped: Argon2id
//! allocates 19 MiB per hash, and the allocator would keep that memory and
//! hand it out again to connections, hiding their true cost.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{SinkExt as _, StreamExt as _};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::{encode_envelope, Envelope, Payload};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::procfs;
use crate::report::{self, fixed};
use crate::server::{self, ServerProcess, PASSWORD};
use crate::wire::{Conn, SETUP_TIMEOUT};

#[derive(clap::Args, Clone, Debug)]
pub struct IdleArgs {
    /// Connection counts to measure, one fresh server each.
    #[arg(long, value_delimiter = ',', default_value = "5000,18000")]
    pub connections: Vec<usize>,
    /// Accounts the connections are spread over (one password login each).
    #[arg(long, default_value_t = 200)]
    pub accounts: usize,
    /// Connections per worker process (each process may hold 20,000 descriptors).
    #[arg(long, default_value_t = 6000)]
    pub per_worker: usize,
    /// Handshakes each worker has in progress at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds between the pings of one connection (the server closes a
    /// connection silent for 45 s by default).
    #[arg(long, default_value_t = 10)]
    pub ping_secs: u64,
    /// Seconds to wait after the last connection is up before measuring.
    #[arg(long, default_value_t = 5)]
    pub settle_secs: u64,
    /// Seconds over which the loaded server's memory is sampled (once a second;
    /// the largest sample counts). At least one ping period, so every
    /// connection has been through its ping path.
    #[arg(long, default_value_t = 15)]
    pub hold_secs: u64,
    /// Independent runs of every connection count; the summary shows medians.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// The server's `max_connections` (its default is 19000).
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// The server binary (default: `hutong-server` next to this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Where the temporary data directory goes (default: the system's temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Arguments of one worker process; the parent fills them in.
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    pub addr: SocketAddr,
    /// File of `account<TAB>token` lines.
    #[arg(long)]
    pub tokens: PathBuf,
    /// Index of this worker's first connection (picks the accounts).
    #[arg(long)]
    pub offset: usize,
    #[arg(long)]
    pub count: usize,
    /// Local address to connect from.
    #[arg(long)]
    pub source: Option<IpAddr>,
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10)]
    pub ping_secs: u64,
    /// The worker exits by itself after this long, whatever the parent does.
    #[arg(long, default_value_t = 900)]
    pub max_secs: u64,
}

/// A worker's reports to the parent, one JSON object per stdout line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WorkerReport {
    /// Every handshake has finished, well or not.
    Ready { connected: u64, failed: u64, first_error: Option<String> },
    /// Periodic: connections still open, and pongs received so far.
    Status { alive: u64, pongs: u64 },
}

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct IdleResult {
    pub bench: &'static str,
    /// 1-based run number, or 0 for the median over runs.
    pub run: usize,
    pub connections: usize,
    pub workers: usize,
    /// Connections that completed Hello and Login.
    pub connected: u64,
    pub failed: u64,
    /// Connections still open at the end of the hold.
    pub alive_at_end: u64,
    pub connect_secs: f64,
    pub rss_before_mib: f64,
    pub rss_loaded_mib: f64,
    pub rss_anon_before_mib: f64,
    pub rss_anon_loaded_mib: f64,
    /// (VmRSS loaded − VmRSS before) / connections.
    pub bytes_per_conn: f64,
    /// The same for anonymous memory only (heap, stacks).
    pub anon_bytes_per_conn: f64,
    /// Server CPU while holding the idle connections (pings only), % of one core.
    pub server_cpu_pct_hold: f64,
    /// VmRSS a few seconds after every connection closed.
    pub rss_after_close_mib: f64,
}

const KIB: f64 = 1024.0;

fn mib(kib: u64) -> f64 {
    kib as f64 / KIB
}

/// Runs one worker: opens its connections, reports, then holds them,
/// pinging, until its standard input closes or `max_secs` pass.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.tokens).context("reading the token file")?;
    let tokens: Arc<Vec<(String, String)>> = Arc::new(
        text.lines().filter_map(|l| l.split_once('\t')).map(|(a, t)| (a.to_owned(), t.to_owned())).collect(),
    );
    if tokens.is_empty() {
        bail!("the token file is empty");
    }
    let give_up = tokio::time::sleep(Duration::from_secs(args.max_secs));
    tokio::pin!(give_up);
    let alive = Arc::new(AtomicU64::new(0));
    let pongs = Arc::new(AtomicU64::new(0));
    let ping = Duration::from_secs(args.ping_secs.max(1));
    let (mut connected, mut failed, mut first_error) = (0u64, 0u64, None);
    let opens = futures::stream::iter(0..args.count)
        .map(|j| {
            let i = args.offset + j;
            let (account, token) = tokens[i % tokens.len()].clone();
            let (addr, source) = (args.addr, args.source);
            async move {
                let open = Conn::open(addr, source, &account, Secret::Token(token));
                let r = tokio::time::timeout(SETUP_TIMEOUT, open).await;
                (i, r.map_err(|_| anyhow::anyhow!("handshake timed out")).and_then(|r| r))
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    tokio::pin!(opens);
    loop {
        tokio::select! {
            next = opens.next() => match next {
                Some((i, Ok((conn, _)))) => {
                    connected += 1;
                    alive.fetch_add(1, Ordering::Relaxed);
                    // Spread the pings evenly over the period instead of all at once.
                    let phase = ping.mul_f64((i % 1000) as f64 / 1000.0);
                    tokio::spawn(hold(conn, phase, ping, alive.clone(), pongs.clone()));
                }
                Some((_, Err(e))) => {
                    failed += 1;
                    first_error.get_or_insert(format!("{e:#}"));
                }
                None => break,
            },
            _ = &mut give_up => bail!("the handshakes did not finish within --max-secs"),
        }
    }
    say(&WorkerReport::Ready { connected, failed, first_error });
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut status = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(_)) => {}
                // The parent closed our input (or died): time to go.
                Ok(None) | Err(_) => break,
            },
            _ = status.tick() => say(&WorkerReport::Status {
                alive: alive.load(Ordering::Relaxed),
                pongs: pongs.load(Ordering::Relaxed),
            }),
            _ = &mut give_up => break,
        }
    }
    Ok(())
}

fn say(report: &WorkerReport) {
    if let Ok(line) = serde_json::to_string(report) {
        println!("{line}");
    }
}

/// Keeps one connection open: a ping every `every`, first after `phase`.
async fn hold(
    mut conn: Conn,
    phase: Duration,
    every: Duration,
    alive: Arc<AtomicU64>,
    pongs: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                nonce += 1;
                let id = conn.next_id();
                let ping = encode_envelope(&Envelope::new(id, Payload::Ping(v1::Ping { nonce })));
                if conn.framed.send(ping).await.is_err() {
                    break;
                }
            }
            frame = conn.recv() => match frame {
                Ok(env) => match env.payload {
                    Some(Payload::Pong(_)) => { pongs.fetch_add(1, Ordering::Relaxed); }
                    Some(Payload::Disconnect(_)) => break,
                    _ => {}
                },
                Err(_) => break,
            },
        }
    }
    alive.fetch_sub(1, Ordering::Relaxed);
}

/// Password-logs every account in once (device "bench") against a throwaway
/// server, and writes the tokens to `path`.
pub(crate) async fn make_tokens(
    bin: &Path,
    data: &Path,
    accounts: &[String],
    path: &Path,
) -> anyhow::Result<()> {
    let server = {
        let (bin, data) = (bin.to_owned(), data.to_owned());
        tokio::task::spawn_blocking(move || ServerProcess::start(&bin, &data, &[])).await??
    };
    let addr = server.addr;
    // The server hashes two passwords at a time; four in flight keeps it busy.
    let logins = futures::stream::iter(accounts.iter().cloned())
        .map(|account| async move {
            let (_conn, ok) = Conn::open(addr, None, &account, Secret::Password(PASSWORD.into())).await?;
            Ok::<_, anyhow::Error>(format!("{account}\t{}\n", ok.token))
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let mut text = String::new();
    for line in logins {
        text.push_str(&line?);
    }
    std::fs::write(path, text)?;
    tokio::task::spawn_blocking(move || server.stop()).await??;
    Ok(())
}

/// Worker reports, tagged with the worker's index.
type Reports = mpsc::Receiver<(usize, WorkerReport)>;

struct Worker {
    child: Child,
    /// Closing it tells the worker to close its connections and exit.
    stdin: Option<tokio::process::ChildStdin>,
}

/// Starts the workers for `n` connections; their reports arrive on the
/// returned channel tagged with the worker's index.
fn spawn_workers(
    args: &IdleArgs,
    addr: SocketAddr,
    tokens: &Path,
    n: usize,
) -> anyhow::Result<(Vec<Worker>, Reports)> {
    let exe = std::env::current_exe()?;
    let per = args.per_worker.max(1);
    let count = n.div_ceil(per);
    if count > 250 {
        bail!("{count} workers would need more loopback source addresses than there are");
    }
    let (tx, rx) = mpsc::channel(1024);
    let mut workers = Vec::with_capacity(count);
    for w in 0..count {
        let offset = w * per;
        let this = per.min(n - offset);
        // Each worker its own source address keeps ephemeral ports plentiful.
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + w as u8));
        let mut child = Command::new(&exe)
            .args(crate::wire::tls().then_some("--tls"))
            .arg("idle-worker")
            .args(["--addr", &addr.to_string()])
            .arg("--tokens")
            .arg(tokens)
            .args(["--offset", &offset.to_string(), "--count", &this.to_string()])
            .args(["--source", &source.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--ping-secs", &args.ping_secs.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<WorkerReport>(&line) {
                    Ok(r) => {
                        if tx.send((w, r)).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("worker {w}: {line}"),
                }
            }
        });
        workers.push(Worker { child, stdin });
    }
    Ok((workers, rx))
}

async fn measure(
    args: &IdleArgs,
    bin: &Path,
    data: &Path,
    tokens: &Path,
    n: usize,
    run: usize,
    ticks: u64,
) -> anyhow::Result<IdleResult> {
    let env = [("HUTONG_MAX_CONNECTIONS", args.max_connections.to_string())];
    let server = {
        let (bin, data) = (bin.to_owned(), data.to_owned());
        tokio::task::spawn_blocking(move || ServerProcess::start(&bin, &data, &env)).await??
    };
    // Let start-up allocations (thread pools, SQLite caches) settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = procfs::sample(server.pid)?;
    let started = Instant::now();
    let (mut workers, mut reports) = spawn_workers(args, server.addr, tokens, n)?;
    let mut ready: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut alive: HashMap<usize, u64> = HashMap::new();
    let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while ready.len() < workers.len() {
        let report = tokio::time::timeout_at(connect_deadline, reports.recv())
            .await
            .context("the workers did not finish connecting within 10 minutes")?;
        match report {
            Some((w, WorkerReport::Ready { connected, failed, first_error })) => {
                if let Some(e) = first_error {
                    eprintln!("  worker {w}: {failed} handshakes failed, first: {e}");
                }
                ready.insert(w, (connected, failed));
            }
            Some((w, WorkerReport::Status { alive: a, .. })) => {
                alive.insert(w, a);
            }
            None => bail!("every worker exited before reporting"),
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let connected: u64 = ready.values().map(|r| r.0).sum();
    let failed: u64 = ready.values().map(|r| r.1).sum();
    eprintln!("run {run}: {connected} of {n} connections up in {connect_secs:.1} s; settling");
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let hold_start = procfs::sample(server.pid)?;
    let mut loaded = hold_start;
    let hold_end = tokio::time::Instant::now() + Duration::from_secs(args.hold_secs);
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut last = hold_start;
    loop {
        tokio::select! {
            _ = every.tick() => {
                let s = procfs::sample(server.pid)?;
                if s.rss_kib > loaded.rss_kib {
                    loaded = s;
                }
                last = s;
            }
            Some((w, r)) = reports.recv() => {
                if let WorkerReport::Status { alive: a, .. } = r {
                    alive.insert(w, a);
                }
            }
        }
        if tokio::time::Instant::now() >= hold_end {
            break;
        }
    }
    // Fresh status lines come every two seconds; wait for one from each worker.
    let mut fresh = std::collections::HashSet::new();
    let status_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fresh.len() < workers.len() {
        match tokio::time::timeout_at(status_deadline, reports.recv()).await {
            Ok(Some((w, WorkerReport::Status { alive: a, .. }))) => {
                alive.insert(w, a);
                fresh.insert(w);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let alive_at_end: u64 = alive.values().sum();
    for w in &mut workers {
        w.stdin.take();
    }
    for w in &mut workers {
        if tokio::time::timeout(Duration::from_secs(30), w.child.wait()).await.is_err() {
            let _ = w.child.kill().await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_close = procfs::sample(server.pid)?;
    tokio::task::spawn_blocking(move || server.stop()).await??;

    let per = |loaded_kib: u64, before_kib: u64| {
        (loaded_kib as f64 - before_kib as f64) * KIB / connected.max(1) as f64
    };
    Ok(IdleResult {
        bench: "idle",
        run,
        connections: n,
        workers: workers.len(),
        connected,
        failed,
        alive_at_end,
        connect_secs,
        rss_before_mib: mib(before.rss_kib),
        rss_loaded_mib: mib(loaded.rss_kib),
        rss_anon_before_mib: mib(before.rss_anon_kib),
        rss_anon_loaded_mib: mib(loaded.rss_anon_kib),
        bytes_per_conn: per(loaded.rss_kib, before.rss_kib),
        anon_bytes_per_conn: per(loaded.rss_anon_kib, before.rss_anon_kib),
        server_cpu_pct_hold: procfs::cpu_percent(&hold_start, &last, ticks),
        rss_after_close_mib: mib(after_close.rss_kib),
    })
}

fn median_result(runs: &[&IdleResult]) -> IdleResult {
    let m = |f: &dyn Fn(&IdleResult) -> f64| report::median(runs.iter().map(|r| f(r)));
    IdleResult {
        run: 0,
        connected: m(&|r| r.connected as f64) as u64,
        failed: m(&|r| r.failed as f64) as u64,
        alive_at_end: m(&|r| r.alive_at_end as f64) as u64,
        connect_secs: m(&|r| r.connect_secs),
        rss_before_mib: m(&|r| r.rss_before_mib),
        rss_loaded_mib: m(&|r| r.rss_loaded_mib),
        rss_anon_before_mib: m(&|r| r.rss_anon_before_mib),
        rss_anon_loaded_mib: m(&|r| r.rss_anon_loaded_mib),
        bytes_per_conn: m(&|r| r.bytes_per_conn),
        anon_bytes_per_conn: m(&|r| r.anon_bytes_per_conn),
        server_cpu_pct_hold: m(&|r| r.server_cpu_pct_hold),
        rss_after_close_mib: m(&|r| r.rss_after_close_mib),
        ..runs[0].clone()
    }
}

pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    if args.connections.is_empty() || args.connections.contains(&0) || args.accounts == 0 || args.runs == 0 {
        bail!("--connections, --accounts and --runs must be positive");
    }
    if args.ping_secs == 0 || args.ping_secs >= 40 {
        bail!("--ping-secs must be between 1 and 39 (the server's idle timeout is 45 s)");
    }
    let bin = server::server_binary(args.server_bin.clone())?;
    let work = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new().prefix("hutong-bench-idle-").tempdir_in(&work)?;
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens.tsv");
    let names: Vec<String> = (0..args.accounts).map(|i| format!("idle{i:04}")).collect();
    eprintln!("creating {} accounts in {}", names.len(), data.display());
    {
        let (bin, data, names) = (bin.clone(), data.clone(), names.clone());
        tokio::task::spawn_blocking(move || server::prepare_accounts(&bin, &data, &names)).await??;
    }
    eprintln!("logging each account in once with its password");
    make_tokens(&bin, &data, &names, &tokens).await?;
    let ticks = procfs::clock_ticks();
    let mut all = Vec::new();
    for run in 1..=args.runs {
        for &n in &args.connections {
            let r = measure(&args, &bin, &data, &tokens, n, run, ticks).await?;
            eprintln!(
                "run {run} {n} connections: {} up, RSS {:.1} -> {:.1} MiB, {:.0} bytes per connection ({:.0} anonymous)",
                r.connected, r.rss_before_mib, r.rss_loaded_mib, r.bytes_per_conn, r.anon_bytes_per_conn
            );
            all.push(r);
        }
    }
    let medians: Vec<IdleResult> = args
        .connections
        .iter()
        .map(|n| median_result(&all.iter().filter(|r| r.connections == *n).collect::<Vec<_>>()))
        .collect();
    let rows_of = |results: &[IdleResult]| -> Vec<Vec<String>> {
        results
            .iter()
            .map(|r| {
                vec![
                    if r.run == 0 { "median".into() } else { r.run.to_string() },
                    r.connections.to_string(),
                    r.connected.to_string(),
                    r.alive_at_end.to_string(),
                    fixed(r.connect_secs, 1),
                    fixed(r.rss_before_mib, 1),
                    fixed(r.rss_loaded_mib, 1),
                    fixed(r.bytes_per_conn, 0),
                    fixed(r.anon_bytes_per_conn, 0),
                    fixed(r.server_cpu_pct_hold, 1),
                    fixed(r.rss_after_close_mib, 1),
                ]
            })
            .collect()
    };
    let headers = [
        "run",
        "conns",
        "connected",
        "alive",
        "connect s",
        "RSS before MiB",
        "RSS loaded MiB",
        "bytes/conn",
        "anon bytes/conn",
        "srv CPU% hold",
        "RSS closed MiB",
    ];
    report::print_table(
        &format!("idle connections (ping every {} s; {} accounts)", args.ping_secs, args.accounts),
        &headers,
        &rows_of(&all),
    );
    if args.runs > 1 {
        report::print_table(&format!("median of {} runs", args.runs), &headers, &rows_of(&medians));
    }
    report::print_json(&all);
    if args.runs > 1 {
        report::print_json(&medians);
    }
    Ok(())
}
