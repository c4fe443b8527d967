//! The little JSON the kit's users read and write, by hand.
//!
//! The tests and the soak read numbers out of the flat objects ssed
//! answers with (`{"id":17,"subscribers":2}` from `/publish`, with a
//! string id `"1526919030474-0"` when a bus gives the ids; `/stats`); the
//! load tool writes one JSON line of figures and needs its
//! strings quoted. A few functions cover that, so the kit needs no JSON
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

/// The value after the first `"field":` when it is a number or a string
/// without escapes: the number's digits, or the string's text without its
/// quotes. Ids are either, depending on the server: `{"id":17}` without a
/// bus, `{"id":"1526919030474-0"}` with one.
///
/// ```
/// use ssed_testkit::json::json_scalar;
/// assert_eq!(json_scalar(r#"{"id":17,"n":1}"#, "id"), Some("17"));
/// assert_eq!(json_scalar(r#"{"id": "5-0","n":1}"#, "id"), Some("5-0"));
/// assert_eq!(json_scalar(r#"{"id":null}"#, "id"), None);
/// ```
pub fn json_scalar<'a>(json: &'a str, field: &str) -> Option<&'a str> {
    let key = format!("\"{field}\":");
    let at = json.find(&key)? + key.len();
    let value = json[at..].trim_start();
    if let Some(string) = value.strip_prefix('"') {
        let end = string.find(['"', '\\'])?;
        return (string.as_bytes()[end] == b'"').then(|| &string[..end]);
    }
    let end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    (end > 0).then(|| &value[..end])
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
    fn scalars() {
        assert_eq!(
            json_scalar(r#"{"a":"x\\y"}"#, "a"),
            None,
            "escapes are not undone"
        );
        assert_eq!(json_scalar(r#"{"a":"unterminated"#, "a"), None);
        assert_eq!(json_scalar(r#"{"a":""}"#, "a"), Some(""));
        assert_eq!(json_scalar(r#"{"a":-1}"#, "a"), None);
    }

    #[test]
    fn strings() {
        assert_eq!(quote(""), r#""""#);
        assert_eq!(quote("µs\t"), "\"µs\\u0009\"");
    }
}
