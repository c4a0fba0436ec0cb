//! `hutong-bench`: a load generator for the Hutong server.
//!
//! It starts the release `hutong-server` as a child process on loopback,
//! speaks the raw protocol to it over plain TCP, and prints a table and JSON
//! lines. `throughput` measures durable message rate and latency; `idle`
//! measures server memory per idle authenticated connection; `stuck`
//! measures it with connections that never read while others chat; `group` the
//! time to the last delivery of a message to an all-online group; `flood` others'
//! acknowledgement latency while one account sends at full speed. Everything runs
//! on this machine's loopback and stops by itself: every loop is bounded by a
//! step length, a drain timeout or a connection count.

mod flood;
mod group;
mod idle;
mod notices;
mod procfs;
mod readlist;
mod report;
mod server;
mod stuck;
mod throughput;
mod wire;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hutong-bench", version, about = "Load generator for the Hutong server")]
struct Cli {
    /// Runtime threads of the load generator. It shares the machine with the
    /// server, so every thread given to it is taken from the server.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Start servers with TLS on (as shipped) and speak TLS to them; without
    /// it the servers run `--no-tls` (the foundation's figures were taken so).
    #[arg(long, global = true)]
    tls: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Message rate and latency between pairs of users.
    Throughput(throughput::ThroughputArgs),
    /// Server memory per idle, authenticated connection.
    Idle(idle::IdleArgs),
    /// Server memory with connections that never read while others chat.
    Stuck(stuck::StuckArgs),
    /// One process of the idle test's connections (started by `idle`).
    #[command(hide = true)]
    IdleWorker(idle::WorkerArgs),
    /// Others' acknowledgement latency while one account floods.
    Flood(flood::FloodArgs),
    /// Time to the last delivery and server CPU per message, all-online group.
    Group(group::GroupArgs),
    /// Time to answer who has read a message in a group of 10,000.
    ReadList(readlist::ReadListArgs),
    /// A notice to 10,000 people with 2,000 online, its table, and a mass-send.
    Notices(notices::NoticesArgs),
    /// One process of the group test's members (started by `group`).
    #[command(hide = true)]
    GroupWorker(group::GroupWorkerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.tls {
        if let Err(e) = wire::use_tls() {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let runtime =
        if cli.threads <= 1 || matches!(cli.command, Command::IdleWorker(_) | Command::GroupWorker(_)) {
            // Workers only hold sockets; one thread each keeps them off the server's cores.
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build()
        };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Throughput(args) => throughput::run(args).await,
            Command::Idle(args) => idle::run(args).await,
            Command::Stuck(args) => stuck::run(args).await,
            Command::IdleWorker(args) => idle::worker(args).await,
            Command::Group(args) => group::run(args).await,
            Command::Flood(args) => flood::run(args).await,
            Command::GroupWorker(args) => group::worker(args).await,
            Command::ReadList(args) => readlist::run(args).await,
            Command::Notices(args) => notices::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
