//! The request path without sockets: a head through `parse_head`, its
//! body through the chunked decoder (whole, and cut at a point the input
//! chooses, which must agree), and the parsed request through routing and
//! the publish / subscribe checks. Any panic is a finding.
//!
//! The first input byte picks the cut point and the body limit; the rest is
//! what a client sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ssed::http::chunked::ChunkedDecoder;
use ssed::http::request::parse_head;
use ssed::http::BodyFraming;
use ssed::{handlers, routes};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let max_body = usize::from(control) * 16;
    match parse_head(input) {
        Ok(Some((mut request, used))) => {
            assert!(used <= input.len());
            // The head alone parses the same: nothing after it was read.
            assert_eq!(parse_head(&input[..used]), Ok(Some((request.clone(), used))));
            let rest = &input[used..];
            match request.framing {
                BodyFraming::Chunked => {
                    let cut = usize::from(control) % (rest.len() + 1);
                    let whole = decode(&[rest], max_body);
                    let split = decode(&[&rest[..cut], &rest[cut..]], max_body);
                    assert_eq!(whole, split, "chunked result depends on the cut at {cut}");
                    if let Ok((body, _, _)) = whole {
                        assert!(body.len() <= max_body);
                        request.body = body;
                    }
                }
                BodyFraming::Length(length) => {
                    let take = (length.min(rest.len() as u64)) as usize;
                    request.body = rest[..take].to_vec();
                }
                BodyFraming::None => {}
            }
            let _ = routes::route(request.method, request.path());
            let _ = handlers::publish(&request, Some("token"), false);
            let _ = handlers::publish(&request, None, true);
            let _ = handlers::subscription(&request);
        }
        Ok(None) => {
            // Incomplete: still incomplete (or refused) with less.
            if !input.is_empty() {
                assert!(!matches!(parse_head(&input[..input.len() - 1]), Ok(Some(_))));
            }
        }
        Err(rejection) => {
            let _ = rejection.response();
        }
    }
});

/// Decodes `pieces` as they would arrive, offering unused bytes again.
fn decode(pieces: &[&[u8]], max_body: usize) -> Result<(Vec<u8>, usize, bool), String> {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut pending = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        pending.extend_from_slice(piece);
        let used = decoder
            .decode(&pending, &mut body, max_body)
            .map_err(|e| e.to_string())?;
        consumed += used;
        pending.drain(..used);
        if decoder.is_done() {
            break;
        }
    }
    Ok((body, consumed, decoder.is_done()))
}
