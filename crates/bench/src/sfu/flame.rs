//! Flame graphs of a server under the SFU load (`chorus-bench sfu --flame DIR`).
//!
//! After a run's measured window, the server is profiled for [`LENGTH`] more (so the profiler's
//! own cost never enters the figures): `perf record` with DWARF call graphs (the release build
//! keeps no frame pointers; the largest stack copy perf allows, since a tokio worker's stack under
//! a room's task is deeper than 16 KiB and shorter copies leave most samples `[unknown]`), then
//! `perf script`, folded and drawn by [inferno] into
//! `DIR/flame-<target>-<subscribers>sub.svg`. Needs `perf` and the right to profile the server
//! (root, or `perf_event_paranoid` ≤ 1).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// How long the server is profiled.
pub const LENGTH: Duration = Duration::from_secs(5);
/// Samples per second (an odd rate, so it does not beat with the media's 10 or 20 ms clocks).
const FREQUENCY: &str = "499";

/// Profiles process `pid` for [`LENGTH`] and writes its flame graph to `dir`. Returns the file.
pub async fn profile(dir: &Path, target: &str, subscribers: usize, pid: u32) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join(format!(".flame-{target}-{pid}.data"));
    let status = tokio::process::Command::new("perf")
        .args(["record", "-q", "-F", FREQUENCY, "--call-graph", "dwarf,65528", "-p", &pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", &LENGTH.as_secs().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .context("running perf record (is perf installed?)")?;
    anyhow::ensure!(
        status.success(),
        "perf record failed ({status}): profiling needs root or perf_event_paranoid <= 1"
    );
    let script = tokio::process::Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .context("running perf script")?;
    let _ = std::fs::remove_file(&data);
    anyhow::ensure!(script.status.success(), "perf script failed ({})", script.status);
    let svg = dir.join(format!("flame-{target}-{subscribers}sub.svg"));
    let title = format!("{target}, {subscribers} subscribers: {} s of the server", LENGTH.as_secs());
    draw(&script.stdout, &title, &svg)?;
    Ok(svg)
}

/// Folds `perf script` output and draws it as an SVG flame graph at `svg`.
fn draw(perf_script: &[u8], title: &str, svg: &Path) -> anyhow::Result<()> {
    use inferno::collapse::Collapse;
    let mut folded = Vec::new();
    inferno::collapse::perf::Folder::from(inferno::collapse::perf::Options::default())
        .collapse(perf_script, &mut folded)
        .context("folding the stacks")?;
    anyhow::ensure!(!folded.is_empty(), "perf recorded no samples");
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    let file = std::fs::File::create(svg).with_context(|| format!("creating {}", svg.display()))?;
    inferno::flamegraph::from_reader(&mut options, folded.as_slice(), std::io::BufWriter::new(file))
        .context("drawing the flame graph")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples of `perf script` text, folded and drawn: the SVG names both functions.
    #[test]
    fn perf_script_text_becomes_a_flame_graph() {
        let script = b"chorus 10/11 [000] 1.000000: cpu-clock:\n\
\t    55d0 forward_rtp (/usr/bin/chorus)\n\
\t    44c0 main (/usr/bin/chorus)\n\
\n\
chorus 10/11 [000] 1.002000: cpu-clock:\n\
\t    66e0 sendmmsg (/usr/lib/libc.so.6)\n\
\t    44c0 main (/usr/bin/chorus)\n\
\n";
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("f.svg");
        draw(script, "test", &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<?xml") && text.contains("forward_rtp") && text.contains("sendmmsg"));
    }
}
