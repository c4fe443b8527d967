//! A subscriber's socket: non-blocking, bound to a chosen loopback source
//! address, connecting.
//!
//! Each (source address, destination) pair has only the ephemeral port
//! range (about 28,000 ports by default), so many subscribers need many
//! source addresses. `IP_BIND_ADDRESS_NO_PORT` binds the address without
//! choosing a port yet: the kernel picks it at `connect`, per destination,
//! instead of reserving one per address at `bind`, which would cap a source
//! address at 28,000 connections over all destinations together.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;
use std::time::Duration;

use mio::net::TcpStream;

/// Opens a non-blocking socket bound to `source` (port chosen at connect
/// time, so source ports are not reserved per address at bind) and starts
/// connecting.
pub fn start_connect(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let SocketAddr::V4(_) = target else {
        let std = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
        std.set_nonblocking(true)?;
        return Ok(TcpStream::from_std(std));
    };
    // SAFETY: plain socket calls on a descriptor we create and own; it is
    // handed to TcpStream (which closes it) before any early return after
    // creation, except the explicit close on error below.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        if let Some(ip) = source {
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let addr = sockaddr(SocketAddr::new(ip.into(), 0));
            if libc::bind(
                fd,
                &addr as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        let addr = sockaddr(target);
        if libc::connect(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(error);
            }
        }
        Ok(TcpStream::from_std(stream))
    }
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = addr else {
        unreachable!("IPv4 only")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}
