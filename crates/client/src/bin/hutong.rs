//! `hutong`: the command-line client, a thin shell over the client core.
//!
//! Exit codes scripts can rely on: 0 success, 1 other error, 2 usage error,
//! 3 refused by the server (credentials, disabled, not allowed, not found),
//! 4 server unreachable (a message stays queued and goes out with the next
//! command that connects), 5 the server's certificate changed.
//!
//! File commands (`send-file`, `send-dir`, `fetch`, `resume`) wait until
//! their transfer is done. On a terminal they draw a progress bar; when
//! standard output is not a terminal they print, for scripts:
//!
//! ```text
//! progress <done_bytes> <total_bytes>
//! done <transfer id> wire_bytes=<n> path=<local path>
//! ```
//!
//! `progress` lines come as bytes move (at most about 8 a second), and
//! exactly one `done` line per transfer at the end (`path` is the source of
//! an upload, the final path of a download). A failed transfer prints its
//! sentence and code on standard error and exits non-zero.

use std::collections::HashMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hutong_client::files::human_size;
use hutong_client::{
    AttachmentKind, CachedMessage, Client, ClientError, ClientOptions, Credential, Event, Profile,
    SendOptions, SendOutcome, ServerAddr, Status, Transfer, TransferState,
};

#[derive(Parser)]
#[command(
    name = "hutong",
    version,
    about = "Hutong messaging from the command line",
    args_override_self = true
)]
struct Cli {
    /// Profile name; keep several accounts side by side.
    #[arg(long, global = true, default_value = "default", env = "HUTONG_PROFILE")]
    profile: String,
    /// Directory holding the profiles. Default: $HUTONG_HOME or ~/.hutong.
    #[arg(long, global = true, env = "HUTONG_HOME")]
    home: Option<PathBuf>,
    /// Seconds to wait for the server before giving up.
    #[arg(long, global = true, default_value_t = 15)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in and remember the session in the profile.
    Login {
        /// Server address: tls://host:7300 (default scheme) or wss://host:7380/ws; the
        /// unencrypted tcp://host:port and ws://host:port/ws need --insecure-plaintext.
        #[arg(long)]
        server: String,
        /// Allow an unencrypted tcp:// or ws:// address: the password, the session
        /// token and every message cross the network in clear text.
        #[arg(long)]
        insecure_plaintext: bool,
        #[arg(long)]
        account: String,
        /// Device name; one session per device.
        #[arg(long, default_value = "cli")]
        device: String,
        /// Insist on this certificate fingerprint instead of trusting the first one seen.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Read the password from standard input (else HUTONG_PASSWORD, else a prompt).
        /// When the administrator requires a new password, it is read the same
        /// way next (or from HUTONG_NEW_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
    },
    /// End this device's session.
    Logout,
    /// Send a message. TARGET is an account name (direct chat) or #ID (a conversation).
    Send {
        target: String,
        #[arg(required = true)]
        text: Vec<String>,
        #[arg(long)]
        urgent: bool,
        /// Quote the message with this seq.
        #[arg(long)]
        reply: Option<u64>,
    },
    /// Interactive chat: shows recent history, sends each line you type.
    Chat { target: String },
    /// Follow new messages as they arrive.
    Tail {
        /// Only this conversation (account or #ID).
        target: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Print a conversation's history, oldest first: the newest LIMIT
    /// messages (before SEQ with --before), or the oldest LIMIT after SEQ
    /// with --after. Pages through the cache and the server; at most 100,000.
    History {
        target: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only messages with a seq below this one.
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
        /// Only messages with a seq above this one (the oldest of them first).
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// List conversations with unread counts.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Group robots (incoming webhooks) of a group you own.
    #[command(subcommand)]
    Robot(RobotCommand),
    /// Notices (公告) with sign-off.
    #[command(subcommand)]
    Notice(NoticeCommand),
    /// Recall one of your messages.
    Recall { target: String, seq: u64 },
    /// Edit the text of one of your messages (TARGET as for `recall`).
    Edit { target: String, seq: u64, text: String },
    /// React to message SEQ with EMOJI (TARGET as for `recall`); --remove takes it back.
    React {
        target: String,
        seq: u64,
        emoji: String,
        #[arg(long)]
        remove: bool,
    },
    /// Pin message SEQ for every member (TARGET as for `recall`); --remove unpins it.
    Pin {
        target: String,
        seq: u64,
        #[arg(long)]
        remove: bool,
    },
    /// List the messages pinned in a conversation, most recently pinned
    /// first: `SEQ <sender>: <text> (pinned by <account>)`, or with --json
    /// one object per line.
    Pins {
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Forward messages SEQS of conversation FROM (as for `recall`) to each
    /// --to TARGET: one by one as your own messages, or with --merged as one
    /// chat-history record per target. Prints `forwarded N to #ID` per target.
    Forward {
        from: String,
        #[arg(required = true)]
        seqs: Vec<u64>,
        #[arg(long = "to", required = true, value_name = "TARGET")]
        to: Vec<String>,
        #[arg(long)]
        merged: bool,
    },
    /// Send TEXT to people (--to ACCOUNT, repeatable) and departments
    /// (--dept ID, with their sub-departments), each as your own direct
    /// message; `{name}` and `{department}` are filled in per person.
    /// Prints `sent to N people, id ID`.
    MassSend {
        text: String,
        #[arg(long = "to", value_name = "ACCOUNT")]
        to: Vec<String>,
        #[arg(long = "dept", value_name = "ID")]
        departments: Vec<u64>,
    },
    /// Per person of mass-send ID: `<account> read|delivered|sent`, or with
    /// --json one object per line.
    MassStatus {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Who has read message SEQ and who has not (TARGET: an account or #ID).
    /// Prints `read <account>` and `unread <account>` lines, or with --json
    /// one object `{"read": [...], "unread": [...]}` of account names.
    ReadList {
        target: String,
        seq: u64,
        #[arg(long)]
        json: bool,
    },
    /// Browse and search the company directory (from the local copy).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Send a file (a PNG, JPEG, GIF, WebP or BMP goes as an image with a
    /// thumbnail). TARGET is an account name or #ID.
    ///
    /// Waits until the file is uploaded and its message acknowledged. When
    /// standard output is not a terminal it prints `progress <done_bytes>
    /// <total_bytes>` lines, then `done <transfer id> wire_bytes=<n>
    /// path=<file>`. Interrupted uploads go on with `hutong resume`, sending
    /// only what the server does not have yet.
    SendFile { target: String, path: PathBuf },
    /// Send a whole folder (files, empty folders and names; links and
    /// special files inside are left out). Output as for send-file.
    SendDir { target: String, dir: PathBuf },
    /// Download the file, image or folder of message SEQ into a folder
    /// (never overwriting: a taken name becomes "name (1).ext").
    ///
    /// Output as for send-file; `path` in the `done` line is where it was saved.
    Fetch {
        target: String,
        seq: u64,
        /// Folder to save into (default: the current folder).
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// List uploads and downloads, newest first.
    Transfers {
        #[arg(long)]
        json: bool,
    },
    /// Go on with every unfinished transfer of this profile (queued,
    /// interrupted or paused) and wait for them. Output as for send-file,
    /// one `done` line per transfer.
    Resume,
}

#[derive(Subcommand)]
enum OrgCommand {
    /// List a department's sub-departments and people (the top level without an id).
    Browse {
        department: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Show one person.
    Show {
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Search by name, pinyin (zhangsan), initials (zs), account, title or department.
    Search {
        text: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create a group with these members (account names).
    Create {
        name: String,
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    /// Add people to a group.
    Add { group: String, accounts: Vec<String> },
    /// Remove a person from a group (owner or admin).
    Remove { group: String, account: String },
    /// Leave a group.
    Leave { group: String },
    /// Rename a group.
    Rename { group: String, name: String },
}

/// Notices (公告) with sign-off: send, read, sign, and for senders who
/// received, read and signed.
#[derive(Subcommand)]
enum NoticeCommand {
    /// Send a notice; prints `sent notice ID to N people`.
    Send {
        #[arg(long)]
        title: String,
        /// The text (a Markdown subset).
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
        #[arg(long = "to", value_name = "ACCOUNT")]
        to: Vec<String>,
        /// A department, with its sub-departments (administrators and publishers).
        #[arg(long = "dept", value_name = "ID")]
        departments: Vec<u64>,
        /// A group conversation (#ID) you are a member of.
        #[arg(long = "group", value_name = "CONV")]
        groups: Vec<String>,
        #[arg(long)]
        everyone: bool,
        /// Ask each recipient to sign it off.
        #[arg(long)]
        sign: bool,
        /// RFC 3339 (2026-12-11T18:00:00+08:00) or +DURATION (+30m, +2h, +3d); needs --sign.
        #[arg(long)]
        deadline: Option<String>,
        #[arg(long, conflicts_with = "important")]
        urgent: bool,
        #[arg(long)]
        important: bool,
        /// A choice recipients can click (repeatable, at most 4).
        #[arg(long = "button", value_name = "LABEL")]
        buttons: Vec<String>,
    },
    /// My notices, those awaiting my signature first: `ID [flags] title`.
    Ls {
        #[arg(long)]
        unread: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show notice ID (marks it read).
    Show { id: u64 },
    /// Sign notice ID off.
    Sign { id: u64 },
    /// Notices I sent, newest first, with their counts.
    Sent {
        #[arg(long)]
        json: bool,
    },
    /// Who received, read and signed notice ID (its sender or an administrator).
    Status {
        id: u64,
        #[arg(long, conflicts_with = "not_signed")]
        not_read: bool,
        #[arg(long)]
        not_signed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remind everyone who has not signed notice ID.
    Remind { id: u64 },
    /// Withdraw notice ID.
    Withdraw { id: u64 },
}

#[derive(Subcommand)]
enum RobotCommand {
    /// Add a robot to GROUP (#ID); prints its URL (and signing secret) once.
    Add {
        group: String,
        #[arg(long, default_value = "robot")]
        name: String,
        /// Require DingTalk-style `timestamp` and `sign` query parameters.
        #[arg(long)]
        signed: bool,
        /// Address blocks the robot may be called from (repeatable; none: any).
        #[arg(long = "allow")]
        allow: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List GROUP's robots.
    Ls {
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove robot ID from GROUP; its URL stops working.
    Rm { group: String, robot: u64 },
}

struct Failure {
    code: u8,
    message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Remote { .. } => 3,
            ClientError::Offline | ClientError::Disconnected | ClientError::Transport(_) => 4,
            ClientError::FingerprintChanged { .. } => 5,
            ClientError::InvalidAddress(_) => 2,
            _ => 1,
        };
        Failure { code, message: format!("{} [{}]", e.explain(), e.code()) }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure { code: 1, message: e.to_string() }
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure { code: 1, message: e.to_string() }
    }
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into() }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUTONG_LOG").unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(real_main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn profile_dir(cli: &Cli) -> PathBuf {
    let home = cli.home.clone().unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".hutong")
    });
    home.join("profiles").join(&cli.profile)
}

async fn real_main(cli: Cli) -> Result<(), Failure> {
    let dir = profile_dir(&cli);
    let timeout = Duration::from_secs(cli.timeout);
    if let Command::Login { server, insecure_plaintext, account, device, fingerprint, password_stdin } =
        &cli.command
    {
        let security = Security { fingerprint: fingerprint.clone(), insecure_plaintext: *insecure_plaintext };
        return login(&dir, server, account, device, security, *password_stdin, timeout).await;
    }
    let profile = Profile::load(&dir)?.ok_or_else(|| {
        fail(2, format!("not logged in (profile {:?}); run `hutong login` first", cli.profile))
    })?;
    let mut options = ClientOptions::new(profile.server.parse()?, &profile.account, dir.join("cache.db"));
    options.device = profile.device.clone();
    options.pinned_fingerprint = profile.fingerprint.clone();
    options.insecure_plaintext = profile.insecure_plaintext;
    let client = Client::start(options, Credential::Token(profile.token.clone()))?;
    let result = match wait_online(&client, timeout).await {
        // The client gave up: the server refused this session (revoked,
        // expired, locked out...); say so rather than working offline.
        Online::GaveUp(e) => Err(e.into()),
        Online::Yes => {
            // The first sync makes the cache current before we read it.
            let _ = tokio::time::timeout(timeout, wait_first_sync(&client)).await;
            command(&client, cli.command, true, timeout).await
        }
        Online::Not(why) => {
            if let Some(e) = why {
                eprintln!("note: working offline: {} [{}]", e.explain(), e.code());
            }
            command(&client, cli.command, false, timeout).await
        }
    };
    client.shutdown();
    result
}

enum Online {
    Yes,
    /// The client stopped trying: only the person can fix this.
    GaveUp(ClientError),
    /// Not online within the time; the server's refusal, if that was why.
    Not(Option<ClientError>),
}

/// Waits until online. A server that refused us and asked to wait longer
/// than the time left (a connection cap) ends the wait at once with its
/// reason; the reason is the server's answer, never "unreachable".
async fn wait_online(client: &Client, timeout: Duration) -> Online {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut status = client.status();
    loop {
        let server_refusal = || client.last_error().filter(|e| e.remote_code().is_some());
        match &*status.borrow_and_update() {
            Status::Online => return Online::Yes,
            Status::Offline { .. } => {
                return match tokio::time::timeout(Duration::ZERO, client.wait_online()).await {
                    Ok(Err(e)) => Online::GaveUp(e),
                    _ => Online::Not(server_refusal()),
                }
            }
            Status::Reconnecting { in_ms, .. } => {
                let next_try = tokio::time::Instant::now() + Duration::from_millis(*in_ms);
                if next_try >= deadline {
                    if let Some(e) = server_refusal() {
                        return Online::Not(Some(e));
                    }
                }
            }
            Status::Connecting => {}
        }
        if tokio::time::timeout_at(deadline, status.changed()).await.is_err() {
            return Online::Not(server_refusal());
        }
    }
}

/// Why a command that needs the server cannot run: the server's refusal
/// when there was one (exit 3), else unreachable (exit 4).
fn offline(client: &Client, what: &str) -> Failure {
    match client.last_error().filter(|e| e.remote_code().is_some()) {
        Some(e) => fail(3, format!("{what}: {} [{}]", e.explain(), e.code())),
        None => fail(4, format!("{what}: cannot reach the server")),
    }
}

async fn wait_first_sync(client: &Client) {
    let mut events = client.events();
    while client.sync_rounds() == 0 {
        if matches!(events.recv().await, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
            return;
        }
    }
}

/// How `login` may trust the server: a fingerprint to insist on, and
/// whether the person allowed an unencrypted address.
struct Security {
    fingerprint: Option<String>,
    insecure_plaintext: bool,
}

async fn login(
    dir: &std::path::Path,
    server: &str,
    account: &str,
    device: &str,
    security: Security,
    password_stdin: bool,
    timeout: Duration,
) -> Result<(), Failure> {
    let Security { fingerprint, insecure_plaintext } = security;
    let addr: ServerAddr = server.parse()?;
    // Refused before the password is even asked for.
    addr.check_secure(insecure_plaintext)?;
    if insecure_plaintext && addr.is_plaintext() {
        eprintln!(
            "warning: {addr} is not encrypted; the password and messages cross the network in clear text"
        );
    }
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Ok(p) = std::env::var("HUTONG_PASSWORD") {
        p
    } else {
        eprint!("Password for {account}: ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    std::fs::create_dir_all(dir)?;
    // A new login starts a fresh cache: it may be another account or server.
    for name in ["cache.db", "cache.db-wal", "cache.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let start = |password: String| -> Result<Client, Failure> {
        let mut options = ClientOptions::new(addr.clone(), account, dir.join("cache.db"));
        options.device = device.to_owned();
        options.pinned_fingerprint = fingerprint.clone();
        options.insecure_plaintext = insecure_plaintext;
        Ok(Client::start(options, Credential::Password(password))?)
    };
    let mut client = start(password.clone())?;
    let mut outcome = wait_online(&client, timeout).await;
    client.shutdown();
    if let Online::GaveUp(e) = &outcome {
        if e.remote_code() == Some(hutong_protocol::ErrorCode::PasswordChangeRequired) {
            eprintln!("The administrator requires a new password for {account}.");
            let new = match std::env::var("HUTONG_NEW_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    eprint!("New password (at least 8 characters): ");
                    std::io::stderr().flush()?;
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let pinned = fingerprint.clone().or_else(|| client.fingerprint());
            hutong_client::change_password(
                &addr,
                pinned.as_deref(),
                insecure_plaintext,
                account,
                &password,
                &new,
            )
            .await?;
            eprintln!("Password changed.");
            client = start(new)?;
            outcome = wait_online(&client, timeout).await;
            client.shutdown();
        }
    }
    match outcome {
        Online::Not(Some(e)) => return Err(e.into()),
        Online::Not(None) => {
            return Err(fail(4, format!("could not reach {addr} within {} s", timeout.as_secs())))
        }
        Online::GaveUp(e) => return Err(e.into()),
        Online::Yes => {}
    }
    let seen = client.fingerprint();
    let token = client.token().ok_or_else(|| fail(1, "the server did not issue a session token"))?;
    let profile = Profile {
        server: addr.to_string(),
        account: account.to_owned(),
        device: device.to_owned(),
        fingerprint: fingerprint.or(seen.clone()),
        token,
        insecure_plaintext: insecure_plaintext && addr.is_plaintext(),
    };
    profile.save(dir)?;
    if let Some(fp) = seen {
        println!("server certificate fingerprint (SHA-256, now pinned): {fp}");
    }
    println!("logged in as {account} (user id {})", client.user_id());
    Ok(())
}

/// `#12` is conversation 12; anything else is an account for a direct chat.
async fn resolve_target(client: &Client, target: &str, online: bool) -> Result<u64, Failure> {
    if let Some(id) = target.strip_prefix('#') {
        return id.parse().map_err(|_| fail(2, format!("{target:?} is not a conversation id")));
    }
    let account = target.trim_start_matches('@');
    let known = client.conversations()?;
    if !online {
        // Offline: find the direct conversation in the cache.
        let names = client.names(&known.iter().flat_map(|c| c.members.clone()).collect::<Vec<_>>()).await?;
        let me = client.user_id();
        return known
            .iter()
            .find(|c| {
                c.kind == "direct"
                    && c.members.iter().any(|m| *m != me && names.get(m).is_some_and(|n| n == account))
            })
            .map(|c| c.id)
            .ok_or_else(|| fail(4, format!("offline, and no cached conversation with {account}")));
    }
    let user = client.resolve(account).await?;
    Ok(client.open_direct(user).await?.id)
}

fn print_message(m: &CachedMessage, names: &HashMap<u64, String>, json: bool) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = serde_json::to_value(m)?;
        v["sender"] = serde_json::Value::String(names.get(&m.sender_id).cloned().unwrap_or_default());
        writeln!(out, "{v}")?;
    } else {
        let who = names.get(&m.sender_id).cloned().unwrap_or_else(|| format!("#{}", m.sender_id));
        let body = match (m.kind, m.recalled, &m.attachment) {
            (_, true, _) => "(recalled)".to_owned(),
            ("system", _, _) => format!("* {}", m.system.clone().unwrap_or_default()),
            ("recall", _, _) => format!("* recalled message {}", m.target_seq),
            ("edit", _, _) => format!("* edited message {}", m.target_seq),
            ("reaction", _, _) => format!("* reaction {} to message {}", m.text, m.target_seq),
            ("forward", _, _) => match &m.forward {
                Some(f) => {
                    let lines: String = f
                        .items
                        .iter()
                        .map(|i| {
                            let body = match &i.attachment {
                                Some(a) => format!("[file] {}", a.name),
                                None => i.text.clone(),
                            };
                            format!("\n    | {}: {}", i.sender_name, body)
                        })
                        .collect();
                    let title = f.title_names.join(", ");
                    format!("[chat history: {title}]{lines}")
                }
                None => "[chat history]".to_owned(),
            },
            ("pin", _, _) if m.unpinned => format!("* unpinned message {}", m.target_seq),
            ("pin", _, _) => format!("* pinned message {}", m.target_seq),
            ("file", _, Some(a)) => match a.kind {
                AttachmentKind::File => format!("[file] {} ({})", a.name, human_size(a.size)),
                AttachmentKind::Image => {
                    format!("[image] {} ({}×{}, {})", a.name, a.width, a.height, human_size(a.size))
                }
                AttachmentKind::Folder => format!(
                    "[folder] {} ({} file{}, {})",
                    a.name,
                    a.file_count,
                    if a.file_count == 1 { "" } else { "s" },
                    human_size(a.size)
                ),
            },
            _ if m.edited => format!("{} (edited)", m.text),
            _ => m.text.clone(),
        };
        let reactions: String =
            m.reactions.iter().map(|r| format!(" [{} {}]", r.emoji, r.user_ids.len())).collect();
        writeln!(out, "[#{} {:>4}] {}: {}{}", m.conversation_id, m.seq, who, body, reactions)?;
    }
    out.flush()?;
    Ok(())
}

async fn command(client: &Client, command: Command, online: bool, timeout: Duration) -> Result<(), Failure> {
    match command {
        Command::Login { .. } => unreachable!("handled before connecting"),
        Command::Logout => {
            if !online {
                return Err(offline(client, "cannot end the session"));
            }
            client.logout().await?;
            println!("logged out");
            Ok(())
        }
        Command::Send { target, text, urgent, reply } => {
            let conversation = resolve_target(client, &target, online).await?;
            let options = SendOptions { reply_to_seq: reply.unwrap_or(0), urgent, ..Default::default() };
            let mut events = client.events();
            let id = client.send_text(conversation, &text.join(" "), options)?;
            if !online {
                return Err(fail(
                    4,
                    format!("offline: message {id} is queued and will be sent on the next connection"),
                ));
            }
            // The events say when to look; the cache says what happened (an
            // event can be missed when the channel lags, or come before we listen).
            let outcome = || -> Result<Option<(u64, u64)>, Failure> {
                match client.send_outcome(&id)? {
                    SendOutcome::Sent { conversation_id, seq } => Ok(Some((conversation_id, seq))),
                    SendOutcome::Failed { message, code } => Err(fail(3, format!("{message} [{code}]"))),
                    SendOutcome::Waiting => Ok(None),
                }
            };
            let wait = async {
                loop {
                    if let Some(done) = outcome()? {
                        return Ok(done);
                    }
                    match events.recv().await {
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            return Err(fail(1, "client stopped"))
                        }
                        Ok(
                            Event::Acked { .. }
                            | Event::SendFailed { .. }
                            | Event::Synced
                            | Event::Message(_),
                        )
                        | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Ok(_) => continue,
                    }
                }
            };
            let waited = match tokio::time::timeout(timeout, wait).await {
                Ok(r) => r.map(Some),
                // One last look: the acknowledgement may have been stored as time ran out.
                Err(_) => outcome(),
            };
            match waited? {
                Some((conv, seq)) => {
                    println!("sent to #{conv} as seq {seq}");
                    Ok(())
                }
                None => Err(fail(4, format!("no acknowledgement yet: message {id} stays queued"))),
            }
        }
        Command::History { target, limit, before, after, json } => {
            if limit > hutong_client::MAX_HISTORY {
                return Err(fail(2, format!("--limit is at most {}", hutong_client::MAX_HISTORY)));
            }
            let conversation = resolve_target(client, &target, online).await?;
            let page = client.history_range(conversation, after, before, limit).await?;
            let names = client.names(&page.iter().map(|m| m.sender_id).collect::<Vec<_>>()).await?;
            for m in &page {
                print_message(m, &names, json)?;
            }
            if let Some(last) = page.last() {
                client.mark_read(conversation, last.seq)?;
                if online {
                    client.report_cursors().await?;
                }
            }
            Ok(())
        }
        Command::Ls { json } => {
            let list = client.conversations()?;
            let names =
                client.names(&list.iter().flat_map(|c| c.members.clone()).collect::<Vec<_>>()).await?;
            let me = client.user_id();
            for c in list {
                let title = if c.kind == "group" {
                    c.name.clone()
                } else {
                    c.members
                        .iter()
                        .filter(|m| **m != me)
                        .filter_map(|m| names.get(m).cloned())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if json {
                    let mut v = serde_json::to_value(&c)?;
                    v["title"] = serde_json::Value::String(title);
                    println!("{v}");
                } else {
                    let preview: String = c.last_text.clone().unwrap_or_default().chars().take(40).collect();
                    let state = if c.active { "" } else { " (left)" };
                    println!(
                        "#{:<6} {:<6} {:<24} unread {:>4}  {}{}",
                        c.id, c.kind, title, c.unread, preview, state
                    );
                }
            }
            Ok(())
        }
        Command::Tail { target, json, count } => {
            if !online {
                return Err(offline(client, "cannot run this offline"));
            }
            let only = match target {
                Some(t) => Some(resolve_target(client, &t, online).await?),
                None => None,
            };
            let mut events = client.events();
            // Scripts wait for this line before producing what they want to see.
            eprintln!("-- following new messages (Ctrl-C to stop)");
            let mut seen = 0usize;
            let mut status = client.status();
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Ok(Event::Message(m)) if only.is_none_or(|c| c == m.conversation_id) => {
                            let names = client.names(&[m.sender_id]).await?;
                            print_message(&m, &names, json)?;
                            seen += 1;
                            if count.is_some_and(|c| seen >= c) {
                                return Ok(());
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                        _ => {}
                    },
                    changed = status.changed() => {
                        if changed.is_err() { return Ok(()); }
                        let s = status.borrow_and_update().clone();
                        if let hutong_client::Status::Offline { code, reason } = s {
                            return Err(fail(3, format!("{reason} [{code}]")));
                        }
                        if !json {
                            eprintln!("-- {}", serde_json::to_string(&s)?);
                        }
                    }
                }
            }
        }
        Command::Chat { target } => {
            if !online {
                return Err(offline(client, "cannot run this offline"));
            }
            let conversation = resolve_target(client, &target, online).await?;
            let page = client.history(conversation, None, 20).await?;
            let names = client.names(&page.iter().map(|m| m.sender_id).collect::<Vec<_>>()).await?;
            for m in &page {
                print_message(m, &names, false)?;
            }
            if std::io::stdin().is_terminal() {
                eprintln!("-- type a message and press Enter; Ctrl-D to quit");
            }
            let (line_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if line_tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            });
            let mut events = client.events();
            loop {
                tokio::select! {
                    line = lines.recv() => match line {
                        Some(l) if !l.trim().is_empty() => { client.send_text(conversation, &l, SendOptions::default())?; }
                        Some(_) => {}
                        None => break,
                    },
                    e = events.recv() => match e {
                        Ok(Event::Message(m)) if m.conversation_id == conversation => {
                            let names = client.names(&[m.sender_id]).await?;
                            print_message(&m, &names, false)?;
                            client.mark_read(conversation, m.seq)?;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        _ => {}
                    },
                }
            }
            // Give queued lines their chance to be acknowledged before leaving.
            let _ = tokio::time::timeout(timeout, async {
                let mut events = client.events();
                while !client
                    .outbox(Some(conversation))
                    .map(|o| o.iter().all(|e| e.state == "failed"))
                    .unwrap_or(true)
                {
                    let _ = events.recv().await;
                }
            })
            .await;
            Ok(())
        }
        Command::Org(org) => org_command(client, org),
        Command::SendFile { target, path } => {
            let conversation = resolve_target(client, &target, online).await?;
            let events = client.events();
            let t = client.send_file(conversation, &path)?;
            follow(client, events, vec![t], online).await
        }
        Command::SendDir { target, dir } => {
            let conversation = resolve_target(client, &target, online).await?;
            let events = client.events();
            let t = client.send_folder(conversation, &dir)?;
            if let Ok(walked) = hutong_client::folder::walk(&dir) {
                if walked.skipped > 0 {
                    eprintln!("note: {} symbolic link(s) or special file(s) left out", walked.skipped);
                }
            }
            follow(client, events, vec![t], online).await
        }
        Command::Fetch { target, seq, to } => {
            let conversation = resolve_target(client, &target, online).await?;
            // The message may not be cached yet (an old one): fetch its page.
            if client.cached_messages(conversation)?.iter().all(|m| m.seq != seq) {
                client.history(conversation, Some(seq + 1), 1).await?;
            }
            let dest = match to {
                Some(d) => d,
                None => std::env::current_dir()?,
            };
            let events = client.events();
            let t = client.fetch(conversation, seq, &dest)?;
            follow(client, events, vec![t], online).await
        }
        Command::Transfers { json } => {
            let mut out = std::io::stdout().lock();
            for t in client.transfers()? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&t)?)?;
                } else {
                    let error = match (&t.error, &t.error_code) {
                        (Some(e), Some(c)) => format!("  ({e} [{c}])"),
                        _ => String::new(),
                    };
                    writeln!(
                        out,
                        "{} {:<8} {:<9} {:<6} {:>10} / {:<10} #{} {} -> {}{}",
                        t.id,
                        t.direction.as_str(),
                        t.state.as_str(),
                        t.kind.as_str(),
                        human_size(t.done_bytes),
                        human_size(t.total_bytes),
                        t.conversation_id,
                        t.name,
                        t.local_path.display(),
                        error
                    )?;
                }
            }
            Ok(())
        }
        Command::Resume => {
            let events = client.events();
            let mut pending = Vec::new();
            for t in client.transfers()? {
                if matches!(t.state, TransferState::Queued | TransferState::Running | TransferState::Paused) {
                    client.resume_transfer(&t.id)?;
                    pending.push(t);
                }
            }
            if pending.is_empty() {
                eprintln!("nothing to resume");
                return Ok(());
            }
            pending.reverse();
            follow(client, events, pending, online).await
        }
        Command::ReadList { target, seq, json } => {
            if !online {
                return Err(offline(client, "cannot ask who has read a message offline"));
            }
            let conversation = resolve_target(client, &target, online).await?;
            let list = client.read_list(conversation, seq).await?;
            let ids: Vec<u64> = list.read_user_ids.iter().chain(&list.unread_user_ids).copied().collect();
            let names = client.names(&ids).await?;
            let name = |id: &u64| names.get(id).cloned().unwrap_or_else(|| format!("#{id}"));
            let read: Vec<String> = list.read_user_ids.iter().map(name).collect();
            let unread: Vec<String> = list.unread_user_ids.iter().map(name).collect();
            if json {
                println!("{}", serde_json::json!({ "read": read, "unread": unread }));
            } else {
                for r in &read {
                    println!("read {r}");
                }
                for u in &unread {
                    println!("unread {u}");
                }
            }
            Ok(())
        }
        Command::Recall { target, seq } => {
            let conversation = resolve_target(client, &target, online).await?;
            client.recall(conversation, seq).await?;
            println!("recalled seq {seq} in #{conversation}");
            Ok(())
        }
        Command::React { target, seq, emoji, remove } => {
            let conversation = resolve_target(client, &target, online).await?;
            client.react(conversation, seq, &emoji, remove).await?;
            let done = if remove { "removed" } else { "added" };
            println!("{done} {emoji} on seq {seq} in #{conversation}");
            Ok(())
        }
        Command::Forward { from, seqs, to, merged } => {
            if !online {
                return Err(offline(client, "cannot forward offline"));
            }
            let source = resolve_target(client, &from, online).await?;
            let mut targets = Vec::with_capacity(to.len());
            for t in &to {
                targets.push(resolve_target(client, t, online).await?);
            }
            let stored = client.forward(source, &seqs, &targets, merged).await?;
            for t in &targets {
                let n = stored.iter().filter(|m| m.conversation_id == *t).count();
                println!("forwarded {n} to #{t}");
            }
            Ok(())
        }
        Command::MassSend { text, to, departments } => {
            if !online {
                return Err(offline(client, "cannot mass-send offline"));
            }
            let mut ids = Vec::with_capacity(to.len());
            for a in &to {
                ids.push(client.resolve(a.trim_start_matches('@')).await?);
            }
            let status = client.mass_send(&text, &ids, &departments).await?;
            println!("sent to {} people, id {}", status.recipients.len(), status.client_msg_id);
            Ok(())
        }
        Command::MassStatus { id, json } => {
            if !online {
                return Err(offline(client, "cannot ask for a mass-send's status offline"));
            }
            let status = client.mass_send_status(&id).await?;
            let names =
                client.names(&status.recipients.iter().map(|r| r.user_id).collect::<Vec<_>>()).await?;
            for r in &status.recipients {
                let who = names.get(&r.user_id).cloned().unwrap_or_else(|| format!("#{}", r.user_id));
                let state = if r.read {
                    "read"
                } else if r.delivered {
                    "delivered"
                } else {
                    "sent"
                };
                if json {
                    let v = serde_json::json!({
                        "account": who, "user_id": r.user_id, "conversation_id": r.conversation_id,
                        "seq": r.seq, "delivered": r.delivered, "read": r.read,
                    });
                    println!("{v}");
                } else {
                    println!("{who} {state}");
                }
            }
            Ok(())
        }
        Command::Pin { target, seq, remove } => {
            let conversation = resolve_target(client, &target, online).await?;
            client.pin(conversation, seq, remove).await?;
            let done = if remove { "unpinned" } else { "pinned" };
            println!("{done} seq {seq} in #{conversation}");
            Ok(())
        }
        Command::Pins { target, json } => {
            let conversation = resolve_target(client, &target, online).await?;
            let pins = client.pins(conversation)?;
            let ids: Vec<u64> = pins
                .iter()
                .flat_map(|p| [p.pinned_by, p.message.as_ref().map_or(0, |m| m.sender_id)])
                .collect();
            let names = client.names(&ids).await?;
            let name = |id: u64| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
            for p in &pins {
                if json {
                    let mut v = serde_json::to_value(p)?;
                    v["pinned_by_name"] = serde_json::Value::String(name(p.pinned_by));
                    println!("{v}");
                } else {
                    let (sender, text) = match &p.message {
                        Some(m) => (
                            name(m.sender_id),
                            m.attachment.as_ref().map_or(m.text.clone(), |a| a.name.clone()),
                        ),
                        None => ("?".to_owned(), "(not yet synced)".to_owned()),
                    };
                    println!("{} {sender}: {text} (pinned by {})", p.seq, name(p.pinned_by));
                }
            }
            Ok(())
        }
        Command::Edit { target, seq, text } => {
            let conversation = resolve_target(client, &target, online).await?;
            client.edit(conversation, seq, &text).await?;
            println!("edited seq {seq} in #{conversation}");
            Ok(())
        }
        Command::Notice(n) => notice(client, n, online).await,
        Command::Robot(r) => {
            if !online {
                return Err(offline(client, "cannot run this offline"));
            }
            let group_id = |s: &str| -> Result<u64, Failure> {
                s.trim_start_matches('#').parse().map_err(|_| fail(2, format!("{s:?} is not a group id")))
            };
            let show = |r: &hutong_protocol::v1::Robot| {
                let signed = if r.signed { " signed" } else { "" };
                let allow = if r.allowed_cidrs.is_empty() {
                    String::new()
                } else {
                    format!(" allow={}", r.allowed_cidrs.join(","))
                };
                println!("robot {} {:?} user #{}{signed}{allow}", r.id, r.name, r.user_id);
            };
            let robot_json = |r: &hutong_protocol::v1::Robot| {
                serde_json::json!({
                    "id": r.id, "conversation_id": r.conversation_id, "name": r.name, "user_id": r.user_id,
                    "signed": r.signed, "allowed_cidrs": r.allowed_cidrs,
                })
            };
            match r {
                RobotCommand::Add { group, name, signed, allow, json } => {
                    let added = client.add_robot(group_id(&group)?, &name, signed, &allow).await?;
                    let robot = added.robot.unwrap_or_default();
                    if json {
                        let mut out = serde_json::json!({ "robot": robot_json(&robot), "url": added.url });
                        if !added.signing_secret.is_empty() {
                            out["signing_secret"] = serde_json::json!(added.signing_secret);
                        }
                        println!("{out}");
                    } else {
                        show(&robot);
                        println!("url {}", added.url);
                        if !added.signing_secret.is_empty() {
                            println!("secret {}", added.signing_secret);
                        }
                    }
                }
                RobotCommand::Ls { group, json } => {
                    let robots = client.robots(group_id(&group)?).await?;
                    if json {
                        let list: Vec<_> = robots.iter().map(robot_json).collect();
                        println!("{}", serde_json::json!(list));
                    } else {
                        robots.iter().for_each(show);
                    }
                }
                RobotCommand::Rm { group, robot } => {
                    let left = client.remove_robot(group_id(&group)?, robot).await?;
                    println!("removed robot {robot}; {} left", left.len());
                }
            }
            Ok(())
        }
        Command::Group(g) => {
            if !online {
                return Err(offline(client, "cannot run this offline"));
            }
            let group_id = |s: &str| -> Result<u64, Failure> {
                s.trim_start_matches('#').parse().map_err(|_| fail(2, format!("{s:?} is not a group id")))
            };
            let state = match g {
                GroupCommand::Create { name, members } => {
                    let mut ids = Vec::new();
                    for m in members.iter().filter(|m| !m.is_empty()) {
                        ids.push(client.resolve(m).await?);
                    }
                    client.create_group(&name, &ids).await?
                }
                GroupCommand::Add { group, accounts } => {
                    let mut ids = Vec::new();
                    for a in &accounts {
                        ids.push(client.resolve(a).await?);
                    }
                    client.add_members(group_id(&group)?, &ids).await?
                }
                GroupCommand::Remove { group, account } => {
                    let id = client.resolve(&account).await?;
                    client.remove_member(group_id(&group)?, id).await?
                }
                GroupCommand::Leave { group } => client.leave_group(group_id(&group)?).await?,
                GroupCommand::Rename { group, name } => client.rename_group(group_id(&group)?, &name).await?,
            };
            println!("group #{} {:?}: {} member(s)", state.id, state.name, state.members.len());
            Ok(())
        }
    }
}

/// How a transfer is shown while it runs.
enum Display {
    Bar(indicatif::ProgressBar),
    Lines { done: u64 },
}

fn bar_for(t: &Transfer, multi: &indicatif::MultiProgress) -> indicatif::ProgressBar {
    let bar = multi.add(indicatif::ProgressBar::new(t.total_bytes));
    let style = indicatif::ProgressStyle::with_template(
        "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(t.name.clone());
    bar.set_position(t.done_bytes);
    bar
}

/// Shows transfers until each is done (a `done` line each) or one fails.
async fn follow(
    client: &Client,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    transfers: Vec<Transfer>,
    online: bool,
) -> Result<(), Failure> {
    if !online {
        let ids = transfers.iter().map(|t| t.id.clone()).collect::<Vec<_>>().join(", ");
        return Err(fail(
            4,
            format!("offline: transfer {ids} is queued; run `hutong resume` when the server is reachable"),
        ));
    }
    let tty = std::io::stdout().is_terminal();
    let multi = indicatif::MultiProgress::new();
    let mut shown: HashMap<String, Display> = transfers
        .iter()
        .map(|t| {
            let d = if tty { Display::Bar(bar_for(t, &multi)) } else { Display::Lines { done: u64::MAX } };
            (t.id.clone(), d)
        })
        .collect();
    let mut failure = None;
    let mut status = client.status();
    // Check each once now (it may have ended before we listened), then on events.
    let mut recheck = true;
    while !shown.is_empty() {
        let mut updates = Vec::new();
        if recheck {
            recheck = false;
            for id in shown.keys() {
                if let Some(t) = client.transfer(id)? {
                    updates.push(t);
                }
            }
        } else {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(Event::Transfer(t)) if shown.contains_key(&t.id) => updates.push(t),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => recheck = true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Err(fail(1, "client stopped")),
                },
                changed = status.changed() => {
                    if changed.is_err() {
                        return Err(fail(1, "client stopped"));
                    }
                    let s = status.borrow_and_update().clone();
                    if let hutong_client::Status::Offline { code, reason } = s {
                        return Err(fail(3, format!("{reason} [{code}]")));
                    }
                }
            }
        }
        for t in updates {
            let Some(display) = shown.get_mut(&t.id) else { continue };
            match display {
                Display::Bar(bar) => {
                    bar.set_length(t.total_bytes);
                    bar.set_position(t.done_bytes);
                }
                Display::Lines { done } => {
                    if t.done_bytes != *done && !t.state.is_final() {
                        *done = t.done_bytes;
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "progress {} {}", t.done_bytes, t.total_bytes)?;
                        out.flush()?;
                    }
                }
            }
            if !t.state.is_final() {
                continue;
            }
            if let Some(Display::Bar(bar)) = shown.remove(&t.id) {
                if t.state == TransferState::Done {
                    bar.finish();
                } else {
                    bar.abandon();
                }
            }
            match t.state {
                TransferState::Done => {
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "done {} wire_bytes={} path={}",
                        t.id,
                        t.wire_bytes,
                        t.local_path.display()
                    )?;
                    out.flush()?;
                }
                TransferState::Failed => {
                    let code = t.error_code.clone().unwrap_or_else(|| "FAILED".into());
                    let exit = if hutong_protocol::ErrorCode::from_str_name(&code).is_some() { 3 } else { 1 };
                    let message = format!("{}: {} [{code}]", t.name, t.error.clone().unwrap_or_default());
                    eprintln!("error: {message}");
                    failure.get_or_insert(fail(exit, message));
                }
                _ => {
                    let message = format!("{}: the transfer was {}", t.name, t.state.as_str());
                    eprintln!("error: {message}");
                    failure.get_or_insert(fail(1, message));
                }
            }
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

fn org_command(client: &Client, command: OrgCommand) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let person_line = |p: &hutong_client::DirectoryPerson| {
        let title = if p.title.is_empty() { String::new() } else { format!(" · {}", p.title) };
        let state = if p.disabled { " (disabled)" } else { "" };
        format!("  {} ({}){title}{state}", p.display_name, p.account)
    };
    match command {
        OrgCommand::Browse { department, json } => {
            let id = department.unwrap_or(0);
            if id != 0 && client.directory_department(id)?.is_none() {
                return Err(fail(3, format!("no department {id} in your directory")));
            }
            let (departments, people) = client.directory_children(id)?;
            if json {
                writeln!(out, "{}", serde_json::json!({ "departments": departments, "people": people }))?;
            } else {
                if let Some(d) = client.directory_department(id)? {
                    writeln!(out, "{} (#{})", d.name, d.id)?;
                }
                for d in &departments {
                    writeln!(out, "  [#{}] {}/", d.id, d.name)?;
                }
                for p in &people {
                    writeln!(out, "{}", person_line(p))?;
                }
                if departments.is_empty() && people.is_empty() {
                    writeln!(out, "  (empty)")?;
                }
            }
        }
        OrgCommand::Show { account, json } => {
            let p = client
                .directory_person(&account)?
                .ok_or_else(|| fail(3, format!("no {account:?} in your directory")))?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&p)?)?;
            } else {
                let dept = |id: u64| {
                    client.directory_department(id).ok().flatten().map(|d| d.name).unwrap_or_default()
                };
                writeln!(out, "{} ({})", p.display_name, p.account)?;
                for (label, value) in [
                    ("title", p.title.clone()),
                    ("department", dept(p.primary_department_id)),
                    ("also in", p.department_ids.iter().map(|d| dept(*d)).collect::<Vec<_>>().join(", ")),
                    ("employee no", p.employee_no.clone()),
                    ("phone", p.phone.clone()),
                    ("email", p.email.clone()),
                ] {
                    if !value.is_empty() {
                        writeln!(out, "  {label:<12} {value}")?;
                    }
                }
            }
        }
        OrgCommand::Search { text, limit, json } => {
            for p in client.search_directory(&text, limit)? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&p)?)?;
                } else {
                    writeln!(out, "{}", person_line(&p))?;
                }
            }
        }
    }
    Ok(())
}

/// A deadline as RFC 3339 or `+30m`, `+2h`, `+3d` from now; ms since the epoch.
fn parse_deadline(s: &str) -> Result<i64, Failure> {
    if let Some(rest) = s.strip_prefix('+') {
        let (n, unit) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
        let n: i64 = n.parse().map_err(|_| fail(2, format!("{s:?}: a duration is like +30m, +2h or +3d")))?;
        let unit_ms = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(fail(2, format!("{s:?}: a duration is like +30m, +2h or +3d"))),
        };
        return Ok(hutong_client::cache::now_ms() + n.saturating_mul(unit_ms));
    }
    hutong_protocol::time::parse_rfc3339_ms(s).ok_or_else(|| {
        fail(2, format!("{s:?}: a deadline is RFC 3339 (2026-12-11T18:00:00+08:00) or +DURATION"))
    })
}

fn when(ms: i64) -> String {
    if ms == 0 {
        "-".into()
    } else {
        hutong_protocol::time::format_rfc3339_ms(ms)
    }
}

async fn notice(client: &Client, n: NoticeCommand, online: bool) -> Result<(), Failure> {
    use hutong_protocol::v1::{NoticeFilter, NoticePriority};
    let needs_server = !matches!(n, NoticeCommand::Ls { .. });
    if needs_server && !online {
        return Err(offline(client, "cannot do this offline"));
    }
    match n {
        NoticeCommand::Send {
            title,
            body,
            body_file,
            to,
            departments,
            groups,
            everyone,
            sign,
            deadline,
            urgent,
            important,
            buttons,
        } => {
            let body = match (body, body_file) {
                (Some(b), _) => b,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .map_err(|e| fail(2, format!("cannot read {}: {e}", f.display())))?,
                (None, None) => return Err(fail(2, "give --body or --body-file")),
            };
            let mut users = Vec::with_capacity(to.len());
            for a in &to {
                users.push(client.resolve(a.trim_start_matches('@')).await?);
            }
            let mut group_ids = Vec::with_capacity(groups.len());
            for g in &groups {
                group_ids.push(
                    g.trim_start_matches('#')
                        .parse()
                        .map_err(|_| fail(2, format!("{g:?} is not a group id")))?,
                );
            }
            let priority = if urgent {
                NoticePriority::NoticeUrgent
            } else if important {
                NoticePriority::NoticeImportant
            } else {
                NoticePriority::NoticeNormal
            };
            let draft = hutong_client::notices::NoticeDraft {
                title,
                body,
                priority,
                sign_required: sign,
                deadline_ms: deadline.as_deref().map(parse_deadline).transpose()?.unwrap_or(0),
                users,
                departments,
                groups: group_ids,
                everyone,
                buttons,
            };
            let sent = client.send_notice(draft).await?;
            println!("sent notice {} to {} people", sent.notice_id, sent.recipients);
        }
        NoticeCommand::Ls { unread, json } => {
            for n in client.notices()? {
                if unread && n.read_at_ms != 0 {
                    continue;
                }
                if json {
                    println!("{}", serde_json::to_value(&n)?);
                    continue;
                }
                let mut flags = Vec::new();
                if n.priority != "normal" {
                    flags.push(n.priority.to_owned());
                }
                if n.withdrawn_at_ms != 0 {
                    flags.push("withdrawn".into());
                } else if n.awaiting_signature() {
                    flags.push("to sign".into());
                } else if n.signed_at_ms != 0 {
                    flags.push("signed".into());
                }
                if n.read_at_ms == 0 {
                    flags.push("unread".into());
                }
                let flags = if flags.is_empty() { String::new() } else { format!(" [{}]", flags.join(", ")) };
                println!("{}{flags} {}", n.id, n.title);
            }
        }
        NoticeCommand::Show { id } => {
            let n = client.notice(id)?.ok_or_else(|| fail(3, format!("no notice {id}")))?;
            if n.withdrawn_at_ms == 0 && n.read_at_ms == 0 {
                client.read_notices(&[id]).await?;
            }
            let from = client.names(&[n.sender_id]).await?.remove(&n.sender_id).unwrap_or_default();
            println!("{}\nfrom {from} at {} ({})", n.title, when(n.sent_at_ms), n.priority);
            if n.withdrawn_at_ms != 0 {
                println!("withdrawn at {}", when(n.withdrawn_at_ms));
                return Ok(());
            }
            if n.sign_required {
                let state = if n.signed_at_ms != 0 {
                    format!("signed at {}", when(n.signed_at_ms))
                } else {
                    "to sign".into()
                };
                let deadline = if n.deadline_ms != 0 {
                    format!(", deadline {}", when(n.deadline_ms))
                } else {
                    String::new()
                };
                println!("{state}{deadline}");
            }
            println!();
            println!("{}", plain_text(&n.body));
        }
        NoticeCommand::Sign { id } => {
            let n = client.sign_notice(id).await?;
            println!("signed notice {id} at {}", when(n.signed_at_ms));
        }
        NoticeCommand::Sent { json } => {
            for s in client.sent_notices(0, 200).await? {
                let (n, c) = (s.notice.unwrap_or_default(), s.counts.unwrap_or_default());
                if json {
                    let v = serde_json::json!({
                        "id": n.id, "title": n.title, "sent_at_ms": n.sent_at_ms,
                        "sign_required": n.sign_required, "withdrawn_at_ms": n.withdrawn_at_ms,
                        "recipients": c.recipients, "delivered": c.delivered, "read": c.read, "signed": c.signed,
                    });
                    println!("{v}");
                } else {
                    let signed =
                        if n.sign_required { format!(", {} signed", c.signed) } else { String::new() };
                    println!("{} {} ({} people, {} read{signed})", n.id, n.title, c.recipients, c.read);
                }
            }
        }
        NoticeCommand::Status { id, not_read, not_signed, json } => {
            let filter = if not_read {
                NoticeFilter::NoticeNotRead
            } else if not_signed {
                NoticeFilter::NoticeNotSigned
            } else {
                NoticeFilter::NoticeAll
            };
            let status = client.notice_status_all(id, filter).await?;
            let ids: Vec<u64> = status.recipients.iter().map(|r| r.user_id).collect();
            let accounts = client.names(&ids).await?;
            if !json {
                let c = status.counts.unwrap_or_default();
                println!(
                    "{} people, {} delivered, {} read, {} signed",
                    c.recipients, c.delivered, c.read, c.signed
                );
                println!("account\tname\tdepartment\tdelivered\tread\tsigned\tdevice");
            }
            for r in &status.recipients {
                let account = accounts.get(&r.user_id).cloned().unwrap_or_else(|| format!("#{}", r.user_id));
                let name = client.display_name(r.user_id)?.unwrap_or_default();
                if json {
                    let v = serde_json::json!({
                        "user_id": r.user_id, "account": account, "name": name, "department_id": r.department_id,
                        "delivered_at_ms": r.delivered_at_ms, "read_at_ms": r.read_at_ms,
                        "signed_at_ms": r.signed_at_ms, "device": r.signed_device,
                    });
                    println!("{v}");
                } else {
                    println!(
                        "{account}\t{name}\t{}\t{}\t{}\t{}\t{}",
                        r.department_id,
                        when(r.delivered_at_ms),
                        when(r.read_at_ms),
                        when(r.signed_at_ms),
                        if r.signed_device.is_empty() { "-" } else { &r.signed_device }
                    );
                }
            }
        }
        NoticeCommand::Remind { id } => {
            let n = client.remind_notice(id).await?;
            println!("reminded {n} people");
        }
        NoticeCommand::Withdraw { id } => {
            client.withdraw_notice(id).await?;
            println!("withdrew notice {id}");
        }
    }
    Ok(())
}

/// A notice's Markdown as plain text: emphasis, heading and quote marks
/// dropped, links as `text (url)`.
fn plain_text(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let line = if trimmed.starts_with('#') || trimmed.starts_with('>') {
            trimmed.trim_start_matches(['#', '>']).trim_start()
        } else {
            line
        };
        let mut text = line.replace("**", "").replace("__", "").replace('`', "");
        while let (Some(a), Some(b)) = (text.find("]("), text.find('[')) {
            let Some(close) = text[a..].find(')').map(|i| a + i) else { break };
            if b > a {
                break;
            }
            let label = text[b + 1..a].to_owned();
            let url = text[a + 2..close].to_owned();
            text.replace_range(b..=close, &format!("{label} ({url})"));
        }
        out.push_str(&text);
        out.push('\n');
    }
    out.trim_end().to_owned()
}
