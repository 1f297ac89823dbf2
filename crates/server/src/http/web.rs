//! `/`: the web app, built from `web/` and compiled into the binary (`web/dist`), so one binary
//! serves the whole product. `/` (and `/?room=…&pin=…` invite links) answer `index.html`; the
//! build's other files are served by path, hashed assets with a long cache.

use axum::extract::Path;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use include_dir::{include_dir, Dir};

use super::AppState;
use crate::error::ApiError;

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web/dist");

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Result<Response, ApiError> {
    let f = WEB.get_file(path).ok_or_else(|| ApiError::not_found("no such endpoint"))?;
    // Hashed build assets never change under their name; the page itself must be re-read to pick
    // up a new build.
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    Ok(([(header::CONTENT_TYPE, mime(path)), (header::CACHE_CONTROL, cache)], f.contents()).into_response())
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        // Any other method on a path that is no endpoint stays a plain "no such endpoint".
        .route(
            "/{*path}",
            any(|method: Method, Path(path): Path<String>| async move {
                if method == Method::GET || method == Method::HEAD {
                    file(&path)
                } else {
                    Err(ApiError::not_found("no such endpoint"))
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_has_an_index_page() {
        let index = WEB.get_file("index.html").expect("web/dist/index.html");
        assert!(std::str::from_utf8(index.contents()).unwrap().contains("<html"));
    }

    #[test]
    fn paths_outside_the_build_are_not_found() {
        for p in ["../Cargo.toml", "nope.js", "assets/../../secret"] {
            assert!(file(p).is_err(), "{p}");
        }
    }
}
