//! `hutong-bench-directory`: the directory and the audit archive at size.
//!
//! 1. A directory of 50,000 people in 2,000 departments: a client's first
//!    full sync (time and bytes on the wire), an incremental sync after ten
//!    changes, and search latency (the client's cache and the console's server
//!    search) for Chinese names, full pinyin and initials.
//! 2. Keyword search over 1,000,000 archived messages (Chinese of one, two and
//!    three or more characters, English words): p50 and p95 latency.
//!
//! It runs a real server in this process on loopback (port 0) and a real
//! client core; data is generated into a temporary directory.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use hutong_client::{Client, ClientOptions, Credential};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::{decode_envelope, encode_envelope, Envelope, FrameCodec, Payload};
use hutong_server::{audit, directory, import, storage, Config, Listeners};
use rand::{Rng as _, SeedableRng as _};
use tokio_util::codec::Framed;

const PASSWORD: &str = "bench-password-1";

#[derive(clap::Parser)]
#[command(
    name = "hutong-bench-directory",
    about = "Directory sync, directory search and archive search at size"
)]
struct Args {
    #[arg(long, default_value_t = 50_000)]
    people: usize,
    #[arg(long, default_value_t = 2_000)]
    departments: usize,
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Search queries per kind.
    #[arg(long, default_value_t = 50)]
    queries: usize,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args))
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

const SURNAMES: [&str; 16] =
    ["张", "王", "李", "赵", "刘", "陈", "杨", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭"];
const GIVEN: [&str; 20] = [
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "军", "强", "平", "刚", "桂", "英", "华",
    "明", "霞", "涛",
];

fn name(i: usize) -> String {
    format!("{}{}{}", SURNAMES[i % 16], GIVEN[(i / 16) % 20], GIVEN[(i / 320) % 20])
}

fn directory_csv(people: usize, departments: usize) -> String {
    let mut csv = String::from("account,display_name,employee_no,title,email,department\n");
    let divisions = (departments / 50).max(1);
    for i in 0..people {
        let d = i % departments;
        csv.push_str(&format!(
            "u{i:06},{},E{i:06},工程师,u{i}@example.com,总公司/事业部{}/部门{d}\n",
            name(i),
            d % divisions
        ));
    }
    csv
}

/// Pages through DirectorySync on a raw connection: (bytes received, time, version, epoch).
async fn raw_directory_sync(
    addr: std::net::SocketAddr,
    token: &str,
    since: u64,
    epoch: u64,
) -> anyhow::Result<(usize, Duration, u64, u64, usize)> {
    let mut conn = Framed::new(tokio::net::TcpStream::connect(addr).await?, FrameCodec::default());
    let call = |id: u64, payload: Payload| encode_envelope(&Envelope::new(id, payload));
    conn.send(call(1, Payload::Hello(v1::Hello { protocol_version: 1, client_name: "bench".into() })))
        .await?;
    conn.next().await.context("hello")??;
    let login = v1::Login {
        account: "u000000".into(),
        secret: Some(Secret::Token(token.into())),
        device: "raw".into(),
        bulk: false,
    };
    conn.send(call(2, Payload::Login(login))).await?;
    match decode_envelope(&conn.next().await.context("login")??)?.payload {
        Some(Payload::LoginOk(_)) => {}
        other => anyhow::bail!("login failed: {other:?}"),
    }
    let started = Instant::now();
    let (mut since, mut epoch, mut bytes, mut people) = (since, epoch, 0usize, 0usize);
    for id in 3.. {
        conn.send(call(
            id,
            Payload::DirectorySync(v1::DirectorySync { since_version: since, epoch, limit: 1000 }),
        ))
        .await?;
        let body = conn.next().await.context("directory answer")??;
        bytes += body.len() + 4;
        let Some(Payload::DirectoryDelta(d)) = decode_envelope(&body)?.payload else {
            anyhow::bail!("unexpected answer")
        };
        people += d.people.len();
        since = d.version;
        epoch = d.epoch;
        if !d.more {
            break;
        }
    }
    Ok((bytes, started.elapsed(), since, epoch, people))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let config = Config {
        data_dir: data.path().to_owned(),
        tcp_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        tcp_tls: false,
        ..Config::default()
    };
    hutong_server::prepare(&config, Some(PASSWORD.into()))?;
    let db = config.database_path();

    println!("generating {} people in {} departments ...", args.people, args.departments);
    let started = Instant::now();
    {
        let conn = storage::open_connection(&db)?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let hash = hutong_server::accounts::hash_password(PASSWORD)?;
        let summary =
            import::import(&conn, directory_csv(args.people, args.departments).as_bytes(), Some(&hash))
                .map_err(|e| anyhow::anyhow!("import failed: {e:?}"))?;
        conn.execute_batch("UPDATE users SET must_change_password = 0; COMMIT")?;
        println!("  imported {summary:?} in {:.1} s", started.elapsed().as_secs_f64());
    }

    let listeners = Listeners::bind(&config).await?;
    let tcp = listeners.tcp_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hutong_server::run(config.clone(), listeners, async move {
        let _ = stopped.await;
    }));

    // The client core: first full sync, including writing its cache.
    let cache = tempfile::tempdir()?;
    let mut options =
        ClientOptions::new(format!("tcp://{tcp}").parse()?, "u000000", cache.path().join("c.db"));
    options.device = "bench".into();
    // A throwaway server on loopback, plain TCP by choice.
    options.insecure_plaintext = true;
    let started = Instant::now();
    let client = Client::start(options, Credential::Password(PASSWORD.into()))?;
    client.wait_online().await?;
    let mut events = client.events();
    while client.sync_rounds() == 0 {
        let _ = events.recv().await;
    }
    let client_first = started.elapsed();
    let (depts, people) = client.directory_counts()?;

    // The same on the wire, without the cache: bytes and time.
    let mut raw = Vec::new();
    let mut version = (0, 0);
    for _ in 0..3 {
        // A token is tied to its device: a fresh password login gives the raw connection its own.
        let (bytes, time, v, e, n) = raw_directory_sync(tcp, &raw_token(tcp).await?, 0, 0).await?;
        raw.push((bytes, time, n));
        version = (v, e);
    }

    // Ten changes, then an incremental sync.
    {
        let conn = storage::open_connection(&db)?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for i in 0..10u64 {
            let id: u64 = conn.query_row(
                "SELECT id FROM users WHERE account = ?1",
                [format!("u{:06}", i * 997)],
                |r| r.get(0),
            )?;
            directory::update_person(
                &conn,
                id,
                &directory::PersonInput { title: Some(format!("高级工程师 {i}")), ..Default::default() },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        conn.execute_batch("COMMIT")?;
    }
    let mut incremental = Vec::new();
    for _ in 0..5 {
        let (bytes, time, _, _, n) =
            raw_directory_sync(tcp, &raw_token(tcp).await?, version.0, version.1).await?;
        incremental.push((bytes, time, n));
    }
    let started = Instant::now();
    let before = client.sync_rounds();
    client.request_sync();
    while client.sync_rounds() == before {
        let _ = events.recv().await;
    }
    let client_incremental = started.elapsed();
    let changed = client.directory_person("u000997")?.map(|p| p.title).unwrap_or_default();
    anyhow::ensure!(changed.starts_with("高级工程师"), "the change did not arrive: {changed:?}");

    // Search in the client's cache and on the server (console).
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let queries: Vec<(&str, String)> = (0..args.queries)
        .flat_map(|_| {
            let i = rng.random_range(0..args.people);
            let full = name(i);
            let (pinyin, initials) = directory::pinyin_keys(&full);
            vec![
                ("chinese", full.chars().take(2).collect::<String>()),
                ("pinyin", pinyin),
                ("initials", initials),
            ]
        })
        .collect();
    let mut client_times: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    let mut server_times: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    let conn = storage::open_connection(&db)?;
    for (kind, q) in &queries {
        let t = Instant::now();
        let found = client.search_directory(q, 50)?;
        client_times.entry(kind).or_default().push(t.elapsed());
        anyhow::ensure!(!found.is_empty(), "no result for {q}");
        let t = Instant::now();
        let query = directory::PeopleQuery { q: Some(q.clone()), limit: Some(50), ..Default::default() };
        directory::search_people(&conn, &query).map_err(|e| anyhow::anyhow!("{e}"))?;
        server_times.entry(kind).or_default().push(t.elapsed());
    }
    client.shutdown();
    let _ = stop.send(());
    server.await??;

    println!();
    println!(
        "directory: {} people, {} departments (client cache holds {people} people, {depts} departments)",
        args.people, args.departments
    );
    let mut first: Vec<Duration> = raw.iter().map(|r| r.1).collect();
    let first_bytes = raw[0].0;
    println!(
        "  first full sync, wire only: {:.0} ms (median of {}), {:.2} MB ({} people)",
        percentile(&mut first, 0.5),
        raw.len(),
        first_bytes as f64 / 1e6,
        raw[0].2
    );
    println!(
        "  first full sync, client core incl. login and cache: {:.0} ms",
        client_first.as_secs_f64() * 1000.0
    );
    let mut inc: Vec<Duration> = incremental.iter().map(|r| r.1).collect();
    println!(
        "  incremental sync after 10 changes, wire only: {:.2} ms (median of {}), {} bytes ({} people)",
        percentile(&mut inc, 0.5),
        incremental.len(),
        incremental[0].0,
        incremental[0].2
    );
    println!("  incremental sync, client core round: {:.1} ms", client_incremental.as_secs_f64() * 1000.0);
    for (label, times) in [("client cache", &mut client_times), ("server (console)", &mut server_times)] {
        for (kind, samples) in times.iter_mut() {
            println!(
                "  search {label:<16} {kind:<8}: p50 {:.2} ms, p95 {:.2} ms ({} queries)",
                percentile(samples, 0.5),
                percentile(samples, 0.95),
                samples.len()
            );
        }
    }

    archive_search(&config, &args)?;
    Ok(())
}

async fn raw_token(tcp: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut conn = Framed::new(tokio::net::TcpStream::connect(tcp).await?, FrameCodec::default());
    conn.send(encode_envelope(&Envelope::new(
        1,
        Payload::Hello(v1::Hello { protocol_version: 1, client_name: "bench".into() }),
    )))
    .await?;
    conn.next().await.context("hello")??;
    let login = v1::Login {
        account: "u000000".into(),
        secret: Some(Secret::Password(PASSWORD.into())),
        device: "raw".into(),
        bulk: false,
    };
    conn.send(encode_envelope(&Envelope::new(2, Payload::Login(login)))).await?;
    match decode_envelope(&conn.next().await.context("login")??)?.payload {
        Some(Payload::LoginOk(ok)) => Ok(ok.token),
        other => anyhow::bail!("login failed: {other:?}"),
    }
}

const WORDS_ZH: [&str; 24] = [
    "季度", "报告", "财务", "预算", "客户", "合同", "会议", "项目", "进度", "审批", "发票", "采购", "销售",
    "市场", "研发", "测试", "上线", "需求", "设计", "评审", "周报", "加班", "出差", "报销",
];
const WORDS_EN: [&str; 16] = [
    "quarterly",
    "report",
    "budget",
    "customer",
    "contract",
    "meeting",
    "project",
    "release",
    "invoice",
    "review",
    "design",
    "deadline",
    "travel",
    "expense",
    "roadmap",
    "launch",
];

fn archive_search(config: &Config, args: &Args) -> anyhow::Result<()> {
    println!();
    println!("archive: generating {} messages ...", args.messages);
    let conn = storage::open_connection(&config.database_path())?;
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let conversations = 1000u64;
    for c in 1..=conversations {
        conn.execute(
            "INSERT INTO conversations (id, kind, name, last_seq, version, created_at) VALUES (?1, 1, ?2, 0, 1, 0)",
            rusqlite::params![c, format!("群{c}")],
        )?;
        for m in 0..5u64 {
            conn.execute(
                "INSERT INTO members (conversation_id, user_id, role, version) VALUES (?1, ?2, 0, 1)",
                rusqlite::params![c, (c * 5 + m) % args.people as u64 + 2],
            )?;
        }
    }
    let now = storage::now_ms();
    {
        let mut insert = conn.prepare(
            "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
        )?;
        let mut index =
            conn.prepare("INSERT INTO message_text (rowid, text) VALUES ((?1 << 32) | ?2, ?3)")?;
        let mut seqs = vec![0u64; conversations as usize + 1];
        for i in 0..args.messages {
            let c = rng.random_range(1..=conversations);
            seqs[c as usize] += 1;
            // Common words (each in several % of messages) plus a rare tag (one in
            // 5,000 messages) and a rare character (one in 1,000).
            let rare_char = char::from_u32(0x5000 + (i % 1000) as u32).unwrap_or('某');
            let text = if i % 3 == 0 {
                (0..6).map(|_| WORDS_EN[rng.random_range(0..WORDS_EN.len())]).collect::<Vec<_>>().join(" ")
                    + &format!(" ticket T{:04}X {rare_char}", i % 5000)
            } else {
                (0..6).map(|_| WORDS_ZH[rng.random_range(0..WORDS_ZH.len())]).collect::<String>()
                    + &format!("，编号{:04}号，{rare_char}，请尽快处理。", i % 5000)
            };
            let sender = (c * 5 + rng.random_range(0..5)) % args.people as u64 + 2;
            insert.execute(rusqlite::params![
                c,
                seqs[c as usize],
                sender,
                format!("b{i}"),
                now - (args.messages - i) as i64 * 1000,
                text
            ])?;
            index.execute(rusqlite::params![c, seqs[c as usize], text])?;
        }
        for (c, seq) in seqs.iter().enumerate().skip(1) {
            conn.execute("UPDATE conversations SET last_seq = ?2 WHERE id = ?1", rusqlite::params![c, seq])?;
        }
    }
    conn.execute_batch("COMMIT")?;
    println!("  generated in {:.1} s", started.elapsed().as_secs_f64());
    type Make = Box<dyn Fn(&mut rand::rngs::StdRng) -> String>;
    let kinds: [(&str, Make); 8] = [
        (
            "common, 1 Chinese char",
            Box::new(|r| WORDS_ZH[r.random_range(0..24)].chars().next().unwrap().to_string()),
        ),
        ("common, 2 Chinese chars", Box::new(|r| WORDS_ZH[r.random_range(0..24)].to_owned())),
        (
            "common, 4 Chinese chars",
            Box::new(|r| format!("{}{}", WORDS_ZH[r.random_range(0..24)], WORDS_ZH[r.random_range(0..24)])),
        ),
        (
            "common, English phrase",
            Box::new(|r| format!("{} {}", WORDS_EN[r.random_range(0..16)], WORDS_EN[r.random_range(0..16)])),
        ),
        (
            "rare, 1 Chinese char",
            Box::new(|r| char::from_u32(0x5000 + r.random_range(0..1000)).unwrap().to_string()),
        ),
        ("rare, 2 chars (号+digit)", Box::new(|r| format!("{}号", r.random_range(0..10)))),
        ("rare, Chinese tag", Box::new(|r| format!("编号{:04}号", r.random_range(0..5000)))),
        ("rare, English tag", Box::new(|r| format!("T{:04}X", r.random_range(0..5000)))),
    ];
    for (kind, make) in kinds.iter() {
        let mut samples = Vec::new();
        let mut hits = 0;
        for _ in 0..args.queries.min(30) {
            let q = audit::MessageQuery { q: Some(make(&mut rng)), limit: Some(100), ..Default::default() };
            let t = Instant::now();
            audit::search_messages(&conn, &q, 100, |_| {
                hits += 1;
                Ok(())
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            samples.push(t.elapsed());
        }
        println!(
            "  archive search, {kind:<26}: p50 {:.1} ms, p95 {:.1} ms (first 100 results, {} queries, {hits} hits)",
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.95),
            samples.len()
        );
    }
    Ok(())
}
