//! The UDP datagrams of one room flush, sent in one system call per egress part.
//!
//! Each egress part of a room flush (`call::egress`: a forwarded packet to each of its
//! subscribers, their RTCP) and the room task (what the engine outputs itself: the publish legs'
//! RTCP, STUN, DTLS) gathers its UDP datagrams into a [`SendBatch`]: one byte buffer and
//! a list of *messages*. A run of same-size datagrams to one destination (a frame's packets to one
//! subscriber) is one message with a UDP GSO segment size, which the kernel cuts into datagrams;
//! any other datagram is a message of its own. [`SendBatch::send`] then hands every message of the
//! batch to the kernel in one `sendmmsg` (a second only past [`MAX_MSGS`], the kernel's limit per
//! call), so a packet forwarded to 24 subscribers costs one system call per part (one part per
//! core at most), not 24.
//!
//! Nothing here allocates once the buffers have grown to a flush's size: the byte buffer, the
//! message list and the kernel headers (addresses, iovecs, GSO control data) are kept and reused.
//! (str0m hands each datagram over in a `Vec` it allocated while encrypting it; that one is
//! str0m's, copied here and dropped at once, so the allocator gets the same block back for the
//! next packet.)
//!
//! Errors concern one message: a destination the kernel refuses is skipped and counted; a full
//! socket buffer drops the rest of the flush (media tolerates loss, a room task must never wait
//! on the socket); a GSO message that fails with `EIO`/`EINVAL` (a device without segmentation
//! offload) is reported so the caller stops using GSO.

use std::io;
use std::net::{SocketAddr, SocketAddrV6};

/// Most messages one `sendmmsg` takes (Linux's `UIO_MAXIOV`).
pub(crate) const MAX_MSGS: usize = 1024;

/// GSO sends are limited to 64 KiB.
const MAX_RUN_BYTES: usize = 65_000;

/// Outgoing UDP datagrams gathered while a room drains its peer connections (see the module doc).
#[derive(Default)]
pub(crate) struct SendBatch {
    buf: Vec<u8>,
    runs: Vec<Run>,
    #[cfg(target_os = "linux")]
    mmsg: sys::Headers,
}

/// One message: datagrams to one destination, all `segment` bytes long but the last.
#[derive(Debug, Clone, Copy)]
struct Run {
    destination: SocketAddr,
    segment: usize,
    start: usize,
    end: usize,
    /// The last datagram was shorter than `segment`: the run is closed.
    closed: bool,
}

impl Run {
    fn datagrams(&self) -> usize {
        (self.end - self.start).div_ceil(self.segment)
    }
}

/// What one [`SendBatch::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// System calls made (that sent or failed; a full buffer's refusal may not be one).
    pub calls: u64,
    /// Datagrams the kernel took.
    pub datagrams: u64,
    /// Datagrams dropped (refused destination, full socket buffer, failed GSO message).
    pub dropped: u64,
    /// A GSO message failed with `EIO`/`EINVAL`: stop using GSO on this socket.
    pub gso_failed: bool,
}

impl SendBatch {
    /// Adds one datagram; `max_segments` is how many datagrams one GSO message may carry (1: no
    /// GSO).
    pub fn push(&mut self, destination: SocketAddr, data: &[u8], max_segments: usize) {
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        let end = self.buf.len();
        if let Some(run) = self.runs.last_mut() {
            let fits = !run.closed
                && run.destination == destination
                && data.len() <= run.segment
                && (run.end - run.start) / run.segment < max_segments
                && end - run.start <= MAX_RUN_BYTES;
            if fits {
                run.end = end;
                run.closed = data.len() < run.segment;
                return;
            }
        }
        self.runs.push(Run { destination, segment: data.len().max(1), start, end, closed: false });
    }

    /// Nothing gathered.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Sends everything gathered and empties the batch. `sendmmsg` is the system call (given the
    /// headers of up to [`MAX_MSGS`] messages, it returns how many the kernel took, or the error
    /// of the first); `v6` says the socket is IPv6, so IPv4 destinations are written v4-mapped.
    #[cfg(target_os = "linux")]
    pub fn send(&mut self, v6: bool, mut sendmmsg: impl FnMut(&mut [libc::mmsghdr]) -> io::Result<usize>) -> Sent {
        let mut sent = Sent::default();
        self.mmsg.fill(&self.buf, &self.runs, v6);
        let hdrs = self.mmsg.headers();
        let mut at = 0;
        while at < hdrs.len() {
            let end = (at + MAX_MSGS).min(hdrs.len());
            match sendmmsg(&mut hdrs[at..end]) {
                Ok(n) if n > 0 => {
                    sent.calls += 1;
                    sent.datagrams += self.runs[at..at + n].iter().map(|r| r.datagrams() as u64).sum::<u64>();
                    at += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(_) => break, // took nothing without an error: never seen; drop the rest
                // (Possibly no system call: the runtime may know the socket is not writable.)
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // The first message failed: skip it, send the others.
                    sent.calls += 1;
                    let run = &self.runs[at];
                    if run.datagrams() > 1 && matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL)) {
                        sent.gso_failed = true;
                    }
                    tracing::trace!(error = %e, destination = %run.destination, "media send");
                    sent.dropped += run.datagrams() as u64;
                    at += 1;
                }
            }
        }
        sent.dropped += self.runs[at..].iter().map(|r| r.datagrams() as u64).sum::<u64>();
        self.clear();
        sent
    }

    /// Without `sendmmsg`: one system call per message, each through `send_one(destination,
    /// contents, segment_size)`.
    #[cfg(not(target_os = "linux"))]
    pub fn send_each(&mut self, mut send_one: impl FnMut(SocketAddr, &[u8], Option<usize>) -> io::Result<()>) -> Sent {
        let mut sent = Sent::default();
        for run in &self.runs {
            let n = run.datagrams();
            sent.calls += 1;
            match send_one(run.destination, &self.buf[run.start..run.end], (n > 1).then_some(run.segment)) {
                Ok(()) => sent.datagrams += n as u64,
                Err(_) => sent.dropped += n as u64,
            }
        }
        self.clear();
        sent
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.runs.clear();
    }
}

/// `addr` as the socket takes it: v4-mapped on an IPv6 socket.
fn socket_form(addr: SocketAddr, v6: bool) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if v6 => SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0)),
        a => a,
    }
}

/// The kernel's view of a batch: `mmsghdr`s pointing into the batch's buffer and into arrays of
/// addresses, iovecs and GSO control messages kept here for reuse.
#[cfg(target_os = "linux")]
mod sys {
    use super::{socket_form, Run};
    use socket2::SockAddr;

    /// Room for one control message carrying a `u16` (`CMSG_SPACE(2)` is 24 on 64-bit Linux).
    const CTRL_LEN: usize = 32;

    #[derive(Clone, Copy)]
    #[repr(C, align(8))]
    struct Ctrl([u8; CTRL_LEN]);

    #[derive(Default)]
    pub(super) struct Headers {
        hdrs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
        names: Vec<SockAddr>,
        ctrls: Vec<Ctrl>,
    }

    // SAFETY: the raw pointers in `hdrs` and `iovs` are rewritten by `fill` right before each
    // system call and never followed anywhere else; between calls they are plain stale values,
    // so moving the struct to another thread cannot make anything read through them.
    unsafe impl Send for Headers {}

    impl Headers {
        /// Points one header per run at `buf`, with its destination and, for a run of several
        /// datagrams, its GSO segment size.
        pub(super) fn fill(&mut self, buf: &[u8], runs: &[Run], v6: bool) {
            let n = runs.len();
            // Sized first: nothing below may reallocate what a header points into.
            self.names.clear();
            self.names.extend(runs.iter().map(|r| SockAddr::from(socket_form(r.destination, v6))));
            self.iovs.clear();
            self.iovs.extend(runs.iter().map(|r| libc::iovec {
                iov_base: buf[r.start..r.end].as_ptr() as *mut libc::c_void,
                iov_len: r.end - r.start,
            }));
            if self.ctrls.len() < n {
                self.ctrls.resize(n, Ctrl([0; CTRL_LEN]));
            }
            self.hdrs.clear();
            for (i, run) in runs.iter().enumerate() {
                // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths), and zeroing
                // covers the private padding fields some targets have.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = self.names[i].as_ptr() as *mut libc::c_void;
                h.msg_namelen = self.names[i].len();
                h.msg_iov = &mut self.iovs[i];
                h.msg_iovlen = 1;
                if run.datagrams() > 1 {
                    // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic; `space` fits `Ctrl` (asserted).
                    let (space, len) = unsafe { (libc::CMSG_SPACE(2) as usize, libc::CMSG_LEN(2) as usize) };
                    debug_assert!(space <= CTRL_LEN);
                    let ctrl = &mut self.ctrls[i].0;
                    ctrl.fill(0);
                    h.msg_control = ctrl.as_mut_ptr().cast();
                    h.msg_controllen = space as _;
                    // SAFETY: `h` points at an 8-aligned control buffer of `space` bytes, so
                    // CMSG_FIRSTHDR is non-null and the header and its 2 data bytes lie inside.
                    unsafe {
                        let c = libc::CMSG_FIRSTHDR(&h);
                        (*c).cmsg_level = libc::SOL_UDP;
                        (*c).cmsg_type = libc::UDP_SEGMENT;
                        (*c).cmsg_len = len as _;
                        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, run.segment as u16);
                    }
                }
                self.hdrs.push(libc::mmsghdr { msg_hdr: h, msg_len: 0 });
            }
        }

        pub(super) fn headers(&mut self) -> &mut [libc::mmsghdr] {
            &mut self.hdrs
        }
    }

    /// One `sendmmsg` on `fd`: how many of `hdrs` the kernel took, or the first one's error.
    pub(crate) fn sendmmsg(fd: std::os::fd::RawFd, hdrs: &mut [libc::mmsghdr]) -> std::io::Result<usize> {
        // SAFETY: `hdrs` were filled by `Headers::fill` from live buffers that outlive this call
        // (the batch is borrowed for its whole `send`); `len` is at most MAX_MSGS.
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, libc::MSG_DONTWAIT) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) use sys::sendmmsg;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_same_size_datagrams_per_destination() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let mut batch = SendBatch::default();
        for _ in 0..3 {
            batch.push(a, &[1; 1200], 64);
        }
        batch.push(a, &[2; 700], 64); // a shorter last segment closes the run
        batch.push(a, &[3; 1200], 64);
        batch.push(b, &[4; 1200], 64);
        batch.push(b, &[5; 1300], 64); // longer than the run's segment: a new run
        let runs: Vec<(SocketAddr, usize, usize)> =
            batch.runs.iter().map(|r| (r.destination, r.segment, r.end - r.start)).collect();
        assert_eq!(runs, vec![(a, 1200, 4300), (a, 1200, 1200), (b, 1200, 1200), (b, 1300, 1300)]);
        let mut limited = SendBatch::default();
        for _ in 0..5 {
            limited.push(a, &[0; 100], 2);
        }
        assert_eq!(limited.runs.len(), 3, "at most max_segments datagrams per run");
        let mut no_gso = SendBatch::default();
        for _ in 0..3 {
            no_gso.push(a, &[0; 100], 1);
        }
        assert_eq!(no_gso.runs.len(), 3, "without GSO every datagram is a message");
    }

    #[test]
    fn v4_destinations_are_mapped_on_an_ipv6_socket() {
        let a: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        assert_eq!(socket_form(a, false), a);
        assert_eq!(socket_form(a, true), "[::ffff:10.1.2.3]:5000".parse::<SocketAddr>().unwrap());
    }

    /// The batching logic without a socket: what each message handed to the "kernel" says, and
    /// how a refused message, a full buffer and the per-call limit are handled.
    #[cfg(target_os = "linux")]
    mod headers {
        use super::*;

        fn dest(h: &libc::mmsghdr) -> SocketAddr {
            // SAFETY: msg_name points at the SockAddr `fill` wrote, alive during `send`.
            let addr = unsafe {
                socket2::SockAddr::try_init(|storage, len| {
                    std::ptr::copy_nonoverlapping(
                        h.msg_hdr.msg_name as *const u8,
                        storage.cast::<u8>(),
                        h.msg_hdr.msg_namelen as usize,
                    );
                    *len = h.msg_hdr.msg_namelen;
                    Ok(())
                })
            };
            addr.unwrap().1.as_socket().unwrap()
        }

        fn segment(h: &libc::mmsghdr) -> Option<u16> {
            if h.msg_hdr.msg_control.is_null() {
                return None;
            }
            // SAFETY: the control buffer `fill` wrote: one UDP_SEGMENT message.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                assert_eq!(((*c).cmsg_level, (*c).cmsg_type), (libc::SOL_UDP, libc::UDP_SEGMENT));
                Some(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const u16))
            }
        }

        fn bytes(h: &libc::mmsghdr) -> usize {
            assert_eq!(h.msg_hdr.msg_iovlen, 1);
            // SAFETY: one iovec, written by `fill`.
            unsafe { (*h.msg_hdr.msg_iov).iov_len }
        }

        #[test]
        fn one_call_carries_every_destination_with_its_gso_size() {
            let subs: Vec<SocketAddr> = (0..24).map(|i| SocketAddr::from(([10, 0, 0, 1], 4000 + i))).collect();
            let mut batch = SendBatch::default();
            for (i, s) in subs.iter().enumerate() {
                let n = 1 + i % 3; // 1 to 3 packets of a frame to each subscriber
                for _ in 0..n {
                    batch.push(*s, &[7; 1100], 64);
                }
            }
            let mut calls = Vec::new();
            let sent = batch.send(false, |hdrs| {
                calls.push(hdrs.iter().map(|h| (dest(h), bytes(h), segment(h))).collect::<Vec<_>>());
                Ok(hdrs.len())
            });
            assert_eq!(calls.len(), 1, "one system call for the whole flush");
            let expected: Vec<_> = subs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let n = 1 + i % 3;
                    (*s, 1100 * n, (n > 1).then_some(1100))
                })
                .collect();
            assert_eq!(calls[0], expected);
            assert_eq!(sent, Sent { calls: 1, datagrams: 48, dropped: 0, gso_failed: false });
            assert!(batch.is_empty());
        }

        #[test]
        fn a_refused_message_is_skipped_and_a_full_buffer_drops_the_rest() {
            let mut batch = SendBatch::default();
            for i in 0..5u16 {
                batch.push(SocketAddr::from(([10, 0, 0, 1], 5000 + i)), &[0; 200], 64);
            }
            // The kernel takes two, refuses the third, takes one, then its buffer is full.
            let mut script = vec![
                Ok(2),
                Err(io::Error::from_raw_os_error(libc::EPERM)),
                Ok(1),
                Err(io::ErrorKind::WouldBlock.into()),
            ]
            .into_iter();
            let mut firsts = Vec::new();
            let sent = batch.send(false, |hdrs| {
                firsts.push(dest(&hdrs[0]).port());
                script.next().unwrap()
            });
            assert_eq!(firsts, vec![5000, 5002, 5003, 5004]);
            assert_eq!(sent, Sent { calls: 3, datagrams: 3, dropped: 2, gso_failed: false });
        }

        #[test]
        fn a_failed_gso_message_says_so() {
            let mut batch = SendBatch::default();
            let a = SocketAddr::from(([10, 0, 0, 1], 5000));
            batch.push(a, &[0; 1000], 64);
            batch.push(a, &[0; 1000], 64);
            let mut first = true;
            let sent = batch.send(false, |hdrs| {
                assert_eq!(hdrs.len(), 1);
                if std::mem::take(&mut first) {
                    Err(io::Error::from_raw_os_error(libc::EIO))
                } else {
                    Ok(1)
                }
            });
            assert_eq!(sent, Sent { calls: 1, datagrams: 0, dropped: 2, gso_failed: true });
        }

        #[test]
        fn past_the_kernel_limit_a_second_call_takes_the_rest() {
            let mut batch = SendBatch::default();
            let (a, b) = (SocketAddr::from(([10, 0, 0, 1], 1)), SocketAddr::from(([10, 0, 0, 2], 2)));
            for i in 0..MAX_MSGS + 10 {
                batch.push(if i % 2 == 0 { a } else { b }, &[0; 100], 64);
            }
            let mut sizes = Vec::new();
            let sent = batch.send(false, |hdrs| {
                sizes.push(hdrs.len());
                Ok(hdrs.len())
            });
            assert_eq!(sizes, vec![MAX_MSGS, 10]);
            assert_eq!(sent.datagrams, (MAX_MSGS + 10) as u64);
        }
    }
}
