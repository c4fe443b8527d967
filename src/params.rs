//! What a publish or a subscription asks for, read from its request and
//! checked, before anything changes: the application's first step for the
//! two routes that carry parameters.
//!
//! Pure functions of the request: a checked value or the [`Rejection`]
//! that says what is wrong with it.

use crate::http::query;
use crate::http::{Rejection, Request};
use crate::sse;
use crate::topics::{self, Topics};

/// A checked publish: where, under what name, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The topic (`default` when the request names none).
    pub topic: String,
    /// The event name, if any.
    pub name: Option<String>,
    /// The data, as the client sent it.
    pub data: String,
}

/// Checks a `POST /publish` (data from the body) or `GET /broadcast`
/// (data from `?msg=`): topic, name, UTF-8. Who may publish is the
/// service's to check (`auth.rs`), before this.
pub fn publish(request: &Request, from_query: bool) -> Result<Publish, Rejection> {
    let params = query::pairs(request.query()).map_err(|_| Rejection::BadRequest("query is not UTF-8"))?;
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let topic = param("topic")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| topics::DEFAULT_TOPIC.to_string());
    topics::validate_topic(&topic).map_err(|_| Rejection::BadRequest("invalid topic name"))?;
    let name = param("event").filter(|n| !n.is_empty());
    if let Some(name) = &name {
        sse::validate_name(name).map_err(|_| Rejection::BadRequest("event name contains a line break"))?;
    }
    let data = if from_query {
        param("msg").ok_or(Rejection::BadRequest("missing ?msg="))?
    } else {
        String::from_utf8(request.body.clone()).map_err(|_| Rejection::BadRequest("body is not UTF-8"))?
    };
    Ok(Publish { topic, name, data })
}

/// What `GET /events` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The topics (every one when none is named, or `*` is).
    pub topics: Topics,
    /// Whether any topic was named at all: with a token, a stream that
    /// names none gets what its token covers, and one that names `*` must
    /// be covered for everything.
    pub named: bool,
    /// Where to resume from (`Last-Event-ID` header, or `?lastEventId=`
    /// for clients that cannot set headers).
    pub last_event_id: Option<String>,
}

/// Reads what `GET /events` asks for.
pub fn subscription(request: &Request) -> Result<Subscribe, Rejection> {
    let params = query::pairs(request.query()).map_err(|_| Rejection::BadRequest("query is not UTF-8"))?;
    let values = || {
        params
            .iter()
            .filter(|(n, _)| n == "topic")
            .map(|(_, v)| v.as_str())
    };
    let topics = Topics::parse(values()).map_err(|_| Rejection::BadRequest("invalid topic list"))?;
    let named = values().any(|value| value.split(',').any(|name| !name.is_empty()));
    let last_event_id = request
        .last_event_id
        .clone()
        .or_else(|| {
            params
                .iter()
                .find(|(n, _)| n == "lastEventId")
                .map(|(_, v)| v.clone())
        })
        .filter(|id| !id.is_empty());
    Ok(Subscribe {
        topics,
        named,
        last_event_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    fn request(head: &str, body: &[u8]) -> Request {
        let (mut request, _) = parse_head(head.as_bytes()).unwrap().unwrap();
        request.body = body.to_vec();
        request
    }

    #[test]
    fn publish_reads_topic_name_and_data() {
        let got = publish(
            &request(
                "POST /publish?topic=news&event=headline HTTP/1.1\r\n\r\n",
                "héllo".as_bytes(),
            ),
            false,
        )
        .unwrap();
        assert_eq!(
            got,
            Publish {
                topic: "news".into(),
                name: Some("headline".into()),
                data: "héllo".into()
            }
        );
        let broadcast = publish(
            &request("GET /broadcast?msg=hi+there HTTP/1.1\r\n\r\n", b""),
            true,
        )
        .unwrap();
        assert_eq!(broadcast.topic, "default");
        assert_eq!(broadcast.data, "hi there");
        assert_eq!(broadcast.name, None);
    }

    #[test]
    fn publish_refuses_bad_input() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("POST /publish?event=a%0Ab HTTP/1.1\r\n\r\n", b"x", false),
            ("POST /publish?topic=a%0Ab HTTP/1.1\r\n\r\n", b"x", false),
            ("POST /publish HTTP/1.1\r\n\r\n", b"\xff\xfe", false),
            ("POST /publish?topic=%FF HTTP/1.1\r\n\r\n", b"x", false),
            ("GET /broadcast HTTP/1.1\r\n\r\n", b"", true),
        ];
        for (head, body, from_query) in cases {
            let got = publish(&request(head, body), *from_query);
            assert!(matches!(got, Err(Rejection::BadRequest(_))), "{head}: {got:?}");
        }
    }

    #[test]
    fn subscription_reads_topics_and_resume_point() {
        let asked = subscription(&request(
            "GET /events?topic=a&topic=b,c HTTP/1.1\r\nLast-Event-ID: 9\r\n\r\n",
            b"",
        ))
        .unwrap();
        assert!(asked.topics.matches("c") && !asked.topics.matches("d"));
        assert!(asked.named);
        assert_eq!(asked.last_event_id.as_deref(), Some("9"));
        let asked = subscription(&request("GET /events?lastEventId=5 HTTP/1.1\r\n\r\n", b"")).unwrap();
        assert_eq!((asked.topics, asked.named), (Topics::All, false));
        assert_eq!(asked.last_event_id.as_deref(), Some("5"));
        let star = subscription(&request("GET /events?topic=* HTTP/1.1\r\n\r\n", b"")).unwrap();
        assert_eq!((star.topics, star.named), (Topics::All, true));
        let asked = subscription(&request("GET /events HTTP/1.1\r\nLast-Event-ID:\r\n\r\n", b"")).unwrap();
        assert_eq!(asked.last_event_id, None);
        assert!(subscription(&request("GET /events?topic=a%01 HTTP/1.1\r\n\r\n", b"")).is_err());
    }
}
