//! Checking a JWT (RFC 7519) signed with HS256 (RFC 7518 §3.2).
//!
//! ```text
//!   eyJhbGciOiJIUzI1NiJ9 . eyJzdWIiOiJ1c2VyLTQyIn0 . 3q2-7w...
//!   └── header ────────┘   └── claims ───────────┘   └── signature ──┘
//!   base64url(JSON)        base64url(JSON)           base64url(HMAC-SHA256(
//!                                                      secret, "header.claims"))
//! ```
//!
//! In this order, each step refusing what it cannot vouch for: the size;
//! three parts; a header whose `alg` is exactly `HS256` (RFC 8725 §3.1:
//! never let the token pick its algorithm, `none` least of all); the
//! signature, compared in constant time by `hmac`; only then the claims,
//! each of the type it must have.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::{Grant, TokenError, MAX_TOKEN};
use crate::topics;

/// Checks `token` against `secret` at `now` (seconds since the epoch) and
/// returns what it grants.
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<Grant, TokenError> {
    if token.len() > MAX_TOKEN {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "a token is three base64url parts joined by '.'",
        ));
    };
    let header = json_object(header).ok_or(TokenError::Malformed("token header is not base64url JSON"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("token signature is not base64url"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::Signature)?;
    // The signed input is the first two parts as sent, dot included.
    mac.update(&token.as_bytes()[..token.len() - signature_len(token)]);
    mac.verify_slice(&signature).map_err(|_| TokenError::Signature)?;
    let claims = json_object(claims).ok_or(TokenError::Malformed("token claims are not base64url JSON"))?;
    grant(&claims, now)
}

/// The bytes after the last `.`, and the `.` itself.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

/// A base64url (no padding) JSON object.
fn json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// What the claims grant, each claim of the type it must be.
fn grant(claims: &Map<String, Value>, now: u64) -> Result<Grant, TokenError> {
    let expires = date(claims.get("exp"), "token exp is not a number")?;
    if expires.is_some_and(|exp| now >= exp) {
        return Err(TokenError::Expired);
    }
    // RFC 7519 §4.1.5: "MUST NOT be accepted for processing" before `nbf`.
    if date(claims.get("nbf"), "token nbf is not a number")?.is_some_and(|nbf| now < nbf) {
        return Err(TokenError::NotYetValid);
    }
    let subject = match claims.get("sub") {
        None => None,
        Some(Value::String(sub)) => Some(sub.clone()),
        Some(_) => return Err(TokenError::Malformed("token sub is not a string")),
    };
    let (subscribe, publish) = match claims.get("ssed") {
        None => (Vec::new(), Vec::new()),
        Some(Value::Object(ssed)) => (patterns(ssed.get("subscribe"))?, patterns(ssed.get("publish"))?),
        Some(_) => return Err(TokenError::Malformed("token claim ssed is not an object")),
    };
    Ok(Grant {
        subject,
        expires,
        subscribe,
        publish,
    })
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly with a
/// fraction (dropped); one past any clock saturates, never wraps.
fn date(claim: Option<&Value>, why: &'static str) -> Result<Option<u64>, TokenError> {
    match claim {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            // `as` saturates: 1e300 is u64::MAX, far past any clock.
            Some(secs) if secs >= 0.0 && secs.is_finite() => Ok(Some(secs.floor() as u64)),
            _ => Err(TokenError::Malformed(why)),
        },
        Some(_) => Err(TokenError::Malformed(why)),
    }
}

/// A list of topic patterns, or nothing.
fn patterns(list: Option<&Value>) -> Result<Vec<String>, TokenError> {
    const WHY: &str = "token claims ssed.subscribe and ssed.publish are lists of topic patterns";
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = list else {
        return Err(TokenError::Malformed(WHY));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(pattern) if topics::validate_pattern(pattern).is_ok() => Ok(pattern.clone()),
            _ => Err(TokenError::Malformed(WHY)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These tests build tokens by hand from the RFC's parts, to reach
    /// every refusal; the integration tests use an independent JWT library.
    fn sign(header: &str, claims: &str, secret: &[u8]) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_good_token_grants_its_claims() {
        let claims = r#"{"exp":1800000100,"sub":"user-42","ssed":{"subscribe":["news","user/42/*"],"publish":["user/42/*"]}}"#;
        let grant = verify(&sign(HS256, claims, b"k"), b"k", NOW).unwrap();
        assert_eq!(grant.subject.as_deref(), Some("user-42"));
        assert_eq!(grant.expires, Some(1_800_000_100));
        assert_eq!(grant.subscribe, ["news", "user/42/*"]);
        assert_eq!(grant.publish, ["user/42/*"]);
        let far = verify(&sign(HS256, r#"{"exp":1e300,"nbf":1800000000}"#, b"k"), b"k", NOW).unwrap();
        assert_eq!(far.expires, Some(u64::MAX));
        let bare = verify(&sign(HS256, "{}", b"k"), b"k", NOW).unwrap();
        assert_eq!(bare, Grant::default());
    }

    #[test]
    fn refuses_every_kind_of_bad_token() {
        let good = sign(HS256, r#"{"sub":"a"}"#, b"k");
        let (head, rest) = good.split_once('.').unwrap();
        let signature = rest.rsplit('.').next().unwrap();
        let altered = format!("{head}.{}.{signature}", URL_SAFE_NO_PAD.encode(r#"{"sub":"b"}"#));
        let cases: Vec<(String, TokenError)> = vec![
            (sign(r#"{"alg":"none"}"#, "{}", b"k"), TokenError::Algorithm),
            (sign(r#"{"alg":"HS512"}"#, "{}", b"k"), TokenError::Algorithm),
            (sign(r#"{"alg":"RS256"}"#, "{}", b"k"), TokenError::Algorithm),
            (sign(r#"{"typ":"JWT"}"#, "{}", b"k"), TokenError::Algorithm),
            (
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                    URL_SAFE_NO_PAD.encode("{}")
                ),
                TokenError::Algorithm,
            ),
            (sign(HS256, "{}", b"other secret"), TokenError::Signature),
            (altered, TokenError::Signature),
            (sign(HS256, r#"{"exp":1799999999}"#, b"k"), TokenError::Expired),
            (sign(HS256, r#"{"exp":1800000000}"#, b"k"), TokenError::Expired),
            (
                sign(HS256, r#"{"exp":"1900000000"}"#, b"k"),
                TokenError::Malformed("token exp is not a number"),
            ),
            (
                sign(HS256, r#"{"nbf":1800000001}"#, b"k"),
                TokenError::NotYetValid,
            ),
            (
                sign(HS256, r#"{"nbf":"soon"}"#, b"k"),
                TokenError::Malformed("token nbf is not a number"),
            ),
            (
                sign(HS256, r#"{"sub":7}"#, b"k"),
                TokenError::Malformed("token sub is not a string"),
            ),
            (
                sign(HS256, r#"{"ssed":{"subscribe":"news"}}"#, b"k"),
                TokenError::Malformed(
                    "token claims ssed.subscribe and ssed.publish are lists of topic patterns",
                ),
            ),
            (
                sign(HS256, r#"{"ssed":{"publish":["a*b"]}}"#, b"k"),
                TokenError::Malformed(
                    "token claims ssed.subscribe and ssed.publish are lists of topic patterns",
                ),
            ),
            (
                sign(HS256, r#"[1,2]"#, b"k"),
                TokenError::Malformed("token claims are not base64url JSON"),
            ),
            (
                "a.b".into(),
                TokenError::Malformed("a token is three base64url parts joined by '.'"),
            ),
            (
                "a.b.c.d".into(),
                TokenError::Malformed("a token is three base64url parts joined by '.'"),
            ),
            (
                "!!!.e30.e30".into(),
                TokenError::Malformed("token header is not base64url JSON"),
            ),
            (
                format!("{head}.e30.!!!"),
                TokenError::Malformed("token signature is not base64url"),
            ),
            (format!("{head}.!!!.{signature}"), TokenError::Signature),
            ("x".repeat(MAX_TOKEN + 1), TokenError::TooLarge),
        ];
        for (token, want) in cases {
            let shown = &token[..token.len().min(60)];
            assert_eq!(verify(&token, b"k", NOW), Err(want), "{shown}");
        }
    }
}
