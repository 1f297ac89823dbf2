//! Call recording: each published stream of a recorded call (a camera with its microphone, or a
//! screen) into one WebM file (VP8 + Opus) written as the media arrives, published to the
//! group's media library when the recording stops.
//!
//! * [`frames`] — RTP of one track into frames: a reorder buffer, str0m's depacketizers, drop a
//!   frame that lost a packet and wait for the next keyframe (sans-IO).
//! * [`stream`] — one stream's file: A/V timing from RTP timestamps and sender reports, start on
//!   a keyframe, cross-track order, size limit (sans-IO).
//! * [`webm`] — the file itself through libwebm, writes handed out as bytes at offsets (sans-IO).
//!
//! The call engine hands the packets of recorded streams (after a forwarder of its own picked
//! the best layer and made the stream continuous) to the writer thread over a bounded channel
//! (`writer`), which owns the recorders and the files; a full channel drops and counts, never
//! blocks the call.

pub mod frames;
pub mod stream;
pub mod webm;

#[cfg(test)]
mod tests;
