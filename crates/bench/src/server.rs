//! The server under test as a child process: finding the release binary,
//! preparing a data directory with accounts through the admin CLI, starting
//! `hutong-server serve` on loopback port 0, and stopping it.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// The password of every bench account; the admin CLI requires at least 8 characters.
pub const PASSWORD: &str = "bench-password-1";

/// How long the server may take to print its `listening` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The `hutong-server` binary: `explicit`, else the one built next to this
/// bench binary (same target directory and profile).
pub fn server_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p,
        None => {
            let exe = std::env::current_exe().context("locating the bench binary")?;
            exe.with_file_name("hutong-server")
        }
    };
    if !path.is_file() {
        bail!(
            "no server binary at {}; build it first with `cargo build --release -p hutong-server -p hutong-bench`",
            path.display()
        );
    }
    Ok(path)
}

/// A `hutong-server` command with a clean environment: inherited `HUTONG_*`
/// variables (a developer's config file, say) must not change what is measured.
fn server_command(bin: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HUTONG_") {
            cmd.env_remove(&key);
        }
    }
    // The working directory is the data directory so that no stray
    // `./hutong.toml` is picked up.
    cmd.arg("--data-dir").arg(data_dir).current_dir(data_dir).env("HUTONG_LOG", "warn");
    // Every load generator connects from loopback: the per-address limits on
    // connections that have not logged in (a LAN policy) would throttle it.
    cmd.env("HUTONG_UNAUTHENTICATED_PER_ADDRESS", "1000000")
        .env("HUTONG_CONNECTIONS_PER_ADDRESS_PER_MINUTE", "100000000");
    cmd
}

/// Creates the database and the given accounts, two at a time (each one
/// hashes a password with Argon2id, which is what takes the time).
pub fn prepare_accounts(bin: &Path, data_dir: &Path, accounts: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let out =
        server_command(bin, data_dir).arg("migrate").output().context("running hutong-server migrate")?;
    if !out.status.success() {
        bail!("hutong-server migrate failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let add = |names: &[String]| -> anyhow::Result<()> {
        for name in names {
            let out = server_command(bin, data_dir)
                .args(["user", "add", name])
                .env("HUTONG_NEW_PASSWORD", PASSWORD)
                .stdin(Stdio::null())
                .output()
                .context("running hutong-server user add")?;
            if !out.status.success() {
                bail!("adding {name} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Ok(())
    };
    let (first, second) = accounts.split_at(accounts.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| add(second));
        let mine = add(first);
        let theirs = other.join().map_err(|_| anyhow::anyhow!("the account thread panicked"))?;
        mine.and(theirs)
    })
}

/// A running server.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The HTTP listener (`/health`, `/ws`).
    pub http: SocketAddr,
    pub pid: u32,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `serve` on loopback port 0 with `env` added, and waits for the
    /// line that names the ports. The server's log goes to `server.log` in
    /// the data directory.
    pub fn start(bin: &Path, data_dir: &Path, env: &[(&str, String)]) -> anyhow::Result<ServerProcess> {
        let log = data_dir.join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = server_command(bin, data_dir);
        cmd.arg("serve");
        if !crate::wire::tls() {
            cmd.arg("--no-tls");
        }
        cmd.args(["--tcp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .env("HUTONG_ADMIN_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Keep reading stdout for the server's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (addr, http) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    // `listening tcp://A ws://H/ws`, or with TLS `listening tls://A wss://H/ws`.
                    if let Some(rest) = line
                        .strip_prefix("listening tcp://")
                        .or_else(|| line.strip_prefix("listening tls://"))
                    {
                        let mut parts = rest.split_whitespace();
                        let tcp = parts.next().unwrap_or_default();
                        let ws = parts.next().unwrap_or_default();
                        let http = ws
                            .trim_start_matches("wss://")
                            .trim_start_matches("ws://")
                            .trim_end_matches("/ws");
                        break (
                            tcp.parse::<SocketAddr>().with_context(|| format!("parsing {line:?}"))?,
                            http.parse::<SocketAddr>().with_context(|| format!("parsing {line:?}"))?,
                        );
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    bail!("the server did not start within {START_TIMEOUT:?}; its log:\n{tail}");
                }
            }
        };
        Ok(ServerProcess { child, addr, http, pid, log })
    }

    /// Stops the server with SIGTERM (a graceful shutdown that commits the
    /// last batch), killing it if that takes longer than the stop timeout.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("note: the server exited with {status}; log at {}", self.log.display());
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the server did not stop within {STOP_TIMEOUT:?}; killed it (log at {})", self.log.display())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A bench that fails half-way must not leave a server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
