//! Query strings: `topic=a&topic=b&msg=hello+world%21`.
//!
//! Decoding follows the `application/x-www-form-urlencoded` rules of the
//! WHATWG URL standard, as a browser's form or `URLSearchParams` encodes
//! them: pairs split on `&`, name and value on the first `=`, `+` is a space
//! and `%XX` a byte. The decoded bytes must be UTF-8.

use std::fmt;

/// A query that does not decode to UTF-8 text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError;

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("query is not UTF-8 once decoded")
    }
}

/// Every `name=value` pair, decoded, in order. Empty pieces (`a&&b`) are
/// skipped; a name without `=` has the value `""`.
pub fn pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Decodes one component. A `%` not followed by two hex digits is kept as
/// it is, as browsers do.
pub fn decode(component: &str) -> Result<String, QueryError> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(at + 1).and_then(hex), bytes.get(at + 2).and_then(hex)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    at += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        at += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError)
}

fn hex(byte: &u8) -> Option<u8> {
    (*byte as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let got = pairs("topic=a&topic=b%2Cc&msg=hello+world%21&flag&&x=").unwrap();
        let want: Vec<(String, String)> = [
            ("topic", "a"),
            ("topic", "b,c"),
            ("msg", "hello world!"),
            ("flag", ""),
            ("x", ""),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn decodes_unicode_and_keeps_stray_percent() {
        assert_eq!(decode("caf%C3%A9%20%E2%9C%93").unwrap(), "café ✓");
        assert_eq!(decode("100%").unwrap(), "100%");
        assert_eq!(decode("%zz").unwrap(), "%zz");
        assert_eq!(decode("a%0Ab").unwrap(), "a\nb");
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert_eq!(decode("%FF"), Err(QueryError));
        assert!(pairs("msg=%C3").is_err());
    }
}
