//! WHIP/WHEP over plain HTTP for tests: an offer as OBS makes it, requests, problem details.

use std::time::Duration;

use chorus_client::Connection;
use chorus_proto::call::CallEvent;
use chorus_proto::ws::ServerFrame;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::Server;

/// An offer as OBS Studio makes it: H.264 + Opus, one of each, send-only, no trickle.
pub fn obs_offer(ufrag: &str) -> String {
    let fingerprint: Vec<String> = (0..32).map(|i| format!("{:02X}", i * 7 % 256)).collect();
    let fp = format!("a=fingerprint:sha-256 {}", fingerprint.join(":"));
    let lines = [
        "v=0".to_string(),
        "o=- 1 2 IN IP4 127.0.0.1".into(),
        "s=-".into(),
        "t=0 0".into(),
        "a=group:BUNDLE 0 1".into(),
        "a=msid-semantic: WMS obs".into(),
        "m=audio 9 UDP/TLS/RTP/SAVPF 111".into(),
        "c=IN IP4 0.0.0.0".into(),
        format!("a=ice-ufrag:{ufrag}"),
        "a=ice-pwd:clientpasswordclientpass".into(),
        fp.clone(),
        "a=setup:actpass".into(),
        "a=mid:0".into(),
        "a=sendonly".into(),
        "a=rtcp-mux".into(),
        "a=rtpmap:111 opus/48000/2".into(),
        "a=ssrc:11223344 cname:obs".into(),
        "m=video 9 UDP/TLS/RTP/SAVPF 96".into(),
        "c=IN IP4 0.0.0.0".into(),
        format!("a=ice-ufrag:{ufrag}"),
        "a=ice-pwd:clientpasswordclientpass".into(),
        fp,
        "a=setup:actpass".into(),
        "a=mid:1".into(),
        "a=sendonly".into(),
        "a=rtcp-mux".into(),
        "a=rtpmap:96 H264/90000".into(),
        "a=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
        "a=ssrc:55667788 cname:obs".into(),
        String::new(),
    ];
    lines.join("\r\n")
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn req(
    s: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    ct: Option<&str>,
    if_match: Option<&str>,
    body: &str,
) -> Reply {
    let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", s.base) };
    let mut r = reqwest::Client::new().request(method, url).body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(c) = ct {
        r = r.header(CONTENT_TYPE, c);
    }
    if let Some(m) = if_match {
        r = r.header("if-match", m);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    Reply { status, headers, body: resp.text().await.unwrap_or_default() }
}

pub fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers))
}

/// Asserts `r` is `status` with an RFC 9457 problem whose detail contains `detail`.
pub fn problem(r: &Reply, status: u16, detail: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(header(r, "content-type"), "application/problem+json");
    let p: serde_json::Value = serde_json::from_str(&r.body).expect("problem JSON");
    assert_eq!(p["status"], status);
    let got = p["detail"].as_str().unwrap_or_default();
    assert!(got.contains(detail), "detail {got:?} lacks {detail:?}");
}

/// The next call event on `c` that `pred` accepts (10 s at most).
pub async fn next_event(c: &mut Connection, mut pred: impl FnMut(&CallEvent) -> bool) -> CallEvent {
    let f = c
        .expect(Duration::from_secs(10), |f| matches!(f, ServerFrame::CallEvent { event, .. } if pred(event)))
        .await
        .expect("the call event");
    match f {
        ServerFrame::CallEvent { event, .. } => event,
        _ => unreachable!(),
    }
}
