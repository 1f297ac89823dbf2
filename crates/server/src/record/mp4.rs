//! One fragmented MP4 file (H.264 + Opus: WebM cannot carry H.264) through `shiguredo_mp4`,
//! sans-IO like [`super::webm`]: writes come out as bytes at offsets.
//!
//! A fragment (`moof` + `mdat`) is written about every second, starting at a keyframe, so a
//! file cut off by a crash plays up to its last fragment; its length is the end of that
//! fragment (what ffprobe and `chorus-probe` read from a fragmented file). MP4 gives a sample no
//! timestamp, only a duration: each sample is held until the next one of its track says how
//! long it lasts, so a silence or a lost frame lengthens the sample before it.

use std::num::NonZeroU32;

use shiguredo_mp4::boxes::{
    AudioSampleEntryFields, Avc1Box, AvccBox, DopsBox, OpusBox, SampleEntry, VisualSampleEntryFields,
};
use shiguredo_mp4::mux::{Fmp4SegmentMuxer, Sample};
use shiguredo_mp4::{FixedPointNumber, TrackKind, Uint};

use super::webm::{MuxError, WriteOp};

const VIDEO_CLOCK: u32 = 90_000;
const AUDIO_CLOCK: u32 = 48_000;
/// A fragment closes at the first keyframe after this much media.
const FRAGMENT_NS: u64 = 1_000_000_000;
/// The first fragment waits this long for both tracks (the init segment lists the tracks seen).
const FIRST_FRAGMENT_MAX_NS: u64 = 3_000_000_000;

/// What an H.264 stream's first keyframe says: its parameter sets and picture size.
#[derive(Debug, Clone)]
pub struct AvcParams {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl AvcParams {
    /// From an Annex B access unit holding an SPS and a PPS (a keyframe as WebRTC sends it).
    pub fn from_annexb(au: &[u8]) -> Option<AvcParams> {
        let (mut sps, mut pps) = (None, None);
        for nal in nal_units(au) {
            match nal.first().map(|b| b & 0x1f) {
                Some(7) if sps.is_none() => sps = Some(nal.to_vec()),
                Some(8) if pps.is_none() => pps = Some(nal.to_vec()),
                _ => {}
            }
        }
        let sps = sps?;
        let (width, height) = sps_size(&sps)?;
        Some(AvcParams { sps, pps: pps?, width, height })
    }
}

/// The NAL units of an Annex B stream (start codes of 3 or 4 bytes).
fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            let e = s - 3;
            // A 4-byte start code leaves its leading zero on the unit before.
            if e > 0 && data[e - 1] == 0 {
                e - 1
            } else {
                e
            }
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts.into_iter().zip(ends).map(move |(s, e)| &data[s..e.max(s)]).filter(|n| !n.is_empty())
}

/// Annex B into MP4's 4-byte length prefixes.
fn to_length_prefixed(au: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(au.len() + 8);
    for nal in nal_units(au) {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// Reads Exp-Golomb coded fields (ITU-T H.264 §9.1) from an RBSP.
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn bit(&mut self) -> Option<u32> {
        let b = self.data.get(self.pos / 8)?;
        let v = (b >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(v))
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }
    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 { k.div_ceil(2) as i32 } else { -((k / 2) as i32) })
    }
}

/// Width and height from an SPS (ITU-T H.264 §7.3.2.1.1), cropping applied.
fn sps_size(sps: &[u8]) -> Option<(u32, u32)> {
    // The RBSP: emulation prevention bytes (00 00 03) removed.
    let mut rbsp = Vec::with_capacity(sps.len());
    let mut zeros = 0;
    for &b in sps.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits { data: rbsp, pos: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bit()?;
        }
        r.ue()?;
        r.ue()?;
        r.bit()?;
        if r.bit()? == 1 {
            // Scaling matrices: skipped field by field.
            for i in 0..if chroma_format == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?;
    let w_mbs = r.ue()? + 1;
    let h_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?;
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (cl, cr, ct, cb) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let (sub_w, sub_h) = match chroma_format {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_x = sub_w * (cl + cr);
    let crop_y = sub_h * (2 - frame_mbs_only) * (ct + cb);
    let w = (w_mbs * 16).checked_sub(crop_x)?;
    let h = ((2 - frame_mbs_only) * h_units * 16).checked_sub(crop_y)?;
    (w > 0 && h > 0).then_some((w, h))
}

struct Held {
    t_ns: u64,
    data: Vec<u8>,
    key: bool,
}

struct Pending {
    video: bool,
    key: bool,
    duration: u32,
    data: Vec<u8>,
}

/// One fragmented MP4 file being written.
pub struct Mp4File {
    mux: Fmp4SegmentMuxer,
    video_entry: Option<SampleEntry>,
    audio_entry: Option<SampleEntry>,
    held: [Option<Held>; 2],
    /// Samples of the fragment being gathered.
    fragment: Vec<Pending>,
    fragment_start: Option<u64>,
    /// Whether each track's first sample (which carries its sample entry) was written.
    entry_sent: [bool; 2],
    /// The init segment is written (with the first fragment).
    started: bool,
    finished: bool,
    ops: Vec<WriteOp>,
    /// Bytes of the file so far.
    pub len: u64,
}

fn index(video: bool) -> usize {
    usize::from(video)
}

impl Mp4File {
    pub fn new(video: Option<&AvcParams>, audio: bool) -> Result<Mp4File, MuxError> {
        let err = |e: shiguredo_mp4::mux::MuxError| MuxError(format!("{e:?}"));
        let video_entry = video.map(|p| {
            let sps = &p.sps;
            SampleEntry::Avc1(Avc1Box {
                visual: VisualSampleEntryFields {
                    data_reference_index: VisualSampleEntryFields::DEFAULT_DATA_REFERENCE_INDEX,
                    width: p.width as u16,
                    height: p.height as u16,
                    horizresolution: VisualSampleEntryFields::DEFAULT_HORIZRESOLUTION,
                    vertresolution: VisualSampleEntryFields::DEFAULT_VERTRESOLUTION,
                    frame_count: VisualSampleEntryFields::DEFAULT_FRAME_COUNT,
                    compressorname: VisualSampleEntryFields::NULL_COMPRESSORNAME,
                    depth: VisualSampleEntryFields::DEFAULT_DEPTH,
                },
                avcc_box: AvccBox {
                    avc_profile_indication: sps.get(1).copied().unwrap_or(66),
                    profile_compatibility: sps.get(2).copied().unwrap_or(0),
                    avc_level_indication: sps.get(3).copied().unwrap_or(31),
                    length_size_minus_one: Uint::new(3),
                    sps_list: vec![p.sps.clone()],
                    pps_list: vec![p.pps.clone()],
                    chroma_format: None,
                    bit_depth_luma_minus8: None,
                    bit_depth_chroma_minus8: None,
                    sps_ext_list: vec![],
                },
                unknown_boxes: vec![],
            })
        });
        let audio_entry = audio.then(|| {
            SampleEntry::Opus(OpusBox {
                audio: AudioSampleEntryFields {
                    data_reference_index: AudioSampleEntryFields::DEFAULT_DATA_REFERENCE_INDEX,
                    channelcount: 2,
                    samplesize: AudioSampleEntryFields::DEFAULT_SAMPLESIZE,
                    samplerate: FixedPointNumber::new(48_000u16, 0),
                },
                dops_box: DopsBox { output_channel_count: 2, pre_skip: 312, input_sample_rate: 48_000, output_gain: 0 },
                unknown_boxes: vec![],
            })
        });
        Ok(Mp4File {
            mux: Fmp4SegmentMuxer::new().map_err(err)?,
            video_entry,
            audio_entry,
            held: [None, None],
            fragment: Vec::new(),
            fragment_start: None,
            entry_sent: [false, false],
            started: false,
            finished: false,
            ops: Vec::new(),
            len: 0,
        })
    }

    pub fn has_video(&self) -> bool {
        self.video_entry.is_some()
    }

    pub fn has_audio(&self) -> bool {
        self.audio_entry.is_some()
    }

    /// Adds a frame (video: an Annex B access unit) at `ts_ns` from the file's start.
    pub fn add(&mut self, video: bool, data: &[u8], ts_ns: u64, keyframe: bool) -> Result<(), MuxError> {
        if self.finished {
            return Err(MuxError("finished".into()));
        }
        if (video && self.video_entry.is_none()) || (!video && self.audio_entry.is_none()) {
            return Err(MuxError("no such track".into()));
        }
        let clock = if video { VIDEO_CLOCK } else { AUDIO_CLOCK };
        if let Some(h) = self.held[index(video)].take() {
            let ticks = (ts_ns.saturating_sub(h.t_ns)) * u64::from(clock) / 1_000_000_000;
            self.fragment.push(Pending { video, key: h.key, duration: ticks.max(1) as u32, data: h.data });
        }
        let start = *self.fragment_start.get_or_insert(ts_ns);
        // A fragment closes where a video keyframe (or, without video, any frame) begins.
        let boundary = keyframe && (video || self.video_entry.is_none());
        let span = ts_ns.saturating_sub(start);
        let both = !self.started
            && self.video_entry.is_some()
            && self.audio_entry.is_some()
            && !(self.fragment.iter().any(|p| p.video) && self.fragment.iter().any(|p| !p.video));
        if boundary && span >= FRAGMENT_NS && (!both || span >= FIRST_FRAGMENT_MAX_NS) {
            self.flush()?;
            self.fragment_start = Some(ts_ns);
        }
        let data = if video { to_length_prefixed(data) } else { data.to_vec() };
        self.held[index(video)] = Some(Held { t_ns: ts_ns, data, key: keyframe });
        Ok(())
    }

    /// Writes the gathered fragment (and before the first one, the init segment).
    fn flush(&mut self) -> Result<(), MuxError> {
        if self.fragment.is_empty() {
            return Ok(());
        }
        let err = |e: shiguredo_mp4::mux::MuxError| MuxError(format!("{e:?}"));
        // One run per track: video samples first, then audio.
        let mut order: Vec<Pending> = std::mem::take(&mut self.fragment);
        order.sort_by_key(|p| !p.video);
        let mut samples = Vec::with_capacity(order.len());
        let mut offset = 0u64;
        for p in &order {
            let i = index(p.video);
            let entry = if self.entry_sent[i] {
                None
            } else {
                self.entry_sent[i] = true;
                if p.video {
                    self.video_entry.clone()
                } else {
                    self.audio_entry.clone()
                }
            };
            samples.push(Sample {
                track_kind: if p.video { TrackKind::Video } else { TrackKind::Audio },
                sample_entry: entry,
                keyframe: p.key,
                timescale: NonZeroU32::new(if p.video { VIDEO_CLOCK } else { AUDIO_CLOCK }).expect("non-zero"),
                duration: p.duration,
                composition_time_offset: None,
                data_offset: offset,
                data_size: p.data.len(),
            });
            offset += p.data.len() as u64;
        }
        let meta = self.mux.create_media_segment_metadata(&samples).map_err(err)?;
        if !self.started {
            self.started = true;
            let init = self.mux.init_segment_bytes().map_err(err)?;
            self.append(init);
        }
        let mut bytes = meta;
        for p in order {
            bytes.extend_from_slice(&p.data);
        }
        self.append(bytes);
        Ok(())
    }

    fn append(&mut self, bytes: Vec<u8>) {
        let offset = self.len;
        self.len += bytes.len() as u64;
        self.ops.push(WriteOp { offset, bytes });
    }

    /// Writes what is held: the last sample of each track lasts as long as a frame does.
    pub fn finish(&mut self) -> Result<(), MuxError> {
        if self.finished {
            return Err(MuxError("finished".into()));
        }
        self.finished = true;
        for video in [true, false] {
            if let Some(h) = self.held[index(video)].take() {
                let duration = if video { VIDEO_CLOCK / 30 } else { AUDIO_CLOCK / 50 };
                self.fragment.push(Pending { video, key: h.key, duration, data: h.data });
            }
        }
        self.flush()
    }

    /// The writes made since the last call, in order.
    pub fn take_ops(&mut self) -> Vec<WriteOp> {
        std::mem::take(&mut self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (SPS sizes are checked on libx264's own in `record::tests`: 640x360, cropped from 368.)
    #[test]
    fn annexb_splits_into_nal_units() {
        let au = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 3];
        let nals: Vec<&[u8]> = nal_units(&au).collect();
        assert_eq!(nals, [&[0x67, 1][..], &[0x68, 2], &[0x65, 3]]);
        assert_eq!(to_length_prefixed(&au[..11]), [0, 0, 0, 2, 0x67, 1, 0, 0, 0, 2, 0x68, 2]);
    }
}
