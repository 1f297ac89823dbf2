//! What WHIP/WHEP read in SDP text beyond str0m: the media lines of a WHIP offer (one audio,
//! one video at most; sending; a codec the server forwards), and the ICE lines of a trickle-ICE
//! fragment (RFC 8840).

use crate::call::sdp::{forwarded_codec, simulcast_send_rids};

/// Why an offer is refused: `Unparsable` → 400, `Unsupported` → 422.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unparsable(String),
    Unsupported(String),
}

/// The media lines of a WHIP offer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Offer {
    pub audio_mid: Option<String>,
    pub video_mid: Option<String>,
    /// Simulcast RIDs of the video line (empty: one layer).
    pub rids: Vec<String>,
}

struct Section<'a> {
    kind: &'a str,
    mid: Option<&'a str>,
    direction: &'a str,
    codecs: Vec<&'a str>,
}

fn lines(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.is_empty())
}

fn sections(sdp: &str) -> Vec<Section<'_>> {
    let mut out: Vec<Section> = Vec::new();
    for l in lines(sdp) {
        if let Some(m) = l.strip_prefix("m=") {
            out.push(Section {
                kind: m.split(' ').next().unwrap_or(""),
                mid: None,
                direction: "sendrecv",
                codecs: vec![],
            });
        } else if let Some(s) = out.last_mut() {
            if let Some(mid) = l.strip_prefix("a=mid:") {
                s.mid = Some(mid.trim());
            } else if let Some(v) = l.strip_prefix("a=rtpmap:") {
                if let Some(name) = v.split(' ').nth(1).and_then(|c| c.split('/').next()) {
                    s.codecs.push(name);
                }
            } else if let Some(d) = ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"].iter().find(|d| l == **d) {
                s.direction = &d[2..];
            }
        }
    }
    out
}

/// Checks a WHIP offer: at most one audio and one video line, each sending (RFC 9725: `sendonly`
/// or `sendrecv`) and offering a codec the server forwards; str0m must parse it.
pub fn whip_offer(sdp: &str) -> Result<Offer, Refusal> {
    if let Err(e) = str0m::change::SdpOffer::from_sdp_string(sdp) {
        return Err(unparsable(&e));
    }
    whip_lines(sdp)
}

/// The refusal of an offer str0m cannot parse.
pub(crate) fn unparsable(e: &impl std::fmt::Display) -> Refusal {
    Refusal::Unparsable(format!("the SDP offer cannot be parsed: {e}"))
}

/// [`whip_offer`]'s checks of the media lines, for an offer str0m parses.
pub(crate) fn whip_lines(sdp: &str) -> Result<Offer, Refusal> {
    let mut offer = Offer::default();
    let secs = sections(sdp);
    if secs.is_empty() {
        return Err(Refusal::Unparsable("the SDP offer has no media line".into()));
    }
    for s in &secs {
        let slot = match s.kind {
            "audio" => &mut offer.audio_mid,
            "video" => &mut offer.video_mid,
            other => {
                return Err(Refusal::Unsupported(format!("a WHIP session carries audio and video only, not {other}")))
            }
        };
        if slot.is_some() {
            return Err(Refusal::Unsupported(format!("a WHIP session carries at most one {} track", s.kind)));
        }
        let Some(mid) = s.mid else { return Err(Refusal::Unparsable(format!("the {} line has no a=mid", s.kind))) };
        if s.direction != "sendonly" && s.direction != "sendrecv" {
            return Err(Refusal::Unsupported(format!("the {} line is {}: a WHIP offer sends", s.kind, s.direction)));
        }
        if !s.codecs.iter().any(|c| forwarded_codec(c).is_some()) {
            return Err(Refusal::Unsupported(format!(
                "no common codec on the {} line: the server forwards opus, VP8, VP9, H264 and AV1",
                s.kind
            )));
        }
        *slot = Some(mid.to_string());
    }
    if let Some(v) = &offer.video_mid {
        offer.rids = simulcast_send_rids(sdp, v);
    }
    Ok(offer)
}

/// The ICE credentials of an SDP or SDP fragment (the first `a=ice-ufrag`/`a=ice-pwd`).
pub fn ice_creds(sdp: &str) -> Option<(String, String)> {
    let ufrag = lines(sdp).find_map(|l| l.strip_prefix("a=ice-ufrag:"))?;
    let pwd = lines(sdp).find_map(|l| l.strip_prefix("a=ice-pwd:"))?;
    Some((ufrag.trim().to_string(), pwd.trim().to_string()))
}

/// `sdp` with its ICE credentials replaced (every `a=ice-ufrag`/`a=ice-pwd` line) and its
/// candidates dropped: the offer of an ICE restart (RFC 9725 §4.4.1.2).
pub fn with_ice_creds(sdp: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for l in lines(sdp) {
        if l.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if l.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(pwd);
        } else if l.starts_with("a=candidate:") || l == "a=end-of-candidates" {
            continue;
        } else {
            out.push_str(l);
        }
        out.push_str("\r\n");
    }
    out
}

/// The trickle-ICE fragment (RFC 8840) answering an ICE restart: the answer's credentials and
/// each media line's candidates.
pub fn answer_fragment(answer: &str) -> String {
    let mut out = String::new();
    if let Some((u, p)) = ice_creds(answer) {
        out.push_str(&format!("a=ice-ufrag:{u}\r\na=ice-pwd:{p}\r\n"));
    }
    let mut in_media = false;
    for l in lines(answer) {
        if let Some(m) = l.strip_prefix("m=") {
            // RFC 8840: the m= line of a fragment is a placeholder; the mid names the line.
            let kind = m.split(' ').next().unwrap_or("audio");
            out.push_str(&format!("m={kind} 9 UDP/TLS/RTP/SAVPF 0\r\n"));
            in_media = true;
        } else if in_media && (l.starts_with("a=mid:") || l.starts_with("a=candidate:") || l == "a=end-of-candidates") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBS: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=fingerprint:sha-256 \
        00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
        a=setup:actpass\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n\
        a=rtpmap:111 opus/48000/2\r\na=ssrc:1 cname:x\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\n\
        a=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n\
        a=ssrc:2 cname:x\r\n";

    #[test]
    fn an_obs_offer_is_audio_and_video() {
        let o = whip_offer(OBS).unwrap();
        assert_eq!(o, Offer { audio_mid: Some("0".into()), video_mid: Some("1".into()), rids: vec![] });
    }

    #[test]
    fn refusals_say_why() {
        let two_video =
            format!("{OBS}m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:2\r\na=sendonly\r\na=rtpmap:97 VP8/90000\r\n");
        assert!(matches!(whip_offer(&two_video), Err(Refusal::Unsupported(m)) if m.contains("one video")));
        let h265 = OBS.replace("H264/90000", "H265/90000");
        assert!(matches!(whip_offer(&h265), Err(Refusal::Unsupported(m)) if m.contains("no common codec")));
        let recv = OBS.replace("a=mid:1\r\na=sendonly", "a=mid:1\r\na=recvonly");
        assert!(matches!(whip_offer(&recv), Err(Refusal::Unsupported(m)) if m.contains("recvonly")));
        assert!(matches!(whip_offer("hello"), Err(Refusal::Unparsable(_))));
    }

    #[test]
    fn restart_offer_and_fragment() {
        let o = with_ice_creds(&format!("{OBS}a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"), "new", "pw");
        assert_eq!(ice_creds(&o), Some(("new".into(), "pw".into())));
        assert!(!o.contains("a=candidate"));
        let frag = answer_fragment(&format!("{OBS}a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"));
        assert!(frag.starts_with("a=ice-ufrag:abcd\r\na=ice-pwd:"), "{frag}");
        assert!(frag.contains("a=mid:1\r\na=candidate:1 1 udp"), "{frag}");
    }
}
