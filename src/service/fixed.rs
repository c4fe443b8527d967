//! The answers that never change with the request: the demo page, the
//! CORS preflight, and the header that keeps figures out of caches.

use crate::http::Response;

/// The demo page: an `EventSource` client with a publish form.
pub const PAGE: &str = include_str!("../page.html");

/// The demo page.
pub(super) fn page() -> Response {
    let mut response = Response::new(200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec());
    response.header("Cache-Control", "no-cache");
    response
}

/// Figures of this instant: never cached.
pub(super) fn no_store(mut response: Response) -> Response {
    response.header("Cache-Control", "no-store");
    response
}

/// The CORS preflight: which methods and request headers a page on another
/// origin may use, cached by the browser for a day.
pub(super) fn preflight() -> Response {
    let mut response = Response::new(204, "text/plain", Vec::new());
    response.header("Allow", "GET, HEAD, POST, OPTIONS");
    response.header("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
    response.header(
        "Access-Control-Allow-Headers",
        "Authorization, Content-Type, Last-Event-ID, Cache-Control",
    );
    response.header("Access-Control-Max-Age", "86400");
    response
}
