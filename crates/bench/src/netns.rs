//! A network namespace of the benchmark's own, so both SFUs see the same network: a loopback
//! and a veth pair with a private address on one end (a veth, not a `dummy`, because not
//! every kernel has the dummy module). Janus (libnice) gathers no ICE candidates
//! on `lo`, so media must use an address on another interface; nothing in the namespace can
//! reach outside it, and nothing outside can reach in.
//!
//! The SFU scenarios run in a child process started inside the namespace
//! (`ip netns exec`), servers and load generator alike.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context};

/// The environment variable that tells a child it runs inside the namespace, holding the
/// address of [`IFACE`].
pub const INSIDE_ENV: &str = "CHORUS_BENCH_NETNS_ADDR";

/// The name of the veth end that holds the address.
pub const IFACE: &str = "bench0";

/// A namespace that exists until dropped.
pub struct NetNs {
    /// Its name (`chorus-bench-<pid>`).
    pub name: String,
    /// The address of [`IFACE`].
    pub addr: Ipv4Addr,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl NetNs {
    /// Creates `chorus-bench-<pid>` with `lo` up and a veth pair [`IFACE`]–`bench1`, both ends
    /// inside, [`IFACE`] at 198.18.0.1/24: in 198.18.0.0/15, the range reserved for benchmarks
    /// (RFC 2544). Traffic between local addresses goes over the namespace's loopback, as on the
    /// host.
    /// Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
    pub fn create() -> anyhow::Result<NetNs> {
        let name = format!("chorus-bench-{}", std::process::id());
        let addr = Ipv4Addr::new(198, 18, 0, 1);
        ip(&["netns", "add", &name]).context("creating a network namespace (run as root)")?;
        let ns = NetNs { name, addr };
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&["-n", n, "link", "add", IFACE, "type", "veth", "peer", "name", "bench1"])?;
        ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", IFACE])?;
        ip(&["-n", n, "link", "set", IFACE, "up"])?;
        ip(&["-n", n, "link", "set", "bench1", "up"])?;
        Ok(ns)
    }

    /// `program` to be run inside the namespace, told so by [`INSIDE_ENV`].
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program).env(INSIDE_ENV, self.addr.to_string());
        c
    }

    /// The address of [`IFACE`], if this process runs inside a benchmark namespace.
    pub fn inside() -> Option<Ipv4Addr> {
        std::env::var(INSIDE_ENV).ok()?.parse().ok()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
