//! Every non-streaming endpoint over real loopback sockets, and the
//! HTTP/1.1 connection rules: keep-alive, pipelining, HTTP/1.0, chunked
//! request bodies, `Expect: 100-continue`, HEAD, OPTIONS, CORS, the token.

mod common;

use common::*;

#[test]
fn health_stats_metrics_and_page() {
    let server = TestServer::start();
    let health = server.get("/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    let stats = server.get("/stats");
    assert_eq!(stats.status, 200);
    assert_eq!(stats.header("content-type"), Some("application/json"));
    for field in [
        "connections",
        "subscribers",
        "published",
        "delivered",
        "bytes_out",
        "evicted",
        "uptime_s",
        "history",
    ] {
        json_u64(&stats.text(), field);
    }

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for name in [
        "ssed_connections",
        "ssed_subscribers",
        "ssed_published_total",
        "ssed_evicted_total",
    ] {
        assert!(text.contains(&format!("\n{name} ")), "{name} in {text}");
    }

    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains("new EventSource("));
}

#[test]
fn stats_count_publishing_and_delivery() {
    let server = TestServer::start();
    let mut sub = Subscriber::open(server.addr, "/events", "");
    sub.connected();
    server.publish("x", "1");
    server.publish("x", "2");
    sub.next_event();
    sub.next_event();
    let stats = server.get("/stats").text();
    assert_eq!(json_u64(&stats, "published"), 2);
    assert_eq!(json_u64(&stats, "delivered"), 2);
    assert_eq!(json_u64(&stats, "subscribers"), 1);
    assert_eq!(json_u64(&stats, "history"), 2);
    assert!(json_u64(&stats, "bytes_out") > 0);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    for _ in 0..5 {
        client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), None);
    }
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let last = client.read_response();
    assert_eq!(last.header("connection"), Some("close"));
    assert!(client.closed_by_server());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.extend_from_slice(
            format!(
                "POST /publish?topic=p HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n{}",
                i % 10
            )
            .as_bytes(),
        );
    }
    batch.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    client.send(&batch);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let response = client.read_response();
        assert_eq!(response.status, 200);
        ids.push(json_u64(&response.text(), "id"));
    }
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(client.read_response().text(), "ok\n");
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    client.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed_by_server());

    let mut client = Client::connect(server.addr);
    client.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(client.read_response().header("connection"), Some("keep-alive"));
    client.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(client.read_response().status, 200);
    assert!(client.closed_by_server());
}

#[test]
fn chunked_request_bodies_are_decoded() {
    let server = TestServer::start();
    let mut sub = Subscriber::open(server.addr, "/events", "");
    sub.connected();
    let response = request(
        server.addr,
        "POST /publish HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         6\r\nhello \r\n5;ext=1\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(sub.next_event().data, "hello world");
}

#[test]
fn expect_100_continue_is_honoured() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    client.send(b"POST /publish HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = client.read_response();
    assert_eq!(interim.status, 100);
    client.send(b"hello");
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn head_works_wherever_get_does() {
    let server = TestServer::start();
    for path in ["/", "/healthz", "/stats", "/metrics", "/broadcast?msg=x"] {
        let mut client = Client::connect(server.addr);
        client.send(
            format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .as_bytes(),
        );
        let head = client.read_response_to(true);
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty());
        // The next response follows directly: HEAD sent no body bytes.
        assert_eq!(client.read_response().text(), "ok\n", "after HEAD {path}");
    }
    // HEAD changes nothing.
    assert_eq!(server.stat("published"), 0);
}

#[test]
fn unknown_paths_and_methods() {
    let server = TestServer::start();
    let missing = server.get("/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    let wrong = server.post("/events", "x");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD, OPTIONS"));
    let wrong = server.get("/publish");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("POST, OPTIONS"));
    let delete = request(server.addr, "DELETE /stats HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(delete.status, 405);
    // A 404 does not cost the connection.
    let mut client = Client::connect(server.addr);
    client.send(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response().status, 404);
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn cors_preflight_and_origin_on_every_response() {
    let server = TestServer::start();
    let preflight = request(
        server.addr,
        "OPTIONS /publish HTTP/1.1\r\nHost: t\r\nOrigin: https://example.com\r\n\
         Access-Control-Request-Method: POST\r\n\r\n",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(preflight
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    assert_eq!(
        request(server.addr, "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n").status,
        204
    );
    for response in [
        server.post("/publish", "x"),
        server.get("/stats"),
        server.get("/nope"),
    ] {
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("*"),
            "{response:?}"
        );
    }
}

#[test]
fn cors_origin_is_configurable_and_can_be_off() {
    let mut config = test_config();
    config.cors_origin = Some("https://app.example".into());
    let server = TestServer::start_with(config, 100);
    assert_eq!(
        server.get("/healthz").header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let sub = Subscriber::open(server.addr, "/events", "");
    assert_eq!(
        sub.response.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let mut config = test_config();
    config.cors_origin = None;
    let server = TestServer::start_with(config, 100);
    assert_eq!(server.get("/healthz").header("access-control-allow-origin"), None);
}

#[test]
fn publishing_needs_the_token_when_one_is_set() {
    let mut config = test_config();
    config.publish_token = Some("s3cret".into());
    let server = TestServer::start_with(config, 100);
    let refused = server.post("/publish", "x");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(server.get("/broadcast?msg=x").status, 401);
    let wrong = request(
        server.addr,
        "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3creX\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(wrong.status, 401);
    let right = request(
        server.addr,
        "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(right.status, 200);
    let broadcast = request(
        server.addr,
        "GET /broadcast?msg=y HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\n\r\n",
    );
    assert_eq!(broadcast.status, 200);
    assert_eq!(server.stat("published"), 2);
    // Reading needs no token.
    assert_eq!(Subscriber::open(server.addr, "/events", "").response.status, 200);
}

#[test]
fn publish_refuses_names_with_line_breaks_and_bad_utf8() {
    let server = TestServer::start();
    assert_eq!(server.post("/publish?event=a%0Ab", "x").status, 400);
    assert_eq!(server.post("/publish?event=a%0Db", "x").status, 400);
    assert_eq!(server.post("/publish?topic=a%0Ab", "x").status, 400);
    let mut client = Client::connect(server.addr);
    client.send(b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n\xc3\x28");
    assert_eq!(client.read_response().status, 400);
    assert_eq!(server.stat("published"), 0);
}

#[test]
fn empty_data_is_still_an_event() {
    let server = TestServer::start();
    let mut sub = Subscriber::open(server.addr, "/events", "");
    sub.connected();
    let id = server.publish("default", "");
    let event = sub.next_event();
    assert_eq!(event.id, Some(id.to_string()));
    assert_eq!(event.data, "");
}

#[test]
fn a_half_closed_client_still_gets_its_complete_answers() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /sta");
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.read_response().text(), "ok\n");
    assert!(client.closed_by_server());
}

#[test]
fn a_deep_pipeline_is_answered_in_full_while_the_client_reads_slowly() {
    // 2,000 pipelined page requests: ~16 MB of answers, far past the point
    // where the server stops reading requests until the client catches up.
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let requests = "GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(2000);
    client.send(requests.as_bytes());
    for i in 0..2000 {
        let response = client.read_response();
        assert_eq!(response.status, 200, "response {i}");
        assert!(response.text().contains("EventSource"), "response {i}");
    }
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response().text(), "ok\n");
}
