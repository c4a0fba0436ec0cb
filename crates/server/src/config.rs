//! The server's one configuration struct. Sources, later ones winning:
//! built-in defaults, the TOML file (`--config`, default `hutong.toml` when it
//! exists), `HUTONG_*` environment variables, then command-line flags.
//! `hutong.example.toml` at the repository root lists every field; a test
//! keeps it equal to the defaults.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the database and the TLS identity; created on first start.
    /// Default `./hutong-data`.
    pub data_dir: PathBuf,
    /// Address of the native protocol listener (length-prefixed protobuf frames).
    /// Default `0.0.0.0:7300`; port 0 picks a free port.
    pub tcp_listen: String,
    /// Whether the native listener speaks TLS. Default `true`; `false` only for
    /// tests or a trusted network.
    pub tcp_tls: bool,
    /// Address of the HTTP listener serving WebSocket at `/ws` and `/health`.
    /// Default `0.0.0.0:7380`.
    pub http_listen: String,
    /// Whether the HTTP listener (console, administration API, `/ws`,
    /// `/health`) speaks plain HTTP instead of HTTPS with the server's own
    /// certificate. Default `false`; `true` only behind a proxy that
    /// terminates TLS: passwords and tokens then cross the network between
    /// it and the server in clear text, and the console says so.
    pub http_insecure_plaintext: bool,
    /// The server's HTTP address as people and scripts reach it (for
    /// example `https://im.example.com:7380`), used in the URLs it hands out
    /// (group robots). Default empty: `https://` (or `http://` with
    /// `http_insecure_plaintext`) followed by `http_listen`.
    pub public_url: String,
    /// HTTP connections served at once (console and API requests, and
    /// WebSocket handshakes until they are upgraded); further connections
    /// are closed at once. Default 1024.
    pub http_max_connections: usize,
    /// Milliseconds an HTTP client has to send a request's headers (and to
    /// finish TLS) before its connection is closed: a client that trickles
    /// bytes cannot hold a connection. Default 10000.
    pub http_header_timeout_ms: u64,
    /// Milliseconds a native or WebSocket connection has, from its start, to
    /// say Hello and log in; pings do not extend it. Default 15000.
    pub login_timeout_ms: u64,
    /// Connections from one address that have not logged in yet, at once;
    /// more are answered `TOO_MANY_CONNECTIONS` and closed. Default 128.
    pub unauthenticated_per_address: usize,
    /// New connections (native or WebSocket) from one address per minute,
    /// with bursts up to the same number; more are answered
    /// `TOO_MANY_CONNECTIONS` with the time to wait and closed. Default 1200.
    pub connections_per_address_per_minute: u32,
    /// Milliseconds between the pings a client should send. Default 15000.
    pub heartbeat_ms: u32,
    /// A connection silent for this many milliseconds is closed. Default 45000.
    pub idle_timeout_ms: u64,
    /// How long after sending a message its sender may recall it, in seconds.
    /// Default 120.
    pub recall_window_secs: u64,
    /// How long after sending a text message its sender may edit it, in
    /// seconds. Every version is kept in the archive. Default 86400 (24 h).
    pub edit_window_secs: u64,
    /// Most commands committed in one transaction (group commit). Default 1024.
    pub commit_batch_max: usize,
    /// Most simultaneous client connections. Default 19000 (one process may hold
    /// 20000 descriptors on common hosts).
    pub max_connections: usize,
    /// Frames of live pushes queued per connection before it counts as a slow
    /// consumer and is disconnected. Default 4096.
    pub outbound_queue_frames: usize,
    /// Bytes one connection's outbound queue may hold: frames queued, the
    /// batch being written and answers waiting for room. A push beyond it
    /// disconnects the connection as a slow consumer; answers may fill only
    /// half of it (the rest is the pushes'), beyond that they wait and the
    /// connection stops reading requests. Requests whose answers may
    /// be large (sync, fetch, directory, lookups) are also limited to this
    /// many bytes' worth of 1 MiB answers in flight. Default 2 MiB (2097152).
    pub outbound_queue_bytes: usize,
    /// Milliseconds a connection's writer may take to write one batch (at
    /// most 256 KiB or one frame) before the connection is closed: a peer
    /// that stops reading cannot keep its socket and queue alive. Default 30000.
    pub write_timeout_ms: u64,
    /// Milliseconds connections get, after a shutdown signal, to finish their
    /// requests and write their answers; then they are closed whatever their
    /// clients do. Default 10000.
    pub shutdown_grace_ms: u64,
    /// Typing notices relayed per person and conversation: at most one per
    /// this many milliseconds (and at most 5 per person over all
    /// conversations); the rest are dropped without an answer. Default 1000.
    pub typing_interval_ms: u64,
    /// Requests one connection may have in flight at once. Default 512.
    pub max_in_flight: usize,
    /// Failed password logins for one account from one client address (an
    /// IPv6 address counts by its /64) within `login_window_secs` before that
    /// account is refused from that address for the rest of the window. This
    /// is the limit a person who mistypes meets; colleagues behind the same
    /// NAT are not affected. Default 5.
    pub login_failures_per_account_and_address: u32,
    /// Failed password logins for one account from all addresses within the
    /// window before password logins of that account are refused from
    /// everywhere (guessing spread over many addresses). Token logins of
    /// devices already signed in are never refused by it. Default 20.
    pub login_failures_per_account: u32,
    /// Failed logins from one client address over all accounts within the
    /// window (one address trying many accounts). High enough that an office
    /// behind one NAT never meets it by mistyping. Default 100.
    pub login_failures_per_address: u32,
    /// Length of the failed-login window in seconds. Default 300.
    pub login_window_secs: u64,
    /// A desktop or CLI session token unused for this many seconds expires
    /// (each use, and every hour while connected, restarts the count); the
    /// device then signs in with the password again. Default 2592000 (30 days).
    pub session_lifetime_secs: u64,
    /// A console session unused for this many seconds expires (each request
    /// restarts the count). Default 1800 (30 minutes).
    pub console_session_lifetime_secs: u64,
    /// Whether administrators and auditors must use a TOTP second factor on
    /// the console and the administration API (enrolling at their next
    /// login). People who enrolled are always asked for a code. Default false.
    pub totp_required: bool,
    /// Retention shorter than this many days (other than 0, "forever") takes
    /// effect only after an auditor confirms it. Default 180.
    pub retention_floor_days: u32,
    /// Password checks run at once (each takes 19 MiB and tens of ms). Default 2.
    pub max_concurrent_hashing: usize,
    /// Largest file a person may upload, in bytes. Default 4 GiB
    /// (4294967296).
    pub files_max_size: u64,
    /// Bytes of files each person may have on the server (what they
    /// uploaded and the server keeps; content shared with others counts for
    /// each uploader). 0 means no quota. Default 20 GiB (21474836480).
    pub files_quota_bytes: u64,
    /// Files no message refers to are removed this many seconds after their
    /// upload began, then chunks no file names. Default 86400 (a day).
    pub files_orphan_grace_secs: u64,
    /// Seconds between two collections of unreferenced files. Default 3600.
    pub files_gc_interval_secs: u64,
    /// Messages (sends and recalls) one person may have accepted per second
    /// over all their devices, on average: a token bucket refilled at this
    /// rate. Beyond it a send is answered `RATE_LIMITED` with the time until
    /// a token is back (`retry_after_ms`), before it reaches the writer, so a
    /// flooding account cannot take the writer from everyone else. 0 turns
    /// the limit off. Default 20.
    pub send_rate_per_sec: u32,
    /// The bucket's size: messages one person may send at once after a
    /// quiet spell (an outbox catching up after being offline). Default 200.
    pub send_burst: u32,
    /// Requests per second one integration-API application may make under
    /// `/api/v1`, on average (a token bucket per application); beyond it
    /// the answer is 429 with `Retry-After`. 0 turns the limit off.
    /// Default 50.
    pub api_rate_per_sec: u32,
    /// The bucket's size: requests one application may make at once.
    /// Default 100.
    pub api_burst: u32,
    /// Chat connections one person may hold at once over all devices (file
    /// connections are capped separately); the next login is refused with
    /// `TOO_MANY_CONNECTIONS`. 0 turns the cap off. Default 16.
    pub max_connections_per_user: usize,
    /// Directory roles whose holders may send URGENT messages (which
    /// overtake everyone's normal traffic); anyone else gets `FORBIDDEN`.
    /// Roles are those of the directory: admin, auditor, agent. Default
    /// `["admin"]`.
    pub urgent_roles: Vec<String>,
    /// Test hook, never read from a file or the environment: the writer
    /// thread panics after committing this many batches.
    #[doc(hidden)]
    #[serde(skip)]
    pub writer_panic_after_batches: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./hutong-data"),
            tcp_listen: "0.0.0.0:7300".into(),
            tcp_tls: true,
            http_listen: "0.0.0.0:7380".into(),
            http_insecure_plaintext: false,
            public_url: String::new(),
            http_max_connections: 1024,
            http_header_timeout_ms: 10_000,
            login_timeout_ms: 15_000,
            unauthenticated_per_address: 128,
            connections_per_address_per_minute: 1200,
            heartbeat_ms: 15_000,
            idle_timeout_ms: 45_000,
            recall_window_secs: 120,
            edit_window_secs: 86_400,
            commit_batch_max: 1024,
            max_connections: 19_000,
            outbound_queue_frames: 4096,
            outbound_queue_bytes: 2 << 20,
            write_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            typing_interval_ms: 1_000,
            max_in_flight: 512,
            login_failures_per_account_and_address: 5,
            login_failures_per_account: 20,
            login_failures_per_address: 100,
            login_window_secs: 300,
            session_lifetime_secs: 30 * 86_400,
            console_session_lifetime_secs: 1_800,
            totp_required: false,
            retention_floor_days: 180,
            max_concurrent_hashing: 2,
            files_max_size: 4 << 30,
            files_quota_bytes: 20 << 30,
            files_orphan_grace_secs: 86_400,
            files_gc_interval_secs: 3_600,
            send_rate_per_sec: 20,
            send_burst: 200,
            api_rate_per_sec: 50,
            api_burst: 100,
            max_connections_per_user: 16,
            urgent_roles: vec!["admin".into()],
            writer_panic_after_batches: None,
        }
    }
}

impl Config {
    /// [`Config::public_url`], or the HTTP listener's address when it is empty.
    pub fn public_base_url(&self) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_owned();
        }
        let scheme = if self.http_insecure_plaintext { "http" } else { "https" };
        format!("{scheme}://{}", self.http_listen)
    }

    /// Loads defaults, then `file` (or `hutong.toml` if present), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    anyhow::bail!("the config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("hutong.toml")),
        }
        // Only variables naming a field: HUTONG_ADMIN_PASSWORD, HUTONG_LOG and
        // others belong to other parts of the program.
        let fields: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let env = Env::prefixed("HUTONG_")
            .filter(move |key| fields.iter().any(|f| key.as_str().eq_ignore_ascii_case(f)));
        let config: Config =
            figment.merge(env).extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.heartbeat_ms < 100 {
            anyhow::bail!("heartbeat_ms must be at least 100");
        }
        if self.idle_timeout_ms < u64::from(self.heartbeat_ms) * 2 {
            anyhow::bail!("idle_timeout_ms must be at least twice heartbeat_ms");
        }
        if self.commit_batch_max == 0 || self.max_connections == 0 || self.max_in_flight == 0 {
            anyhow::bail!("commit_batch_max, max_connections and max_in_flight must be positive");
        }
        if self.outbound_queue_bytes < 64 * 1024 {
            anyhow::bail!("outbound_queue_bytes must be at least 65536");
        }
        if self.write_timeout_ms < 100 {
            anyhow::bail!("write_timeout_ms must be at least 100");
        }
        if self.http_max_connections == 0
            || self.unauthenticated_per_address == 0
            || self.connections_per_address_per_minute == 0
        {
            anyhow::bail!(
                "http_max_connections, unauthenticated_per_address and connections_per_address_per_minute must be positive"
            );
        }
        if self.http_header_timeout_ms < 100 || self.login_timeout_ms < 100 {
            anyhow::bail!("http_header_timeout_ms and login_timeout_ms must be at least 100");
        }
        if self.session_lifetime_secs < 60 || self.console_session_lifetime_secs < 60 {
            anyhow::bail!("session_lifetime_secs and console_session_lifetime_secs must be at least 60");
        }
        if self.login_failures_per_account_and_address == 0
            || self.login_failures_per_account == 0
            || self.login_failures_per_address == 0
            || self.login_window_secs == 0
        {
            anyhow::bail!("the login_failures_* limits and login_window_secs must be positive");
        }
        if self.max_concurrent_hashing == 0 {
            anyhow::bail!("max_concurrent_hashing must be positive");
        }
        if self.send_rate_per_sec > 0 && self.send_burst == 0 {
            anyhow::bail!("send_burst must be positive when send_rate_per_sec is");
        }
        if self.files_max_size == 0 || self.files_gc_interval_secs == 0 {
            anyhow::bail!("files_max_size and files_gc_interval_secs must be positive");
        }
        Ok(())
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("hutong.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hutong.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default(), "hutong.example.toml and Config::default() disagree");
        // Every field is written out in the example.
        let fields = toml::to_string(&Config::default()).unwrap();
        for line in fields.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(text.contains(&format!("{key} = ")), "hutong.example.toml lacks {key}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("tcp_lisen = \"x\"").is_err());
    }
}
