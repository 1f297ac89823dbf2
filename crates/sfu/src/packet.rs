//! The plain inputs every module works on: what kind of track, which simulcast layer, and the
//! few header facts of one RTP packet that forwarding decisions need.

/// A simulcast layer of one published video track, `0` being the lowest resolution.
///
/// Audio tracks have exactly one layer, [`Layer::LOW`]. The server maps an RTP stream (its RID
/// or SSRC) to a layer; this crate never sees RIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Layer(u8);

impl Layer {
    /// How many layers one track may have. Browsers send at most three; one spare.
    pub const COUNT: usize = 4;
    /// The lowest layer, and the only layer of an audio track.
    pub const LOW: Layer = Layer(0);
    /// The middle layer of a three-layer simulcast.
    pub const MID: Layer = Layer(1);
    /// The top layer of a three-layer simulcast.
    pub const HIGH: Layer = Layer(2);

    /// The layer with this index, or `None` if `index` is not below [`Layer::COUNT`].
    pub const fn new(index: u8) -> Option<Layer> {
        if (index as usize) < Self::COUNT {
            Some(Layer(index))
        } else {
            None
        }
    }

    /// The layer's index, `0` for the lowest; always below [`Layer::COUNT`].
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Whether a track carries audio or video, which decides where a forwarder may start or switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// Single layer (Opus and friends). Every packet is a valid starting point.
    Audio,
    /// Possibly simulcast. Forwarding may only start or switch layers at a keyframe.
    Video,
}

/// The facts about one incoming RTP packet that forwarding needs, read from its header (and, for
/// the keyframe flag, from the codec payload descriptor) by the I/O layer.
///
/// The payload itself never reaches this crate: the forwarder only decides and rewrites header
/// fields, so the caller can forward the original buffer untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// The publisher's SSRC for this layer.
    pub ssrc: u32,
    /// RTP sequence number as sent by the publisher.
    pub seq: u16,
    /// RTP timestamp as sent by the publisher.
    pub timestamp: u32,
    /// RTP marker bit (for video: last packet of a frame).
    pub marker: bool,
    /// Payload length in bytes after the header (and padding) is removed. `0` means a
    /// padding-only packet (bandwidth probing), which is never forwarded.
    pub payload_len: usize,
    /// This packet starts a keyframe, so a decoder can begin here.
    pub keyframe: bool,
    /// Which simulcast layer the packet belongs to.
    pub layer: Layer,
}

impl PacketInfo {
    /// A padding-only packet: it carries no media and exists only to probe bandwidth.
    pub const fn is_padding(&self) -> bool {
        self.payload_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_new_accepts_only_indices_below_count() {
        for index in 0..=255u8 {
            let layer = Layer::new(index);
            assert_eq!(layer.is_some(), usize::from(index) < Layer::COUNT, "index {index}");
            if let Some(layer) = layer {
                assert_eq!(layer.index(), usize::from(index));
            }
        }
    }

    #[test]
    fn layers_order_from_low_to_high() {
        assert!(Layer::LOW < Layer::MID && Layer::MID < Layer::HIGH);
    }
}
