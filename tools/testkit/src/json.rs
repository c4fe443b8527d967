//! The little JSON the kit's users read and write, by hand.
//!
//! The tests and the soak read numbers out of the flat objects ssed
//! answers with (`{"id":17,"subscribers":2}` from `/publish`,
//! `/stats`); the load tool writes one JSON line of figures and needs its
//! strings quoted. Two functions cover that, so the kit needs no JSON
//! crate. They are not a JSON parser: [`json_u64`] finds the first
//! `"field":` anywhere in the text, nested or not. For documents whose
//! shape matters, use `serde_json` in the test that needs it.

use std::fmt::Write as _;

/// The unsigned number after the first `"field":` in `json`.
///
/// ```
/// use ssed_testkit::json::json_u64;
/// assert_eq!(json_u64(r#"{"id":17,"subscribers": 2}"#, "subscribers"), Some(2));
/// assert_eq!(json_u64(r#"{"id":"x"}"#, "id"), None);
/// ```
pub fn json_u64(json: &str, field: &str) -> Option<u64> {
    let key = format!("\"{field}\":");
    let at = json.find(&key)? + key.len();
    let value = json[at..].trim_start();
    let end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    value[..end].parse().ok()
}

/// `text` as a JSON string literal, quotes included (RFC 8259 §7: `"`,
/// `\` and control characters are escaped; everything else is itself).
///
/// ```
/// use ssed_testkit::json::quote;
/// assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
/// ```
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
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

    #[test]
    fn numbers() {
        let stats = r#"{"connections":3,"published":12,"bytes_out":0}"#;
        assert_eq!(json_u64(stats, "published"), Some(12));
        assert_eq!(json_u64(stats, "bytes_out"), Some(0));
        assert_eq!(json_u64(stats, "missing"), None);
        assert_eq!(json_u64(r#"{"n":-1}"#, "n"), None);
    }

    #[test]
    fn strings() {
        assert_eq!(quote(""), r#""""#);
        assert_eq!(quote("µs\t"), "\"µs\\u0009\"");
    }
}
