//! The phases of a run, one function each, in the order `run` calls them:
//!
//! ```text
//! connect ──> idle ──> singles ──> pipelined ──> sequential ──> settle ──> collect
//!  threads,    RSS and   one event    a burst in     a burst, one   late        join the
//!  heads       CPU idle  at a time    one write      at a time      deliveries  threads
//! ```
//!
//! `connect` starts the subscribers (`fleet.rs`: threads of this process
//! or worker processes); from then on they count deliveries into
//! [`Shared`] by themselves, and the phases here only publish, wait on
//! those counters and read the clock and `/proc` (`probe.rs`). Every wait
//! is bounded by `--phase-timeout` and `--duration`.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::fleet::Fleet;
use crate::histogram::Histogram;
use crate::probe::{CpuMark, Probe};
use crate::publish::{event_data, restamp, stamp_offset, Publisher};
use crate::subscribers::{now_ns, Shared, PHASES};

/// Figures of one timed phase.
#[derive(Debug, Default, Clone)]
pub struct PhaseResult {
    pub events: usize,
    pub expected: u64,
    pub delivered: u64,
    /// From the first request sent to the last delivery.
    pub elapsed_s: f64,
    pub server_cpu_ns: Option<u64>,
    pub client_cpu_ns: Option<u64>,
    pub publish_errors: usize,
    pub timed_out: bool,
}

impl PhaseResult {
    pub fn deliveries_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.delivered as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    pub fn cpu_us_per_delivery(&self) -> Option<f64> {
        let ns = self.server_cpu_ns?;
        (self.delivered > 0).then(|| ns as f64 / 1000.0 / self.delivered as f64)
    }
}

pub fn ns_to_s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

// ----- connect ---------------------------------------------------------------

/// How connecting went.
#[derive(Debug, Clone, Copy)]
pub struct Connected {
    /// Subscribers whose response head arrived.
    pub heads: usize,
    /// From the first connect to the last head.
    pub connect_s: f64,
}

/// Starts the subscribers, then waits (within `--connect-timeout`) until
/// every one has its response head or has failed.
pub fn connect(o: &Options, shared: &Arc<Shared>, deadline: Instant) -> Result<(Fleet, Connected), String> {
    let connect_start = now_ns();
    let fleet = Fleet::start(o, shared)?;
    let connect_deadline = Instant::now() + o.connect_timeout;
    loop {
        let done = shared.heads.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst);
        if done >= o.subscribers || Instant::now() >= connect_deadline.min(deadline) {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let heads = shared.heads.load(Ordering::SeqCst);
    let connect_failed = o.subscribers - heads;
    let connect_s = ns_to_s(
        shared
            .last_head_ns
            .load(Ordering::SeqCst)
            .saturating_sub(connect_start),
    );
    eprintln!("ssed-load: {heads} response heads in {connect_s:.3} s ({connect_failed} failed or timed out)");
    Ok((fleet, Connected { heads, connect_s }))
}

// ----- idle ------------------------------------------------------------------

/// The servers with every subscriber idle, one entry per `--pid`.
#[derive(Debug, Default, Clone)]
pub struct Idle {
    pub rss: Vec<Option<u64>>,
    /// Percent of one core over the idle window.
    pub cpu_pct: Vec<Option<f64>>,
}

/// Lets the servers finish sending greetings, then samples their RSS, and
/// their CPU over `--idle-secs`.
pub fn idle(o: &Options, probe: &Probe) -> Idle {
    thread::sleep(Duration::from_millis(500));
    let rss = probe.rss();
    let cpu0 = probe.server_cpu();
    let t0 = Instant::now();
    thread::sleep(o.idle);
    let cpu1 = probe.server_cpu();
    let idle_s = t0.elapsed().as_secs_f64();
    let cpu_pct = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| {
            a.zip(*b)
                .map(|(a, b)| b.saturating_sub(a) as f64 / 1e9 / idle_s * 100.0)
        })
        .collect();
    eprintln!("ssed-load: idle window {idle_s:.1} s done");
    Idle { rss, cpu_pct }
}

// ----- publishing: singles, pipelined, sequential ------------------------------

/// The three publishing phases, on one publisher connection (fresh for
/// each burst), and what they leave for the report.
#[derive(Debug)]
pub struct Publishing<'a> {
    o: &'a Options,
    shared: &'a Shared,
    probe: &'a Probe,
    deadline: Instant,
    publisher: Publisher,
    /// The last seq sent: every subscriber owes everything up to it.
    sent_last_seq: u64,
    notes: Vec<String>,
}

impl<'a> Publishing<'a> {
    pub fn start(
        o: &'a Options,
        shared: &'a Shared,
        probe: &'a Probe,
        deadline: Instant,
    ) -> Result<Self, String> {
        let publisher = Publisher::connect(&o.publish, &o.publish_headers, o.phase_timeout)
            .map_err(|e| format!("publish connection to {}: {e}", o.publish.addr))?;
        Ok(Publishing {
            o,
            shared,
            probe,
            deadline,
            publisher,
            sent_last_seq: 0,
            notes: Vec::new(),
        })
    }

    /// The last seq sent, and notes for the report.
    pub fn finish(self) -> (u64, Vec<String>) {
        (self.sent_last_seq, self.notes)
    }

    /// Subscribers still connected: each owes every event from now on.
    fn live(&self) -> u64 {
        self.shared.heads.load(Ordering::SeqCst) as u64 - self.shared.dropped.load(Ordering::SeqCst) as u64
    }

    /// Waits until `phase` has `target` deliveries; false past `until` (or
    /// `--duration`).
    fn wait(&self, phase: usize, target: u64, until: Instant) -> bool {
        loop {
            if self.shared.delivered[phase].load(Ordering::SeqCst) >= target {
                return true;
            }
            if Instant::now() >= until.min(self.deadline) {
                return false;
            }
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Whether a burst of `events` runs (some, and `--duration` not over);
    /// if so, on a fresh connection: a server may have closed an idle
    /// keep-alive one while the previous phase was delivering.
    fn begin_burst(&mut self, events: usize) -> bool {
        if events == 0 || Instant::now() >= self.deadline {
            return false;
        }
        let o = self.o;
        if let Ok(fresh) = Publisher::connect(&o.publish, &o.publish_headers, o.phase_timeout) {
            self.publisher = fresh;
        }
        true
    }

    /// What a burst reports once its deliveries were waited for (`ok`: all
    /// `expect` of them came): counts, time from `t` (ns) to the last
    /// delivery, CPU since `start`.
    fn end_burst(
        &self,
        phase: usize,
        r: &mut PhaseResult,
        expect: u64,
        ok: bool,
        (start, t): (CpuMark, u64),
    ) {
        let shared = self.shared;
        (r.server_cpu_ns, r.client_cpu_ns) = self.probe.mark().since(start);
        r.expected = expect;
        r.timed_out = !ok;
        r.delivered = shared.delivered[phase].load(Ordering::SeqCst);
        r.elapsed_s = ns_to_s(shared.last_ns[phase].load(Ordering::SeqCst).saturating_sub(t));
    }

    /// Publishes event `seq`, stamped as sent at `sent_ns`, and reads the
    /// answer's status.
    fn publish(&mut self, seq: u64, sent_ns: u64) -> io::Result<u16> {
        let request = self
            .publisher
            .request(&event_data(seq, sent_ns, self.o.event_size));
        self.sent_last_seq = seq;
        self.publisher.send(&request)?;
        self.publisher.response()
    }

    /// `--singles` events, one at a time, the next after everyone has the
    /// last one and `--spacing-ms`: fan-out latency without queueing.
    pub fn singles(&mut self) -> PhaseResult {
        let mut r = PhaseResult::default();
        let (mut server_ns, mut client_ns) = (0u64, 0u64);
        for i in 0..self.o.singles {
            let seq = self.shared.phase_start[0] + i as u64;
            let before = self.shared.delivered[0].load(Ordering::SeqCst);
            let expect = self.live();
            let start = self.probe.mark();
            let t = now_ns();
            match self.publish(seq, t) {
                Ok(code) if (200..300).contains(&code) => {}
                Ok(code) => {
                    r.publish_errors += 1;
                    self.notes.push(format!("single publish answered {code}"));
                }
                Err(e) => {
                    r.publish_errors += 1;
                    self.notes.push(format!("single publish: {e}"));
                    break;
                }
            }
            let ok = self.wait(0, before + expect, Instant::now() + self.o.phase_timeout);
            let (server, client) = self.probe.mark().since(start);
            r.timed_out |= !ok;
            r.events += 1;
            r.expected += expect;
            r.elapsed_s += ns_to_s(self.shared.last_ns[0].load(Ordering::SeqCst).saturating_sub(t));
            server_ns += server.unwrap_or(0);
            client_ns += client.unwrap_or(0);
            if !ok || Instant::now() >= self.deadline {
                break;
            }
            thread::sleep(self.o.spacing);
        }
        r.delivered = self.shared.delivered[0].load(Ordering::SeqCst);
        r.server_cpu_ns = (!self.probe.pids.is_empty()).then_some(server_ns);
        r.client_cpu_ns = Some(client_ns);
        eprintln!("ssed-load: {} single events done", r.events);
        r
    }

    /// `--burst` publish requests in one write (answers read meanwhile):
    /// the most a server can fan out when events arrive together.
    pub fn pipelined(&mut self) -> PhaseResult {
        let (o, shared) = (self.o, self.shared);
        let mut r = PhaseResult::default();
        if !self.begin_burst(o.burst) {
            return r;
        }
        let seqs = shared.phase_start[1]..shared.phase_start[1] + o.burst as u64;
        // Built first, stamped in place once the clock is read: the time
        // taken building is not counted as latency.
        let mut bytes = Vec::new();
        let mut stamps = Vec::with_capacity(o.burst);
        for seq in seqs.clone() {
            let data = event_data(seq, 0, o.event_size);
            let request = self.publisher.request(&data);
            stamps.push(bytes.len() + request.len() - data.len() + stamp_offset(seq));
            bytes.extend_from_slice(&request);
        }
        let expect = self.live() * o.burst as u64;
        let start = self.probe.mark();
        let t = now_ns();
        for &at in &stamps {
            restamp(&mut bytes, at, t);
        }
        match self.publisher.pipeline(bytes, o.burst) {
            Ok(codes) => r.publish_errors = codes.iter().filter(|c| !(200..300).contains(*c)).count(),
            Err(e) => {
                r.publish_errors = o.burst;
                self.notes.push(format!("pipelined publish: {e}"));
            }
        }
        self.sent_last_seq = seqs.end - 1;
        let ok = self.wait(1, expect, Instant::now() + o.phase_timeout);
        r.events = o.burst;
        self.end_burst(1, &mut r, expect, ok, (start, t));
        eprintln!("ssed-load: pipelined burst of {} done", o.burst);
        thread::sleep(Duration::from_millis(200));
        r
    }

    /// `--seq-burst` publish requests, each answer awaited before the next:
    /// what one ordinary client publishing fast gets through.
    pub fn sequential(&mut self) -> PhaseResult {
        let (o, shared) = (self.o, self.shared);
        let mut r = PhaseResult::default();
        if !self.begin_burst(o.seq_burst) {
            return r;
        }
        let first = shared.phase_start[2];
        let per_event = self.live();
        let phase_deadline = Instant::now() + o.phase_timeout;
        let start = self.probe.mark();
        let t = now_ns();
        for seq in first..first + o.seq_burst as u64 {
            r.events += 1;
            match self.publish(seq, now_ns()) {
                Ok(code) if (200..300).contains(&code) => {}
                Ok(_) => r.publish_errors += 1,
                Err(e) => {
                    r.publish_errors += 1;
                    self.notes.push(format!("sequential publish: {e}"));
                    break;
                }
            }
            if Instant::now() >= phase_deadline.min(self.deadline) {
                self.notes
                    .push("sequential burst cut short by --phase-timeout".into());
                break;
            }
        }
        let expect = per_event * r.events as u64;
        let ok = self.wait(2, expect, phase_deadline);
        self.end_burst(2, &mut r, expect, ok, (start, t));
        eprintln!("ssed-load: sequential burst of {} done", r.events);
        r
    }
}

// ----- settle and collect ----------------------------------------------------

/// Gives late deliveries (after a timeout they still count as received) a
/// moment; then each server's RSS, now and at its peak.
pub fn settle(probe: &Probe) -> (Vec<Option<u64>>, Vec<Option<u64>>) {
    thread::sleep(Duration::from_millis(200));
    (probe.rss(), probe.peak_rss())
}

/// What the subscribers saw, merged.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latency in µs of every first delivery, per phase.
    pub latencies: [Histogram; PHASES],
    /// Subscribers that got their head, per `--target`.
    pub heads_by_target: Vec<usize>,
    pub missed: u64,
    pub duplicated: u64,
    /// Subscribers that missed at least one event.
    pub subs_missing: usize,
    /// Subscribers that got at least one event twice.
    pub subs_dup: usize,
    /// Why subscribers failed, with a count each.
    pub errors: Vec<(String, usize)>,
    /// Workers whose subscribers are not counted: they died.
    pub lost_workers: usize,
}

/// Stops the subscribers and merges their reports; a subscriber owes every
/// seq up to `sent_last_seq`.
pub fn collect(shared: &Shared, fleet: Fleet, sent_last_seq: u64) -> Result<Tally, String> {
    let report = fleet.stop(shared)?;
    let mut tally = Tally {
        latencies: report.latencies_us,
        heads_by_target: report.heads_by_target,
        errors: report.errors,
        lost_workers: report.incomplete,
        ..Tally::default()
    };
    for ((last_seq, gaps), duplicates) in report.last_seq.iter().zip(&report.gaps).zip(&report.duplicates) {
        let missed = gaps + sent_last_seq.saturating_sub(*last_seq);
        tally.missed += missed;
        tally.duplicated += duplicates;
        tally.subs_missing += usize::from(missed > 0);
        tally.subs_dup += usize::from(*duplicates > 0);
    }
    Ok(tally)
}
