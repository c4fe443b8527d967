//! Decoder for `Transfer-Encoding: chunked` request bodies.
//!
//! Sans-IO: [`ChunkedDecoder::decode`] takes whatever bytes have arrived,
//! appends the body bytes it finds to `out`, and says how many input bytes it
//! used and whether the body is complete. Input may be split anywhere, even
//! inside the hex size, and decoding resumes where it stopped.
//!
//! # Format (RFC 9112 §7.1)
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! ```text
//!  Size ──hex──▶ Size ──';' or ws──▶ Ext ──CR──▶ SizeLf ──LF──▶ Data(n) ──n bytes──▶ DataCr ─▶ DataLf ─▶ Size
//!                                                   └─(size 0)──▶ Trailer ──empty line──▶ Done
//! ```

use std::fmt;

/// Most hex digits on one size line. RFC 9112 allows leading zeros, so the
/// digit count alone says nothing about the size (the value is checked
/// against the body limit); this only bounds the work on one line.
const MAX_SIZE_DIGITS: u8 = 64;
/// Bytes of chunk extensions we skip on one size line before giving up.
const MAX_EXTENSION: usize = 1024;
/// Bytes of trailer fields we skip before giving up.
const MAX_TRAILER: usize = 8 * 1024;

/// Where the decoder is inside the body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { value: u64, digits: u8 },
    /// Skipping a chunk extension up to the CR.
    Extension { size: u64, skipped: usize },
    /// Expecting the LF after the size line's CR.
    SizeLf { size: u64 },
    /// Copying chunk data.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// Skipping trailer fields; `line` counts bytes of the current line.
    Trailer { line: usize, total: usize },
    /// Expecting the LF after a trailer line's CR.
    TrailerLf { line: usize, total: usize },
    /// The last chunk and trailer were read.
    Done,
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// Not the chunked format: answered with `400`.
    Malformed(&'static str),
    /// More body than the limit: answered with `413`.
    TooLarge,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::Malformed(why) => write!(f, "malformed chunked body: {why}"),
            ChunkError::TooLarge => f.write_str("chunked body over the size limit"),
        }
    }
}

/// Incremental chunked-body decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { value: 0, digits: 0 },
        }
    }

    /// True once the whole body, trailer included, has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as it can. Returns the number of bytes
    /// consumed; stops right after the body ends, so bytes of a pipelined
    /// next request are left unconsumed. `out` never grows past `max_body`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, max_body: usize) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            let byte = input[at];
            match self.state {
                State::Size { value, digits } => match hex_value(byte) {
                    Some(nibble) => {
                        if digits >= MAX_SIZE_DIGITS {
                            return Err(ChunkError::Malformed("chunk size line too long"));
                        }
                        if value >> 60 != 0 {
                            // Another digit would overflow u64: far past any limit.
                            return Err(ChunkError::TooLarge);
                        }
                        self.state = State::Size {
                            value: (value << 4) | u64::from(nibble),
                            digits: digits + 1,
                        };
                        at += 1;
                    }
                    None if digits == 0 => return Err(ChunkError::Malformed("chunk size is not hex")),
                    None => {
                        if value > (max_body - out.len()) as u64 {
                            return Err(ChunkError::TooLarge);
                        }
                        self.state = match byte {
                            b'\r' => State::SizeLf { size: value },
                            b';' | b' ' | b'\t' => State::Extension {
                                size: value,
                                skipped: 0,
                            },
                            _ => return Err(ChunkError::Malformed("bad byte after chunk size")),
                        };
                        at += 1;
                    }
                },
                State::Extension { size, skipped } => {
                    if byte == b'\r' {
                        self.state = State::SizeLf { size };
                    } else if byte == b'\n' || skipped >= MAX_EXTENSION {
                        return Err(ChunkError::Malformed("bad chunk extension"));
                    } else {
                        self.state = State::Extension {
                            size,
                            skipped: skipped + 1,
                        };
                    }
                    at += 1;
                }
                State::SizeLf { size } => {
                    if byte != b'\n' {
                        return Err(ChunkError::Malformed("size line not ended by CRLF"));
                    }
                    self.state = if size == 0 {
                        State::Trailer { line: 0, total: 0 }
                    } else {
                        State::Data { remaining: size }
                    };
                    at += 1;
                }
                State::Data { remaining } => {
                    let available = (input.len() - at) as u64;
                    let take = remaining.min(available) as usize;
                    out.extend_from_slice(&input[at..at + take]);
                    at += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                }
                State::DataCr => {
                    if byte != b'\r' {
                        return Err(ChunkError::Malformed("chunk data longer than its size"));
                    }
                    self.state = State::DataLf;
                    at += 1;
                }
                State::DataLf => {
                    if byte != b'\n' {
                        return Err(ChunkError::Malformed("chunk data not ended by CRLF"));
                    }
                    self.state = State::Size { value: 0, digits: 0 };
                    at += 1;
                }
                State::Trailer { line, total } => {
                    if total >= MAX_TRAILER {
                        return Err(ChunkError::Malformed("trailer section too long"));
                    }
                    self.state = if byte == b'\r' {
                        State::TrailerLf {
                            line,
                            total: total + 1,
                        }
                    } else if byte == b'\n' {
                        return Err(ChunkError::Malformed("trailer line not ended by CRLF"));
                    } else {
                        State::Trailer {
                            line: line + 1,
                            total: total + 1,
                        }
                    };
                    at += 1;
                }
                State::TrailerLf { line, total } => {
                    if byte != b'\n' {
                        return Err(ChunkError::Malformed("trailer line not ended by CRLF"));
                    }
                    // An empty line ends the trailer section, and the body.
                    self.state = if line == 0 {
                        State::Done
                    } else {
                        State::Trailer {
                            line: 0,
                            total: total + 1,
                        }
                    };
                    at += 1;
                }
                State::Done => unreachable!("the loop stops at Done"),
            }
        }
        Ok(at)
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes.
    fn decode_in_steps(input: &[u8], step: usize, max: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        while used < input.len() && !decoder.is_done() {
            let end = (used + step).min(input.len());
            let n = decoder.decode(&input[used..end], &mut out, max)?;
            used += n;
            if n == 0 {
                break;
            }
        }
        Ok((out, used, decoder.is_done()))
    }

    #[test]
    fn decodes_whole_and_split_anywhere() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\nGET / HTTP/1.1";
        for step in 1..body.len() {
            let (out, used, done) = decode_in_steps(body, step, 1024).unwrap();
            assert_eq!(out, b"hello, world", "step {step}");
            assert!(done);
            assert_eq!(&body[used..], b"GET / HTTP/1.1", "step {step}");
        }
    }

    #[test]
    fn accepts_upper_and_lower_hex() {
        let body = b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n";
        let (out, _, done) = decode_in_steps(body, 1000, 1024).unwrap();
        assert!(done);
        assert_eq!(out.len(), 20);
    }

    #[test]
    fn refuses_malformed_bodies() {
        let cases: &[&[u8]] = &[
            b"x\r\n",
            b"-5\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello!\r\n",
            b"5\r\nhello\n",
            b"5\r\nhello\r\n0\r\nbad\n",
            b"\r\n",
            b"5\r\r",
        ];
        for case in cases {
            let got = decode_in_steps(case, 1000, 1024);
            assert!(
                matches!(got, Err(ChunkError::Malformed(_))),
                "{:?}: {got:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn refuses_bodies_over_the_limit() {
        assert_eq!(decode_in_steps(b"11\r\n", 100, 16), Err(ChunkError::TooLarge));
        assert_eq!(
            decode_in_steps(b"8\r\n12345678\r\n9\r\n", 100, 16),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(
            decode_in_steps(b"fffffffffffffffff\r\n", 100, 16),
            Err(ChunkError::TooLarge)
        );
        let (out, _, done) = decode_in_steps(b"10\r\n0123456789abcdef\r\n0\r\n\r\n", 100, 16).unwrap();
        assert!(done);
        assert_eq!(out.len(), 16);
    }

    #[test]
    fn leading_zeros_do_not_make_a_size_large() {
        let body = b"000000000000000000000000005\r\nzeros\r\n00000000000000000000\r\n\r\n";
        let (out, _, done) = decode_in_steps(body, 3, 16).unwrap();
        assert!(done);
        assert_eq!(out, b"zeros");
        let endless = [b'0'; 100];
        assert!(matches!(
            decode_in_steps(&endless, 100, 16),
            Err(ChunkError::Malformed(_))
        ));
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'x', 2000));
        assert!(decode_in_steps(&long_ext, 100, 16).is_err());
        let mut long_trailer = b"0\r\n".to_vec();
        long_trailer.extend(std::iter::repeat_n(b'x', 9000));
        assert!(decode_in_steps(&long_trailer, 100, 16).is_err());
    }
}
