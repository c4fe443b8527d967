//! One incremental, sans-IO client for `text/event-stream` responses:
//! bytes in, split anywhere; the head, lines and blocks out.
//!
//! A subscriber's socket carries three layers, and [`Parser`] undoes all
//! three in one pass without ever reading a socket itself:
//!
//! ```text
//! HTTP/1.1 200 OK\r\n ... \r\n\r\n       1. the response head  (crate::http)
//! 1c\r\n ... \r\n  ...  0\r\n\r\n         2. the body framing   (crate::chunked,
//!                                            a Content-Length, or until close)
//! id: 7\ndata: hello\n\n                  3. the event stream   (WHATWG lines)
//! ```
//!
//! # Two ways to use it
//!
//! [`Parser::feed`] hands out borrowed [`Item`]s through a callback: the
//! head once, then every [`Line`] of the stream, then [`Item::End`] when
//! the server ends the body. Nothing is allocated per line or per event:
//! only a line split across reads is carried over. That is the load tool's
//! fast path, 19,000 subscribers on one thread, looking at one `data:`
//! line per event.
//!
//! [`Events`] turns those lines into owned [`Event`]s (id, event name,
//! data, retry, comments), one per block. That is what the tests and the
//! soak want:
//!
//! ```
//! use ssed_testkit::sse::{Events, Item, Parser};
//!
//! let mut parser = Parser::new();
//! let mut events = Events::default();
//! let mut got = Vec::new();
//! let wire = b"HTTP/1.1 200 OK\r\n\r\nid: 1\ndata: a\ndata: b\n\n";
//! for piece in wire.chunks(5) {
//!     parser
//!         .feed(piece, &mut |item| {
//!             if let Item::Line(line) = item {
//!                 got.extend(events.line(line));
//!             }
//!         })
//!         .unwrap();
//! }
//! assert_eq!(got[0].id.as_deref(), Some("1"));
//! assert_eq!(got[0].data, "a\nb");
//! ```
//!
//! # Phases
//!
//! ```text
//!            head complete, 200                last chunk / Content-Length done
//!   Head ───────────────────────────> Body ─────────────────────────────────> Ended
//!     │ not 200, bad head                │ bad chunk, line too long
//!     └──────────────> Failed <──────────┘
//! ```
//!
//! A close-delimited body (HTTP/1.0, or neither `Content-Length` nor
//! chunked) never reaches `Ended` by itself: its end is the socket's EOF,
//! which only the caller sees. Once `Failed`, every feed returns the same
//! error: the caller closes the connection.
//!
//! # Lines (WHATWG HTML, "Interpreting an event stream")
//!
//! > Lines must be processed, in the order they are received, as follows:
//! > if the line is empty, dispatch the event; if the line starts with a
//! > U+003A COLON character (:), ignore the line; if the line contains a
//! > U+003A COLON character, collect the characters on the line before the
//! > first colon, and let *field* be that string; collect the characters
//! > on the line after the first colon, and let *value* be that string; if
//! > value starts with a U+0020 SPACE character, remove it from value.
//! > Otherwise, the string is not empty but does not contain a colon: use
//! > the whole line as the field name, and the empty string as the value.
//!
//! Lines end with CRLF, LF or a lone CR (`end-of-line = ( cr lf / cr / lf )`),
//! and a CRLF may be split between two reads: a CR at the end of one read
//! makes an LF at the start of the next one part of the same line end. One
//! leading UTF-8 byte order mark is dropped.

use std::fmt;

use crate::chunked::{ChunkError, ChunkedDecoder};
use crate::http::{parse_head, HeadError, ResponseHead};

/// A line longer than this is an error rather than unbounded memory.
pub const MAX_LINE: usize = 8 << 20;

/// A carried-over line buffer up to this size is kept for the next one;
/// larger ones are freed (most subscribers only ever need a few bytes).
const KEEP_CARRY: usize = 256;

const BOM: &[u8] = b"\xef\xbb\xbf";

/// What the parser hands out, borrowed from the bytes just fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// The `200` head: the stream begins. Once.
    Head(&'a ResponseHead),
    /// One line of the event stream.
    Line(Line<'a>),
    /// The server ended the body (the last chunk, or `Content-Length`).
    End,
}

/// One line of an event stream, split as WHATWG says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `name: value`, one leading space of the value removed; `name` alone
    /// gives an empty value.
    Field { name: &'a [u8], value: &'a [u8] },
    /// `:text`, everything after the colon.
    Comment(&'a [u8]),
    /// An empty line: the block above it is complete.
    Blank,
}

impl<'a> Line<'a> {
    /// Splits one line (without its line end).
    #[inline]
    pub fn parse(line: &'a [u8]) -> Line<'a> {
        if line.is_empty() {
            return Line::Blank;
        }
        if let Some(text) = line.strip_prefix(b":") {
            return Line::Comment(text);
        }
        // Field names are a few bytes: a plain loop beats memchr's setup.
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &line[line.len()..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        Line::Field { name, value }
    }
}

/// Where a [`Parser`] is; see the module doc's diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Head,
    Body,
    Ended,
    Failed,
}

/// Why a stream cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The head's status was not `200`.
    Status(u16),
    Head(HeadError),
    Chunk(ChunkError),
    /// A line over [`MAX_LINE`] bytes.
    LineTooLong,
}

impl StreamError {
    /// The server did not open a stream (as opposed to breaking one).
    pub fn is_refusal(&self) -> bool {
        matches!(self, StreamError::Status(_) | StreamError::Head(_))
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Status(code) => write!(f, "status {code}"),
            StreamError::Head(e) => e.fmt(f),
            StreamError::Chunk(e) => e.fmt(f),
            StreamError::LineTooLong => write!(f, "a stream line over {MAX_LINE} bytes"),
        }
    }
}

impl std::error::Error for StreamError {}

#[derive(Debug)]
enum State {
    /// Collecting a head that did not arrive in one read.
    Head(Vec<u8>),
    Chunked(ChunkedDecoder),
    /// A `Content-Length` body, this many bytes left.
    Length(u64),
    /// Until the server closes.
    Plain,
    Ended,
    Failed(StreamError),
}

/// One response's parser. See the module doc.
#[derive(Debug)]
pub struct Parser {
    state: State,
    lines: Lines,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser {
            state: State::Head(Vec::new()),
            lines: Lines::default(),
        }
    }

    #[inline]
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Head(_) => Phase::Head,
            State::Chunked(_) | State::Length(_) | State::Plain => Phase::Body,
            State::Ended => Phase::Ended,
            State::Failed(_) => Phase::Failed,
        }
    }

    /// Feeds bytes from the socket, calling `on` for each item they
    /// complete. Returns how many bytes belong to this response: all of
    /// them, unless the body ended inside `bytes` (the rest is not part of
    /// the stream; on an event stream it should not exist).
    pub fn feed(&mut self, bytes: &[u8], on: &mut impl FnMut(Item<'_>)) -> Result<usize, StreamError> {
        match self.run(bytes, on) {
            Ok(used) => Ok(used),
            Err(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    fn run(&mut self, bytes: &[u8], on: &mut impl FnMut(Item<'_>)) -> Result<usize, StreamError> {
        let mut used = 0;
        if let State::Head(buf) = &mut self.state {
            // Most heads arrive in one read: parse them in place, and
            // buffer only a head that is split.
            let parsed = if buf.is_empty() {
                parse_head(bytes)
            } else {
                let before = buf.len();
                buf.extend_from_slice(bytes);
                parse_head(buf).map(|done| done.map(|(head, end)| (head, end.saturating_sub(before))))
            };
            let Some((head, end)) = parsed.map_err(StreamError::Head)? else {
                if buf.is_empty() {
                    buf.extend_from_slice(bytes);
                }
                return Ok(bytes.len());
            };
            if head.status != 200 {
                return Err(StreamError::Status(head.status));
            }
            on(Item::Head(&head));
            used = end;
            self.state = match head.content_length {
                _ if head.chunked => State::Chunked(ChunkedDecoder::new()),
                Some(n) => State::Length(n as u64),
                None => State::Plain,
            };
        }
        let rest = &bytes[used..];
        let Parser { state, lines } = self;
        let ended = match state {
            State::Head(_) | State::Ended => return Ok(used),
            State::Failed(e) => return Err(*e),
            State::Plain => {
                lines.feed(rest, on);
                used = bytes.len();
                false
            }
            State::Length(left) => {
                let take = (*left).min(rest.len() as u64) as usize;
                lines.feed(&rest[..take], on);
                *left -= take as u64;
                used += take;
                *left == 0
            }
            State::Chunked(decoder) => {
                used += decoder
                    .decode(rest, &mut |data| lines.feed(data, on))
                    .map_err(StreamError::Chunk)?;
                decoder.is_done()
            }
        };
        if lines.too_long {
            return Err(StreamError::LineTooLong);
        }
        if ended {
            // WHATWG: at the end of the stream, pending data is discarded.
            lines.carry = Vec::new();
            self.state = State::Ended;
            on(Item::End);
        }
        Ok(used)
    }

    /// Frees the buffer of a line split across reads once it is empty: for
    /// a caller holding many idle streams, after a read that drained.
    pub fn shrink(&mut self) {
        if self.lines.carry.is_empty() && self.lines.carry.capacity() > 0 {
            self.lines.carry = Vec::new();
        }
    }
}

/// Splits stream bytes into lines.
#[derive(Debug, Default)]
struct Lines {
    /// The start of a line that has not ended yet.
    carry: Vec<u8>,
    /// The last line ended with a CR: an LF right after it is the same end.
    after_cr: bool,
    /// A first line was seen (the BOM can only come before it).
    started: bool,
    too_long: bool,
}

impl Lines {
    fn feed(&mut self, data: &[u8], on: &mut impl FnMut(Item<'_>)) {
        let Some(&first) = data.first() else {
            return;
        };
        // Where the next line starts: past the LF of a CRLF split across reads.
        let mut start = usize::from(std::mem::take(&mut self.after_cr) && first == b'\n');
        for at in memchr::memchr2_iter(b'\r', b'\n', data) {
            if at < start {
                continue; // the LF of a CRLF
            }
            if self.carry.is_empty() {
                self.line(&data[start..at], on);
            } else {
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(&data[start..at]);
                self.line(&carry, on);
                carry.clear();
                if carry.capacity() <= KEEP_CARRY {
                    self.carry = carry;
                }
            }
            start = at + 1;
            if data[at] == b'\r' {
                match data.get(start) {
                    Some(b'\n') => start += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        let rest = &data[start.min(data.len())..];
        if self.carry.len() + rest.len() > MAX_LINE {
            self.too_long = true;
        } else {
            self.carry.extend_from_slice(rest);
        }
    }

    fn line(&mut self, mut line: &[u8], on: &mut impl FnMut(Item<'_>)) {
        if !self.started {
            self.started = true;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        on(Item::Line(Line::parse(line)));
    }
}

/// One block of the stream (the lines up to a blank line), as a client
/// sees it. The fields hold what this block said; keeping the last event
/// id across blocks, as `EventSource` does, is the caller's business.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: Option<String>,
    /// The `event:` name; `None` means the default, `message`.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// How many `data:` lines there were.
    pub data_lines: usize,
    pub retry: Option<u64>,
    /// Comment lines (`: ping` gives `ping`).
    pub comments: Vec<String>,
}

impl Event {
    /// WHATWG dispatches a `message` event for this block: it had data
    /// (possibly empty). Comment-only and retry-only blocks are not.
    pub fn is_message(&self) -> bool {
        self.data_lines > 0
    }
}

/// Assembles [`Line`]s into owned [`Event`]s.
#[derive(Debug, Default)]
pub struct Events {
    block: Event,
    /// Lines in the block so far: a blank line after none ends nothing.
    lines: usize,
}

impl Events {
    /// Takes one line; returns the block it completes, if any.
    ///
    /// Text is decoded as UTF-8 with replacement, as WHATWG decodes the
    /// whole stream. The field rules:
    ///
    /// > `id`: if the field value does not contain U+0000 NULL, set the
    /// > last event ID buffer to the field value. `retry`: if the field
    /// > value consists of only ASCII digits, interpret it as an integer
    /// > in base ten. Otherwise: the field is ignored.
    pub fn line(&mut self, line: Line<'_>) -> Option<Event> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match line {
            Line::Blank if self.lines == 0 => return None,
            Line::Blank => {
                self.lines = 0;
                return Some(std::mem::take(&mut self.block));
            }
            Line::Comment(comment) => {
                let comment = comment.strip_prefix(b" ").unwrap_or(comment);
                self.block.comments.push(text(comment));
            }
            Line::Field { name, value } => match name {
                b"id" if !value.contains(&0) => self.block.id = Some(text(value)),
                b"event" => self.block.event = Some(text(value)),
                b"data" => {
                    if self.block.data_lines > 0 {
                        self.block.data.push('\n');
                    }
                    self.block.data.push_str(&String::from_utf8_lossy(value));
                    self.block.data_lines += 1;
                }
                b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    self.block.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                }
                _ => {}
            },
        }
        self.lines += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNKED_HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    const PLAIN_HEAD: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";

    /// What a run over some input produced.
    #[derive(Debug, Default)]
    struct Run {
        heads: usize,
        events: Vec<Event>,
        ends: usize,
        used: usize,
        error: Option<StreamError>,
        phase: Option<Phase>,
    }

    /// Feeds `input` in pieces of `split` bytes.
    fn run(input: &[u8], split: usize) -> Run {
        let mut parser = Parser::new();
        let mut events = Events::default();
        let mut out = Run::default();
        for piece in input.chunks(split.max(1)) {
            let fed = parser.feed(piece, &mut |item| match item {
                Item::Head(_) => out.heads += 1,
                Item::Line(line) => out.events.extend(events.line(line)),
                Item::End => out.ends += 1,
            });
            match fed {
                Ok(n) => out.used += n,
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            }
        }
        out.phase = Some(parser.phase());
        out
    }

    fn chunk(body: &str) -> Vec<u8> {
        format!("{:x};ext=1\r\n{body}\r\n", body.len()).into_bytes()
    }

    fn event(id: Option<&str>, name: Option<&str>, data: &str, lines: usize) -> Event {
        Event {
            id: id.map(str::to_string),
            event: name.map(str::to_string),
            data: data.to_string(),
            data_lines: lines,
            ..Event::default()
        }
    }

    /// The blocks every body below carries, in order.
    fn expected() -> Vec<Event> {
        vec![
            Event {
                retry: Some(3000),
                ..Event::default()
            },
            event(None, Some("connected"), "{\"client\":1}", 1),
            event(Some("99"), None, "seq=1 xxxx", 1),
            Event {
                comments: vec!["ping".into()],
                ..Event::default()
            },
            event(Some("100"), Some("x"), "two\nlines", 2),
            event(Some("101"), None, "", 1),
        ]
    }

    const BODY: [&str; 4] = [
        "retry: 3000\n\nevent: connected\ndata: {\"client\":1}\n\n",
        "id: 99\ndata: seq=1 xxxx\n\n",
        ": ping\n\n",
        "id: 100\nevent: x\r\ndata: two\rdata:lines\r\n\r\nid: 101\ndata\n\n",
    ];

    #[test]
    fn chunked_stream_at_every_split() {
        let mut input = CHUNKED_HEAD.to_vec();
        for body in BODY {
            input.extend_from_slice(&chunk(body));
        }
        input.extend_from_slice(b"0\r\n\r\n");
        let whole = input.len();
        input.extend_from_slice(b"after");
        for split in 1..=input.len() {
            let got = run(&input, split);
            assert_eq!(got.error, None, "split {split}");
            assert_eq!(got.events, expected(), "split {split}");
            assert_eq!((got.heads, got.ends, got.used), (1, 1, whole), "split {split}");
            assert_eq!(got.phase, Some(Phase::Ended));
        }
    }

    #[test]
    fn plain_stream_at_every_split() {
        let mut input = PLAIN_HEAD.to_vec();
        input.extend_from_slice(BODY.concat().as_bytes());
        for split in 1..=input.len() {
            let got = run(&input, split);
            assert_eq!(got.events, expected(), "split {split}");
            assert_eq!((got.heads, got.ends, got.used), (1, 0, input.len()));
            assert_eq!(
                got.phase,
                Some(Phase::Body),
                "a plain body ends with the connection"
            );
        }
    }

    #[test]
    fn content_length_body_ends_after_its_bytes() {
        let body = "data: a\n\ndata: b\n\n";
        let input = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}extra",
            body.len()
        );
        for split in 1..=input.len() {
            let got = run(input.as_bytes(), split);
            assert_eq!(got.events.len(), 2);
            assert_eq!((got.ends, got.used), (1, input.len() - "extra".len()));
        }
    }

    #[test]
    fn line_ends_cr_lf_and_crlf_alike() {
        for end in ["\n", "\r", "\r\n"] {
            let body = format!("id: 1{end}data: a{end}data: b{end}{end}");
            let input = [PLAIN_HEAD, body.as_bytes()].concat();
            for split in 1..=input.len() {
                assert_eq!(
                    run(&input, split).events,
                    [event(Some("1"), None, "a\nb", 2)],
                    "{end:?} {split}"
                );
            }
        }
        // A CR and an LF are one line end only when adjacent: "\r\r\n" is two.
        let input = [PLAIN_HEAD, b"data: a\r\r\ndata: b\n\n"].concat();
        let got = run(&input, 1).events;
        assert_eq!(got, [event(None, None, "a", 1), event(None, None, "b", 1)]);
    }

    #[test]
    fn whatwg_field_rules() {
        let input = [
            PLAIN_HEAD,
            "\u{feff}data:no space\ndata:  two spaces\nretry: 12x\nretry\nid: a\0b\nunknown: x\n\n"
                .as_bytes(),
        ]
        .concat();
        let got = run(&input, 3).events;
        assert_eq!(got, [event(None, None, "no space\n two spaces", 2)]);
        assert_eq!(
            Line::parse(b"data"),
            Line::Field {
                name: b"data",
                value: b""
            }
        );
        assert_eq!(Line::parse(b":x: y"), Line::Comment(b"x: y"));
        assert_eq!(
            Line::parse(b"a:b:c"),
            Line::Field {
                name: b"a",
                value: b"b:c"
            }
        );
        assert!(!Event::default().is_message());
    }

    #[test]
    fn a_non_200_head_is_refused() {
        let got = run(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            7,
        );
        assert_eq!(got.error, Some(StreamError::Status(503)));
        assert_eq!((got.heads, got.phase), (0, Some(Phase::Failed)));
        assert_eq!(got.error.map(|e| e.to_string()).as_deref(), Some("status 503"));
        let got = run(b"SSH-2.0-OpenSSH\r\n\r\n", 4);
        assert!(matches!(got.error, Some(StreamError::Head(_))));
        assert!(got.error.is_some_and(|e| e.is_refusal()));
    }

    #[test]
    fn broken_framing_and_long_lines_fail() {
        let input = [CHUNKED_HEAD, b"5\r\ndata:x\r\n"].concat();
        assert!(matches!(run(&input, 2).error, Some(StreamError::Chunk(_))));
        let mut input = PLAIN_HEAD.to_vec();
        input.resize(PLAIN_HEAD.len() + MAX_LINE + 1, b'a');
        assert_eq!(run(&input, 1 << 16).error, Some(StreamError::LineTooLong));
    }

    #[test]
    fn the_fast_path_borrows_lines() {
        // Count events and read `seq=` without building Events.
        let mut input = CHUNKED_HEAD.to_vec();
        for seq in 1..=3 {
            input.extend_from_slice(&chunk(&format!("id: {seq}\ndata: seq={seq} pad\n\n")));
        }
        let mut parser = Parser::new();
        let mut seqs = Vec::new();
        for piece in input.chunks(4) {
            parser
                .feed(piece, &mut |item| {
                    if let Item::Line(Line::Field { name: b"data", value }) = item {
                        seqs.push(value[4] - b'0');
                    }
                })
                .unwrap();
        }
        parser.shrink();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(parser.phase(), Phase::Body);
    }
}
