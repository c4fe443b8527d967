//! Connections waiting on the bus, and what wakes them.
//!
//! ```text
//!   Answer::Relay ──▶ XADD, token t ──▶ Waiter::Publish   ─▶ 200 {"id":"<ms>-<seq>"} / 503
//!   Park::Fetch   ──▶ XRANGE X X, t ──▶ Waiter::Fetch      ─▶ XRANGE (last + COUNT n ... ─▶ open
//!   Park::Start   ──────────────────▶ Parked until the history is read  ─▶ handled afresh
//!   Park::Newer   ──────────────────▶ Parked until the tail passes X    ─▶ open
//! ```
//!
//! A waiter names its connection by slab key *and* connection id: the slot
//! may have closed and been taken by another connection meanwhile, which
//! must not get someone else's answer.

use std::ops::Bound::{Excluded, Included, Unbounded};
use std::time::Instant;

use log::warn;

use super::{PARK_OUTAGE, PARK_WAIT};
use crate::bus::link::PublishEvent;
use crate::bus::streams::Entry;
use crate::clock::Now;
use crate::http::Request;
use crate::hub::EventId;
use crate::server::Server;
use crate::service::{Caller, Park, Relay, Relayed, Replying, Waited};

/// Bytes of commands waiting for Redis to read them past which publishes
/// are refused (`503`) as if the bus were down.
pub(super) const MOST_UNSENT: usize = 16 * 1024 * 1024;
/// `XRANGE ... COUNT` of one page of a fetched replay.
const PAGE: u64 = 512;
/// Most entries one fetched replay holds; past that, the stream gets the
/// gap (and the retained history) instead of a replay of unbounded size.
const MOST_FETCHED: usize = 100_000;

/// Who is waiting for a reply on the command connection.
#[derive(Debug)]
pub enum Waiter {
    /// A publish, for its answer.
    Publish {
        /// The connection's slab key.
        key: usize,
        /// Its id: the slot may have been reused.
        conn: u64,
        /// The event's topic (its data is gone with the `XADD`).
        topic: String,
        /// How to answer.
        replying: Replying,
    },
    /// A stream, for the entries after its `Last-Event-ID`.
    Fetch {
        /// The connection's slab key.
        key: usize,
        /// Its id.
        conn: u64,
        /// The request, answered when the fetch is done.
        request: Box<Request>,
        /// The id the client sent.
        after: EventId,
        /// `XRANGE X X` found it: pages are being read.
        found: bool,
        /// The entries read so far.
        entries: Vec<Entry>,
    },
}

/// A stream waiting for the tail.
#[derive(Debug)]
pub struct Parked {
    /// The connection's slab key.
    pub key: usize,
    /// Its id.
    pub conn: u64,
    /// The request, answered when the wait is over.
    pub request: Box<Request>,
    /// What it waits for.
    pub park: Park,
    /// When it stops waiting.
    pub deadline: Instant,
    /// When it began to wait.
    pub since: Instant,
}

impl Server {
    /// Sends a publish to Redis; it is answered when Redis replies. With
    /// the bus down it is answered at once: `503`, try again.
    pub(in crate::server) fn relay(&mut self, key: usize, relay: Relay, now: Now) {
        let Some(conn) = self.conns.get(key).map(|slot| slot.conn.id) else {
            return;
        };
        let Some(bus) = &mut self.bus else { return };
        let token = bus.token();
        let (publisher, out) = bus.publisher();
        // Redis not reading what is sent to it is an outage too; the
        // bytes waiting for it stay bounded.
        let sent = if out.len() > MOST_UNSENT {
            Err(())
        } else {
            publisher
                .publish(
                    token,
                    &relay.topic,
                    relay.name.as_deref(),
                    &relay.data,
                    now.instant,
                    out,
                )
                .map_err(|_| ())
        };
        match sent {
            Ok(()) => {
                let (topic, replying) = (relay.topic, relay.replying);
                bus.waiters.insert(
                    token,
                    Waiter::Publish {
                        key,
                        conn,
                        topic,
                        replying,
                    },
                );
                if let Some(slot) = self.conns.get_mut(key) {
                    slot.relays += 1;
                }
            }
            Err(_) => {
                let retry_after = bus.retry_after(now.instant);
                let outcome = Relayed::Unavailable { retry_after };
                let (bytes, keep_alive) = self.service.relayed(&relay.topic, relay.replying, outcome, now);
                self.send(key, bytes, keep_alive);
            }
        }
    }

    /// Sends an event that nobody waits on (a `--stdin` line, an
    /// embedder's publish). False when the bus is down: nothing was sent.
    pub(in crate::server) fn relay_unanswered(
        &mut self,
        topic: &str,
        name: Option<&str>,
        data: &str,
        now: Now,
    ) -> bool {
        let Some(bus) = &mut self.bus else { return false };
        let token = bus.token();
        let (publisher, out) = bus.publisher();
        publisher
            .publish(token, topic, name, data, now.instant, out)
            .is_ok()
    }

    /// A stream that must wait on the bus before it opens.
    pub(in crate::server) fn park(&mut self, key: usize, request: Request, park: Park, now: Now) {
        let Some(conn) = self.conns.get(key).map(|slot| slot.conn.id) else {
            return;
        };
        let Some(bus) = &mut self.bus else { return };
        let request = Box::new(request);
        match park {
            Park::Fetch(after) => {
                let token = bus.token();
                let (publisher, out) = bus.publisher();
                if publisher
                    .range(token, (Included(after), Included(after)), 1, now.instant, out)
                    .is_err()
                {
                    return self.resume_parked(key, conn, &request, park, Waited::Missing, now);
                }
                let waiter = Waiter::Fetch {
                    key,
                    conn,
                    request,
                    after,
                    found: false,
                    entries: Vec::new(),
                };
                bus.waiters.insert(token, waiter);
            }
            Park::Start | Park::Newer(_) => bus.parked.push(Parked {
                key,
                conn,
                request,
                park,
                deadline: now.instant + PARK_WAIT,
                since: now.instant,
            }),
        }
        self.set_parked(key, true);
    }

    /// A reply to a waiter's command.
    pub(in crate::server) fn on_reply(&mut self, event: PublishEvent, now: Now) {
        let (token, outcome) = match event {
            PublishEvent::Published { token, id } => (token, Ok(Ok(id))),
            PublishEvent::Range { token, entries } => (token, Ok(Err(entries))),
            PublishEvent::Refused { token, reason } => (token, Err(Relayed::Refused(reason))),
            PublishEvent::OutcomeUnknown { token } => (token, Err(Relayed::OutcomeUnknown)),
            PublishEvent::Ready | PublishEvent::Broken(_) => return,
        };
        let Some(waiter) = self.bus.as_mut().and_then(|bus| bus.waiters.remove(&token)) else {
            if let Err(failed) = outcome {
                warn!("bus: an event nobody waits on was not published: {failed:?}");
            }
            return;
        };
        match (waiter, outcome) {
            (
                Waiter::Publish {
                    key,
                    conn,
                    topic,
                    replying,
                },
                outcome,
            ) => {
                let outcome = match outcome {
                    Ok(Ok(id)) => Relayed::Published(id),
                    Ok(Err(_)) => Relayed::OutcomeUnknown,
                    Err(failed) => failed,
                };
                let Some(slot) = self.conns.get_mut(key).filter(|slot| slot.conn.id == conn) else {
                    return;
                };
                slot.relays = slot.relays.saturating_sub(1);
                let last = slot.relays == 0;
                let (bytes, keep_alive) = self.service.relayed(&topic, replying, outcome, now);
                self.send(key, bytes, keep_alive);
                if last {
                    self.relays_answered(key, now);
                }
            }
            (
                Waiter::Fetch {
                    key,
                    conn,
                    request,
                    after,
                    found,
                    mut entries,
                },
                Ok(Err(page)),
            ) => {
                let last = page.last().map(|entry| entry.id);
                let full = page.len() as u64 >= PAGE;
                let seam = self.service.replay_seam();
                if !found {
                    // The answer to `XRANGE X X`: is X still there?
                    if page.is_empty() {
                        return self.resume_parked(
                            key,
                            conn,
                            &request,
                            Park::Fetch(after),
                            Waited::Missing,
                            now,
                        );
                    }
                } else {
                    entries.extend(page);
                }
                let done = found && (!full || last.zip(seam).is_some_and(|(last, seam)| last >= seam));
                if done {
                    return self.resume_parked(
                        key,
                        conn,
                        &request,
                        Park::Fetch(after),
                        Waited::Fetched(entries),
                        now,
                    );
                }
                if entries.len() > MOST_FETCHED {
                    return self.resume_parked(key, conn, &request, Park::Fetch(after), Waited::Missing, now);
                }
                let from = if found { last.unwrap_or(after) } else { after };
                self.fetch_page(key, conn, request, after, entries, from, now);
            }
            (
                Waiter::Fetch {
                    key,
                    conn,
                    request,
                    after,
                    ..
                },
                _,
            ) => self.resume_parked(key, conn, &request, Park::Fetch(after), Waited::Missing, now),
        }
    }

    /// Asks for the page of entries after `from`.
    #[allow(clippy::too_many_arguments)]
    fn fetch_page(
        &mut self,
        key: usize,
        conn: u64,
        request: Box<Request>,
        after: EventId,
        entries: Vec<Entry>,
        from: EventId,
        now: Now,
    ) {
        let Some(bus) = &mut self.bus else { return };
        let token = bus.token();
        let (publisher, out) = bus.publisher();
        if publisher
            .range(token, (Excluded(from), Unbounded), PAGE, now.instant, out)
            .is_err()
        {
            return self.resume_parked(key, conn, &request, Park::Fetch(after), Waited::Missing, now);
        }
        let waiter = Waiter::Fetch {
            key,
            conn,
            request,
            after,
            found: true,
            entries,
        };
        bus.waiters.insert(token, waiter);
    }

    /// Wakes the parked streams whose wait is over: all that waited for
    /// the history once it is read, those that waited for an id the tail
    /// has now passed.
    pub(in crate::server) fn wake_parked(&mut self, now: Now, history_read: bool) {
        let newest = self.service.newest();
        self.resume_parked_where(now, Waited::Passed, |parked| match parked.park {
            Park::Start => history_read,
            Park::Newer(id) => newest.is_some_and(|newest| newest >= id),
            Park::Fetch(_) => true,
        });
    }

    /// Parked streams whose wait ran out. One waiting for an id while the
    /// tail is down waits on, up to [`PARK_OUTAGE`]: the tail cannot pass
    /// the id before Redis is back, and giving up would send the client
    /// the gap and then events it already has.
    pub(in crate::server) fn expire_parked(&mut self, now: Now) {
        let Some(bus) = &mut self.bus else { return };
        if !bus.parked.iter().any(|parked| parked.deadline <= now.instant) {
            return;
        }
        let tail_down = !bus.tail_ready();
        for parked in &mut bus.parked {
            let newer = matches!(parked.park, Park::Newer(_));
            if newer
                && tail_down
                && parked.deadline <= now.instant
                && now.instant < parked.since + PARK_OUTAGE
            {
                parked.deadline = now.instant + PARK_WAIT;
            }
        }
        self.resume_parked_where(now, Waited::TimedOut, |parked| parked.deadline <= now.instant);
    }

    /// Takes the parked streams `done` picks out of the list and answers
    /// each with `waited`.
    fn resume_parked_where(&mut self, now: Now, waited: Waited, done: impl Fn(&Parked) -> bool) {
        let Some(bus) = &mut self.bus else { return };
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut bus.parked)
            .into_iter()
            .partition(|parked| done(parked));
        bus.parked = waiting;
        for parked in ready {
            let (key, conn, park) = (parked.key, parked.conn, parked.park);
            self.resume_parked(key, conn, &parked.request, park, waited.clone(), now);
        }
    }

    /// Answers a stream request that waited, if its connection is still
    /// the one that asked, and reads on.
    fn resume_parked(
        &mut self,
        key: usize,
        conn: u64,
        request: &Request,
        park: Park,
        waited: Waited,
        now: Now,
    ) {
        let Some(slot) = self.conns.get(key).filter(|slot| slot.conn.id == conn) else {
            return;
        };
        let caller = Caller {
            client: slot.conn.id,
            over_capacity: slot.conn.over_capacity,
        };
        self.set_parked(key, false);
        let answer = self.service.resume(request, caller, now, park, waited);
        self.apply(key, request, answer, now);
        if self.conns.get(key).is_some_and(|slot| !slot.parked) {
            self.drive(key, now);
        }
    }

    /// Marks the connection as waiting on the bus, or done waiting.
    pub(in crate::server) fn set_parked(&mut self, key: usize, parked: bool) {
        if let Some(slot) = self.conns.get_mut(key) {
            slot.parked = parked;
        }
    }
}
