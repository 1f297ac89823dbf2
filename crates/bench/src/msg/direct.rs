//! Durable 1:1 sends: P sender sessions, each pipelining `--msg-in-flight` (64) sends to its
//! own recipient, who is online and receives them live. The figure is `sent` answers per
//! second over the window after the warm-up (a `sent` is written only after the message is
//! committed with `synchronous=full`), with send → `sent` latency, send → deliver latency at
//! the recipients, and the server's CPU over the same window. After the run every recipient
//! must have received every message its sender had answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use serde_json::json;

use super::fanout::{check, saturation_phase, with_status};
use super::hist::Hist;
use super::wire::{self, PhaseOut, Sender, Target};
use super::{chorus_receiver, merge, per_cpu, per_sec, probe, start_server, Counters, MsgArgs};
use crate::report::{Better, Metric, Section};
use crate::Common;

/// Runs the scenario.
pub async fn run(args: &MsgArgs, common: &Common) -> anyhow::Result<Section> {
    let pairs = args.direct_pairs.max(1);
    common
        .progress
        .step(format!("msg direct: {pairs} senders → {pairs} recipients, {} in flight each", args.msg_in_flight));
    let (server, addr) = start_server(common)?;
    let users = server.users("d", 2 * pairs).await?;
    let (senders, recipients) = users.split_at(pairs);
    let counters = Arc::new(Counters::default());
    let mut receivers = Vec::new();
    let sessions: Vec<_> =
        stream::iter(recipients.iter().map(|u| wire::connect(addr, &u.token, None, None, 64 * 1024)))
            .buffered(16)
            .collect()
            .await;
    for s in sessions {
        receivers.push(tokio::spawn(chorus_receiver(s.context("connecting a recipient")?.ws, counters.clone())));
    }
    let answered = Arc::new(AtomicU64::new(0));
    let mut tx = Vec::new();
    for (s, r) in senders.iter().zip(recipients) {
        let session = wire::connect(addr, &s.token, None, None, 64 * 1024).await?;
        let mut sender = Sender::new(session, Target::Peer(r.address.clone()));
        sender.answered = answered.clone();
        tx.push(sender);
    }
    let phase = {
        let mut p = saturation_phase(args, Instant::now());
        p.tag = 1;
        p
    };
    counters.set_window(phase.window.0, phase.window.1);
    let p = probe(
        vec![server.pid()],
        phase.window.0,
        phase.window.1,
        counters.clone(),
        vec![answered.clone()],
        args.msg_perf,
    );
    let tasks: Vec<_> = tx
        .into_iter()
        .map(|mut s| {
            let phase = phase.clone();
            tokio::spawn(async move { s.run(&phase, || false).await })
        })
        .collect();
    let outs = with_status(&common.progress, "direct", &counters, &answered, phase.until, async {
        let mut outs = Vec::new();
        for t in tasks {
            outs.push(t.await??);
        }
        anyhow::Ok(outs)
    })
    .await?;
    let mut total = PhaseOut::default();
    for o in outs {
        total.sent += o.sent;
        total.answered += o.answered;
        total.errors += o.errors;
        total.answered_in_window += o.answered_in_window;
        total.ack_latency.merge(&o.ack_latency);
        if total.first_error.is_none() {
            total.first_error = o.first_error;
        }
    }
    check(&total, answered.load(Ordering::Relaxed), &counters, "direct").await?;
    let mut probe = p.await??;
    counters.stop_all();
    let mut hists = Vec::new();
    for r in receivers {
        hists.push(r.await?);
    }
    let deliver: Hist = merge(&hists).swap_remove(1);
    drop(server);

    let sends_per_sec = per_sec(probe.answered, &probe.server);
    common.progress.step(format!(
        "  direct: {sends_per_sec:.0} durable sends/s, server {:.2} cores, load generator {:.2} cores, sent p50 {:.1} ms p99 {:.1} ms",
        probe.server.cores,
        probe.client.cores,
        total.ack_latency.p50_ms(),
        total.ack_latency.p99_ms()
    ));
    let mut s = Section::new(
        "msg-direct",
        &format!(
            "Durable 1:1 sends: {pairs} senders × {} in flight → {pairs} online recipients (SQLite, synchronous=full)",
            args.msg_in_flight
        ),
        json!({
            "pairs": pairs,
            "in_flight": args.msg_in_flight,
            "payload_bytes": args.msg_payload,
            "duration_secs": args.msg_duration.as_secs_f64(),
            "warmup_secs": args.msg_warmup.as_secs_f64(),
        }),
    );
    s.metrics
        .push(Metric::new("durable 1:1 sends/s", "1/s", Better::Higher, sends_per_sec).target("≥ 50,000", 50_000.0));
    s.metrics.push(Metric::new(
        "sends per server CPU-s",
        "1/CPU-s",
        Better::Higher,
        per_cpu(probe.answered, &probe.server),
    ));
    s.metrics.push(Metric::new("send → sent p50", "ms", Better::Lower, total.ack_latency.p50_ms()));
    s.metrics.push(Metric::new("send → sent p99", "ms", Better::Lower, total.ack_latency.p99_ms()));
    s.metrics.push(Metric::new("send → sent max", "ms", Better::Lower, total.ack_latency.max_ms()));
    s.metrics.push(Metric::new("send → deliver p50", "ms", Better::Lower, deliver.p50_ms()));
    s.metrics.push(Metric::new("send → deliver p99", "ms", Better::Lower, deliver.p99_ms()));
    s.metrics.push(Metric::new("server CPU", "cores", Better::Lower, probe.server.cores));
    s.metrics.push(Metric::new("load generator CPU", "cores", Better::Lower, probe.client.cores));
    s.metrics.push(Metric::new("server RSS at the end", "MiB", Better::Lower, probe.server.rss_kib as f64 / 1024.0));
    s.notes.push(format!(
        "Each `sent` is written after the message's transaction committed (the single writer task, group \
         commit, synchronous=full). {pairs} sessions × {} sends waiting = at most {} messages per batch.",
        args.msg_in_flight,
        pairs * args.msg_in_flight
    ));
    let cpu_us = if probe.answered > 0 { probe.server.cpu_secs * 1e6 / probe.answered as f64 } else { 0.0 };
    let cores = probe.server.cores + probe.client.cores;
    let bound = if cores < 1.6 {
        "server and generator together leave CPU idle, so the limit is the single writer task: it applies \
         one batch at a time (its statements one by one on sqlx's SQLite worker thread, then the commit)"
    } else {
        "the two cores are busy (server + generator), so the limit is CPU"
    };
    s.notes.push(format!(
        "What limits it: the server spends {cpu_us:.0} µs of CPU per durable send ({:.2} cores busy; generator \
         {:.2}); {bound}. The latency is the queue: {} sends in flight / {sends_per_sec:.0} per s ≈ {:.0} ms \
         (Little's law). --msg-perf profiles the server.",
        probe.server.cores,
        probe.client.cores,
        pairs * args.msg_in_flight,
        if sends_per_sec > 0.0 { (pairs * args.msg_in_flight) as f64 / sends_per_sec * 1000.0 } else { 0.0 },
    ));
    if let Some(p) = probe.perf.take() {
        s.notes.push(format!("Server profile over the window (perf, self time): {p}"));
    }
    s.details = json!({
        "server": probe.server,
        "client": probe.client,
        "answered_in_window": probe.answered,
        "sent": total.sent,
        "delivered": counters.delivered.load(Ordering::Relaxed),
        "ack_latency": total.ack_latency.summary(),
        "deliver_latency": deliver.summary(),
    });
    Ok(s)
}
