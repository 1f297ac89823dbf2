//! Server cost read from `/proc`: CPU seconds (user + system, every thread) and resident memory
//! of one process, so a figure holds even though the load generator shares the machine.
//!
//! A [`Window`] is opened when a scenario reaches its steady state and closed when it ends;
//! [`Cost`] is what the process spent in between.

use std::time::Instant;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// User + system CPU time of every thread so far, seconds.
    pub cpu_secs: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Of it: anonymous memory (heap, stacks), files mapped (the binary, libraries) and shared
    /// memory (SQLite's WAL index), KiB (`RssAnon`, `RssFile`, `RssShmem`).
    pub rss_parts_kib: [u64; 3],
    /// When it was read.
    pub at: Instant,
}

/// Reads `/proc/<pid>/stat` (fields 14 and 15, utime and stime in clock ticks) and
/// `/proc/<pid>/status` (`VmRSS` and its parts).
pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let at = Instant::now();
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let rss_kib = kib("VmRSS:");
    let rss_parts_kib = [kib("RssAnon:"), kib("RssFile:"), kib("RssShmem:")];
    Ok(Sample { cpu_secs: ticks as f64 / clock_ticks(), rss_kib, rss_parts_kib, at })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// What a process spent between two samples.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Wall-clock length of the window, seconds.
    pub wall_secs: f64,
    /// CPU seconds the process used in it.
    pub cpu_secs: f64,
    /// Average number of cores busy: `cpu_secs / wall_secs`.
    pub cores: f64,
    /// Resident set size at the end, KiB.
    pub rss_kib: u64,
    /// Highest resident set size seen at either end, KiB.
    pub rss_peak_kib: u64,
}

impl Cost {
    /// Several processes over the same window as one (the nodes of a cluster): CPU seconds
    /// and RSS add up, the wall time is the longest window's.
    pub fn sum(costs: &[Cost]) -> Cost {
        let wall_secs = costs.iter().map(|c| c.wall_secs).fold(0.0, f64::max);
        let cpu_secs = costs.iter().map(|c| c.cpu_secs).sum();
        Cost {
            wall_secs,
            cpu_secs,
            cores: if wall_secs > 0.0 { cpu_secs / wall_secs } else { 0.0 },
            rss_kib: costs.iter().map(|c| c.rss_kib).sum(),
            rss_peak_kib: costs.iter().map(|c| c.rss_peak_kib).sum(),
        }
    }
}

/// The processes whose command name (`/proc/<pid>/comm`) is `name`: processes the benchmark
/// did not start, such as the shared PostgreSQL server's (`postgres`, one per connection).
pub fn find_all(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim_end() == name).then_some(pid)
    })
    .collect()
}

/// The one process named `name` ([`find_all`]); `None` when there is none or more than one.
pub fn find_one(name: &str) -> Option<u32> {
    match find_all(name)[..] {
        [pid] => Some(pid),
        _ => None,
    }
}

/// An open measurement window on one process.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pid: u32,
    start: Sample,
}

impl Window {
    /// Opens a window now.
    pub fn open(pid: u32) -> anyhow::Result<Window> {
        Ok(Window { pid, start: sample(pid)? })
    }

    /// The sample taken at the start.
    pub fn start(&self) -> Sample {
        self.start
    }

    /// What the process spent since [`Window::open`].
    pub fn close(&self) -> anyhow::Result<Cost> {
        let end = sample(self.pid)?;
        let wall = end.at.duration_since(self.start.at).as_secs_f64();
        let cpu = (end.cpu_secs - self.start.cpu_secs).max(0.0);
        Ok(Cost {
            wall_secs: wall,
            cpu_secs: cpu,
            cores: if wall > 0.0 { cpu / wall } else { 0.0 },
            rss_kib: end.rss_kib,
            rss_peak_kib: end.rss_kib.max(self.start.rss_kib),
        })
    }
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("process {pid} is gone"))?.count())
}

/// Open file descriptors of a process by kind: `socket`, `pipe`, `anon_inode:[eventfd]`…, and
/// files by name (`chorus.db-wal`), from the links in `/proc/<pid>/fd`.
pub fn fd_kinds(pid: u32) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("process {pid} is gone"))? {
        let Ok(target) = std::fs::read_link(e?.path()) else { continue };
        let t = target.to_string_lossy();
        let kind = if let Some((k, _)) = t.split_once(":[") {
            k.to_string()
        } else if t.starts_with("anon_inode:") {
            t.to_string()
        } else {
            target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| t.to_string())
        };
        *out.entry(kind).or_insert(0) += 1;
    }
    Ok(out)
}

/// Threads of a process (`Threads:` of `/proc/<pid>/status`).
pub fn threads(pid: u32) -> anyhow::Result<usize> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid} is gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no Threads: line in /proc/{pid}/status"))
}

/// Raises this process's open-file limit to its hard limit (children inherit it): tens of
/// thousands of connections need as many descriptors on both ends.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let w = Window::open(pid).unwrap();
        // Burn a little CPU so the window sees some.
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let c = w.close().unwrap();
        assert!(c.rss_kib > 0);
        assert!(c.wall_secs >= 0.05);
        assert!(c.cpu_secs > 0.0, "{c:?}");
    }

    #[test]
    fn sums_processes() {
        let a = Cost { wall_secs: 2.0, cpu_secs: 0.5, cores: 0.25, rss_kib: 100, rss_peak_kib: 120 };
        let b = Cost { wall_secs: 2.5, cpu_secs: 1.5, cores: 0.6, rss_kib: 50, rss_peak_kib: 50 };
        let s = Cost::sum(&[a, b]);
        assert_eq!((s.wall_secs, s.cpu_secs, s.cores, s.rss_kib, s.rss_peak_kib), (2.5, 2.0, 0.8, 150, 170));
        assert_eq!(Cost::sum(&[]).cores, 0.0);
        // This test process runs under a name no other process has.
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(find_one(me.trim_end()), Some(std::process::id()));
        assert_eq!(find_one("no-such-process-name"), None);
        assert!(find_all("no-such-process-name").is_empty());
    }

    #[test]
    fn counts_descriptors_and_threads() {
        // A child of known shape (this test process opens files on other test threads).
        let dir = tempfile::tempdir().unwrap();
        let wal = std::fs::File::create(dir.path().join("x.db-wal")).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::null())
            .stdout(wal)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // 0, 1 and 2, and whatever the test runner let it inherit (cargo's jobserver pipe).
        let kinds = fd_kinds(pid).unwrap();
        assert_eq!(kinds.get("x.db-wal"), Some(&1), "{kinds:?}");
        assert!(kinds.get("null").is_some_and(|n| *n >= 2), "{kinds:?}");
        assert_eq!(fd_count(pid).unwrap(), kinds.values().sum::<usize>());
        assert_eq!(threads(pid).unwrap(), 1);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(fd_count(pid).is_err());
    }
}
