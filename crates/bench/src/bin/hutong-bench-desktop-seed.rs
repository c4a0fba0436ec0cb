//! `hutong-bench-desktop-seed`: the world the desktop benchmark measures the
//! app in. It runs a real server in this process (loopback, port 0), fills it
//! with `--messages` messages in `--conversations` group chats (one of them
//! holding `--big` messages), and prepares a desktop app home (`--home`)
//! whose cache already holds all of them, as after a first sign-in and sync.
//!
//! It prints `ready <server> <big conversation id>` and then serves commands
//! on standard input until it closes: `burst N` sends N messages from a
//! colleague into the big conversation as fast as the server takes them and
//! prints `burst-sent N`.

#[path = "../wire.rs"]
#[allow(dead_code)]
mod wire;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};
use futures::SinkExt as _;
use hutong_client::{Client, ClientOptions, Credential, Profile};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::Payload;
use hutong_server::{import, storage, Config, Listeners};
use wire::Conn;

const PASSWORD: &str = "bench-password-1";
const ME: &str = "u000000";
const PEER: &str = "u000001";

#[derive(clap::Parser)]
#[command(name = "hutong-bench-desktop-seed", about = "A server and an app home for the desktop benchmark")]
struct Args {
    /// The desktop app's home directory to prepare (HUTONG_DESKTOP_HOME).
    #[arg(long)]
    home: PathBuf,
    #[arg(long, default_value_t = 500)]
    conversations: usize,
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Messages in the first conversation (the one the benchmark opens).
    #[arg(long, default_value_t = 10_000)]
    big: usize,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args))
}

const LINES: [&str; 8] = [
    "请把季度报告发给财务部",
    "下午三点在三楼会议室开会",
    "The build is green again, thanks!",
    "客户那边确认了，周五上线",
    "Can you review the design doc before lunch?",
    "收到，马上处理",
    "合同已经盖章，扫描件在共享盘",
    "Let's move the stand-up to 10:15 tomorrow.",
];

/// Sends every (conversation, text) with up to 256 in flight; returns when all are acknowledged.
async fn pump(conn: &mut Conn, tag: &str, items: &[(u64, String)]) -> anyhow::Result<()> {
    let (mut sent, mut acked) = (0usize, 0usize);
    while acked < items.len() {
        while sent < items.len() && sent - acked < 256 {
            let (conversation_id, text) = &items[sent];
            let msg = v1::SendMessage {
                conversation_id: *conversation_id,
                client_msg_id: format!("{tag}-{sent}"),
                text: text.clone(),
                ..Default::default()
            };
            conn.feed(Payload::SendMessage(msg)).await?;
            sent += 1;
        }
        conn.framed.flush().await?;
        let env = conn.recv().await?;
        match env.payload {
            Some(Payload::SendAck(_)) => acked += 1,
            Some(Payload::Error(e)) => bail!("the server refused a message: {e}"),
            _ => {}
        }
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.conversations >= 2 && args.messages > args.big,
        "need at least 2 conversations and more messages than --big"
    );
    let data = tempfile::tempdir()?;
    let config = Config {
        data_dir: data.path().to_owned(),
        tcp_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        tcp_tls: false,
        ..Config::default()
    };
    hutong_server::prepare(&config, Some(PASSWORD.into()))?;
    {
        let people = args.conversations + 1;
        let mut csv = String::from("account,display_name,title,department\n");
        const NAMES: [&str; 8] = ["张伟", "李娜", "王芳", "刘洋", "陈静", "赵磊", "杨敏", "黄勇"];
        for i in 0..people {
            csv.push_str(&format!(
                "u{i:06},{}{},工程师,胡同科技/研发中心/组{}\n",
                NAMES[i % 8],
                i / 8,
                i % 20
            ));
        }
        let conn = storage::open_connection(&config.database_path())?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let hash = hutong_server::accounts::hash_password(PASSWORD)?;
        import::import(&conn, csv.as_bytes(), Some(&hash))
            .map_err(|e| anyhow::anyhow!("import failed: {e:?}"))?;
        conn.execute_batch("UPDATE users SET must_change_password = 0; COMMIT")?;
    }
    let listeners = Listeners::bind(&config).await?;
    let tcp = listeners.tcp_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hutong_server::run(config.clone(), listeners, async move {
        let _ = stopped.await;
    }));

    let started = Instant::now();
    let (mut me, _) = Conn::open(tcp, None, ME, Secret::Password(PASSWORD.into())).await?;
    let (mut peer, _) = Conn::open(tcp, None, PEER, Secret::Password(PASSWORD.into())).await?;
    let accounts: Vec<String> = (1..=args.conversations).map(|i| format!("u{i:06}")).collect();
    let users = match me.call(Payload::LookupUsers(v1::LookupUsers { accounts, user_ids: vec![] })).await? {
        Payload::UserList(list) => list.users,
        other => bail!("expected users, got {other:?}"),
    };
    let peer_id = users.iter().find(|u| u.account == PEER).context("no peer")?.id;
    let mut conversations = Vec::new();
    for (i, u) in users.iter().enumerate().take(args.conversations) {
        let member_ids = if u.id == peer_id { vec![peer_id] } else { vec![peer_id, u.id] };
        let req = v1::CreateGroup { name: format!("项目组 {i:03}"), member_ids };
        match me.call(Payload::CreateGroup(req)).await? {
            Payload::Conversation(c) => conversations.push(c.id),
            other => bail!("expected a conversation, got {other:?}"),
        }
    }
    let big = conversations[0];
    // The rest spread evenly, the remainder one each over the first ones.
    let others = args.conversations - 1;
    let (rest, extra) = ((args.messages - args.big) / others, (args.messages - args.big) % others);
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for (c, &id) in conversations.iter().enumerate() {
        let n = if c == 0 { args.big } else { rest + usize::from(c <= extra) };
        for k in 0..n {
            let text = format!("{} ({k})", LINES[(c + k) % LINES.len()]);
            if k % 2 == 0 {
                mine.push((id, text))
            } else {
                theirs.push((id, text))
            }
        }
    }
    let total = mine.len() + theirs.len();
    tokio::try_join!(pump(&mut me, "me", &mine), pump(&mut peer, "peer", &theirs))?;
    eprintln!(
        "seeded {total} messages in {} conversations in {:.1} s",
        conversations.len(),
        started.elapsed().as_secs_f64()
    );

    // The app's first sign-in and sync, done by the client core it uses.
    let started = Instant::now();
    let account_dir = args.home.join("accounts").join(ME);
    std::fs::create_dir_all(&account_dir)?;
    let server_addr = format!("tcp://{tcp}");
    let mut options = ClientOptions::new(server_addr.parse()?, ME, account_dir.join("cache.db"));
    options.device = "desktop".into();
    // A throwaway server on loopback, plain TCP by choice.
    options.insecure_plaintext = true;
    let client = Client::start(options, Credential::Password(PASSWORD.into()))?;
    client.wait_online().await?;
    loop {
        let cached: usize = client.conversations()?.iter().map(|c| c.last_seq as usize).sum();
        let missing = conversations
            .iter()
            .map(|&id| client.cached_messages(id).map(|m| m.len()))
            .sum::<Result<usize, _>>()?;
        if missing >= total && cached >= total {
            break;
        }
        client.request_sync();
        client.wait_synced().await?;
    }
    Profile {
        server: server_addr.clone(),
        account: ME.into(),
        device: "desktop".into(),
        fingerprint: None,
        token: client.token().context("no token")?,
        insecure_plaintext: true,
    }
    .save(&args.home)?;
    client.shutdown();
    eprintln!("the app's cache holds {total} messages ({:.1} s)", started.elapsed().as_secs_f64());
    println!("ready {server_addr} {big}");

    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(8);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut bursts = 0;
    while let Some(line) = lines.recv().await {
        if let Some(n) = line.strip_prefix("burst ") {
            let n: usize = n.trim().parse()?;
            bursts += 1;
            let items: Vec<(u64, String)> =
                (0..n).map(|k| (big, format!("突发消息 burst {bursts} #{k}"))).collect();
            pump(&mut peer, &format!("burst{bursts}"), &items).await?;
            println!("burst-sent {n}");
        }
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}
