//! The bus, wired into real servers, against a stand-in for Redis
//! (`standin/redis.rs`): runs with plain `cargo test`, no Redis needed.
//! `tests/bus/` does the same and more against a real `redis-server`.

mod common;
#[path = "standin/redis.rs"]
mod redis;

use std::thread;
use std::time::{Duration, Instant};

use common::{test_config, Subscriber, TestServer, WAIT};
use redis::StandIn;
use ssed::config::BusAddr;

/// A server over the stand-in's stream, up once `/healthz` says so.
fn over(standin: &StandIn, history: usize) -> TestServer {
    let mut config = test_config();
    config.bus = Some(BusAddr::Unix {
        path: standin.path(),
        db: 0,
    });
    config.history = history;
    let server = TestServer::start_with(config, 100);
    wait_health(&server, 200);
    server
}

/// Polls `/healthz` until it answers `status`.
fn wait_health(server: &TestServer, status: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = server.get("/healthz").status;
        if got == status {
            return;
        }
        assert!(Instant::now() < deadline, "/healthz is {got}, wanted {status}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Publishes through `server`; returns the id Redis gave the event.
fn publish(server: &TestServer, topic: &str, data: &str) -> String {
    let response = server.post(&format!("/publish?topic={topic}"), data);
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    let id = text
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no string id in {text}"));
    id.to_string()
}

/// `<ms>-<seq>` as the pair of numbers it orders by.
fn stream_id(text: &str) -> (u64, u64) {
    let (ms, seq) = text
        .split_once('-')
        .unwrap_or_else(|| panic!("not a stream id: {text}"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

#[test]
fn every_process_delivers_what_any_process_published_under_one_id() {
    let standin = StandIn::start();
    let (a, b) = (over(&standin, 16), over(&standin, 16));
    let mut on_a = Subscriber::open(a.addr, "/events", "");
    let mut on_b = Subscriber::open(b.addr, "/events", "");
    on_a.connected();
    on_b.connected();
    let first = publish(&a, "news", "from a");
    let second = publish(&b, "news", "from b");
    assert!(stream_id(&first) < stream_id(&second), "{first} then {second}");
    for subscriber in [&mut on_a, &mut on_b] {
        for (id, data) in [(&first, "from a"), (&second, "from b")] {
            let event = subscriber.next_event();
            assert_eq!(
                (event.id.as_deref(), event.data.as_str()),
                (Some(id.as_str()), data)
            );
        }
    }
}

#[test]
fn a_replay_past_the_history_comes_from_the_stream_without_a_seam() {
    let standin = StandIn::start();
    let (a, b) = (over(&standin, 16), over(&standin, 1));
    let ids: Vec<String> = ["one", "two", "three", "four"]
        .iter()
        .map(|data| publish(&a, "news", data))
        .collect();
    // b's history holds only "four" once its tail has read it.
    let deadline = Instant::now() + WAIT;
    while !b
        .get("/stats")
        .text()
        .contains(&format!("\"last_id\":\"{}\"", ids[3]))
    {
        assert!(Instant::now() < deadline, "b never read {}", ids[3]);
        thread::sleep(Duration::from_millis(5));
    }
    let mut back = Subscriber::open(b.addr, "/events", &format!("Last-Event-ID: {}\r\n", ids[0]));
    back.connected();
    for (id, data) in ids[1..].iter().zip(["two", "three", "four"]) {
        let event = back.next_event();
        assert_eq!(event.event, None, "no gap: {event:?}");
        assert_eq!(
            (event.id.as_deref(), event.data.as_str()),
            (Some(id.as_str()), data)
        );
    }
}

#[test]
fn while_the_bus_is_down_publishes_get_503_and_streams_wait_for_it() {
    let mut standin = StandIn::start();
    let server = over(&standin, 16);
    let mut subscriber = Subscriber::open(server.addr, "/events", "");
    subscriber.connected();
    let before = publish(&server, "news", "before");
    assert_eq!(subscriber.next_event().id.as_deref(), Some(before.as_str()));
    standin.kill();
    wait_health(&server, 503);
    assert_eq!(server.get("/healthz").text(), "bus down\n");
    let refused = server.post("/publish?topic=news", "during");
    assert_eq!(refused.status, 503);
    assert!(refused.header("Retry-After").is_some(), "{refused:?}");
    assert!(refused.text().starts_with("bus down"), "{}", refused.text());
    standin.restart(true);
    wait_health(&server, 200);
    let after = publish(&server, "news", "after");
    let event = subscriber.next_event();
    assert_eq!(
        (event.id.as_deref(), event.data.as_str()),
        (Some(after.as_str()), "after")
    );
}

#[test]
fn a_bus_that_comes_back_empty_sends_every_stream_a_gap() {
    let mut standin = StandIn::start();
    let server = over(&standin, 16);
    let mut subscriber = Subscriber::open(server.addr, "/events", "");
    subscriber.connected();
    let last = publish(&server, "news", "soon forgotten");
    assert_eq!(subscriber.next_event().id.as_deref(), Some(last.as_str()));
    standin.kill();
    wait_health(&server, 503);
    standin.restart(false);
    let gap = subscriber.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    assert!(
        gap.data.contains(&format!("\"last_event_id\":\"{last}\"")),
        "{}",
        gap.data
    );
    wait_health(&server, 200);
    let next = publish(&server, "news", "after the loss");
    assert_eq!(subscriber.next_event().id.as_deref(), Some(next.as_str()));
}
