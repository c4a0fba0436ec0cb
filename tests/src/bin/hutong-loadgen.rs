//! `hutong-loadgen`: many logged-in accounts in one process, over the raw
//! protocol, each reporting delivery of what it receives the way the client
//! core's cursor reporter does (one report in flight per connection; the
//! newest seq when the answer comes back).
//!
//! Usage: `hutong-loadgen ADDR TOKENS_FILE OFFSET COUNT`. The tokens file
//! has one `account<TAB>token` line per account (device "load"); this
//! process takes lines OFFSET..OFFSET+COUNT. It prints `ready` once every
//! account is logged in, then every 50 ms (when something changed) a line
//! `stat RECEIVED UNSETTLED LOST`: text messages received over all
//! connections, connections whose newest delivery report is not answered
//! yet, connections the server closed. It exits when stdin closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use hutong_protocol::v1::{self, login::Secret, Login, MessageKind};
use hutong_protocol::{decode_frame, encode_envelope, Envelope, FrameCodec, Payload, MAX_FRAME_LEN};
use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

#[derive(Default)]
struct Totals {
    received: AtomicU64,
    unsettled: AtomicI64,
    lost: AtomicU64,
}

type Conn = Framed<TcpStream, FrameCodec>;

async fn call(conn: &mut Conn, id: u64, payload: Payload) -> anyhow::Result<Payload> {
    conn.send(encode_envelope(&Envelope::new(id, payload))).await?;
    loop {
        let body = conn.next().await.ok_or_else(|| anyhow::anyhow!("closed"))??;
        let env = decode_frame(body.freeze(), MAX_FRAME_LEN)?;
        if env.response_to == id {
            return env.payload.ok_or_else(|| anyhow::anyhow!("empty answer"));
        }
    }
}

async fn open(addr: SocketAddr, account: &str, token: &str) -> anyhow::Result<Conn> {
    let mut conn = Framed::new(TcpStream::connect(addr).await?, FrameCodec::default());
    let hello =
        v1::Hello { protocol_version: hutong_protocol::PROTOCOL_VERSION, client_name: "loadgen".into() };
    call(&mut conn, 1, Payload::Hello(hello)).await?;
    let login = Login {
        account: account.into(),
        secret: Some(Secret::Token(token.into())),
        device: "load".into(),
        bulk: false,
    };
    match call(&mut conn, 2, Payload::Login(login)).await? {
        Payload::LoginOk(_) => Ok(conn),
        other => anyhow::bail!("login of {account} failed: {other:?}"),
    }
}

/// Receives, and reports the newest delivered seq per conversation with one
/// report in flight at a time, as `session.rs`'s cursor loop does.
async fn run(conn: Conn, totals: Arc<Totals>) {
    let (mut sink, mut stream) = conn.split();
    let mut newest: HashMap<u64, u64> = HashMap::new();
    let mut reported: HashMap<u64, u64> = HashMap::new();
    let mut in_flight: Option<(u64, u64, u64)> = None;
    let mut next_id = 100u64;
    let mut unsettled = false;
    let mut pings = tokio::time::interval(Duration::from_secs(10));
    loop {
        let body = tokio::select! {
            b = stream.next() => b,
            _ = pings.tick() => {
                let ping = Envelope::new(1, Payload::Ping(v1::Ping { nonce: 0 }));
                if sink.send(encode_envelope(&ping)).await.is_err() { break; }
                continue;
            }
        };
        let Some(Ok(body)) = body else { break };
        let Ok(env) = decode_frame(body.freeze(), MAX_FRAME_LEN) else { break };
        let mut text = false;
        match env.payload {
            Some(Payload::Message(m)) if env.response_to == 0 => {
                text = m.kind == MessageKind::Text as i32;
                let n = newest.entry(m.conversation_id).or_default();
                *n = (*n).max(m.seq);
            }
            Some(Payload::Disconnect(_)) => break,
            Some(_) if in_flight.is_some_and(|(id, _, _)| id == env.response_to) => {
                let (_, conv, seq) = in_flight.take().expect("checked");
                reported.insert(conv, seq);
            }
            _ => {}
        }
        if in_flight.is_none() {
            let due = newest.iter().find(|(c, s)| reported.get(c).is_none_or(|r| r < s));
            if let Some((&conv, &seq)) = due {
                next_id += 1;
                let report = v1::UpdateCursor { conversation_id: conv, delivered_seq: seq, read_seq: 0 };
                let env = Envelope::new(next_id, Payload::UpdateCursor(report));
                if sink.send(encode_envelope(&env)).await.is_err() {
                    break;
                }
                in_flight = Some((next_id, conv, seq));
            }
        }
        let now = in_flight.is_some();
        if now != unsettled {
            totals.unsettled.fetch_add(if now { 1 } else { -1 }, Ordering::Relaxed);
            unsettled = now;
        }
        // Counted once its report is in flight, so "all received and none
        // unsettled" never shows between the two.
        if text {
            totals.received.fetch_add(1, Ordering::Relaxed);
        }
    }
    totals.lost.fetch_add(1, Ordering::Relaxed);
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: hutong-loadgen ADDR TOKENS_FILE OFFSET COUNT");
    let addr: SocketAddr = args[1].parse()?;
    let text = std::fs::read_to_string(&args[2])?;
    let (offset, count): (usize, usize) = (args[3].parse()?, args[4].parse()?);
    let accounts: Vec<(String, String)> = text
        .lines()
        .skip(offset)
        .take(count)
        .filter_map(|l| l.split_once('\t').map(|(a, t)| (a.to_owned(), t.to_owned())))
        .collect();
    let conns: Vec<Conn> = futures::stream::iter(accounts.iter())
        .map(|(a, t)| open(addr, a, t))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let totals = Arc::new(Totals::default());
    for conn in conns {
        tokio::spawn(run(conn, totals.clone()));
    }
    println!("ready {}", accounts.len());
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last = String::new();
    loop {
        tokio::select! {
            line = stdin.next_line() => if !matches!(line, Ok(Some(_))) { return Ok(()) },
            _ = tick.tick() => {}
        }
        let stat = format!(
            "stat {} {} {}",
            totals.received.load(Ordering::Relaxed),
            totals.unsettled.load(Ordering::Relaxed),
            totals.lost.load(Ordering::Relaxed)
        );
        if stat != last {
            println!("{stat}");
            last = stat;
        }
    }
}
