//! The event loop: one `mio::Poll`, the listeners, the slab of connections,
//! and the turn of the loop that ties them together.
//!
//! The loop knows sockets and time, not HTTP semantics: it reads bytes,
//! hands them to each connection's request reader (`http/reader.rs`),
//! gives every complete request to the [`Service`], and applies the
//! [`Answer`](crate::service::Answer) it gets back to the connection.
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
//!                           response, or open a stream (a published event
//!                           was appended to the views of its topic, and
//!                           those views marked dirty)
//!  fire due timers (408s, lingers, heartbeats, the ticker)
//!  flush: every dirty view's readers get log[cursor..head] in one write
//!         each; every connection with frames of its own, one write
//! ```
//!
//! The work is spread over three more files, each an `impl Server` block:
//! `server/requests.rs` (bytes in, answers applied), `server/output.rs`
//! (fan-out, the one flush per turn, closing) and `server/deadlines.rs`
//! (timers firing).
//!
//! Writes happen once per connection per turn, at the end: a burst of
//! pipelined publishes that arrives in one read becomes one contiguous
//! `write` per subscriber carrying all of them, the same bytes for every
//! subscriber of a view, instead of one `write` per event.
//!
//! # Tokens
//!
//! Listeners take tokens `0..MAX_LISTENERS`, then the signal pipe and the
//! waker; a connection's token is its slab key plus [`FIRST_CONN`]. A key is
//! reused as soon as its connection closes, possibly within the same batch
//! of events, so an event may reach a newer connection than it was for:
//! every handler treats readiness as a hint and confirms it with a read or
//! a write that may just say `WouldBlock`.

mod bus;
mod deadlines;
mod embedding;
mod output;
mod requests;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::clock::Now;
use crate::config::Config;
use crate::conn::{CloseReason, Conn, Phase};
use crate::frame::Frame;
use crate::os;
use crate::service::Service;
use crate::signal::Signals;
use crate::timer::Timers;
use crate::trace;

pub use embedding::{Handle, PublishError};

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
/// How long before its token expires a stream is told to get a new one.
const REAUTH_BEFORE: Duration = Duration::from_secs(30);
/// How long shutdown waits for queues to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long to stop accepting after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Queue memory freed since the last trim that makes a trim worthwhile.
const TRIM_AFTER: usize = 16 * 1024 * 1024;
/// Publishes one connection may have waiting on Redis at once; more wait
/// to be read.
const MAX_RELAYS: u32 = 1024;
/// Lines from `--stdin` published per turn.
const STDIN_BATCH: usize = 1024;
/// Every read lands here first; the request reader keeps only what it
/// must (an unfinished head, or requests held back by backpressure).
const SCRATCH_SIZE: usize = 64 * 1024;

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
    /// Its request waits on the bus (`server/bus.rs`), or waits for its
    /// publishes there to be answered: nothing more is read until then.
    parked: bool,
    /// Its publishes sent to Redis and not answered yet (what waits for
    /// their answers is in [`Server`]'s `deferred`).
    relays: u32,
}

/// What waits, on a connection, for its publishes to Redis to be answered.
#[derive(Debug)]
enum Deferred {
    /// A request, handled in its turn.
    Request(Box<crate::http::Request>),
    /// A refusal of bytes that were not a request.
    Reject(crate::http::Rejection),
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
    /// Streams a view's flush found failing or too far behind, closed once
    /// it is done.
    failures: Vec<(usize, CloseReason)>,
    next_conn_id: u64,
    /// Streams whose token expires: slab key to (connection id, `exp`).
    /// Only they pay for it.
    expiries: HashMap<usize, (u64, u64)>,
    fd_exhaustion_logged: bool,
    /// Queue buffer bytes freed since memory was last handed back.
    released_since_trim: usize,
    /// With `--bus`: the two connections to Redis.
    bus: Option<bus::Bus>,
    /// What waits, on a connection (by slab key), for its publishes to
    /// Redis to be answered. Only they pay for it: a slot stays small.
    deferred: HashMap<usize, Deferred>,
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
        if config.trace {
            trace::start_clock();
        }
        let mut listeners = Vec::new();
        for (index, addr) in config.listen.iter().enumerate() {
            // With --reuseport, SO_REUSEPORT must be set before bind, which
            // std's bind cannot do; os.rs makes the socket itself.
            let bound = if config.reuseport {
                os::listen_reuseport(*addr)
            } else {
                std::net::TcpListener::bind(addr).inspect(os::widen_backlog)
            };
            let std_listener = bound.map_err(|e| {
                let hint = match (e.kind(), config.reuseport) {
                    (io::ErrorKind::AddrInUse, false) => {
                        " (is another ssed running? with --reuseport on each, several can share it)"
                    }
                    (io::ErrorKind::AddrInUse, true) => {
                        " (held by a process without --reuseport, or by another user)"
                    }
                    _ => "",
                };
                io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}{hint}"))
            })?;
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
            timers: Timers::with_capacity(now.instant, config.tick, reserve(max_conns)),
            max_conns,
            poll,
            listeners,
            conns: Slab::with_capacity(reserve(max_conns)),
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            signals: None,
            stdin: None,
            stdin_pending: false,
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            dirty: Vec::new(),
            backlog: Vec::new(),
            failures: Vec::new(),
            next_conn_id: 1,
            expiries: HashMap::new(),
            fd_exhaustion_logged: false,
            released_since_trim: 0,
            bus: bus::Bus::of(&config, now.instant),
            deferred: HashMap::new(),
            config,
        })
    }

    /// Runs until shut down; returns once every connection is closed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !self.turn(&mut events, None)? {}
        Ok(())
    }

    /// One turn of the loop (see the module docs): wait for readiness, at
    /// most until the nearest deadline or `max_wait`, handle it, fire due
    /// timers, flush. Returns true once shut down with every connection
    /// closed (or the grace run out).
    pub fn turn(&mut self, events: &mut Events, max_wait: Option<Duration>) -> io::Result<bool> {
        let timeout = if !self.backlog.is_empty() || self.stdin_pending {
            Some(Duration::ZERO)
        } else {
            let now = Now::read().instant;
            let deadline = self.timers.poll_timeout(now);
            let bus = self.bus.as_ref().and_then(bus::Bus::deadline);
            let bus = bus.map(|at| at.saturating_duration_since(now));
            deadline.into_iter().chain(bus).chain(max_wait).min()
        };
        match self.poll.poll(events, timeout) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(false),
            result => result?,
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
                bus::BUS_COMMANDS | bus::BUS_TAIL => self.on_bus_ready(event.token(), now),
                Token(token) => self.on_ready(token - FIRST_CONN, event, now),
            }
        }
        for key in std::mem::take(&mut self.backlog) {
            self.drive(key, now);
        }
        if self.stdin_pending {
            self.drain_stdin(now);
        }
        self.bus_turn(now);
        self.fire_timers(now);
        self.flush_dirty(now);
        let done = self.timers.in_grace() && (self.conns.is_empty() || self.timers.grace_over(now.instant));
        if done {
            info!("shut down with {} connection(s) still open", self.conns.len());
        }
        Ok(done)
    }

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
            parked: false,
            relays: 0,
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

    fn on_ready(&mut self, key: usize, event: &mio::event::Event, now: Now) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.conn.readiness.note(event);
        if slot.conn.readiness.writable() && (slot.conn.has_pending_output() || slot.conn.view().is_some()) {
            self.mark_dirty(key);
        }
        self.drive(key, now);
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
                    // After every event it was sent: its last word, then
                    // the last chunk (nothing at all for an HTTP/1.0
                    // stream: its end is the close).
                    let head = self.service.head_of(conn.view());
                    conn.enqueue_at(head, farewell);
                    conn.enqueue_at(head, last_chunk.clone());
                    conn.begin_closing();
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

/// Room set aside at start for `max_conns` connections (and their timer
/// entries). Reserving is not touching: a page costs memory only once a
/// connection uses it. Growing instead would copy the slab at every
/// doubling, and the allocator keeps each old copy resident: measured, that
/// was about a third of an idle subscriber's memory. Capped, so that a
/// huge `--max-conns` does not ask for gigabytes of address space.
fn reserve(max_conns: usize) -> usize {
    max_conns.saturating_add(OVERFLOW_SLOTS).min(1 << 20)
}

fn is_fd_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection's slot is reserved up front for `--max-conns`, and
    /// what a subscriber touches of it is resident: the loop's own notes
    /// fit in the padding after the connection (a request waiting on the
    /// bus is kept aside, in `deferred`).
    #[test]
    fn a_slot_is_its_connection_and_eight_bytes() {
        assert!(
            std::mem::size_of::<Slot>() <= std::mem::size_of::<Conn>() + 8,
            "{} bytes",
            std::mem::size_of::<Slot>()
        );
    }
}
