//! What the server is doing, for Prometheus: the counters, gauges and histograms behind
//! `GET /metrics` (OpenMetrics text, the format Prometheus scrapes; admin token required).
//!
//! One process-wide set, [`metrics()`], so any service can count without threading a handle
//! through every constructor. Each metric is an atomic: counting costs one relaxed add, no lock
//! and no lookup; the forward loop still adds its packets once per room flush, not per packet.
//! Names follow Prometheus's conventions (`chorus_` prefix, base units, `_total` on counters,
//! which the encoder appends). docs/deployment.md (Metrics) lists them with their meaning, and
//! docs/grafana-dashboard.json graphs them.

use std::sync::OnceLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    /// WebSocket sessions open now.
    pub sessions: Gauge,
    /// WebSocket sessions opened since start.
    pub sessions_opened: Counter,
    /// Group calls running now (rooms with at least one participant).
    pub calls: Gauge,
    /// Participants in calls now.
    pub call_participants: Gauge,
    /// RTP packets forwarded to subscribers.
    pub forwarded_packets: Counter,
    /// RTP payload bytes forwarded to subscribers.
    pub forwarded_bytes: Counter,
    /// Simulcast layer changes decided for subscribers.
    pub layer_switches: Counter,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests: Counter,
    /// NACKs (retransmission requests) received from subscribers.
    pub nacks_received: Counter,
    /// Loss fraction in subscribers' receiver reports, one observation per stream and report
    /// interval.
    pub subscriber_loss: Histogram,
    /// Time from a call request entering its room's queue to the room's answer, seconds.
    pub call_request_seconds: Histogram,
    /// System calls that sent media datagrams (one `sendmmsg` per room flush).
    pub media_send_calls: Counter,
    /// Media datagrams handed to the kernel over UDP.
    pub media_datagrams_sent: Counter,
    /// Media datagrams received but dropped because their room's queue was full (the room fell
    /// behind on its input).
    pub media_datagrams_dropped_in: Counter,
    /// Media datagrams the kernel refused to send (full socket buffer, refused destination).
    pub media_datagrams_dropped_out: Counter,
    /// Recorded RTP packets dropped because the recording writer fell behind.
    pub recording_dropped_packets: Counter,
    /// Recordings stopped by a failed write (disk full, storage gone).
    pub recording_failures: Counter,
    /// Messages committed to the store (sends, not edits or deletes).
    pub messages_stored: Counter,
    /// Message frames handed to live sessions (one per recipient session).
    pub messages_delivered: Counter,
    /// Requests per writer batch (sends, edits, deletes, reads).
    pub store_batch_size: Histogram,
    /// Time to apply and commit one writer batch, seconds.
    pub store_commit_seconds: Histogram,
    /// Login codes sent (email or phone).
    pub login_codes_sent: Counter,
    /// Requests refused with `rate_limited`.
    pub rate_limited: Counter,
    /// Webhook posts answered 2xx.
    pub webhooks_delivered: Counter,
    /// Webhook posts that failed (retried later).
    pub webhooks_failed_attempts: Counter,
    /// Webhook events dropped because the store queue was full.
    pub webhooks_dropped: Counter,
    /// Uploads that became files (tus and Mesibo's `op=upload`).
    pub uploads_completed: Counter,
    /// Bytes stored by uploads.
    pub upload_bytes: Counter,
    /// Memory allocated through the C allocator and not freed (glibc only; read at each scrape).
    pub heap_in_use: Gauge,
    /// Memory the C allocator took from the system and keeps free (glibc only).
    pub heap_free: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            sessions: Gauge::default(),
            sessions_opened: Counter::default(),
            calls: Gauge::default(),
            call_participants: Gauge::default(),
            forwarded_packets: Counter::default(),
            forwarded_bytes: Counter::default(),
            layer_switches: Counter::default(),
            keyframe_requests: Counter::default(),
            nacks_received: Counter::default(),
            // 0.1 % … 51.2 % (and above).
            subscriber_loss: Histogram::new(exponential_buckets(0.001, 2.0, 10)),
            // 0.5 ms … ~16 s (and above): a client gives up after 10 s.
            call_request_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            media_send_calls: Counter::default(),
            media_datagrams_sent: Counter::default(),
            media_datagrams_dropped_in: Counter::default(),
            media_datagrams_dropped_out: Counter::default(),
            recording_dropped_packets: Counter::default(),
            recording_failures: Counter::default(),
            messages_stored: Counter::default(),
            messages_delivered: Counter::default(),
            // 1, 2, 4 … 512 requests (the writer takes at most 512 at once).
            store_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 0.25 ms … ~4 s.
            store_commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
            login_codes_sent: Counter::default(),
            rate_limited: Counter::default(),
            webhooks_delivered: Counter::default(),
            webhooks_failed_attempts: Counter::default(),
            webhooks_dropped: Counter::default(),
            uploads_completed: Counter::default(),
            upload_bytes: Counter::default(),
            heap_in_use: Gauge::default(),
            heap_free: Gauge::default(),
        }
    }

    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("chorus");
        r.register("sessions", "WebSocket sessions open now", self.sessions.clone());
        r.register("sessions_opened", "WebSocket sessions opened since start", self.sessions_opened.clone());
        r.register("calls", "Group calls running now", self.calls.clone());
        r.register("call_participants", "Participants in calls now", self.call_participants.clone());
        r.register("forwarded_packets", "RTP packets forwarded to subscribers", self.forwarded_packets.clone());
        r.register("forwarded_bytes", "RTP payload bytes forwarded to subscribers", self.forwarded_bytes.clone());
        r.register("layer_switches", "Simulcast layer changes decided for subscribers", self.layer_switches.clone());
        r.register("keyframe_requests", "Keyframe requests (PLI) sent to publishers", self.keyframe_requests.clone());
        r.register("nacks_received", "NACKs received from subscribers", self.nacks_received.clone());
        r.register(
            "subscriber_loss_ratio",
            "Loss fraction in subscribers' receiver reports, per stream and report",
            self.subscriber_loss.clone(),
        );
        r.register(
            "call_request_seconds",
            "Time from a call request entering its room's queue to the room's answer",
            self.call_request_seconds.clone(),
        );
        r.register("media_send_calls", "System calls that sent media datagrams", self.media_send_calls.clone());
        r.register("media_datagrams_sent", "Media datagrams sent over UDP", self.media_datagrams_sent.clone());
        r.register(
            "media_datagrams_dropped_in",
            "Media datagrams received but dropped because their room's queue (or a leg's inbox) was full",
            self.media_datagrams_dropped_in.clone(),
        );
        r.register(
            "media_datagrams_dropped_out",
            "Media datagrams the kernel refused to send",
            self.media_datagrams_dropped_out.clone(),
        );
        r.register(
            "recording_dropped_packets",
            "Recorded RTP packets dropped because the recording writer fell behind",
            self.recording_dropped_packets.clone(),
        );
        r.register("recording_failures", "Recordings stopped by a failed write", self.recording_failures.clone());
        r.register("messages_stored", "Messages committed to the store", self.messages_stored.clone());
        r.register("messages_delivered", "Message frames handed to live sessions", self.messages_delivered.clone());
        r.register("store_batch_size", "Requests per message writer batch", self.store_batch_size.clone());
        r.register(
            "store_commit_seconds",
            "Time to apply and commit one message writer batch",
            self.store_commit_seconds.clone(),
        );
        r.register("login_codes_sent", "Login codes sent", self.login_codes_sent.clone());
        r.register("rate_limited", "Requests refused with rate_limited", self.rate_limited.clone());
        r.register("webhooks_delivered", "Webhook posts answered 2xx", self.webhooks_delivered.clone());
        r.register(
            "webhooks_failed_attempts",
            "Webhook posts that failed and will be retried",
            self.webhooks_failed_attempts.clone(),
        );
        r.register("webhooks_dropped", "Webhook events dropped (store queue full)", self.webhooks_dropped.clone());
        r.register("uploads_completed", "Uploads that became files", self.uploads_completed.clone());
        r.register("upload_bytes", "Bytes stored by uploads", self.upload_bytes.clone());
        r.register(
            "heap_in_use_bytes",
            "Memory allocated through the C allocator and not freed",
            self.heap_in_use.clone(),
        );
        r.register("heap_free_bytes", "Memory the C allocator keeps free for reuse", self.heap_free.clone());
        r
    }
}

/// Counts one of something that exists now (a session, a participant) in a gauge for as long as
/// the guard lives.
#[derive(Debug)]
pub struct Live(&'static Gauge);

impl Live {
    /// Adds one to `gauge` until the guard is dropped.
    pub fn new(gauge: &'static Gauge) -> Live {
        gauge.inc();
        Live(gauge)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.dec();
    }
}

static METRICS: OnceLock<(Metrics, Registry)> = OnceLock::new();

fn both() -> &'static (Metrics, Registry) {
    METRICS.get_or_init(|| {
        let m = Metrics::new();
        let r = m.registry();
        (m, r)
    })
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &both().0
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric in OpenMetrics text format, ending with `# EOF`.
pub fn render() -> String {
    if let Some(h) = crate::alloc::heap() {
        let m = metrics();
        m.heap_in_use.set(i64::try_from(h.in_use).unwrap_or(i64::MAX));
        m.heap_free.set(i64::try_from(h.free).unwrap_or(i64::MAX));
    }
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &both().1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_help_and_type() {
        metrics().forwarded_packets.inc_by(3);
        metrics().store_commit_seconds.observe(0.001);
        let text = render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for name in ["sessions", "forwarded_packets", "store_commit_seconds", "rate_limited"] {
            assert!(text.contains(&format!("# TYPE chorus_{name} ")), "{name} missing:\n{text}");
        }
        assert!(text.contains("chorus_forwarded_packets_total "), "{text}");
        assert!(text.contains("chorus_store_commit_seconds_bucket{le=\"0.001\"}"), "{text}");
    }
}
