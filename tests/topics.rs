//! Topic patterns and presence over real sockets: `news/*` and `*`
//! subscriptions, replay with a pattern, `/topics`.

mod common;

use common::*;

#[test]
fn a_pattern_gets_its_prefix_at_any_depth_and_nothing_else() {
    let server = TestServer::start();
    let mut news = Subscriber::open(server.addr, "/events?topic=news/*", "");
    news.connected();
    for topic in ["news/a", "newsletter", "news", "news/a/b", "sport"] {
        server.publish(topic, topic);
    }
    assert_eq!(news.next_event().data, "news/a");
    assert_eq!(news.next_event().data, "news/a/b");
    // `*` is every topic, the same as no topic at all.
    let mut everything = Subscriber::open(server.addr, "/events?topic=*", "");
    everything.connected();
    server.publish("anything/at/all", "x");
    assert_eq!(everything.next_event().data, "x");
}

#[test]
fn replay_follows_the_pattern() {
    let server = TestServer::start();
    let first = server.publish("news/a", "before");
    for topic in ["news/b", "sport", "news/c/d"] {
        server.publish(topic, topic);
    }
    let mut back = Subscriber::open(
        server.addr,
        "/events?topic=news/*",
        &format!("Last-Event-ID: {first}\r\n"),
    );
    back.connected();
    assert_eq!(back.next_event().data, "news/b");
    assert_eq!(back.next_event().data, "news/c/d");
}

#[test]
fn a_star_in_a_published_topic_or_a_bad_pattern_is_400() {
    let server = TestServer::start();
    assert_eq!(server.post("/publish?topic=news/*", "x").status, 400);
    assert_eq!(server.post("/publish?topic=*", "x").status, 400);
    assert_eq!(server.get("/events?topic=a*b").status, 400);
    assert_eq!(server.get("/events?topic=news/*/x").status, 400);
}

#[test]
fn topics_counts_the_streams_holding_each_name_and_pattern() {
    let server = TestServer::start();
    let _all = Subscriber::open(server.addr, "/events", "");
    let _news = Subscriber::open(server.addr, "/events?topic=news,news/*", "");
    let _news_again = Subscriber::open(server.addr, "/events?topic=news", "");
    server.wait_stat("subscribers", 3);
    let response = server.get("/topics");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.text(),
        "{\"topics\":[{\"topic\":\"news\",\"subscribers\":2},\
         {\"topic\":\"*\",\"subscribers\":1},{\"topic\":\"news/*\",\"subscribers\":1}]}\n"
    );
}

#[test]
fn topics_needs_the_publish_credential_when_there_is_one() {
    let mut config = test_config();
    config.publish_token = Some("s3cret".into());
    let server = TestServer::start_with(config, 100);
    assert_eq!(server.get("/topics").status, 401);
    let response = request(
        server.addr,
        "GET /topics HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "{\"topics\":[]}\n");
}
