//! The `stuck` mode: server memory while some connections never read.
//!
//! `--stuck` connections log in, ask for their conversation's history many
//! times over (answers of up to 512 KiB each) and never read a byte, while
//! `--chatters` other connections send a message of `--text-bytes` every
//! second into the same conversations, so every message is also pushed at
//! the stuck ones. The server's memory is sampled once a second (the largest
//! sample counts), with the server's own figure of bytes held by outbound
//! queues (`/health`). Every connection runs in this one process (a few
//! thousand descriptors); accounts are shared by several connections through
//! one token each (see `idle.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::{SinkExt as _, StreamExt as _};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::Payload;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::procfs;
use crate::report::{self, fixed};
use crate::server::{self, ServerProcess};
use crate::wire::Conn;

#[derive(clap::Args, Clone, Debug)]
pub struct StuckArgs {
    /// Connections that never read.
    #[arg(long, default_value_t = 1000)]
    pub stuck: usize,
    /// Connections that chat (and read).
    #[arg(long, default_value_t = 1000)]
    pub chatters: usize,
    /// Accounts on each side; connections share them (10 per account by default).
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// History requests each stuck connection leaves unread.
    #[arg(long, default_value_t = 20)]
    pub fetches: u64,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 16_000)]
    pub text_bytes: usize,
    /// Seconds of chatting (memory is sampled throughout).
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// Server's `outbound_queue_bytes` (its default is 2 MiB).
    #[arg(long)]
    pub queue_bytes: Option<u64>,
    /// Server's `write_timeout_ms` (its default is 30000).
    #[arg(long)]
    pub write_timeout_ms: Option<u64>,
    /// The server binary (default: `hutong-server` next to this binary).
    #[arg(long)]
    pub server_bin: Option<std::path::PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StuckResult {
    pub bench: &'static str,
    pub stuck: usize,
    pub chatters: usize,
    pub messages_sent: u64,
    pub rss_before_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_end_mib: f64,
    /// (peak − before) / (stuck + chatters).
    pub bytes_per_conn: f64,
    /// Largest `/health` outbound_bytes seen.
    pub outbound_peak_mib: f64,
    /// That figure over the stuck connections.
    pub outbound_per_stuck: f64,
    pub connections_at_end: u64,
    pub outbound_end_mib: f64,
}

const MIB: f64 = 1024.0 * 1024.0;

/// `(connections, outbound_bytes)` from `/health`, by hand over HTTP/1.0.
async fn health(http: SocketAddr) -> anyhow::Result<(u64, u64)> {
    let mut s = tokio::net::TcpStream::connect(http).await?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: bench\r\n\r\n").await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    let body = text.split("\r\n\r\n").nth(1).context("no body in /health")?;
    let v: serde_json::Value = serde_json::from_str(body)?;
    Ok((v["connections"].as_u64().unwrap_or(0), v["outbound_bytes"].as_u64().unwrap_or(0)))
}

pub async fn run(args: StuckArgs) -> anyhow::Result<()> {
    if args.accounts == 0 || args.stuck == 0 || args.chatters == 0 {
        bail!("--accounts, --stuck and --chatters must be positive");
    }
    let bin = server::server_binary(args.server_bin.clone())?;
    let dir = tempfile::Builder::new().prefix("hutong-bench-stuck-").tempdir()?;
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens.tsv");
    let chat: Vec<String> = (0..args.accounts).map(|i| format!("chat{i:04}")).collect();
    let stuck: Vec<String> = (0..args.accounts).map(|i| format!("stuck{i:04}")).collect();
    let names: Vec<String> = chat.iter().chain(&stuck).cloned().collect();
    eprintln!("creating {} accounts", names.len());
    {
        let (bin, data, names) = (bin.clone(), data.clone(), names.clone());
        tokio::task::spawn_blocking(move || server::prepare_accounts(&bin, &data, &names)).await??;
    }
    crate::idle::make_tokens(&bin, &data, &names, &tokens).await?;
    let token_of: std::collections::HashMap<String, String> = std::fs::read_to_string(&tokens)?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, t)| (a.to_owned(), t.to_owned()))
        .collect();
    let mut env = vec![("HUTONG_MAX_CONNECTIONS", (args.stuck + args.chatters + 100).to_string())];
    if let Some(b) = args.queue_bytes {
        env.push(("HUTONG_OUTBOUND_QUEUE_BYTES", b.to_string()));
    }
    if let Some(t) = args.write_timeout_ms {
        env.push(("HUTONG_WRITE_TIMEOUT_MS", t.to_string()));
    }
    let server = {
        let (bin, data) = (bin.clone(), data.clone());
        tokio::task::spawn_blocking(move || ServerProcess::start(&bin, &data, &env)).await??
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = procfs::sample(server.pid)?;
    let (addr, http) = (server.addr, server.http);
    let open = |account: &String| {
        let token = token_of[account].clone();
        let account = account.clone();
        async move { Conn::open(addr, None, &account, Secret::Token(token)).await }
    };

    // Each chat account's first connection opens the direct conversation
    // with its stuck partner and fills it with history.
    let mut conversations = Vec::with_capacity(args.accounts);
    let text = "x".repeat(args.text_bytes);
    for i in 0..args.accounts {
        let (_, partner) = open(&stuck[i]).await?;
        let (mut c, _) = open(&chat[i]).await?;
        let conv = match c.call(Payload::OpenDirect(v1::OpenDirect { user_id: partner.user_id })).await? {
            Payload::Conversation(state) => state.id,
            other => bail!("open direct: {other:?}"),
        };
        for k in 0..40 {
            let msg = v1::SendMessage {
                conversation_id: conv,
                client_msg_id: format!("fill-{i}-{k}"),
                text: text.clone(),
                ..Default::default()
            };
            c.call(Payload::SendMessage(msg)).await?;
        }
        conversations.push(conv);
    }
    eprintln!("history written; opening {} stuck connections", args.stuck);
    let mut held = Vec::with_capacity(args.stuck);
    for j in 0..args.stuck {
        let i = j % args.accounts;
        let (mut c, _) = open(&stuck[i]).await?;
        for _ in 0..args.fetches {
            let fetch = v1::FetchMessages {
                conversation_id: conversations[i],
                after_seq: 0,
                before_seq: 0,
                limit: 500,
            };
            c.feed(Payload::FetchMessages(fetch)).await?;
        }
        c.framed.flush().await?;
        // Never read again: the socket stays open, its receive window shuts.
        held.push(c);
    }
    eprintln!("opening {} chatting connections", args.chatters);
    let sent = Arc::new(AtomicU64::new(0));
    let mut chatters = Vec::with_capacity(args.chatters);
    let stop = tokio_util::sync::CancellationToken::new();
    for j in 0..args.chatters {
        let i = j % args.accounts;
        let (mut c, _) = open(&chat[i]).await?;
        let (conv, text, sent, stop) = (conversations[i], text.clone(), sent.clone(), stop.clone());
        chatters.push(tokio::spawn(async move {
            // Spread the sends over the second.
            let phase = Duration::from_millis((j as u64 * 997) % 1000);
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        n += 1;
                        let msg = v1::SendMessage {
                            conversation_id: conv,
                            client_msg_id: format!("chat-{j}-{n}"),
                            text: text.clone(),
                            ..Default::default()
                        };
                        if c.send(Payload::SendMessage(msg)).await.is_err() {
                            return;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    frame = c.framed.next() => if !matches!(frame, Some(Ok(_))) { return },
                }
            }
        }));
    }
    eprintln!("chatting for {} s", args.secs);
    let (mut peak, mut outbound_peak) = (before, 0u64);
    let end = tokio::time::Instant::now() + Duration::from_secs(args.secs);
    let mut every = tokio::time::interval(Duration::from_secs(1));
    while tokio::time::Instant::now() < end {
        every.tick().await;
        let s = procfs::sample(server.pid)?;
        if s.rss_kib > peak.rss_kib {
            peak = s;
        }
        if let Ok((_, bytes)) = health(http).await {
            outbound_peak = outbound_peak.max(bytes);
        }
    }
    stop.cancel();
    for c in chatters {
        let _ = c.await;
    }
    let last = procfs::sample(server.pid)?;
    let (connections_at_end, outbound_end) = health(http).await.unwrap_or((0, 0));
    drop(held);
    tokio::task::spawn_blocking(move || server.stop()).await??;

    let conns = (args.stuck + args.chatters) as f64;
    let r = StuckResult {
        bench: "stuck",
        stuck: args.stuck,
        chatters: args.chatters,
        messages_sent: sent.load(Ordering::Relaxed),
        rss_before_mib: before.rss_kib as f64 / 1024.0,
        rss_peak_mib: peak.rss_kib as f64 / 1024.0,
        rss_end_mib: last.rss_kib as f64 / 1024.0,
        bytes_per_conn: (peak.rss_kib as f64 - before.rss_kib as f64) * 1024.0 / conns,
        outbound_peak_mib: outbound_peak as f64 / MIB,
        outbound_per_stuck: outbound_peak as f64 / args.stuck as f64,
        connections_at_end,
        outbound_end_mib: outbound_end as f64 / MIB,
    };
    report::print_table(
        &format!(
            "never-reading connections ({} stuck, {} chatting, {} B messages, {} s)",
            args.stuck, args.chatters, args.text_bytes, args.secs
        ),
        &[
            "sent",
            "RSS before MiB",
            "RSS peak MiB",
            "RSS end MiB",
            "bytes/conn",
            "queued peak MiB",
            "queued/stuck conn",
            "conns at end",
            "queued end MiB",
        ],
        &[vec![
            r.messages_sent.to_string(),
            fixed(r.rss_before_mib, 1),
            fixed(r.rss_peak_mib, 1),
            fixed(r.rss_end_mib, 1),
            fixed(r.bytes_per_conn, 0),
            fixed(r.outbound_peak_mib, 1),
            fixed(r.outbound_per_stuck, 0),
            r.connections_at_end.to_string(),
            fixed(r.outbound_end_mib, 1),
        ]],
    );
    report::print_json(&[r]);
    Ok(())
}
