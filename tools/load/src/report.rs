//! The end of a run: a human-readable summary on stdout, then the same
//! figures as one JSON line for scripts (BENCHMARKS.md collects those).

use std::fmt::Write as _;

use ssed_testkit::json::quote;

use crate::args::Options;
use crate::phases::{Idle, PhaseResult, Tally};
use crate::subscribers::{PHASES, PHASE_NAMES};

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Summary {
    pub heads: usize,
    pub connect_s: f64,
    /// Subscribers that lost their stream after the head.
    pub dropped: usize,
    pub rss_before: Option<u64>,
    pub idle: Idle,
    pub results: [PhaseResult; PHASES],
    pub rss_after: Option<u64>,
    pub rss_peak: Option<u64>,
    pub tally: Tally,
    pub notes: Vec<String>,
}

impl Summary {
    /// Server memory per idle subscriber, in bytes.
    fn per_subscriber(&self) -> Option<f64> {
        match (self.rss_before, self.idle.rss) {
            (Some(a), Some(b)) if self.heads > 0 => Some((b as f64 - a as f64) / self.heads as f64),
            _ => None,
        }
    }

    /// Every subscriber connected and got every event once; no phase timed
    /// out or had a publish refused.
    pub fn clean(&self, o: &Options) -> bool {
        self.heads == o.subscribers
            && self.tally.missed == 0
            && self.tally.duplicated == 0
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
    match (s.rss_before, s.idle.rss, s.per_subscriber()) {
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
    if let Some(pct) = s.idle.cpu_pct {
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
        "  correctness     {} events missed ({} subscribers), {} duplicated ({} subscribers)",
        t.missed, t.subs_missing, t.duplicated, t.subs_dup
    );
    if let (Some(b), Some(peak)) = (s.rss_after, s.rss_peak) {
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
    let mut json = String::new();
    let _ = write!(
        json,
        "{{\"label\":{},\"target\":\"{}\",\"subscribers\":{},\"connected\":{},\"dropped\":{},\"connect_s\":{},\"event_size\":{},\"rss_before\":{},\"rss_idle\":{},\"rss_after\":{},\"rss_peak\":{},\"rss_per_subscriber\":{},\"idle_cpu_pct\":{}",
        quote(&o.label),
        o.target,
        o.subscribers,
        s.heads,
        s.dropped,
        num(Some(s.connect_s)),
        o.event_size,
        opt(s.rss_before),
        opt(s.idle.rss),
        opt(s.rss_after),
        opt(s.rss_peak),
        num(s.per_subscriber()),
        num(s.idle.cpu_pct),
    );
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
        ",\"missed\":{},\"subscribers_missing\":{},\"duplicated\":{},\"subscribers_duplicated\":{},\"errors\":{}}}",
        t.missed,
        t.subs_missing,
        t.duplicated,
        t.subs_dup,
        t.errors.iter().map(|(_, n)| n).sum::<usize>()
    );
    json
}

fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
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
