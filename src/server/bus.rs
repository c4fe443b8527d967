//! The bus in the loop: two connections to Redis, their bytes, and what
//! their replies become for the connections waiting on them.
//!
//! The protocol lives in [`crate::bus::link`], as state machines with no
//! socket; this file owns the two sockets and feeds those machines:
//!
//! ```text
//!   POST /publish ─▶ Answer::Relay ─▶ Publisher::publish ─▶ XADD ──▶ ┐ commands
//!   Last-Event-ID ─▶ Answer::Park(Fetch) ─▶ Publisher::range ─▶ XRANGE ┘ socket
//!        ▲ answered when the reply comes, in order (Waiter, by token)
//!
//!   every event ◀── Tail ◀── XREAD BLOCK (always one in flight) ◀─ tail socket
//!        └─▶ Service::deliver ─▶ the views ─▶ the end-of-turn flush
//! ```
//!
//! A connection that waits on the bus is *parked*: its slot says so, its
//! reads stop (pipelined requests behind it wait their turn, so answers
//! keep their order), and it is driven again once its answer is sent.
//!
//! Every wait has a deadline: a connect or handshake that takes too long,
//! a command unanswered, a tail silent past its `BLOCK` all count as a
//! lost connection (retried at the link's backoff), and a stream parked
//! for the history or for a newer id opens (or is told to come back) when
//! its wait runs out.

mod socket;
mod state;
mod waiters;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant, UNIX_EPOCH};

use log::{debug, info, warn};
use mio::{Interest, Token};

use super::{Server, MAX_LISTENERS};
use crate::bus::link::{PublishEvent, TailEvent};
use crate::clock::Now;
use crate::conn::Phase;
use crate::frame::Frame;
use crate::trace::{self, Direction};
use socket::Socket;
pub(super) use state::Bus;
use state::{slot, Wire, TAIL};
use std::rc::Rc;

/// The command connection's token (listeners take `0..MAX_LISTENERS`, then
/// the signal pipe and the waker).
pub(super) const BUS_COMMANDS: Token = Token(MAX_LISTENERS + 2);
/// The tailing connection's token.
pub(super) const BUS_TAIL: Token = Token(MAX_LISTENERS + 3);

/// How long one `XREAD` blocks in Redis.
const BLOCK_MS: u64 = 5_000;
/// Entries per `XREAD`.
const READ_COUNT: u64 = 1_000;
/// A connect plus handshake, or a command's reply, that takes longer than
/// this means the connection is dead.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// A tail that has not heard from Redis for `BLOCK` plus this is dead.
const TAIL_SILENCE: Duration = Duration::from_millis(BLOCK_MS + 5_000);
/// How long a stream waits for the history, or for its tail to pass an
/// id another process delivered.
pub(super) const PARK_WAIT: Duration = Duration::from_secs(3);
/// Bytes read from Redis per read call.
const READ_CHUNK: usize = 64 * 1024;
/// How long a stream waits for an id while the tail is down.
pub(super) const PARK_OUTAGE: Duration = Duration::from_secs(30);

impl Server {
    /// A bus socket is ready: finish its connect, read what came, write
    /// what waits.
    pub(super) fn on_bus_ready(&mut self, token: Token, now: Now) {
        let Some(bus) = &mut self.bus else { return };
        let wire = &mut bus.wires[slot(token)];
        let Some(socket) = &mut wire.socket else { return };
        if wire.connecting {
            if let Some(error) = socket.connect_error() {
                if error.kind() == io::ErrorKind::NotConnected {
                    return; // not yet: the next readiness tells
                }
                return self.bus_lost(token, &format!("connect: {error}"), now);
            }
            wire.connecting = false;
            wire.heard = Some(now.instant);
            if token == BUS_COMMANDS {
                bus.publisher.connected(&mut wire.out);
            } else {
                bus.tail.connected(&mut wire.out);
            }
        }
        self.bus_read(token, now);
        self.bus_write(token, now);
    }

    /// Reads until `WouldBlock`, handing each read to its link. (Not into
    /// the clients' scratch buffer: what a read brings may drive a client
    /// connection, which reads into that.)
    fn bus_read(&mut self, token: Token, now: Now) {
        // Bounded: a Redis that never stops sending gets the next turn.
        for _ in 0..64 {
            let Some(bus) = &mut self.bus else { return };
            let wire = &mut bus.wires[slot(token)];
            let Some(socket) = &mut wire.socket else { return };
            let n = match socket.read(&mut bus.buffer) {
                Ok(0) => return self.bus_lost(token, "Redis closed the connection", now),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.bus_lost(token, &format!("read: {e}"), now),
            };
            wire.heard = Some(now.instant);
            let bytes = &bus.buffer[..n];
            if self.config.trace {
                trace::bus_bytes(link_name(token), Direction::In, bytes);
            }
            if token == BUS_COMMANDS {
                let events = bus.publisher.received(bytes, now.instant);
                self.on_command_events(events, now);
            } else {
                let events = bus.tail.received(bytes, now.instant, &mut bus.wires[TAIL].out);
                self.on_tail_events(events, now);
            }
        }
    }

    /// Writes what waits for `token`'s socket, until it is all out or the
    /// socket is full (its next writable readiness goes on).
    pub(super) fn bus_write(&mut self, token: Token, now: Now) {
        let Some(bus) = &mut self.bus else { return };
        let wire = &mut bus.wires[slot(token)];
        let Some(socket) = &mut wire.socket else {
            wire.out.clear();
            return;
        };
        if wire.connecting {
            return;
        }
        let mut written = 0;
        let failure = loop {
            if written == wire.out.len() {
                break None;
            }
            match socket.write(&wire.out[written..]) {
                Ok(0) => break Some("write: the socket took nothing".to_string()),
                Ok(n) => {
                    if self.config.trace {
                        trace::bus_bytes(link_name(token), Direction::Out, &wire.out[written..written + n]);
                    }
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(format!("write: {e}")),
            }
        };
        wire.out.drain(..written);
        if let Some(why) = failure {
            self.bus_lost(token, &why, now);
        }
    }

    /// Writes both connections' waiting bytes, connects links whose retry
    /// is due, and enforces every deadline. Once per turn.
    pub(super) fn bus_turn(&mut self, now: Now) {
        let Some(bus) = &self.bus else { return };
        let overdue = |deadline: Option<Instant>| deadline.is_some_and(|at| now.instant >= at);
        let (commands, tail) = (overdue(bus.commands_deadline()), overdue(bus.tail_deadline()));
        if commands {
            self.bus_lost(BUS_COMMANDS, "Redis did not answer in time", now);
        }
        if tail {
            self.bus_lost(BUS_TAIL, "Redis did not answer the tail in time", now);
        }
        for token in [BUS_COMMANDS, BUS_TAIL] {
            self.bus_connect_if_due(token, now);
        }
        self.expire_parked(now);
        self.bus_write(BUS_COMMANDS, now);
        self.bus_write(BUS_TAIL, now);
        self.update_bus_figures();
    }

    fn bus_connect_if_due(&mut self, token: Token, now: Now) {
        let Some(bus) = &mut self.bus else { return };
        if !bus.link(token).retry_due(now.instant) {
            return;
        }
        bus.connecting(token);
        let registered = Socket::connect(&bus.addr).and_then(|mut socket| {
            self.poll
                .registry()
                .register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)?;
            Ok(socket)
        });
        let wire = &mut bus.wires[slot(token)];
        match registered {
            Ok(socket) => {
                wire.socket = Some(socket);
                wire.connecting = true;
                wire.heard = Some(now.instant);
                wire.out.clear();
            }
            Err(e) => self.bus_lost(token, &format!("connect: {e}"), now),
        }
    }

    /// Closes `token`'s socket, and forgets what waited to be written to it.
    fn close_bus_socket(&mut self, token: Token) {
        let Some(bus) = &mut self.bus else { return };
        let wire = &mut bus.wires[slot(token)];
        if let Some(mut socket) = wire.socket.take() {
            let _ = self.poll.registry().deregister(&mut socket);
        }
        *wire = Wire::default();
    }

    /// The connection of `token` is lost (or given up): close its socket;
    /// its link retries at its backoff. Publishes in flight are answered
    /// "outcome unknown", fetches given up.
    fn bus_lost(&mut self, token: Token, why: &str, now: Now) {
        let Some(bus) = &mut self.bus else { return };
        let was_ready = bus.link(token).is_ready();
        self.close_bus_socket(token);
        let Some(bus) = &mut self.bus else { return };
        let name = link_name(token);
        // Said once per outage; each failed retry after it only at debug.
        if was_ready {
            warn!("bus ({name}): {why}; reconnecting with backoff");
        } else {
            debug!("bus ({name}): {why}; retrying");
        }
        if token == BUS_COMMANDS {
            let events = bus.publisher.lost(now.instant);
            self.on_command_events(events, now);
        } else {
            bus.tail.lost(now.instant);
        }
        self.update_bus_figures();
    }

    /// What the tail read: the history, events, a loss.
    fn on_tail_events(&mut self, events: Vec<TailEvent>, now: Now) {
        let mut delivered = false;
        for event in events {
            match event {
                TailEvent::History(entries) => {
                    info!(
                        "bus: history of {} event(s) read; streams may open",
                        entries.len()
                    );
                    self.service.fill_history(&entries);
                    self.wake_parked(now, true);
                }
                TailEvent::Delivered(entry) => {
                    let wall_ms = now
                        .wall
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    if let Some(bus) = &mut self.bus {
                        bus.lag_ms = Some(wall_ms.saturating_sub(entry.id.ms));
                    }
                    self.service.deliver(&entry);
                    delivered = true;
                }
                TailEvent::Lost { last } => {
                    warn!("bus: events after {last} are gone from the stream; every stream gets a gap");
                    let gap = self.service.lost(last);
                    self.deliver_to_every_stream(&gap);
                }
                TailEvent::Broken(error) => {
                    // The link is disconnected already.
                    self.close_bus_socket(BUS_TAIL);
                    warn!("{error}; reconnecting");
                }
            }
        }
        if delivered {
            self.flush_overgrown_views(now);
            self.wake_parked(now, false);
        }
        self.update_bus_figures();
    }

    /// What the command connection answered: publishes and fetches.
    fn on_command_events(&mut self, events: Vec<PublishEvent>, now: Now) {
        for event in events {
            match event {
                PublishEvent::Ready => {
                    info!("bus: connected");
                    if self.stdin.is_some() {
                        self.stdin_pending = true;
                    }
                }
                PublishEvent::Broken(error) => {
                    // The link is disconnected already.
                    self.close_bus_socket(BUS_COMMANDS);
                    warn!("{error}; reconnecting");
                }
                other => self.on_reply(other, now),
            }
        }
        self.update_bus_figures();
    }

    /// Queues `frame` for every open stream, after everything it was sent
    /// (the gap after the bus lost events).
    fn deliver_to_every_stream(&mut self, frame: &Rc<Frame>) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, slot)| matches!(slot.conn.phase, Phase::Stream(_)))
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            let head = self.service.head_of(slot.conn.view());
            slot.conn.enqueue_at(head, frame.clone());
            self.mark_dirty(key);
        }
    }

    fn update_bus_figures(&mut self) {
        if let Some(bus) = &self.bus {
            let figures = bus.figures();
            self.service.set_bus_figures(figures);
        }
    }
}

/// The name of `token`'s connection, for logs and `--trace`.
fn link_name(token: Token) -> &'static str {
    if token == BUS_COMMANDS {
        "commands"
    } else {
        "tail"
    }
}
