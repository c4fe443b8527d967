//! The event loop: one `mio::Poll`, the listeners, the slab of connections,
//! and the turn of the loop that ties them together.
//!
//! The loop knows sockets and time, not HTTP semantics: it reads bytes,
//! hands them to each connection's request reader (`http/reader.rs`),
//! gives every complete request to the [`Service`], and applies the
//! [`Answer`] it gets back to the connection.
//!
//! # One turn of the loop
//!
//! ```text
//!  poll(timeout = nearest deadline)
//!    │
//!    ├─ listener ready ──▶ accept until WouldBlock, register each socket once
//!    ├─ signal pipe ─────▶ begin graceful shutdown
//!    ├─ waker ───────────▶ lines from --stdin, or a Handle's shutdown
//!    └─ connection ready ─▶ note readiness; read; RequestReader::read;
//!                           Service::handle; apply the answer: queue a
//!                           response, open a stream, or fan a published
//!                           event out (one shared frame on every
//!                           subscriber's queue, each marked dirty)
//!  fire due timers (408s, lingers, heartbeats, the ticker)
//!  flush every dirty connection: one writev each, whatever was queued
//! ```
//!
//! Writes happen once per connection per turn, at the end: a burst of
//! pipelined publishes that arrives in one read becomes one `writev` per
//! subscriber carrying all of them, instead of one `write` per event.
//!
//! # Tokens
//!
//! Listeners take tokens `0..MAX_LISTENERS`, then the signal pipe and the
//! waker; a connection's token is its slab key plus [`FIRST_CONN`]. A key is
//! reused as soon as its connection closes, possibly within the same batch
//! of events, so an event may reach a newer connection than it was for:
//! every handler treats readiness as a hint and confirms it with a read or
//! a write that may just say `WouldBlock`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::clock::Now;
use crate::config::Config;
use crate::conn::{AfterEof, AfterFlush, CloseReason, Conn, FlushOutcome, Phase, ReadOutcome};
use crate::frame::Frame;
use crate::http::reader::Step;
use crate::http::response::CONTINUE;
use crate::http::{Rejection, Request};
use crate::os;
use crate::service::{Answer, Caller, Delivery, OpenStream, Service};
use crate::signal::Signals;
use crate::stats::Snapshot;
use crate::timer::{Kind, Timers};

/// Most `--listen` addresses.
pub const MAX_LISTENERS: usize = 12;
const SIGNAL: Token = Token(MAX_LISTENERS);
const WAKER: Token = Token(MAX_LISTENERS + 1);
/// The token of the connection in slab slot 0.
pub const FIRST_CONN: usize = MAX_LISTENERS + 4;

/// Connections accepted over `--max-conns` and kept just long enough to
/// read their request and answer it. Beyond these, a connection gets a
/// canned `503` and is closed at once.
const OVERFLOW_SLOTS: usize = 64;
/// File descriptors kept back from `--max-conns` for listeners, the poll
/// instance, the pipe, standard streams and the overflow slots.
pub const FD_MARGIN: usize = 128;
/// Reads per connection per turn before others get a go.
const MAX_READS_PER_TURN: usize = 16;
/// A connection with this much unanswered output stops having its
/// pipelined requests read until the client catches up.
const RESPONSE_BACKPRESSURE: usize = 256 * 1024;
/// How long a closing connection may take to read our last answer.
const LINGER: Duration = Duration::from_secs(2);
/// How long shutdown waits for queues to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long to stop accepting after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Queue memory freed since the last trim that makes a trim worthwhile.
const TRIM_AFTER: usize = 16 * 1024 * 1024;
/// Lines from `--stdin` published per turn.
const STDIN_BATCH: usize = 1024;
/// Every read lands here first; the request reader keeps only what it
/// must (an unfinished head, or requests held back by backpressure).
const SCRATCH_SIZE: usize = 64 * 1024;

/// Shuts a server down from another thread (used by tests and embedders;
/// the binary uses SIGINT/SIGTERM).
#[derive(Debug, Clone)]
pub struct Handle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Handle {
    /// Begins a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// A connection and the loop's own notes about it.
#[derive(Debug)]
struct Slot {
    conn: Conn,
    /// Already on the list of connections to flush this turn.
    dirty: bool,
    /// A [`Kind::Request`] timer entry exists.
    request_timer: bool,
    /// A [`Kind::Linger`] timer entry exists.
    linger_timer: bool,
}

/// The event loop. See the module docs.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listeners: Vec<TcpListener>,
    conns: Slab<Slot>,
    service: Service,
    timers: Timers,
    config: Config,
    max_conns: usize,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    signals: Option<Signals>,
    stdin: Option<Receiver<String>>,
    stdin_pending: bool,
    scratch: Box<[u8]>,
    /// Connections with queued output, flushed at the end of the turn.
    dirty: Vec<usize>,
    /// Connections with readiness left over after their read budget.
    backlog: Vec<usize>,
    /// Subscribers to evict once the current fan-out is done.
    evictions: Vec<usize>,
    next_conn_id: u64,
    fd_exhaustion_logged: bool,
    /// Queue buffer bytes freed since memory was last handed back.
    released_since_trim: usize,
}

impl Server {
    /// Binds every `--listen` address. `max_conns` is the resolved limit.
    pub fn bind(config: Config, max_conns: usize) -> io::Result<Server> {
        if config.listen.len() > MAX_LISTENERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("at most {MAX_LISTENERS} --listen addresses"),
            ));
        }
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (index, addr) in config.listen.iter().enumerate() {
            let std_listener = std::net::TcpListener::bind(addr)?;
            os::widen_backlog(&std_listener);
            os::set_nodelay(&std_listener)?;
            std_listener.set_nonblocking(true)?;
            let mut listener = TcpListener::from_std(std_listener);
            poll.registry()
                .register(&mut listener, Token(index), Interest::READABLE)?;
            listeners.push(listener);
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let now = Now::read();
        Ok(Server {
            service: Service::new(config.clone(), now),
            timers: Timers::new(now.instant, config.tick),
            max_conns,
            poll,
            listeners,
            conns: Slab::new(),
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            signals: None,
            stdin: None,
            stdin_pending: false,
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            dirty: Vec::new(),
            backlog: Vec::new(),
            evictions: Vec::new(),
            next_conn_id: 1,
            fd_exhaustion_logged: false,
            released_since_trim: 0,
            config,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// A handle that shuts this server down from another thread.
    pub fn handle(&self) -> Handle {
        Handle {
            waker: self.waker.clone(),
            stop: self.stop.clone(),
        }
    }

    /// The waker, for a thread that feeds [`Server::attach_stdin`].
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Routes SIGINT and SIGTERM into this loop.
    pub fn attach_signals(&mut self, signals: Signals) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&signals.raw_fd()), SIGNAL, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Lines arriving here are published to `--stdin`'s topic. The sender
    /// must wake [`Server::waker`] after each line.
    pub fn attach_stdin(&mut self, lines: Receiver<String>) {
        self.stdin = Some(lines);
    }

    /// Current figures for `/stats` and `/metrics`.
    pub fn snapshot(&self) -> Snapshot {
        self.service.snapshot(Now::read())
    }

    /// Runs until shut down; returns once every connection is closed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if !self.backlog.is_empty() || self.stdin_pending {
                Some(Duration::ZERO)
            } else {
                self.timers.poll_timeout(Now::read().instant)
            };
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            let now = Now::read();
            for event in events.iter() {
                match event.token() {
                    Token(index) if index < self.listeners.len() => self.accept(index, now),
                    SIGNAL => {
                        if self.signals.as_ref().is_some_and(Signals::take) {
                            self.begin_shutdown(now);
                        }
                    }
                    WAKER => {
                        if self.stop.load(Ordering::SeqCst) {
                            self.begin_shutdown(now);
                        }
                        self.stdin_pending = true;
                    }
                    Token(token) => self.on_ready(token - FIRST_CONN, event, now),
                }
            }
            for key in std::mem::take(&mut self.backlog) {
                self.drive(key, now);
            }
            if self.stdin_pending {
                self.drain_stdin(now);
            }
            self.fire_timers(now);
            self.flush_dirty(now);
            if self.timers.in_grace() && (self.conns.is_empty() || self.timers.grace_over(now.instant)) {
                info!("shut down with {} connection(s) still open", self.conns.len());
                return Ok(());
            }
        }
    }

    // ----- accepting -----------------------------------------------------

    fn accept(&mut self, index: usize, now: Now) {
        if self.timers.accepting_paused() || self.timers.in_grace() {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    if self.fd_exhaustion_logged {
                        info!("accepting again");
                        self.fd_exhaustion_logged = false;
                    }
                    self.admit(stream, addr, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    // The pending connections stay in the backlog; we try
                    // again after a pause, when a close may have freed a slot.
                    if !self.fd_exhaustion_logged {
                        warn!("accept: {e}; serving open connections, retrying accepts every 100 ms");
                        self.fd_exhaustion_logged = true;
                    }
                    self.timers.pause_accepting(now.instant + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and the like: that client is gone, the
                    // next one may be fine.
                    debug!("accept: {e}");
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, addr: SocketAddr, now: Now) {
        if self.conns.len() >= self.max_conns.saturating_add(OVERFLOW_SLOTS) {
            // Too many even to read the request: answer blind and close.
            let _ = io::Write::write(&mut stream, &self.service.overloaded(now));
            self.service.counters().rejected += 1;
            return;
        }
        let key = self.conns.vacant_key();
        let token = Token(key + FIRST_CONN);
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            warn!("register {addr}: {e}");
            return;
        }
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        let over_capacity = self.conns.len() >= self.max_conns;
        let timeout = if over_capacity {
            self.config.header_timeout.min(Duration::from_secs(2))
        } else {
            self.config.header_timeout
        };
        let mut conn = Conn::new(stream, id, self.config.max_body, now.instant + timeout);
        conn.over_capacity = over_capacity;
        // vacant_key() is the key insert() uses: the token matches the slot.
        self.conns.insert(Slot {
            conn,
            dirty: false,
            request_timer: false,
            linger_timer: false,
        });
        let counters = self.service.counters();
        counters.accepted += 1;
        counters.rejected += u64::from(over_capacity);
        counters.connections = self.conns.len();
        debug!("#{id} accepted from {addr}");
        // The request is often already here: read it now. Only if it is
        // not complete does the connection need its request timer, so a
        // subscriber whose request came with the connection never has one.
        self.drive(key, now);
        self.arm_request_timer(key);
    }

    // ----- reading and requests ------------------------------------------

    fn on_ready(&mut self, key: usize, event: &mio::event::Event, now: Now) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.conn.readiness.note(event);
        if slot.conn.readiness.writable() && slot.conn.has_pending_output() {
            self.mark_dirty(key);
        }
        self.drive(key, now);
    }

    /// Reads what the socket has (within a budget) and acts on it.
    fn drive(&mut self, key: usize, now: Now) {
        // Requests held back while the client was slow to read its answers
        // come before anything new.
        if self
            .conns
            .get_mut(key)
            .and_then(|slot| slot.conn.reading())
            .is_some_and(|reading| reading.reader.has_held())
        {
            self.serve_requests(key, &[], now);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let finished = self.read_some(key, &mut scratch, now);
        self.scratch = scratch;
        if !finished {
            self.backlog.push(key);
        }
    }

    /// Up to [`MAX_READS_PER_TURN`] reads. Returns false if the socket may
    /// have more, for the next turn.
    fn read_some(&mut self, key: usize, scratch: &mut [u8], now: Now) -> bool {
        for _ in 0..MAX_READS_PER_TURN {
            let Some(slot) = self.conns.get_mut(key) else {
                return true;
            };
            let conn = &mut slot.conn;
            if !conn.wants_read() {
                return true;
            }
            if matches!(conn.phase, Phase::Request(_)) && conn.queued() > RESPONSE_BACKPRESSURE {
                // Resumed by flush_dirty once the client reads its answers.
                return true;
            }
            match conn.read(scratch, self.config.trace) {
                ReadOutcome::Data(n) => {
                    let drained = !conn.readiness.readable();
                    if matches!(conn.phase, Phase::Request(_)) {
                        self.serve_requests(key, &scratch[..n], now);
                    }
                    // Other phases drop what the peer sends.
                    if drained {
                        return true;
                    }
                }
                ReadOutcome::WouldBlock => return true,
                ReadOutcome::Eof => {
                    if conn.peer_closed() == AfterEof::Close {
                        self.close(key, CloseReason::PeerClosed);
                    }
                    return true;
                }
                ReadOutcome::Error(e) => {
                    debug!("#{} read: {e}", conn.id);
                    self.close(key, CloseReason::ReadError);
                    return true;
                }
            }
        }
        false
    }

    /// Gives `input` (after any held bytes) to the connection's request
    /// reader, and answers every complete request in order.
    fn serve_requests(&mut self, key: usize, mut input: &[u8], now: Now) {
        loop {
            let Some(slot) = self.conns.get_mut(key) else {
                return;
            };
            let backpressured = slot.conn.queued() > RESPONSE_BACKPRESSURE;
            // Answered with a close, or became a stream: the rest is dropped.
            let Some(reading) = slot.conn.reading() else {
                break;
            };
            if backpressured {
                reading.reader.hold(input);
                break;
            }
            let (used, step) = reading.reader.read(input);
            input = &input[used..];
            match step {
                Step::NeedMore => break,
                Step::SendContinue => {
                    slot.conn.enqueue(Frame::raw(CONTINUE.to_vec()));
                }
                Step::Request(request) => {
                    reading.deadline = now.instant + self.config.header_timeout;
                    self.answer(key, &request, now);
                }
                Step::Reject(rejection) => {
                    self.refuse(key, rejection, now);
                    break;
                }
            }
        }
        if self
            .conns
            .get(key)
            .is_some_and(|slot| slot.conn.has_pending_output())
        {
            self.mark_dirty(key);
        }
        self.arm_request_timer(key);
    }

    /// Hands a request to the service and applies its answer.
    fn answer(&mut self, key: usize, request: &Request, now: Now) {
        let Some(slot) = self.conns.get(key) else {
            return;
        };
        let caller = Caller {
            client: slot.conn.id,
            over_capacity: slot.conn.over_capacity,
        };
        match self.service.handle(request, caller, now) {
            Answer::Respond { bytes, keep_alive } => self.send(key, bytes, keep_alive),
            Answer::Publish {
                bytes,
                keep_alive,
                delivery,
            } => {
                self.deliver(&delivery, now);
                self.send(key, bytes, keep_alive);
            }
            Answer::Stream(stream) => self.open_stream(key, stream, now),
        }
    }

    /// Answers a request that could not be read (or came too late).
    fn refuse(&mut self, key: usize, rejection: Rejection, now: Now) {
        if let Answer::Respond { bytes, keep_alive } = self.service.refuse(rejection, None, now) {
            self.send(key, bytes, keep_alive);
        }
    }

    /// Queues a whole answer for the end-of-turn flush; without keep-alive
    /// the connection then closes.
    fn send(&mut self, key: usize, bytes: Vec<u8>, keep_alive: bool) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.conn.enqueue(Frame::raw(bytes));
        if !keep_alive {
            slot.conn.begin_closing();
        }
        self.mark_dirty(key);
    }

    // ----- streams and publishing ----------------------------------------

    /// The connection becomes a stream: its first frames are queued, it
    /// joins the hub, and its heartbeat timer starts.
    fn open_stream(&mut self, key: usize, stream: OpenStream, now: Now) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let conn = &mut slot.conn;
        self.service.subscribe(key, &stream.topics);
        conn.start_stream(stream.topics, stream.chunked, now.instant);
        for frame in stream.frames {
            conn.enqueue(frame);
        }
        if let Some(heartbeat) = self.config.heartbeat {
            self.timers
                .push(now.instant + heartbeat, Kind::Heartbeat, key, conn.id);
        }
        self.mark_dirty(key);
    }

    /// Queues `delivery`'s frame on every subscriber of its topic; writing
    /// waits for the end of the turn. A queue that passes `--max-queue` is
    /// written at once instead: a burst of publishes read in one turn can
    /// queue more than the limit before the end-of-turn flush, and a
    /// subscriber that keeps up must not pay for that. Only one whose
    /// socket will not take the excess, a subscriber that really is
    /// behind, is evicted.
    fn deliver(&mut self, delivery: &Delivery, now: Now) {
        let max_queue = self.config.max_queue;
        let tracing = self.config.trace;
        let (mut delivered, mut written, mut released) = (0u64, 0u64, 0usize);
        for key in self.service.subscribers_of(&delivery.topic) {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            let Phase::Stream(subscription) = &mut slot.conn.phase else {
                continue;
            };
            subscription.last_sent = now.instant;
            delivered += 1;
            if slot.conn.enqueue(delivery.frame.clone()) > max_queue {
                let (outcome, n) = slot.conn.flush(tracing);
                written += n as u64;
                if let FlushOutcome::Done { released: freed } = outcome {
                    released += freed;
                }
                if matches!(outcome, FlushOutcome::Error(_)) || slot.conn.queued() > max_queue {
                    self.evictions.push(key);
                    continue;
                }
            }
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(key);
            }
        }
        self.released_since_trim += released;
        let counters = self.service.counters();
        counters.delivered += delivered;
        counters.bytes_out += written;
        counters.evicted += self.evictions.len() as u64;
        for key in std::mem::take(&mut self.evictions) {
            self.close(key, CloseReason::Evicted);
        }
    }

    fn drain_stdin(&mut self, now: Now) {
        self.stdin_pending = false;
        for _ in 0..STDIN_BATCH {
            let Some(lines) = &self.stdin else { return };
            match lines.try_recv() {
                Ok(line) => {
                    if let Some(delivery) = self.service.publish_line(&line) {
                        self.deliver(&delivery, now);
                    }
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    info!("--stdin: end of input; still serving");
                    self.stdin = None;
                    return;
                }
            }
        }
        self.stdin_pending = true;
    }

    // ----- timers ----------------------------------------------------------

    /// A connection reading a request gets a [`Kind::Request`] entry at its
    /// deadline, unless it has one.
    fn arm_request_timer(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if let Phase::Request(reading) = &slot.conn.phase {
            if !slot.request_timer {
                slot.request_timer = true;
                self.timers
                    .push(reading.deadline, Kind::Request, key, slot.conn.id);
            }
        }
    }

    /// A closing connection gets [`LINGER`] to finish, once.
    fn arm_linger_timer(&mut self, key: usize, now: Now) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if !slot.linger_timer {
            slot.linger_timer = true;
            self.timers
                .push(now.instant + LINGER, Kind::Linger, key, slot.conn.id);
        }
    }

    fn fire_timers(&mut self, now: Now) {
        while let Some(due) = self.timers.pop_due(now.instant) {
            let Some(slot) = self.conns.get_mut(due.key) else {
                continue;
            };
            if slot.conn.id != due.conn_id {
                continue;
            }
            match due.kind {
                Kind::Heartbeat => self.heartbeat(due.key, now),
                Kind::Request => {
                    slot.request_timer = false;
                    match &slot.conn.phase {
                        Phase::Request(reading) if reading.deadline > now.instant => {
                            self.arm_request_timer(due.key);
                        }
                        // Nothing of a next request: a keep-alive connection
                        // that went quiet closes without a word.
                        Phase::Request(_) if slot.conn.is_idle() => {
                            self.close(due.key, CloseReason::IdleTimeout)
                        }
                        Phase::Request(_) => self.refuse(due.key, Rejection::RequestTimeout, now),
                        _ => {}
                    }
                }
                Kind::Linger => {
                    slot.linger_timer = false;
                    match slot.conn.phase {
                        // The client is not reading its last answer.
                        Phase::Closing { .. } => self.close(due.key, CloseReason::IdleTimeout),
                        Phase::Lingering => self.close(due.key, CloseReason::Finished),
                        _ => {}
                    }
                }
            }
        }
        if self.timers.tick_due(now.instant) && !self.timers.in_grace() {
            let tick = self.service.tick(now.wall);
            self.deliver(&tick, now);
        }
        if self.timers.accept_resume_due(now.instant) {
            for index in 0..self.listeners.len() {
                self.accept(index, now);
            }
        }
    }

    /// A stream silent for a heartbeat period gets `: ping`; the next check
    /// is a period after whatever it was last sent.
    fn heartbeat(&mut self, key: usize, now: Now) {
        let Some(period) = self.config.heartbeat else {
            return;
        };
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let id = slot.conn.id;
        let Phase::Stream(subscription) = &mut slot.conn.phase else {
            return;
        };
        let mut next = subscription.last_sent + period;
        let silent = next <= now.instant;
        if silent {
            subscription.last_sent = now.instant;
            next = now.instant + period;
            slot.conn.enqueue(self.service.ping().clone());
        }
        self.timers.push(next, Kind::Heartbeat, key, id);
        if silent {
            self.mark_dirty(key);
        }
    }

    // ----- writing and closing -------------------------------------------

    fn mark_dirty(&mut self, key: usize) {
        if let Some(slot) = self.conns.get_mut(key) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// One flush per dirty connection: the end of every turn.
    fn flush_dirty(&mut self, now: Now) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            slot.dirty = false;
            let conn = &mut slot.conn;
            let (outcome, written) = conn.flush(self.config.trace);
            self.service.counters().bytes_out += written as u64;
            match outcome {
                FlushOutcome::Error(e) => {
                    debug!("#{} write: {e}", conn.id);
                    self.close(key, CloseReason::WriteError);
                }
                FlushOutcome::Blocked => {
                    if matches!(conn.phase, Phase::Closing { .. }) {
                        self.arm_linger_timer(key, now);
                    }
                }
                FlushOutcome::Done { released } => {
                    self.released_since_trim += released;
                    match conn.flushed(self.timers.in_grace()) {
                        AfterFlush::Idle => {}
                        AfterFlush::ResumeReading => self.backlog.push(key),
                        AfterFlush::Linger => {
                            self.backlog.push(key);
                            self.arm_linger_timer(key, now);
                        }
                        AfterFlush::Close => self.close(key, CloseReason::Finished),
                    }
                }
            }
        }
        // Keep the allocation for next turn.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        // After a burst drained many queues, give the memory back rather
        // than sit at the burst's peak (a few ms, and only after bursts).
        if self.released_since_trim >= TRIM_AFTER {
            self.released_since_trim = 0;
            os::release_free_memory();
        }
    }

    /// Frees the slot at once: unsubscribes, deregisters, closes the socket.
    fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(mut slot) = self.conns.try_remove(key) else {
            return;
        };
        if let Phase::Stream(subscription) = &slot.conn.phase {
            self.service.unsubscribe(key, &subscription.topics);
        }
        let _ = self.poll.registry().deregister(&mut slot.conn.stream);
        self.service.counters().connections = self.conns.len();
        debug!("#{} closed: {reason:?}", slot.conn.id);
    }

    /// Stop accepting; tell every stream when to come back (spread out, so
    /// clients do not all return in the same instant) and end it cleanly;
    /// flush; close.
    fn begin_shutdown(&mut self, now: Now) {
        if self.timers.in_grace() {
            return;
        }
        info!("shutting down: {} connection(s) to close", self.conns.len());
        self.timers.begin_grace(now.instant + SHUTDOWN_GRACE);
        self.service.shut_down();
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let last_chunk = Frame::last_chunk();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let farewell = self.service.farewell();
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            let conn = &mut slot.conn;
            match conn.phase {
                Phase::Stream(_) => {
                    conn.enqueue(farewell);
                    // Nothing at all for an HTTP/1.0 stream: its end is the close.
                    conn.enqueue(last_chunk.clone());
                    if let Some(subscription) = conn.begin_closing() {
                        self.service.unsubscribe(key, &subscription.topics);
                    }
                    self.mark_dirty(key);
                }
                Phase::Request(_) if conn.has_pending_output() => {
                    conn.begin_closing();
                    self.mark_dirty(key);
                }
                Phase::Request(_) => self.close(key, CloseReason::Shutdown),
                Phase::Closing { .. } | Phase::Lingering => {}
            }
        }
    }
}

fn is_fd_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}
