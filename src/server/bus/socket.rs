//! A connection to Redis as the loop holds it: TCP or a Unix socket,
//! non-blocking, its connect finished when it first becomes writable.
//!
//! `--bus redis://host:port` resolves the name at every attempt, so a
//! Redis that moves to another address is followed; `redis+unix:///path`
//! connects to the socket file. Either way the loop sees one [`Socket`]:
//! bytes in, bytes out, readiness from `mio`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::config::BusAddr;

/// One connection to Redis.
#[derive(Debug)]
pub enum Socket {
    /// `redis://`.
    Tcp(TcpStream),
    /// `redis+unix://`.
    Unix(UnixStream),
}

impl Socket {
    /// Starts connecting to `addr`, without waiting. A TCP connect
    /// finishes later ([`Socket::connect_error`] once writable); a name
    /// that does not resolve fails now.
    pub fn connect(addr: &BusAddr) -> io::Result<Socket> {
        match addr {
            BusAddr::Tcp { host, port, .. } => {
                let target = resolve(host, *port)?;
                let stream = TcpStream::connect(target)?;
                let _ = stream.set_nodelay(true);
                Ok(Socket::Tcp(stream))
            }
            BusAddr::Unix { path, .. } => Ok(Socket::Unix(UnixStream::connect(path)?)),
        }
    }

    /// Why the connect failed, once the socket is writable (or readable):
    /// `None` means it is connected.
    pub fn connect_error(&self) -> Option<io::Error> {
        let pending = match self {
            Socket::Tcp(stream) => stream.take_error(),
            Socket::Unix(stream) => stream.take_error(),
        };
        match pending {
            Ok(Some(error)) | Err(error) => return Some(error),
            Ok(None) => {}
        }
        // No error yet may still mean "not connected yet": peer_addr says.
        let connected = match self {
            Socket::Tcp(stream) => stream.peer_addr().map(|_| ()),
            Socket::Unix(stream) => stream.peer_addr().map(|_| ()),
        };
        connected.err()
    }
}

/// The first address `host:port` resolves to. Names are looked up with
/// the system resolver, which blocks: `localhost` and names in
/// `/etc/hosts` answer at once; an address avoids the lookup altogether.
fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => stream.read(buf),
            Socket::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => stream.write(buf),
            Socket::Unix(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Socket {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(stream) => stream.register(registry, token, interests),
            Socket::Unix(stream) => stream.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(stream) => stream.reregister(registry, token, interests),
            Socket::Unix(stream) => stream.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(stream) => stream.deregister(registry),
            Socket::Unix(stream) => stream.deregister(registry),
        }
    }
}
