//! The peer of the media benchmark: Debian's nginx as a child process, serving one directory
//! on a 127.0.0.1 port with `sendfile` — the usual static-file setup in front of which a
//! self-hosted server's downloads would otherwise sit.
//!
//! It runs in the foreground (`daemon off`) from a generated configuration in a temporary
//! prefix (`nginx -c <conf> -p <prefix> -e <log>`), so nothing of the system's nginx setup is
//! read or written. `worker_processes` is the number of CPUs this process may use — what
//! Chorus's Tokio runtime starts as worker threads — so both servers may use the same cores.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running nginx; stopped when dropped.
pub struct Nginx {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// Starts `bin` serving `root` with `workers` worker processes, and waits until it accepts
    /// connections.
    pub fn start(bin: &Path, root: &Path, workers: usize) -> anyhow::Result<Nginx> {
        let prefix = tempfile::Builder::new().prefix("chorus-bench-nginx-").tempdir()?;
        // A free port: bind, read it, let go (nginx binds it a moment later).
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let conf = prefix.path().join("nginx.conf");
        std::fs::write(&conf, config(prefix.path(), root, addr, workers))?;
        let log = prefix.path().join("error.log");
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(prefix.path())
            .arg("-e")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!("starting {} (apt-get install nginx, or pass --media-nginx-bin)", bin.display())
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        // The master listens before it forks the workers: wait for both, so that [`Nginx::pids`]
        // names every process that will serve.
        while TcpStream::connect(addr).is_err() || children(child.id()).len() < workers {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("nginx exited ({status}): {log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("nginx did not listen on {addr} with {workers} workers within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nginx { child, addr, _prefix: prefix })
    }

    /// The master's and every worker's process id (their CPU is summed).
    pub fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = vec![master];
        pids.extend(children(master));
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: a fast shutdown that takes the workers with it (SIGKILL would orphan them).
        // SAFETY: signalling our own child by its id.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration: static files from `root`, `sendfile` on, no access log, keep-alive
/// without a request limit (the clients keep one connection each for the whole run).
/// `tcp_nopush` (Debian's default file has it on) stays off: on loopback it held answers back
/// for tens of milliseconds (p99 62 ms and 15× fewer requests/s with 64 KiB ranges), and the
/// benchmark compares Chorus with nginx at its best.
fn config(prefix: &Path, root: &Path, addr: SocketAddr, workers: usize) -> String {
    let p = prefix.display();
    // Started as root, nginx would switch its workers to `nobody`, who cannot read a private
    // temporary directory.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 { "user root;\n" } else { "" };
    format!(
        "{user}daemon off;
worker_processes {workers};
pid {p}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen {addr};
        root {root};
    }}
}}
",
        root = root.display()
    )
}

/// Processes whose parent is `pid` (from `/proc/*/stat`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let child: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        // Field 4 (ppid), counted after the command name's closing parenthesis.
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == pid).then_some(child)
    })
    .collect()
}

/// "nginx 1.22.1", from `nginx -v` (which prints to stderr).
pub fn version(bin: &PathBuf) -> Option<String> {
    let out = Command::new(bin).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let v = text.trim().strip_prefix("nginx version: nginx/")?;
    Some(format!("nginx {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_serves_the_root_with_sendfile() {
        let c = config(Path::new("/p"), Path::new("/data"), "127.0.0.1:8080".parse().unwrap(), 2);
        assert!(c.contains("worker_processes 2;"));
        assert!(c.contains("sendfile on;"));
        assert!(c.contains("listen 127.0.0.1:8080;"));
        assert!(c.contains("root /data;"));
        assert!(c.contains("daemon off;"));
    }
}
