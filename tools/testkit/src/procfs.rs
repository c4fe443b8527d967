//! What Linux says about a process, and the open-file limit.
//!
//! The load tool and the soak measure the server from outside, by pid:
//!
//! - resident memory, `VmRSS` (now) and `VmHWM` (peak) in
//!   `/proc/PID/status`, which the kernel reports in KiB;
//! - CPU time, from `/proc/PID/task/TID/schedstat` (nanoseconds on the
//!   CPU, per thread) or else `utime + stime` in `/proc/PID/stat` (clock
//!   ticks, usually 10 ms).
//!
//! Every reader returns `None` where the file or field is missing (another
//! OS, the process gone): a figure is left out, the run goes on.
//!
//! Many connections need many descriptors: [`raise_nofile`] lifts this
//! process's soft `RLIMIT_NOFILE` to the hard limit, and [`set_nofile`]
//! sets both (lower, for a test that runs a server short of descriptors).

use std::fs;
use std::io;

/// `VmRSS` from `/proc/PID/status`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// `VmHWM` (peak resident memory) from `/proc/PID/status`, in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// A `kB` line of `/proc/PID/status`, e.g. `VmRSS: 5120 kB`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of every thread of `pid`, in nanoseconds.
///
/// `/proc/PID/task/TID/schedstat` counts on-CPU time in nanoseconds; it is
/// summed over the threads. Where schedstat is missing, `utime + stime` from
/// `/proc/PID/stat` is used, which only has clock-tick (usually 10 ms)
/// resolution.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        let mut total = 0u64;
        let mut any = false;
        for task in tasks.flatten() {
            let path = task.path().join("schedstat");
            if let Some(ns) = fs::read_to_string(path)
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
        if any {
            return Some(total);
        }
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'. utime and stime are fields 14 and 15 (1-based),
    // i.e. the 12th and 13th after the state field.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((utime + stime) * 1_000_000_000 / ticks)
}

/// Raises this process's soft open-file limit to the hard one; returns the
/// resulting soft limit (1024, the usual default, if it cannot be read).
pub fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// Sets this process's soft and hard open-file limits to `limit`.
///
/// Only `setrlimit(2)` and `errno` are touched, so it may run in a
/// `Command::pre_exec` hook, between `fork` and `exec`.
pub fn set_nofile(limit: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: limit as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_figures() {
        let pid = std::process::id();
        let rss = rss_bytes(pid).expect("VmRSS");
        assert!(rss > 0);
        assert!(peak_rss_bytes(pid).expect("VmHWM") >= rss / 2);
        let before = cpu_ns(pid).expect("cpu time");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(pid).expect("cpu time") >= before);
        assert_eq!(rss_bytes(u32::MAX), None);
    }

    #[test]
    fn raising_never_lowers() {
        let first = raise_nofile();
        assert!(first >= 1);
        assert_eq!(raise_nofile(), first);
    }
}
