//! The event encoder: `sse::encode_event` then `Frame::chunk`, the work done
//! once per published event whatever the number of subscribers.
//!
//! `cargo bench --bench encode`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ssed::frame::Frame;
use ssed::sse::encode_event;

/// Event data shapes: what a load test sends, a typical JSON payload, and
/// multi-line text (one `data:` line per line).
fn cases() -> Vec<(&'static str, String)> {
    let padded = format!("seq=17 {}", "x".repeat(57));
    let json = format!(
        "{{\"user\":\"ada\",\"room\":\"general\",\"text\":\"{}\"}}",
        "hello world ".repeat(80)
    );
    let lines = "a line of text in a multi-line event\n".repeat(28);
    let big = "y".repeat(16 * 1024);
    vec![
        ("64B", padded),
        ("1KiB-json", json),
        ("1KiB-28-lines", lines),
        ("16KiB", big),
    ]
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_event+chunk");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    for (name, data) in cases() {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, data| {
            b.iter(|| {
                let encoded = encode_event(Some("1732190400000001"), Some("chat"), black_box(data)).unwrap();
                Frame::chunk(&encoded)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
