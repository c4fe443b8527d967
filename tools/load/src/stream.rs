//! Sans-IO parsing of one subscriber's byte stream: the HTTP response head,
//! chunked transfer coding (when the server uses it), and the
//! `text/event-stream` lines, down to "an event with `data: seq=N ...` was
//! dispatched".
//!
//! Only what the load tool needs is parsed: the `seq=` number at the start
//! of an event's first data line. Every other field (ids, event names,
//! comments such as heartbeats) is skipped, so the tool works with servers
//! whose ids or framing differ from ssed's.

/// Where the stream is.
#[derive(Debug)]
enum Head {
    /// Collecting the response head.
    Reading(Vec<u8>),
    /// The head said 200; body bytes follow.
    Body,
    /// The head was not a 200, or could not be parsed.
    Refused(String),
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Not chunked: body bytes are the event stream.
    Plain,
    /// In a chunk-size line (the value so far; whether an extension began).
    Size { value: u64, ext: bool },
    /// In chunk data, with this many bytes left.
    Data(u64),
    /// After chunk data, skipping its CRLF.
    DataEnd,
    /// The last chunk arrived: the server ended the stream.
    Finished,
}

/// What a feed produced, besides state changes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// The response head was completed during this feed.
    pub head_done: bool,
}

/// One subscriber's parser state. Allocations are only held while a
/// head or a line is incomplete.
#[derive(Debug)]
pub struct StreamParser {
    head: Head,
    chunk: Chunk,
    /// A line that has not ended yet.
    carry: Vec<u8>,
    /// The `seq=` of the event being read (0: none yet).
    current: u64,
}

impl Default for StreamParser {
    fn default() -> Self {
        Self::new()
    }
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_LINE: usize = 1 << 20;

impl StreamParser {
    pub fn new() -> Self {
        StreamParser {
            head: Head::Reading(Vec::new()),
            chunk: Chunk::Plain,
            carry: Vec::new(),
            current: 0,
        }
    }

    pub fn has_head(&self) -> bool {
        matches!(self.head, Head::Body)
    }

    pub fn refused(&self) -> Option<&str> {
        match &self.head {
            Head::Refused(why) => Some(why),
            _ => None,
        }
    }

    /// The server sent the last chunk.
    pub fn finished(&self) -> bool {
        matches!(self.chunk, Chunk::Finished)
    }

    /// Feeds bytes from the socket; `event(seq)` is called for each event
    /// with a sequence number, as it is dispatched (on its blank line).
    pub fn feed(&mut self, mut data: &[u8], event: &mut impl FnMut(u64)) -> Fed {
        let mut fed = Fed::default();
        if let Head::Reading(buf) = &mut self.head {
            let before = buf.len();
            buf.extend_from_slice(data);
            let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
                if buf.len() > MAX_HEAD {
                    self.head = Head::Refused("response head too long".into());
                }
                return fed;
            };
            let end = end + 4;
            match parse_head(&buf[..end]) {
                Ok(chunked) => {
                    self.chunk = if chunked {
                        Chunk::Size { value: 0, ext: false }
                    } else {
                        Chunk::Plain
                    };
                    // What followed the head in this feed.
                    data = &data[end - before..];
                    self.head = Head::Body;
                    fed.head_done = true;
                }
                Err(why) => {
                    self.head = Head::Refused(why);
                    return fed;
                }
            }
        }
        if !matches!(self.head, Head::Body) {
            return fed;
        }
        while !data.is_empty() {
            match self.chunk {
                Chunk::Plain => {
                    self.lines(data, event);
                    return fed;
                }
                Chunk::Finished => return fed,
                Chunk::Size { value, ext } => {
                    let byte = data[0];
                    data = &data[1..];
                    self.chunk = match byte {
                        b'\n' if value == 0 => Chunk::Finished,
                        b'\n' => Chunk::Data(value),
                        _ if ext => Chunk::Size { value, ext },
                        b';' | b' ' | b'\t' | b'\r' => Chunk::Size { value, ext: true },
                        _ => match (byte as char).to_digit(16) {
                            Some(digit) => Chunk::Size {
                                value: value.saturating_mul(16).saturating_add(digit as u64),
                                ext,
                            },
                            None => Chunk::Size { value, ext: true },
                        },
                    };
                }
                Chunk::Data(left) => {
                    let take = (left.min(data.len() as u64)) as usize;
                    self.lines(&data[..take], event);
                    data = &data[take..];
                    self.chunk = if left == take as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - take as u64)
                    };
                }
                Chunk::DataEnd => {
                    let byte = data[0];
                    data = &data[1..];
                    if byte == b'\n' {
                        self.chunk = Chunk::Size { value: 0, ext: false };
                    }
                }
            }
        }
        fed
    }

    /// Event-stream bytes: split into lines (LF, with an optional CR before
    /// it), act on each.
    fn lines(&mut self, mut data: &[u8], event: &mut impl FnMut(u64)) {
        while let Some(at) = memchr::memchr(b'\n', data) {
            if self.carry.is_empty() {
                self.line(&data[..at], event);
            } else {
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(&data[..at]);
                self.line(&carry, event);
                carry.clear();
                if carry.capacity() <= 256 {
                    self.carry = carry;
                }
            }
            data = &data[at + 1..];
        }
        if !data.is_empty() && self.carry.len() < MAX_LINE {
            self.carry.extend_from_slice(data);
        }
    }

    fn line(&mut self, line: &[u8], event: &mut impl FnMut(u64)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.current != 0 {
                event(self.current);
                self.current = 0;
            }
            return;
        }
        if self.current != 0 {
            return;
        }
        let Some(value) = line.strip_prefix(b"data:") else {
            return;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let Some(digits) = value.strip_prefix(b"seq=") {
            let mut seq = 0u64;
            for &byte in digits.iter().take_while(|b| b.is_ascii_digit()) {
                seq = seq.saturating_mul(10).saturating_add((byte - b'0') as u64);
            }
            self.current = seq;
        }
    }

    /// Drops the buffers of a parser that is done with its head.
    pub fn shrink(&mut self) {
        if self.carry.is_empty() && self.carry.capacity() > 0 {
            self.carry = Vec::new();
        }
    }
}

/// Checks a response head; says whether the body is chunked.
fn parse_head(bytes: &[u8]) -> Result<bool, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete response head".into()),
        Err(e) => return Err(format!("bad response head: {e}")),
    }
    let code = response.code.unwrap_or(0);
    if code != 200 {
        return Err(format!("status {code}"));
    }
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    Ok(chunked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], split: usize) -> (Vec<u64>, StreamParser) {
        let mut parser = StreamParser::new();
        let mut got = Vec::new();
        for piece in input.chunks(split.max(1)) {
            parser.feed(piece, &mut |seq| got.push(seq));
        }
        (got, parser)
    }

    #[test]
    fn chunked_stream_at_every_split() {
        let mut input =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for body in [
            "retry: 3000\n\nevent: connected\ndata: {\"client\":1}\n\n".to_string(),
            "id: 99\ndata: seq=1 xxxx\n\n".to_string(),
            ": ping\n\n".to_string(),
            "id: 100\nevent: x\ndata: seq=2 yy\r\ndata: seq=77\n\nid: 101\ndata: seq=3\n\n".to_string(),
        ] {
            input.extend_from_slice(format!("{:x};ext=1\r\n{body}\r\n", body.len()).as_bytes());
        }
        input.extend_from_slice(b"0\r\n\r\n");
        for split in 1..input.len() {
            let (got, parser) = run(&input, split);
            assert_eq!(got, vec![1, 2, 3], "split {split}");
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
    fn refuses_non_200() {
        let (_, parser) = run(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", 7);
        assert_eq!(parser.refused(), Some("status 503"));
    }
}
