//! The request reader: bytes in, requests out, no socket in sight.
//!
//! A connection hands [`RequestReader::read`] whatever a `read()` brought;
//! the reader says how many of those bytes it used and what came of them:
//!
//! ```text
//!   bytes ──▶ read(input) ──▶ (consumed, Step)
//!                                  │
//!                                  ├─ Request(r)    a whole request, body included
//!                                  ├─ SendContinue  the client waits for "100 Continue"
//!                                  ├─ NeedMore      nothing to do until more bytes come
//!                                  └─ Reject(why)   answer with a status, then close
//! ```
//!
//! # States
//!
//! ```text
//!            ┌──────────────┐  head complete,    ┌──────────────┐
//!   ────────▶│  awaiting a  │──── with a body ──▶│  reading the │
//!            │     head     │                    │     body     │
//!            └──────────────┘◀── body complete ──└──────────────┘
//!                 │   ▲          (Request)
//!                 └───┘ head complete, no body (Request)
//! ```
//!
//! # What it keeps, and how much
//!
//! The common case copies nothing: a request that arrives whole in one read
//! is parsed where it lies, in the caller's buffer. The reader keeps bytes
//! only when it must: a head that has not ended yet, or requests pipelined
//! behind one the caller cannot answer yet ([`RequestReader::hold`]). Both
//! are bounded. Everything a client sends before its head is complete, the
//! empty lines RFC 9112 lets it send first included, counts against the
//! 16 KiB head limit; past it the answer is `400` or `431`, so a client that
//! sends `\r\n` forever is refused after 16 KiB instead of being buffered
//! without end. A body is bounded by `--max-body`.

use super::chunked::{ChunkError, ChunkedDecoder};
use super::request::{parse_head, BodyFraming};
use super::{Rejection, Request};

/// What a call to [`RequestReader::read`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A whole request, body included.
    Request(Request),
    /// The head said `Expect: 100-continue` and no body byte has come: the
    /// client waits for `100 Continue` before it sends the body.
    SendContinue,
    /// Every byte offered was used or kept; more must arrive.
    NeedMore,
    /// Not a request we accept. The framing of what follows is unknown, so
    /// the connection answers this and closes.
    Reject(Rejection),
}

/// Reads requests, one after another, from the bytes of one connection.
#[derive(Debug)]
pub struct RequestReader {
    /// Bytes received but not used yet: a head that has not ended, or
    /// requests pipelined behind one that is still being answered.
    held: Vec<u8>,
    /// The held bytes end inside a head (parsed, found incomplete), as
    /// opposed to requests held back by backpressure.
    head_unfinished: bool,
    /// The request whose head has arrived and whose body is coming.
    body: Option<Box<PendingBody>>,
    max_body: usize,
    /// A refusal was returned: the stream of requests is lost, and what
    /// follows is neither read nor kept.
    refused: bool,
}

/// A request whose head has arrived and whose body is still coming.
#[derive(Debug)]
struct PendingBody {
    request: Request,
    decoder: BodyDecoder,
}

#[derive(Debug)]
enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

impl RequestReader {
    /// A reader whose requests may carry bodies of up to `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        RequestReader {
            held: Vec::new(),
            head_unfinished: false,
            body: None,
            max_body,
            refused: false,
        }
    }

    /// True when nothing of a next request has arrived: an idle keep-alive
    /// connection, which may time out without a word.
    pub fn is_idle(&self) -> bool {
        self.body.is_none() && self.held.is_empty()
    }

    /// True when held bytes may hold a request to read before new ones.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty() && !self.head_unfinished
    }

    /// Keeps `input` unread, after whatever is held already: the caller has
    /// read bytes it cannot act on yet (its client is slow to read answers).
    /// A later `read(&[])` picks them up. The caller stops reading its
    /// socket while it holds, so this is at most one read's worth.
    pub fn hold(&mut self, input: &[u8]) {
        self.held.extend_from_slice(input);
    }

    /// Reads from the held bytes followed by `input`. Returns how many bytes
    /// of `input` were used (kept ones count as used) and what came of them.
    ///
    /// Bytes after a [`Step::Request`] are left for the next call: pass the
    /// rest of `input` again. `NeedMore` always means all of `input` was
    /// used.
    pub fn read(&mut self, input: &[u8]) -> (usize, Step) {
        let (used, step) = self.read_unrefused(input);
        if let Step::Reject(_) = step {
            self.refused = true;
            self.held = Vec::new();
            self.body = None;
        }
        (used, step)
    }

    fn read_unrefused(&mut self, input: &[u8]) -> (usize, Step) {
        if self.refused {
            return (input.len(), Step::NeedMore);
        }
        if self.held.is_empty() {
            let (used, step) = self.advance(input);
            if step == Step::NeedMore && used < input.len() {
                // Only an unfinished head leaves bytes unused: a body takes all.
                self.keep(&input[used..], true);
                return (input.len(), step);
            }
            return (used, step);
        }
        // A head that arrives in many pieces is parsed again from its start
        // each time: at most 16 KiB, and the same outcome however TCP cut it.
        self.held.extend_from_slice(input);
        let held = std::mem::take(&mut self.held);
        let (used, step) = self.advance(&held);
        self.head_unfinished = false;
        if used < held.len() {
            let unfinished = step == Step::NeedMore && self.body.is_none();
            self.keep(&held[used..], unfinished);
        }
        (input.len(), step)
    }

    /// Keeps unused bytes; `unfinished`: they are the start of a head.
    fn keep(&mut self, rest: &[u8], unfinished: bool) {
        self.head_unfinished = unfinished;
        if self.held.is_empty() {
            // The first bytes of a head: allocate once, for a typical head.
            self.held.reserve(rest.len().max(512));
        }
        self.held.extend_from_slice(rest);
    }

    /// One step over `buf`, which starts where the last step ended.
    fn advance(&mut self, buf: &[u8]) -> (usize, Step) {
        let mut used = 0;
        if self.body.is_none() {
            let (request, head_len) = match parse_head(buf) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return (0, Step::NeedMore),
                Err(rejection) => return (0, Step::Reject(rejection)),
            };
            used = head_len;
            let decoder = match request.framing {
                BodyFraming::None => return (used, Step::Request(request)),
                BodyFraming::Length(length) if length > self.max_body as u64 => {
                    return (used, Step::Reject(Rejection::PayloadTooLarge))
                }
                BodyFraming::Length(length) => BodyDecoder::Length { remaining: length },
                BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
            };
            let send_continue = request.expect_continue && used == buf.len();
            self.body = Some(Box::new(PendingBody { request, decoder }));
            if send_continue {
                return (used, Step::SendContinue);
            }
        }
        let Some(pending) = self.body.as_mut() else {
            return (used, Step::NeedMore);
        };
        let input = &buf[used..];
        let body = &mut pending.request.body;
        let done = match &mut pending.decoder {
            BodyDecoder::Length { remaining } => {
                // `take` fits in usize: it is at most `input.len()`.
                let take = (*remaining).min(input.len() as u64) as usize;
                body.extend_from_slice(&input[..take]);
                used += take;
                *remaining -= take as u64;
                *remaining == 0
            }
            BodyDecoder::Chunked(decoder) => match decoder.decode(input, body, self.max_body) {
                Ok(consumed) => {
                    used += consumed;
                    decoder.is_done()
                }
                Err(ChunkError::TooLarge) => return (used, Step::Reject(Rejection::PayloadTooLarge)),
                Err(ChunkError::Malformed(why)) => return (used, Step::Reject(Rejection::BadRequest(why))),
            },
        };
        match self.body.take() {
            Some(pending) if done => (used, Step::Request(pending.request)),
            pending => {
                self.body = pending;
                (used, Step::NeedMore)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::MAX_HEAD;

    /// Feeds `pieces` one read at a time and collects what came out, as a
    /// connection does: each piece is offered until the reader needs more.
    fn run(reader: &mut RequestReader, pieces: &[&[u8]]) -> Vec<Step> {
        let mut steps = Vec::new();
        for piece in pieces {
            let mut input: &[u8] = piece;
            loop {
                let (used, step) = reader.read(input);
                input = &input[used..];
                let stop = matches!(step, Step::NeedMore | Step::Reject(_));
                if step != Step::NeedMore {
                    steps.push(step);
                }
                if stop {
                    break;
                }
            }
        }
        steps
    }

    fn paths_and_bodies(steps: &[Step]) -> Vec<(String, Vec<u8>)> {
        steps
            .iter()
            .filter_map(|step| match step {
                Step::Request(r) => Some((r.path().to_string(), r.body.clone())),
                _ => None,
            })
            .collect()
    }

    const PIPELINE: &[u8] = b"POST /publish HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST /publish HTTP/1.1\r\n\
                              Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /stats HTTP/1.1\r\n\r\n";

    #[test]
    fn reads_pipelined_requests_split_at_every_byte() {
        let want = vec![
            ("/publish".to_string(), b"hello".to_vec()),
            ("/publish".to_string(), b"abc".to_vec()),
            ("/stats".to_string(), Vec::new()),
        ];
        let mut whole = RequestReader::new(1024);
        assert_eq!(paths_and_bodies(&run(&mut whole, &[PIPELINE])), want);
        assert!(whole.is_idle());
        for cut in 0..=PIPELINE.len() {
            let mut reader = RequestReader::new(1024);
            let (a, b) = PIPELINE.split_at(cut);
            assert_eq!(paths_and_bodies(&run(&mut reader, &[a, b])), want, "cut at {cut}");
            assert!(reader.is_idle(), "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = PIPELINE.chunks(1).collect();
        let mut reader = RequestReader::new(1024);
        assert_eq!(paths_and_bodies(&run(&mut reader, &bytes)), want);
    }

    #[test]
    fn a_whole_request_is_parsed_in_place() {
        let mut reader = RequestReader::new(16);
        let input = b"GET /a HTTP/1.1\r\n\r\nGET /b";
        let (used, step) = reader.read(input);
        assert_eq!(used, 19);
        assert!(matches!(step, Step::Request(r) if r.path() == "/a"));
        assert!(reader.is_idle(), "nothing was copied");
        assert_eq!(reader.read(&input[used..]), (6, Step::NeedMore));
        assert!(!reader.is_idle());
    }

    #[test]
    fn refuses_bodies_over_the_limit() {
        let cases: &[&[u8]] = &[
            b"POST /publish HTTP/1.1\r\nContent-Length: 100\r\n\r\n",
            b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n",
        ];
        for input in cases {
            let steps = run(&mut RequestReader::new(10), &[input]);
            assert_eq!(steps, vec![Step::Reject(Rejection::PayloadTooLarge)]);
        }
    }

    #[test]
    fn asks_for_continue_before_the_body() {
        let mut reader = RequestReader::new(10);
        let head = b"POST /publish HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(run(&mut reader, &[head]), vec![Step::SendContinue]);
        let steps = run(&mut reader, &[b"hi"]);
        assert!(matches!(&steps[..], [Step::Request(r)] if r.body == b"hi"));
        // A body that came with the head needs no invitation.
        let mut reader = RequestReader::new(10);
        let steps = run(&mut reader, &[&[&head[..], b"hi"].concat()]);
        assert!(matches!(&steps[..], [Step::Request(_)]));
    }

    #[test]
    fn empty_lines_before_a_request_count_against_the_head_limit() {
        // A few are allowed (RFC 9112 §2.2).
        let steps = run(&mut RequestReader::new(0), &[b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"]);
        assert!(matches!(&steps[..], [Step::Request(r)] if r.path() == "/"));
        // A flood is refused once it passes the limit, however it arrives.
        let flood = b"\r\n".repeat(MAX_HEAD);
        for piece in [flood.len(), 1000, 2] {
            let mut reader = RequestReader::new(0);
            let pieces: Vec<&[u8]> = flood.chunks(piece).collect();
            let steps = run(&mut reader, &pieces);
            assert_eq!(
                steps
                    .first()
                    .map(|s| matches!(s, Step::Reject(r) if r.status() == 400)),
                Some(true),
                "in pieces of {piece}: {steps:?}"
            );
            assert!(reader.held.is_empty(), "a refused reader keeps nothing");
            assert_eq!(reader.read(b"GET / HTTP/1.1\r\n\r\n"), (18, Step::NeedMore));
        }
        // Empty lines then a head that together pass the limit: 431.
        let mut padded = b"\r\n".repeat(MAX_HEAD / 2 - 10);
        padded.extend_from_slice(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100)).as_bytes());
        let steps = run(&mut RequestReader::new(0), &[&padded]);
        assert!(
            matches!(&steps[..], [Step::Reject(r)] if r.status() == 431),
            "{steps:?}"
        );
    }

    #[test]
    fn held_bytes_are_read_before_new_ones() {
        let mut reader = RequestReader::new(0);
        reader.hold(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c");
        assert!(reader.has_held());
        let steps = run(&mut reader, &[b"", b"", b" HTTP/1.1\r\n\r\n"]);
        let paths: Vec<_> = paths_and_bodies(&steps).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert!(reader.is_idle() && !reader.has_held());
    }
}
