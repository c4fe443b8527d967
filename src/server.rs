//! The event loop: one `mio::Poll`, the listeners, the slab of connections,
//! and the turn of the loop that ties them together.
//!
//! # One turn of the loop
//!
//! ```text
//!  poll(timeout = nearest deadline)
//!    │
//!    ├─ listener ready ──▶ accept until WouldBlock, register each socket once
//!    ├─ signal pipe ─────▶ begin graceful shutdown
//!    ├─ waker ───────────▶ lines from --stdin, or a Handle's shutdown
//!    └─ connection ready ─▶ note readiness; read; parse; route; answer or
//!                           publish (queue the shared frame on every
//!                           subscriber, mark each one dirty)
//!  fire due timers (408s, heartbeats, the ticker)
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
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::clock;
use crate::config::Config;
use crate::conn::{CloseReason, Conn, FlushOutcome, Phase, ReadOutcome};
use crate::handlers;
use crate::http::response::stream_head;
use crate::http::{Framing, Method, Rejection, Request, Response};
use crate::hub::{self, Hub};
use crate::os;
use crate::routes::{self, Route};
use crate::signal::Signals;
use crate::sse::{self, Frame};
use crate::stats::{Counters, Snapshot};
use crate::timer::{Kind, Timers};

pub const MAX_LISTENERS: usize = 12;
const SIGNAL: Token = Token(MAX_LISTENERS);
const WAKER: Token = Token(MAX_LISTENERS + 1);
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
/// The first read from a socket goes here; only what a request still needs
/// is copied into the connection's own buffer.
const SCRATCH_SIZE: usize = 64 * 1024;

/// Shuts a server down from another thread (used by tests and embedders;
/// the binary uses SIGINT/SIGTERM).
#[derive(Debug, Clone)]
pub struct Handle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Handle {
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    hub: Hub,
    timers: Timers,
    counters: Counters,
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
    /// The heartbeat comment, framed once for everyone.
    ping: Rc<Frame>,
    next_conn_id: u64,
    shutdown_deadline: Option<Instant>,
    rng: Rng,
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
        let now = Instant::now();
        let start_id = clock::unix_micros(SystemTime::now());
        Ok(Server {
            hub: Hub::new(start_id, config.history),
            timers: Timers::new(now, config.tick),
            counters: Counters::new(now),
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
            ping: Frame::chunk(sse::PING),
            next_conn_id: 1,
            shutdown_deadline: None,
            rng: Rng::seeded(start_id),
            fd_exhaustion_logged: false,
            released_since_trim: 0,
            config,
        })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

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

    /// Runs until shut down; returns once every connection is closed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = if !self.backlog.is_empty() || self.stdin_pending {
                Some(Duration::ZERO)
            } else {
                let timers = self.timers.poll_timeout(now);
                let shutdown = self.shutdown_deadline.map(|at| at.saturating_duration_since(now));
                timers.into_iter().chain(shutdown).min()
            };
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            let now = Instant::now();
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
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || now >= deadline {
                    info!("shut down with {} connection(s) still open", self.conns.len());
                    return Ok(());
                }
            }
        }
    }

    /// Current figures for `/stats` and `/metrics`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        Snapshot {
            connections: self.conns.len(),
            subscribers: self.hub.subscriber_count(),
            history: self.hub.history_len(),
            uptime_s: now.duration_since(self.counters.started).as_secs(),
            counters: self.counters,
        }
    }

    // ----- accepting -----------------------------------------------------

    fn accept(&mut self, index: usize, now: Instant) {
        if self.timers.accepting_paused() || self.shutdown_deadline.is_some() {
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
                    self.timers.pause_accepting(now + ACCEPT_BACKOFF);
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

    fn admit(&mut self, mut stream: TcpStream, addr: SocketAddr, now: Instant) {
        if self.conns.len() >= self.max_conns + OVERFLOW_SLOTS {
            // Too many even to read the request: answer blind and close.
            let response = Rejection::Overloaded { retry_after: 5 }.response();
            let bytes = response.encode(self.framing(false, false, false));
            let _ = io::Write::write(&mut stream, &bytes);
            self.counters.rejected += 1;
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
        let mut conn = Conn::new(stream, id, now + timeout);
        conn.over_capacity = over_capacity;
        // vacant_key() is the key insert() uses: the token matches the slot.
        self.conns.insert(conn);
        self.counters.accepted += 1;
        if over_capacity {
            self.counters.rejected += 1;
        }
        debug!("#{id} accepted from {addr}");
        // The request is often already here: read it now. Only if it is
        // not complete does the connection need its request deadline, so a
        // subscriber whose request came with the connection never has one.
        self.drive(key, now);
        self.arm_deadline(key);
    }

    // ----- reading and requests ------------------------------------------

    fn on_ready(&mut self, key: usize, event: &mio::event::Event, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.readable = !conn.peer_closed;
        }
        if event.is_read_closed() || event.is_error() {
            conn.fin_pending = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            conn.writable = true;
            if conn.has_pending_output() {
                self.mark_dirty(key);
            }
        }
        self.drive(key, now);
    }

    /// Reads what the socket has (within a budget) and acts on it.
    fn drive(&mut self, key: usize, now: Instant) {
        let tracing = self.config.trace;
        // Requests already buffered, held back while the client was slow to
        // read its answers, come before anything new.
        if self
            .conns
            .get(key)
            .is_some_and(|c| matches!(c.phase, Phase::Request(_)) && !c.is_idle())
        {
            self.serve_requests(key, now);
        }
        for _ in 0..MAX_READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.readable {
                return;
            }
            if matches!(conn.phase, Phase::Request(_)) && conn.queued() > RESPONSE_BACKPRESSURE {
                // Resumed by flush_dirty once the client reads its answers.
                return;
            }
            match conn.read(&mut self.scratch, tracing) {
                ReadOutcome::Data(n) => {
                    // A TCP read returns all that is buffered, up to the
                    // buffer's size: a short read means the socket is
                    // drained, and more data will raise a new edge. That
                    // spares the read that would only say WouldBlock (one
                    // system call in five when connecting a subscriber).
                    // Not when a FIN was reported: no edge follows it, so
                    // we read on to the EOF.
                    let drained = n < self.scratch.len() && !conn.fin_pending;
                    if drained {
                        conn.readable = false;
                    }
                    conn.absorb(&self.scratch[..n]);
                    if matches!(conn.phase, Phase::Request(_)) {
                        self.serve_requests(key, now);
                    }
                    if drained {
                        return;
                    }
                }
                ReadOutcome::WouldBlock => {
                    conn.readable = false;
                    return;
                }
                ReadOutcome::Eof => {
                    self.on_peer_closed(key);
                    return;
                }
                ReadOutcome::Error(e) => {
                    debug!("#{} read: {e}", conn.id);
                    self.close(key, CloseReason::ReadError);
                    return;
                }
            }
        }
        self.backlog.push(key);
    }

    /// The peer will send no more. A stream's subscriber has left; a
    /// request connection still gets the answers it asked for.
    fn on_peer_closed(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.peer_closed = true;
        conn.readable = false;
        match conn.phase {
            // Answers already queued are still delivered; the half-done
            // request behind them (if any) never will be.
            Phase::Request(_) | Phase::Closing if conn.has_pending_output() => {
                conn.phase = Phase::Closing;
            }
            _ => self.close(key, CloseReason::PeerClosed),
        }
    }

    /// Answers every complete request in the connection's buffer, in order.
    fn serve_requests(&mut self, key: usize, now: Instant) {
        let max_body = self.config.max_body;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !matches!(conn.phase, Phase::Request(_)) || conn.queued() > RESPONSE_BACKPRESSURE {
                break;
            }
            match conn.next_request(max_body) {
                Ok(None) => break,
                Ok(Some(request)) => {
                    conn.set_deadline(now + self.config.header_timeout);
                    self.handle_request(key, request, now);
                }
                Err(rejection) => {
                    self.refuse(key, None, rejection);
                    break;
                }
            }
        }
        if let Some(conn) = self.conns.get_mut(key) {
            conn.compact();
            if conn.has_pending_output() {
                self.mark_dirty(key);
            }
            self.arm_deadline(key);
        }
    }

    fn handle_request(&mut self, key: usize, request: Request, now: Instant) {
        let route = match routes::route(request.method, request.path()) {
            Ok(route) => route,
            Err(rejection) => return self.refuse(key, Some(&request), rejection),
        };
        if self.conns.get(key).is_some_and(|c| c.over_capacity) {
            return self.turn_away(key, &request, route);
        }
        let head_only = request.method == Method::Head;
        let response = match route {
            Route::Page => handlers::page(),
            Route::Health => handlers::health(),
            Route::Stats => handlers::stats(self.snapshot(now).json()),
            Route::Metrics => handlers::metrics(self.snapshot(now).prometheus()),
            Route::Preflight => handlers::preflight(),
            Route::Events => return self.subscribe(key, &request, now),
            Route::Publish | Route::Broadcast => {
                let token = self.config.publish_token.as_deref();
                let checked = match handlers::publish(&request, token, route == Route::Broadcast) {
                    Ok(checked) => checked,
                    Err(rejection) => return self.refuse(key, Some(&request), rejection),
                };
                if head_only {
                    // HEAD must not change anything: say what GET would.
                    Response::json(String::new())
                } else {
                    match self.publish(&checked.topic, checked.name.as_deref(), &checked.data, now) {
                        Ok((id, subscribers)) => handlers::published(id, subscribers),
                        Err(e) => {
                            debug!("publish refused: {e}");
                            return self.refuse(
                                key,
                                Some(&request),
                                Rejection::BadRequest("event cannot be encoded"),
                            );
                        }
                    }
                }
            }
        };
        self.respond(key, &request, &response, request.keep_alive);
    }

    /// Over `--max-conns`: a stream request gets `200` with only a long,
    /// random `retry:` (an `EventSource` treats any other status as final
    /// and would never come back); anything else gets `503`.
    fn turn_away(&mut self, key: usize, request: &Request, route: Route) {
        if route == Route::Events {
            let retry = self.rng.between(5_000, 30_000);
            let mut bytes = stream_head(true, self.config.cors_origin.as_deref());
            bytes.extend_from_slice(&sse::encode_retry(retry));
            self.queue_answer(key, bytes, false);
        } else {
            let retry_after = self.rng.between(5, 30);
            self.refuse(key, Some(request), Rejection::Overloaded { retry_after });
        }
    }

    /// Queues a complete response; a response that ends the connection
    /// moves it to `Closing`.
    fn respond(&mut self, key: usize, request: &Request, response: &Response, keep_alive: bool) {
        let keep_alive = keep_alive && self.shutdown_deadline.is_none();
        let framing = self.framing(request.method == Method::Head, keep_alive, request.http10);
        let bytes = response.encode(framing);
        self.queue_answer(key, bytes, keep_alive);
    }

    /// Queues one whole answer for the end-of-turn flush; without
    /// keep-alive the connection then closes (`Closing`).
    fn queue_answer(&mut self, key: usize, bytes: Vec<u8>, keep_alive: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.enqueue(Frame::raw(bytes));
        if !keep_alive {
            conn.phase = Phase::Closing;
        }
        self.mark_dirty(key);
    }

    /// Answers with a rejection; `request` is `None` when the head itself
    /// could not be read.
    fn refuse(&mut self, key: usize, request: Option<&Request>, rejection: Rejection) {
        if let Some(conn) = self.conns.get(key) {
            debug!(
                "#{} refused: {} {}",
                conn.id,
                rejection.status(),
                rejection.message()
            );
        }
        let response = rejection.response();
        match request {
            Some(request) => {
                let keep_alive = request.keep_alive && !rejection.closes();
                self.respond(key, request, &response, keep_alive);
            }
            None => {
                let bytes = response.encode(self.framing(false, false, false));
                self.queue_answer(key, bytes, false);
            }
        }
    }

    fn framing(&self, head_only: bool, keep_alive: bool, http10: bool) -> Framing<'_> {
        Framing {
            head_only,
            keep_alive,
            http10,
            cors_origin: self.config.cors_origin.as_deref(),
        }
    }

    // ----- streams and publishing ----------------------------------------

    /// `GET /events`: the stream head, `retry:` and `connected`, any replay,
    /// then the connection joins the hub.
    fn subscribe(&mut self, key: usize, request: &Request, now: Instant) {
        let (topics, last_event_id) = match handlers::subscription(request) {
            Ok(parsed) => parsed,
            Err(rejection) => return self.refuse(key, Some(request), rejection),
        };
        let head = stream_head(request.http10, self.config.cors_origin.as_deref());
        if request.method == Method::Head {
            return self.queue_answer(key, head, request.keep_alive);
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let greeting = format!(
            "retry: {}\n\nevent: connected\ndata: {{\"client\":{}}}\n\n",
            self.config.retry_ms, conn.id
        );
        conn.start_stream(topics.clone(), !request.http10, now);
        conn.enqueue(Frame::raw(head));
        conn.enqueue(Frame::chunk(greeting.as_bytes()));
        if let Some(last_event_id) = last_event_id {
            let replay = self.hub.replay(&last_event_id, &topics);
            if let Some(gap) = replay.gap {
                conn.enqueue(gap);
            }
            for event in replay.events {
                conn.enqueue(event.frame.clone());
            }
        }
        let id = conn.id;
        self.hub.subscribe(key, &topics);
        if let Some(heartbeat) = self.config.heartbeat {
            self.timers.push(now + heartbeat, Kind::Heartbeat, key, id);
        }
        debug!("#{id} subscribed");
        self.mark_dirty(key);
    }

    /// Publishes one event: the hub encodes it once, and the same frame is
    /// queued on every matching subscriber. Returns its id and how many
    /// subscribers it was queued for.
    pub fn publish(
        &mut self,
        topic: &str,
        name: Option<&str>,
        data: &str,
        now: Instant,
    ) -> Result<(u64, usize), sse::EncodeError> {
        let event = self.hub.publish(topic, name, data)?;
        self.counters.published += 1;
        let delivered = self.fan_out(&event.topic, &event.frame, now);
        Ok((event.id, delivered))
    }

    /// Queues `frame` on every subscriber of `topic`; writing waits for the
    /// end of the turn. A queue that passes `--max-queue` is written at once
    /// instead: a burst of publishes read in one turn can queue more than
    /// the limit before the end-of-turn flush, and a subscriber that keeps
    /// up must not pay for that. Only one whose socket will not take the
    /// excess, a subscriber that really is behind, is evicted.
    fn fan_out(&mut self, topic: &str, frame: &Rc<Frame>, now: Instant) -> usize {
        let max_queue = self.config.max_queue;
        let tracing = self.config.trace;
        let mut delivered = 0;
        for key in self.hub.subscribers_of(topic) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let Phase::Stream(subscription) = &mut conn.phase else {
                continue;
            };
            subscription.last_sent = now;
            delivered += 1;
            if conn.enqueue(frame.clone()) > max_queue {
                let (outcome, written) = conn.flush(tracing);
                self.counters.bytes_out += written as u64;
                if let FlushOutcome::Done { released } = outcome {
                    self.released_since_trim += released;
                }
                if matches!(outcome, FlushOutcome::Error(_)) || conn.queued() > max_queue {
                    self.evictions.push(key);
                    continue;
                }
            }
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
        self.counters.delivered += delivered as u64;
        for key in std::mem::take(&mut self.evictions) {
            self.counters.evicted += 1;
            self.close(key, CloseReason::Evicted);
        }
        delivered
    }

    fn tick(&mut self, now: Instant) {
        let data = clock::rfc3339(SystemTime::now());
        // A fixed name and no id: cannot fail.
        let Ok(encoded) = sse::encode_event(None, Some("tick"), &data) else {
            return;
        };
        self.fan_out(hub::TICK_TOPIC, &Frame::chunk(&encoded), now);
    }

    fn drain_stdin(&mut self, now: Instant) {
        self.stdin_pending = false;
        let Some(topic) = self.config.stdin_topic.clone() else {
            return;
        };
        for _ in 0..STDIN_BATCH {
            let Some(lines) = &self.stdin else { return };
            match lines.try_recv() {
                Ok(line) => {
                    let _ = self.publish(&topic, None, &line, now);
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

    fn arm_deadline(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Phase::Request(reading) = &conn.phase {
            let deadline = reading.deadline;
            self.arm_deadline_at(key, deadline);
        }
    }

    /// Pushes a `Deadline` entry for the connection unless it has one; the
    /// entry re-reads the connection's state when it fires.
    fn arm_deadline_at(&mut self, key: usize, at: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.deadline_armed {
            conn.deadline_armed = true;
            self.timers.push(at, Kind::Deadline, key, conn.id);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(due) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(due.key) else {
                continue;
            };
            if conn.id != due.conn_id {
                continue;
            }
            match due.kind {
                Kind::Heartbeat => {
                    let Some(period) = self.config.heartbeat else {
                        continue;
                    };
                    let Phase::Stream(subscription) = &mut conn.phase else {
                        continue;
                    };
                    let next = subscription.last_sent + period;
                    if next <= now {
                        subscription.last_sent = now;
                        conn.enqueue(self.ping.clone());
                        self.mark_dirty(due.key);
                        self.timers
                            .push(now + period, Kind::Heartbeat, due.key, due.conn_id);
                    } else {
                        self.timers.push(next, Kind::Heartbeat, due.key, due.conn_id);
                    }
                }
                Kind::Deadline => {
                    conn.deadline_armed = false;
                    match &conn.phase {
                        Phase::Request(reading) if reading.deadline > now => {
                            let at = reading.deadline;
                            conn.deadline_armed = true;
                            self.timers.push(at, Kind::Deadline, due.key, due.conn_id);
                        }
                        // Nothing of a next request: a keep-alive connection
                        // that went quiet closes without a word.
                        Phase::Request(_) if conn.is_idle() => self.close(due.key, CloseReason::IdleTimeout),
                        Phase::Request(_) => self.refuse(due.key, None, Rejection::RequestTimeout),
                        Phase::Lingering => self.close(due.key, CloseReason::Finished),
                        Phase::Closing => {
                            // The client is not reading its last answer.
                            self.close(due.key, CloseReason::IdleTimeout);
                        }
                        Phase::Stream(_) => {}
                    }
                }
            }
        }
        if self.timers.tick_due(now) && self.shutdown_deadline.is_none() {
            self.tick(now);
        }
        if self.timers.accept_resume_due(now) {
            for index in 0..self.listeners.len() {
                self.accept(index, now);
            }
        }
    }

    // ----- writing and closing -------------------------------------------

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// One flush per dirty connection: the end of every turn.
    fn flush_dirty(&mut self, now: Instant) {
        let tracing = self.config.trace;
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            let (outcome, written) = conn.flush(tracing);
            self.counters.bytes_out += written as u64;
            match outcome {
                FlushOutcome::Error(e) => {
                    debug!("#{} write: {e}", conn.id);
                    self.close(key, CloseReason::WriteError);
                }
                FlushOutcome::Blocked => {
                    if matches!(conn.phase, Phase::Closing) {
                        self.arm_deadline_at(key, now + LINGER);
                    }
                }
                FlushOutcome::Done { released } => {
                    self.released_since_trim += released;
                    match conn.phase {
                        // Shutting down, nobody is waiting for the lingering close.
                        Phase::Closing if conn.peer_closed || self.shutdown_deadline.is_some() => {
                            self.close(key, CloseReason::Finished)
                        }
                        Phase::Closing => {
                            conn.shutdown_write();
                            // Read on to the peer's EOF; pending bytes are dropped.
                            conn.readable = true;
                            self.backlog.push(key);
                            self.arm_deadline_at(key, now + LINGER);
                        }
                        // Resume a connection that backpressure paused.
                        Phase::Request(_) if conn.readable || !conn.is_idle() => self.backlog.push(key),
                        _ => {}
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
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        if let Phase::Stream(subscription) = &conn.phase {
            self.hub.unsubscribe(key, &subscription.topics);
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        debug!("#{} closed: {reason:?}", conn.id);
    }

    /// Stop accepting; tell every stream when to come back (spread out, so
    /// clients do not all return in the same instant); flush; close.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        info!("shutting down: {} connection(s) to close", self.conns.len());
        self.shutdown_deadline = Some(now + SHUTDOWN_GRACE);
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let retry = self.config.retry_ms;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let spread = self.rng.between(0, retry.saturating_mul(5));
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.phase {
                Phase::Stream(_) => {
                    conn.enqueue(Frame::chunk(&sse::encode_retry(retry + spread)));
                    // The last chunk: a clean end of the chunked body.
                    conn.enqueue(Frame::raw(b"0\r\n\r\n".to_vec()));
                    if let Phase::Stream(subscription) = std::mem::replace(&mut conn.phase, Phase::Closing) {
                        self.hub.unsubscribe(key, &subscription.topics);
                    }
                    self.mark_dirty(key);
                }
                Phase::Request(_) if conn.has_pending_output() => {
                    conn.phase = Phase::Closing;
                    self.mark_dirty(key);
                }
                Phase::Request(_) => self.close(key, CloseReason::Shutdown),
                Phase::Closing | Phase::Lingering => {}
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

/// xorshift64*: enough randomness to spread reconnects, nothing more.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Self {
        Rng(seed ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_stays_in_range() {
        let mut rng = Rng::seeded(42);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..10_000 {
            let n = rng.between(5, 30);
            assert!((5..=30).contains(&n));
            seen_low |= n == 5;
            seen_high |= n == 30;
        }
        assert!(seen_low && seen_high);
    }
}
