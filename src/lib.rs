//! `ssed`: a Server-Sent Events daemon on one `mio` event loop.
//!
//! No async runtime and no thread per client: one thread waits in `epoll`
//! for any socket to become ready, and does whatever that socket needs
//! without ever blocking. Thousands of idle subscribers cost a slab entry
//! and a kernel socket each, nothing more.
//!
//! # Layout
//!
//! Read in this order to follow a byte from `accept()` to the browser:
//!
//! - [`config`]: the command line, parsed and validated into a `Config`.
//! - [`server`]: the event loop: `Poll`, listeners, the slab of connections,
//!   accept, dispatch, fan-out, timers, shutdown.
//! - [`conn`]: one connection: its phase, read buffer, write queue and
//!   readiness bits; `writev` of shared frames.
//! - [`http`]: sans-IO HTTP/1.1: request heads via `httparse` with their
//!   limits, chunked bodies, query strings, responses and every refusal.
//! - [`routes`]: `(method, path)` to a route, or `404`/`405`.
//! - [`handlers`]: what each route answers; publish and subscribe checks.
//! - [`hub`]: topics, subscribers, the global id, the history ring, replay.
//! - [`sse`]: the `text/event-stream` encoding, framed once per event.
//! - [`timer`]: deadlines (408s, heartbeats, the ticker) as a heap.
//! - [`stats`]: counters; `/stats` JSON and `/metrics` text.
//! - [`clock`]: wall-clock formatting for ticks, `Date` and ids.
//! - [`signal`], [`os`]: SIGINT/SIGTERM via a self-pipe; the fd limit and
//!   listen backlog. The only `unsafe` in the crate.
//! - [`trace`]: `--trace`, every byte in and out, escaped.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod clock;
pub mod config;
pub mod conn;
pub mod handlers;
pub mod http;
pub mod hub;
pub mod os;
pub mod routes;
pub mod server;
pub mod signal;
pub mod sse;
pub mod stats;
pub mod timer;
pub mod trace;

use std::io::{self, BufRead};
use std::sync::mpsc;
use std::thread;

use log::{info, warn};

pub use config::Config;
pub use server::{Handle, Server};

/// Lines from `--stdin` waiting for the loop; the reader blocks beyond this.
const STDIN_QUEUE: usize = 4096;

/// Runs the daemon as the binary does: raise the fd limit, bind, install
/// signal handlers, start the `--stdin` reader, serve until a signal.
pub fn run(config: Config) -> io::Result<()> {
    let limit = os::raise_file_limit()?;
    let fd_budget = connection_budget(limit.soft);
    let max_conns = config.max_conns.unwrap_or(fd_budget);
    info!(
        "open-file limit: soft {} raised to {} (hard {}); --max-conns {}",
        limit.soft_before, limit.soft, limit.hard, max_conns
    );
    if max_conns > fd_budget {
        warn!("--max-conns {max_conns} is above what the open-file limit allows ({fd_budget})");
    }
    let mut server = Server::bind(config.clone(), max_conns)?;
    server.attach_signals(signal::Signals::install()?)?;
    for addr in server.local_addrs() {
        info!("listening on http://{addr}");
    }
    if config.publish_token.is_none() && config.listen.iter().any(|addr| !addr.ip().is_loopback()) {
        warn!("listening beyond loopback with no --publish-token: anyone who can reach it can publish");
    }
    if let Some(topic) = &config.stdin_topic {
        info!("publishing each line of standard input to topic '{topic}'");
        server.attach_stdin(spawn_stdin_reader(server.waker(), config.max_body));
    }
    server.run()?;
    info!("bye");
    Ok(())
}

/// Connections that fit in `soft` file descriptors: all but a margin for
/// listeners, the poll instance, the signal pipe and standard streams (a
/// quarter of a small limit, at most [`server::FD_MARGIN`]).
pub fn connection_budget(soft: u64) -> usize {
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    soft.saturating_sub(server::FD_MARGIN.min(soft / 4)).max(1)
}

/// A thread that reads standard input line by line and hands each line to
/// the loop. Reading stdin is the one blocking call we need; a thread keeps
/// it off the loop. A line longer than `max_line` is cut there.
fn spawn_stdin_reader(waker: std::sync::Arc<mio::Waker>, max_line: usize) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::sync_channel(STDIN_QUEUE);
    thread::spawn(move || {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match io::Read::take(&mut input, max_line as u64 + 1).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') && line.len() > max_line {
                // Cut: drop the rest of this long line.
                let mut rest = Vec::new();
                let _ = input.read_until(b'\n', &mut rest);
                line.truncate(max_line);
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            if sender.send(text).is_err() {
                break;
            }
            let _ = waker.wake();
        }
        drop(sender);
        let _ = waker.wake();
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::connection_budget;

    #[test]
    fn the_fd_margin_scales_down_for_small_limits() {
        assert_eq!(connection_budget(20_000), 19_872);
        assert_eq!(connection_budget(1024), 896);
        assert_eq!(connection_budget(40), 30);
        assert_eq!(connection_budget(1), 1);
        assert_eq!(connection_budget(u64::MAX), usize::MAX - 128);
    }
}
