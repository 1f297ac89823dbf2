//! The sweep: every `upload_sweep_secs` (and at start) it deletes the unfinished uploads past
//! their expiry, row first and then bytes. An upload a request is writing to is left for the
//! next round (its lock is held); an append that ends after its row was swept deletes its
//! own part (see `Media::append`).
//!
//! Then it deletes **orphans**: bytes in the store of an upload that has no row. Deleting a
//! user deletes their rows in the database (a cascade the media service does not see), and a
//! crash between deleting a row and its bytes leaves the bytes; both are found here. A row is
//! always made before an upload's first byte is stored, so bytes without a row are never an
//! upload still on its way.

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
        match orphans(&m).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "deleted the bytes of uploads that have no row"),
            Err(e) => tracing::warn!(error = %e, "orphan sweep failed; trying again later"),
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

/// Ids checked against the database per query.
const ORPHAN_BATCH: usize = 200;

async fn orphans(m: &Media) -> anyhow::Result<usize> {
    let ids = m.store.upload_ids().await?;
    let mut deleted = 0;
    for chunk in ids.chunks(ORPHAN_BATCH) {
        let known = super::rows::existing(&m.db, chunk).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        for id in chunk.iter().filter(|id| !known.contains(*id)) {
            let lock = m.locks.get(id);
            let Ok(_writing) = lock.try_lock_owned() else { continue };
            m.store.delete_upload(id).await;
            deleted += 1;
        }
    }
    Ok(deleted)
}
