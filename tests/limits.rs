//! Hostile input and faults over real loopback sockets: every limit in
//! SPEC.md "Limits and bad input" answers with its status and closes only
//! the offending connection.
//!
//! Every test keeps a *bystander*, a subscriber connected before the bad
//! client arrives, and ends with [`Bystander::still_served`]: a freshly
//! published event must still reach it, and a brand-new connection must
//! still be accepted and answered. A limit that hurts anyone but the client
//! that broke it fails here.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ssed::Config;
use ssed_testkit::procfs;
use ssed_testkit::rng::Rng;

// ----- helpers ---------------------------------------------------------------

/// A subscriber on its own topic, connected throughout a test.
struct Bystander {
    sub: Subscriber,
    token: Option<String>,
    fresh: u32,
}

impl Bystander {
    fn join(server: &TestServer) -> Bystander {
        Self::join_with_token(server, None)
    }

    fn join_with_token(server: &TestServer, token: Option<&str>) -> Bystander {
        let mut sub = Subscriber::open(server.addr, "/events?topic=bystander", "");
        sub.connected();
        Bystander {
            sub,
            token: token.map(str::to_string),
            fresh: 0,
        }
    }

    /// A fresh event still reaches the bystander, and a new connection is
    /// still accepted and served.
    fn still_served(&mut self, addr: SocketAddr) {
        self.fresh += 1;
        let data = format!("fresh {}", self.fresh);
        let id = publish_to(addr, "bystander", &data, self.token.as_deref());
        let event = self.sub.next_event();
        assert_eq!(event.data, data, "the bystander missed a fresh event");
        assert_eq!(event.id, Some(id.to_string()));
        let health = request(
            addr,
            "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(health.status, 200, "a new connection is not served");
        assert_eq!(health.text(), "ok\n");
    }
}

/// `POST /publish` on a fresh connection, with a bearer token if given.
fn publish_to(addr: SocketAddr, topic: &str, data: &str, token: Option<&str>) -> u64 {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let response = request(
        addr,
        &format!(
            "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}\
             Content-Length: {}\r\n\r\n{data}",
            data.len()
        ),
    );
    assert_eq!(response.status, 200, "{response:?}");
    json_u64(&response.text(), "id")
}

/// Connects with a read timeout of [`WAIT`].
/// Writes what the server will take: it may refuse and close before a large
/// bad request has been sent in full, and that is not the test's failure.
fn send_lossy(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}

/// Reads until the server closes (EOF or reset) or [`WAIT`] passes.
/// Returns the bytes and whether the server closed.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (out, false),
        }
    }
}

/// The status code of the first response in `bytes`.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The value of a header in the first response head in `bytes`.
fn header_of(bytes: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Sends `bytes` on a new connection and expects one answer with `status`,
/// a one-line body, and then the server's close.
fn expect_refusal(addr: SocketAddr, bytes: &[u8], status: u16) {
    let mut stream = connect(addr);
    send_lossy(&mut stream, bytes);
    let (answer, closed) = read_until_closed(&mut stream);
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
    assert_eq!(
        status_of(&answer),
        Some(status),
        "sent {shown:?}, got {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed, "sent {shown:?}: the connection was not closed");
    let text = String::from_utf8_lossy(&answer);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert!(
        body.ends_with('\n') && body.trim_end().lines().count() == 1,
        "sent {shown:?}: body is not one line: {body:?}"
    );
    assert_eq!(
        header_of(&answer, "connection").as_deref(),
        Some("close"),
        "sent {shown:?}: a closing answer says so"
    );
}

fn small_limits() -> Config {
    let mut config = test_config();
    config.max_body = 1024;
    config
}

// ----- malformed input ---------------------------------------------------------

#[test]
fn malformed_heads_get_400_and_close() {
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    let cases: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
        b"GET ftp://example.com/ HTTP/1.1\r\n\r\n",
        b"GET example HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: no name\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: y\rZ: w\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\xff\xfe\xfd\xfc\r\n\r\n",
    ];
    for case in cases {
        expect_refusal(server.addr, case, 400);
    }
    bystander.still_served(server.addr);
}

#[test]
fn nul_and_control_bytes_get_400_and_close() {
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    let cases: &[&[u8]] = &[
        b"GET\0 / HTTP/1.1\r\n\r\n",
        b"GET /\0 HTTP/1.1\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\n\r\n",
        b"GET /a\x7fb HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\0\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x1bb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX\0: y\r\n\r\n",
        b"GET / HTTP/1.1\r\n\x01X: y\r\n\r\n",
        b"\0\0\0\0\0\0\0\0\r\n\r\n",
    ];
    for case in cases {
        expect_refusal(server.addr, case, 400);
    }
    bystander.still_served(server.addr);
}

#[test]
fn oversize_heads_get_431_and_long_targets_414() {
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    // A complete head past 16 KiB, in one header and in many small ones.
    let big_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(17 * 1024));
    expect_refusal(server.addr, big_header.as_bytes(), 431);
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-Many: yes\r\n".repeat(1500));
    expect_refusal(server.addr, many.as_bytes(), 431);
    let count = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(200));
    expect_refusal(server.addr, count.as_bytes(), 431);
    // A head that never ends: refused once it passes the limit, not held.
    let endless = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(20 * 1024));
    expect_refusal(server.addr, endless.as_bytes(), 431);
    // Targets over 8 KiB, whole or still arriving.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(8 * 1024 + 1));
    expect_refusal(server.addr, long.as_bytes(), 414);
    let query = format!("GET /events?topic={} HTTP/1.1\r\n\r\n", "t,".repeat(4200));
    expect_refusal(server.addr, query.as_bytes(), 414);
    let endless_target = format!("GET /{}", "a".repeat(20 * 1024));
    expect_refusal(server.addr, endless_target.as_bytes(), 414);
    // Just under the limits is fine.
    let fits = format!(
        "GET /healthz?{} HTTP/1.1\r\nConnection: close\r\n\r\n",
        "a".repeat(8000)
    );
    assert_eq!(request(server.addr, &fits).status, 200);
    bystander.still_served(server.addr);
}

/// Empty lines before a request line count against the 16 KiB head limit:
/// a client that sends `\r\n` without end is refused once it passes it,
/// instead of being buffered (and rescanned on every read) forever.
#[test]
fn a_flood_of_empty_lines_is_refused_at_the_head_limit() {
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    let mut stream = connect(server.addr);
    send_lossy(&mut stream, &b"\r\n".repeat(32 * 1024));
    let (bytes, closed) = read_until_closed(&mut stream);
    assert_eq!(
        status_of(&bytes),
        Some(400),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(closed, "the flooding connection is closed");
    bystander.still_served(server.addr);
}

#[test]
fn content_length_with_transfer_encoding_gets_400() {
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    for case in [
        "POST /publish HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
        "POST /publish HTTP/1.1\r\ncontent-length: 0\r\ntransfer-encoding: CHUNKED\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        expect_refusal(server.addr, case.as_bytes(), 400);
    }
    // Nothing was published by any of them.
    assert_eq!(server.stat("published"), 0);
    bystander.still_served(server.addr);
}

#[test]
fn conflicting_content_lengths_get_400() {
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    for case in [
        "POST /publish HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST /publish HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "POST /publish HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
        "POST /publish HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 1\r\n\r\nx",
    ] {
        expect_refusal(server.addr, case.as_bytes(), 400);
    }
    assert_eq!(server.stat("published"), 0);
    bystander.still_served(server.addr);
}

#[test]
fn negative_odd_or_huge_lengths_are_refused() {
    let server = TestServer::start_with(small_limits(), 1000);
    let mut bystander = Bystander::join(&server);
    for case in ["-1", "-0", "+5", "0x10", "1e3", "5 5", "five", "", "5;", "\"5\""] {
        let head = format!("POST /publish HTTP/1.1\r\nContent-Length: {case}\r\n\r\nhello");
        expect_refusal(server.addr, head.as_bytes(), 400);
    }
    for case in [
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999999",
        "1025",
        "4294967296",
    ] {
        let head = format!("POST /publish HTTP/1.1\r\nContent-Length: {case}\r\n\r\nhello");
        expect_refusal(server.addr, head.as_bytes(), 413);
    }
    assert_eq!(server.stat("published"), 0);
    bystander.still_served(server.addr);
}

#[test]
fn bad_chunk_sizes_are_refused() {
    let server = TestServer::start_with(small_limits(), 1000);
    let mut bystander = Bystander::join(&server);
    let head = "POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-1\r\nx\r\n0\r\n\r\n",
        "\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\rXhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "3\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "5\r\nhello\r\r\n0\r\n\r\n",
        "5\u{1}\r\nhello\r\n0\r\n\r\n",
    ] {
        expect_refusal(server.addr, format!("{head}{body}").as_bytes(), 400);
    }
    // Sizes past --max-body (1024 = 0x400), however many digits.
    for body in [
        "fffffffffffffffff\r\n",
        "ffffffffffffffff\r\n",
        "100000000\r\n",
        "401\r\n",
        "00000000000000000000401\r\n",
    ] {
        expect_refusal(server.addr, format!("{head}{body}").as_bytes(), 413);
    }
    // A chunk extension that never ends is cut off, not buffered forever.
    let extension = format!("{head}5;{}", "x".repeat(4096));
    let mut stream = connect(server.addr);
    send_lossy(&mut stream, extension.as_bytes());
    let (answer, closed) = read_until_closed(&mut stream);
    assert!(
        matches!(status_of(&answer), Some(400 | 413)),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed);
    assert_eq!(server.stat("published"), 0);
    bystander.still_served(server.addr);
}

#[test]
fn bodies_over_max_body_get_413() {
    let server = TestServer::start_with(small_limits(), 1000);
    let mut bystander = Bystander::join(&server);
    let body = "x".repeat(1025);
    // Content-Length over the limit: refused from the head alone.
    let framed = format!(
        "POST /publish HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    expect_refusal(server.addr, framed.as_bytes(), 413);
    // The same announced but not sent: still refused at once.
    expect_refusal(
        server.addr,
        b"POST /publish HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
        413,
    );
    // Chunked, in small chunks that add up past the limit.
    let mut chunked = String::from("POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..11 {
        chunked.push_str(&format!("64\r\n{}\r\n", "y".repeat(100)));
    }
    chunked.push_str("0\r\n\r\n");
    expect_refusal(server.addr, chunked.as_bytes(), 413);
    // Exactly the limit is accepted.
    let exact = "z".repeat(1024);
    let id = publish_to(server.addr, "exact", &exact, None);
    assert!(id > 0);
    assert_eq!(server.stat("published"), 1);
    bystander.still_served(server.addr);
}

// ----- slow and vanishing clients ----------------------------------------------

/// Sends `head` then drips one more byte every 50 ms, as slowloris does,
/// until the server answers or closes. Returns the answer and when it came.
fn drip(addr: SocketAddr, head: &[u8], drip: &[u8]) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut stream = connect(addr);
    stream.write_all(head).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut dripped = 0;
    while started.elapsed() < WAIT {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !answer.is_empty() {
                    continue;
                }
                let byte = drip[dripped % drip.len()];
                dripped += 1;
                if stream.write_all(&[byte]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    (answer, started.elapsed())
}

#[test]
fn slowloris_heads_get_408_after_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let mut config = test_config();
    config.header_timeout = timeout;
    let server = TestServer::start_with(config, 1000);
    let mut bystander = Bystander::join(&server);
    // The bystander must outlive many header timeouts: a stream has none.
    let cases: [(&[u8], &[u8]); 3] = [
        (b"GET / HTTP/1.1\r\n", b"X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n"),
        (b"G", b"ET /healthz HTTP/1.1\r\nHost: t\r\n"),
        // The body is bound by the same clock.
        (b"POST /publish HTTP/1.1\r\nContent-Length: 100\r\n\r\n", b"x"),
    ];
    for (head, trickle) in cases {
        let (answer, took) = drip(server.addr, head, trickle);
        assert_eq!(
            status_of(&answer),
            Some(408),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(took >= timeout, "408 after {took:?}, before the timeout");
        assert!(took < timeout + Duration::from_secs(3), "408 only after {took:?}");
    }
    // A connection that sends nothing at all is closed (silently is fine).
    let mut idle = connect(server.addr);
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut idle);
    assert!(closed && started.elapsed() < timeout + Duration::from_secs(3));
    bystander.still_served(server.addr);
}

#[test]
fn connections_abandoned_mid_head_or_mid_body_are_freed() {
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    let partials: &[&[u8]] = &[
        b"GET / HT",
        b"GET /events HTTP/1.1\r\nHost: t\r\n",
        b"POST /publish HTTP/1.1\r\nContent-Length: 10\r\n\r\nhal",
        b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
    ];
    for _ in 0..10 {
        for partial in partials {
            let mut stream = connect(server.addr);
            stream.write_all(partial).unwrap();
            drop(stream);
        }
    }
    // Also with a reset instead of a FIN.
    for partial in partials {
        let stream = connect(server.addr);
        (&stream).write_all(partial).unwrap();
        set_linger_zero(&stream);
        drop(stream);
    }
    // Only the bystander and the /stats request itself remain.
    server.wait_stat("connections", 2);
    assert_eq!(server.stat("published"), 0);
    bystander.still_served(server.addr);
}

/// `SO_LINGER` of zero: `close` sends a reset.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn half_closed_clients_still_get_their_answers() {
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    // One request, then FIN.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (answer, closed) = read_until_closed(&mut stream);
    assert_eq!(status_of(&answer), Some(200), "{answer:?}");
    assert!(String::from_utf8_lossy(&answer).ends_with("ok\n"));
    assert!(closed);
    // A publish with a body, then FIN: published and answered.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /publish?topic=bystander HTTP/1.1\r\nContent-Length: 4\r\n\r\nhalf")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (answer, closed) = read_until_closed(&mut stream);
    assert_eq!(status_of(&answer), Some(200));
    assert!(closed);
    assert_eq!(bystander.sub.next_event().data, "half");
    // Pipelined requests, then FIN: every answer, in order.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (answer, closed) = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&answer);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200"], "{text:?}");
    assert!(closed);
    // A bad request, then FIN: the refusal still arrives.
    let mut stream = connect(server.addr);
    stream.write_all(b"GET / HTTP/9.9\r\n\r\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (answer, closed) = read_until_closed(&mut stream);
    assert_eq!(status_of(&answer), Some(400));
    assert!(closed);
    bystander.still_served(server.addr);
}

// ----- floods and slow consumers ---------------------------------------------

/// `GET /healthz` until it answers 200 (a server at its limit answers 503).
fn wait_until_served(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = request(
            addr,
            "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        if response.status == 200 {
            return;
        }
        assert_eq!(response.status, 503);
        assert!(Instant::now() < deadline, "still refused after {WAIT:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn floods_over_max_conns_are_answered_and_closed() {
    const MAX: usize = 8;
    let server = TestServer::start_with(test_config(), MAX);
    let mut bystander = Bystander::join(&server);
    let mut fill: Vec<Subscriber> = (1..MAX)
        .map(|_| Subscriber::open(server.addr, "/events?topic=fill", ""))
        .collect();
    for sub in &mut fill {
        sub.connected();
    }
    // A stream request over the limit: 200, only a long random retry, closed.
    let mut retries = Vec::new();
    for _ in 0..5 {
        let mut stream = connect(server.addr);
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let (answer, closed) = read_until_closed(&mut stream);
        let text = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(status_of(&answer), Some(200), "{text:?}");
        assert_eq!(
            header_of(&answer, "content-type").as_deref(),
            Some("text/event-stream")
        );
        assert!(closed, "turned-away stream not closed");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        assert!(!body.contains("event:") && !body.contains("data:"), "{body:?}");
        let retry: u64 = body
            .split("retry: ")
            .nth(1)
            .and_then(|r| r.split('\n').next())
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or_else(|| panic!("no retry in {body:?}"));
        assert!((5_000..=30_000).contains(&retry), "retry {retry}");
        retries.push(retry);
    }
    // Anything else: 503 with Retry-After, closed.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream);
    assert_eq!(status_of(&answer), Some(503));
    let retry_after: u64 = header_of(&answer, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert!(closed);
    // A flood well past the overflow slots: every connection is answered
    // or closed promptly; none is left hanging in the backlog.
    let flood: Vec<TcpStream> = (0..150).map(|_| connect(server.addr)).collect();
    let mut answered = 0;
    for mut stream in flood {
        send_lossy(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        let (answer, closed) = read_until_closed(&mut stream);
        assert!(closed, "a flood connection was left open");
        match status_of(&answer) {
            Some(503) => answered += 1,
            None => {}
            other => panic!("flood answered {other:?}"),
        }
    }
    assert!(answered > 64, "only {answered} of 150 got a 503");
    // The subscribers inside the limit were untouched.
    let id = publish_to_when_free(&mut fill, server.addr);
    for sub in &mut fill {
        assert_eq!(sub.next_event().id, Some(id.to_string()));
    }
    // Below the limit again, the server accepts and serves.
    drop(fill);
    wait_until_served(server.addr);
    let mut again = Subscriber::open(server.addr, "/events", "");
    again.connected();
    bystander.still_served(server.addr);
}

/// Publishes to `fill` over a connection made while one subscriber has left
/// (the server is full), then re-opens that subscriber's place.
fn publish_to_when_free(fill: &mut Vec<Subscriber>, addr: SocketAddr) -> u64 {
    let left = fill.pop().expect("a subscriber to drop");
    drop(left);
    wait_until_served(addr);
    publish_to(addr, "fill", "still here", None)
}

/// Reads a chunked event stream as fast as it comes, without parsing,
/// until `marker` arrives; then returns the ids of its events in order.
fn drain_stream(mut stream: TcpStream, marker: &'static [u8]) -> thread::JoinHandle<Vec<u64>> {
    thread::spawn(move || {
        let mut raw = Vec::new();
        let mut chunk = vec![0u8; 256 * 1024];
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "marker never arrived");
            let n = stream.read(&mut chunk).expect("steady read");
            assert!(n > 0, "the steady subscriber's stream ended");
            let from = raw.len().saturating_sub(marker.len());
            raw.extend_from_slice(&chunk[..n]);
            if find(&raw[from..], marker).is_some() {
                break;
            }
        }
        // Chunk framing aside, `id: N` lines appear only as event ids here.
        let text = String::from_utf8_lossy(&raw);
        text.split('\n')
            .filter_map(|line| line.strip_prefix("id: "))
            .map(|id| id.trim().parse().expect("numeric id"))
            .collect()
    })
}

#[test]
fn a_subscriber_that_stops_reading_is_evicted_and_others_keep_up() {
    // Half the queue limit: one event alone never overflows a queue that
    // the client keeps draining.
    const EVENT: usize = 32 * 1024;
    let mut config = test_config();
    config.max_queue = 64 * 1024;
    config.max_body = 64 * 1024;
    let server = TestServer::start_with(config, 1000);
    let mut bystander = Bystander::join(&server);
    // A steady reader on the flooded topic, in its own thread.
    let mut steady = connect(server.addr);
    steady
        .write_all(b"GET /events?topic=big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let steady = drain_stream(steady, b"data: the end\n");
    // The one that never reads.
    let mut stalled = connect(server.addr);
    stalled
        .write_all(b"GET /events?topic=big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    server.wait_stat("subscribers", 3);
    let data = "x".repeat(EVENT);
    let mut published = Vec::new();
    // Loopback buffers take a few MiB before the queue grows; bounded.
    while server.stat("evicted") == 0 {
        assert!(published.len() < 2000, "never evicted");
        for _ in 0..16 {
            published.push(publish_to(server.addr, "big", &data, None));
        }
    }
    assert_eq!(server.stat("evicted"), 1);
    server.wait_stat("subscribers", 2);
    for _ in 0..5 {
        published.push(publish_to(server.addr, "big", &data, None));
    }
    published.push(publish_to(server.addr, "big", "the end", None));
    let got = steady.join().expect("steady reader");
    assert_eq!(got, published, "the steady subscriber lost or reordered events");
    // The evicted one finds its connection closed after what was sent.
    let (_, closed) = read_until_closed(&mut stalled);
    assert!(closed, "the evicted connection was not closed");
    assert_eq!(server.stat("evicted"), 1);
    bystander.still_served(server.addr);
}

// ----- the publish token -------------------------------------------------------

#[test]
fn publishing_needs_the_token() {
    let mut config = test_config();
    config.publish_token = Some("s3cret-token".into());
    let server = TestServer::start_with(config, 1000);
    let mut bystander = Bystander::join_with_token(&server, Some("s3cret-token"));
    let attempts = [
        ("", 401),
        ("Authorization: Bearer wrong\r\n", 401),
        ("Authorization: Bearer s3cret-toke\r\n", 401),
        ("Authorization: Bearer s3cret-tokenX\r\n", 401),
        ("Authorization: Basic czNjcmV0LXRva2Vu\r\n", 401),
        ("Authorization: s3cret-token\r\n", 401),
        ("Authorization: Bearer\r\n", 401),
        ("Authorization: Bearer s3cret-token\r\n", 200),
        ("authorization: bearer s3cret-token\r\n", 200),
    ];
    for (auth, status) in attempts {
        let post = request(
            server.addr,
            &format!(
                "POST /publish?topic=bystander HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}\
                 Content-Length: 3\r\n\r\nabc"
            ),
        );
        assert_eq!(post.status, status, "POST with {auth:?}");
        let get = request(
            server.addr,
            &format!(
                "GET /broadcast?topic=bystander&msg=abc HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}\r\n"
            ),
        );
        assert_eq!(get.status, status, "GET /broadcast with {auth:?}");
        if status == 401 {
            assert_eq!(post.header("www-authenticate"), Some("Bearer"));
        } else {
            for response in [post, get] {
                let id = json_u64(&response.text(), "id");
                assert_eq!(bystander.sub.next_event().id, Some(id.to_string()));
            }
        }
    }
    // Only the two authorized attempts published, twice each.
    assert_eq!(server.stat("published"), 4);
    // A 401 keeps the connection: the client may retry with the token.
    let mut client = Client::connect(server.addr);
    client.send(b"POST /publish HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(client.read_response().status, 401);
    client
        .send(b"POST /publish HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(client.read_response().status, 200);
    bystander.still_served(server.addr);
}

// ----- running out of file descriptors ---------------------------------------

/// The real binary under a hard open-file limit of `nofile`.
fn spawn_limited(nofile: u64, args: &[&str]) -> BinaryServer {
    use std::os::unix::process::CommandExt;
    let mut command = BinaryServer::command(args, std::process::Stdio::null());
    // SAFETY: set_nofile only calls setrlimit, which is async-signal-safe;
    // it only touches the child.
    unsafe {
        command.pre_exec(move || procfs::set_nofile(nofile));
    }
    BinaryServer::start(command)
}

/// Log lines that contain `needle`, waiting up to `wait` for more.
fn count_log(server: &BinaryServer, needle: &str, wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    let mut count = 0;
    while let Ok(line) = server
        .log
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if line.contains(needle) {
            count += 1;
        }
    }
    count
}

/// Sends `GET /healthz` on each and expects a 200 on each within [`WAIT`].
fn all_answered_ok(streams: &mut [TcpStream]) {
    for stream in streams.iter_mut() {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).ends_with("ok\n") {
            let n = stream.read(&mut chunk).expect("a pending connection was served");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(status_of(&answer), Some(200));
    }
}

#[test]
fn running_out_of_file_descriptors_is_survived() {
    // 64 descriptors: about 50 connections fit after the server's own.
    let server = spawn_limited(64, &["--max-conns", "1000", "--tick", "0", "--heartbeat", "0"]);
    let mut bystander = Subscriber::open(server.addr, "/events?topic=bystander", "");
    bystander.connected();
    let mut keep_alive = Client::connect(server.addr);
    keep_alive.send(b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(keep_alive.read_response().status, 200);
    let mut subs: Vec<Subscriber> = (0..40)
        .map(|_| Subscriber::open(server.addr, "/events?topic=fill", ""))
        .collect();
    for sub in &mut subs {
        sub.connected();
    }
    // More than fit: the kernel completes their handshakes, the server
    // cannot accept them all. Keep-alive: those it does accept stay open.
    let mut waiting: Vec<TcpStream> = (0..40).map(|_| connect(server.addr)).collect();
    for stream in &mut waiting {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    let started = Instant::now();
    let deadline = started + WAIT;
    let warning = loop {
        let line = server
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no log line about running out of descriptors");
        if line.contains("accept") {
            break line;
        }
    };
    assert!(warning.contains("open files"), "{warning}");
    // The connections already open are served all along.
    for round in 0..5 {
        keep_alive.send(
            format!(
                "POST /publish?topic=bystander HTTP/1.1\r\nContent-Length: {}\r\n\r\nround {round}",
                format!("round {round}").len()
            )
            .as_bytes(),
        );
        let response = keep_alive.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(bystander.next_event().data, format!("round {round}"));
    }
    // Logged once for the episode, however long it lasts.
    let more = count_log(&server, "accept", Duration::from_millis(600));
    assert_eq!(more, 0, "the accept failure was logged {} times", more + 1);
    // Free some descriptors: the waiting connections are accepted.
    subs.truncate(5);
    all_answered_ok(&mut waiting);
    keep_alive.send(b"POST /publish?topic=fill HTTP/1.1\r\nContent-Length: 4\r\n\r\nfill");
    assert_eq!(keep_alive.read_response().status, 200);
    for sub in &mut subs {
        assert_eq!(sub.next_event().data, "fill");
    }
    drop(waiting);
    let health = request(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(health.status, 200);
    keep_alive.send(b"POST /publish?topic=bystander HTTP/1.1\r\nContent-Length: 5\r\n\r\nfresh");
    assert_eq!(keep_alive.read_response().status, 200);
    assert_eq!(bystander.next_event().data, "fresh");
}

// ----- nothing lost ---------------------------------------------------------------

/// Misbehaving clients in a thread until `stop`: garbage, slowloris heads,
/// oversize heads, abandoned requests, streams that never read.
fn misbehave(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        let mut held = Vec::new();
        let mut rounds = 0;
        while !stop.load(Ordering::SeqCst) && rounds < 2000 {
            rounds += 1;
            let Ok(mut stream) = TcpStream::connect(addr) else {
                continue;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            match next() % 5 {
                0 => {
                    let garbage: Vec<u8> = (0..(next() % 512)).map(|_| next() as u8).collect();
                    let _ = stream.write_all(&garbage);
                    let mut sink = [0u8; 1024];
                    let _ = stream.read(&mut sink);
                }
                1 => {
                    let _ = stream.write_all(b"GET /events HTTP/1.1\r\nX-Slow: ");
                    held.push(stream);
                }
                2 => {
                    let _ = stream
                        .write_all(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(17_000)).as_bytes());
                    let mut sink = [0u8; 1024];
                    let _ = stream.read(&mut sink);
                }
                3 => {
                    let _ =
                        stream.write_all(b"POST /publish?topic=a HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc");
                }
                _ => {
                    let _ = stream.write_all(b"GET /events HTTP/1.1\r\n\r\n");
                    held.push(stream);
                }
            }
            if held.len() > 20 {
                held.remove(0);
            }
        }
        rounds
    })
}

/// Reads events until one with id `last` or later; returns their ids.
fn read_through(sub: &mut Subscriber, last: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    loop {
        let event = sub.next_event();
        let Some(id) = event.id else { continue };
        let id: u64 = id.parse().unwrap();
        ids.push(id);
        if id >= last {
            return ids;
        }
    }
}

#[test]
fn a_subscriber_that_keeps_up_loses_nothing_while_others_misbehave() {
    let mut config = test_config();
    config.header_timeout = Duration::from_millis(500);
    let server = TestServer::start_with(config, 1000);
    let mut bystander = Bystander::join(&server);
    let mut ab = Subscriber::open(server.addr, "/events?topic=a,b", "");
    let mut all = Subscriber::open(server.addr, "/events", "");
    ab.connected();
    all.connected();
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = misbehave(server.addr, stop.clone());
    let topics = ["a", "b", "c"];
    let mut published = Vec::new();
    let mut publisher = Client::connect(server.addr);
    for i in 0..300 {
        let topic = topics[i % 3];
        let body = format!("event {i}");
        publisher.send(
            format!(
                "POST /publish?topic={topic} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let response = publisher.read_response();
        assert_eq!(response.status, 200);
        published.push((topic, json_u64(&response.text(), "id")));
    }
    stop.store(true, Ordering::SeqCst);
    let rounds = chaos.join().expect("misbehaving thread");
    assert!(rounds > 0);
    let want_ab: Vec<u64> = published
        .iter()
        .filter(|(t, _)| *t != "c")
        .map(|(_, id)| *id)
        .collect();
    let want_all: Vec<u64> = published.iter().map(|(_, id)| *id).collect();
    assert_eq!(read_through(&mut ab, *want_ab.last().unwrap()), want_ab);
    assert_eq!(read_through(&mut all, *want_all.last().unwrap()), want_all);
    bystander.still_served(server.addr);
}

#[test]
fn reconnecting_within_history_is_gapless_and_too_late_gets_a_gap() {
    let mut config = test_config();
    config.history = 50;
    let server = TestServer::start_with(config, 1000);
    let mut bystander = Bystander::join(&server);
    let mut sub = Subscriber::open(server.addr, "/events?topic=r", "");
    sub.connected();
    // Publish on a thread while the subscriber drops and comes back: 20
    // events before the reconnect (within the history of 50), 60 after.
    let addr = server.addr;
    let (back_tx, back_rx) = mpsc::channel::<()>();
    let publisher = thread::spawn(move || {
        let mut ids = Vec::new();
        for i in 0..80 {
            if i == 20 {
                back_rx.recv_timeout(WAIT).expect("reconnected");
            }
            ids.push(publish_to(addr, "r", &format!("{i}"), None));
        }
        ids
    });
    let mut seen: Vec<u64> = (0..5)
        .map(|_| sub.next_event().id.unwrap().parse().unwrap())
        .collect();
    drop(sub);
    let last = *seen.last().unwrap();
    let mut back = Subscriber::open(
        server.addr,
        "/events?topic=r",
        &format!("Last-Event-ID: {last}\r\n"),
    );
    back.connected();
    back_tx.send(()).unwrap();
    let ids = publisher.join().expect("publisher");
    let first = back.next_event();
    assert_ne!(first.event.as_deref(), Some("gap"), "{first:?}");
    seen.push(first.id.unwrap().parse().unwrap());
    seen.extend(read_through(&mut back, *ids.last().unwrap()));
    assert_eq!(seen, ids, "reconnect within the history window is gapless");
    // Too late: more than the history was published since.
    let stale = ids[10];
    let mut late = Subscriber::open(
        server.addr,
        "/events?topic=r",
        &format!("Last-Event-ID: {stale}\r\n"),
    );
    late.connected();
    let gap = late.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    assert!(gap.data.contains(&format!("\"last_event_id\":\"{stale}\"")));
    assert!(gap.data.contains(&format!("\"oldest\":{}", ids[30])), "{gap:?}");
    // Then what is retained, in order.
    assert_eq!(read_through(&mut late, ids[79]), ids[30..]);
    // Unknown ids, and ids from the future, get a gap before anything else.
    let future = (ids[79] + 1000).to_string();
    for unknown in ["banana", "-1", "99999999999999999999", &future] {
        let mut sub = Subscriber::open(
            server.addr,
            "/events?topic=r",
            &format!("Last-Event-ID: {unknown}\r\n"),
        );
        sub.connected();
        let gap = sub.next_event();
        assert_eq!(gap.event.as_deref(), Some("gap"), "{unknown}: {gap:?}");
    }
    bystander.still_served(server.addr);
}

#[test]
fn a_burst_of_pipelined_publishes_does_not_evict_subscribers_that_keep_up() {
    // Defaults: --max-queue 1 MiB, --max-body 64 KiB. One client pipelines
    // 24 publishes of 60 KiB (1.4 MiB) in one write, which the server may
    // read in a single turn, before it has tried to write any of it.
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    let mut steady = connect(server.addr);
    steady
        .write_all(b"GET /events?topic=burst HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let steady = drain_stream(steady, b"data: the end\n");
    server.wait_stat("subscribers", 2);
    let body = "b".repeat(60 * 1024);
    let mut burst = Vec::new();
    for _ in 0..24 {
        burst.extend_from_slice(
            format!(
                "POST /publish?topic=burst HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let mut publisher = Client::connect(server.addr);
    publisher.send(&burst);
    let mut published = Vec::new();
    for _ in 0..24 {
        let response = publisher.read_response();
        assert_eq!(response.status, 200);
        published.push(json_u64(&response.text(), "id"));
    }
    published.push(publish_to(server.addr, "burst", "the end", None));
    assert_eq!(
        server.stat("evicted"),
        0,
        "a subscriber that keeps up was evicted"
    );
    let got = steady.join().expect("steady reader");
    assert_eq!(got, published);
    bystander.still_served(server.addr);
}

#[test]
fn a_burst_larger_than_max_queue_does_not_evict_a_subscriber_that_keeps_up() {
    // --max-queue 64 KiB; 24 pipelined publishes of 20 KiB (480 KiB) in one
    // write. The subscriber's socket is empty and it reads as fast as it
    // can: its kernel buffer would take the burst whole. The server queues
    // the whole batch and checks the limit before the end-of-turn flush has
    // tried to write any of it, so it evicts a reader that was keeping up.
    let mut config = test_config();
    config.max_queue = 64 * 1024;
    let server = TestServer::start_with(config, 1000);
    let mut bystander = Bystander::join(&server);
    let mut steady = connect(server.addr);
    steady
        .write_all(b"GET /events?topic=burst HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let steady = drain_stream(steady, b"data: the end\n");
    server.wait_stat("subscribers", 2);
    let body = "b".repeat(20 * 1024);
    let one = format!(
        "POST /publish?topic=burst HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut publisher = Client::connect(server.addr);
    publisher.send(one.repeat(24).as_bytes());
    let mut published = Vec::new();
    for _ in 0..24 {
        let response = publisher.read_response();
        assert_eq!(response.status, 200);
        published.push(json_u64(&response.text(), "id"));
    }
    published.push(publish_to(server.addr, "burst", "the end", None));
    assert_eq!(
        server.stat("evicted"),
        0,
        "a subscriber that keeps up was evicted"
    );
    let got = steady.join().expect("steady reader");
    assert_eq!(got, published);
    bystander.still_served(server.addr);
}

#[test]
fn chunk_sizes_with_leading_zeros_are_accepted() {
    // RFC 9112 §7.1: chunk-size = 1*HEXDIG. Leading zeros are legal; the
    // value, not the digit count, is what must fit under --max-body.
    let server = TestServer::start();
    let mut bystander = Bystander::join(&server);
    let response = request(
        server.addr,
        "POST /publish?topic=bystander HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         000000000000000000005\r\nzeros\r\n0\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(bystander.sub.next_event().data, "zeros");
    bystander.still_served(server.addr);
}
