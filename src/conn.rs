//! One client connection: its socket, its phase, its queue of unsent
//! bytes, and what the kernel last told us about it.
//!
//! # Phases
//!
//! ```text
//!            accept
//!              │
//!              ▼
//!   ┌───── Request ◀────┐  read a head (and body), answer it, and for a
//!   │        │   └──────┘  keep-alive connection go round again
//!   │        │ start_stream (GET /events)
//!   │        ▼
//!   │      Stream          events are queued until the peer leaves,
//!   │        │             falls too far behind, or we shut down
//!   │        ▼ begin_closing
//!   └───▶ Closing          the last answer is flushed, then the write side
//!            │ flushed     is shut
//!            ▼
//!        Lingering         we read (and drop) until the peer closes too,
//!            │             so a close never resets an unread answer
//!            ▼
//!          closed          the slab slot is freed
//! ```
//!
//! Every arrow is a method here ([`Conn::start_stream`],
//! [`Conn::begin_closing`], [`Conn::peer_closed`], [`Conn::flushed`]); the
//! loop calls them and acts on what they return.
//!
//! # Readiness as data
//!
//! The socket is registered once, for both reading and writing, with
//! edge-triggered `epoll`. An edge says "something changed", so we keep what
//! it told us in a [`Readiness`] and act on those bits: a bit is set by an
//! event and cleared when a system call answers `WouldBlock`, or, for
//! reading, when a read comes back short (a TCP read returns everything
//! buffered up to the buffer's size, so a short one means "drained", and
//! new data will raise a new edge). A write is therefore tried straight
//! away whenever the last one did not block, and only bytes the kernel
//! would not take wait for the next writable edge. No `reregister` is ever
//! needed.
//!
//! # What a connection sends
//!
//! A stream's events are read from its view of the shared log (`log.rs`):
//! the connection holds only a cursor into it. Its own frames (response
//! heads, answers, the greeting, ticks, heartbeats, the farewell) wait in
//! a [`WriteQueue`] (`conn/queue.rs`), each at the log position it belongs
//! at. A flush sends both with one system call. The server evicts a stream
//! whose unsent bytes pass `--max-queue`.

mod queue;
mod readiness;

pub use queue::{LogRange, WriteQueue, MAX_IOVECS};
pub use readiness::Readiness;

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Instant;

use mio::net::TcpStream;

use crate::frame::Frame;
use crate::http::reader::RequestReader;
use crate::hub::ViewId;
use crate::log::{Log, Offset};
use crate::trace;

/// Where the connection is in its life. See the module docs for the diagram.
#[derive(Debug)]
pub enum Phase {
    /// Reading requests and answering them. Boxed: a stream, the phase most
    /// connections live in, then needs only a `Subscription`'s room in
    /// every slab entry.
    Request(Box<Reading>),
    /// An open event stream.
    Stream(Subscription),
    /// The last answer is queued; the connection closes once it is sent.
    Closing {
        /// The peer has sent its EOF: close straight after the flush.
        peer_gone: bool,
    },
    /// Our write side is shut; reading on to the peer's EOF.
    Lingering,
}

/// A connection that reads requests.
#[derive(Debug)]
pub struct Reading {
    /// The sans-IO request reader (`http/reader.rs`).
    pub reader: RequestReader,
    /// When the current request must have arrived in full (`408` after).
    pub deadline: Instant,
}

/// An open event stream. Where it reads is the connection's (a closing
/// stream still finishes what it was sent); this is what only an open one
/// needs.
#[derive(Debug)]
pub struct Subscription {
    /// When bytes were last written, for the heartbeat.
    pub last_sent: Instant,
}

/// The `view` of a connection that reads none.
const NO_VIEW: u32 = u32::MAX;

/// What one `read` brought.
#[derive(Debug)]
pub enum ReadOutcome {
    /// This many bytes, now at the start of the buffer.
    Data(usize),
    /// Nothing there now; a new edge will say when there is.
    WouldBlock,
    /// The peer sent its FIN and everything before it has been read.
    Eof,
    /// The socket failed.
    Error(io::Error),
}

/// What one flush achieved.
#[derive(Debug)]
pub enum FlushOutcome {
    /// The queue is empty; `released` bytes of queue buffer were freed.
    Done {
        /// Queue memory handed back to the allocator.
        released: usize,
    },
    /// The kernel's buffer is full; the rest waits for a writable edge.
    Blocked,
    /// The socket failed.
    Error(io::Error),
}

/// What the loop does after the peer's EOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterEof {
    /// Nothing more to send: free the slot.
    Close,
    /// Answers are queued: deliver them, then close.
    FinishAnswers,
}

/// What the loop does once the queue has been written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFlush {
    /// Nothing: wait for the next event.
    Idle,
    /// Go on reading requests that backpressure held back.
    ResumeReading,
    /// Our write side is shut: read on to the peer's EOF, within the linger.
    Linger,
    /// All said: free the slot.
    Close,
}

/// Why a connection was closed, for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent EOF.
    PeerClosed,
    /// A read failed.
    ReadError,
    /// A write failed.
    WriteError,
    /// A subscriber fell more than `--max-queue` behind.
    Evicted,
    /// A quiet keep-alive connection, or a client that never read its answer.
    IdleTimeout,
    /// The last answer was delivered.
    Finished,
    /// The server is shutting down.
    Shutdown,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Unique for the life of the process; also the `client` id sent in
    /// the `connected` event, and what tells a timer entry for this
    /// connection from one for an earlier occupant of the same slab slot.
    pub id: u64,
    /// Where the connection is in its life.
    pub phase: Phase,
    /// Its own frames still to be sent.
    queue: WriteQueue,
    /// A stream: the first byte of its view's log not yet sent.
    cursor: Offset,
    /// A stream: the view's head when it joined. What lies before is its
    /// replay, which does not count against `--max-queue`.
    joined: Offset,
    /// A stream: the view it reads ([`NO_VIEW`] otherwise), and its place
    /// in the view's member list.
    view: u32,
    member: u32,
    /// What the kernel reported.
    pub readiness: Readiness,
    /// An HTTP/1.1 stream: frames are sent whole, chunk framing included.
    chunked: bool,
    /// Accepted over `--max-conns`: answered with a refusal, then closed.
    pub over_capacity: bool,
}

impl Conn {
    /// A fresh connection, reading its first request until `deadline`.
    pub fn new(stream: TcpStream, id: u64, max_body: usize, deadline: Instant) -> Self {
        Conn {
            stream,
            id,
            phase: Phase::Request(Box::new(Reading {
                reader: RequestReader::new(max_body),
                deadline,
            })),
            queue: WriteQueue::default(),
            cursor: 0,
            joined: 0,
            view: NO_VIEW,
            member: 0,
            readiness: Readiness::fresh(),
            chunked: false,
            over_capacity: false,
        }
    }

    /// Bytes of its own frames queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// Frames are queued.
    pub fn has_pending_output(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The view a stream reads, and its place in the view's member list.
    pub fn view(&self) -> Option<(ViewId, u32)> {
        (self.view != NO_VIEW).then_some((self.view as ViewId, self.member))
    }

    /// Its place in its view's member list changed (another member left).
    pub fn moved_to(&mut self, member: u32) {
        self.member = member;
    }

    /// Where the next unsent byte of its view's log is.
    pub fn cursor(&self) -> Offset {
        self.cursor
    }

    /// Bytes still to send that count against `--max-queue`, given the
    /// log's `head`: its own frames, and the log bytes published since it
    /// joined (a replay is history, held anyway, and does not count).
    pub fn unsent(&self, head: Offset) -> u64 {
        let end = self.log_end(head);
        self.queue.queued() as u64 + end.saturating_sub(self.cursor.max(self.joined))
    }

    /// Where sending from the log stops: the head, or for a closing stream
    /// its farewell, after which nothing is sent.
    fn log_end(&self, head: Offset) -> Offset {
        match self.phase {
            Phase::Closing { .. } | Phase::Lingering => self.queue.last_at().unwrap_or(self.cursor),
            _ => head,
        }
    }

    /// The request reader, while the connection reads requests.
    pub fn reading(&mut self) -> Option<&mut Reading> {
        match &mut self.phase {
            Phase::Request(reading) => Some(reading),
            _ => None,
        }
    }

    /// Reading requests, and nothing of the next one has arrived: an idle
    /// keep-alive connection, which times out silently.
    pub fn is_idle(&self) -> bool {
        matches!(&self.phase, Phase::Request(reading) if reading.reader.is_idle())
    }

    /// Whether the loop should read this socket now.
    pub fn wants_read(&self) -> bool {
        self.readiness.readable() && !matches!(self.phase, Phase::Closing { peer_gone: true })
    }

    /// Reads once into `buf`. A short read clears the readable bit (unless
    /// a FIN is pending: then only the EOF itself ends the reading).
    pub fn read(&mut self, buf: &mut [u8], tracing: bool) -> ReadOutcome {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => {
                    if tracing {
                        trace::bytes(self.id, trace::Direction::In, &buf[..n]);
                    }
                    if n < buf.len() && !self.readiness.fin() {
                        self.readiness.clear(Readiness::READABLE);
                    }
                    ReadOutcome::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if tracing {
                        trace::note(
                            self.id,
                            "read: WouldBlock (nothing more to read; wait for the next edge)",
                        );
                    }
                    self.readiness.clear(Readiness::READABLE);
                    ReadOutcome::WouldBlock
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Error(e),
            };
        }
    }

    /// Request → Stream: the connection becomes an event stream that
    /// reads `view` from `cursor` (its replay runs to `joined`, the view's
    /// head now), as its `member`-th reader. Anything pipelined after
    /// `GET /events` is dropped with the reader.
    pub fn start_stream(
        &mut self,
        view: ViewId,
        member: u32,
        cursor: Offset,
        joined: Offset,
        chunked: bool,
        now: Instant,
    ) {
        self.chunked = chunked;
        // The hub has far fewer than 4 billion views.
        self.view = u32::try_from(view).unwrap_or(NO_VIEW);
        self.member = member;
        self.cursor = cursor;
        self.joined = joined;
        self.phase = Phase::Stream(Subscription { last_sent: now });
    }

    /// Any phase → Closing: what is queued now is the last thing sent (a
    /// stream sends its log only up to its last frame).
    pub fn begin_closing(&mut self) {
        if !matches!(self.phase, Phase::Closing { .. } | Phase::Lingering) {
            self.phase = Phase::Closing { peer_gone: false };
        }
    }

    /// The peer sent EOF. A stream's subscriber has left; a connection
    /// with answers queued still delivers them (the half-read request
    /// behind them, if any, never will be answered).
    pub fn peer_closed(&mut self) -> AfterEof {
        self.readiness.clear(Readiness::READABLE);
        match self.phase {
            Phase::Request(_) | Phase::Closing { .. } if self.has_pending_output() => {
                self.phase = Phase::Closing { peer_gone: true };
                AfterEof::FinishAnswers
            }
            _ => AfterEof::Close,
        }
    }

    /// The queue is empty: what now? While shutting down nobody waits for a
    /// lingering close. Closing → Lingering shuts our write side, so the
    /// peer reads EOF after the last answer.
    pub fn flushed(&mut self, shutting_down: bool) -> AfterFlush {
        match &self.phase {
            Phase::Closing { peer_gone } if *peer_gone || shutting_down => AfterFlush::Close,
            Phase::Closing { .. } => {
                let _ = self.stream.shutdown(Shutdown::Write);
                self.phase = Phase::Lingering;
                // Read on to the peer's EOF; whatever it sends is dropped.
                self.readiness.0 |= Readiness::READABLE;
                AfterFlush::Linger
            }
            Phase::Request(reading) if self.readiness.readable() || reading.reader.has_held() => {
                AfterFlush::ResumeReading
            }
            _ => AfterFlush::Idle,
        }
    }

    /// Queues a frame to go out before any log bytes not yet sent (an
    /// answer, a stream's greeting). Returns the frame bytes queued.
    pub fn enqueue(&mut self, frame: Rc<Frame>) -> usize {
        self.queue.push(self.cursor, frame, self.chunked)
    }

    /// Queues a frame for a stream at log position `at` (its view's head,
    /// for a tick, a heartbeat or the farewell). A frame with nothing to
    /// send on this connection (the last chunk, to an HTTP/1.0 stream) is
    /// not queued at all.
    pub fn enqueue_at(&mut self, at: Offset, frame: Rc<Frame>) -> usize {
        self.queue.push(at, frame, self.chunked)
    }

    /// One `write` of the log from the cursor to `range.end`.
    fn write_log(&mut self, range: LogRange<'_>, trace: Option<u64>) -> io::Result<usize> {
        let bytes = range
            .log
            .range(range.cursor, range.end)
            .ok_or_else(|| io::Error::other("log bytes trimmed before they were sent"))?;
        let n = self.stream.write(bytes)?;
        if let Some(id) = trace {
            trace::slices(id, &[IoSlice::new(bytes)], n);
        }
        Ok(n)
    }

    /// Writes what the socket takes: its frames and, for a stream, its
    /// view's `log` from the cursor, all in one system call each time.
    /// Returns the outcome and the bytes written.
    pub fn flush(&mut self, log: Option<&Log>, tracing: bool) -> (FlushOutcome, usize) {
        let mut written = 0;
        let mut released = 0;
        let trace = tracing.then_some(self.id);
        loop {
            let range = log.filter(|_| self.view != NO_VIEW).map(|log| LogRange {
                log,
                cursor: self.cursor,
                end: self.log_end(log.head()),
            });
            if !self.queue.has_work(range) {
                return (FlushOutcome::Done { released }, written);
            }
            if !self.readiness.writable() {
                return (FlushOutcome::Blocked, written);
            }
            let result = match range {
                // The common case, a reader that keeps up with nothing of its
                // own queued: its bytes are one slice of the log, one write.
                Some(r) if self.queue.is_empty() => self.write_log(r, trace),
                _ => self.queue.write_to(&mut self.stream, self.chunked, range, trace),
            };
            match result {
                Ok(0) => return (FlushOutcome::Error(io::ErrorKind::WriteZero.into()), written),
                Ok(n) => {
                    written += n;
                    released += self.queue.consume(n, self.chunked, &mut self.cursor);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if tracing {
                        trace::note(
                            self.id,
                            "write: WouldBlock (the kernel's buffer is full; wait for a writable edge)",
                        );
                    }
                    self.readiness.clear(Readiness::WRITABLE);
                    return (FlushOutcome::Blocked, written);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (FlushOutcome::Error(e), written),
            }
        }
    }
}

#[cfg(test)]
mod tests;
