//! Idle sessions: N authenticated WebSocket connections that complete the handshake
//! (`hello` → `welcome` → `synced`) and then stay silent (the load generator answers the
//! server's pings, nothing else).
//!
//! Connections are opened in steps of `--idle-step` (256 handshakes at a time), each step
//! followed by a short pause and a reading of the server's RSS, which gives the plot of RSS
//! against connections. The figure is (RSS once all are connected and settled − RSS before
//! the first) / N. One process cannot open 50k connections to one address from one source
//! address (the ephemeral ports of a source address run out near 28k), so connection `i`
//! binds to `127.0.0.(2 + i / 10,000)`; the open-file limit is raised (soft and hard, when
//! privileged) for both ends. Users: one per `--idle-per-user` connections.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use serde_json::json;

use super::{raise_fd_limit_to, start_server, wire, MsgArgs};
use crate::proc;
use crate::report::{Better, Metric, Plot, Section, Series};
use crate::Common;

/// Connections per source address.
const PER_SOURCE: usize = 10_000;
/// Descriptors kept free beyond one per connection.
const FD_SPARE: u64 = 2000;
/// Handshakes at a time.
const CONCURRENCY: usize = 256;

/// The source address of connection `i`.
fn source(i: usize) -> IpAddr {
    let k = 2 + i / PER_SOURCE;
    IpAddr::V4(Ipv4Addr::new(127, 0, (k >> 8) as u8, (k & 0xff) as u8))
}

/// Runs the scenario.
pub async fn run(args: &MsgArgs, common: &Common) -> anyhow::Result<Section> {
    let asked = args.idle_connections.max(1);
    let per_user = args.idle_per_user.max(1);
    // Both ends hold one descriptor per connection; the server needs some more of its own.
    let fds = raise_fd_limit_to(asked as u64 + FD_SPARE);
    let n = asked.min(fds.saturating_sub(FD_SPARE) as usize);
    if n < asked.min(100) {
        bail!("the open-file limit is {fds}, too low for {asked} connections");
    }
    let step = args.idle_step.clamp(1, n);
    common.progress.step(format!("msg idle: {n} authenticated sessions, {per_user} per user"));
    let (server, addr) = start_server(common)?;
    let pid = server.pid();
    let users = server.users("i", n.div_ceil(per_user)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = proc::sample(pid)?;
    let client_base = proc::sample(std::process::id())?;
    let mut points = vec![(0.0, 0.0)];
    let mut per_step = Vec::new();
    let mut tasks = Vec::with_capacity(n);
    let mut connect_secs = 0.0;
    let mut connected = 0;
    while connected < n {
        let batch = step.min(n - connected);
        let t = Instant::now();
        let sessions: Vec<_> = stream::iter(connected..connected + batch)
            .map(|i| {
                let token = &users[i / per_user].token;
                async move {
                    wire::connect(addr, token, Some(source(i)), None, 4096)
                        .await
                        .with_context(|| format!("connection {i}"))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let secs = t.elapsed().as_secs_f64();
        connect_secs += secs;
        for s in sessions {
            let mut ws = s?.ws;
            tasks.push(tokio::spawn(async move {
                // Reading answers the server's pings; nothing else arrives on an idle session.
                while let Some(Ok(_)) = ws.next().await {}
            }));
        }
        connected += batch;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = proc::sample(pid)?;
        let grown = now.rss_kib.saturating_sub(base.rss_kib) as f64;
        points.push((connected as f64, grown / 1024.0));
        per_step.push(json!({"connections": connected, "rss_kib": now.rss_kib, "kib_per_connection": grown / connected as f64, "step_connects_per_sec": batch as f64 / secs}));
        common.progress.status(format!(
            "idle: {connected} of {n} connected, {:.0}/s, server RSS +{:.1} MiB ({:.2} KiB per connection)",
            batch as f64 / secs,
            grown / 1024.0,
            grown / connected as f64
        ));
    }
    // Settle, and see what idle sessions cost in CPU.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = proc::Window::open(pid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cost = window.close()?;
    let end = proc::sample(pid)?;
    let client_end = proc::sample(std::process::id())?;
    let closed_early = tasks.iter().filter(|t| t.is_finished()).count();
    drop(server);
    for t in &tasks {
        t.abort();
    }
    if closed_early > 0 {
        bail!("{closed_early} of {n} idle sessions were closed by the server while idle");
    }
    let kib_per_conn = end.rss_kib.saturating_sub(base.rss_kib) as f64 / n as f64;
    let client_kib_per_conn = client_end.rss_kib.saturating_sub(client_base.rss_kib) as f64 / n as f64;
    let rate = n as f64 / connect_secs;
    common.progress.step(format!(
        "  idle: {kib_per_conn:.2} KiB server RSS per connection ({} MiB → {} MiB), {rate:.0} connects/s",
        base.rss_kib / 1024,
        end.rss_kib / 1024
    ));

    let mut s = Section::new(
        "msg-idle",
        &format!("{n} idle authenticated WebSocket sessions"),
        json!({"connections": n, "asked": asked, "per_user": per_user, "users": users.len(), "step": step, "sources": n.div_ceil(PER_SOURCE)}),
    );
    s.metrics.push(
        Metric::new(&format!("server RSS per idle connection at {n}"), "KiB", Better::Lower, kib_per_conn)
            .target("≤ 8 KiB at 50k", 8.0)
            .short_of((n < 50_000).then(|| format!("{n} connections"))),
    );
    s.metrics.push(Metric::new("server RSS before", "MiB", Better::Lower, base.rss_kib as f64 / 1024.0));
    s.metrics.push(Metric::new(
        "server RSS with every session open",
        "MiB",
        Better::Lower,
        end.rss_kib as f64 / 1024.0,
    ));
    s.metrics.push(Metric::new("connect rate (upgrade + hello → synced)", "1/s", Better::Higher, rate));
    s.metrics.push(Metric::new("server CPU while idle", "cores", Better::Lower, idle_cost.cores));
    s.metrics.push(Metric::new("load generator RSS per connection", "KiB", Better::Lower, client_kib_per_conn));
    s.notes.push(format!(
        "RSS per connection = (server RSS after all {n} sessions are open and settled − RSS before the first) / {n}. \
         Each session completed hello → welcome → synced with a user's token ({per_user} sessions per user); \
         the load generator then only answers pings. Steps of {step}, {CONCURRENCY} handshakes at a time."
    ));
    if n < asked {
        s.notes.push(format!(
            "Asked for {asked} connections, opened {n}: the open-file limit here is {fds} (hard limit, which this \
             process may not raise: no CAP_SYS_RESOURCE), and the server holds one descriptor per connection. \
             The target is stated at 50k; the plot shows how RSS grows with the count."
        ));
    } else if n < 50_000 {
        s.notes.push("The target is stated at 50k connections; this run used fewer.".into());
    }
    s.details = json!({"steps": per_step, "idle_window": idle_cost, "server_rss_before_kib": base.rss_kib, "server_rss_after_kib": end.rss_kib});
    s.plots.push(Plot {
        file: "msg-idle-rss".into(),
        title: "Chorus server RSS against idle sessions".into(),
        x_label: "authenticated idle sessions".into(),
        y_label: "server RSS growth (MiB)".into(),
        series: vec![Series { name: "Chorus".into(), points }],
    });
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(source(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source(9_999), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source(49_999), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)));
        assert_eq!(source(2_540_000), IpAddr::V4(Ipv4Addr::new(127, 0, 1, 0)));
    }
}
