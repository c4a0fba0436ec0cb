//! The app's own state and files. Under the data directory (or
//! `$HUTONG_DESKTOP_HOME`): `profile.json` (the remembered sign-in, owner-only),
//! `settings.json`, `known_servers.json` (certificate fingerprints confirmed
//! per server), `accounts/<account>/cache.db` (the client core's cache) and
//! `tmp/` (images pasted from the clipboard, kept while they may be sent).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use hutong_client::Client;
use tauri::async_runtime::JoinHandle;

use crate::views::Settings;

pub const DEVICE: &str = "desktop";

/// A signed-in account: its client and the task forwarding its events.
pub struct Session {
    pub client: Client,
    pub server: String,
    pub account: String,
    pub forwarder: JoinHandle<()>,
}

pub struct AppState {
    pub home: PathBuf,
    /// The system's download folder + `Hutong`, where downloads go unless the settings say otherwise.
    pub default_download_dir: PathBuf,
    pub started: Instant,
    pub system_locale: String,
    pub session: Mutex<Option<Session>>,
    pub settings: Mutex<Settings>,
    /// The conversation on screen; no notifications for it while focused.
    pub focus: Mutex<Option<u64>>,
    /// Last known presence of the people the UI has shown.
    pub presence: Mutex<HashMap<u64, &'static str>>,
    pub ready: Mutex<bool>,
    /// Paths the person picked or dropped in this session (`send_paths` takes no other).
    pub grants: crate::grants::Grants,
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AppState {
    pub fn new(home: PathBuf, default_download_dir: PathBuf) -> Self {
        let settings = read_json(&home.join("settings.json")).unwrap_or_default();
        AppState {
            default_download_dir,
            system_locale: sys_locale::get_locale().unwrap_or_else(|| "en-US".into()),
            home,
            started: Instant::now(),
            session: Mutex::new(None),
            settings: Mutex::new(settings),
            focus: Mutex::new(None),
            presence: Mutex::new(HashMap::new()),
            ready: Mutex::new(false),
            grants: Default::default(),
        }
    }

    pub fn client(&self) -> Option<Client> {
        lock(&self.session).as_ref().map(|s| s.client.clone())
    }

    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    pub fn save_settings(&self, settings: &Settings) -> std::io::Result<()> {
        write_json(&self.home.join("settings.json"), settings)?;
        *lock(&self.settings) = settings.clone();
        Ok(())
    }

    /// Where downloads go now.
    pub fn download_dir(&self) -> PathBuf {
        let chosen = lock(&self.settings).download_dir.clone();
        if chosen.is_empty() {
            self.default_download_dir.clone()
        } else {
            PathBuf::from(chosen)
        }
    }

    /// Scratch files (pasted images): `tmp/` under the app's home.
    pub fn tmp_dir(&self) -> PathBuf {
        self.home.join("tmp")
    }

    /// Where one account's cache lives (accounts never share a cache).
    pub fn account_dir(&self, account: &str) -> PathBuf {
        let safe: String = account
            .chars()
            .map(
                |c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c.to_ascii_lowercase() } else { '_' },
            )
            .collect();
        self.home.join("accounts").join(safe)
    }

    pub fn known_fingerprint(&self, server: &str) -> Option<String> {
        let known: HashMap<String, String> =
            read_json(&self.home.join("known_servers.json")).unwrap_or_default();
        known.get(server).cloned()
    }

    pub fn remember_fingerprint(&self, server: &str, fingerprint: &str) -> std::io::Result<()> {
        let path = self.home.join("known_servers.json");
        let mut known: HashMap<String, String> = read_json(&path).unwrap_or_default();
        known.insert(server.to_owned(), fingerprint.to_owned());
        write_json(&path, &known)
    }

    /// The server of the most recent sign-in on this computer.
    pub fn last_server(&self) -> Option<String> {
        std::fs::read_to_string(self.home.join("last_server")).ok().map(|s| s.trim().to_owned())
    }

    pub fn remember_server(&self, server: &str) -> std::io::Result<()> {
        std::fs::write(self.home.join("last_server"), server)
    }

    pub fn presence_of(&self, user_id: u64) -> &'static str {
        lock(&self.presence).get(&user_id).copied().unwrap_or("unknown")
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", path.display());
            None
        }
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    hutong_client::profile::write_private(path, &text)
}
