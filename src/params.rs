//! What a publish or a subscription asks for, read from its request and
//! checked, before anything changes: the application's first step for the
//! two routes that carry parameters.
//!
//! Pure functions of the request: a checked value or the [`Rejection`]
//! that says what is wrong with it.

use crate::auth;
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
/// (data from `?msg=`): token, topic, name, UTF-8.
pub fn publish(request: &Request, token: Option<&str>, from_query: bool) -> Result<Publish, Rejection> {
    if let Some(token) = token {
        if !auth::bearer_matches(request.authorization.as_deref(), token) {
            return Err(Rejection::Unauthorized);
        }
    }
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

/// What `GET /events` asked for: topics, and where to resume from
/// (`Last-Event-ID` header, or `?lastEventId=` for clients that cannot set
/// headers).
pub fn subscription(request: &Request) -> Result<(Topics, Option<String>), Rejection> {
    let params = query::pairs(request.query()).map_err(|_| Rejection::BadRequest("query is not UTF-8"))?;
    let topics = Topics::parse(
        params
            .iter()
            .filter(|(n, _)| n == "topic")
            .map(|(_, v)| v.as_str()),
    )
    .map_err(|_| Rejection::BadRequest("invalid topic list"))?;
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
    Ok((topics, last_event_id))
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
    fn publish_needs_the_token_when_set() {
        let anonymous = request("POST /publish HTTP/1.1\r\n\r\n", b"x");
        assert_eq!(
            publish(&anonymous, Some("t"), false),
            Err(Rejection::Unauthorized)
        );
        assert!(publish(&anonymous, None, false).is_ok());
        let signed = request("POST /publish HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n", b"x");
        assert!(publish(&signed, Some("t"), false).is_ok());
    }

    #[test]
    fn publish_reads_topic_name_and_data() {
        let got = publish(
            &request(
                "POST /publish?topic=news&event=headline HTTP/1.1\r\n\r\n",
                "héllo".as_bytes(),
            ),
            None,
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
            None,
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
            let got = publish(&request(head, body), None, *from_query);
            assert!(matches!(got, Err(Rejection::BadRequest(_))), "{head}: {got:?}");
        }
    }

    #[test]
    fn subscription_reads_topics_and_resume_point() {
        let (topics, last) = subscription(&request(
            "GET /events?topic=a&topic=b,c HTTP/1.1\r\nLast-Event-ID: 9\r\n\r\n",
            b"",
        ))
        .unwrap();
        assert!(topics.matches("c") && !topics.matches("d"));
        assert_eq!(last.as_deref(), Some("9"));
        let (topics, last) =
            subscription(&request("GET /events?lastEventId=5 HTTP/1.1\r\n\r\n", b"")).unwrap();
        assert_eq!(topics, Topics::All);
        assert_eq!(last.as_deref(), Some("5"));
        let (_, last) =
            subscription(&request("GET /events HTTP/1.1\r\nLast-Event-ID:\r\n\r\n", b"")).unwrap();
        assert_eq!(last, None);
        assert!(subscription(&request("GET /events?topic=a%01 HTTP/1.1\r\n\r\n", b"")).is_err());
    }
}
