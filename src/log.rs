//! The shared log: every event, encoded and framed once, in one
//! append-only run of bytes, and a subscriber is no more than a position
//! in it.
//!
//! ```text
//!  offsets:  base                                        head
//!              │                                           │
//!  bytes:      [ 1c\r\nid: 41..\r\n | 1c\r\nid: 42..\r\n | 1c\r\nid: 43..\r\n ]
//!                       ▲                    ▲
//!   a slow subscriber ──┘                    └── a reconnecting one, set back
//!                                                 to the event after its
//!   a subscriber that keeps up: at head           Last-Event-ID
//! ```
//!
//! Offsets are absolute: they count every byte ever appended, so a cursor
//! stays valid when the front of the log is trimmed away. Everything from a
//! cursor to the head is contiguous, so a subscriber that has fallen behind
//! by any number of events catches up with one `write()`, and every
//! subscriber that keeps up writes the very same bytes as the others.
//!
//! # Trimming
//!
//! The front is cut once no cursor needs it and history no longer keeps it.
//! Cutting moves the live bytes to the start of the buffer, so it is done
//! only when the dead prefix is at least as large as what stays: each byte
//! is moved at most about once, whatever the pattern of appends and trims.

use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use crate::hub::{EventId, Key};
use crate::topics::Topics;

/// A position in a log: bytes appended before it, since the log began.
pub type Offset = u64;

/// Below this much dead prefix a trim is not worth a move.
const MIN_TRIM: usize = 16 * 1024;

/// An append-only run of bytes with absolute offsets.
#[derive(Default)]
pub struct Log {
    /// The offset of `bytes[0]`.
    base: Offset,
    bytes: Vec<u8>,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("base", &self.base)
            .field("head", &self.head())
            .field("capacity", &self.bytes.capacity())
            .finish()
    }
}

impl Log {
    /// The offset of the oldest byte still held.
    pub fn base(&self) -> Offset {
        self.base
    }

    /// The offset just past the newest byte: where the next append goes.
    pub fn head(&self) -> Offset {
        self.base + self.bytes.len() as Offset
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends `data`; returns the offset it starts at.
    pub fn append(&mut self, data: &[u8]) -> Offset {
        let at = self.head();
        self.bytes.extend_from_slice(data);
        at
    }

    /// The bytes from `from` to `to`, or `None` if any of them were trimmed
    /// or are not written yet.
    pub fn range(&self, from: Offset, to: Offset) -> Option<&[u8]> {
        if from < self.base || to < from || to > self.head() {
            return None;
        }
        let start = usize::try_from(from - self.base).ok()?;
        let end = usize::try_from(to - self.base).ok()?;
        self.bytes.get(start..end)
    }

    /// Everything from `from` to the head (see [`Log::range`]).
    pub fn since(&self, from: Offset) -> Option<&[u8]> {
        self.range(from, self.head())
    }

    /// Lets go of the bytes before `keep` (no further than the head). The
    /// memory is reclaimed once the dead prefix outweighs what stays;
    /// returns the bytes of buffer handed back to the allocator, if any.
    pub fn trim(&mut self, keep: Offset) -> usize {
        let keep = keep.clamp(self.base, self.head());
        // `dead` fits: it is at most `self.bytes.len()`.
        let dead = (keep - self.base) as usize;
        if dead < MIN_TRIM.max(self.bytes.len() - dead) {
            return 0;
        }
        let before = self.bytes.capacity();
        self.bytes.drain(..dead);
        self.base = keep;
        // A burst may have grown the buffer far past what is live now:
        // keep room for half as much again, no more. (Shrinking in place is
        // cheap: the allocator keeps the block and frees its tail.)
        let live = self.bytes.len().max(MIN_TRIM);
        if self.bytes.capacity() > 2 * live {
            self.bytes.shrink_to(live + live / 2);
        }
        before - self.bytes.capacity()
    }
}

/// One event in a view's log: its id, its topic, where its bytes start.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The event's id.
    pub id: EventId,
    /// Its topic.
    pub topic: Rc<str>,
    /// Where its bytes start in the view's log.
    pub at: Offset,
}

/// One view of the stream: the events of one filter, framed one way, in a
/// log of their own, and the subscribers that read it.
///
/// Subscribers that ask for the same topics over the same framing share a
/// view, so an event is copied once per view it belongs to, never once per
/// subscriber: for the common cases (every topic, one topic, the same set)
/// everyone reads one contiguous run of bytes.
#[derive(Debug)]
pub struct View {
    /// The events it carries.
    pub topics: Topics,
    /// HTTP/1.1 streams read chunk-framed bytes; HTTP/1.0 streams, which
    /// end with the connection, read the bare events.
    pub chunked: bool,
    /// The bytes.
    pub log: Log,
    /// The events in `log` that history still keeps, oldest first.
    pub index: VecDeque<Entry>,
    /// The subscribers reading it (slab keys), in no particular order.
    pub members: Vec<Key>,
    /// The head when its members were last written to.
    pub flushed: Offset,
    /// On the hub's list of views with unwritten events.
    pub dirty: bool,
    /// The id of the last event appended: a view found twice for one event
    /// (`news/*` and `news/a/*` both cover `news/a/b`) takes it once.
    pub last_id: Option<EventId>,
}

impl View {
    /// An empty view.
    pub fn new(topics: Topics, chunked: bool) -> Self {
        View {
            topics,
            chunked,
            log: Log::default(),
            index: VecDeque::new(),
            members: Vec::new(),
            flushed: 0,
            dirty: false,
            last_id: None,
        }
    }

    /// Appends one event's bytes.
    pub fn append(&mut self, id: EventId, topic: &Rc<str>, bytes: &[u8]) {
        self.last_id = Some(id);
        let at = self.log.append(bytes);
        self.index.push_back(Entry {
            id,
            topic: topic.clone(),
            at,
        });
    }

    /// Forgets index entries older than `oldest`, the oldest id history
    /// keeps (every entry, when history keeps none): their bytes may go
    /// once no cursor needs them.
    pub fn forget_before(&mut self, oldest: Option<EventId>) {
        let Some(oldest) = oldest else {
            self.index.clear();
            return;
        };
        while self.index.front().is_some_and(|entry| entry.id < oldest) {
            self.index.pop_front();
        }
    }

    /// Where a reader that has seen every event up to `after` goes on from:
    /// the first kept event with a larger id, or the head.
    pub fn position_after(&self, after: EventId) -> Offset {
        let first = self.index.partition_point(|entry| entry.id <= after);
        self.index.get(first).map_or(self.log.head(), |entry| entry.at)
    }

    /// Trims what neither history nor any reader at or after `lowest`
    /// still needs. Returns the buffer bytes handed back.
    pub fn trim(&mut self, lowest: Offset) -> usize {
        let kept = self.index.front().map_or(self.log.head(), |entry| entry.at);
        self.log.trim(lowest.min(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_absolute_across_trims() {
        let mut log = Log::default();
        assert_eq!((log.base(), log.head()), (0, 0));
        assert_eq!(log.append(b"abc"), 0);
        assert_eq!(log.append(b"defg"), 3);
        assert_eq!(log.since(0), Some(&b"abcdefg"[..]));
        assert_eq!(log.range(3, 5), Some(&b"de"[..]));
        // Every boundary: the head is a valid, empty range; past it is not.
        assert_eq!(log.since(7), Some(&b""[..]));
        assert_eq!(log.since(8), None);
        assert_eq!(log.range(5, 3), None);

        let filler = vec![b'x'; MIN_TRIM];
        let start = log.append(&filler);
        log.trim(start);
        assert_eq!(log.base(), 0, "a small dead prefix is left in place");
        let tail = log.append(b"tail");
        log.trim(tail);
        assert_eq!(log.base(), tail, "a large one is cut");
        assert_eq!(log.since(tail - 1), None, "trimmed bytes are gone");
        assert_eq!(log.since(tail), Some(&b"tail"[..]));
        assert_eq!(log.append(b"!"), tail + 4);
        assert_eq!(log.range(tail + 2, tail + 5), Some(&b"il!"[..]));
    }

    #[test]
    fn trims_only_when_the_dead_outweigh_the_live() {
        let mut log = Log::default();
        log.append(&vec![1; 3 * MIN_TRIM]);
        log.trim(MIN_TRIM as Offset);
        assert_eq!(log.base(), 0, "16 KiB dead, 32 KiB live: not yet");
        log.trim(2 * MIN_TRIM as Offset);
        assert_eq!(log.base(), 2 * MIN_TRIM as Offset);
        assert_eq!(log.len(), MIN_TRIM);
        // Never past the head, never backwards.
        log.trim(Offset::MAX);
        assert_eq!(log.base(), log.head());
        assert!(log.is_empty());
        log.trim(0);
        assert_eq!(log.base(), 3 * MIN_TRIM as Offset);
    }

    #[test]
    fn a_burst_gives_its_memory_back() {
        let mut log = Log::default();
        let burst = log.append(&vec![7; 64 * MIN_TRIM]);
        assert!(log.trim(burst + 64 * MIN_TRIM as Offset) > 0);
        assert!(log.bytes.capacity() <= 2 * MIN_TRIM);
        // And after a trim that keeps most of it, no more than it needs.
        log.append(&vec![7; 8 * MIN_TRIM]);
        let keep = log.head() - 3 * MIN_TRIM as Offset;
        log.trim(keep);
        assert!(
            log.bytes.capacity() <= 2 * log.len(),
            "{} for {}",
            log.bytes.capacity(),
            log.len()
        );
    }

    #[test]
    fn a_view_finds_where_to_resume_and_keeps_what_history_needs() {
        let topic: Rc<str> = Rc::from("t");
        let mut view = View::new(Topics::All, true);
        for id in 10..15 {
            view.append(EventId::new(id, 0), &topic, &vec![b'e'; 10_000]);
        }
        assert_eq!(view.position_after(EventId::new(9, 0)), 0);
        assert_eq!(view.position_after(EventId::new(10, 0)), 10_000);
        assert_eq!(view.position_after(EventId::new(14, 0)), view.log.head());
        assert_eq!(view.position_after(EventId::new(99, 0)), view.log.head());
        view.forget_before(Some(EventId::new(13, 0)));
        assert_eq!(
            view.position_after(EventId::ZERO),
            30_000,
            "only kept events are replayed"
        );
        // A reader far behind holds the bytes; then history does.
        view.trim(0);
        assert_eq!(view.log.base(), 0);
        view.trim(view.log.head());
        assert_eq!(view.log.base(), 30_000);
        assert!(view.log.since(30_000).is_some());
    }
}
