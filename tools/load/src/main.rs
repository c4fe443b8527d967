//! `ssed-load`: holds many idle Server-Sent Events subscribers against any
//! SSE server, then measures what a user of such a server cares about:
//!
//! 1. connect N subscribers and wait for every response head (connect time);
//! 2. the server's resident memory per idle subscriber and its CPU while idle
//!    (from `/proc/PID` when `--pid` is given);
//! 3. single events, spaced apart: fan-out latency from the publish request
//!    being sent to each subscriber having the whole event (p50/p99/max);
//! 4. a pipelined burst (many publish requests in one write) and a
//!    sequential burst (one at a time, each answer awaited): deliveries per
//!    second and server CPU per delivery;
//! 5. missed and duplicated events per subscriber, from the `seq=N` that
//!    starts each event's data (so a server's own ids do not matter).
//!
//! A human-readable summary goes to stdout, then one JSON line. Every wait is
//! bounded, and `--duration` bounds the whole run.

mod args;
mod publish;
mod stream;
mod subscribers;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use args::Options;
use publish::{event_data, Publisher};
use ssed_testkit::json::quote;
use ssed_testkit::procfs;
use subscribers::{Plan, Report, Shared, PHASES, PHASE_NAMES};

/// Descriptors kept for stdio, epoll instances, the publisher and slack.
const FD_MARGIN: u64 = 64;

fn main() -> ExitCode {
    let options = match args::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("ssed-load: {why}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(why) => {
            eprintln!("ssed-load: {why}");
            ExitCode::from(2)
        }
    }
}

/// Figures of one timed phase.
#[derive(Debug, Default, Clone)]
struct PhaseResult {
    events: usize,
    expected: u64,
    delivered: u64,
    /// From the first request sent to the last delivery.
    elapsed_s: f64,
    server_cpu_ns: Option<u64>,
    client_cpu_ns: Option<u64>,
    publish_errors: usize,
    timed_out: bool,
}

impl PhaseResult {
    fn deliveries_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.delivered as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    fn cpu_us_per_delivery(&self) -> Option<f64> {
        let ns = self.server_cpu_ns?;
        (self.delivered > 0).then(|| ns as f64 / 1000.0 / self.delivered as f64)
    }
}

fn run(o: &Options) -> Result<bool, String> {
    let limit = procfs::raise_nofile();
    let needed = o.subscribers as u64 + FD_MARGIN;
    if needed > limit {
        return Err(format!(
            "{} subscribers need about {needed} open files, the limit is {limit}; \
             raise `ulimit -n` (hard limit) or use fewer subscribers",
            o.subscribers
        ));
    }
    let deadline = Instant::now() + o.duration;
    let duration = o.duration;
    thread::spawn(move || {
        thread::sleep(duration);
        eprintln!("ssed-load: --duration {duration:?} exceeded; stopping");
        std::process::exit(3);
    });

    let pid = o.pid;
    if let Some(pid) = pid {
        if procfs::rss_bytes(pid).is_none() {
            return Err(format!("--pid {pid}: cannot read /proc/{pid}/status"));
        }
    }
    let rss = || pid.and_then(procfs::rss_bytes);
    let server_cpu = || pid.and_then(procfs::cpu_ns);
    let me = std::process::id();
    let client_cpu = || procfs::cpu_ns(me);

    eprintln!(
        "ssed-load: {} subscribers to {}{} ({} source address(es), {} thread(s)); publishing to {}{}",
        o.subscribers,
        o.target,
        o.subscribe_path,
        o.sources.max(1),
        o.threads,
        o.publish.authority,
        o.publish.target
    );
    let rss_before = rss();

    // ----- connect ---------------------------------------------------------
    let shared = Arc::new(Shared::new(o.singles, o.burst, o.seq_burst));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
        o.subscribe_path, o.target
    )
    .into_bytes();
    let connect_start = shared.now_ns();
    let mut handles = Vec::new();
    let mut first_index = 0;
    for t in 0..o.threads {
        let count = o.subscribers / o.threads + usize::from(t < o.subscribers % o.threads);
        let plan = Plan {
            target: o.target,
            request: request.clone(),
            count,
            first_index,
            sources: o.sources,
            window: (o.connect_window / o.threads).max(1),
        };
        first_index += count;
        let shared = shared.clone();
        handles.push(
            thread::Builder::new()
                .name(format!("subs-{t}"))
                .spawn(move || subscribers::run(plan, shared))
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
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

    let mut results: [PhaseResult; PHASES] = Default::default();
    let mut idle_cpu_pct = None;
    let mut rss_idle = None;
    let mut rss_after = None;
    let mut rss_peak = None;
    let mut sent_last_seq = 0u64;
    let mut notes: Vec<String> = Vec::new();

    if heads > 0 {
        // ----- idle --------------------------------------------------------
        // Let the server finish sending greetings before sampling.
        thread::sleep(Duration::from_millis(500));
        rss_idle = rss();
        let cpu0 = server_cpu();
        let t0 = Instant::now();
        thread::sleep(o.idle);
        let cpu1 = server_cpu();
        let idle_s = t0.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            idle_cpu_pct = Some((b - a) as f64 / 1e9 / idle_s * 100.0);
        }
        eprintln!("ssed-load: idle window {idle_s:.1} s done");

        // ----- publishing --------------------------------------------------
        let mut publisher = Publisher::connect(&o.publish, &o.publish_headers, o.phase_timeout)
            .map_err(|e| format!("publish connection to {}: {e}", o.publish.addr))?;
        let live =
            || shared.heads.load(Ordering::SeqCst) as u64 - shared.dropped.load(Ordering::SeqCst) as u64;
        let wait = |phase: usize, target: u64, until: Instant| -> bool {
            loop {
                if shared.delivered[phase].load(Ordering::SeqCst) >= target {
                    return true;
                }
                if Instant::now() >= until.min(deadline) {
                    return false;
                }
                thread::sleep(Duration::from_micros(200));
            }
        };

        // Singles: one event at a time, the next after everyone has it.
        let r = &mut results[0];
        let mut server_ns = 0u64;
        let mut client_ns = 0u64;
        for i in 0..o.singles {
            let seq = shared.phase_start[0] + i as u64;
            let body = publisher.request(&event_data(seq, o.event_size));
            let before = shared.delivered[0].load(Ordering::SeqCst);
            let expect = live();
            let (s0, c0) = (server_cpu(), client_cpu());
            let t = shared.now_ns();
            shared.sent_ns[seq as usize].store(t, Ordering::Release);
            let sent = publisher.send(&body).and_then(|()| publisher.response());
            sent_last_seq = seq;
            match sent {
                Ok(code) if (200..300).contains(&code) => {}
                Ok(code) => {
                    r.publish_errors += 1;
                    notes.push(format!("single publish answered {code}"));
                }
                Err(e) => {
                    r.publish_errors += 1;
                    notes.push(format!("single publish: {e}"));
                    break;
                }
            }
            let ok = wait(0, before + expect, Instant::now() + o.phase_timeout);
            let (s1, c1) = (server_cpu(), client_cpu());
            r.timed_out |= !ok;
            r.events += 1;
            r.expected += expect;
            r.elapsed_s += ns_to_s(shared.last_ns[0].load(Ordering::SeqCst).saturating_sub(t));
            server_ns += s1.zip(s0).map_or(0, |(b, a)| b - a);
            client_ns += c1.zip(c0).map_or(0, |(b, a)| b - a);
            if !ok || Instant::now() >= deadline {
                break;
            }
            thread::sleep(o.spacing);
        }
        r.delivered = shared.delivered[0].load(Ordering::SeqCst);
        r.server_cpu_ns = pid.map(|_| server_ns);
        r.client_cpu_ns = Some(client_ns);
        eprintln!("ssed-load: {} single events done", r.events);

        // Each phase on a fresh connection: a server may have closed an
        // idle keep-alive one while the previous phase was delivering.
        let reconnect = || Publisher::connect(&o.publish, &o.publish_headers, o.phase_timeout);
        // Pipelined: every request in one write.
        if o.burst > 0 && Instant::now() < deadline {
            if let Ok(fresh) = reconnect() {
                publisher = fresh;
            }
            let first = shared.phase_start[1];
            let mut bytes = Vec::new();
            for i in 0..o.burst as u64 {
                bytes.extend_from_slice(&publisher.request(&event_data(first + i, o.event_size)));
            }
            let expect = live() * o.burst as u64;
            let (s0, c0) = (server_cpu(), client_cpu());
            let t = shared.now_ns();
            for i in 0..o.burst as u64 {
                shared.sent_ns[(first + i) as usize].store(t, Ordering::Release);
            }
            let r = &mut results[1];
            match publisher.pipeline(bytes, o.burst) {
                Ok(codes) => {
                    r.publish_errors = codes.iter().filter(|c| !(200..300).contains(*c)).count();
                }
                Err(e) => {
                    r.publish_errors = o.burst;
                    notes.push(format!("pipelined publish: {e}"));
                }
            }
            sent_last_seq = first + o.burst as u64 - 1;
            let ok = wait(1, expect, Instant::now() + o.phase_timeout);
            let (s1, c1) = (server_cpu(), client_cpu());
            r.events = o.burst;
            r.expected = expect;
            r.timed_out = !ok;
            r.delivered = shared.delivered[1].load(Ordering::SeqCst);
            r.elapsed_s = ns_to_s(shared.last_ns[1].load(Ordering::SeqCst).saturating_sub(t));
            r.server_cpu_ns = s1.zip(s0).map(|(b, a)| b - a);
            r.client_cpu_ns = c1.zip(c0).map(|(b, a)| b - a);
            eprintln!("ssed-load: pipelined burst of {} done", o.burst);
            thread::sleep(Duration::from_millis(200));
        }

        // Sequential: one request at a time, each answer awaited.
        if o.seq_burst > 0 && Instant::now() < deadline {
            if let Ok(fresh) = reconnect() {
                publisher = fresh;
            }
            let first = shared.phase_start[2];
            let expect = live() * o.seq_burst as u64;
            let phase_deadline = Instant::now() + o.phase_timeout;
            let (s0, c0) = (server_cpu(), client_cpu());
            let t = shared.now_ns();
            let r = &mut results[2];
            for i in 0..o.seq_burst as u64 {
                let seq = first + i;
                let body = publisher.request(&event_data(seq, o.event_size));
                shared.sent_ns[seq as usize].store(shared.now_ns(), Ordering::Release);
                sent_last_seq = seq;
                r.events += 1;
                match publisher.send(&body).and_then(|()| publisher.response()) {
                    Ok(code) if (200..300).contains(&code) => {}
                    Ok(_) => r.publish_errors += 1,
                    Err(e) => {
                        r.publish_errors += 1;
                        notes.push(format!("sequential publish: {e}"));
                        break;
                    }
                }
                if Instant::now() >= phase_deadline.min(deadline) {
                    notes.push("sequential burst cut short by --phase-timeout".into());
                    break;
                }
            }
            let expect = expect / o.seq_burst as u64 * r.events as u64;
            let ok = wait(2, expect, phase_deadline);
            let (s1, c1) = (server_cpu(), client_cpu());
            r.expected = expect;
            r.timed_out = !ok;
            r.delivered = shared.delivered[2].load(Ordering::SeqCst);
            r.elapsed_s = ns_to_s(shared.last_ns[2].load(Ordering::SeqCst).saturating_sub(t));
            r.server_cpu_ns = s1.zip(s0).map(|(b, a)| b - a);
            r.client_cpu_ns = c1.zip(c0).map(|(b, a)| b - a);
            eprintln!("ssed-load: sequential burst of {} done", r.events);
        }
        // Late deliveries (after a timeout) still count as received.
        thread::sleep(Duration::from_millis(200));
        rss_after = rss();
        rss_peak = pid.and_then(procfs::peak_rss_bytes);
    }

    // ----- collect ---------------------------------------------------------
    shared.stop.store(true, Ordering::SeqCst);
    let mut reports: Vec<Report> = Vec::new();
    for handle in handles {
        reports.push(
            handle
                .join()
                .map_err(|_| "a subscriber thread panicked".to_string())?,
        );
    }
    let mut latencies: [Vec<u32>; PHASES] = Default::default();
    let mut missed_total = 0u64;
    let mut dup_total = 0u64;
    let mut subs_missing = 0usize;
    let mut subs_dup = 0usize;
    let mut errors: Vec<(String, usize)> = Vec::new();
    for report in &mut reports {
        for (all, mine) in latencies.iter_mut().zip(report.latencies_us.iter_mut()) {
            all.append(mine);
        }
        for i in 0..report.last_seq.len() {
            let missed = report.gaps[i] + sent_last_seq.saturating_sub(report.last_seq[i]);
            missed_total += missed;
            dup_total += report.duplicates[i];
            subs_missing += usize::from(missed > 0);
            subs_dup += usize::from(report.duplicates[i] > 0);
        }
        for (why, n) in report.errors.drain(..) {
            match errors.iter_mut().find(|(w, _)| *w == why) {
                Some((_, m)) => *m += n,
                None => errors.push((why, n)),
            }
        }
    }
    for phase in &mut latencies {
        phase.sort_unstable();
    }
    let dropped = shared.dropped.load(Ordering::SeqCst);
    let per_conn = match (rss_before, rss_idle) {
        (Some(a), Some(b)) if heads > 0 => Some((b as f64 - a as f64) / heads as f64),
        _ => None,
    };

    // ----- report ----------------------------------------------------------
    let mut text = String::new();
    let _ = writeln!(text, "ssed-load report: {}", o.label);
    let _ = writeln!(
        text,
        "  subscribers     {heads} of {} connected in {connect_s:.3} s ({:.0}/s); {dropped} dropped later",
        o.subscribers,
        heads as f64 / connect_s.max(1e-9)
    );
    match (rss_before, rss_idle, per_conn) {
        (Some(a), Some(b), Some(per)) => {
            let _ = writeln!(
                text,
                "  server RSS      {} before, {} with {heads} idle: {per:.0} bytes per subscriber",
                mib(a),
                mib(b)
            );
        }
        _ => {
            let _ = writeln!(text, "  server RSS      (no --pid)");
        }
    }
    if let Some(pct) = idle_cpu_pct {
        let _ = writeln!(
            text,
            "  idle CPU        {pct:.3} % of a core over {:.1} s",
            o.idle.as_secs_f64()
        );
    }
    for phase in 0..PHASES {
        let r = &results[phase];
        if r.events == 0 {
            continue;
        }
        let l = &latencies[phase];
        let _ = writeln!(
            text,
            "  {:<10}      {} events, {} of {} deliveries{}; latency p50 {} p99 {} max {}; {:.0} deliveries/s; server CPU {} per delivery",
            PHASE_NAMES[phase],
            r.events,
            r.delivered,
            r.expected,
            if r.timed_out { " (TIMED OUT)" } else { "" },
            ms(percentile(l, 0.50)),
            ms(percentile(l, 0.99)),
            ms(l.last().copied()),
            r.deliveries_per_s(),
            r.cpu_us_per_delivery()
                .map_or("n/a".to_string(), |us| format!("{us:.3} µs")),
        );
    }
    let _ = writeln!(
        text,
        "  correctness     {missed_total} events missed ({subs_missing} subscribers), {dup_total} duplicated ({subs_dup} subscribers)"
    );
    if let (Some(b), Some(peak)) = (rss_after, rss_peak) {
        let _ = writeln!(
            text,
            "  server RSS      {} after the bursts (peak {})",
            mib(b),
            mib(peak)
        );
    }
    for (why, n) in &errors {
        let _ = writeln!(text, "  error           {n} × {why}");
    }
    for note in &notes {
        let _ = writeln!(text, "  note            {note}");
    }
    print!("{text}");

    let mut json = String::new();
    let _ = write!(
        json,
        "{{\"label\":{},\"target\":\"{}\",\"subscribers\":{},\"connected\":{heads},\"dropped\":{dropped},\"connect_s\":{},\"event_size\":{},\"rss_before\":{},\"rss_idle\":{},\"rss_after\":{},\"rss_peak\":{},\"rss_per_subscriber\":{},\"idle_cpu_pct\":{}",
        quote(&o.label),
        o.target,
        o.subscribers,
        num(Some(connect_s)),
        o.event_size,
        opt(rss_before),
        opt(rss_idle),
        opt(rss_after),
        opt(rss_peak),
        num(per_conn),
        num(idle_cpu_pct),
    );
    for phase in 0..PHASES {
        let r = &results[phase];
        let l = &latencies[phase];
        let _ = write!(
            json,
            ",\"{}\":{{\"events\":{},\"expected\":{},\"delivered\":{},\"timed_out\":{},\"elapsed_s\":{},\"p50_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"deliveries_per_s\":{},\"server_cpu_us_per_delivery\":{},\"client_cpu_s\":{},\"publish_errors\":{}}}",
            PHASE_NAMES[phase],
            r.events,
            r.expected,
            r.delivered,
            r.timed_out,
            num(Some(r.elapsed_s)),
            num(percentile(l, 0.50).map(|us| us as f64 / 1000.0)),
            num(percentile(l, 0.99).map(|us| us as f64 / 1000.0)),
            num(l.last().map(|&us| us as f64 / 1000.0)),
            num(Some(r.deliveries_per_s())),
            num(r.cpu_us_per_delivery()),
            num(r.client_cpu_ns.map(|ns| ns as f64 / 1e9)),
            r.publish_errors,
        );
    }
    let _ = write!(
        json,
        ",\"missed\":{missed_total},\"subscribers_missing\":{subs_missing},\"duplicated\":{dup_total},\"subscribers_duplicated\":{subs_dup},\"errors\":{}}}",
        errors.iter().map(|(_, n)| n).sum::<usize>()
    );
    println!("{json}");

    let clean = heads == o.subscribers
        && missed_total == 0
        && dup_total == 0
        && results.iter().all(|r| !r.timed_out && r.publish_errors == 0);
    Ok(clean)
}

fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ns_to_s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn ms(us: Option<u32>) -> String {
    us.map_or("n/a".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn num(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{:.6}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
        _ => "null".into(),
    }
}

fn opt(x: Option<u64>) -> String {
    x.map_or("null".into(), |x| x.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_json_numbers() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(num(Some(1.5)), "1.5");
        assert_eq!(num(Some(2.0)), "2");
        assert_eq!(num(None), "null");
    }
}
