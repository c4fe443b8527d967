//! Just enough HTTP/1.1 and SSE on blocking sockets for the soak roles:
//! one request/response on a keep-alive connection, and an event stream
//! read incrementally (chunked framing undone, `id:`/`event:` fields kept).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connects with the given read timeout and no Nagle delay.
pub fn connect(addr: SocketAddr, read_timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(read_timeout))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive connection for requests with `Content-Length` answers.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
        Ok(Conn {
            stream: connect(addr, Duration::from_secs(10))?,
            buf: Vec::new(),
        })
    }

    /// Sends `raw` and reads one response: status and body.
    pub fn request(&mut self, raw: &[u8]) -> io::Result<(u16, String)> {
        self.stream.write_all(raw)?;
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "bad status line"))?;
        let length = head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .unwrap_or(0);
        self.buf.drain(..head_end);
        while self.buf.len() < length {
            self.fill()?;
        }
        let body = String::from_utf8_lossy(&self.buf[..length]).into_owned();
        self.buf.drain(..length);
        Ok((status, body))
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, target: &str) -> io::Result<(u16, String)> {
    Conn::open(addr)?
        .request(format!("GET {target} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n").as_bytes())
}

/// The unsigned number after `"field":` in a flat JSON object.
pub fn json_u64(json: &str, field: &str) -> Option<u64> {
    let key = format!("\"{field}\":");
    let at = json.find(&key)? + key.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// What the stream reader hands up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An event with an id (a published one).
    Event(u64),
    /// `event: gap`.
    Gap,
    /// `event: connected`.
    Connected,
    /// Anything else: ticks, retry blocks, pings.
    Other,
}

/// What a read of the stream brought.
#[derive(Debug)]
pub enum Got {
    Items(Vec<Item>),
    /// Nothing arrived within the read timeout.
    Idle,
    /// The server closed the stream (EOF or reset).
    Closed,
}

/// An open `/events` stream, parsed as it arrives.
pub struct Stream {
    stream: TcpStream,
    raw: Vec<u8>,
    text: Vec<u8>,
    head_done: bool,
    chunked: bool,
    /// Fields of the block being read.
    id: Option<u64>,
    name: Option<String>,
    pub bytes: u64,
}

impl Stream {
    /// Sends `GET target` with `Last-Event-ID` if given.
    pub fn open(
        addr: SocketAddr,
        target: &str,
        last_event_id: Option<u64>,
        read_timeout: Duration,
    ) -> io::Result<Stream> {
        let mut stream = connect(addr, read_timeout)?;
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        stream.write_all(format!("GET {target} HTTP/1.1\r\nHost: soak\r\n{resume}\r\n").as_bytes())?;
        Ok(Stream {
            stream,
            raw: Vec::new(),
            text: Vec::new(),
            head_done: false,
            chunked: false,
            id: None,
            name: None,
            bytes: 0,
        })
    }

    /// Asks the kernel for a smaller receive buffer, so that a subscriber
    /// that stops reading backs up into the server sooner instead of into
    /// megabytes of loopback buffering. Not much smaller: under two segments
    /// (loopback's MSS is 64 KiB) the receiver stops sending window updates
    /// and an evicted stream's last bytes crawl in on zero-window probes.
    pub fn shrink_receive_buffer(&self) {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 256 * 1024;
        // SAFETY: setsockopt on a socket we own, with a correctly sized int.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Reads up to `max` bytes once and returns what it completed.
    pub fn read(&mut self, max: usize) -> io::Result<Got> {
        let mut chunk = vec![0u8; max];
        let n = match self.stream.read(&mut chunk) {
            Ok(0) => return Ok(Got::Closed),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(Got::Idle)
            }
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return Ok(Got::Closed)
            }
            Err(e) => return Err(e),
        };
        self.bytes += n as u64;
        self.raw.extend_from_slice(&chunk[..n]);
        let mut items = Vec::new();
        self.parse(&mut items)?;
        Ok(Got::Items(items))
    }

    fn parse(&mut self, items: &mut Vec<Item>) -> io::Result<()> {
        if !self.head_done {
            let Some(at) = find(&self.raw, b"\r\n\r\n") else {
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.raw[..at]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("stream refused: {head}"),
                ));
            }
            self.chunked = head.contains("transfer-encoding: chunked");
            self.raw.drain(..at + 4);
            self.head_done = true;
        }
        if self.chunked {
            let mut at = 0;
            while let Some(line) = find(&self.raw[at..], b"\r\n") {
                let size_text = std::str::from_utf8(&self.raw[at..at + line]).unwrap_or("");
                let size = usize::from_str_radix(size_text.trim(), 16).map_err(|_| {
                    io::Error::new(ErrorKind::InvalidData, format!("chunk size {size_text:?}"))
                })?;
                let start = at + line + 2;
                if self.raw.len() < start + size + 2 {
                    break;
                }
                self.text.extend_from_slice(&self.raw[start..start + size]);
                at = start + size + 2;
            }
            self.raw.drain(..at);
        } else {
            self.text.append(&mut self.raw);
        }
        let mut at = 0;
        while let Some(end) = self.text[at..].iter().position(|&b| b == b'\n') {
            let line = &self.text[at..at + end];
            at += end + 1;
            if line.is_empty() {
                let item = match (self.name.take().as_deref(), self.id.take()) {
                    (Some("gap"), _) => Item::Gap,
                    (Some("connected"), _) => Item::Connected,
                    (_, Some(id)) => Item::Event(id),
                    _ => Item::Other,
                };
                items.push(item);
            } else if let Some(value) = line.strip_prefix(b"id: ") {
                self.id = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            } else if let Some(value) = line.strip_prefix(b"event: ") {
                self.name = Some(String::from_utf8_lossy(value).into_owned());
            }
        }
        self.text.drain(..at);
        Ok(())
    }
}
