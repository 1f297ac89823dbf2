//! Runs the egress phase of every room flush in parts at once (see `engine::egress` for what a
//! part is), each part's UDP datagrams sent from the thread that made them in one `sendmmsg`.
//!
//! A flush of `n` parts runs part 0 on the room task's own thread and hands the others to the
//! process's **crew**: `rtc_egress_threads - 1` threads (named `chorus-egress`) made once and
//! shared by every room. While the crew works, the room's thread runs its part, then takes back
//! any of its parts no crew thread has started (another room's flush may be keeping them busy),
//! then waits for the rest. A flush with fewer than two parts' worth of legs
//! (`MIN_LEGS_PER_PART`) runs on the room's thread alone, with no hand-off.
//!
//! Why not a general-purpose pool: a crew thread that finds no work sleeps at once. rayon's
//! workers yield ~32 times before they sleep, and a room flushes every few milliseconds, so they
//! yielded after every flush: ~12 % of the server's CPU in a 1 → 60 × 720p profile, with the
//! context switches each yield makes when another thread is runnable.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use super::batch::SendBatch;
use super::engine::{EgressPart, EgressRunner, MIN_LEGS_PER_PART};
use super::net::MediaNet;

/// The process's crew, made at the first flush that needs it; `None` when `rtc_egress_threads`
/// is 1 (or no thread could be made).
fn crew(threads: usize) -> Option<&'static Crew> {
    static CREW: OnceLock<Option<Crew>> = OnceLock::new();
    CREW.get_or_init(|| {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Crew::new(threads)
    })
    .as_ref()
}

/// The room task's [`EgressRunner`].
pub(crate) struct Workers {
    net: Arc<MediaNet>,
    crew: Option<&'static Crew>,
    /// One per part, kept for the next flush.
    batches: Vec<SendBatch>,
}

impl Workers {
    pub fn new(net: Arc<MediaNet>, threads: usize) -> Self {
        Workers { net, crew: crew(threads), batches: Vec::new() }
    }
}

impl EgressRunner for Workers {
    fn parts(&self, legs: usize) -> usize {
        self.crew.map_or(1, |c| c.parallelism().min(legs / MIN_LEGS_PER_PART).max(1))
    }

    fn run(&mut self, now: Instant, parts: &mut [EgressPart<'_>]) {
        if self.batches.len() < parts.len() {
            self.batches.resize_with(parts.len(), SendBatch::default);
        }
        let net = &*self.net;
        let segments = net.max_segments();
        let run = |part: &mut EgressPart<'_>, batch: &mut SendBatch| {
            part.run(now);
            part.take_udp(|to, data| batch.push(to, data, segments));
            if !batch.is_empty() {
                net.send_batch(batch);
            }
        };
        let batches = &mut self.batches[..parts.len()];
        match self.crew {
            Some(crew) if parts.len() > 1 => {
                // Each task takes its own part; the locks are never contended.
                let cells: Vec<Mutex<(&mut EgressPart<'_>, &mut SendBatch)>> =
                    parts.iter_mut().zip(batches.iter_mut()).map(Mutex::new).collect();
                crew.run(cells.len(), &|i| {
                    let mut cell = cells[i].lock().unwrap_or_else(PoisonError::into_inner);
                    let (part, batch) = &mut *cell;
                    run(part, batch)
                });
            }
            _ => parts.iter_mut().zip(batches.iter_mut()).for_each(|(p, b)| run(p, b)),
        }
    }
}

/// Threads that run parts of other threads' work and sleep as soon as there is none (see the
/// module doc).
pub(crate) struct Crew {
    shared: Arc<Shared>,
    /// Threads made.
    threads: usize,
}

struct Shared {
    queue: Mutex<VecDeque<Job>>,
    /// Signalled once per job queued.
    queued: Condvar,
}

/// One task of a [`Crew::run`]: `task(index)`, then `done` counted down.
struct Job {
    task: *const (dyn Fn(usize) + Sync + 'static),
    index: usize,
    done: *const Latch,
}

// SAFETY: `task` is `Sync` and `done` is a `Latch` (Mutex + Condvar): both may be used from any
// thread. They point into the stack of a `Crew::run` call, which does not return before every
// job pointing at its latch has run (see `Flight`).
unsafe impl Send for Job {}

impl Job {
    /// Runs the task and counts it done, a panic included (`run` reports it).
    ///
    /// # Safety
    /// The `Crew::run` call that made the job has not returned (it cannot while the job is
    /// queued or running).
    unsafe fn execute(self) {
        // SAFETY: per the function's contract, both pointees are alive.
        let (task, done) = unsafe { (&*self.task, &*self.done) };
        let ok = catch_unwind(AssertUnwindSafe(|| task(self.index))).is_ok();
        done.count_down(!ok);
    }
}

/// Counts the jobs of one `Crew::run` that are not done yet.
struct Latch {
    /// Jobs left, and whether one panicked.
    left: Mutex<(usize, bool)>,
    zero: Condvar,
}

impl Latch {
    fn count_down(&self, panicked: bool) {
        let mut left = lock(&self.left);
        left.0 -= 1;
        left.1 |= panicked;
        if left.0 == 0 {
            self.zero.notify_all();
        }
    }

    /// Waits until every job is done; returns whether one panicked.
    fn wait(&self) -> bool {
        let mut left = lock(&self.left);
        while left.0 > 0 {
            left = self.zero.wait(left).unwrap_or_else(PoisonError::into_inner);
        }
        left.1
    }
}

/// A lock that a panicking job cannot poison for the others: every lock here guards plain
/// counters and a queue, which no panic leaves half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The jobs one `Crew::run` queued. Dropping it (on return, or while unwinding from the
/// caller's own task) runs those no crew thread took and waits for the rest, so no job outlives
/// the call whose stack it points into.
struct Flight<'a> {
    shared: &'a Shared,
    latch: &'a Latch,
}

impl Flight<'_> {
    /// Takes back this flight's jobs still queued and runs them here; then waits for the others.
    /// Returns whether a job panicked.
    fn finish(&self) -> bool {
        loop {
            let job = {
                let mut queue = lock(&self.shared.queue);
                let mine = queue.iter().position(|j| std::ptr::eq(j.done, self.latch));
                mine.and_then(|i| queue.remove(i))
            };
            match job {
                // SAFETY: this flight's `Crew::run` is on the stack below us.
                Some(job) => unsafe { job.execute() },
                None => break,
            }
        }
        self.latch.wait()
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.finish();
        }
    }
}

impl Crew {
    /// A crew of `parallelism - 1` threads (the caller of `run` is the other); `None` below 2,
    /// or when no thread could be made.
    pub fn new(parallelism: usize) -> Option<Crew> {
        if parallelism < 2 {
            return None;
        }
        let shared = Arc::new(Shared { queue: Mutex::new(VecDeque::new()), queued: Condvar::new() });
        let mut threads = 0;
        for _ in 1..parallelism {
            let shared = shared.clone();
            match std::thread::Builder::new().name("chorus-egress".into()).spawn(move || work(&shared)) {
                Ok(_) => threads += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "fewer egress threads: a thread could not be made");
                    break;
                }
            }
        }
        (threads > 0).then_some(Crew { shared, threads })
    }

    /// Threads a `run` may use at once: the crew's and the caller's.
    pub fn parallelism(&self) -> usize {
        self.threads + 1
    }

    /// Runs `task(0)`, …, `task(n - 1)` and returns when all have: `task(0)` on the caller's
    /// thread, the others on the crew (or on the caller's thread, those no crew thread has
    /// started when `task(0)` is done). A panic in any of them panics here, after all are done.
    pub fn run(&self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        if n == 0 {
            return;
        }
        let latch = Latch { left: Mutex::new((n - 1, false)), zero: Condvar::new() };
        // SAFETY: only the lifetime is erased. The jobs holding this pointer all run before
        // this call returns or unwinds: `flight` finishes them on either path.
        let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(task) };
        let flight = Flight { shared: &self.shared, latch: &latch };
        if n > 1 {
            let mut queue = lock(&self.shared.queue);
            queue.extend((1..n).map(|index| Job { task: erased, index, done: &latch }));
        }
        for _ in 1..n {
            self.shared.queued.notify_one();
        }
        task(0);
        if flight.finish() {
            panic!("an egress part panicked on a crew thread");
        }
    }
}

/// A crew thread: runs queued jobs, sleeps while there are none.
fn work(shared: &Shared) {
    loop {
        let job = {
            let mut queue = lock(&shared.queue);
            loop {
                match queue.pop_front() {
                    Some(job) => break job,
                    None => queue = shared.queued.wait(queue).unwrap_or_else(PoisonError::into_inner),
                }
            }
        };
        // SAFETY: the job's `Crew::run` waits for it (its latch counts it until `execute` ends).
        unsafe { job.execute() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once_and_the_caller_runs_the_first() {
        let crew = Crew::new(3).expect("a crew");
        assert_eq!(crew.parallelism(), 3);
        let caller = std::thread::current().id();
        for n in [0, 1, 2, 3, 7, 40] {
            let runs: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            let first_here = AtomicUsize::new(0);
            crew.run(n, &|i| {
                runs[i].fetch_add(1, Ordering::SeqCst);
                if i == 0 && std::thread::current().id() == caller {
                    first_here.fetch_add(1, Ordering::SeqCst);
                }
            });
            assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1), "{n} tasks: each runs once");
            assert_eq!(first_here.load(Ordering::SeqCst), usize::from(n > 0), "{n} tasks: task 0 on the caller");
        }
    }

    /// Several rooms flush at once through one crew: every task of each runs, each `run`
    /// returning only after its own tasks, even when the crew is busy with the others'.
    #[test]
    fn rooms_share_the_crew() {
        let crew = Arc::new(Crew::new(2).expect("a crew"));
        let total = Arc::new(AtomicUsize::new(0));
        let rooms: Vec<_> = (0..4)
            .map(|_| {
                let (crew, total) = (crew.clone(), total.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let done: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
                        crew.run(4, &|i| {
                            std::hint::black_box((0..200).sum::<u64>());
                            done[i].store(1, Ordering::SeqCst);
                        });
                        assert!(done.iter().all(|d| d.load(Ordering::SeqCst) == 1));
                        total.fetch_add(4, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for r in rooms {
            r.join().expect("a room thread");
        }
        assert_eq!(total.load(Ordering::SeqCst), 4 * 200 * 4);
    }

    /// A task that panics on a crew thread fails the `run` (after the others are done) and
    /// leaves the crew working; one that panics on the caller's thread waits for the others
    /// before the panic goes on.
    #[test]
    fn a_panicking_part_fails_its_run_only() {
        let crew = Crew::new(2).expect("a crew");
        let ran = AtomicUsize::new(0);
        for bad in [0, 1, 2] {
            ran.store(0, Ordering::SeqCst);
            let r = catch_unwind(AssertUnwindSafe(|| {
                crew.run(3, &|i| {
                    if i == bad {
                        panic!("part {i} fails");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    ran.fetch_add(1, Ordering::SeqCst);
                })
            }));
            assert!(r.is_err(), "part {bad} panicked: the run fails");
            assert_eq!(ran.load(Ordering::SeqCst), 2, "part {bad} panicked: the others ran to the end first");
        }
        let ok = AtomicUsize::new(0);
        crew.run(3, &|_| {
            ok.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ok.load(Ordering::SeqCst), 3, "the crew works after a panic");
    }
}
