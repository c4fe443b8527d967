//! HTTP/1.1 response heads, as a client reads them: sans-IO, on `httparse`.
//!
//! Every client in the kit's users reads answers from a server: the tests'
//! raw `Client`, the soak's publishers, the load tool's publisher and every
//! event stream. They all start the same way:
//!
//! ```text
//! HTTP/1.1 200 OK\r\n                      status line
//! Content-Type: text/event-stream\r\n      header fields
//! Transfer-Encoding: chunked\r\n
//! \r\n                                     empty line: the head ends
//! ...body...                               framed by the head (RFC 9112 §6.3)
//! ```
//!
//! [`parse_head`] takes the bytes received so far and answers "not yet"
//! (`Ok(None)`), a [`ResponseHead`] and how many bytes it used, or an error.
//! It never reads a socket: callers keep their own I/O (blocking with a
//! timeout in tests and the soak, `mio` in the load tool).
//!
//! How the body is framed, a client decides from the head:
//!
//! - `Transfer-Encoding: chunked`: see [`crate::chunked`];
//! - `Content-Length: N`: N bytes;
//! - neither: until the server closes (an HTTP/1.0 event stream).
//!
//! `1xx`, `204` and `304` answers, and answers to `HEAD`, have no body
//! whatever the head says; which request was sent only the caller knows.

use std::fmt;

/// A head longer than this is refused rather than buffered forever.
pub const MAX_HEAD: usize = 64 * 1024;

/// Header fields read per head; more is an error (`TooManyHeaders`).
const MAX_HEADERS: usize = 64;

/// A parsed response head. Header names are lower-cased, values trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The minor version: 1 for `HTTP/1.1`, 0 for `HTTP/1.0`.
    pub version: u8,
    pub status: u16,
    pub reason: String,
    /// In the order sent; names lower-cased.
    pub headers: Vec<(String, String)>,
    /// `Content-Length`, when sent (a bad value is a [`HeadError`]).
    pub content_length: Option<usize>,
    /// `Transfer-Encoding` names `chunked`.
    pub chunked: bool,
}

impl ResponseHead {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why bytes are not a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// What `httparse` said.
    Syntax(httparse::Error),
    /// More than [`MAX_HEAD`] bytes without the empty line.
    TooLong,
    /// A `Content-Length` that is not a decimal number.
    BadLength,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Syntax(e) => write!(f, "bad response head: {e}"),
            HeadError::TooLong => f.write_str("response head too long"),
            HeadError::BadLength => f.write_str("bad Content-Length"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses the response head at the start of `bytes`.
///
/// `Ok(None)`: the head is not complete yet; read more and call again with
/// everything so far. `Ok(Some((head, used)))`: the body starts at
/// `bytes[used..]`.
pub fn parse_head(bytes: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(bytes) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if bytes.len() > MAX_HEAD => return Err(HeadError::TooLong),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Syntax(e)),
    };
    let mut head = ResponseHead {
        // Complete means httparse saw both; the defaults cannot show.
        version: response.version.unwrap_or(1),
        status: response.code.unwrap_or(0),
        reason: response.reason.unwrap_or("").to_string(),
        headers: Vec::with_capacity(response.headers.len()),
        content_length: None,
        chunked: false,
    };
    for field in response.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(field.value).trim().to_string();
        match name.as_str() {
            "content-length" => {
                let n = value.parse().map_err(|_| HeadError::BadLength)?;
                head.content_length = Some(n);
            }
            // RFC 9112 §6.1: chunked is the last coding when present.
            "transfer-encoding" => head.chunked |= value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
        head.headers.push((name, value));
    }
    Ok(Some((head, used)))
}

/// Where `needle` first starts in `haystack` (`memchr`'s SIMD search).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_head() {
        let bytes =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nbody";
        let (head, used) = parse_head(bytes).unwrap().unwrap();
        assert_eq!(&bytes[used..], b"body");
        assert_eq!((head.version, head.status, head.reason.as_str()), (1, 200, "OK"));
        assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
        assert!(head.chunked);
        assert_eq!(head.content_length, None);
    }

    #[test]
    fn incomplete_then_complete_at_every_split() {
        let bytes = b"HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n\r\n";
        for end in 0..bytes.len() {
            assert_eq!(parse_head(&bytes[..end]), Ok(None), "{end}");
        }
        let (head, used) = parse_head(bytes).unwrap().unwrap();
        assert_eq!(
            (head.version, head.status, head.content_length, used),
            (0, 404, Some(10), bytes.len())
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse_head(b"HTTX/1.1 200 OK\r\n\r\n"),
            Err(HeadError::Syntax(_))
        ));
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(HeadError::BadLength)
        );
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse_head(long.as_bytes()), Err(HeadError::TooLong));
    }

    #[test]
    fn finds() {
        assert_eq!(find(b"ab\r\n\r\ncd", b"\r\n\r\n"), Some(2));
        assert_eq!(find(b"abc", b"x"), None);
    }
}
