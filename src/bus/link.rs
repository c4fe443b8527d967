//! The bus's links: what each of the two Redis connections is doing, as
//! state machines with no socket, no `mio` and no clock in them.
//!
//! The loop owns the sockets and the time. It tells a link what happened
//! (connected, these bytes arrived, the socket broke, it is now `now`), and
//! the link answers with bytes to write and events to act on. So every
//! exchange with Redis, the unhappy ones included, is a test that feeds
//! bytes, as [`crate::http::reader`] is for HTTP.
//!
//! - [`Link`]: one connection's life: connect, handshake, ready, lost, and
//!   when to try again (jittered exponential backoff).
//! - [`Publisher`]: the command connection. `XADD`s are pipelined and their
//!   replies matched to who asked, in order.
//! - [`Tail`]: the tailing connection. Fills the local history at start,
//!   then holds one blocking `XREAD` in flight for ever, and on a reconnect
//!   checks that nothing was lost while it was away.
//! - [`Status`]: what `/stats`, `/metrics` and `/healthz` show of both.
//!
//! # One connection's life
//!
//! ```text
//!                 retry_due(now)       connected(now)
//!  ┌──────────────┐  connecting() ┌────────────┐ ──SELECT db (db ≠ 0), PING──▶ ┌─────────────┐
//!  │ Disconnected │──────────────▶│ Connecting │──────────────────────────────▶│ Handshaking │
//!  │  {retry_at}  │               └────────────┘                               └─────────────┘
//!  └──────────────┘                     │                ◀──+OK, +PONG──             │
//!     ▲   ▲   ▲        lost(now)        │                                            ▼
//!     │   │   └─────────────────────────┘                                      ┌──────────┐
//!     │   └──── -LOADING, any error reply, bytes that are not RESP ────────────│  Ready   │
//!     └──────── lost(now): the socket broke, EOF, a write failed ──────────────│ commands │
//!                                                                              └──────────┘
//! ```
//!
//! Going back to `Disconnected` sets `retry_at` by [`backoff`]: 100 ms after
//! the first failure, doubling with each failure in a row up to 5 s, each
//! delay moved by up to 20 % either way so that many processes that lost
//! Redis at once do not all come back in the same millisecond. Reaching
//! `Ready` resets the count. A Redis that is loading its dataset from disk
//! answers `-LOADING` to `PING`: that is a failure like any other, retried
//! with the same backoff until it is done.
//!
//! # Why nothing is retried by itself
//!
//! When a connection breaks with `XADD`s written and not answered, Redis
//! may have added them or not: the reply is what says so, and it is lost.
//! Sending them again could publish an event twice, which every subscriber
//! of every process would see. So each one is answered "outcome unknown"
//! ([`PublishEvent::OutcomeUnknown`]) and the publisher decides.

use std::fmt;
use std::time::{Duration, Instant};

use super::resp::{Decoder, Reply, RespError};
use super::streams::{self, ReplyError};

mod publisher;
mod tail;

pub use publisher::{PublishEvent, Publisher, Unavailable};
pub use tail::{Tail, TailEvent};

/// The delay after the first failure in a row.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The delay stops doubling here (before jitter: with it, up to 6 s).
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Each delay is moved by up to this many percent, up or down.
pub const JITTER_PERCENT: u64 = 20;

/// How long to wait after the `failures`-th failure in a row (1 for the
/// first): [`BACKOFF_FIRST`] doubled `failures - 1` times, at most
/// [`BACKOFF_MAX`], then scaled by a factor between 80 % and 120 % chosen
/// by `random` (any `u64`; the caller's randomness, so tests choose it).
pub fn backoff(failures: u32, random: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = BACKOFF_FIRST.saturating_mul(1 << doublings).min(BACKOFF_MAX);
    let percent = 100 - JITTER_PERCENT + random % (2 * JITTER_PERCENT + 1);
    let millis = base.as_millis() as u64 * percent / 100;
    Duration::from_millis(millis)
}

/// Everything both connections need to know of the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The stream's key: `<key>:log`, e.g. `ssed:log`.
    pub stream: Vec<u8>,
    /// The database of `redis://host:port/<db>`; `SELECT`ed when not 0.
    pub db: u64,
    /// `XADD ... MAXLEN ~ <retention>`: about how many entries the stream keeps.
    pub retention: u64,
    /// How many of the newest entries fill the local history at start.
    pub history: usize,
    /// `XREAD COUNT`: at most this many entries per read.
    pub count: u64,
    /// `XREAD BLOCK`: how long one read waits for an entry, in ms (not 0:
    /// that would wait for ever, and a dead connection would go unnoticed).
    pub block_ms: u64,
}

/// Where a connection is in its life (the diagram in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No connection; the next attempt is due at `retry_at`.
    Disconnected {
        /// When [`Link::retry_due`] becomes true.
        retry_at: Instant,
    },
    /// The loop is connecting the socket.
    Connecting,
    /// `SELECT` and `PING` are written; their replies are awaited.
    Handshaking {
        /// `+OK` to `SELECT` is still awaited, before `+PONG`.
        select: bool,
    },
    /// The handshake is done: commands may go.
    Ready,
}

/// What a link made of the bytes it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The handshake completed: commands may be written now.
    Ready,
    /// A reply to a command written after the handshake, in order.
    Reply(Reply),
}

/// Why a connection was given up. The socket is to be closed; the link is
/// [`Phase::Disconnected`] already, and retries at its backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The bytes are not RESP2: the framing of what follows is unknown.
    Resp(RespError),
    /// Redis answered an error where none can be taken in stride (the
    /// handshake, the tail's reads): `LOADING ...`, `WRONGTYPE ...`.
    Redis(String),
    /// A reply not of its command's shape, or a reply to no command: not
    /// Redis at the other end, or a bug; the connection cannot be trusted.
    Unexpected(ReplyError),
}

impl LinkError {
    /// True for `-LOADING`: Redis is reading its dataset from disk.
    pub fn is_loading(&self) -> bool {
        matches!(self, LinkError::Redis(text) if text.split(' ').next() == Some("LOADING"))
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Resp(why) => write!(f, "bus: {why}"),
            LinkError::Redis(text) => write!(f, "bus: Redis: {text}"),
            LinkError::Unexpected(why) => write!(f, "bus: {why}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<ReplyError> for LinkError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Redis(text) => LinkError::Redis(text),
            other => LinkError::Unexpected(other),
        }
    }
}

/// One Redis connection's protocol state: its [`Phase`], its reply
/// [`Decoder`], and its backoff.
#[derive(Debug, Clone)]
pub struct Link {
    phase: Phase,
    decoder: Decoder,
    db: u64,
    /// Failures since the link was last ready: the backoff's exponent.
    failures: u32,
    /// Times the link became ready again after having been ready once.
    reconnects: u64,
    was_ready: bool,
    rng: SplitMix,
}

impl Link {
    /// A link for database `db`, disconnected, its first attempt due at
    /// once. `seed` drives the jitter: a different one per process (the
    /// pid and the time), a fixed one in tests.
    pub fn new(db: u64, seed: u64, now: Instant) -> Link {
        Link {
            phase: Phase::Disconnected { retry_at: now },
            decoder: Decoder::new(),
            db,
            failures: 0,
            reconnects: 0,
            was_ready: false,
            rng: SplitMix(seed),
        }
    }

    /// Where the link is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True once the handshake is done, until the connection is lost.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// When the next attempt is due, while disconnected: for the poll timeout.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Disconnected { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    /// True when disconnected and the backoff has run out: time to connect.
    pub fn retry_due(&self, now: Instant) -> bool {
        self.retry_at().is_some_and(|at| at <= now)
    }

    /// How many times the link came back after having been ready.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The loop started to connect a socket: no more [`retry_due`] until
    /// it is [`connected`] or [`lost`].
    ///
    /// [`retry_due`]: Link::retry_due
    /// [`connected`]: Link::connected
    /// [`lost`]: Link::lost
    pub fn connecting(&mut self) {
        self.phase = Phase::Connecting;
    }

    /// The socket is connected: appends the handshake to `out` (the bytes
    /// to write), `SELECT <db>` when `db` is not 0, then `PING`.
    pub fn connected(&mut self, out: &mut Vec<u8>) {
        self.decoder = Decoder::new();
        let select = self.db != 0;
        if select {
            streams::select(self.db, out);
        }
        streams::ping(out);
        self.phase = Phase::Handshaking { select };
    }

    /// Decodes what a read brought, pushing to `events` what came of it.
    /// Events pushed before an error stand. On an error the link is
    /// disconnected already (with its backoff from `now`), and the caller
    /// closes the socket. Bytes received while not connected are dropped.
    pub fn received(
        &mut self,
        mut bytes: &[u8],
        now: Instant,
        events: &mut Vec<LinkEvent>,
    ) -> Result<(), LinkError> {
        while !bytes.is_empty() && matches!(self.phase, Phase::Handshaking { .. } | Phase::Ready) {
            let (used, reply) = match self.decoder.decode(bytes) {
                Ok(step) => step,
                Err(error) => return Err(self.fail(now, LinkError::Resp(error))),
            };
            bytes = &bytes[used..];
            let Some(reply) = reply else { continue };
            match self.phase {
                Phase::Handshaking { select: true } => match streams::parse_status(reply, "OK") {
                    Ok(()) => self.phase = Phase::Handshaking { select: false },
                    Err(error) => return Err(self.fail(now, error.into())),
                },
                Phase::Handshaking { select: false } => match streams::parse_status(reply, "PONG") {
                    Ok(()) => {
                        self.phase = Phase::Ready;
                        self.failures = 0;
                        self.reconnects += u64::from(self.was_ready);
                        self.was_ready = true;
                        events.push(LinkEvent::Ready);
                    }
                    Err(error) => return Err(self.fail(now, error.into())),
                },
                _ => events.push(LinkEvent::Reply(reply)),
            }
        }
        Ok(())
    }

    /// The connection is lost (a failed connect, EOF, a read or write
    /// error), or given up by the caller (e.g. [`Link::fail`]): the link
    /// is disconnected and retries at its backoff from `now`. Nothing
    /// changes when it is disconnected already.
    pub fn lost(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Disconnected { .. }) {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = backoff(self.failures, self.rng.next());
        self.phase = Phase::Disconnected {
            retry_at: now + delay,
        };
        self.decoder = Decoder::new();
    }

    /// Gives the connection up for `error` ([`Link::lost`]) and returns it.
    pub fn fail(&mut self, now: Instant, error: LinkError) -> LinkError {
        self.lost(now);
        error
    }
}

/// splitmix64: a different jitter for each failure from one seed.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One connection, as `/stats` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// The handshake is done and the connection not lost since.
    pub connected: bool,
    /// Times it came back after having been up.
    pub reconnects: u64,
    /// While down: when the next attempt is due.
    pub retry_at: Option<Instant>,
}

impl LinkStatus {
    /// The status of `link`.
    pub fn of(link: &Link) -> LinkStatus {
        LinkStatus {
            connected: link.is_ready(),
            reconnects: link.reconnects(),
            retry_at: link.retry_at(),
        }
    }
}

/// The bus as `/stats`, `/metrics` and `/healthz` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The command connection.
    pub publisher: LinkStatus,
    /// The tailing connection.
    pub tail: LinkStatus,
    /// The id the tail reads after: the last one delivered (or the newest
    /// of the history at start); none before the first read.
    pub last_id: Option<streams::StreamId>,
    /// From writing the last answered `XADD` to reading its reply.
    pub last_round_trip: Option<Duration>,
}

impl Status {
    /// The status of both connections.
    pub fn of(publisher: &Publisher, tail: &Tail) -> Status {
        Status {
            publisher: LinkStatus::of(publisher.link()),
            tail: LinkStatus::of(tail.link()),
            last_id: tail.last_id(),
            last_round_trip: publisher.last_round_trip(),
        }
    }

    /// Both connections are up: `/healthz` answers 200, else `503 bus down`.
    pub fn is_up(&self) -> bool {
        self.publisher.connected && self.tail.connected
    }
}

#[cfg(test)]
mod tests;
