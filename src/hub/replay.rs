//! Where a new stream starts in its view: at the head, right after the
//! client's last id, or after `event: gap` at the oldest event kept.
//!
//! ```text
//!   view's log:  [ e1 | e2 | e3 | e4 ]        head
//!                  │         ▲                 ▲
//!                  │         └ After(e2): replay e3, e4, then live
//!                  └ Gap: `event: gap`, then e1..e4, then live    Live: head
//! ```
//!
//! Nothing is copied for a replay: the stream's cursor is set back in its
//! view's log, and the end-of-turn flush writes from there.

use std::rc::Rc;

use super::{json_string, EventId, Hub, Located, Opening};
use crate::frame::Frame;
use crate::sse;
use crate::topics::Topics;

/// Where a stream starts in its view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume<'a> {
    /// At the head: only what comes next.
    Live,
    /// Right after this id: every event of its topics since.
    After(EventId),
    /// `event: gap` for the id the client sent, then every retained event
    /// of its topics.
    Gap(&'a str),
}

impl Hub {
    /// Opens a stream of `topics`: the view it reads (made now if nobody
    /// reads it yet) and where it starts: at the head; set back after
    /// `last_event_id` when we hold every event after it; else at the
    /// oldest retained event of its topics, after `event: gap`.
    pub fn open(&mut self, topics: &Topics, chunked: bool, last_event_id: Option<&str>) -> Opening {
        let resume = match last_event_id {
            None => Resume::Live,
            Some(text) => match self.locate(text) {
                Located::Held(id) => Resume::After(id),
                _ => Resume::Gap(text),
            },
        };
        self.open_at(topics, chunked, resume)
    }

    /// Opens a stream of `topics` that starts where `resume` says.
    pub fn open_at(&mut self, topics: &Topics, chunked: bool, resume: Resume<'_>) -> Opening {
        let view_id = match self.by_filter.get(&(topics.clone(), chunked)) {
            Some(&id) => id,
            None => self.create_view(topics, chunked),
        };
        let oldest = self.oldest_retained();
        let style = self.style;
        let Some(view) = self.views.get_mut(view_id) else {
            return Opening {
                view: view_id,
                cursor: 0,
                joined: 0,
                gap: None,
            };
        };
        view.forget_before(oldest);
        let joined = view.log.head();
        let (cursor, gap) = match resume {
            Resume::Live => (joined, None),
            Resume::After(id) => (view.position_after(id), None),
            Resume::Gap(last_event_id) => {
                // The oldest event *this stream* could be sent: never the
                // id of an event outside its topics. Then all of them.
                let oldest_in_view = view.index.front().map(|entry| entry.id);
                let gap = gap(last_event_id, oldest_in_view.map(|id| style.json(id)));
                (view.position_after(EventId::ZERO), Some(gap))
            }
        };
        Opening {
            view: view_id,
            cursor,
            joined,
            gap,
        }
    }
}

/// `event: gap` for a client that last saw `last_event_id`, when the
/// oldest event it could still be sent is `oldest` (a JSON value).
///
/// ```text
/// event: gap
/// data: {"last_event_id":"<what the client sent>","oldest":<id or null>}
/// ```
pub fn gap(last_event_id: &str, oldest: Option<String>) -> Rc<Frame> {
    let oldest = oldest.unwrap_or_else(|| "null".to_string());
    let data = format!(
        "{{\"last_event_id\":{},\"oldest\":{oldest}}}",
        json_string(last_event_id)
    );
    // Neither the name nor the id is a peer's: this cannot fail.
    let encoded = sse::encode_event(None, Some("gap"), &data).unwrap_or_default();
    Frame::chunk(&encoded)
}
