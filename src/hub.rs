//! The hub: who is subscribed to what, the global event id, and the history
//! ring that `Last-Event-ID` replays from.
//!
//! The hub never touches a socket. Subscribers are named by their slab key;
//! publishing encodes the event once into a shared [`Frame`] and hands it
//! back, and the server walks [`Hub::subscribers_of`] to put that same frame
//! on each subscriber's queue.
//!
//! # Ids
//!
//! Ids are one strictly increasing u64 sequence that starts at the process
//! start time in microseconds since the Unix epoch. A restarted server
//! therefore issues ids larger than any its predecessor did (unless that one
//! published more than a million events a second on average), so a client's
//! old id is never mistaken for one of ours.
//!
//! # Replay
//!
//! ```text
//!   first_id            oldest retained          newest   next_id
//!      |---- evicted ----|====== history ======|        |
//!                    n ──┘  client's Last-Event-ID: we hold every event after
//!                           n only if first_id <= n < next_id and n+1 >= oldest
//! ```
//!
//! When we cannot vouch for every event after `n`, the replay starts with an
//! `event: gap` that says so: nothing is ever lost silently.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;

use crate::frame::Frame;
use crate::sse::{self, EncodeError};

/// A subscriber, named by its connection's slab key.
pub type Key = usize;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;
/// Most topics one subscriber may filter on.
pub const MAX_TOPICS: usize = 32;
/// The topic of published events that name none.
pub const DEFAULT_TOPIC: &str = "default";
/// The topic of ticker events.
pub const TICK_TOPIC: &str = "tick";

/// One published event, as kept in history.
#[derive(Debug)]
pub struct Event {
    /// Its id, one of the global sequence.
    pub id: u64,
    /// Its topic.
    pub topic: Rc<str>,
    /// The encoded, chunk-framed event, shared by every queue it goes to.
    pub frame: Rc<Frame>,
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topics {
    /// Every topic (`/events` with no `topic`).
    All,
    /// Only these (deduplicated, never empty).
    Only(Box<[Rc<str>]>),
}

/// A topic name or list we refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// An empty name.
    Empty,
    /// A name longer than [`MAX_TOPIC_LEN`].
    TooLong,
    /// A name with a control character (a line break, say).
    ControlCharacter,
    /// More than [`MAX_TOPICS`] topics on one stream.
    TooMany,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Empty => f.write_str("empty topic name"),
            TopicError::TooLong => write!(f, "topic name longer than {MAX_TOPIC_LEN} bytes"),
            TopicError::ControlCharacter => f.write_str("topic name contains a control character"),
            TopicError::TooMany => write!(f, "more than {MAX_TOPICS} topics"),
        }
    }
}

/// Checks a topic name: 1 to 128 bytes, no control characters.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        Err(TopicError::Empty)
    } else if topic.len() > MAX_TOPIC_LEN {
        Err(TopicError::TooLong)
    } else if topic.chars().any(char::is_control) {
        Err(TopicError::ControlCharacter)
    } else {
        Ok(())
    }
}

impl Topics {
    /// From the values of every `topic` query parameter, each of which may
    /// itself be a comma-separated list. No values at all means every topic.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Topics, TopicError> {
        let mut topics: Vec<Rc<str>> = Vec::new();
        for name in values.into_iter().flat_map(|value| value.split(',')) {
            if name.is_empty() {
                continue;
            }
            validate_topic(name)?;
            if !topics.iter().any(|t| &**t == name) {
                if topics.len() == MAX_TOPICS {
                    return Err(TopicError::TooMany);
                }
                topics.push(Rc::from(name));
            }
        }
        Ok(if topics.is_empty() {
            Topics::All
        } else {
            Topics::Only(topics.into_boxed_slice())
        })
    }

    /// Whether an event on `topic` is for this subscriber.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Topics::All => true,
            Topics::Only(topics) => topics.iter().any(|t| &**t == topic),
        }
    }
}

/// What a reconnecting subscriber is sent before the live stream.
#[derive(Debug, Default)]
pub struct Replay {
    /// `event: gap`, when the server cannot vouch for every missed event.
    pub gap: Option<Rc<Frame>>,
    /// Retained events after the client's id that match its topics, in order.
    pub events: Vec<Rc<Event>>,
}

/// Topics, subscribers, ids and history.
#[derive(Debug)]
pub struct Hub {
    first_id: u64,
    next_id: u64,
    history: VecDeque<Rc<Event>>,
    history_limit: usize,
    /// Subscribers to every topic.
    everything: BTreeSet<Key>,
    /// Subscribers to named topics; a topic is here only while it has some,
    /// so publishing to arbitrary names cannot grow this map.
    by_topic: HashMap<Rc<str>, BTreeSet<Key>>,
    subscribers: usize,
}

impl Hub {
    /// `first_id` is the process start time in microseconds.
    pub fn new(first_id: u64, history_limit: usize) -> Self {
        Hub {
            first_id,
            next_id: first_id,
            history: VecDeque::with_capacity(history_limit.min(4096)),
            history_limit,
            everything: BTreeSet::new(),
            by_topic: HashMap::new(),
            subscribers: 0,
        }
    }

    /// Subscriber `key` receives `topics` from now on.
    pub fn subscribe(&mut self, key: Key, topics: &Topics) {
        match topics {
            Topics::All => {
                self.everything.insert(key);
            }
            Topics::Only(topics) => {
                for topic in topics.iter() {
                    self.by_topic.entry(topic.clone()).or_default().insert(key);
                }
            }
        }
        self.subscribers += 1;
    }

    /// Subscriber `key`, which held `topics`, has gone.
    pub fn unsubscribe(&mut self, key: Key, topics: &Topics) {
        match topics {
            Topics::All => {
                self.everything.remove(&key);
            }
            Topics::Only(topics) => {
                for topic in topics.iter() {
                    if let Some(keys) = self.by_topic.get_mut(topic) {
                        keys.remove(&key);
                        if keys.is_empty() {
                            self.by_topic.remove(topic);
                        }
                    }
                }
            }
        }
        self.subscribers = self.subscribers.saturating_sub(1);
    }

    /// How many subscribers an event on `topic` reaches.
    pub fn audience(&self, topic: &str) -> usize {
        self.everything.len() + self.by_topic.get(topic).map_or(0, BTreeSet::len)
    }

    /// Every subscriber that should receive an event on `topic`. Each key
    /// appears once: a subscriber is either in `everything` or in topic sets,
    /// and its topic list has no duplicates.
    pub fn subscribers_of<'a>(&'a self, topic: &str) -> impl Iterator<Item = Key> + 'a {
        let named = self.by_topic.get(topic).into_iter().flatten();
        self.everything.iter().chain(named).copied()
    }

    /// Assigns the next id, encodes the event once, keeps it in history.
    pub fn publish(&mut self, topic: &str, name: Option<&str>, data: &str) -> Result<Rc<Event>, EncodeError> {
        let id = self.next_id;
        let encoded = sse::encode_event(Some(&id.to_string()), name, data)?;
        self.next_id += 1;
        let event = Rc::new(Event {
            id,
            topic: Rc::from(topic),
            frame: Frame::chunk(&encoded),
        });
        if self.history_limit > 0 {
            if self.history.len() == self.history_limit {
                self.history.pop_front();
            }
            self.history.push_back(event.clone());
        }
        Ok(event)
    }

    /// What a client that last saw `last_event_id` must be sent first.
    pub fn replay(&self, last_event_id: &str, topics: &Topics) -> Replay {
        let parsed = last_event_id.trim().parse::<u64>().ok();
        let oldest = self.history.front().map_or(self.next_id, |event| event.id);
        let vouched = parsed.is_some_and(|n| n >= self.first_id && n < self.next_id && n + 1 >= oldest);
        let gap = (!vouched).then(|| {
            let oldest = match self.history.front() {
                Some(event) => event.id.to_string(),
                None => "null".to_string(),
            };
            let data = format!(
                "{{\"last_event_id\":{},\"oldest\":{oldest}}}",
                json_string(last_event_id)
            );
            // Neither the name nor the id is a peer's: this cannot fail.
            let encoded = sse::encode_event(None, Some("gap"), &data).unwrap_or_default();
            Frame::chunk(&encoded)
        });
        let after = parsed.unwrap_or(0);
        let start = self.history.partition_point(|event| event.id <= after);
        let events = self
            .history
            .range(start..)
            .filter(|event| topics.matches(&event.topic))
            .cloned()
            .collect();
        Replay { gap, events }
    }

    /// Open streams.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers
    }

    /// Events kept for replay.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }
}

/// A JSON string literal (RFC 8259 §7) for text that came from a peer.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_700_000_000_000_000;

    fn hub_with(history: usize, events: &[&str]) -> Hub {
        let mut hub = Hub::new(START, history);
        for topic in events {
            hub.publish(topic, None, "x").unwrap();
        }
        hub
    }

    fn ids(replay: &Replay) -> Vec<u64> {
        replay.events.iter().map(|e| e.id).collect()
    }

    fn gap_text(replay: &Replay) -> Option<String> {
        replay
            .gap
            .as_ref()
            .map(|frame| String::from_utf8_lossy(frame.body()).into_owned())
    }

    #[test]
    fn ids_start_at_the_start_time_and_increase() {
        let mut hub = Hub::new(START, 4);
        let a = hub.publish("t", None, "a").unwrap();
        let b = hub.publish("t", Some("n"), "b").unwrap();
        assert_eq!((a.id, b.id), (START, START + 1));
        assert_eq!(
            b.frame.body(),
            format!("id: {}\nevent: n\ndata: b\n\n", START + 1).as_bytes()
        );
    }

    #[test]
    fn history_is_a_bounded_ring() {
        let hub = hub_with(3, &["a"; 5]);
        assert_eq!(hub.history_len(), 3);
        let replay = hub.replay(&(START + 1).to_string(), &Topics::All);
        assert!(replay.gap.is_none());
        assert_eq!(ids(&replay), vec![START + 2, START + 3, START + 4]);
    }

    #[test]
    fn replays_only_matching_topics_after_the_id() {
        let hub = hub_with(10, &["a", "b", "a", "c", "a"]);
        let topics = Topics::parse(["a,c"]).unwrap();
        let replay = hub.replay(&START.to_string(), &topics);
        assert!(replay.gap.is_none());
        assert_eq!(ids(&replay), vec![START + 2, START + 3, START + 4]);
        let newest = hub.replay(&(START + 4).to_string(), &Topics::All);
        assert!(newest.gap.is_none() && newest.events.is_empty());
    }

    #[test]
    fn gap_when_we_cannot_vouch() {
        let hub = hub_with(3, &["a"; 5]);
        // START+1 was evicted, but every event after it is retained.
        assert!(hub.replay(&(START + 1).to_string(), &Topics::All).gap.is_none());
        let cases = [
            START.to_string(),       // its successor was evicted
            (START - 1).to_string(), // before this process
            "12".to_string(),        // a previous process
            (START + 5).to_string(), // newer than anything issued
            "not-a-number".to_string(),
            "".to_string(),
        ];
        for last in cases {
            let replay = hub.replay(&last, &Topics::All);
            let gap = gap_text(&replay).unwrap_or_else(|| panic!("no gap for {last:?}"));
            assert_eq!(
                gap,
                format!(
                    "event: gap\ndata: {{\"last_event_id\":{},\"oldest\":{}}}\n\n",
                    json_string(&last),
                    START + 2
                )
            );
        }
        // After a gap, what is retained still follows.
        assert_eq!(ids(&hub.replay("12", &Topics::All)).len(), 3);
        assert!(hub
            .replay(&(START + 5).to_string(), &Topics::All)
            .events
            .is_empty());
    }

    #[test]
    fn gap_says_null_when_nothing_is_retained() {
        let hub = Hub::new(START, 16);
        let replay = hub.replay("5", &Topics::All);
        assert_eq!(
            gap_text(&replay).unwrap(),
            "event: gap\ndata: {\"last_event_id\":\"5\",\"oldest\":null}\n\n"
        );
        let no_history = hub_with(0, &["a", "a"]);
        assert!(no_history
            .replay(&(START + 1).to_string(), &Topics::All)
            .gap
            .is_none());
        assert!(no_history.replay(&START.to_string(), &Topics::All).gap.is_some());
    }

    #[test]
    fn gap_escapes_what_the_client_sent() {
        let hub = Hub::new(START, 16);
        let replay = hub.replay("a\"b\nc", &Topics::All);
        let text = gap_text(&replay).unwrap();
        assert!(text.contains(r#""last_event_id":"a\"b\nc""#), "{text}");
        assert_eq!(text.matches('\n').count(), 3);
    }

    #[test]
    fn subscribers_by_topic() {
        let mut hub = Hub::new(START, 0);
        hub.subscribe(1, &Topics::All);
        hub.subscribe(2, &Topics::parse(["a", "b"]).unwrap());
        hub.subscribe(3, &Topics::parse(["b"]).unwrap());
        let of = |hub: &Hub, topic| hub.subscribers_of(topic).collect::<Vec<_>>();
        assert_eq!(of(&hub, "a"), vec![1, 2]);
        assert_eq!(of(&hub, "b"), vec![1, 2, 3]);
        assert_eq!(of(&hub, "c"), vec![1]);
        assert_eq!(hub.subscriber_count(), 3);
        hub.unsubscribe(2, &Topics::parse(["a", "b"]).unwrap());
        assert_eq!(of(&hub, "a"), vec![1]);
        assert_eq!(of(&hub, "b"), vec![1, 3]);
        assert!(!hub.by_topic.contains_key("a"));
        assert_eq!(hub.subscriber_count(), 2);
    }

    #[test]
    fn parses_topic_lists() {
        assert_eq!(Topics::parse([]).unwrap(), Topics::All);
        assert_eq!(Topics::parse([",,"]).unwrap(), Topics::All);
        let topics = Topics::parse(["a,b", "a", "c"]).unwrap();
        assert_eq!(
            topics,
            Topics::Only(vec!["a".into(), "b".into(), "c".into()].into())
        );
        assert!(topics.matches("c") && !topics.matches("d"));
        assert_eq!(Topics::parse(["a\nb"]), Err(TopicError::ControlCharacter));
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(Topics::parse([long.as_str()]), Err(TopicError::TooLong));
        let many: Vec<String> = (0..=MAX_TOPICS).map(|i| i.to_string()).collect();
        assert_eq!(
            Topics::parse(many.iter().map(String::as_str)),
            Err(TopicError::TooMany)
        );
    }
}
