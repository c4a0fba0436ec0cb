//! The `throughput` mode: pairs of users, each pair with its own direct
//! conversation; the senders send `SendMessage` and the receivers read the
//! pushed `Message`. Steps at fixed offered rates (open loop) measure latency
//! under a known load; the `--max` step keeps a bounded window of
//! unacknowledged messages per sender (closed loop) to find the peak rate of
//! durably committed messages.
//!
//! Latency is measured from the moment a message was *due* by the schedule,
//! not from when the bench managed to write it, so a stalled server cannot
//! hide its stall by slowing the load generator down (coordinated omission).
//! The due time travels in the message text, so the receiver can compute the
//! end-to-end latency without any shared state with the sender.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::SinkExt as _;
use hdrhistogram::Histogram;
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::Payload;
use serde::Serialize;
use tokio::time::{interval, sleep_until, MissedTickBehavior};

use crate::procfs;
use crate::report::{self, fixed, Latency};
use crate::server::{self, ServerProcess, PASSWORD};
use crate::wire::Conn;

#[derive(clap::Args, Clone, Debug)]
pub struct ThroughputArgs {
    /// Sender/receiver pairs; each pair has its own direct conversation and
    /// two connections.
    #[arg(long, default_value_t = 16)]
    pub pairs: usize,
    /// Offered rates to step through, in messages per second summed over all
    /// senders (0 or an empty list: no fixed-rate steps).
    #[arg(long, value_delimiter = ',', default_value = "10000,20000,50000")]
    pub rates: Vec<u64>,
    /// Length of each step in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Add a closed-loop step that sends as fast as acknowledgements allow.
    #[arg(long)]
    pub max: bool,
    /// Unacknowledged messages per sender in the `--max` step.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Most unacknowledged messages per sender in a fixed-rate step; kept
    /// under the server's 512 requests in flight per connection so the server
    /// never stops reading (late messages still count their full latency).
    #[arg(long, default_value_t = 400)]
    pub max_outstanding: usize,
    /// Size of each message text in bytes (at least 21: the due time and a separator).
    #[arg(long, default_value_t = 100)]
    pub text_bytes: usize,
    /// Independent runs, each with a fresh server and database; the summary
    /// shows the median of each figure.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Seconds a step may take after its last send for the last answers.
    #[arg(long, default_value_t = 15)]
    pub drain_secs: u64,
    /// Seconds of quiet between steps.
    #[arg(long, default_value_t = 2)]
    pub pause_secs: u64,
    /// Before each step, wait up to this long for the machine to be quiet
    /// (other people's builds share these cores).
    #[arg(long, default_value_t = 300)]
    pub wait_quiet_secs: u64,
    /// Repeat a step up to this many times when other processes used more
    /// than 15 % of a core during it.
    #[arg(long, default_value_t = 3)]
    pub redo_disturbed: usize,
    /// The server binary (default: `hutong-server` next to this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Where the temporary data directories go (default: the system's temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// One step of one run.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub bench: &'static str,
    /// 1-based run number, or 0 for the median over runs.
    pub run: usize,
    /// "rate" (open loop at `offered_msgs_s`) or "max" (closed loop, `window` per sender).
    pub mode: &'static str,
    pub offered_msgs_s: Option<u64>,
    pub window: Option<usize>,
    pub pairs: usize,
    pub seconds: u64,
    pub text_bytes: usize,
    pub sent: u64,
    pub acked: u64,
    pub received: u64,
    pub errors: u64,
    /// Acknowledged (durably committed) messages per second, from the step's
    /// start to its last acknowledgement.
    pub acked_msgs_s: f64,
    /// From due time to the sender's `SendAck`.
    pub ack_ms: Latency,
    /// From due time to the receiver's pushed `Message`.
    pub e2e_ms: Latency,
    /// Server CPU over the sending window, percent of one core (200 = both).
    pub server_cpu_pct: f64,
    pub server_rss_mib_max: f64,
    /// The load generator's own CPU over the same window.
    pub bench_cpu_pct: f64,
    /// CPU used by everything else on the machine over the window (other
    /// people's builds and tests share these two cores).
    pub other_cpu_pct: f64,
    /// CPU time the hypervisor gave to other guests, % of one core.
    pub steal_pct: f64,
    /// Writes and cache flushes (fsyncs) on the data directory's disk.
    pub disk_writes_per_s: f64,
    pub disk_write_ms_avg: f64,
    pub flushes_per_s: f64,
    pub flush_ms_avg: f64,
    /// Other processes used more than 15 % of a core during the step.
    pub disturbed: bool,
    /// Offered rate carried (≥ 97 %) with nothing lost or refused and end-to-end p99 < 50 ms.
    pub sustained: bool,
}

/// The p99 bound a fixed-rate step must meet to count as sustained.
const SUSTAINED_P99_MS: f64 = 50.0;
/// Above this much CPU used by other processes a step is flagged as disturbed.
const DISTURBED_CPU_PCT: f64 = 15.0;
/// Receivers ping this often so the server's idle timeout never closes them.
const PING_EVERY: Duration = Duration::from_secs(10);

/// The time origin of due times carried in message texts.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn text_for(due: Instant, text_bytes: usize) -> String {
    let ns = due.duration_since(base()).as_nanos();
    let mut text = format!("{ns:020}|");
    while text.len() < text_bytes {
        text.push('x');
    }
    text
}

fn due_of(text: &str) -> Option<Instant> {
    let ns: u64 = text.get(..20)?.parse().ok()?;
    Some(base() + Duration::from_nanos(ns))
}

fn micros_since(t: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(t).as_micros() as u64
}

/// A sender's connection and its conversation; a receiver's connection.
struct Pair {
    sender: Conn,
    receiver: Conn,
    conversation_id: u64,
}

#[derive(Clone, Copy)]
enum Pace {
    /// Open loop: `count` messages at `per_sec` from the step's start.
    Rate { per_sec: f64, count: u64, max_outstanding: usize },
    /// Closed loop: keep `window` unacknowledged until `until`.
    Window { window: usize, until: Instant },
}

struct SenderOutcome {
    sent: u64,
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    ack: Histogram<u64>,
    last_ack: Option<Instant>,
    /// The connection failed; it cannot be used for another step.
    broken: bool,
}

struct ReceiverOutcome {
    received: u64,
    e2e: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    broken: bool,
}

/// Shared between the sender and receiver of one pair: how many messages the
/// sender has sent this step, and whether it has stopped sending.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    done: AtomicBool,
}

struct StepSpec {
    step: usize,
    pace_label: &'static str,
    offered: Option<u64>,
    epoch: Instant,
    deadline: Instant,
    /// The data directory's block device, for disk statistics.
    disk: Option<(u64, u64)>,
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the same list
async fn run_sender(
    mut conn: Conn,
    conversation_id: u64,
    tag: String,
    pace: Pace,
    epoch: Instant,
    deadline: Instant,
    text_bytes: usize,
    progress: Arc<Progress>,
) -> (Conn, SenderOutcome) {
    let mut out = SenderOutcome {
        sent: 0,
        acked: 0,
        errors: 0,
        first_error: None,
        ack: report::new_histogram(),
        last_ack: None,
        broken: false,
    };
    // Request id -> the time latency is measured from.
    let mut outstanding: HashMap<u64, Instant> = HashMap::new();
    sleep_until(epoch.into()).await;
    let mut tick = interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let now = Instant::now();
        let all_sent = match pace {
            Pace::Rate { count, .. } => out.sent >= count,
            Pace::Window { until, .. } => now >= until,
        };
        if all_sent {
            progress.done.store(true, Ordering::Release);
            if outstanding.is_empty() {
                break;
            }
        }
        if now >= deadline || out.broken {
            break;
        }
        // Write whatever is due now: by the schedule, or to refill the window.
        let mut wrote = false;
        let room = match pace {
            Pace::Rate { per_sec, count, max_outstanding } => {
                let due = ((now.duration_since(epoch).as_secs_f64() * per_sec) as u64 + 1).min(count);
                (due.saturating_sub(out.sent) as usize).min(max_outstanding.saturating_sub(outstanding.len()))
            }
            Pace::Window { window, .. } if !all_sent => window.saturating_sub(outstanding.len()),
            Pace::Window { .. } => 0,
        };
        for _ in 0..room {
            let due = match pace {
                Pace::Rate { per_sec, .. } => epoch + Duration::from_secs_f64(out.sent as f64 / per_sec),
                Pace::Window { .. } => Instant::now(),
            };
            let msg = v1::SendMessage {
                conversation_id,
                client_msg_id: format!("{tag}-{}", out.sent),
                text: text_for(due, text_bytes),
                ..Default::default()
            };
            match conn.feed(Payload::SendMessage(msg)).await {
                Ok(id) => {
                    outstanding.insert(id, due);
                    out.sent += 1;
                    wrote = true;
                }
                Err(e) => {
                    out.first_error.get_or_insert(format!("send failed: {e:#}"));
                    out.errors += 1;
                    out.broken = true;
                    break;
                }
            }
        }
        if wrote {
            progress.sent.store(out.sent, Ordering::Release);
            if let Err(e) = conn.framed.flush().await {
                out.first_error.get_or_insert(format!("flush failed: {e:#}"));
                out.errors += 1;
                out.broken = true;
                break;
            }
        }
        tokio::select! {
            biased;
            frame = conn.recv() => match frame {
                Ok(env) => {
                    let now = Instant::now();
                    match env.payload {
                        Some(Payload::SendAck(_)) => {
                            if let Some(due) = outstanding.remove(&env.response_to) {
                                report::record(&mut out.ack, micros_since(due, now));
                                out.acked += 1;
                                out.last_ack = Some(now);
                            }
                        }
                        Some(Payload::Error(e)) => {
                            outstanding.remove(&env.response_to);
                            out.errors += 1;
                            out.first_error.get_or_insert(format!("server error: {e}"));
                        }
                        Some(Payload::Disconnect(d)) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(format!("disconnected: {}", d.message));
                            out.broken = true;
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(format!("receive failed: {e:#}"));
                    out.broken = true;
                }
            },
            _ = tick.tick(), if !all_sent => {}
            _ = sleep_until(deadline.into()) => {}
        }
    }
    progress.sent.store(out.sent, Ordering::Release);
    progress.done.store(true, Ordering::Release);
    (conn, out)
}

async fn run_receiver(mut conn: Conn, deadline: Instant, progress: Arc<Progress>) -> (Conn, ReceiverOutcome) {
    let mut out = ReceiverOutcome {
        received: 0,
        e2e: report::new_histogram(),
        errors: 0,
        first_error: None,
        broken: false,
    };
    let mut check = interval(Duration::from_millis(20));
    check.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_ping = Instant::now();
    loop {
        if progress.done.load(Ordering::Acquire) && out.received >= progress.sent.load(Ordering::Acquire) {
            break;
        }
        tokio::select! {
            biased;
            frame = conn.recv() => match frame {
                Ok(env) => {
                    let now = Instant::now();
                    match env.payload {
                        Some(Payload::Message(m)) => {
                            if let Some(due) = due_of(&m.text) {
                                report::record(&mut out.e2e, micros_since(due, now));
                                out.received += 1;
                            }
                        }
                        Some(Payload::Disconnect(d)) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(format!("receiver disconnected: {}", d.message));
                            out.broken = true;
                            break;
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(format!("receiver failed: {e:#}"));
                    out.broken = true;
                    break;
                }
            },
            _ = check.tick() => {
                if last_ping.elapsed() >= PING_EVERY {
                    last_ping = Instant::now();
                    if let Err(e) = conn.send(Payload::Ping(v1::Ping { nonce: 1 })).await {
                        out.errors += 1;
                        out.first_error.get_or_insert(format!("ping failed: {e:#}"));
                        out.broken = true;
                        break;
                    }
                }
            }
            _ = sleep_until(deadline.into()) => break,
        }
    }
    (conn, out)
}

/// What the machine did during a step's sending window.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    server_cpu_pct: f64,
    server_rss_mib_max: f64,
    bench_cpu_pct: f64,
    /// Busy CPU of everything else on the machine (others' builds, say).
    other_cpu_pct: f64,
    steal_pct: f64,
    flushes_per_s: f64,
    flush_ms_avg: f64,
    disk_writes_per_s: f64,
    disk_write_ms_avg: f64,
}

/// Samples the server, this process and the machine from `epoch` to `end`.
async fn sample_window(
    pid: u32,
    disk: Option<(u64, u64)>,
    epoch: Instant,
    end: Instant,
    ticks: u64,
) -> Usage {
    sleep_until(epoch.into()).await;
    let (Ok(first), Ok(first_self)) = (procfs::sample(pid), procfs::sample(0)) else {
        return Usage::default();
    };
    let first_sys = procfs::system_sample(disk);
    let mut max_rss = first.rss_kib;
    let (mut last, mut last_self) = (first, first_self);
    let mut every = interval(Duration::from_millis(250));
    while Instant::now() < end {
        tokio::select! {
            _ = every.tick() => {}
            _ = sleep_until(end.into()) => {}
        }
        if let (Ok(s), Ok(me)) = (procfs::sample(pid), procfs::sample(0)) {
            max_rss = max_rss.max(s.rss_kib);
            (last, last_self) = (s, me);
        }
    }
    let last_sys = procfs::system_sample(disk);
    let wall = last.at.duration_since(first.at).as_secs_f64().max(1e-3);
    let pct = |t: u64| t as f64 / ticks as f64 / wall * 100.0;
    let server_cpu_pct = procfs::cpu_percent(&first, &last, ticks);
    let bench_cpu_pct = procfs::cpu_percent(&first_self, &last_self, ticks);
    let machine = pct(last_sys.busy_ticks.saturating_sub(first_sys.busy_ticks));
    let (d0, d1) = (first_sys.disk, last_sys.disk);
    let flushes = d1.flushes.saturating_sub(d0.flushes);
    let writes = d1.writes.saturating_sub(d0.writes);
    Usage {
        server_cpu_pct,
        server_rss_mib_max: max_rss as f64 / 1024.0,
        bench_cpu_pct,
        other_cpu_pct: (machine - server_cpu_pct - bench_cpu_pct).max(0.0),
        steal_pct: pct(last_sys.steal_ticks.saturating_sub(first_sys.steal_ticks)),
        flushes_per_s: flushes as f64 / wall,
        flush_ms_avg: d1.flush_ms.saturating_sub(d0.flush_ms) as f64 / flushes.max(1) as f64,
        disk_writes_per_s: writes as f64 / wall,
        disk_write_ms_avg: d1.write_ms.saturating_sub(d0.write_ms) as f64 / writes.max(1) as f64,
    }
}

async fn run_step(
    args: &ThroughputArgs,
    run: usize,
    spec: StepSpec,
    pace: Pace,
    pairs: Vec<Pair>,
    server: &ServerProcess,
    ticks: u64,
) -> anyhow::Result<(StepResult, Vec<Pair>)> {
    let send_end = spec.epoch + Duration::from_secs(args.seconds);
    let sampler = tokio::spawn(sample_window(server.pid, spec.disk, spec.epoch, send_end, ticks));
    let mut tasks = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.into_iter().enumerate() {
        let progress = Arc::new(Progress::default());
        let tag = format!("r{run}s{}p{i}", spec.step);
        let sender = tokio::spawn(run_sender(
            pair.sender,
            pair.conversation_id,
            tag,
            pace,
            spec.epoch,
            spec.deadline,
            args.text_bytes,
            progress.clone(),
        ));
        let receiver = tokio::spawn(run_receiver(pair.receiver, spec.deadline, progress));
        tasks.push((sender, receiver, pair.conversation_id));
    }
    let mut pairs = Vec::with_capacity(tasks.len());
    let (mut ack, mut e2e) = (report::new_histogram(), report::new_histogram());
    let (mut sent, mut acked, mut received, mut errors) = (0, 0, 0, 0);
    let mut last_ack = spec.epoch;
    let mut first_error = None;
    let mut broken = false;
    for (sender, receiver, conversation_id) in tasks {
        let (sender, s) = sender.await.context("a sender task failed")?;
        let (receiver, r) = receiver.await.context("a receiver task failed")?;
        broken |= s.broken || r.broken;
        ack.add(&s.ack)?;
        e2e.add(&r.e2e)?;
        sent += s.sent;
        acked += s.acked;
        received += r.received;
        errors += s.errors + r.errors;
        if let Some(t) = s.last_ack {
            last_ack = last_ack.max(t);
        }
        first_error = first_error.or(s.first_error).or(r.first_error);
        pairs.push(Pair { sender, receiver, conversation_id });
    }
    let usage = sampler.await?;
    if let Some(e) = &first_error {
        eprintln!("  first error in this step: {e}");
    }
    let span = last_ack.duration_since(spec.epoch).as_secs_f64().max(1e-3);
    let acked_msgs_s = acked as f64 / span;
    let e2e_ms = Latency::of(&e2e);
    let sustained = spec.offered.is_some_and(|o| acked_msgs_s >= 0.97 * o as f64)
        && errors == 0
        && received == sent
        && acked == sent
        && e2e_ms.p99 < SUSTAINED_P99_MS;
    let result = StepResult {
        bench: "throughput",
        run,
        mode: spec.pace_label,
        offered_msgs_s: spec.offered,
        window: matches!(pace, Pace::Window { .. }).then_some(args.window),
        pairs: args.pairs,
        seconds: args.seconds,
        text_bytes: args.text_bytes,
        sent,
        acked,
        received,
        errors,
        acked_msgs_s,
        ack_ms: Latency::of(&ack),
        e2e_ms,
        server_cpu_pct: usage.server_cpu_pct,
        server_rss_mib_max: usage.server_rss_mib_max,
        bench_cpu_pct: usage.bench_cpu_pct,
        other_cpu_pct: usage.other_cpu_pct,
        steal_pct: usage.steal_pct,
        disk_writes_per_s: usage.disk_writes_per_s,
        disk_write_ms_avg: usage.disk_write_ms_avg,
        flushes_per_s: usage.flushes_per_s,
        flush_ms_avg: usage.flush_ms_avg,
        disturbed: usage.other_cpu_pct > DISTURBED_CPU_PCT,
        sustained,
    };
    if usage.other_cpu_pct > DISTURBED_CPU_PCT {
        eprintln!(
            "  warning: other processes used {:.0}% CPU during this step; its figures are disturbed",
            usage.other_cpu_pct
        );
    }
    if broken {
        // Report what was measured, then stop: later steps would run on fewer pairs.
        report::print_json(std::slice::from_ref(&result));
        bail!("a connection was lost during the step: {}", first_error.unwrap_or_default());
    }
    Ok((result, pairs))
}

/// Pings every connection, so waiting between steps never reaches the
/// server's idle timeout. The pongs are skipped by the next step's readers.
async fn keep_alive(pairs: &mut [Pair]) -> anyhow::Result<()> {
    for p in pairs {
        p.sender.send(Payload::Ping(v1::Ping { nonce: 0 })).await?;
        p.receiver.send(Payload::Ping(v1::Ping { nonce: 0 })).await?;
    }
    Ok(())
}

/// Logs in both sides of every pair and opens their direct conversations.
async fn set_up_pairs(server: &ServerProcess, count: usize) -> anyhow::Result<Vec<Pair>> {
    let addr = server.addr;
    let mut set_ups = Vec::with_capacity(count);
    for i in 0..count {
        set_ups.push(tokio::spawn(async move {
            let (receiver, r_ok) =
                Conn::open(addr, None, &format!("r{i}"), Secret::Password(PASSWORD.into())).await?;
            let (mut sender, _) =
                Conn::open(addr, None, &format!("s{i}"), Secret::Password(PASSWORD.into())).await?;
            let state =
                match sender.call(Payload::OpenDirect(v1::OpenDirect { user_id: r_ok.user_id })).await? {
                    Payload::Conversation(state) => state,
                    other => bail!("expected a conversation, got {other:?}"),
                };
            Ok::<_, anyhow::Error>(Pair { sender, receiver, conversation_id: state.id })
        }));
    }
    let mut pairs = Vec::with_capacity(count);
    for s in set_ups {
        pairs.push(s.await??);
    }
    Ok(pairs)
}

async fn one_run(args: &ThroughputArgs, run: usize, ticks: u64) -> anyhow::Result<Vec<StepResult>> {
    let bin = server::server_binary(args.server_bin.clone())?;
    let work = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new().prefix("hutong-bench-").tempdir_in(&work)?;
    let data = dir.path().to_owned();
    let names: Vec<String> = (0..args.pairs).flat_map(|i| [format!("s{i}"), format!("r{i}")]).collect();
    eprintln!("run {run}: creating {} accounts in {}", names.len(), data.display());
    {
        let (bin, data) = (bin.clone(), data.clone());
        tokio::task::spawn_blocking(move || server::prepare_accounts(&bin, &data, &names)).await??;
    }
    let server = {
        let (bin, data) = (bin.clone(), data.clone());
        // Capacity, not the per-person policy: each sender here sends thousands a second.
        let env = [("HUTONG_SEND_RATE_PER_SEC", "0".to_owned())];
        tokio::task::spawn_blocking(move || ServerProcess::start(&bin, &data, &env)).await??
    };
    eprintln!("run {run}: server pid {} on {}; logging in {} pairs", server.pid, server.addr, args.pairs);
    let mut pairs = set_up_pairs(&server, args.pairs).await?;

    let mut steps: Vec<(&'static str, Option<u64>)> =
        args.rates.iter().filter(|r| **r > 0).map(|r| ("rate", Some(*r))).collect();
    if args.max {
        steps.push(("max", None));
    }
    let mut results = Vec::with_capacity(steps.len());
    // Numbers every attempt, so client message ids never repeat within a run.
    let mut attempt_no = 0;
    for (label, offered) in steps {
        for attempt in 0..=args.redo_disturbed {
            let waiting = Instant::now();
            loop {
                // The server closes connections silent for 45 s; the wait may be longer.
                keep_alive(&mut pairs).await?;
                if procfs::wait_for_quiet(Duration::from_secs(10), 20.0, ticks).await {
                    break;
                }
                if waiting.elapsed() >= Duration::from_secs(args.wait_quiet_secs) {
                    eprintln!(
                        "  warning: the machine did not become quiet within {} s",
                        args.wait_quiet_secs
                    );
                    break;
                }
            }
            // A short lead so every task is parked on the start line at the epoch.
            let epoch = Instant::now() + Duration::from_millis(200);
            let send_end = epoch + Duration::from_secs(args.seconds);
            let deadline = send_end + Duration::from_secs(args.drain_secs);
            let pace = match offered {
                Some(rate) => {
                    let per_sec = rate as f64 / args.pairs as f64;
                    let count = (per_sec * args.seconds as f64).round() as u64;
                    Pace::Rate { per_sec, count, max_outstanding: args.max_outstanding }
                }
                None => Pace::Window { window: args.window, until: send_end },
            };
            let disk = procfs::device_of(&data);
            let spec = StepSpec { step: attempt_no, pace_label: label, offered, epoch, deadline, disk };
            attempt_no += 1;
            let (result, back) = run_step(args, run, spec, pace, pairs, &server, ticks).await?;
            pairs = back;
            eprintln!(
                "run {run} {label} {}: acked {:.0}/s, e2e p50 {:.2} p99 {:.2} p99.9 {:.2} ms, server CPU {:.0}%, bench CPU {:.0}%, other CPU {:.0}%, {:.0} fsync/s{}",
                offered.map_or_else(|| format!("window {}", args.window), |o| format!("{o}/s")),
                result.acked_msgs_s,
                result.e2e_ms.p50,
                result.e2e_ms.p99,
                result.e2e_ms.p999,
                result.server_cpu_pct,
                result.bench_cpu_pct,
                result.other_cpu_pct,
                result.flushes_per_s,
                if result.errors > 0 { format!(", {} errors", result.errors) } else { String::new() },
            );
            tokio::time::sleep(Duration::from_secs(args.pause_secs)).await;
            if !result.disturbed || attempt == args.redo_disturbed {
                results.push(result);
                break;
            }
            eprintln!("  the step was disturbed by other processes; repeating it");
        }
    }
    drop(pairs);
    tokio::task::spawn_blocking(move || server.stop()).await??;
    Ok(results)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The median of each figure over the runs of one step.
fn median_step(runs: &[&StepResult]) -> StepResult {
    let m = |f: &dyn Fn(&StepResult) -> f64| report::median(runs.iter().map(|r| f(r)));
    let first = runs[0];
    let sustained_runs = runs.iter().filter(|r| r.sustained).count();
    StepResult {
        run: 0,
        sent: m(&|r| r.sent as f64) as u64,
        acked: m(&|r| r.acked as f64) as u64,
        received: m(&|r| r.received as f64) as u64,
        errors: m(&|r| r.errors as f64) as u64,
        acked_msgs_s: m(&|r| r.acked_msgs_s),
        ack_ms: Latency::median(&runs.iter().map(|r| r.ack_ms).collect::<Vec<_>>()),
        e2e_ms: Latency::median(&runs.iter().map(|r| r.e2e_ms).collect::<Vec<_>>()),
        server_cpu_pct: m(&|r| r.server_cpu_pct),
        server_rss_mib_max: m(&|r| r.server_rss_mib_max),
        bench_cpu_pct: m(&|r| r.bench_cpu_pct),
        other_cpu_pct: m(&|r| r.other_cpu_pct),
        steal_pct: m(&|r| r.steal_pct),
        disk_writes_per_s: m(&|r| r.disk_writes_per_s),
        disk_write_ms_avg: m(&|r| r.disk_write_ms_avg),
        flushes_per_s: m(&|r| r.flushes_per_s),
        flush_ms_avg: m(&|r| r.flush_ms_avg),
        disturbed: runs.iter().any(|r| r.disturbed),
        // Sustained in the majority of runs, like a median of yes/no answers.
        sustained: sustained_runs * 2 > runs.len(),
        ..first.clone()
    }
}

pub async fn run(args: ThroughputArgs) -> anyhow::Result<()> {
    if args.pairs == 0 || args.seconds == 0 || args.runs == 0 {
        bail!("--pairs, --seconds and --runs must be positive");
    }
    if args.text_bytes < 21 || args.text_bytes > hutong_protocol::MAX_TEXT_LEN {
        bail!("--text-bytes must be between 21 and {}", hutong_protocol::MAX_TEXT_LEN);
    }
    if args.window == 0 || args.window > 500 || args.max_outstanding == 0 || args.max_outstanding > 500 {
        bail!("--window and --max-outstanding must be between 1 and 500 (the server reads at most 512 in flight)");
    }
    base();
    let ticks = procfs::clock_ticks();
    let mut all = Vec::new();
    for run in 1..=args.runs {
        all.extend(one_run(&args, run, ticks).await?);
    }
    let mut keys: Vec<(&'static str, Option<u64>)> = Vec::new();
    for r in &all {
        if !keys.contains(&(r.mode, r.offered_msgs_s)) {
            keys.push((r.mode, r.offered_msgs_s));
        }
    }
    let medians: Vec<StepResult> = keys
        .iter()
        .map(|k| {
            let runs: Vec<&StepResult> = all.iter().filter(|r| (r.mode, r.offered_msgs_s) == *k).collect();
            median_step(&runs)
        })
        .collect();
    let rows_of = |results: &[StepResult]| -> Vec<Vec<String>> {
        results
            .iter()
            .map(|r| {
                vec![
                    if r.run == 0 { "median".into() } else { r.run.to_string() },
                    match (r.mode, r.offered_msgs_s) {
                        ("rate", Some(o)) => o.to_string(),
                        _ => format!("max(w={})", r.window.unwrap_or(0)),
                    },
                    fixed(r.acked_msgs_s, 0),
                    fixed(r.ack_ms.p50, 2),
                    fixed(r.e2e_ms.p50, 2),
                    fixed(r.e2e_ms.p99, 2),
                    fixed(r.e2e_ms.p999, 2),
                    fixed(r.e2e_ms.max, 1),
                    fixed(r.server_cpu_pct, 0),
                    fixed(r.server_rss_mib_max, 1),
                    fixed(r.bench_cpu_pct, 0),
                    fixed(r.other_cpu_pct, 0),
                    fixed(r.flushes_per_s, 0),
                    fixed(r.disk_write_ms_avg, 2),
                    r.errors.to_string(),
                    if r.mode == "rate" { yes_no(r.sustained) } else { "-".into() },
                    yes_no(r.disturbed),
                ]
            })
            .collect()
    };
    let headers = [
        "run",
        "offered/s",
        "acked/s",
        "ack p50",
        "e2e p50",
        "e2e p99",
        "e2e p99.9",
        "e2e max",
        "srv CPU%",
        "srv RSS MiB",
        "bench CPU%",
        "other CPU%",
        "fsync/s",
        "write ms",
        "errors",
        "sustained",
        "disturbed",
    ];
    report::print_table(
        &format!(
            "throughput: {} pairs, {} s per step, {}-byte texts (latencies in ms, CPU in % of one core)",
            args.pairs, args.seconds, args.text_bytes
        ),
        &headers,
        &rows_of(&all),
    );
    if args.runs > 1 {
        report::print_table(&format!("median of {} runs", args.runs), &headers, &rows_of(&medians));
    }
    let best = medians.iter().filter(|r| r.sustained).filter_map(|r| r.offered_msgs_s).max();
    println!(
        "\nhighest offered rate sustained with e2e p99 < {SUSTAINED_P99_MS} ms: {}",
        best.map_or_else(|| "none of the rates tried".to_owned(), |b| format!("{b} msg/s"))
    );
    report::print_json(&all);
    if args.runs > 1 {
        report::print_json(&medians);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_time_round_trips_through_the_text() {
        let due = base() + Duration::from_micros(123_456_789);
        let text = text_for(due, 100);
        assert_eq!(text.len(), 100);
        assert_eq!(due_of(&text), Some(due));
        assert_eq!(due_of("not a time"), None);
    }
}
