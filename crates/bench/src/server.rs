//! The Chorus server under test: the real `chorus` binary started as a child process on a
//! fresh data directory, and the `/backend` admin API to create users (with tokens) and groups
//! quickly, without a code login per user.
//!
//! [`Nodes`] starts several of them as one deployment: a fresh PostgreSQL database
//! ([`PgDatabase`]) and, for more than one node, cluster mode over NATS (docs/deployment.md,
//! "Cluster mode").

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

/// The admin token the benchmark gives the server.
pub const ADMIN_TOKEN: &str = "chorus-bench-admin-token";

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The `chorus` binary.
    pub bin: PathBuf,
    /// HTTP listen address (port 0: any).
    pub listen: SocketAddr,
    /// `CHORUS_*` settings beyond the benchmark's defaults.
    pub env: Vec<(String, String)>,
    /// A PostgreSQL URL instead of the embedded SQLite.
    pub database: Option<String>,
}

impl ServerOptions {
    /// A server from `bin` on 127.0.0.1, any port, SQLite.
    pub fn new(bin: PathBuf) -> ServerOptions {
        ServerOptions { bin, listen: "127.0.0.1:0".parse().expect("address"), env: Vec::new(), database: None }
    }

    /// Adds a `CHORUS_*` setting.
    pub fn env(mut self, key: &str, value: impl ToString) -> ServerOptions {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// A running server; killed when dropped.
pub struct ChorusServer {
    child: Child,
    /// `http://host:port`.
    pub base: String,
    /// Its data directory, removed with the server.
    _data: tempfile::TempDir,
    http: reqwest::Client,
}

/// A user created through `/backend` `useradd`.
#[derive(Debug, Clone)]
pub struct BenchUser {
    /// Address (what members see).
    pub address: String,
    /// Access token.
    pub token: String,
}

impl ChorusServer {
    /// Starts the server and waits until it listens. Benchmark defaults: warnings-only log,
    /// rate limits out of the way (`sends_per_second` 1,000,000, burst 1,000,000), no cap on
    /// sessions per user or connections, presence grace 1 s; `options.env` overrides them.
    pub fn start(options: &ServerOptions) -> anyhow::Result<ChorusServer> {
        let data = tempfile::Builder::new().prefix("chorus-bench-").tempdir()?;
        let mut cmd = Command::new(&options.bin);
        cmd.arg("serve").arg("--listen").arg(options.listen.to_string()).arg("--data").arg(data.path());
        if let Some(db) = &options.database {
            cmd.arg("--database").arg(db);
        }
        cmd.env_remove("CHORUS_CONFIG")
            .env("CHORUS_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CHORUS_LOG", std::env::var("CHORUS_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .env("CHORUS_SENDS_PER_SECOND", "1000000")
            .env("CHORUS_SEND_BURST", "1000000")
            .env("CHORUS_CODE_REQUESTS_PER_IP", "1000000")
            .env("CHORUS_PRESENCE_GRACE_SECS", "1")
            // The idle scenario opens 50,000 connections, 50 per user.
            .env("CHORUS_MAX_SESSIONS_PER_USER", "1000000")
            .env("CHORUS_MAX_CONNECTIONS", "1000000")
            // The soak's participants start calls again and again for an hour.
            .env("CHORUS_CALLS_STARTED_PER_HOUR", "0")
            // Load, not abuse: the read budgets would pace the generators.
            .env("CHORUS_SESSION_FRAMES_PER_SECOND", "1000000")
            .env("CHORUS_SESSION_FRAME_BURST", "1000000")
            .env("CHORUS_SESSION_CALL_FRAMES_PER_SECOND", "1000000")
            .env("CHORUS_SESSION_CALL_FRAME_BURST", "1000000")
            .env("CHORUS_RTC_UDP_PORT", "0")
            .env("CHORUS_RTC_TCP_PORT", "0");
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "starting {} (build it with cargo build --release -p chorus, or pass --chorus-bin)",
                options.bin.display()
            )
        })?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Chorus listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let Ok(base) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            bail!("{} did not start within 60 s", options.bin.display());
        };
        Ok(ChorusServer { child, base, _data: data, http: reqwest::Client::new() })
    }

    /// Closes the keep-alive connections of the `/backend` calls made so far (the server holds
    /// one descriptor for each until its idle timeout), so its descriptor count is the clients'.
    pub fn close_admin_connections(&mut self) {
        self.http = reqwest::Client::new();
    }

    /// The server's data directory.
    pub fn data(&self) -> &std::path::Path {
        self._data.path()
    }

    /// The server's process id (for [`crate::proc`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An HTTP client of the Rust client library, authorised as `token`.
    pub fn client(&self, token: &str) -> chorus_client::Http {
        chorus_client::Http::new(&self.base).with_token(token)
    }

    /// How many nodes `GET /admin/nodes` lists: this one, and in cluster mode every live node
    /// it has heard a heartbeat from.
    pub async fn nodes_seen(&self) -> anyhow::Result<usize> {
        let list: Vec<Value> = self
            .http
            .get(format!("{}/admin/nodes", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(list.len())
    }

    /// The server's `GET /metrics` page (Prometheus text).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let r = self.http.get(format!("{}/metrics", self.base)).bearer_auth(ADMIN_TOKEN).send().await?;
        Ok(r.error_for_status()?.text().await?)
    }

    /// Calls `/backend` with a JSON body; fails unless the reply says `result: true`.
    pub async fn backend(&self, mut body: Value) -> anyhow::Result<Value> {
        body["token"] = json!(ADMIN_TOKEN);
        let reply: Value = self
            .http
            .post(format!("{}/backend", self.base))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if reply["result"] != json!(true) {
            bail!("/backend {} failed: {reply}", body["op"]);
        }
        Ok(reply)
    }

    /// Creates `n` users `<prefix>0…` with tokens, `parallel` requests at a time.
    pub async fn users(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<BenchUser>> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        stream::iter(0..n)
            .map(|i| async move {
                let address = format!("{prefix}{i}");
                let reply = self
                    .backend(json!({"op": "useradd", "user": {"address": address, "name": address, "token": {"expiry": 525600}}}))
                    .await?;
                let token = reply["user"]["token"].as_str().ok_or_else(|| anyhow!("useradd gave no token"))?.to_string();
                anyhow::Ok(BenchUser { address, token })
            })
            .buffered(32)
            .try_collect()
            .await
    }

    /// Creates a group with these members (every member may send, receive, publish, subscribe
    /// and list) and the given call flags; returns its gid.
    pub async fn group(&self, name: &str, members: &[BenchUser], callflags: Option<u32>) -> anyhow::Result<i64> {
        let mut group = json!({"name": name});
        if let Some(f) = callflags {
            group["callflags"] = json!(f);
        }
        let reply = self.backend(json!({"op": "groupadd", "group": group})).await?;
        let gid = reply["group"]["gid"].as_i64().ok_or_else(|| anyhow!("groupadd gave no gid: {reply}"))?;
        for chunk in members.chunks(5000) {
            let m: Vec<&str> = chunk.iter().map(|u| u.address.as_str()).collect();
            self.backend(json!({"op": "groupeditmembers", "group": {"gid": gid, "m": m}})).await?;
        }
        Ok(gid)
    }
}

impl Drop for ChorusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pin key every node of a benchmark cluster shares (nodes of one store must).
const PIN_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Chorus nodes on one fresh PostgreSQL database, started one after the other (the first
/// creates the schema): one node alone, a plain single-node deployment, or several in cluster
/// mode, each with its `node_id` (`node1`, `node2`, …), its own HTTP and media ports, and
/// NATS under a subject prefix of this run's (`nats_prefix`), so runs sharing a NATS server
/// do not hear each other. Dropping it kills the nodes, then drops the database.
pub struct Nodes {
    /// The nodes, `node1` first. (Fields drop in order: the nodes before their database.)
    pub servers: Vec<ChorusServer>,
    _db: PgDatabase,
}

impl Nodes {
    /// Starts `n` nodes from `options` on a fresh database of the PostgreSQL server at `pg`
    /// (`postgres://user@host:port`); more than one needs `nats` (`nats://host:port`). Returns
    /// once every node lists all `n` among its live nodes.
    pub async fn start(options: &ServerOptions, n: usize, pg: &str, nats: Option<&str>) -> anyhow::Result<Nodes> {
        let db = PgDatabase::create(pg)?;
        let prefix = format!("chorus_bench_{}_{:08x}", std::process::id(), rand::random::<u32>());
        let mut servers = Vec::with_capacity(n);
        for i in 1..=n {
            let mut o = ServerOptions { database: Some(db.url()), ..options.clone() };
            if n > 1 {
                let nats = nats.ok_or_else(|| anyhow!("{n} nodes need a NATS server"))?;
                o = o
                    .env("CHORUS_NATS", nats)
                    .env("CHORUS_NATS_PREFIX", &prefix)
                    .env("CHORUS_NODE_ID", format!("node{i}"))
                    .env("CHORUS_PIN_KEY", PIN_KEY);
            }
            servers.push(ChorusServer::start(&o).with_context(|| format!("starting node {i} of {n}"))?);
        }
        let nodes = Nodes { servers, _db: db };
        nodes.wait_joined().await?;
        Ok(nodes)
    }

    /// Waits (up to 15 s: heartbeats come every second) until every node has heard every other.
    async fn wait_joined(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        for (i, s) in self.servers.iter().enumerate() {
            loop {
                let seen = s.nodes_seen().await?;
                if seen >= self.servers.len() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    bail!("node{} sees {seen} of {} nodes after 15 s (is NATS reachable?)", i + 1, self.servers.len());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

/// A PostgreSQL database of one run's own, `chorus_bench_<pid>_<random>`, created through
/// `psql` (PostgreSQL's client) connected to the server's database `test`, and dropped
/// (`WITH (FORCE)`) when this is.
pub struct PgDatabase {
    base: String,
    name: String,
}

impl PgDatabase {
    /// Creates it on the server at `base` (`postgres://user@host:port`).
    pub fn create(base: &str) -> anyhow::Result<PgDatabase> {
        let base = base.trim_end_matches('/').to_string();
        let name = format!("chorus_bench_{}_{:08x}", std::process::id(), rand::random::<u32>());
        psql(&base, &format!("CREATE DATABASE {name}"))?;
        Ok(PgDatabase { base, name })
    }

    /// Its URL, for `--database`.
    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(&self.base, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            eprintln!("chorus-bench: could not drop the database {}: {e:#}", self.name);
        }
    }
}

/// Runs one SQL statement with `psql` on the database `test` of the server at `base`.
fn psql(base: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &format!("{base}/test"), "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("running psql (PostgreSQL's client, needed for the PostgreSQL scenarios)")?;
    if !out.status.success() {
        bail!("psql on {base}/test: {sql}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
