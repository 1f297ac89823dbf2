//! HTTP requests about a call, carried to the node that holds the call.
//!
//! WHIP and WHEP sessions and a call's recording live in the call's room, on its host node
//! ([`super::calls`]). A request for one of them may reach any node behind the load balancer:
//! the node that gets it (the **entry**) finds the host ([`crate::http::forward`] decides
//! which requests and which node) and, when that is another node, sends the request there
//! over NATS on `<nats_prefix>.http.<node_id>`. The host runs it through its own HTTP
//! application, as if its client had called it, and sends the response back; the entry answers
//! with it. So the client sees one deployment: the `Location` of a WHIP session works on every
//! node, and the SDP answer carries the host's ICE candidates, so the media go to the host
//! directly, never through the entry.
//!
//! A message is a JSON head line, `\n`, then the body's bytes. Requests are small (an SDP
//! offer, a trickle-ICE fragment, an empty recording request) and bounded by
//! [`MAX_BODY`], under NATS's 1 MiB message limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use axum::Router;
use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tower::ServiceExt;

use super::Cluster;

/// The most bytes of a forwarded body, request or response.
pub const MAX_BODY: usize = 512 * 1024;
/// How long the entry waits for the host's response: a WHEP POST itself waits up to 5 s for
/// the room's offer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// The head of a message between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Head {
    /// Entry → host: run this request (its body follows).
    Request { from: String, id: u64, method: String, uri: String, headers: Vec<(String, String)>, ip: IpAddr },
    /// Host → entry: the response to request `id` (its body follows).
    Response { id: u64, status: u16, headers: Vec<(String, String)> },
}

/// A request the host answered: its status, headers and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Why a request was not answered by its host.
#[derive(Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The host did not answer in time, or was found gone.
    NoAnswer,
}

/// Marks a request that was forwarded here: it runs on this node, whatever it is about.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded;

/// The request forwarding of one node.
pub struct HttpForward {
    cluster: Arc<Cluster>,
    /// This node's HTTP application, which runs requests forwarded here (set once it is built).
    app: OnceLock<Router>,
    /// Requests sent to hosts, waiting for their responses, by id: the host and the waiter.
    pending: Mutex<HashMap<u64, (String, oneshot::Sender<Answer>)>>,
    next: AtomicU64,
}

impl HttpForward {
    /// Subscribes to this node's subject and starts serving forwarded requests.
    pub async fn start(cluster: Arc<Cluster>) -> anyhow::Result<Arc<HttpForward>> {
        let mut sub = cluster
            .nats
            .subscribe(subject(&cluster.prefix, &cluster.id))
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to the HTTP subject on NATS: {e}"))?;
        let fwd = Arc::new(HttpForward {
            cluster,
            app: OnceLock::new(),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let this = Arc::downgrade(&fwd);
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let Some(this) = this.upgrade() else { return };
                match split(&m.payload) {
                    Some((head, body)) => this.receive(head, body),
                    None => tracing::warn!("cluster: an unreadable forwarded request; ignored"),
                }
            }
        });
        Ok(fwd)
    }

    /// Sets the application forwarded requests run through (this node's whole HTTP router).
    pub fn set_app(&self, app: Router) {
        let _ = self.app.set(app);
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.cluster.id
    }

    /// Sends a request to node `host` and waits for its response.
    pub async fn forward(
        &self,
        host: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        ip: IpAddr,
        body: Bytes,
    ) -> Result<Response<Body>, Unanswered> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("forwards poisoned").insert(id, (host.to_string(), tx));
        let head = Head::Request {
            from: self.cluster.id.clone(),
            id,
            method: method.as_str().to_string(),
            uri: uri.to_string(),
            headers: carried(headers),
            ip,
        };
        self.publish(host, &head, &body).await;
        let answer = tokio::time::timeout(ANSWER_WAIT, rx).await;
        self.pending.lock().expect("forwards poisoned").remove(&id);
        let Ok(Ok(a)) = answer else { return Err(Unanswered::NoAnswer) };
        let mut r = Response::new(Body::from(a.body));
        *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        put(r.headers_mut(), &a.headers);
        Ok(r)
    }

    /// Node `id` is gone: the requests waiting for it give up now.
    pub fn node_gone(&self, id: &str) {
        self.pending.lock().expect("forwards poisoned").retain(|_, (host, _)| host != id);
    }

    async fn publish(&self, node: &str, head: &Head, body: &[u8]) {
        let head = serde_json::to_vec(head).expect("forward heads serialise");
        let mut buf = BytesMut::with_capacity(head.len() + 1 + body.len());
        buf.put_slice(&head);
        buf.put_u8(b'\n');
        buf.put_slice(body);
        if let Err(e) = self.cluster.nats.publish(subject(&self.cluster.prefix, node), buf.freeze()).await {
            // The asker waits out its time and answers that the call's node did not answer.
            tracing::warn!(node = %node, error = %e, "cluster: a forwarded request or response was not published");
        }
    }

    fn receive(self: &Arc<Self>, head: Head, body: Bytes) {
        match head {
            Head::Request { from, id, method, uri, headers, ip } => {
                let this = self.clone();
                tokio::spawn(async move {
                    let (status, headers, body) = match this.run(&method, &uri, &headers, ip, body).await {
                        Some(r) => r,
                        None => (400, Vec::new(), Bytes::new()),
                    };
                    this.publish(&from, &Head::Response { id, status, headers }, &body).await;
                });
            }
            Head::Response { id, status, headers } => {
                let waiter = self.pending.lock().expect("forwards poisoned").remove(&id);
                if let Some((_, tx)) = waiter {
                    let _ = tx.send(Answer { status, headers, body });
                }
            }
        }
    }

    /// Runs a forwarded request through this node's application; `None` if it cannot be
    /// rebuilt (a bad method or URI: another node sent it, so this does not happen).
    async fn run(
        &self,
        method: &str,
        uri: &str,
        headers: &[(String, String)],
        ip: IpAddr,
        body: Bytes,
    ) -> Option<(u16, Vec<(String, String)>, Bytes)> {
        let app = self.app.get()?.clone();
        let mut req = Request::builder().method(method).uri(uri).body(Body::from(body)).ok()?;
        put(req.headers_mut(), headers);
        // The client's address, for the host's rate limits; and the mark that keeps it here.
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, 0)));
        req.extensions_mut().insert(Forwarded);
        let resp = app.oneshot(req).await.ok()?;
        let status = resp.status().as_u16();
        let headers = carried(resp.headers());
        match axum::body::to_bytes(resp.into_body(), MAX_BODY).await {
            Ok(body) => Some((status, headers, body)),
            Err(_) => Some((500, Vec::new(), Bytes::new())),
        }
    }
}

fn subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.http.{node}")
}

/// Splits a message into its head and body.
fn split(payload: &Bytes) -> Option<(Head, Bytes)> {
    let nl = payload.iter().position(|b| *b == b'\n')?;
    let head = serde_json::from_slice(&payload[..nl]).ok()?;
    Some((head, payload.slice(nl + 1..)))
}

/// The headers that travel: all but those of the connection itself (the body's length is set
/// anew where it is sent on).
fn carried(headers: &HeaderMap) -> Vec<(String, String)> {
    const HOP: [&str; 5] = ["connection", "content-length", "transfer-encoding", "keep-alive", "upgrade"];
    headers
        .iter()
        .filter(|(n, _)| !HOP.contains(&n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

fn put(into: &mut HeaderMap, headers: &[(String, String)]) {
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(n.as_str()), HeaderValue::try_from(v.as_str())) {
            into.append(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_splits_into_its_head_and_body() {
        let head = Head::Response { id: 7, status: 201, headers: vec![("location".into(), "/v1/whip/a.b".into())] };
        let mut buf = serde_json::to_vec(&head).unwrap();
        buf.push(b'\n');
        buf.extend_from_slice(b"v=0\r\n\n");
        let (h, body) = split(&Bytes::from(buf)).unwrap();
        assert!(matches!(h, Head::Response { id: 7, status: 201, .. }));
        assert_eq!(&body[..], b"v=0\r\n\n");
        assert!(split(&Bytes::from_static(b"no newline")).is_none());
    }

    #[test]
    fn connection_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("5"));
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.append("link", HeaderValue::from_static("<stun:a>"));
        h.append("link", HeaderValue::from_static("<turn:b>"));
        let c = carried(&h);
        assert_eq!(c.len(), 3, "{c:?}");
        let mut back = HeaderMap::new();
        put(&mut back, &c);
        assert_eq!(back.get_all("link").iter().count(), 2);
        assert_eq!(back.get("authorization").unwrap(), "Bearer x");
    }
}
