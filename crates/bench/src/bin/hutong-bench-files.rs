//! `hutong-bench-files`: upload and download of one large file through the
//! real server (TLS on loopback, in this process) and the real client core,
//! against `cp` of the same file on the same disk in the same run as the
//! ceiling; the resident memory of this process (server and both clients)
//! sampled every 50 ms during each transfer; and the time a second upload of
//! the same file takes (the server has every chunk, so nothing is sent).

#[path = "../procfs.rs"]
#[allow(dead_code)]
mod procfs;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hutong_client::{Client, ClientOptions, Credential, ServerAddr, TransferState};
use hutong_server::{Config, Listeners};

const PASSWORD: &str = "bench-password-1";

#[derive(clap::Parser)]
#[command(name = "hutong-bench-files", about = "Large-file transfer benchmark")]
struct Args {
    /// Size of the file in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Work directory (on the disk to measure); a temporary one under it is used.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Runs of each step; the report gives every run and the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args))
}

/// Writes `mib` MiB of incompressible bytes.
fn make_file(path: &Path, mib: u64, seed: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block)?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

fn hash_file(path: &Path) -> anyhow::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize())
}

/// Samples this process's resident memory until stopped; returns the peak in MiB.
fn watch_memory(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(s) = procfs::sample(0) {
                peak = peak.max(s.rss_kib);
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        peak / 1024
    })
}

/// CPU time this process (server and both clients) has used, in seconds.
fn cpu_seconds() -> f64 {
    procfs::sample(0).map(|s| s.cpu_ticks as f64 / procfs::clock_ticks() as f64).unwrap_or(0.0)
}

fn rss_mib() -> u64 {
    procfs::sample(0).map(|s| s.rss_kib / 1024).unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

async fn client(dir: &Path, server: &ServerAddr, fingerprint: &str, account: &str) -> anyhow::Result<Client> {
    let mut options = ClientOptions::new(server.clone(), account, dir.join(format!("{account}.db")));
    options.pinned_fingerprint = Some(fingerprint.to_owned());
    let client = Client::start(options, Credential::Password(PASSWORD.into()))?;
    client.wait_online().await?;
    Ok(client)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let work = tempfile::tempdir_in(&args.dir).context("work directory")?;
    let size = args.mib << 20;
    let source = work.path().join("source.bin");
    make_file(&source, args.mib, 0)?;

    let data = work.path().join("server");
    let config = Config {
        data_dir: data.clone(),
        tcp_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        tcp_tls: true,
        files_max_size: size.max(4 << 30),
        files_quota_bytes: 0,
        ..Config::default()
    };
    let prepared = hutong_server::prepare(&config, Some(PASSWORD.into()))?;
    {
        let conn = hutong_server::storage::open_connection(&config.database_path())?;
        for name in ["sender", "receiver"] {
            hutong_server::accounts::add_user(&conn, name, name, PASSWORD, false)?;
        }
    }
    let listeners = Listeners::bind(&config).await?;
    let addr = ServerAddr::Tls { host: "127.0.0.1".into(), port: listeners.tcp_addr().port() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hutong_server::run(config.clone(), listeners, async move {
        let _ = stopped.await;
    }));

    println!("file: {} MiB of random bytes in {}", args.mib, work.path().display());
    let (mut cp, mut cp_durable) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let target = work.path().join(format!("cp-{run}.bin"));
        let t = Instant::now();
        let status = std::process::Command::new("cp").arg(&source).arg(&target).status()?;
        let took = t.elapsed();
        if !status.success() {
            bail!("cp failed");
        }
        // The same copy made durable, as the server makes every upload.
        std::fs::remove_file(&target)?;
        let t = Instant::now();
        let status = std::process::Command::new("cp").arg(&source).arg(&target).status()?;
        std::fs::File::open(&target)?.sync_all()?;
        let durable_took = t.elapsed();
        if !status.success() {
            bail!("cp failed");
        }
        std::fs::remove_file(&target)?;
        cp.push(mb_per_s(size, took));
        cp_durable.push(mb_per_s(size, durable_took));
        println!(
            "cp run {run}: {:.0} MB/s ({:.2} s); cp + fsync {:.0} MB/s ({:.2} s)",
            cp[run],
            took.as_secs_f64(),
            cp_durable[run],
            durable_took.as_secs_f64()
        );
    }

    let clients = work.path().join("clients");
    std::fs::create_dir_all(&clients)?;
    let sender = client(&clients, &addr, &prepared.fingerprint, "sender").await?;
    let receiver = client(&clients, &addr, &prepared.fingerprint, "receiver").await?;
    let receiver_id = receiver.user_id();
    let conversation = sender.open_direct(receiver_id).await?.id;

    let (mut up, mut down, mut again) = (Vec::new(), Vec::new(), Vec::new());
    let mut peaks = Vec::new();
    for run in 0..args.runs {
        // Each run uploads different content, so nothing is deduplicated.
        let path = work.path().join(format!("upload-{run}.bin"));
        make_file(&path, args.mib, run as u64 + 1)?;
        let expected = hash_file(&path)?;
        let base = rss_mib();
        let stop_watch = Arc::new(AtomicBool::new(false));
        let watcher = watch_memory(stop_watch.clone());
        let cpu = cpu_seconds();
        let t = Instant::now();
        let transfer = sender.send_file(conversation, &path)?;
        let done = sender.wait_transfer(&transfer.id).await?;
        let up_took = t.elapsed();
        let up_cores = (cpu_seconds() - cpu) / up_took.as_secs_f64();
        if done.state != TransferState::Done {
            bail!("upload ended {:?}: {:?}", done.state, done.error);
        }
        stop_watch.store(true, Ordering::Relaxed);
        let up_peak = watcher.join().unwrap_or(0);

        // The file message reaches the receiver; fetch it.
        let seq = wait_for_file(&receiver, conversation, &done.client_msg_id).await?;
        let into = work.path().join(format!("download-{run}"));
        std::fs::create_dir_all(&into)?;
        let stop_watch = Arc::new(AtomicBool::new(false));
        let watcher = watch_memory(stop_watch.clone());
        let cpu = cpu_seconds();
        let t = Instant::now();
        let fetch = receiver.fetch(conversation, seq, &into)?;
        let fetched = receiver.wait_transfer(&fetch.id).await?;
        let down_took = t.elapsed();
        let down_cores = (cpu_seconds() - cpu) / down_took.as_secs_f64();
        stop_watch.store(true, Ordering::Relaxed);
        let down_peak = watcher.join().unwrap_or(0);
        if fetched.state != TransferState::Done {
            bail!("download ended {:?}: {:?}", fetched.state, fetched.error);
        }
        if hash_file(&fetched.local_path)? != expected {
            bail!("the downloaded file differs from the upload");
        }

        // The same file again: every chunk is on the server already.
        let t = Instant::now();
        let second = sender.send_file(conversation, &path)?;
        let second = sender.wait_transfer(&second.id).await?;
        let again_took = t.elapsed();
        if second.state != TransferState::Done || second.wire_bytes != 0 {
            bail!("the second upload sent {} bytes ({:?})", second.wire_bytes, second.state);
        }

        up.push(mb_per_s(size, up_took));
        down.push(mb_per_s(size, down_took));
        again.push(again_took.as_secs_f64());
        peaks.push((base, up_peak, down_peak));
        println!(
            "run {run}: upload {:.0} MB/s ({:.2} s, {up_cores:.2} cores busy), download {:.0} MB/s ({:.2} s, \
             {down_cores:.2} cores busy), second upload {:.3} s; \
             RSS before {base} MiB, peak during upload {up_peak} MiB, during download {down_peak} MiB",
            up[run],
            up_took.as_secs_f64(),
            down[run],
            down_took.as_secs_f64(),
            again[run]
        );
        std::fs::remove_file(&path)?;
        std::fs::remove_dir_all(&into)?;
    }
    let cp_median = median(&mut cp);
    let cp_durable_median = median(&mut cp_durable);
    let (up_median, down_median) = (median(&mut up), median(&mut down));
    let percent = |v: f64, of: f64| 100.0 * v / of;
    println!(
        "median: cp {cp_median:.0} MB/s, cp + fsync {cp_durable_median:.0} MB/s; \
         upload {up_median:.0} MB/s ({:.0}% of cp, {:.0}% of cp + fsync); \
         download {down_median:.0} MB/s ({:.0}% of cp, {:.0}% of cp + fsync); second upload {:.3} s",
        percent(up_median, cp_median),
        percent(up_median, cp_durable_median),
        percent(down_median, cp_median),
        percent(down_median, cp_durable_median),
        median(&mut again)
    );
    sender.shutdown();
    receiver.shutdown();
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Waits until the receiver's cache holds the message `client_msg_id`.
async fn wait_for_file(receiver: &Client, conversation: u64, client_msg_id: &str) -> anyhow::Result<u64> {
    let mut events = receiver.events();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) =
            receiver.cached_messages(conversation)?.into_iter().find(|m| m.client_msg_id == client_msg_id)
        {
            return Ok(m.seq);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, events.recv()).await.is_err() {
            bail!("the file message did not reach the receiver");
        }
    }
}
