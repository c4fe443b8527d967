//! Redis Streams as ssed uses them: the commands it sends, typed views of
//! their replies, stream ids, and what an event is as a stream entry.
//!
//! Pure functions: a command builder appends bytes for the loop to write, a
//! parser takes the [`Reply`] a [`Decoder`](super::resp::Decoder) produced
//! and returns what ssed wants from it, or why it cannot.
//!
//! # Ids
//!
//! Redis names each entry when it adds it (`XADD ... *`): the milliseconds
//! of its clock, a dash, and a sequence number within that millisecond.
//!
//! ```text
//! 1526919030474-0
//! └──── ms ───┘ └ seq
//! ```
//!
//! Ids order by the pair of numbers (`9-0` before `10-0`, `1-9` before
//! `1-10`), not as text. Every ssed process gives a published event its
//! stream id, so a browser's `Last-Event-ID` means the same event on every
//! process ([`StreamId::from_last_event_id`]).
//!
//! # An event as an entry
//!
//! ```text
//! XADD ssed:log MAXLEN ~ 100000 * topic news event update data {"n":1}
//!                                 └─────────────── fields ──────────────┘
//! ```
//!
//! - `topic`: the topic published to; always there.
//! - `event`: the event name (SSE's `event:` line); absent when the event
//!   has none.
//! - `data`: the data, UTF-8, possibly empty; always there.
//!
//! Fields are written in that order, and read in any. A field ssed does not
//! know is ignored, so a later version may add one without breaking older
//! readers; a known field given twice is refused (which would be the event?).
//! [`xadd_event`] writes these fields and [`Entry::to_event`] reads them back.
//!
//! # Replies
//!
//! `XADD` answers the new entry's id as a bulk string. `XRANGE` and
//! `XREVRANGE` answer an array of entries, each an id and a flat array of
//! field names and values (shown with the values of the bulk strings only):
//!
//! ```text
//! *2                                       two entries
//!   *2                                     an entry: its id, its fields
//!     $15 1526985054069-0
//!     *4  $4 name  $8 Virginia  $7 surname  $5 Woolf
//!   *2
//!     $15 1526985054079-0
//!     *4  $4 name  $4 Jane  $7 surname  $6 Austen
//! ```
//!
//! `XREAD` answers, for each stream it read that had new entries, the
//! stream's key and its entries as `XRANGE` gives them; or a null array
//! when its `BLOCK` time ran out with nothing new:
//!
//! ```text
//! *1                                       the streams read (ssed reads one)
//!   *2
//!     $8 ssed:log                          its key
//!     *1                                   its entries
//!       *2  $15 1526985054069-0  *4 ...
//!
//! *-1                                      nothing arrived in time
//! ```

use std::fmt;
use std::str::FromStr;

use super::resp::Reply;
use crate::sse::{self, EncodeError};
use crate::topics::{self, TopicError};

mod commands;

pub use commands::{ping, select, xadd, xadd_event, xrange, xread_block, xrevrange};

/// The field that holds an event's topic.
pub const FIELD_TOPIC: &[u8] = b"topic";
/// The field that holds an event's name, when it has one.
pub const FIELD_EVENT: &[u8] = b"event";
/// The field that holds an event's data.
pub const FIELD_DATA: &[u8] = b"data";

/// A stream entry's id: `<ms>-<seq>`, ordered by `ms`, then `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds since the Unix epoch, by Redis' clock when it added
    /// the entry (or later: Redis never lets ids go backwards).
    pub ms: u64,
    /// The entry's number among those of the same millisecond.
    pub seq: u64,
}

/// Why some text is not a stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    /// No `-` between two numbers: a plain number (an id from a process
    /// without `--bus`) is one of these.
    NoDash,
    /// A part that is not a decimal number as Redis writes one: empty, a
    /// sign, a space, any byte but a digit, or a leading zero.
    NotDecimal,
    /// A part past `u64`.
    TooLarge,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdError::NoDash => "not a stream id: no '-' between <ms> and <seq>",
            IdError::NotDecimal => "not a stream id: <ms> and <seq> must be decimal digits",
            IdError::TooLarge => "not a stream id: a part past 64 bits",
        })
    }
}

impl std::error::Error for IdError {}

impl StreamId {
    /// `0-0`: before every entry a stream can hold (Redis refuses to add
    /// it), so reading after it reads from the start.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// The id `<ms>-<seq>`.
    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// Parses an id exactly as Redis writes one: digits, `-`, digits, each
    /// part a `u64` without leading zeros, and nothing else (no sign, no
    /// space, no missing part). One spelling per id, so two processes that
    /// agree on an id agree on its text.
    pub fn parse(text: &[u8]) -> Result<StreamId, IdError> {
        let dash = text.iter().position(|&b| b == b'-').ok_or(IdError::NoDash)?;
        let (ms, seq) = (&text[..dash], &text[dash + 1..]);
        Ok(StreamId {
            ms: decimal(ms)?,
            seq: decimal(seq)?,
        })
    }

    /// Reads what a reconnecting client sends as `Last-Event-ID` (header,
    /// or `?lastEventId=`). A browser sends back the last `id:` it saw,
    /// byte for byte, so a good one is exactly an id as [`parse`] reads it;
    /// anything else (an id from a process without `--bus`, an edited or
    /// truncated value, spaces) is refused, and the caller answers with the
    /// gap event: the server cannot vouch for what the client missed.
    ///
    /// [`parse`]: StreamId::parse
    pub fn from_last_event_id(value: &str) -> Result<StreamId, IdError> {
        StreamId::parse(value.as_bytes())
    }
}

/// One part of an id: `0`, or a digit 1-9 then digits, within `u64`.
fn decimal(digits: &[u8]) -> Result<u64, IdError> {
    if digits.is_empty() || (digits.first() == Some(&b'0') && digits.len() > 1) {
        return Err(IdError::NotDecimal);
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        if !byte.is_ascii_digit() {
            return Err(IdError::NotDecimal);
        }
        value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(byte - b'0')))
            .ok_or(IdError::TooLarge)
    })
}

impl FromStr for StreamId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<StreamId, IdError> {
        StreamId::parse(text.as_bytes())
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One stream entry: its id and its fields, in the order Redis keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's id.
    pub id: StreamId,
    /// Field names and values, as bytes.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// An ssed event read from an entry, borrowing the entry's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The entry's id: the event's SSE `id:`.
    pub id: StreamId,
    /// The topic it was published to.
    pub topic: &'a str,
    /// The event name, if it has one.
    pub name: Option<&'a str>,
    /// The data.
    pub data: &'a str,
}

/// Why an entry is not an ssed event. The entry is well-formed Redis (the
/// connection is fine); someone wrote something else to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// A field every event has (`topic`, `data`) is not there.
    Missing(&'static str),
    /// A known field is there twice.
    Repeated(&'static str),
    /// A field's value is not UTF-8.
    NotUtf8(&'static str),
    /// The topic is not one a publisher could have named.
    Topic(TopicError),
    /// The event name could not be sent (it holds a line break).
    Name(EncodeError),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Missing(field) => write!(f, "stream entry has no '{field}' field"),
            EventError::Repeated(field) => write!(f, "stream entry has the '{field}' field twice"),
            EventError::NotUtf8(field) => write!(f, "stream entry's '{field}' is not UTF-8"),
            EventError::Topic(why) => write!(f, "stream entry's topic: {why}"),
            EventError::Name(why) => write!(f, "stream entry's event name: {why}"),
        }
    }
}

impl std::error::Error for EventError {}

impl Entry {
    /// The value of the first field named `name`.
    pub fn field(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    }

    /// Reads the entry as an ssed event (fields in the module docs),
    /// checked as a publish is: a topic a publisher could name, an event
    /// name without line breaks, UTF-8 throughout. An empty `event` is no
    /// name, as on publish. A refused entry is skipped, not fatal: the
    /// stream is shared, and anyone with access to Redis can write to it.
    pub fn to_event(&self) -> Result<Event<'_>, EventError> {
        let (mut topic, mut name, mut data) = (None, None, None);
        for (field, value) in &self.fields {
            let (slot, label) = match field.as_slice() {
                FIELD_TOPIC => (&mut topic, "topic"),
                FIELD_EVENT => (&mut name, "event"),
                FIELD_DATA => (&mut data, "data"),
                _ => continue,
            };
            if slot.is_some() {
                return Err(EventError::Repeated(label));
            }
            let text = std::str::from_utf8(value).map_err(|_| EventError::NotUtf8(label))?;
            *slot = Some(text);
        }
        let topic = topic.ok_or(EventError::Missing("topic"))?;
        topics::validate_topic(topic).map_err(EventError::Topic)?;
        let name = name.filter(|name| !name.is_empty());
        if let Some(name) = name {
            sse::validate_name(name).map_err(EventError::Name)?;
        }
        let data = data.ok_or(EventError::Missing("data"))?;
        Ok(Event {
            id: self.id,
            topic,
            name,
            data,
        })
    }
}

/// Why a reply is not what its command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Redis refused the command; the text of its error reply
    /// (`ERR ...`, `WRONGTYPE ...`, `LOADING ...`).
    Redis(String),
    /// Not the shape of this command's reply: a bug, or not Redis at the
    /// other end. The connection cannot be trusted further.
    Shape(&'static str),
    /// An entry id that is not `<ms>-<seq>`.
    Id(IdError),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Redis(text) => write!(f, "Redis: {text}"),
            ReplyError::Shape(what) => write!(f, "unexpected reply: {what}"),
            ReplyError::Id(why) => write!(f, "unexpected reply: {why}"),
        }
    }
}

impl std::error::Error for ReplyError {}

impl From<IdError> for ReplyError {
    fn from(error: IdError) -> Self {
        ReplyError::Id(error)
    }
}

/// An error reply becomes [`ReplyError::Redis`]; anything else passes.
fn refused(reply: Reply) -> Result<Reply, ReplyError> {
    match reply {
        Reply::Error(text) => Err(ReplyError::Redis(text)),
        reply => Ok(reply),
    }
}

/// Checks the status line of `PING` (`PONG`) or `SELECT` (`OK`).
pub fn parse_status(reply: Reply, expected: &str) -> Result<(), ReplyError> {
    match refused(reply)? {
        Reply::Simple(text) if text == expected => Ok(()),
        _ => Err(ReplyError::Shape("not the status line expected")),
    }
}

/// Reads an `XADD` reply: the id Redis gave the new entry.
pub fn parse_xadd(reply: Reply) -> Result<StreamId, ReplyError> {
    match refused(reply)? {
        Reply::Bulk(id) => Ok(StreamId::parse(&id)?),
        _ => Err(ReplyError::Shape("XADD answers a bulk string")),
    }
}

/// Reads an `XRANGE` reply: entries, oldest first. An `XREVRANGE` reply
/// has the same shape, newest first.
pub fn parse_xrange(reply: Reply) -> Result<Vec<Entry>, ReplyError> {
    entries(refused(reply)?)
}

/// Reads an `XREAD` reply to a read of the one stream `key`: its new
/// entries, oldest first, or none when the `BLOCK` time ran out.
pub fn parse_xread(reply: Reply, key: &[u8]) -> Result<Vec<Entry>, ReplyError> {
    let streams = match refused(reply)? {
        Reply::Nil => return Ok(Vec::new()),
        Reply::Array(streams) => streams,
        _ => return Err(ReplyError::Shape("XREAD answers an array or nil")),
    };
    // Redis answers nil rather than no streams; an empty array means the same.
    let mut streams = streams.into_iter();
    let stream = match (streams.next(), streams.next()) {
        (None, _) => return Ok(Vec::new()),
        (Some(stream), None) => stream,
        (Some(_), Some(_)) => return Err(ReplyError::Shape("XREAD of one stream answered for several")),
    };
    let [name, entries_of]: [Reply; 2] = stream
        .into_array()
        .and_then(|pair| pair.try_into().ok())
        .ok_or(ReplyError::Shape("XREAD's stream is not a key and entries"))?;
    if name.as_bulk() != Some(key) {
        return Err(ReplyError::Shape("XREAD answered for another key"));
    }
    entries(entries_of)
}

/// An array of entries, as `XRANGE` and `XREAD` give them.
fn entries(reply: Reply) -> Result<Vec<Entry>, ReplyError> {
    let items = reply
        .into_array()
        .ok_or(ReplyError::Shape("entries are not an array"))?;
    items.into_iter().map(entry).collect()
}

/// One entry: `[id, [name, value, name, value, ...]]`.
fn entry(reply: Reply) -> Result<Entry, ReplyError> {
    let [id, flat]: [Reply; 2] = reply
        .into_array()
        .and_then(|pair| pair.try_into().ok())
        .ok_or(ReplyError::Shape("an entry is not an id and fields"))?;
    let id = id
        .as_bulk()
        .ok_or(ReplyError::Shape("an entry id is not a bulk string"))?;
    let id = StreamId::parse(id)?;
    let flat = flat
        .into_array()
        .ok_or(ReplyError::Shape("an entry's fields are not an array"))?;
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter().map(|item| {
        item.into_bulk()
            .ok_or(ReplyError::Shape("a field name or value is not a bulk string"))
    });
    while let Some(name) = flat.next() {
        let value = flat
            .next()
            .ok_or(ReplyError::Shape("an entry's fields are not name, value pairs"))?;
        fields.push((name?, value?));
    }
    Ok(Entry { id, fields })
}

#[cfg(test)]
mod tests;
