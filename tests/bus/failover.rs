//! One ssed process killed with `SIGKILL` under load: the subscribers it
//! held see their streams end, come back through the shared port (where
//! only its twin listens now) with `Last-Event-ID`, and miss nothing.
//!
//! ```text
//!   subscribers ──▶ 127.0.0.1:P ──┬──▶ ssed a   ✕ SIGKILL
//!        ▲                        └──▶ ssed b ◀── they all land here after
//!        └── resume with Last-Event-ID ───────┘
//!   publishers ──▶ b, c (their own ports)
//! ```

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ssed_testkit::redis::Persistence;

use crate::check::Ledger;
use crate::clients::{Control, Plan, Publisher, Reader, Seen};
use crate::cluster::{Cluster, Port};

#[test]
#[ignore = "needs redis-server; run by test.sh"]
fn subscribers_of_a_killed_process_resume_on_its_twin_and_miss_nothing() {
    let mut cluster = Cluster::redis(Persistence::Aof);
    cluster.add("a", Port::Share, &[]);
    let shared = cluster.nodes[0].shared.expect("a shares a port");
    cluster.add("b", Port::Join(shared), &[]);
    cluster.add("c", Port::Own, &[]);

    let control = Arc::new(Control::default());
    let c = cluster.nodes[2].addr;
    let mut readers = vec![Reader::spawn(
        "steady-c",
        Plan::Steady(c),
        None,
        control.clone(),
        1,
    )];
    control.wait_ready(1, Duration::from_secs(10));
    // Readers on the shared port until a holds at least three, b one.
    for i in 0.. {
        let (on_a, on_b) = (cluster.nodes[0].subscribers(), cluster.nodes[1].subscribers());
        if on_a >= 3 && on_b >= 1 {
            break;
        }
        assert!(i < 40, "40 connections to {shared}: {on_a} on a, {on_b} on b");
        let topics: Option<&[&str]> = if i % 3 == 2 { Some(&["x"]) } else { None };
        let reader = Reader::spawn(
            &format!("shared-{i}"),
            Plan::Resuming(shared),
            topics,
            control.clone(),
            10 + i,
        );
        readers.push(reader);
        control.wait_ready(readers.len(), Duration::from_secs(10));
    }
    let held_by_a = cluster.nodes[0].subscribers();

    let targets = vec![cluster.nodes[1].addr, c];
    let publishers = [
        Publisher::spawn("p0", targets.clone(), &["x", "y"], Duration::from_millis(10), 1),
        Publisher::spawn("p1", targets, &["x", "y"], Duration::from_millis(10), 2),
    ];
    thread::sleep(Duration::from_millis(1500));
    cluster.nodes[0].kill();
    thread::sleep(Duration::from_millis(2000));
    let publishes: Vec<_> = publishers.into_iter().flat_map(Publisher::stop).collect();
    let (_, reports) = Ledger::settle(
        publishes,
        &control,
        readers,
        "publishes to b and c are not touched by a's death",
    );
    // Those that were on a saw their stream end, and resumed on b.
    let resumed: Vec<&str> = reports
        .iter()
        .filter(|r| r.seen.contains(&Seen::Closed))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(resumed.len() as u64, held_by_a, "resumed: {resumed:?}");
    for report in reports.iter().filter(|r| r.seen.contains(&Seen::Closed)) {
        let after_close = report.seen.iter().skip_while(|s| **s != Seen::Closed);
        let reopened = after_close
            .filter(|s| matches!(s, Seen::Opened(_, Some(_))))
            .count();
        assert!(
            reopened >= 1,
            "{} did not resume with Last-Event-ID: {:?}",
            report.name,
            report.seen
        );
    }
}
