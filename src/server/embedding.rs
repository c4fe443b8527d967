//! What a program gets to drive a server from outside its loop: the bound
//! addresses, a [`Handle`] to shut it down from another thread, signals
//! and `--stdin` routed in, figures, and [`Server::publish`].
//!
//! The binary (`lib.rs`, `run`) uses the same calls as the tests and any
//! program that embeds ssed.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Waker};

use super::{Server, SIGNAL};
use crate::clock::Now;
use crate::hub::EventId;
use crate::signal::Signals;
use crate::sse::{self, EncodeError};
use crate::stats::Snapshot;

/// Shuts a server down from another thread (used by tests and embedders;
/// the binary uses SIGINT/SIGTERM).
#[derive(Debug, Clone)]
pub struct Handle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Handle {
    /// Begins a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

impl Server {
    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// A handle that shuts this server down from another thread.
    pub fn handle(&self) -> Handle {
        Handle {
            waker: self.waker.clone(),
            stop: self.stop.clone(),
        }
    }

    /// The waker, for a thread that feeds [`Server::attach_stdin`].
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Routes SIGINT and SIGTERM into this loop.
    pub fn attach_signals(&mut self, signals: Signals) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&signals.raw_fd()), SIGNAL, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Lines arriving here are published to `--stdin`'s topic. The sender
    /// must wake [`Server::waker`] after each line.
    pub fn attach_stdin(&mut self, lines: Receiver<String>) {
        self.stdin = Some(lines);
    }

    /// Current figures for `/stats` and `/metrics`.
    pub fn snapshot(&self) -> Snapshot {
        self.service.snapshot(Now::read())
    }

    /// Publishes an event from the program that embeds the server, as
    /// `POST /publish` does: the service assigns its id, encodes it once
    /// and appends it to the views of its topic; the end of the next turn
    /// writes it to their readers. Returns the id. With `--bus` the event
    /// goes to Redis instead, and comes back (with its id) like any other:
    /// `None`.
    pub fn publish(
        &mut self,
        topic: &str,
        name: Option<&str>,
        data: &str,
    ) -> Result<Option<EventId>, PublishError> {
        let now = Now::read();
        if self.bus.is_some() {
            sse::encode_event(None, name, data).map_err(PublishError::Encode)?;
            return match self.relay_unanswered(topic, name, data, now) {
                true => Ok(None),
                false => Err(PublishError::BusDown),
            };
        }
        let (id, _) = self
            .service
            .publish(topic, name, data)
            .map_err(PublishError::Encode)?;
        self.flush_overgrown_views(now);
        Ok(Some(id))
    }
}

/// Why [`Server::publish`] published nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The event cannot be written as SSE (a name with a line break).
    Encode(EncodeError),
    /// With `--bus`: Redis is not connected.
    BusDown,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Encode(error) => error.fmt(f),
            PublishError::BusDown => f.write_str("the bus is down: nothing was published"),
        }
    }
}

impl std::error::Error for PublishError {}
