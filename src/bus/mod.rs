//! The bus's wire: how ssed talks to Redis, as bytes, with no socket here.
//!
//! With `--bus`, every ssed process appends what is published to one Redis
//! Stream and delivers only what it reads back from it, so all of them
//! deliver the same events, in the same order, under the same ids (SPEC,
//! "Many processes: the bus"). This module is the part of that which knows
//! bytes and nothing else, as [`crate::http`] is for HTTP:
//!
//! - [`resp`]: RESP2, the protocol Redis speaks: commands encoded as arrays
//!   of bulk strings, replies decoded incrementally, a byte at a time if
//!   that is how they arrive, with limits a hostile server cannot pass;
//! - [`streams`]: the Redis Streams commands ssed sends (`XADD`, `XREAD`,
//!   `XRANGE`, `XREVRANGE`, `PING`, `SELECT`), the typed views of their
//!   replies, stream ids, and the fields an ssed event has in the stream;
//! - [`link`]: the two connections' logic as state machines: handshake and
//!   jittered backoff, `XADD`s matched to who asked (and "outcome unknown"
//!   when a connection breaks), the tail that fills the history, reads on,
//!   and tells a loss after a reconnect.
//!
//! # Why RESP2
//!
//! RESP2 is what every Redis since 2.0 and every Valkey speaks to a client
//! that says nothing else: five reply types, each a line of text with a type
//! byte in front, and byte strings prefixed by their length. RESP3 (after
//! `HELLO 3`) adds maps, sets, doubles and push messages, none of which the
//! stream commands need. Writing the client by hand (SPEC, "Runtime
//! dependencies") is then a few hundred lines, and it runs on the same
//! `mio` loop as everything else: no thread, no async runtime.
//!
//! # Why two connections
//!
//! Redis answers the commands of one connection strictly in order, and a
//! blocking read holds its connection: `XREAD BLOCK 5000 ...` is answered
//! when an entry arrives or when 5 s have passed, and an `XADD` written
//! behind it on the same socket waits that long too. So the loop holds
//! two connections to Redis (the part that owns them is `server/bus.rs`):
//!
//! ```text
//!   POST /publish ──▶ XADD ssed:log MAXLEN ~ N * ...   ┐
//!   Last-Event-ID ──▶ XRANGE ssed:log (id + COUNT n    ├─ commands: answered at once,
//!   health check  ──▶ PING                             ┘  pipelined, in order
//!
//!   every event   ◀── XREAD COUNT n BLOCK ms STREAMS ssed:log <last id>
//!                                                         └─ the tail: always one
//!                                                            blocking read in flight
//! ```
//!
//! Both connections are plain byte streams to this module: the loop writes
//! what [`streams`] encodes and hands whatever it reads to a
//! [`resp::Decoder`], one per connection.

pub mod link;
pub mod resp;
pub mod streams;
