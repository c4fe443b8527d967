//! Topics: what a publisher names and a subscriber asks for.
//!
//! ```text
//! GET /events                    every topic
//! GET /events?topic=news         one
//! GET /events?topic=a,b&topic=c  a set (order and repeats do not matter)
//! POST /publish?topic=news       one, `default` when none is named
//! ```
//!
//! A name is 1 to 128 bytes with no control characters; a stream asks for
//! at most 32. Subscribers that ask for the same topics have the same
//! filter, and share one view of the log (`log.rs`).

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
        // In order, so that `a,b` and `b,a` are one filter (and one view).
        topics.sort_unstable();
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
}
