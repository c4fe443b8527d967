//! The clients that misbehave: slow subscribers, which must be evicted
//! without hurting anyone else, and garbage senders, which must be refused
//! without a crash.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssed_testkit::net;
use ssed_testkit::rng::Rng;

use super::Shared;
use crate::http::{Got, Stream};

pub struct SlowReport {
    pub streams: u64,
    pub evicted: u64,
}

/// Stalls (reads nothing) or trickles (1 KiB every 20 ms) on the whole
/// stream for six seconds at a time, then drains what the kernel holds
/// to see whether the server cut it off; counts those evictions.
pub fn spawn_slow(shared: Arc<Shared>, addr: SocketAddr, index: usize) -> JoinHandle<SlowReport> {
    thread::spawn(move || {
        let mut report = SlowReport {
            streams: 0,
            evicted: 0,
        };
        let stall = index.is_multiple_of(2);
        let list: Vec<String> = (0..shared.options.topics).map(|t| format!("t{t}")).collect();
        let all_topics = format!("/events?topic={}", list.join(","));
        while !shared.stopping() {
            let Ok(mut stream) = Stream::open(addr, &all_topics, None, Duration::from_millis(100)) else {
                thread::sleep(Duration::from_millis(100));
                continue;
            };
            stream.shrink_receive_buffer();
            report.streams += 1;
            if slow_until_evicted(&shared, &mut stream, stall) {
                report.evicted += 1;
            }
        }
        report
    })
}

/// True if the server closed the stream.
fn slow_until_evicted(shared: &Shared, stream: &mut Stream, stall: bool) -> bool {
    loop {
        let stopping = shared.stopping();
        if !stopping {
            let until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < until && !shared.stopping() {
                if !stall {
                    match stream.read(1024) {
                        Ok(Got::Closed) => return true,
                        Err(_) => return false,
                        _ => {}
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        // Catch up: either the server kept us, or we find its close. An
        // evicted stream's last bytes may come in bursts (the kernel probes
        // a closed window with back-off), so only half a second of silence
        // counts as caught up (the topics carry no ticks; heartbeats come
        // once a second).
        // A kept stream never falls silent while the load runs: give up
        // catching up after three seconds and go slow again.
        let mut idle = 0;
        let drain_until = Instant::now() + Duration::from_secs(3);
        while idle < 5 && Instant::now() < drain_until {
            match stream.read(256 * 1024) {
                Ok(Got::Closed) => return true,
                Ok(Got::Idle) => idle += 1,
                Ok(Got::Items(_)) => idle = 0,
                Err(_) => return false,
            }
        }
        if stopping {
            return false;
        }
    }
}

// ----- garbage senders -----------------------------------------------------------

#[derive(Default)]
pub struct GarbageReport {
    pub sent: u64,
    /// Answered with a status (4xx for garbage, 2xx for a half-close).
    pub answered: u64,
    /// Closed without an answer (fine for an abandoned request).
    pub closed: u64,
    /// Neither answered nor closed within the deadline.
    pub hung: u64,
    pub kinds: BTreeMap<&'static str, u64>,
}

impl GarbageReport {
    pub fn add(&mut self, other: &GarbageReport) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.closed += other.closed;
        self.hung += other.hung;
        for (kind, n) in &other.kinds {
            *self.kinds.entry(kind).or_default() += n;
        }
    }
}

const KINDS: &[&str] = &[
    "random",
    "slowloris",
    "oversize-head",
    "long-target",
    "cl+te",
    "bad-length",
    "bad-chunk",
    "nul",
    "half-close",
    "abandoned",
];

pub fn spawn_garbage(shared: Arc<Shared>, addr: SocketAddr, index: usize) -> JoinHandle<GarbageReport> {
    thread::spawn(move || {
        let mut rng = Rng::new(shared.options.seed ^ (index as u64 + 1001) << 24);
        let mut report = GarbageReport::default();
        let deadline = shared.options.header_timeout + Duration::from_secs(3);
        while !shared.stopping() {
            let kind = KINDS[rng.range(0, KINDS.len() as u64) as usize];
            let Ok(mut stream) = net::connect(addr, Duration::from_millis(100)) else {
                thread::sleep(Duration::from_millis(50));
                continue;
            };
            report.sent += 1;
            *report.kinds.entry(kind).or_default() += 1;
            let bytes: Vec<u8> = match kind {
                "random" => (0..rng.range(1, 2048)).map(|_| rng.next_u64() as u8).collect(),
                "slowloris" => b"GET /events HTTP/1.1\r\nHost: soak\r\nX-Slow: ".to_vec(),
                "oversize-head" => format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(rng.range(17_000, 40_000) as usize)).into_bytes(),
                "long-target" => format!("GET /{} HTTP/1.1\r\n\r\n", "t".repeat(rng.range(8_300, 15_000) as usize)).into_bytes(),
                "cl+te" => b"POST /publish HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
                "bad-length" => b"POST /publish HTTP/1.1\r\nContent-Length: -5\r\n\r\nhello".to_vec(),
                "bad-chunk" => b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n".to_vec(),
                "nul" => b"GET /\0 HTTP/1.1\r\nX: \0\r\n\r\n".to_vec(),
                "half-close" => b"GET /healthz HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(),
                _ => b"POST /publish?topic=t0 HTTP/1.1\r\nContent-Length: 100\r\n\r\nhalf a bo".to_vec(),
            };
            let _ = stream.write_all(&bytes);
            match kind {
                "abandoned" => {
                    drop(stream);
                    report.closed += 1;
                    continue;
                }
                "half-close" => {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                _ => {}
            }
            let until = Instant::now() + deadline;
            let mut answer = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut last_drip = Instant::now();
            let outcome = loop {
                if Instant::now() > until {
                    break "hung";
                }
                match stream.read(&mut chunk) {
                    Ok(0) => break if answer.is_empty() { "closed" } else { "answered" },
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if kind == "slowloris" && last_drip.elapsed() > Duration::from_millis(300) {
                            let _ = stream.write_all(b"a");
                            last_drip = Instant::now();
                        }
                    }
                    Err(_) => break if answer.is_empty() { "closed" } else { "answered" },
                }
            };
            match outcome {
                "answered" => report.answered += 1,
                "closed" => report.closed += 1,
                _ => report.hung += 1,
            }
            thread::sleep(Duration::from_millis(5));
        }
        report
    })
}
