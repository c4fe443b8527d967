//! The publisher: one keep-alive HTTP/1.1 connection that POSTs event data,
//! one request at a time or many written at once (pipelined).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
        let stream = TcpStream::connect_timeout(&url.addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
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
        let (code, used, framing) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(used)) => {
                    let code = response.code.unwrap_or(0);
                    let mut framing = Framing::None;
                    for h in response.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let text = String::from_utf8_lossy(h.value);
                            let n = text.trim().parse().map_err(|_| bad("bad Content-Length"))?;
                            framing = Framing::Length(n);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                            && String::from_utf8_lossy(h.value)
                                .to_ascii_lowercase()
                                .contains("chunked")
                        {
                            framing = Framing::Chunked;
                        }
                    }
                    if (100..200).contains(&code) {
                        self.buf.drain(..used);
                        continue;
                    }
                    break (code, used, framing);
                }
                Ok(httparse::Status::Partial) => self.fill()?,
                Err(e) => return Err(bad(&format!("bad response head: {e}"))),
            }
        };
        self.buf.drain(..used);
        match framing {
            Framing::None => {}
            Framing::Length(n) => {
                while self.buf.len() < n {
                    self.fill()?;
                }
                self.buf.drain(..n);
            }
            Framing::Chunked => loop {
                let line_end = loop {
                    if let Some(at) = memchr::memmem::find(&self.buf, b"\r\n") {
                        break at;
                    }
                    self.fill()?;
                };
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers, then an empty line.
                    loop {
                        let at = loop {
                            if let Some(at) = memchr::memmem::find(&self.buf, b"\r\n") {
                                break at;
                            }
                            self.fill()?;
                        };
                        self.buf.drain(..at + 2);
                        if at == 0 {
                            break;
                        }
                    }
                    break;
                }
                while self.buf.len() < size + 2 {
                    self.fill()?;
                }
                self.buf.drain(..size + 2);
            },
        }
        Ok(code)
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

enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Event data: `seq=N ` then `x` up to `size` bytes.
pub fn event_data(seq: u64, size: usize) -> Vec<u8> {
    let mut data = format!("seq={seq} ").into_bytes();
    if data.len() < size {
        data.resize(size, b'x');
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_padded_to_size() {
        assert_eq!(event_data(17, 12), b"seq=17 xxxxx");
        assert_eq!(event_data(123456, 4), b"seq=123456 ");
    }
}
