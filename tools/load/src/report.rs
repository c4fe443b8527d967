//! The end of a run: a human-readable summary on stdout, then the same
//! figures as one JSON line for scripts (BENCHMARKS.md collects those).
//!
//! With several `--pid`s, the server figures (`rss_*`, `idle_cpu_pct`,
//! CPU per delivery) are their sums, and `processes` in the JSON gives
//! each process's own; with several `--target`s, `targets` gives the
//! subscribers connected to each.

use std::fmt::Write as _;

use ssed_testkit::json::quote;

use crate::args::Options;
use crate::phases::{Idle, PhaseResult, Tally};
use crate::probe::total;
use crate::subscribers::{PHASES, PHASE_NAMES};

/// Everything a run measured. Server figures have one entry per `--pid`.
#[derive(Debug, Default)]
pub struct Summary {
    pub heads: usize,
    pub connect_s: f64,
    /// Subscribers that lost their stream after the head.
    pub dropped: usize,
    pub rss_before: Vec<Option<u64>>,
    pub idle: Idle,
    pub results: [PhaseResult; PHASES],
    pub rss_after: Vec<Option<u64>>,
    pub rss_peak: Vec<Option<u64>>,
    /// Server CPU time over the whole run (connect to settle), in seconds.
    pub cpu_s: Vec<Option<f64>>,
    pub tally: Tally,
    pub notes: Vec<String>,
}

impl Summary {
    /// Server memory per idle subscriber, in bytes (all servers together).
    fn per_subscriber(&self) -> Option<f64> {
        match (total(&self.rss_before), total(&self.idle.rss)) {
            (Some(a), Some(b)) if self.heads > 0 => Some((b as f64 - a as f64) / self.heads as f64),
            _ => None,
        }
    }

    /// Idle CPU of all servers together, in percent of one core.
    fn idle_cpu_pct(&self) -> Option<f64> {
        let each = &self.idle.cpu_pct;
        (!each.is_empty()).then(|| each.iter().copied().sum::<Option<f64>>())?
    }

    /// Every subscriber connected and got every event once; no phase timed
    /// out or had a publish refused; no worker lost.
    pub fn clean(&self, o: &Options) -> bool {
        self.heads == o.subscribers
            && self.tally.missed == 0
            && self.tally.duplicated == 0
            && self.tally.lost_workers == 0
            && self.results.iter().all(|r| !r.timed_out && r.publish_errors == 0)
    }
}

/// The summary for people.
pub fn text(o: &Options, s: &Summary) -> String {
    let (heads, connect_s, dropped) = (s.heads, s.connect_s, s.dropped);
    let t = &s.tally;
    let mut text = String::new();
    let _ = writeln!(text, "ssed-load report: {}", o.label);
    let _ = writeln!(
        text,
        "  subscribers     {heads} of {} connected in {connect_s:.3} s ({:.0}/s); {dropped} dropped later",
        o.subscribers,
        heads as f64 / connect_s.max(1e-9)
    );
    if o.targets.len() > 1 {
        let each: Vec<String> = o
            .targets
            .iter()
            .zip(&t.heads_by_target)
            .map(|(target, n)| format!("{target} {n}"))
            .collect();
        let _ = writeln!(text, "  per target      {}", each.join(", "));
    }
    if o.workers > 0 {
        let _ = writeln!(text, "  client          {} worker processes", o.workers);
    }
    match (total(&s.rss_before), total(&s.idle.rss), s.per_subscriber()) {
        (Some(a), Some(b), Some(per)) => {
            let _ = writeln!(
                text,
                "  server RSS      {} before, {} with {heads} idle: {per:.0} bytes per subscriber{}",
                mib(a),
                mib(b),
                if o.pids.len() > 1 {
                    " (all --pid summed)"
                } else {
                    ""
                }
            );
        }
        _ => {
            let _ = writeln!(text, "  server RSS      (no --pid)");
        }
    }
    if o.pids.len() > 1 {
        for (i, pid) in o.pids.iter().enumerate() {
            let at = |v: &[Option<u64>]| v.get(i).copied().flatten().map_or("n/a".into(), mib);
            let cpu = s.idle.cpu_pct.get(i).copied().flatten();
            let _ = writeln!(
                text,
                "    pid {pid:<10}  RSS {} before, {} idle; idle CPU {}",
                at(&s.rss_before),
                at(&s.idle.rss),
                cpu.map_or("n/a".into(), |pct| format!("{pct:.3} %"))
            );
        }
    }
    if let Some(pct) = s.idle_cpu_pct() {
        let _ = writeln!(
            text,
            "  idle CPU        {pct:.3} % of a core over {:.1} s",
            o.idle.as_secs_f64()
        );
    }
    for ((name, r), l) in PHASE_NAMES.iter().zip(&s.results).zip(&t.latencies) {
        if r.events == 0 {
            continue;
        }
        let _ = writeln!(
            text,
            "  {:<10}      {} events, {} of {} deliveries{}; latency p50 {} p99 {} max {}; {:.0} deliveries/s; server CPU {} per delivery",
            name,
            r.events,
            r.delivered,
            r.expected,
            if r.timed_out { " (TIMED OUT)" } else { "" },
            ms(l.percentile(0.50)),
            ms(l.percentile(0.99)),
            ms(l.max()),
            r.deliveries_per_s(),
            r.cpu_us_per_delivery()
                .map_or("n/a".to_string(), |us| format!("{us:.3} µs")),
        );
    }
    let _ = writeln!(
        text,
        "  correctness     {} events missed ({} subscribers), {} duplicated ({} subscribers)",
        t.missed, t.subs_missing, t.duplicated, t.subs_dup
    );
    if t.lost_workers > 0 {
        let _ = writeln!(
            text,
            "  LOST            {} worker(s): their subscribers are not counted",
            t.lost_workers
        );
    }
    if let (Some(b), Some(peak)) = (total(&s.rss_after), total(&s.rss_peak)) {
        let _ = writeln!(
            text,
            "  server RSS      {} after the bursts (peak {})",
            mib(b),
            mib(peak)
        );
    }
    for (why, n) in &t.errors {
        let _ = writeln!(text, "  error           {n} × {why}");
    }
    for note in &s.notes {
        let _ = writeln!(text, "  note            {note}");
    }
    text
}

/// The summary for scripts: one JSON object on one line.
pub fn json(o: &Options, s: &Summary) -> String {
    let t = &s.tally;
    let targets: Vec<String> = o.targets.iter().map(|t| t.to_string()).collect();
    let mut json = String::new();
    let _ = write!(
        json,
        "{{\"label\":{},\"target\":{},\"workers\":{},\"subscribers\":{},\"connected\":{},\"dropped\":{},\"connect_s\":{},\"event_size\":{},\"rss_before\":{},\"rss_idle\":{},\"rss_after\":{},\"rss_peak\":{},\"rss_per_subscriber\":{},\"idle_cpu_pct\":{}",
        quote(&o.label),
        quote(&targets.join(",")),
        o.workers,
        o.subscribers,
        s.heads,
        s.dropped,
        num(Some(s.connect_s)),
        o.event_size,
        opt(total(&s.rss_before)),
        opt(total(&s.idle.rss)),
        opt(total(&s.rss_after)),
        opt(total(&s.rss_peak)),
        num(s.per_subscriber()),
        num(s.idle_cpu_pct()),
    );
    let each: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let connected = t.heads_by_target.get(i).copied().unwrap_or(0);
            format!("{{\"target\":{},\"connected\":{connected}}}", quote(target))
        })
        .collect();
    let _ = write!(json, ",\"targets\":[{}]", each.join(","));
    let each: Vec<String> = o
        .pids
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            let at = |v: &[Option<u64>]| opt(v.get(i).copied().flatten());
            format!(
                "{{\"pid\":{pid},\"rss_before\":{},\"rss_idle\":{},\"rss_after\":{},\"rss_peak\":{},\"idle_cpu_pct\":{},\"cpu_s\":{}}}",
                at(&s.rss_before),
                at(&s.idle.rss),
                at(&s.rss_after),
                at(&s.rss_peak),
                num(s.idle.cpu_pct.get(i).copied().flatten()),
                num(s.cpu_s.get(i).copied().flatten()),
            )
        })
        .collect();
    let _ = write!(json, ",\"processes\":[{}]", each.join(","));
    for ((name, r), l) in PHASE_NAMES.iter().zip(&s.results).zip(&t.latencies) {
        let _ = write!(
            json,
            ",\"{}\":{{\"events\":{},\"expected\":{},\"delivered\":{},\"timed_out\":{},\"elapsed_s\":{},\"p50_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"deliveries_per_s\":{},\"server_cpu_us_per_delivery\":{},\"client_cpu_s\":{},\"publish_errors\":{}}}",
            name,
            r.events,
            r.expected,
            r.delivered,
            r.timed_out,
            num(Some(r.elapsed_s)),
            num(l.percentile(0.50).map(|us| us as f64 / 1000.0)),
            num(l.percentile(0.99).map(|us| us as f64 / 1000.0)),
            num(l.max().map(|us| us as f64 / 1000.0)),
            num(Some(r.deliveries_per_s())),
            num(r.cpu_us_per_delivery()),
            num(r.client_cpu_ns.map(|ns| ns as f64 / 1e9)),
            r.publish_errors,
        );
    }
    let _ = write!(
        json,
        ",\"missed\":{},\"subscribers_missing\":{},\"duplicated\":{},\"subscribers_duplicated\":{},\"lost_workers\":{},\"errors\":{}}}",
        t.missed,
        t.subs_missing,
        t.duplicated,
        t.subs_dup,
        t.lost_workers,
        t.errors.iter().map(|(_, n)| n).sum::<usize>()
    );
    json
}

fn ms(us: Option<u32>) -> String {
    us.map_or("n/a".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// A JSON number with at most six decimals and no trailing zeros; `null`
/// for none (or a NaN or infinity, which JSON cannot say).
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
    fn json_numbers() {
        assert_eq!(num(Some(1.5)), "1.5");
        assert_eq!(num(Some(2.0)), "2");
        assert_eq!(num(None), "null");
    }
}
