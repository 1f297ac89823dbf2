//! Reconnect storm: M group members receive numbered messages from one sender (paced at
//! `--storm-rate`). After `--storm-before`, every member drops its connection at once (TCP
//! reset: `SO_LINGER` 0, no close frame), reconnects at once and resumes with its cursor
//! (`hello {resume: {epoch, pos}}`, pos = the highest `pos` it processed, docs/protocol.md
//! §9), while the sender goes on for `--storm-after`.
//!
//! Each member keeps the set of group `seq`s it received (message n of the run has seq n: the
//! group is fresh and only the sender writes to it) and checks the text's number against
//! the seq. Reported:
//!
//! * **time to recover** — from the drop until a member has resumed (`synced`) and holds every
//!   message answered `sent` before the drop; the maximum over members (and the median);
//! * **lost** — messages of the run a member never received, once the sender has stopped
//!   and the members have had up to 15 s to catch up; **duplicated** — a `seq` received twice
//!   by one member (across the old and the new connection). Both must be 0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::wire::{self, Phase, Sender, Session, Target};
use super::{start_server, Counters, MsgArgs};
use crate::proc;
use crate::report::{Better, Metric, Section};
use crate::Common;

/// What the members share with the controller.
struct Shared {
    /// Set to true: drop the connection now.
    drop: tokio::sync::watch::Sender<bool>,
    /// The highest seq answered before the drop (set before `drop`).
    s_drop: AtomicU64,
    /// `now_us` at the drop.
    drop_us: AtomicU64,
    /// Per member: every seq up to this one received.
    contiguous: Vec<AtomicU64>,
    /// Per member: `now_us` when it recovered (0: not yet).
    recovered_us: Vec<AtomicU64>,
    /// Per member: `now_us` when its resume reached `synced` (0: not yet).
    synced_us: Vec<AtomicU64>,
    /// Stop signal and problem log.
    counters: Counters,
}

/// One member's account.
#[derive(Debug, Default, Clone, Serialize)]
struct Member {
    received: u64,
    distinct: u64,
    duplicates: u64,
    mismatched: u64,
    backlog: u64,
    resumed: bool,
    reason: Option<String>,
    reconnect_attempts: u32,
    #[serde(skip)]
    have: Vec<bool>,
}

impl Member {
    /// Records message `seq` (text number `n`); returns the new contiguous prefix.
    fn record(&mut self, seq: i64, n: Option<u64>, contiguous: &AtomicU64) {
        self.received += 1;
        let Ok(seq) = usize::try_from(seq) else {
            self.mismatched += 1;
            return;
        };
        if n != Some(seq as u64) {
            self.mismatched += 1;
        }
        if self.have.len() <= seq {
            self.have.resize(seq + 1024, false);
        }
        if self.have[seq] {
            self.duplicates += 1;
            return;
        }
        self.have[seq] = true;
        self.distinct += 1;
        let mut c = contiguous.load(Ordering::Relaxed) as usize;
        while self.have.get(c + 1).copied().unwrap_or(false) {
            c += 1;
        }
        contiguous.store(c as u64, Ordering::Relaxed);
    }

    fn missing(&self, upto: u64) -> u64 {
        (1..=upto as usize).filter(|&s| !self.have.get(s).copied().unwrap_or(false)).count() as u64
    }
}

fn number(text: Option<&str>) -> Option<u64> {
    wire::parse_payload(text?.as_bytes()).map(|(_, n, _)| n)
}

/// One member: live until the drop, reset, resume, live until stopped.
async fn member(i: usize, server: std::net::SocketAddr, token: String, session: Session, sh: Arc<Shared>) -> Member {
    let mut me = Member::default();
    let (epoch, mut cursor) = (session.epoch.clone(), session.synced_pos);
    let mut ws = session.ws;
    let mut drop_rx = sh.drop.subscribe();
    let contiguous = &sh.contiguous[i];
    // Before the drop.
    loop {
        if *drop_rx.borrow_and_update() {
            break;
        }
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(WsMessage::Text(t))) => {
                    let Ok(f) = wire::Lite::parse(&t) else { continue };
                    if &*f.t == "message" {
                        me.record(f.seq, number(f.text.as_deref()), contiguous);
                        cursor = cursor.max(f.pos);
                    }
                }
                Some(Ok(_)) => {}
                other => {
                    sh.counters.problem(format!("member {i} lost its connection before the drop: {other:?}"));
                    return me;
                }
            },
            _ = drop_rx.changed() => {}
        }
    }
    // The drop: a reset, no close frame.
    // A zero linger never blocks the drop: the kernel sends RST at once.
    #[allow(deprecated)]
    let _ = ws.get_ref().set_linger(Some(Duration::ZERO));
    drop(ws);
    // Resume at once (retrying a refused connect after 50 ms, 10 times at most).
    let session = loop {
        me.reconnect_attempts += 1;
        match wire::connect(server, &token, None, Some((&epoch, cursor)), 16 * 1024).await {
            Ok(s) => break s,
            Err(e) if me.reconnect_attempts < 10 => {
                tracing::warn!("member {i}: reconnect failed: {e:#}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                sh.counters.problem(format!("member {i} could not reconnect: {e:#}"));
                return me;
            }
        }
    };
    me.resumed = session.resumed;
    me.reason = session.reason.clone();
    if !session.resumed {
        sh.counters.problem(format!("member {i}'s resume was refused: {:?}", session.reason));
    }
    me.backlog = session.backlog.len() as u64;
    for b in &session.backlog {
        me.record(b.seq, number(Some(&b.text)), contiguous);
    }
    sh.synced_us[i].store(wire::now_us(), Ordering::Relaxed);
    let s_drop = sh.s_drop.load(Ordering::Relaxed);
    let mut recovered = false;
    let mut check = || {
        if !recovered && contiguous.load(Ordering::Relaxed) >= s_drop {
            recovered = true;
            sh.recovered_us[i].store(wire::now_us(), Ordering::Relaxed);
        }
    };
    check();
    let mut ws = session.ws;
    let mut stop = sh.counters.stop.subscribe();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(WsMessage::Text(t))) => {
                    let Ok(f) = wire::Lite::parse(&t) else { continue };
                    if &*f.t == "message" {
                        me.record(f.seq, number(f.text.as_deref()), contiguous);
                        check();
                    } else if &*f.t == "error" {
                        sh.counters.problem(format!("member {i} got {t}"));
                    }
                }
                Some(Ok(_)) => {}
                other => {
                    sh.counters.problem(format!("member {i} lost its resumed connection: {other:?}"));
                    break;
                }
            },
            _ = stop.changed() => {}
        }
    }
    me
}

/// Runs the scenario.
pub async fn run(args: &MsgArgs, common: &Common) -> anyhow::Result<Section> {
    let m = args.storm_members.max(1);
    common
        .progress
        .step(format!("msg storm: {m} members drop and resume while 1 sender sends {} msgs/s", args.storm_rate));
    let (server, addr) = start_server(common)?;
    let users = server.users("s", m + 1).await?;
    let gid = server.group("storm", &users, None).await?;
    let sh = Arc::new(Shared {
        drop: tokio::sync::watch::channel(false).0,
        s_drop: AtomicU64::new(0),
        drop_us: AtomicU64::new(0),
        contiguous: (0..m).map(|_| AtomicU64::new(0)).collect(),
        recovered_us: (0..m).map(|_| AtomicU64::new(0)).collect(),
        synced_us: (0..m).map(|_| AtomicU64::new(0)).collect(),
        counters: Counters::default(),
    });
    let sessions: Vec<_> =
        stream::iter(users[1..].iter().map(|u| wire::connect(addr, &u.token, None, None, 16 * 1024)))
            .buffered(64)
            .collect()
            .await;
    let mut members = Vec::with_capacity(m);
    for (i, s) in sessions.into_iter().enumerate() {
        let s = s.context("connecting a member")?;
        members.push(tokio::spawn(member(i, addr, users[i + 1].token.clone(), s, sh.clone())));
    }
    let session = wire::connect(addr, &users[0].token, None, None, 64 * 1024).await?;
    let mut sender = Sender::new(session, Target::Group(gid));
    let answered = sender.answered.clone();
    let start = Instant::now();
    let phase = Phase {
        tag: 1,
        rate: Some(args.storm_rate),
        until: start + args.storm_before + args.storm_after,
        window: (start, start),
        payload: args.msg_payload,
        in_flight: args.msg_in_flight,
    };
    let send = tokio::spawn(async move {
        let o = sender.run(&phase, || false).await;
        o.map(|o| (o, sender.next))
    });

    tokio::time::sleep_until((start + args.storm_before).into()).await;
    let s_drop = answered.load(Ordering::Relaxed);
    if s_drop == 0 {
        bail!("no message was answered before the drop");
    }
    sh.s_drop.store(s_drop, Ordering::Relaxed);
    let drop_us = wire::now_us();
    sh.drop_us.store(drop_us, Ordering::Relaxed);
    let window = proc::Window::open(server.pid())?;
    let t_drop = Instant::now();
    sh.drop.send_replace(true);
    common.progress.step(format!("  dropped {m} connections after message {s_drop}"));

    // Recovery: every member resumed and holds everything answered before the drop.
    let recover_deadline = t_drop + Duration::from_secs(60);
    let recovered_all = loop {
        let n = sh.recovered_us.iter().filter(|r| r.load(Ordering::Relaxed) > 0).count();
        common.progress.status(format!("storm: {n} of {m} members recovered"));
        if n == m {
            break true;
        }
        if Instant::now() >= recover_deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let storm_cost = window.close()?;
    let (o, total) = send.await??;
    if o.errors > 0 {
        bail!("{} sends refused during the storm, first: {}", o.errors, o.first_error.as_deref().unwrap_or("?"));
    }
    // Catch-up: every member holds every message of the run.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !sh.contiguous.iter().all(|c| c.load(Ordering::Relaxed) >= total) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A little longer, so that a duplicate arriving late is seen too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sh.counters.stop_all();
    let mut accounts = Vec::with_capacity(m);
    for t in members {
        accounts.push(t.await?);
    }
    drop(server);

    let lost: u64 = accounts.iter().map(|a| a.missing(total)).sum();
    let dups: u64 = accounts.iter().map(|a| a.duplicates).sum();
    let mismatched: u64 = accounts.iter().map(|a| a.mismatched).sum();
    let refused = accounts.iter().filter(|a| !a.resumed).count();
    let backlog: u64 = accounts.iter().map(|a| a.backlog).sum();
    let attempts: u64 = accounts.iter().map(|a| u64::from(a.reconnect_attempts)).sum();
    let mut rec: Vec<f64> = sh
        .recovered_us
        .iter()
        .map(|r| r.load(Ordering::Relaxed))
        .filter(|&r| r > 0)
        .map(|r| r.saturating_sub(drop_us) as f64 / 1000.0)
        .collect();
    rec.sort_by(f64::total_cmp);
    let mut synced: Vec<f64> = sh
        .synced_us
        .iter()
        .map(|r| r.load(Ordering::Relaxed))
        .filter(|&r| r > 0)
        .map(|r| r.saturating_sub(drop_us) as f64 / 1000.0)
        .collect();
    synced.sort_by(f64::total_cmp);
    let max_rec = rec.last().copied().unwrap_or(f64::NAN);
    let p50_rec = rec.get(rec.len() / 2).copied().unwrap_or(f64::NAN);
    common.progress.step(format!(
        "  storm: recovered in {max_rec:.0} ms (median {p50_rec:.0} ms), {lost} lost, {dups} duplicated, {refused} resumes refused"
    ));

    let mut s = Section::new(
        "msg-storm",
        &format!("Reconnect storm: {m} group members drop at once and resume while the sender goes on"),
        json!({
            "members": m,
            "rate_msgs_per_sec": args.storm_rate,
            "payload_bytes": args.msg_payload,
            "before_secs": args.storm_before.as_secs_f64(),
            "after_secs": args.storm_after.as_secs_f64(),
        }),
    );
    s.metrics.push(Metric::new("time to recover (all members)", "ms", Better::Lower, max_rec));
    s.metrics.push(Metric::new("time to recover (median member)", "ms", Better::Lower, p50_rec));
    s.metrics.push(Metric::new(
        "time until every member resumed (synced)",
        "ms",
        Better::Lower,
        synced.last().copied().unwrap_or(f64::NAN),
    ));
    s.metrics.push(Metric::new("lost messages", "", Better::Lower, lost as f64).target("= 0", 0.0));
    s.metrics.push(Metric::new("duplicated messages", "", Better::Lower, dups as f64).target("= 0", 0.0));
    s.metrics.push(Metric::new("resumes refused", "", Better::Lower, refused as f64).target("= 0", 0.0));
    s.metrics.push(Metric::new("backlog messages re-sent on resume", "", Better::Lower, backlog as f64));
    s.metrics.push(Metric::new("server CPU from drop to recovery", "cores", Better::Lower, storm_cost.cores));
    s.notes.push(format!(
        "The drop came after message {s_drop} had been answered; the sender sent {total} messages in all, each \
         member should hold all {total} exactly once. Recovery = resumed (synced) and holding every message \
         answered before the drop. {attempts} connection attempts for {m} reconnects."
    ));
    if mismatched > 0 {
        s.notes.push(format!("{mismatched} messages carried a seq that did not match their number"));
    }
    let problem = sh.counters.first_problem();
    if let Some(p) = &problem {
        s.notes.push(format!("First problem seen: {p}"));
    }
    s.details = json!({
        "s_drop": s_drop,
        "total": total,
        "recovery_ms": {"max": max_rec, "p50": p50_rec, "p90": rec.get(rec.len() * 9 / 10).copied()},
        "synced_ms": {"max": synced.last().copied(), "p50": synced.get(synced.len() / 2).copied()},
        "storm_server_cost": storm_cost,
        "members_with_losses": accounts.iter().enumerate().filter(|(_, a)| a.missing(total) > 0).take(20).map(|(i, a)| json!({"member": i, "missing": a.missing(total), "account": a})).collect::<Vec<_>>(),
        "members_with_duplicates": accounts.iter().enumerate().filter(|(_, a)| a.duplicates > 0).take(20).map(|(i, a)| json!({"member": i, "account": a})).collect::<Vec<_>>(),
    });
    let broken = lost > 0 || dups > 0 || refused > 0 || mismatched > 0 || !recovered_all;
    if broken {
        let what = format!(
            "reconnect storm: {lost} lost, {dups} duplicated, {refused} resumes refused, {mismatched} mismatched, \
             all recovered: {recovered_all}; {}",
            problem.unwrap_or_else(|| "no error seen".into())
        );
        if args.msg_strict {
            bail!(what);
        }
        common.progress.step(format!("  BROKEN: {what}"));
        s.notes.push(format!("BROKEN: {what}"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_accounting() {
        let c = AtomicU64::new(0);
        let mut m = Member::default();
        m.record(1, Some(1), &c);
        m.record(3, Some(3), &c);
        assert_eq!(c.load(Ordering::Relaxed), 1);
        m.record(2, Some(2), &c);
        assert_eq!(c.load(Ordering::Relaxed), 3);
        m.record(2, Some(2), &c);
        m.record(5, Some(4), &c);
        assert_eq!((m.received, m.distinct, m.duplicates, m.mismatched), (5, 4, 1, 1));
        assert_eq!(m.missing(6), 2); // 4 and 6
    }
}
