//! Files end to end: large files and whole folders arrive byte-identical,
//! interrupted uploads and downloads go on where they stopped (sending only
//! what is missing), and offline recipients fetch what was sent meanwhile.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use hutong_client::folder::{hash_file, walk};
use hutong_client::{AttachmentKind, Client, Event, TransferState};
use hutong_protocol::files::CHUNK_SIZE;
use hutong_tests::*;
use rand::RngCore as _;

const T: Duration = Duration::from_secs(120);
/// Chunk requests the engine keeps in flight (`hutong_client` WINDOW).
const WINDOW: u64 = 4;

/// Writes `size` random bytes to `path`, a MiB at a time.
fn random_file(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rand::rng().fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

fn content_id(path: &Path) -> [u8; 32] {
    hash_file(path, &|| false).unwrap().id
}

/// (relative path, content id or None for a directory) of everything under a folder.
fn tree(root: &Path) -> Vec<(String, Option<[u8; 32]>)> {
    let w = walk(root).unwrap();
    assert_eq!(w.skipped, 0);
    let mut out: Vec<_> = w.dirs.iter().map(|d| (d.clone(), None)).collect();
    out.extend(w.files.iter().map(|f| (f.rel.clone(), Some(content_id(&f.path)))));
    out.sort();
    out
}

/// The bytes of a folder's distinct file contents, and the length of the
/// manifest a client sends for it.
fn distinct_content(root: &Path) -> (u64, u64) {
    use prost::Message as _;
    let walked = walk(root).unwrap();
    let hashed: Vec<_> = walked.files.iter().map(|f| hash_file(&f.path, &|| false).unwrap()).collect();
    let mut seen = std::collections::HashSet::new();
    let distinct = hashed.iter().filter(|m| seen.insert(m.id)).map(|m| m.size).sum();
    let ids: Vec<_> = hashed.iter().map(|m| (m.id, m.size)).collect();
    let manifest = hutong_client::folder::folder_manifest(&walked, &ids);
    (distinct, manifest.encode_to_vec().len() as u64)
}

/// Waits until `client` has message `seq` of `conv` in its cache with an attachment.
async fn until_file_message(client: &Client, conv: u64, seq: u64) -> hutong_client::Attachment {
    let mut found = None;
    until(client, T, "the file message arrives", || {
        found = client
            .cached_messages(conv)
            .unwrap()
            .into_iter()
            .find(|m| m.seq == seq)
            .and_then(|m| m.attachment);
        found.is_some()
    })
    .await;
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_and_a_unicode_folder_arrive_identical_even_when_the_connection_drops() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "d").await;
    let bob = online_client(dir.path(), server.addr(), "bob", "d").await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;

    // 150 MB of random content.
    let size = 150_000_000u64;
    let big = dir.path().join("大文件 archive.bin");
    random_file(&big, size);
    let sent = alice.send_file(conv, &big).unwrap();
    assert_eq!(
        (sent.state, sent.kind, sent.total_bytes),
        (TransferState::Queued, AttachmentKind::File, size)
    );
    let sent = within(T, alice.wait_transfer(&sent.id)).await.unwrap();
    assert_eq!(sent.state, TransferState::Done, "{sent:?}");
    assert!(sent.seq > 0);
    assert_eq!(sent.done_bytes, size);
    assert_eq!(sent.wire_bytes, size, "every chunk once");
    let attachment = until_file_message(&bob, conv, sent.seq).await;
    assert_eq!((attachment.name.as_str(), attachment.size), ("大文件 archive.bin", size));

    // Bob downloads it; the bulk connection drops in the middle.
    let inbox = dir.path().join("bob-inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut events = bob.events();
    let fetch = bob.fetch(conv, sent.seq, &inbox).unwrap();
    assert_eq!(fetch.local_path, inbox.join("大文件 archive.bin"));
    next_event(&mut events, T, |e| match e {
        Event::Transfer(t) if t.id == fetch.id && t.done_bytes > 0 && t.done_bytes < size / 2 => Some(()),
        _ => None,
    })
    .await;
    bob.drop_bulk_connection();
    // The drop came before the end: read after it, the download is still
    // running with part of the file missing.
    let at_drop = bob.transfer(&fetch.id).unwrap().unwrap();
    assert_eq!(at_drop.state, TransferState::Running, "{at_drop:?}");
    assert!(at_drop.done_bytes < size, "{at_drop:?}");
    let got = within(T, bob.wait_transfer(&fetch.id)).await.unwrap();
    assert_eq!(got.state, TransferState::Done, "{got:?}");
    let again = got.wire_bytes - size;
    eprintln!("dropped at {} of {size} bytes on disk; {again} bytes came twice", at_drop.done_bytes);
    assert!(
        again <= WINDOW * u64::from(CHUNK_SIZE) && again < size,
        "at most the chunks in flight come twice, never the whole file: {again} again for {size}"
    );
    assert_eq!(content_id(&got.local_path), content_id(&big));
    let leftovers: Vec<_> = std::fs::read_dir(&inbox).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no part file stays behind: {leftovers:?}");

    // Fetching again never overwrites: the second copy gets a number.
    let again = bob.fetch(conv, sent.seq, &inbox).unwrap();
    let again = within(T, bob.wait_transfer(&again.id)).await.unwrap();
    assert_eq!(again.local_path, inbox.join("大文件 archive (1).bin"));
    assert_eq!(content_id(&again.local_path), content_id(&big));
    std::fs::remove_file(&again.local_path).unwrap();
    std::fs::remove_file(&got.local_path).unwrap();
    std::fs::remove_file(&big).unwrap();

    // A folder of 1,000 files in nested directories with Unicode names.
    let src = dir.path().join("项目资料 Ωmega");
    let mut n = 0;
    for a in 0..10 {
        for b in 0..10 {
            let d = src.join(format!("部门 {a}")).join(format!("子目录-{b} ñandú"));
            std::fs::create_dir_all(&d).unwrap();
            for c in 0..10 {
                let name = format!("文件{c} émoji🙂 {n}.txt");
                let mut content = vec![0u8; (n * 37) % 9000];
                rand::rng().fill_bytes(&mut content);
                if c == 0 {
                    // Some files share their content.
                    content = b"the same in every folder ".repeat(400);
                }
                std::fs::write(d.join(name), content).unwrap();
                n += 1;
            }
        }
    }
    std::fs::create_dir_all(src.join("空的/更空的")).unwrap();
    let sent = alice.send_folder(conv, &src).unwrap();
    assert_eq!(sent.kind, AttachmentKind::Folder);
    let sent = within(T, alice.wait_transfer(&sent.id)).await.unwrap();
    assert_eq!(sent.state, TransferState::Done, "{sent:?}");
    let attachment = until_file_message(&bob, conv, sent.seq).await;
    assert_eq!(attachment.kind, AttachmentKind::Folder);
    assert_eq!(attachment.file_count, 1000);
    assert_eq!(attachment.name, "项目资料 Ωmega");
    let got = bob.fetch(conv, sent.seq, &inbox).unwrap();
    let got = within(T, bob.wait_transfer(&got.id)).await.unwrap();
    assert_eq!(got.state, TransferState::Done, "{got:?}");
    assert_eq!(got.local_path, inbox.join("项目资料 Ωmega"));
    assert_eq!(tree(&got.local_path), tree(&src));
    assert_eq!(got.done_bytes, got.total_bytes);
    // Content that occurs 100 times went over the wire once, each way: what
    // moved is the distinct content and the folder's manifest, nothing more.
    let (distinct, manifest_len) = distinct_content(&src);
    let repeated = b"the same in every folder ".len() as u64 * 400;
    assert_eq!(got.total_bytes - distinct, 99 * repeated, "the fixture repeats one content 100 times");
    assert_eq!(sent.wire_bytes, distinct + manifest_len, "uploaded: the distinct content once");
    assert_eq!(got.wire_bytes, distinct + manifest_len, "downloaded: the distinct content once");

    // The history shows it as a file message.
    let history = bob.history(conv, None, 10).await.unwrap();
    assert_eq!(history.iter().filter(|m| m.kind == "file").count(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_member_receives_an_image_sent_to_a_group_and_quotas_are_kept() {
    let server = TestServer::start_with(|c| c.files_quota_bytes = 50_000_000).await;
    let ids = server.add_users(&["alice", "bob", "carol"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "d").await;
    let group = alice.create_group("设计组", &[ids[1], ids[2]]).await.unwrap().id;

    // A PNG (named .dat: images are recognised by content) goes as an image.
    let png = dir.path().join("照片.dat");
    let img = image_bytes(900, 300);
    std::fs::write(&png, &img).unwrap();
    let sent = alice.send_file(group, &png).unwrap();
    assert_eq!(sent.kind, AttachmentKind::Image);
    let sent = within(T, alice.wait_transfer(&sent.id)).await.unwrap();
    assert_eq!(sent.state, TransferState::Done, "{sent:?}");

    // Carol was offline; she comes online, syncs, and fetches it.
    let carol = online_client(dir.path(), server.addr(), "carol", "d").await;
    let a = until_file_message(&carol, group, sent.seq).await;
    assert_eq!((a.kind, a.width, a.height, a.mime.as_str()), (AttachmentKind::Image, 900, 300, "image/png"));
    assert!(!a.thumbnail.is_empty() && a.thumbnail.len() <= hutong_protocol::files::MAX_THUMBNAIL_LEN);
    let inbox = tempfile::tempdir().unwrap();
    let got = carol.fetch(group, sent.seq, inbox.path()).unwrap();
    let got = within(T, carol.wait_transfer(&got.id)).await.unwrap();
    assert_eq!(got.state, TransferState::Done, "{got:?}");
    assert_eq!(std::fs::read(&got.local_path).unwrap(), img);

    // Over the quota: refused before any data, with the code.
    let big = dir.path().join("too-big.bin");
    random_file(&big, 60_000_000);
    let t = alice.send_file(group, &big).unwrap();
    let t = within(T, alice.wait_transfer(&t.id)).await.unwrap();
    assert_eq!(t.state, TransferState::Failed);
    assert_eq!(t.error_code.as_deref(), Some("QUOTA_EXCEEDED"), "{t:?}");
    assert_eq!(t.wire_bytes, 0);

    // Mistakes are refused up front.
    assert_eq!(alice.send_file(group, &dir.path().join("missing")).unwrap_err().code(), "NOT_FOUND");
    assert_eq!(alice.send_file(group, dir.path()).unwrap_err().code(), "NOT_A_FILE");
    assert_eq!(alice.send_folder(group, &png).unwrap_err().code(), "NOT_A_FOLDER");
    assert_eq!(alice.send_file(999_999, &png).unwrap_err().code(), "NOT_FOUND");
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(bad.join("x")).unwrap();
    std::fs::write(bad.join("x/aux.txt"), b"").unwrap();
    let e = alice.send_folder(group, &bad).unwrap_err();
    assert_eq!(e.code(), "UNSAFE_PATH");
    assert!(e.to_string().contains("x/aux.txt"), "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_pause_survive_restarts_and_cancel_cleanly() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "d").await;
    let conv = alice.open_direct(ids[1]).await.unwrap().id;
    // Large enough that a download is still running when its first progress
    // event (they come at most 8 times a second) reaches the test.
    let size = 240_000_000u64;
    let src = dir.path().join("视频.mp4");
    random_file(&src, size);
    let sent = alice.send_file(conv, &src).unwrap();
    let sent = within(T, alice.wait_transfer(&sent.id)).await.unwrap();
    assert_eq!(sent.state, TransferState::Done, "{sent:?}");

    let bob = online_client(dir.path(), server.addr(), "bob", "d").await;
    until_file_message(&bob, conv, sent.seq).await;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let part = inbox.join(".视频.mp4.hutong-part");
    // Well past the chunks in flight, so that a resume that fetched the whole
    // file again could not pass for one that fetched only what was missing.
    let enough = 3 * WINDOW * u64::from(CHUNK_SIZE);
    let midway = |id: String| {
        move |e: &Event| match e {
            Event::Transfer(t) if t.id == id && t.done_bytes >= enough && t.done_bytes < size => {
                Some(t.done_bytes)
            }
            _ => None,
        }
    };

    // Paused half way: it stays paused, across a restart too.
    let t = interrupt_midway(&bob, conv, sent.seq, &inbox, size, |c, id| c.pause_transfer(id)).await;
    assert_eq!(bob.transfer(&t.id).unwrap().unwrap().state, TransferState::Paused);
    assert!(part.exists(), "the part file stays for resuming");
    bob.shutdown();
    let bob = online_client(dir.path(), server.addr(), "bob", "d").await;
    let still = bob.transfer(&t.id).unwrap().unwrap();
    assert_eq!(still.state, TransferState::Paused);
    assert!((1..size).contains(&still.done_bytes), "paused part way: {still:?}");

    // Resumed, then the process stops half way: the next start goes on by itself.
    let mut events = bob.events();
    bob.resume_transfer(&t.id).unwrap();
    // What the event reports is verified on disk, so a restart finds at least that much.
    let before = next_event(&mut events, T, midway(t.id.clone())).await;
    bob.shutdown();
    // The stop came before the end: the download is unfinished (moving, or
    // queued for its turn or for the connection).
    let stopped = bob.transfer(&t.id).unwrap().unwrap();
    assert!(
        matches!(stopped.state, TransferState::Running | TransferState::Queued) && stopped.done_bytes < size,
        "{stopped:?}"
    );
    let bob = client_in(dir.path(), server.addr(), "bob", "d");
    let got = within(T, bob.wait_transfer(&t.id)).await.unwrap();
    assert_eq!(got.state, TransferState::Done, "{got:?}");
    eprintln!("stopped with {before} of {size} on disk; {} came after the restart", got.wire_bytes);
    assert!(got.wire_bytes > 0, "the restart went on with the download");
    assert!(
        got.wire_bytes <= size - before + WINDOW * u64::from(CHUNK_SIZE) && got.wire_bytes < size,
        "after the restart only what was missing came: {} of {size} ({before} were on disk)",
        got.wire_bytes
    );
    assert_eq!(content_id(&got.local_path), content_id(&src));
    assert!(!part.exists());

    // Cancelled: the partial file goes.
    let t = interrupt_midway(&bob, conv, sent.seq, &inbox, size, |c, id| c.cancel_transfer(id)).await;
    assert_eq!(t.local_path, inbox.join("视频 (1).mp4"));
    assert_eq!(bob.transfer(&t.id).unwrap().unwrap().state, TransferState::Cancelled);
    let part = inbox.join(".视频 (1).mp4.hutong-part");
    poll_until(T, "the part file is removed", || !part.exists()).await;
    assert!(!t.local_path.exists());
    assert!(bob.resume_transfer(&t.id).is_err(), "a cancelled transfer stays cancelled");
    server.stop().await;
}

/// Starts a download and, once it is part way, pauses or cancels it. A fast
/// machine may finish first: then the finished copy is removed and it is
/// tried again.
async fn interrupt_midway(
    client: &Client,
    conv: u64,
    seq: u64,
    inbox: &Path,
    size: u64,
    action: impl Fn(&Client, &str) -> Result<(), hutong_client::ClientError>,
) -> hutong_client::Transfer {
    for _ in 0..5 {
        let mut events = client.events();
        let t = client.fetch(conv, seq, inbox).unwrap();
        next_event(&mut events, T, |e| match e {
            Event::Transfer(x) if x.id == t.id && x.done_bytes > 0 && x.done_bytes < size => Some(()),
            Event::Transfer(x) if x.id == t.id && x.state.is_final() => Some(()),
            _ => None,
        })
        .await;
        if action(client, &t.id).is_ok() {
            return t;
        }
        let done = within(T, client.wait_transfer(&t.id)).await.unwrap();
        assert_eq!(done.state, TransferState::Done);
        std::fs::remove_file(&done.local_path).unwrap();
    }
    panic!("every download finished before it could be interrupted");
}

fn image_bytes(w: u32, h: u32) -> Vec<u8> {
    let mut png = Vec::new();
    let pixels: Vec<u8> = (0..w * h).flat_map(|i| [(i % 251) as u8, (i % 13) as u8 * 19, 200]).collect();
    write_png(&mut png, w, h, &pixels);
    png
}

/// A minimal PNG encoder (stored deflate blocks), so the tests need no image crate.
fn write_png(out: &mut Vec<u8>, w: u32, h: u32, rgb: &[u8]) {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc(&body).to_be_bytes());
    }
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(out, b"IHDR", &ihdr);
    let mut raw = Vec::new();
    for row in rgb.chunks(w as usize * 3) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65_535).enumerate() {
        let last = (i + 1) * 65_535 >= raw.len();
        z.push(u8::from(last));
        z.extend_from_slice(&(block.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    chunk(out, b"IDAT", &z);
    chunk(out, b"IEND", &[]);
}

// ---------------------------------------------------------------- the CLI

fn hutong_cmd(home: &Path, profile: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(cli_binary());
    cmd.env("HUTONG_HOME", home).env("HUTONG_PASSWORD", PASSWORD).args([
        "--profile",
        profile,
        "--timeout",
        "20",
    ]);
    cmd
}

async fn hutong(home: &Path, profile: &str, args: &[&str]) -> Output {
    hutong_cmd(home, profile).args(args).output().await.expect("run hutong")
}

fn check(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// The `done` line: (transfer id, wire bytes, path).
fn done_line(out: &str) -> (String, u64, PathBuf) {
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("done ")).collect();
    assert_eq!(lines.len(), 1, "exactly one done line: {out}");
    let rest = lines[0].strip_prefix("done ").unwrap();
    let (id, rest) = rest.split_once(" wire_bytes=").unwrap();
    let (wire, path) = rest.split_once(" path=").unwrap();
    (id.to_owned(), wire.parse().unwrap(), PathBuf::from(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_resumes_a_killed_upload_sending_only_what_is_missing() {
    use tokio::io::AsyncBufReadExt as _;
    let server = TestServer::start().await;
    server.add_users(&["alice", "bob"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    check(&hutong(h, "a", &["login", "--server", &addr, "--insecure-plaintext", "--account", "alice"]).await);
    check(&hutong(h, "b", &["login", "--server", &addr, "--insecure-plaintext", "--account", "bob"]).await);

    let size = 150_000_000u64;
    let big = h.join("备份 backup.bin");
    random_file(&big, size);

    // Start the upload, and kill the CLI once the server has part of it.
    let mut child = hutong_cmd(h, "a")
        .args(["send-file", "bob"])
        .arg(&big)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let acked = within(T, async {
        loop {
            let line =
                lines.next_line().await.unwrap().expect("the CLI ended before its upload was half done");
            let mut parts = line.split_whitespace();
            assert_eq!(parts.next(), Some("progress"), "unexpected line {line:?}");
            let done: u64 = parts.next().unwrap().parse().unwrap();
            let total: u64 = parts.next().unwrap().parse().unwrap();
            assert_eq!(total, size);
            if done > 0 {
                assert!(done < size, "the upload finished before it could be interrupted");
                return done;
            }
        }
    })
    .await;
    child.kill().await.unwrap(); // SIGKILL
    let _ = child.wait().await;

    // (Any command would go on with it: a client resumes unfinished
    // transfers when it starts. `resume` also waits for it.)
    let out = check(&hutong(h, "a", &["resume"]).await);
    let (_, wire, path) = done_line(&out);
    assert_eq!(path, big);
    eprintln!("acknowledged before the kill: {acked}; sent after resuming: {wire}");
    assert!(wire < size, "the resumed upload sent everything again");
    assert!(
        wire <= size - acked + WINDOW * u64::from(CHUNK_SIZE),
        "resumed wire bytes {wire}, size {size}, acknowledged before the kill {acked}"
    );
    let list = check(&hutong(h, "a", &["transfers", "--json"]).await);
    let t: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    assert_eq!(t["state"], "done");
    let seq = t["seq"].as_u64().unwrap();
    assert!(seq > 0);

    // Bob sees it in his history and fetches it.
    let history = check(&hutong(h, "b", &["history", "alice"]).await);
    assert!(history.contains("[file] 备份 backup.bin (150.0 MB)"), "{history}");
    let inbox = h.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let out =
        check(&hutong(h, "b", &["fetch", "alice", &seq.to_string(), "--to", inbox.to_str().unwrap()]).await);
    let (_, wire, path) = done_line(&out);
    assert_eq!(path, inbox.join("备份 backup.bin"));
    assert_eq!(wire, size);
    assert_eq!(content_id(&path), content_id(&big));
    assert!(out.lines().filter(|l| l.starts_with("progress ")).count() >= 1, "{out}");

    // Nothing to resume now.
    check(&hutong(h, "a", &["resume"]).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_goes_on_after_the_server_is_killed() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(data.path());
    hutong_server::prepare(&config, Some("admin-password-1".into())).unwrap();
    let ids = add_users(&config.database_path(), &["ivy", "jack"]);
    let mut server = ServerProcess::start(data.path(), None);
    let addr: hutong_client::ServerAddr = format!("tcp://{}", server.tcp).parse().unwrap();
    let ivy = online_client(dir.path(), addr.clone(), "ivy", "d").await;
    let conv = ivy.open_direct(ids[1]).await.unwrap().id;

    // Large enough that the server dies well before the end, even though
    // progress events come at most 8 times a second.
    let size = 48 * u64::from(CHUNK_SIZE) + 777;
    let path = dir.path().join("现场录像.mp4");
    random_file(&path, size);
    let mut events = ivy.events();
    let sent = ivy.send_file(conv, &path).unwrap();
    // Kill the server once a good part of the file is stored: more than
    // the chunks in flight, so that sending everything again cannot pass
    // for sending the chunks in flight again.
    let part = 3 * WINDOW * u64::from(CHUNK_SIZE);
    let acked = next_event(&mut events, T, |e| match e {
        Event::Transfer(t) if t.id == sent.id && t.done_bytes >= part => Some(t.done_bytes),
        _ => None,
    })
    .await;
    server.kill();
    let chunk_files = || -> u64 {
        std::fs::read_dir(data.path().join("blobs"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|d| d.file_name().len() == 2)
            .map(|d| {
                std::fs::read_dir(d.path())
                    .unwrap()
                    .filter_map(Result::ok)
                    .filter(|f| f.file_name().len() == 64)
                    .count() as u64
            })
            .sum()
    };
    let stored = chunk_files();
    let chunks = size.div_ceil(u64::from(CHUNK_SIZE));
    assert!(
        stored * u64::from(CHUNK_SIZE) >= acked,
        "acknowledged chunks are on disk: {stored} chunks, {acked} bytes"
    );
    assert!(stored < chunks, "the server died before it had the whole file: {stored} of {chunks} chunks");
    server.restart();
    let done = within(T, ivy.wait_transfer(&sent.id)).await.unwrap();
    assert_eq!(done.state, TransferState::Done, "{done:?}");
    assert_eq!(chunk_files(), chunks);
    // Sent again: at most the chunks that were in flight when the server
    // died, far less than what it had already stored.
    let again = done.wire_bytes - size;
    eprintln!(
        "acknowledged before the kill: {acked}; chunks stored: {stored} of {chunks}; sent again: {again}"
    );
    assert!(again <= WINDOW * u64::from(CHUNK_SIZE), "{again} bytes sent twice");
    assert!(again < stored * u64::from(CHUNK_SIZE) && again < size);

    // The recipient, online only now, gets the same bytes.
    let jack = online_client(dir.path(), addr, "jack", "d").await;
    let attachment = until_file_message(&jack, conv, done.seq).await;
    assert_eq!(attachment.size, size);
    let inbox = dir.path().join("jack-inbox");
    std::fs::create_dir(&inbox).unwrap();
    let fetch = jack.fetch(conv, done.seq, &inbox).unwrap();
    let got = within(T, jack.wait_transfer(&fetch.id)).await.unwrap();
    assert_eq!(got.state, TransferState::Done, "{got:?}");
    assert_eq!(content_id(&got.local_path), content_id(&path));
}
