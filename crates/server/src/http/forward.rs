//! Cluster mode: the requests about a call that another node must answer, sent there.
//!
//! A route layer over the WHIP/WHEP routes and `/v1/groups/{gid}/call/recording`. For each
//! request it decides which node runs it ([`crate::cluster::forward`] carries it):
//!
//! - `POST /v1/groups/{gid}/whip` publishes into the group's call: the node holding the call,
//!   placing it first if no live node does (as the first `call_join` would). The entry checks
//!   the token and membership first, so nothing is placed for a request the host would refuse.
//! - `POST /v1/groups/{gid}/whep` and the recording routes: the node holding the call, if one
//!   does; else this node answers (nothing live, no call).
//! - `PATCH`/`DELETE /v1/whip|whep/{id}`: the node whose id starts the session's id
//!   (`<node_id>.<random>`, see [`crate::live`]) while it is alive.
//!
//! Everything else, and a request forwarded here, runs on this node.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{bearer_header, AppState, ClientIp};
use crate::cluster::forward::{Forwarded, MAX_BODY};
use crate::error::ApiError;
use crate::live::{Credential, Kind, LiveError};

/// Where a request runs.
enum Target {
    /// The node holding the call of this group, placed by this request if none holds it.
    Place(i64),
    /// The node holding the call of this group, if one does.
    Holder(i64),
    /// The node this WHIP or WHEP session's id names.
    Session(String),
}

/// The target of a request, from its route pattern and path; `None`: it runs here.
fn target(method: &Method, pattern: &str, path: &str) -> Option<Target> {
    let param = |name: &str| {
        let at = pattern.split('/').position(|p| p == name)?;
        path.split('/').nth(at).map(str::to_string)
    };
    let gid = || param("{gid}")?.parse::<i64>().ok();
    match pattern {
        "/v1/groups/{gid}/whip" if method == Method::POST => gid().map(Target::Place),
        "/v1/groups/{gid}/whep" if method == Method::POST => gid().map(Target::Holder),
        "/v1/groups/{gid}/call/recording" => gid().map(Target::Holder),
        "/v1/whip/{id}" | "/v1/whep/{id}" if method == Method::PATCH || method == Method::DELETE => {
            let id = param("{id}")?;
            Some(Target::Session(id.split_once('.')?.0.to_string()))
        }
        _ => None,
    }
}

/// Whether the route answers in WHIP/WHEP's shape (problem details) rather than the API's.
fn is_live(pattern: &str) -> bool {
    pattern.ends_with("/whip") || pattern.ends_with("/whep") || pattern.starts_with("/v1/whi")
}

/// The route layer: runs the request here, or on the node that holds what it is about.
pub(super) async fn layer(State(s): State<AppState>, ClientIp(ip): ClientIp, req: Request, next: Next) -> Response {
    let (Some(fwd), Some(router)) = (&s.forward, &s.call_router) else { return next.run(req).await };
    if req.extensions().get::<Forwarded>().is_some() {
        return next.run(req).await;
    }
    let pattern = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
    let Some(t) = target(req.method(), &pattern, req.uri().path()) else { return next.run(req).await };
    let live = is_live(&pattern);
    let host = match t {
        Target::Place(gid) => match place(&s, gid, bearer_header(req.headers()).map(str::to_string)).await {
            Ok(host) => Some(host),
            Err(e) => return e,
        },
        Target::Holder(gid) => match router.holder(gid).await {
            Ok(host) => host,
            Err(e) => return refusal(live, e),
        },
        Target::Session(node) => s.cluster.as_ref().filter(|c| c.alive(&node)).map(|_| node),
    };
    let host = match host {
        Some(h) if h != fwd.node_id() => h,
        _ => return next.run(req).await,
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refusal(live, ApiError::new(chorus_proto::ErrorCode::TooLarge, "the request body is too large"));
    };
    match fwd.forward(&host, &parts.method, &parts.uri, &parts.headers, ip, body).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(node = %host, path = %parts.uri.path(), "cluster: the call's node did not answer a request");
            if live {
                LiveError {
                    status: 503,
                    detail: "the call's node did not answer; try again".into(),
                    retry_after: Some(1),
                }
                .into_response()
            } else {
                ApiError::rate_limited("the call's node did not answer; try again").into_response()
            }
        }
    }
}

/// A WHIP POST's host: the token and membership checked as the host will check them, then the
/// call placed. (The rate limit is the host's: counted here too, a POST this node runs itself
/// would count twice.)
async fn place(s: &AppState, gid: i64, token: Option<String>) -> Result<String, Response> {
    let router = s.call_router.as_ref().expect("cluster mode");
    let cred = s.live.credential(gid, token.as_deref(), Kind::Whip).await.map_err(|e| e.into_response())?;
    if let Credential::User { uid, .. } = cred {
        s.calls.check_member(uid, gid).await.map_err(|e| refusal(true, e))?;
    }
    router.place(gid).await.map_err(|e| refusal(true, e))
}

/// An error in the route's shape.
fn refusal(live: bool, e: ApiError) -> Response {
    if live {
        LiveError::from(e).into_response()
    } else {
        e.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(t: Option<Target>) -> Option<String> {
        match t {
            Some(Target::Session(n)) => Some(n),
            _ => None,
        }
    }

    #[test]
    fn requests_about_a_call_find_their_target() {
        let post = Method::POST;
        assert!(matches!(target(&post, "/v1/groups/{gid}/whip", "/v1/groups/42/whip"), Some(Target::Place(42))));
        assert!(matches!(target(&post, "/v1/groups/{gid}/whep", "/v1/groups/7/whep"), Some(Target::Holder(7))));
        assert!(target(&Method::HEAD, "/v1/groups/{gid}/whep", "/v1/groups/7/whep").is_none());
        assert!(target(&Method::OPTIONS, "/v1/groups/{gid}/whip", "/v1/groups/7/whip").is_none());
        assert!(matches!(
            target(&Method::GET, "/v1/groups/{gid}/call/recording", "/v1/groups/9/call/recording"),
            Some(Target::Holder(9))
        ));
        assert_eq!(node(target(&Method::DELETE, "/v1/whip/{id}", "/v1/whip/node-2.AbC_d")), Some("node-2".into()));
        assert_eq!(node(target(&Method::PATCH, "/v1/whep/{id}", "/v1/whep/n1.x")), Some("n1".into()));
        // A session id of one node (no node part), a bad gid, another route: here.
        assert!(target(&Method::DELETE, "/v1/whip/{id}", "/v1/whip/AbC").is_none());
        assert!(target(&post, "/v1/groups/{gid}/whip", "/v1/groups/x/whip").is_none());
        assert!(target(&post, "/v1/groups/{gid}/messages", "/v1/groups/1/messages").is_none());
    }
}
