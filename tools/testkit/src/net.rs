//! Blocking client sockets with deadlines, and finding a server's address.
//!
//! Tests, the soak and the load tool's publisher all talk to the server
//! over blocking `std` sockets. Every one of them needs the same three
//! things, or a stuck server hangs the run instead of failing it: a bound
//! on `connect`, a read timeout, a write timeout. Nagle is off, because
//! requests are small and answers are awaited one by one.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a loopback `connect` may take: a full accept queue delays the
/// SYN-ACK (retried after 1 s, 3 s), and after that something is wrong.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one blocking write may stall unless the caller sets another.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects within [`CONNECT_TIMEOUT`]; reads time out after
/// `read_timeout`, writes after [`WRITE_TIMEOUT`]; no Nagle delay.
pub fn connect(addr: SocketAddr, read_timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(read_timeout))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The address in ssed's start-up log line, `... listening on http://ADDR`.
///
/// ```
/// use ssed_testkit::net::listening_addr;
/// let line = "[2024-01-01T00:00:00Z INFO  ssed] listening on http://127.0.0.1:8080";
/// assert_eq!(listening_addr(line), Some("127.0.0.1:8080".parse().unwrap()));
/// assert_eq!(listening_addr("something else"), None);
/// ```
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    const MARK: &str = "listening on http://";
    let at = line.find(MARK)? + MARK.len();
    line[at..].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn connects_with_timeouts_set() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = connect(listener.local_addr().unwrap(), Duration::from_secs(1)).unwrap();
        assert_eq!(stream.read_timeout().unwrap(), Some(Duration::from_secs(1)));
        assert_eq!(stream.write_timeout().unwrap(), Some(WRITE_TIMEOUT));
        assert!(stream.nodelay().unwrap());
    }
}
