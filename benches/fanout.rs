//! Fan-out through the hub, in process: `Hub::publish` encodes the event
//! once, `Hub::subscribers_of` names every subscriber, and the shared
//! `Rc<Frame>` is pushed onto each subscriber's queue, as the server does
//! before its one `writev` per connection. No sockets: this is the
//! user-space part of a delivery, to set against the ~8-9 µs a loopback
//! `write` costs on the benchmark machine (see BENCHMARKS.md).
//!
//! `cargo bench --bench fanout` (it also prints the sizes of the
//! per-connection structs).

use std::collections::VecDeque;
use std::hint::black_box;
use std::mem::size_of;
use std::rc::Rc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ssed::conn::{Conn, Phase, Subscription};
use ssed::frame::Frame;
use ssed::hub::{Hub, Topics};
use ssed::timer::Due;

const START_ID: u64 = 1_700_000_000_000_000;

/// A hub with `n` subscribers to every topic and an empty queue for each.
fn setup(n: usize) -> (Hub, Vec<VecDeque<Rc<Frame>>>) {
    let mut hub = Hub::new(START_ID, 1024);
    for key in 0..n {
        hub.subscribe(key, &Topics::All);
    }
    (hub, (0..n).map(|_| VecDeque::new()).collect())
}

/// Publishes `events` events, queueing each on every subscriber, then
/// empties the queues as a completed write would.
fn publish_and_drain(hub: &mut Hub, queues: &mut [VecDeque<Rc<Frame>>], data: &str, events: usize) {
    for _ in 0..events {
        let event = hub.publish("load", None, data).unwrap();
        for key in hub.subscribers_of(&event.topic) {
            queues[key].push_back(event.frame.clone());
        }
    }
    for queue in queues.iter_mut() {
        black_box(queue.len());
        queue.clear();
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
    let data = format!("seq=17 {}", "x".repeat(57));
    let mut group = c.benchmark_group("fanout");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    for n in [1_000usize, 10_000] {
        // One event to everyone: what a single publish costs before the writes.
        let (mut hub, mut queues) = setup(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("one-event", n), &n, |b, _| {
            b.iter(|| publish_and_drain(&mut hub, &mut queues, &data, 1))
        });
        // A pipelined burst: 64 events queued on everyone before one flush.
        let (mut hub, mut queues) = setup(n);
        group.throughput(Throughput::Elements(64 * n as u64));
        group.bench_with_input(BenchmarkId::new("burst-64", n), &n, |b, _| {
            b.iter(|| publish_and_drain(&mut hub, &mut queues, &data, 64))
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
