//! The servers' figures from `/proc` (each `--pid`), and ours.
//!
//! Several server processes (`--pid A,B,C`: ssed processes sharing a port,
//! or behind one proxy) are read one by one; the report gives each and
//! their sum. A sum is left out (`None`) when any process could not be
//! read, rather than silently counting fewer processes. Our own CPU is
//! this process's plus that of its workers (`--workers`).

use ssed_testkit::procfs;

#[derive(Debug)]
pub struct Probe {
    pub pids: Vec<u32>,
    /// This process and its workers.
    clients: Vec<u32>,
}

/// CPU time of the servers and of the client side at one moment, in ns.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    server: Option<u64>,
    client: Option<u64>,
}

impl CpuMark {
    /// CPU time (server, client) spent since `start`.
    pub fn since(self, start: CpuMark) -> (Option<u64>, Option<u64>) {
        let spent = |now: Option<u64>, then: Option<u64>| now.zip(then).map(|(b, a)| b.saturating_sub(a));
        (spent(self.server, start.server), spent(self.client, start.client))
    }
}

/// The sum of figures, or `None` when there are none or one is missing.
pub fn total(each: &[Option<u64>]) -> Option<u64> {
    if each.is_empty() {
        return None;
    }
    each.iter().copied().sum()
}

impl Probe {
    /// Checks that every `/proc/PID` can be read before anything starts.
    pub fn new(pids: &[u32]) -> Result<Probe, String> {
        for &pid in pids {
            if procfs::rss_bytes(pid).is_none() {
                return Err(format!("--pid {pid}: cannot read /proc/{pid}/status"));
            }
        }
        Ok(Probe {
            pids: pids.to_vec(),
            clients: vec![std::process::id()],
        })
    }

    /// Counts the CPU of these processes (the workers) as ours too.
    pub fn add_clients(&mut self, pids: impl IntoIterator<Item = u32>) {
        self.clients.extend(pids);
    }

    /// Resident memory of each server process.
    pub fn rss(&self) -> Vec<Option<u64>> {
        self.pids.iter().map(|&pid| procfs::rss_bytes(pid)).collect()
    }

    /// Peak resident memory of each server process.
    pub fn peak_rss(&self) -> Vec<Option<u64>> {
        self.pids.iter().map(|&pid| procfs::peak_rss_bytes(pid)).collect()
    }

    /// CPU time of each server process, in ns.
    pub fn server_cpu(&self) -> Vec<Option<u64>> {
        self.pids.iter().map(|&pid| procfs::cpu_ns(pid)).collect()
    }

    pub fn mark(&self) -> CpuMark {
        let clients: Vec<Option<u64>> = self.clients.iter().map(|&pid| procfs::cpu_ns(pid)).collect();
        CpuMark {
            server: total(&self.server_cpu()),
            client: total(&clients),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_need_every_figure() {
        assert_eq!(total(&[]), None);
        assert_eq!(total(&[Some(1), Some(2)]), Some(3));
        assert_eq!(total(&[Some(1), None]), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let probe = Probe::new(&[me, me]).unwrap();
        let rss = probe.rss();
        assert!(rss.iter().all(|r| r.is_some_and(|b| b > 0)));
        assert!(total(&rss).is_some());
        assert!(Probe::new(&[u32::MAX]).is_err());
    }
}
