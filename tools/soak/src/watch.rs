//! The servers' side of the report: `/stats` at start and end, resident
//! memory at start, peak and end, whether each process stayed up, and how
//! each shut down. One server, or every process of a bus run, summed
//! where a sum means something (evictions, deliveries, bytes) and listed
//! one by one where it does not (memory, exit status).

use std::time::Duration;

use ssed_testkit::json::json_u64;
use ssed_testkit::procfs;

use crate::server::{self, Fleet, RssSampler};

/// Figures taken at the start, and the memory samplers.
pub struct Watch {
    stats_start: Vec<String>,
    rss_start: Vec<Option<u64>>,
    samplers: Vec<RssSampler>,
}

impl Watch {
    pub fn start(fleet: &Fleet) -> Result<Watch, String> {
        let mut watch = Watch {
            stats_start: Vec::new(),
            rss_start: Vec::new(),
            samplers: Vec::new(),
        };
        for target in &fleet.targets {
            let stats =
                server::stats(target.addr).map_err(|e| format!("/stats of {} at start: {e}", target.addr))?;
            watch.stats_start.push(stats);
            watch.rss_start.push(target.pid.and_then(procfs::rss_bytes));
            watch.samplers.push(RssSampler::start(target.pid));
        }
        Ok(watch)
    }

    /// The first process found dead, and how.
    pub fn died(fleet: &mut Fleet) -> Option<String> {
        fleet
            .targets
            .iter_mut()
            .find_map(|t| t.exited().map(|status| format!("{}: {status}", t.addr)))
    }

    /// Prints the servers' lines of the report, stops every server, and
    /// returns false if a check failed: a server died, stopped answering,
    /// or did not exit 0 on SIGTERM.
    pub fn report(self, fleet: &mut Fleet, died: Option<String>, slow: usize) -> bool {
        let mut ok = true;
        let died = died.or_else(|| Watch::died(fleet));
        let stats_end: Vec<Option<String>> =
            fleet.targets.iter().map(|t| server::stats(t.addr).ok()).collect();
        let rss_end: Vec<Option<u64>> = fleet
            .targets
            .iter()
            .map(|t| t.pid.and_then(procfs::rss_bytes))
            .collect();
        let rss_peak: Vec<Option<u64>> = self.samplers.into_iter().map(RssSampler::stop).collect();

        // Summed over the processes; "?" if any did not answer.
        let sum = |name: &str, since_start: bool| -> Option<u64> {
            let mut total = 0;
            for (i, end) in stats_end.iter().enumerate() {
                let end = json_u64(end.as_deref()?, name)?;
                let start = if since_start {
                    json_u64(&self.stats_start[i], name).unwrap_or(0)
                } else {
                    0
                };
                total += end.saturating_sub(start);
            }
            Some(total)
        };
        let show = |v: Option<u64>| v.map_or("?".into(), |n| n.to_string());
        let evicted = sum("evicted", true);
        let of = if fleet.targets.len() > 1 {
            format!(", {} processes", fleet.targets.len())
        } else {
            String::new()
        };
        println!(
            "evictions        {} (server /stats{of}); delivered {}; bytes out {}; connections now {}",
            show(evicted),
            show(sum("delivered", false)),
            show(sum("bytes_out", false)),
            show(sum("connections", false)),
        );
        if slow > 0 && evicted == Some(0) {
            println!("note: no slow subscriber was evicted in this run (a longer run, or a smaller --max-queue, shows it)");
        }
        let mib = |v: Option<u64>| v.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1024.0 / 1024.0));
        for (i, target) in fleet.targets.iter().enumerate() {
            let label = if fleet.targets.len() > 1 {
                format!("server {i} RSS")
            } else {
                "server RSS".into()
            };
            println!(
                "{label:<16} start {}  peak {}  end {}",
                mib(self.rss_start[i]),
                mib(rss_peak[i]),
                mib(rss_end[i])
            );
            if stats_end[i].is_none() && died.is_none() {
                ok = false;
                println!("FAIL the server at {} stopped answering /stats", target.addr);
            }
        }
        if let Some(status) = died {
            ok = false;
            println!("FAIL a server died during the soak: {status}");
            for target in &fleet.targets {
                target.print_log_tail();
            }
        }
        for target in &mut fleet.targets {
            if let Some(status) = target.stop() {
                println!("shutdown         {}: {status}", target.addr);
                if !status.contains("exit status: 0") {
                    ok = false;
                    println!("FAIL the server did not shut down cleanly on SIGTERM");
                    target.print_log_tail();
                }
            }
        }
        ok
    }
}

/// How long to wait between looks at the servers while the load runs.
pub const LOOK_EVERY: Duration = Duration::from_millis(200);
