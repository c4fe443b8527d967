//! Everything that goes out: fan-out of a published event to its
//! subscribers' queues, the heartbeat, the one flush per dirty connection
//! at the end of each turn, and closing.
//!
//! ```text
//!   deliver: Delivery ──▶ every subscriber of its topic: queue the shared
//!                         frame, mark the connection dirty (once)
//!   flush_dirty:          one writev per dirty connection, then ask the
//!                         connection what next (conn.rs, `flushed`)
//! ```

use super::{Server, TRIM_AFTER};

use log::debug;

use crate::clock::Now;
use crate::conn::{AfterFlush, CloseReason, FlushOutcome, Phase};
use crate::os;
use crate::service::Delivery;
use crate::timer::Kind;

impl Server {
    /// Queues `delivery`'s frame on every subscriber of its topic; writing
    /// waits for the end of the turn. A queue that passes `--max-queue` is
    /// written at once instead: a burst of publishes read in one turn can
    /// queue more than the limit before the end-of-turn flush, and a
    /// subscriber that keeps up must not pay for that. Only one whose
    /// socket will not take the excess, a subscriber that really is
    /// behind, is evicted.
    pub(super) fn deliver(&mut self, delivery: &Delivery, now: Now) {
        let max_queue = self.config.max_queue;
        let tracing = self.config.trace;
        let (mut delivered, mut written, mut released) = (0u64, 0u64, 0usize);
        for key in self.service.subscribers_of(&delivery.topic) {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            let Phase::Stream(subscription) = &mut slot.conn.phase else {
                continue;
            };
            subscription.last_sent = now.instant;
            delivered += 1;
            if slot.conn.enqueue(delivery.frame.clone()) > max_queue {
                let (outcome, n) = slot.conn.flush(tracing);
                written += n as u64;
                if let FlushOutcome::Done { released: freed } = outcome {
                    released += freed;
                }
                if matches!(outcome, FlushOutcome::Error(_)) || slot.conn.queued() > max_queue {
                    self.evictions.push(key);
                    continue;
                }
            }
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(key);
            }
        }
        self.released_since_trim += released;
        let counters = self.service.counters();
        counters.delivered += delivered;
        counters.bytes_out += written;
        counters.evicted += self.evictions.len() as u64;
        for key in std::mem::take(&mut self.evictions) {
            self.close(key, CloseReason::Evicted);
        }
    }

    /// A stream silent for a heartbeat period gets `: ping`; the next check
    /// is a period after whatever it was last sent.
    pub(super) fn heartbeat(&mut self, key: usize, now: Now) {
        let Some(period) = self.config.heartbeat else {
            return;
        };
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let id = slot.conn.id;
        let Phase::Stream(subscription) = &mut slot.conn.phase else {
            return;
        };
        let mut next = subscription.last_sent + period;
        let silent = next <= now.instant;
        if silent {
            subscription.last_sent = now.instant;
            next = now.instant + period;
            slot.conn.enqueue(self.service.ping().clone());
        }
        self.timers.push(next, Kind::Heartbeat, key, id);
        if silent {
            self.mark_dirty(key);
        }
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(slot) = self.conns.get_mut(key) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// One flush per dirty connection: the end of every turn.
    pub(super) fn flush_dirty(&mut self, now: Now) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            slot.dirty = false;
            let conn = &mut slot.conn;
            let (outcome, written) = conn.flush(self.config.trace);
            self.service.counters().bytes_out += written as u64;
            match outcome {
                FlushOutcome::Error(e) => {
                    debug!("#{} write: {e}", conn.id);
                    self.close(key, CloseReason::WriteError);
                }
                FlushOutcome::Blocked => {
                    if matches!(conn.phase, Phase::Closing { .. }) {
                        self.arm_linger_timer(key, now);
                    }
                }
                FlushOutcome::Done { released } => {
                    self.released_since_trim += released;
                    match conn.flushed(self.timers.in_grace()) {
                        AfterFlush::Idle => {}
                        AfterFlush::ResumeReading => self.backlog.push(key),
                        AfterFlush::Linger => {
                            self.backlog.push(key);
                            self.arm_linger_timer(key, now);
                        }
                        AfterFlush::Close => self.close(key, CloseReason::Finished),
                    }
                }
            }
        }
        // Keep the allocation for next turn.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        // After a burst drained many queues, give the memory back rather
        // than sit at the burst's peak (a few ms, and only after bursts).
        if self.released_since_trim >= TRIM_AFTER {
            self.released_since_trim = 0;
            os::release_free_memory();
        }
    }

    /// Frees the slot at once: unsubscribes, deregisters, closes the socket.
    pub(super) fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(mut slot) = self.conns.try_remove(key) else {
            return;
        };
        if let Phase::Stream(subscription) = &slot.conn.phase {
            self.service.unsubscribe(key, &subscription.topics);
        }
        let _ = self.poll.registry().deregister(&mut slot.conn.stream);
        self.service.counters().connections = self.conns.len();
        debug!("#{} closed: {reason:?}", slot.conn.id);
    }
}
