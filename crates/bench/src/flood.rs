//! The `flood` mode: does one account sending as fast as it can delay
//! everyone else? `others` people (default 1,000) chat in pairs of direct
//! conversations at `rate` messages per second each (open loop, staggered),
//! and their acknowledgement latency (from each message's due time to its
//! `SendAck`) is measured three times, each on a fresh server: quiet, with
//! one flooder at full speed under the default limits, and with the same
//! flooder and the send rate limit turned off (what the limit buys).
//!
//! The flooder keeps `flood_window` sends in flight on one connection and
//! sends the next as soon as any answer (acknowledgement or refusal) comes
//! back, to a conversation with an account that is not connected.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::{ErrorCode, Payload};
use serde::Serialize;

use crate::report::{self, fixed, Latency};
use crate::server::ServerProcess;
use crate::wire::Conn;

#[derive(clap::Args, Clone, Debug)]
pub struct FloodArgs {
    /// People chatting besides the flooder (an even number: they chat in pairs).
    #[arg(long, default_value_t = 1000)]
    pub others: usize,
    /// Messages per second each of them sends.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Length of each phase in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Sends the flooder keeps in flight (under the server's 512 per connection).
    #[arg(long, default_value_t = 256)]
    pub flood_window: usize,
    /// Size of each message text in bytes.
    #[arg(long, default_value_t = 100)]
    pub text_bytes: usize,
    /// The server binary (default: `hutong-server` next to this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}

/// Environment variables a phase's server gets.
type Env = Vec<(&'static str, String)>;

/// One phase's figures.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    pub bench: &'static str,
    pub phase: &'static str,
    pub others: usize,
    pub rate_per_person: f64,
    pub seconds: u64,
    /// The others' messages acknowledged, and refused or lost.
    pub others_acked: u64,
    pub others_errors: u64,
    /// From each message's due time to its acknowledgement.
    pub others_ack_ms: Latency,
    /// The flooder's sends acknowledged and refused (RATE_LIMITED) per second.
    pub flood_acked_s: f64,
    pub flood_refused_s: f64,
}

/// What one chatting connection measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
}

async fn chatter(
    mut conn: Conn,
    conversation_id: u64,
    interval: Duration,
    first: Instant,
    end: Instant,
    text: String,
    tag: String,
) -> Tally {
    let mut tally = Tally::default();
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut next = first;
    let mut n = 0u64;
    let give_up = end + Duration::from_secs(15);
    loop {
        if next >= end && pending.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()), if next < end => {
                let msg = v1::SendMessage {
                    conversation_id,
                    client_msg_id: format!("{tag}-{n}"),
                    text: text.clone(),
                    ..Default::default()
                };
                n += 1;
                match conn.send(Payload::SendMessage(msg)).await {
                    Ok(id) => { pending.insert(id, next); }
                    Err(_) => { tally.errors += 1; break; }
                }
                next += interval;
            }
            env = conn.recv() => {
                let Ok(env) = env else { tally.errors += pending.len() as u64; break };
                let Some(due) = pending.remove(&env.response_to) else { continue };
                match env.payload {
                    Some(Payload::SendAck(_)) => {
                        tally.latencies_us.push(due.elapsed().as_micros() as u64);
                    }
                    _ => tally.errors += 1,
                }
            }
            _ = tokio::time::sleep_until(give_up.into()) => {
                tally.errors += pending.len() as u64;
                break;
            }
        }
    }
    tally
}

/// Sends as fast as answers come back until `end`; returns (acked, refused).
async fn flooder(
    mut conn: Conn,
    conversation_id: u64,
    window: usize,
    end: Instant,
    text: String,
) -> (u64, u64) {
    let (mut acked, mut refused, mut in_flight, mut n) = (0u64, 0u64, 0usize, 0u64);
    while Instant::now() < end {
        while in_flight < window {
            let msg = v1::SendMessage {
                conversation_id,
                client_msg_id: format!("flood-{n}"),
                text: text.clone(),
                ..Default::default()
            };
            n += 1;
            if conn.feed(Payload::SendMessage(msg)).await.is_err() {
                return (acked, refused);
            }
            in_flight += 1;
        }
        if futures::SinkExt::flush(&mut conn.framed).await.is_err() {
            return (acked, refused);
        }
        let Ok(Ok(env)) = tokio::time::timeout_at(end.into(), conn.recv()).await else { break };
        if env.response_to == 0 {
            continue;
        }
        in_flight -= 1;
        match env.payload {
            Some(Payload::SendAck(_)) => acked += 1,
            Some(Payload::Error(e)) if e.code == ErrorCode::RateLimited as i32 => refused += 1,
            Some(Payload::Error(e)) => {
                eprintln!("  flooder: {e:?}");
                refused += 1
            }
            _ => {}
        }
    }
    (acked, refused)
}

async fn phase(
    args: &FloodArgs,
    label: &'static str,
    flood: bool,
    env: &[(&'static str, String)],
) -> anyhow::Result<PhaseResult> {
    let bin = crate::server::server_binary(args.server_bin.clone())?;
    let dir = tempfile::tempdir()?;
    // The others, the flooder, and the flooder's (never connected) peer.
    let total = args.others + 2;
    let tokens = crate::group::make_accounts(&dir.path().join("hutong.db"), total)?;
    let tokens: Vec<(String, String)> = tokens
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, t)| (a.to_owned(), t.to_owned()))
        .collect();
    let server = {
        let (bin, data, env) = (
            bin.clone(),
            dir.path().to_owned(),
            env.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || ServerProcess::start(&bin, &data, &env)).await??
    };
    eprintln!("{label}: server pid {}; logging in {} people", server.pid, args.others + usize::from(flood));
    let mut conns = Vec::with_capacity(args.others);
    let mut user_ids = Vec::with_capacity(args.others);
    for (account, token) in tokens.iter().take(args.others) {
        let (conn, ok) = Conn::open(server.addr, None, account, Secret::Token(token.clone())).await?;
        conns.push(conn);
        user_ids.push(ok.user_id);
    }
    // Pairs: the even one opens the direct conversation.
    let mut conversations = vec![0u64; args.others];
    for i in (0..args.others).step_by(2) {
        let peer = user_ids[i + 1];
        let state = match conns[i].call(Payload::OpenDirect(v1::OpenDirect { user_id: peer })).await? {
            Payload::Conversation(c) => c,
            other => bail!("expected a conversation, got {other:?}"),
        };
        conversations[i] = state.id;
        conversations[i + 1] = state.id;
    }
    let flood_conn = if flood {
        let (account, token) = &tokens[args.others];
        let (mut conn, _) = Conn::open(server.addr, None, account, Secret::Token(token.clone())).await?;
        let peer_id = total as u64; // accounts are numbered 1.. in order
        let c = match conn.call(Payload::OpenDirect(v1::OpenDirect { user_id: peer_id })).await? {
            Payload::Conversation(c) => c.id,
            other => bail!("expected a conversation, got {other:?}"),
        };
        Some((conn, c))
    } else {
        None
    };
    // Let the set-up's pushes settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text: String = "x".repeat(args.text_bytes);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + Duration::from_secs(args.seconds);
    let flood_task = flood_conn.map(|(conn, c)| {
        let text = text.clone();
        let window = args.flood_window;
        tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            flooder(conn, c, window, end, text).await
        })
    });
    let mut tasks = Vec::with_capacity(args.others);
    for (i, conn) in conns.into_iter().enumerate() {
        // Staggered over one interval so the sends are spread evenly.
        let first = start + interval.mul_f64(i as f64 / args.others as f64);
        tasks.push(tokio::spawn(chatter(
            conn,
            conversations[i],
            interval,
            first,
            end,
            text.clone(),
            format!("o{i}"),
        )));
    }
    let mut hist = report::new_histogram();
    let (mut acked, mut errors) = (0u64, 0u64);
    for t in tasks {
        let tally = t.await.context("a chatter panicked")?;
        for us in &tally.latencies_us {
            report::record(&mut hist, *us);
        }
        acked += tally.latencies_us.len() as u64;
        errors += tally.errors;
    }
    let (flood_acked, flood_refused) = match flood_task {
        Some(t) => t.await.context("the flooder panicked")?,
        None => (0, 0),
    };
    tokio::task::spawn_blocking(move || server.stop()).await??;
    let secs = args.seconds as f64;
    Ok(PhaseResult {
        bench: "flood",
        phase: label,
        others: args.others,
        rate_per_person: args.rate,
        seconds: args.seconds,
        others_acked: acked,
        others_errors: errors,
        others_ack_ms: Latency::of(&hist),
        flood_acked_s: flood_acked as f64 / secs,
        flood_refused_s: flood_refused as f64 / secs,
    })
}

pub async fn run(args: FloodArgs) -> anyhow::Result<()> {
    if args.others < 2 || !args.others.is_multiple_of(2) || args.rate <= 0.0 {
        bail!("--others must be an even number of at least 2 and --rate positive");
    }
    let phases: [(&'static str, bool, Env); 3] = [
        ("quiet", false, vec![]),
        ("flooder, default limits", true, vec![]),
        ("flooder, no send limit", true, vec![("HUTONG_SEND_RATE_PER_SEC", "0".into())]),
    ];
    let mut results = Vec::new();
    for (label, flood, env) in phases {
        let r = phase(&args, label, flood, &env).await?;
        eprintln!(
            "{label}: others acked {} (errors {}), ack p50 {:.2} p99 {:.2} ms; flooder {:.0} acked/s, {:.0} refused/s",
            r.others_acked, r.others_errors, r.others_ack_ms.p50, r.others_ack_ms.p99, r.flood_acked_s, r.flood_refused_s
        );
        results.push(r);
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.phase.to_owned(),
                r.others_acked.to_string(),
                r.others_errors.to_string(),
                fixed(r.others_ack_ms.p50, 2),
                fixed(r.others_ack_ms.p99, 2),
                fixed(r.others_ack_ms.p999, 2),
                fixed(r.flood_acked_s, 0),
                fixed(r.flood_refused_s, 0),
            ]
        })
        .collect();
    report::print_table(
        &format!("{} people at {}/s each, {} s per phase", args.others, args.rate, args.seconds),
        &[
            "phase",
            "others acked",
            "errors",
            "ack p50 ms",
            "ack p99 ms",
            "ack p99.9 ms",
            "flood acked/s",
            "flood refused/s",
        ],
        &rows,
    );
    report::print_json(&results);
    Ok(())
}
