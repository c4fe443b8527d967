//! Deadlines, without a thread per timer and without scanning every
//! connection on every turn of the loop.
//!
//! Every future moment the server cares about is an entry here: a
//! connection's request deadline (`--header-timeout`, `408`), a stream's
//! next heartbeat check, the next tick, the end of an accept back-off. The
//! loop asks [`Timers::poll_timeout`] how long `poll` may sleep, and after
//! each wake pops what is due.
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

/// What an entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The connection's request (or lingering close) deadline.
    Deadline,
    /// Time to check whether a stream has been silent for a heartbeat period.
    Heartbeat,
}

/// A due entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub at: Instant,
    pub kind: Kind,
    pub key: usize,
    pub conn_id: u64,
}

/// The connection timers, the ticker, and the accept back-off.
#[derive(Debug)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Due>>,
    tick_period: Option<Duration>,
    next_tick: Option<Instant>,
    accept_resume: Option<Instant>,
}

impl Timers {
    /// `tick_period` of `None` disables the ticker.
    pub fn new(now: Instant, tick_period: Option<Duration>) -> Self {
        Timers {
            heap: BinaryHeap::new(),
            tick_period,
            next_tick: tick_period.map(|period| now + period),
            accept_resume: None,
        }
    }

    pub fn push(&mut self, at: Instant, kind: Kind, key: usize, conn_id: u64) {
        self.heap.push(Reverse(Due {
            at,
            kind,
            key,
            conn_id,
        }));
    }

    /// The next connection entry that is due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Due> {
        match self.heap.peek() {
            Some(Reverse(due)) if due.at <= now => self.heap.pop().map(|Reverse(due)| due),
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

    /// How long `poll` may sleep: until the nearest deadline, rounded up to
    /// a whole millisecond so we do not wake a hair early and spin.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let nearest = [
            self.heap.peek().map(|Reverse(d)| d.at),
            self.next_tick,
            self.accept_resume,
        ]
        .into_iter()
        .flatten()
        .min()?;
        let wait = nearest.saturating_duration_since(now);
        let millis = wait.as_nanos().div_ceil(1_000_000);
        Some(Duration::from_millis(millis as u64))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

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
        timers.push(t0 + Duration::from_secs(1), Kind::Deadline, 2, 20);
        timers.push(t0 + Duration::from_secs(2), Kind::Deadline, 3, 30);
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
    fn rounds_sub_millisecond_waits_up() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, None);
        timers.push(t0 + Duration::from_micros(1500), Kind::Deadline, 1, 1);
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_millis(2)));
    }
}
