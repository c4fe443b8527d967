//! The application's side of the bus: what a publish, a stream and the
//! stream's events become when Redis carries them.
//!
//! With `--bus` nothing is published here. A publish becomes
//! [`Answer::Relay`]: the loop sends it to Redis and brings back what Redis
//! said ([`Service::relayed`]). Events arrive from the stream's tail, each
//! with the id Redis gave it, and go to the hub ([`Service::deliver`]) as a
//! local publish would: every process delivers the same events, in the same
//! order, under the same ids.
//!
//! A stream with a `Last-Event-ID` may need the bus before it can open:
//!
//! ```text
//!   history not read from Redis yet  ──▶ Park::Start     wait for it
//!   id newer than any read here      ──▶ Park::Newer(X)  another process is ahead:
//!                                                        wait for the tail to pass X
//!   id older than the local history  ──▶ Park::Fetch(X)  XRANGE X X (still there?),
//!                                                        then XRANGE (X + page by page
//! ```
//!
//! A fetched replay meets the local history at a seam: entries older than
//! the oldest event history holds are sent from what Redis returned, the
//! rest from the history, so nothing is sent twice and nothing is skipped.
//! If Redis no longer holds X, or the wait ran out, the stream starts with
//! `event: gap`, as it would without a bus.

use std::rc::Rc;

use log::warn;

use super::{Answer, Caller, Service};
use crate::bus::streams::Entry;
use crate::clock::Now;
use crate::frame::Frame;
use crate::http::{Framing, Rejection, Request, Response};
use crate::hub::{self, EventId, Located, Resume};
use crate::params::Subscribe;
use crate::routes::Route;
use crate::sse;
use crate::stats::BusFigures;
use crate::topics::Topics;

/// A publish on its way to Redis.
#[derive(Debug)]
pub struct Relay {
    /// The event's topic.
    pub topic: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// Its data.
    pub data: String,
    /// How to answer once Redis has.
    pub replying: Replying,
}

/// What a later answer needs of the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replying {
    /// The connection stays open afterwards.
    pub keep_alive: bool,
    /// The request was HTTP/1.0.
    pub http10: bool,
}

impl Replying {
    /// What answering `request` later needs.
    pub fn to(request: &Request) -> Replying {
        Replying {
            keep_alive: request.keep_alive,
            http10: request.http10,
        }
    }
}

/// What became of a relayed publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// Redis added it under this id.
    Published(EventId),
    /// Redis refused it (its error text, for the log).
    Refused(String),
    /// The connection broke before Redis answered.
    OutcomeUnknown,
    /// The bus is down; it tries again in about this many seconds.
    Unavailable {
        /// For `Retry-After`.
        retry_after: u64,
    },
}

/// What a stream waits for before it can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// The history has not been read from Redis yet.
    Start,
    /// The tail to read this id, which another process has delivered.
    Newer(EventId),
    /// Redis' entries after this id, older than the local history.
    Fetch(EventId),
}

/// What came of a wait ([`Park`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// What it waited for happened (the history is read, the tail passed
    /// the id): open as if it had been so all along.
    Passed,
    /// It did not happen in time.
    TimedOut,
    /// Redis' entries after the id, in order, up to the seam or beyond.
    Fetched(Vec<Entry>),
    /// Redis no longer holds the id (trimmed, lost), or could not be asked.
    Missing,
}

impl Service {
    /// True with `--bus`.
    pub fn has_bus(&self) -> bool {
        self.bus.is_some()
    }

    /// The bus's figures for `/stats`, `/metrics` and `/healthz`.
    pub fn set_bus_figures(&mut self, figures: BusFigures) {
        if let Some((current, _)) = &mut self.bus {
            *current = figures;
        }
    }

    /// The answer to a relayed publish: the id and how many subscribers
    /// of this process its topic has now, or a `503` that says why not.
    /// (`topic` and `replying` are what is kept of the [`Relay`] once its
    /// `XADD` is written: the data goes as soon as it is sent.)
    pub fn relayed(
        &mut self,
        topic: &str,
        replying: Replying,
        outcome: Relayed,
        now: Now,
    ) -> (Vec<u8>, bool) {
        let rejection = match outcome {
            Relayed::Published(id) => {
                let subscribers: usize = self
                    .hub
                    .views_of(topic)
                    .into_iter()
                    .filter_map(|view| self.hub.view(view))
                    .map(|view| view.members.len())
                    .sum();
                let json = format!("{{\"id\":\"{id}\",\"subscribers\":{subscribers}}}\n");
                return self.reply(replying, &Response::json(json), now);
            }
            Relayed::Refused(reason) => {
                warn!("bus: Redis refused a publish: {reason}");
                Rejection::BusRefused { retry_after: 1 }
            }
            Relayed::OutcomeUnknown => Rejection::OutcomeUnknown { retry_after: 1 },
            Relayed::Unavailable { retry_after } => Rejection::BusDown { retry_after },
        };
        self.reply(replying, &rejection.response(), now)
    }

    /// The local history, read from the stream at start: kept for replay,
    /// sent to nobody (no stream opens before it is read).
    pub fn fill_history(&mut self, entries: &[Entry]) {
        for entry in entries {
            self.append(entry);
        }
        if let Some((_, started)) = &mut self.bus {
            *started = true;
        }
    }

    /// An event read from the stream: appended to the views of its topic
    /// under its stream id. Returns how many subscribers it reaches.
    pub fn deliver(&mut self, entry: &Entry) -> usize {
        let audience = self.append(entry);
        self.counters.published += 1;
        self.counters.delivered += audience as u64;
        audience
    }

    /// Redis lost events after `last` (found at a reconnect): history can
    /// no longer vouch for what follows any id it holds, and every stream
    /// is told, with `event: gap`.
    pub fn lost(&mut self, last: EventId) -> Rc<Frame> {
        self.hub.forget_history();
        hub::gap(&last.to_string(), None)
    }

    /// The newest event read from the stream: what a parked stream waits
    /// for its tail to pass.
    pub fn newest(&self) -> Option<EventId> {
        self.hub.newest()
    }

    /// A fetched replay may stop at the first entry at or past this id:
    /// the history holds every event from there on. `None`: it must read
    /// to the end of the stream.
    pub fn replay_seam(&self) -> Option<EventId> {
        self.hub.oldest_retained().or(self.hub.newest())
    }

    /// Answers a stream request the loop kept while it waited on the bus
    /// ([`Answer::Park`]), with what came of it. One that waited for the
    /// history is handled afresh (it may have to wait again, for an id);
    /// if the history never came, it is told to come back later, as a
    /// stream over `--max-conns` is: an `EventSource` retries.
    pub fn resume(
        &mut self,
        request: &Request,
        caller: Caller,
        now: Now,
        park: Park,
        waited: Waited,
    ) -> Answer {
        match (park, waited) {
            (Park::Start, Waited::Passed) => self.handle(request, caller, now),
            (Park::Start, _) => self.turn_away(request, Route::Events, now),
            (_, waited) => self.open_stream(request, caller, now, Some(waited)),
        }
    }

    /// Where a stream starts in its view, and the events fetched from
    /// Redis to send before that; or what it must wait for first.
    pub(super) fn resume_point<'a>(
        &self,
        asked: &'a Subscribe,
        topics: &Topics,
        waited: Option<Waited>,
    ) -> Result<(Resume<'a>, Vec<Rc<Frame>>), Park> {
        let started = self.bus.is_none_or(|(_, started)| started);
        if !started && waited.is_none() {
            return Err(Park::Start);
        }
        let Some(text) = asked.last_event_id.as_deref() else {
            return Ok((Resume::Live, Vec::new()));
        };
        let bus = self.bus.is_some();
        let resume = match (self.hub.locate(text), waited) {
            (Located::Held(id), _) => Resume::After(id),
            (Located::Ahead(id), None) if bus => return Err(Park::Newer(id)),
            (Located::Behind(id), None) if bus => return Err(Park::Fetch(id)),
            (Located::Behind(id), Some(Waited::Fetched(entries))) => {
                return Ok(self.seamed(id, entries, topics));
            }
            _ => Resume::Gap(text),
        };
        Ok((resume, Vec::new()))
    }

    /// A replay from Redis' entries after `after`, up to where history
    /// takes over: the entries before the seam, encoded, and where in
    /// the view the stream goes on from.
    fn seamed<'a>(
        &self,
        after: EventId,
        entries: Vec<Entry>,
        topics: &Topics,
    ) -> (Resume<'a>, Vec<Rc<Frame>>) {
        let seam = self.hub.oldest_retained();
        let mut last = after;
        let mut frames = Vec::new();
        for entry in entries {
            let before_seam = match seam {
                Some(seam) => entry.id < seam,
                None => self.hub.newest().is_some_and(|newest| entry.id <= newest),
            };
            if !before_seam {
                break;
            }
            last = entry.id;
            let Ok(event) = entry.to_event() else { continue };
            if !topics.matches(event.topic) {
                continue;
            }
            let id = entry.id.to_string();
            if let Ok(encoded) = sse::encode_event(Some(&id), event.name, event.data) {
                frames.push(Frame::chunk(&encoded));
            }
        }
        (Resume::After(last), frames)
    }

    fn append(&mut self, entry: &Entry) -> usize {
        match entry.to_event() {
            Ok(event) => match self.hub.append(entry.id, event.topic, event.name, event.data) {
                Ok(audience) => audience,
                Err(error) => {
                    warn!("bus: entry {} skipped: {error}", entry.id);
                    0
                }
            },
            Err(error) => {
                warn!("bus: entry {} skipped: {error}", entry.id);
                0
            }
        }
    }

    /// A complete response to a request answered later.
    fn reply(&mut self, replying: Replying, response: &Response, now: Now) -> (Vec<u8>, bool) {
        let keep_alive = replying.keep_alive && !self.shutting_down;
        let framing = Framing {
            head_only: false,
            keep_alive,
            http10: replying.http10,
            cors_origin: self.config.cors_origin.as_deref(),
        };
        (response.encode(framing, self.date.at(now.wall)), keep_alive)
    }
}
