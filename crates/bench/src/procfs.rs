//! Readings from `/proc`: a process's CPU time and resident memory, and the
//! whole machine's CPU and disk activity. The machine-wide figures exist
//! because the bench shares two cores and one disk with whatever else runs
//! here; a step disturbed by someone else's build must say so.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;

/// One reading of a process's counters.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pub at: Instant,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident memory, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Resident anonymous memory, KiB (`RssAnon`): heap and stacks, without
    /// mapped files such as the binary and SQLite's shared-memory index.
    pub rss_anon_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `pid` 0 means this process.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let dir = if pid == 0 { "/proc/self".to_owned() } else { format!("/proc/{pid}") };
    let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    let status = std::fs::read_to_string(format!("{dir}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        at: Instant::now(),
        cpu_ticks: utime + stime,
        rss_kib: kib("VmRSS:"),
        rss_anon_kib: kib("RssAnon:"),
    })
}

/// Clock ticks per second for `/proc` CPU times (almost always 100).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU use between two samples, in percent of one core (200 = both cores).
pub fn cpu_percent(a: &ProcSample, b: &ProcSample, ticks_per_sec: u64) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / ticks_per_sec as f64 / wall * 100.0
}

/// One reading of the machine's CPU counters and of one disk's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemSample {
    /// CPU ticks spent on anything but idle and I/O wait, all cores.
    pub busy_ticks: u64,
    /// CPU ticks the hypervisor gave to other guests.
    pub steal_ticks: u64,
    pub disk: DiskSample,
}

/// Counters of one block device from `/proc/diskstats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskSample {
    pub writes: u64,
    pub write_ms: u64,
    /// Cache flushes: what an `fsync` turns into on the device.
    pub flushes: u64,
    pub flush_ms: u64,
}

/// The block device holding `path`, as (major, minor), to pick its line in
/// `/proc/diskstats`.
pub fn device_of(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let dev = std::fs::metadata(path).ok()?.dev();
    // The glibc encoding of dev_t (gnu_dev_major / gnu_dev_minor).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    Some((major, minor))
}

/// Reads `/proc/stat` and, when `disk` is given, that device's line of `/proc/diskstats`.
pub fn system_sample(disk: Option<(u64, u64)>) -> SystemSample {
    let mut out = SystemSample::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
            let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal ...
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            out.steal_ticks = v.get(7).copied().unwrap_or(0);
            out.busy_ticks = total.saturating_sub(idle).saturating_sub(out.steal_ticks);
        }
    }
    if let (Some((major, minor)), Ok(stats)) = (disk, std::fs::read_to_string("/proc/diskstats")) {
        for line in stats.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            if num(0) == major && num(1) == minor {
                // Fields after the name: 5 writes, 8 ms writing, 16 flushes, 17 ms flushing.
                out.disk =
                    DiskSample { writes: num(7), write_ms: num(10), flushes: num(18), flush_ms: num(19) };
            }
        }
    }
    out
}

/// Waits, up to `limit`, for a second in which the whole machine used less
/// than `busy_pct` of one core; returns whether it came. Steps started on a
/// quiet machine are the only ones worth comparing.
pub async fn wait_for_quiet(limit: std::time::Duration, busy_pct: f64, ticks: u64) -> bool {
    let start = Instant::now();
    loop {
        let a = system_sample(None);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let b = system_sample(None);
        let busy = b.busy_ticks.saturating_sub(a.busy_ticks) as f64 / ticks as f64 * 100.0;
        if busy < busy_pct {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(0).unwrap();
        assert!(s.rss_kib > 0);
        assert!(system_sample(None).busy_ticks > 0);
    }
}
