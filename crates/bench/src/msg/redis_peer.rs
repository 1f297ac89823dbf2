//! The fan-out pattern on Redis pub/sub, for comparison: M connections SUBSCRIBE to one
//! channel (unique per run), one connection PUBLISHes the same payload (paced, then
//! pipelined with the same number of commands in flight as Chorus's sender), and the
//! subscribers measure deliveries and send → deliver latency exactly as the Chorus receivers
//! do. Redis's CPU and RSS come from `/proc/<pid>` of the `redis-server` that answers (its pid
//! from `INFO server`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::stream::{self, FuturesOrdered, StreamExt};
use futures_util::FutureExt;

use super::fanout::{check, paced_phase, saturation_phase, warmup_phase, with_status, FanoutRun, MAX_LAG};
use super::hist::Hist;
use super::wire::{self, Phase, PhaseOut};
use super::{probe, Counters, MsgArgs, TAGS};
use crate::Common;

/// `redis_version` and `process_id` from `INFO server`.
async fn server_info(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<(String, u32)> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let field = |k: &str| {
        info.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':'))).map(|v| v.trim().to_string())
    };
    let version = field("redis_version").unwrap_or_else(|| "?".into());
    let pid: u32 =
        field("process_id").and_then(|p| p.parse().ok()).ok_or_else(|| anyhow!("INFO gave no process_id"))?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !comm.contains("redis") {
        bail!("Redis says its pid is {pid}, but /proc/{pid}/comm is {comm:?} (another pid namespace?)");
    }
    Ok((version, pid))
}

/// Runs the paced and saturation runs on Redis; returns `("Redis <version>", runs)`.
pub async fn fanout(args: &MsgArgs, common: &Common) -> anyhow::Result<(String, FanoutRun)> {
    let m = args.fanout_members;
    let client = redis::Client::open(args.msg_redis.as_str())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to Redis at {} (pass --msg-redis none to skip it)", args.msg_redis))?;
    let (version, pid) = server_info(&mut conn).await?;
    let channel = format!("chorus-bench-{}-{}", std::process::id(), wire::now_us());
    let counters = Arc::new(Counters::default());
    let t = Instant::now();
    let subs: Vec<_> = stream::iter(0..m)
        .map(|_| {
            let (client, channel) = (client.clone(), channel.clone());
            async move {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                anyhow::Ok(ps)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut receivers = Vec::with_capacity(m);
    for ps in subs {
        let ps = ps.context("subscribing")?;
        receivers.push(tokio::spawn(redis_receiver(ps.into_on_message(), counters.clone())));
    }
    let connect_secs = t.elapsed().as_secs_f64();
    let answered = Arc::new(AtomicU64::new(0));
    let hold_back = {
        let (c, a) = (counters.clone(), answered.clone());
        move || a.load(Ordering::Relaxed).saturating_sub(c.delivered.load(Ordering::Relaxed) / m as u64) > MAX_LAG
    };
    let mut publisher = Publisher { conn, channel, members: m, next: 0, answered: answered.clone() };
    let mut out = FanoutRun { connect_secs, ..Default::default() };

    let w = publisher.run(&warmup_phase(args, Instant::now()), &hold_back).await?;
    check(&w, answered.load(Ordering::Relaxed) * m as u64, &counters, "Redis warm-up").await?;
    for (name, sat) in [("paced", false), ("saturation", true)] {
        let now = Instant::now();
        let phase = if sat { saturation_phase(args, now) } else { paced_phase(args, now) };
        counters.set_window(phase.window.0, phase.window.1);
        let before = counters.delivered.load(Ordering::Relaxed);
        let p = probe(
            vec![pid],
            phase.window.0,
            phase.window.1,
            counters.clone(),
            vec![answered.clone()],
            sat && args.msg_perf,
        );
        let o = with_status(
            &common.progress,
            &format!("Redis {name}"),
            &counters,
            &answered,
            phase.until,
            publisher.run(&phase, &hold_back),
        )
        .await?;
        let delivered =
            check(&o, answered.load(Ordering::Relaxed) * m as u64, &counters, &format!("Redis {name}")).await? - before;
        out.record(&common.progress, &format!("Redis {name}"), sat, o, delivered, m, p.await??);
    }
    counters.stop_all();
    let mut hists = Vec::with_capacity(m);
    for r in receivers {
        hists.push(r.await?);
    }
    out.take_latencies(&hists);
    Ok((format!("Redis {version}"), out))
}

/// A subscriber: counts and times every message until told to stop.
async fn redis_receiver(mut msgs: redis::aio::PubSubStream, c: Arc<Counters>) -> Vec<Hist> {
    let mut hists = vec![Hist::new(); TAGS];
    let mut stop = c.stop.subscribe();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let m = tokio::select! {
            m = msgs.next() => m,
            _ = stop.changed() => continue,
        };
        let Some(m) = m else {
            c.closed.fetch_add(1, Ordering::Relaxed);
            c.problem("a Redis subscriber's connection ended".into());
            break;
        };
        let now = wire::now_us();
        match wire::parse_payload(m.get_payload_bytes()) {
            Some((tag, _, us)) => {
                c.delivered.fetch_add(1, Ordering::Relaxed);
                if c.in_window(us) {
                    if let Some(h) = hists.get_mut(usize::from(tag)) {
                        h.record(now.saturating_sub(us));
                    }
                }
            }
            None => {
                c.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    hists
}

/// The publishing connection (multiplexed: concurrent commands are pipelined on it).
struct Publisher {
    conn: redis::aio::MultiplexedConnection,
    channel: String,
    members: usize,
    next: u64,
    answered: Arc<AtomicU64>,
}

type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, redis::RedisResult<i64>)> + Send>>;

impl Publisher {
    /// The same phase as [`wire::Sender::run`]: paced or as fast as `in_flight` PUBLISHes
    /// waiting for their reply allow; a reply is the analogue of `sent`.
    async fn run(&mut self, phase: &Phase, hold_back: impl Fn() -> bool) -> anyhow::Result<PhaseOut> {
        let mut out = PhaseOut::default();
        let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
        let first = self.next;
        let start = Instant::now();
        let mut n = first;
        let mut stopped = false;
        loop {
            if !stopped && pending.len() < phase.in_flight.max(1) {
                let now = Instant::now();
                let due = phase.rate.map(|r| start + Duration::from_secs_f64((n - first) as f64 / r));
                if now >= phase.until || due.is_some_and(|d| d >= phase.until) {
                    stopped = true;
                } else if due.is_none_or(|d| d <= now) && !hold_back() {
                    n += 1;
                    let us = wire::now_us();
                    let text = wire::payload(phase.tag, n, us, phase.payload);
                    let mut conn = self.conn.clone();
                    let channel = self.channel.clone();
                    pending.push_back(
                        async move {
                            let r = redis::cmd("PUBLISH").arg(&channel).arg(text).query_async::<i64>(&mut conn).await;
                            (us, r)
                        }
                        .boxed(),
                    );
                    continue;
                }
            }
            if stopped && pending.is_empty() {
                break;
            }
            let wait = if stopped || pending.len() >= phase.in_flight.max(1) {
                Duration::from_secs(30)
            } else {
                phase
                    .rate
                    .map(|r| {
                        (start + Duration::from_secs_f64((n - first) as f64 / r))
                            .saturating_duration_since(Instant::now())
                    })
                    .unwrap_or(Duration::from_millis(1))
                    .max(Duration::from_micros(200))
            };
            tokio::select! {
                Some((us, r)) = pending.next(), if !pending.is_empty() => {
                    let now = Instant::now();
                    match r {
                        Ok(receivers) if receivers as usize == self.members => {
                            out.answered += 1;
                            self.answered.fetch_add(1, Ordering::Relaxed);
                            if now >= phase.window.0 && now < phase.window.1 {
                                out.answered_in_window += 1;
                                out.ack_latency.record(wire::now_us().saturating_sub(us));
                            }
                        }
                        Ok(receivers) => {
                            // Delivered, but not to everyone: the check after the phase fails.
                            out.answered += 1;
                            self.answered.fetch_add(1, Ordering::Relaxed);
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| format!("PUBLISH reached {receivers} of {} subscribers", self.members));
                        }
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| format!("PUBLISH failed: {e}"));
                        }
                    }
                }
                () = tokio::time::sleep(wait) => {
                    if stopped || pending.len() >= phase.in_flight.max(1) {
                        bail!("no PUBLISH reply for 30 s");
                    }
                }
            }
        }
        self.next = n;
        out.sent = n - first;
        Ok(out)
    }
}
