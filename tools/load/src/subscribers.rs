//! The subscriber side: one `mio` loop per thread holding its share of the
//! subscribers, connecting them within a window, then reading every event
//! and timing it against the send time stamped in it (`stream.rs`).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::histogram::Histogram;
use crate::socket;
use crate::stream::{Stamp, StreamParser};

/// Phases whose events are timed. Sequence numbers are laid out in advance:
/// singles first, then the pipelined burst, then the sequential one.
pub const PHASES: usize = 3;
pub const PHASE_NAMES: [&str; PHASES] = ["single", "pipelined", "sequential"];

/// What the subscriber threads and the publisher share. With `--workers`,
/// the parent's copy is kept up to date from its workers' status lines
/// (`worker.rs`), so the phases read it the same way either way.
#[derive(Debug)]
pub struct Shared {
    /// First seq of each phase; `phase_start[PHASES]` is one past the last seq.
    pub phase_start: [u64; PHASES + 1],
    /// Events received (not counting duplicates), per phase.
    pub delivered: [AtomicU64; PHASES],
    /// Latest receive time per phase, in [`now_ns`].
    pub last_ns: [AtomicU64; PHASES],
    /// Subscribers whose response head arrived.
    pub heads: AtomicUsize,
    /// Subscribers that failed before or at the head.
    pub failed: AtomicUsize,
    /// Subscribers that lost their stream after the head.
    pub dropped: AtomicUsize,
    /// When the last head arrived, in [`now_ns`].
    pub last_head_ns: AtomicU64,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new(singles: usize, burst: usize, seq_burst: usize) -> Shared {
        let first = 1u64;
        let phase_start = [
            first,
            first + singles as u64,
            first + (singles + burst) as u64,
            first + (singles + burst + seq_burst) as u64,
        ];
        Shared {
            phase_start,
            delivered: Default::default(),
            last_ns: Default::default(),
            heads: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            last_head_ns: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    pub fn phase_of(&self, seq: u64) -> Option<usize> {
        (0..PHASES).find(|&p| seq >= self.phase_start[p] && seq < self.phase_start[p + 1])
    }
}

/// The machine's monotonic clock (`CLOCK_MONOTONIC`), in ns: one clock for
/// every process, so a time stamped by the publisher in one process is
/// compared with a receive time in another (`--workers`).
pub fn now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else;
    // CLOCK_MONOTONIC exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// How one thread's subscribers are to connect.
///
/// Subscriber `i` (counted over the whole run, all threads and workers)
/// connects to `targets[i % T]` from source address `(i / T) % K` (`T`
/// targets, `K` sources): every target gets every source address, and
/// each (source, target) pair about `N / (T * K)` subscribers, each of
/// which needs an ephemeral port of that pair.
#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Arc<[SocketAddr]>,
    /// The request for each target (its `Host` differs).
    pub requests: Arc<[Vec<u8>]>,
    pub count: usize,
    /// Index of this thread's first subscriber among all.
    pub first_index: usize,
    pub sources: usize,
    pub window: usize,
}

impl Plan {
    /// Which target subscriber `index` (among all) connects to.
    pub fn target_of(&self, index: usize) -> usize {
        index % self.targets.len().max(1)
    }

    /// Its source address, if spread.
    fn source_of(&self, index: usize) -> Option<Ipv4Addr> {
        let k = self.sources;
        (k > 0).then(|| Ipv4Addr::new(127, 0, 0, 2 + (index / self.targets.len().max(1) % k) as u8))
    }
}

/// What a thread (or a worker process) hands back when stopped.
#[derive(Debug, Default)]
pub struct Report {
    /// Latency in µs of every first delivery, per phase.
    pub latencies_us: [Histogram; PHASES],
    /// Subscribers that got their head, per target.
    pub heads_by_target: Vec<usize>,
    /// Per subscriber that got its head: highest seq seen, events missed
    /// inside the sequence (gaps), duplicates.
    pub last_seq: Vec<u64>,
    pub gaps: Vec<u64>,
    pub duplicates: Vec<u64>,
    /// Distinct reasons subscribers failed, with a count.
    pub errors: Vec<(String, usize)>,
    /// Workers whose report did not arrive whole (they died): their
    /// subscribers are not in the lists above, so the run is not clean.
    pub incomplete: usize,
}

impl Report {
    /// Adds another thread's or worker's report to this one.
    pub fn merge(&mut self, other: Report) {
        for (mine, theirs) in self.latencies_us.iter_mut().zip(&other.latencies_us) {
            mine.merge(theirs);
        }
        if self.heads_by_target.len() < other.heads_by_target.len() {
            self.heads_by_target.resize(other.heads_by_target.len(), 0);
        }
        for (mine, theirs) in self.heads_by_target.iter_mut().zip(&other.heads_by_target) {
            *mine += theirs;
        }
        self.last_seq.extend(other.last_seq);
        self.gaps.extend(other.gaps);
        self.duplicates.extend(other.duplicates);
        for (why, n) in other.errors {
            note_n(&mut self.errors, why, n);
        }
        self.incomplete += other.incomplete;
    }
}

struct Sub {
    stream: TcpStream,
    connected: bool,
    parser: StreamParser,
    alive: bool,
    last_seq: u64,
    gaps: u64,
    duplicates: u64,
}

fn note(errors: &mut Vec<(String, usize)>, why: String) {
    note_n(errors, why, 1);
}

/// Counts `n` more failures for `why`.
pub fn note_n(errors: &mut Vec<(String, usize)>, why: String, n: usize) {
    match errors.iter_mut().find(|(w, _)| *w == why) {
        Some((_, count)) => *count += n,
        None => errors.push((why, n)),
    }
}

/// Runs one thread's subscribers until `shared.stop`.
pub fn run(plan: Plan, shared: Arc<Shared>) -> Report {
    let mut report = Report::default();
    let mut poll = match Poll::new() {
        Ok(poll) => poll,
        Err(e) => {
            note(&mut report.errors, format!("epoll: {e}"));
            shared.failed.fetch_add(plan.count, Ordering::SeqCst);
            return report;
        }
    };
    let mut events = Events::with_capacity(4096);
    if plan.targets.is_empty() {
        note(&mut report.errors, "no target".into());
        shared.failed.fetch_add(plan.count, Ordering::SeqCst);
        return report;
    }
    let mut subs: Vec<Sub> = Vec::with_capacity(plan.count);
    let mut in_flight = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let mut local = Local::default();
    let mut planned = plan.count;

    while !shared.stop.load(Ordering::Relaxed) {
        // Start connects while the window has room.
        while subs.len() < planned && in_flight < plan.window {
            let index = plan.first_index + subs.len();
            let token = Token(subs.len());
            let target = plan.targets[plan.target_of(index)];
            let result = socket::start_connect(target, plan.source_of(index)).and_then(|mut stream| {
                poll.registry()
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                Ok(stream)
            });
            match result {
                Ok(stream) => {
                    subs.push(Sub {
                        stream,
                        connected: false,
                        parser: StreamParser::new(),
                        alive: true,
                        last_seq: 0,
                        gaps: 0,
                        duplicates: 0,
                    });
                    in_flight += 1;
                }
                Err(e) => {
                    // Out of descriptors or addresses: count the rest as
                    // failed and stop trying.
                    note(&mut report.errors, format!("connect: {e}"));
                    shared.failed.fetch_add(planned - subs.len(), Ordering::SeqCst);
                    planned = subs.len();
                    break;
                }
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(20))) {
            if e.kind() != io::ErrorKind::Interrupted {
                note(&mut report.errors, format!("poll: {e}"));
                break;
            }
            continue;
        }
        for event in events.iter() {
            let index = event.token().0;
            let Some(sub) = subs.get_mut(index) else {
                continue;
            };
            if !sub.alive {
                continue;
            }
            let was_pending = !sub.parser.has_head();
            let global = plan.first_index + index;
            let outcome = service(
                sub,
                global,
                &plan,
                &shared,
                &mut buf,
                &mut local,
                &mut report.errors,
            );
            match outcome {
                Outcome::Ok => {
                    if was_pending && sub.parser.has_head() {
                        in_flight -= 1;
                        shared.last_head_ns.fetch_max(now_ns(), Ordering::SeqCst);
                        shared.heads.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Outcome::Dead => {
                    sub.alive = false;
                    let _ = poll.registry().deregister(&mut sub.stream);
                    if was_pending {
                        in_flight -= 1;
                        shared.failed.fetch_add(1, Ordering::SeqCst);
                    } else {
                        shared.dropped.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            local.publish(&shared);
        }
    }
    local.publish(&shared);
    report.latencies_us = local.latencies_us;
    report.heads_by_target = vec![0; plan.targets.len()];
    for (i, sub) in subs.iter().enumerate() {
        if sub.parser.has_head() {
            report.heads_by_target[plan.target_of(plan.first_index + i)] += 1;
            report.last_seq.push(sub.last_seq);
            report.gaps.push(sub.gaps);
            report.duplicates.push(sub.duplicates);
        }
    }
    report
}

/// Per-thread tallies, handed to the shared counters after each socket.
#[derive(Default)]
struct Local {
    latencies_us: [Histogram; PHASES],
    delivered: [u64; PHASES],
    last_ns: [u64; PHASES],
}

impl Local {
    /// The time first, then the count: a phase that sees its count reached
    /// reads a time at least as late as the deliveries counted.
    fn publish(&mut self, shared: &Shared) {
        for phase in 0..PHASES {
            if self.delivered[phase] > 0 {
                shared.last_ns[phase].fetch_max(self.last_ns[phase], Ordering::SeqCst);
                shared.delivered[phase].fetch_add(self.delivered[phase], Ordering::SeqCst);
                self.delivered[phase] = 0;
            }
        }
    }
}

enum Outcome {
    Ok,
    Dead,
}

/// Connects, requests, then reads subscriber `index` (among all) until
/// its socket has nothing more to give.
fn service(
    sub: &mut Sub,
    index: usize,
    plan: &Plan,
    shared: &Shared,
    buf: &mut [u8],
    local: &mut Local,
    errors: &mut Vec<(String, usize)>,
) -> Outcome {
    if !sub.connected {
        match sub.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                note(errors, format!("connect: {e}"));
                return Outcome::Dead;
            }
            Ok(None) => {}
        }
        match sub.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Outcome::Ok,
            Err(e) => {
                note(errors, format!("connect: {e}"));
                return Outcome::Dead;
            }
        }
        // The request is small: one write takes it on a fresh socket.
        let request = &plan.requests[plan.target_of(index)];
        match sub.stream.write(request) {
            Ok(n) if n == request.len() => sub.connected = true,
            Ok(_) => {
                note(errors, "request: short write".into());
                return Outcome::Dead;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Ok,
            Err(e) => {
                note(errors, format!("request: {e}"));
                return Outcome::Dead;
            }
        }
    }
    loop {
        match sub.stream.read(buf) {
            Ok(0) => {
                note(
                    errors,
                    if sub.parser.has_head() {
                        "stream closed by the server".into()
                    } else {
                        "closed before the response head".into()
                    },
                );
                return Outcome::Dead;
            }
            Ok(n) => {
                let now = now_ns();
                let Sub {
                    parser,
                    last_seq,
                    gaps,
                    duplicates,
                    ..
                } = sub;
                let fed = parser.feed(&buf[..n], &mut |Stamp { seq, sent_ns }| {
                    if seq <= *last_seq {
                        *duplicates += 1;
                        return;
                    }
                    if seq > *last_seq + 1 {
                        *gaps += seq - *last_seq - 1;
                    }
                    *last_seq = seq;
                    let Some(phase) = shared.phase_of(seq) else {
                        return;
                    };
                    local.delivered[phase] += 1;
                    local.last_ns[phase] = local.last_ns[phase].max(now);
                    if sent_ns > 0 {
                        let micros = now.saturating_sub(sent_ns) / 1000;
                        local.latencies_us[phase].record(micros.min(u32::MAX as u64) as u32);
                    }
                });
                if let Err(why) = fed {
                    let what = if why.is_refusal() { "refused" } else { "bad stream" };
                    note(errors, format!("{what}: {why}"));
                    return Outcome::Dead;
                }
                if parser.finished() {
                    note(errors, "stream ended by the server".into());
                    return Outcome::Dead;
                }
                if n < buf.len() {
                    // Edge-triggered: new data raises a new edge, so a short
                    // read means we have all there is for now.
                    parser.shrink();
                    return Outcome::Ok;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Ok,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                note(errors, format!("read: {e}"));
                return Outcome::Dead;
            }
        }
    }
}
