//! What the server reads in, and narrows of, the SDP text it exchanges, beyond what str0m does:
//! the simulcast RIDs a publish offer really sends, and one codec per forwarded track.
//!
//! **One codec per track.** A publish offer lists every codec the client could send; the server
//! answers each of the stream's media lines with exactly one (the first of the offer's list that
//! it forwards), so the client sends that codec and nothing else. The subscribe offer of a track
//! then lists only that codec, as one payload type (and its retransmission format), so a subscriber never agrees to
//! a codec it will not get, and `call_offer.tracks` names it.

/// Codecs the server forwards (their `a=rtpmap` names), per kind.
const FORWARDED: [&str; 5] = ["opus", "VP8", "VP9", "H264", "AV1"];

/// The canonical name of a forwarded codec, from an `a=rtpmap` encoding name.
pub(crate) fn forwarded_codec(name: &str) -> Option<&'static str> {
    FORWARDED.iter().copied().find(|c| c.eq_ignore_ascii_case(name))
}

/// A media line (its mid) and the codec kept on it.
pub(crate) type Chosen = (String, &'static str);

/// One media section of an SDP: its line range (the `m=` line first).
struct Section {
    start: usize,
    end: usize,
    mid: Option<String>,
}

fn sections(lines: &[&str]) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("m=") {
            if let Some(last) = out.last_mut() {
                last.end = i;
            }
            out.push(Section { start: i, end: lines.len(), mid: None });
        } else if let (Some(last), Some(mid)) = (out.last_mut(), l.strip_prefix("a=mid:")) {
            last.mid = Some(mid.trim().to_string());
        }
    }
    out
}

fn split_lines(sdp: &str) -> Vec<&str> {
    sdp.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.is_empty()).collect()
}

/// The RIDs the media line `mid` of `sdp` sends as simulcast layers (`a=simulcast:send`,
/// alternatives and paused layers included), in the offer's order; empty without simulcast.
pub(crate) fn simulcast_send_rids(sdp: &str, mid: &str) -> Vec<String> {
    let lines = split_lines(sdp);
    let Some(sec) = sections(&lines).into_iter().find(|s| s.mid.as_deref() == Some(mid)) else {
        return Vec::new();
    };
    let mut rids = Vec::new();
    for l in &lines[sec.start..sec.end] {
        let Some(spec) = l.strip_prefix("a=simulcast:") else { continue };
        let mut words = spec.split_whitespace();
        while let (Some(dir), Some(list)) = (words.next(), words.next()) {
            if dir == "send" {
                for rid in list.split([';', ',']) {
                    let rid = rid.trim_start_matches('~');
                    if !rid.is_empty() {
                        rids.push(rid.to_string());
                    }
                }
            }
        }
    }
    rids
}

/// The payload type and attribute of an `a=rtpmap`/`a=fmtp`/`a=rtcp-fb` line.
fn pt_attr<'a>(line: &'a str, attr: &str) -> Option<(&'a str, &'a str)> {
    let rest = line.strip_prefix(attr)?;
    let (pt, value) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((pt, value))
}

/// Narrows the media lines named in `wanted` to one payload type each: `Some(codec)` keeps the
/// first of that codec, `None` keeps the first payload type of the line's list whose codec
/// the server forwards. Retransmission (`rtx`) formats of what is kept stay; everything else
/// (RED, FEC, other codecs) goes. Returns the new SDP and the codec of each named line found.
/// Fails when a named line has no codec to keep.
pub(crate) fn narrow_codecs(
    sdp: &str,
    wanted: &[(String, Option<&'static str>)],
) -> Result<(String, Vec<Chosen>), String> {
    let lines = split_lines(sdp);
    let mut drop = vec![false; lines.len()];
    let mut m_lines: Vec<(usize, String)> = Vec::new();
    let mut chosen = Vec::new();
    for sec in sections(&lines) {
        let Some(mid) = sec.mid.as_deref() else { continue };
        let Some((_, want)) = wanted.iter().find(|(m, _)| m == mid) else { continue };
        let body = &lines[sec.start..sec.end];
        // pt → encoding name, and rtx pt → the pt it repeats.
        let mut names: Vec<(&str, &str)> = Vec::new();
        let mut apt: Vec<(&str, &str)> = Vec::new();
        for l in body {
            if let Some((pt, v)) = pt_attr(l, "a=rtpmap:") {
                names.push((pt, v.split('/').next().unwrap_or("")));
            } else if let Some((pt, v)) = pt_attr(l, "a=fmtp:") {
                if let Some(a) = v.split(';').find_map(|p| p.trim().strip_prefix("apt=")) {
                    apt.push((pt, a));
                }
            }
        }
        let m_words: Vec<&str> = body[0].split(' ').collect();
        if m_words.len() < 3 {
            return Err(format!("media line {mid} is malformed"));
        }
        let listed = &m_words[3..];
        let codec_of = |pt: &str| names.iter().find(|(p, _)| *p == pt).and_then(|(_, n)| forwarded_codec(n));
        // One payload type: of several of a codec (VP9 profiles 0 and 2, H.264 profiles), the
        // first, which is also the one the forwarder writes (str0m's first of that codec).
        let keep_main: Vec<&str> = match want {
            Some(c) => listed.iter().copied().find(|pt| codec_of(pt) == Some(*c)).into_iter().collect(),
            None => listed.iter().copied().find(|pt| codec_of(pt).is_some()).into_iter().collect(),
        };
        let Some(codec) = keep_main.first().and_then(|pt| codec_of(pt)) else {
            return Err(match want {
                Some(c) => format!("media line {mid} does not offer {c}"),
                None => format!("media line {mid} offers no codec the server forwards (opus, VP8, VP9, H264, AV1)"),
            });
        };
        let keep: Vec<&str> = listed
            .iter()
            .copied()
            .filter(|pt| keep_main.contains(pt) || apt.iter().any(|(r, a)| r == pt && keep_main.contains(a)))
            .collect();
        let mut m = m_words[..3].join(" ");
        for pt in &keep {
            m.push(' ');
            m.push_str(pt);
        }
        m_lines.push((sec.start, m));
        for (i, l) in body.iter().enumerate() {
            let pt = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().find_map(|a| pt_attr(l, a)).map(|(pt, _)| pt);
            if pt.is_some_and(|pt| pt != "*" && !keep.contains(&pt)) {
                drop[sec.start + i] = true;
            }
        }
        chosen.push((mid.to_string(), codec));
    }
    let mut out = String::with_capacity(sdp.len());
    for (i, l) in lines.iter().enumerate() {
        if drop[i] {
            continue;
        }
        match m_lines.iter().find(|(at, _)| *at == i) {
            Some((_, m)) => out.push_str(m),
            None => out.push_str(l),
        }
        out.push_str("\r\n");
    }
    Ok((out, chosen))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\na=mid:0\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 35\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
        a=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:98 VP9/90000\r\n\
        a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\na=rtpmap:35 AV1/90000\r\n\
        a=rid:q send\r\na=rid:h send\r\na=simulcast:send q;~h\r\n";

    #[test]
    fn simulcast_rids_are_read_from_the_named_line() {
        assert_eq!(simulcast_send_rids(OFFER, "1"), vec!["q", "h"]);
        assert!(simulcast_send_rids(OFFER, "0").is_empty());
        assert!(simulcast_send_rids(OFFER, "7").is_empty());
        let recv_first = OFFER.replace("a=simulcast:send q;~h", "a=simulcast:recv x send f,g");
        assert_eq!(simulcast_send_rids(&recv_first, "1"), vec!["f", "g"]);
    }

    #[test]
    fn the_first_forwarded_codec_is_kept_with_its_rtx() {
        let wanted = [("0".to_string(), None), ("1".to_string(), None)];
        let (sdp, chosen) = narrow_codecs(OFFER, &wanted).unwrap();
        assert_eq!(chosen, vec![("0".to_string(), "opus"), ("1".to_string(), "VP8")]);
        assert!(sdp.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"), "{sdp}");
        assert!(sdp.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"), "{sdp}");
        assert!(!sdp.contains("red/48000") && !sdp.contains("VP9") && !sdp.contains("AV1") && !sdp.contains("apt=98"));
        assert!(sdp.contains("a=fmtp:97 apt=96") && sdp.contains("a=rtcp-fb:96 nack") && sdp.contains("a=simulcast"));
        // A named codec is kept wherever it is in the list.
        let (sdp, chosen) = narrow_codecs(OFFER, &[("1".to_string(), Some("AV1"))]).unwrap();
        assert_eq!(chosen, vec![("1".to_string(), "AV1")]);
        assert!(sdp.contains("m=video 9 UDP/TLS/RTP/SAVPF 35\r\n") && sdp.contains("a=rtpmap:111 opus"), "{sdp}");
        assert!(narrow_codecs(OFFER, &[("1".to_string(), Some("H264"))]).is_err());
    }
}
