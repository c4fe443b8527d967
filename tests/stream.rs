//! The event stream over real loopback sockets: the greeting, publishing,
//! topics, replay after reconnect, removal of closed subscribers, and
//! fan-out to many subscribers in order.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn stream_head_and_greeting_follow_the_spec() {
    let server = TestServer::start();
    let mut sub = Subscriber::open(server.addr, "/events", "");
    let head = &sub.response;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache, no-transform"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("connection"), None);
    let first = sub.next_block();
    assert_eq!(first.retry, Some(3000));
    let connected = sub.next_event();
    assert_eq!(connected.event.as_deref(), Some("connected"));
    assert!(connected.data.starts_with("{\"client\":"), "{connected:?}");
}

#[test]
fn published_events_arrive_with_ids_names_and_multiline_data() {
    let server = TestServer::start();
    let mut sub = Subscriber::open(server.addr, "/events", "");
    sub.connected();
    let response = server.post(
        "/publish?topic=news&event=headline",
        "line one\nline two\r\nthree\rfour",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let id = json_u64(&response.text(), "id");
    assert_eq!(json_u64(&response.text(), "subscribers"), 1);
    let event = sub.next_event();
    assert_eq!(event.id, Some(id.to_string()));
    assert_eq!(event.event.as_deref(), Some("headline"));
    assert_eq!(event.data, "line one\nline two\nthree\nfour");
    let unicode = "héllo — 日本語 🎉";
    server.publish("default", unicode);
    assert_eq!(sub.next_event().data, unicode);
    let broadcast = server.get("/broadcast?msg=hi+there%21");
    assert_eq!(broadcast.status, 200);
    let event = sub.next_event();
    assert_eq!(event.data, "hi there!");
    assert_eq!(event.id, Some(json_u64(&broadcast.text(), "id").to_string()));
}

#[test]
fn ids_start_at_the_start_time_in_microseconds_and_increase() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let server = TestServer::start();
    let first = server.publish("a", "1");
    let second = server.publish("a", "2");
    assert!(
        first >= before && first < before + 60_000_000,
        "{first} vs {before}"
    );
    assert_eq!(second, first + 1);
}

#[test]
fn topic_filters_deliver_only_matching_events() {
    let server = TestServer::start();
    let mut only_a = Subscriber::open(server.addr, "/events?topic=a", "");
    let mut b_and_c = Subscriber::open(server.addr, "/events?topic=b,c", "");
    let mut b_and_c_too = Subscriber::open(server.addr, "/events?topic=b&topic=c", "");
    let mut everything = Subscriber::open(server.addr, "/events", "");
    for sub in [&mut only_a, &mut b_and_c, &mut b_and_c_too, &mut everything] {
        sub.connected();
    }
    for (topic, data) in [("a", "a1"), ("b", "b1"), ("c", "c1"), ("d", "d1"), ("a", "a2")] {
        server.publish(topic, data);
    }
    let take = |sub: &mut Subscriber, n: usize| (0..n).map(|_| sub.next_event().data).collect::<Vec<_>>();
    assert_eq!(take(&mut only_a, 2), ["a1", "a2"]);
    assert_eq!(take(&mut b_and_c, 2), ["b1", "c1"]);
    assert_eq!(take(&mut b_and_c_too, 2), ["b1", "c1"]);
    assert_eq!(take(&mut everything, 5), ["a1", "b1", "c1", "d1", "a2"]);
}

#[test]
fn reconnect_with_last_event_id_replays_what_was_missed() {
    let server = TestServer::start();
    let mut sub = Subscriber::open(server.addr, "/events?topic=t", "");
    sub.connected();
    let seen = server.publish("t", "one");
    assert_eq!(sub.next_event().id, Some(seen.to_string()));
    drop(sub);
    server.wait_stat("subscribers", 0);
    server.publish("t", "two");
    server.publish("other", "skip me");
    server.publish("t", "three");
    let mut back = Subscriber::open(
        server.addr,
        "/events?topic=t",
        &format!("Last-Event-ID: {seen}\r\n"),
    );
    back.connected();
    assert_eq!(back.next_event().data, "two");
    assert_eq!(back.next_event().data, "three");
    server.publish("t", "live");
    assert_eq!(back.next_event().data, "live");
    // The query form, for clients that cannot set headers.
    let mut query = Subscriber::open(server.addr, &format!("/events?topic=t&lastEventId={seen}"), "");
    query.connected();
    assert_eq!(query.next_event().data, "two");
}

#[test]
fn a_stale_or_foreign_last_event_id_gets_a_gap_first() {
    let mut config = test_config();
    config.history = 2;
    let server = TestServer::start_with(config, 100);
    let first = server.publish("t", "1");
    for data in ["2", "3", "4"] {
        server.publish("t", data);
    }
    // `first + 1` was pushed out of the 2-event history.
    let mut sub = Subscriber::open(server.addr, "/events", &format!("Last-Event-ID: {first}\r\n"));
    sub.connected();
    let gap = sub.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert_eq!(gap.id, None);
    assert_eq!(
        gap.data,
        format!("{{\"last_event_id\":\"{first}\",\"oldest\":{}}}", first + 2)
    );
    assert_eq!(sub.next_event().data, "3");
    assert_eq!(sub.next_event().data, "4");
    // An id from before this process (a restart) also gets a gap.
    let mut old = Subscriber::open(server.addr, "/events", "Last-Event-ID: 12345\r\n");
    old.connected();
    assert_eq!(old.next_event().event.as_deref(), Some("gap"));
}

#[test]
fn ticks_carry_no_id_and_are_not_replayed() {
    let mut config = test_config();
    config.tick = Some(Duration::from_millis(50));
    let server = TestServer::start_with(config, 100);
    let mut sub = Subscriber::open(server.addr, "/events?topic=tick", "");
    sub.connected();
    let tick = sub.next_event();
    assert_eq!(tick.event.as_deref(), Some("tick"));
    assert_eq!(tick.id, None);
    assert!(tick.data.ends_with('Z') && tick.data.contains('T'), "{tick:?}");
    assert_eq!(server.stat("history"), 0);
}

/// Ticks reach every stream of all topics between the published events,
/// but a reconnecting stream's replay carries only the published events it
/// missed: the shared log holds no ticks, so setting a cursor back never
/// sends an old one.
#[test]
fn a_replay_between_ticks_carries_only_published_events() {
    let mut config = test_config();
    config.tick = Some(Duration::from_millis(20));
    let server = TestServer::start_with(config, 100);
    let mut live = Subscriber::open(server.addr, "/events", "");
    live.connected();
    let zero = server.publish("t", "zero");
    server.publish("t", "one");
    // Ticks arrive after "one", then "two" after them.
    while live.next_event().event.as_deref() != Some("tick") {}
    assert_eq!(live.next_event().event.as_deref(), Some("tick"));
    server.publish("t", "two");
    while live.next_event().data != "two" {}
    let mut back = Subscriber::open(server.addr, "/events", &format!("Last-Event-ID: {zero}\r\n"));
    back.connected();
    let replayed: Vec<String> = (0..2).map(|_| back.next_event().data).collect();
    assert_eq!(replayed, ["one", "two"]);
    assert_eq!(
        back.next_event().event.as_deref(),
        Some("tick"),
        "live ticks follow"
    );
}

/// A replay is history the server holds anyway: however much larger than
/// `--max-queue` it is, the reconnecting subscriber is not evicted for it
/// (it would come back with the same id, and be evicted again, forever).
#[test]
fn a_replay_larger_than_max_queue_is_not_an_eviction() {
    let mut config = test_config();
    config.max_queue = 64 * 1024;
    config.history = 400;
    let server = TestServer::start_with(config, 100);
    // 24 MB: more than the kernel's socket buffers take in one go.
    let data = "r".repeat(60_000);
    let first = server.publish("t", "first");
    for _ in 0..400 {
        server.publish("t", &data);
    }
    let mut back = Subscriber::open(server.addr, "/events", &format!("Last-Event-ID: {first}\r\n"));
    back.connected();
    for n in 0..400 {
        assert_eq!(back.next_event().data.len(), 60_000, "replayed event {n}");
    }
    server.publish("t", "live");
    let live = back.next_event().data;
    assert!(live == "live", "{} bytes instead of the live event", live.len());
    assert_eq!(server.stat("evicted"), 0);
}

#[test]
fn heartbeat_comments_reach_silent_streams() {
    let mut config = test_config();
    config.heartbeat = Some(Duration::from_millis(100));
    let server = TestServer::start_with(config, 100);
    let mut sub = Subscriber::open(server.addr, "/events", "");
    sub.connected();
    let block = sub.next_block();
    assert_eq!(block.comments, ["ping"]);
}

#[test]
fn a_subscriber_that_closes_leaves_stats_promptly() {
    let server = TestServer::start();
    let mut subs: Vec<Subscriber> = (0..5)
        .map(|_| Subscriber::open(server.addr, "/events", ""))
        .collect();
    for sub in &mut subs {
        sub.connected();
    }
    server.wait_stat("subscribers", 5);
    let started = Instant::now();
    drop(subs.pop());
    drop(subs.pop());
    server.wait_stat("subscribers", 3);
    assert!(started.elapsed() < WAIT);
    drop(subs);
    server.wait_stat("subscribers", 0);
    // Only the /stats request itself is still connected.
    server.wait_stat("connections", 1);
}

#[test]
fn one_hundred_subscribers_receive_two_hundred_events_in_order() {
    let server = TestServer::start();
    let mut subs: Vec<Subscriber> = (0..100)
        .map(|_| Subscriber::open(server.addr, "/events", ""))
        .collect();
    for sub in &mut subs {
        sub.connected();
    }
    let ids: Vec<u64> = (0..200)
        .map(|i| server.publish("load", &format!("event {i}")))
        .collect();
    for window in ids.windows(2) {
        assert_eq!(window[1], window[0] + 1);
    }
    for (n, sub) in subs.iter_mut().enumerate() {
        for (i, id) in ids.iter().enumerate() {
            let event = sub.next_event();
            assert_eq!(event.id, Some(id.to_string()), "subscriber {n}, event {i}");
            assert_eq!(event.data, format!("event {i}"));
        }
    }
    assert_eq!(server.stat("delivered"), 200 * 100);
}

#[test]
fn http10_streams_are_unchunked_and_end_with_the_connection() {
    let mut server = TestServer::start();
    let mut sub = Subscriber::open_version(server.addr, "/events", "", "HTTP/1.0");
    assert_eq!(sub.response.header("transfer-encoding"), None);
    sub.connected();
    server.publish("default", "plain");
    assert_eq!(sub.next_event().data, "plain");
    server.stop();
    // Shutdown sends a jittered retry, then closes.
    let retry = sub.next_block().retry.expect("retry on shutdown");
    assert!((3000..=18_000).contains(&retry), "{retry}");
    assert!(sub.ended());
}

/// The last chunk (`0\r\n\r\n`) ends a chunked body; an HTTP/1.0 stream has
/// no chunks, ends with the close, and must not get one.
#[test]
fn http10_streams_end_at_shutdown_without_a_last_chunk() {
    let mut server = TestServer::start();
    let mut client = Client::connect(server.addr);
    client.send(b"GET /events HTTP/1.0\r\n\r\n");
    server.wait_stat("subscribers", 1);
    server.stop();
    let text = String::from_utf8_lossy(&client.read_to_close()).into_owned();
    let body = &text[text.find("\r\n\r\n").expect("a head") + 4..];
    assert!(body.starts_with("retry: 3000\n\nevent: connected\n"), "{body:?}");
    let last = body.trim_end_matches('\n').rsplit("\n\n").next().unwrap_or("");
    assert!(
        last.starts_with("retry: "),
        "the stream ends with the farewell retry: {body:?}"
    );
    assert!(body.ends_with("\n\n"), "nothing after the last event: {body:?}");
}

#[test]
fn shutdown_spreads_retries_and_ends_chunked_streams_cleanly() {
    let mut server = TestServer::start();
    let mut subs: Vec<Subscriber> = (0..20)
        .map(|_| Subscriber::open(server.addr, "/events", ""))
        .collect();
    for sub in &mut subs {
        sub.connected();
    }
    server.stop();
    let mut retries = Vec::new();
    for sub in &mut subs {
        let block = sub.next_block();
        let retry = block.retry.expect("a retry on shutdown");
        assert!((3000..=18_000).contains(&retry), "{retry}");
        retries.push(retry);
        assert!(sub.ended());
        assert!(sub.last_chunk_seen, "the last chunk ends the body");
        assert!(sub.raw_pending().is_empty());
    }
    retries.sort_unstable();
    retries.dedup();
    assert!(retries.len() > 10, "retries spread out: {retries:?}");
}

#[test]
fn head_on_events_sends_the_head_only() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    client.send(b"HEAD /events HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.read_response_to(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let next = client.read_response();
    assert_eq!(next.text(), "ok\n");
    assert_eq!(server.stat("subscribers"), 0);
}
