//! Counters, and the two ways they are read: `/stats` as JSON and
//! `/metrics` in the Prometheus text exposition format.
//!
//! The counters only ever go up. Of the gauges, the loop keeps the number
//! of open connections here as they open and close; subscribers and
//! history are read from the hub when a snapshot is taken.

use std::fmt::Write as _;
use std::time::Instant;

/// Counters, bumped by the loop and the service as things happen, and the
/// connection gauge.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    /// When the server started.
    pub started: Instant,
    /// Open client connections (a gauge, kept by the loop).
    pub connections: usize,
    /// Events published (ticks are not counted: they are not published).
    pub published: u64,
    /// Events (published or ticks) put on a subscriber's queue.
    pub delivered: u64,
    /// Bytes written to client sockets.
    pub bytes_out: u64,
    /// Subscribers closed because their queue passed `--max-queue`.
    pub evicted: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections turned away over `--max-conns`.
    pub rejected: u64,
}

impl Counters {
    /// All zero, started at `now`.
    pub fn new(now: Instant) -> Self {
        Counters {
            started: now,
            connections: 0,
            published: 0,
            delivered: 0,
            bytes_out: 0,
            evicted: 0,
            accepted: 0,
            rejected: 0,
        }
    }
}

/// Everything `/stats` and `/metrics` report, at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// Open client connections.
    pub connections: usize,
    /// Open event streams.
    pub subscribers: usize,
    /// Events kept for replay.
    pub history: usize,
    /// Whole seconds since start.
    pub uptime_s: u64,
    /// The counters at this instant.
    pub counters: Counters,
}

impl Snapshot {
    /// The `/stats` body.
    pub fn json(&self) -> String {
        let c = &self.counters;
        format!(
            "{{\"connections\":{},\"subscribers\":{},\"published\":{},\"delivered\":{},\
             \"bytes_out\":{},\"evicted\":{},\"uptime_s\":{},\"history\":{},\
             \"accepted\":{},\"rejected\":{}}}\n",
            self.connections,
            self.subscribers,
            c.published,
            c.delivered,
            c.bytes_out,
            c.evicted,
            self.uptime_s,
            self.history,
            c.accepted,
            c.rejected
        )
    }

    /// The `/metrics` body, in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let c = &self.counters;
        let rows: [(&str, &str, &str, u64); 10] = [
            (
                "ssed_connections",
                "gauge",
                "Open client connections.",
                self.connections as u64,
            ),
            (
                "ssed_subscribers",
                "gauge",
                "Open event streams.",
                self.subscribers as u64,
            ),
            (
                "ssed_history_events",
                "gauge",
                "Events kept for Last-Event-ID replay.",
                self.history as u64,
            ),
            (
                "ssed_uptime_seconds",
                "gauge",
                "Seconds since the server started.",
                self.uptime_s,
            ),
            (
                "ssed_published_total",
                "counter",
                "Events published.",
                c.published,
            ),
            (
                "ssed_delivered_total",
                "counter",
                "Events queued to subscribers.",
                c.delivered,
            ),
            (
                "ssed_bytes_out_total",
                "counter",
                "Bytes written to clients.",
                c.bytes_out,
            ),
            (
                "ssed_evicted_total",
                "counter",
                "Subscribers evicted for falling behind.",
                c.evicted,
            ),
            (
                "ssed_accepted_total",
                "counter",
                "Connections accepted.",
                c.accepted,
            ),
            (
                "ssed_rejected_total",
                "counter",
                "Connections refused over --max-conns.",
                c.rejected,
            ),
        ];
        let mut out = String::with_capacity(1024);
        for (name, kind, help, value) in rows {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut counters = Counters::new(Instant::now());
        counters.published = 3;
        counters.delivered = 7;
        Snapshot {
            connections: 2,
            subscribers: 1,
            history: 3,
            uptime_s: 9,
            counters,
        }
    }

    #[test]
    fn json_has_every_spec_field() {
        let json = snapshot().json();
        for field in [
            "\"connections\":2",
            "\"subscribers\":1",
            "\"published\":3",
            "\"delivered\":7",
            "\"bytes_out\":0",
            "\"evicted\":0",
            "\"uptime_s\":9",
            "\"history\":3",
        ] {
            assert!(json.contains(field), "{field} in {json}");
        }
    }

    #[test]
    fn prometheus_text_is_well_formed() {
        let text = snapshot().prometheus();
        assert!(text.contains("# TYPE ssed_published_total counter\nssed_published_total 3\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.split(' ');
            let (name, value) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                name.starts_with("ssed_") && value.parse::<u64>().is_ok(),
                "{line}"
            );
            assert!(parts.next().is_none());
        }
    }
}
