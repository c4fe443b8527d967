//! Event ids as a client orders them: ssed's own numbers, or a Redis
//! stream's `<ms>-<seq>` with `--bus`.
//!
//! A browser treats an id as an opaque string, and so does ssed's wire.
//! A checker cannot: to say "this subscriber got every event once, in
//! order" it needs to know which of two ids comes first. The two forms ssed
//! writes order the same way once read as a pair of numbers:
//!
//! ```text
//! 1700000000123456        without a bus: one u64        -> (1700000000123456, 0)
//! 1526919030474-3         with a bus: ms, dash, seq     -> (1526919030474, 3)
//! ```
//!
//! Redis orders stream ids by the pair (`9-0` before `10-0`, `1-9` before
//! `1-10`), never as text, and so does [`EventId`]. The text is kept as it
//! came, so a report shows the id the server sent, and a client resumes
//! with exactly that string in `Last-Event-ID`.

use std::cmp::Ordering;
use std::fmt;

/// An event id, ordered as its server orders it; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId {
    major: u64,
    minor: u64,
    text: String,
}

impl EventId {
    /// `N` or `N-M`, both decimal; anything else is `None`.
    ///
    /// ```
    /// use ssed_testkit::id::EventId;
    /// let a = EventId::parse("9-0").unwrap();
    /// let b = EventId::parse("10-0").unwrap();
    /// assert!(a < b, "by the numbers, not as text");
    /// assert_eq!(b.as_str(), "10-0");
    /// assert!(EventId::parse("9-").is_none());
    /// ```
    pub fn parse(text: &str) -> Option<EventId> {
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse::<u64>().ok()
        };
        let (major, minor) = match text.split_once('-') {
            Some((ms, seq)) => (number(ms)?, number(seq)?),
            None => (number(text)?, 0),
        };
        Some(EventId {
            major,
            minor,
            text: text.to_string(),
        })
    }

    /// The id as the server wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A stream id's milliseconds (a plain id's whole number).
    pub fn major(&self) -> u64 {
        self.major
    }
}

impl Ord for EventId {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor).cmp(&(other.major, other.minor))
    }
}

impl PartialOrd for EventId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> EventId {
        EventId::parse(text).unwrap()
    }

    #[test]
    fn orders_by_the_pair() {
        assert!(id("1-9") < id("1-10"));
        assert!(id("9-5") < id("10-0"));
        assert!(id("17") < id("18"));
        assert_eq!(id("5-0").cmp(&id("5-0")), Ordering::Equal);
        assert_eq!(id("123-4").to_string(), "123-4");
        assert_eq!(id("123-4").major(), 123);
    }

    #[test]
    fn refuses_what_is_not_an_id() {
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "a",
            " 1",
            "1 ",
            "+1",
            "99999999999999999999",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }
}
