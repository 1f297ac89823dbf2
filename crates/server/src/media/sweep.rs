//! The sweep: every `upload_sweep_secs` (and at start) it deletes the unfinished uploads past
//! their expiry, row first and then bytes. An upload a request is writing to is left for the
//! next round (its lock is held); an append that ends after its row was swept deletes its
//! own part (see `Media::append`).

use std::sync::Weak;
use std::time::Duration;

use super::Media;
use crate::clock::now_ms;

/// Uploads deleted per database round trip.
const BATCH: i64 = 100;

pub(super) async fn run(media: Weak<Media>) {
    let every = match media.upgrade() {
        Some(m) => Duration::from_secs(m.cfg.upload_sweep_secs),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(m) = media.upgrade() else { return };
        match sweep(&m).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "deleted expired unfinished uploads"),
            Err(e) => tracing::warn!(error = %e, "upload sweep failed; trying again later"),
        }
    }
}

async fn sweep(m: &Media) -> crate::error::ApiResult<usize> {
    let mut deleted = 0;
    loop {
        let ids = super::rows::expired(&m.db, now_ms(), BATCH).await?;
        let mut progress = false;
        for id in &ids {
            let lock = m.locks.get(id);
            let Ok(_writing) = lock.try_lock_owned() else { continue };
            m.remove(id).await?;
            deleted += 1;
            progress = true;
        }
        if ids.len() < BATCH as usize || !progress {
            return Ok(deleted);
        }
    }
}
