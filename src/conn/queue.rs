//! What a connection still has to send, and the one system call that sends
//! it.
//!
//! A stream's events are not queued here at all: they are in its view's
//! shared log (`log.rs`), and the stream only has a cursor into it. What
//! *is* queued are the few frames that are the connection's own: response
//! heads and answers, the greeting, a `gap`, ticks, heartbeats, the
//! farewell. Each is queued *at* a log position, so that it goes out
//! between the right events:
//!
//! ```text
//!   log:       ...[ event 41 ][ event 42 ][ event 43 ]
//!                  ▲ cursor               ▲ head
//!   frames:                   (tick @ end of 42)
//!   one writev:    [ event 41 ][ event 42 ][ tick ][ event 43 ]
//! ```
//!
//! A connection that is not a stream has no log: its frames all sit at
//! offset 0 and go out in order, one `writev` for all of them.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use crate::frame::Frame;
use crate::log::{Log, Offset};
use crate::trace;

/// Most pieces handed to one `writev`: Linux's `IOV_MAX`.
pub const MAX_IOVECS: usize = 1024;

/// Pieces kept on the stack: a handful in the common case; a burst of
/// queued frames gets a heap array, still one call.
const ON_STACK: usize = 16;

/// The log bytes a flush may send around the queued frames: from `cursor`
/// up to `end`.
#[derive(Debug, Clone, Copy)]
pub struct LogRange<'a> {
    /// The view's log.
    pub log: &'a Log,
    /// The first byte not yet sent.
    pub cursor: Offset,
    /// Where sending stops: the head, or the farewell of a closing stream.
    pub end: Offset,
}

/// Frames to send, each at a log position, and how far the front one has
/// gone.
///
/// The two counts are `u32`: a frame is at most `--max-body` (64 MiB) and a
/// little framing, and a stream is evicted long before its own frames pass
/// `--max-queue` (at most 1 GiB); a connection reading requests stops being
/// read at 256 KiB of unread answers. Saturating keeps a bug from wrapping.
#[derive(Debug, Default)]
pub struct WriteQueue {
    frames: VecDeque<(Offset, Rc<Frame>)>,
    front_sent: u32,
    queued: u32,
}

impl WriteQueue {
    /// Bytes of frames queued and not yet written (log bytes not counted).
    pub fn queued(&self) -> usize {
        self.queued as usize
    }

    /// No frame to send.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Where the last queued frame sits, if any.
    pub fn last_at(&self) -> Option<Offset> {
        self.frames.back().map(|(at, _)| *at)
    }

    /// Queues a frame at log position `at` (never before a frame already
    /// queued), as a connection that does (`chunked`) or does not chunk
    /// sends it. A frame with nothing to send that way (the last chunk, to
    /// an HTTP/1.0 stream) is not queued. Returns the frame bytes queued.
    pub fn push(&mut self, at: Offset, frame: Rc<Frame>, chunked: bool) -> usize {
        let len = frame.wire(chunked).len();
        if len > 0 {
            let at = self.last_at().map_or(at, |last| at.max(last));
            self.queued = self.queued.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
            self.frames.push_back((at, frame));
        }
        self.queued as usize
    }

    /// Whether anything is left to send, frames or log bytes.
    pub fn has_work(&self, range: Option<LogRange<'_>>) -> bool {
        !self.frames.is_empty() || range.is_some_and(|r| r.cursor < r.end)
    }

    /// One system call: `write` for one piece, `writev` for several. With
    /// `trace`, the bytes written are logged as connection `trace`'s.
    pub fn write_to<'a>(
        &'a self,
        out: &mut impl Write,
        chunked: bool,
        range: Option<LogRange<'a>>,
        trace: Option<u64>,
    ) -> io::Result<usize> {
        let mut on_stack = [IoSlice::new(&[]); ON_STACK];
        let mut on_heap = Vec::new();
        let mut count = 0;
        let mut push = |piece: &'a [u8]| -> bool {
            if piece.is_empty() {
                return true;
            }
            if count < ON_STACK {
                on_stack[count] = IoSlice::new(piece);
            } else {
                if count == ON_STACK {
                    on_heap.extend_from_slice(&on_stack);
                }
                on_heap.push(IoSlice::new(piece));
            }
            count += 1;
            count < MAX_IOVECS
        };
        let mut pos = range.map_or(0, |r| r.cursor);
        let mut room = true;
        for (index, (at, frame)) in self.frames.iter().enumerate() {
            if let Some(r) = range {
                let upto = (*at).min(r.end);
                if upto > pos {
                    room = push(r.log.range(pos, upto).ok_or_else(trimmed)?);
                    pos = upto;
                }
            }
            let skip = if index == 0 { self.front_sent as usize } else { 0 };
            if !room || !push(&frame.wire(chunked)[skip..]) {
                room = false;
                break;
            }
        }
        if let Some(r) = range.filter(|r| room && r.end > pos) {
            push(r.log.range(pos, r.end).ok_or_else(trimmed)?);
        }
        let slices: &[IoSlice<'_>] = if count <= ON_STACK {
            &on_stack[..count]
        } else {
            &on_heap
        };
        let n = match slices {
            [] => 0,
            [only] => out.write(only)?,
            many => out.write_vectored(many)?,
        };
        if let Some(id) = trace {
            trace::slices(id, slices, n);
        }
        Ok(n)
    }

    /// Accounts for `n` bytes written: frames popped, the front frame's
    /// offset, and `cursor` moved over the log bytes among them. Returns
    /// the bytes of queue buffer given back, when it emptied.
    pub fn consume(&mut self, mut n: usize, chunked: bool, cursor: &mut Offset) -> usize {
        while n > 0 {
            match self.frames.front() {
                Some((at, frame)) if *at <= *cursor => {
                    let left = frame.wire(chunked).len() - self.front_sent as usize;
                    let take = n.min(left);
                    // `take` is at most what is left of one frame: a u32.
                    let take32 = take as u32;
                    n -= take;
                    self.queued = self.queued.saturating_sub(take32);
                    if take == left {
                        self.frames.pop_front();
                        self.front_sent = 0;
                    } else {
                        self.front_sent += take32;
                    }
                }
                Some((at, _)) => {
                    let take = (n as u64).min(at - *cursor);
                    *cursor += take;
                    // `take` is at most `n`, a usize.
                    n -= take as usize;
                }
                None => {
                    *cursor += n as u64;
                    n = 0;
                }
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            // An idle connection holds no queue buffer at all.
            let released = self.frames.capacity() * std::mem::size_of::<(Offset, Rc<Frame>)>();
            self.frames = VecDeque::new();
            return released;
        }
        0
    }
}

/// Log bytes a cursor still needed were trimmed: a bug, answered by
/// closing that one connection.
fn trimmed() -> io::Error {
    io::Error::other("log bytes trimmed before they were sent")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes everything there is, as flushes would, `limit` bytes at most
    /// per call.
    fn drain(queue: &mut WriteQueue, log: Option<&Log>, cursor: &mut Offset, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let range = log.map(|log| LogRange {
                log,
                cursor: *cursor,
                end: log.head(),
            });
            if !queue.has_work(range) {
                return out;
            }
            let mut buf = Vec::new();
            let n = queue.write_to(&mut buf, true, range, None).unwrap();
            let n = n.min(limit);
            out.extend_from_slice(&buf[..n]);
            queue.consume(n, true, cursor);
        }
    }

    #[test]
    fn frames_go_out_between_the_right_log_bytes_whatever_the_write_sizes() {
        for limit in [1, 2, 3, 5, 7, 100] {
            let mut log = Log::default();
            let mut queue = WriteQueue::default();
            queue.push(0, Frame::raw(b"<head>".to_vec()), true);
            log.append(b"e1;");
            let at = log.append(b"e2;");
            queue.push(log.head(), Frame::raw(b"<tick>".to_vec()), true);
            log.append(b"e3;");
            let mut cursor = at - 3;
            let out = drain(&mut queue, Some(&log), &mut cursor, limit);
            assert_eq!(out, b"<head>e1;e2;<tick>e3;", "writes of {limit}");
            assert_eq!(cursor, log.head());
            assert_eq!(queue.queued(), 0);
        }
    }

    #[test]
    fn without_a_log_frames_go_out_in_order() {
        let mut queue = WriteQueue::default();
        queue.push(0, Frame::raw(b"abc".to_vec()), true);
        queue.push(0, Frame::raw(b"defg".to_vec()), true);
        assert_eq!(queue.queued(), 7);
        let mut cursor = 0;
        assert_eq!(drain(&mut queue, None, &mut cursor, 4), b"abcdefg");
        assert!(queue.is_empty());
    }

    #[test]
    fn a_closing_stream_stops_at_its_farewell() {
        let mut log = Log::default();
        log.append(b"e1;");
        let mut queue = WriteQueue::default();
        queue.push(log.head(), Frame::raw(b"<bye>".to_vec()), true);
        log.append(b"late;");
        let range = LogRange {
            log: &log,
            cursor: 0,
            end: queue.last_at().unwrap(),
        };
        let mut out = Vec::new();
        let n = queue.write_to(&mut out, true, Some(range), None).unwrap();
        assert_eq!(&out[..n], b"e1;<bye>");
    }

    #[test]
    fn unchunked_connections_send_bodies_and_skip_empty_frames() {
        let mut queue = WriteQueue::default();
        queue.push(0, Frame::chunk(b"data: y\n\n"), false);
        assert_eq!(queue.push(0, Frame::last_chunk(), false), 9);
        let mut out = Vec::new();
        queue.write_to(&mut out, false, None, None).unwrap();
        assert_eq!(out, b"data: y\n\n");
    }
}
