//! `/sdk/…`: the browser SDK, built from `sdk/` and compiled into the binary, so an app needs only
//! a script tag pointing at its own Chorus server (no CDN, no npm at run time).
//!
//! - `/sdk/chorus.js`: a classic script defining the global `Chorus`;
//! - `/sdk/chorus.mjs`: the same as an ES module;
//! - `/sdk/chorus.d.ts`: its TypeScript declarations;
//! - `/sdk/mesibo.js`: the Mesibo-compatible bundle (global `Mesibo`, `MESIBO_*` constants), so a
//!   Mesibo web app moves over by changing its script include.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

const CHORUS_JS: &str = include_str!("../../../../sdk/dist/chorus.js");
const CHORUS_MJS: &str = include_str!("../../../../sdk/dist/chorus.mjs");
const CHORUS_DTS: &str = include_str!("../../../../sdk/dist/chorus.d.ts");
const MESIBO_JS: &str = include_str!("../../../../sdk/dist/mesibo.js");

fn asset(body: &'static str, mime: &'static str) -> impl IntoResponse {
    // The bundle changes with the binary: a short cache keeps upgrades visible within minutes.
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "public, max-age=300")], body)
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sdk/chorus.js", get(|| async { asset(CHORUS_JS, "text/javascript; charset=utf-8") }))
        .route("/sdk/chorus.mjs", get(|| async { asset(CHORUS_MJS, "text/javascript; charset=utf-8") }))
        .route("/sdk/chorus.d.ts", get(|| async { asset(CHORUS_DTS, "application/typescript; charset=utf-8") }))
        .route("/sdk/mesibo.js", get(|| async { asset(MESIBO_JS, "text/javascript; charset=utf-8") }))
}
