//! Where the subscribers live: in threads of this process (the default), or
//! in `--workers` child processes of this same program, each with its own
//! open-file limit and its own threads (`worker.rs`).
//!
//! Either way the phases see the same thing: counters in [`Shared`] that
//! grow as subscribers connect and receive, and one merged [`Report`] when
//! [`Fleet::stop`] ends them. Subscriber `i` of the run has the same target
//! and source address whichever thread or process holds it
//! (`subscribers::Plan`).

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::subscribers::{self, Plan, Report, Shared};
use crate::worker;

/// How long a stopped worker has to send its report, and then to exit.
const REPORT_WAIT: Duration = Duration::from_secs(30);
const EXIT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum Fleet {
    Threads(Vec<JoinHandle<Report>>),
    Workers(Vec<Worker>),
}

/// A worker process: its stdin (closing it stops the worker) and the
/// report its stdout reader thread hands over.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    report: mpsc::Receiver<Report>,
}

impl Drop for Worker {
    /// Never leaves a worker behind, whatever path the run took.
    fn drop(&mut self) {
        self.stdin.take();
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Fleet {
    /// Starts every subscriber of this process's part of the run: all of
    /// them, or a worker's share.
    pub fn start(o: &Options, shared: &Arc<Shared>) -> Result<Fleet, String> {
        if o.workers == 0 {
            let (first, count) = o.worker.unwrap_or((0, o.subscribers));
            return Ok(Fleet::Threads(spawn_threads(o, shared, first, count)?));
        }
        let exe = std::env::current_exe().map_err(|e| format!("--workers: where am I? {e}"))?;
        let mut workers = Vec::with_capacity(o.workers);
        let mut first = 0;
        for index in 0..o.workers {
            let count = share(o.subscribers, o.workers, index);
            let mut child = Command::new(&exe)
                .args(worker_args(o, first, count))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("--workers: starting worker {index}: {e}"))?;
            let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
            let (send, report) = mpsc::channel();
            let shared = shared.clone();
            let reader = stdout.map(|stdout| {
                thread::Builder::new()
                    .name(format!("worker-{index}"))
                    .spawn(move || {
                        let _ = send.send(worker::follow(index, count, stdout, &shared));
                    })
            });
            workers.push(Worker { child, stdin, report });
            match reader {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("--workers: reader thread: {e}")),
                None => return Err("--workers: no pipe to a worker".into()),
            }
            first += count;
        }
        Ok(Fleet::Workers(workers))
    }

    /// The worker processes' pids (none for threads).
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Fleet::Threads(_) => Vec::new(),
            Fleet::Workers(workers) => workers.iter().map(|w| w.child.id()).collect(),
        }
    }

    /// Stops every subscriber and merges what they saw.
    pub fn stop(self, shared: &Shared) -> Result<Report, String> {
        let mut workers = match self {
            Fleet::Threads(threads) => return join_threads(shared, threads),
            Fleet::Workers(workers) => workers,
        };
        // All at once: each then stops in parallel with the others.
        for worker in &mut workers {
            worker.stdin.take();
        }
        let deadline = Instant::now() + REPORT_WAIT;
        let mut all = Report::default();
        for (index, worker) in workers.iter_mut().enumerate() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match worker.report.recv_timeout(wait) {
                Ok(report) => all.merge(report),
                Err(_) => {
                    subscribers::note_n(
                        &mut all.errors,
                        format!("worker {index} sent no report in time"),
                        1,
                    );
                    all.incomplete += 1;
                }
            }
            reap(&mut worker.child);
        }
        Ok(all)
    }
}

/// Waits (bounded) for a worker that has reported to exit; kills it past
/// the bound.
fn reap(child: &mut Child) {
    let deadline = Instant::now() + EXIT_WAIT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The `index`-th of `parts` near-equal shares of `total`.
fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// A worker's command line: the run's flags that shape its subscribers,
/// and its share. The rest (publishing, timeouts, report) is the parent's.
fn worker_args(o: &Options, first: usize, count: usize) -> Vec<String> {
    let targets: Vec<String> = o.targets.iter().map(|t| t.to_string()).collect();
    let mut args = vec![
        "--worker".to_string(),
        format!("{first}:{count}"),
        "--target".into(),
        targets.join(","),
        "--subscribe-path".into(),
        o.subscribe_path.clone(),
        "--subscribers".into(),
        o.subscribers.to_string(),
        "--sources".into(),
        o.sources.to_string(),
        "--connect-window".into(),
        (o.connect_window / o.workers.max(1)).max(1).to_string(),
        "--threads".into(),
        o.threads.to_string(),
        "--singles".into(),
        o.singles.to_string(),
        "--burst".into(),
        o.burst.to_string(),
        "--seq-burst".into(),
        o.seq_burst.to_string(),
        // The parent's own hard stop comes first; closing our stdin then
        // stops the worker.
        "--duration".into(),
        (o.duration.as_secs_f64() + 10.0).min(86_400.0).to_string(),
    ];
    if o.allow_remote {
        args.push("--allow-remote".into());
    }
    args
}

/// `--threads` event loops for subscribers `first .. first + count`.
pub fn spawn_threads(
    o: &Options,
    shared: &Arc<Shared>,
    first: usize,
    count: usize,
) -> Result<Vec<JoinHandle<Report>>, String> {
    let requests: Vec<Vec<u8>> = o
        .targets
        .iter()
        .map(|target| {
            format!(
                "GET {} HTTP/1.1\r\nHost: {target}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
                o.subscribe_path
            )
            .into_bytes()
        })
        .collect();
    let (targets, requests): (Arc<[_]>, Arc<[_]>) = (o.targets.clone().into(), requests.into());
    let mut threads = Vec::new();
    let mut first_index = first;
    for t in 0..o.threads {
        let plan = Plan {
            targets: targets.clone(),
            requests: requests.clone(),
            count: share(count, o.threads, t),
            first_index,
            sources: o.sources,
            window: (o.connect_window / o.threads).max(1),
        };
        first_index += plan.count;
        let shared = shared.clone();
        threads.push(
            thread::Builder::new()
                .name(format!("subs-{t}"))
                .spawn(move || subscribers::run(plan, shared))
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    Ok(threads)
}

/// Stops the subscriber threads and merges their reports.
pub fn join_threads(shared: &Shared, threads: Vec<JoinHandle<Report>>) -> Result<Report, String> {
    shared.stop.store(true, Ordering::SeqCst);
    let mut all = Report::default();
    for thread in threads {
        all.merge(
            thread
                .join()
                .map_err(|_| "a subscriber thread panicked".to_string())?,
        );
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (total, parts) in [(100_000, 6), (7, 3), (5, 5), (1, 1)] {
            let shares: Vec<usize> = (0..parts).map(|i| share(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<usize>(), total);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn a_worker_command_line_parses_back() {
        let o = crate::args::parse(
            [
                "--target",
                "127.0.0.1:1,127.0.0.1:2",
                "--subscribers",
                "100000",
                "--workers",
                "6",
                "--burst",
                "7",
            ]
            .map(String::from),
        )
        .unwrap()
        .unwrap();
        let back = crate::args::parse(worker_args(&o, 16_667, 16_667))
            .unwrap()
            .unwrap();
        assert_eq!(back.worker, Some((16_667, 16_667)));
        assert_eq!(
            (back.targets, back.subscribers, back.sources),
            (o.targets, 100_000, o.sources)
        );
        assert_eq!((back.burst, back.workers, back.connect_window), (7, 0, 1024 / 6));
    }
}
