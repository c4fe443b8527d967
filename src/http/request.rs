//! Reading one HTTP/1.1 request head with `httparse`, enforcing the size
//! limits, and deciding how the body (if any) is framed.
//!
//! Sans-IO: [`parse_head`] looks at the bytes received so far and returns
//! `Ok(None)` while the head is incomplete (that is not an error), the parsed
//! [`Request`] and the number of bytes it used once the blank line has
//! arrived, or the [`Rejection`] the server must answer with.
//!
//! # What arrives (RFC 9112 §2.1)
//!
//! ```text
//! POST /publish?topic=news HTTP/1.1\r\n      request-line: method, target, version
//! Host: localhost\r\n                        field lines
//! Content-Length: 5\r\n
//! \r\n                                       the blank line ends the head
//! hello                                      body, framed by Content-Length
//! ```
//!
//! Only the header fields the server acts on are kept; the rest of the head
//! is dropped with the buffer it arrived in.

use super::response::Rejection;

/// The path and query of a request target: the target itself in origin
/// form (`/events?topic=a`), or what follows the authority in absolute
/// form (`http://example.com/events?topic=a`, which RFC 9112 §3.2.2 says a
/// server MUST accept; clients send it to proxies). An empty path is `/`
/// (RFC 9110 §4.2.3). `None` for anything else.
fn origin_form(target: &str) -> Option<String> {
    if target.starts_with('/') {
        return Some(target.to_owned());
    }
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let after_authority = rest.find(['/', '?']).map_or("", |at| &rest[at..]);
    match after_authority.starts_with('/') {
        true => Some(after_authority.to_owned()),
        false => Some(format!("/{after_authority}")),
    }
}

/// Longest request target (`/path?query`) we accept: `414` beyond.
pub const MAX_TARGET: usize = 8 * 1024;
/// Largest request head we accept: `431` beyond.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one head: `431` beyond.
const MAX_HEADERS: usize = 64;

/// The methods the server routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: as `GET`, without the body.
    Head,
    /// `POST`.
    Post,
    /// `OPTIONS`: the CORS preflight.
    Options,
    /// Any other token: answered `405` (or `404` for unknown paths).
    Other,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head: what the server needs of it, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Path and query, as sent (`/events?topic=a`).
    pub target: String,
    /// `HTTP/1.0`: no chunking, no keep-alive unless asked for.
    pub http10: bool,
    /// Whether the client lets the connection stay open afterwards.
    pub keep_alive: bool,
    /// The `Last-Event-ID` header, trimmed.
    pub last_event_id: Option<String>,
    /// The raw `Authorization` value, compared in constant time later.
    pub authorization: Option<Vec<u8>>,
    /// The raw `Cookie` value(s), joined with `; ` (where a subscriber's
    /// token may be, as `ssed_token`).
    pub cookie: Option<Vec<u8>>,
    /// `Expect: 100-continue`: the client waits for `100` before the body.
    pub expect_continue: bool,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// The body, once read (filled in by the request reader).
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query without the `?`, or `""`.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

/// Parses the head at the start of `buf`.
///
/// Leading empty lines are skipped, as RFC 9112 §2.2 advises ("a server that
/// is expecting to receive and parse a request-line SHOULD ignore at least
/// one empty line (CRLF) received prior to the request-line"), but they
/// count against [`MAX_HEAD`] like the head itself: everything a client
/// sends before its head is complete is bounded.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, Rejection> {
    let skipped = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let (blank, buf) = buf.split_at(skipped);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => {
            return if blank.len() + buf.len() > MAX_HEAD {
                Err(oversize_partial(buf))
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::HeadersTooLarge),
        Err(error) => return Err(Rejection::BadRequest(parse_error(error))),
    };
    // httparse returns Complete only with all three parts present.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(Rejection::BadRequest("incomplete request line"));
    };
    // The target first: a head too large *because* of its target gets the
    // same 414 whether it arrived whole or was refused while incomplete.
    if target.len() > MAX_TARGET {
        return Err(Rejection::UriTooLong);
    }
    if skipped + used > MAX_HEAD {
        return Err(Rejection::HeadersTooLarge);
    }
    let target = match origin_form(target) {
        Some(path) => path,
        None if target == "*" && method == "OPTIONS" => target.to_owned(),
        None => return Err(Rejection::BadRequest("request target must be a path")),
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let http10 = version == 0;
    let mut request = Request {
        method,
        target,
        http10,
        keep_alive: !http10,
        last_event_id: None,
        authorization: None,
        cookie: None,
        expect_continue: false,
        framing: BodyFraming::None,
        body: Vec::new(),
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    for header in parsed.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(value)?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(Rejection::BadRequest("conflicting Content-Length headers"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked {
                return Err(Rejection::BadRequest("repeated Transfer-Encoding"));
            }
            if !trim(value).eq_ignore_ascii_case(b"chunked") {
                return Err(Rejection::NotImplemented("transfer coding other than chunked"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    request.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    request.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("last-event-id") {
            request.last_event_id = Some(String::from_utf8_lossy(trim(value)).into_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            request.authorization = Some(trim(value).to_vec());
        } else if name.eq_ignore_ascii_case("cookie") {
            let cookie = request.cookie.get_or_insert_with(Vec::new);
            if !cookie.is_empty() {
                cookie.extend_from_slice(b"; ");
            }
            cookie.extend_from_slice(trim(value));
        } else if name.eq_ignore_ascii_case("expect") && trim(value).eq_ignore_ascii_case(b"100-continue") {
            request.expect_continue = !http10;
        }
    }
    request.framing = match (content_length, chunked) {
        (Some(_), true) => {
            // RFC 9112 §6.3 lets a server pick Transfer-Encoding here, but
            // the pair is the classic request-smuggling shape: refuse it.
            return Err(Rejection::BadRequest("both Content-Length and Transfer-Encoding"));
        }
        (None, true) => BodyFraming::Chunked,
        (Some(0), false) | (None, false) => BodyFraming::None,
        (Some(length), false) => BodyFraming::Length(length),
    };
    Ok(Some((request, skipped + used)))
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. No sign, no list, no spaces
/// inside. A number too large for u64 is still a number: it is too large.
fn parse_content_length(value: &[u8]) -> Result<u64, Rejection> {
    let digits = trim(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Rejection::BadRequest("Content-Length is not a number"));
    }
    let mut length: u64 = 0;
    for &digit in digits {
        length = match length
            .checked_mul(10)
            .and_then(|l| l.checked_add(u64::from(digit - b'0')))
        {
            Some(length) => length,
            None => return Err(Rejection::PayloadTooLarge),
        };
    }
    Ok(length)
}

/// A head still incomplete past [`MAX_HEAD`]: nothing but empty lines is
/// no request at all; if even the request line has not ended within the
/// target limit, the target is what is too long.
fn oversize_partial(buf: &[u8]) -> Rejection {
    if buf.is_empty() {
        return Rejection::BadRequest("16 KiB of empty lines and no request line");
    }
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) if end <= MAX_TARGET + 32 => Rejection::HeadersTooLarge,
        _ => Rejection::UriTooLong,
    }
}

fn parse_error(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<(Request, usize)>, Rejection> {
        parse_head(text.as_bytes())
    }

    fn ok(text: &str) -> Request {
        match parse(text) {
            Ok(Some((request, used))) => {
                assert_eq!(used, text.len(), "whole head consumed");
                request
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn parses_a_simple_get() {
        let request = ok("GET /events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.path(), "/events");
        assert_eq!(request.query(), "topic=a");
        assert!(request.keep_alive);
        assert!(!request.http10);
        assert_eq!(request.framing, BodyFraming::None);
    }

    #[test]
    fn incomplete_is_not_an_error() {
        for partial in ["", "GET", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r"] {
            assert_eq!(parse(partial), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!ok("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
        let http10 = ok("GET / HTTP/1.0\r\n\r\n");
        assert!(http10.http10 && !http10.keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn reads_the_headers_we_act_on() {
        let request = ok(
            "POST /publish HTTP/1.1\r\nLast-Event-ID:  42 \r\nAuthorization: Bearer s3cret\r\n\
             Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(request.last_event_id.as_deref(), Some("42"));
        assert_eq!(request.authorization.as_deref(), Some(&b"Bearer s3cret"[..]));
        assert!(request.expect_continue);
        assert_eq!(request.framing, BodyFraming::Length(5));
        let chunked = ok("POST /publish HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(chunked.framing, BodyFraming::Chunked);
    }

    #[test]
    fn skips_leading_empty_lines() {
        let text = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (request, used) = parse(text).unwrap().unwrap();
        assert_eq!(request.path(), "/");
        assert_eq!(used, text.len());
    }

    #[test]
    fn leaves_pipelined_bytes_alone() {
        let text = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let (request, used) = parse(text).unwrap().unwrap();
        assert_eq!(request.path(), "/a");
        assert_eq!(&text[used..], "GET /b HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn refuses_bad_input_with_the_right_status() {
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET));
        let long_head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        let cases: Vec<(String, u16)> = vec![
            (
                "GET / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                400,
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".into(),
                400,
            ),
            ("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nContent-Length: \r\n\r\n".into(), 400),
            (
                "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".into(),
                413,
            ),
            ("GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 501),
            (
                "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                400,
            ),
            ("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".into(), 400),
            ("GET\0 / HTTP/1.1\r\n\r\n".into(), 400),
            ("GET / HTTP/2.0\r\n\r\n".into(), 400),
            ("GET ftp://example.com/ HTTP/1.1\r\n\r\n".into(), 400),
            ("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03".into(), 400),
            (long_target, 414),
            (long_head, 431),
            (many_headers, 431),
        ];
        for (text, status) in cases {
            match parse(&text) {
                Err(rejection) => assert_eq!(rejection.status(), status, "{:?}", &text[..text.len().min(80)]),
                Ok(other) => panic!("{:?} parsed as {other:?}", &text[..text.len().min(80)]),
            }
        }
    }

    #[test]
    fn an_absolute_target_is_read_as_its_path() {
        for (target, path) in [
            ("http://localhost:8080/events?topic=a", "/events?topic=a"),
            ("HTTP://example.com/healthz", "/healthz"),
            ("https://example.com", "/"),
            ("http://example.com?topic=a", "/?topic=a"),
        ] {
            let request = ok(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
            assert_eq!(request.target, path, "{target}");
        }
        for target in ["ftp://example.com/events", "events", "example.com/events"] {
            let refused = parse(&format!("GET {target} HTTP/1.1\r\n\r\n")).unwrap_err();
            assert_eq!(
                refused,
                Rejection::BadRequest("request target must be a path"),
                "{target}"
            );
        }
    }

    #[test]
    fn a_long_target_is_414_whole_or_cut() {
        let head = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20 * 1024));
        assert_eq!(parse(&head).unwrap_err(), Rejection::UriTooLong);
        assert_eq!(parse(&head[..MAX_HEAD + 100]).unwrap_err(), Rejection::UriTooLong);
    }

    #[test]
    fn oversize_partial_heads_are_refused_early() {
        let target = format!("GET /{}", "a".repeat(MAX_HEAD + 10));
        assert_eq!(parse(&target).unwrap_err(), Rejection::UriTooLong);
        let head = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD + 10));
        assert_eq!(parse(&head).unwrap_err(), Rejection::HeadersTooLarge);
    }

    #[test]
    fn options_star_is_allowed() {
        assert_eq!(ok("OPTIONS * HTTP/1.1\r\n\r\n").method, Method::Options);
    }

    #[test]
    fn equal_content_lengths_are_one() {
        let request = ok("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
        assert_eq!(request.framing, BodyFraming::Length(3));
    }
}
