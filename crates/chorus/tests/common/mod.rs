//! Test harness: runs the real `chorus serve` binary on a free loopback port,
//! on a fresh SQLite data dir or a fresh PostgreSQL database, and logs users in
//! with the codes it writes to its outbox.
#![allow(dead_code)]

pub mod calls;
pub mod cluster;
pub mod link;
pub mod live;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus_client::{Connection, Handshake, Http};
use chorus_proto::rest::LoginSession;
use sqlx::Connection as _;

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$name(Backend)` once per backend, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::common::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name($crate::common::Backend::Postgres).await }
        }
    )*};
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// PostgreSQL server for tests (trust auth); override with CHORUS_TEST_PG.
fn pg_base() -> String {
    std::env::var("CHORUS_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Where a server keeps its data: a fresh temporary data directory and, for PostgreSQL, a fresh
/// database (dropped with the store). A test may fill it before a server starts on it
/// ([`Server::start_on`]) and start another server on it after one stops ([`Server::stop`]).
pub struct Store {
    pub backend: Backend,
    pub data: tempfile::TempDir,
    pg_db: Option<String>,
    /// Whether the PostgreSQL database is dropped with this store (not for another node's
    /// view of it, [`Store::another_node`]).
    owns_db: bool,
    /// The IP a server on this store listens on (HTTP and media, port 0): loopback unless a
    /// test needs it reachable from a network namespace of its own.
    pub listen: std::net::IpAddr,
}

impl Store {
    pub async fn new(backend: Backend) -> Store {
        let data = tempfile::tempdir().expect("temp dir");
        let mut pg_db = None;
        if backend == Backend::Postgres {
            let name = format!("chorus_t_{}_{}", std::process::id(), rand_suffix());
            let mut admin = sqlx::PgConnection::connect(&format!("{}/test", pg_base()))
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (database test) is required");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
            pg_db = Some(name);
        }
        Store { backend, data, pg_db, owns_db: true, listen: std::net::Ipv4Addr::LOCALHOST.into() }
    }

    /// Another node's store on this PostgreSQL database (cluster mode): a data directory of
    /// its own, the same database, which is dropped with this store, not with that one.
    pub fn another_node(&self) -> Store {
        assert_eq!(self.backend, Backend::Postgres, "nodes of a cluster share a PostgreSQL database");
        Store {
            backend: self.backend,
            data: tempfile::tempdir().expect("temp dir"),
            pg_db: self.pg_db.clone(),
            owns_db: false,
            listen: self.listen,
        }
    }

    /// The SQLite database file (SQLite stores only).
    pub fn sqlite_file(&self) -> PathBuf {
        self.data.path().join("chorus.db")
    }

    /// The URL of the store's database, for reading or preparing it directly with sqlx.
    pub fn url(&self) -> String {
        match &self.pg_db {
            Some(name) => format!("{}/{}", pg_base(), name),
            None => format!("sqlite://{}?mode=rwc", self.sqlite_file().display()),
        }
    }

    /// The `chorus serve` command on this store with the test settings and `env`.
    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(std::net::SocketAddr::new(self.listen, 0).to_string())
            .arg("--data")
            .arg(self.data.path());
        if self.pg_db.is_some() {
            cmd.arg("--database").arg(self.url());
        }
        cmd.env("CHORUS_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CHORUS_CODE_REQUESTS_PER_IP", "100000")
            .env("CHORUS_PIN_FAILURES_PER_IP", "100000")
            .env("CHORUS_PRESENCE_GRACE_SECS", "1")
            .env("CHORUS_RTC_UDP_PORT", "0")
            .env("CHORUS_RTC_TCP_PORT", "0")
            .env("CHORUS_LOG", "warn")
            .env_remove("CHORUS_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // CHORUS_TEST_LOG=debug shows the server's log while debugging a test.
        if let Ok(filter) = std::env::var("CHORUS_TEST_LOG") {
            cmd.env("CHORUS_LOG", filter);
        }
        cmd
    }

    /// Runs a server on this store that must refuse to start: its exit status was a failure
    /// within 30 s. Returns what it wrote to stderr.
    pub fn start_fails(&self, env: &[(&str, &str)]) -> String {
        use std::io::Read;
        let mut cmd = self.command(env);
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn chorus");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for chorus") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server was expected to refuse to start, and still runs after 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        child.stderr.take().expect("piped stderr").read_to_string(&mut err).expect("read stderr");
        assert!(!status.success(), "the server exited successfully: {err}");
        err
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(db) = self.pg_db.take().filter(|_| self.owns_db) {
            let url = format!("{}/test", pg_base());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    /// The UDP address call media goes to.
    pub media_udp: std::net::SocketAddr,
    /// The ICE-TCP address, when ICE-TCP is on.
    pub media_tcp: Option<std::net::SocketAddr>,
    pub data: tempfile::TempDir,
    store: Option<Store>,
    /// The extra environment it was started with (a restart uses it again).
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server with test-friendly rate limits.
    pub async fn start(backend: Backend) -> Server {
        Self::start_with(backend, &[]).await
    }

    /// Starts a server with extra `CHORUS_*` environment settings.
    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Server {
        Self::start_on(Store::new(backend).await, env).await
    }

    /// Starts a server on `store` (filled beforehand, or left by a server that stopped).
    pub async fn start_on(mut store: Store, env: &[(&str, &str)]) -> Server {
        let mut cmd = store.command(env);
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn chorus");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut media, mut tcp) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(m) = line.strip_prefix("Chorus media on udp ") {
                    media = m.split_whitespace().next().and_then(|a| a.parse().ok());
                    tcp = m.split(" and tcp ").nth(1).and_then(|a| a.trim().parse().ok());
                }
                if let Some(url) = line.strip_prefix("Chorus listening on ") {
                    let _ = tx.send((url.trim().to_string(), media, tcp));
                }
            }
        });
        let (base, media_udp, media_tcp) =
            rx.recv_timeout(Duration::from_secs(60)).expect("server did not start within 60 s");
        let media_udp = media_udp.expect("the server prints its media address");
        // The data directory is the store's; the server keeps it as `data` for the tests' use.
        let data = std::mem::replace(&mut store.data, tempfile::tempdir().expect("temp dir"));
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let server = Server { child, base, media_udp, media_tcp, data, store: Some(store), env };
        let health = reqwest::get(format!("{}/healthz", server.base)).await.expect("healthz");
        assert_eq!(health.status(), 200);
        server
    }

    /// The server's process id (to read its `/proc` figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http(&self) -> Http {
        Http::new(&self.base)
    }

    pub fn outbox(&self) -> PathBuf {
        self.data.path().join("outbox")
    }

    /// The newest login code mailed (or texted) to `to`.
    pub fn code_for(&self, to: &str) -> String {
        let mut newest: Option<(String, String)> = None;
        for e in std::fs::read_dir(self.outbox()).expect("outbox exists").flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let body = std::fs::read_to_string(e.path()).unwrap_or_default();
            let addressed = body.lines().any(|l| l.starts_with("To:") && l.to_lowercase().contains(&to.to_lowercase()));
            if !addressed {
                continue;
            }
            let code = body.split("login code is ").nth(1).map(|r| r.chars().take(6).collect::<String>());
            let Some(code) = code else { continue };
            if newest.as_ref().is_none_or(|(n, _)| name > *n) {
                newest = Some((name, code));
            }
        }
        newest.unwrap_or_else(|| panic!("no code for {to} in the outbox")).1
    }

    /// Logs in by email through the outbox; returns the session and an authorised client.
    pub async fn login(&self, email: &str, name: &str) -> (LoginSession, Http) {
        let http = self.http();
        http.request_code(email).await.expect("request code");
        let code = self.code_for(email);
        let sess = http.verify(email, &code, Some(name)).await.expect("verify");
        let authed = http.with_token(&sess.token);
        (sess, authed)
    }

    /// Calls the `/backend` API with a JSON body; returns the JSON reply.
    pub async fn backend(&self, body: serde_json::Value) -> serde_json::Value {
        reqwest::Client::new()
            .post(format!("{}/backend", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST /backend")
            .json()
            .await
            .expect("JSON reply")
    }

    /// Opens a messaging connection.
    pub async fn connect(&self, http: &Http) -> (Connection, Handshake) {
        Connection::connect(http, None).await.expect("ws connect")
    }
}

fn rand_suffix() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("{t}_{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

impl Server {
    /// The URL of the server's database, to read it directly with sqlx.
    pub fn db_url(&self) -> String {
        match self.store.as_ref().and_then(|s| s.pg_db.as_ref()) {
            Some(name) => format!("{}/{}", pg_base(), name),
            None => format!("sqlite://{}?mode=ro", self.data.path().join("chorus.db").display()),
        }
    }

    /// Stops the server (SIGKILL: what a crash or a power cut leaves) and hands back its store.
    /// Kills the server with SIGKILL (no shutdown of any kind: what is not committed is lost,
    /// as in a crash of the process) and starts it again on the same data directory and
    /// database, with the same settings. It listens on a new port: `base` changes.
    pub async fn kill_and_restart(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the killed server");
        let mut store = self.store.take().expect("a running server has its store");
        store.data = std::mem::replace(&mut self.data, tempfile::tempdir().expect("temp dir"));
        let env: Vec<(String, String)> = std::mem::take(&mut self.env);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // The old value's drop finds its process reaped and no store left.
        *self = Server::start_on(store, &env).await;
    }

    pub fn stop(mut self) -> Store {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut store = self.store.take().expect("a running server has its store");
        store.data = std::mem::replace(&mut self.data, tempfile::tempdir().expect("temp dir"));
        store
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Then the store (a PostgreSQL database is dropped).
        self.store.take();
    }
}

/// One second: long enough for anything on loopback.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to watch for frames that must NOT arrive.
pub const QUIET: Duration = Duration::from_millis(600);

/// Runs the call tests of one test binary one at a time. Each runs a server and several media
/// clients with real-time pacing; several at once on a 2-core machine starve each other (the
/// bandwidth estimator reads the resulting delays as congestion) and turn media assertions into
/// noise. Hold the returned guard for the test's duration.
pub fn call_slot() -> CallSlot {
    use std::sync::{Condvar, Mutex};
    static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
    const MAX: usize = 1;
    let mut busy = SLOTS.0.lock().unwrap_or_else(|e| e.into_inner());
    while *busy >= MAX {
        busy = SLOTS.1.wait(busy).unwrap_or_else(|e| e.into_inner());
    }
    *busy += 1;
    CallSlot(&SLOTS)
}

/// A running call test's slot; freed on drop.
pub struct CallSlot(&'static (std::sync::Mutex<usize>, std::sync::Condvar));

impl Drop for CallSlot {
    fn drop(&mut self) {
        let mut busy = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        *busy -= 1;
        self.0 .1.notify_one();
    }
}
