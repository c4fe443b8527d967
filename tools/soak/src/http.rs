//! The soak roles' two kinds of connection, on blocking sockets: one
//! request/response at a time on a keep-alive connection, and an event
//! stream read incrementally, each block reduced to what the roles check
//! (its id, or whether it is `connected` or `gap`).
//!
//! Parsing is the testkit's (`ssed_testkit::http`, `ssed_testkit::sse`),
//! shared with the tests and the load tool; this file owns the sockets.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ssed_testkit::http::parse_head;
use ssed_testkit::id::EventId;
use ssed_testkit::net::connect;
use ssed_testkit::sse::{self, Event, Events, Parser};

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
        let (head, used) = loop {
            match parse_head(&self.buf) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => self.fill()?,
                Err(e) => return Err(io::Error::new(ErrorKind::InvalidData, e)),
            }
        };
        self.buf.drain(..used);
        let length = head.content_length.unwrap_or(0);
        while self.buf.len() < length {
            self.fill()?;
        }
        let body = String::from_utf8_lossy(&self.buf[..length]).into_owned();
        self.buf.drain(..length);
        Ok((head.status, body))
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

/// What the stream reader hands up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An event with an id (a published one): a number, or a stream's
    /// `ms-seq` over the bus.
    Event(EventId),
    /// `event: gap`.
    Gap,
    /// `event: connected`.
    Connected,
    /// Anything else: ticks, retry blocks, pings.
    Other,
}

impl Item {
    fn of(event: &Event) -> Item {
        match (event.event.as_deref(), &event.id) {
            (Some("gap"), _) => Item::Gap,
            (Some("connected"), _) => Item::Connected,
            (_, Some(id)) => EventId::parse(id).map_or(Item::Other, Item::Event),
            _ => Item::Other,
        }
    }
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
    parser: Parser,
    events: Events,
    pub bytes: u64,
}

impl Stream {
    /// Sends `GET target` with `Last-Event-ID` if given.
    pub fn open(
        addr: SocketAddr,
        target: &str,
        last_event_id: Option<&EventId>,
        read_timeout: Duration,
    ) -> io::Result<Stream> {
        let mut stream = connect(addr, read_timeout)?;
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        stream.write_all(format!("GET {target} HTTP/1.1\r\nHost: soak\r\n{resume}\r\n").as_bytes())?;
        Ok(Stream {
            stream,
            parser: Parser::new(),
            events: Events::default(),
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

    /// Reads up to `max` bytes once and returns the blocks they completed.
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
        let mut items = Vec::new();
        let Stream { parser, events, .. } = self;
        parser
            .feed(&chunk[..n], &mut |item| {
                if let sse::Item::Line(line) = item {
                    items.extend(events.line(line).as_ref().map(Item::of));
                }
            })
            .map_err(|e| {
                let why = if e.is_refusal() {
                    "stream refused"
                } else {
                    "stream"
                };
                io::Error::new(ErrorKind::InvalidData, format!("{why}: {e}"))
            })?;
        Ok(Got::Items(items))
    }
}
