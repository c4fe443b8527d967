//! The RESP2 decoder: bytes in, one reply out at a time, resumable at any
//! split point, with no recursion and no allocation a header alone can
//! ask for (see the limits in `resp.rs`).

use super::*;

/// What a number line is the header of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumberKind {
    /// `:`, an integer reply.
    Integer,
    /// `$`, a bulk string's length.
    Bulk,
    /// `*`, an array's count.
    Array,
}

/// Where the decoder is inside the current reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Expecting the type byte of a reply.
    Type,
    /// Reading the text of a simple string (`error` false) or an error.
    Line { error: bool, text: Vec<u8> },
    /// Expecting the LF after a text line's CR.
    LineLf { error: bool, text: Vec<u8> },
    /// Reading an optional `-` and digits. `value` is the magnitude so far.
    Number {
        kind: NumberKind,
        negative: bool,
        digits: u8,
        value: u64,
    },
    /// Expecting the LF after a number's CR.
    NumberLf {
        kind: NumberKind,
        negative: bool,
        value: u64,
    },
    /// Copying a bulk string's bytes; `remaining` still to come.
    Bulk { data: Vec<u8>, remaining: usize },
    /// Expecting the CR after a bulk string's bytes.
    BulkCr { data: Vec<u8> },
    /// Expecting the LF after a bulk string's bytes.
    BulkLf { data: Vec<u8> },
}

/// An array whose elements are still arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenArray {
    pub(super) items: Vec<Reply>,
    len: usize,
}

/// What one step over the input produced.
enum Next {
    /// Keep going, in this state.
    State(State),
    /// A reply is complete (it may be an element of an open array).
    Reply(Reply),
}

/// Incremental RESP2 reply decoder, one per connection.
///
/// ```
/// use ssed::bus::resp::{Decoder, Reply};
///
/// let mut decoder = Decoder::new();
/// // A reply in two reads, the second with the start of the next reply.
/// assert_eq!(decoder.decode(b"*2\r\n$5\r\nhel").unwrap(), (11, None));
/// let input = b"lo\r\n:42\r\n+PONG\r\n";
/// let (used, reply) = decoder.decode(input).unwrap();
/// let hello = Reply::Array(vec![Reply::Bulk(b"hello".to_vec()), Reply::Integer(42)]);
/// assert_eq!(reply, Some(hello));
/// assert_eq!(decoder.decode(&input[used..]).unwrap(), (7, Some(Reply::Simple("PONG".into()))));
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    pub(super) state: State,
    /// Arrays open inside one another, outermost first.
    pub(super) open: Vec<OpenArray>,
    limits: Limits,
    /// The error returned, returned again: once framing is lost, it stays lost.
    failed: Option<RespError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the default [`Limits`], before its first reply.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A decoder that refuses what passes `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        Decoder {
            state: State::Type,
            open: Vec::new(),
            limits,
            failed: None,
        }
    }

    /// True between replies: nothing of a next reply has arrived. A server
    /// that closes the connection when this is false cut a reply short.
    pub fn is_idle(&self) -> bool {
        self.state == State::Type && self.open.is_empty() && self.failed.is_none()
    }

    /// Decodes from `input`, which follows whatever the last call used.
    ///
    /// Returns how many bytes of `input` were used and the reply they
    /// completed, if one was. It stops right after a reply ends, so replies
    /// pipelined in one read come one call each: pass the rest of `input`
    /// again. `None` means every byte was used (and kept, as far as a reply
    /// needs it) and more must arrive.
    ///
    /// An error is final: the connection's framing is lost.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), RespError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.run(input);
        if let Err(error) = &result {
            // Keep nothing of a reply that will never be finished.
            self.state = State::Type;
            self.open = Vec::new();
            self.failed = Some(error.clone());
        }
        result
    }

    fn run(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), RespError> {
        let mut at = 0;
        while at < input.len() {
            let state = std::mem::replace(&mut self.state, State::Type);
            let (used, next) = self.step(state, &input[at..])?;
            at += used;
            match next {
                Next::State(state) => self.state = state,
                Next::Reply(reply) => {
                    if let Some(reply) = self.close(reply) {
                        return Ok((at, Some(reply)));
                    }
                }
            }
        }
        Ok((at, None))
    }

    /// One step in `state` over `input`, which is not empty. Every step
    /// uses at least one byte, so `run` always ends.
    fn step(&mut self, state: State, input: &[u8]) -> Result<(usize, Next), RespError> {
        let byte = input[0];
        let next = match state {
            State::Type => {
                let state = match byte {
                    b'+' | b'-' => State::Line {
                        error: byte == b'-',
                        text: Vec::new(),
                    },
                    b':' | b'$' | b'*' => {
                        let kind = match byte {
                            b':' => NumberKind::Integer,
                            b'$' => NumberKind::Bulk,
                            _ => NumberKind::Array,
                        };
                        if kind == NumberKind::Array && self.open.len() >= self.limits.depth {
                            return Err(RespError::TooDeep {
                                limit: self.limits.depth,
                            });
                        }
                        State::Number {
                            kind,
                            negative: false,
                            digits: 0,
                            value: 0,
                        }
                    }
                    _ => return Err(RespError::UnknownType(byte)),
                };
                return Ok((1, Next::State(state)));
            }
            State::Line { error, mut text } => {
                let end = input.iter().position(|&b| b == b'\r' || b == b'\n');
                let take = end.unwrap_or(input.len());
                if text.len() + take > self.limits.line {
                    return Err(RespError::LineTooLong {
                        limit: self.limits.line,
                    });
                }
                text.extend_from_slice(&input[..take]);
                return match end.map(|i| input[i]) {
                    None => Ok((take, Next::State(State::Line { error, text }))),
                    Some(b'\r') => Ok((take + 1, Next::State(State::LineLf { error, text }))),
                    Some(_) => Err(RespError::Malformed("a line ended by LF without CR")),
                };
            }
            State::LineLf { error, text } => {
                if byte != b'\n' {
                    return Err(RespError::Malformed("a CR in a status or error line"));
                }
                let text = match String::from_utf8(text) {
                    Ok(text) => text,
                    Err(not_utf8) => String::from_utf8_lossy(not_utf8.as_bytes()).into_owned(),
                };
                Next::Reply(if error {
                    Reply::Error(text)
                } else {
                    Reply::Simple(text)
                })
            }
            State::Number {
                kind,
                negative,
                digits,
                value,
            } => Next::State(self.number_byte(kind, negative, digits, value, byte)?),
            State::NumberLf {
                kind,
                negative,
                value,
            } => {
                if byte != b'\n' {
                    return Err(RespError::Malformed("a number not ended by CRLF"));
                }
                self.header(kind, negative, value, input.len() - 1)
            }
            State::Bulk { mut data, remaining } => {
                let take = remaining.min(input.len());
                if data.capacity() - data.len() < take {
                    // Grow as `Vec` would (doubling), but never past the
                    // declared length: room for what came and what is due.
                    let total = data.len() + remaining;
                    let want = (data.len() + take).max(data.capacity() * 2).min(total);
                    data.reserve_exact(want - data.len());
                }
                data.extend_from_slice(&input[..take]);
                let remaining = remaining - take;
                let state = if remaining == 0 {
                    State::BulkCr { data }
                } else {
                    State::Bulk { data, remaining }
                };
                return Ok((take, Next::State(state)));
            }
            State::BulkCr { data } => {
                if byte != b'\r' {
                    return Err(RespError::Malformed("a bulk string longer than its length"));
                }
                Next::State(State::BulkLf { data })
            }
            State::BulkLf { data } => {
                if byte != b'\n' {
                    return Err(RespError::Malformed("a bulk string not ended by CRLF"));
                }
                Next::Reply(Reply::Bulk(data))
            }
        };
        Ok((1, next))
    }

    /// One byte of a number: `-` first, then digits, then CR.
    fn number_byte(
        &self,
        kind: NumberKind,
        negative: bool,
        digits: u8,
        value: u64,
        byte: u8,
    ) -> Result<State, RespError> {
        match byte {
            b'-' if digits == 0 && !negative => Ok(State::Number {
                kind,
                negative: true,
                digits,
                value,
            }),
            b'0'..=b'9' => {
                if digits > 0 && value == 0 {
                    return Err(RespError::Malformed("a number with a leading zero"));
                }
                let value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(byte - b'0')))
                    .ok_or(RespError::Malformed("a number past 64 bits"))?;
                // Refused as soon as it is too large, before its CRLF.
                match kind {
                    NumberKind::Integer if value > i64::MAX as u64 + u64::from(negative) => {
                        return Err(RespError::Malformed("an integer past 64 bits"));
                    }
                    NumberKind::Bulk | NumberKind::Array if negative && value > 1 => {
                        return Err(RespError::Malformed("a negative length other than -1"));
                    }
                    NumberKind::Bulk if value > self.limits.bulk as u64 => {
                        return Err(RespError::BulkTooLong {
                            limit: self.limits.bulk,
                        });
                    }
                    NumberKind::Array if value > self.limits.array as u64 => {
                        return Err(RespError::ArrayTooLong {
                            limit: self.limits.array,
                        });
                    }
                    _ => {}
                }
                Ok(State::Number {
                    kind,
                    negative,
                    // At most 20 digits pass the checks above (u64::MAX has 20).
                    digits: digits.saturating_add(1),
                    value,
                })
            }
            b'\r' if digits == 0 => Err(RespError::Malformed("a number with no digits")),
            b'\r' if negative && value == 0 => Err(RespError::Malformed("-0 is not a number Redis writes")),
            b'\r' => Ok(State::NumberLf {
                kind,
                negative,
                value,
            }),
            _ => Err(RespError::Malformed("a number with a byte that is not a digit")),
        }
    }

    /// A number line is complete. `ahead` is how many bytes of this read
    /// follow it: a bulk string reserves no more than that.
    fn header(&mut self, kind: NumberKind, negative: bool, value: u64, ahead: usize) -> Next {
        match kind {
            // `number_byte` kept the magnitude within i64 (or 2^63 when
            // negative), so neither conversion can fail.
            NumberKind::Integer if negative => Next::Reply(Reply::Integer(0i64.wrapping_sub_unsigned(value))),
            NumberKind::Integer => Next::Reply(Reply::Integer(value as i64)),
            // A negative length is -1 by `number_byte`: no value.
            NumberKind::Bulk | NumberKind::Array if negative => Next::Reply(Reply::Nil),
            NumberKind::Bulk => {
                // Within `limits.bulk`, a usize, by `number_byte`.
                let len = value as usize;
                if len == 0 {
                    return Next::State(State::BulkCr { data: Vec::new() });
                }
                Next::State(State::Bulk {
                    data: Vec::with_capacity(len.min(ahead)),
                    remaining: len,
                })
            }
            NumberKind::Array => {
                // Within `limits.array`, a usize, by `number_byte`.
                let len = value as usize;
                if len == 0 {
                    return Next::Reply(Reply::Array(Vec::new()));
                }
                self.open.push(OpenArray {
                    items: Vec::with_capacity(len.min(RESERVE_ITEMS)),
                    len,
                });
                Next::State(State::Type)
            }
        }
    }

    /// A reply is complete: it goes into the innermost open array, which
    /// closes if that filled it, and so on outwards. Returns the reply the
    /// caller gets, if this finished one.
    fn close(&mut self, mut reply: Reply) -> Option<Reply> {
        while let Some(mut array) = self.open.pop() {
            array.items.push(reply);
            if array.items.len() < array.len {
                self.open.push(array);
                return None;
            }
            reply = Reply::Array(array.items);
        }
        Some(reply)
    }
}
