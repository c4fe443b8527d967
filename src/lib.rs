//! `ssed`: a Server-Sent Events daemon on one `mio` event loop.
//!
//! No async runtime and no thread per client: one thread waits in `epoll`
//! for any socket to become ready, and does whatever that socket needs
//! without ever blocking. Thousands of idle subscribers cost a slab entry
//! and a kernel socket each, nothing more.
//!
//! # Layout
//!
//! Three layers, each ignorant of the one above it: the **loop** knows
//! sockets and time, the **application** knows requests and events, the
//! **wire** knows bytes. Read in this order to follow a byte from
//! `accept()` to the browser:
//!
//! - [`config`]: the command line and `SSED_*` environment, one table of
//!   flags (`config/flags.rs`), validated into a [`Config`].
//!
//! The loop:
//! - [`server`]: `Poll`, listeners, the slab of connections; accept, read,
//!   apply the application's answers, flush, close, shut down; with
//!   `--bus`, the two sockets to Redis and the requests waiting on them
//!   (`server/bus.rs`, `server/bus/waiters.rs`).
//! - [`conn`]: one socket: its phase and the transitions between phases,
//!   what the kernel reported (readiness), the queue of shared frames.
//! - [`timer`]: deadlines as a heap, one kind per timeout (408, linger,
//!   heartbeat), the ticker, the accept back-off, the shutdown grace.
//! - [`signal`], [`os`]: SIGINT/SIGTERM via a self-pipe; the fd limit,
//!   listen backlog, `TCP_NODELAY` and `SO_REUSEPORT`. The only `unsafe`
//!   in the crate.
//!
//! The application (no `mio` here):
//! - [`service`]: a request in, an answer out (respond, publish, open a
//!   stream; with `--bus`, relay a publish to Redis or wait on it:
//!   `service/bus.rs`); the ticker and `--stdin`; the one `publish`; who
//!   may publish and read (`service/access.rs`).
//! - [`routes`]: `(method, path)` to a route, or `404`/`405`.
//! - [`params`]: what a publish or a subscription asks for, checked.
//! - [`auth`]: the publish bearer token.
//! - [`topics`]: topic names and the filters subscribers ask for.
//! - [`hub`]: ids (counted, or Redis' stream ids: `hub/ids.rs`), the views
//!   of the shared log and who reads each, replay and the gap rule
//!   (`hub/replay.rs`).
//! - [`log`]: the shared log: events encoded and framed once, in one run of
//!   bytes per view; a subscriber is a cursor into it.
//! - [`stats`]: counters; `/stats` JSON and `/metrics` text.
//! - [`rng`]: spreading reconnects.
//!
//! The wire (pure functions of bytes):
//! - [`http`]: HTTP/1.1: the request reader, heads via `httparse` with
//!   their limits, chunked bodies, query strings, responses and every
//!   refusal.
//! - [`bus`]: the Redis bus's wire: RESP2, the Streams commands, replies
//!   and ids, and the two connections' logic as state machines (handshake,
//!   backoff, pipelined `XADD`s, the tail, loss detection).
//! - [`sse`]: the `text/event-stream` text, as WHATWG defines it.
//! - [`frame`]: chunk framing, done once per event and shared.
//! - [`clock`]: wall-clock formatting for ticks, `Date` and ids.
//! - [`trace`]: `--trace`, every byte in and out, escaped.

//!
//! # A request's path, function by function
//!
//! ```text
//! server.rs          Server::turn ─ accept ─ admit ─ Conn::new
//! server/requests.rs   on_ready (Readiness::note) ─ drive ─ read_some ─ Conn::read
//!                      serve_requests ─▶ http/reader.rs RequestReader::read
//!                                          ─ http/request.rs parse_head
//!                                          ─ http/chunked.rs ChunkedDecoder::decode
//!                      answer ─▶ service.rs Service::handle ─ routes.rs route
//!                                  GET /events:   open_stream ─ stream_head,
//!                                                 sse::greeting, Hub::open
//!                                                 (view, cursor set back, gap)
//!                                  POST /publish: publish_request ─ params::publish,
//!                                                 auth::bearer_matches ─ Service::publish
//!                                                 ─ Hub::publish ─ sse::encode_event
//!                                                 ─ Frame::chunk ─ View::append (log.rs)
//!                             ◀─ Answer (Respond | Publish | Stream)
//!                      send / open_stream (Service::join, Conn::start_stream)
//! server/output.rs     flush_dirty ─ flush_views ─ flush_view: for each reader,
//!                        Conn::flush ─ WriteQueue::write_to (log[cursor..head] and
//!                        its own frames, one write) ─ View::trim
//!                      then each connection with frames of its own: Conn::flush
//!                        ─ Conn::flushed
//!                      close: Service::leave, deregister, free the slot
//! server/deadlines.rs  fire_timers: 408, linger, heartbeat, tick
//!
//! With --bus, a publish and its event take a detour through Redis:
//! service.rs          publish_request ─▶ Answer::Relay
//! server/bus/waiters.rs relay ─ Publisher::publish (XADD, bus/link/publisher.rs)
//! server/bus.rs       bus_turn ─ bus_write; on_bus_ready ─ bus_read
//!                       ─ Publisher::received ─ on_reply ─ Service::relayed (200 {"id":..})
//!                       ─ Tail::received (XREAD, bus/link/tail.rs) ─ on_tail_events
//!                       ─ Service::deliver ─ Hub::append ─ View::append ─ the flush above
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod conn;
pub mod frame;
pub mod http;
pub mod hub;
pub mod log;
pub mod os;
pub mod params;
pub mod rng;
pub mod routes;
pub mod server;
pub mod service;
pub mod signal;
pub mod sse;
pub mod stats;
pub mod timer;
pub mod topics;
pub mod trace;

use std::io::{self, BufRead};
use std::sync::mpsc;
use std::thread;

use ::log::{info, warn};

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
    if config.reuseport {
        info!("--reuseport: other processes may listen on the same address; the kernel spreads connections");
    }
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
            let limit = u64::try_from(max_line).unwrap_or(u64::MAX).saturating_add(1);
            match io::Read::take(&mut input, limit).read_until(b'\n', &mut line) {
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
