//! The Hutong server as a library: `run(config, listeners, shutdown)` serves
//! until `shutdown` resolves, so tests can start and stop real servers on port
//! 0 many times in one process. `main.rs` is a thin CLI around it.

// Layers, top to bottom (imports only run downward; see ARCHITECTURE.md):
// the gateway (transport) and `admin` (the HTTP administration API); the
// domains (`messaging`, `accounts`, `directory`, `files`, `audit`, `notices`); `live`
// (sessions, presence, outbound lanes); `storage`, `config`, `error`, `util`.
// `layering.rs` checks it.
pub mod accounts;
pub mod admin;
pub mod api;
pub mod apps;
pub mod audit;
pub mod config;
pub mod directory;
pub mod error;
pub mod events;
mod files;
mod gateway;
mod live;
mod messaging;
pub mod notices;
pub mod storage;
mod util;

#[cfg(test)]
mod layering;

// The paths other crates use (`hutong_server::writer`, `::import`, `::tls`).
pub use directory::import;
pub use gateway::tls;
pub use live::stats;
pub use messaging::writer;

use live::{hub, outbound, ratelimit};
use messaging::receipts;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// Everything a connection needs, shared by all of them.
pub struct Shared {
    pub config: Config,
    pub db: storage::Db,
    pub writer: writer::Writer,
    /// The same writer, as the domains below messaging see it.
    writes: Arc<dyn storage::WriteQueue>,
    hub: Arc<hub::Hub>,
    /// Delivered/read reports waiting to be written together.
    receipts: receipts::Receipts,
    auth: accounts::Authenticator,
    next_conn_id: AtomicU64,
    /// Key of the audit log's hash chain.
    audit_key: audit::AuditKey,
    /// Wakes the retention job when the rules change.
    retention_changed: tokio::sync::Notify,
    /// Chunk files of uploaded files.
    blobs: Arc<files::BlobStore>,
    /// Chunks announced for upload and not yet received, per person.
    pending_chunks: files::PendingChunks,
    /// Server-wide figures: connections, bytes held by outbound queues,
    /// whether the writer stopped. Reported by `/health`.
    stats: Arc<outbound::ServerStats>,
    /// Typing notices relayed recently, for the rate limit.
    typing: ratelimit::TypingLimiter,
    /// Per-address limits on connections that have not logged in.
    admission: Arc<gateway::admission::Admission>,
    /// Messages each person sent recently, for the send rate limit.
    sends: ratelimit::SendLimiter,
    /// Integration-API requests each application made recently (`api.rs`).
    api_requests: ratelimit::SendLimiter,
    /// Notified when integration-API events were recorded: wakes the
    /// delivery task and long polls.
    events_recorded: Arc<tokio::sync::Notify>,
    /// Wakes the notices' deadline task when a notice with a deadline is sent.
    notices_changed: tokio::sync::Notify,
}

/// Bound sockets, so a caller (a test) can bind port 0 and learn the ports
/// before the server runs.
pub struct Listeners {
    pub tcp: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let tcp = TcpListener::bind(&config.tcp_listen)
            .await
            .with_context(|| format!("binding {}", config.tcp_listen))?;
        let http = TcpListener::bind(&config.http_listen)
            .await
            .with_context(|| format!("binding {}", config.http_listen))?;
        Ok(Listeners { tcp, http })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp.local_addr().expect("bound socket has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound socket has an address")
    }
}

/// What first start produced, for the operator to see.
pub struct Prepared {
    pub fingerprint: String,
    /// The bootstrap administrator's one-time password, when one was generated.
    pub admin_password: Option<String>,
}

/// Creates the data directory, migrates the database, makes the TLS identity
/// and the bootstrap administrator (password from `admin_password`, else
/// random) when there is no account yet. Safe to call on every start.
pub fn prepare(config: &Config, admin_password: Option<String>) -> anyhow::Result<Prepared> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    restrict_data_dir(&config.data_dir)?;
    storage::migrate(&config.database_path())?;
    let identity = tls::load_or_create(&config.data_dir)?;
    // Again, now that the database (and its -wal/-shm) and the key exist.
    restrict_data_dir(&config.data_dir)?;
    let conn = storage::open(&config.database_path())?;
    let mut generated = None;
    if !conn.has_users()? {
        let password = match admin_password {
            Some(p) => p,
            None => {
                let p = accounts::new_password();
                generated = Some(p.clone());
                p
            }
        };
        let id = accounts::add_user(&*conn, "admin", "Administrator", &password, true)?;
        if generated.is_some() {
            // The generated password was printed to a console or a log: it
            // opens one login, which must choose a new password.
            conn.require_password_change(id)?;
        }
    }
    Ok(Prepared { fingerprint: identity.fingerprint, admin_password: generated })
}

/// Makes the data directory owner-only (0700) and every file and folder
/// directly in it too (0600/0700), fixing what an older version or a
/// permissive umask left: the database, its -wal/-shm, the TLS key and
/// the chunk store hold every message and file of the company. Deeper
/// entries (millions of chunks) are not walked: the 0700 directories
/// above them already keep every other user out. SQLite creates -wal and
/// -shm with the database file's mode, so they stay 0600.
pub fn restrict_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let set = |path: &std::path::Path, mode: u32| -> anyhow::Result<()> {
            let meta = std::fs::symlink_metadata(path)?;
            // A link's target may be anything of anyone's; links are left alone.
            if meta.file_type().is_symlink() || meta.permissions().mode() & 0o7777 == mode {
                return Ok(());
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("making {} private to its owner", path.display()))
        };
        set(dir, 0o700)?;
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let mode = if entry.file_type()?.is_dir() { 0o700 } else { 0o600 };
            set(&entry.path(), mode)?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Serves until `shutdown` resolves, then stops accepting, lets every
/// connection finish the requests it has in flight, commits the writer's last
/// batch and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)?;
    let db_path = config.database_path();
    storage::migrate(&db_path)?;
    // One identity for both listeners: the HTTPS certificate has the
    // fingerprint clients pin on the native port.
    let identity = tls::load_or_create(&config.data_dir)?;
    let tls = if config.tcp_tls {
        Some(tokio_rustls::TlsAcceptor::from(identity.config.clone()))
    } else {
        tracing::warn!("the native listener speaks plain TCP (tcp_tls = false): passwords and messages cross the network unencrypted");
        None
    };
    let http_tls = if config.http_insecure_plaintext {
        tracing::warn!(
            "the HTTP listener speaks plain HTTP (http_insecure_plaintext = true): only safe behind a proxy that terminates TLS"
        );
        None
    } else {
        let mut https = (*identity.config).clone();
        https.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(https)))
    };
    let db = storage::Db::open(&db_path, 4)?;
    let recall_window_ms = (config.recall_window_secs as i64).saturating_mul(1000);
    let (writer, writer_thread, committed) = writer::Writer::start_with_fault(
        &db_path,
        recall_window_ms,
        config.commit_batch_max,
        config.writer_panic_after_batches,
    )?;
    // The writer thread is joined on a blocking thread, so its end (a panic,
    // or its loop ending while the server runs) is a future `run` watches.
    let mut writer_thread = tokio::task::spawn_blocking(move || writer_thread.join());
    let hub = Arc::new(hub::Hub::default());
    // Outside the task tracker: it ends after the writer, which outlives it.
    let fan_out = tokio::spawn(hub::fan_out(hub.clone(), committed));
    let writes: Arc<dyn storage::WriteQueue> = Arc::new(writer.clone());
    let auth = accounts::Authenticator::new(&config, writes.clone());
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let audit_key = audit::AuditKey::load_or_create(&config.data_dir)?;
    let blobs = Arc::new(files::BlobStore::open(config.blob_dir())?);
    // Now that the database and the chunk store exist.
    restrict_data_dir(&config.data_dir)?;
    let stats = Arc::new(outbound::ServerStats::default());
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let typing = ratelimit::TypingLimiter::new(Duration::from_millis(config.typing_interval_ms));
    let admission = gateway::admission::Admission::new(
        config.unauthenticated_per_address,
        config.connections_per_address_per_minute,
    );
    let http_listener = gateway::http::HttpListener {
        listener: listeners.http,
        tls: http_tls,
        max_connections: config.http_max_connections,
        header_timeout: Duration::from_millis(config.http_header_timeout_ms),
    };
    let sends = ratelimit::SendLimiter::new(config.send_rate_per_sec, config.send_burst);
    let api_requests = ratelimit::SendLimiter::new(config.api_rate_per_sec, config.api_burst);
    let shared = Arc::new(Shared {
        config,
        db,
        writer,
        writes,
        hub,
        receipts: receipts::Receipts::default(),
        auth,
        next_conn_id: AtomicU64::new(1),
        audit_key,
        retention_changed: tokio::sync::Notify::new(),
        blobs,
        pending_chunks: files::PendingChunks::default(),
        stats: stats.clone(),
        typing,
        admission,
        sends,
        api_requests,
        events_recorded: Arc::new(tokio::sync::Notify::new()),
        notices_changed: tokio::sync::Notify::new(),
    });
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();

    tracker.spawn(gateway::accept_tcp(
        shared.clone(),
        listeners.tcp,
        tls,
        limit.clone(),
        tracker.clone(),
        token.clone(),
    ));
    let state = gateway::HttpState {
        shared: shared.clone(),
        limit,
        tracker: tracker.clone(),
        shutdown: token.clone(),
    };
    let app = gateway::http_router(state);
    // The HTTP listener stops last: after a writer failure `/health` keeps
    // answering 503 while the connections close.
    let http_token = CancellationToken::new();
    let http_stop = http_token.clone();
    let http_task = tokio::spawn(gateway::http::serve(http_listener, app, http_token));
    tracker.spawn(watch_revocations(shared.clone(), token.clone()));
    tracker.spawn(touch_live_sessions(shared.clone(), token.clone()));
    tracker.spawn(apply_retention(shared.clone(), token.clone()));
    tracker.spawn(files::collector(shared.clone(), token.clone()));
    tracker.spawn(receipts::run(shared.clone(), token.clone()));
    tracker.spawn(events::deliver(
        shared.db.clone(),
        shared.writes.clone(),
        shared.events_recorded.clone(),
        token.clone(),
    ));
    tracker.spawn(notices::deadlines(shared.clone(), token.clone()));

    tracker.spawn(log_stats(stats.clone(), token.clone()));

    // Serve until asked to stop, or until the writer thread dies: then
    // nothing can be stored, so report unhealthy and exit with an error for a
    // supervisor to restart the server, rather than refuse every write.
    let writer_died = tokio::select! {
        _ = shutdown => None,
        joined = &mut writer_thread => {
            stats.set_writer_failed();
            let why = match joined {
                Ok(Ok(())) => "its loop ended".to_owned(),
                Ok(Err(_)) => "it panicked".to_owned(),
                Err(e) => format!("it could not be joined: {e}"),
            };
            tracing::error!(reason = %why, "the writer thread stopped; shutting down");
            Some(why)
        }
    };
    tracing::info!("shutting down");
    token.cancel();
    tracker.close();
    let connections_closed = async {
        // Every connection is gone within `shutdown_grace_ms` (it closes
        // itself then); this bound only guards against a task that forgets to.
        if tokio::time::timeout(grace + SHUTDOWN_SLACK, tracker.wait()).await.is_err() {
            tracing::warn!("tasks still running after the shutdown grace period; leaving them");
        }
    };
    if writer_died.is_some() {
        // Health checkers get the grace period to see the 503.
        tokio::join!(connections_closed, tokio::time::sleep(grace));
    } else {
        connections_closed.await;
    }
    http_stop.cancel();
    if tokio::time::timeout(SHUTDOWN_SLACK, http_task).await.is_err() {
        tracing::warn!("the HTTP listener did not stop in time; leaving it");
    }
    if let Some(why) = writer_died {
        anyhow::bail!("the writer thread stopped ({why})");
    }
    // Dropping the last writer handle lets the writer commit what is queued
    // and stop; a task left running above would keep a handle, hence the bound.
    drop(shared);
    match tokio::time::timeout(grace + SHUTDOWN_SLACK, writer_thread).await {
        Ok(joined) => joined
            .map_err(|e| anyhow::anyhow!("joining the writer: {e}"))?
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?,
        Err(_) => anyhow::bail!("the writer did not stop within the shutdown grace period"),
    }
    // The writer's last commits are pushed before the fan-out ends.
    if tokio::time::timeout(SHUTDOWN_SLACK, fan_out).await.is_err() {
        tracing::warn!("the fan-out did not finish in time; leaving it");
    }
    Ok(())
}

/// Time beyond `shutdown_grace_ms` that `run` waits for tasks before it gives up on them.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(1);

/// A line a minute with the figures `/health` reports, while anyone is connected.
async fn log_stats(stats: Arc<outbound::ServerStats>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if stats.connections() > 0 {
            tracing::info!(
                connections = stats.connections(),
                outbound_bytes = stats.outbound_bytes(),
                "stats"
            );
        }
    }
}

/// Turns revocations recorded by administrators (possibly from another
/// process, such as `hutong-server user disable`) into closed sessions.
async fn watch_revocations(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut last = match shared.db.read(|c| accounts::last_revocation(c)).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "cannot read revocations");
            0
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let after = last;
        match shared.db.read(move |c| accounts::revocations_after(c, after)).await {
            Ok(list) => {
                for r in list {
                    last = r.id;
                    let message = match r.reason {
                        hutong_protocol::ErrorCode::AccountDisabled => "this account was disabled",
                        _ => "the session was ended by an administrator",
                    };
                    shared.hub.kick(r.user_id, r.session_id, r.reason, message);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading revocations failed"),
        }
    }
}

/// Session lifetimes slide with use, and a connected device uses its
/// session all the time without logging in again: record that hourly, so a
/// device that stayed connected for longer than the lifetime can still
/// reconnect with its token.
async fn touch_live_sessions(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = storage::now_ms();
        for session_id in shared.hub.live_sessions() {
            let touch =
                Box::new(move |st: &dyn storage::Store| st.touch_session(session_id, now).map(|()| 0));
            if shared.writes.enqueue(touch).await.is_err() {
                return;
            }
        }
    }
}

/// Applies the retention rules at start, hourly, and whenever they change.
async fn apply_retention(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let command =
            writer::Command::ApplyRetention { now: storage::now_ms(), key: shared.audit_key.clone() };
        match shared.writer.submit(command).await {
            Ok(_) => {
                let key = shared.audit_key.clone();
                let _ = shared
                    .db
                    .read(move |c| {
                        key.write_head(c).map_err(|e| error::ServiceError::Internal(e.to_string()))
                    })
                    .await;
            }
            Err(e) => tracing::warn!(error = %e, "applying retention failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shared.retention_changed.notified() => {}
        }
    }
}
