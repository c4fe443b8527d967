//! One worker process (`ssed-load --worker FIRST:COUNT ...`, started by a
//! parent run with `--workers W`), and the lines it speaks to its parent.
//!
//! One process holds at most its open-file limit of sockets (20,000 here),
//! so 100,000 subscribers need several processes on the client side too.
//! A worker holds subscribers `FIRST .. FIRST+COUNT-1` of the run (so the
//! targets and source addresses are spread over the whole run, not per
//! worker); the parent publishes, waits and reports, as it does for its
//! own threads. They talk over the worker's standard input and output:
//!
//! ```text
//! parent                                   worker
//!   spawn ─── argv: --worker FIRST:COUNT ──> subscriber threads connect
//!         <── status H F D LH D0 D1 D2 ───── whenever a counter moved,
//!                       L0 L1 L2             at most every 2 ms
//!   (connect, idle, publish phases: the parent's counters are the sum
//!    of its workers' status lines)
//!   close stdin ──────── EOF ──────────────> stop, join threads
//!         <── status ... (the final counts)
//!         <── latency PHASE MAX I:N ...      one per phase (histogram.rs)
//!         <── targets C0 C1 ...              heads per target
//!         <── sub LAST GAPS DUPS             one per subscriber with a head
//!         <── error N WHY                    one per distinct failure
//!         <── done
//! ```
//!
//! `H F D LH`: heads, failed, dropped, time of the last head; `Dp`, `Lp`:
//! deliveries and time of the last one in phase `p`. Times are the
//! machine's monotonic clock (`subscribers::now_ns`), which every process
//! shares. Every counter only grows, so the parent adds the difference
//! between two status lines to its own counters.
//!
//! A worker stops when its standard input closes, which also happens when
//! the parent dies; `--duration` bounds it besides. A parent that reads no
//! `done` counts the worker's subscribers as failed or dropped, so no
//! phase waits for them, and the run is not clean.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use crate::args::Options;
use crate::fleet;
use crate::histogram::Histogram;
use crate::subscribers::{note_n, Report, Shared, PHASES};

/// Status lines no closer together than this.
const STATUS_EVERY: Duration = Duration::from_millis(2);

/// A worker's counters: what one status line says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub heads: usize,
    pub failed: usize,
    pub dropped: usize,
    pub last_head_ns: u64,
    pub delivered: [u64; PHASES],
    pub last_ns: [u64; PHASES],
}

impl Status {
    pub fn of(shared: &Shared) -> Status {
        Status {
            heads: shared.heads.load(Ordering::SeqCst),
            failed: shared.failed.load(Ordering::SeqCst),
            dropped: shared.dropped.load(Ordering::SeqCst),
            last_head_ns: shared.last_head_ns.load(Ordering::SeqCst),
            delivered: std::array::from_fn(|p| shared.delivered[p].load(Ordering::SeqCst)),
            last_ns: std::array::from_fn(|p| shared.last_ns[p].load(Ordering::SeqCst)),
        }
    }

    pub fn encode(&self) -> String {
        let mut words = vec![
            self.heads as u64,
            self.failed as u64,
            self.dropped as u64,
            self.last_head_ns,
        ];
        words.extend(self.delivered);
        words.extend(self.last_ns);
        let words: Vec<String> = words.iter().map(u64::to_string).collect();
        format!("status {}", words.join(" "))
    }

    /// The words after `status`.
    pub fn decode(text: &str) -> Option<Status> {
        let words: Vec<u64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [h, f, d, lh, d0, d1, d2, l0, l1, l2] = words[..] else {
            return None;
        };
        Some(Status {
            heads: usize::try_from(h).ok()?,
            failed: usize::try_from(f).ok()?,
            dropped: usize::try_from(d).ok()?,
            last_head_ns: lh,
            delivered: [d0, d1, d2],
            last_ns: [l0, l1, l2],
        })
    }

    /// Adds to `shared` what moved between `before` and this status. Times
    /// first, then counts: a phase that sees its count reached reads a
    /// time at least as late as the deliveries counted.
    pub fn apply(&self, before: &Status, shared: &Shared) {
        shared.last_head_ns.fetch_max(self.last_head_ns, Ordering::SeqCst);
        for p in 0..PHASES {
            shared.last_ns[p].fetch_max(self.last_ns[p], Ordering::SeqCst);
        }
        shared
            .heads
            .fetch_add(self.heads.saturating_sub(before.heads), Ordering::SeqCst);
        shared
            .failed
            .fetch_add(self.failed.saturating_sub(before.failed), Ordering::SeqCst);
        shared
            .dropped
            .fetch_add(self.dropped.saturating_sub(before.dropped), Ordering::SeqCst);
        for p in 0..PHASES {
            let more = self.delivered[p].saturating_sub(before.delivered[p]);
            shared.delivered[p].fetch_add(more, Ordering::SeqCst);
        }
    }
}

/// Writes `report` as the lines after the final status, `done` last.
pub fn encode_report(report: &Report, out: &mut impl Write) -> io::Result<()> {
    for (phase, histogram) in report.latencies_us.iter().enumerate() {
        writeln!(out, "latency {phase} {}", histogram.encode())?;
    }
    let targets: Vec<String> = report.heads_by_target.iter().map(usize::to_string).collect();
    writeln!(out, "targets {}", targets.join(" "))?;
    for i in 0..report.last_seq.len() {
        let (gaps, dups) = (report.gaps.get(i), report.duplicates.get(i));
        let (gaps, dups) = (gaps.copied().unwrap_or(0), dups.copied().unwrap_or(0));
        writeln!(out, "sub {} {gaps} {dups}", report.last_seq[i])?;
    }
    for (why, n) in &report.errors {
        writeln!(out, "error {n} {}", why.replace(['\n', '\r'], " "))?;
    }
    writeln!(out, "done")
}

/// A line of a worker's report, added to `report`; `Ok(false)` at `done`.
pub fn absorb(line: &str, report: &mut Report) -> Result<bool, String> {
    let bad = || format!("bad line from a worker: {line:?}");
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    let numbers = |text: &str| -> Result<Vec<u64>, String> {
        text.split_whitespace()
            .map(|w| w.parse().map_err(|_| bad()))
            .collect()
    };
    match kind {
        "done" => return Ok(false),
        "latency" => {
            let (phase, histogram) = rest.split_once(' ').ok_or_else(bad)?;
            let phase: usize = phase.parse().map_err(|_| bad())?;
            report
                .latencies_us
                .get_mut(phase)
                .ok_or_else(bad)?
                .merge(&Histogram::decode(histogram)?);
        }
        "targets" => {
            report.merge(Report {
                heads_by_target: numbers(rest)?.iter().map(|&n| n as usize).collect(),
                ..Report::default()
            });
        }
        "sub" => {
            let [last, gaps, dups] = numbers(rest)?[..] else {
                return Err(bad());
            };
            report.last_seq.push(last);
            report.gaps.push(gaps);
            report.duplicates.push(dups);
        }
        "error" => {
            let (n, why) = rest.split_once(' ').ok_or_else(bad)?;
            note_n(&mut report.errors, why.to_string(), n.parse().map_err(|_| bad())?);
        }
        _ => return Err(bad()),
    }
    Ok(true)
}

/// Runs as a worker: subscribers `first .. first + count`, status lines
/// until standard input closes, then the report.
pub fn run(o: &Options, first: usize, count: usize) -> Result<bool, String> {
    let shared = Arc::new(Shared::new(o.singles, o.burst, o.seq_burst));
    let threads = fleet::spawn_threads(o, &shared, first, count)?;
    let (closed, stdin_closed) = mpsc::channel::<()>();
    thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        let _ = closed.send(());
    });
    let lost = |e: io::Error| format!("worker: the parent is gone ({e})");
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut said = Status::default();
    loop {
        let now = Status::of(&shared);
        if now != said {
            writeln!(out, "{}", now.encode())
                .and_then(|()| out.flush())
                .map_err(lost)?;
            said = now;
        }
        match stdin_closed.recv_timeout(STATUS_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let report = fleet::join_threads(&shared, threads)?;
    writeln!(out, "{}", Status::of(&shared).encode()).map_err(lost)?;
    encode_report(&report, &mut out)
        .and_then(|()| out.flush())
        .map_err(lost)?;
    Ok(true)
}

/// Reads a worker's standard output to its end (`read` on the parent's
/// side of the pipe): its status lines into `shared`, its report into the
/// returned one. A worker that ended without `done` leaves its
/// `count` subscribers counted as failed (not connected) or dropped
/// (connected), and the report marked incomplete.
pub fn follow(index: usize, count: usize, read: impl Read, shared: &Shared) -> Report {
    let mut report = Report::default();
    let mut seen = Status::default();
    let mut finished = false;
    for line in io::BufRead::lines(io::BufReader::new(read)) {
        let Ok(line) = line else { break };
        let outcome = match line.strip_prefix("status ") {
            Some(words) => match Status::decode(words) {
                Some(status) => {
                    status.apply(&seen, shared);
                    seen = status;
                    Ok(true)
                }
                None => Err(format!("bad status line from a worker: {line:?}")),
            },
            None => absorb(&line, &mut report),
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                finished = true;
                break;
            }
            Err(why) => note_n(&mut report.errors, why, 1),
        }
    }
    if !finished {
        let never = count.saturating_sub(seen.heads + seen.failed);
        shared.failed.fetch_add(never, Ordering::SeqCst);
        let connected = seen.heads.saturating_sub(seen.dropped);
        shared.dropped.fetch_add(connected, Ordering::SeqCst);
        note_n(
            &mut report.errors,
            format!("worker {index} ended without its report"),
            1,
        );
        report.incomplete += 1;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_and_deltas() {
        let status = Status {
            heads: 5,
            failed: 1,
            dropped: 2,
            last_head_ns: 77,
            delivered: [10, 20, 30],
            last_ns: [100, 200, 300],
        };
        let line = status.encode();
        let words = line.strip_prefix("status ").unwrap();
        assert_eq!(Status::decode(words), Some(status));
        assert_eq!(Status::decode("1 2 3"), None);
        assert_eq!(Status::decode("1 2 3 4 5 6 7 8 9 x"), None);
        let shared = Shared::new(1, 1, 1);
        let before = Status {
            heads: 3,
            delivered: [4, 0, 0],
            ..Status::default()
        };
        status.apply(&before, &shared);
        assert_eq!(shared.heads.load(Ordering::SeqCst), 2);
        assert_eq!(shared.delivered[0].load(Ordering::SeqCst), 6);
        assert_eq!(shared.last_ns[2].load(Ordering::SeqCst), 300);
    }

    fn sample() -> Report {
        let mut report = Report {
            heads_by_target: vec![2, 1],
            last_seq: vec![9, 9, 8],
            gaps: vec![0, 1, 0],
            duplicates: vec![0, 0, 3],
            errors: vec![("connect: refused\nagain".into(), 4)],
            ..Report::default()
        };
        report.latencies_us[1].record(1234);
        report
    }

    #[test]
    fn a_whole_report_comes_through() {
        let mut wire = Vec::new();
        wire.extend_from_slice(b"status 3 4 0 99 0 1 0 0 5 0\n");
        encode_report(&sample(), &mut wire).unwrap();
        let shared = Shared::new(1, 1, 1);
        let report = follow(0, 7, &wire[..], &shared);
        assert_eq!(report.heads_by_target, [2, 1]);
        assert_eq!(
            (report.last_seq, report.gaps, report.duplicates),
            (vec![9, 9, 8], vec![0, 1, 0], vec![0, 0, 3])
        );
        assert_eq!(report.errors, [("connect: refused again".to_string(), 4)]);
        assert_eq!(report.latencies_us[1].max(), Some(1234));
        assert_eq!(report.incomplete, 0);
        assert_eq!(shared.heads.load(Ordering::SeqCst), 3);
        assert_eq!(shared.failed.load(Ordering::SeqCst), 4);
        assert_eq!(shared.delivered[1].load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_worker_that_dies_is_accounted_for() {
        // 10 subscribers: 6 heads (1 dropped since), 1 failed, 3 never.
        let wire = b"status 6 1 1 0 0 0 0 0 0 0\nsub 4 0";
        let shared = Shared::new(1, 1, 1);
        let report = follow(3, 10, &wire[..], &shared);
        assert_eq!(report.incomplete, 1);
        assert_eq!(shared.failed.load(Ordering::SeqCst), 1 + 3);
        assert_eq!(shared.dropped.load(Ordering::SeqCst), 1 + 5);
        let errors: Vec<&str> = report.errors.iter().map(|(w, _)| w.as_str()).collect();
        assert!(errors.iter().any(|w| w.contains("bad line")), "{errors:?}");
        assert!(errors.contains(&"worker 3 ended without its report"));
    }
}
