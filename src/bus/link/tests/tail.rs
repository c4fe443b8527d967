//! The tailing connection: history, reads, and what a reconnect finds.

use super::*;

fn feed(tail: &mut Tail, bytes: &[u8], out: &mut Vec<u8>) -> Vec<TailEvent> {
    tail.received(bytes, at(0), out)
}

/// Entries as a reply holds them and as they are parsed.
type Entries = Vec<(Reply, Entry)>;

const READ: &str = "XREAD COUNT 100 BLOCK 5000 STREAMS ssed:log";

/// A tail connected, its handshake written, nothing received.
fn connected(history: usize) -> Tail {
    let mut tail = Tail::new(&settings(0, history), 3, at(0));
    tail.connecting();
    let mut out = Vec::new();
    tail.connected(&mut out);
    assert_eq!(lines(&out), ["PING"]);
    tail
}

/// A tail that has read the history `entries` (newest first, as Redis
/// answers) and has an `XREAD` in flight.
fn started(entries: &[(Reply, Entry)]) -> Tail {
    let mut tail = connected(10);
    let mut out = Vec::new();
    tail.received(&wire(&[ok("PONG"), range(entries)]), at(0), &mut out);
    tail
}

/// Loses a started tail's connection and brings it back: what it wrote.
fn reconnect(tail: &mut Tail) -> Vec<u8> {
    tail.lost(at(100));
    assert!(!tail.link().is_ready());
    tail.connecting();
    let mut out = Vec::new();
    tail.connected(&mut out);
    assert!(tail.received(b"+PONG\r\n", at(300), &mut out).is_empty());
    out
}

#[test]
fn start_fills_the_history_oldest_first_then_reads_from_the_newest() {
    let (e1, e2, e3) = (entry(1, "a"), entry(2, "b"), entry(3, "c"));
    // (history wanted, XREVRANGE COUNT, entries Redis has newest first,
    //  history handed over, first read after)
    let table: Vec<(usize, &str, Entries, Vec<Entry>, &str)> = vec![
        (
            3,
            "3",
            vec![e3.clone(), e2.clone(), e1.clone()],
            vec![e1.1.clone(), e2.1.clone(), e3.1.clone()],
            "3-0",
        ),
        (3, "3", vec![], vec![], "0-0"),
        (
            2,
            "2",
            vec![e3.clone(), e2.clone()],
            vec![e2.1.clone(), e3.1.clone()],
            "3-0",
        ),
        // No history wanted: still ask for the newest, to read after it.
        (0, "1", vec![e3.clone()], vec![], "3-0"),
    ];
    for (history, count, entries, handed, after) in table {
        let tail = connected(history);
        let bytes = wire(&[ok("PONG"), range(&entries)]);
        let (tail, events, out) = fed_every_way(&tail, &bytes, feed);
        assert_eq!(events, vec![TailEvent::History(handed)]);
        let expected = [
            format!("XREVRANGE ssed:log + - COUNT {count}"),
            format!("{READ} {after}"),
        ];
        assert_eq!(lines(&out), expected);
        let last = entries.first().map(|(_, entry)| entry.id);
        assert_eq!(tail.last_id(), last);
    }
}

#[test]
fn a_read_that_times_out_is_issued_again() {
    let tail = started(&[entry(3, "c")]);
    let (tail, events, out) = fed_every_way(&tail, &wire(&[Reply::Nil]), feed);
    assert!(events.is_empty());
    assert_eq!(lines(&out), [format!("{READ} 3-0")]);
    assert_eq!(tail.last_id(), Some(id(3, 0)));
}

#[test]
fn entries_read_are_delivered_in_order_and_the_next_read_follows_them() {
    let tail = started(&[entry(3, "c")]);
    let (e4, e5, e9) = (entry(4, "d"), entry(5, "e"), entry(9, "f"));
    let bytes = wire(&[
        xread(&[e4.clone(), e5.clone()]),
        Reply::Nil,
        xread(std::slice::from_ref(&e9)),
    ]);
    let (tail, events, out) = fed_every_way(&tail, &bytes, feed);
    let delivered = vec![
        TailEvent::Delivered(e4.1),
        TailEvent::Delivered(e5.1),
        TailEvent::Delivered(e9.1),
    ];
    assert_eq!(events, delivered);
    let reads = [
        format!("{READ} 5-0"),
        format!("{READ} 5-0"),
        format!("{READ} 9-0"),
    ];
    assert_eq!(lines(&out), reads);
    assert_eq!(tail.last_id(), Some(id(9, 0)));
}

#[test]
fn an_entry_not_after_the_last_is_not_delivered_twice() {
    let tail = started(&[entry(3, "c")]);
    let (e4, e2) = (entry(4, "d"), entry(2, "b"));
    let bytes = wire(&[xread(&[entry(3, "c"), e4.clone(), e2])]);
    let (_, events, _) = fed_every_way(&tail, &bytes, feed);
    assert_eq!(events, vec![TailEvent::Delivered(e4.1)]);
}

#[test]
fn a_reconnect_checks_the_last_id_then_resumes_or_tells_a_loss() {
    let (e3, e5, e7, e8) = (entry(3, "c"), entry(5, "e"), entry(7, "g"), entry(8, "h"));
    // (is 5-0 there, the oldest entry, events, the read after)
    let table: Vec<(Entries, Entries, Vec<TailEvent>, &str)> = vec![
        (vec![e5.clone()], vec![e3.clone()], vec![], "5-0"),
        (
            vec![],
            vec![e7.clone()],
            vec![TailEvent::Lost { last: id(5, 0) }],
            "5-0",
        ),
        (
            vec![],
            vec![e3.clone()],
            vec![TailEvent::Lost { last: id(5, 0) }],
            "5-0",
        ),
        // A stream that came back empty (Redis restarted without
        // persistence): everything after 5-0 that was not delivered is gone.
        (vec![], vec![], vec![TailEvent::Lost { last: id(5, 0) }], "0-0"),
    ];
    for (there, oldest, expected, after) in table {
        let mut tail = started(std::slice::from_ref(&e3));
        let mut out = Vec::new();
        tail.received(&wire(&[xread(std::slice::from_ref(&e5))]), at(0), &mut out);
        let out = reconnect(&mut tail);
        assert_eq!(
            lines(&out),
            [
                "PING",
                "XRANGE ssed:log 5-0 5-0 COUNT 1",
                "XRANGE ssed:log - + COUNT 1"
            ]
        );
        let bytes = wire(&[range(&there), range(&oldest)]);
        let (mut tail, events, out) = fed_every_way(&tail, &bytes, feed);
        assert_eq!(events, expected);
        assert_eq!(lines(&out), [format!("{READ} {after}")]);
        // Whatever the stream still holds after 5-0 follows, once.
        let mut out = Vec::new();
        let events = tail.received(&wire(&[xread(&[e7.clone(), e8.clone()])]), at(0), &mut out);
        assert_eq!(
            events,
            vec![
                TailEvent::Delivered(e7.1.clone()),
                TailEvent::Delivered(e8.1.clone())
            ]
        );
        assert_eq!(tail.link().reconnects(), 1);
    }
}

#[test]
fn a_reconnect_after_an_empty_start_reads_from_the_start() {
    let mut tail = started(&[]);
    let out = reconnect(&mut tail);
    assert_eq!(lines(&out), ["PING".to_string(), format!("{READ} 0-0")]);
}

#[test]
fn an_error_to_a_read_breaks_the_link_and_it_resumes_after_the_last_id() {
    let mut tail = started(&[entry(3, "c")]);
    let mut out = Vec::new();
    let events = tail.received(b"-WRONGTYPE not a stream\r\n", at(0), &mut out);
    assert_eq!(
        events,
        vec![TailEvent::Broken(LinkError::Redis(
            "WRONGTYPE not a stream".into()
        ))]
    );
    assert!(out.is_empty());
    assert!(tail.link().retry_at().is_some());
    let out = reconnect(&mut tail);
    assert_eq!(lines(&out)[1], "XRANGE ssed:log 3-0 3-0 COUNT 1");
}

#[test]
fn dollar_is_never_sent() {
    // A whole life: start on an empty stream, read, lose it twice.
    let mut tail = connected(5);
    let mut out = Vec::new();
    tail.received(
        &wire(&[ok("PONG"), range(&[]), Reply::Nil, xread(&[entry(4, "d")])]),
        at(0),
        &mut out,
    );
    out.extend(reconnect(&mut tail));
    tail.received(&wire(&[range(&[]), range(&[]), Reply::Nil]), at(0), &mut out);
    out.extend(reconnect(&mut tail));
    let reads: Vec<_> = commands(&out)
        .into_iter()
        .filter(|words| words[0] == "XREAD")
        .collect();
    assert_eq!(reads.len(), 6);
    for words in reads {
        let after = words.last().unwrap();
        assert!(StreamId::parse(after.as_bytes()).is_ok(), "{words:?}");
    }
}

#[test]
fn status_shows_both_links() {
    let mut publisher = Publisher::new(&settings(0, 10), 5, at(0));
    let mut tail = started(&[entry(3, "c")]);
    let status = Status::of(&publisher, &tail);
    assert!(!status.is_up());
    assert_eq!(status.publisher.retry_at, Some(at(0)));
    assert_eq!(
        (status.tail.connected, status.last_id, status.last_round_trip),
        (true, Some(id(3, 0)), None)
    );
    publisher.connected(&mut Vec::new());
    publisher.received(b"+PONG\r\n", at(0));
    publisher
        .publish(1, "t", None, "x", at(1), &mut Vec::new())
        .unwrap();
    publisher.received(&wire(&[bulk("4-0")]), at(4));
    let status = Status::of(&publisher, &tail);
    assert!(status.is_up());
    assert_eq!(status.last_round_trip, Some(Duration::from_millis(3)));
    tail.lost(at(5));
    assert!(!Status::of(&publisher, &tail).is_up());
}
