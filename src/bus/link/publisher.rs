//! The command connection: `XADD`s pipelined, replies matched in order.
//!
//! ```text
//!   publish(token 1) ──▶ XADD ssed:log MAXLEN ~ N * topic t data a ──┐
//!   publish(token 2) ──▶ XADD ssed:log MAXLEN ~ N * topic t data b ──┤ in flight:
//!   publish(token 3) ──▶ XADD ssed:log MAXLEN ~ N * topic t data c ──┘ [1, 2, 3]
//!
//!   $15 1700000000000-0      ──▶ Published { token 1, id 1700000000000-0 }
//!   -OOM command not allowed ──▶ Refused { token 2, reason }   (only that one)
//!   ✂ connection lost        ──▶ OutcomeUnknown { token 3 }    (never resent)
//! ```
//!
//! Redis answers one connection's commands in order, so the oldest command
//! in flight owns the next reply. The same connection reads old entries for
//! a replay that reaches past the local history ([`Publisher::range`]:
//! `XRANGE`, answered [`PublishEvent::Range`]), in the same order. Publishing answers nothing locally: the
//! event reaches subscribers, this process's included, when the [`Tail`]
//! reads it back.
//!
//! [`Tail`]: super::Tail

use std::collections::VecDeque;
use std::ops::Bound;
use std::time::{Duration, Instant};

use super::{Link, LinkError, LinkEvent, Settings};
use crate::bus::resp::Reply;
use crate::bus::streams::{self, Entry, ReplyError, StreamId};

/// What became of publishes, or of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishEvent {
    /// The handshake is done: publishes are taken from now on.
    Ready,
    /// Redis added the event under `id`.
    Published {
        /// Who asked.
        token: u64,
        /// The entry's id: the event's id on every process.
        id: StreamId,
    },
    /// The entries an `XRANGE` read ([`Publisher::range`]), in order.
    Range {
        /// Who asked.
        token: u64,
        /// The entries, oldest first.
        entries: Vec<Entry>,
    },
    /// Redis refused the command (`-OOM ...`, `-ERR ...`): nothing was added.
    Refused {
        /// Who asked.
        token: u64,
        /// Redis' error text.
        reason: String,
    },
    /// The connection broke before the reply: Redis may have added the
    /// event or not. Answer `503`, saying the outcome is unknown; it is
    /// not sent again.
    OutcomeUnknown {
        /// Who asked.
        token: u64,
    },
    /// The connection is given up (after the publishes' own events):
    /// close the socket. The link retries at its backoff.
    Broken(LinkError),
}

/// A publish refused at once: the command connection is not ready. Answer
/// `503` with `Retry-After`; nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// When the link tries again, if it is waiting to: a hint for
    /// `Retry-After`.
    pub retry_at: Option<Instant>,
}

/// A command written and not answered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    token: u64,
    sent_at: Instant,
    /// An `XRANGE`, not an `XADD`.
    range: bool,
}

/// The command connection and the publishes in flight on it.
#[derive(Debug, Clone)]
pub struct Publisher {
    link: Link,
    stream: Vec<u8>,
    retention: u64,
    in_flight: VecDeque<InFlight>,
    last_round_trip: Option<Duration>,
}

impl Publisher {
    /// A publisher for `settings`, disconnected, its first attempt due at
    /// once; `seed` drives its backoff's jitter.
    pub fn new(settings: &Settings, seed: u64, now: Instant) -> Publisher {
        Publisher {
            link: Link::new(settings.db, seed, now),
            stream: settings.stream.clone(),
            retention: settings.retention,
            in_flight: VecDeque::new(),
            last_round_trip: None,
        }
    }

    /// The connection's state: [`Link::retry_due`], [`Link::retry_at`].
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The loop started to connect the socket ([`Link::connecting`]).
    pub fn connecting(&mut self) {
        self.link.connecting();
    }

    /// The socket is connected: appends the handshake to `out`.
    pub fn connected(&mut self, out: &mut Vec<u8>) {
        self.link.connected(out);
    }

    /// Appends to `out` the `XADD` of one event for `token`:
    /// `XADD <stream> MAXLEN ~ <retention> * topic .. [event ..] data ..`.
    /// Its outcome comes later from [`received`] or [`lost`]. Refused at
    /// once, with nothing written, unless the link is ready.
    ///
    /// [`received`]: Publisher::received
    /// [`lost`]: Publisher::lost
    pub fn publish(
        &mut self,
        token: u64,
        topic: &str,
        name: Option<&str>,
        data: &str,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), Unavailable> {
        self.ready()?;
        streams::xadd_event(&self.stream, self.retention, topic, name, data, out);
        self.sent(token, false, now);
        Ok(())
    }

    /// Appends to `out` an `XRANGE <stream> start end COUNT count` for
    /// `token`, answered by [`PublishEvent::Range`] in its turn. Refused at
    /// once, with nothing written, unless the link is ready.
    pub fn range(
        &mut self,
        token: u64,
        (start, end): (Bound<StreamId>, Bound<StreamId>),
        count: u64,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), Unavailable> {
        self.ready()?;
        streams::xrange(&self.stream, start, end, count, out);
        self.sent(token, true, now);
        Ok(())
    }

    /// Commands may be written only once the link is ready.
    fn ready(&self) -> Result<(), Unavailable> {
        match self.link.is_ready() {
            true => Ok(()),
            false => Err(Unavailable {
                retry_at: self.link.retry_at(),
            }),
        }
    }

    /// A command for `token` was written at `now`: its reply is next in
    /// line after those already in flight.
    fn sent(&mut self, token: u64, range: bool, now: Instant) {
        self.in_flight.push_back(InFlight {
            token,
            sent_at: now,
            range,
        });
    }

    /// When the oldest command in flight was written: a reply overdue
    /// means a connection that died without a word.
    pub fn oldest_sent(&self) -> Option<Instant> {
        self.in_flight.front().map(|sent| sent.sent_at)
    }

    /// How many publishes wait for their reply.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// From writing the last answered `XADD` to reading its reply.
    pub fn last_round_trip(&self) -> Option<Duration> {
        self.last_round_trip
    }

    /// What a read brought: the outcomes of the oldest publishes in flight,
    /// in order. A reply that breaks the connection ends the list with
    /// [`PublishEvent::Broken`], after an `OutcomeUnknown` for each
    /// publish still in flight.
    pub fn received(&mut self, bytes: &[u8], now: Instant) -> Vec<PublishEvent> {
        let mut replies = Vec::new();
        let result = self.link.received(bytes, now, &mut replies);
        let mut events = Vec::new();
        for reply in replies {
            match reply {
                LinkEvent::Ready => events.push(PublishEvent::Ready),
                LinkEvent::Reply(reply) => {
                    if let Err(error) = self.answer(reply, now, &mut events) {
                        let error = self.link.fail(now, error);
                        self.broken(error, &mut events);
                        return events;
                    }
                }
            }
        }
        if let Err(error) = result {
            self.broken(error, &mut events);
        }
        events
    }

    /// The connection is lost: every publish in flight gets
    /// [`PublishEvent::OutcomeUnknown`], and none is sent again.
    pub fn lost(&mut self, now: Instant) -> Vec<PublishEvent> {
        self.link.lost(now);
        self.in_flight
            .drain(..)
            .map(|sent| PublishEvent::OutcomeUnknown { token: sent.token })
            .collect()
    }

    /// The reply of the oldest publish in flight.
    fn answer(
        &mut self,
        reply: Reply,
        now: Instant,
        events: &mut Vec<PublishEvent>,
    ) -> Result<(), LinkError> {
        let Some(sent) = self.in_flight.front().copied() else {
            return Err(LinkError::Unexpected(ReplyError::Shape("a reply to no command")));
        };
        let token = sent.token;
        let parsed = match sent.range {
            true => streams::parse_xrange(reply).map(|entries| PublishEvent::Range { token, entries }),
            false => streams::parse_xadd(reply).map(|id| PublishEvent::Published { token, id }),
        };
        let event = match parsed {
            Ok(event) => event,
            Err(ReplyError::Redis(reason)) => PublishEvent::Refused { token, reason },
            // Not the reply's shape: whether an entry was added is unknown,
            // and the connection untrustworthy. Left in flight, `broken`
            // answers it.
            Err(other) => return Err(LinkError::Unexpected(other)),
        };
        if !sent.range {
            self.last_round_trip = Some(now.saturating_duration_since(sent.sent_at));
        }
        self.in_flight.pop_front();
        events.push(event);
        Ok(())
    }

    fn broken(&mut self, error: LinkError, events: &mut Vec<PublishEvent>) {
        let unknown = self.in_flight.drain(..);
        events.extend(unknown.map(|sent| PublishEvent::OutcomeUnknown { token: sent.token }));
        events.push(PublishEvent::Broken(error));
    }
}
