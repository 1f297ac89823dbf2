//! Settings: defaults, then a TOML config file, then `CHORUS_*` environment
//! variables, then command-line flags (each overrides the one before).
//!
//! Every field below can be set in the file by its name (`max_message_bytes = 8192`)
//! and in the environment by its upper-cased name with the `CHORUS_` prefix
//! (`CHORUS_MAX_MESSAGE_BYTES=8192`). docs/configuration.md lists them all.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// All settings of a Chorus server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address (REST, WebSocket, web app).
    pub listen: SocketAddr,
    /// Data directory: SQLite database, admin token, mail outbox.
    pub data: PathBuf,
    /// `postgres://…` to use PostgreSQL; empty for the embedded SQLite store.
    pub database: Option<String>,
    /// `nats://[user:password@]host:port` of the NATS server that joins several nodes into one deployment
    /// (cluster mode, see [`crate::cluster`]); requires `database` (PostgreSQL). Unset: one node.
    pub nats: Option<String>,
    /// Prefix of every NATS subject this deployment uses, so several deployments (or tests)
    /// can share one NATS server: letters, digits, `-` and `_`.
    pub nats_prefix: String,
    /// This node's id in the cluster (letters, digits, `-`, `_`; at most 64). Unset: a random
    /// one at every start.
    pub node_id: Option<String>,
    /// Seconds between two heartbeats of a node on NATS; a node not heard from for three is gone.
    pub node_heartbeat_secs: u64,
    /// SQLite `synchronous` level: `full` (a stored message survives power loss)
    /// or `normal` (faster; a power loss can lose the last commits).
    pub sqlite_synchronous: String,
    /// SQLite page cache of each connection, KiB (1 writer, up to 8 readers).
    pub sqlite_cache_kib: u32,
    /// glibc malloc arenas at most (0: glibc's own limit, 8 per core); ignored when
    /// `MALLOC_ARENA_MAX` is set in the environment.
    pub malloc_arenas: u32,
    /// Seconds between two `malloc_trim` calls that give malloc's free pages back to the
    /// system (0: never; glibc only).
    pub malloc_trim_secs: u64,
    /// Admin (app) token for `/backend`; generated and stored under `data` if unset.
    pub admin_token: Option<String>,
    /// Key of the pins at rest (64 hex digits); read from or generated into `data/pin-key` if unset.
    pub pin_key: Option<String>,
    /// At startup, give every pin stored under another pin key a new value under this one
    /// (instead of refusing to start). The old pins stop working.
    pub pin_key_reset: bool,
    /// Base URL used in mails and invite links.
    pub public_url: Option<String>,

    /// SMTP server host; when unset, mail is written to `data/outbox/`.
    pub smtp_host: Option<String>,
    /// SMTP port.
    pub smtp_port: u16,
    /// SMTP user name.
    pub smtp_user: Option<String>,
    /// SMTP password.
    pub smtp_password: Option<String>,
    /// `starttls`, `tls` or `none`.
    pub smtp_security: String,
    /// From address of login mails.
    pub mail_from: String,

    /// Access-token lifetime, seconds.
    pub token_ttl_secs: u64,
    /// Login-code lifetime, seconds.
    pub code_ttl_secs: u64,
    /// Wrong attempts that lock a login code.
    pub code_max_attempts: u32,
    /// Least seconds between two login codes for one email/phone while the earlier one is usable.
    pub code_request_interval_secs: u64,
    /// Replaced by `code_request_interval_secs`; still accepted (and ignored, with a warning) so an
    /// older config file keeps starting.
    #[serde(skip_serializing)]
    pub code_requests_per_identity: Option<u32>,
    /// Login codes (and verifications) one client IP may request per `rate_window_secs`.
    pub code_requests_per_ip: u32,
    /// Wrong login codes one email/phone may try per `code_failure_window_secs`, across codes.
    pub code_failures_per_identity: u32,
    /// Of those, the most that may come from one client network (IPv4 address, IPv6 /64).
    pub code_failures_per_identity_ip: u32,
    /// Window of the two counters above, seconds.
    pub code_failure_window_secs: u64,
    /// Seconds between purges of expired tokens, old login codes and old outbox files.
    pub purge_interval_secs: u64,
    /// Wrong pins one user may try per `rate_window_secs`.
    pub pin_failures_per_user: u32,
    /// Wrong pins one IP may try per `rate_window_secs`.
    pub pin_failures_per_ip: u32,
    /// Wrong pins tried against one group (by anyone) per `rate_window_secs`.
    pub pin_failures_per_group: u32,
    /// Window of the counters above, seconds.
    pub rate_window_secs: u64,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Origins (`https://app.example.com`) whose pages may call `/api`, `/v1` and `/sdk` and
    /// open the WebSocket from another origin; `["*"]` for any origin. Empty (the default): no
    /// CORS headers and no origin check. In a file a list; in the environment a comma-separated
    /// string. See [`crate::http::cors`].
    #[serde(deserialize_with = "origin_list")]
    pub cors_origins: Vec<String>,
    /// HTTPS: a PEM file with the certificate chain (leaf first). With `tls_key`, the listener
    /// speaks TLS only (see [`crate::http::server`]); unset, plain HTTP (behind a TLS proxy).
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: a PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// HTTPS with automatic certificates: the names to order one for over ACME (instead of
    /// `tls_cert`/`tls_key`). In a file a list; in the environment a comma-separated string.
    #[serde(deserialize_with = "origin_list")]
    pub acme_domains: Vec<String>,
    /// Contact e-mail address given to the ACME CA (expiry notices).
    pub acme_contact: Option<String>,
    /// The ACME CA's directory URL; default Let's Encrypt's production directory.
    pub acme_directory: String,
    /// PEM file of CA certificates to trust for the ACME directory's HTTPS besides the public
    /// roots (a private ACME CA, e.g. step-ca or a test Pebble).
    pub acme_ca: Option<PathBuf>,
    /// URLs that receive webhooks (signed POSTs, see [`crate::webhooks`]). Empty: none are sent.
    /// In a file a list; in the environment a comma-separated string.
    #[serde(deserialize_with = "origin_list")]
    pub webhook_urls: Vec<String>,
    /// Signing secret, `whsec_` + base64 of at least 24 bytes. Unset: generated into
    /// `DATA/webhook-secret` (0600) on first use.
    pub webhook_secret: Option<String>,
    /// Longest wait between two attempts of one webhook, seconds (backoff from 1 s, doubling).
    pub webhook_retry_max_secs: u64,
    /// A webhook not delivered this long after its event is given up (marked failed), seconds.
    pub webhook_give_up_secs: u64,

    /// Largest message content (text + data + file reference), bytes.
    pub max_message_bytes: usize,
    /// Largest WebSocket frame, bytes.
    pub max_frame_bytes: usize,
    /// Largest REST body, bytes.
    pub max_body_bytes: usize,
    /// Most members in one group.
    pub max_group_members: usize,
    /// Most pins in one group.
    pub max_group_pins: usize,
    /// Most WHIP stream keys in one group.
    pub max_stream_keys: usize,
    /// WHIP/WHEP `POST`, `PATCH` and `DELETE` requests one client IP may make per minute.
    pub live_requests_per_minute: u32,
    /// Largest group whiteboard (the compact JSON text of its objects), bytes.
    pub max_board_bytes: usize,
    /// Most groups one user may own (create).
    pub max_groups_per_user: usize,
    /// Most groups one user may be a member of (the backend may add past it).
    pub max_memberships_per_user: usize,
    /// Groups (and Mesibo rooms) one user may create per hour (0: no limit).
    pub groups_created_per_hour: u32,
    /// Pins one user may create per hour with `POST /v1/groups/{gid}/pins` or `addPin` (0: no limit).
    pub pins_created_per_hour: u32,
    /// Members one user may newly add to groups per hour, all groups together (0: no limit).
    pub members_added_per_hour: u32,
    /// Calls one user may start per hour: group calls they are the first to join, and 1:1
    /// calls they dial (0: no limit).
    pub calls_started_per_hour: u32,
    /// Messages one user may send per second (sustained).
    pub sends_per_second: u32,
    /// Burst allowance above `sends_per_second`.
    pub send_burst: u32,
    /// Most messages sent in one sync after (re)connect.
    pub sync_limit: usize,
    /// Presence is not broadcast through groups larger than this.
    pub presence_max_group: usize,
    /// Seconds a user stays "online" after the last session closes.
    pub presence_grace_secs: u64,
    /// Outbound frames queued per session before it is dropped as too slow.
    pub session_queue: usize,
    /// Bytes one session may hold on their way out (queued frames and bytes written but not yet
    /// flushed to its socket) before it is dropped as too slow.
    pub session_queue_bytes: usize,
    /// Seconds one write to a session's socket may take before the session is dropped.
    pub session_write_timeout_secs: u64,
    /// Most WebSocket sessions one user may have open at once.
    pub max_sessions_per_user: usize,
    /// Frames the server reads from one WebSocket session per second, sustained (at least
    /// `sends_per_second` + 50); a faster client is read more slowly (nothing is refused).
    pub session_frames_per_second: u32,
    /// Burst allowance above `session_frames_per_second` (at least `send_burst` + 200).
    pub session_frame_burst: u32,
    /// Call frames (`call_*`) the server reads from one session per second, sustained; each
    /// costs its room's task some work. A faster client is read more slowly.
    pub session_call_frames_per_second: u32,
    /// Burst allowance above `session_call_frames_per_second` (joining a large call subscribes
    /// to many streams at once).
    pub session_call_frame_burst: u32,
    /// Most open TCP connections on the HTTP port (HTTP and WebSocket together).
    pub max_connections: usize,
    /// Seconds an HTTP connection may sit idle between requests (or take to send a request's
    /// headers) before it is closed.
    pub http_idle_timeout_secs: u64,

    /// UDP port that carries all WebRTC media (`0`: any free port).
    pub rtc_udp_port: u16,
    /// TCP port for ICE-TCP, the fallback for networks that block UDP (`0`: any free port).
    pub rtc_tcp_port: u16,
    /// Serve ICE-TCP on `rtc_tcp_port`.
    pub rtc_tcp: bool,
    /// Address the media sockets bind to; default: the IP of `listen`.
    pub rtc_bind_ip: Option<IpAddr>,
    /// Address advertised to clients in ICE candidates (behind NAT: the public IP); default: the
    /// bind address.
    pub public_ip: Option<IpAddr>,
    /// Seconds without a packet from a connected peer before it is removed from the call.
    pub rtc_peer_timeout_secs: u64,
    /// Seconds a peer connection may take to connect before its participant is removed.
    pub rtc_connect_timeout_secs: u64,
    /// Starting downlink bandwidth estimate per subscriber, kbit/s (then measured).
    pub rtc_initial_bitrate_kbps: u64,
    /// Threads that drain the subscribers' peer connections of large calls (0: one per core;
    /// 1: every call on its own task's thread). See `call::engine::egress`.
    pub rtc_egress_threads: usize,
    /// Call events queued per participant; one that falls this far behind is dropped from the call.
    pub call_event_queue: usize,
    /// A call recording stops after this many seconds.
    pub recording_max_secs: u64,
    /// A recording's file (one per recorded stream) stops growing at this many bytes, and the
    /// recording stops. Published files count toward the upload limits of the admin who started it.
    pub recording_max_bytes: u64,
    /// Packets queued from a recorded call to its writer; past this, packets are dropped (and
    /// counted in `chorus_recording_dropped_packets_total`), never the call slowed.
    pub recording_queue: usize,
    /// Seconds a 1:1 call rings before it ends unanswered (`no_answer`).
    pub call_ring_timeout_secs: u64,
    /// Most ICE-TCP connections open at once (all calls together); more are closed at once.
    pub rtc_tcp_max_connections: usize,

    /// UDP port of the embedded TURN relay (`0`: any free port). Unset: no TURN server.
    pub turn_udp_port: Option<u16>,
    /// TCP port of the embedded TURN relay (TURN over TCP; `0`: any free port). Unset: none.
    pub turn_tcp_port: Option<u16>,
    /// TCP port of TURN over TLS (`turns:`), e.g. 443 (`0`: any free port). Unset: none.
    /// Needs a certificate: `turn_tls_cert`/`turn_tls_key`, else `tls_cert`/`tls_key`.
    pub turn_tls_port: Option<u16>,
    /// PEM certificate chain for TURN over TLS; default `tls_cert`.
    pub turn_tls_cert: Option<PathBuf>,
    /// PEM private key for TURN over TLS; default `tls_key`.
    pub turn_tls_key: Option<PathBuf>,
    /// Host in the relay's `turn:`/`turns:` URLs, e.g. the name on the TLS certificate.
    /// Default: the relay's address (`turn_public_ip`).
    pub turn_host: Option<String>,
    /// Most TURN TCP and TLS connections open at once (each listener); more are closed at once.
    pub turn_max_connections: usize,
    /// Most TURN allocations (relay sockets) open at once, all transports together; more are
    /// refused (508 Insufficient Capacity).
    pub turn_max_allocations: usize,
    /// Shared secret of the TURN REST API credentials (coturn's `static-auth-secret`); at least
    /// 16 characters. Unset: read from or generated into `data/turn-secret` (0600).
    pub turn_secret: Option<String>,
    /// Address the TURN relay advertises (its relayed addresses and the `turn:` URL); default:
    /// `public_ip`, else the bind address.
    pub turn_public_ip: Option<IpAddr>,
    /// Lifetime of the TURN credentials handed out in `call_joined`, seconds.
    pub turn_credential_ttl_secs: u64,

    /// Where uploaded files are kept: `local` (files under `data/media`) or `s3` (the bucket of
    /// the `s3_*` settings).
    pub media_store: String,
    /// Send files of the local store with `sendfile(2)` on plain-HTTP connections (zero copy);
    /// `false`: read and write them like TLS connections do.
    pub media_sendfile: bool,
    /// S3 endpoint URL (e.g. `https://s3.eu-west-1.amazonaws.com` or a MinIO/Garage URL); unset:
    /// AWS's endpoint of `s3_region`.
    pub s3_endpoint: Option<String>,
    /// S3 bucket name (required with `media_store = "s3"`).
    pub s3_bucket: Option<String>,
    /// S3 region.
    pub s3_region: String,
    /// S3 access key id.
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    pub s3_secret_access_key: Option<String>,
    /// Allow an `http://` S3 endpoint (tests, a bucket server on the same host).
    pub s3_allow_http: bool,
    /// Largest file one upload may hold, bytes.
    pub max_upload_bytes: u64,
    /// Bytes one user's uploads (finished and unfinished, by declared size) may hold in all.
    pub upload_quota_bytes: u64,
    /// Bytes of files one group's media library may hold in all.
    pub group_media_quota_bytes: u64,
    /// Unfinished uploads one user may have at once.
    pub max_unfinished_uploads: u64,
    /// Seconds an unfinished upload is kept after its last stored bytes; then it is deleted.
    pub upload_expiry_secs: u64,
    /// Seconds between two sweeps of expired unfinished uploads.
    pub upload_sweep_secs: u64,
    /// Seconds an upload request may wait for the next bytes of its body before it is ended
    /// (what arrived is kept; the client resumes from the offset).
    pub upload_idle_secs: u64,
    /// Lifetime of a signed file URL (`POST /v1/files/{id}/url`), seconds.
    pub file_url_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid literal address"),
            data: PathBuf::from("./chorus-data"),
            database: None,
            nats: None,
            nats_prefix: "chorus".into(),
            node_id: None,
            node_heartbeat_secs: 1,
            sqlite_synchronous: "full".into(),
            sqlite_cache_kib: 2000,
            malloc_arenas: 2,
            malloc_trim_secs: 60,
            admin_token: None,
            pin_key: None,
            pin_key_reset: false,
            public_url: None,
            smtp_host: None,
            smtp_port: 587,
            smtp_user: None,
            smtp_password: None,
            smtp_security: "starttls".into(),
            mail_from: "Chorus <chorus@localhost>".into(),
            token_ttl_secs: 30 * 24 * 3600,
            code_ttl_secs: 600,
            code_max_attempts: 5,
            code_request_interval_secs: 60,
            code_requests_per_identity: None,
            code_requests_per_ip: 600,
            code_failures_per_identity: 30,
            code_failures_per_identity_ip: 10,
            code_failure_window_secs: 24 * 3600,
            purge_interval_secs: 3600,
            pin_failures_per_user: 10,
            pin_failures_per_ip: 30,
            pin_failures_per_group: 200,
            rate_window_secs: 3600,
            trust_forwarded_for: false,
            cors_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            acme_domains: Vec::new(),
            acme_contact: None,
            acme_directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            acme_ca: None,
            webhook_urls: Vec::new(),
            webhook_secret: None,
            webhook_retry_max_secs: 300,
            webhook_give_up_secs: 3 * 24 * 3600,
            max_message_bytes: 16 * 1024,
            max_frame_bytes: 64 * 1024,
            max_body_bytes: 256 * 1024,
            max_group_members: 10_000,
            max_group_pins: 50,
            max_stream_keys: 10,
            live_requests_per_minute: 60,
            max_board_bytes: 256 * 1024,
            max_groups_per_user: 250,
            max_memberships_per_user: 1000,
            groups_created_per_hour: 100,
            pins_created_per_hour: 500,
            members_added_per_hour: 5000,
            calls_started_per_hour: 600,
            sends_per_second: 50,
            send_burst: 200,
            sync_limit: 5_000,
            presence_max_group: 200,
            presence_grace_secs: 3,
            session_queue: 4096,
            session_queue_bytes: 1024 * 1024,
            session_write_timeout_secs: 10,
            max_sessions_per_user: 16,
            session_frames_per_second: 100,
            session_frame_burst: 400,
            session_call_frames_per_second: 10,
            session_call_frame_burst: 200,
            max_connections: 10_000,
            http_idle_timeout_secs: 30,
            rtc_udp_port: 7882,
            rtc_tcp_port: 7881,
            rtc_tcp: true,
            rtc_bind_ip: None,
            public_ip: None,
            rtc_peer_timeout_secs: 10,
            rtc_connect_timeout_secs: 20,
            rtc_initial_bitrate_kbps: 1000,
            rtc_egress_threads: 0,
            call_event_queue: 1024,
            recording_max_secs: 4 * 3600,
            recording_max_bytes: 2 << 30,
            recording_queue: 8192,
            call_ring_timeout_secs: 45,
            rtc_tcp_max_connections: 1024,
            turn_udp_port: None,
            turn_tcp_port: None,
            turn_tls_port: None,
            turn_tls_cert: None,
            turn_tls_key: None,
            turn_host: None,
            turn_max_connections: 1024,
            turn_max_allocations: 1000,
            turn_secret: None,
            turn_public_ip: None,
            turn_credential_ttl_secs: 3600,
            media_store: "local".into(),
            media_sendfile: true,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            max_upload_bytes: 2 << 30,
            upload_quota_bytes: 20 << 30,
            group_media_quota_bytes: 10 << 30,
            max_unfinished_uploads: 10,
            upload_expiry_secs: 24 * 3600,
            upload_sweep_secs: 600,
            upload_idle_secs: 60,
            file_url_ttl_secs: 600,
        }
    }
}

impl Config {
    /// Loads defaults < `file` (if given) < `CHORUS_*` environment < `overrides`.
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            fig = fig.merge(Toml::file(file));
        }
        // Only variables naming a setting are read: CHORUS_CONFIG, CHORUS_LOG and
        // others (e.g. test harness variables) are not settings.
        let known: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        fig = fig
            .merge(Env::prefixed("CHORUS_").filter(move |k| known.iter().any(|n| k.as_str().eq_ignore_ascii_case(n))));
        fig = fig.merge(Serialized::defaults(overrides));
        let mut cfg: Config = fig.extract()?;
        if cfg.database.as_deref() == Some("") {
            cfg.database = None;
        }
        if cfg.nats.as_deref() == Some("") {
            cfg.nats = None;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(db) = &self.database {
            if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
                anyhow::bail!("database must be a postgres:// URL (or empty for SQLite), got {db:?}");
            }
        }
        if let Some(nats) = &self.nats {
            // The URL is not repeated: it may hold a password.
            if !nats.starts_with("nats://") {
                anyhow::bail!("nats must be a nats:// URL");
            }
            if self.database.is_none() {
                anyhow::bail!(
                    "cluster mode (nats) needs a PostgreSQL database: set database = \"postgres://…\" \
                     (the embedded SQLite store belongs to one node)"
                );
            }
        }
        let word = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !word(&self.nats_prefix) {
            anyhow::bail!("nats_prefix must be 1 to 64 letters, digits, '-' or '_', got {:?}", self.nats_prefix);
        }
        if let Some(id) = &self.node_id {
            if !word(id) {
                anyhow::bail!("node_id must be 1 to 64 letters, digits, '-' or '_', got {id:?}");
            }
        }
        if self.node_heartbeat_secs == 0 || self.node_heartbeat_secs > 60 {
            anyhow::bail!("node_heartbeat_secs must be 1 to 60");
        }
        if !matches!(self.sqlite_synchronous.as_str(), "full" | "normal") {
            anyhow::bail!("sqlite_synchronous must be full or normal");
        }
        if self.sqlite_cache_kib == 0 {
            anyhow::bail!("sqlite_cache_kib must be positive");
        }
        if !matches!(self.smtp_security.as_str(), "starttls" | "tls" | "none") {
            anyhow::bail!("smtp_security must be starttls, tls or none");
        }
        if self.code_max_attempts == 0 || self.sends_per_second == 0 || self.sync_limit == 0 || self.session_queue == 0
        {
            anyhow::bail!("code_max_attempts, sends_per_second, sync_limit and session_queue must be positive");
        }
        if self.session_queue_bytes == 0
            || self.session_write_timeout_secs == 0
            || self.max_sessions_per_user == 0
            || self.max_connections == 0
            || self.http_idle_timeout_secs == 0
        {
            anyhow::bail!(
                "session_queue_bytes, session_write_timeout_secs, max_sessions_per_user, max_connections and \
                 http_idle_timeout_secs must be positive"
            );
        }
        if self.code_failures_per_identity == 0
            || self.code_failures_per_identity_ip == 0
            || self.code_failure_window_secs == 0
            || self.purge_interval_secs == 0
        {
            anyhow::bail!(
                "code_failures_per_identity, code_failures_per_identity_ip, code_failure_window_secs and purge_interval_secs must be positive"
            );
        }
        if self.live_requests_per_minute == 0 {
            anyhow::bail!("live_requests_per_minute must be positive");
        }
        if self.rtc_peer_timeout_secs == 0 || self.rtc_connect_timeout_secs == 0 {
            anyhow::bail!("rtc_peer_timeout_secs and rtc_connect_timeout_secs must be positive");
        }
        if self.rtc_egress_threads > 1024 {
            anyhow::bail!("rtc_egress_threads must be at most 1024 (0: one per core)");
        }
        if !(50..=100_000).contains(&self.rtc_initial_bitrate_kbps) {
            anyhow::bail!("rtc_initial_bitrate_kbps must be between 50 and 100000");
        }
        if !(1..=3600).contains(&self.call_ring_timeout_secs) {
            anyhow::bail!("call_ring_timeout_secs must be between 1 and 3600");
        }
        if self.call_event_queue < 16 {
            anyhow::bail!("call_event_queue must be at least 16");
        }
        if self.recording_max_secs == 0 || self.recording_max_bytes < (1 << 20) || self.recording_queue < 64 {
            anyhow::bail!(
                "recording_max_secs must be positive, recording_max_bytes at least 1 MiB, recording_queue at least 64"
            );
        }
        if self.rtc_tcp_max_connections == 0 {
            anyhow::bail!("rtc_tcp_max_connections must be positive (set rtc_tcp = false to turn ICE-TCP off)");
        }
        if self.public_ip.is_some_and(|ip| ip.is_unspecified()) {
            anyhow::bail!(
                "public_ip must be an address clients can reach, not {}",
                self.public_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]))
            );
        }
        if self.turn_public_ip.is_some_and(|ip| ip.is_unspecified()) {
            anyhow::bail!("turn_public_ip must be an address clients can reach");
        }
        if self.turn_secret.as_deref().is_some_and(|s| !s.is_empty() && s.len() < 16) {
            anyhow::bail!("turn_secret must be at least 16 characters");
        }
        if !(60..=7 * 86_400).contains(&self.turn_credential_ttl_secs) {
            anyhow::bail!("turn_credential_ttl_secs must be between 60 and 604800");
        }
        for o in &self.cors_origins {
            check_origin_setting(o, self.cors_origins.len()).map_err(|e| anyhow::anyhow!("cors_origins: {e}"))?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together: set both for HTTPS, or neither");
        }
        if !self.acme_domains.is_empty() && self.tls_cert.is_some() {
            anyhow::bail!("acme_domains and tls_cert exclude each other: certificates come from ACME or from files");
        }
        for d in &self.acme_domains {
            let ok = d.len() <= 253
                && d.contains('.')
                && d.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                anyhow::bail!("acme_domains: {d:?} is not a DNS name (like chorus.example.com)");
            }
        }
        if !(self.acme_directory.starts_with("https://") && reqwest::Url::parse(&self.acme_directory).is_ok()) {
            anyhow::bail!("acme_directory must be an https:// URL");
        }
        if self.acme_contact.as_deref().is_some_and(|c| !c.contains('@') || c.contains(char::is_whitespace)) {
            anyhow::bail!("acme_contact must be an e-mail address");
        }
        if self.turn_tls_cert.is_some() != self.turn_tls_key.is_some() {
            anyhow::bail!("turn_tls_cert and turn_tls_key go together: set both, or neither");
        }
        if self.turn_tls_port.is_some() && self.turn_tls_cert.is_none() && self.tls_cert.is_none() {
            anyhow::bail!(
                "turn_tls_port needs a certificate: set turn_tls_cert and turn_tls_key (or tls_cert and tls_key)"
            );
        }
        if let Some(h) = &self.turn_host {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !ok {
                anyhow::bail!("turn_host must be a host name or an IP address, not {h:?}");
            }
        }
        if self.turn_max_connections == 0 || self.turn_max_allocations == 0 {
            anyhow::bail!("turn_max_connections and turn_max_allocations must be positive");
        }
        for u in &self.webhook_urls {
            let ok = (u.starts_with("http://") || u.starts_with("https://")) && reqwest::Url::parse(u).is_ok();
            if !ok {
                anyhow::bail!("webhook_urls: {u:?} is not an http:// or https:// URL");
            }
        }
        if let Some(secret) = &self.webhook_secret {
            webhook_secret_key(secret)?;
        }
        if self.webhook_retry_max_secs == 0 {
            anyhow::bail!("webhook_retry_max_secs must be positive");
        }
        match self.media_store.as_str() {
            "local" => {}
            "s3" if self.s3_bucket.as_deref().is_some_and(|b| !b.is_empty()) => {}
            "s3" => anyhow::bail!("media_store = \"s3\" needs s3_bucket"),
            _ => anyhow::bail!("media_store must be local or s3"),
        }
        if self.max_upload_bytes == 0 || self.upload_expiry_secs == 0 || self.upload_sweep_secs == 0 {
            anyhow::bail!("max_upload_bytes, upload_expiry_secs and upload_sweep_secs must be positive");
        }
        if self.upload_idle_secs == 0 || !(1..=7 * 86_400).contains(&self.file_url_ttl_secs) {
            anyhow::bail!("upload_idle_secs must be positive and file_url_ttl_secs between 1 and 604800");
        }
        if self.max_message_bytes > self.max_frame_bytes {
            anyhow::bail!("max_message_bytes must not exceed max_frame_bytes");
        }
        Ok(())
    }
}

/// `cors_origins`: a list (config file), or one string of comma- or space-separated origins
/// (an environment variable).
fn origin_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    Ok(items
        .iter()
        .flat_map(|s| s.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

/// Checks one `cors_origins` entry: `*` (alone), or `http(s)://host[:port]` exactly as a
/// browser sends it in `Origin` (no path, no trailing slash, no default port).
pub fn check_origin_setting(o: &str, entries: usize) -> Result<(), String> {
    if o == "*" {
        return if entries == 1 { Ok(()) } else { Err("\"*\" allows every origin and must be the only entry".into()) };
    }
    let bad = |why: &str| Err(format!("{o:?} is not an origin ({why}); write it as https://host or https://host:port"));
    let (scheme, rest) = match o.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => (s, r),
        _ => return bad("it must start with http:// or https://"),
    };
    if rest.is_empty() {
        return bad("no host");
    }
    if rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
        return bad("no path, query, user or trailing slash");
    }
    // Host, then an optional port (IPv6 literals are bracketed).
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if host.is_empty() {
        return bad("no host");
    }
    if let Some(port) = port {
        let Ok(n) = port.parse::<u16>() else { return bad("the port is not a number") };
        let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
        if n == default {
            return bad("browsers leave the default port out of Origin; leave it out here too");
        }
    }
    Ok(())
}

/// The HMAC key of a `whsec_<base64>` secret.
pub fn webhook_secret_key(secret: &str) -> anyhow::Result<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| anyhow::anyhow!("webhook_secret must be whsec_ followed by base64"))?;
    if key.len() < 24 {
        anyhow::bail!("webhook_secret must hold at least 24 bytes of key");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_threads_are_bounded() {
        let mut c = Config { rtc_egress_threads: 1025, ..Config::default() };
        let e = c.validate().expect_err("1025 egress threads").to_string();
        assert!(e.contains("rtc_egress_threads must be at most 1024"), "{e}");
        for ok in [0, 1, 1024] {
            c.rtc_egress_threads = ok;
            if let Err(e) = c.validate() {
                assert!(!e.to_string().contains("rtc_egress_threads"), "{ok}: {e}");
            }
        }
    }

    #[test]
    fn origin_settings() {
        for ok in ["https://app.example.com", "http://127.0.0.1:5173", "https://[::1]:8443", "http://localhost"] {
            assert_eq!(check_origin_setting(ok, 2), Ok(()), "{ok}");
        }
        assert_eq!(check_origin_setting("*", 1), Ok(()));
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com:443",
            "http://app.example.com:80",
            "https://app.example.com:x",
            "ftp://app.example.com",
            "https://",
            "https://user@app.example.com",
        ] {
            assert!(check_origin_setting(bad, 2).is_err(), "{bad}");
        }
    }
}
