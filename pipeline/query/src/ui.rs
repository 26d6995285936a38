//! The web UI: Jaeger's pages (search, trace, dependencies) and skein's
//! pipeline page, as plain JS modules, CSS and SVG embedded in the binary,
//! no build step and no CDN.
//!
//! In: `GET /`, `/search`, `/trace/{id}`, `/dependencies`, `/pipeline`
//! (all the same HTML shell; the page's script reads the path) and
//! `/static/{file}`. Out: the embedded files with their content types.
//!
//! Guarantees: every UI response carries a strict Content-Security-Policy
//! (`default-src 'self'`, no inline script or style) and
//! `X-Content-Type-Options: nosniff`; the scripts put span data into the
//! page only as text, never as HTML.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The policy of every UI response: only this origin's files, no inline
/// code, no plugins, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; object-src 'none'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../ui/index.html");

/// The files under `/static/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
    ("app.js", JS, include_str!("../ui/app.js")),
    ("util.js", JS, include_str!("../ui/util.js")),
    ("search.js", JS, include_str!("../ui/search.js")),
    ("trace.js", JS, include_str!("../ui/trace.js")),
    ("dependencies.js", JS, include_str!("../ui/dependencies.js")),
    ("pipeline.js", JS, include_str!("../ui/pipeline.js")),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../ui/favicon.svg"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The UI's routes, for merging into the API's router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/search") }))
        .route("/search", get(index))
        .route("/trace/{trace_id}", get(index))
        .route("/dependencies", get(index))
        .route("/pipeline", get(index))
        .route("/static/{file}", get(asset))
        .layer(axum::middleware::map_response(secure))
}

async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Embedded: a new binary may bring new files under the same
                // names, so revalidate rather than cache blindly.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file",
        )
            .into_response(),
    }
}

async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_pages_import_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(n, _, _)| *n).collect();
        for (name, _, body) in ASSETS {
            // Every `from './x.js'` (imports span lines).
            for part in body.split("from './").skip(1) {
                let file = part.split('\'').next().unwrap_or_default();
                assert!(served.contains(&file), "{name} imports unserved {file}");
            }
        }
        for needed in ["/static/app.js", "/static/style.css"] {
            assert!(INDEX.contains(needed), "index.html lacks {needed}");
        }
    }

    #[test]
    fn no_inline_code_in_the_shell() {
        assert!(!INDEX.contains("<style"), "inline style");
        assert!(!INDEX.contains("style="), "inline style attribute");
        assert!(!INDEX.contains("<script>"), "inline script");
        assert!(!INDEX.contains(" on"), "inline event handler");
    }
}
