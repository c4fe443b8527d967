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

mod decoder;

pub use decoder::Decoder;

#[cfg(test)]
mod tests;
