//! `Last-Event-ID` on another process than the one the id was seen on:
//! from that process's local history when it holds the id, from Redis
//! (`XRANGE`) when it does not, and `event: gap` first when neither can
//! vouch for what follows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ssed_testkit::id::EventId;
use ssed_testkit::json::json_scalar;
use ssed_testkit::redis::Persistence;

use crate::check::Ledger;
use crate::clients::{publish_n, Control, Plan, Publish, Publisher, Reader};
use crate::cluster::{Cluster, Port};
use crate::common::{SseEvent, Subscriber};

/// Reads the next events and expects exactly these publishes, in order.
fn expect_events(subscriber: &mut Subscriber, owed: &[Publish], what: &str) {
    for p in owed {
        let event = subscriber.next_event();
        let got = (event.id.as_deref(), event.data.as_str());
        assert_eq!(
            got,
            (Some(p.id().as_str()), p.token.as_str()),
            "{what}: {event:?}"
        );
    }
}

fn resume(addr: SocketAddr, id: &str) -> Subscriber {
    let mut subscriber = Subscriber::open(addr, "/events", &format!("Last-Event-ID: {id}\r\n"));
    assert_eq!(subscriber.response.status, 200);
    subscriber.connected();
    subscriber
}

#[test]
#[ignore = "needs redis-server; run by test.sh"]
fn a_subscriber_resumes_on_another_process_from_its_history_and_from_xrange() {
    let mut cluster = Cluster::redis(Persistence::Aof);
    cluster.add("a", Port::Own, &[]);
    cluster.add("b", Port::Own, &["--history", "4"]);
    cluster.add("c", Port::Own, &[]);
    let addrs = cluster.addrs();
    let (a, b, c) = (addrs[0], addrs[1], addrs[2]);

    // A subscriber on a reads five events, and goes away.
    let mut on_a = Subscriber::open(a, "/events", "");
    on_a.connected();
    let seen = publish_n(&addrs, "seen", 5);
    expect_events(&mut on_a, &seen, "live on a");
    drop(on_a);
    let missed = publish_n(&addrs, "missed", 10);
    let last_seen = seen[4].id().as_str();

    // c keeps 1024 events: it replays the ten from its own history.
    let mut on_c = resume(c, last_seen);
    expect_events(&mut on_c, &missed, "replay on c (local history)");
    // b keeps four: the ten come from Redis.
    let mut on_b = resume(b, last_seen);
    expect_events(&mut on_b, &missed, "replay on b (XRANGE)");

    // Both go on live, with nothing repeated at the seam.
    let live = publish_n(&addrs, "live", 3);
    expect_events(&mut on_c, &live, "live on c after the replay");
    expect_events(&mut on_b, &live, "live on b after the replay");

    // An id seen on b and resumed on a, the other way round.
    let mut again = resume(a, missed[2].id().as_str());
    expect_events(&mut again, &missed[3..], "replay on a");
    expect_events(&mut again, &live, "replay on a, then live");
}

#[test]
#[ignore = "needs redis-server; run by test.sh"]
fn replay_from_xrange_meets_the_live_stream_without_a_hole_or_a_duplicate() {
    let mut cluster = Cluster::redis(Persistence::Aof);
    cluster.add("a", Port::Own, &[]);
    cluster.add("b", Port::Own, &["--history", "4"]);
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    let before = publish_n(&[a], "before", 40);

    // Events keep coming through a while readers resume on b, each from
    // an older id than b holds: their replays (XRANGE) race the live tail.
    let publisher = Publisher::spawn("live", vec![a, b], &["t"], Duration::from_millis(4), 7);
    let control = Arc::new(Control::default());
    let mut readers = Vec::new();
    for (i, p) in before.iter().step_by(8).enumerate() {
        let after = Some(p.id().clone());
        let name = format!("from-{}", p.token);
        readers.push(Reader::spawn_after(
            &name,
            Plan::Steady(b),
            None,
            control.clone(),
            i as u64,
            after,
        ));
        thread::sleep(Duration::from_millis(150));
    }
    let mut publishes = publisher.stop();
    publishes.extend(before);
    let ledger = Ledger::new(publishes);
    assert_eq!(
        ledger.counts().1 + ledger.counts().2,
        0,
        "with Redis up every publish is answered 200"
    );
    control.finish(ledger.newest(), Duration::from_secs(20));
    let reports: Vec<_> = readers.into_iter().map(Reader::join).collect();
    ledger.assert_all(&reports, false);
}

/// The next event, which must be `event: gap` for `id`.
fn expect_gap(subscriber: &mut Subscriber, id: &str) -> SseEvent {
    let event = subscriber.next_event();
    assert_eq!(event.event.as_deref(), Some("gap"), "{event:?}");
    let data: serde_json::Value = serde_json::from_str(&event.data).expect("gap data is JSON");
    assert_eq!(data["last_event_id"], id, "{event:?}");
    assert!(data.get("oldest").is_some(), "{event:?}");
    event
}

#[test]
#[ignore = "needs redis-server; run by test.sh"]
fn an_id_the_stream_no_longer_holds_gets_a_gap_first() {
    let mut cluster = Cluster::redis(Persistence::Aof);
    // The stream keeps about ten entries (Redis trims whole nodes of a
    // hundred), the process four.
    cluster.add("a", Port::Own, &["--history", "4", "--bus-retention", "10"]);
    cluster.add("b", Port::Own, &[]);
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    let published = publish_n(&[a], "trim", 300);
    let first = published[0].id().as_str();
    let newest = published[299].id();

    for at in [a, b] {
        // Trimmed from the stream (and from a's history; b's 1024 may
        // still hold it, which is a replay, not a gap).
        let mut subscriber = resume(at, first);
        if at == a {
            expect_gap(&mut subscriber, first);
        }
        let mut event = subscriber.next_event();
        // Then what is retained, in order, up to the newest.
        let mut previous: Option<EventId> = None;
        loop {
            let id = event
                .id
                .as_deref()
                .and_then(EventId::parse)
                .expect("an event with an id");
            assert!(
                previous.as_ref().is_none_or(|p| *p < id),
                "{id} after {previous:?}"
            );
            if id == *newest {
                break;
            }
            previous = Some(id);
            event = subscriber.next_event();
        }
    }

    // Not a stream id at all.
    let mut subscriber = resume(a, "not-an-id");
    expect_gap(&mut subscriber, "not-an-id");

    // The publish answer names the id as a string, and /stats the bus.
    let stats = cluster.nodes[0].stats();
    let bus = &stats["bus"];
    assert_eq!(bus["connected"], true, "{stats}");
    assert_eq!(bus["last_id"], newest.as_str(), "{stats}");
    assert!(json_scalar(&stats.to_string(), "reconnects").is_some(), "{stats}");
}

#[test]
#[ignore = "needs redis-server; run by test.sh"]
fn a_client_ahead_of_the_process_it_resumes_on_waits_for_it_and_gets_no_gap() {
    let mut cluster = Cluster::redis(Persistence::Aof);
    cluster.add("a", Port::Own, &[]);
    cluster.add("b", Port::Own, &[]);
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    publish_n(&[a], "old", 3);

    // b is stopped, so it has not read E when a client that saw E on a
    // comes to b: the request waits in b's socket beside E's XREAD reply.
    let mut on_a = Subscriber::open(a, "/events", "");
    on_a.connected();
    cluster.nodes[1].signal(libc::SIGSTOP);
    let e = publish_n(&[a], "e", 1);
    expect_events(&mut on_a, &e, "E on a");
    let mut client = crate::common::Client::connect(b);
    let head = format!(
        "GET /events HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}\r\n\r\n",
        e[0].id()
    );
    client.send(head.as_bytes());
    cluster.nodes[1].signal(libc::SIGCONT);

    // Whichever b reads first, the client gets what follows E, no gap.
    let mut on_b = Subscriber::from_client(client);
    on_b.connected();
    let next = publish_n(&[a, b], "next", 4);
    expect_events(&mut on_b, &next, "after E, on b");
}
