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
//! No sleeps: every wait polls with a deadline and fails the test with a
//! message when the deadline passes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssed::{Config, Handle, Server};

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
            if let Some(at) = line.find("listening on http://") {
                break line[at + "listening on http://".len()..]
                    .trim()
                    .parse()
                    .expect("address");
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
}

/// One request on a fresh connection; reads one response.
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut client = Client::connect(addr);
    client.send(raw.as_bytes());
    client.read_response()
}

/// A raw connection with a read deadline.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads more bytes into the buffer; false on EOF.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e} (buffered: {:?})", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// Reads one response head and its Content-Length body (HEAD-less).
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    /// As [`Client::read_response`]; `head_only` for answers to HEAD.
    pub fn read_response_to(&mut self, head_only: bool) -> Response {
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                self.fill(),
                "EOF before a response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect(status_line);
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        self.buf.drain(..head_end);
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let length = if head_only || status == 100 { 0 } else { length };
        while self.buf.len() < length {
            assert!(self.fill(), "EOF inside a body");
        }
        let body = self.buf.drain(..length).collect();
        Response {
            status,
            headers,
            body,
        }
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

/// One event as an SSE client parses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
    /// Comment lines seen in this block (`: ping`).
    pub comments: Vec<String>,
}

/// An open `/events` stream.
pub struct Subscriber {
    client: Client,
    pub response: Response,
    chunked: bool,
    /// De-chunked stream bytes not yet parsed into events.
    text: Vec<u8>,
    /// Raw bytes not yet de-chunked.
    raw: Vec<u8>,
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
        let response = client.read_response();
        let chunked = response.header("transfer-encoding") == Some("chunked");
        let raw = std::mem::take(&mut client.buf);
        let mut subscriber = Subscriber {
            client,
            response,
            chunked,
            text: Vec::new(),
            raw,
            last_chunk_seen: false,
        };
        subscriber.dechunk();
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
            if let Some(event) = self.parse_block() {
                return event;
            }
            assert!(self.pump(), "stream ended while waiting for an event");
        }
    }

    /// The next block that carries data (skips retry-only and comments).
    pub fn next_event(&mut self) -> SseEvent {
        loop {
            let block = self.next_block();
            if block.event.is_some() || block.id.is_some() || !block.data.is_empty() || block.retry.is_some()
            {
                if block.retry.is_some() && block.event.is_none() && block.data.is_empty() {
                    // A lone retry: report it only through next_block.
                    if block.id.is_none() {
                        continue;
                    }
                }
                return block;
            }
        }
    }

    /// Reads raw bytes and de-chunks them; false when the stream ended.
    fn pump(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = match self.client.stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("stream read: {e}"),
        };
        if n == 0 {
            self.dechunk();
            return false;
        }
        self.raw.extend_from_slice(&chunk[..n]);
        self.dechunk();
        true
    }

    fn dechunk(&mut self) {
        if !self.chunked {
            self.text.append(&mut self.raw);
            return;
        }
        loop {
            let Some(line_end) = find(&self.raw, b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            let data = self.raw[line_end + 2..line_end + 2 + size].to_vec();
            self.last_chunk_seen |= size == 0;
            assert_eq!(&self.raw[line_end + 2 + size..line_end + 4 + size], b"\r\n");
            self.raw.drain(..line_end + 4 + size);
            self.text.extend_from_slice(&data);
        }
    }

    /// WHATWG parsing of one block ended by a blank line.
    fn parse_block(&mut self) -> Option<SseEvent> {
        let end = find(&self.text, b"\n\n")?;
        let block: Vec<u8> = self.text.drain(..end + 2).collect();
        let text = String::from_utf8(block).expect("stream is UTF-8");
        let mut event = SseEvent::default();
        let mut data_lines = Vec::new();
        for line in text.trim_end_matches('\n').split('\n') {
            if let Some(comment) = line.strip_prefix(':') {
                event.comments.push(comment.trim().to_string());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = Some(value.to_string()),
                "event" => event.event = Some(value.to_string()),
                "data" => data_lines.push(value.to_string()),
                "retry" => event.retry = value.parse().ok(),
                _ => {}
            }
        }
        event.data = data_lines.join("\n");
        Some(event)
    }

    /// True once the server ends the stream (bounded by the read timeout).
    pub fn ended(&mut self) -> bool {
        loop {
            let mut chunk = [0u8; 4096];
            match self.client.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => {
                    self.raw.extend_from_slice(&chunk[..n]);
                    self.dechunk();
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Raw bytes already received but not yet parsed (for framing checks).
    pub fn raw_pending(&self) -> &[u8] {
        &self.raw
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.client.stream
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.client.stream.set_read_timeout(Some(timeout)).unwrap();
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned number after `"field":` in a flat JSON object.
pub fn json_u64(json: &str, field: &str) -> u64 {
    let key = format!("\"{field}\":");
    let at = json.find(&key).unwrap_or_else(|| panic!("{field} in {json}")) + key.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{field} in {json}"))
}
