//! Bytes in, answers applied: a connection's reads go to its request
//! reader (`http/reader.rs`), each complete request to the service, and
//! what the service answers is applied here.
//!
//! ```text
//!   read_some ──▶ serve_requests ──▶ RequestReader::read ──▶ answer
//!                                                              │
//!                     Service::handle ◀─────────────────────────┘
//!                        │
//!                        ├─ Respond ──▶ send: queue the bytes (then close?)
//!                        ├─ Publish ──▶ deliver (output.rs), then send
//!                        └─ Stream ───▶ open_stream: first frames, join the hub
//! ```

use super::{
    Deferred, Server, MAX_READS_PER_TURN, MAX_RELAYS, REAUTH_BEFORE, RESPONSE_BACKPRESSURE, STDIN_BATCH,
};

use std::sync::mpsc::TryRecvError;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, info};

use crate::clock::Now;
use crate::conn::{AfterEof, CloseReason, Phase, ReadOutcome};
use crate::frame::Frame;
use crate::http::reader::Step;
use crate::http::response::CONTINUE;
use crate::http::{Rejection, Request};
use crate::routes;
use crate::service::{Answer, Caller, OpenStream};
use crate::timer::Kind;

impl Server {
    /// Reads what the socket has (within a budget) and acts on it.
    pub(super) fn drive(&mut self, key: usize, now: Now) {
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
    pub(super) fn read_some(&mut self, key: usize, scratch: &mut [u8], now: Now) -> bool {
        for _ in 0..MAX_READS_PER_TURN {
            let Some(slot) = self.conns.get_mut(key) else {
                return true;
            };
            if slot.parked {
                // Driven again once the bus has answered.
                return true;
            }
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
    pub(super) fn serve_requests(&mut self, key: usize, mut input: &[u8], now: Now) {
        loop {
            let Some(slot) = self.conns.get_mut(key) else {
                return;
            };
            // A request waiting on the bus is answered before the next is read.
            let backpressured = slot.conn.queued() > RESPONSE_BACKPRESSURE || slot.parked;
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
                    self.answer(key, request, now);
                }
                Step::Reject(rejection) if slot.relays > 0 => {
                    // Answered after the publishes before it.
                    self.deferred.insert(key, Deferred::Reject(rejection));
                    slot.parked = true;
                    break;
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
    ///
    /// Answers leave in the order their requests came. While publishes of
    /// this connection wait on Redis, which answers them in order, only
    /// another publish may follow them there; any other request waits
    /// until they are answered, and is then handled afresh
    /// ([`Server::relays_answered`]).
    pub(super) fn answer(&mut self, key: usize, request: Request, now: Now) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let caller = Caller {
            client: slot.conn.id,
            over_capacity: slot.conn.over_capacity,
        };
        let relays = slot.relays;
        let may_follow = relays < MAX_RELAYS
            && routes::may_publish(request.method, request.path())
            && self.bus.as_ref().is_some_and(|bus| bus.accepts_publishes());
        if relays > 0 && !may_follow {
            slot.parked = true;
            self.deferred.insert(key, Deferred::Request(Box::new(request)));
            return;
        }
        match self.service.handle(&request, caller, now) {
            Answer::Relay(relay) => self.relay(key, relay, now),
            // A refused publish (401, 400, ...): handled again in its turn.
            _ if relays > 0 => {
                if let Some(slot) = self.conns.get_mut(key) {
                    slot.parked = true;
                    self.deferred.insert(key, Deferred::Request(Box::new(request)));
                }
            }
            answer => self.apply(key, &request, answer, now),
        }
    }

    /// The connection's last publish waiting on Redis was answered: the
    /// request that waited behind it is handled now, then reading goes on.
    pub(super) fn relays_answered(&mut self, key: usize, now: Now) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.parked = false;
        match self.deferred.remove(&key) {
            Some(Deferred::Request(request)) => self.answer(key, *request, now),
            Some(Deferred::Reject(rejection)) => self.refuse(key, rejection, now),
            None => {}
        }
        if self.conns.get(key).is_some_and(|slot| !slot.parked) {
            self.drive(key, now);
        }
    }

    /// Applies the service's answer to `request`.
    pub(super) fn apply(&mut self, key: usize, request: &Request, answer: Answer, now: Now) {
        match answer {
            Answer::Respond { bytes, keep_alive } => self.send(key, bytes, keep_alive),
            Answer::Publish { bytes, keep_alive } => {
                self.send(key, bytes, keep_alive);
                self.flush_overgrown_views(now);
            }
            Answer::Stream(stream) => self.open_stream(key, stream, now),
            // With --bus (server/bus.rs): the answer comes with Redis' reply.
            Answer::Relay(relay) => self.relay(key, relay, now),
            Answer::Park(park) => self.park(key, request.clone(), park, now),
        }
    }

    /// Answers a request that could not be read (or came too late).
    pub(super) fn refuse(&mut self, key: usize, rejection: Rejection, now: Now) {
        if let Answer::Respond { bytes, keep_alive } = self.service.refuse(rejection, None, now) {
            self.send(key, bytes, keep_alive);
        }
    }

    /// Queues a whole answer for the end-of-turn flush; without keep-alive
    /// the connection then closes.
    pub(super) fn send(&mut self, key: usize, bytes: Vec<u8>, keep_alive: bool) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.conn.enqueue(Frame::raw(bytes));
        if !keep_alive {
            slot.conn.begin_closing();
        }
        self.mark_dirty(key);
    }

    /// The connection becomes a stream: it joins its view, its first
    /// frames are queued ahead of its place in the log, and its heartbeat
    /// timer starts.
    pub(super) fn open_stream(&mut self, key: usize, stream: OpenStream, now: Now) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let conn = &mut slot.conn;
        let member = self.service.join(stream.view, key);
        conn.start_stream(
            stream.view,
            member,
            stream.cursor,
            stream.joined,
            stream.chunked,
            now.instant,
        );
        for frame in stream.frames {
            conn.enqueue(frame);
        }
        if let Some(heartbeat) = self.config.heartbeat {
            self.timers
                .push(now.instant + heartbeat, Kind::Heartbeat, key, conn.id);
        }
        // `exp` is wall-clock seconds; deadlines are monotonic. An `exp` so
        // far away that no clock reaches it is no expiry at all.
        let since_epoch = now.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let expiry = stream.expires.and_then(|exp| {
            let left = Duration::from_secs(exp).saturating_sub(since_epoch);
            Some((exp, now.instant.checked_add(left)?))
        });
        if let Some((exp, expire_at)) = expiry {
            let reauth_at = expire_at
                .checked_sub(REAUTH_BEFORE)
                .map_or(now.instant, |at| at.max(now.instant));
            self.timers.push(reauth_at, Kind::Reauth, key, conn.id);
            self.timers.push(expire_at, Kind::Expire, key, conn.id);
            self.expiries.insert(key, (conn.id, exp));
        }
        self.mark_dirty(key);
    }

    /// Publishes the lines `--stdin` read, a batch per turn. With `--bus`
    /// they go to Redis, and only while it is connected: meanwhile they
    /// wait in the reader's bounded channel, and the program writing them
    /// blocks, so none is lost.
    pub(super) fn drain_stdin(&mut self, now: Now) {
        self.stdin_pending = false;
        for _ in 0..STDIN_BATCH {
            if self.bus.as_ref().is_some_and(|bus| !bus.accepts_publishes()) {
                return; // resumed when the command connection is ready
            }
            let Some(lines) = &self.stdin else { return };
            match lines.try_recv() {
                Ok(line) if self.bus.is_some() => {
                    if let Some(topic) = self.service.stdin_topic().map(str::to_owned) {
                        self.relay_unanswered(&topic, None, &line, now);
                    }
                }
                Ok(line) => {
                    if self.service.publish_line(&line).is_some() {
                        self.flush_overgrown_views(now);
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
}
