//! Writing HTTP/1.1 responses: the status line, headers, and every canned
//! error answer.
//!
//! Every refusal the server can make is one variant of [`Rejection`]; this
//! file is the only place that turns one into a status code, a reason phrase
//! and a one-line body, and decides whether the connection must then close.
//!
//! # Format (RFC 9112 §4, §6)
//!
//! ```text
//! HTTP/1.1 404 Not Found\r\n
//! Content-Type: text/plain; charset=utf-8\r\n
//! Content-Length: 10\r\n
//! Access-Control-Allow-Origin: *\r\n
//! \r\n
//! not found\n
//! ```

use std::fmt::Write as _;

/// A refusal: which status, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 400: the request is not HTTP we accept (the reason says what).
    BadRequest(&'static str),
    /// 401: no credential, or one that does not hold (the reason says
    /// which, never what the token was).
    Unauthorized(&'static str),
    /// 403: a good credential that does not cover what was asked for.
    Forbidden(&'static str),
    /// 404: no such path.
    NotFound,
    /// 405: the path exists, the method does not; `allow` lists the methods.
    MethodNotAllowed {
        /// The `Allow` header's value.
        allow: &'static str,
    },
    /// 408: the request head (or body) did not arrive in time.
    RequestTimeout,
    /// 413: the body is larger than `--max-body`.
    PayloadTooLarge,
    /// 414: the request target is longer than 8 KiB.
    UriTooLong,
    /// 431: the request head is larger than 16 KiB.
    HeadersTooLarge,
    /// 501: a transfer coding we do not implement.
    NotImplemented(&'static str),
    /// 503: over `--max-conns`; try again after `retry_after` seconds.
    Overloaded {
        /// The `Retry-After` header's value, in seconds.
        retry_after: u64,
    },
    /// 503: the bus (Redis) is not connected: nothing was published.
    BusDown {
        /// The `Retry-After` header's value, in seconds.
        retry_after: u64,
    },
    /// 503: the connection to Redis broke with the publish in flight: it
    /// may or may not have been added, and it is not sent again.
    OutcomeUnknown {
        /// The `Retry-After` header's value, in seconds.
        retry_after: u64,
    },
    /// 503: Redis refused to add the event (out of memory, say).
    BusRefused {
        /// The `Retry-After` header's value, in seconds.
        retry_after: u64,
    },
}

impl Rejection {
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadRequest(_) => 400,
            Rejection::Unauthorized(_) => 401,
            Rejection::Forbidden(_) => 403,
            Rejection::NotFound => 404,
            Rejection::MethodNotAllowed { .. } => 405,
            Rejection::RequestTimeout => 408,
            Rejection::PayloadTooLarge => 413,
            Rejection::UriTooLong => 414,
            Rejection::HeadersTooLarge => 431,
            Rejection::NotImplemented(_) => 501,
            Rejection::Overloaded { .. }
            | Rejection::BusDown { .. }
            | Rejection::OutcomeUnknown { .. }
            | Rejection::BusRefused { .. } => 503,
        }
    }

    /// The one-line body.
    pub fn message(&self) -> String {
        match self {
            Rejection::BadRequest(why) => format!("bad request: {why}"),
            Rejection::Unauthorized(why) => format!("unauthorized: {why}"),
            Rejection::Forbidden(why) => format!("forbidden: {why}"),
            Rejection::NotFound => "not found".into(),
            Rejection::MethodNotAllowed { allow } => format!("method not allowed; allowed: {allow}"),
            Rejection::RequestTimeout => "request not received in time".into(),
            Rejection::PayloadTooLarge => "request body too large".into(),
            Rejection::UriTooLong => "request target too long".into(),
            Rejection::HeadersTooLarge => "request head too large".into(),
            Rejection::NotImplemented(what) => format!("not implemented: {what}"),
            Rejection::Overloaded { .. } => "server at its connection limit, try again later".into(),
            Rejection::BusDown { .. } => "bus down: the event was not published, try again later".into(),
            Rejection::OutcomeUnknown { .. } => "outcome unknown: the bus connection broke before Redis \
                 answered; the event may or may not have been published, and was not sent again"
                .into(),
            Rejection::BusRefused { .. } => "the bus refused the event: it was not published".into(),
        }
    }

    /// Whether the connection closes after this answer. A refusal of the
    /// request's framing or size leaves us unable to find the next request,
    /// so those close; a well-framed request for the wrong thing does not.
    pub fn closes(&self) -> bool {
        !matches!(
            self,
            Rejection::NotFound
                | Rejection::MethodNotAllowed { .. }
                | Rejection::Unauthorized(_)
                | Rejection::Forbidden(_)
                | Rejection::BusDown { .. }
                | Rejection::OutcomeUnknown { .. }
                | Rejection::BusRefused { .. }
        )
    }

    /// The full response for this refusal.
    pub fn response(&self) -> Response {
        let mut response = Response::text(self.status(), format!("{}\n", self.message()));
        match self {
            Rejection::MethodNotAllowed { allow } => response.header("Allow", allow),
            Rejection::Overloaded { retry_after }
            | Rejection::BusDown { retry_after }
            | Rejection::OutcomeUnknown { retry_after }
            | Rejection::BusRefused { retry_after } => {
                response.header("Retry-After", &retry_after.to_string())
            }
            Rejection::Unauthorized(_) => response.header("WWW-Authenticate", "Bearer"),
            _ => {}
        }
        response
    }
}

/// The standard reason phrase for the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete (non-streaming) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers beyond the ones every response gets.
    headers: String,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body (dropped for `HEAD`; its length still said).
    pub body: Vec<u8>,
}

/// How the connection the response goes out on is framed.
#[derive(Debug, Clone, Copy)]
pub struct Framing<'a> {
    /// A `HEAD` request: headers as for `GET`, no body.
    pub head_only: bool,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
    /// The request was HTTP/1.0, where keep-alive must be said aloud.
    pub http10: bool,
    /// `Access-Control-Allow-Origin` value, if CORS is on.
    pub cors_origin: Option<&'a str>,
}

impl Response {
    /// A response with the headers every response gets.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            headers: String::new(),
            content_type,
            body,
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// A `200` with `application/json`.
    pub fn json(body: String) -> Self {
        Self::new(200, "application/json", body.into_bytes())
    }

    /// Adds a header. Values are ours, never a peer's, so no escaping.
    pub fn header(&mut self, name: &str, value: &str) {
        let _ = write!(self.headers, "{name}: {value}\r\n");
    }

    /// Serializes status line, headers and (unless `HEAD`) body. `date` is
    /// the `Date` header's value (see [`crate::clock::HttpDate`]): the
    /// caller owns the clock.
    pub fn encode(&self, framing: Framing<'_>, date: &str) -> Vec<u8> {
        let mut head = String::with_capacity(256);
        let _ = write!(head, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        common_headers(&mut head, framing.cors_origin, date);
        if self.status != 204 {
            let _ = write!(head, "Content-Type: {}\r\n", self.content_type);
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        head.push_str(&self.headers);
        if !framing.keep_alive {
            head.push_str("Connection: close\r\n");
        } else if framing.http10 {
            head.push_str("Connection: keep-alive\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !framing.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The head of an event stream. HTTP/1.1 streams are chunked so that the
/// connection's end is not the only end-of-body signal (proxies and clients
/// can tell a clean end from a cut); HTTP/1.0 has no chunking, so the body
/// ends when the connection closes.
///
/// Why each header is there:
///
/// ```text
/// HTTP/1.1 200 OK
/// Content-Type: text/event-stream         what EventSource insists on
/// Cache-Control: no-cache, no-transform   no cached copy; no proxy may
///                                         compress or rewrite the stream
/// X-Accel-Buffering: no                   nginx passes each event at once
/// Transfer-Encoding: chunked              HTTP/1.1: the body's end is explicit
/// ```
///
/// There is no `Content-Length`: a stream's length is not known, and one
/// would make a client stop reading once it had that many bytes.
pub fn stream_head(http10: bool, cors_origin: Option<&str>, date: &str) -> Vec<u8> {
    let mut head = String::with_capacity(256);
    head.push_str("HTTP/1.1 200 OK\r\n");
    common_headers(&mut head, cors_origin, date);
    head.push_str("Content-Type: text/event-stream\r\n");
    head.push_str("Cache-Control: no-cache, no-transform\r\n");
    // Tells nginx (and proxies that copy it) not to buffer this response,
    // so events pass through at once even where proxy_buffering is on.
    head.push_str("X-Accel-Buffering: no\r\n");
    if http10 {
        head.push_str("Connection: close\r\n");
    } else {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// `100 Continue`, for a client that sent `Expect: 100-continue` and waits
/// to be told to send its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What every response carries: who answered, when (RFC 9110 §6.6.1: an
/// origin server with a clock "MUST generate a Date header field"), and the
/// CORS origin when one is configured.
fn common_headers(head: &mut String, cors_origin: Option<&str>, date: &str) {
    head.push_str("Server: ssed\r\n");
    let _ = write!(head, "Date: {date}\r\n");
    if let Some(origin) = cors_origin {
        let _ = write!(head, "Access-Control-Allow-Origin: {origin}\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn framing(head_only: bool, keep_alive: bool) -> Framing<'static> {
        Framing {
            head_only,
            keep_alive,
            http10: false,
            cors_origin: Some("*"),
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn encodes_status_headers_and_body() {
        let out = text(Response::text(200, "ok\n").encode(framing(false, true), DATE));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(out.contains(&format!("Date: {DATE}\r\n")));
        assert!(out.contains("Content-Length: 3\r\n"));
        assert!(out.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(!out.contains("Connection:"));
        assert!(out.ends_with("\r\n\r\nok\n"));
    }

    #[test]
    fn head_keeps_length_and_drops_body() {
        let out = text(Response::text(200, "ok\n").encode(framing(true, true), DATE));
        assert!(out.contains("Content-Length: 3\r\n"));
        assert!(out.ends_with("\r\n\r\n"));
    }

    #[test]
    fn says_close_and_http10_keep_alive() {
        let out = text(Response::text(200, "x").encode(framing(false, false), DATE));
        assert!(out.contains("Connection: close\r\n"));
        let mut f = framing(false, true);
        f.http10 = true;
        f.cors_origin = None;
        let out = text(Response::text(200, "x").encode(f, DATE));
        assert!(out.contains("Connection: keep-alive\r\n"));
        assert!(!out.contains("Access-Control"));
    }

    #[test]
    fn every_rejection_has_status_and_one_line() {
        let all = [
            Rejection::BadRequest("x"),
            Rejection::Unauthorized("missing token"),
            Rejection::Forbidden("topic not covered"),
            Rejection::NotFound,
            Rejection::MethodNotAllowed { allow: "GET, HEAD" },
            Rejection::RequestTimeout,
            Rejection::PayloadTooLarge,
            Rejection::UriTooLong,
            Rejection::HeadersTooLarge,
            Rejection::NotImplemented("gzip"),
            Rejection::Overloaded { retry_after: 5 },
        ];
        for rejection in all {
            let out = text(rejection.response().encode(framing(false, false), DATE));
            let status = rejection.status();
            assert!(
                out.starts_with(&format!("HTTP/1.1 {status} {}\r\n", reason(status))),
                "{out}"
            );
            let body = out.split("\r\n\r\n").nth(1).unwrap();
            assert_eq!(body.lines().count(), 1, "{out}");
        }
        let out = text(
            Rejection::MethodNotAllowed { allow: "POST" }
                .response()
                .encode(framing(false, true), DATE),
        );
        assert!(out.contains("Allow: POST\r\n"));
        let out = text(
            Rejection::Overloaded { retry_after: 7 }
                .response()
                .encode(framing(false, false), DATE),
        );
        assert!(out.contains("Retry-After: 7\r\n"));
    }

    #[test]
    fn stream_heads_follow_the_spec() {
        let h11 = text(stream_head(false, Some("*"), DATE));
        assert!(h11.contains("Content-Type: text/event-stream\r\n"));
        assert!(h11.contains("Cache-Control: no-cache, no-transform\r\n"));
        assert!(h11.contains("X-Accel-Buffering: no\r\n"));
        assert!(h11.contains("Transfer-Encoding: chunked\r\n"));
        assert!(!h11.contains("Content-Length"));
        assert!(!h11.contains("keep-alive"));
        let h10 = text(stream_head(true, None, DATE));
        assert!(!h10.contains("Transfer-Encoding"));
        assert!(!h10.contains("Access-Control"));
    }
}
