//! Property tests: arbitrary bytes, split at arbitrary points, through the
//! sans-IO request path and through a live server.
//!
//! - The request path ([`parse_head`], [`ChunkedDecoder`], and the
//!   [`RequestReader`] that ties them together, as a connection drives it)
//!   never panics, and where the input is split, or held back by
//!   backpressure, does not change what comes out: TCP may deliver the same
//!   bytes in any segments.
//! - A live server fed the same kind of input never panics, answers or
//!   closes every such connection within a deadline, and keeps serving a
//!   bystander.
//!
//! Inputs are drawn from raw bytes, from a soup of HTTP fragments, and
//! (half the time) from near-requests built of plausible parts, so that
//! cases get past the request line often enough to reach the header,
//! length and chunked-body code.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream as StdStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};

use common::*;
use ssed::http::chunked::{ChunkError, ChunkedDecoder};
use ssed::http::reader::{RequestReader, Step};
use ssed::http::request::parse_head;
use ssed::http::{Rejection, Request};

/// Pieces of HTTP/1.1 that random concatenation turns into near-requests.
const FRAGMENTS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"OPTIONS ",
    b"/",
    b"/events",
    b"/publish?topic=a",
    b"/broadcast?msg=x",
    b"/healthz",
    b"/stats",
    b"*",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"Host: t\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
    b"Last-Event-ID: 1\r\n",
    b"0",
    b"5",
    b"ff",
    b"18446744073709551616",
    b"-1",
    b";ext=1",
    b"hello",
    b": ",
    b"\0",
    b"\x7f",
    b"\xff",
];

/// One request built from plausible parts (some of them wrong), so that
/// cases get past the request line and reach headers, lengths and bodies.
fn request_like() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(&["GET", "POST", "HEAD", "OPTIONS", "PUT", "G\0T", ""][..]);
    let target = prop::sample::select(
        &[
            "/",
            "/events",
            "/events?topic=a,b",
            "/events?lastEventId=1",
            "/publish?topic=a",
            "/publish?topic=a&event=x%0Ay",
            "/publish?topic=%ff",
            "/broadcast?msg=hi",
            "/healthz",
            "/stats",
            "/metrics",
            "/nope",
            "*",
            "http://x/",
        ][..],
    );
    let version = prop::sample::select(&[" HTTP/1.1", " HTTP/1.0", " HTTP/2.0", "", " HTTP/1.1 x"][..]);
    let header = prop_oneof![
        prop::sample::select(
            &[
                "Host: t",
                "Content-Length: 0",
                "Content-Length: 5",
                "Content-Length: 70000",
                "Content-Length: -1",
                "Content-Length: 5, 6",
                "Transfer-Encoding: chunked",
                "Transfer-Encoding: gzip",
                "Connection: close",
                "Connection: keep-alive",
                "Expect: 100-continue",
                "Last-Event-ID: 12",
                "Authorization: Bearer t",
                "X: a\0b",
                "Bad Name: x",
            ][..]
        )
        .prop_map(|h| h.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    let body = prop_oneof![
        Just(Vec::new()),
        Just(b"hello".to_vec()),
        Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
        Just(b"3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n".to_vec()),
        Just(b"zz\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    (
        method,
        target,
        version,
        prop::collection::vec(header, 0..5),
        any::<bool>(),
        body,
    )
        .prop_map(|(method, target, version, headers, finished, body)| {
            let mut out = format!("{method} {target}{version}\r\n").into_bytes();
            for header in headers {
                out.extend_from_slice(&header);
                out.extend_from_slice(b"\r\n");
            }
            if finished {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&body);
            }
            out
        })
}

/// Bytes that look a little, a lot, or not at all like HTTP: raw bytes,
/// a soup of HTTP fragments, or one to three (pipelined) near-requests,
/// perhaps with one byte changed.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(FRAGMENTS).prop_map(|f| f.to_vec()),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    let requests = (
        prop::collection::vec(request_like(), 1..4),
        prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(requests, flip)| {
            let mut bytes = requests.concat();
            if let Some((at, byte)) = flip {
                if !bytes.is_empty() {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
            }
            bytes
        });
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..600),
        1 => prop::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat()),
        2 => requests,
    ]
}

/// Input and the points to split it at (as fractions, sorted later).
fn split_input() -> impl Strategy<Value = (Vec<u8>, Vec<prop::sample::Index>)> {
    (
        input(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    )
}

/// The case count: `default`, kept small so `cargo test` stays fast, or
/// `PROPTEST_CASES` for a longer hunt (`PROPTEST_CASES=100000 cargo test
/// --release --test props`).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Cuts `bytes` at the given points into consecutive pieces.
fn cut<'a>(bytes: &'a [u8], points: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = points.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for point in at {
        pieces.push(&bytes[from..point]);
        from = point;
    }
    pieces.push(&bytes[from..]);
    pieces
}

// ----- (a) the sans-IO request path ----------------------------------------------

/// What the chunked decoder made of a whole input.
#[derive(Debug, PartialEq)]
struct Decoded {
    body: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<ChunkError>,
}

fn decode_in_pieces(pieces: &[&[u8]], max_body: usize) -> Decoded {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut consumed = 0;
    // Like the server, keep what the decoder did not use and offer it again
    // with the next piece.
    let mut pending: Vec<u8> = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        match decoder.decode(&pending, &mut body, max_body) {
            Ok(used) => {
                assert!(used <= pending.len());
                consumed += used;
                pending.drain(..used);
                if decoder.is_done() {
                    break;
                }
            }
            Err(error) => {
                return Decoded {
                    body,
                    consumed,
                    done: false,
                    error: Some(error),
                }
            }
        }
        assert!(body.len() <= max_body, "body grew past the limit");
    }
    Decoded {
        done: decoder.is_done(),
        body,
        consumed,
        error: None,
    }
}

/// What a connection made of its input: the requests, then the refusal (if
/// any) that would close it.
#[derive(Debug, PartialEq)]
struct Served {
    requests: Vec<Request>,
    refusal: Option<Rejection>,
}

/// Feeds pieces as reads would, reading requests after each one as the
/// server does. With `hold`, every other piece is first held back, as
/// when the client is slow to read its answers, then read from the held
/// bytes.
fn serve_in_pieces(pieces: &[&[u8]], max_body: usize, hold: bool) -> Served {
    let mut reader = RequestReader::new(max_body);
    let mut requests = Vec::new();
    for (index, piece) in pieces.iter().enumerate() {
        let mut input: &[u8] = piece;
        if hold && index % 2 == 1 {
            reader.hold(input);
            input = &[];
        }
        loop {
            let (used, step) = reader.read(input);
            input = &input[used..];
            match step {
                Step::Request(request) => {
                    assert!(request.body.len() <= max_body);
                    requests.push(request);
                }
                Step::SendContinue => {}
                Step::NeedMore => {
                    assert!(input.is_empty(), "NeedMore left bytes unused");
                    break;
                }
                Step::Reject(refusal) => {
                    return Served {
                        requests,
                        refusal: Some(refusal),
                    }
                }
            }
        }
    }
    Served {
        requests,
        refusal: None,
    }
}

proptest! {
    #![proptest_config(RunConfig { cases: cases(1024), failure_persistence: None, ..RunConfig::default() })]

    #[test]
    fn parse_head_never_panics_and_reads_its_own_prefix(bytes in input()) {
        if let Ok(Some((request, used))) = parse_head(&bytes) {
            prop_assert!(used <= bytes.len());
            // The head alone parses to the same request: nothing after it
            // was looked at.
            let again = parse_head(&bytes[..used]);
            prop_assert_eq!(again, Ok(Some((request, used))));
        }
    }

    #[test]
    fn chunked_decoding_does_not_depend_on_the_split((bytes, points) in split_input(), max_body in 0usize..2048) {
        let whole = decode_in_pieces(&[&bytes], max_body);
        let split = decode_in_pieces(&cut(&bytes, &points), max_body);
        prop_assert_eq!(&split.error, &whole.error);
        if whole.error.is_none() {
            prop_assert_eq!(split, whole);
        }
    }

    #[test]
    fn chunked_bodies_survive_any_split(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..8),
                                       points in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let mut wire = Vec::new();
        for chunk in &chunks {
            wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\nTrailer: x\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let decoded = decode_in_pieces(&cut(&wire, &points), 4096);
        prop_assert_eq!(decoded.error, None);
        prop_assert!(decoded.done);
        prop_assert_eq!(decoded.body, chunks.concat());
        prop_assert_eq!(&wire[decoded.consumed..], b"GET / HTTP/1.1\r\n\r\n");
    }
}

proptest! {
    #![proptest_config(RunConfig { cases: cases(1024), failure_persistence: None, ..RunConfig::default() })]

    #[test]
    fn the_reader_reads_the_same_whatever_the_split((bytes, points) in split_input(), max_body in 0usize..1024) {
        let whole = serve_in_pieces(&[&bytes], max_body, false);
        let pieces = cut(&bytes, &points);
        prop_assert_eq!(&serve_in_pieces(&pieces, max_body, false), &whole);
        prop_assert_eq!(&serve_in_pieces(&pieces, max_body, true), &whole);
    }
}

// ----- (b) a live server ---------------------------------------------------------

/// Sends the pieces as separate writes, half-closing in some cases, and
/// waits (bounded) for an answer or a close.
fn poke(
    addr: std::net::SocketAddr,
    pieces: &[&[u8]],
    half_close: bool,
    deadline: Duration,
) -> Result<(), TestCaseError> {
    let mut stream = StdStream::connect(addr).map_err(|e| TestCaseError::fail(format!("connect: {e}")))?;
    stream.set_nodelay(true).unwrap();
    for piece in pieces {
        if stream.write_all(piece).is_err() {
            // Refused and closed already: that is an answer.
            return Ok(());
        }
    }
    if half_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let until = Instant::now() + deadline;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Still open: only an answered request (a stream, or a
            // keep-alive connection) may stay open.
            if answer.starts_with(b"HTTP/1.1 ") {
                return Ok(());
            }
            return Err(TestCaseError::fail(format!(
                "no answer and no close within {deadline:?}: got {:?}",
                String::from_utf8_lossy(&answer)
            )));
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.starts_with(b"HTTP/1.1 ") && find(&answer, b"\r\n\r\n").is_some() {
                    // Answered. (What it answered is the other tests' job.)
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(TestCaseError::fail(format!("read: {e}"))),
        }
    }
}

#[test]
fn a_live_server_answers_or_closes_whatever_it_is_sent() {
    let timeout = Duration::from_millis(150);
    let mut config = test_config();
    config.header_timeout = timeout;
    config.max_body = 1024;
    let server = TestServer::start_with(config, 1000);
    let mut bystander = Subscriber::open(server.addr, "/events?topic=bystander", "");
    bystander.connected();
    let mut runner = TestRunner::new(RunConfig {
        cases: cases(64),
        failure_persistence: None,
        ..RunConfig::default()
    });
    let addr = server.addr;
    let strategy = (split_input(), any::<bool>());
    runner
        .run(&strategy, |((bytes, points), half_close)| {
            poke(
                addr,
                &cut(&bytes, &points),
                half_close,
                timeout + Duration::from_secs(2),
            )
        })
        .unwrap();
    // The server is alive and the bystander still served.
    let id = server.publish("bystander", "still here");
    let event = bystander.next_event();
    assert_eq!(event.data, "still here");
    assert_eq!(event.id, Some(id.to_string()));
    assert_eq!(server.get("/healthz").status, 200);
}

/// The same long request, in one read or in two: the status must not
/// depend on where TCP cut it.
#[test]
fn an_oversize_request_gets_one_status_however_it_arrives() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20 * 1024));
    let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20 * 1024));
    for text in [long_target, long_header] {
        let bytes = text.as_bytes();
        let whole = serve_in_pieces(&[bytes], 1024, false);
        for at in [1, 100, 8 * 1024, 16 * 1024 + 1, 17 * 1024, bytes.len() - 2] {
            let split = serve_in_pieces(&[&bytes[..at], &bytes[at..]], 1024, false);
            assert_eq!(
                split.refusal.as_ref().map(Rejection::status),
                whole.refusal.as_ref().map(Rejection::status),
                "{}... split at {at}",
                &text[..20]
            );
        }
    }
}
