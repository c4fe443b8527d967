//! A connection's queue of unsent bytes: shared frames, oldest first, and
//! how much of the front one is already written.
//!
//! ```text
//!   frames:  [ event 41 ][ event 42 ][ event 43 ]     (Rc<Frame>, 8 bytes each)
//!                 ▲
//!      front_sent ┘  bytes of the front frame the kernel already took
//! ```
//!
//! The frames are reference-counted and shared: one published event is one
//! allocation however many subscribers queue it. A write hands every queued
//! frame (up to [`MAX_IOVECS`]) to one `writev`; only the front frame can be
//! part-sent, so one offset serves the whole queue.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use crate::frame::Frame;
use crate::trace;

/// Most frames handed to one `writev`: Linux's `IOV_MAX`.
pub const MAX_IOVECS: usize = 1024;

/// Iovecs kept on the stack: a queue holds a handful of frames in the
/// common case; a burst that queued more gets a heap array, still one call.
const ON_STACK: usize = 16;

/// Frames to send, and how far the front one has gone.
#[derive(Debug, Default)]
pub struct WriteQueue {
    frames: VecDeque<Rc<Frame>>,
    front_sent: usize,
    queued: usize,
}

impl WriteQueue {
    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Queues a frame, as a connection that does (`chunked`) or does not
    /// chunk sends it. A frame with nothing to send that way (the last
    /// chunk, to an HTTP/1.0 stream) is not queued. Returns the bytes
    /// queued after.
    pub fn push(&mut self, frame: Rc<Frame>, chunked: bool) -> usize {
        let len = frame.wire(chunked).len();
        if len > 0 {
            self.queued += len;
            self.frames.push_back(frame);
        }
        self.queued
    }

    /// One system call for the front of the queue: `write` for one frame,
    /// `writev` for several. With `trace`, the bytes written are logged as
    /// connection `trace`'s.
    pub fn write_to(&self, out: &mut impl Write, chunked: bool, trace: Option<u64>) -> io::Result<usize> {
        let front_sent = self.front_sent;
        let unsent = |index, frame| unsent(frame, index, chunked, front_sent);
        if self.frames.len() == 1 {
            let only = unsent(0, &self.frames[0]);
            let n = out.write(only)?;
            if let Some(id) = trace {
                trace::bytes(id, trace::Direction::Out, &only[..n]);
            }
            return Ok(n);
        }
        let mut on_stack = [IoSlice::new(&[]); ON_STACK];
        let on_heap: Vec<IoSlice<'_>>;
        let slices: &[IoSlice<'_>] = if self.frames.len() <= ON_STACK {
            for (index, (slot, frame)) in on_stack.iter_mut().zip(self.frames.iter()).enumerate() {
                *slot = IoSlice::new(unsent(index, frame));
            }
            &on_stack[..self.frames.len()]
        } else {
            on_heap = self
                .frames
                .iter()
                .take(MAX_IOVECS)
                .enumerate()
                .map(|(index, frame)| IoSlice::new(unsent(index, frame)))
                .collect();
            &on_heap
        };
        let n = out.write_vectored(slices)?;
        if let Some(id) = trace {
            trace::slices(id, slices, n);
        }
        Ok(n)
    }

    /// Pops `n` written bytes off the front. Returns the bytes of queue
    /// buffer given back, when it emptied.
    pub fn consume(&mut self, mut n: usize, chunked: bool) -> usize {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.frames.front() else {
                break;
            };
            let left = front.wire(chunked).len() - self.front_sent;
            if n >= left {
                n -= left;
                self.frames.pop_front();
                self.front_sent = 0;
            } else {
                self.front_sent += n;
                n = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            // An idle subscriber holds no queue buffer at all: at tens of
            // thousands of connections that is most of their memory, and a
            // malloc per event costs nothing next to the write it goes with.
            let released = self.frames.capacity() * std::mem::size_of::<Rc<Frame>>();
            self.frames = VecDeque::new();
            return released;
        }
        0
    }
}

/// What is left to write of the frame at `index` in a queue whose front
/// frame has `front_sent` bytes written.
fn unsent(frame: &Frame, index: usize, chunked: bool, front_sent: usize) -> &[u8] {
    let skip = if index == 0 { front_sent } else { 0 };
    &frame.wire(chunked)[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_frame_in_one_call_and_tracks_partial_writes() {
        let mut queue = WriteQueue::default();
        queue.push(Frame::raw(b"abc".to_vec()), true);
        queue.push(Frame::raw(b"defg".to_vec()), true);
        let mut out = Vec::new();
        assert_eq!(queue.write_to(&mut out, true, None).unwrap(), 7);
        assert_eq!(out, b"abcdefg");
        queue.consume(4, true);
        assert_eq!(queue.queued(), 3);
        assert_eq!(queue.frames.len(), 1);
        assert_eq!(queue.front_sent, 1);
        out.clear();
        queue.write_to(&mut out, true, None).unwrap();
        assert_eq!(out, b"efg");
        assert!(
            queue.consume(3, true) > 0,
            "an emptied queue gives its buffer back"
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn unchunked_connections_send_bodies_and_skip_empty_frames() {
        let mut queue = WriteQueue::default();
        queue.push(Frame::chunk(b"data: y\n\n"), false);
        assert_eq!(queue.push(Frame::last_chunk(), false), 9);
        let mut out = Vec::new();
        queue.write_to(&mut out, false, None).unwrap();
        assert_eq!(out, b"data: y\n\n");
    }
}
