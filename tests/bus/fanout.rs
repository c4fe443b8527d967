//! Three processes on one Redis, two of them sharing a port: publishes on
//! every one of them reach every subscriber on every one of them, once,
//! in one order, under one set of ids.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ssed_testkit::json::json_scalar;
use ssed_testkit::redis::Persistence;

use crate::check::Ledger;
use crate::clients::{Control, Outcome, Plan, Publisher, Reader};
use crate::cluster::{Cluster, Port};

#[test]
#[ignore = "needs redis-server; run by test.sh"]
fn every_subscriber_on_every_process_gets_every_event_once_in_one_order() {
    // Over TCP this time (redis://127.0.0.1:PORT); the others use a socket.
    let mut cluster = Cluster::redis_tcp(Persistence::Aof);
    cluster.add("a", Port::Share, &[]);
    let shared = cluster.nodes[0].shared.expect("a shares a port");
    cluster.add("b", Port::Join(shared), &[]);
    cluster.add("c", Port::Own, &[]);
    assert_eq!(cluster.nodes[1].shared, Some(shared));

    // Two readers on each process's own port: every topic, and topic a.
    let control = Arc::new(Control::default());
    let mut readers = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let all = Reader::spawn(
            &format!("{}/all", node.name),
            Plan::Steady(node.addr),
            None,
            control.clone(),
            i as u64,
        );
        let a = Reader::spawn(
            &format!("{}/a", node.name),
            Plan::Steady(node.addr),
            Some(&["a"]),
            control.clone(),
            i as u64,
        );
        readers.extend([all, a]);
    }
    control.wait_ready(readers.len(), Duration::from_secs(10));
    // Readers through the shared port, until the kernel has put at least
    // two on each of its two processes.
    let on_own: Vec<u64> = cluster.nodes[..2].iter().map(|n| n.subscribers()).collect();
    for i in 0.. {
        let spread: Vec<u64> = cluster.nodes[..2]
            .iter()
            .zip(&on_own)
            .map(|(n, own)| n.subscribers().saturating_sub(*own))
            .collect();
        if spread.iter().all(|&n| n >= 2) {
            break;
        }
        assert!(
            i < 40,
            "40 connections to {shared}, spread over a and b as {spread:?}"
        );
        let name = format!("shared/{i}");
        readers.push(Reader::spawn(
            &name,
            Plan::Steady(shared),
            None,
            control.clone(),
            100 + i,
        ));
        control.wait_ready(readers.len(), Duration::from_secs(10));
    }

    // The publish answer in bus mode: the stream id, as a JSON string.
    let first = cluster.nodes[2].addr;
    let answer = crate::clients::exchange(
        first,
        "POST /publish?topic=b HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 9\r\n\r\nb/first/0",
    )
    .expect("publish");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.body.contains(r#""id":""#),
        "the id is a JSON string: {}",
        answer.body
    );
    let id = json_scalar(&answer.body, "id").and_then(ssed_testkit::id::EventId::parse);
    assert!(id.is_some(), "the id is <ms>-<seq>: {}", answer.body);
    assert!(
        json_scalar(&answer.body, "subscribers").is_some(),
        "{}",
        answer.body
    );
    let mut publishes = vec![crate::clients::Publish {
        token: "b/first/0".into(),
        topic: "b".into(),
        to: first,
        sent: std::time::Instant::now(),
        outcome: Outcome::Published(id.expect("checked")),
    }];

    // Four publishers at once: one per process's own port, one on the shared port.
    let mut targets = cluster.addrs();
    targets.push(shared);
    let publishers = Publisher::one_each(&targets, &["a", "b"], Duration::from_millis(8));
    thread::sleep(Duration::from_millis(1500));
    for publisher in publishers {
        publishes.extend(publisher.stop());
    }
    let (ledger, reports) = Ledger::settle(
        publishes,
        &control,
        readers,
        "with Redis up every publish is answered 200",
    );
    let published = ledger.counts().0;

    // The same ids in the same order everywhere: every reader of every
    // topic saw exactly one sequence.
    let sequences: Vec<Vec<String>> = reports
        .iter()
        .filter(|r| r.topics.is_none())
        .map(|r| r.events().map(|(id, _)| id.to_string()).collect())
        .collect();
    assert!(sequences.iter().all(|s| s == &sequences[0]));
    assert_eq!(sequences[0].len(), published);

    // Every process shows the bus: up, never reconnected, at the newest
    // id, with a lag and (having published) a round trip; /healthz is 200.
    let newest = sequences[0].last().expect("events");
    for node in &cluster.nodes {
        let stats = node.stats();
        let bus = &stats["bus"];
        assert_eq!(bus["connected"], true, "{}: {stats}", node.name);
        assert_eq!(bus["reconnects"], 0, "{}: {stats}", node.name);
        assert_eq!(bus["last_id"], newest.as_str(), "{}: {stats}", node.name);
        assert!(bus["lag_ms"].is_u64(), "{}: {stats}", node.name);
        assert!(bus["publish_round_trip_us"].is_u64(), "{}: {stats}", node.name);
        let metrics = node.get("/metrics").expect("/metrics").body;
        assert!(
            metrics.contains("\nssed_bus_connected 1\n"),
            "{}: {metrics}",
            node.name
        );
        let health = node.get("/healthz").expect("/healthz");
        assert_eq!((health.status, health.body.trim()), (200, "ok"), "{}", node.name);
    }
}
