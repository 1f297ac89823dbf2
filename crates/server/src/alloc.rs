//! The C allocator under the server (glibc's malloc on Linux with glibc; nothing here does
//! anything elsewhere).
//!
//! glibc gives threads separate malloc arenas, up to 8 per core, and an arena keeps memory
//! that was freed in it for later allocations in that arena. The server's threads come and go
//! (the SQLite connections' threads, tokio's blocking pool), each new one may take a fresh
//! arena, and what each arena keeps adds up: in the soak (bench/RESULTS.md, "Soak") a server
//! at 50 messages/s held 11 arenas of 2.4–9 MB and its RSS kept rising for an hour. With few
//! arenas, freed memory is reused across threads instead. Threads still allocate small blocks
//! without taking an arena's lock (glibc's per-thread cache), so two arenas cost little speed.
//!
//! Even with few arenas, memory freed in the middle of an arena stays in the process: glibc gives
//! back on its own only the free memory at the top of the main heap. In the 1-hour soak that
//! kept RSS creeping up by ~3 MiB an hour while the memory in use stayed flat. [`trim_every`]
//! calls `malloc_trim` on a timer, which hands every whole free page in every arena back to the
//! system (`madvise`); the chunks stay malloc's, so the next allocation there costs a page fault.
//!
//! [`heap`] reads what malloc holds, for `/metrics` (`chorus_heap_*`): memory in use against
//! memory malloc has taken from the system but keeps free — the difference between a leak and
//! an allocator that does not give memory back.

/// Caps glibc's malloc arenas at `max` (0: leave glibc's limit). Call before any thread starts.
/// Does nothing when `MALLOC_ARENA_MAX` is set in the environment (glibc has applied it) or when
/// the C library is not glibc. Returns whether the cap was set.
pub fn limit_arenas(max: u32) -> bool {
    if max == 0 || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    imp::limit_arenas(max)
}

/// Gives the whole pages malloc holds free back to the system, in every arena (glibc's
/// `malloc_trim(0)`). Returns whether any memory was released; false where it cannot (not glibc).
pub fn trim() -> bool {
    imp::trim()
}

/// Calls [`trim`] every `period`, on the blocking pool (it takes each arena's lock in turn,
/// for well under a millisecond per MiB held free).
pub async fn trim_every(period: std::time::Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

/// What the C allocator holds, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heap {
    /// Allocated and not freed (including blocks mmapped on their own).
    pub in_use: u64,
    /// Taken from the system and free: kept by malloc for later allocations.
    pub free: u64,
}

/// What the C allocator holds now; `None` where it cannot say (not glibc).
pub fn heap() -> Option<Heap> {
    imp::heap()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use super::Heap;

    pub fn limit_arenas(max: u32) -> bool {
        let max = libc::c_int::try_from(max).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a malloc parameter; M_ARENA_MAX takes any positive count.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, max) == 1 }
    }

    pub fn trim() -> bool {
        // SAFETY: malloc_trim only releases free memory; 0 keeps no padding at the top.
        unsafe { libc::malloc_trim(0) == 1 }
    }

    pub fn heap() -> Option<Heap> {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct (glibc 2.33+).
        let m = unsafe { libc::mallinfo2() };
        Some(Heap { in_use: (m.uordblks + m.hblkhd) as u64, free: m.fordblks as u64 })
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use super::Heap;

    pub fn limit_arenas(_max: u32) -> bool {
        false
    }

    pub fn trim() -> bool {
        false
    }

    pub fn heap() -> Option<Heap> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters move with a real allocation: 128 MiB allocated and touched shows in
    /// `in_use` while it lives and leaves it when freed (slack for other tests' threads).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn heap_counts_an_allocation() {
        let before = heap().expect("glibc").in_use;
        let block = std::hint::black_box(vec![1u8; 128 << 20]);
        let during = heap().expect("glibc").in_use;
        assert!(during >= before + (112 << 20), "{before} → {during}");
        drop(block);
        let after = heap().expect("glibc").in_use;
        assert!(after + (96 << 20) < during, "{during} → {after}");
    }

    /// Resident anonymous memory of this process, bytes (`RssAnon` in /proc/self/status).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn rss_anon() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("an RssAnon line");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number of kB");
        kib * 1024
    }

    /// Memory freed between blocks that stay allocated is not given back by `free` (it is not
    /// at the top of the heap); `trim` gives its pages back while malloc still counts it free.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_gives_back_memory_freed_between_live_blocks() {
        // 4,096 blocks of 48 KiB (below the mmap threshold, so they come from an arena), touched;
        // then every block but one in 16 freed: 180 MiB free in holes between live blocks.
        let mut blocks: Vec<Option<Vec<u8>>> = (0..4096).map(|_| Some(vec![1u8; 48 << 10])).collect();
        for (i, b) in blocks.iter_mut().enumerate() {
            if i % 16 != 0 {
                *b = None;
            }
        }
        let before = rss_anon();
        assert!(trim(), "malloc_trim released nothing");
        let after = rss_anon();
        // Slack for other tests' threads allocating meanwhile.
        assert!(after + (120 << 20) < before, "RssAnon {before} → {after}");
        std::hint::black_box(&blocks);
    }

    #[test]
    fn zero_leaves_the_limit() {
        assert!(!limit_arenas(0));
    }
}
