//! The floor: the least an SSE server on one `mio` loop can do, to measure
//! what the kernel allows on a machine. No features, no limits, no
//! timeouts, no history: subscribers (`GET` anything) get a chunked
//! `text/event-stream` head; a `POST` (anything) with a `Content-Length`
//! body publishes it as `id: N` + `data: BODY` to every subscriber. Each
//! subscriber's bytes are appended to its own buffer and written with one
//! `write()` per subscriber per loop turn.
//!
//! ```sh
//! cargo run --release -p ssed-load --example floor -- 127.0.0.1:8070
//! ```
//!
//! For benchmarking only (BENCHMARKS.md): never expose it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);
const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    subscriber: bool,
    dirty: bool,
}

fn main() -> io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8070".into())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("address: {e}")))?;
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "loopback only"));
    }
    ssed_testkit::procfs::raise_nofile();
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("floor: listening on http://{}", listener.local_addr()?);
    let mut conns: Slab<Conn> = Slab::new();
    let mut subscribers: Vec<usize> = Vec::new();
    let mut dirty: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut next_id = 1u64;
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    let entry = conns.vacant_entry();
                    poll.registry().register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    entry.insert(Conn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        subscriber: false,
                        dirty: false,
                    });
                }
                continue;
            }
            let key = event.token().0;
            let mut closed = false;
            let mut published = Vec::new();
            if let Some(conn) = conns.get_mut(key) {
                if event.is_writable() && !conn.output.is_empty() && !conn.dirty {
                    conn.dirty = true;
                    dirty.push(key);
                }
                loop {
                    match conn.stream.read(&mut scratch) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => conn.input.extend_from_slice(&scratch[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
                // Every complete request in the buffer.
                loop {
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut request = httparse::Request::new(&mut headers);
                    let Ok(httparse::Status::Complete(used)) = request.parse(&conn.input) else {
                        break;
                    };
                    let length = request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.method == Some("GET") {
                        conn.input.drain(..used);
                        conn.output.extend_from_slice(HEAD);
                        conn.subscriber = true;
                        subscribers.push(key);
                    } else {
                        if conn.input.len() < used + length {
                            break;
                        }
                        published.push(conn.input[used..used + length].to_vec());
                        conn.input.drain(..used + length);
                        let body = format!("{{\"id\":{}}}", next_id + published.len() as u64 - 1);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        conn.output.extend_from_slice(answer.as_bytes());
                    }
                    if !conn.dirty {
                        conn.dirty = true;
                        dirty.push(key);
                    }
                }
            }
            for data in published {
                let event = format!("id: {next_id}\ndata: {}\n\n", String::from_utf8_lossy(&data));
                next_id += 1;
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                for &sub in &subscribers {
                    if let Some(conn) = conns.get_mut(sub) {
                        conn.output.extend_from_slice(chunk.as_bytes());
                        if !conn.dirty {
                            conn.dirty = true;
                            dirty.push(sub);
                        }
                    }
                }
            }
            if closed {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
                if conn.subscriber {
                    subscribers.retain(|&k| k != key);
                }
            }
        }
        // One write per dirty connection per turn.
        for key in dirty.drain(..) {
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            match conn.stream.write(&conn.output) {
                Ok(n) => {
                    conn.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => conn.output.clear(),
            }
            if conn.output.is_empty() {
                conn.output = Vec::new();
            }
        }
    }
}
