//! What a Redis (or anything pretending to be one) sends the bus: bytes
//! fed to both links' state machines, cut where the fuzzer says, as the
//! loop feeds them. Nothing may panic, and the decoder must never claim
//! more bytes than it was given.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ssed::bus::link::{Publisher, Settings, Tail};
use ssed::bus::resp::Decoder;

fuzz_target!(|data: &[u8]| {
    // The first byte says where to cut the rest in two.
    let Some((&cut, bytes)) = data.split_first() else { return };
    let cut = usize::from(cut).min(bytes.len());

    let mut decoder = Decoder::new();
    let mut input = bytes;
    while !input.is_empty() {
        match decoder.decode(input) {
            Ok((used, _)) => {
                assert!(used <= input.len());
                if used == 0 {
                    break;
                }
                input = &input[used..];
            }
            Err(_) => break,
        }
    }

    let settings = Settings {
        stream: b"ssed:log".to_vec(),
        db: 1,
        retention: 1000,
        history: 8,
        count: 100,
        block_ms: 5000,
    };
    let now = Instant::now();
    let mut out = Vec::new();
    let mut publisher = Publisher::new(&settings, 1, now);
    publisher.connecting();
    publisher.connected(&mut out);
    let mut tail = Tail::new(&settings, 2, now);
    tail.connecting();
    tail.connected(&mut out);
    for part in [&bytes[..cut], &bytes[cut..]] {
        let _ = publisher.received(part, now);
        let _ = publisher.publish(7, "t", Some("e"), "d", now, &mut out);
        let _ = tail.received(part, now, &mut out);
    }
});
