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

use std::io;
use std::os::fd::AsRawFd;

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
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `on`.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_nodelay(&listener).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
