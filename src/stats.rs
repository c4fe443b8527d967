//! Counters, and the two ways they are read: `/stats` as JSON and
//! `/metrics` in the Prometheus text exposition format.
//!
//! The counters only ever go up. Of the gauges, the loop keeps the number
//! of open connections here as they open and close; subscribers and
//! history are read from the hub when a snapshot is taken; the bus's
//! figures from its two connections.

use std::fmt::Write as _;
use std::time::Instant;

use crate::hub::EventId;

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
    /// The bus, with `--bus`.
    pub bus: Option<BusFigures>,
}

/// The bus as `/stats` and `/metrics` show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusFigures {
    /// Both connections to Redis are up.
    pub connected: bool,
    /// Times a connection came back after having been up.
    pub reconnects: u64,
    /// The last id read from the stream.
    pub last_id: Option<EventId>,
    /// From Redis adding the last event read (its id's time) to this
    /// process delivering it, by the two clocks: how far behind we are.
    pub lag_ms: Option<u64>,
    /// From writing the last answered `XADD` to reading its reply.
    pub round_trip_us: Option<u64>,
}

impl BusFigures {
    fn json(&self) -> String {
        let number = |value: Option<u64>| value.map_or_else(|| "null".to_string(), |v| v.to_string());
        let last_id = self
            .last_id
            .map_or_else(|| "null".to_string(), |id| format!("\"{id}\""));
        format!(
            "{{\"connected\":{},\"reconnects\":{},\"last_id\":{last_id},\"lag_ms\":{},\
             \"publish_round_trip_us\":{}}}",
            self.connected,
            self.reconnects,
            number(self.lag_ms),
            number(self.round_trip_us)
        )
    }
}

impl Snapshot {
    /// The `/stats` body.
    pub fn json(&self) -> String {
        let c = &self.counters;
        format!(
            "{{\"connections\":{},\"subscribers\":{},\"published\":{},\"delivered\":{},\
             \"bytes_out\":{},\"evicted\":{},\"uptime_s\":{},\"history\":{},\
             \"accepted\":{},\"rejected\":{}{}}}\n",
            self.connections,
            self.subscribers,
            c.published,
            c.delivered,
            c.bytes_out,
            c.evicted,
            self.uptime_s,
            self.history,
            c.accepted,
            c.rejected,
            self.bus
                .map_or_else(String::new, |bus| format!(",\"bus\":{}", bus.json()))
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
        if let Some(bus) = &self.bus {
            let gauges: [(&str, &str, &str, Option<f64>); 4] = [
                (
                    "ssed_bus_connected",
                    "gauge",
                    "1 when both connections to Redis are up.",
                    Some(f64::from(u8::from(bus.connected))),
                ),
                (
                    "ssed_bus_reconnects_total",
                    "counter",
                    "Times a connection to Redis came back.",
                    Some(bus.reconnects as f64),
                ),
                (
                    "ssed_bus_lag_seconds",
                    "gauge",
                    "From Redis adding the last event read to its delivery here.",
                    bus.lag_ms.map(|ms| ms as f64 / 1e3),
                ),
                (
                    "ssed_bus_publish_round_trip_seconds",
                    "gauge",
                    "From writing the last answered XADD to reading its reply.",
                    bus.round_trip_us.map(|us| us as f64 / 1e6),
                ),
            ];
            for (name, kind, help, value) in gauges {
                let Some(value) = value else { continue };
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
                );
            }
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
            bus: None,
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
    fn the_bus_shows_when_there_is_one() {
        let mut with_bus = snapshot();
        with_bus.bus = Some(BusFigures {
            connected: true,
            reconnects: 2,
            last_id: Some(EventId::new(17, 3)),
            lag_ms: Some(4),
            round_trip_us: None,
        });
        let json = with_bus.json();
        assert!(
            json.ends_with(
                ",\"bus\":{\"connected\":true,\"reconnects\":2,\"last_id\":\"17-3\",\
                 \"lag_ms\":4,\"publish_round_trip_us\":null}}\n"
            ),
            "{json}"
        );
        let text = with_bus.prometheus();
        assert!(text.contains("\nssed_bus_connected 1\n"), "{text}");
        assert!(text.contains("\nssed_bus_lag_seconds 0.004\n"), "{text}");
        assert!(!text.contains("round_trip"), "{text}");
        assert!(!snapshot().json().contains("bus"));
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
