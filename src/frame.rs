//! Bytes ready for the wire, framed once and shared by every connection
//! that sends them.
//!
//! An HTTP/1.1 event stream is sent with `Transfer-Encoding: chunked`, one
//! chunk per event (RFC 9112 §7.1):
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! The chunk-size line and the trailing CRLF are added here, once, when an
//! event is encoded, so a [`Frame`] holds the chunked form and every
//! subscriber shares the same bytes. An HTTP/1.0 stream, which has no
//! chunking and ends when the connection closes, is given the middle of the
//! very same buffer: [`Frame::body`].
//!
//! This is the only file that knows what a chunk looks like on the way out
//! (`http/chunked.rs` decodes request bodies on the way in).

use std::rc::Rc;

/// Encoded bytes, shared by every queue that sends them.
///
/// `bytes` is either a whole chunk (`<hex len>\r\n<body>\r\n`) or plain
/// bytes (a response head, a canned answer), in which case the body is all
/// of it. Offsets are `u32`: a frame is one event or one answer, bounded by
/// `--max-body` (at most 64 MiB) plus a little framing.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    bytes: Box<[u8]>,
    body_start: u32,
    body_end: u32,
}

impl Frame {
    /// Plain bytes, sent as they are whatever the connection's framing.
    pub fn raw(bytes: Vec<u8>) -> Rc<Frame> {
        let len = offset(bytes.len());
        Rc::new(Frame {
            bytes: bytes.into_boxed_slice(),
            body_start: 0,
            body_end: len,
        })
    }

    /// `body` wrapped as one HTTP/1.1 chunk:
    ///
    /// ```text
    /// 1c\r\n                      chunk-size, in hex
    /// event: tick\ndata: ...\n\n  chunk-data: the SSE text
    /// \r\n                        end of the chunk
    /// ```
    pub fn chunk(body: &[u8]) -> Rc<Frame> {
        let head = format!("{:x}\r\n", body.len());
        let mut bytes = Vec::with_capacity(head.len() + body.len() + 2);
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(b"\r\n");
        Rc::new(Frame {
            body_start: offset(head.len()),
            body_end: offset(head.len() + body.len()),
            bytes: bytes.into_boxed_slice(),
        })
    }

    /// The last chunk, `0\r\n\r\n`: a clean end of a chunked body, so a
    /// client or proxy can tell "the server finished" from "the connection
    /// was cut". It is the chunk of an empty body, so an HTTP/1.0 stream,
    /// which ends by closing, sends nothing for it.
    pub fn last_chunk() -> Rc<Frame> {
        Frame::chunk(b"")
    }

    /// What a chunked (HTTP/1.1) stream sends.
    pub fn chunked(&self) -> &[u8] {
        &self.bytes
    }

    /// What an unframed (HTTP/1.0) stream sends: the event without the
    /// chunk-size line and the trailing CRLF.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_start as usize..self.body_end as usize]
    }

    /// The bytes for a connection that does (`true`) or does not chunk.
    pub fn wire(&self, chunked: bool) -> &[u8] {
        if chunked {
            self.chunked()
        } else {
            self.body()
        }
    }
}

/// The data of one chunk as [`Frame::chunk`] framed it: what lies between
/// the size line and the closing CRLF. Anything else is returned whole.
pub fn chunk_data(chunk: &[u8]) -> &[u8] {
    let Some(line_end) = chunk.windows(2).position(|pair| pair == b"\r\n") else {
        return chunk;
    };
    chunk
        .get(line_end + 2..chunk.len().saturating_sub(2))
        .unwrap_or(chunk)
}

/// A length as a frame offset. Frames are bounded far below 4 GiB (see
/// [`Frame`]); saturating keeps a bug from ever turning into a wrong slice.
fn offset(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_chunk_once_and_exposes_both_forms() {
        let frame = Frame::chunk(b"data: hi\n\n");
        assert_eq!(frame.chunked(), b"a\r\ndata: hi\n\n\r\n");
        assert_eq!(frame.body(), b"data: hi\n\n");
        assert_eq!(frame.wire(false), frame.body());
        let big = vec![b'x'; 300];
        let frame = Frame::chunk(&big);
        assert!(frame.chunked().starts_with(b"12c\r\n"));
        assert_eq!(frame.body(), &big[..]);
    }

    #[test]
    fn raw_frames_are_the_same_either_way() {
        let frame = Frame::raw(b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
        assert_eq!(frame.wire(true), frame.wire(false));
    }

    #[test]
    fn chunk_data_undoes_the_framing() {
        for body in [&b"data: hi\n\n"[..], b"", &[b'x'; 300]] {
            let frame = Frame::chunk(body);
            assert_eq!(chunk_data(frame.chunked()), body);
        }
    }

    #[test]
    fn the_last_chunk_is_nothing_to_an_unchunked_stream() {
        let last = Frame::last_chunk();
        assert_eq!(last.wire(true), b"0\r\n\r\n");
        assert_eq!(last.wire(false), b"");
    }
}
