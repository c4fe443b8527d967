//! The Streams commands ssed sends, as bytes appended to the caller's write
//! buffer: one RESP array of bulk strings each (`resp::encode`).

use std::ops::Bound;

use super::{StreamId, FIELD_DATA, FIELD_EVENT, FIELD_TOPIC};
use crate::bus::resp::{encode, encode_array_header, encode_bulk, Decimal};

/// Appends `XADD <key> MAXLEN ~ <maxlen> * <field> <value> ...`: add an
/// entry, and let Redis trim the stream to about `maxlen` entries. The `~`
/// lets it trim only whole nodes of its radix tree, which is much cheaper
/// than an exact count; the stream then holds `maxlen` or a little more.
/// `fields` must not be empty (Redis refuses an entry without fields).
pub fn xadd(key: &[u8], maxlen_approx: u64, fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    let maxlen = Decimal::new(maxlen_approx);
    encode_array_header(6 + 2 * fields.len(), out);
    let head: [&[u8]; 6] = [b"XADD", key, b"MAXLEN", b"~", maxlen.as_bytes(), b"*"];
    for arg in head {
        encode_bulk(arg, out);
    }
    for (name, value) in fields {
        encode_bulk(name, out);
        encode_bulk(value, out);
    }
}

/// Appends the `XADD` of one ssed event: the fields `topic`, `event` (only
/// when there is a name) and `data`, as [`Entry::to_event`](super::Entry::to_event) reads them.
pub fn xadd_event(
    key: &[u8],
    maxlen_approx: u64,
    topic: &str,
    name: Option<&str>,
    data: &str,
    out: &mut Vec<u8>,
) {
    let topic = (FIELD_TOPIC, topic.as_bytes());
    let data = (FIELD_DATA, data.as_bytes());
    match name {
        Some(name) => xadd(
            key,
            maxlen_approx,
            &[topic, (FIELD_EVENT, name.as_bytes()), data],
            out,
        ),
        None => xadd(key, maxlen_approx, &[topic, data], out),
    }
}

/// Appends `XREAD COUNT <count> BLOCK <block_ms> STREAMS <key> <after>`:
/// at most `count` entries newer than `after`, waiting up to `block_ms`
/// for the first one (`0` waits for ever). The reply holds the connection
/// until then: this is the tail's connection, never the publishers'.
pub fn xread_block(key: &[u8], after: StreamId, block_ms: u64, count: u64, out: &mut Vec<u8>) {
    let (count, block, after) = (Decimal::new(count), Decimal::new(block_ms), after.to_string());
    encode(
        &[
            b"XREAD",
            b"COUNT",
            count.as_bytes(),
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
            key,
            after.as_bytes(),
        ],
        out,
    );
}

/// Appends `XRANGE <key> <start> <end> COUNT <count>`: at most `count`
/// entries from `start` to `end`, oldest first. A bound is written as
/// Redis reads it: `Included(id)` as `id`, `Excluded(id)` as `(id` (Redis
/// 6.2 and later), `Unbounded` as `-` for a start and `+` for an end. To
/// replay what a client missed after `id`: `Excluded(id)` to `Unbounded`.
pub fn xrange(key: &[u8], start: Bound<StreamId>, end: Bound<StreamId>, count: u64, out: &mut Vec<u8>) {
    let (start, end, count) = (bound(start, "-"), bound(end, "+"), Decimal::new(count));
    encode(
        &[
            b"XRANGE",
            key,
            start.as_bytes(),
            end.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ],
        out,
    );
}

/// Appends `XREVRANGE <key> <end> <start> COUNT <count>`: the same as
/// [`xrange`], newest first, with the end bound first as Redis wants it.
/// `xrevrange(key, Unbounded, Unbounded, 1, out)` (`+ - COUNT 1`) asks for
/// the newest entry: where a process starts to tail from.
pub fn xrevrange(key: &[u8], end: Bound<StreamId>, start: Bound<StreamId>, count: u64, out: &mut Vec<u8>) {
    let (end, start, count) = (bound(end, "+"), bound(start, "-"), Decimal::new(count));
    encode(
        &[
            b"XREVRANGE",
            key,
            end.as_bytes(),
            start.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ],
        out,
    );
}

/// Appends `PING`: answered `+PONG`, a cheap proof the connection works.
pub fn ping(out: &mut Vec<u8>) {
    encode(&[b"PING"], out);
}

/// Appends `SELECT <db>`: the database of `redis://host:port/<db>`,
/// answered `+OK`. Sent first on each connection, before anything else.
pub fn select(db: u64, out: &mut Vec<u8>) {
    encode(&[b"SELECT", Decimal::new(db).as_bytes()], out);
}

/// A range bound as Redis reads it; `unbounded` is `-` or `+`.
fn bound(bound: Bound<StreamId>, unbounded: &str) -> String {
    match bound {
        Bound::Included(id) => id.to_string(),
        Bound::Excluded(id) => format!("({id}"),
        Bound::Unbounded => unbounded.to_string(),
    }
}
