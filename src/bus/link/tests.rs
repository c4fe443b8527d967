//! Scripted exchanges: replies written by hand as RESP, fed whole and cut
//! at every byte, with the clock moved by hand.

use super::*;
use crate::bus::resp::{self, Decoder, Reply};
use crate::bus::streams::{Entry, StreamId};

mod publisher;
mod tail;

/// A fixed origin; every moment in a test is `at(ms)` after it.
fn at(ms: u64) -> Instant {
    thread_local!(static ORIGIN: Instant = Instant::now());
    ORIGIN.with(|origin| *origin + Duration::from_millis(ms))
}

fn settings(db: u64, history: usize) -> Settings {
    Settings {
        stream: b"ssed:log".to_vec(),
        db,
        retention: 1000,
        history,
        count: 100,
        block_ms: 5000,
    }
}

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId::new(ms, seq)
}

/// The bytes of replies, as a server writes them.
fn wire(replies: &[Reply]) -> Vec<u8> {
    let mut out = Vec::new();
    for reply in replies {
        reply.encode(&mut out);
    }
    out
}

fn ok(text: &str) -> Reply {
    Reply::Simple(text.into())
}

fn err(text: &str) -> Reply {
    Reply::Error(text.into())
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec())
}

/// An entry of one event, `topic t data <data>`, as a reply and as parsed.
fn entry(ms: u64, data: &str) -> (Reply, Entry) {
    let reply = Reply::Array(vec![
        bulk(&id(ms, 0).to_string()),
        Reply::Array(vec![bulk("topic"), bulk("t"), bulk("data"), bulk(data)]),
    ]);
    let parsed = Entry {
        id: id(ms, 0),
        fields: vec![
            (b"topic".to_vec(), b"t".to_vec()),
            (b"data".to_vec(), data.as_bytes().to_vec()),
        ],
    };
    (reply, parsed)
}

/// An `XRANGE`/`XREVRANGE` reply of these entries.
fn range(entries: &[(Reply, Entry)]) -> Reply {
    Reply::Array(entries.iter().map(|(reply, _)| reply.clone()).collect())
}

/// An `XREAD` reply of these entries, from `ssed:log`.
fn xread(entries: &[(Reply, Entry)]) -> Reply {
    Reply::Array(vec![Reply::Array(vec![bulk("ssed:log"), range(entries)])])
}

/// The commands in bytes a link wrote, as words.
fn commands(mut bytes: &[u8]) -> Vec<Vec<String>> {
    let mut decoder = Decoder::new();
    let mut commands = Vec::new();
    while !bytes.is_empty() {
        let (used, reply) = decoder.decode(bytes).expect("commands are RESP");
        bytes = &bytes[used..];
        let words = reply.expect("whole commands").into_array().expect("an array");
        let words = words
            .into_iter()
            .map(|word| String::from_utf8(word.into_bulk().expect("bulk strings")).expect("text"));
        commands.push(words.collect());
    }
    commands
}

/// `commands`, each joined by spaces: easier to read in a table.
fn lines(bytes: &[u8]) -> Vec<String> {
    commands(bytes).iter().map(|words| words.join(" ")).collect()
}

/// Feeds `bytes` to a copy of `state` whole, then cut in two at every
/// byte, then a byte at a time, and checks that every way gives the same
/// events and the same bytes written. Returns the state fed whole and
/// what came of it.
fn fed_every_way<T: Clone, E: PartialEq + std::fmt::Debug>(
    state: &T,
    bytes: &[u8],
    feed: impl Fn(&mut T, &[u8], &mut Vec<u8>) -> Vec<E>,
) -> (T, Vec<E>, Vec<u8>) {
    let mut whole = state.clone();
    let mut written = Vec::new();
    let events = feed(&mut whole, bytes, &mut written);
    for cut in 0..=bytes.len() {
        let mut copy = state.clone();
        let mut out = Vec::new();
        let mut got = feed(&mut copy, &bytes[..cut], &mut out);
        got.extend(feed(&mut copy, &bytes[cut..], &mut out));
        assert_eq!(got, events, "cut at {cut}");
        assert_eq!(out, written, "cut at {cut}");
    }
    let mut copy = state.clone();
    let mut out = Vec::new();
    let got: Vec<E> = bytes
        .iter()
        .flat_map(|byte| feed(&mut copy, std::slice::from_ref(byte), &mut out))
        .collect();
    assert_eq!(got, events, "a byte at a time");
    assert_eq!(out, written, "a byte at a time");
    (whole, events, written)
}

fn feed_link(link: &mut Link, bytes: &[u8], _: &mut Vec<u8>) -> Vec<Result<LinkEvent, LinkError>> {
    let mut events = Vec::new();
    let result = link.received(bytes, at(0), &mut events);
    let mut events: Vec<_> = events.into_iter().map(Ok).collect();
    events.extend(result.err().map(Err));
    events
}

#[test]
fn backoff_doubles_from_100ms_to_5s_with_20_percent_jitter() {
    // (failures, random, expected ms): random % 41 picks 80 % ..= 120 %.
    let table: &[(u32, u64, u64)] = &[
        (1, 20, 100),
        (1, 0, 80),
        (1, 40, 120),
        (1, 41, 80),
        (2, 20, 200),
        (3, 20, 400),
        (6, 20, 3200),
        (7, 20, 5000),
        (7, 40, 6000),
        (7, 0, 4000),
        (1000, 20, 5000),
        (u32::MAX, u64::MAX, 5000 * (80 + u64::MAX % 41) / 100),
        (0, 20, 100),
    ];
    for &(failures, random, ms) in table {
        assert_eq!(
            backoff(failures, random),
            Duration::from_millis(ms),
            "{failures} {random}"
        );
    }
}

#[test]
fn handshake_pings_and_selects_the_database_when_not_0() {
    // (db, written, replies, phase after)
    let table: &[(u64, &[&str], Vec<Reply>)] = &[
        (0, &["PING"], vec![ok("PONG")]),
        (2, &["SELECT 2", "PING"], vec![ok("OK"), ok("PONG")]),
    ];
    for (db, written, replies) in table {
        let mut link = Link::new(*db, 1, at(0));
        assert!(link.retry_due(at(0)), "the first attempt is due at once");
        link.connecting();
        assert!(!link.retry_due(at(10_000)));
        let mut out = Vec::new();
        link.connected(&mut out);
        assert_eq!(lines(&out), *written);
        assert_eq!(link.phase(), Phase::Handshaking { select: *db != 0 });
        let (link, events, _) = fed_every_way(&link, &wire(replies), feed_link);
        assert_eq!(events, vec![Ok(LinkEvent::Ready)]);
        assert!(link.is_ready());
        assert_eq!((link.reconnects(), link.retry_at()), (0, None));
    }
}

#[test]
fn replies_after_the_handshake_pass_through_in_order() {
    let mut link = Link::new(0, 1, at(0));
    link.connected(&mut Vec::new());
    let bytes = wire(&[ok("PONG"), bulk("1-0"), Reply::Nil, err("ERR no")]);
    let (_, events, _) = fed_every_way(&link, &bytes, feed_link);
    let expected = vec![
        Ok(LinkEvent::Ready),
        Ok(LinkEvent::Reply(bulk("1-0"))),
        Ok(LinkEvent::Reply(Reply::Nil)),
        Ok(LinkEvent::Reply(err("ERR no"))),
    ];
    assert_eq!(events, expected);
}

#[test]
fn a_failed_handshake_disconnects_with_backoff() {
    // (db, replies, the error)
    let loading = "LOADING Redis is loading the dataset in memory";
    let table: &[(u64, Vec<Reply>, LinkError)] = &[
        (0, vec![err(loading)], LinkError::Redis(loading.into())),
        (3, vec![ok("OK"), err(loading)], LinkError::Redis(loading.into())),
        (
            9,
            vec![err("ERR DB index is out of range")],
            LinkError::Redis("ERR DB index is out of range".into()),
        ),
        (
            0,
            vec![ok("OK")],
            LinkError::Unexpected(streams::ReplyError::Shape("not the status line expected")),
        ),
        (
            0,
            vec![bulk("PONG")],
            LinkError::Unexpected(streams::ReplyError::Shape("not the status line expected")),
        ),
    ];
    for (db, replies, error) in table {
        let mut link = Link::new(*db, 7, at(0));
        link.connected(&mut Vec::new());
        let (link, events, _) = fed_every_way(&link, &wire(replies), feed_link);
        assert_eq!(events, vec![Err(error.clone())]);
        let retry_at = link.retry_at().expect("disconnected");
        assert!(retry_at >= at(80) && retry_at <= at(120), "{retry_at:?}");
        assert!(!link.retry_due(at(79)) && link.retry_due(at(120)));
    }
    assert!(LinkError::Redis(loading.into()).is_loading());
    assert!(!LinkError::Redis("ERR LOADING".into()).is_loading());
}

#[test]
fn bytes_that_are_not_resp_disconnect() {
    let mut link = Link::new(0, 7, at(0));
    link.connected(&mut Vec::new());
    let (link, events, _) = fed_every_way(&link, b"+PONG\r\n?", feed_link);
    assert_eq!(
        events,
        vec![
            Ok(LinkEvent::Ready),
            Err(LinkError::Resp(resp::RespError::UnknownType(b'?')))
        ]
    );
    assert!(link.retry_at().is_some());
}

#[test]
fn loading_then_retry_then_ready() {
    let mut link = Link::new(0, 7, at(0));
    let mut now = 0;
    for _ in 0..3 {
        link.connecting();
        link.connected(&mut Vec::new());
        let mut events = Vec::new();
        let error = link.received(&wire(&[err("LOADING wait")]), at(now), &mut events);
        assert!(error.is_err_and(|error| error.is_loading()));
        let retry_at = link.retry_at().expect("disconnected");
        assert!(!link.retry_due(retry_at - Duration::from_millis(1)));
        assert!(link.retry_due(retry_at));
        now = (retry_at - at(0)).as_millis() as u64;
    }
    link.connecting();
    link.connected(&mut Vec::new());
    let mut events = Vec::new();
    link.received(b"+PONG\r\n", at(now), &mut events).unwrap();
    assert_eq!(events, vec![LinkEvent::Ready]);
    assert_eq!(link.reconnects(), 0, "never up before: not a reconnect");
}

#[test]
fn backoff_grows_is_capped_and_resets_once_ready() {
    let mut link = Link::new(0, 99, at(0));
    let mut now = at(0);
    let mut delays = Vec::new();
    for _ in 0..12 {
        link.connecting();
        link.lost(now); // connect refused
        let retry_at = link.retry_at().expect("disconnected");
        delays.push((retry_at - now).as_millis() as u64);
        link.lost(retry_at); // already down: nothing changes
        assert_eq!(link.retry_at(), Some(retry_at));
        now = retry_at;
    }
    let bases = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000, 5000];
    for (delay, base) in delays.iter().zip(bases) {
        assert!(*delay >= base * 8 / 10 && *delay <= base * 12 / 10, "{delays:?}");
    }
    assert!(
        delays.iter().collect::<std::collections::HashSet<_>>().len() > 6,
        "jittered: {delays:?}"
    );
    link.connecting();
    link.connected(&mut Vec::new());
    link.received(b"+PONG\r\n", now, &mut Vec::new()).unwrap();
    link.lost(now);
    let delay = link.retry_at().unwrap() - now;
    assert!(
        delay <= Duration::from_millis(120),
        "reset after ready: {delay:?}"
    );
    // Back up: a reconnect.
    link.connected(&mut Vec::new());
    link.received(b"+PONG\r\n", now, &mut Vec::new()).unwrap();
    assert_eq!(link.reconnects(), 1);
}

#[test]
fn bytes_while_disconnected_are_dropped() {
    let mut link = Link::new(0, 1, at(0));
    let mut events = Vec::new();
    assert_eq!(link.received(b"garbage", at(0), &mut events), Ok(()));
    assert!(events.is_empty());
}
