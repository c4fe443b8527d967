//! What the kernel has told us about a socket: readable, writable, the
//! peer's FIN. Set by `epoll` events, cleared by the system call that
//! finds nothing (see `conn.rs`, "Readiness as data").

use mio::event::Event;

/// What the kernel has told us about the socket, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness(pub(super) u8);

impl Readiness {
    pub(super) const READABLE: u8 = 1;
    pub(super) const WRITABLE: u8 = 2;
    /// The peer's FIN has arrived (`EPOLLRDHUP`): no edge follows it, so a
    /// short read no longer means "drained"; read on to the EOF.
    pub(super) const FIN: u8 = 4;

    /// A fresh socket: worth a read (the request may be there already) and
    /// a write. Both are confirmed by the first system call.
    pub fn fresh() -> Self {
        Readiness(Self::READABLE | Self::WRITABLE)
    }

    /// Adds what an event reports. Errors and hang-ups count as readable
    /// and writable: the next call then returns the error or EOF.
    pub fn note(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.0 |= Self::READABLE;
        }
        if event.is_read_closed() || event.is_error() {
            self.0 |= Self::FIN;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.0 |= Self::WRITABLE;
        }
    }

    /// A read may find bytes (or the EOF).
    pub fn readable(self) -> bool {
        self.0 & Self::READABLE != 0
    }

    /// A write may be taken.
    pub fn writable(self) -> bool {
        self.0 & Self::WRITABLE != 0
    }

    /// The peer's FIN was reported.
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }

    pub(super) fn clear(&mut self, bit: u8) {
        self.0 &= !bit;
    }
}
