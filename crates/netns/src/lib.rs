//! Network namespaces and TUN devices, shared by the benchmark (`chorus-bench`, which re-runs
//! itself inside a namespace) and the bad-network tests (`crates/chorus/tests/bad_networks.rs`,
//! which put a client inside one behind an emulated link).
//!
//! Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and Linux, and uses only
//! addresses the caller picks (the callers use 198.18.0.0/15, the range RFC 2544 reserves for
//! benchmarks). A [`Namespace`] is deleted when dropped; a [`Tun`] device disappears when its
//! file descriptor closes, so a crashed test leaves no interface behind in the host's namespace.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

/// Runs `ip ARGS` (iproute2); its stderr becomes the error.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A network namespace (`ip netns add NAME`) with its loopback up; deleted when dropped.
pub struct Namespace {
    /// Its name, under `/var/run/netns`.
    pub name: String,
}

impl Namespace {
    /// Creates namespace `name` and brings its `lo` up. Needs root.
    pub fn create(name: &str) -> anyhow::Result<Namespace> {
        ip(&["netns", "add", name]).with_context(|| {
            format!("creating network namespace {name} (needs root: CAP_NET_ADMIN and CAP_SYS_ADMIN)")
        })?;
        let ns = Namespace { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `ip -n NAME ARGS`: `ip` acting inside the namespace.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Moves the calling thread into the namespace (`setns`): sockets and devices it creates
    /// from now on belong to it. Other threads of the process are not affected, and a socket
    /// keeps its namespace for life, whichever thread uses it later.
    pub fn enter(&self) -> anyhow::Result<()> {
        let path = format!("/var/run/netns/{}", self.name);
        let f = File::open(&path).with_context(|| format!("opening {path}"))?;
        // SAFETY: a plain system call on a descriptor that stays open for its duration.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setns into the namespace");
        }
        Ok(())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A layer-3 TUN device (`IFF_TUN | IFF_NO_PI`: each read or write is one IP packet), in the
/// namespace of the thread that opened it. It exists as long as this value.
pub struct Tun {
    fd: OwnedFd,
    /// The interface's name.
    pub name: String,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

impl Tun {
    /// Creates TUN interface `name` (at most 15 bytes) in the calling thread's namespace; it is
    /// down and has no address until set with `ip`.
    pub fn open(name: &str) -> anyhow::Result<Tun> {
        if name.len() >= libc::IFNAMSIZ {
            bail!("interface name {name} is too long");
        }
        let dev = CString::new("/dev/net/tun").expect("no NUL");
        // SAFETY: opening a path given as a NUL-terminated string.
        let raw = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("opening /dev/net/tun (needs root)");
        }
        // SAFETY: `raw` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // struct ifreq: the name, then a union whose first member here is `short ifr_flags`.
        let mut req = [0u8; 40];
        req[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        req[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is large enough for.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, req.as_mut_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("creating TUN device {name}"));
        }
        Ok(Tun { fd, name: name.to_string() })
    }

    /// Reads one packet into `buf`, waiting at most `timeout`; `Ok(None)` when none came.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> std::io::Result<Option<usize>> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted { Ok(None) } else { Err(e) };
        }
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: reading into a buffer of the given length.
        let got = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Some(got as usize))
    }

    /// Writes one packet (the kernel takes it as received on the interface).
    pub fn send(&self, packet: &[u8]) -> std::io::Result<()> {
        // SAFETY: writing from a buffer of the given length.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
