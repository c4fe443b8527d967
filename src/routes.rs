//! Which handler a request goes to: `(method, path)` to a [`Route`], or the
//! `404` / `405` that says why none.
//!
//! | path         | methods               | route                   |
//! |--------------|-----------------------|-------------------------|
//! | `/`          | GET, HEAD             | the demo page           |
//! | `/events`    | GET, HEAD             | the event stream        |
//! | `/publish`   | POST                  | publish the body        |
//! | `/broadcast` | GET, HEAD             | publish `?msg=`         |
//! | `/stats`     | GET, HEAD             | JSON counters           |
//! | `/metrics`   | GET, HEAD             | Prometheus text         |
//! | `/healthz`   | GET, HEAD             | `200 ok`                |
//! | `/topics`    | GET, HEAD             | streams per topic       |
//! | any of them, or `*` | OPTIONS        | CORS preflight          |
//!
//! `HEAD` goes wherever `GET` does; the response writer drops the body.

use crate::http::{Method, Rejection};

/// Where a request is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/`: the demo page.
    Page,
    /// `/events`: the event stream.
    Events,
    /// `POST /publish`: publish the body.
    Publish,
    /// `GET /broadcast?msg=`: publish the query's message.
    Broadcast,
    /// `/stats`: JSON counters.
    Stats,
    /// `/metrics`: Prometheus text.
    Metrics,
    /// `/healthz`.
    Health,
    /// `/topics`: how many streams hold each name or pattern.
    Topics,
    /// `OPTIONS`: the CORS preflight.
    Preflight,
}

/// The methods each path allows, for `405` answers and preflights.
const READ_ONLY: &str = "GET, HEAD, OPTIONS";
const POST_ONLY: &str = "POST, OPTIONS";

/// The route for `method` on `path`, or why there is none.
pub fn route(method: Method, path: &str) -> Result<Route, Rejection> {
    let (route, allow) = match path {
        "/" => (Route::Page, READ_ONLY),
        "/events" => (Route::Events, READ_ONLY),
        "/publish" => (Route::Publish, POST_ONLY),
        "/broadcast" => (Route::Broadcast, READ_ONLY),
        "/stats" => (Route::Stats, READ_ONLY),
        "/metrics" => (Route::Metrics, READ_ONLY),
        "/healthz" => (Route::Health, READ_ONLY),
        "/topics" => (Route::Topics, READ_ONLY),
        "*" if method == Method::Options => return Ok(Route::Preflight),
        _ => return Err(Rejection::NotFound),
    };
    match (method, allow) {
        (Method::Options, _) => Ok(Route::Preflight),
        (Method::Post, POST_ONLY) | (Method::Get | Method::Head, READ_ONLY) => Ok(route),
        _ => Err(Rejection::MethodNotAllowed { allow }),
    }
}

/// True when `method` on `path` publishes (`POST /publish`,
/// `GET /broadcast`; not `HEAD`, which changes nothing).
pub fn may_publish(method: Method, path: &str) -> bool {
    method != Method::Head && matches!(route(method, path), Ok(Route::Publish | Route::Broadcast))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_table() {
        use Method::*;
        let cases: &[(Method, &str, Result<Route, u16>)] = &[
            (Get, "/", Ok(Route::Page)),
            (Head, "/", Ok(Route::Page)),
            (Get, "/events", Ok(Route::Events)),
            (Head, "/events", Ok(Route::Events)),
            (Post, "/publish", Ok(Route::Publish)),
            (Get, "/publish", Err(405)),
            (Get, "/broadcast", Ok(Route::Broadcast)),
            (Post, "/broadcast", Err(405)),
            (Get, "/stats", Ok(Route::Stats)),
            (Get, "/metrics", Ok(Route::Metrics)),
            (Get, "/healthz", Ok(Route::Health)),
            (Get, "/topics", Ok(Route::Topics)),
            (Options, "/publish", Ok(Route::Preflight)),
            (Options, "*", Ok(Route::Preflight)),
            (Get, "*", Err(404)),
            (Other, "/events", Err(405)),
            (Post, "/events", Err(405)),
            (Get, "/nope", Err(404)),
            (Get, "/events/", Err(404)),
        ];
        for (method, path, want) in cases {
            let got = route(*method, path).map_err(|r| r.status());
            assert_eq!(got, *want, "{method:?} {path}");
        }
        assert_eq!(
            route(Method::Get, "/publish"),
            Err(Rejection::MethodNotAllowed { allow: POST_ONLY })
        );
    }
}
