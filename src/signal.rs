//! SIGINT and SIGTERM, turned into an ordinary readable event.
//!
//! A signal handler may run between any two instructions of the program, so
//! it may only do what is async-signal-safe: here it sets a flag and writes
//! one byte to a pipe (the "self-pipe trick"). The pipe's read end is
//! registered with `poll`, so the event loop wakes, sees the flag, and runs
//! the graceful shutdown in its own good time.
//!
//! The handler can only find the pipe through a process-wide static, which
//! must never name a descriptor that has been closed (its number may by then
//! belong to a client's socket). So the static names one pipe at a time,
//! the one installed last, and dropping that [`Signals`] clears it; a
//! handler still running with the old number is waited for before the pipe
//! is closed.
//!
//! This file and `os.rs` hold all of the crate's `unsafe`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The write end of the pipe installed last, or -1.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// Handlers between reading `WRITE_FD` and finishing their write. A signal
/// may run its handler on any thread (the `--stdin` reader's too), so
/// [`Signals`] waits for this to be 0 before it closes its pipe.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// The read end of the self-pipe.
#[derive(Debug)]
pub struct Signals {
    read: OwnedFd,
    write: OwnedFd,
}

extern "C" fn on_signal(_signal: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
    // Counted before the load: whoever replaces WRITE_FD and then sees 0
    // here knows no handler is still holding the old number.
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let fd = WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a live
        // one-byte static. `fd` is open: its owner closes it only after
        // replacing WRITE_FD and seeing IN_HANDLER at 0. A full pipe
        // (EAGAIN) is fine: a wake-up is already pending.
        unsafe {
            libc::write(fd, b"!".as_ptr().cast(), 1);
        }
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
}

impl Signals {
    /// Creates the pipe and installs the handlers for SIGINT and SIGTERM.
    /// Also ignores SIGPIPE, so a write to a closed socket is an `EPIPE`
    /// error on that connection rather than the death of the process.
    ///
    /// Installing again moves the signals to the new pipe; the older
    /// `Signals` hears no more of them.
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Built before WRITE_FD names its pipe, so that an early return
        // below drops it, and the drop clears WRITE_FD again.
        let signals = Signals { read, write };
        WRITE_FD.store(signals.write.as_raw_fd(), Ordering::SeqCst);
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
        Ok(signals)
    }

    /// The pipe's read end, to register with `poll`.
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

impl Drop for Signals {
    /// Stops the handler from writing to this pipe before the pipe closes
    /// (the fields are dropped after this).
    ///
    /// If this is the pipe installed last, SIGINT and SIGTERM go back to
    /// their default action, ending the process: with nothing left to hear
    /// them, the handler would only swallow them. If a later `install`
    /// replaced this one, that one keeps WRITE_FD and the handler. SIGPIPE
    /// stays ignored, for any socket still open.
    fn drop(&mut self) {
        let ours = self.write.as_raw_fd();
        if WRITE_FD
            .compare_exchange(ours, -1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            for signal in [libc::SIGINT, libc::SIGTERM] {
                // SAFETY: setting a disposition to SIG_DFL has no
                // preconditions. A failure leaves our handler, which is
                // harmless now that WRITE_FD is -1.
                unsafe {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
        }
        // WRITE_FD no longer names our pipe (we cleared it, or a later
        // install replaced it). A handler that read the old value before
        // that has counted itself in IN_HANDLER: wait for it to finish its
        // one non-blocking write.
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_fd() -> RawFd {
        WRITE_FD.load(Ordering::SeqCst)
    }

    /// What SIGTERM is set to do now.
    fn sigterm_action() -> libc::sighandler_t {
        // SAFETY: a zeroed sigaction is valid, and sigaction(2) with a null
        // new action only writes the current one into `old`.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut old), 0);
            old.sa_sigaction
        }
    }

    /// One test, not several: WRITE_FD and the handlers are process-wide,
    /// and tests run in parallel threads.
    #[test]
    fn the_write_end_lives_and_dies_with_its_owner() {
        let handler = on_signal as *const () as libc::sighandler_t;

        let a = Signals::install().unwrap();
        assert_eq!(write_fd(), a.write.as_raw_fd());
        assert_eq!(sigterm_action(), handler);
        drop(a);
        assert_eq!(write_fd(), -1, "dropping the owner clears the write end");
        assert_eq!(sigterm_action(), libc::SIG_DFL, "and restores the default");

        let a = Signals::install().unwrap();
        let b = Signals::install().unwrap();
        assert_eq!(write_fd(), b.write.as_raw_fd());
        drop(a);
        assert_eq!(write_fd(), b.write.as_raw_fd(), "dropping A leaves B installed");
        assert_eq!(sigterm_action(), handler);

        // B still hears a signal (raise runs the handler on this thread
        // before it returns).
        b.take();
        // SAFETY: raise(3) has no preconditions; our handler is installed,
        // so SIGTERM sets the flag and writes to B's pipe.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        assert!(b.take());
        assert!(!b.take());

        drop(b);
        assert_eq!(write_fd(), -1);
        assert_eq!(sigterm_action(), libc::SIG_DFL);
    }
}
