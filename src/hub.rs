//! The hub: the global event id, the views of the shared log and who reads
//! each, and `Last-Event-ID` replay.
//!
//! The hub never touches a socket. Subscribers are named by a [`Key`] (the
//! loop's slab key); the hub says which view each reads and where in it,
//! and the loop writes the bytes.
//!
//! # Publishing
//!
//! ```text
//!   publish("news", ...) ──▶ encode once, frame once ──▶ append to every view
//!                                                         that carries "news":
//!       views:  [every topic, chunked]  ◀── always there: the history
//!               [every topic, HTTP/1.0]     (while someone reads it)
//!               [news]                      (while someone reads it)
//!               [news, sport]               (while someone reads it)
//!               [news/*]                    (while someone reads it)
//! ```
//!
//! Finding the views costs nothing that grows with the number of names or
//! patterns held: views of names are found by the topic, views of patterns
//! by each prefix of the topic up to a `/` (`a/b/c` looks up `a/*` and
//! `a/b/*`), and views of every topic are few.
//!
//! The view of every topic, chunked, always exists, subscribers or not:
//! its log's tail *is* the history ring, and a view created later is filled
//! from it. Each view keeps the events history keeps, so a reconnecting
//! subscriber's replay is its cursor set back in its own view's log, with
//! nothing copied.
//!
//! # Ids
//!
//! Without the bus the hub counts ids itself; with it, they are the ids
//! Redis gave the events in the shared stream (`hub/ids.rs`, [`IdStyle`]).
//!
//! # Replay
//!
//! ```text
//!   first_id            oldest retained          newest   next_id
//!      |---- evicted ----|====== history ======|        |
//!                    n ──┘  client's Last-Event-ID: we hold every event after
//!                           n only if first_id <= n < next_id and n+1 >= oldest
//! ```
//!
//! ([`Hub::locate`] says where an id lies, with the bus too.)
//!
//! When we cannot vouch for every event after `n`, the stream starts with an
//! `event: gap` that says so, then every retained event of its topics:
//! nothing is ever lost silently.

use std::collections::HashMap;
use std::rc::Rc;

use slab::Slab;

use crate::frame::{self, Frame};
use crate::log::{Offset, View};
use crate::sse::{self, EncodeError};
use crate::topics::{self, Topics};

mod ids;
mod replay;

pub use ids::{EventId, IdStyle, Located};
pub use replay::{gap, Resume};

/// A subscriber, named by its connection's slab key.
pub type Key = usize;

/// A view, named by its slot in the hub.
pub type ViewId = usize;

/// The view of every topic, chunk-framed: the history.
pub const HISTORY: ViewId = 0;

/// Where a new stream starts reading.
#[derive(Debug)]
pub struct Opening {
    /// The view it reads.
    pub view: ViewId,
    /// Where in the view's log it starts: the head, or set back for replay.
    pub cursor: Offset,
    /// The view's head now: where its replay ends.
    pub joined: Offset,
    /// `event: gap`, when the hub cannot vouch for every missed event.
    pub gap: Option<Rc<Frame>>,
}

/// A subscriber that moved in its view's member list when another left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// The subscriber.
    pub key: Key,
    /// Its new place in the list.
    pub member: u32,
}

/// Ids, views and who reads them.
#[derive(Debug)]
pub struct Hub {
    style: IdStyle,
    /// The first id counted (without the bus).
    first_id: u64,
    /// The next id counted (without the bus).
    next_id: u64,
    /// The id of the last event appended.
    newest: Option<EventId>,
    history_limit: usize,
    views: Slab<View>,
    by_filter: HashMap<(Topics, bool), ViewId>,
    /// Views of every topic.
    everything: Vec<ViewId>,
    /// Views of named topics, under each topic they carry.
    by_topic: HashMap<Rc<str>, Vec<ViewId>>,
    /// Views of patterns, under each pattern's prefix (`news/` for
    /// `news/*`).
    by_prefix: HashMap<Rc<str>, Vec<ViewId>>,
    /// How many streams hold each name or pattern (`*` for every topic).
    presence: HashMap<Rc<str>, usize>,
    /// Views with events their members have not been written yet.
    dirty: Vec<ViewId>,
    subscribers: usize,
}

impl Hub {
    /// A hub that counts its ids from `first_id`, the process start time
    /// in microseconds.
    pub fn new(first_id: u64, history_limit: usize) -> Self {
        Hub::with_style(IdStyle::Counter, first_id, history_limit)
    }

    /// A hub whose ids are given by the bus ([`Hub::append`]).
    pub fn for_bus(history_limit: usize) -> Self {
        Hub::with_style(IdStyle::Stream, 0, history_limit)
    }

    fn with_style(style: IdStyle, first_id: u64, history_limit: usize) -> Self {
        let mut hub = Hub {
            style,
            newest: None,
            first_id,
            next_id: first_id,
            history_limit,
            views: Slab::new(),
            by_filter: HashMap::new(),
            everything: Vec::new(),
            by_topic: HashMap::new(),
            by_prefix: HashMap::new(),
            presence: HashMap::new(),
            dirty: Vec::new(),
            subscribers: 0,
        };
        let history = hub.create_view(&Topics::All, true);
        debug_assert_eq!(history, HISTORY);
        hub
    }

    /// Assigns the next id (counting), then [`Hub::append`]s the event.
    /// Returns the id and how many subscribers it reaches.
    pub fn publish(
        &mut self,
        topic: &str,
        name: Option<&str>,
        data: &str,
    ) -> Result<(EventId, usize), EncodeError> {
        let id = EventId::new(self.next_id, 0);
        let audience = self.append(id, topic, name, data)?;
        self.next_id += 1;
        Ok((id, audience))
    }

    /// Encodes and frames the event `id` once, and appends it to every
    /// view that carries its topic; history forgets its oldest event if it
    /// is full. Returns how many subscribers it reaches. An id not newer
    /// than the last one appended is dropped: ids only go up, and the bus
    /// never delivers one twice.
    pub fn append(
        &mut self,
        id: EventId,
        topic: &str,
        name: Option<&str>,
        data: &str,
    ) -> Result<usize, EncodeError> {
        if self.newest.is_some_and(|newest| id <= newest) {
            return Ok(0);
        }
        let encoded = sse::encode_event(Some(&self.style.text(id)), name, data)?;
        self.newest = Some(id);
        let frame = Frame::chunk(&encoded);
        let topic: Rc<str> = Rc::from(topic);
        let mut oldest = None;
        let mut audience = 0;
        let named = self.by_topic.get(&topic).into_iter().flatten();
        let by_prefix = &self.by_prefix;
        let patterns =
            topics::prefixes(&topic).flat_map(|prefix| by_prefix.get(prefix).into_iter().flatten());
        // The history (view 0) comes first: what it forgets, every view does.
        for &view_id in self.everything.iter().chain(named).chain(patterns) {
            let Some(view) = self.views.get_mut(view_id) else {
                continue;
            };
            if view.last_id == Some(id) {
                continue;
            }
            view.append(id, &topic, frame.wire(view.chunked));
            if view_id == HISTORY {
                let over = view.index.len().saturating_sub(self.history_limit);
                view.index.drain(..over);
                oldest = view.index.front().map(|entry| entry.id);
            } else {
                view.forget_before(oldest);
            }
            audience += view.members.len();
            if view.members.is_empty() {
                view.trim(Offset::MAX);
            } else if !view.dirty {
                view.dirty = true;
                self.dirty.push(view_id);
            }
        }
        Ok(audience)
    }

    /// Forgets every event history holds, in every view: after the bus
    /// lost events, no replay may pretend to span them. Readers keep the
    /// bytes they have not been written yet.
    pub fn forget_history(&mut self) {
        for (_, view) in self.views.iter_mut() {
            view.forget_before(None);
        }
    }

    /// How ids are made and written.
    pub fn style(&self) -> IdStyle {
        self.style
    }

    /// The id of the last event appended.
    pub fn newest(&self) -> Option<EventId> {
        self.newest
    }

    /// Subscriber `key` reads `view` from now on. Returns its place in the
    /// view's member list, which [`Hub::leave`] needs back.
    pub fn join(&mut self, view: ViewId, key: Key) -> u32 {
        let Some(view) = self.views.get_mut(view) else {
            return u32::MAX;
        };
        view.members.push(key);
        self.subscribers += 1;
        for item in view.topics.items() {
            *self.presence.entry(Rc::from(item)).or_default() += 1;
        }
        // A slab of connections holds far fewer than 4 billion.
        u32::try_from(view.members.len() - 1).unwrap_or(u32::MAX)
    }

    /// The subscriber at `member` of `view` has gone. The last member takes
    /// its place: that one's new place is returned. A view nobody reads is
    /// dropped, except the history.
    pub fn leave(&mut self, view_id: ViewId, member: u32) -> Option<Moved> {
        let view = self.views.get_mut(view_id)?;
        let member = member as usize;
        if member >= view.members.len() {
            return None;
        }
        view.members.swap_remove(member);
        self.subscribers = self.subscribers.saturating_sub(1);
        for item in view.topics.items() {
            if let Some(count) = self.presence.get_mut(item) {
                *count -= 1;
                if *count == 0 {
                    self.presence.remove(item);
                }
            }
        }
        let moved = view.members.get(member).map(|&key| Moved {
            key,
            member: member as u32,
        });
        if view.members.is_empty() && view_id != HISTORY {
            self.drop_view(view_id);
        }
        moved
    }

    /// A view, if it still exists.
    pub fn view(&self, view: ViewId) -> Option<&View> {
        self.views.get(view)
    }

    /// A view, to record a flush or trim it.
    pub fn view_mut(&mut self, view: ViewId) -> Option<&mut View> {
        self.views.get_mut(view)
    }

    /// The views with events not yet written to their members; each is
    /// marked clean.
    pub fn take_dirty(&mut self) -> Vec<ViewId> {
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            if let Some(view) = self.views.get_mut(id) {
                view.dirty = false;
            }
        }
        dirty
    }

    /// The views with unwritten events, still marked.
    pub fn dirty(&self) -> &[ViewId] {
        &self.dirty
    }

    /// Every view that carries `topic`, once each.
    pub fn views_of(&self, topic: &str) -> Vec<ViewId> {
        let named = self.by_topic.get(topic).into_iter().flatten();
        let patterns =
            topics::prefixes(topic).flat_map(|prefix| self.by_prefix.get(prefix).into_iter().flatten());
        let mut views: Vec<ViewId> = self
            .everything
            .iter()
            .chain(named)
            .chain(patterns)
            .copied()
            .collect();
        views.sort_unstable();
        views.dedup();
        views
    }

    /// How many streams hold each name or pattern (`*`: every topic),
    /// largest first, at most `limit` of them.
    pub fn presence(&self, limit: usize) -> Vec<(Rc<str>, usize)> {
        let mut held: Vec<(Rc<str>, usize)> =
            self.presence.iter().map(|(item, &n)| (item.clone(), n)).collect();
        held.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        held.truncate(limit);
        held
    }

    /// Open streams.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers
    }

    /// Events kept for replay.
    pub fn history_len(&self) -> usize {
        self.views.get(HISTORY).map_or(0, |view| view.index.len())
    }

    /// The id of the oldest event history keeps, if it keeps any.
    pub fn oldest_retained(&self) -> Option<EventId> {
        self.views
            .get(HISTORY)
            .and_then(|view| view.index.front())
            .map(|entry| entry.id)
    }

    /// History holds the event `id`.
    fn history_holds(&self, id: EventId) -> bool {
        self.views.get(HISTORY).is_some_and(|view| {
            let at = view.index.partition_point(|entry| entry.id < id);
            view.index.get(at).is_some_and(|entry| entry.id == id)
        })
    }

    /// A view of `topics`, filled with the events history keeps.
    fn create_view(&mut self, topics: &Topics, chunked: bool) -> ViewId {
        let mut view = View::new(topics.clone(), chunked);
        if let Some(history) = self.views.get(HISTORY) {
            let ends = history.index.iter().skip(1).map(|entry| entry.at);
            let ends = ends.chain(std::iter::once(history.log.head()));
            for (entry, end) in history.index.iter().zip(ends) {
                if !topics.matches(&entry.topic) {
                    continue;
                }
                let Some(bytes) = history.log.range(entry.at, end) else {
                    continue;
                };
                let bytes = if chunked { bytes } else { frame::chunk_data(bytes) };
                view.append(entry.id, &entry.topic, bytes);
            }
        }
        let id = self.views.insert(view);
        self.by_filter.insert((topics.clone(), chunked), id);
        match topics {
            Topics::All => self.everything.push(id),
            Topics::Only(items) => {
                for item in items.iter() {
                    let index = match topics::pattern_prefix(item) {
                        Some(prefix) => self.by_prefix.entry(Rc::from(prefix)),
                        None => self.by_topic.entry(item.clone()),
                    };
                    index.or_default().push(id);
                }
            }
        }
        id
    }

    fn drop_view(&mut self, id: ViewId) {
        let Some(view) = self.views.try_remove(id) else {
            return;
        };
        self.by_filter.remove(&(view.topics.clone(), view.chunked));
        match &view.topics {
            Topics::All => self.everything.retain(|&other| other != id),
            Topics::Only(items) => {
                for item in items.iter() {
                    let (index, key) = match topics::pattern_prefix(item) {
                        Some(prefix) => (&mut self.by_prefix, prefix),
                        None => (&mut self.by_topic, &**item),
                    };
                    if let Some(ids) = index.get_mut(key) {
                        ids.retain(|&other| other != id);
                        if ids.is_empty() {
                            index.remove(key);
                        }
                    }
                }
            }
        }
    }
}

/// A JSON string literal (RFC 8259 §7) for text that came from a peer.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
