//! One client connection: its phase, its read buffer, its queue of unsent
//! bytes, and what the kernel last told us about its socket.
//!
//! # Phases
//!
//! ```text
//!            accept
//!              │
//!              ▼
//!   ┌───── Request ◀────┐  read a head (and body), answer it, and for a
//!   │        │   └──────┘  keep-alive connection go round again
//!   │        │ GET /events
//!   │        ▼
//!   │      Stream          events are queued until the peer leaves,
//!   │        │             falls too far behind, or we shut down
//!   │        ▼
//!   └───▶ Closing          the last answer is flushed, then the write side
//!            │             is shut
//!            ▼
//!        Lingering         we read (and drop) until the peer closes too,
//!            │             so a close never resets an unread answer
//!            ▼
//!          closed          the slab slot is freed
//! ```
//!
//! # Readiness as data
//!
//! The socket is registered once, for both reading and writing, with
//! edge-triggered `epoll`. An edge says "something changed", so we keep what
//! it told us in `readable` / `writable` and act on those bits: a bit is set
//! by an event and cleared only when a system call answers `WouldBlock`. A
//! write is therefore tried straight away whenever the last one did not
//! block, and only bytes the kernel would not take wait for the next
//! writable edge. No `reregister` is ever needed.
//!
//! # The write queue
//!
//! The queue holds [`Frame`]s, reference-counted and shared: one published
//! event is one allocation however many subscribers queue it. A flush hands
//! every queued frame (up to [`MAX_IOVECS`]) to one `writev`. The queue is bounded by
//! `--max-queue`, enforced by the server when it queues an event.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Instant;

use mio::net::TcpStream;

use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::request::{parse_head, BodyFraming};
use crate::http::response::CONTINUE;
use crate::http::{Rejection, Request};
use crate::hub::Topics;
use crate::sse::Frame;
use crate::trace;

/// Most frames handed to one `writev`: Linux's `IOV_MAX`.
pub const MAX_IOVECS: usize = 1024;

/// Where the connection is in its life. See the module docs for the diagram.
#[derive(Debug)]
pub enum Phase {
    /// Boxed: a stream, the phase most connections live in, then needs
    /// only a `Subscription`'s room in every slab entry, not this.
    Request(Box<Reading>),
    Stream(Subscription),
    Closing,
    Lingering,
}

/// Reading a request: bytes received but not yet used, and the body being
/// collected once a head asked for one.
#[derive(Debug)]
pub struct Reading {
    buf: Vec<u8>,
    /// How much of `buf` has been parsed already (compacted after a batch).
    start: usize,
    /// When the current request must have arrived in full.
    pub deadline: Instant,
    body: Option<Box<PendingBody>>,
}

/// A request whose head has arrived and whose body is still coming.
#[derive(Debug)]
struct PendingBody {
    request: Request,
    decoder: BodyDecoder,
}

#[derive(Debug)]
enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

/// An open event stream.
#[derive(Debug)]
pub struct Subscription {
    pub topics: Topics,
    /// When bytes were last queued, for the heartbeat.
    pub last_sent: Instant,
}

/// What one `read` brought.
#[derive(Debug)]
pub enum ReadOutcome {
    Data(usize),
    WouldBlock,
    Eof,
    Error(io::Error),
}

/// What one flush achieved.
#[derive(Debug)]
pub enum FlushOutcome {
    /// The queue is empty; `released` bytes of queue buffer were freed.
    Done {
        released: usize,
    },
    /// The kernel's buffer is full; the rest waits for a writable edge.
    Blocked,
    Error(io::Error),
}

/// Why a connection was closed, for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    PeerClosed,
    ReadError,
    WriteError,
    Evicted,
    IdleTimeout,
    Finished,
    Shutdown,
}

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    /// Unique for the life of the process; also the `client` id sent in
    /// the `connected` event, and what tells a timer entry for this
    /// connection from one for an earlier occupant of the same slab slot.
    pub id: u64,
    pub phase: Phase,
    /// Frames to send, oldest first: 8 bytes each, a pointer to bytes that
    /// every subscriber shares.
    queue: VecDeque<Rc<Frame>>,
    /// How much of the front frame is already written; only the front can
    /// be part-sent, so one offset serves the whole queue.
    front_sent: usize,
    queued: usize,
    /// An HTTP/1.1 stream: frames are sent whole, chunk framing included.
    chunked: bool,
    pub readable: bool,
    pub writable: bool,
    /// The peer sent EOF: never read again.
    pub peer_closed: bool,
    /// An event said the peer's FIN has arrived (`EPOLLRDHUP`): read on to
    /// the EOF instead of trusting a short read to mean "drained".
    pub fin_pending: bool,
    /// Already on the server's list of connections to flush this turn.
    pub dirty: bool,
    /// A `Deadline` timer entry exists for this connection.
    pub deadline_armed: bool,
    /// Accepted over `--max-conns`: answered with a refusal, then closed.
    pub over_capacity: bool,
}

impl Conn {
    pub fn new(stream: TcpStream, id: u64, deadline: Instant) -> Self {
        Conn {
            stream,
            id,
            phase: Phase::Request(Box::new(Reading {
                buf: Vec::new(),
                start: 0,
                deadline,
                body: None,
            })),
            queue: VecDeque::new(),
            front_sent: 0,
            queued: 0,
            chunked: false,
            // A fresh socket is writable; a read may find the request
            // already there. Both bits are confirmed by the first call.
            readable: true,
            writable: true,
            peer_closed: false,
            fin_pending: false,
            dirty: false,
            deadline_armed: false,
            over_capacity: false,
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn has_pending_output(&self) -> bool {
        !self.queue.is_empty()
    }

    /// True while reading requests and nothing of the next one has arrived:
    /// an idle keep-alive connection, which times out silently.
    pub fn is_idle(&self) -> bool {
        match &self.phase {
            Phase::Request(reading) => reading.body.is_none() && reading.start == reading.buf.len(),
            _ => false,
        }
    }

    /// Reads once into `scratch`.
    pub fn read(&mut self, scratch: &mut [u8], tracing: bool) -> ReadOutcome {
        loop {
            return match self.stream.read(scratch) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => {
                    if tracing {
                        trace::bytes(self.id, trace::Direction::In, &scratch[..n]);
                    }
                    ReadOutcome::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Error(e),
            };
        }
    }

    /// Keeps bytes that arrived while reading requests; other phases drop
    /// what the peer sends.
    pub fn absorb(&mut self, data: &[u8]) {
        if let Phase::Request(reading) = &mut self.phase {
            reading.buf.extend_from_slice(data);
        }
    }

    /// The next complete request in the read buffer, body included.
    ///
    /// `Ok(None)` means more bytes are needed. A head with `Expect:
    /// 100-continue` whose body has not started queues `100 Continue`.
    pub fn next_request(&mut self, max_body: usize) -> Result<Option<Request>, Rejection> {
        let Phase::Request(reading) = &mut self.phase else {
            return Ok(None);
        };
        if reading.body.is_none() {
            let Some((request, used)) = parse_head(&reading.buf[reading.start..])? else {
                return Ok(None);
            };
            reading.start += used;
            let decoder = match request.framing {
                BodyFraming::None => return Ok(Some(request)),
                BodyFraming::Length(length) if length > max_body as u64 => {
                    return Err(Rejection::PayloadTooLarge)
                }
                BodyFraming::Length(length) => BodyDecoder::Length { remaining: length },
                BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
            };
            let send_continue = request.expect_continue && reading.start == reading.buf.len();
            reading.body = Some(Box::new(PendingBody { request, decoder }));
            if send_continue {
                self.enqueue(Frame::raw(CONTINUE.to_vec()));
                return Ok(None);
            }
        }
        let Phase::Request(reading) = &mut self.phase else {
            return Ok(None);
        };
        let Some(pending) = reading.body.as_mut() else {
            return Ok(None);
        };
        let input = &reading.buf[reading.start..];
        let body = &mut pending.request.body;
        let done = match &mut pending.decoder {
            BodyDecoder::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                body.extend_from_slice(&input[..take]);
                reading.start += take;
                *remaining -= take as u64;
                *remaining == 0
            }
            BodyDecoder::Chunked(decoder) => {
                let used = decoder
                    .decode(input, body, max_body)
                    .map_err(|error| match error {
                        ChunkError::TooLarge => Rejection::PayloadTooLarge,
                        ChunkError::Malformed(why) => Rejection::BadRequest(why),
                    })?;
                reading.start += used;
                decoder.is_done()
            }
        };
        Ok(if done {
            reading.body.take().map(|pending| pending.request)
        } else {
            None
        })
    }

    /// Drops parsed bytes from the read buffer; frees it when empty, so an
    /// idle keep-alive connection holds no buffer at all.
    pub fn compact(&mut self) {
        if let Phase::Request(reading) = &mut self.phase {
            if reading.start == reading.buf.len() {
                reading.buf = Vec::new();
            } else if reading.start > 0 {
                reading.buf.drain(..reading.start);
            }
            reading.start = 0;
        }
    }

    /// Starts the next request's clock.
    pub fn set_deadline(&mut self, deadline: Instant) {
        if let Phase::Request(reading) = &mut self.phase {
            reading.deadline = deadline;
        }
    }

    /// Becomes an event stream: the read buffer (and anything pipelined
    /// after `GET /events`) is dropped.
    pub fn start_stream(&mut self, topics: Topics, chunked: bool, now: Instant) {
        self.chunked = chunked;
        self.phase = Phase::Stream(Subscription {
            topics,
            last_sent: now,
        });
    }

    /// Puts a frame on the queue. Returns the unsent byte count after.
    pub fn enqueue(&mut self, frame: Rc<Frame>) -> usize {
        self.queued += frame.wire(self.chunked).len();
        self.queue.push_back(frame);
        self.queued
    }

    /// Writes as much of the queue as the socket takes, every queued frame
    /// in one `writev` (up to [`MAX_IOVECS`]). Returns the outcome and the
    /// bytes written.
    pub fn flush(&mut self, tracing: bool) -> (FlushOutcome, usize) {
        let mut written = 0;
        let mut released = 0;
        while !self.queue.is_empty() {
            if !self.writable {
                return (FlushOutcome::Blocked, written);
            }
            let result = self.write_queued(tracing);
            match result {
                Ok(0) => return (FlushOutcome::Error(io::ErrorKind::WriteZero.into()), written),
                Ok(n) => {
                    written += n;
                    released += self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return (FlushOutcome::Blocked, written);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (FlushOutcome::Error(e), written),
            }
        }
        (FlushOutcome::Done { released }, written)
    }

    /// One system call for the front of the queue. The iovec array lives on
    /// the stack for the usual handful of frames; a burst that queued more
    /// gets a heap array, still one call.
    fn write_queued(&mut self, tracing: bool) -> io::Result<usize> {
        const ON_STACK: usize = 16;
        let chunked = self.chunked;
        let front_sent = self.front_sent;
        let n = if self.queue.len() == 1 {
            let only = unsent(&self.queue[0], 0, chunked, front_sent);
            let n = self.stream.write(only)?;
            if tracing {
                trace::bytes(self.id, trace::Direction::Out, &only[..n]);
            }
            n
        } else if self.queue.len() <= ON_STACK {
            let mut slices = [IoSlice::new(&[]); ON_STACK];
            for (index, (slot, frame)) in slices.iter_mut().zip(self.queue.iter()).enumerate() {
                *slot = IoSlice::new(unsent(frame, index, chunked, front_sent));
            }
            let slices = &slices[..self.queue.len()];
            let n = self.stream.write_vectored(slices)?;
            if tracing {
                trace::slices(self.id, slices, n);
            }
            n
        } else {
            let slices: Vec<IoSlice<'_>> = self
                .queue
                .iter()
                .take(MAX_IOVECS)
                .enumerate()
                .map(|(index, frame)| IoSlice::new(unsent(frame, index, chunked, front_sent)))
                .collect();
            let n = self.stream.write_vectored(&slices)?;
            if tracing {
                trace::slices(self.id, &slices, n);
            }
            n
        };
        Ok(n)
    }

    /// Pops `n` written bytes off the front of the queue. Returns the
    /// bytes of queue buffer given back, when it emptied.
    fn consume(&mut self, mut n: usize) -> usize {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.queue.front() else {
                break;
            };
            let left = front.wire(self.chunked).len() - self.front_sent;
            if n >= left {
                n -= left;
                self.queue.pop_front();
                self.front_sent = 0;
            } else {
                self.front_sent += n;
                n = 0;
            }
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // An idle subscriber holds no queue buffer at all: at tens of
            // thousands of connections that is most of their memory, and a
            // malloc per event costs nothing next to the write it goes with.
            let released = self.queue.capacity() * std::mem::size_of::<Rc<Frame>>();
            self.queue = VecDeque::new();
            return released;
        }
        0
    }

    /// Shuts our write side: the peer reads EOF after the last answer.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.phase = Phase::Lingering;
    }
}

/// What is left to write of the frame at `index` in a queue whose front
/// frame has `front_sent` bytes written.
fn unsent(frame: &Frame, index: usize, chunked: bool, front_sent: usize) -> &[u8] {
    let skip = if index == 0 { front_sent } else { 0 };
    &frame.wire(chunked)[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream as StdStream};

    fn pair() -> (Conn, StdStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let conn = Conn::new(TcpStream::from_std(server), 1, Instant::now());
        (conn, client)
    }

    #[test]
    fn parses_pipelined_requests_with_bodies() {
        let (mut conn, _client) = pair();
        let input = b"POST /publish HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST /publish HTTP/1.1\r\n\
                      Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /stats HTTP/1.1\r\n\r\n";
        // Feed a byte at a time: every split point must work.
        let mut got = Vec::new();
        for byte in input.iter() {
            conn.absorb(&[*byte]);
            while let Some(request) = conn.next_request(1024).unwrap() {
                got.push((request.path().to_string(), request.body));
            }
            conn.compact();
        }
        assert_eq!(
            got,
            vec![
                ("/publish".to_string(), b"hello".to_vec()),
                ("/publish".to_string(), b"abc".to_vec()),
                ("/stats".to_string(), Vec::new()),
            ]
        );
        assert!(conn.is_idle());
    }

    #[test]
    fn refuses_bodies_over_the_limit() {
        let (mut conn, _client) = pair();
        conn.absorb(b"POST /publish HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
        assert_eq!(conn.next_request(10), Err(Rejection::PayloadTooLarge));
        let (mut conn, _client) = pair();
        conn.absorb(b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n");
        assert_eq!(conn.next_request(10), Err(Rejection::PayloadTooLarge));
    }

    #[test]
    fn answers_expect_continue_before_the_body() {
        let (mut conn, _client) = pair();
        conn.absorb(b"POST /publish HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(conn.next_request(10), Ok(None));
        assert_eq!(conn.queued(), CONTINUE.len());
        conn.absorb(b"hi");
        assert_eq!(conn.next_request(10).unwrap().unwrap().body, b"hi");
    }

    #[test]
    fn flushes_shared_frames_and_tracks_partial_writes() {
        let (mut conn, mut client) = pair();
        let frame = Frame::chunk(b"data: x\n\n");
        conn.start_stream(Topics::All, true, Instant::now());
        conn.enqueue(frame.clone());
        conn.enqueue(frame.clone());
        assert_eq!(Rc::strong_count(&frame), 3);
        let (outcome, written) = conn.flush(false);
        assert!(matches!(outcome, FlushOutcome::Done { .. }));
        assert_eq!(written, 2 * frame.chunked().len());
        assert_eq!(Rc::strong_count(&frame), 1);
        let mut got = vec![0; written];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got[..frame.chunked().len()], frame.chunked());
    }

    #[test]
    fn unchunked_streams_send_the_body_only() {
        let (mut conn, mut client) = pair();
        conn.start_stream(Topics::All, false, Instant::now());
        conn.enqueue(Frame::chunk(b"data: y\n\n"));
        assert_eq!(conn.queued(), 9);
        conn.flush(false);
        let mut got = [0; 9];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"data: y\n\n");
    }

    #[test]
    fn consume_handles_partial_frames() {
        let (mut conn, _client) = pair();
        conn.enqueue(Frame::raw(b"abc".to_vec()));
        conn.enqueue(Frame::raw(b"defg".to_vec()));
        conn.consume(4);
        assert_eq!(conn.queued(), 3);
        assert_eq!(conn.queue.len(), 1);
        assert_eq!(conn.front_sent, 1);
        conn.consume(3);
        assert!(!conn.has_pending_output());
    }
}
