//! The SFU load against Janus (helper-owned; filled in separately).

use std::path::PathBuf;

use super::{SfuLoad, SfuRun};
use crate::progress::Progress;

/// How to run Janus.
#[derive(Debug, Clone)]
pub struct JanusOptions {
    /// The `janus` binary (Debian package `janus`).
    pub bin: PathBuf,
}

/// Janus's version (`janus --version`), if it is installed.
pub fn version(_opts: &JanusOptions) -> Option<String> {
    None
}

/// Runs `load` against a Janus started for it.
pub async fn run(_load: &SfuLoad, _opts: &JanusOptions, _progress: &Progress) -> anyhow::Result<SfuRun> {
    anyhow::bail!("the Janus runner is not written yet")
}
