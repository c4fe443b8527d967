//! The few operating-system calls `std` does not wrap.
//!
//! - The open-file limit. Every connection is a file descriptor, and the
//!   soft limit (often 1024) is what stops a server long before memory
//!   does. A process may raise its soft limit up to the hard limit without
//!   privilege, so we do that at start and size `--max-conns` to fit.
//! - The listen backlog. `std` listens with a backlog of 128; a burst of
//!   thousands of connects then overflows the SYN/accept queues and clients
//!   wait a full second for the kernel to retry. We ask for `SOMAXCONN`
//!   again on the bound socket (Linux lets `listen` raise it in place).
//! - `TCP_NODELAY` on the listener. Events are small writes; with Nagle's
//!   algorithm a second event waits for the first one's ACK, which a client
//!   may delay by 40 ms. Linux copies the option to every accepted socket,
//!   which saves a `setsockopt` per connection.
//! - `SO_REUSEPORT`, for `--reuseport`. It must be set between `socket` and
//!   `bind`, and `std::net::TcpListener::bind` does all three at once, so
//!   [`listen_reuseport`] makes the socket itself and hands back a `std`
//!   listener. Each process that sets it can bind the same address; Linux
//!   then spreads new connections over their listeners by a hash of each
//!   connection's addresses and ports. (macOS and the BSDs accept the
//!   option but do not spread: the newest listener takes every
//!   connection.)

use std::io;
use std::mem;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Soft and hard `RLIMIT_NOFILE`, before and after raising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit the process started with.
    pub soft_before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit, which an unprivileged process cannot raise.
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one.
pub fn raise_file_limit() -> io::Result<FileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let soft_before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Ok(FileLimit {
        soft_before,
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Widens a listening socket's accept backlog to the system maximum.
pub fn widen_backlog(listener: &impl AsRawFd) {
    // SAFETY: listen(2) on a descriptor we own; failure leaves the old
    // backlog in place, which is harmless.
    unsafe {
        libc::listen(listener.as_raw_fd(), libc::SOMAXCONN);
    }
}

/// Sets `TCP_NODELAY` on a listening socket, for the sockets it accepts.
pub fn set_nodelay(socket: &impl AsRawFd) -> io::Result<()> {
    set_flag(socket, libc::IPPROTO_TCP, libc::TCP_NODELAY)
}

/// Turns on a boolean socket option.
fn set_flag(socket: &impl AsRawFd, level: libc::c_int, option: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `on`.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A listening socket on `addr` with `SO_REUSEADDR` (as `std` sets it) and
/// `SO_REUSEPORT`, listening with a backlog of `SOMAXCONN`, close-on-exec
/// and nonblocking.
pub fn listen_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let socket = tcp_socket(domain)?;
    set_flag(&socket, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    set_flag(&socket, libc::SOL_SOCKET, libc::SO_REUSEPORT)?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: bind reads `len` bytes from `storage`, which holds the
    // `sockaddr_in` or `sockaddr_in6` of that length that `sockaddr` wrote.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if bound != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen(2) on the descriptor we own; it touches no memory.
    if unsafe { libc::listen(socket.as_raw_fd(), libc::SOMAXCONN) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(socket))
}

/// A new TCP socket, close-on-exec (a child process never inherits a
/// listener) and nonblocking (the loop never waits in `accept`).
fn tcp_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // Both as flags, so there is no moment at which another thread's fork
    // could inherit the descriptor (the same platforms as `pipe2`, which
    // `signal.rs` relies on).
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(domain, kind, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing
    // else owns it: the OwnedFd closes it on every path from here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `addr` as the C structure `bind` takes, and that structure's length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain integers and arrays, for which all
    // zeroes is a valid value; the fields not set below must be zero.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is made to be large enough and
            // aligned for every sockaddr type, sockaddr_in among them.
            let sin =
                unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            // The octets are in network order already: keep their bytes.
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (storage, mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            (storage, mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Hands memory that was freed back to the operating system. glibc's
/// allocator keeps freed pages for reuse, so after a burst has grown and
/// emptied thousands of queues, RSS would stay at its peak; `malloc_trim`
/// returns what it can. A no-op on other allocators.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers() {
        let limit = raise_file_limit().unwrap();
        assert!(limit.soft >= limit.soft_before);
        assert!(limit.soft <= limit.hard);
    }

    /// Two listeners on one address, both accepting; an ordinary bind of
    /// that address still fails.
    #[test]
    fn reuseport_listeners_share_an_address() {
        for any_port in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(first) = listen_reuseport(any_port.parse().unwrap()) else {
                // No IPv6 on this machine (some containers): nothing to test.
                assert!(any_port.starts_with('['), "{any_port}");
                continue;
            };
            let addr = first.local_addr().unwrap();
            assert_ne!(addr.port(), 0);
            let second = listen_reuseport(addr).expect("a second listener on the same address");
            assert_eq!(second.local_addr().unwrap(), addr);
            assert_eq!(
                TcpListener::bind(addr).map_err(|e| e.kind()).err(),
                Some(io::ErrorKind::AddrInUse)
            );
            for listener in [&first, &second] {
                // SAFETY: fcntl(2) with F_GETFD takes no pointers.
                let flags = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_GETFD) };
                assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
                // Nonblocking: with nothing to accept, accept says so.
                assert_eq!(
                    listener.accept().map_err(|e| e.kind()).err(),
                    Some(io::ErrorKind::WouldBlock)
                );
            }
            // A connection reaches one of them.
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while first.accept().is_err() && second.accept().is_err() {
                assert!(std::time::Instant::now() < deadline, "no listener accepted");
                std::thread::yield_now();
            }
        }
    }

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_nodelay(&listener).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
