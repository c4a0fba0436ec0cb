//! `read-list`: how long the server takes to answer "who has read this
//! message, who has not" for a message in a big group. Accounts and
//! sessions are written straight into a fresh database (as for `group`);
//! the group and its message are made through the server; then every
//! second member's read cursor is moved past the message in the database
//! (what their read reports would have written), and one connection asks
//! for the read list again and again, one request at a time.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use hutong_protocol::v1;
use hutong_protocol::Payload;

use crate::group::{everyone_group, make_accounts};
use crate::server::{server_binary, ServerProcess};

#[derive(clap::Args, Clone, Debug)]
pub struct ReadListArgs {
    /// Members of the group, the sender included (the server's maximum is 10,000).
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Read-list requests timed.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// The `hutong-server` binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
}

pub async fn run(args: ReadListArgs) -> anyhow::Result<()> {
    if args.members < 2 || args.requests == 0 {
        bail!("a group needs at least 2 members and 1 request");
    }
    let bin = server_binary(args.server.clone())?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hutong.db");
    let tokens = make_accounts(&db, args.members)?;
    let server = {
        let (bin, data) = (bin.clone(), dir.path().to_owned());
        tokio::task::spawn_blocking(move || ServerProcess::start(&bin, &data, &[])).await??
    };
    let (mut sender, conv) = everyone_group(server.addr, &tokens, args.members).await?;
    let send = v1::SendMessage {
        conversation_id: conv,
        client_msg_id: "0190dddd-0000-7000-8000-000000000001".into(),
        text: "who has read this?".into(),
        ..Default::default()
    };
    let seq = match sender.call(Payload::SendMessage(send)).await? {
        Payload::SendAck(a) => a.seq,
        other => bail!("sending failed: {other:?}"),
    };
    {
        let conn = hutong_server::storage::open_connection(&db)?;
        conn.execute(
            "UPDATE members SET read_seq = ?1 WHERE conversation_id = ?2 AND user_id % 2 = 0",
            rusqlite::params![seq, conv],
        )?;
    }
    let ask = || Payload::GetReadList(v1::GetReadList { conversation_id: conv, seq });
    // One answer checked, then the timed ones.
    let (read, unread) = match sender.call(ask()).await? {
        Payload::ReadList(l) => (l.read_user_ids.len(), l.unread_user_ids.len()),
        other => bail!("the read list failed: {other:?}"),
    };
    if read + unread != args.members - 1 {
        bail!("the read list names {} of {} members", read + unread, args.members - 1);
    }
    let mut ms = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let t = Instant::now();
        match sender.call(ask()).await? {
            Payload::ReadList(_) => ms.push(t.elapsed().as_secs_f64() * 1000.0),
            other => bail!("the read list failed: {other:?}"),
        }
    }
    tokio::task::spawn_blocking(move || server.stop()).await??;
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "read list of a message in a group of {} members ({read} read, {unread} unread), {} requests: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (request to answer, loopback)",
        args.members,
        args.requests,
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
