//! One subscriber's stream, reduced to what the load tool measures: the
//! `seq=N t=T` that starts the first `data:` line of each event (its
//! sequence number, and when its publish request was sent, in ns of the
//! machine's monotonic clock), reported when the event is dispatched (on
//! its blank line).
//!
//! The send time travels in the event so that a subscriber in another
//! process (`--workers`) times it as well as one in the publisher's:
//! `CLOCK_MONOTONIC` is one clock for every process of a machine.
//!
//! The bytes are parsed by the testkit's [`Parser`] (response head,
//! chunked or close-delimited body, WHATWG lines), through its borrowed
//! fast path: no allocation per event, which matters at 19,000
//! subscribers on one thread. Every other field (ids, event names,
//! comments such as heartbeats) is skipped, so the tool works with
//! servers whose ids or framing differ from ssed's.

use ssed_testkit::sse::{Item, Line, Parser, Phase, StreamError};

/// One subscriber's parser state: the testkit's parser and sixteen bytes.
#[derive(Debug, Default)]
pub struct StreamParser {
    parser: Parser,
    /// The `200` head arrived.
    head: bool,
    /// The `seq=` and `t=` of the event being read (seq 0: none yet).
    current: Stamp,
}

/// What an event's data starts with: `seq=N t=T`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    /// When its publish request was sent (0: not said).
    pub sent_ns: u64,
}

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn has_head(&self) -> bool {
        self.head
    }

    /// The server ended the body (the last chunk).
    pub fn finished(&self) -> bool {
        self.parser.phase() == Phase::Ended
    }

    /// Feeds bytes from the socket; `event(stamp)` is called for each event
    /// with a sequence number, as it is dispatched. An error means the
    /// stream is unusable: refused ([`StreamError::is_refusal`]) or broken.
    pub fn feed(&mut self, data: &[u8], event: &mut impl FnMut(Stamp)) -> Result<(), StreamError> {
        let StreamParser {
            parser,
            head,
            current,
        } = self;
        parser.feed(data, &mut |item| match item {
            Item::Head(_) => *head = true,
            Item::Line(Line::Blank) if current.seq != 0 => event(std::mem::take(current)),
            Item::Line(Line::Field { name: b"data", value }) if current.seq == 0 => *current = stamp(value),
            Item::Line(_) | Item::End => {}
        })?;
        Ok(())
    }

    /// Drops the buffer of a line split across reads once it is empty.
    pub fn shrink(&mut self) {
        self.parser.shrink();
    }
}

/// `N` and `T` from data starting `seq=N t=T`; `T` 0 when it is not
/// there, and `N` 0 for any other data.
fn stamp(value: &[u8]) -> Stamp {
    let Some(rest) = value.strip_prefix(b"seq=") else {
        return Stamp::default();
    };
    let (seq, rest) = number(rest);
    let sent_ns = rest.strip_prefix(b" t=").map_or(0, |rest| number(rest).0);
    Stamp { seq, sent_ns }
}

/// The decimal number `text` starts with (0 for none), and what follows.
fn number(text: &[u8]) -> (u64, &[u8]) {
    let (digits, rest) = text.split_at(text.iter().take_while(|b| b.is_ascii_digit()).count());
    let value = digits.iter().fold(0u64, |n, &b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    (value, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], split: usize) -> (Vec<u64>, StreamParser, Option<StreamError>) {
        let mut parser = StreamParser::new();
        let mut got = Vec::new();
        for piece in input.chunks(split.max(1)) {
            if let Err(e) = parser.feed(piece, &mut |stamp| got.push(stamp.seq)) {
                return (got, parser, Some(e));
            }
        }
        (got, parser, None)
    }

    #[test]
    fn chunked_stream_at_every_split() {
        let mut input =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for body in [
            "retry: 3000\n\nevent: connected\ndata: {\"client\":1}\n\n".to_string(),
            "id: 99\ndata: seq=1 t=00000000000000012345 xxxx\n\n".to_string(),
            ": ping\n\n".to_string(),
            "id: 100\nevent: x\ndata: seq=2 yy\r\ndata: seq=77\n\nid: 101\ndata: seq=3\n\n".to_string(),
        ] {
            input.extend_from_slice(format!("{:x};ext=1\r\n{body}\r\n", body.len()).as_bytes());
        }
        input.extend_from_slice(b"0\r\n\r\n");
        for split in 1..input.len() {
            let (got, parser, error) = run(&input, split);
            assert_eq!((got, error), (vec![1, 2, 3], None), "split {split}");
            assert!(parser.has_head() && parser.finished());
        }
    }

    #[test]
    fn plain_stream_with_crlf_lines() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n:\r\n\r\nid: 5:0\r\ndata:seq=41 pad\r\n\r\ndata: seq=42\n\n";
        for split in 1..input.len() {
            assert_eq!(run(input, split).0, vec![41, 42]);
        }
    }

    #[test]
    fn stamps() {
        let cases: [(&[u8], u64, u64); 6] = [
            (b"seq=7 t=00000000000000012345 xx", 7, 12345),
            (b"seq=7 t=99", 7, 99),
            (b"seq=7 xxxx", 7, 0),
            (b"seq=7", 7, 0),
            (b"seq=99999999999999999999999 t=1", u64::MAX, 1),
            (b"hello", 0, 0),
        ];
        for (data, seq, sent_ns) in cases {
            assert_eq!(stamp(data), Stamp { seq, sent_ns }, "{data:?}");
        }
    }

    #[test]
    fn refuses_non_200() {
        let (_, parser, error) = run(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", 7);
        assert_eq!(error.map(|e| e.to_string()).as_deref(), Some("status 503"));
        assert!(error.is_some_and(|e| e.is_refusal()) && !parser.has_head());
    }
}
