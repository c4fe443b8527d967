//! The loop's side of the timers (`timer.rs`): arming a connection's
//! entries, at most one of each kind, and acting on the ones that are due.
//!
//! An entry is lazy: when it fires, the connection's state says whether it
//! still matters (a request that completed in time, a stream that was not
//! silent after all) or moves it to a later moment.

use super::{Server, LINGER};

use log::debug;

use crate::clock::Now;
use crate::conn::{CloseReason, Phase};
use crate::frame::Frame;
use crate::http::Rejection;
use crate::timer::Kind;

impl Server {
    /// A connection reading a request gets a [`Kind::Request`] entry at its
    /// deadline, unless it has one.
    pub(super) fn arm_request_timer(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if let Phase::Request(reading) = &slot.conn.phase {
            if !slot.request_timer {
                slot.request_timer = true;
                self.timers
                    .push(reading.deadline, Kind::Request, key, slot.conn.id);
            }
        }
    }

    /// A closing connection gets [`LINGER`] to finish, once.
    pub(super) fn arm_linger_timer(&mut self, key: usize, now: Now) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if !slot.linger_timer {
            slot.linger_timer = true;
            self.timers
                .push(now.instant + LINGER, Kind::Linger, key, slot.conn.id);
        }
    }

    pub(super) fn fire_timers(&mut self, now: Now) {
        while let Some(due) = self.timers.pop_due(now.instant) {
            let Some(slot) = self.conns.get_mut(due.key) else {
                continue;
            };
            if slot.conn.id != due.conn_id {
                continue;
            }
            match due.kind {
                Kind::Heartbeat => self.heartbeat(due.key, now),
                Kind::Request => {
                    slot.request_timer = false;
                    if slot.parked || slot.relays > 0 {
                        // Waiting on the bus is not the client's delay.
                        if let Some(reading) = slot.conn.reading() {
                            reading.deadline = now.instant + self.config.header_timeout;
                        }
                        self.arm_request_timer(due.key);
                        continue;
                    }
                    match &slot.conn.phase {
                        Phase::Request(reading) if reading.deadline > now.instant => {
                            self.arm_request_timer(due.key);
                        }
                        // Nothing of a next request: a keep-alive connection
                        // that went quiet closes without a word.
                        Phase::Request(_) if slot.conn.is_idle() => {
                            self.close(due.key, CloseReason::IdleTimeout)
                        }
                        Phase::Request(_) => self.refuse(due.key, Rejection::RequestTimeout, now),
                        _ => {}
                    }
                }
                Kind::Linger => {
                    slot.linger_timer = false;
                    match slot.conn.phase {
                        // The client is not reading its last answer.
                        Phase::Closing { .. } => self.close(due.key, CloseReason::IdleTimeout),
                        Phase::Lingering => self.close(due.key, CloseReason::Finished),
                        _ => {}
                    }
                }
                Kind::Reauth => self.reauth(due.key),
                Kind::Expire => self.expire(due.key),
            }
        }
        if self.timers.tick_due(now.instant) && !self.timers.in_grace() {
            let tick = self.service.tick(now.wall);
            self.deliver_tick(&tick);
        }
        if self.timers.accept_resume_due(now.instant) {
            for index in 0..self.listeners.len() {
                self.accept(index, now);
            }
        }
    }

    /// Its token expires in 30 s: the stream is told so, at its view's
    /// head, to get a new token and come back with `?lastEventId=`.
    pub(super) fn reauth(&mut self, key: usize) {
        let Some(&(conn_id, exp)) = self.expiries.get(&key) else {
            return;
        };
        let frame = self.service.reauth(exp);
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if slot.conn.id != conn_id || !matches!(slot.conn.phase, Phase::Stream(_)) {
            return;
        }
        let head = self.service.head_of(slot.conn.view());
        slot.conn.enqueue_at(head, frame);
        self.mark_dirty(key);
    }

    /// Its token has expired: the stream ends, cleanly (the last chunk after
    /// whatever it was sent), and nothing more reaches it.
    pub(super) fn expire(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if !matches!(slot.conn.phase, Phase::Stream(_)) {
            return;
        }
        let head = self.service.head_of(slot.conn.view());
        debug!("#{} token expired", slot.conn.id);
        slot.conn.enqueue_at(head, Frame::last_chunk());
        slot.conn.begin_closing();
        self.mark_dirty(key);
    }
}
