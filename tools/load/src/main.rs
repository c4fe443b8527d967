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
//!
//! # Layout
//!
//! - `args`: the flags, validated into `Options`.
//! - `phases`: one function per step of a run, in the order [`run`] calls
//!   them.
//! - `subscribers`: the subscriber threads, one `mio` loop each;
//!   `stream`: a subscriber's bytes down to the `seq=` of each event.
//! - `publish`: the publishing connection.
//! - `report`: the summary, as text and as JSON.

mod args;
mod phases;
mod publish;
mod report;
mod stream;
mod subscribers;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use args::Options;
use phases::{Probe, Publishing};
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
    let probe = Probe::new(o.pid)?;
    announce(o);
    let mut summary = Summary {
        rss_before: probe.rss(),
        ..Summary::default()
    };
    let shared = Arc::new(Shared::new(o.singles, o.burst, o.seq_burst));
    let (threads, connected) = phases::connect(o, &shared, deadline)?;
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
    summary.tally = phases::collect(&shared, threads, sent_last_seq)?;
    summary.dropped = shared.dropped.load(Ordering::SeqCst);
    print!("{}", report::text(o, &summary));
    println!("{}", report::json(o, &summary));
    Ok(summary.clean(o))
}

/// Raises the open-file limit as far as allowed; refuses a run that
/// cannot hold its subscribers.
fn check_file_limit(o: &Options) -> Result<(), String> {
    let limit = procfs::raise_nofile();
    let needed = o.subscribers as u64 + FD_MARGIN;
    if needed > limit {
        return Err(format!(
            "{} subscribers need about {needed} open files, the limit is {limit}; \
             raise `ulimit -n` (hard limit) or use fewer subscribers",
            o.subscribers
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
}
