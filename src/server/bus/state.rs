//! The bus's state in the loop: the two links (state machines of
//! `bus/link/`), their sockets and unsent bytes, who waits on them, and
//! when each must have heard from Redis.

use std::collections::HashMap;
use std::time::{Instant, UNIX_EPOCH};

use super::socket::Socket;
use super::waiters::{self, Parked, Waiter};
use super::{BLOCK_MS, BUS_COMMANDS, READ_CHUNK, READ_COUNT, REPLY_TIMEOUT, TAIL_SILENCE};
use crate::bus::link::{Link, LinkStatus, Publisher, Settings, Tail};
use crate::config::{BusAddr, Config};
use crate::stats::BusFigures;
use mio::Token;

/// The command connection's place in [`Bus::wires`].
pub(super) const COMMANDS: usize = 0;
/// The tailing connection's place in [`Bus::wires`].
pub(super) const TAIL: usize = 1;

/// Where `token`'s socket is in [`Bus::wires`].
pub(super) fn slot(token: Token) -> usize {
    if token == BUS_COMMANDS {
        COMMANDS
    } else {
        TAIL
    }
}

/// One socket to Redis and what waits to be written to it.
#[derive(Debug, Default)]
pub(super) struct Wire {
    pub(super) socket: Option<Socket>,
    /// Written when the socket takes it; the handshake goes first.
    pub(super) out: Vec<u8>,
    /// The connect has not finished.
    pub(super) connecting: bool,
    /// When the connect began, or Redis last sent something.
    pub(super) heard: Option<Instant>,
}

/// Both connections and who waits on them.
#[derive(Debug)]
pub struct Bus {
    pub(super) addr: BusAddr,
    pub(super) publisher: Publisher,
    pub(super) tail: Tail,
    /// The sockets: `wires[COMMANDS]` and `wires[TAIL]` (see [`slot`]).
    pub(super) wires: [Wire; 2],
    /// Requests waiting for a reply on the command connection, by token.
    pub(super) waiters: HashMap<u64, Waiter>,
    next_token: u64,
    /// Streams waiting for the history or for a newer id.
    pub(super) parked: Vec<Parked>,
    /// From Redis adding the last event read to its delivery here.
    pub(super) lag_ms: Option<u64>,
    /// Where both connections' reads land.
    pub(super) buffer: Box<[u8]>,
}

impl Bus {
    /// The bus of `config`, if it has one: both links disconnected, their
    /// first attempts due now.
    pub(in crate::server) fn of(config: &Config, now: Instant) -> Option<Bus> {
        let addr = config.bus.clone()?;
        let db = match &addr {
            BusAddr::Tcp { db, .. } | BusAddr::Unix { db, .. } => u64::from(*db),
        };
        let settings = Settings {
            stream: format!("{}:log", config.bus_key).into_bytes(),
            db,
            retention: config.bus_retention,
            history: config.history,
            count: READ_COUNT,
            block_ms: BLOCK_MS,
        };
        let seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        Some(Bus {
            addr,
            publisher: Publisher::new(&settings, seed, now),
            tail: Tail::new(&settings, seed.rotate_left(17), now),
            wires: [Wire::default(), Wire::default()],
            waiters: HashMap::new(),
            next_token: 1,
            parked: Vec::new(),
            lag_ms: None,
            buffer: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    /// `token`'s link: its phase, its backoff.
    pub(in crate::server) fn link(&self, token: Token) -> &Link {
        match slot(token) {
            COMMANDS => self.publisher.link(),
            _ => self.tail.link(),
        }
    }

    /// The loop starts connecting `token`'s socket.
    pub(in crate::server) fn connecting(&mut self, token: Token) {
        match slot(token) {
            COMMANDS => self.publisher.connecting(),
            _ => self.tail.connecting(),
        }
    }

    /// A token no waiter holds.
    pub(in crate::server) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// The tail is connected and reading.
    pub(in crate::server) fn tail_ready(&self) -> bool {
        self.tail.link().is_ready()
    }

    /// Publishes can be sent now: connected, and Redis reads what it is
    /// sent.
    pub(in crate::server) fn accepts_publishes(&self) -> bool {
        self.publisher.link().is_ready() && self.wires[COMMANDS].out.len() <= waiters::MOST_UNSENT
    }

    /// The command connection.
    pub(in crate::server) fn publisher(&mut self) -> (&mut Publisher, &mut Vec<u8>) {
        (&mut self.publisher, &mut self.wires[COMMANDS].out)
    }

    /// What `/stats`, `/metrics` and `/healthz` show.
    pub(in crate::server) fn figures(&self) -> BusFigures {
        let (commands, tail) = (
            LinkStatus::of(self.publisher.link()),
            LinkStatus::of(self.tail.link()),
        );
        BusFigures {
            connected: commands.connected && tail.connected,
            reconnects: commands.reconnects + tail.reconnects,
            last_id: self.tail.last_id(),
            lag_ms: self.lag_ms,
            round_trip_us: self.publisher.last_round_trip().map(|rtt| rtt.as_micros() as u64),
        }
    }

    /// Seconds until the command connection tries again: `Retry-After`.
    pub(in crate::server) fn retry_after(&self, now: Instant) -> u64 {
        let at = self.publisher.link().retry_at().unwrap_or(now);
        at.saturating_duration_since(now).as_secs().clamp(1, 30)
    }

    /// When the command connection counts as dead if Redis stays silent:
    /// a connect or handshake, or the oldest command, unanswered for
    /// [`REPLY_TIMEOUT`].
    pub(in crate::server) fn commands_deadline(&self) -> Option<Instant> {
        self.wires[COMMANDS].socket.as_ref()?;
        match self.publisher.link().is_ready() {
            true => self.publisher.oldest_sent().map(|at| at + REPLY_TIMEOUT),
            false => self.wires[COMMANDS].heard.map(|at| at + REPLY_TIMEOUT),
        }
    }

    /// When the tailing connection counts as dead if Redis stays silent:
    /// its handshake unanswered, or its reads silent past their `BLOCK`.
    pub(in crate::server) fn tail_deadline(&self) -> Option<Instant> {
        self.wires[TAIL].socket.as_ref()?;
        let allowed = if self.tail.link().is_ready() {
            TAIL_SILENCE
        } else {
            REPLY_TIMEOUT
        };
        self.wires[TAIL].heard.map(|at| at + allowed)
    }

    /// The nearest moment something is due: a reconnect, a reply's or the
    /// tail's deadline, a parked stream's wait.
    pub(in crate::server) fn deadline(&self) -> Option<Instant> {
        let retries = [self.publisher.link().retry_at(), self.tail.link().retry_at()];
        let silent = [self.commands_deadline(), self.tail_deadline()];
        let parked = self.parked.iter().map(|parked| parked.deadline).min();
        retries.into_iter().chain(silent).chain([parked]).flatten().min()
    }
}
