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
        /// Serve the native protocol without TLS (tests, trusted networks).
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
    },
    /// Disable an account and close its live sessions.
    Disable { account: String },
    /// Enable a disabled account.
    Enable { account: String },
    /// Set a new password (from HUTONG_NEW_PASSWORD or standard input); ends all sessions.
    Passwd { account: String },
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
        if config.tcp_tls {
            println!("TLS certificate fingerprint (SHA-256): {}", prepared.fingerprint);
        }
        if let Some(password) = &prepared.admin_password {
            println!("First start: administrator account 'admin', one-time password: {password}");
        }
        // Scripts and tests read this line to learn the ports (port 0 picks free ones).
        println!("listening {scheme}://{} ws://{}/ws", listeners.tcp_addr(), listeners.http_addr());
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
    match cmd {
        UserCommand::Add { account, name, admin } => {
            let password = read_new_password()?;
            let id = accounts::add_user(&*conn, &account, &name, &password, admin)?;
            println!("created {account} (id {id})");
        }
        UserCommand::Disable { account } => {
            accounts::set_disabled(&*conn, &account, true)?;
            println!("disabled {account}; its sessions are closed");
        }
        UserCommand::Enable { account } => {
            accounts::set_disabled(&*conn, &account, false)?;
            println!("enabled {account}");
        }
        UserCommand::Passwd { account } => {
            let password = read_new_password()?;
            accounts::set_password(&*conn, &account, &password)?;
            println!("password of {account} changed; its sessions are closed");
        }
        UserCommand::List { json } => {
            let users = accounts::list_users(&*conn)?;
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
        }
    }
    Ok(())
}
