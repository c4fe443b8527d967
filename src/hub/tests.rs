//! Unit tests of the hub: ids, history, replay and gaps, views and who
//! reads them, patterns, presence.

use super::*;

const START: u64 = 1_700_000_000_000_000;

fn hub_with(history: usize, topics: &[&str]) -> Hub {
    let mut hub = Hub::new(START, history);
    for topic in topics {
        hub.publish(topic, None, "x").unwrap();
    }
    hub
}

fn topics(names: &[&str]) -> Topics {
    Topics::parse(names.iter().copied()).unwrap()
}

/// The ids a stream that opened at `opening` reads from its view.
fn replayed(hub: &Hub, opening: &Opening) -> Vec<u64> {
    let view = hub.view(opening.view).unwrap();
    let bytes = view.log.since(opening.cursor).unwrap();
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect()
}

fn gap_text(opening: &Opening) -> Option<String> {
    let gap = opening.gap.as_ref()?;
    Some(String::from_utf8_lossy(gap.body()).into_owned())
}

#[test]
fn ids_start_at_the_start_time_and_the_event_is_framed_once() {
    let mut hub = Hub::new(START, 4);
    assert_eq!(hub.publish("t", None, "a").unwrap(), (EventId::new(START, 0), 0));
    assert_eq!(
        hub.publish("t", Some("n"), "b").unwrap(),
        (EventId::new(START + 1, 0), 0)
    );
    let history = hub.view(HISTORY).unwrap();
    let second = Frame::chunk(format!("id: {}\nevent: n\ndata: b\n\n", START + 1).as_bytes());
    assert!(history.log.since(0).unwrap().ends_with(second.chunked()));
}

#[test]
fn history_is_a_bounded_ring() {
    let mut hub = hub_with(3, &["a"; 5]);
    assert_eq!(hub.history_len(), 3);
    let opening = hub.open(&Topics::All, true, Some(&(START + 1).to_string()));
    assert!(opening.gap.is_none());
    assert_eq!(replayed(&hub, &opening), [START + 2, START + 3, START + 4]);
    let live = hub.open(&Topics::All, true, None);
    assert_eq!(live.cursor, hub.view(HISTORY).unwrap().log.head());
}

#[test]
fn replays_only_matching_topics_after_the_id() {
    let mut hub = hub_with(10, &["a", "b", "a", "c", "a"]);
    let opening = hub.open(&topics(&["a,c"]), true, Some(&START.to_string()));
    assert!(opening.gap.is_none());
    assert_ne!(opening.view, HISTORY, "a view of its own, filled from history");
    assert_eq!(replayed(&hub, &opening), [START + 2, START + 3, START + 4]);
    let newest = hub.open(&Topics::All, true, Some(&(START + 4).to_string()));
    assert!(newest.gap.is_none() && replayed(&hub, &newest).is_empty());
}

#[test]
fn gap_when_we_cannot_vouch_then_every_retained_event() {
    let mut hub = hub_with(3, &["a"; 5]);
    // START+1 was dropped, but every event after it is retained.
    let opening = hub.open(&Topics::All, true, Some(&(START + 1).to_string()));
    assert!(opening.gap.is_none());
    let cases = [
        START.to_string(),       // its successor was dropped
        (START - 1).to_string(), // before this process
        "12".to_string(),        // a previous process
        (START + 5).to_string(), // newer than anything issued
        "not-a-number".to_string(),
        "".to_string(),
    ];
    for last in cases {
        let opening = hub.open(&Topics::All, true, Some(&last));
        let gap = gap_text(&opening).unwrap_or_else(|| panic!("no gap for {last:?}"));
        assert_eq!(
            gap,
            format!(
                "event: gap\ndata: {{\"last_event_id\":{},\"oldest\":{}}}\n\n",
                json_string(&last),
                START + 2
            )
        );
        // After a gap, what is retained still follows.
        assert_eq!(
            replayed(&hub, &opening),
            [START + 2, START + 3, START + 4],
            "{last:?}"
        );
    }
}

#[test]
fn gap_says_null_when_nothing_is_retained() {
    let mut hub = Hub::new(START, 16);
    let opening = hub.open(&Topics::All, true, Some("5"));
    assert_eq!(
        gap_text(&opening).unwrap(),
        "event: gap\ndata: {\"last_event_id\":\"5\",\"oldest\":null}\n\n"
    );
    let mut no_history = hub_with(0, &["a", "a"]);
    let caught_up = no_history.open(&Topics::All, true, Some(&(START + 1).to_string()));
    assert!(caught_up.gap.is_none());
    assert!(no_history
        .open(&Topics::All, true, Some(&START.to_string()))
        .gap
        .is_some());
}

#[test]
fn gap_escapes_what_the_client_sent() {
    let mut hub = Hub::new(START, 16);
    let opening = hub.open(&Topics::All, true, Some("a\"b\nc"));
    let text = gap_text(&opening).unwrap();
    assert!(text.contains(r#""last_event_id":"a\"b\nc""#), "{text}");
    assert_eq!(text.matches('\n').count(), 3);
}

#[test]
fn subscribers_with_the_same_filter_share_a_view() {
    let mut hub = Hub::new(START, 8);
    let all = hub.open(&Topics::All, true, None).view;
    assert_eq!(all, HISTORY);
    let ab = hub.open(&topics(&["a,b"]), true, None).view;
    assert_eq!(hub.open(&topics(&["b", "a"]), true, None).view, ab);
    let plain = hub.open(&topics(&["a,b"]), false, None).view;
    assert_ne!(plain, ab, "HTTP/1.0 streams read bare events");
    assert_eq!(hub.join(all, 1), 0);
    assert_eq!(hub.join(ab, 2), 0);
    assert_eq!(hub.join(ab, 3), 1);
    assert_eq!(hub.join(plain, 4), 0);
    assert_eq!(hub.subscriber_count(), 4);
    // One copy per view, none per subscriber; the audience is everyone.
    assert_eq!(hub.publish("a", None, "x").unwrap().1, 4);
    assert_eq!(hub.publish("c", None, "x").unwrap().1, 1);
    let dirty = hub.take_dirty();
    assert_eq!(dirty.len(), 3);
    assert!(hub.take_dirty().is_empty());
    let bare = hub.view(plain).unwrap().log.since(0).unwrap();
    assert_eq!(bare, format!("id: {START}\ndata: x\n\n").as_bytes());
    // The last member takes a leaver's place; an empty view goes.
    assert_eq!(hub.leave(ab, 0), Some(Moved { key: 3, member: 0 }));
    assert_eq!(hub.leave(ab, 0), None);
    assert!(hub.view(ab).is_none());
    assert_eq!(hub.leave(all, 0), None);
    assert!(hub.view(HISTORY).is_some(), "the history stays");
    assert_eq!(hub.subscriber_count(), 1);
    assert_eq!(hub.views_of("a"), [HISTORY, plain]);
}

#[test]
fn a_view_nobody_reads_holds_only_history() {
    let mut hub = Hub::new(START, 4);
    let data = "x".repeat(1000);
    for _ in 0..1000 {
        hub.publish("t", None, &data).unwrap();
    }
    let history = hub.view(HISTORY).unwrap();
    assert_eq!(history.index.len(), 4);
    assert!(history.log.len() < 64 * 1024, "{} bytes held", history.log.len());
}

#[test]
fn pattern_views_get_their_prefixes_once_each() {
    let mut hub = Hub::new(START, 16);
    let news = hub.open(&topics(&["news/*"]), true, None).view;
    let both = hub.open(&topics(&["news/*,news/a/*"]), true, None).view;
    hub.join(news, 1);
    hub.join(both, 2);
    for topic in ["news/a", "news/a/b", "newsletter", "news", "sport/news/x"] {
        hub.publish(topic, None, topic).unwrap();
    }
    let ids = |view| {
        let opening = Opening {
            view,
            cursor: 0,
            joined: 0,
            gap: None,
        };
        replayed(&hub, &opening)
    };
    assert_eq!(ids(news), [START, START + 1]);
    assert_eq!(ids(both), [START, START + 1], "news/a/b appended once");
    // Replay with a pattern: a new reader of news/* set back to START.
    let opening = hub.open(&topics(&["news/*"]), true, Some(&START.to_string()));
    assert_eq!(replayed(&hub, &opening), [START + 1]);
    assert_eq!(hub.views_of("news/a/b"), [HISTORY, news, both]);
}

#[test]
fn a_gap_names_only_events_of_the_streams_topics() {
    let mut hub = hub_with(3, &["secret", "mine", "secret", "mine"]);
    // Global history keeps START+1.. (START+1 is "mine").
    let opening = hub.open(&topics(&["secret"]), true, Some("7"));
    let gap = gap_text(&opening).unwrap();
    assert!(gap.contains(&format!("\"oldest\":{}", START + 2)), "{gap}");
    let opening = hub.open(&topics(&["nothing"]), true, Some("7"));
    assert!(gap_text(&opening).unwrap().contains("\"oldest\":null"));
}

#[test]
fn presence_counts_streams_per_name_and_pattern() {
    let mut hub = Hub::new(START, 0);
    let all = hub.open(&Topics::All, true, None).view;
    let news = hub.open(&topics(&["news,news/*"]), true, None).view;
    hub.join(all, 1);
    hub.join(all, 2);
    hub.join(news, 3);
    let counts = |hub: &Hub| -> Vec<(String, usize)> {
        hub.presence(1000)
            .into_iter()
            .map(|(item, n)| (item.to_string(), n))
            .collect()
    };
    assert_eq!(
        counts(&hub),
        [
            ("*".to_string(), 2),
            ("news".to_string(), 1),
            ("news/*".to_string(), 1)
        ]
    );
    assert_eq!(hub.presence(1).len(), 1);
    hub.leave(news, 0);
    hub.leave(all, 0);
    assert_eq!(counts(&hub), [("*".to_string(), 1)]);
}

/// A bus hub with events `ms-0` for each `ms`, on topic `t`.
fn bus_hub(history: usize, ids: &[u64]) -> Hub {
    let mut hub = Hub::for_bus(history);
    for &ms in ids {
        hub.append(EventId::new(ms, 0), "t", None, "x").unwrap();
    }
    hub
}

#[test]
fn bus_ids_are_written_whole_and_only_go_up() {
    let mut hub = bus_hub(8, &[10, 20]);
    assert_eq!(hub.append(EventId::new(20, 0), "t", None, "again").unwrap(), 0);
    assert_eq!(hub.append(EventId::new(15, 0), "t", None, "older").unwrap(), 0);
    let text = String::from_utf8_lossy(hub.view(HISTORY).unwrap().log.since(0).unwrap()).into_owned();
    assert_eq!(text.matches("id: ").count(), 2, "{text}");
    assert!(text.contains("id: 20-0\n"), "{text}");
    assert_eq!(hub.newest(), Some(EventId::new(20, 0)));
    assert_eq!(IdStyle::Stream.json(EventId::new(20, 1)), "\"20-1\"");
    assert_eq!(IdStyle::Counter.json(EventId::new(20, 0)), "20");
}

#[test]
fn a_bus_id_is_held_behind_ahead_or_unknown() {
    let hub = bus_hub(3, &[10, 20, 30, 40, 50]);
    let id = |ms| EventId::new(ms, 0);
    assert_eq!(hub.oldest_retained(), Some(id(30)));
    assert_eq!(hub.locate("30-0"), Located::Held(id(30)));
    assert_eq!(hub.locate("50-0"), Located::Held(id(50)));
    assert_eq!(
        hub.locate("10-0"),
        Located::Behind(id(10)),
        "Redis may still hold it"
    );
    assert_eq!(hub.locate("29-9"), Located::Behind(EventId::new(29, 9)));
    assert_eq!(
        hub.locate("51-0"),
        Located::Ahead(id(51)),
        "another process is ahead"
    );
    assert_eq!(
        hub.locate("35-0"),
        Located::Unknown,
        "within history, not one of ours"
    );
    for foreign in ["40", "40-", "-0", "040-0", "x", ""] {
        assert_eq!(hub.locate(foreign), Located::Unknown, "{foreign:?}");
    }
    assert_eq!(
        Hub::for_bus(3).locate("1-0"),
        Located::Ahead(id(1)),
        "nothing read yet"
    );
}

#[test]
fn a_loss_forgets_history_so_no_replay_spans_it() {
    let mut hub = bus_hub(8, &[10, 20]);
    let opening = hub.open(&Topics::All, true, Some("10-0"));
    assert!(opening.gap.is_none());
    hub.forget_history();
    assert_eq!(hub.history_len(), 0);
    assert_eq!(hub.locate("10-0"), Located::Behind(EventId::new(10, 0)));
    assert_eq!(
        hub.locate("20-0"),
        Located::Held(EventId::new(20, 0)),
        "caught up"
    );
    let gap = hub.open(&Topics::All, true, Some("5"));
    assert_eq!(
        gap_text(&gap).unwrap(),
        "event: gap\ndata: {\"last_event_id\":\"5\",\"oldest\":null}\n\n"
    );
}

#[test]
fn without_a_bus_an_id_from_the_future_gets_the_gap_then_everything_kept() {
    let mut hub = hub_with(4, &["a", "b", "a"]);
    let future = (START + 1_000).to_string();
    let opening = hub.open(&Topics::All, true, Some(&future));
    assert!(gap_text(&opening)
        .unwrap()
        .contains(&format!("\"oldest\":{START}")));
    assert_eq!(replayed(&hub, &opening), [START, START + 1, START + 2]);
}
