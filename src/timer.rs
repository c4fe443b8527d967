//! Deadlines, without a thread per timer and without scanning every
//! connection on every turn of the loop.
//!
//! Every future moment the server cares about is here, each kind under its
//! own name:
//!
//! | kind | what happens when it is due |
//! |---|---|
//! | [`Kind::Request`] | a request not complete in `--header-timeout`: `408` (or a silent close of an idle keep-alive connection) |
//! | [`Kind::Linger`] | a closing connection whose peer has not read its last answer, or not closed its side, within two seconds: close |
//! | [`Kind::Heartbeat`] | a stream silent for `--heartbeat`: `: ping` |
//! | [`Kind::Reauth`] | 30 s before a stream's token expires: `event: reauth` |
//! | [`Kind::Expire`] | a stream's token expires: the stream ends |
//! | the ticker | `event: tick` to the `tick` topic |
//! | the accept back-off | accept again after running out of file descriptors |
//! | the shutdown grace | stop waiting for queues to drain and exit |
//!
//! The loop asks [`Timers::poll_timeout`] how long `poll` may sleep, and
//! after each wake pops what is due.
//!
//! Entries are lazy: a connection that was active since its entry was made
//! does not move the entry. When it pops, the server compares it with the
//! connection's real state and either acts or pushes a new entry for the
//! later moment. Each connection has at most one entry of each kind, so the
//! heap stays as large as the number of connections, and each entry costs
//! O(log n) once per period instead of a scan of all of them every turn.
//! An entry names its connection by slab key *and* connection id, so an
//! entry for a closed connection whose slot was reused is recognised and
//! dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a connection's entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The request deadline: `408` if the request is still incomplete.
    Request,
    /// The closing linger: close if the peer is still not done.
    Linger,
    /// Time to check whether a stream has been silent for a heartbeat period.
    Heartbeat,
    /// A stream's token expires in 30 s: tell it to get a new one.
    Reauth,
    /// A stream's token has expired: end the stream.
    Expire,
}

/// A connection's entry: when, what for, and which connection (slab key,
/// and the connection id that tells it from a later occupant of the slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// When it is due.
    pub at: Instant,
    /// What it is for.
    pub kind: Kind,
    /// The connection's slab key.
    pub key: usize,
    /// The connection's id.
    pub conn_id: u64,
}

/// A [`Due`] as the heap keeps it: every open stream has one (its
/// heartbeat), so it is packed into 24 bytes instead of 40: the moment as
/// nanoseconds since the heap's epoch (584 years of range), the slab key in
/// 32 bits (a slab holds far fewer connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: u64,
    conn_id: u64,
    key: u32,
    kind: Kind,
}

/// The connection timers, the ticker, the accept back-off and the
/// shutdown grace.
#[derive(Debug)]
pub struct Timers {
    /// What `Entry::at` counts from.
    epoch: Instant,
    heap: BinaryHeap<Reverse<Entry>>,
    tick_period: Option<Duration>,
    next_tick: Option<Instant>,
    accept_resume: Option<Instant>,
    grace_end: Option<Instant>,
}

impl Timers {
    /// `tick_period` of `None` disables the ticker.
    pub fn new(now: Instant, tick_period: Option<Duration>) -> Self {
        Self::with_capacity(now, tick_period, 0)
    }

    /// The same, with room for `entries` connection entries set aside.
    pub fn with_capacity(now: Instant, tick_period: Option<Duration>, entries: usize) -> Self {
        Timers {
            epoch: now,
            heap: BinaryHeap::with_capacity(entries),
            tick_period,
            next_tick: tick_period.map(|period| now + period),
            accept_resume: None,
            grace_end: None,
        }
    }

    /// Adds an entry for connection `key` (id `conn_id`).
    pub fn push(&mut self, at: Instant, kind: Kind, key: usize, conn_id: u64) {
        self.heap.push(Reverse(Entry {
            at: self.nanos(at),
            conn_id,
            // A slab key is far below 4 billion; one that is not cannot
            // match a connection, and its entry is dropped when it fires.
            key: u32::try_from(key).unwrap_or(u32::MAX),
            kind,
        }));
    }

    /// Nanoseconds from the epoch to `at` (0 for earlier, saturating far
    /// in the future).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The next connection entry that is due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Due> {
        let now = self.nanos(now);
        match self.heap.peek() {
            Some(Reverse(entry)) if entry.at <= now => self.heap.pop().map(|Reverse(entry)| Due {
                at: self.epoch + Duration::from_nanos(entry.at),
                kind: entry.kind,
                key: entry.key as usize,
                conn_id: entry.conn_id,
            }),
            _ => None,
        }
    }

    /// True once per tick period; a loop that fell more than a period
    /// behind skips the missed ticks rather than sending a burst of them.
    pub fn tick_due(&mut self, now: Instant) -> bool {
        match (self.next_tick, self.tick_period) {
            (Some(next), Some(period)) if next <= now => {
                let mut following = next + period;
                if following <= now {
                    following = now + period;
                }
                self.next_tick = Some(following);
                true
            }
            _ => false,
        }
    }

    /// Stops accepting until `at` (after EMFILE and friends).
    pub fn pause_accepting(&mut self, at: Instant) {
        self.accept_resume = Some(at);
    }

    /// Accepting is paused.
    pub fn accepting_paused(&self) -> bool {
        self.accept_resume.is_some()
    }

    /// True once, when an accept back-off has run out.
    pub fn accept_resume_due(&mut self, now: Instant) -> bool {
        match self.accept_resume {
            Some(at) if at <= now => {
                self.accept_resume = None;
                true
            }
            _ => false,
        }
    }

    /// Shutdown has begun: the loop exits at `at` even if queues have not
    /// drained.
    pub fn begin_grace(&mut self, at: Instant) {
        self.grace_end = Some(at);
    }

    /// Shutdown has begun.
    pub fn in_grace(&self) -> bool {
        self.grace_end.is_some()
    }

    /// The shutdown grace has run out.
    pub fn grace_over(&self, now: Instant) -> bool {
        self.grace_end.is_some_and(|at| at <= now)
    }

    /// How long `poll` may sleep: until the nearest deadline, rounded up to
    /// a whole millisecond so we do not wake a hair early and spin.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let nearest = [
            self.heap
                .peek()
                .map(|Reverse(entry)| self.epoch + Duration::from_nanos(entry.at)),
            self.next_tick,
            self.accept_resume,
            self.grace_end,
        ]
        .into_iter()
        .flatten()
        .min()?;
        let wait = nearest.saturating_duration_since(now);
        let millis = wait.as_nanos().div_ceil(1_000_000);
        Some(Duration::from_millis(millis as u64))
    }

    /// Connection entries in the heap.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// No connection entries.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, None);
        timers.push(t0 + Duration::from_secs(3), Kind::Heartbeat, 1, 10);
        timers.push(t0 + Duration::from_secs(1), Kind::Request, 2, 20);
        timers.push(t0 + Duration::from_secs(2), Kind::Request, 3, 30);
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_secs(1)));
        let now = t0 + Duration::from_millis(2500);
        assert_eq!(timers.pop_due(now).map(|d| d.key), Some(2));
        assert_eq!(timers.pop_due(now).map(|d| d.key), Some(3));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.poll_timeout(now), Some(Duration::from_millis(500)));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn ticker_keeps_its_rhythm_and_skips_missed_ticks() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut timers = Timers::new(t0, Some(second));
        assert!(!timers.tick_due(t0));
        assert!(timers.tick_due(t0 + second));
        assert!(!timers.tick_due(t0 + second));
        assert_eq!(timers.poll_timeout(t0 + second), Some(second));
        // Five seconds late: one tick, then the next a full period later.
        let late = t0 + 7 * second;
        assert!(timers.tick_due(late));
        assert!(!timers.tick_due(late));
        assert_eq!(timers.poll_timeout(late), Some(second));
    }

    #[test]
    fn no_deadline_means_no_timeout() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, None);
        assert_eq!(timers.poll_timeout(t0), None);
        timers.pause_accepting(t0 + Duration::from_millis(100));
        assert!(timers.accepting_paused());
        assert!(!timers.accept_resume_due(t0));
        assert!(timers.accept_resume_due(t0 + Duration::from_millis(100)));
        assert!(!timers.accepting_paused());
    }

    #[test]
    fn the_shutdown_grace_bounds_the_wait() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, None);
        assert!(!timers.in_grace());
        timers.begin_grace(t0 + Duration::from_secs(5));
        assert!(timers.in_grace() && !timers.grace_over(t0));
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_secs(5)));
        assert!(timers.grace_over(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn an_entry_is_small_and_keeps_its_order() {
        assert_eq!(std::mem::size_of::<Reverse<Entry>>(), 24);
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, None);
        timers.push(t0 + Duration::from_nanos(7), Kind::Heartbeat, 9, 90);
        timers.push(t0 + Duration::from_nanos(3), Kind::Linger, 8, 80);
        let due = timers.pop_due(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(
            (due.at, due.kind, due.key, due.conn_id),
            (t0 + Duration::from_nanos(3), Kind::Linger, 8, 80)
        );
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(1)).map(|d| d.key),
            Some(9)
        );
    }

    #[test]
    fn rounds_sub_millisecond_waits_up() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, None);
        timers.push(t0 + Duration::from_micros(1500), Kind::Request, 1, 1);
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_millis(2)));
    }
}
