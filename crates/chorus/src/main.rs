//! The `chorus` binary: `chorus serve` runs the whole server; `chorus admin …` reads a running
//! server's admin view (nodes, calls, users, groups, webhook deliveries) from a shell.

mod admin;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Parser)]
#[command(name = "chorus", version, about = "Self-hosted messaging, group calls and streaming")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP, WebSocket, store).
    Serve(ServeArgs),
    /// Show what a running server is doing (its `/admin` API, with the admin token).
    Admin(admin::AdminArgs),
}

/// Flags override the config file and `CHORUS_*` variables.
#[derive(clap::Args, Serialize)]
struct ServeArgs {
    /// Config file (TOML). Also `CHORUS_CONFIG`.
    #[arg(long, env = "CHORUS_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Data directory [default: ./chorus-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    /// `nats://…` of the NATS server joining several nodes into one deployment (cluster mode;
    /// needs `--database postgres://…`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    nats: Option<String>,
    /// Address advertised to WebRTC clients (behind NAT: the public IP) [default: the bind address].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    public_ip: Option<IpAddr>,
    /// UDP port for all call media; 0 picks a free one [default: 7882].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rtc_udp_port: Option<u16>,
    /// TCP port for ICE-TCP; 0 picks a free one [default: 7881].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rtc_tcp_port: Option<u16>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    match cli.command {
        Command::Serve(args) => {
            let cfg = chorus_server::config::Config::load(args.config.as_deref(), &args)?;
            // Before the runtime starts its threads, so they share the arenas.
            chorus_server::alloc::limit_arenas(cfg.malloc_arenas);
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(chorus_server::serve(cfg))
        }
        Command::Admin(args) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(admin::run(args))
        }
    }
}
