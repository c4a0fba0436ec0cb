//! `hutong-server`: the command line around the server library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hutong_server::{accounts, storage, Config, Listeners};

#[derive(Parser)]
#[command(name = "hutong-server", version, about = "Hutong enterprise messaging server")]
struct Cli {
    /// Configuration file (TOML). Default: ./hutong.toml when it exists.
    #[arg(long, global = true, env = "HUTONG_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the file and HUTONG_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve {
        /// Native protocol address, e.g. 0.0.0.0:7300.
        #[arg(long)]
        tcp_listen: Option<String>,
        /// HTTP/WebSocket address, e.g. 0.0.0.0:7380.
        #[arg(long)]
        http_listen: Option<String>,
        /// Serve both listeners without TLS: plain TCP and plain HTTP (tests, or
        /// behind a proxy that terminates TLS). Passwords cross the network in clear text.
        #[arg(long)]
        no_tls: bool,
    },
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Create or upgrade the database, then exit.
    Migrate,
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain of the action log and name every edited, inserted
    /// or deleted entry. Exit code 0 when intact, 1 otherwise.
    Verify,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from HUTONG_NEW_PASSWORD or standard input.
    Add {
        account: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long)]
        admin: bool,
        /// Give the auditor role (how the first auditor is named: on the
        /// console, only an auditor can confirm another).
        #[arg(long)]
        auditor: bool,
    },
    /// Disable an account and close its live sessions.
    Disable { account: String },
    /// Enable a disabled account.
    Enable { account: String },
    /// Set a new password (from HUTONG_NEW_PASSWORD or standard input); ends all sessions.
    Passwd { account: String },
    /// Remove the account's authenticator app and recovery codes (a lost
    /// phone); the person sets up a new one at the next console login.
    TotpReset { account: String },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUTONG_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    match cli.command.unwrap_or(Command::Serve { tcp_listen: None, http_listen: None, no_tls: false }) {
        Command::Serve { tcp_listen, http_listen, no_tls } => {
            if let Some(a) = tcp_listen {
                config.tcp_listen = a;
            }
            if let Some(a) = http_listen {
                config.http_listen = a;
            }
            if no_tls {
                config.tcp_tls = false;
                config.http_insecure_plaintext = true;
            }
            config.validate()?;
            serve(config)
        }
        Command::Migrate => {
            std::fs::create_dir_all(&config.data_dir)?;
            let applied = storage::migrate(&config.database_path())?;
            println!(
                "database {} is up to date ({applied} migration(s) applied)",
                config.database_path().display()
            );
            Ok(())
        }
        Command::Version => {
            println!(
                "hutong-server {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                hutong_protocol::PROTOCOL_VERSION
            );
            Ok(())
        }
        Command::User(cmd) => user_command(&config, cmd),
        Command::Audit(AuditCommand::Verify) => {
            let db = config.database_path();
            if !db.exists() {
                anyhow::bail!("no database at {}", db.display());
            }
            let conn = storage::open(&db)?;
            let key = hutong_server::audit::AuditKey::load_or_create(&config.data_dir)?;
            let (entries, problems) = hutong_server::audit::verify(&*conn, &key)?;
            if problems.is_empty() {
                println!("audit log intact: {entries} entries verified");
                Ok(())
            } else {
                for p in &problems {
                    println!("{p}");
                }
                anyhow::bail!(
                    "the audit log was tampered with: {} problem(s) in {entries} entries",
                    problems.len()
                )
            }
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let prepared = hutong_server::prepare(&config, std::env::var("HUTONG_ADMIN_PASSWORD").ok())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&config).await?;
        let scheme = if config.tcp_tls { "tls" } else { "tcp" };
        println!("Hutong server {} — data in {}", env!("CARGO_PKG_VERSION"), config.data_dir.display());
        if config.tcp_tls || !config.http_insecure_plaintext {
            println!("TLS certificate fingerprint (SHA-256): {}", prepared.fingerprint);
        }
        if let Some(password) = &prepared.admin_password {
            println!("First start: administrator account 'admin', one-time password: {password}");
        }
        // Scripts and tests read this line to learn the ports (port 0 picks free ones).
        let ws = if config.http_insecure_plaintext { "ws" } else { "wss" };
        println!("listening {scheme}://{} {ws}://{}/ws", listeners.tcp_addr(), listeners.http_addr());
        use std::io::Write as _;
        std::io::stdout().flush()?;
        hutong_server::run(config, listeners, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn read_new_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("HUTONG_NEW_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn user_command(config: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    let db = config.database_path();
    if !db.exists() {
        anyhow::bail!(
            "no database at {}; start the server once or run `hutong-server migrate`",
            db.display()
        );
    }
    storage::migrate(&db)?;
    let conn = storage::open(&db)?;
    if let UserCommand::List { json } = cmd {
        return list_users(&*conn, json);
    }
    // Changes are recorded in the audit log like the console's, in the same
    // transaction; the actor is the host's operator.
    let key = hutong_server::audit::AuditKey::load_or_create(&config.data_dir)?;
    let actor = hutong_server::audit::Actor {
        id: None,
        account: format!("host:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
    };
    let password = match &cmd {
        UserCommand::Add { .. } | UserCommand::Passwd { .. } => Some(read_new_password()?),
        _ => None,
    };
    let message = storage::in_transaction(&*conn, |st| -> anyhow::Result<String> {
        let record = |action: &str, account: &str, detail: serde_json::Value| {
            hutong_server::audit::record(st, &key, &actor, action, &format!("person:{account}"), detail)
        };
        Ok(match cmd {
            UserCommand::Add { account, name, admin, auditor } => {
                let password = password.unwrap_or_default();
                let id = accounts::add_user(st, &account, &name, &password, admin)?;
                if auditor {
                    accounts::add_role(st, id, "auditor")?;
                }
                record(
                    "person.create",
                    &account,
                    serde_json::json!({ "id": id, "admin": admin, "auditor": auditor }),
                )?;
                format!("created {account} (id {id})")
            }
            UserCommand::Disable { account } => {
                accounts::set_disabled(st, &account, true)?;
                record("person.disable", &account, serde_json::json!({}))?;
                format!("disabled {account}; its sessions are closed")
            }
            UserCommand::Enable { account } => {
                accounts::set_disabled(st, &account, false)?;
                record("person.enable", &account, serde_json::json!({}))?;
                format!("enabled {account}")
            }
            UserCommand::Passwd { account } => {
                accounts::set_password(st, &account, &password.unwrap_or_default())?;
                record("person.set_password", &account, serde_json::json!({}))?;
                format!("password of {account} changed; its sessions are closed")
            }
            UserCommand::TotpReset { account } => {
                accounts::reset_totp(st, &account)?;
                record("totp.reset", &account, serde_json::json!({}))?;
                format!("{account} sets up an authenticator app again at the next console login")
            }
            UserCommand::List { .. } => unreachable!("handled above"),
        })
    })?;
    key.write_head(&*conn)?;
    println!("{message}");
    Ok(())
}

fn list_users(store: &dyn storage::Store, json: bool) -> anyhow::Result<()> {
    let users = accounts::list_users(store)?;
    if json {
        for u in users {
            println!("{}", serde_json::to_string(&u)?);
        }
    } else {
        println!("{:>6}  {:<24} {:<24} STATE", "ID", "ACCOUNT", "NAME");
        for u in users {
            let state = match (u.disabled, u.is_admin) {
                (true, _) => "disabled",
                (false, true) => "admin",
                (false, false) => "active",
            };
            println!("{:>6}  {:<24} {:<24} {}", u.id, u.account, u.display_name, state);
        }
    }
    Ok(())
}
