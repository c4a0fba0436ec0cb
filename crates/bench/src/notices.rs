//! `notices`: a sign-off notice to a department of 10,000 people, 2,000 of
//! them online (held by `group-worker` processes, which report delivery as
//! the client core does): the time from the send until every online
//! recipient has it; the time to read the whole per-recipient table (every
//! page, as the sender's table or an export does); the server's memory
//! (RSS) before and after; then a mass-send to the 2,000 online people and
//! the time until each has their direct message.
//!
//! Accounts and sessions are written straight into a fresh database (as for
//! `group`); account 0 is a publisher and every other account is in one
//! department.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::Payload;

use crate::group::{arrivals, make_accounts, now_us, start_workers};
use crate::procfs;
use crate::server::{server_binary, ServerProcess};
use crate::wire::Conn;

#[derive(clap::Args, Clone, Debug)]
pub struct NoticesArgs {
    /// People in the department the notice goes to.
    #[arg(long, default_value_t = 10_000)]
    recipients: usize,
    /// How many of them are online.
    #[arg(long, default_value_t = 2_000)]
    online: usize,
    /// Notices sent (one at a time), each timed.
    #[arg(long, default_value_t = 5)]
    notices: usize,
    /// Reads of the full table timed.
    #[arg(long, default_value_t = 20)]
    tables: usize,
    /// Worker processes holding the online people's connections.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// The `hutong-server` binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

pub async fn run(args: NoticesArgs) -> anyhow::Result<()> {
    if args.online == 0 || args.online > args.recipients || args.notices == 0 || args.tables == 0 {
        bail!("need 1 <= online <= recipients, and at least one notice and one table");
    }
    let bin = server_binary(args.server.clone())?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hutong.db");
    let tokens = make_accounts(&db, args.recipients + 1)?;
    {
        let conn = hutong_server::storage::open_connection(&db)?;
        conn.execute("INSERT INTO departments (name, version) VALUES ('全公司', 1)", [])?;
        let dept = conn.last_insert_rowid();
        conn.execute("UPDATE users SET primary_department_id = ?1 WHERE id > 1", [dept])?;
        conn.execute("UPDATE users SET roles = 'publisher' WHERE id = 1", [])?;
    }
    let tokens_path = dir.path().join("tokens.tsv");
    std::fs::write(&tokens_path, &tokens)?;
    let server = {
        let (bin, data) = (bin.clone(), dir.path().to_owned());
        tokio::task::spawn_blocking(move || ServerProcess::start(&bin, &data, &[])).await??
    };
    let mut workers = start_workers(server.addr, &tokens_path, 1, args.online, args.workers).await?;
    let first = tokens.lines().next().and_then(|l| l.split_once('\t')).context("no accounts")?;
    let (mut sender, _) = Conn::open(server.addr, None, first.0, Secret::Token(first.1.to_owned())).await?;
    let rss_before = procfs::sample(server.pid)?.rss_kib;

    let mut reach_ms = Vec::new();
    let mut last_notice = 0;
    for i in 0..args.notices {
        let sent = now_us();
        let request = v1::SendNotice {
            client_id: format!("bench-notice-{i}"),
            title: sent.to_string(),
            body: "请阅读并签收。".into(),
            sign_required: true,
            targets: Some(v1::NoticeTargets { departments: vec![1], ..Default::default() }),
            ..Default::default()
        };
        let answer = match sender.call(Payload::SendNotice(request)).await? {
            Payload::NoticeSent(s) => s,
            other => bail!("sending the notice failed: {other:?}"),
        };
        if answer.recipients as usize != args.recipients {
            bail!("the notice reached {} of {} people", answer.recipients, args.recipients);
        }
        last_notice = answer.notice_id;
        let (got, last) = arrivals(&mut workers, sent).await?;
        if got < args.online {
            bail!("notice {i}: only {got} of {} online people got it within 30 s", args.online);
        }
        let ms = last.saturating_sub(sent) as f64 / 1000.0;
        println!("notice {i}: every online recipient had it after {ms:.1} ms");
        reach_ms.push(ms);
    }
    let rss_after_notices = procfs::sample(server.pid)?.rss_kib;

    // The full table: every page, as the sender's table or its export reads it.
    let mut table_ms = Vec::new();
    for _ in 0..args.tables {
        let t = Instant::now();
        let (mut rows, mut after) = (0, 0);
        loop {
            let ask =
                v1::GetNoticeStatus { notice_id: last_notice, after_user_id: after, ..Default::default() };
            let page = match sender.call(Payload::GetNoticeStatus(ask)).await? {
                Payload::NoticeStatus(s) => s,
                other => bail!("the status failed: {other:?}"),
            };
            rows += page.recipients.len();
            if page.next_after_user_id == 0 {
                break;
            }
            after = page.next_after_user_id;
        }
        table_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if rows != args.recipients {
            bail!("the table has {rows} rows for {} recipients", args.recipients);
        }
    }

    // A mass-send to the online people (one direct message each).
    let sent = now_us();
    let mass = v1::MassSend {
        text: sent.to_string(),
        user_ids: (2..=args.online as u64 + 1).collect(),
        client_msg_id: "bench-mass-send".into(),
        ..Default::default()
    };
    let stored = match sender.call(Payload::MassSend(mass)).await? {
        Payload::MassSendStatus(s) => s,
        other => bail!("the mass-send failed: {other:?}"),
    };
    let stored_ms = now_us().saturating_sub(sent) as f64 / 1000.0;
    let (got, last) = arrivals(&mut workers, sent).await?;
    if got < args.online || stored.recipients.len() != args.online {
        bail!("the mass-send reached {got} of {} online people", args.online);
    }
    let mass_ms = last.saturating_sub(sent) as f64 / 1000.0;
    let rss_end = procfs::sample(server.pid)?.rss_kib;
    drop(workers);
    tokio::task::spawn_blocking(move || server.stop()).await??;

    let reach = quantile(&mut reach_ms, 0.5);
    let reach_max = quantile(&mut reach_ms, 1.0);
    let table = quantile(&mut table_ms, 0.5);
    let table_max = quantile(&mut table_ms, 1.0);
    println!(
        "notice to {} people, {} online: every online recipient has it after median {reach:.1} ms (max {reach_max:.1}) \
         over {} notices; full table ({} rows) median {table:.1} ms (max {table_max:.1}) over {} reads; \
         server RSS {} MiB before, {} MiB after the notices, {} MiB at the end; \
         mass-send to {}: stored in {stored_ms:.1} ms, everyone has it after {mass_ms:.1} ms",
        args.recipients,
        args.online,
        args.notices,
        args.recipients,
        args.tables,
        rss_before / 1024,
        rss_after_notices / 1024,
        rss_end / 1024,
        args.online,
    );
    println!(
        "{}",
        serde_json::json!({"bench": "notices", "recipients": args.recipients, "online": args.online,
            "reach_median_ms": reach, "reach_max_ms": reach_max, "table_median_ms": table,
            "table_max_ms": table_max, "rss_before_kib": rss_before, "rss_after_notices_kib": rss_after_notices,
            "rss_end_kib": rss_end, "mass_send_stored_ms": stored_ms, "mass_send_reach_ms": mass_ms})
    );
    Ok(())
}
