//! `ssed-soak`: a bounded soak test for ssed, over loopback only.
//!
//! For `--duration`, all at once:
//!
//! - **publishers** post events to several topics on keep-alive
//!   connections; an event counts as published once its `200` answer (and
//!   id) is back;
//! - **steady subscribers** read everything on their topics and must end
//!   with exactly the published ids, in order: no gap, no duplicate;
//! - **reconnecting subscribers** drop their stream every second or so and
//!   come back with `Last-Event-ID`: the sequence across reconnects must be
//!   gapless too (the pause is far inside the history window);
//! - **slow subscribers** stall or read a trickle, and expect to be evicted
//!   once their unsent bytes pass `--max-queue`;
//! - **garbage senders** send random bytes, slowloris heads, oversize
//!   heads, bad lengths and abandoned requests, and expect an answer or a
//!   close every time.
//!
//! Then it reports what was published and received, gaps and duplicates,
//! evictions, and the server's resident memory at start, peak and end; and
//! exits non-zero if any steady or reconnecting subscriber lost or
//! duplicated an event, a garbage connection hung, or the server died.
//!
//! It starts the ssed binary itself on port 0 (`--bin`), or attaches to a
//! running one (`--addr`, with `--pid` for memory figures).
//!
//! With `--bus-processes N` it starts a `redis-server` of its own (in a
//! temporary directory, AOF on) and N ssed processes on it with `--bus`,
//! and spreads every role over them: publishers, steady, slow and garbage
//! clients go to server `i % N`, and reconnecting subscribers resume on the
//! next server each time. The check is the same: every subscriber gets
//! every event published on its topics, once, in the stream's order (ids
//! are then Redis's `ms-seq` strings, compared by their numbers).

mod http;
mod roles;
mod server;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use roles::{Shared, SubscriberReport};
use watch::Watch;

const USAGE: &str = "\
ssed-soak: publishers, steady, slow and reconnecting subscribers and garbage
senders against one ssed, over loopback, for a bounded time.

USAGE: ssed-soak [OPTIONS]

  --duration SECS        how long to run the load (default 20)
  --bin PATH             ssed binary to start (default target/release/ssed,
                         else target/debug/ssed)
  --addr ADDR            attach to a running server instead (loopback only)
  --pid PID              its process id, for memory figures (with --addr)
  --header-timeout SECS  the server's --header-timeout (default 2; passed on
                         when the soak starts the server)
  --topics N             topics to publish to (default 4)
  --publishers N         (default 4)
  --rate N               events per second per publisher (default 200)
  --steady N             steady subscribers (default 4)
  --reconnecting N       reconnecting subscribers (default 2)
  --slow N               slow subscribers (default 2)
  --garbage N            garbage senders (default 2)
  --seed N               random seed (default: from the clock)
  --bus-processes N      start a redis-server and N ssed processes sharing it
                         (--bus), and spread the roles over them (default 0:
                         one server, no bus)
";

/// The command line, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub bin: Option<PathBuf>,
    pub addr: Option<SocketAddr>,
    pub pid: Option<u32>,
    pub header_timeout: Duration,
    pub topics: usize,
    pub publishers: usize,
    pub rate: u32,
    pub steady: usize,
    pub reconnecting: usize,
    pub slow: usize,
    pub garbage: usize,
    pub seed: u64,
    /// `--bus-processes`: 0 for one server without a bus.
    pub bus_processes: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        duration: Duration::from_secs(20),
        bin: None,
        addr: None,
        pid: None,
        header_timeout: Duration::from_secs(2),
        topics: 4,
        publishers: 4,
        rate: 200,
        steady: 4,
        reconnecting: 2,
        slow: 2,
        garbage: 2,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        bus_processes: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--duration" => {
                options.duration =
                    Duration::from_secs_f64(value.parse().map_err(|_| format!("--duration: {value}"))?)
            }
            "--bin" => options.bin = Some(PathBuf::from(&value)),
            "--addr" => {
                let addr: SocketAddr = value.parse().map_err(|_| format!("--addr: {value}"))?;
                if !addr.ip().is_loopback() {
                    return Err(
                        "--addr must be a loopback address: the soak never leaves this machine".into(),
                    );
                }
                options.addr = Some(addr);
            }
            "--pid" => options.pid = Some(number()? as u32),
            "--header-timeout" => {
                options.header_timeout =
                    Duration::from_secs_f64(value.parse().map_err(|_| format!("--header-timeout: {value}"))?)
            }
            "--topics" => options.topics = number()?.max(1) as usize,
            "--publishers" => options.publishers = number()?.max(1) as usize,
            "--rate" => options.rate = number()?.clamp(1, 100_000) as u32,
            "--steady" => options.steady = number()? as usize,
            "--reconnecting" => options.reconnecting = number()? as usize,
            "--slow" => options.slow = number()? as usize,
            "--garbage" => options.garbage = number()? as usize,
            "--seed" => options.seed = number()?.max(1),
            "--bus-processes" => options.bus_processes = number()?.min(64) as usize,
            _ => return Err(format!("unknown flag {flag}\n\n{USAGE}")),
        }
    }
    if options.bus_processes > 0 && options.addr.is_some() {
        return Err("--bus-processes starts its own servers: not with --addr".into());
    }
    if options.duration > Duration::from_secs(24 * 3600) {
        return Err("--duration: at most a day".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ssed-soak: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("ssed-soak: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs the soak and prints the report; `Ok(false)` when a check failed.
fn run(options: &Options) -> Result<bool, String> {
    let mut fleet = server::Fleet::start_or_attach(options)?;
    let addrs = fleet.addrs();
    for target in &fleet.targets {
        let pid = target.pid.map_or("?".into(), |p| p.to_string());
        println!("ssed-soak: server at {} (pid {pid})", target.addr);
    }
    if let Some(redis) = &fleet.redis {
        println!(
            "ssed-soak: {} processes over the bus {}",
            addrs.len(),
            redis.url()
        );
    }
    println!("ssed-soak: {:?} of load, seed {}", options.duration, options.seed);
    let watch = Watch::start(&fleet)?;
    // Role i goes to server i (mod the number of servers).
    let at = |i: usize| addrs[i % addrs.len()];

    let shared = Arc::new(Shared::new(options));
    // Subscribers first, and all of them connected, so that every event
    // published afterwards is owed to them.
    let mut steady = Vec::new();
    let mut reconnecting = Vec::new();
    for i in 0..options.steady {
        steady.push(roles::spawn_subscriber(shared.clone(), addrs.clone(), i, false));
    }
    for i in 0..options.reconnecting {
        reconnecting.push(roles::spawn_subscriber(
            shared.clone(),
            addrs.clone(),
            options.steady + i,
            true,
        ));
    }
    shared.wait_ready(options.steady + options.reconnecting, Duration::from_secs(10))?;

    let started = Instant::now();
    let slow: Vec<_> = (0..options.slow)
        .map(|i| roles::spawn_slow(shared.clone(), at(i), i))
        .collect();
    let garbage: Vec<_> = (0..options.garbage)
        .map(|i| roles::spawn_garbage(shared.clone(), at(i), i))
        .collect();
    let publishers: Vec<_> = (0..options.publishers)
        .map(|i| roles::spawn_publisher(shared.clone(), at(i), i))
        .collect();

    // Run for the duration, watching that the servers stay up.
    let end = started + options.duration;
    let mut died = None;
    while Instant::now() < end {
        thread::sleep(watch::LOOK_EVERY.min(end.saturating_duration_since(Instant::now())));
        died = Watch::died(&mut fleet);
        if died.is_some() {
            break;
        }
    }
    shared.stop_load();
    let publisher_reports: Vec<_> = publishers
        .into_iter()
        .map(|h| h.join().expect("publisher thread"))
        .collect();
    // Every subscriber now reads up to the last id published on its topics.
    shared.finish_publishing();
    let steady: Vec<SubscriberReport> = steady
        .into_iter()
        .map(|h| h.join().expect("subscriber thread"))
        .collect();
    let reconnecting: Vec<SubscriberReport> = reconnecting
        .into_iter()
        .map(|h| h.join().expect("subscriber thread"))
        .collect();
    let slow: Vec<_> = slow.into_iter().map(|h| h.join().expect("slow thread")).collect();
    let garbage: Vec<_> = garbage
        .into_iter()
        .map(|h| h.join().expect("garbage thread"))
        .collect();
    let elapsed = started.elapsed();

    // ----- the report -------------------------------------------------------
    let mut ok = true;
    let published = shared.published_by_topic();
    let total: usize = published.iter().map(Vec::len).sum();
    let errors: u64 = publisher_reports.iter().map(|r| r.errors).sum();
    println!();
    println!(
        "published        {total} events in {:.1} s ({:.0}/s) on {} topics; publisher errors {errors}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        options.topics
    );
    for (topic, ids) in published.iter().enumerate() {
        println!("  topic t{topic:<3}     {}", ids.len());
    }
    if errors > 0 {
        ok = false;
        println!("FAIL publishers got {errors} error(s) (non-200 answers or broken connections)");
    }
    for (label, reports) in [("steady", &steady), ("reconnecting", &reconnecting)] {
        for report in reports.iter() {
            let owed = roles::owed(&published, &report.topics);
            let check = report.check(&owed);
            println!(
                "{label:<12} #{:<2} topics {:<12} received {:>7} of {:>7} published  gaps {}  duplicates {}  extra {}  gap-events {}  reconnects {}{}",
                report.index,
                report.topics.iter().map(|t| format!("t{t}")).collect::<Vec<_>>().join(","),
                report.ids.len(),
                owed.len(),
                check.missing,
                check.duplicates,
                check.extra,
                report.gap_events,
                report.reconnects,
                report.error.as_ref().map(|e| format!("  error: {e}")).unwrap_or_default(),
            );
            if !check.clean() || report.gap_events > 0 || report.error.is_some() {
                ok = false;
                println!(
                    "FAIL {label} subscriber #{} lost, duplicated or reordered events",
                    report.index
                );
            }
        }
    }
    let slow_evicted: u64 = slow.iter().map(|r| r.evicted).sum();
    let slow_streams: u64 = slow.iter().map(|r| r.streams).sum();
    println!(
        "slow             {} subscriber(s), {slow_streams} stream(s), {slow_evicted} seen evicted",
        slow.len()
    );
    let mut outcomes = roles::GarbageReport::default();
    for report in &garbage {
        outcomes.add(report);
    }
    println!(
        "garbage          {} connection(s): {} answered (4xx; 200 for a half-close), {} closed without an answer, {} HUNG; by kind: {}",
        outcomes.sent, outcomes.answered, outcomes.closed, outcomes.hung,
        outcomes.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    );
    if outcomes.hung > 0 {
        ok = false;
        println!(
            "FAIL {} garbage connection(s) got neither an answer nor a close in time",
            outcomes.hung
        );
    }
    ok &= watch.report(&mut fleet, died, options.slow);
    println!("{}", if ok { "soak: PASS" } else { "soak: FAIL" });
    Ok(ok)
}
