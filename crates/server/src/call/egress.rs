//! Runs the egress phase of every room flush on a pool of threads, one part per thread (see
//! `engine::egress` for what a part is), each part's UDP datagrams sent from the thread that
//! made them in one `sendmmsg`.
//!
//! The pool is rayon's, made once per process with `rtc_egress_threads` threads (named
//! `chorus-egress`). The room task's thread waits while the parts run; a flush with fewer than
//! two parts' worth of legs (`MIN_LEGS_PER_PART`) runs on it alone, with no hand-off.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rayon::prelude::*;

use super::batch::SendBatch;
use super::engine::{EgressPart, EgressRunner, MIN_LEGS_PER_PART};
use super::net::MediaNet;

/// The process's egress pool; `None` when `rtc_egress_threads` is 1.
fn pool(threads: usize) -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if threads < 2 {
            return None;
        }
        match rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|_| "chorus-egress".into()).build() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "no egress threads: calls drain their subscribers on one thread");
                None
            }
        }
    })
    .as_ref()
}

/// The room task's [`EgressRunner`].
pub(crate) struct Workers {
    net: Arc<MediaNet>,
    pool: Option<&'static rayon::ThreadPool>,
    /// One per part, kept for the next flush.
    batches: Vec<SendBatch>,
}

impl Workers {
    pub fn new(net: Arc<MediaNet>, threads: usize) -> Self {
        Workers { net, pool: pool(threads), batches: Vec::new() }
    }
}

impl EgressRunner for Workers {
    fn parts(&self, legs: usize) -> usize {
        self.pool.map_or(1, |p| p.current_num_threads().min(legs / MIN_LEGS_PER_PART).max(1))
    }

    fn run(&mut self, now: Instant, parts: &mut [EgressPart<'_>]) {
        if self.batches.len() < parts.len() {
            self.batches.resize_with(parts.len(), SendBatch::default);
        }
        let net = &*self.net;
        let segments = net.max_segments();
        let run = |(part, batch): (&mut EgressPart<'_>, &mut SendBatch)| {
            part.run(now);
            part.take_udp(|to, data| batch.push(to, data, segments));
            if !batch.is_empty() {
                net.send_batch(batch);
            }
        };
        let batches = &mut self.batches[..parts.len()];
        match self.pool {
            Some(pool) if parts.len() > 1 => {
                pool.install(|| parts.par_iter_mut().zip(batches.par_iter_mut()).for_each(run))
            }
            _ => parts.iter_mut().zip(batches.iter_mut()).for_each(run),
        }
    }
}
