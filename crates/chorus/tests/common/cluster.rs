//! Clusters for tests: several real `chorus serve` nodes on one fresh PostgreSQL database,
//! joined by NATS under a subject prefix of their own (so tests running at once do not hear
//! each other), and a NATS server a test owns (to kill and restart it).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus_client::Http;

use super::{Backend, Server, Store, ADMIN_TOKEN};

/// The NATS server the tests share; override with CHORUS_TEST_NATS.
pub fn shared_nats() -> String {
    std::env::var("CHORUS_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A pin key every node of a test cluster shares (nodes of one store must).
const PIN_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Nodes on one store. The nodes are dropped (killed) before the store (its database).
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub store: Store,
    pub prefix: String,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts `n` nodes (ids `node0`, `node1`, …) on a fresh PostgreSQL database and `nats`,
    /// one after the other, with extra `env`.
    pub async fn start(n: usize, nats: &str, env: &[(&str, &str)]) -> Cluster {
        Self::start_via(&vec![nats.to_string(); n], env).await
    }

    /// Starts a node per entry of `nats`, node `i` reaching NATS at `nats[i]` (the same NATS
    /// server, some through a [`DelayProxy`]).
    pub async fn start_via(nats: &[String], env: &[(&str, &str)]) -> Cluster {
        let store = Store::new(Backend::Postgres).await;
        let prefix = format!("t{}_{}", std::process::id(), super::rand_suffix());
        let mut all: Vec<(String, String)> =
            vec![("CHORUS_NATS_PREFIX".into(), prefix.clone()), ("CHORUS_PIN_KEY".into(), PIN_KEY.into())];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut c = Cluster { nodes: Vec::new(), store, prefix, env: all };
        for (i, url) in nats.iter().enumerate() {
            let node = c.start_node(i, url).await;
            c.nodes.push(node);
        }
        c
    }

    /// Starts node `i` (not yet in `nodes`) on NATS at `nats`.
    async fn start_node(&self, i: usize, nats: &str) -> Server {
        let id = format!("node{i}");
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("CHORUS_NODE_ID", &id));
        env.push(("CHORUS_NATS", nats));
        Server::start_on(self.store.another_node(), &env).await
    }

    /// `http`'s token on node `i`.
    pub fn on(&self, i: usize, http: &Http) -> Http {
        self.nodes[i].http().with_token(http.token().expect("an authorised client"))
    }

    /// `GET /admin/nodes` of node `i`.
    pub async fn admin_nodes(&self, i: usize) -> serde_json::Value {
        self.admin(i, "/admin/nodes").await
    }

    /// `GET path` of node `i` with the admin token.
    pub async fn admin(&self, i: usize, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.nodes[i].base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET /admin/…")
            .json()
            .await
            .expect("JSON")
    }

    /// Waits until every node lists all the nodes (each heard the others' heartbeats).
    pub async fn wait_joined(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for i in 0..self.nodes.len() {
            loop {
                let list = self.admin_nodes(i).await;
                if list.as_array().map_or(0, Vec::len) == self.nodes.len() {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "node{i} does not see every node: {list}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A `nats-server` a test owns, on a free loopback port (NATS_SERVER, default
/// /usr/sbin/nats-server): it can be killed and started again on the same port.
pub struct OwnNats {
    child: Option<Child>,
    pub port: u16,
}

impl OwnNats {
    pub fn start() -> OwnNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut n = OwnNats { child: None, port };
        n.restart();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of a server that holds back every byte, each way, for `delay`: a node
/// behind it hears the others, and is heard, that much later than they hear each other.
pub struct DelayProxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    pub async fn start(upstream: std::net::SocketAddr, delay: Duration) -> DelayProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(delayed(cr, sw, delay));
                tokio::spawn(delayed(sr, cw, delay));
            }
        });
        DelayProxy { port, task }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
async fn delayed(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

impl Cluster {
    /// Kills node `i` with SIGKILL (a crash: no goodbye on NATS); it stays in `nodes`, dead.
    pub fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.child.kill().expect("SIGKILL the node");
        n.child.wait().expect("reap the killed node");
    }

    /// Waits until node `i`'s `/admin/nodes` shows what `want` accepts; returns that list.
    pub async fn wait_nodes(
        &self,
        i: usize,
        what: &str,
        want: impl Fn(&[serde_json::Value]) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list = self.admin_nodes(i).await;
            if want(list.as_array().map(Vec::as_slice).unwrap_or_default()) {
                return list;
            }
            assert!(tokio::time::Instant::now() < deadline, "node{i} never showed {what}: {list}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Cluster {
    /// Sends node `i` SIGTERM and waits (at most 10 s) for it to exit; returns how it exited.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let n = &mut self.nodes[i];
        let pid = n.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = n.child.try_wait().expect("wait for the node") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "node{i} did not exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
