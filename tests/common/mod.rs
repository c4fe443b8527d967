//! Test support: a real server on `127.0.0.1:0`, and raw clients that speak
//! bytes over loopback with deadlines on every wait.
//!
//! - [`TestServer::start`] runs the library's server in a thread, in this
//!   process; dropping it shuts the server down and joins the thread.
//! - [`BinaryServer::spawn`] runs the real `ssed` binary, for what only the
//!   process shows (flags, signals, logs, exit codes).
//! - [`Client`] sends raw bytes and reads raw responses.
//! - [`Subscriber`] opens `/events` and reads parsed [`SseEvent`]s, undoing
//!   the chunked framing on the way.
//!
//! The parsing is not here: response heads, chunked framing, event-stream
//! lines and JSON numbers come from `tools/testkit` (`ssed-testkit`), the
//! same code the load tool and the soak use. This file keeps the sockets,
//! the servers and the deadlines.
//!
//! No sleeps: every wait polls with a deadline and fails the test with a
//! message when the deadline passes.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssed::{Config, Handle, Server};
use ssed_testkit::http::{parse_head, ResponseHead};
use ssed_testkit::net;
use ssed_testkit::sse::{Events, Item, Parser};

/// One block of an event stream, as an SSE client parses it.
pub type SseEvent = ssed_testkit::sse::Event;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A quiet config for tests: no ticker, no heartbeat, port 0.
pub fn test_config() -> Config {
    Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        tick: None,
        heartbeat: None,
        ..Config::default()
    }
}

/// A server running in a thread of the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(test_config(), 1000)
    }

    pub fn start_with(config: Config, max_conns: usize) -> TestServer {
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut server = Server::bind(config, max_conns).expect("bind");
            ready_tx.send((server.local_addrs()[0], server.handle())).unwrap();
            server.run().expect("server run");
        });
        let (addr, handle) = ready_rx.recv_timeout(WAIT).expect("server did not start");
        TestServer {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    /// Shuts down gracefully and waits for the loop to return.
    pub fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread panicked");
        }
    }

    pub fn get(&self, target: &str) -> Response {
        request(
            self.addr,
            &format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
    }

    pub fn post(&self, target: &str, body: &str) -> Response {
        request(
            self.addr,
            &format!(
                "POST {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// Publishes and returns the new event's id.
    pub fn publish(&self, topic: &str, data: &str) -> u64 {
        let response = self.post(&format!("/publish?topic={topic}"), data);
        assert_eq!(response.status, 200, "{response:?}");
        json_u64(&response.text(), "id")
    }

    /// The value of `field` in `/stats`.
    pub fn stat(&self, field: &str) -> u64 {
        json_u64(&self.get("/stats").text(), field)
    }

    /// Polls `/stats` until `field` equals `want`.
    pub fn wait_stat(&self, field: &str, want: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.stat(field);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "stats {field} is {got}, wanted {want}");
            thread::yield_now();
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop();
        } else {
            self.handle.shutdown();
        }
    }
}

/// The real binary, started with `args` plus `--listen 127.0.0.1:0`.
pub struct BinaryServer {
    pub addr: SocketAddr,
    pub child: Child,
    pub log: mpsc::Receiver<String>,
}

impl BinaryServer {
    pub fn spawn(args: &[&str]) -> BinaryServer {
        Self::spawn_with(args, Stdio::null())
    }

    pub fn spawn_with(args: &[&str], stdin: Stdio) -> BinaryServer {
        Self::start(Self::command(args, stdin))
    }

    /// The command [`BinaryServer::spawn`] runs, for a test that needs to
    /// change it (resource limits, say) before [`BinaryServer::start`].
    pub fn command(args: &[&str], stdin: Stdio) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("SSED_PUBLISH_TOKEN")
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Spawns `command` and waits for the address it says it listens on.
    pub fn start(mut command: Command) -> BinaryServer {
        let mut child = command.spawn().expect("spawn ssed");
        let log = forward_lines(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let line = log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("ssed did not say where it listens");
            if let Some(addr) = net::listening_addr(&line) {
                break addr;
            }
        };
        BinaryServer { addr, child, log }
    }

    /// Sends a signal and waits (bounded) for the exit status.
    pub fn signal(&mut self, signal: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ssed did not exit after signal {signal}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?}"),
            }
        }
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn new(head: &ResponseHead, body: Vec<u8>) -> Response {
        Response {
            status: head.status,
            headers: head.headers.clone(),
            body,
        }
    }
}

/// One request on a fresh connection; reads one response.
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut client = Client::connect(addr);
    client.send(raw.as_bytes());
    client.read_response()
}

/// A socket to `addr` whose reads time out after [`WAIT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    net::connect(addr, WAIT).expect("connect")
}

/// A raw connection with a read deadline.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: connect(addr),
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads more bytes into the buffer; false on EOF.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            return match self.stream.read(&mut chunk) {
                Ok(0) => false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    true
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
                Err(e) => panic!("read: {e} (buffered: {:?})", String::from_utf8_lossy(&self.buf)),
            };
        }
    }

    /// Reads one response head and its Content-Length body (HEAD-less).
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    /// As [`Client::read_response`]; `head_only` for answers to HEAD.
    pub fn read_response_to(&mut self, head_only: bool) -> Response {
        let (head, used) = loop {
            match parse_head(&self.buf) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => assert!(
                    self.fill(),
                    "EOF before a response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Err(e) => panic!("{e}: {:?}", String::from_utf8_lossy(&self.buf)),
            }
        };
        self.buf.drain(..used);
        let length = match head.content_length {
            _ if head_only || head.status == 100 => 0,
            length => length.unwrap_or(0),
        };
        while self.buf.len() < length {
            assert!(self.fill(), "EOF inside a body");
        }
        Response::new(&head, self.buf.drain(..length).collect())
    }

    /// True if the server closes the connection (EOF or reset) in time.
    pub fn closed_by_server(&mut self) -> bool {
        loop {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Everything until the server closes, after what is buffered.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }
}

/// An open `/events` stream.
pub struct Subscriber {
    client: Client,
    pub response: Response,
    parser: Parser,
    events: Events,
    /// Blocks parsed and not yet taken.
    blocks: VecDeque<SseEvent>,
    /// Bytes received after the body ended.
    after_end: Vec<u8>,
    /// The zero-size chunk that ends a chunked body was received.
    pub last_chunk_seen: bool,
}

impl Subscriber {
    /// `GET target` with extra header lines (each ending in `\r\n`).
    pub fn open(addr: SocketAddr, target: &str, extra_headers: &str) -> Subscriber {
        Self::open_version(addr, target, extra_headers, "HTTP/1.1")
    }

    pub fn open_version(addr: SocketAddr, target: &str, extra_headers: &str, version: &str) -> Subscriber {
        let mut client = Client::connect(addr);
        client.send(format!("GET {target} {version}\r\nHost: t\r\n{extra_headers}\r\n").as_bytes());
        Self::from_client(client)
    }

    /// The stream a request already sent on `client` opens: waits for its
    /// head. (For a test that must act between sending and reading.)
    pub fn from_client(client: Client) -> Subscriber {
        let mut subscriber = Subscriber {
            client,
            response: Response {
                status: 0,
                headers: Vec::new(),
                body: Vec::new(),
            },
            parser: Parser::new(),
            events: Events::default(),
            blocks: VecDeque::new(),
            after_end: Vec::new(),
            last_chunk_seen: false,
        };
        while subscriber.response.status == 0 {
            assert!(subscriber.pump(), "EOF before the stream's head");
        }
        subscriber
    }

    /// Reads until the `connected` event and returns the client id.
    pub fn connected(&mut self) -> u64 {
        let first = self.next_event();
        assert!(first.retry.is_some() || first.event.is_some(), "{first:?}");
        let event = if first.event.as_deref() == Some("connected") {
            first
        } else {
            self.next_event()
        };
        assert_eq!(event.event.as_deref(), Some("connected"), "{event:?}");
        json_u64(&event.data, "client")
    }

    /// The next block (event, retry-only block, or comment block).
    pub fn next_block(&mut self) -> SseEvent {
        loop {
            if let Some(block) = self.blocks.pop_front() {
                return block;
            }
            assert!(self.pump(), "stream ended while waiting for an event");
        }
    }

    /// The next block that carries data, an id or a name (skips
    /// retry-only and comment blocks).
    pub fn next_event(&mut self) -> SseEvent {
        loop {
            let block = self.next_block();
            if block.event.is_some() || block.id.is_some() || !block.data.is_empty() {
                return block;
            }
        }
    }

    /// Reads once and parses what came; false when the stream ended.
    fn pump(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.client.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.absorb(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("stream read: {e}"),
        }
    }

    /// Feeds the parser; a stream the test cannot read fails the test.
    fn absorb(&mut self, bytes: &[u8]) {
        let Subscriber {
            parser,
            events,
            blocks,
            response,
            last_chunk_seen,
            ..
        } = self;
        let used = parser
            .feed(bytes, &mut |item| match item {
                Item::Head(head) => *response = Response::new(head, Vec::new()),
                Item::Line(line) => blocks.extend(events.line(line)),
                Item::End => *last_chunk_seen = true,
            })
            .unwrap_or_else(|e| panic!("event stream: {e}"));
        self.after_end.extend_from_slice(&bytes[used..]);
    }

    /// True once the server ends the stream (bounded by the read timeout).
    pub fn ended(&mut self) -> bool {
        loop {
            let mut chunk = [0u8; 4096];
            match self.client.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.absorb(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Raw bytes received but not part of the stream: whatever came after
    /// the end of the body (a cleanly ended stream leaves none).
    pub fn raw_pending(&self) -> &[u8] {
        &self.after_end
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.client.stream
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.client.stream.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// Where `needle` first starts in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    ssed_testkit::http::find(haystack, needle)
}

/// The unsigned number after `"field":` in a flat JSON object.
pub fn json_u64(json: &str, field: &str) -> u64 {
    ssed_testkit::json::json_u64(json, field).unwrap_or_else(|| panic!("{field} in {json}"))
}
