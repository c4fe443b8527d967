//! `ssed-load`: holds many idle Server-Sent Events subscribers against any
//! SSE server, then measures what a user of such a server cares about:
//!
//! 1. connect N subscribers and wait for every response head (connect time);
//! 2. the server's resident memory per idle subscriber and its CPU while idle
//!    (from `/proc/PID` when `--pid` is given; several are summed);
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
//!
//! # Many servers, many client processes
//!
//! `--target A,B,C` spreads the subscribers round-robin over several
//! servers (ssed processes on several ports, or machines), and `--pid
//! A,B,C` sums their memory and CPU. Events are all published to one
//! `--publish-url`: with ssed's bus every process delivers every event, so
//! the missed/duplicate check and the latencies cover every subscriber on
//! every target. (Without a bus, each process delivers only what is
//! published to it: spread over several targets, only the connect figures
//! mean anything; publish nothing with `--singles 0 --burst 0 --seq-burst 0`.)
//!
//! One process holds at most its open-file limit of subscribers, so past
//! it, `--workers W` holds them in W child processes of this same program
//! (`fleet`, `worker`), each with a limit of its own, while this one
//! publishes and reports. Every event carries the time its request was
//! sent (`seq=N t=T`, the machine's monotonic clock), so a subscriber in
//! any process times it.
//!
//! # Layout
//!
//! - `args`: the flags, validated into `Options`.
//! - `phases`: one function per step of a run, in the order [`run`] calls
//!   them; `probe`: the servers' memory and CPU from `/proc`.
//! - `fleet`: where the subscribers live, threads here or `--workers`;
//!   `worker`: one worker process and the lines it sends its parent.
//! - `subscribers`: the subscriber threads, one `mio` loop each;
//!   `socket`: a subscriber's socket, from a chosen source address;
//!   `stream`: a subscriber's bytes down to the `seq=N t=T` of each event.
//! - `publish`: the publishing connection.
//! - `histogram`: latencies, kept and merged in constant space.
//! - `report`: the summary, as text and as JSON.

mod args;
mod fleet;
mod histogram;
mod phases;
mod probe;
mod publish;
mod report;
mod socket;
mod stream;
mod subscribers;
mod worker;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use args::Options;
use phases::Publishing;
use probe::Probe;
use report::Summary;
use ssed_testkit::procfs;
use subscribers::Shared;

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

/// One run, phase by phase; `Ok(false)` when it was not clean (a
/// subscriber missing, an event missed or duplicated, a phase timed out
/// or a publish refused).
fn run(o: &Options) -> Result<bool, String> {
    check_file_limit(o)?;
    let deadline = exit_after(o);
    if let Some((first, count)) = o.worker {
        return worker::run(o, first, count);
    }
    let mut probe = Probe::new(&o.pids)?;
    announce(o);
    let cpu_before = probe.server_cpu();
    let mut summary = Summary {
        rss_before: probe.rss(),
        ..Summary::default()
    };
    let shared = Arc::new(Shared::new(o.singles, o.burst, o.seq_burst));
    let (fleet, connected) = phases::connect(o, &shared, deadline)?;
    probe.add_clients(fleet.pids());
    (summary.heads, summary.connect_s) = (connected.heads, connected.connect_s);
    let mut sent_last_seq = 0;
    if connected.heads > 0 {
        summary.idle = phases::idle(o, &probe);
        let mut publishing = Publishing::start(o, &shared, &probe, deadline)?;
        summary.results = [
            publishing.singles(),
            publishing.pipelined(),
            publishing.sequential(),
        ];
        (summary.rss_after, summary.rss_peak) = phases::settle(&probe);
        (sent_last_seq, summary.notes) = publishing.finish();
    }
    summary.cpu_s = cpu_before
        .iter()
        .zip(probe.server_cpu())
        .map(|(a, b)| a.zip(b).map(|(a, b)| phases::ns_to_s(b.saturating_sub(a))))
        .collect();
    summary.tally = phases::collect(&shared, fleet, sent_last_seq)?;
    summary.dropped = shared.dropped.load(Ordering::SeqCst);
    print!("{}", report::text(o, &summary));
    println!("{}", report::json(o, &summary));
    Ok(summary.clean(o))
}

/// Raises the open-file limit as far as allowed; refuses a run that
/// cannot hold its subscribers: those of this process, or of its largest
/// worker (each worker has a limit of its own, the same as ours).
fn check_file_limit(o: &Options) -> Result<(), String> {
    let limit = procfs::raise_nofile();
    let held = match (o.worker, o.workers) {
        (Some((_, count)), _) => count,
        (None, 0) => o.subscribers,
        (None, workers) => o.subscribers.div_ceil(workers),
    };
    let needed = held as u64 + FD_MARGIN;
    if needed > limit {
        let fewer = limit.saturating_sub(FD_MARGIN).max(1) as usize;
        return Err(format!(
            "{held} subscribers in one process need about {needed} open files, the limit is \
             {limit}; raise `ulimit -n` (hard limit), or hold them in more processes \
             (--workers {} or more)",
            o.subscribers.div_ceil(fewer)
        ));
    }
    Ok(())
}

/// `--duration` as a hard stop: exits with status 3 when it passes, wherever
/// the run is. Returns the deadline the phases check too.
fn exit_after(o: &Options) -> Instant {
    let duration = o.duration;
    let deadline = Instant::now() + duration;
    thread::spawn(move || {
        thread::sleep(duration);
        eprintln!("ssed-load: --duration {duration:?} exceeded; stopping");
        std::process::exit(3);
    });
    deadline
}

fn announce(o: &Options) {
    let targets: Vec<String> = o.targets.iter().map(|t| t.to_string()).collect();
    let holders = match o.workers {
        0 => format!("{} thread(s)", o.threads),
        w => format!("{w} worker processes of {} thread(s)", o.threads),
    };
    eprintln!(
        "ssed-load: {} subscribers to {} at {} ({} source address(es), {holders}); publishing to {}{}",
        o.subscribers,
        targets.join(", "),
        o.subscribe_path,
        o.sources.max(1),
        o.publish.authority,
        o.publish.target
    );
}
