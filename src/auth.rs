//! Who may do what: the publish token (`--publish-token`) and subscriber
//! tokens (JWTs signed with `--jwt-secret`).
//!
//! ```text
//! POST /publish HTTP/1.1
//! Authorization: Bearer s3cret                 the publish token, or a JWT
//!
//! GET /events?topic=user/42/orders HTTP/1.1
//! Authorization: Bearer eyJhbGciOi...          a JWT, from the header,
//! Cookie: ssed_token=eyJhbGciOi...             or the cookie,
//! GET /events?token=eyJhbGciOi...              or the query (EventSource
//!                                              can send no header)
//! ```
//!
//! A JWT's claims say what its bearer may read and publish, as topic
//! patterns:
//!
//! ```json
//! {"exp": 1790000000, "sub": "user-42",
//!  "ssed": {"subscribe": ["news", "user/42/*"], "publish": ["user/42/*"]}}
//! ```
//!
//! Checking one ([`verify`]) is HS256 with the `hmac` and `sha2` crates and
//! a constant-time comparison, base64url with `base64`, the claims with
//! `serde_json`: no cryptography or JSON by hand. Those crates sit behind
//! the cargo feature `jwt` (on by default); without it, this file still
//! reads tokens off requests but [`verify`] refuses every one, and
//! `--jwt-secret` is refused at start.

use std::fmt;

use crate::http::{query, Rejection, Request};
use crate::topics;

#[cfg(feature = "jwt")]
mod jwt;

#[cfg(feature = "jwt")]
pub use jwt::verify;

/// The longest token we look at. Longer ones are refused before any
/// decoding (`431`).
pub const MAX_TOKEN: usize = 8 * 1024;

/// What a verified token lets its bearer do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// `sub`: who it is, for the logs.
    pub subject: Option<String>,
    /// `exp`: when it stops being good, in seconds since the epoch.
    pub expires: Option<u64>,
    /// `ssed.subscribe`: the topic patterns it may read.
    pub subscribe: Vec<String>,
    /// `ssed.publish`: the topic patterns it may publish to.
    pub publish: Vec<String>,
}

impl Grant {
    /// Whether it may read everything `item` (a name or a pattern) covers.
    pub fn may_read(&self, item: &str) -> bool {
        self.subscribe
            .iter()
            .any(|pattern| topics::covers_all_of(pattern, item))
    }

    /// Whether it may publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|pattern| topics::covers(pattern, topic))
    }
}

/// Why a token was refused: one line, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// None was sent.
    Missing,
    /// Longer than [`MAX_TOKEN`].
    TooLarge,
    /// Not a JWT we can read (the reason says which part).
    Malformed(&'static str),
    /// An `alg` other than HS256 (`none` included).
    Algorithm,
    /// The signature does not match: a wrong secret, or altered claims.
    Signature,
    /// Past its `exp`.
    Expired,
    /// Before its `nbf`.
    NotYetValid,
    /// This ssed was built without the `jwt` feature.
    Unsupported,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl TokenError {
    fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "a token is needed (Authorization: Bearer, the ssed_token cookie, or the token query parameter)",
            TokenError::TooLarge => "token too large",
            TokenError::Malformed(why) => why,
            TokenError::Algorithm => "token alg must be HS256",
            TokenError::Signature => "token signature does not match",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not valid yet (nbf)",
            TokenError::Unsupported => "this ssed was built without tokens",
        }
    }

    /// The refusal it is answered with.
    pub fn rejection(&self) -> Rejection {
        match self {
            TokenError::TooLarge => Rejection::HeadersTooLarge,
            other => Rejection::Unauthorized(other.reason()),
        }
    }
}

/// Without the `jwt` feature every token is refused (and `--jwt-secret`
/// is refused at start, so this is never asked).
#[cfg(not(feature = "jwt"))]
pub fn verify(_token: &str, _secret: &[u8], _now: u64) -> Result<Grant, TokenError> {
    Err(TokenError::Unsupported)
}

/// The token a request carries, looked for in order: `Authorization:
/// Bearer`, the cookie `ssed_token`, the query's `token`.
pub fn request_token(request: &Request) -> Option<String> {
    if let Some(token) = request.authorization.as_deref().and_then(bearer) {
        return Some(String::from_utf8_lossy(token).into_owned());
    }
    if let Some(token) = request.cookie.as_deref().and_then(cookie_token) {
        return Some(String::from_utf8_lossy(token).into_owned());
    }
    let pairs = query::pairs(request.query()).ok()?;
    pairs
        .into_iter()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value)
}

/// The credentials of `Authorization: Bearer <credentials>`.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
        .filter(|token| !token.is_empty())
}

/// `ssed_token` from a `Cookie` header (RFC 6265 §4.2.1: `name=value`
/// pairs separated by `; `).
fn cookie_token(cookie: &[u8]) -> Option<&[u8]> {
    cookie
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .find_map(|pair| pair.strip_prefix(b"ssed_token="))
        .filter(|token| !token.is_empty())
}

/// `Authorization: Bearer <token>`, compared in time that does not depend
/// on how much of the token matched (only on its length, which is no
/// secret worth keeping).
pub fn bearer_matches(authorization: Option<&[u8]>, token: &str) -> bool {
    authorization
        .and_then(bearer)
        .is_some_and(|sent| constant_time_eq(sent, token.as_bytes()))
}

/// Compares every byte whatever the earlier ones were, folding the
/// differences into one accumulator, so the time taken says nothing about
/// where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_bearer_token() {
        let cases: &[(Option<&[u8]>, bool)] = &[
            (Some(b"Bearer s3cret"), true),
            (Some(b"bearer s3cret"), true),
            (Some(b"Bearer s3cret "), true),
            (Some(b"Bearer s3cre"), false),
            (Some(b"Bearer s3cretX"), false),
            (Some(b"Basic s3cret"), false),
            (Some(b"Bearer"), false),
            (Some(b"Bearer "), false),
            (Some(b""), false),
            (None, false),
        ];
        for (header, want) in cases {
            assert_eq!(bearer_matches(*header, "s3cret"), *want, "{header:?}");
        }
    }

    #[test]
    fn finds_the_token_in_header_cookie_or_query_in_that_order() {
        use crate::http::request::parse_head;
        let token = |head: &str| {
            let (request, _) = parse_head(head.as_bytes()).unwrap().unwrap();
            request_token(&request)
        };
        assert_eq!(token("GET /events HTTP/1.1\r\n\r\n"), None);
        assert_eq!(
            token("GET /events?token=q HTTP/1.1\r\n\r\n").as_deref(),
            Some("q")
        );
        assert_eq!(
            token("GET /events?token=q HTTP/1.1\r\nCookie: a=1; ssed_token=c\r\n\r\n").as_deref(),
            Some("c")
        );
        assert_eq!(
            token("GET /events?token=q HTTP/1.1\r\nCookie: ssed_token=c\r\nAuthorization: Bearer h\r\n\r\n")
                .as_deref(),
            Some("h")
        );
        assert_eq!(
            token("GET / HTTP/1.1\r\nCookie: xssed_token=c; ssed_token=\r\n\r\n"),
            None
        );
    }

    #[test]
    fn a_grant_covers_what_its_patterns_cover() {
        let grant = Grant {
            subscribe: vec!["news".into(), "user/42/*".into()],
            publish: vec!["user/42/*".into()],
            ..Grant::default()
        };
        assert!(grant.may_read("news") && grant.may_read("user/42/orders") && grant.may_read("user/42/*"));
        assert!(!grant.may_read("user/43") && !grant.may_read("*") && !grant.may_read("newsletter"));
        assert!(grant.may_publish("user/42/x") && !grant.may_publish("news"));
    }
}
