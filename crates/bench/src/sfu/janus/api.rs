//! A small client of the Janus API over one WebSocket (subprotocol `janus-protocol`, JSON):
//! sessions, plugin handles, requests matched to replies by `transaction`, asynchronous events
//! routed to their handle, and session keepalives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::sfu::Medium;

/// How long a request may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// How often every session is kept alive (Janus drops sessions silent for `session_timeout`,
/// 60 s).
const KEEPALIVE: Duration = Duration::from_secs(25);

/// One request waiting for its reply.
struct Waiter {
    /// An `ack` is the reply (keepalive, trickle); otherwise the `ack` of an asynchronous plugin
    /// request is skipped and the `event` that follows is the reply.
    ack_final: bool,
    tx: oneshot::Sender<Value>,
}

#[derive(Default)]
struct Shared {
    waiters: Mutex<HashMap<String, Waiter>>,
    /// Events of each handle that are not replies (`webrtcup`, `media`, `hangup`, plugin events
    /// without a transaction).
    handles: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
    sessions: Mutex<Vec<u64>>,
}

/// A connection to the Janus API.
pub struct Api {
    out: mpsc::UnboundedSender<String>,
    shared: Arc<Shared>,
    next: AtomicU64,
    tasks: Vec<JoinHandle<()>>,
}

/// A plugin handle.
pub struct Handle {
    /// Its session.
    pub session: u64,
    /// The handle id.
    pub id: u64,
    /// Its events that are not replies to a request.
    pub events: mpsc::UnboundedReceiver<Value>,
}

/// A JSEP description (offer or answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jsep {
    /// `offer` or `answer`.
    pub kind: String,
    /// The SDP.
    pub sdp: String,
}

/// A plugin's reply to a request: its `plugindata.data` and the JSEP that came with it.
#[derive(Debug, Clone)]
pub struct PluginReply {
    /// `plugindata.data`.
    pub data: Value,
    /// The accompanying JSEP, if any.
    pub jsep: Option<Jsep>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Hands one message from Janus to whoever waits for it.
    fn dispatch(&self, msg: Value) {
        let kind = msg["janus"].as_str().unwrap_or_default();
        if let Some(t) = msg["transaction"].as_str() {
            let mut waiters = lock(&self.waiters);
            if let Some(w) = waiters.get(t) {
                if kind != "ack" || w.ack_final {
                    if let Some(w) = waiters.remove(t) {
                        let _ = w.tx.send(msg);
                    }
                }
                return;
            }
        }
        if let Some(sender) = msg["sender"].as_u64() {
            if let Some(tx) = lock(&self.handles).get(&sender) {
                let _ = tx.send(msg);
            }
        }
    }
}

impl Api {
    /// Connects to `url` (`ws://127.0.0.1:port`).
    pub async fn connect(url: &str) -> anyhow::Result<Api> {
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("janus-protocol"));
        let (ws, _) = tokio_tungstenite::connect_async(req).await.with_context(|| format!("connecting to {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let shared = Arc::new(Shared::default());
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let writer = tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader = {
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    let text = match &m {
                        Message::Text(t) => t.as_str(),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    match serde_json::from_str::<Value>(text) {
                        Ok(v) => shared.dispatch(v),
                        Err(e) => tracing::debug!("janus sent unreadable JSON: {e}"),
                    }
                }
                // The connection is gone: fail whatever waits.
                lock(&shared.waiters).clear();
                lock(&shared.handles).clear();
            })
        };
        let keepalive = {
            let shared = shared.clone();
            let out = out.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    tokio::time::sleep(KEEPALIVE).await;
                    let sessions = lock(&shared.sessions).clone();
                    for s in sessions {
                        n += 1;
                        let msg = json!({"janus": "keepalive", "session_id": s, "transaction": format!("ka{n}")});
                        if out.send(msg.to_string()).is_err() {
                            return;
                        }
                    }
                }
            })
        };
        Ok(Api { out, shared, next: AtomicU64::new(1), tasks: vec![writer, reader, keepalive] })
    }

    /// Sends `msg` with a fresh transaction and waits for its reply; a Janus `error` is an error.
    async fn call(&self, mut msg: Value, ack_final: bool) -> anyhow::Result<Value> {
        let t = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        msg["transaction"] = json!(t);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.waiters).insert(t.clone(), Waiter { ack_final, tx });
        if self.out.send(msg.to_string()).is_err() {
            lock(&self.shared.waiters).remove(&t);
            bail!("the Janus connection is closed");
        }
        let reply = match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => bail!("the Janus connection closed before replying to {}", msg["janus"]),
            Err(_) => {
                lock(&self.shared.waiters).remove(&t);
                bail!("no reply from Janus to {} within {REPLY_TIMEOUT:?}", msg["janus"])
            }
        };
        janus_error(&reply)?;
        Ok(reply)
    }

    /// `info`: the server's description (version, plugins, transports).
    pub async fn info(&self) -> anyhow::Result<Value> {
        self.call(json!({"janus": "info"}), false).await
    }

    /// Creates a session (kept alive until the connection closes).
    pub async fn create_session(&self) -> anyhow::Result<u64> {
        let r = self.call(json!({"janus": "create"}), false).await?;
        let id = r["data"]["id"].as_u64().ok_or_else(|| anyhow!("create gave no session id: {r}"))?;
        lock(&self.shared.sessions).push(id);
        Ok(id)
    }

    /// Attaches a handle of `plugin` to `session`.
    pub async fn attach(&self, session: u64, plugin: &str) -> anyhow::Result<Handle> {
        let r = self.call(json!({"janus": "attach", "session_id": session, "plugin": plugin}), false).await?;
        let id = r["data"]["id"].as_u64().ok_or_else(|| anyhow!("attach gave no handle id: {r}"))?;
        let (tx, events) = mpsc::unbounded_channel();
        lock(&self.shared.handles).insert(id, tx);
        Ok(Handle { session, id, events })
    }

    /// Sends `body` (and `jsep`) to the handle's plugin and waits for the plugin's answer: the
    /// synchronous `success` or, for asynchronous requests, the `event` after the `ack`.
    pub async fn message(&self, handle: &Handle, body: Value, jsep: Option<Value>) -> anyhow::Result<PluginReply> {
        let mut msg = json!({"janus": "message", "session_id": handle.session, "handle_id": handle.id, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let reply = self.call(msg, false).await?;
        plugin_reply(&reply)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Waits for an event of `handle` whose `janus` field is `kind` (others are skipped).
pub async fn wait_event(handle: &mut Handle, kind: &str, timeout: Duration) -> anyhow::Result<Value> {
    let wait = async {
        while let Some(ev) = handle.events.recv().await {
            if ev["janus"] == kind {
                return Ok(ev);
            }
            if ev["janus"] == "hangup" || ev["janus"] == "detached" {
                bail!("Janus closed the peer connection: {ev}");
            }
        }
        bail!("the Janus connection closed")
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| anyhow!("no {kind} from Janus within {timeout:?}"))?
}

/// Fails on a Janus-level `error` reply.
pub fn janus_error(msg: &Value) -> anyhow::Result<()> {
    if msg["janus"] == "error" {
        bail!("Janus error {}: {}", msg["error"]["code"], msg["error"]["reason"].as_str().unwrap_or("(no reason)"));
    }
    Ok(())
}

/// The plugin part of a reply; a plugin `error` is an error.
pub fn plugin_reply(msg: &Value) -> anyhow::Result<PluginReply> {
    janus_error(msg)?;
    let data = msg["plugindata"]["data"].clone();
    if data.is_null() {
        bail!("Janus reply without plugin data: {msg}");
    }
    if let Some(e) = data.get("error") {
        bail!("videoroom error {}: {}", data["error_code"], e.as_str().unwrap_or_default());
    }
    let jsep = msg
        .get("jsep")
        .and_then(|j| Some(Jsep { kind: j["type"].as_str()?.to_string(), sdp: j["sdp"].as_str()?.to_string() }));
    Ok(PluginReply { data, jsep })
}

/// One m-line of a subscription, from the `streams` list of an `attached` or `updated` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubStream {
    /// The subscription's mid.
    pub mid: String,
    /// Audio or video.
    pub kind: Medium,
    /// The publisher (feed) it carries.
    pub feed: u64,
    /// The publisher's mid.
    pub feed_mid: Option<String>,
}

/// The audio and video m-lines of a subscription (data channels and inactive lines skipped).
pub fn sub_streams(data: &Value) -> Vec<SubStream> {
    let Some(list) = data["streams"].as_array() else { return Vec::new() };
    list.iter()
        .filter(|s| s["active"] != json!(false))
        .filter_map(|s| {
            let kind = match s["type"].as_str()? {
                "audio" => Medium::Audio,
                "video" => Medium::Video,
                _ => return None,
            };
            Some(SubStream {
                mid: s["mid"].as_str()?.to_string(),
                kind,
                feed: s["feed_id"].as_u64()?,
                feed_mid: s["feed_mid"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// Maps each subscription mid to (publisher index, medium), given each feed id's publisher.
pub fn map_streams(streams: &[SubStream], feeds: &HashMap<u64, usize>) -> HashMap<String, (usize, Medium)> {
    streams.iter().filter_map(|s| Some((s.mid.clone(), (*feeds.get(&s.feed)?, s.kind)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_event_maps_mids_to_publishers() {
        // As Janus 1.1 sends it (trimmed).
        let ev: Value = serde_json::from_str(
            r#"{"janus":"event","session_id":1,"sender":2,"transaction":"t7",
            "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"attached","room":1234,
            "streams":[
              {"type":"audio","active":true,"mindex":0,"mid":"0","ready":false,"send":true,"feed_id":11,"feed_display":"pub0","feed_mid":"a0"},
              {"type":"video","active":true,"mindex":1,"mid":"1","ready":false,"send":true,"feed_id":11,"feed_mid":"v0"},
              {"type":"audio","active":true,"mindex":2,"mid":"2","feed_id":12,"feed_mid":"a0"},
              {"type":"video","active":true,"mindex":3,"mid":"3","feed_id":12,"feed_mid":"v0"},
              {"type":"data","active":true,"mindex":4,"mid":"4"},
              {"type":"video","active":false,"mindex":5,"mid":"5"}
            ]}},
            "jsep":{"type":"offer","sdp":"v=0\r\n"}}"#,
        )
        .unwrap();
        let r = plugin_reply(&ev).unwrap();
        assert_eq!(r.data["videoroom"], "attached");
        assert_eq!(r.jsep, Some(Jsep { kind: "offer".into(), sdp: "v=0\r\n".into() }));
        let streams = sub_streams(&r.data);
        assert_eq!(streams.len(), 4, "data and inactive lines are skipped");
        assert_eq!(
            streams[1],
            SubStream { mid: "1".into(), kind: Medium::Video, feed: 11, feed_mid: Some("v0".into()) }
        );
        let feeds = HashMap::from([(11, 0usize), (12, 1usize)]);
        let map = map_streams(&streams, &feeds);
        assert_eq!(map["0"], (0, Medium::Audio));
        assert_eq!(map["1"], (0, Medium::Video));
        assert_eq!(map["2"], (1, Medium::Audio));
        assert_eq!(map["3"], (1, Medium::Video));
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn errors_are_errors() {
        let e: Value = serde_json::from_str(
            r#"{"janus":"error","transaction":"t1","error":{"code":458,"reason":"No such session"}}"#,
        )
        .unwrap();
        let err = plugin_reply(&e).unwrap_err().to_string();
        assert!(err.contains("458") && err.contains("No such session"), "{err}");
        let e: Value = serde_json::from_str(
            r#"{"janus":"event","transaction":"t2","plugindata":{"plugin":"janus.plugin.videoroom",
            "data":{"videoroom":"event","error_code":428,"error":"No such feed (3)"}}}"#,
        )
        .unwrap();
        let err = plugin_reply(&e).unwrap_err().to_string();
        assert!(err.contains("428") && err.contains("No such feed"), "{err}");
        let ok: Value = serde_json::from_str(
            r#"{"janus":"success","transaction":"t3","plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"joined","id":5}}}"#,
        )
        .unwrap();
        let r = plugin_reply(&ok).unwrap();
        assert_eq!(r.data["id"], 5);
        assert!(r.jsep.is_none());
    }

    #[test]
    fn dispatch_skips_acks_of_async_requests() {
        let shared = Shared::default();
        let (tx, mut rx) = oneshot::channel();
        lock(&shared.waiters).insert("t1".into(), Waiter { ack_final: false, tx });
        let (htx, mut hrx) = mpsc::unbounded_channel();
        lock(&shared.handles).insert(9, htx);
        shared.dispatch(json!({"janus": "ack", "transaction": "t1"}));
        assert!(rx.try_recv().is_err(), "the ack is not the reply");
        shared.dispatch(json!({"janus": "webrtcup", "sender": 9}));
        assert_eq!(hrx.try_recv().unwrap()["janus"], "webrtcup");
        shared.dispatch(json!({"janus": "event", "transaction": "t1", "sender": 9}));
        assert_eq!(rx.try_recv().unwrap()["janus"], "event");
        assert!(hrx.try_recv().is_err(), "a reply is not also an event");
        let (tx, mut rx) = oneshot::channel();
        lock(&shared.waiters).insert("t2".into(), Waiter { ack_final: true, tx });
        shared.dispatch(json!({"janus": "ack", "transaction": "t2"}));
        assert_eq!(rx.try_recv().unwrap()["janus"], "ack");
    }
}
