//! Topics: what a publisher names and a subscriber asks for.
//!
//! ```text
//! GET /events                    every topic
//! GET /events?topic=news         one
//! GET /events?topic=a,b&topic=c  a set (order and repeats do not matter)
//! GET /events?topic=news/*       every topic that starts with "news/", at any
//!                                depth: news/a, news/a/b (not "news", not
//!                                "newsletter")
//! GET /events?topic=*            every topic, as with no topic at all
//! POST /publish?topic=news       one, `default` when none is named
//! ```
//!
//! A name is 1 to 128 bytes with no control characters and no `*` (a
//! published topic is always a name); a stream asks for at most 32 names or
//! patterns. Subscribers that ask for the same set have the same filter,
//! and share one view of the log (`log.rs`).

use std::fmt;
use std::rc::Rc;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;
/// Most topics one subscriber may filter on.
pub const MAX_TOPICS: usize = 32;
/// The topic of published events that name none.
pub const DEFAULT_TOPIC: &str = "default";
/// The topic of ticker events.
pub const TICK_TOPIC: &str = "tick";

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// A `*` in a published topic, or anywhere in a pattern but a last
    /// `/*` (or the whole of it).
    Wildcard,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Empty => f.write_str("empty topic name"),
            TopicError::TooLong => write!(f, "topic name longer than {MAX_TOPIC_LEN} bytes"),
            TopicError::ControlCharacter => f.write_str("topic name contains a control character"),
            TopicError::TooMany => write!(f, "more than {MAX_TOPICS} topics"),
            TopicError::Wildcard => f.write_str("'*' only as a whole pattern or a last '/*'"),
        }
    }
}

/// Checks a topic name: 1 to 128 bytes, no control characters, no `*`.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    validate_pattern(topic)?;
    if topic.contains('*') {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// Checks what a stream may ask for: a topic name, `prefix/*`, or `*`.
pub fn validate_pattern(item: &str) -> Result<(), TopicError> {
    if item.is_empty() {
        Err(TopicError::Empty)
    } else if item.len() > MAX_TOPIC_LEN {
        Err(TopicError::TooLong)
    } else if item.chars().any(char::is_control) {
        Err(TopicError::ControlCharacter)
    } else if is_pattern_shape(item) || !item.contains('*') {
        Ok(())
    } else {
        Err(TopicError::Wildcard)
    }
}

/// `*`, or `prefix/*` with one `*`, the last character, after a `/` that
/// is not the first.
fn is_pattern_shape(item: &str) -> bool {
    item == "*"
        || item
            .strip_suffix("/*")
            .is_some_and(|prefix| !prefix.is_empty() && !prefix.contains('*'))
}

/// The prefix a pattern stands for (`news/*` is `news/`, `*` is ``), or
/// `None` for a plain name.
pub fn pattern_prefix(item: &str) -> Option<&str> {
    if item == "*" {
        Some("")
    } else {
        item.strip_suffix('*').filter(|prefix| prefix.ends_with('/'))
    }
}

/// Whether `item`, a name or a pattern, covers the topic `topic`.
pub fn covers(item: &str, topic: &str) -> bool {
    match pattern_prefix(item) {
        Some(prefix) => topic.starts_with(prefix),
        None => item == topic,
    }
}

/// Whether `outer` (a name or pattern) covers everything `inner` (a name
/// or pattern) does: `news/*` covers `news/a` and `news/a/*`; `*` covers
/// everything; a name covers only itself.
pub fn covers_all_of(outer: &str, inner: &str) -> bool {
    match (pattern_prefix(outer), pattern_prefix(inner)) {
        (Some(outer), Some(inner)) => inner.starts_with(outer),
        (Some(outer), None) => inner.starts_with(outer),
        (None, _) => outer == inner,
    }
}

/// The pattern prefixes under which a view of a pattern can cover `topic`:
/// `a/b/c` is covered by `a/*` and `a/b/*` (and `*`, kept apart). One
/// lookup per `/`, however many patterns are held.
pub fn prefixes(topic: &str) -> impl Iterator<Item = &str> {
    topic.match_indices('/').map(move |(at, _)| &topic[..=at])
}

impl Topics {
    /// From the values of every `topic` query parameter, each of which may
    /// itself be a comma-separated list. No values at all means every topic.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Topics, TopicError> {
        let mut topics: Vec<Rc<str>> = Vec::new();
        let mut everything = false;
        for name in values.into_iter().flat_map(|value| value.split(',')) {
            if name.is_empty() {
                continue;
            }
            validate_pattern(name)?;
            everything |= name == "*";
            if !topics.iter().any(|t| &**t == name) {
                if topics.len() == MAX_TOPICS {
                    return Err(TopicError::TooMany);
                }
                topics.push(Rc::from(name));
            }
        }
        // In order, so that `a,b` and `b,a` are one filter (and one view).
        topics.sort_unstable();
        Ok(if topics.is_empty() || everything {
            Topics::All
        } else {
            Topics::Only(topics.into_boxed_slice())
        })
    }

    /// From a list of names and patterns taken as they are (a token's
    /// claim): no splitting at commas, every one checked. `None` when the
    /// list is empty or one of them is not a name or pattern.
    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Option<Topics> {
        let mut topics: Vec<Rc<str>> = Vec::new();
        for item in items {
            validate_pattern(item).ok()?;
            if item == "*" {
                return Some(Topics::All);
            }
            if !topics.iter().any(|t| &**t == item) {
                topics.push(Rc::from(item));
            }
        }
        topics.sort_unstable();
        (!topics.is_empty()).then(|| Topics::Only(topics.into_boxed_slice()))
    }

    /// Whether an event on `topic` is for this subscriber.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Topics::All => true,
            Topics::Only(items) => items.iter().any(|item| covers(item, topic)),
        }
    }

    /// The names and patterns it holds, `*` for every topic.
    pub fn items(&self) -> impl Iterator<Item = &str> {
        let all = matches!(self, Topics::All).then_some("*");
        let only = match self {
            Topics::All => &[][..],
            Topics::Only(items) => &items[..],
        };
        all.into_iter().chain(only.iter().map(|item| &**item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_topic_lists() {
        assert_eq!(Topics::parse([]).unwrap(), Topics::All);
        assert_eq!(Topics::parse([",,"]).unwrap(), Topics::All);
        let topics = Topics::parse(["c,b", "a", "c"]).unwrap();
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

    #[test]
    fn patterns_cover_prefixes_at_any_depth() {
        let news = Topics::parse(["news/*"]).unwrap();
        for (topic, want) in [
            ("news/a", true),
            ("news/a/b", true),
            ("news/", true),
            ("news", false),
            ("newsletter", false),
            ("sport/news/a", false),
        ] {
            assert_eq!(news.matches(topic), want, "{topic}");
        }
        assert_eq!(Topics::parse(["a", "*"]).unwrap(), Topics::All);
        assert_eq!(Topics::All.items().collect::<Vec<_>>(), ["*"]);
        assert_eq!(
            Topics::parse(["b,news/*"]).unwrap().items().collect::<Vec<_>>(),
            ["b", "news/*"]
        );
        for bad in ["a*", "*a", "a/*/b", "**", "a/**", "/*"] {
            assert_eq!(Topics::parse([bad]), Err(TopicError::Wildcard), "{bad}");
        }
        assert_eq!(validate_topic("news/*"), Err(TopicError::Wildcard));
        // A claim's list is taken item by item: a comma is part of a name.
        assert_eq!(
            Topics::from_items([","]),
            Some(Topics::Only(vec![",".into()].into()))
        );
        assert_eq!(
            Topics::from_items(["b", "a", "b"])
                .unwrap()
                .items()
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(Topics::from_items(["a", "*"]), Some(Topics::All));
        assert_eq!(Topics::from_items([]), None);
        assert_eq!(Topics::from_items(["a*"]), None);
        assert_eq!(validate_topic("*"), Err(TopicError::Wildcard));
        assert!(validate_topic("news/a").is_ok());
    }

    #[test]
    fn what_covers_what() {
        let cases = [
            ("*", "anything/*", true),
            ("news/*", "news/a", true),
            ("news/*", "news/a/*", true),
            ("news/a/*", "news/*", false),
            ("news/*", "newsletter", false),
            ("user/42/*", "user/43", false),
            ("user/42/*", "*", false),
            ("a", "a", true),
            ("a", "a/*", false),
        ];
        for (outer, inner, want) in cases {
            assert_eq!(covers_all_of(outer, inner), want, "{outer} covers {inner}");
        }
        assert_eq!(prefixes("a/b/c").collect::<Vec<_>>(), ["a/", "a/b/"]);
        assert_eq!(prefixes("plain").count(), 0);
    }
}
