//! Local data is its owner's only: the server's data directory and the
//! client's cache and profile are 0700 (folders) and 0600 (files), SQLite's
//! -wal and -shm included, and a start fixes what an older version left open.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use hutong_client::SendOptions;
use hutong_tests::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn loosen(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every entry directly in `dir` (and `dir` itself) is owner-only; returns the names seen.
fn assert_private(dir: &Path) -> Vec<String> {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let want = if entry.file_type().unwrap().is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&entry.path()), want, "{}", entry.path().display());
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_and_client_keep_their_files_private() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    let ids = server.add_users(&["alice", "bob"]);
    let home = tempfile::tempdir().unwrap();
    let cache_dir = home.path().join("profile");
    let alice = online_client(&cache_dir, server.addr(), "alice", "laptop").await;
    // A write, so the server's and the client's WAL files exist.
    let conversation = alice.open_direct(ids[1]).await.unwrap().id;
    let id = alice.send_text(conversation, "hello", SendOptions::default()).unwrap();
    until(&alice, Duration::from_secs(10), "the ack", || {
        matches!(alice.send_outcome(&id), Ok(hutong_client::SendOutcome::Sent { .. }))
    })
    .await;
    // While both run: the database with its -wal and -shm, the TLS key, the chunk store.
    let names = assert_private(server.dir.path());
    for name in ["hutong.db", "hutong.db-wal", "hutong.db-shm"] {
        assert!(names.iter().any(|n| n == name), "{name} missing in {names:?}");
    }
    let names = assert_private(&cache_dir);
    for name in ["alice-laptop.db", "alice-laptop.db-wal", "alice-laptop.db-shm"] {
        assert!(names.iter().any(|n| n == name), "{name} missing in {names:?}");
    }
    alice.shutdown();
    server.stop().await;
}

#[test]
fn a_start_fixes_an_open_data_directory_left_by_an_older_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = test_config(&data);
    hutong_server::prepare(&config, Some("admin-password-1".into())).unwrap();
    // As an older version (or a umask of 022) left it.
    std::fs::write(data.join("hutong.db-wal"), b"").unwrap();
    std::fs::write(data.join("hutong.db-shm"), b"").unwrap();
    std::fs::create_dir_all(data.join("blobs")).unwrap();
    loosen(&data, 0o755);
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        loosen(&entry.path(), if entry.file_type().unwrap().is_dir() { 0o755 } else { 0o644 });
    }
    hutong_server::prepare(&config, None).unwrap();
    let names = assert_private(&data);
    // SQLite removed the empty -wal/-shm on opening; the running server's are checked above.
    for name in ["hutong.db", "blobs", "tls-key.der", "tls-cert.der"] {
        assert!(names.iter().any(|n| n == name), "{name} missing in {names:?}");
    }
}

#[test]
fn a_client_cache_left_open_is_made_private_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profiles").join("default");
    let path = profile.join("cache.db");
    drop(hutong_client::Cache::open(&path).unwrap());
    std::fs::write(profile.join("cache.db-wal"), b"").unwrap();
    std::fs::write(profile.join("cache.db-shm"), b"").unwrap();
    loosen(&profile, 0o755);
    for name in ["cache.db", "cache.db-wal", "cache.db-shm"] {
        loosen(&profile.join(name), 0o644);
    }
    let _cache = hutong_client::Cache::open(&path).unwrap();
    assert_private(&profile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_profile_is_private() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice"]);
    let home = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(cli_binary())
        .env("HUTONG_HOME", home.path())
        .env("HUTONG_PASSWORD", PASSWORD)
        .args(["--profile", "p", "login", "--server", &server.addr().to_string(), "--account", "alice"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names = assert_private(&home.path().join("profiles").join("p"));
    assert!(names.iter().any(|n| n == "profile.json") && names.iter().any(|n| n == "cache.db"), "{names:?}");
    server.stop().await;
}
