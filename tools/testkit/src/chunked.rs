//! The chunked transfer coding, undone: a sans-IO decoder fed bytes as
//! they arrive, split anywhere.
//!
//! # Format
//!
//! RFC 9112 §7.1:
//!
//! ```text
//! chunked-body    = *chunk last-chunk trailer-section CRLF
//! chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size      = 1*HEXDIG
//! last-chunk      = 1*("0") [ chunk-ext ] CRLF
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! An ssed event is one chunk, and a stream that ends cleanly ends with
//! the last chunk and no trailers:
//!
//! ```text
//! 1c\r\n                    size, in hex
//! id: 7\ndata: hello\n\n\r\n  28 bytes of data, then CRLF
//! 0\r\n\r\n                 last chunk, empty trailer section
//! ```
//!
//! # States
//!
//! ```text
//!        hex digits              ; or BWS            CR
//!  SizeStart ──> Size ──────────────> Ext ──────> SizeLf
//!      ^          │ CR / LF                          │ LF
//!      │          v                                  v
//!      │       size > 0 ──> Data(left) ──> DataCr ──> DataLf ──┐
//!      │                                                       │ LF
//!      └───────────────────────────────────────────────────────┘
//!              size = 0 ──> Trailer ──(empty line)──> Done
//! ```
//!
//! Chunk data is handed out as slices of the input, never copied. The
//! control bytes around it go through the states above one at a time,
//! except in the common case: a size line without extensions, or the CRLF
//! after data, whole in the input, is taken in one step (byte by byte it
//! cost the load tool more than the rest of its parsing). A bare LF is
//! accepted where CRLF belongs, as most clients do. Anything else out of
//! place is a [`ChunkError`]: the caller closes the connection.

use std::fmt;

/// Hex digits in a chunk size: 16 fill a `u64`.
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a size.
    SizeStart,
    /// In the size: its value so far, and how many digits.
    Size {
        value: u64,
        digits: u8,
    },
    /// In a chunk extension (ignored) after a size.
    Ext {
        value: u64,
    },
    /// A CR ended the size line; its LF is next.
    SizeLf {
        value: u64,
    },
    /// Chunk data, this many bytes left.
    Data(u64),
    /// Chunk data done; its CRLF is next.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    Trailer,
    /// Inside a trailer field line (skipped).
    TrailerLine,
    /// The final empty line's CR came; its LF is next.
    TrailerLf,
    /// The body is complete.
    Done,
}

/// Why bytes are not a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line that does not start with a hex digit.
    BadSize(u8),
    /// More hex digits than a `u64` holds.
    SizeTooLong,
    /// Chunk data, or a line, not followed by CRLF (the byte found).
    MissingCrlf(u8),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::BadSize(b) => write!(f, "bad chunk size (byte {b:#04x})"),
            ChunkError::SizeTooLong => f.write_str("chunk size too long"),
            ChunkError::MissingCrlf(b) => write!(f, "chunk not followed by CRLF (byte {b:#04x})"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// One chunked body's decoder. Eight bytes of state plus a tag.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::SizeStart,
        }
    }

    /// The last chunk and the trailer section have been read.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can of `input`, handing each piece of chunk data to
    /// `data` in order. Returns how many bytes of `input` belong to the
    /// body: all of them, unless the body ended inside `input` (what
    /// follows is the next response on the connection).
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        data: &mut impl FnMut(&'a [u8]),
    ) -> Result<usize, ChunkError> {
        // The state lives in a local while bytes are taken, written back
        // once: a register, not a store per control byte.
        let mut state = self.state;
        let mut at = 0;
        let result = loop {
            let Some(&byte) = input.get(at) else {
                break Ok(at);
            };
            state = match state {
                State::Data(left) => {
                    let take = left.min((input.len() - at) as u64) as usize;
                    data(&input[at..at + take]);
                    at += take;
                    match left - take as u64 {
                        0 => State::DataCr,
                        left => State::Data(left),
                    }
                }
                State::Done => break Ok(at),
                _ => match shortcut(state, &input[at..]) {
                    Some((next, len)) => {
                        at += len;
                        next
                    }
                    None => match step(state, byte) {
                        Ok(next) => {
                            at += 1;
                            next
                        }
                        Err(e) => break Err(e),
                    },
                },
            };
        };
        self.state = state;
        result
    }
}

/// The common shapes, when whole in `rest`, in one step instead of a step
/// per byte: a size line without extensions, the CRLF after chunk data.
#[inline]
fn shortcut(state: State, rest: &[u8]) -> Option<(State, usize)> {
    match state {
        State::SizeStart => size_line(rest).map(|(value, len)| (after_size(value), len)),
        State::DataCr => rest.starts_with(b"\r\n").then_some((State::SizeStart, 2)),
        _ => None,
    }
}

/// A size line ended: data follows, or the trailers after the last chunk.
#[inline]
fn after_size(value: u64) -> State {
    if value == 0 {
        State::Trailer
    } else {
        State::Data(value)
    }
}

/// `1*HEXDIG CRLF` at the start of `bytes`: the size and the line's length.
#[inline]
fn size_line(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(usize::from(MAX_SIZE_DIGITS) + 1) {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            b'\r' if i > 0 => return (bytes.get(i + 1) == Some(&b'\n')).then_some((value, i + 2)),
            _ => return None,
        };
        value = value << 4 | u64::from(digit);
    }
    None
}

/// One control byte.
#[inline]
fn step(state: State, byte: u8) -> Result<State, ChunkError> {
    let hex = (byte as char).to_digit(16).map(u64::from);
    Ok(match (state, byte, hex) {
        (State::SizeStart, _, Some(digit)) => State::Size {
            value: digit,
            digits: 1,
        },
        (State::SizeStart, _, None) => return Err(ChunkError::BadSize(byte)),
        (State::Size { digits, .. }, _, Some(_)) if digits == MAX_SIZE_DIGITS => {
            return Err(ChunkError::SizeTooLong)
        }
        (State::Size { value, digits }, _, Some(digit)) => State::Size {
            value: value << 4 | digit,
            digits: digits + 1,
        },
        (State::Size { value, .. } | State::Ext { value }, b'\r', _) => State::SizeLf { value },
        (State::Size { value, .. } | State::Ext { value } | State::SizeLf { value }, b'\n', _) => {
            after_size(value)
        }
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ):
        // whatever follows the size up to the line end is skipped.
        (State::Size { value, .. }, b';' | b' ' | b'\t', _) => State::Ext { value },
        (State::Size { .. }, _, _) => return Err(ChunkError::BadSize(byte)),
        (State::Ext { value }, _, _) => State::Ext { value },
        (State::DataCr, b'\r', _) => State::DataLf,
        (State::DataCr | State::DataLf, b'\n', _) => State::SizeStart,
        (State::Trailer, b'\r', _) => State::TrailerLf,
        (State::Trailer | State::TrailerLf, b'\n', _) => State::Done,
        (State::TrailerLine, b'\n', _) => State::Trailer,
        (State::Trailer | State::TrailerLine, _, _) => State::TrailerLine,
        (State::SizeLf { .. } | State::DataCr | State::DataLf | State::TrailerLf, _, _) => {
            return Err(ChunkError::MissingCrlf(byte))
        }
        // `decode` hands these no control bytes.
        (State::Data(_) | State::Done, _, _) => state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` cut into pieces of `split` bytes.
    fn decode(input: &[u8], split: usize) -> (Result<Vec<u8>, ChunkError>, usize, bool) {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut used = 0;
        for piece in input.chunks(split.max(1)) {
            match decoder.decode(piece, &mut |d| body.extend_from_slice(d)) {
                Ok(n) => used += n,
                Err(e) => return (Err(e), used, false),
            }
        }
        (Ok(body), used, decoder.is_done())
    }

    #[test]
    fn every_split_gives_the_same_body() {
        let input = b"5\r\nhello\r\n7;name=value\r\n, world\r\n000\r\nTrailer: x\r\n\r\nNEXT";
        for split in 1..=input.len() {
            let (body, used, done) = decode(input, split);
            assert_eq!(body.unwrap(), b"hello, world", "split {split}");
            assert_eq!(&input[used..], b"NEXT", "split {split}");
            assert!(done);
        }
    }

    #[test]
    fn bare_lf_and_upper_case_hex() {
        let (body, _, done) = decode(b"A\nabcdefghij\n0\n\n", 3);
        assert_eq!(body.unwrap(), b"abcdefghij");
        assert!(done);
        let (body, used, done) = decode(b"fF\r\n", 64);
        assert_eq!((body.unwrap().len(), used, done), (0, 4, false));
    }

    #[test]
    fn the_last_chunk_alone_ends_the_body() {
        let (body, used, done) = decode(b"0\r\n\r\n", 1);
        assert_eq!((body.unwrap(), used, done), (Vec::new(), 5, true));
        let (_, _, done) = decode(b"0\r\n", 1);
        assert!(!done, "the empty trailer line is still owed");
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b"zz\r\n", 1).0, Err(ChunkError::BadSize(b'z')));
        assert_eq!(decode(b"5x\r\n", 1).0, Err(ChunkError::BadSize(b'x')));
        for split in [4, 64] {
            let too_long = decode(b"11111111111111111\r\n", split).0;
            assert_eq!(too_long, Err(ChunkError::SizeTooLong));
        }
        assert_eq!(decode(b"\r\n", 64).0, Err(ChunkError::BadSize(b'\r')));
        assert_eq!(decode(b"2\r\nabc\r\n", 2).0, Err(ChunkError::MissingCrlf(b'c')));
        assert_eq!(decode(b"2\rX", 2).0, Err(ChunkError::MissingCrlf(b'X')));
    }
}
