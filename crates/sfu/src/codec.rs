//! Codec-aware payload inspection: does this RTP packet start a keyframe?
//!
//! The I/O layer strips the RTP header, header extensions and padding and hands the remaining
//! *payload* bytes to [`is_keyframe_start`], whose answer goes into [`PacketInfo::keyframe`].
//! Only the codec's payload descriptor (and, for VP8, the first byte of the
//! frame header) is read; nothing is allocated and nothing is copied.
//!
//! | Codec | Payload format | A keyframe starts when |
//! |-------|----------------|------------------------|
//! | VP8   | RFC 7741 | start of partition 0 (`S=1`, `PID=0`) and the frame header's `P` bit is 0 |
//! | VP9   | RFC 9628 | start of a frame (`B=1`), not inter-picture predicted (`P=0`), spatial layer 0 |
//! | H.264 | RFC 6184 | an IDR slice or an SPS: single NAL unit, inside a STAP-A, or the first FU-A fragment |
//! | AV1   | AV1 RTP payload format | first packet of a coded video sequence (`N=1`), not a continuation (`Z=0`) |
//! | Opus  | RFC 7587 | always: every audio packet is a valid starting point |
//!
//! Malformed or truncated payloads never panic; they simply do not start a keyframe. An empty
//! payload starts nothing, whatever the codec.
//!
//! ```
//! use chorus_sfu::codec::{is_keyframe_start, Codec};
//!
//! let codec = Codec::from_mime_name("video/H264");
//! assert_eq!(codec, Codec::H264);
//! // An IDR slice (NAL type 5) sent as a single NAL unit packet.
//! assert!(is_keyframe_start(codec, &[0x65, 0x88, 0x84]));
//! // A non-IDR slice (NAL type 1).
//! assert!(!is_keyframe_start(codec, &[0x41, 0x9a, 0x02]));
//! ```
//!
//! [`PacketInfo::keyframe`]: crate::PacketInfo::keyframe

use crate::TrackKind;

/// The media codec of a track, as far as forwarding decisions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus audio (RFC 7587).
    Opus,
    /// VP8 video (RFC 7741).
    Vp8,
    /// VP9 video (RFC 9628).
    Vp9,
    /// H.264 video (RFC 6184, packetization mode 0 or 1).
    H264,
    /// AV1 video (RTP payload format for AV1).
    Av1,
    /// Anything else (PCMU, G.722, RED, RTX, H.265, ...): never inspected, never a keyframe.
    Other,
}

impl Codec {
    /// The codec named by an SDP `rtpmap` encoding name (`"opus"`, `"VP8"`, `"VP9"`, `"H264"`,
    /// `"AV1"`) or a MIME type (`"audio/opus"`, `"video/VP8"`, ...), compared case-insensitively.
    /// Any other name is [`Codec::Other`].
    pub fn from_mime_name(name: &str) -> Codec {
        let name = match name.split_once('/') {
            Some((kind, subtype)) if kind.eq_ignore_ascii_case("audio") || kind.eq_ignore_ascii_case("video") => {
                subtype
            }
            Some(_) => return Codec::Other,
            None => name,
        };
        const NAMES: [(&str, Codec); 5] = [
            ("opus", Codec::Opus),
            ("vp8", Codec::Vp8),
            ("vp9", Codec::Vp9),
            ("h264", Codec::H264),
            ("av1", Codec::Av1),
        ];
        NAMES.iter().find(|(known, _)| known.eq_ignore_ascii_case(name)).map_or(Codec::Other, |&(_, codec)| codec)
    }

    /// The RTP clock rate in Hz: 48 000 for Opus, 90 000 for the video codecs, `None` for
    /// [`Codec::Other`] (take it from the SDP).
    pub const fn clock_rate(self) -> Option<u32> {
        match self {
            Codec::Opus => Some(48_000),
            Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1 => Some(90_000),
            Codec::Other => None,
        }
    }

    /// Whether the codec carries audio or video, `None` for [`Codec::Other`] (take it from the
    /// SDP media section).
    pub const fn track_kind(self) -> Option<TrackKind> {
        match self {
            Codec::Opus => Some(TrackKind::Audio),
            Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1 => Some(TrackKind::Video),
            Codec::Other => None,
        }
    }
}

/// Whether this RTP payload (the bytes after the RTP header, header extensions and padding)
/// starts a keyframe, so a decoder can begin decoding at this packet.
///
/// Always `true` for a non-empty Opus payload, always `false` for [`Codec::Other`], and `false`
/// for any empty, malformed or truncated payload. See the [module documentation](self) for the
/// rule per codec.
pub fn is_keyframe_start(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Opus => !payload.is_empty(),
        Codec::Vp8 => vp8_keyframe_start(payload),
        Codec::Vp9 => vp9_keyframe_start(payload),
        Codec::H264 => h264_keyframe_start(payload),
        Codec::Av1 => av1_keyframe_start(payload),
        Codec::Other => false,
    }
}

/// The VP8 PictureID (7 or 15 bits, RFC 7741 section 4.2) of this VP8 RTP payload, or `None` if
/// the payload descriptor carries none or is truncated.
pub fn vp8_picture_id(payload: &[u8]) -> Option<u16> {
    Vp8Descriptor::parse(payload)?.picture_id
}

/// The fields of an RFC 7741 VP8 payload descriptor that matter here.
struct Vp8Descriptor {
    /// `S`: the packet starts a VP8 partition.
    start_of_partition: bool,
    /// `PID`: the partition index.
    partition_id: u8,
    /// `PictureID`, 7 or 15 bits, if `I` is set.
    picture_id: Option<u16>,
    /// Length of the descriptor in bytes; the VP8 payload starts here.
    len: usize,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of `payload`; `None` if it is truncated.
    ///
    /// ```text
    ///       0 1 2 3 4 5 6 7
    ///      +-+-+-+-+-+-+-+-+
    ///      |X|R|N|S|R| PID | (REQUIRED)
    ///      +-+-+-+-+-+-+-+-+
    /// X:   |I|L|T|K| RSV   | (OPTIONAL)
    ///      +-+-+-+-+-+-+-+-+
    /// I:   |M| PictureID   | (OPTIONAL)
    ///      +-+-+-+-+-+-+-+-+
    ///      |   PictureID   | (present if M)
    ///      +-+-+-+-+-+-+-+-+
    /// L:   |   TL0PICIDX   | (OPTIONAL)
    ///      +-+-+-+-+-+-+-+-+
    /// T/K: |TID|Y| KEYIDX  | (OPTIONAL)
    ///      +-+-+-+-+-+-+-+-+
    /// ```
    fn parse(payload: &[u8]) -> Option<Vp8Descriptor> {
        let first = *payload.first()?;
        let mut descriptor = Vp8Descriptor {
            start_of_partition: first & 0x10 != 0,
            partition_id: first & 0x07,
            picture_id: None,
            len: 1,
        };
        if first & 0x80 != 0 {
            let extension = *payload.get(1)?;
            let mut at = 2;
            if extension & 0x80 != 0 {
                let high = *payload.get(at)?;
                at += 1;
                descriptor.picture_id = Some(if high & 0x80 != 0 {
                    let low = *payload.get(at)?;
                    at += 1;
                    (u16::from(high & 0x7f) << 8) | u16::from(low)
                } else {
                    u16::from(high)
                });
            }
            if extension & 0x40 != 0 {
                at += 1; // TL0PICIDX
            }
            if extension & 0x30 != 0 {
                at += 1; // TID, Y, KEYIDX
            }
            if at > payload.len() {
                return None;
            }
            descriptor.len = at;
        }
        Some(descriptor)
    }
}

/// VP8: the first packet of partition 0, whose frame header says key frame (`P` bit clear).
fn vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(descriptor) = Vp8Descriptor::parse(payload) else { return false };
    if !descriptor.start_of_partition || descriptor.partition_id != 0 {
        return false;
    }
    // RFC 7741 section 4.3: bit 0 of the first payload header byte is the inverse key frame flag.
    payload.get(descriptor.len).is_some_and(|&header| header & 0x01 == 0)
}

/// VP9: the first packet (`B`) of a frame that is not inter-picture predicted (`P` clear), on
/// spatial layer 0 when layer indices are present.
///
/// ```text
///      0 1 2 3 4 5 6 7
///     +-+-+-+-+-+-+-+-+
///     |I|P|L|F|B|E|V|Z| (REQUIRED)
///     +-+-+-+-+-+-+-+-+
/// I:  |M| PICTURE ID  | (present if I)
///     +-+-+-+-+-+-+-+-+
///     | PICTURE ID    | (present if M)
///     +-+-+-+-+-+-+-+-+
/// L:  | TID |U| SID |D| (present if L)
///     +-+-+-+-+-+-+-+-+
///     |   TL0PICIDX   | (present if L and not F)
///     +-+-+-+-+-+-+-+-+
/// ```
fn vp9_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else { return false };
    let (picture_id, inter_predicted, layers, flexible, begin) =
        (first & 0x80 != 0, first & 0x40 != 0, first & 0x20 != 0, first & 0x10 != 0, first & 0x08 != 0);
    if !begin || inter_predicted {
        return false;
    }
    let mut at = 1;
    if picture_id {
        let Some(&high) = payload.get(at) else { return false };
        at += if high & 0x80 != 0 { 2 } else { 1 };
    }
    if layers {
        let Some(&layer) = payload.get(at) else { return false };
        if (layer >> 1) & 0x07 != 0 {
            return false;
        }
        at += if flexible { 1 } else { 2 };
    }
    at <= payload.len()
}

/// H.264 NAL unit type of an IDR slice.
const H264_IDR: u8 = 5;
/// H.264 NAL unit type of a sequence parameter set.
const H264_SPS: u8 = 7;
/// RFC 6184 single-time aggregation packet.
const H264_STAP_A: u8 = 24;
/// RFC 6184 fragmentation unit.
const H264_FU_A: u8 = 28;

/// Whether a NAL unit header (or FU header) names an IDR slice or an SPS.
const fn h264_starts_keyframe(nal_header: u8) -> bool {
    matches!(nal_header & 0x1f, H264_IDR | H264_SPS)
}

/// H.264: an IDR slice or SPS as a single NAL unit, anywhere in a STAP-A, or the start of a
/// fragmented one.
fn h264_keyframe_start(payload: &[u8]) -> bool {
    let Some((&header, rest)) = payload.split_first() else { return false };
    match header & 0x1f {
        H264_STAP_A => {
            // Each aggregated NAL unit: 16-bit big-endian size, then that many bytes. A NAL unit
            // only counts if it is entirely present; a zero or overlong size ends the walk.
            let mut rest = rest;
            while let [high, low, tail @ ..] = rest {
                let size = usize::from(u16::from_be_bytes([*high, *low]));
                if size == 0 || size > tail.len() {
                    return false;
                }
                if h264_starts_keyframe(tail[0]) {
                    return true;
                }
                rest = &tail[size..];
            }
            false
        }
        // FU header: S E R Type. Only the start fragment begins the NAL unit, and it must carry
        // some of it.
        H264_FU_A => matches!(rest, [fu_header, _, ..] if fu_header & 0x80 != 0 && h264_starts_keyframe(*fu_header)),
        _ => h264_starts_keyframe(header),
    }
}

/// AV1: the aggregation header (`Z Y W W N - - -`) marks the first packet of a coded video
/// sequence (`N`) and the packet does not continue an OBU from the previous one (`Z` clear), and
/// some OBU data follows.
fn av1_keyframe_start(payload: &[u8]) -> bool {
    matches!(payload, [header, _, ..] if header & 0x08 != 0 && header & 0x80 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 6] = [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1, Codec::Other];

    /// Calls [`is_keyframe_start`] for every codec on every prefix of `payload` (proving none
    /// panics) and returns, per prefix length, the answer for `codec`.
    fn answers_per_prefix(codec: Codec, payload: &[u8]) -> Vec<bool> {
        (0..=payload.len())
            .map(|len| {
                let prefix = &payload[..len];
                for other in ALL {
                    is_keyframe_start(other, prefix);
                    vp8_picture_id(prefix);
                }
                is_keyframe_start(codec, prefix)
            })
            .collect()
    }

    /// Asserts that `payload` starts a keyframe and that no strict prefix of it shorter than
    /// `min_len` does.
    fn assert_keyframe_needing(codec: Codec, payload: &[u8], min_len: usize) {
        let answers = answers_per_prefix(codec, payload);
        for (len, answer) in answers.iter().enumerate() {
            assert_eq!(*answer, len >= min_len, "{codec:?} prefix of {len} bytes of {payload:02x?}");
        }
    }

    #[test]
    fn codec_from_mime_name_ignores_case_and_media_type() {
        for (name, codec) in [
            ("opus", Codec::Opus),
            ("OPUS", Codec::Opus),
            ("audio/opus", Codec::Opus),
            ("VP8", Codec::Vp8),
            ("video/vp8", Codec::Vp8),
            ("VP9", Codec::Vp9),
            ("Video/VP9", Codec::Vp9),
            ("H264", Codec::H264),
            ("h264", Codec::H264),
            ("AV1", Codec::Av1),
            ("video/AV1", Codec::Av1),
            ("PCMU", Codec::Other),
            ("H265", Codec::Other),
            ("rtx", Codec::Other),
            ("", Codec::Other),
            ("text/vp8", Codec::Other),
            ("video/", Codec::Other),
            ("vp8 ", Codec::Other),
        ] {
            assert_eq!(Codec::from_mime_name(name), codec, "{name:?}");
        }
    }

    #[test]
    fn codec_clock_rate_and_kind() {
        assert_eq!(Codec::Opus.clock_rate(), Some(48_000));
        assert_eq!(Codec::Opus.track_kind(), Some(TrackKind::Audio));
        for codec in [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1] {
            assert_eq!(codec.clock_rate(), Some(90_000), "{codec:?}");
            assert_eq!(codec.track_kind(), Some(TrackKind::Video), "{codec:?}");
        }
        assert_eq!(Codec::Other.clock_rate(), None);
        assert_eq!(Codec::Other.track_kind(), None);
    }

    #[test]
    fn opus_always_starts_other_never() {
        assert_keyframe_needing(Codec::Opus, &[0x78, 0x0b, 0xe4], 1);
        assert!(answers_per_prefix(Codec::Other, &[0x65, 0x10, 0x90, 0x9d, 0x01]).iter().all(|&answer| !answer));
    }

    /// The first ten bytes of a VP8 key frame: frame tag with `P` clear, then the start code.
    const VP8_KEY_HEADER: [u8; 10] = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
    /// The first three bytes of a VP8 interframe: frame tag with `P` set.
    const VP8_INTER_HEADER: [u8; 3] = [0x31, 0x07, 0x00];

    fn vp8(descriptor: &[u8], header: &[u8]) -> Vec<u8> {
        [descriptor, header].concat()
    }

    #[test]
    fn vp8_keyframe_without_extension() {
        // X=0, S=1, PID=0.
        assert_keyframe_needing(Codec::Vp8, &vp8(&[0x10], &VP8_KEY_HEADER), 2);
        assert_eq!(vp8_picture_id(&vp8(&[0x10], &VP8_KEY_HEADER)), None);
        // N (non-reference) set makes no difference.
        assert!(is_keyframe_start(Codec::Vp8, &vp8(&[0x30], &VP8_KEY_HEADER)));
    }

    #[test]
    fn vp8_keyframe_with_7_bit_picture_id() {
        // X=1, S=1, PID=0; I=1; M=0, PictureID=0x25.
        let packet = vp8(&[0x90, 0x80, 0x25], &VP8_KEY_HEADER);
        assert_keyframe_needing(Codec::Vp8, &packet, 4);
        assert_eq!(vp8_picture_id(&packet), Some(0x25));
    }

    #[test]
    fn vp8_keyframe_with_15_bit_picture_id_and_all_extensions() {
        // X=1, S=1, PID=0; I, L, T, K; M=1, PictureID=0x1234; TL0PICIDX; TID/Y/KEYIDX.
        let packet = vp8(&[0x90, 0xf0, 0x80 | 0x12, 0x34, 0x07, 0x20], &VP8_KEY_HEADER);
        assert_keyframe_needing(Codec::Vp8, &packet, 7);
        assert_eq!(vp8_picture_id(&packet), Some(0x1234));
        assert_eq!(vp8_picture_id(&packet[..5]), None, "descriptor truncated");
        // Largest 15-bit picture id.
        assert_eq!(vp8_picture_id(&vp8(&[0x90, 0x80, 0xff, 0xff], &VP8_KEY_HEADER)), Some(0x7fff));
    }

    #[test]
    fn vp8_keyframe_with_extension_but_no_picture_id() {
        // X=1; only L and T: TL0PICIDX and TID byte, no picture id.
        let packet = vp8(&[0x90, 0x60, 0x03, 0x40], &VP8_KEY_HEADER);
        assert_keyframe_needing(Codec::Vp8, &packet, 5);
        assert_eq!(vp8_picture_id(&packet), None);
        // X=1 with nothing in the extension byte.
        assert_keyframe_needing(Codec::Vp8, &vp8(&[0x90, 0x00], &VP8_KEY_HEADER), 3);
    }

    #[test]
    fn vp8_interframe_is_not_a_keyframe() {
        let packet = vp8(&[0x90, 0x80, 0x81, 0x00], &VP8_INTER_HEADER);
        assert!(answers_per_prefix(Codec::Vp8, &packet).iter().all(|&answer| !answer));
        assert_eq!(vp8_picture_id(&packet), Some(0x100));
        assert!(!is_keyframe_start(Codec::Vp8, &vp8(&[0x10], &VP8_INTER_HEADER)));
    }

    #[test]
    fn vp8_keyframe_continuation_is_not_a_start() {
        // S=0: a later packet of partition 0 (its first byte is arbitrary frame data).
        assert!(!is_keyframe_start(Codec::Vp8, &vp8(&[0x80, 0x80, 0x25], &[0x00, 0x11, 0x22])));
        assert!(!is_keyframe_start(Codec::Vp8, &vp8(&[0x00], &[0x00, 0x11])));
        // S=1 but PID=1: the start of the second partition.
        assert!(!is_keyframe_start(Codec::Vp8, &vp8(&[0x91, 0x80, 0x25], &[0x00, 0x11, 0x22])));
        assert!(!is_keyframe_start(Codec::Vp8, &vp8(&[0x11], &[0x00, 0x11])));
    }

    #[test]
    fn vp9_keyframe_without_optional_fields() {
        // B=1, E=1, P=0.
        assert_keyframe_needing(Codec::Vp9, &[0x0c, 0x82, 0x49, 0x83], 1);
    }

    #[test]
    fn vp9_keyframe_with_picture_id_and_layers() {
        // Non-flexible: I, L, B, V; 15-bit picture id; TID=0 U=0 SID=0 D=0; TL0PICIDX.
        let packet = [0xaa, 0x80 | 0x01, 0x23, 0x00, 0x05, 0x18, 0x01, 0x3f];
        assert_keyframe_needing(Codec::Vp9, &packet, 5);
        // Flexible: I, L, F, B; 7-bit picture id; layer byte only.
        let packet = [0xb8, 0x11, 0x00, 0x82, 0x49];
        assert_keyframe_needing(Codec::Vp9, &packet, 3);
    }

    #[test]
    fn vp9_not_keyframe_start() {
        // P=1: inter-picture predicted.
        assert!(!is_keyframe_start(Codec::Vp9, &[0x4c, 0x82, 0x49]));
        // B=0: a later packet of the frame.
        assert!(!is_keyframe_start(Codec::Vp9, &[0x04, 0x82, 0x49]));
        // Spatial layer 1 of a key picture: I, L, F, B; SID=1 (layer byte 0x02).
        assert!(!is_keyframe_start(Codec::Vp9, &[0xb8, 0x11, 0x02, 0x82]));
        // Same on spatial layer 0 is a start.
        assert!(is_keyframe_start(Codec::Vp9, &[0xb8, 0x11, 0x00, 0x82]));
    }

    /// An SPS, a PPS and an IDR slice header, without start codes.
    const SPS: [u8; 8] = [0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16];
    const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];
    const IDR: [u8; 4] = [0x65, 0x88, 0x84, 0x00];
    const NON_IDR: [u8; 4] = [0x41, 0x9a, 0x02, 0x04];

    fn stap_a(nal_units: &[&[u8]]) -> Vec<u8> {
        let mut packet = vec![0x78]; // F=0, NRI=3, type 24.
        for nal_unit in nal_units {
            packet.extend_from_slice(&u16::try_from(nal_unit.len()).unwrap().to_be_bytes());
            packet.extend_from_slice(nal_unit);
        }
        packet
    }

    #[test]
    fn h264_single_nal_units() {
        assert_keyframe_needing(Codec::H264, &IDR, 1);
        assert_keyframe_needing(Codec::H264, &SPS, 1);
        assert!(!is_keyframe_start(Codec::H264, &PPS));
        assert!(!is_keyframe_start(Codec::H264, &NON_IDR));
        // SEI (6) and access unit delimiter (9) do not start a keyframe.
        assert!(!is_keyframe_start(Codec::H264, &[0x06, 0x05, 0x01]));
        assert!(!is_keyframe_start(Codec::H264, &[0x09, 0xf0]));
    }

    #[test]
    fn h264_stap_a_with_sps() {
        // SPS first: keyframe once the whole SPS is present (1 + 2 + 8 bytes).
        assert_keyframe_needing(Codec::H264, &stap_a(&[&SPS, &PPS, &IDR]), 11);
        // IDR last: keyframe only once the whole IDR unit is present.
        let packet = stap_a(&[&PPS, &IDR]);
        assert_keyframe_needing(Codec::H264, &packet, packet.len());
        // No SPS, no IDR.
        let packet = stap_a(&[&PPS, &NON_IDR]);
        assert!(answers_per_prefix(Codec::H264, &packet).iter().all(|&answer| !answer));
    }

    #[test]
    fn h264_stap_a_malformed() {
        // Zero size before the SPS ends the walk.
        let mut packet = vec![0x78, 0x00, 0x00];
        packet.extend_from_slice(&stap_a(&[&SPS])[1..]);
        assert!(!is_keyframe_start(Codec::H264, &packet));
        // Size running past the end.
        assert!(!is_keyframe_start(Codec::H264, &[0x78, 0x00, 0x09, 0x67, 0x42]));
        assert!(!is_keyframe_start(Codec::H264, &[0x78, 0xff, 0xff, 0x65]));
        // Dangling single size byte after a complete PPS.
        let mut packet = stap_a(&[&PPS]);
        packet.push(0x00);
        assert!(!is_keyframe_start(Codec::H264, &packet));
        // Empty STAP-A.
        assert!(!is_keyframe_start(Codec::H264, &[0x78]));
    }

    #[test]
    fn h264_fu_a() {
        // FU indicator NRI=3 type 28; FU header S=1 type 5; fragment data.
        assert_keyframe_needing(Codec::H264, &[0x7c, 0x85, 0x88, 0x84], 3);
        // Start of a fragmented SPS (unusual, but an SPS all the same).
        assert!(is_keyframe_start(Codec::H264, &[0x7c, 0x87, 0x42, 0xc0]));
        // Middle (S=0, E=0) and end (E=1) fragments of an IDR.
        assert!(!is_keyframe_start(Codec::H264, &[0x7c, 0x05, 0x11, 0x22]));
        assert!(!is_keyframe_start(Codec::H264, &[0x7c, 0x45, 0x11, 0x22]));
        // Start fragment of a non-IDR slice.
        assert!(!is_keyframe_start(Codec::H264, &[0x5c, 0x81, 0x9a, 0x02]));
    }

    #[test]
    fn av1_new_coded_video_sequence() {
        // Z=0 Y=0 W=1 N=1, then a sequence header OBU.
        assert_keyframe_needing(Codec::Av1, &[0x18, 0x0a, 0x0b, 0x00, 0x00], 2);
        // W=0 (OBUs carry length fields) with N=1.
        assert!(is_keyframe_start(Codec::Av1, &[0x08, 0x0a, 0x0b]));
        // N=0: not the start of a coded video sequence.
        assert!(!is_keyframe_start(Codec::Av1, &[0x10, 0x32, 0x00]));
        // Z=1: continues an OBU fragment from the previous packet.
        assert!(!is_keyframe_start(Codec::Av1, &[0x98, 0x0a, 0x0b]));
    }

    #[test]
    fn empty_payload_starts_nothing() {
        for codec in ALL {
            assert!(!is_keyframe_start(codec, &[]), "{codec:?}");
        }
        assert_eq!(vp8_picture_id(&[]), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        for first in 0..=255u8 {
            for second in 0..=255u8 {
                for codec in ALL {
                    is_keyframe_start(codec, &[first]);
                    is_keyframe_start(codec, &[first, second]);
                    is_keyframe_start(codec, &[first, second, first]);
                }
                vp8_picture_id(&[first, second]);
            }
        }
        // Longer pseudo-random payloads (xorshift), every prefix.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut buffer = [0u8; 32];
        for _ in 0..2_000 {
            for byte in &mut buffer {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            answers_per_prefix(Codec::Other, &buffer);
        }
    }
}
