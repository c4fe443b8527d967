//! Everything that goes out: each view's new events to its readers, the
//! connections' own frames (answers, ticks, heartbeats), the one flush per
//! dirty connection at the end of each turn, and closing.
//!
//! ```text
//!   flush_views:  for each view with new events, for each reader:
//!                 one write of log[cursor..head] (with its own frames, if
//!                 any, in the same writev); evict one that is more than
//!                 --max-queue behind; then trim the log to the slowest
//!                 reader and what history keeps
//!   flush_dirty:  each connection with frames of its own: one write
//! ```
//!
//! Publishing does nothing per subscriber: it appends to a view and marks
//! the view dirty. The work per subscriber is one system call per turn,
//! whatever the number of events the turn published.

use super::{Server, TRIM_AFTER};

use std::rc::Rc;

use log::debug;

use crate::clock::Now;
use crate::conn::{AfterFlush, CloseReason, FlushOutcome, Phase};
use crate::frame::Frame;
use crate::hub::ViewId;
use crate::os;
use crate::timer::Kind;
use crate::topics::TICK_TOPIC;

impl Server {
    /// Writes every view's new events to its readers.
    pub(super) fn flush_views(&mut self, now: Now) {
        for view in self.service.take_dirty_views() {
            self.flush_view(view, now);
        }
    }

    /// A burst of publishes read in one turn can append more than a reader
    /// may fall behind: a view whose unwritten bytes pass half of
    /// `--max-queue` is written at once, so that a subscriber that keeps up
    /// never pays for the size of a turn. Called after each publish.
    pub(super) fn flush_overgrown_views(&mut self, now: Now) {
        let limit = (self.config.max_queue / 2) as u64;
        let overgrown: Vec<ViewId> = self
            .service
            .dirty_views()
            .iter()
            .copied()
            .filter(|&id| {
                self.service
                    .view(id)
                    .is_some_and(|view| view.log.head() - view.flushed > limit)
            })
            .collect();
        for view in overgrown {
            self.flush_view(view, now);
        }
    }

    /// One view: each reader gets the bytes from its cursor to the head in
    /// one system call (its own queued frames, if any, in the same
    /// `writev`). A reader more than `--max-queue` behind after that is
    /// evicted; nobody else waits for it. Then the log lets go of what the
    /// slowest remaining reader and history no longer need.
    pub(super) fn flush_view(&mut self, view_id: ViewId, now: Now) {
        let Some(view) = self.service.view(view_id) else {
            return;
        };
        let head = view.log.head();
        let max_queue = self.config.max_queue as u64;
        let tracing = self.config.trace;
        let (mut lowest, mut written, mut released) = (head, 0u64, 0usize);
        for &key in &view.members {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            let conn = &mut slot.conn;
            let (outcome, n) = conn.flush(Some(&view.log), tracing);
            written += n as u64;
            if let (Phase::Stream(subscription), true) = (&mut conn.phase, n > 0) {
                subscription.last_sent = now.instant;
            }
            match outcome {
                FlushOutcome::Error(e) => {
                    debug!("#{} write: {e}", conn.id);
                    self.failures.push((key, CloseReason::WriteError));
                    continue;
                }
                FlushOutcome::Done { released: freed } => released += freed,
                FlushOutcome::Blocked => {}
            }
            if conn.unsent(head) > max_queue {
                self.failures.push((key, CloseReason::Evicted));
                continue;
            }
            lowest = lowest.min(conn.cursor());
        }
        if let Some(view) = self.service.view_mut(view_id) {
            view.flushed = head;
            released += view.trim(lowest);
        }
        self.released_since_trim += released;
        self.service.counters().bytes_out += written;
        self.close_failures();
    }

    /// A tick, to every reader of a view that carries the `tick` topic, at
    /// that view's head.
    pub(super) fn deliver_tick(&mut self, frame: &Rc<Frame>) {
        let views = self.service.views_of(TICK_TOPIC);
        let mut delivered = 0;
        for view_id in views {
            let Some(view) = self.service.view(view_id) else {
                continue;
            };
            let head = view.log.head();
            for &key in &view.members {
                let Some(slot) = self.conns.get_mut(key) else {
                    continue;
                };
                // A stream that is closing has had its last word.
                if !matches!(slot.conn.phase, Phase::Stream(_)) {
                    continue;
                }
                slot.conn.enqueue_at(head, frame.clone());
                delivered += 1;
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(key);
                }
            }
        }
        self.service.counters().delivered += delivered;
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
        let head = self.service.head_of(slot.conn.view());
        let Phase::Stream(subscription) = &mut slot.conn.phase else {
            return;
        };
        let mut next = subscription.last_sent + period;
        let silent = next <= now.instant;
        if silent {
            subscription.last_sent = now.instant;
            next = now.instant + period;
            slot.conn.enqueue_at(head, self.service.ping().clone());
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

    /// The end of every turn: the views' new events, then every connection
    /// with something of its own to send, one flush each.
    pub(super) fn flush_dirty(&mut self, now: Now) {
        self.flush_views(now);
        let max_queue = self.config.max_queue as u64;
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            slot.dirty = false;
            let conn = &mut slot.conn;
            let view = conn.view().and_then(|(view, _)| self.service.view(view));
            let (outcome, written) = conn.flush(view.map(|view| &view.log), self.config.trace);
            let head = view.map_or(0, |view| view.log.head());
            self.service.counters().bytes_out += written as u64;
            match outcome {
                FlushOutcome::Error(e) => {
                    debug!("#{} write: {e}", conn.id);
                    self.close(key, CloseReason::WriteError);
                }
                FlushOutcome::Blocked if conn.unsent(head) > max_queue => {
                    self.service.counters().evicted += 1;
                    self.close(key, CloseReason::Evicted);
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
        // After a burst, give the memory back rather than sit at the
        // burst's peak (a few ms, and only after bursts).
        if self.released_since_trim >= TRIM_AFTER {
            self.released_since_trim = 0;
            os::release_free_memory();
        }
    }

    /// Closes the connections a flush found failing or too far behind.
    fn close_failures(&mut self) {
        for (key, reason) in std::mem::take(&mut self.failures) {
            if reason == CloseReason::Evicted {
                self.service.counters().evicted += 1;
            }
            self.close(key, reason);
        }
    }

    /// Frees the slot at once: leaves its view, deregisters, closes the
    /// socket.
    pub(super) fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(mut slot) = self.conns.try_remove(key) else {
            return;
        };
        self.expiries.remove(&key);
        self.deferred.remove(&key);
        if let Some((view, member)) = slot.conn.view() {
            if let Some(moved) = self.service.leave(view, member) {
                if let Some(other) = self.conns.get_mut(moved.key) {
                    other.conn.moved_to(moved.member);
                }
            }
        }
        let _ = self.poll.registry().deregister(&mut slot.conn.stream);
        self.service.counters().connections = self.conns.len();
        debug!("#{} closed: {reason:?}", slot.conn.id);
    }
}
