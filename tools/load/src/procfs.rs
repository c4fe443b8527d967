//! What `/proc` says about a process: resident memory and CPU time.

use std::fs;

/// `VmRSS` from `/proc/PID/status`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// `VmHWM` (peak resident memory) from `/proc/PID/status`, in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
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
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((utime + stime) * 1_000_000_000 / ticks)
}

/// Raises this process's soft open-file limit to the hard one; returns the
/// resulting soft limit.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_figures() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        let before = cpu_ns(pid).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(pid).unwrap() >= before);
    }
}
