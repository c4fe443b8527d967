//! Subscriber tokens over real sockets: tokens made by an independent JWT
//! library (`jsonwebtoken`), hostile ones by hand, against a server with
//! `--jwt-secret`. Every refusal leaves a bystander served.

#![cfg(feature = "jwt")]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use common::*;
use ssed::config::Secret;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token_with(algorithm: Algorithm, claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An HS256 token for `subscribe` and `publish` patterns, good for an hour.
fn token(subscribe: &[&str], publish: &[&str]) -> String {
    let claims = json!({"exp": now() + 3600, "sub": "user-42",
                        "ssed": {"subscribe": subscribe, "publish": publish}});
    token_with(Algorithm::HS256, &claims, SECRET)
}

fn server() -> TestServer {
    let mut config = test_config();
    config.jwt_secret = Some(secret());
    TestServer::start_with(config, 200)
}

fn secret() -> Secret {
    match ssed::config::parse(["--jwt-secret", SECRET].map(std::ffi::OsString::from), |_| None) {
        Ok(ssed::config::Command::Run(config)) => config.jwt_secret.unwrap(),
        other => panic!("{other:?}"),
    }
}

fn get(server: &TestServer, target: &str, headers: &str) -> Response {
    request(
        server.addr,
        &format!("GET {target} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"),
    )
}

/// Publishes with a bearer credential; returns the status and the id (0
/// when refused).
fn publish_as(server: &TestServer, credential: &str, topic: &str, data: &str) -> (u16, u64) {
    let response = request(
        server.addr,
        &format!(
            "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Authorization: Bearer {credential}\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        ),
    );
    let id = if response.status == 200 {
        json_u64(&response.text(), "id")
    } else {
        0
    };
    (response.status, id)
}

#[test]
fn a_stream_needs_a_token_from_the_header_the_cookie_or_the_query() {
    let server = server();
    let missing = get(&server, "/events", "");
    assert_eq!(missing.status, 401);
    assert!(
        missing.text().starts_with("unauthorized: a token is needed"),
        "{}",
        missing.text()
    );
    let publisher = token(&[], &["*"]);
    let reader = token(&["news"], &[]);
    for (target, headers) in [
        (
            "/events?topic=news".to_string(),
            format!("Authorization: Bearer {reader}\r\n"),
        ),
        (
            "/events?topic=news".to_string(),
            format!("Cookie: theme=dark; ssed_token={reader}\r\n"),
        ),
        (format!("/events?topic=news&token={reader}"), String::new()),
    ] {
        let mut sub = Subscriber::open(server.addr, &target, &headers);
        sub.connected();
        publish_as(&server, &publisher, "news", "hello");
        assert_eq!(sub.next_event().data, "hello", "{headers:?}");
    }
}

#[test]
fn a_stream_reads_only_what_its_token_covers() {
    let server = server();
    let publisher = token(&[], &["*"]);
    let user = token(&["news", "user/42/*"], &[]);
    // No topic named: every topic the claim covers, and nothing else.
    let mut sub = Subscriber::open(server.addr, &format!("/events?token={user}"), "");
    sub.connected();
    for topic in ["user/43", "user/42/orders", "secret", "news"] {
        publish_as(&server, &publisher, topic, topic);
    }
    assert_eq!(sub.next_event().data, "user/42/orders");
    assert_eq!(sub.next_event().data, "news");
    // Naming a topic or pattern the token does not cover: 403.
    for asked in ["user/43", "*", "user/*", "news,secret"] {
        let response = get(&server, &format!("/events?topic={asked}&token={user}"), "");
        assert_eq!(response.status, 403, "{asked}");
        assert!(
            !response.text().contains(&user),
            "the body never echoes the token"
        );
    }
    assert_eq!(
        get(&server, &format!("/events?topic=user/42/*&token={user}"), "").status,
        200
    );
}

#[test]
fn replay_and_gaps_stay_inside_the_scope() {
    let server = server();
    let publisher = token(&[], &["*"]);
    let user = token(&["user/42/*"], &[]);
    let (_, zero) = publish_as(&server, &publisher, "user/42/a", "zero");
    let (_, hidden) = publish_as(&server, &publisher, "secret", "hidden");
    publish_as(&server, &publisher, "user/42/a", "mine");
    // A Last-Event-ID of an event outside the scope: what is in scope after
    // it, and nothing of the rest (the live event comes next, in order).
    for last in [zero, hidden] {
        let mut sub = Subscriber::open(
            server.addr,
            &format!("/events?token={user}"),
            &format!("Last-Event-ID: {last}\r\n"),
        );
        sub.connected();
        assert_eq!(sub.next_event().data, "mine", "after {last}");
        publish_as(&server, &publisher, "secret", "hidden too");
        publish_as(&server, &publisher, "user/42/b", "live");
        assert_eq!(sub.next_event().data, "live");
    }
    // A gap names only the oldest event the stream could have been sent.
    let mut sub = Subscriber::open(
        server.addr,
        &format!("/events?token={user}"),
        "Last-Event-ID: 12\r\n",
    );
    sub.connected();
    let gap = sub.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert_eq!(
        gap.data,
        format!("{{\"last_event_id\":\"12\",\"oldest\":{zero}}}")
    );
    assert_eq!(sub.next_event().data, "zero");
}

/// Header and claims as given, signed with `secret` by hand: no library
/// makes the tokens an attacker sends.
fn forge(header: &str, claims: &str, signature: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

#[test]
fn hostile_tokens_are_refused_and_bystanders_are_unaffected() {
    let server = server();
    let publisher = token(&[], &["*"]);
    let mut bystander = Subscriber::open(
        server.addr,
        "/events?topic=by",
        &format!("Authorization: Bearer {}\r\n", token(&["by"], &[])),
    );
    bystander.connected();
    let good = token(&["news"], &[]);
    let (head, rest) = good.split_once('.').unwrap();
    let signature = rest.rsplit('.').next().unwrap();
    let claims = r#"{"ssed":{"subscribe":["*"]}}"#;
    let altered = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        format!("{head}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims))
    };
    let expired = token_with(
        Algorithm::HS256,
        &json!({"exp": now() - 10, "ssed": {"subscribe": ["news"]}}),
        SECRET,
    );
    let exp_string = token_with(
        Algorithm::HS256,
        &json!({"exp": "2000000000", "ssed": {"subscribe": ["news"]}}),
        SECRET,
    );
    let hs512 = token_with(
        Algorithm::HS512,
        &json!({"ssed": {"subscribe": ["news"]}}),
        SECRET,
    );
    let wrong_secret = token_with(
        Algorithm::HS256,
        &json!({"ssed": {"subscribe": ["news"]}}),
        "another-secret-of-at-least-32-bytes!!",
    );
    let cases: Vec<(String, u16, &str)> = vec![
        (forge(r#"{"alg":"none"}"#, claims, ""), 401, "alg must be HS256"),
        (hs512, 401, "alg must be HS256"),
        (
            forge(r#"{"alg":"RS256","typ":"JWT"}"#, claims, signature),
            401,
            "alg must be HS256",
        ),
        (altered, 401, "signature does not match"),
        (wrong_secret, 401, "signature does not match"),
        (expired, 401, "token expired"),
        (exp_string, 401, "exp is not a number"),
        (format!("!!.{rest}"), 401, "header is not base64url"),
        (format!("{head}.!!.{signature}"), 401, "signature does not match"),
        (format!("{head}.e30.!!"), 401, "signature is not base64url"),
        ("a".repeat(100 * 1024), 431, "too large"),
    ];
    for (bad, status, why) in cases {
        let response = get(
            &server,
            "/events?topic=news",
            &format!("Authorization: Bearer {bad}\r\n"),
        );
        assert_eq!(response.status, status, "{why}: {}", response.text());
        assert!(response.text().contains(why), "{why}: {}", response.text());
        assert!(
            !response.text().contains(&bad[..bad.len().min(20)]),
            "the body echoes the token"
        );
    }
    publish_as(&server, &publisher, "by", "still here");
    assert_eq!(bystander.next_event().data, "still here");
}

#[test]
fn a_token_with_publish_patterns_publishes_there_only() {
    let server = server();
    let writer = token(&[], &["user/42/*"]);
    assert_eq!(publish_as(&server, &writer, "user/42/orders", "ok").0, 200);
    assert_eq!(publish_as(&server, &writer, "user/43/orders", "no").0, 403);
    assert_eq!(publish_as(&server, &token(&["news"], &[]), "news", "no").0, 403);
    assert_eq!(publish_as(&server, "not-a-token", "news", "no").0, 401);
    assert_eq!(server.post("/publish?topic=news", "anonymous").status, 401);
    // /topics is for publishers too.
    assert_eq!(server.get("/topics").status, 401);
    assert_eq!(
        get(&server, "/topics", &format!("Authorization: Bearer {writer}\r\n")).status,
        200
    );
}

#[test]
fn a_stream_is_told_to_reauthenticate_and_ends_at_exp() {
    let server = server();
    let publisher = token(&[], &["*"]);
    // Less than 30 s left: reauth at once, the end at exp.
    let exp = now() + 2;
    let short = token_with(
        Algorithm::HS256,
        &json!({"exp": exp, "ssed": {"subscribe": ["news"]}}),
        SECRET,
    );
    let mut sub = Subscriber::open(server.addr, &format!("/events?token={short}"), "");
    sub.connected();
    let reauth = sub.next_event();
    assert_eq!(reauth.event.as_deref(), Some("reauth"));
    assert_eq!(reauth.data, format!("{{\"exp\":{exp}}}"));
    publish_as(&server, &publisher, "news", "before exp");
    assert_eq!(sub.next_event().data, "before exp");
    sub.set_timeout(Duration::from_secs(10));
    assert!(sub.ended(), "the stream ends at exp");
}

/// Claims that are valid but odd: an `exp` past any clock, a comma inside a
/// pattern, an `nbf` still ahead. None may panic the process or widen what
/// a token grants.
#[test]
fn odd_claims_neither_panic_nor_widen_the_scope() {
    let server = server();
    let publisher = token(&[], &["*"]);
    for exp in [json!(1e300), json!(u64::MAX)] {
        let far = token_with(
            Algorithm::HS256,
            &json!({"exp": exp, "ssed": {"subscribe": ["a"]}}),
            SECRET,
        );
        let mut sub = Subscriber::open(server.addr, &format!("/events?token={far}"), "");
        sub.connected();
        publish_as(&server, &publisher, "a", "still serving");
        assert_eq!(sub.next_event().data, "still serving");
    }
    // A comma is part of a name in a claim, never a list separator.
    let comma = token_with(Algorithm::HS256, &json!({"ssed": {"subscribe": [","]}}), SECRET);
    let mut sub = Subscriber::open(server.addr, &format!("/events?token={comma}"), "");
    sub.connected();
    publish_as(&server, &publisher, "b", "not for it");
    publish_as(&server, &publisher, ",", "the comma topic");
    assert_eq!(sub.next_event().data, "the comma topic");
    let topics = get(
        &server,
        "/topics",
        &format!("Authorization: Bearer {publisher}\r\n"),
    )
    .text();
    assert!(!topics.contains("\"*\""), "{topics}");
    // Not valid before `nbf`.
    let early = token_with(
        Algorithm::HS256,
        &json!({"nbf": now() + 3600, "ssed": {"subscribe": ["a"]}}),
        SECRET,
    );
    assert_eq!(get(&server, &format!("/events?token={early}"), "").status, 401);
    assert_eq!(
        publish_as(
            &server,
            &token_with(
                Algorithm::HS256,
                &json!({"nbf": now() + 3600, "ssed": {"publish": ["*"]}}),
                SECRET
            ),
            "a",
            "x"
        )
        .0,
        401
    );
}
