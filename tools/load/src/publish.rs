//! The publisher: one keep-alive HTTP/1.1 connection that POSTs event data,
//! one request at a time or many written at once (pipelined).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ssed_testkit::chunked::ChunkedDecoder;
use ssed_testkit::http::parse_head;
use ssed_testkit::net;

use crate::args::PublishUrl;

#[derive(Debug)]
pub struct Publisher {
    stream: TcpStream,
    url: PublishUrl,
    headers: Vec<String>,
    /// Received and not yet used.
    buf: Vec<u8>,
}

impl Publisher {
    pub fn connect(url: &PublishUrl, headers: &[String], timeout: Duration) -> io::Result<Publisher> {
        let stream = net::connect(url.addr, timeout)?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Publisher {
            stream,
            url: url.clone(),
            headers: headers.to_vec(),
            buf: Vec::new(),
        })
    }

    /// One POST request carrying `body`.
    pub fn request(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 160);
        out.extend_from_slice(
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
                self.url.target,
                self.url.authority,
                body.len()
            )
            .as_bytes(),
        );
        for header in &self.headers {
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `bytes` from another thread while this one reads `count`
    /// answers, so a server that stops reading until its answers are read
    /// cannot deadlock us.
    pub fn pipeline(&mut self, bytes: Vec<u8>, count: usize) -> io::Result<Vec<u16>> {
        let mut writer = self.stream.try_clone()?;
        let handle = std::thread::spawn(move || writer.write_all(&bytes));
        let mut codes = Vec::with_capacity(count);
        let mut result = Ok(());
        for _ in 0..count {
            match self.response() {
                Ok(code) => codes.push(code),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let written = handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")));
        result?;
        written?;
        Ok(codes)
    }

    /// Reads one response; returns its status. The body is skipped.
    pub fn response(&mut self) -> io::Result<u16> {
        let head = loop {
            match parse_head(&self.buf) {
                Ok(Some((head, used))) => {
                    self.buf.drain(..used);
                    // An interim answer (100 Continue): the real one follows.
                    if !(100..200).contains(&head.status) {
                        break head;
                    }
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(bad(&e.to_string())),
            }
        };
        if head.chunked {
            let mut decoder = ChunkedDecoder::new();
            loop {
                let used = decoder
                    .decode(&self.buf, &mut |_| {})
                    .map_err(|e| bad(&e.to_string()))?;
                self.buf.drain(..used);
                if decoder.is_done() {
                    break;
                }
                self.fill()?;
            }
        } else if let Some(length) = head.content_length {
            while self.buf.len() < length {
                self.fill()?;
            }
            self.buf.drain(..length);
        }
        Ok(head.status)
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "publish connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Digits of the `t=` stamp, fixed so that requests built in advance (a
/// pipelined burst) are stamped in place just before they are sent.
pub const STAMP_DIGITS: usize = 20;

/// Event data: `seq=N t=T ` (`T`: `sent_ns`, the monotonic clock when its
/// request is sent, in 20 digits) then `x` up to `size` bytes.
pub fn event_data(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut data = format!("seq={seq} t={sent_ns:0STAMP_DIGITS$} ").into_bytes();
    if data.len() < size {
        data.resize(size, b'x');
    }
    data
}

/// Where the stamp's digits start in the data of event `seq`.
pub fn stamp_offset(seq: u64) -> usize {
    format!("seq={seq} t=").len()
}

/// Overwrites the stamp whose digits start at `at` in `bytes`.
pub fn restamp(bytes: &mut [u8], at: usize, sent_ns: u64) {
    let digits = format!("{sent_ns:0STAMP_DIGITS$}");
    if let Some(spot) = bytes.get_mut(at..at + STAMP_DIGITS) {
        spot.copy_from_slice(digits.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_stamped_and_padded_to_size() {
        assert_eq!(event_data(17, 5, 34), b"seq=17 t=00000000000000000005 xxxx");
        assert_eq!(event_data(1, 42, 4), b"seq=1 t=00000000000000000042 ");
        let mut data = event_data(123, 0, 64);
        restamp(&mut data, stamp_offset(123), 987);
        assert_eq!(data, event_data(123, 987, 64));
    }
}
