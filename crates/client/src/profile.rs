//! A remembered sign-in: which server and account, the pinned certificate
//! fingerprint and the session token. The CLI and the desktop app both keep
//! one per profile directory, readable by its owner only.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ClientError;

pub const PROFILE_FILE: &str = "profile.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub server: String,
    pub account: String,
    pub device: String,
    pub fingerprint: Option<String>,
    pub token: String,
    /// The person chose an unencrypted connection to `server` explicitly.
    #[serde(default)]
    pub insecure_plaintext: bool,
}

impl Profile {
    /// The profile stored in `dir`, `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Profile>, ClientError> {
        match std::fs::read_to_string(dir.join(PROFILE_FILE)) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ClientError::Cache(format!("{}: {e}", dir.join(PROFILE_FILE).display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::Cache(format!("{}: {e}", dir.join(PROFILE_FILE).display()))),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), ClientError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ClientError::Cache(e.to_string()))?;
        write_private(&dir.join(PROFILE_FILE), text.as_bytes())
            .map_err(|e| ClientError::Cache(format!("{}: {e}", dir.join(PROFILE_FILE).display())))
    }

    /// Forgets the session (the cache stays).
    pub fn remove(dir: &Path) -> Result<(), ClientError> {
        match std::fs::remove_file(dir.join(PROFILE_FILE)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClientError::Cache(e.to_string())),
        }
    }
}

/// Writes a file only its owner can read (it holds a session token), in a
/// folder only its owner can enter; a file an older version left readable
/// by others is made private before the new content goes in.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        private_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    private_file(path)?;
    file.write_all(bytes)
}

/// Creates `dir` if needed and makes it owner-only (0700), fixing one an
/// older version or a permissive umask left open.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Makes an existing file owner-only (0600); a missing one is fine.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match set_mode(path, 0o600) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::symlink_metadata(path)?;
    // Links are left alone (their target is not ours to change), and so are
    // shared folders such as /tmp (sticky bit): the cache belongs in its own.
    let current = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() || current == mode || current & 0o1000 != 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Profile::load(dir.path()).unwrap().is_none());
        let p = Profile {
            server: "tls://h:1".into(),
            account: "zhangsan".into(),
            device: "desktop".into(),
            fingerprint: Some("AA:BB".into()),
            token: "secret".into(),
            insecure_plaintext: false,
        };
        p.save(dir.path()).unwrap();
        let back = Profile::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.token, "secret");
        assert_eq!(back.fingerprint.as_deref(), Some("AA:BB"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(PROFILE_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "profile readable by others: {mode:o}");
        }
        Profile::remove(dir.path()).unwrap();
        assert!(Profile::load(dir.path()).unwrap().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn an_open_profile_left_by_an_older_version_is_made_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("profiles").join("default");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join(PROFILE_FILE), "{}").unwrap();
        std::fs::set_permissions(dir.join(PROFILE_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = Profile {
            server: "tls://h:1".into(),
            account: "a".into(),
            device: "d".into(),
            fingerprint: None,
            token: "secret".into(),
            insecure_plaintext: false,
        };
        p.save(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(PROFILE_FILE)), 0o600);
        assert_eq!(Profile::load(&dir).unwrap().unwrap().token, "secret");
    }
}
