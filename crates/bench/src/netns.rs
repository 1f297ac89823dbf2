//! A network namespace of the benchmark's own, so both SFUs see the same network: a loopback
//! and a veth pair with a private address on one end (a veth, not a `dummy`, because not
//! every kernel has the dummy module). Janus (libnice) gathers no ICE candidates
//! on `lo`, so media must use an address on another interface; nothing in the namespace can
//! reach outside it, and nothing outside can reach in.
//!
//! The SFU scenarios run in a child process started inside the namespace
//! (`ip netns exec`), servers and load generator alike. Making and deleting the namespace is
//! `chorus-netns`'s, shared with the bad-network tests.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::Context;
use chorus_netns::Namespace;

/// The environment variable that tells a child it runs inside the namespace, holding the
/// address of [`IFACE`].
pub const INSIDE_ENV: &str = "CHORUS_BENCH_NETNS_ADDR";

/// The name of the veth end that holds the address.
pub const IFACE: &str = "bench0";

/// A namespace that exists until dropped.
pub struct NetNs {
    /// The namespace (`chorus-bench-<pid>`), deleted when dropped.
    pub ns: Namespace,
    /// The address of [`IFACE`].
    pub addr: Ipv4Addr,
}

impl NetNs {
    /// Creates `chorus-bench-<pid>` with `lo` up and a veth pair [`IFACE`]–`bench1`, both ends
    /// inside, [`IFACE`] at 198.18.0.1/24: in 198.18.0.0/15, the range reserved for benchmarks
    /// (RFC 2544). Traffic between local addresses goes over the namespace's loopback, as on the
    /// host.
    /// Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
    pub fn create() -> anyhow::Result<NetNs> {
        let addr = Ipv4Addr::new(198, 18, 0, 1);
        let ns = Namespace::create(&format!("chorus-bench-{}", std::process::id()))
            .context("creating a network namespace (run as root)")?;
        ns.ip(&["link", "add", IFACE, "type", "veth", "peer", "name", "bench1"])?;
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", IFACE])?;
        ns.ip(&["link", "set", IFACE, "up"])?;
        ns.ip(&["link", "set", "bench1", "up"])?;
        Ok(NetNs { ns, addr })
    }

    /// `program` to be run inside the namespace, told so by [`INSIDE_ENV`].
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns.name]).arg(program).env(INSIDE_ENV, self.addr.to_string());
        c
    }

    /// The address of [`IFACE`], if this process runs inside a benchmark namespace.
    pub fn inside() -> Option<Ipv4Addr> {
        std::env::var(INSIDE_ENV).ok()?.parse().ok()
    }
}
