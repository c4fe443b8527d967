//! The request path without sockets, as a connection drives it: what a
//! client sent goes through the real request reader (`RequestReader`),
//! whole and cut at a point the input chooses, with or without being held
//! back as backpressure does (which must all agree), and every request it
//! reads goes to the service, which answers it (and publishes, and opens
//! streams with replays) as the loop would have it do. Any panic is a
//! finding.
//!
//! The first input byte picks the cut point, the body limit and whether
//! the connection is over capacity; the rest is what a client sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ssed::clock::Now;
use ssed::http::reader::{RequestReader, Step};
use ssed::http::{Rejection, Request};
use ssed::service::{Caller, Service};
use ssed::Config;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let max_body = usize::from(control) * 16;
    let cut = usize::from(control) % (input.len() + 1);
    let whole = read_all(&[input], max_body, false);
    let split = read_all(&[&input[..cut], &input[cut..]], max_body, control & 1 == 1);
    assert_eq!(whole, split, "the reader's result depends on the cut at {cut}");

    let now = Now::read();
    let mut service = Service::new(Config::default(), now);
    let caller = Caller {
        client: 1,
        over_capacity: control & 2 != 0,
    };
    for request in &whole.0 {
        assert!(request.body.len() <= max_body);
        let _ = service.handle(request, caller, now);
    }
    if let Some(rejection) = whole.1 {
        let _ = service.refuse(rejection, None, now);
    }
});

/// Reads every request from `pieces` as reads would bring them; with
/// `hold`, the second piece is first held back, as backpressure does.
fn read_all(pieces: &[&[u8]], max_body: usize, hold: bool) -> (Vec<Request>, Option<Rejection>) {
    let mut reader = RequestReader::new(max_body);
    let mut requests = Vec::new();
    for (index, piece) in pieces.iter().enumerate() {
        let mut input: &[u8] = piece;
        if hold && index == 1 {
            reader.hold(input);
            input = &[];
        }
        loop {
            let (used, step) = reader.read(input);
            assert!(used <= input.len());
            input = &input[used..];
            match step {
                Step::Request(request) => requests.push(request),
                Step::SendContinue => {}
                Step::NeedMore => {
                    assert!(input.is_empty());
                    break;
                }
                Step::Reject(rejection) => return (requests, Some(rejection)),
            }
        }
    }
    (requests, None)
}
