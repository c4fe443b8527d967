//! The application: a parsed request in, an [`Answer`] out.
//!
//! The service owns what the daemon *is*: the hub (topics, subscribers,
//! ids, history), the counters and the configuration. It never sees a
//! socket, `mio` or the slab of connections. The event loop (`server.rs`)
//! hands it each request with a little about who sent it ([`Caller`]),
//! and applies the answer, which is plain data:
//!
//! ```text
//!   Request ──▶ Service::handle ──▶ Answer::Respond  bytes, then keep alive or close
//!                                   Answer::Publish  bytes; an event was appended
//!                                                    to the views of its topic
//!                                   Answer::Stream   head and first frames, and the
//!                                                    view and cursor to read from
//! ```
//!
//! Whatever its source (HTTP, `--stdin`, an embedding program), an event is
//! published in one place ([`Service::publish`]): encoded once, appended
//! once to each view of the shared log that carries its topic. The loop
//! then writes each view's new bytes to its readers. Ticks are not kept:
//! [`Service::tick`] gives the loop a frame for every reader of the views
//! that carry the `tick` topic.

use std::rc::Rc;
use std::time::SystemTime;

use log::debug;

mod access;
mod bus;
mod fixed;

pub use fixed::PAGE;
use fixed::{no_store, page, preflight};

pub use bus::{Park, Relay, Relayed, Replying, Waited};

use crate::clock::{self, HttpDate, Now};
use crate::config::Config;
use crate::frame::Frame;
use crate::http::response::stream_head;
use crate::http::{Framing, Method, Rejection, Request, Response};
use crate::hub::{self, EventId, Hub, Key, Moved, ViewId};
use crate::log::{Offset, View};
use crate::params;
use crate::rng::Rng;
use crate::routes::{self, Route};
use crate::sse::{self, EncodeError};
use crate::stats::{BusFigures, Counters, Snapshot};
use access::Publisher;

/// Most names and patterns `/topics` lists.
const MAX_TOPICS_LISTED: usize = 1000;

/// What the application knows of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The connection's number, sent to a subscriber in `connected`.
    pub client: u64,
    /// Accepted over `--max-conns`: it is turned away, politely.
    pub over_capacity: bool,
}

/// What the loop does with a request.
#[derive(Debug)]
pub enum Answer {
    /// Send `bytes`; then read the next request, or close.
    Respond {
        /// The whole response.
        bytes: Vec<u8>,
        /// Whether the connection stays open for another request.
        keep_alive: bool,
    },
    /// Send `bytes`; an event was published (its views have new bytes).
    Publish {
        /// The whole response.
        bytes: Vec<u8>,
        /// Whether the connection stays open for another request.
        keep_alive: bool,
    },
    /// Become an event stream.
    Stream(OpenStream),
    /// With `--bus`: send the event to Redis (`XADD`), and answer the
    /// request with what Redis says ([`Service::relayed`]).
    Relay(Relay),
    /// With `--bus`: the stream cannot open before the bus tells more
    /// ([`Park`]); the loop keeps the request, and hands it back to
    /// [`Service::resume`] with what it learned.
    Park(Park),
}

/// A stream about to open: what it sends first, and where it reads.
#[derive(Debug)]
pub struct OpenStream {
    /// The response head, the greeting, then any `gap`, in order.
    pub frames: Vec<Rc<Frame>>,
    /// The view of the shared log it reads.
    pub view: ViewId,
    /// Where it starts reading: the head, or set back for replay.
    pub cursor: Offset,
    /// The view's head now: where its replay ends and live events begin.
    pub joined: Offset,
    /// HTTP/1.1: framed in chunks. HTTP/1.0: delimited by the close.
    pub chunked: bool,
    /// When its token expires (seconds since the epoch): it is sent
    /// `event: reauth` 30 s before ([`Service::reauth`]) and closed then.
    pub expires: Option<u64>,
}

/// The application. See the module docs.
#[derive(Debug)]
pub struct Service {
    config: Config,
    hub: Hub,
    counters: Counters,
    date: HttpDate,
    rng: Rng,
    ping: Rc<Frame>,
    shutting_down: bool,
    /// With `--bus`: how the bus is doing, and whether the history has
    /// been read from it yet.
    bus: Option<(BusFigures, bool)>,
}

impl Service {
    /// A service whose ids start at `now`'s wall-clock time in microseconds.
    pub fn new(config: Config, now: Now) -> Self {
        let first_id = clock::unix_micros(now.wall);
        let (hub, bus) = match config.bus {
            None => (Hub::new(first_id, config.history), None),
            Some(_) => (Hub::for_bus(config.history), Some((BusFigures::default(), false))),
        };
        Service {
            hub,
            bus,
            counters: Counters::new(now.instant),
            date: HttpDate::default(),
            rng: Rng::seeded(first_id),
            ping: Frame::chunk(sse::PING),
            shutting_down: false,
            config,
        }
    }

    /// Answers one request.
    pub fn handle(&mut self, request: &Request, caller: Caller, now: Now) -> Answer {
        let route = match routes::route(request.method, request.path()) {
            Ok(route) => route,
            Err(rejection) => return self.refuse(rejection, Some(request), now),
        };
        if caller.over_capacity {
            return self.turn_away(request, route, now);
        }
        let response = match route {
            Route::Page => page(),
            Route::Health => match self.bus {
                Some((figures, _)) if !figures.connected => Response::text(503, "bus down\n"),
                _ => Response::text(200, "ok\n"),
            },
            Route::Stats => no_store(Response::json(self.snapshot(now).json())),
            Route::Metrics => no_store(Response::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.snapshot(now).prometheus().into_bytes(),
            )),
            Route::Preflight => preflight(),
            Route::Topics => match self.check_publisher(request, now) {
                Ok(()) => no_store(Response::json(self.topics_json())),
                Err(rejection) => return self.refuse(rejection, Some(request), now),
            },
            Route::Events => return self.open_stream(request, caller, now, None),
            Route::Publish | Route::Broadcast => return self.publish_request(request, route, now),
        };
        self.respond(request, &response, request.keep_alive, now)
    }

    /// Answers with a refusal; `request` is `None` when not even its head
    /// could be read (the answer then says only what every client reads).
    pub fn refuse(&mut self, rejection: Rejection, request: Option<&Request>, now: Now) -> Answer {
        debug!("refused: {} {}", rejection.status(), rejection.message());
        let response = rejection.response();
        match request {
            Some(request) => {
                let keep_alive = request.keep_alive && !rejection.closes();
                self.respond(request, &response, keep_alive, now)
            }
            None => {
                let framing = Framing {
                    head_only: false,
                    keep_alive: false,
                    http10: false,
                    cors_origin: self.config.cors_origin.as_deref(),
                };
                Answer::Respond {
                    bytes: response.encode(framing, self.date.at(now.wall)),
                    keep_alive: false,
                }
            }
        }
    }

    /// Publishes one event: the one place every publish goes through, from
    /// HTTP, `--stdin` or an embedding program. The hub assigns the id,
    /// encodes the event once and appends it to every view of its topic.
    /// Returns the id and how many subscribers it reaches. (With `--bus`
    /// the loop sends events to Redis instead, and [`Service::deliver`]s
    /// what it reads back.)
    pub fn publish(
        &mut self,
        topic: &str,
        name: Option<&str>,
        data: &str,
    ) -> Result<(EventId, usize), EncodeError> {
        let (id, audience) = self.hub.publish(topic, name, data)?;
        self.counters.published += 1;
        self.counters.delivered += audience as u64;
        Ok((id, audience))
    }

    /// One line of `--stdin`, published to its topic.
    pub fn publish_line(&mut self, line: &str) -> Option<EventId> {
        let topic = self.config.stdin_topic.clone()?;
        self.publish(&topic, None, line).ok().map(|(id, _)| id)
    }

    /// `--stdin`'s topic.
    pub fn stdin_topic(&self) -> Option<&str> {
        self.config.stdin_topic.as_deref()
    }

    /// A tick: `event: tick` with the time. Ticks have no id and are not
    /// kept, so a browser's last event id stays the last published one, and
    /// a replay never sends an old tick: the loop queues the frame for every
    /// reader of [`Service::views_of`] the `tick` topic.
    pub fn tick(&mut self, wall: SystemTime) -> Rc<Frame> {
        let data = clock::rfc3339(wall);
        // A fixed name and no id: nothing to refuse.
        let encoded = sse::encode_event(None, Some("tick"), &data).unwrap_or_default();
        Frame::chunk(&encoded)
    }

    /// The heartbeat comment, framed once for everyone.
    pub fn ping(&self) -> &Rc<Frame> {
        &self.ping
    }

    /// From now on every answer closes its connection.
    pub fn shut_down(&mut self) {
        self.shutting_down = true;
    }

    /// A stream's last words at shutdown: come back after `--retry` plus a
    /// random spread of up to five times as much, so that clients do not
    /// all return in the same instant.
    pub fn farewell(&mut self) -> Rc<Frame> {
        let retry = self.config.retry_ms;
        let spread = self.rng.between(0, retry.saturating_mul(5));
        Frame::chunk(&sse::encode_retry(retry.saturating_add(spread)))
    }

    /// The answer to a connection over every limit, sent without reading
    /// its request.
    pub fn overloaded(&mut self, now: Now) -> Vec<u8> {
        match self.refuse(Rejection::Overloaded { retry_after: 5 }, None, now) {
            Answer::Respond { bytes, .. } => bytes,
            _ => Vec::new(),
        }
    }

    /// The stream under `key` reads `view` from now on; returns its place
    /// in the view's member list.
    pub fn join(&mut self, view: ViewId, key: Key) -> u32 {
        self.hub.join(view, key)
    }

    /// The stream at `member` of `view` has ended. Returns the reader that
    /// took its place in the list, whose connection must be told.
    pub fn leave(&mut self, view: ViewId, member: u32) -> Option<Moved> {
        self.hub.leave(view, member)
    }

    /// A view of the shared log.
    pub fn view(&self, view: ViewId) -> Option<&View> {
        self.hub.view(view)
    }

    /// Where the next event of a stream's view will go (0 for a connection
    /// that reads no view): where a tick, a ping or the farewell is queued
    /// so that it follows every event the stream was already sent.
    pub fn head_of(&self, view: Option<(ViewId, u32)>) -> Offset {
        view.and_then(|(view, _)| self.hub.view(view))
            .map_or(0, |view| view.log.head())
    }

    /// A view, to record a flush or trim it.
    pub fn view_mut(&mut self, view: ViewId) -> Option<&mut View> {
        self.hub.view_mut(view)
    }

    /// The views with events not yet written to their readers, taken.
    pub fn take_dirty_views(&mut self) -> Vec<ViewId> {
        self.hub.take_dirty()
    }

    /// The views with events not yet written to their readers.
    pub fn dirty_views(&self) -> &[ViewId] {
        self.hub.dirty()
    }

    /// The views that carry `topic`, once each.
    pub fn views_of(&self, topic: &str) -> Vec<ViewId> {
        self.hub.views_of(topic)
    }

    /// The counters, for the loop to count what it does.
    pub fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// Current figures for `/stats` and `/metrics`.
    pub fn snapshot(&self, now: Now) -> Snapshot {
        Snapshot {
            connections: self.counters.connections,
            subscribers: self.hub.subscriber_count(),
            history: self.hub.history_len(),
            uptime_s: now.instant.duration_since(self.counters.started).as_secs(),
            counters: self.counters,
            bus: self.bus.map(|(figures, _)| figures),
        }
    }

    /// `{"topics":[{"topic":"news","subscribers":3},...]}`: at most 1000
    /// names and patterns, the most held first.
    fn topics_json(&self) -> String {
        let mut json = String::from("{\"topics\":[");
        for (index, (item, count)) in self.hub.presence(MAX_TOPICS_LISTED).iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            json.push_str(&format!(
                "{{\"topic\":{},\"subscribers\":{count}}}",
                hub::json_string(item)
            ));
        }
        json.push_str("]}\n");
        json
    }

    /// `GET /events`: the stream head, `retry:` and `connected`, then any
    /// replay. `HEAD /events` gets the head alone. With `--bus` the stream
    /// may have to wait for the bus first ([`Answer::Park`]); `waited` is
    /// what came of that.
    fn open_stream(&mut self, request: &Request, caller: Caller, now: Now, waited: Option<Waited>) -> Answer {
        let asked = match params::subscription(request) {
            Ok(asked) => asked,
            Err(rejection) => return self.refuse(rejection, Some(request), now),
        };
        let (topics, expires) = match self.config.jwt_secret.is_some() {
            false => (asked.topics.clone(), None),
            true => match self
                .grant(request, now)
                .and_then(|grant| Ok((self.scope(&asked, &grant)?, grant)))
            {
                Ok((topics, grant)) => {
                    if let Some(subject) = &grant.subject {
                        debug!("#{} token of {subject:?}", caller.client);
                    }
                    (topics, grant.expires)
                }
                Err(rejection) => return self.refuse(rejection, Some(request), now),
            },
        };
        let head = stream_head(
            request.http10,
            self.config.cors_origin.as_deref(),
            self.date.at(now.wall),
        );
        if request.method == Method::Head {
            let keep_alive = request.keep_alive && !self.shutting_down;
            return Answer::Respond {
                bytes: head,
                keep_alive,
            };
        }
        let chunked = !request.http10;
        let (resume, replayed) = match self.resume_point(&asked, &topics, waited) {
            Ok(found) => found,
            Err(park) => return Answer::Park(park),
        };
        let opening = self.hub.open_at(&topics, chunked, resume);
        let mut frames = vec![
            Frame::raw(head),
            Frame::chunk(&sse::greeting(self.config.retry_ms, caller.client)),
        ];
        frames.extend(opening.gap);
        frames.extend(replayed);
        debug!("#{} subscribed", caller.client);
        Answer::Stream(OpenStream {
            frames,
            view: opening.view,
            cursor: opening.cursor,
            joined: opening.joined,
            chunked,
            expires,
        })
    }

    /// `POST /publish` and `GET /broadcast`: checked, published, answered
    /// with the id and how many subscribers it reaches.
    fn publish_request(&mut self, request: &Request, route: Route, now: Now) -> Answer {
        let publisher = match self.publisher(request, now) {
            Ok(publisher) => publisher,
            Err(rejection) => return self.refuse(rejection, Some(request), now),
        };
        let checked = match params::publish(request, route == Route::Broadcast) {
            Ok(checked) => checked,
            Err(rejection) => return self.refuse(rejection, Some(request), now),
        };
        if let Publisher::Grant(grant) = &publisher {
            if !grant.may_publish(&checked.topic) {
                let rejection = Rejection::Forbidden("the token does not cover this topic");
                return self.refuse(rejection, Some(request), now);
            }
        }
        if request.method == Method::Head {
            // HEAD must not change anything: say what GET would.
            return self.respond(request, &Response::json(String::new()), request.keep_alive, now);
        }
        if self.bus.is_some() {
            return Answer::Relay(Relay {
                topic: checked.topic,
                name: checked.name,
                data: checked.data,
                replying: Replying::to(request),
            });
        }
        match self.publish(&checked.topic, checked.name.as_deref(), &checked.data) {
            Ok((id, subscribers)) => {
                let json = format!(
                    "{{\"id\":{},\"subscribers\":{subscribers}}}\n",
                    self.hub.style().json(id)
                );
                match self.respond(request, &Response::json(json), request.keep_alive, now) {
                    Answer::Respond { bytes, keep_alive } => Answer::Publish { bytes, keep_alive },
                    other => other,
                }
            }
            Err(error) => {
                debug!("publish refused: {error}");
                let rejection = Rejection::BadRequest("event cannot be encoded");
                self.refuse(rejection, Some(request), now)
            }
        }
    }

    /// Over `--max-conns`: a stream request gets `200` with only a long,
    /// random `retry:` (an `EventSource` treats any other status as final
    /// and would never come back); anything else gets `503`.
    fn turn_away(&mut self, request: &Request, route: Route, now: Now) -> Answer {
        if route == Route::Events {
            let retry = self.rng.between(5_000, 30_000);
            let mut bytes = stream_head(true, self.config.cors_origin.as_deref(), self.date.at(now.wall));
            bytes.extend_from_slice(Frame::chunk(&sse::encode_retry(retry)).chunked());
            Answer::Respond {
                bytes,
                keep_alive: false,
            }
        } else {
            let retry_after = self.rng.between(5, 30);
            self.refuse(Rejection::Overloaded { retry_after }, Some(request), now)
        }
    }

    /// A complete response; one that ends the connection says so.
    fn respond(&mut self, request: &Request, response: &Response, keep_alive: bool, now: Now) -> Answer {
        let keep_alive = keep_alive && !self.shutting_down;
        let framing = Framing {
            head_only: request.method == Method::Head,
            keep_alive,
            http10: request.http10,
            cors_origin: self.config.cors_origin.as_deref(),
        };
        let bytes = response.encode(framing, self.date.at(now.wall));
        Answer::Respond { bytes, keep_alive }
    }
}
