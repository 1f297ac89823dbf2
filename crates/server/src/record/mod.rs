//! Call recording: each published stream of a recorded call (a camera with its microphone, or a
//! screen) into one file written as the media arrives — WebM for VP8 + Opus, fragmented MP4 for
//! H.264 + Opus — published to the group's media library when the recording stops.
//!
//! * [`frames`] — RTP of one track into frames: a reorder buffer, str0m's depacketizers, drop a
//!   frame that lost a packet and wait for the next keyframe (sans-IO).
//! * [`stream`] — one stream's file: A/V timing from RTP timestamps and sender reports, start on
//!   a keyframe, cross-track order, size limit (sans-IO).
//! * [`webm`] — a WebM file through libwebm, writes handed out as bytes at offsets (sans-IO).
//! * [`mp4`] — a fragmented MP4 file (H.264) through `shiguredo_mp4`, the same way (sans-IO).
//! * [`writer`] — the I/O: a thread per recorded call owning the recorders and their files.
//! * [`publish`] — a finished file into the group's media library.
//!
//! The call engine hands the packets of recorded streams (after a forwarder of its own picked
//! the best layer and made the stream continuous) to the writer thread over a bounded channel
//! ([`writer`]), which owns the recorders and the files; a full channel drops and counts, never
//! blocks the call.
//!
//! **Crash safety.** Files are written as frames come (libwebm's clusters, the segment's size
//! left "unknown" until the end, its duration brought up to date every 250 ms), so a server
//! killed mid-recording leaves files that play up to about the moment of the kill. Each
//! recording's directory keeps a manifest until its files are published, so the server started
//! again publishes them (`publish::recover`).

pub mod frames;
pub mod mp4;
pub(crate) mod publish;
pub mod stream;
pub mod webm;
pub(crate) mod writer;

#[cfg(test)]
mod tests;
