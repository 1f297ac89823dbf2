//! The Janus process: its private configuration folder, the child process (killed when
//! dropped, and by the kernel if the benchmark dies first), and the wait until its WebSocket
//! API answers.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::api::Api;
use super::config::{self, JanusConfig, Modules};
use super::JanusOptions;

/// Janus's log lines kept for error messages.
const LOG_LINES: usize = 40;

/// The RTP port range: below Linux's ephemeral range (32768–60999), where the benchmark's own
/// sockets get their ports, so the two never collide.
const RTP_PORTS: (u16, u16) = (10000, 30000);

/// How long Janus may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable that sets Janus's `debug_level` (default 3, warnings) and, when
/// set, passes its log through to stderr.
pub const LOG_ENV: &str = "CHORUS_BENCH_JANUS_LOG";

/// A running Janus; killed when dropped.
pub struct JanusServer {
    child: Child,
    /// `ws://127.0.0.1:port`.
    pub url: String,
    log: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("picking a free port")?;
    Ok(l.local_addr()?.port())
}

impl JanusServer {
    /// Writes the configuration for a room of `publishers`, starts Janus and waits until its
    /// API answers `info` with the VideoRoom plugin loaded. Returns the server and a connected
    /// API client.
    pub async fn start(
        opts: &JanusOptions,
        publishers: usize,
        record: Option<&std::path::Path>,
    ) -> anyhow::Result<(JanusServer, Api)> {
        let lib =
            config::find_lib().ok_or_else(|| anyhow!("Janus's plugin folder (libjanus_videoroom.so) not found"))?;
        let dir = tempfile::Builder::new().prefix("chorus-bench-janus-").tempdir()?;
        let ws_port = free_port()?;
        let level = std::env::var(LOG_ENV).ok().and_then(|v| v.parse::<u8>().ok());
        let cfg = JanusConfig {
            dir: dir.path().to_path_buf(),
            modules: Modules::scan(&lib),
            lib,
            ws_port,
            rtp_ports: RTP_PORTS,
            ice_iface: crate::netns::IFACE.into(),
            debug_level: level.unwrap_or(3),
            publishers,
            record: record.map(std::path::Path::to_path_buf),
        };
        let main = cfg.write().context("writing Janus's configuration")?;
        let mut cmd = Command::new(&opts.bin);
        cmd.arg("-F").arg(dir.path()).arg("-C").arg(&main).stdin(Stdio::null()).stdout(Stdio::piped());
        cmd.stderr(if level.is_some() { Stdio::inherit() } else { Stdio::piped() });
        // SAFETY: prctl only sets a flag of the child (killed with SIGKILL when the thread that
        // started it ends), and is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", opts.bin.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let echo = level.is_some();
        let keep = |stream: Box<dyn std::io::Read + Send>, log: Arc<Mutex<VecDeque<String>>>| {
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if echo {
                        eprintln!("janus: {line}");
                    }
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() == LOG_LINES {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            })
        };
        if let Some(out) = child.stdout.take() {
            keep(Box::new(out), log.clone());
        }
        if let Some(err) = child.stderr.take() {
            keep(Box::new(err), log.clone());
        }
        let mut srv = JanusServer { child, url: format!("ws://127.0.0.1:{ws_port}"), log, _dir: dir };
        let api = srv.wait_ready().await?;
        Ok((srv, api))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<Api> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("Janus exited ({status}) while starting:\n{}", self.log_tail());
            }
            if let Ok(api) = Api::connect(&self.url).await {
                let info = api.info().await.context("Janus info")?;
                if info["plugins"].get("janus.plugin.videoroom").is_none() {
                    bail!("Janus runs without the VideoRoom plugin: {info}");
                }
                return Ok(api);
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("Janus did not answer on {} within {START_TIMEOUT:?}:\n{}", self.url, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id (for [`crate::proc`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines Janus logged.
    pub fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Fails if Janus has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("Janus exited ({status}):\n{}", self.log_tail());
        }
        Ok(())
    }
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `janus --version` output ("Janus version: 1102 (1.1.2)") into "Janus 1.1.2".
pub fn parse_version(out: &str) -> Option<String> {
    let line = out.lines().find_map(|l| l.trim().strip_prefix("Janus version:"))?;
    let v = match (line.find('('), line.rfind(')')) {
        (Some(a), Some(b)) if a < b => line[a + 1..b].trim(),
        _ => line.trim(),
    };
    (!v.is_empty()).then(|| format!("Janus {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_line() {
        let out = "Janus version: 1102 (1.1.2)\nJanus commit: not-a-git-repo\nCompiled on:  Thu Jan 19\n";
        assert_eq!(parse_version(out).as_deref(), Some("Janus 1.1.2"));
        assert_eq!(parse_version("Janus version: 1.3.0\n").as_deref(), Some("Janus 1.3.0"));
        assert_eq!(parse_version("something else"), None);
    }
}
