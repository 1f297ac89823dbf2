//! Messaging scenarios (helper-owned; filled in separately).

use crate::report::Section;
use crate::Common;

/// Messaging scenarios and their sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct MsgArgs {}

impl MsgArgs {
    /// The small sizes of the CI smoke run.
    pub fn smoke() -> MsgArgs {
        MsgArgs {}
    }
}

/// Runs the chosen messaging scenarios; one section each.
pub async fn run(_args: &MsgArgs, _common: &Common) -> anyhow::Result<Vec<Section>> {
    Ok(Vec::new())
}
