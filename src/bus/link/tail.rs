//! The tailing connection: every event, in the stream's order, once.
//!
//! # Start: the history, then the tail
//!
//! ```text
//!   XREVRANGE ssed:log + - COUNT <history>     the newest entries, newest first
//!     ──▶ History([oldest .. newest])          handed over oldest first
//!   XREAD COUNT n BLOCK ms STREAMS ssed:log <newest id, or 0-0 if none>
//!     ◀── *-1                                  nothing in `ms`: read again
//!     ◀── entries                              Delivered(e) each, in order;
//!   XREAD ... STREAMS ssed:log <last id>         read again after the last
//! ```
//!
//! The read after the history starts from the history's newest id, never
//! from `$` ("whatever comes after now"): an entry added between the two
//! commands would fall in between and be lost. An empty stream is read
//! from `0-0`, which is before any entry it can ever hold. `$` is never
//! sent at all ([`streams::xread_block`] only takes ids).
//!
//! # Reconnect: is the last id still there?
//!
//! The stream is trimmed (`MAXLEN ~`) and Redis may have lost data (a
//! restart without persistence, a failover to a replica that lagged). So
//! with a last id `L` the first thing after the handshake is two commands,
//! in one write:
//!
//! ```text
//!   XRANGE ssed:log L L COUNT 1        is L there?
//!   XRANGE ssed:log - + COUNT 1        is anything there?
//!
//!   L there                  ──▶ XREAD from L: nothing was lost
//!   L gone, stream not empty ──▶ Lost { last: L } once, then XREAD from L
//!   L gone, stream empty     ──▶ Lost { last: L } once, then XREAD from 0-0
//! ```
//!
//! "Continue" after a loss means: deliver everything after `L` that the
//! stream still holds. `XREAD` from `L` does exactly that, whether `L` is
//! there or not (it reads ids greater than `L`), so what was trimmed is
//! lost (and said so with `event: gap`) and nothing that remains is. An
//! empty stream that no longer holds `L` is a Redis that came back with
//! nothing (restarted without persistence, a failover that lost writes, a
//! deleted key): everything this process did not deliver is gone, and
//! issue 10 says so plainly: "losing data is never silent". So it is a
//! `Lost` too; and since any entry it gets from now on is new, it is read
//! from `0-0`, whatever ids it then gives, so nothing it holds is skipped
//! even if its ids restart below `L`.
//!
//! With no last id at a reconnect (the stream was empty at start and
//! nothing came since), the tail reads from `0-0` at once: the history is
//! filled once per process, and everything after it is delivered.

use std::time::Instant;

use super::{Link, LinkError, LinkEvent, Settings};
use crate::bus::resp::Reply;
use crate::bus::streams::{self, Entry, StreamId};
use std::ops::Bound::{Included, Unbounded};

/// What the tail read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailEvent {
    /// The newest entries at start, oldest first, at most `history` of
    /// them: the local history, not to be sent to anyone yet. Once per
    /// process, before any [`TailEvent::Delivered`].
    History(Vec<Entry>),
    /// A new entry, in the stream's order: deliver it.
    Delivered(Entry),
    /// At a reconnect, the last id read is gone and the stream is not
    /// empty: entries may be lost. Send `event: gap` to every stream;
    /// what remains after `last` follows as `Delivered`.
    Lost {
        /// The last id read before the connection was lost.
        last: StreamId,
    },
    /// The connection is given up: close the socket. The link retries at
    /// its backoff, and resumes after the last id read.
    Broken(LinkError),
}

/// What the tail waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// Not connected, or the handshake is not done.
    Nothing,
    /// The `XREVRANGE` that fills the history.
    History,
    /// The `XRANGE L L`, then the `XRANGE - + COUNT 1` after a reconnect.
    /// Holds whether `L` was there once the first reply came.
    Check(Option<bool>),
    /// A blocking `XREAD`.
    Read,
}

/// The tailing connection and where it is in the stream.
#[derive(Debug, Clone)]
pub struct Tail {
    link: Link,
    stream: Vec<u8>,
    history: usize,
    count: u64,
    block_ms: u64,
    /// The id reads continue after: the last delivered, or the newest of
    /// the history; `None` before the first read, or when reads start over
    /// from `0-0`.
    last: Option<StreamId>,
    /// The history was read (or the stream found empty): never again.
    started: bool,
    awaiting: Awaiting,
}

impl Tail {
    /// A tail for `settings`, disconnected, its first attempt due at once;
    /// `seed` drives its backoff's jitter.
    pub fn new(settings: &Settings, seed: u64, now: Instant) -> Tail {
        Tail {
            link: Link::new(settings.db, seed, now),
            stream: settings.stream.clone(),
            history: settings.history,
            count: settings.count.max(1),
            block_ms: settings.block_ms.max(1),
            last: None,
            started: false,
            awaiting: Awaiting::Nothing,
        }
    }

    /// The connection's state: [`Link::retry_due`], [`Link::retry_at`].
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The id reads continue after (see [`Status::last_id`]).
    ///
    /// [`Status::last_id`]: super::Status::last_id
    pub fn last_id(&self) -> Option<StreamId> {
        self.last
    }

    /// The loop started to connect the socket ([`Link::connecting`]).
    pub fn connecting(&mut self) {
        self.link.connecting();
    }

    /// The socket is connected: appends the handshake to `out`.
    pub fn connected(&mut self, out: &mut Vec<u8>) {
        self.awaiting = Awaiting::Nothing;
        self.link.connected(out);
    }

    /// The connection is lost: the link retries at its backoff, and the
    /// tail resumes after [`Tail::last_id`].
    pub fn lost(&mut self, now: Instant) {
        self.awaiting = Awaiting::Nothing;
        self.link.lost(now);
    }

    /// What a read brought: events in order, and the next command appended
    /// to `out`. A [`TailEvent::Broken`] ends the list: close the socket.
    pub fn received(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<u8>) -> Vec<TailEvent> {
        let mut replies = Vec::new();
        let result = self.link.received(bytes, now, &mut replies);
        let mut events = Vec::new();
        for reply in replies {
            let step = match reply {
                LinkEvent::Ready => {
                    self.start(out);
                    Ok(())
                }
                LinkEvent::Reply(reply) => self.answer(reply, out, &mut events),
            };
            if let Err(error) = step {
                self.awaiting = Awaiting::Nothing;
                events.push(TailEvent::Broken(self.link.fail(now, error)));
                return events;
            }
        }
        if let Err(error) = result {
            self.awaiting = Awaiting::Nothing;
            events.push(TailEvent::Broken(error));
        }
        events
    }

    /// The first command after the handshake.
    fn start(&mut self, out: &mut Vec<u8>) {
        match (self.started, self.last) {
            (false, _) => {
                // COUNT 0 would read nothing, and the tail would start from
                // 0-0 and deliver the whole stream: ask for 1 at least.
                let count = self.history.max(1) as u64;
                streams::xrevrange(&self.stream, Unbounded, Unbounded, count, out);
                self.awaiting = Awaiting::History;
            }
            (true, Some(last)) => {
                streams::xrange(&self.stream, Included(last), Included(last), 1, out);
                streams::xrange(&self.stream, Unbounded, Unbounded, 1, out);
                self.awaiting = Awaiting::Check(None);
            }
            (true, None) => self.read(out),
        }
    }

    /// Appends the next blocking read, after the last id or from `0-0`.
    fn read(&mut self, out: &mut Vec<u8>) {
        let after = self.last.unwrap_or(StreamId::ZERO);
        streams::xread_block(&self.stream, after, self.block_ms, self.count, out);
        self.awaiting = Awaiting::Read;
    }

    fn answer(
        &mut self,
        reply: Reply,
        out: &mut Vec<u8>,
        events: &mut Vec<TailEvent>,
    ) -> Result<(), LinkError> {
        match self.awaiting {
            Awaiting::Nothing => {
                return Err(LinkError::Unexpected(streams::ReplyError::Shape(
                    "a reply to no command",
                )))
            }
            Awaiting::History => {
                let mut newest_first = streams::parse_xrange(reply)?;
                self.last = newest_first.first().map(|entry| entry.id);
                newest_first.truncate(self.history);
                newest_first.reverse();
                self.started = true;
                events.push(TailEvent::History(newest_first));
                self.read(out);
            }
            Awaiting::Check(None) => {
                let there = streams::parse_xrange(reply)?;
                let present = there.first().map(|entry| entry.id) == self.last;
                self.awaiting = Awaiting::Check(Some(present));
            }
            Awaiting::Check(Some(present)) => {
                let any = !streams::parse_xrange(reply)?.is_empty();
                match (present, any, self.last) {
                    (false, true, Some(last)) => events.push(TailEvent::Lost { last }),
                    (false, false, Some(last)) => {
                        events.push(TailEvent::Lost { last });
                        self.last = None;
                    }
                    (false, false, None) => {}
                    _ => {}
                }
                self.read(out);
            }
            Awaiting::Read => {
                for entry in streams::parse_xread(reply, &self.stream)? {
                    // Redis reads only ids after the one given; one that is
                    // not would be delivered twice, so it is dropped.
                    if self.last.is_some_and(|last| entry.id <= last) {
                        continue;
                    }
                    self.last = Some(entry.id);
                    events.push(TailEvent::Delivered(entry));
                }
                self.read(out);
            }
        }
        Ok(())
    }
}
