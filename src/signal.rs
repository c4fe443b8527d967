//! SIGINT and SIGTERM, turned into an ordinary readable event.
//!
//! A signal handler may run between any two instructions of the program, so
//! it may only do what is async-signal-safe: here it sets a flag and writes
//! one byte to a pipe (the "self-pipe trick"). The pipe's read end is
//! registered with `poll`, so the event loop wakes, sees the flag, and runs
//! the graceful shutdown in its own good time.
//!
//! This file and `os.rs` hold all of the crate's `unsafe`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// The read end of the self-pipe.
#[derive(Debug)]
pub struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
}

extern "C" fn on_signal(_signal: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
    let fd = WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a live
        // one-byte static. A full pipe (EAGAIN) is fine: a wake-up is
        // already pending.
        unsafe {
            libc::write(fd, b"!".as_ptr().cast(), 1);
        }
    }
}

impl Signals {
    /// Creates the pipe and installs the handlers for SIGINT and SIGTERM.
    /// Also ignores SIGPIPE, so a write to a closed socket is an `EPIPE`
    /// error on that connection rather than the death of the process.
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is valid; the handler only touches
            // atomics and write(2).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        // SAFETY: setting a disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        Ok(Signals { read, _write: write })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Empties the pipe and says whether a shutdown was asked for.
    pub fn take(&self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a live local buffer of the given length.
            let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
        }
        REQUESTED.swap(false, Ordering::SeqCst)
    }
}
