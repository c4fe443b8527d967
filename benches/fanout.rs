//! Fan-out through the real server, as it runs: `Server::publish` has the
//! service encode the event once, the loop queues that frame on every
//! subscriber (`server/output.rs`, `deliver`), and one turn of the loop
//! writes it to N real loopback sockets, one system call each. Only the
//! publish and the turn are timed; the subscribers' reads that make room
//! for the next round are not.
//!
//! `cargo bench --bench fanout` (it also prints the sizes of the
//! per-connection structs).
//!
//! Both ends of every subscriber live in this process, so N is bounded by
//! half the open-file limit (20,000 here): 1,000 and 8,000.

use std::hint::black_box;
use std::io::{ErrorKind, Read, Write};
use std::mem::size_of;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mio::Events;
use ssed::conn::{Conn, Phase, Subscription};
use ssed::timer::Due;
use ssed::topics::Topics;
use ssed::{Config, Server};

/// A server with `n` subscribers to every topic, and their sockets.
struct Rig {
    server: Server,
    events: Events,
    clients: Vec<TcpStream>,
    buf: Vec<u8>,
}

impl Rig {
    fn new(n: usize) -> Rig {
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("an address")],
            tick: None,
            heartbeat: None,
            max_queue: 64 << 20,
            ..Config::default()
        };
        let mut server = Server::bind(config, n + 64).expect("bind");
        let addr = server.local_addrs()[0];
        let mut events = Events::with_capacity(1024);
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let mut client = TcpStream::connect(addr).expect("connect");
            client
                .write_all(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
                .expect("request");
            client.set_nonblocking(true).expect("nonblocking");
            clients.push(client);
            // Accept as we go, so the listen backlog never overflows.
            if clients.len() % 256 == 0 {
                server.turn(&mut events, Some(Duration::ZERO)).expect("turn");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.snapshot().subscribers < n {
            assert!(Instant::now() < deadline, "subscribers did not all connect");
            server
                .turn(&mut events, Some(Duration::from_millis(10)))
                .expect("turn");
        }
        let mut rig = Rig {
            server,
            events,
            clients,
            buf: vec![0; 64 * 1024],
        };
        rig.drain();
        rig
    }

    /// Publishes `count` events and runs the turn that writes them: the
    /// timed part. Returns how long it took.
    fn round(&mut self, data: &str, count: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            black_box(self.server.publish("load", None, data).expect("publish"));
        }
        self.server
            .turn(&mut self.events, Some(Duration::ZERO))
            .expect("turn");
        start.elapsed()
    }

    /// Reads what every subscriber was sent, so the next round has room.
    fn drain(&mut self) {
        for client in &mut self.clients {
            loop {
                match client.read(&mut self.buf) {
                    Ok(0) => panic!("a subscriber was closed"),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
}

fn print_sizes() {
    eprintln!(
        "sizes: Conn {} B, Phase {} B, Subscription {} B, Topics {} B, timer entry {} B, mio TcpStream {} B",
        size_of::<Conn>(),
        size_of::<Phase>(),
        size_of::<Subscription>(),
        size_of::<Topics>(),
        size_of::<Due>(),
        size_of::<mio::net::TcpStream>(),
    );
}

fn fanout(c: &mut Criterion) {
    print_sizes();
    if let Err(e) = ssed::os::raise_file_limit() {
        eprintln!("could not raise the open-file limit: {e}");
    }
    let data = format!("seq=17 {}", "x".repeat(57));
    let mut group = c.benchmark_group("fanout");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for n in [1_000usize, 8_000] {
        let mut rig = Rig::new(n);
        for (name, count) in [("one-event", 1usize), ("burst-64", 64)] {
            group.throughput(Throughput::Elements((count * n) as u64));
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += rig.round(&data, count);
                        rig.drain();
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
