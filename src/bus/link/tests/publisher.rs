//! The command connection: `XADD`s pipelined and answered in order.

use super::*;

fn feed(publisher: &mut Publisher, bytes: &[u8], _: &mut Vec<u8>) -> Vec<PublishEvent> {
    publisher.received(bytes, at(30))
}

/// A publisher whose handshake is done, at `at(0)`.
fn ready() -> Publisher {
    let mut publisher = Publisher::new(&settings(0, 10), 5, at(0));
    publisher.connecting();
    publisher.connected(&mut Vec::new());
    assert_eq!(publisher.received(b"+PONG\r\n", at(0)), vec![PublishEvent::Ready]);
    publisher
}

/// Publishes `data` for tokens 1, 2, 3 at `at(10)`; returns what was written.
fn three(publisher: &mut Publisher) -> Vec<u8> {
    let mut out = Vec::new();
    for (token, data) in [(1, "a"), (2, "b"), (3, "c")] {
        publisher
            .publish(token, "t", Some("e"), data, at(10), &mut out)
            .unwrap();
    }
    out
}

#[test]
fn xadds_are_pipelined_and_answered_in_order() {
    let mut publisher = ready();
    let out = three(&mut publisher);
    assert_eq!(
        lines(&out),
        [
            "XADD ssed:log MAXLEN ~ 1000 * topic t event e data a",
            "XADD ssed:log MAXLEN ~ 1000 * topic t event e data b",
            "XADD ssed:log MAXLEN ~ 1000 * topic t event e data c",
        ]
    );
    assert_eq!(publisher.in_flight(), 3);
    let replies = wire(&[
        bulk("1700000000000-0"),
        bulk("1700000000000-1"),
        bulk("1700000000001-0"),
    ]);
    let (publisher, events, _) = fed_every_way(&publisher, &replies, feed);
    let expected = vec![
        PublishEvent::Published {
            token: 1,
            id: id(1700000000000, 0),
        },
        PublishEvent::Published {
            token: 2,
            id: StreamId::new(1700000000000, 1),
        },
        PublishEvent::Published {
            token: 3,
            id: id(1700000000001, 0),
        },
    ];
    assert_eq!(events, expected);
    assert_eq!(publisher.in_flight(), 0);
    assert_eq!(publisher.last_round_trip(), Some(Duration::from_millis(20)));
}

#[test]
fn an_error_reply_refuses_only_its_own_xadd() {
    let mut publisher = ready();
    three(&mut publisher);
    let replies = wire(&[bulk("5-0"), err("OOM command not allowed"), bulk("6-0")]);
    let (publisher, events, _) = fed_every_way(&publisher, &replies, feed);
    let expected = vec![
        PublishEvent::Published {
            token: 1,
            id: id(5, 0),
        },
        PublishEvent::Refused {
            token: 2,
            reason: "OOM command not allowed".into(),
        },
        PublishEvent::Published {
            token: 3,
            id: id(6, 0),
        },
    ];
    assert_eq!(events, expected);
    assert!(publisher.link().is_ready());
}

#[test]
fn a_lost_link_leaves_every_xadd_in_flight_unknown_and_resends_none() {
    let mut publisher = ready();
    three(&mut publisher);
    let events = publisher.lost(at(20));
    let unknown: Vec<_> = (1..=3)
        .map(|token| PublishEvent::OutcomeUnknown { token })
        .collect();
    assert_eq!(events, unknown);
    assert_eq!(publisher.in_flight(), 0);
    // Back: the handshake is all that is written, and no reply is owed.
    let retry_at = publisher.link().retry_at().unwrap();
    assert!(publisher.link().retry_due(retry_at));
    publisher.connecting();
    let mut out = Vec::new();
    publisher.connected(&mut out);
    assert_eq!(lines(&out), ["PING"]);
    assert_eq!(
        publisher.received(b"+PONG\r\n", retry_at),
        vec![PublishEvent::Ready]
    );
    assert_eq!(publisher.in_flight(), 0);
    assert_eq!(publisher.link().reconnects(), 1);
}

#[test]
fn a_broken_reply_answers_the_rest_unknown() {
    // (replies to three XADDs, events)
    let table: Vec<(Vec<u8>, Vec<PublishEvent>)> = vec![
        (
            // An integer is no id: token 2's outcome is unknown, and so is 3's.
            wire(&[bulk("5-0"), Reply::Integer(1)]),
            vec![
                PublishEvent::Published {
                    token: 1,
                    id: id(5, 0),
                },
                PublishEvent::OutcomeUnknown { token: 2 },
                PublishEvent::OutcomeUnknown { token: 3 },
                PublishEvent::Broken(LinkError::Unexpected(streams::ReplyError::Shape(
                    "XADD answers a bulk string",
                ))),
            ],
        ),
        (
            [wire(&[bulk("5-0")]), b"!".to_vec()].concat(),
            vec![
                PublishEvent::Published {
                    token: 1,
                    id: id(5, 0),
                },
                PublishEvent::OutcomeUnknown { token: 2 },
                PublishEvent::OutcomeUnknown { token: 3 },
                PublishEvent::Broken(LinkError::Resp(resp::RespError::UnknownType(b'!'))),
            ],
        ),
        (
            wire(&[bulk("1-0"), bulk("2-0"), bulk("3-0"), bulk("4-0")]),
            vec![
                PublishEvent::Published {
                    token: 1,
                    id: id(1, 0),
                },
                PublishEvent::Published {
                    token: 2,
                    id: id(2, 0),
                },
                PublishEvent::Published {
                    token: 3,
                    id: id(3, 0),
                },
                PublishEvent::Broken(LinkError::Unexpected(streams::ReplyError::Shape(
                    "a reply to no command",
                ))),
            ],
        ),
    ];
    for (replies, expected) in table {
        let mut publisher = ready();
        three(&mut publisher);
        let (publisher, events, _) = fed_every_way(&publisher, &replies, feed);
        assert_eq!(events, expected);
        assert!(publisher.link().retry_at().is_some(), "disconnected");
        assert_eq!(publisher.in_flight(), 0);
    }
}

#[test]
fn publishing_while_down_is_unavailable_at_once() {
    let mut publisher = Publisher::new(&settings(0, 10), 5, at(0));
    let mut out = Vec::new();
    let down = publisher.publish(1, "t", None, "a", at(0), &mut out);
    assert_eq!(
        down,
        Err(Unavailable {
            retry_at: Some(at(0))
        })
    );
    publisher.connecting();
    publisher.connected(&mut Vec::new());
    let handshaking = publisher.publish(1, "t", None, "a", at(0), &mut out);
    assert_eq!(handshaking, Err(Unavailable { retry_at: None }));
    publisher.received(b"-LOADING\r\n", at(5));
    let retry_at = publisher.link().retry_at();
    assert!(retry_at.is_some());
    assert_eq!(
        publisher.publish(1, "t", None, "a", at(6), &mut out),
        Err(Unavailable { retry_at })
    );
    assert!(out.is_empty(), "nothing written");
    assert_eq!(publisher.in_flight(), 0);
}

#[test]
fn ranges_share_the_pipeline_with_xadds_in_order() {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let mut publisher = ready();
    let mut out = Vec::new();
    publisher.publish(1, "t", None, "a", at(10), &mut out).unwrap();
    let check = (Included(id(5, 0)), Included(id(5, 0)));
    publisher.range(2, check, 1, at(10), &mut out).unwrap();
    publisher
        .range(3, (Excluded(id(5, 0)), Unbounded), 100, at(10), &mut out)
        .unwrap();
    assert_eq!(
        lines(&out),
        [
            "XADD ssed:log MAXLEN ~ 1000 * topic t data a",
            "XRANGE ssed:log 5-0 5-0 COUNT 1",
            "XRANGE ssed:log (5-0 + COUNT 100",
        ]
    );
    assert_eq!(publisher.oldest_sent(), Some(at(10)));
    let (one, parsed) = entry(6, "x");
    let replies = wire(&[bulk("9-0"), range(&[]), range(&[(one, parsed.clone())])]);
    for cut in 0..=replies.len() {
        let mut copy = publisher.clone();
        let mut events = copy.received(&replies[..cut], at(20));
        events.extend(copy.received(&replies[cut..], at(20)));
        assert_eq!(
            events,
            [
                PublishEvent::Published {
                    token: 1,
                    id: id(9, 0)
                },
                PublishEvent::Range {
                    token: 2,
                    entries: vec![]
                },
                PublishEvent::Range {
                    token: 3,
                    entries: vec![parsed.clone()]
                },
            ],
            "cut at {cut}"
        );
        assert_eq!(copy.oldest_sent(), None);
    }
    // A range lost in flight is answered like a publish: unknown.
    assert_eq!(
        publisher.lost(at(30)),
        [1, 2, 3].map(|token| PublishEvent::OutcomeUnknown { token })
    );
}
