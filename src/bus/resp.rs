//! RESP2, the Redis serialization protocol, as a client speaks it:
//! commands out, replies in.
//!
//! Sans-IO, like the HTTP reader: [`encode`] appends a command's bytes to
//! a buffer the caller writes when its socket allows, and
//! [`Decoder::decode`] takes whatever bytes a `read()` brought and says how
//! many it used and whether a whole [`Reply`] came of them. Input may be cut
//! anywhere, inside a number, a CRLF or a bulk string's bytes, and decoding
//! resumes where it stopped, without reading anything twice.
//!
//! # Format
//!
//! Every reply starts with a byte that gives its type; every line ends with
//! CRLF. Five types (the RESP2 section of the Redis protocol specification):
//!
//! ```text
//! +OK\r\n                      simple string: one line of text, no CR or LF in it
//! -ERR unknown command\r\n     error: the same, for a command that failed; by
//!                              convention its first word is a code: ERR, LOADING, ...
//! :1000\r\n                    integer: a signed 64-bit decimal
//! $5\r\nhello\r\n              bulk string: a length, CRLF, that many bytes (any
//!                              bytes, CR and LF included), CRLF
//! $-1\r\n                      null bulk string: no value
//! *2\r\n:1\r\n$1\r\na\r\n      array: a count, CRLF, then that many replies of any
//!                              type, arrays included
//! *-1\r\n                      null array: no value (XREAD whose BLOCK timed out)
//! ```
//!
//! A command goes the other way as an array of bulk strings, whatever its
//! arguments are:
//!
//! ```text
//! PING                   *1\r\n$4\r\nPING\r\n
//! SELECT 2               *2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n
//! ```
//!
//! Numbers are read as strictly as Redis reads them itself (`string2ll` in
//! its `util.c`): "no spaces or other characters before or after the string
//! representing the number are accepted, nor zeroes at the start if not
//! for the string "0" representing the zero number". So an optional `-`,
//! then digits, then CRLF: no `+`, no `-0`, no `007`, nothing past `i64`.
//!
//! # States
//!
//! ```text
//!   Type ──'+' '-'──▶ Line ──CR──▶ LineLf ──LF──▶ a reply
//!     └──':' '$' '*'──▶ Number ──CR──▶ NumberLf ──LF──▶ ':'  a reply
//!                                                   '$' n ──▶ Bulk(n) ──n bytes──▶ BulkCr ──▶ BulkLf ──▶ a reply
//!                                                   '*' n ──▶ open an array of n, back to Type
//!
//!   a reply inside an open array goes into it; an array that is full closes
//!   and is itself a reply, to its parent or to the caller
//! ```
//!
//! Open arrays are a stack, not a recursion: a reply nested as deep as a
//! server likes costs one stack entry per level, up to [`Limits::depth`].
//!
//! # What a server can make us hold
//!
//! A reply's header says how much follows, and a server (broken, hostile,
//! or not Redis at all) can say anything. So a header never decides how
//! much is allocated: a bulk string's buffer grows with the bytes that have
//! arrived, an array's list with the replies that have; what is kept is at
//! most about what was received. The [`Limits`] then refuse a header that
//! promises more than Redis itself would ever send, before a byte of it is
//! kept, and bound the nesting so that neither the decoder nor dropping a
//! reply (which recurses) can run out of stack.

use std::fmt;

/// A bulk string longer than this is refused: 512 MiB, the default and
/// historical maximum of Redis' own `proto-max-bulk-len`, the most a Redis
/// string can hold.
pub const MAX_BULK: usize = 512 * 1024 * 1024;

/// An array longer than this is refused: 1,048,576 elements, the limit Redis
/// long applied to the arrays it reads from clients (`1024*1024` in
/// `processMultibulkBuffer`). ssed always sends `COUNT`, so a real reply
/// holds at most that many entries; the limit is for what is not real.
pub const MAX_ARRAY: usize = 1024 * 1024;

/// Arrays nested deeper than this are refused. ssed's deepest reply,
/// `XREAD`'s, nests 5 deep (streams, a stream, its entries, an entry, its
/// fields); the deepest Redis sends (`XINFO STREAM ... FULL`) about 6.
pub const MAX_DEPTH: usize = 32;

/// A simple string or error line longer than this is refused: 64 KiB, the
/// `PROTO_INLINE_MAX_SIZE` Redis allows for a line it reads. Redis' own are
/// a few dozen bytes (`OK`, `PONG`, an error message).
pub const MAX_LINE: usize = 64 * 1024;

/// An open array reserves room for at most this many replies up front; it
/// grows as replies arrive. A header can say a million, and 32 of them
/// nested would otherwise cost gigabytes before a reply arrived.
const RESERVE_ITEMS: usize = 16;

/// One decoded reply.
///
/// RESP2 writes "no value" two ways, `$-1` and `*-1`; both mean the same
/// (a missing key, a blocking read that timed out), so both are [`Nil`].
///
/// [`Nil`]: Reply::Nil
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: a status line. Redis writes ASCII here; a byte that is not
    /// UTF-8 is replaced by U+FFFD rather than refused.
    Simple(String),
    /// `-ERR ...`: the command failed, and this says why (same text rule).
    Error(String),
    /// `:1000`.
    Integer(i64),
    /// `$5\r\nhello`: bytes, any bytes.
    Bulk(Vec<u8>),
    /// `*2 ...`: replies, of any type.
    Array(Vec<Reply>),
    /// `$-1` or `*-1`.
    Nil,
}

impl Reply {
    /// The bytes of a bulk string.
    pub fn as_bulk(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The bytes of a bulk string, moved out.
    pub fn into_bulk(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The elements of an array, moved out.
    pub fn into_array(self) -> Option<Vec<Reply>> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The value of an integer reply.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(value) => Some(*value),
            _ => None,
        }
    }

    /// The text of a simple string (`OK`, `PONG`).
    pub fn as_simple(&self) -> Option<&str> {
        match self {
            Reply::Simple(text) => Some(text),
            _ => None,
        }
    }

    /// True for an error reply: the command failed.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// True for `$-1` and `*-1`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Nil)
    }

    /// The whole text of an error reply: `ERR unknown command 'FOO'`.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(text) => Some(text),
            _ => None,
        }
    }

    /// The code of an error reply: its first word, by Redis' convention
    /// (`ERR`, `WRONGTYPE`, `LOADING`, `READONLY`, `NOGROUP`, ...). Some
    /// call for waiting and trying again (`LOADING`: the server is reading
    /// its dataset from disk), most do not.
    pub fn error_code(&self) -> Option<&str> {
        let text = self.error()?;
        Some(text.split(' ').next().unwrap_or(text))
    }

    /// Appends this reply in RESP2, as a server would send it: the inverse
    /// of [`Decoder::decode`], for tests and stand-in servers. [`Reply::Nil`]
    /// is written `$-1`; a simple string or error with a CR or LF in it
    /// would not survive the trip and is written as it is anyway.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(text) => line(b'+', text.as_bytes(), out),
            Reply::Error(text) => line(b'-', text.as_bytes(), out),
            Reply::Integer(value) => {
                out.push(b':');
                if *value < 0 {
                    out.push(b'-');
                }
                out.extend_from_slice(Decimal::new(value.unsigned_abs()).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Bulk(bytes) => encode_bulk(bytes, out),
            Reply::Array(items) => {
                encode_array_header(items.len(), out);
                for item in items {
                    item.encode(out);
                }
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
        }
    }
}

fn line(kind: u8, text: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// Appends one command, an array of bulk strings, to `out`:
///
/// ```text
/// XADD ssed:log * data hi    *5\r\n$4\r\nXADD\r\n$8\r\nssed:log\r\n$1\r\n*\r\n$4\r\ndata\r\n$2\r\nhi\r\n
/// ```
///
/// Arguments are bytes, written as they are: a bulk string carries its
/// length, so nothing in it needs escaping.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    encode_array_header(args.len(), out);
    for arg in args {
        encode_bulk(arg, out);
    }
}

/// Appends `*<len>\r\n`: the start of a command of `len` arguments, for a
/// caller that writes them one by one with [`encode_bulk`].
pub fn encode_array_header(len: usize, out: &mut Vec<u8>) {
    line(b'*', Decimal::new(len as u64).as_bytes(), out);
}

/// Appends one argument as a bulk string: `$<len>\r\n<bytes>\r\n`.
pub fn encode_bulk(arg: &[u8], out: &mut Vec<u8>) {
    line(b'$', Decimal::new(arg.len() as u64).as_bytes(), out);
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// A `u64` as decimal digits, on the stack: command arguments and headers
/// without an allocation each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    /// `u64::MAX` has 20 digits, so `digits` always has room.
    pub(crate) fn new(mut value: u64) -> Decimal {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                return Decimal { digits, start };
            }
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// How much one reply may claim. [`Limits::default`] is what ssed uses;
/// tests use smaller ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, in bytes ([`MAX_BULK`]).
    pub bulk: usize,
    /// Most elements in one array ([`MAX_ARRAY`]).
    pub array: usize,
    /// Most arrays open inside one another ([`MAX_DEPTH`]).
    pub depth: usize,
    /// Longest simple string or error line, in bytes ([`MAX_LINE`]).
    pub line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bulk: MAX_BULK,
            array: MAX_ARRAY,
            depth: MAX_DEPTH,
            line: MAX_LINE,
        }
    }
}

/// Why the bytes from a server are not RESP2 we accept. Any of these means
/// the framing of what follows is unknown: the connection is closed, and
/// the decoder returns the same error from then on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// A reply started with a byte that is none of `+ - : $ *`.
    UnknownType(u8),
    /// Not RESP2: a number as Redis would not write it, a line not ended
    /// by CRLF, a bulk string longer than its length.
    Malformed(&'static str),
    /// A simple string or error line longer than [`Limits::line`].
    LineTooLong {
        /// The limit that was passed.
        limit: usize,
    },
    /// A bulk string whose length is over [`Limits::bulk`].
    BulkTooLong {
        /// The limit that was passed.
        limit: usize,
    },
    /// An array whose count is over [`Limits::array`].
    ArrayTooLong {
        /// The limit that was passed.
        limit: usize,
    },
    /// Arrays nested deeper than [`Limits::depth`].
    TooDeep {
        /// The limit that was passed.
        limit: usize,
    },
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(byte) => {
                write!(f, "RESP: a reply cannot start with '{}'", byte.escape_ascii())
            }
            RespError::Malformed(why) => write!(f, "RESP: {why}"),
            RespError::LineTooLong { limit } => write!(f, "RESP: a status or error line over {limit} bytes"),
            RespError::BulkTooLong { limit } => write!(f, "RESP: a bulk string over {limit} bytes"),
            RespError::ArrayTooLong { limit } => write!(f, "RESP: an array of more than {limit} elements"),
            RespError::TooDeep { limit } => write!(f, "RESP: arrays nested more than {limit} deep"),
        }
    }
}

impl std::error::Error for RespError {}

/// What a number line is the header of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberKind {
    /// `:`, an integer reply.
    Integer,
    /// `$`, a bulk string's length.
    Bulk,
    /// `*`, an array's count.
    Array,
}

/// Where the decoder is inside the current reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
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
struct OpenArray {
    items: Vec<Reply>,
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
    state: State,
    /// Arrays open inside one another, outermost first.
    open: Vec<OpenArray>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(bytes.to_vec())
    }

    fn simple(text: &str) -> Reply {
        Reply::Simple(text.to_string())
    }

    fn error(text: &str) -> Reply {
        Reply::Error(text.to_string())
    }

    fn array(items: Vec<Reply>) -> Reply {
        Reply::Array(items)
    }

    /// Feeds `pieces` one read at a time, as a connection does, and
    /// collects the replies; stops at the first error. Checks the contract
    /// on the way: a call that completes nothing used all it was given.
    fn decode_pieces(decoder: &mut Decoder, pieces: &[&[u8]]) -> (Vec<Reply>, Option<RespError>) {
        let mut replies = Vec::new();
        for piece in pieces {
            let mut input: &[u8] = piece;
            loop {
                match decoder.decode(input) {
                    Ok((used, Some(reply))) => {
                        assert!(used > 0 && used <= input.len());
                        replies.push(reply);
                        input = &input[used..];
                    }
                    Ok((used, None)) => {
                        assert_eq!(used, input.len(), "need-more uses everything");
                        break;
                    }
                    Err(error) => return (replies, Some(error)),
                }
            }
        }
        (replies, None)
    }

    /// Decodes `input` whole, cut in two at every position, and a byte at
    /// a time, and checks all of them give what the whole does.
    fn decode_every_way(input: &[u8], limits: Limits) -> (Vec<Reply>, Option<RespError>) {
        let whole = decode_pieces(&mut Decoder::with_limits(limits), &[input]);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let split = decode_pieces(&mut Decoder::with_limits(limits), &[a, b]);
            assert_eq!(split, whole, "{:?} cut at {cut}", String::from_utf8_lossy(input));
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let one_by_one = decode_pieces(&mut Decoder::with_limits(limits), &bytes);
        assert_eq!(
            one_by_one,
            whole,
            "{:?} a byte at a time",
            String::from_utf8_lossy(input)
        );
        whole
    }

    #[test]
    fn decodes_every_type_split_at_every_byte() {
        let cases: Vec<(&[u8], Reply)> = vec![
            (b"+OK\r\n", simple("OK")),
            (b"+PONG\r\n", simple("PONG")),
            (b"+\r\n", simple("")),
            (
                b"-ERR unknown command 'FOO', with args beginning with: \r\n",
                error("ERR unknown command 'FOO', with args beginning with: "),
            ),
            (
                b"-LOADING Redis is loading the dataset in memory\r\n",
                error("LOADING Redis is loading the dataset in memory"),
            ),
            (
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            ),
            (b"+caf\xc3\xa9 \xff\r\n", simple("caf\u{e9} \u{fffd}")),
            (b":0\r\n", Reply::Integer(0)),
            (b":1000\r\n", Reply::Integer(1000)),
            (b":-1\r\n", Reply::Integer(-1)),
            (b":9223372036854775807\r\n", Reply::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", Reply::Integer(i64::MIN)),
            (b"$5\r\nhello\r\n", bulk(b"hello")),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"$-1\r\n", Reply::Nil),
            (b"$4\r\na\r\nb\r\n", bulk(b"a\r\nb")),
            (b"$5\r\n\0\xff\r\n\n\r\n", bulk(b"\0\xff\r\n\n")),
            (b"*0\r\n", array(vec![])),
            (b"*-1\r\n", Reply::Nil),
            (
                b"*3\r\n:1\r\n:2\r\n:3\r\n",
                array(vec![Reply::Integer(1), Reply::Integer(2), Reply::Integer(3)]),
            ),
            (
                b"*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n$5\r\nhello\r\n",
                array(vec![
                    Reply::Integer(1),
                    Reply::Integer(2),
                    Reply::Integer(3),
                    Reply::Integer(4),
                    bulk(b"hello"),
                ]),
            ),
            (
                b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
                array(vec![
                    array(vec![Reply::Integer(1), Reply::Integer(2), Reply::Integer(3)]),
                    array(vec![simple("Hello"), error("World")]),
                ]),
            ),
            (
                b"*3\r\n$3\r\nfoo\r\n$-1\r\n$3\r\nbar\r\n",
                array(vec![bulk(b"foo"), Reply::Nil, bulk(b"bar")]),
            ),
            (
                b"*3\r\n*0\r\n*-1\r\n*1\r\n*1\r\n$0\r\n\r\n",
                array(vec![
                    array(vec![]),
                    Reply::Nil,
                    array(vec![array(vec![bulk(b"")])]),
                ]),
            ),
        ];
        for (input, want) in cases {
            let (replies, error) = decode_every_way(input, Limits::default());
            assert_eq!(
                (replies, error),
                (vec![want.clone()], None),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            let mut decoder = Decoder::new();
            assert_eq!(decoder.decode(input), Ok((input.len(), Some(want))));
            assert!(decoder.is_idle());
        }
    }

    #[test]
    fn refuses_malformed_replies_split_at_every_byte() {
        use RespError::*;
        let cases: &[(&[u8], RespError)] = &[
            (b"?", UnknownType(b'?')),
            (b"\r\n", UnknownType(b'\r')),
            (b" +OK\r\n", UnknownType(b' ')),
            (b"OK\r\n", UnknownType(b'O')),
            (b"%1\r\n", UnknownType(b'%')),
            (b"+OK\n", Malformed("a line ended by LF without CR")),
            (b"-ERR\n", Malformed("a line ended by LF without CR")),
            (b"+OK\rX", Malformed("a CR in a status or error line")),
            (b"+OK\r\r\n", Malformed("a CR in a status or error line")),
            (b":\r\n", Malformed("a number with no digits")),
            (b":-\r\n", Malformed("a number with no digits")),
            (b":+1\r\n", Malformed("a number with a byte that is not a digit")),
            (b": 1\r\n", Malformed("a number with a byte that is not a digit")),
            (b":1 \r\n", Malformed("a number with a byte that is not a digit")),
            (b":1.5\r\n", Malformed("a number with a byte that is not a digit")),
            (
                b":0x10\r\n",
                Malformed("a number with a byte that is not a digit"),
            ),
            (b":--1\r\n", Malformed("a number with a byte that is not a digit")),
            (b":1-\r\n", Malformed("a number with a byte that is not a digit")),
            (b":1\n", Malformed("a number with a byte that is not a digit")),
            (b":01\r\n", Malformed("a number with a leading zero")),
            (b":00\r\n", Malformed("a number with a leading zero")),
            (b":-01\r\n", Malformed("a number with a leading zero")),
            (b":-0\r\n", Malformed("-0 is not a number Redis writes")),
            (b":1\r\r", Malformed("a number not ended by CRLF")),
            (b":9223372036854775808\r\n", Malformed("an integer past 64 bits")),
            (b":-9223372036854775809\r\n", Malformed("an integer past 64 bits")),
            (
                b":99999999999999999999999\r\n",
                Malformed("an integer past 64 bits"),
            ),
            (b"$\r\n", Malformed("a number with no digits")),
            (b"$-2\r\n", Malformed("a negative length other than -1")),
            (b"$-10\r\n", Malformed("a negative length other than -1")),
            (b"$-0\r\n", Malformed("-0 is not a number Redis writes")),
            (b"$01\r\nx\r\n", Malformed("a number with a leading zero")),
            (b"$1\r\nab\r\n", Malformed("a bulk string longer than its length")),
            (
                b"$2\r\na\r\n\r\n",
                Malformed("a bulk string longer than its length"),
            ),
            (b"$1\r\na\n", Malformed("a bulk string longer than its length")),
            (b"$1\r\na\rb", Malformed("a bulk string not ended by CRLF")),
            (b"*-2\r\n", Malformed("a negative length other than -1")),
            (b"*1\r\n?", UnknownType(b'?')),
            (
                b"*2\r\n+OK\r\n:x\r\n",
                Malformed("a number with a byte that is not a digit"),
            ),
            (
                b"*1\r\n*1\r\n$1\r\nab",
                Malformed("a bulk string longer than its length"),
            ),
        ];
        for (input, want) in cases {
            let (replies, error) = decode_every_way(input, Limits::default());
            assert_eq!(error.as_ref(), Some(want), "{:?}", String::from_utf8_lossy(input));
            assert!(replies.is_empty());
        }
    }

    #[test]
    fn an_error_is_final() {
        let mut decoder = Decoder::new();
        assert_eq!(decoder.decode(b"+OK\r\n:x"), Ok((5, Some(simple("OK")))));
        let refused = Err(RespError::Malformed("a number with a byte that is not a digit"));
        assert_eq!(decoder.decode(b":x"), refused);
        assert_eq!(decoder.decode(b"+OK\r\n"), refused, "what follows is not read");
        assert!(!decoder.is_idle());
    }

    #[test]
    fn pipelined_replies_come_one_call_each() {
        let input: &[u8] =
            b"+OK\r\n$15\r\n1526919030474-0\r\n*-1\r\n:3\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n-ERR no\r\n";
        let want = vec![
            simple("OK"),
            bulk(b"1526919030474-0"),
            Reply::Nil,
            Reply::Integer(3),
            array(vec![bulk(b"a"), bulk(b"b")]),
            error("ERR no"),
        ];
        assert_eq!(decode_every_way(input, Limits::default()), (want, None));
        // One call, one reply: the rest is left for the next call.
        let mut decoder = Decoder::new();
        assert_eq!(decoder.decode(input), Ok((5, Some(simple("OK")))));
        assert_eq!(
            decoder.decode(&input[5..]),
            Ok((22, Some(bulk(b"1526919030474-0"))))
        );
        assert_eq!(decoder.decode(&[]), Ok((0, None)));
        assert!(decoder.is_idle());
        // A reply that ends where a read does is whole, the next one not begun.
        assert_eq!(
            decoder.decode(b"*1\r\n:1\r\n"),
            Ok((8, Some(array(vec![Reply::Integer(1)]))))
        );
        assert!(decoder.is_idle());
        assert_eq!(decoder.decode(b"*1\r\n"), Ok((4, None)));
        assert!(!decoder.is_idle(), "a reply cut short shows");
    }

    #[test]
    fn refuses_what_passes_small_limits() {
        let limits = Limits {
            bulk: 5,
            array: 2,
            depth: 2,
            line: 4,
        };
        let fits: &[&[u8]] = &[
            b"$5\r\nhello\r\n",
            b"*2\r\n:1\r\n:2\r\n",
            b"*1\r\n*2\r\n:1\r\n$-1\r\n",
            b"+OKOK\r\n",
            b"-ERR\r\n",
        ];
        for input in fits {
            let (replies, error) = decode_every_way(input, limits);
            assert_eq!(
                (replies.len(), error),
                (1, None),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let refused: &[(&[u8], RespError)] = &[
            (b"$6\r\nhello!\r\n", RespError::BulkTooLong { limit: 5 }),
            (b"*3\r\n:1\r\n:2\r\n:3\r\n", RespError::ArrayTooLong { limit: 2 }),
            (b"*1\r\n*1\r\n*0\r\n", RespError::TooDeep { limit: 2 }),
            (b"*1\r\n*1\r\n*-1\r\n", RespError::TooDeep { limit: 2 }),
            (b"+OKOK!\r\n", RespError::LineTooLong { limit: 4 }),
            (b"-ERROR\r\n", RespError::LineTooLong { limit: 4 }),
        ];
        for (input, want) in refused {
            let (_, error) = decode_every_way(input, limits);
            assert_eq!(error.as_ref(), Some(want), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn a_header_alone_allocates_nothing_it_promises() {
        // Over the limit: refused at the digit that passes it, before its
        // CRLF, so nothing is reserved for it.
        let mut decoder = Decoder::new();
        assert_eq!(
            decoder.decode(b"$536870913"),
            Err(RespError::BulkTooLong { limit: MAX_BULK })
        );
        let mut decoder = Decoder::new();
        assert_eq!(
            decoder.decode(b"$99999999999999999999999"),
            Err(RespError::BulkTooLong { limit: MAX_BULK })
        );
        let mut decoder = Decoder::new();
        assert_eq!(
            decoder.decode(b"*1048577"),
            Err(RespError::ArrayTooLong { limit: MAX_ARRAY })
        );

        // At the limit: accepted, and only what arrived is held.
        let mut decoder = Decoder::new();
        assert_eq!(decoder.decode(b"$536870912\r\nabc"), Ok((15, None)));
        match &decoder.state {
            State::Bulk { data, remaining } => {
                assert_eq!((data.as_slice(), *remaining), (&b"abc"[..], MAX_BULK - 3));
                assert!(data.capacity() <= 3, "reserved {}", data.capacity());
            }
            other => panic!("{other:?}"),
        }
        // A bulk string in many reads grows with them, never past its length.
        let mut decoder = Decoder::new();
        assert_eq!(decoder.decode(b"$100\r\n"), Ok((6, None)));
        for _ in 0..99 {
            assert_eq!(decoder.decode(b"x"), Ok((1, None)));
        }
        match &decoder.state {
            State::Bulk { data, .. } => assert!(data.capacity() <= 100, "reserved {}", data.capacity()),
            other => panic!("{other:?}"),
        }

        // Arrays of a million, nested as deep as allowed: a few replies' room each.
        let mut decoder = Decoder::new();
        let deep = b"*1048576\r\n".repeat(MAX_DEPTH);
        assert_eq!(decoder.decode(&deep), Ok((deep.len(), None)));
        assert_eq!(decoder.open.len(), MAX_DEPTH);
        assert!(decoder
            .open
            .iter()
            .all(|open| open.items.capacity() <= RESERVE_ITEMS));
        assert_eq!(decoder.decode(b"*"), Err(RespError::TooDeep { limit: MAX_DEPTH }));
    }

    #[test]
    fn nests_to_the_depth_limit_and_no_further() {
        let mut input = b"*1\r\n".repeat(MAX_DEPTH);
        input.extend_from_slice(b":7\r\n");
        let mut want = Reply::Integer(7);
        for _ in 0..MAX_DEPTH {
            want = array(vec![want]);
        }
        assert_eq!(Decoder::new().decode(&input), Ok((input.len(), Some(want))));
        // One deeper is refused at its `*`, however much follows.
        let mut input = b"*1\r\n".repeat(100_000);
        input.extend_from_slice(b":7\r\n");
        let mut decoder = Decoder::new();
        assert_eq!(
            decoder.decode(&input),
            Err(RespError::TooDeep { limit: MAX_DEPTH })
        );
        assert!(decoder.open.is_empty(), "nothing of it is kept");
    }

    #[test]
    fn refuses_long_lines() {
        let mut line = b"+".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_LINE));
        line.extend_from_slice(b"\r\n");
        assert_eq!(Decoder::new().decode(&line).map(|(used, _)| used), Ok(line.len()));
        line.insert(1, b'a');
        assert_eq!(
            Decoder::new().decode(&line),
            Err(RespError::LineTooLong { limit: MAX_LINE })
        );
        // In pieces too: the limit counts what was kept.
        let mut decoder = Decoder::new();
        let pieces: Vec<&[u8]> = line.chunks(1000).collect();
        assert_eq!(
            decode_pieces(&mut decoder, &pieces).1,
            Some(RespError::LineTooLong { limit: MAX_LINE })
        );
    }

    #[test]
    fn encodes_commands() {
        let cases: &[(&[&[u8]], &[u8])] = &[
            (&[b"PING"], b"*1\r\n$4\r\nPING\r\n"),
            (&[b"SELECT", b"2"], b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"),
            (
                &[b"XADD", b"ssed:log", b"*", b"data", b"hi"],
                b"*5\r\n$4\r\nXADD\r\n$8\r\nssed:log\r\n$1\r\n*\r\n$4\r\ndata\r\n$2\r\nhi\r\n",
            ),
            (&[b"SET", b"k", b""], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"),
            (
                &[b"SET", b"k", b"a\r\nb"],
                b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n",
            ),
            (&[], b"*0\r\n"),
        ];
        for (args, want) in cases {
            let mut out = b"before".to_vec();
            encode(args, &mut out);
            assert_eq!(&out[6..], *want, "{args:?}");
            assert_eq!(&out[..6], b"before", "appends");
            // A command has the shape of a reply: an array of bulk strings.
            let want_reply = array(args.iter().map(|arg| bulk(arg)).collect());
            assert_eq!(Decoder::new().decode(want), Ok((want.len(), Some(want_reply))));
        }
        assert_eq!(Decimal::new(0).as_bytes(), b"0");
        assert_eq!(Decimal::new(u64::MAX).as_bytes(), b"18446744073709551615");
    }

    #[test]
    fn helpers_look_inside_a_reply() {
        let loading = error("LOADING Redis is loading the dataset in memory");
        assert!(loading.is_error());
        assert_eq!(
            loading.error(),
            Some("LOADING Redis is loading the dataset in memory")
        );
        assert_eq!(loading.error_code(), Some("LOADING"));
        assert_eq!(error("ERR").error_code(), Some("ERR"));
        assert_eq!(error("").error_code(), Some(""));
        assert_eq!(simple("OK").error_code(), None);
        assert_eq!(simple("OK").as_simple(), Some("OK"));
        assert_eq!(bulk(b"x").as_bulk(), Some(&b"x"[..]));
        assert_eq!(bulk(b"x").into_bulk(), Some(b"x".to_vec()));
        assert_eq!(simple("x").as_bulk(), None);
        assert_eq!(Reply::Integer(-3).as_integer(), Some(-3));
        let pair = array(vec![Reply::Nil, bulk(b"")]);
        assert_eq!(pair.as_array().map(<[Reply]>::len), Some(2));
        assert!(pair.as_array().is_some_and(|items| items[0].is_nil()));
        assert_eq!(pair.clone().into_array(), Some(vec![Reply::Nil, bulk(b"")]));
        assert_eq!(Reply::Nil.as_array(), None);
        assert!(!pair.is_error() && !pair.is_nil());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            RespError::UnknownType(b'%').to_string(),
            "RESP: a reply cannot start with '%'"
        );
        assert_eq!(
            RespError::UnknownType(0xff).to_string(),
            r"RESP: a reply cannot start with '\xff'"
        );
        assert_eq!(
            RespError::BulkTooLong { limit: MAX_BULK }.to_string(),
            "RESP: a bulk string over 536870912 bytes"
        );
        assert_eq!(
            RespError::Malformed("a number with a leading zero").to_string(),
            "RESP: a number with a leading zero"
        );
    }

    /// Replies of every type, nested a few deep. Text has no CR or LF,
    /// which RESP2 cannot carry in a simple string or error.
    fn any_reply() -> impl Strategy<Value = Reply> {
        let text = proptest::collection::vec(0x20u8..0x7f, 0..12)
            .prop_map(|b| String::from_utf8(b).unwrap_or_default());
        let leaf = prop_oneof![
            text.clone().prop_map(Reply::Simple),
            text.prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Bulk),
            Just(Reply::Nil),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Reply::Array)
        })
    }

    /// Bytes that are mostly RESP, so that cases get past the first byte.
    fn near_resp() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"+".to_vec()),
            Just(b"-".to_vec()),
            Just(b":".to_vec()),
            Just(b"$".to_vec()),
            Just(b"*".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"-1".to_vec()),
            Just(b"0".to_vec()),
            Just(b"3".to_vec()),
            Just(b"abc".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn replies_survive_encoding_and_any_cuts(
            replies in proptest::collection::vec(any_reply(), 1..4),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut bytes = Vec::new();
            for reply in &replies {
                reply.encode(&mut bytes);
            }
            let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for point in points {
                pieces.push(&bytes[from..point]);
                from = point;
            }
            pieces.push(&bytes[from..]);
            let mut decoder = Decoder::new();
            prop_assert_eq!(decode_pieces(&mut decoder, &pieces), (replies, None));
            prop_assert!(decoder.is_idle());
        }

        #[test]
        fn any_bytes_decode_the_same_however_cut(bytes in near_resp(), cut in any::<prop::sample::Index>()) {
            // Never panics (a panic fails the case), and the cut changes nothing.
            let cut = cut.index(bytes.len() + 1);
            let whole = decode_pieces(&mut Decoder::new(), &[&bytes]);
            let split = decode_pieces(&mut Decoder::new(), &[&bytes[..cut], &bytes[cut..]]);
            prop_assert_eq!(split, whole);
        }
    }
}
