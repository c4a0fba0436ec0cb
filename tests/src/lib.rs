//! Helpers for the end-to-end tests: real servers (in-process on port 0, or a
//! child process that can be killed with SIGKILL), real client cores, a raw
//! protocol connection for malformed input, and waiting on conditions with a
//! deadline instead of sleeping.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use hutong_client::{Client, ClientOptions, Credential, Event, ServerAddr};
use hutong_protocol::{encode_envelope, Envelope, FrameCodec, Payload};
use hutong_server::{accounts, storage, Config, Listeners};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub const PASSWORD: &str = "test-password-1";

/// The per-address limits of a test server process: every test client
/// connects from loopback.
const LOOPBACK_LIMITS: [(&str, &str); 2] = [
    ("HUTONG_UNAUTHENTICATED_PER_ADDRESS", "100000"),
    ("HUTONG_CONNECTIONS_PER_ADDRESS_PER_MINUTE", "10000000"),
];

/// A server running inside the test process.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn test_config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        tcp_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        // Plain TCP and HTTP on loopback, chosen explicitly: most tests are
        // not about transport security (tests/tests/transport_security.rs is).
        tcp_tls: false,
        http_insecure_plaintext: true,
        // Tests open hundreds of connections from one address at once.
        unauthenticated_per_address: 100_000,
        connections_per_address_per_minute: 10_000_000,
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on port 0 after `adjust` has changed the test config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        hutong_server::prepare(&config, Some("admin-password-1".into())).expect("prepare");
        let listeners = Listeners::bind(&config).await.expect("bind");
        let (tcp, http) = (listeners.tcp_addr(), listeners.http_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(hutong_server::run(config.clone(), listeners, async move {
            let _ = stopped.await;
        }));
        TestServer { dir, config, tcp, http, stop: Some(stop), task: Some(task) }
    }

    pub fn addr(&self) -> ServerAddr {
        let scheme = if self.config.tcp_tls { "tls" } else { "tcp" };
        format!("{scheme}://{}", self.tcp).parse().expect("address")
    }

    pub fn ws_addr(&self) -> ServerAddr {
        format!("ws://{}/ws", self.http).parse().expect("address")
    }

    /// Creates accounts (password [`PASSWORD`]) and returns their ids.
    pub fn add_users(&self, names: &[&str]) -> Vec<u64> {
        add_users(&self.config.database_path(), names)
    }

    pub fn db(&self) -> rusqlite::Connection {
        storage::open_connection(&self.config.database_path()).expect("open db")
    }

    /// Stops gracefully but keeps the data directory and ports for [`Stopped::start_again`].
    pub async fn stop_keeping_data(mut self) -> Stopped {
        self.shutdown().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Stopped { dir, config: self.config.clone(), tcp: self.tcp, http: self.http }
    }

    /// Graceful stop: waits for `run` to return.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server run");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A stopped [`TestServer`] whose data and ports can be used again.
pub struct Stopped {
    dir: tempfile::TempDir,
    config: Config,
    tcp: SocketAddr,
    http: SocketAddr,
}

impl Stopped {
    /// Starts on the same data directory and the same ports.
    pub async fn start_again(self) -> TestServer {
        let mut config = self.config;
        config.tcp_listen = self.tcp.to_string();
        config.http_listen = self.http.to_string();
        let listeners = Listeners::bind(&config).await.expect("bind again");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(hutong_server::run(config.clone(), listeners, async move {
            let _ = stopped.await;
        }));
        TestServer {
            dir: self.dir,
            config,
            tcp: self.tcp,
            http: self.http,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

pub fn add_users(db: &Path, names: &[&str]) -> Vec<u64> {
    let conn = storage::open_connection(db).expect("open db");
    names.iter().map(|n| accounts::add_user(&conn, n, n, PASSWORD, false).expect("add user")).collect()
}

/// Starts a client core with its own cache in `dir`, logged in with the password.
pub fn client_in(dir: &Path, server: ServerAddr, account: &str, device: &str) -> Client {
    let mut options = ClientOptions::new(server, account, dir.join(format!("{account}-{device}.db")));
    options.device = device.to_owned();
    options.backoff_min = Duration::from_millis(20);
    options.backoff_max = Duration::from_millis(500);
    // Test servers on loopback speak plain TCP unless a test asks for TLS.
    options.insecure_plaintext = true;
    Client::start(options, Credential::Password(PASSWORD.into())).expect("client start")
}

/// A client that is online and has finished its first sync.
pub async fn online_client(dir: &Path, server: ServerAddr, account: &str, device: &str) -> Client {
    let client = client_in(dir, server, account, device);
    within(Duration::from_secs(20), client.wait_online()).await.expect("online");
    within(Duration::from_secs(20), async {
        let mut events = client.events();
        while client.sync_rounds() == 0 {
            let _ = events.recv().await;
        }
    })
    .await;
    client
}

/// Awaits `fut`, failing the test after `limit`.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}"),
    }
}

/// How often a condition that no event announces (server-side state) is re-checked.
const RECHECK: Duration = Duration::from_millis(25);

/// Waits until `check` holds, re-checking whenever `client` reports an event
/// (and every [`RECHECK`] for state the client does not announce); panics
/// with `what` at the deadline.
pub async fn until(client: &Client, limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let mut events = client.events();
    let deadline = tokio::time::Instant::now() + limit;
    let mut recheck = tokio::time::interval(RECHECK);
    while !check() {
        tokio::select! {
            _ = events.recv() => {}
            _ = recheck.tick() => {}
            _ = tokio::time::sleep_until(deadline) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Polls `check` every [`RECHECK`] until it holds; panics with `what` at the deadline.
pub async fn poll_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut recheck = tokio::time::interval(RECHECK);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        recheck.tick().await;
    }
}

/// A raw connection of `account`, logged in with the test password.
pub async fn raw_logged_in(server: &TestServer, account: &str) -> RawConn {
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    match raw.login(account, PASSWORD).await.payload {
        Some(Payload::LoginOk(_)) => {}
        other => panic!("login failed: {other:?}"),
    }
    raw
}

/// Like [`poll_until`] for a look that has to await (an HTTP call, say):
/// re-looks every [`RECHECK`] until `done` holds and returns what it saw;
/// at the deadline it panics with `what` and the last thing seen.
pub async fn poll_until_async<T, F, Fut>(
    limit: Duration,
    what: &str,
    mut look: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        let seen = look().await;
        if done(&seen) {
            return seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last seen: {seen:?}");
        recheck.tick().await;
    }
}

/// Waits for the first event matching `pick`.
pub async fn next_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    limit: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    within(limit, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(v) = pick(&e) {
                        return v;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
}

/// A bare protocol connection, for input no well-behaved client would send.
pub struct RawConn {
    framed: Framed<TcpStream, FrameCodec>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn {
            framed: Framed::new(TcpStream::connect(addr).await.expect("connect"), FrameCodec::default()),
        }
    }

    /// A connection that accepts bulk-sized frames (file chunks).
    pub async fn connect_bulk(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawConn { framed: Framed::new(stream, FrameCodec::bulk()) }
    }

    /// Sends a request and returns the payload of its answer, skipping pushes.
    pub async fn call(&mut self, id: u64, payload: Payload) -> Payload {
        self.send(Envelope::new(id, payload)).await;
        loop {
            let env = self.recv().await.expect("an answer before the connection closed");
            if env.response_to == id {
                return env.payload.expect("answers carry a payload");
            }
        }
    }

    /// Logs in with a session token, as a bulk connection when `bulk`.
    pub async fn login_token(&mut self, account: &str, token: &str, device: &str, bulk: bool) -> Payload {
        use hutong_protocol::v1::{login::Secret, Login};
        let login = Login {
            account: account.into(),
            secret: Some(Secret::Token(token.into())),
            device: device.into(),
            bulk,
        };
        self.call(2, Payload::Login(login)).await
    }

    pub async fn send(&mut self, env: Envelope) {
        self.framed.send(encode_envelope(&env)).await.expect("send");
    }

    pub async fn send_bytes(&mut self, body: &[u8]) {
        self.framed.send(bytes::Bytes::copy_from_slice(body)).await.expect("send");
    }

    /// Writes raw bytes past the codec (for a bad length prefix).
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt as _;
        self.framed.get_mut().write_all(bytes).await.expect("write");
    }

    /// The next frame, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Envelope> {
        match within(Duration::from_secs(10), self.framed.next()).await {
            Some(Ok(body)) => Some(
                hutong_protocol::decode_frame(body.freeze(), hutong_protocol::MAX_BULK_FRAME_LEN)
                    .expect("server frames decode"),
            ),
            _ => None,
        }
    }

    pub async fn hello(&mut self) {
        self.send(Envelope::new(
            1,
            Payload::Hello(hutong_protocol::v1::Hello {
                protocol_version: hutong_protocol::PROTOCOL_VERSION,
                client_name: "raw".into(),
            }),
        ))
        .await;
        match self.recv().await.and_then(|e| e.payload) {
            Some(Payload::HelloOk(_)) => {}
            other => panic!("expected HelloOk, got {other:?}"),
        }
    }

    pub async fn login(&mut self, account: &str, password: &str) -> Envelope {
        use hutong_protocol::v1::{login::Secret, Login};
        let login = Login {
            account: account.into(),
            secret: Some(Secret::Password(password.into())),
            device: "raw".into(),
            bulk: false,
        };
        self.send(Envelope::new(2, Payload::Login(login))).await;
        self.recv().await.expect("login answer")
    }
}

/// The `hutong-server` binary built beside the test binaries.
pub fn server_binary() -> PathBuf {
    binary("hutong-server")
}

/// The `hutong` CLI binary built beside the test binaries.
pub fn cli_binary() -> PathBuf {
    binary("hutong")
}

fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// A `hutong-server` child process on a fixed data directory, which the test
/// can kill with SIGKILL and start again on the same port.
pub struct ServerProcess {
    pub data_dir: PathBuf,
    pub tcp: SocketAddr,
    child: Option<std::process::Child>,
}

impl ServerProcess {
    pub fn start(data_dir: &Path, tcp: Option<SocketAddr>) -> ServerProcess {
        use std::io::BufRead as _;
        let listen = tcp.map(|a| a.to_string()).unwrap_or_else(|| "127.0.0.1:0".into());
        let mut child = std::process::Command::new(server_binary())
            .args(["--data-dir"])
            .arg(data_dir)
            .args(["serve", "--no-tls", "--tcp-listen", &listen, "--http-listen", "127.0.0.1:0"])
            .env("HUTONG_ADMIN_PASSWORD", "admin-password-1")
            .env("HUTONG_LOG", "warn")
            .envs(LOOPBACK_LIMITS)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn hutong-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("server exited before listening").expect("read stdout");
            if let Some(rest) = line.strip_prefix("listening tcp://") {
                break rest.split_whitespace().next().expect("address").parse().expect("socket address");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess { data_dir: data_dir.to_owned(), tcp: addr, child: Some(child) }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let next = ServerProcess::start(&self.data_dir, Some(self.tcp));
        *self = next;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Stopped {
    /// Lets `change` edit the stopped server's database (to set up a state no
    /// request can make quickly, such as old messages), then starts again.
    pub async fn start_again_with(self, change: impl FnOnce(&rusqlite::Connection)) -> TestServer {
        let conn = storage::open_connection(&self.config.database_path()).expect("open db");
        change(&conn);
        drop(conn);
        self.start_again().await
    }
}

/// `/health` of a server at `http`: the status code and the JSON body
/// (`status`, `connections`, `outbound_bytes`).
pub async fn health(http: SocketAddr) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("http://{http}/health")).await.expect("GET /health");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("/health answers JSON"))
}

impl RawConn {
    /// A connection whose receive buffer is a few KiB: once the test stops
    /// reading, the server sees a shut receive window almost at once.
    pub async fn connect_small_window(addr: SocketAddr) -> RawConn {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("connect");
        RawConn { framed: Framed::new(stream, FrameCodec::bulk()) }
    }
}

impl TestServer {
    /// Waits for `run` to return on its own (without a stop signal) and
    /// gives its result.
    pub async fn run_result(mut self) -> anyhow::Result<()> {
        let task = self.task.take().expect("server task");
        task.await.expect("server task")
    }
}

/// A `hutong-server` child process configured through `HUTONG_*` variables,
/// for tests of signals and exit codes.
pub struct ServerChild {
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    child: std::process::Child,
}

impl ServerChild {
    /// Starts the server on `data_dir` (without TLS, ports chosen by the
    /// system) with `env` added to its environment.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> ServerChild {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(server_binary())
            .args(["--data-dir"])
            .arg(data_dir)
            .args(["serve", "--no-tls", "--tcp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .env("HUTONG_ADMIN_PASSWORD", "admin-password-1")
            .env("HUTONG_LOG", "warn")
            .envs(LOOPBACK_LIMITS)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn hutong-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (tcp, http) = loop {
            let line = lines.next().expect("server exited before listening").expect("read stdout");
            if let Some(rest) = line.strip_prefix("listening tcp://") {
                let mut parts = rest.split_whitespace();
                let tcp = parts.next().expect("tcp address").parse().expect("socket address");
                let ws = parts.next().expect("ws address");
                let http =
                    ws.trim_start_matches("ws://").trim_end_matches("/ws").parse().expect("http address");
                break (tcp, http);
            }
        };
        std::thread::spawn(move || for _ in lines {});
        ServerChild { tcp, http, child }
    }

    /// Sends SIGTERM, as a service manager stopping the server does.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status, if the process ends within `limit` (polled).
    pub async fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut recheck = tokio::time::interval(RECHECK);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            recheck.tick().await;
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Logs in to the administration API as the bootstrap administrator; the bearer token.
pub async fn admin_token(server: &TestServer) -> String {
    let body = serde_json::json!({ "account": "admin", "password": "admin-password-1" });
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/api/admin/v1/login", server.http))
        .json(&body)
        .send()
        .await
        .expect("admin login")
        .json()
        .await
        .expect("admin login answer");
    answer["token"].as_str().expect("a token").to_owned()
}

/// The devices of `account` with a live connection, as the server's own
/// session list reports them (what its presence is computed from).
pub async fn online_devices(server: &TestServer, token: &str, account: &str) -> Vec<String> {
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/admin/v1/sessions", server.http))
        .bearer_auth(token)
        .send()
        .await
        .expect("session list")
        .json()
        .await
        .expect("session list answer");
    let mut devices: Vec<String> = answer["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["account"] == account && s["online"] == true)
        .map(|s| s["device"].as_str().unwrap_or_default().to_owned())
        .collect();
    devices.sort();
    devices
}

/// Starts a client core like [`client_in`] after `adjust` has changed its options.
pub fn client_with(
    dir: &Path,
    server: ServerAddr,
    account: &str,
    device: &str,
    adjust: impl FnOnce(&mut ClientOptions),
) -> Client {
    let mut options = ClientOptions::new(server, account, dir.join(format!("{account}-{device}.db")));
    options.device = device.to_owned();
    options.backoff_min = Duration::from_millis(20);
    options.backoff_max = Duration::from_millis(500);
    // Test servers on loopback speak plain TCP unless a test asks for TLS.
    options.insecure_plaintext = true;
    adjust(&mut options);
    Client::start(options, Credential::Password(PASSWORD.into())).expect("client start")
}

/// Waits until a client is online and has finished a sync round.
pub async fn wait_online_synced(client: &Client) {
    within(Duration::from_secs(20), client.wait_online()).await.expect("online");
    within(Duration::from_secs(20), async {
        let mut events = client.events();
        while client.sync_rounds() == 0 {
            let _ = events.recv().await;
        }
    })
    .await;
}

/// Alice and Bob in a direct chat, Bob behind a [`PushDropper`]: Bob has
/// "kept", missed the push of `missed`, and the sync he then ran has its
/// answer (holding `missed`) held back by the proxy. What Alice does next to
/// `missed` (a recall, an edit) is pushed past that held answer: the client
/// must get it right whatever the order.
pub struct OvertakenGapFill {
    pub alice: Client,
    pub bob: Client,
    pub proxy: PushDropper,
    pub conversation_id: u64,
    /// The seq of the message Bob missed.
    pub missed: u64,
}

pub async fn overtaken_gap_fill(server: &TestServer, dir: &Path, missed: &str) -> OvertakenGapFill {
    const T: Duration = Duration::from_secs(20);
    let ids = server.add_users(&["alice", "bob"]);
    let proxy = PushDropper::start(server.tcp).await;
    let alice = online_client(dir, server.addr(), "alice", "d1").await;
    // No periodic sync: only the next push reveals the gap.
    let bob = client_with(dir, proxy.server_addr(), "bob", "d1", |o| {
        o.sync_interval = Duration::from_secs(3600);
    });
    wait_online_synced(&bob).await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;
    let texts = |c: &Client| -> Vec<String> {
        c.cached_messages(conv).unwrap().into_iter().filter(|m| m.kind == "text").map(|m| m.text).collect()
    };
    alice.send_text(conv, "kept", hutong_client::SendOptions::default()).unwrap();
    until(&bob, T, "bob has the first message", || texts(&bob) == ["kept"]).await;
    proxy.drop_next_push();
    alice.send_text(conv, missed, hutong_client::SendOptions::default()).unwrap();
    until(&alice, T, "alice's second is acknowledged", || alice.outbox(None).unwrap().is_empty()).await;
    poll_until(T, "the proxy swallowed the push", || proxy.dropped() == 1).await;
    proxy.hold_next_batch();
    bob.request_sync();
    poll_until(T, "the gap fill's answer is held back", || proxy.held() == 1).await;
    let seq = alice.cached_messages(conv).unwrap().iter().find(|m| m.text == missed).unwrap().seq;
    OvertakenGapFill { alice, bob, proxy, conversation_id: conv, missed: seq }
}

/// A TCP proxy in front of a server that forwards everything, except that
/// while armed it swallows the next pushed message entry going to the
/// client (a push lost on the way, as a network or a server fault would),
/// or holds the next answer with messages back until a recall (or an
/// edit) has been pushed past it (a gap fill overtaken by a live push).
pub struct PushDropper {
    pub addr: SocketAddr,
    state: std::sync::Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    drop_armed: std::sync::atomic::AtomicBool,
    hold_armed: std::sync::atomic::AtomicBool,
    dropped: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
    block_sends: std::sync::atomic::AtomicBool,
    dropped_texts: std::sync::Mutex<Vec<String>>,
    blocked: std::sync::atomic::AtomicU64,
}

impl PushDropper {
    pub async fn start(server: SocketAddr) -> PushDropper {
        use std::sync::atomic::Ordering::SeqCst;
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(server).await else { continue };
                let state = shared.clone();
                tokio::spawn(async move {
                    let (mut client_read, client_write) = client.into_split();
                    let (upstream_read, mut upstream_write) = upstream.into_split();
                    let up_state = state.clone();
                    let up = tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt as _;
                        let mut from_client =
                            tokio_util::codec::FramedRead::new(&mut client_read, FrameCodec::bulk());
                        while let Some(Ok(body)) = from_client.next().await {
                            let body = body.freeze();
                            if up_state.block_sends.load(SeqCst) {
                                let env = hutong_protocol::decode_envelope(&body).ok();
                                if matches!(env.and_then(|e| e.payload), Some(Payload::SendMessage(_))) {
                                    // The connection breaks before the send reaches the server.
                                    up_state.blocked.fetch_add(1, SeqCst);
                                    break;
                                }
                            }
                            let len = (body.len() as u32).to_be_bytes();
                            if upstream_write.write_all(&len).await.is_err()
                                || upstream_write.write_all(&body).await.is_err()
                            {
                                break;
                            }
                        }
                        let _ = upstream_write.shutdown().await;
                    });
                    let mut from_server =
                        tokio_util::codec::FramedRead::new(upstream_read, FrameCodec::bulk());
                    let mut to_client = tokio_util::codec::FramedWrite::new(client_write, FrameCodec::bulk());
                    let mut held: Option<bytes::Bytes> = None;
                    while let Some(Ok(body)) = from_server.next().await {
                        let body = body.freeze();
                        let env = hutong_protocol::decode_envelope(&body).ok();
                        let payload = env.as_ref().and_then(|e| e.payload.as_ref());
                        let push = env.as_ref().is_some_and(|e| e.response_to == 0);
                        if push
                            && matches!(payload, Some(Payload::Message(_)))
                            && state.drop_armed.swap(false, SeqCst)
                        {
                            if let Some(Payload::Message(m)) = payload {
                                state.dropped_texts.lock().unwrap().push(m.text.clone());
                            }
                            state.dropped.fetch_add(1, SeqCst);
                            continue;
                        }
                        if !push
                            && matches!(payload, Some(Payload::MessageBatch(b)) if !b.messages.is_empty())
                            && state.hold_armed.swap(false, SeqCst)
                        {
                            held = Some(body);
                            state.held.fetch_add(1, SeqCst);
                            continue;
                        }
                        let recall = matches!(payload, Some(Payload::Message(m))
                            if m.kind == hutong_protocol::v1::MessageKind::Recall as i32
                                || m.kind == hutong_protocol::v1::MessageKind::Edit as i32);
                        if to_client.send(body).await.is_err() {
                            break;
                        }
                        if recall {
                            if let Some(batch) = held.take() {
                                if to_client.send(batch).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    up.abort();
                });
            }
        });
        PushDropper { addr, state, task }
    }

    /// The proxy as a plain TCP server address.
    pub fn server_addr(&self) -> ServerAddr {
        format!("tcp://{}", self.addr).parse().expect("address")
    }

    /// Swallows the next pushed message entry.
    pub fn drop_next_push(&self) {
        self.state.drop_armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Texts of the pushed entries swallowed so far.
    pub fn dropped_texts(&self) -> Vec<String> {
        self.state.dropped_texts.lock().unwrap().clone()
    }

    /// Pushed entries swallowed so far.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Holds the next non-empty `MessageBatch` answer until a recall or edit entry has been pushed.
    pub fn hold_next_batch(&self) {
        self.state.hold_armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// While set, a connection that carries a `SendMessage` breaks before it
    /// reaches the server (the client stays "offline" for its sends).
    pub fn block_sends(&self, block: bool) {
        self.state.block_sends.store(block, std::sync::atomic::Ordering::SeqCst);
    }

    /// Connections broken by [`PushDropper::block_sends`] so far.
    pub fn blocked(&self) -> u64 {
        self.state.blocked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers held back so far.
    pub fn held(&self) -> u64 {
        self.state.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for PushDropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One call to the administration API (plain HTTP, as [`test_config`] sets
/// it); the status and the JSON answer (or the body as a string).
pub async fn admin_api(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut req =
        reqwest::Client::new().request(method, format!("http://{}/api/admin/v1{path}", server.http));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}
