//! Event ids: how they are made, written, and read back from a client.
//!
//! An id is a pair of numbers ordered by the first, then the second: the
//! shape of a Redis stream id (`<ms>-<seq>`, [`StreamId`]). Which numbers,
//! and how they are written, depends on where the events come from:
//!
//! ```text
//!   no --bus   Counter  the hub counts: 1700000000000000, ...001, ...002
//!                       written as the first number alone: id: 1700000000000002
//!   --bus      Stream   Redis numbers them as it adds them to the stream
//!                       written whole:                      id: 1700000000000-2
//! ```
//!
//! A counter starts at the process start time in microseconds since the
//! Unix epoch, so a restarted server issues ids larger than any its
//! predecessor did (unless that one published more than a million events a
//! second on average), and a client's old id is never mistaken for one of
//! ours. Stream ids are the same on every process of the bus, because they
//! are Redis': that is what lets a client resume anywhere.
//!
//! # What a client's id tells us
//!
//! A reconnecting client sends the last id it saw. [`Hub::locate`] places it
//! against what this process knows:
//!
//! ```text
//!        oldest retained            newest
//!   ─ ─ ─ ─ ─|========= history =========|─ ─ ─ ─ ─ ─▶ ids
//!      Behind          Held                 Ahead
//! ```
//!
//! - `Held`: we hold every event after it: replay from the history.
//! - `Behind` (bus only): older than our history, but Redis may still hold
//!   what follows it: ask Redis (`XRANGE`), then the history.
//! - `Ahead` (bus only): newer than anything we read so far: another
//!   process is slightly ahead of us; wait a moment for our tail to pass it.
//! - `Unknown`: not an id of ours, or one whose followers are gone: the
//!   stream starts with `event: gap`.

use super::Hub;
pub use crate::bus::streams::StreamId as EventId;

/// Where ids come from, which decides how they are written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// This process counts, from its start time in microseconds.
    Counter,
    /// Redis assigns them: the entries' ids in the shared stream.
    Stream,
}

impl IdStyle {
    /// The id as it goes on the wire: `id: <this>`.
    pub fn text(self, id: EventId) -> String {
        match self {
            IdStyle::Counter => id.ms.to_string(),
            IdStyle::Stream => id.to_string(),
        }
    }

    /// The id as a JSON value: a number for a counter, a string for a
    /// stream id (it has a `-`, and clients treat it as opaque).
    pub fn json(self, id: EventId) -> String {
        match self {
            IdStyle::Counter => id.ms.to_string(),
            IdStyle::Stream => format!("\"{id}\""),
        }
    }

    /// Reads an id a client sent back; `None` for anything we never write.
    pub fn parse(self, text: &str) -> Option<EventId> {
        match self {
            IdStyle::Counter => text.trim().parse::<u64>().ok().map(|n| EventId::new(n, 0)),
            IdStyle::Stream => EventId::from_last_event_id(text.trim()).ok(),
        }
    }
}

/// Where a client's last id lies against what this process holds (see the
/// module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    /// Every event after it is held: resume right after it.
    Held(EventId),
    /// Older than the history: Redis may hold what follows it.
    Behind(EventId),
    /// Newer than every event read so far.
    Ahead(EventId),
    /// Not ours, or what follows it is gone: `event: gap`.
    Unknown,
}

impl Hub {
    /// Places a client's `Last-Event-ID` (see the module docs).
    pub fn locate(&self, last_event_id: &str) -> Located {
        let Some(id) = self.style.parse(last_event_id) else {
            return Located::Unknown;
        };
        let oldest = self.oldest_retained();
        match self.style {
            IdStyle::Counter => {
                // Counted ids have no holes: we hold every event after `n`
                // if we issued `n` and kept the one after it.
                let issued = id.ms >= self.first_id && id.ms < self.next_id;
                let kept = oldest.map_or(id.ms + 1 >= self.next_id, |oldest| id.ms + 1 >= oldest.ms);
                match issued && kept {
                    true => Located::Held(id),
                    false => Located::Unknown,
                }
            }
            IdStyle::Stream => match self.newest {
                None => Located::Ahead(id),
                Some(newest) if id > newest => Located::Ahead(id),
                Some(newest) if id == newest => Located::Held(id),
                _ if oldest.is_none_or(|oldest| id < oldest) => Located::Behind(id),
                // Within the history: ours only if it is one of its events.
                _ if self.history_holds(id) => Located::Held(id),
                _ => Located::Unknown,
            },
        }
    }
}
