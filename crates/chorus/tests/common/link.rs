//! A bad network between the test's host namespace and a network namespace the test creates,
//! for `tests/bad_networks.rs`.
//!
//! The namespace (`chorus-t-PID-N`) is joined to the host's by a point-to-point link made of two
//! TUN devices, one on each side, with addresses from 198.18.0.0/15 (RFC 2544's benchmark
//! range): [`Link::host`] (`198.18.K.1`, in the host's namespace, where the server listens) and
//! [`Link::client`] (`198.18.K.2`, in the test's namespace). Every IP packet between the two —
//! the clients' UDP media and their TCP WebSocket alike — is read from one TUN device by this
//! process and written to the other after the link's [`Conditions`] for that direction: random
//! loss, a delay with jitter (each packet drawn on its own, so jitter reorders as `tc netem`'s
//! does), a rate cap with a tail-drop queue, or no link at all.
//!
//! Why not `tc netem` on a veth: the kernel of the machine this suite was written and measured on
//! (a 2-core VM, Linux 6.18) is built without `sch_netem` (`CONFIG_NET_SCH_NETEM` unset, no
//! modules; of the qdiscs only fifo, htb, tbf and ingress/clsact exist), and a test that skips
//! itself where it cannot run proves nothing. The emulator does netem's job on any Linux with TUN
//! and network namespaces (root only), and the test drives it directly.
//!
//! [`NsRuntime`] runs futures on a thread inside the namespace (a current-thread tokio runtime),
//! so the sockets a client opens there — its WebSocket and its UDP media sockets — are the
//! namespace's and reach the server only across the link.
//!
//! Needs root; [`Link::new`] panics with a message that says so when it cannot build the link.

use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chorus_netns::{Namespace, Tun};

/// What one direction of the link does to packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// Share of packets dropped at random, 0–1.
    pub loss: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Each packet's delay is drawn uniformly from `delay ± jitter`.
    pub jitter: Duration,
    /// Rate cap, kbit/s; `None`: no cap.
    pub rate_kbps: Option<u32>,
    /// Most queueing delay the rate cap holds before it drops (a bottleneck's buffer).
    pub queue: Duration,
    /// Nothing passes (a dead network).
    pub down: bool,
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_kbps: None,
            queue: Duration::from_millis(300),
            down: false,
        }
    }
}

/// Which way packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Host (server) to namespace (client): the client's downlink.
    Down,
    /// Namespace (client) to host (server): the client's uplink.
    Up,
}

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct Counters {
    pub packets: AtomicU64,
    pub dropped_loss: AtomicU64,
    pub dropped_queue: AtomicU64,
    pub dropped_down: AtomicU64,
}

struct Pipe {
    conditions: Mutex<Conditions>,
    counters: Counters,
}

/// The namespace, its link to the host and the threads that carry the packets.
pub struct Link {
    /// The host side's address (listen here).
    pub host: Ipv4Addr,
    /// The namespace side's address (bind the namespaced client here).
    pub client: Ipv4Addr,
    pipes: [Arc<Pipe>; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    // Dropped last: the TUN devices go with the threads' descriptors, then the namespace.
    ns: Arc<Namespace>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn fail(what: &str, e: anyhow::Error) -> ! {
    panic!(
        "bad-network tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN), network namespaces and /dev/net/tun; \
         {what} failed: {e:#}"
    )
}

impl Link {
    /// Builds the namespace and the link, with no impairment yet.
    pub fn new() -> Link {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A /24 of 198.18.0.0/15 per link, spread by process so that test binaries running at
        // the same time do not collide (a collision fails loudly at `ip addr add`).
        let k = ((pid.wrapping_mul(7) + n) % 200 + 20) as u8;
        let host = Ipv4Addr::new(198, 18, k, 1);
        let client = Ipv4Addr::new(198, 18, k, 2);
        let ns = Namespace::create(&format!("chorus-t-{pid}-{n}")).unwrap_or_else(|e| fail("ip netns add", e));
        let ns = Arc::new(ns);

        let host_name = format!("cht{}x{n}", pid % 100_000);
        let host_tun = Tun::open(&host_name).unwrap_or_else(|e| fail("opening a TUN device", e));
        let ns2 = ns.clone();
        let client_tun = std::thread::spawn(move || -> anyhow::Result<Tun> {
            ns2.enter()?;
            Tun::open("cht0")
        })
        .join()
        .expect("thread")
        .unwrap_or_else(|e| fail("opening a TUN device in the namespace", e));

        let (h, c) = (host.to_string(), client.to_string());
        let setup = || -> anyhow::Result<()> {
            chorus_netns::ip(&["addr", "add", &h, "peer", &c, "dev", &host_name])?;
            chorus_netns::ip(&["link", "set", &host_name, "up"])?;
            ns.ip(&["addr", "add", &c, "peer", &h, "dev", "cht0"])?;
            ns.ip(&["link", "set", "cht0", "up"])?;
            Ok(())
        };
        setup().unwrap_or_else(|e| fail("configuring the link", e));

        let pipes = [
            Arc::new(Pipe { conditions: Mutex::new(Conditions::default()), counters: Counters::default() }),
            Arc::new(Pipe { conditions: Mutex::new(Conditions::default()), counters: Counters::default() }),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let host_tun = Arc::new(host_tun);
        let client_tun = Arc::new(client_tun);
        let mut threads = Vec::new();
        for (dir, from, to, seed) in [
            (Dir::Down, host_tun.clone(), client_tun.clone(), 0x9e37_79b9_7f4a_7c15u64),
            (Dir::Up, client_tun, host_tun, 0xd1b5_4a32_d192_ed03u64),
        ] {
            let pipe = pipes[dir as usize].clone();
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("link-{dir:?}"))
                    .spawn(move || pump(&from, &to, &pipe, &stop, seed))
                    .expect("spawn a link thread"),
            );
        }
        Link { host, client, pipes, stop, threads, ns }
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        &self.ns.name
    }

    /// Sets what direction `dir` does to packets from now on (packets already in flight keep
    /// their fate).
    pub fn set(&self, dir: Dir, c: Conditions) {
        *self.pipes[dir as usize].conditions.lock().unwrap() = c;
    }

    /// Sets both directions.
    pub fn set_both(&self, c: Conditions) {
        self.set(Dir::Down, c);
        self.set(Dir::Up, c);
    }

    /// Cuts both directions (`true`) or brings them back with the conditions they had.
    pub fn set_down(&self, down: bool) {
        for p in &self.pipes {
            p.conditions.lock().unwrap().down = down;
        }
    }

    /// Counters of direction `dir`.
    pub fn counters(&self, dir: Dir) -> &Counters {
        &self.pipes[dir as usize].counters
    }

    /// A runtime inside the namespace.
    pub fn runtime(&self) -> NsRuntime {
        NsRuntime::new(self.ns.clone())
    }

    /// The client side's address as an [`IpAddr`].
    pub fn client_ip(&self) -> IpAddr {
        self.client.into()
    }

    /// The host side's address as an [`IpAddr`].
    pub fn host_ip(&self) -> IpAddr {
        self.host.into()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A packet waiting for its departure time (earliest first, then in arrival order).
struct Due {
    at: Instant,
    seq: u64,
    packet: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: reverse for earliest first.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// xorshift64*: reproducible loss and jitter from a fixed seed per direction.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Carries packets from `from` to `to` under the pipe's conditions until `stop`.
fn pump(from: &Tun, to: &Tun, pipe: &Pipe, stop: &AtomicBool, seed: u64) {
    let mut rng = Rng(seed);
    let mut queue: BinaryHeap<Due> = BinaryHeap::new();
    // When the rate cap's transmitter is next free.
    let mut busy_until = Instant::now();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|d| d.at <= now) {
            let d = queue.pop().expect("peeked");
            let _ = to.send(&d.packet);
        }
        let wait = queue.peek().map_or(Duration::from_millis(20), |d| d.at.saturating_duration_since(now));
        // poll(2) counts whole milliseconds: round up so a due packet is not spun on.
        let wait = wait.max(Duration::from_millis(1)).min(Duration::from_millis(20));
        let n = match from.recv(&mut buf, wait) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let now = Instant::now();
        let c = *pipe.conditions.lock().unwrap();
        let counters = &pipe.counters;
        counters.packets.fetch_add(1, Ordering::Relaxed);
        if c.down {
            counters.dropped_down.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if c.loss > 0.0 && rng.next_f64() < c.loss {
            counters.dropped_loss.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut at = now;
        if let Some(kbps) = c.rate_kbps {
            let start = busy_until.max(now);
            let done = start + Duration::from_micros(n as u64 * 8 * 1000 / u64::from(kbps.max(1)));
            if done.saturating_duration_since(now) > c.queue {
                counters.dropped_queue.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            busy_until = done;
            at = done;
        }
        let spread = c.jitter.as_secs_f64() * (2.0 * rng.next_f64() - 1.0);
        let delay = (c.delay.as_secs_f64() + spread).max(0.0);
        at += Duration::from_secs_f64(delay);
        seq += 1;
        queue.push(Due { at, seq, packet: buf[..n].to_vec() });
    }
}

/// A tokio runtime on a thread inside a namespace: what it runs opens its sockets there.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _ns: Arc<Namespace>,
}

impl NsRuntime {
    fn new(ns: Arc<Namespace>) -> NsRuntime {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ns2 = ns.clone();
        let thread = std::thread::Builder::new()
            .name("netns-runtime".into())
            .spawn(move || {
                ns2.enter().unwrap_or_else(|e| fail("setns into the test's namespace", e));
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                tx.send(rt.handle().clone()).expect("hand the runtime's handle over");
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("spawn the namespace's runtime");
        let handle = rx.recv().expect("the namespace's runtime started");
        NsRuntime { handle, stop: Some(stop), thread: Some(thread), _ns: ns }
    }

    /// Runs `f` inside the namespace; await the result from anywhere.
    pub async fn run<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f).await.expect("a task in the namespace panicked")
    }

    /// Starts `f` inside the namespace without waiting for it.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
