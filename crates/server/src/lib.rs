//! The Chorus server.
//!
//! `serve` wires the pieces together: the store ([`db`]), the services that
//! own its tables ([`accounts`], [`groups`], [`boards`], [`messaging`], [`presence`]), the
//! fan-out bus ([`bus`]), uploads and files ([`media`]) and the HTTP edge ([`http`]). See ARCHITECTURE.md
//! for the map and the invariants each module keeps.

pub mod accounts;
pub mod alloc;
pub mod auth_token;
pub mod boards;
pub mod bus;
pub mod call;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod db;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod groups;
pub mod http;
pub mod limiter;
pub mod live;
pub mod mail;
pub mod media;
pub mod messaging;
pub mod metrics;
pub mod pin_key;
pub mod presence;
pub mod quota;
pub mod record;
pub mod secrets;
pub mod turn;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;

/// The admin token: the `admin_token` setting, else `DATA/admin-token`, else one generated
/// there (see [`secrets`]). At least 16 characters.
pub fn admin_token(cfg: &Config) -> anyhow::Result<String> {
    let (token, source) =
        secrets::load(&cfg.data, cfg.admin_token.as_deref(), "admin-token", "an admin token", || {
            auth_token::random_token(32)
        })?;
    if token.len() < 16 {
        match source {
            secrets::Source::Setting => anyhow::bail!("admin_token must be at least 16 characters"),
            secrets::Source::File(p) => anyhow::bail!("{} must hold at least 16 characters", p.display()),
        }
    }
    Ok(token)
}

/// The webhook signing key when `webhook_urls` is set: from `webhook_secret`, else from
/// `DATA/webhook-secret`, else a new `whsec_` secret generated there (see [`secrets`]; receivers
/// need it to check signatures).
pub fn webhook_key(cfg: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    if cfg.webhook_urls.is_empty() {
        return Ok(None);
    }
    let (secret, _) =
        secrets::load(&cfg.data, cfg.webhook_secret.as_deref(), "webhook-secret", "a webhook signing secret", || {
            use base64::Engine;
            let key: [u8; 32] = rand::random();
            format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
        })?;
    config::webhook_secret_key(&secret).map(Some)
}

/// Creates `dir` (and its parents) if missing and makes it private (0700): the data
/// directory and the outbox hold the database, the admin token and login codes.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    set_mode(dir, 0o700);
    Ok(())
}

/// Makes an existing file private (0600). A file this user may not change is reported in the
/// log, not fatal: the operator may manage modes themselves.
pub fn private_file(path: &Path) {
    set_mode(path, 0o600);
}

/// Makes every file directly in `dir` private (0600).
pub fn private_files_in(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                private_file(&e.path());
            }
        }
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let current = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) => return tracing::warn!(path = %path.display(), error = %e, "cannot check the mode"),
    };
    if current != mode {
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => {
                tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{mode:o}"), "made private")
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot make it private (mode {mode:o})"),
        }
    }
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) {}

/// Builds every service and the HTTP application for `cfg`.
pub async fn build(cfg: Config) -> anyhow::Result<axum::Router> {
    Ok(build_app(cfg).await?.router)
}

/// The built server: the HTTP application, and where call media is received.
pub struct App {
    /// REST, WebSocket and adapters.
    pub router: axum::Router,
    /// The UDP media address advertised to clients.
    pub media_udp: SocketAddr,
    /// The ICE-TCP address advertised to clients, if ICE-TCP is on.
    pub media_tcp: Option<SocketAddr>,
    /// Where the embedded TURN relay listens, if it runs.
    pub turn: Option<turn::Listening>,
    /// Cluster mode: what a drain (SIGTERM) hands on to the other nodes.
    pub cluster: Option<(Arc<cluster::Cluster>, Arc<cluster::calls::CallRouter>)>,
}

/// Builds every service, the HTTP application and the media sockets for `cfg`.
pub async fn build_app(cfg: Config) -> anyhow::Result<App> {
    let cfg = Arc::new(cfg);
    if cfg.code_requests_per_identity.is_some() {
        tracing::warn!("code_requests_per_identity is deprecated and ignored; see code_request_interval_secs");
    }
    let admin = admin_token(&cfg)?;
    let db = db::Db::open(cfg.database.as_deref(), &cfg.data, &cfg.sqlite_synchronous, cfg.sqlite_cache_kib).await?;
    tracing::info!(backend = ?db.backend, epoch = %db.epoch, "store ready");
    let mailer = mail::Mailer::from_config(&cfg)?;
    let node_id: Arc<str> =
        cfg.node_id.clone().unwrap_or_else(|| format!("{:012x}", rand::random::<u64>() >> 16)).into();
    // Cluster mode: the bus reaches every node's sessions over NATS (an unreachable NATS stops the start).
    let cluster = match &cfg.nats {
        Some(_) => Some(cluster::Cluster::start(&cfg, node_id.to_string()).await?),
        None => None,
    };
    let bus: Arc<dyn bus::FanOut> = match &cluster {
        Some(c) => c.clone(),
        None => Arc::new(bus::LocalBus::default()),
    };
    let accounts = Arc::new(accounts::Accounts::new(db.clone(), cfg.clone(), mailer, bus.clone()));
    let (pin_key, pin_key_source) = pin_key::load(&cfg)?;
    let groups = Arc::new(groups::Groups::new(db.clone(), cfg.clone(), bus.clone(), Arc::new(pin_key)));
    groups.prepare_pins(&pin_key_source).await?;
    let boards = Arc::new(boards::Boards::new(db.clone(), cfg.clone(), groups.clone(), bus.clone()));
    let hooks = webhooks::Webhooks::start(db.clone(), cfg.clone(), webhook_key(&cfg)?);
    let media = media::Media::start(db.clone(), cfg.clone(), groups.clone(), bus.clone(), hooks.clone())?;
    let messaging = messaging::Messaging::start(
        db.clone(),
        cfg.clone(),
        groups.clone(),
        accounts.clone(),
        bus,
        hooks.clone(),
        media.clone(),
    );
    let presence = presence::Presence::new(messaging.clone(), Duration::from_secs(cfg.presence_grace_secs));
    let calls = call::Calls::start(cfg.clone(), groups.clone(), hooks.clone(), Some(media.clone())).await?;
    // Recordings a killed server left behind go to their groups' libraries now.
    tokio::spawn(record::publish::recover(media.clone(), cfg.data.join("recordings")));
    let (media_udp, media_tcp) = calls.media_addresses();
    // The relay reaches Chorus's media socket and nothing else (ARCHITECTURE.md: never an open relay).
    let mut relay_peers = vec![media_udp];
    let udp_local = calls.media_udp_local();
    if !udp_local.ip().is_unspecified() && udp_local != media_udp {
        relay_peers.push(udp_local);
    }
    let turn = crate::turn::start(&cfg, relay_peers).await?;
    let turn_listening = turn.as_ref().map(|t| t.listening);
    if let Some(t) = turn {
        calls.set_turn(t);
    }
    if let Some(c) = &cluster {
        // Writer batches of every node reach the local sessions in position order from here.
        let head = messaging.head().await.map_err(|e| anyhow::anyhow!("reading the stream position: {}", e.message))?;
        c.start_at(head);
        let (cfg, calls, id) = (cfg.clone(), Arc::downgrade(&calls), node_id.clone());
        c.set_info(move || http::admin::this_node(&cfg, calls.upgrade().as_deref(), &id));
    }
    let next_session = Arc::new(AtomicU64::new(0));
    let (call_router, forward) = match &cluster {
        Some(c) => {
            let router = cluster::calls::CallRouter::start(
                c.clone(),
                db.clone(),
                &calls,
                next_session.clone(),
                cfg.call_event_queue,
            )
            .await?;
            let forward = cluster::forward::HttpForward::start(c.clone()).await?;
            let (r, f, p, weak) =
                (Arc::downgrade(&router), Arc::downgrade(&forward), Arc::downgrade(&presence), Arc::downgrade(c));
            c.on_gone(move |node, users| {
                r.upgrade().into_iter().for_each(|r| r.node_gone(node));
                f.upgrade().into_iter().for_each(|f| f.node_gone(node));
                // One node (the lowest id alive) announces the gone node's users offline.
                if let (Some(p), true) = (p.upgrade(), weak.upgrade().is_some_and(|c| c.speaks_for_cluster())) {
                    p.node_gone(users);
                }
            });
            (Some(router), Some(forward))
        }
        None => (None, None),
    };
    let direct =
        call::direct::DirectCalls::start(&cfg, messaging.clone(), calls.clone(), call_router.clone(), node_id.clone());
    // In a cluster a WHIP/WHEP session's id names its node, so any node can send its PATCH and
    // DELETE there (http::forward).
    let session_prefix = cluster.as_ref().map(|_| format!("{node_id}."));
    let live =
        Arc::new(live::Live::new(&cfg, db.clone(), calls.clone(), groups.clone(), accounts.clone(), session_prefix));
    if let Some(c) = &cluster {
        let (g, m, a) = (Arc::downgrade(&groups), Arc::downgrade(&media), Arc::downgrade(&accounts));
        let l = Arc::downgrade(&live);
        c.on_invalidate(move |what| match what {
            bus::Invalidation::Group(gid) => g.upgrade().into_iter().for_each(|g| g.changed_elsewhere(*gid)),
            bus::Invalidation::File(id) => m.upgrade().into_iter().for_each(|m| m.forget_file(id)),
            bus::Invalidation::AllFiles => m.upgrade().into_iter().for_each(|m| m.forget_kept_files()),
            bus::Invalidation::Addresses => a.upgrade().into_iter().for_each(|a| a.users_changed_elsewhere()),
            bus::Invalidation::StreamKey(id) => l.upgrade().into_iter().for_each(|l| l.end_key(*id)),
        });
    }
    let drain = cluster.clone().zip(call_router.clone());
    let state = http::AppState {
        direct,
        live,
        cfg,
        accounts,
        groups,
        boards,
        messaging,
        presence,
        calls,
        webhooks: hooks,
        admin_token: admin.into(),
        next_session,
        epoch: db.epoch.clone().into(),
        tickets: Arc::new(match &cluster {
            Some(_) => http::ticket::Tickets::with_prefix(format!("{node_id}.")),
            None => http::ticket::Tickets::default(),
        }),
        media,
        node_id,
        cluster,
        call_router,
        forward: forward.clone(),
    };
    let router = http::router(state);
    if let Some(f) = forward {
        f.set_app(router.clone());
    }
    Ok(App { router, media_udp, media_tcp, turn: turn_listening, cluster: drain })
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). The default
/// of `TcpListener::bind` is 128: when every client reconnects at once (a network blip, a
/// restart) SYNs past that are dropped and retried after a second (chorus-bench's reconnect
/// storm saw it with 500 clients).
const LISTEN_BACKLOG: u32 = 4096;

pub(crate) fn listen_on(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Runs the server until ctrl-c / SIGTERM.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    http::admin::mark_started();
    let listen = cfg.listen;
    let limits = http::server::Limits {
        max_connections: cfg.max_connections,
        idle: Duration::from_secs(cfg.http_idle_timeout_secs),
        sendfile: cfg.media_sendfile,
    };
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(http::server::tls_acceptor(cert, key, &[b"http/1.1"])?),
        _ if !cfg.acme_domains.is_empty() => Some(http::acme::acceptor(&cfg)?),
        _ => None,
    };
    if cfg.malloc_trim_secs > 0 {
        tokio::spawn(alloc::trim_every(Duration::from_secs(cfg.malloc_trim_secs)));
    }
    let App { router: app, media_udp, media_tcp, turn, cluster } = build_app(cfg).await?;
    let listener = listen_on(listen)?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    http::admin::mark_listening(format!("{scheme}://{local}"));
    tracing::info!(%local, "chorus listening");
    match media_tcp {
        Some(tcp) => println!("Chorus media on udp {media_udp} and tcp {tcp}"),
        None => println!("Chorus media on udp {media_udp}"),
    }
    if let Some(t) = turn {
        let on = [("udp", t.udp), ("tcp", t.tcp), ("tls", t.tls)];
        let on: Vec<String> = on.iter().filter_map(|(p, a)| a.map(|a| format!("{p} {a}"))).collect();
        println!("Chorus TURN on {}", on.join(", "));
    }
    println!("Chorus listening on {scheme}://{local}");
    http::server::run(listener, app, limits, tls, shutdown()).await?;
    if let Some((cluster, router)) = cluster {
        drain(&cluster, &router).await;
    }
    Ok(())
}

/// A cluster node's drain, once it stopped accepting connections: its calls move to other
/// nodes and its clients reconnect to them. The node forgets which calls it holds, tells the
/// other nodes it is gone (their sessions in its calls rejoin, placed elsewhere), then ends its
/// own sessions with close code 4000 (reconnect, through the load balancer, and resume; a
/// session in a call rejoins it on another node).
async fn drain(cluster: &cluster::Cluster, router: &cluster::calls::CallRouter) {
    tracing::info!("draining: handing calls and sessions to the other nodes");
    router.release_all().await;
    cluster.leave().await;
    cluster.end_sessions();
    // The sessions' close frames, and the `Leave`s of their calls on other nodes, go out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tracing::info!("drained");
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
