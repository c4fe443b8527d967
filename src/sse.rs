//! Server-sent event encoding, as the WHATWG HTML standard defines it.
//!
//! This module owns the bytes of the `text/event-stream` format and nothing
//! else: it does no I/O and knows nothing about connections.
//!
//! # Format
//!
//! An event is a block of `field: value` lines ended by a blank line:
//!
//! ```text
//! id: 1732190400000001
//! event: chat
//! data: first line
//! data: second line
//!
//! ```
//!
//! A line that starts with `:` is a comment (our heartbeat, `: ping`), and a
//! `retry: <ms>` line tells the browser how long to wait before reconnecting.
//!
//! # Pure text
//!
//! Nothing here knows about HTTP: chunk framing is added by
//! [`crate::frame::Frame::chunk`], once per event, after encoding.

use std::fmt;

/// Why an event cannot be encoded. Refused at publish time with `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// An event name with CR or LF would end its field early and let the
    /// publisher inject fields of its own.
    NameHasLineBreak,
    /// The same for an id; NUL is also refused in ids, because the WHATWG
    /// parser ignores an `id:` field that contains it.
    IdHasLineBreakOrNul,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::NameHasLineBreak => f.write_str("event name contains a line break"),
            EncodeError::IdHasLineBreakOrNul => f.write_str("event id contains a line break or NUL"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Checks an event name before it is used.
pub fn validate_name(name: &str) -> Result<(), EncodeError> {
    if name.contains(['\r', '\n']) {
        Err(EncodeError::NameHasLineBreak)
    } else {
        Ok(())
    }
}

/// Checks an event id before it is used.
pub fn validate_id(id: &str) -> Result<(), EncodeError> {
    if id.contains(['\r', '\n', '\0']) {
        Err(EncodeError::IdHasLineBreakOrNul)
    } else {
        Ok(())
    }
}

/// Encodes one event: optional `id:`, optional `event:`, one `data:` line
/// per line of `data`, then the blank line that dispatches it.
///
/// WHATWG: "Lines must be separated by either a U+000D CARRIAGE RETURN
/// U+000A LINE FEED (CRLF) character pair, a single U+000A LINE FEED (LF)
/// character, or a single U+000D CARRIAGE RETURN (CR) character." So each of
/// the three ends a data line, and the browser joins the `data:` lines with
/// `\n`: a client sees `\r\n` and `\r` in the data as `\n`.
///
/// Empty data still yields one `data: ` line: the parser then holds a data
/// buffer of `"\n"`, which is not empty, so the event is dispatched (with
/// `""` as its data) instead of being silently dropped.
pub fn encode_event(id: Option<&str>, name: Option<&str>, data: &str) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(id) = id {
        validate_id(id)?;
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if let Some(name) = name {
        validate_name(name)?;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in lines(data) {
        // "data: " and not "data:": the parser strips exactly one leading
        // space, so a line that itself starts with a space keeps it.
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    Ok(out)
}

/// `retry: <ms>` followed by a blank line.
///
/// WHATWG: "If the field value consists of only ASCII digits, then
/// interpret the field value as an integer in base ten, and set the event
/// stream's reconnection time to that integer."
pub fn encode_retry(ms: u64) -> Vec<u8> {
    format!("retry: {ms}\n\n").into_bytes()
}

/// What every stream starts with: the reconnection hint, then an event
/// `connected` that tells the client its connection number.
///
/// ```text
/// retry: 3000
///
/// event: connected
/// data: {"client":7}
///
/// ```
pub fn greeting(retry_ms: u64, client: u64) -> Vec<u8> {
    let mut out = encode_retry(retry_ms);
    let data = format!("{{\"client\":{client}}}");
    // A fixed name and no id: nothing to refuse.
    out.extend_from_slice(&encode_event(None, Some("connected"), &data).unwrap_or_default());
    out
}

/// The heartbeat: a comment line that every parser ignores, but that keeps
/// proxies from timing the stream out and shows the client it is alive.
pub const PING: &[u8] = b": ping\n\n";

/// Splits on CRLF, LF or CR, the three line endings of the event stream.
/// Always yields at least one (possibly empty) line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(text)
            }
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(id: Option<&str>, name: Option<&str>, data: &str) -> String {
        String::from_utf8(encode_event(id, name, data).unwrap()).unwrap()
    }

    #[test]
    fn encodes_data_lines_for_every_line_break() {
        let cases: &[(&str, &str)] = &[
            ("hello", "data: hello\n\n"),
            ("", "data: \n\n"),
            ("a\nb", "data: a\ndata: b\n\n"),
            ("a\r\nb", "data: a\ndata: b\n\n"),
            ("a\rb", "data: a\ndata: b\n\n"),
            ("a\n\nb", "data: a\ndata: \ndata: b\n\n"),
            ("a\r\n\rb", "data: a\ndata: \ndata: b\n\n"),
            ("trailing\n", "data: trailing\ndata: \n\n"),
            ("\n", "data: \ndata: \n\n"),
            ("\r\r\n", "data: \ndata: \ndata: \n\n"),
            (" leading space", "data:  leading space\n\n"),
            ("data: nested", "data: data: nested\n\n"),
            (": not a comment", "data: : not a comment\n\n"),
        ];
        for (data, want) in cases {
            assert_eq!(enc(None, None, data), *want, "data {data:?}");
        }
    }

    #[test]
    fn keeps_unicode_intact() {
        let data = "héllo wörld — 日本語 🎉";
        assert_eq!(enc(None, None, data), format!("data: {data}\n\n"));
        // U+2028 and U+0085 are not SSE line breaks.
        assert_eq!(
            enc(None, None, "a\u{2028}b\u{85}c"),
            "data: a\u{2028}b\u{85}c\n\n"
        );
    }

    #[test]
    fn writes_id_then_name_then_data() {
        assert_eq!(
            enc(Some("42"), Some("chat"), "hi"),
            "id: 42\nevent: chat\ndata: hi\n\n"
        );
        assert_eq!(enc(Some("7"), None, "x"), "id: 7\ndata: x\n\n");
        assert_eq!(enc(None, Some("tick"), "x"), "event: tick\ndata: x\n\n");
    }

    #[test]
    fn refuses_line_breaks_in_names_and_ids() {
        for bad in ["a\nb", "a\rb", "a\r\nb", "\n"] {
            assert_eq!(
                encode_event(None, Some(bad), "x"),
                Err(EncodeError::NameHasLineBreak)
            );
            assert_eq!(
                encode_event(Some(bad), None, "x"),
                Err(EncodeError::IdHasLineBreakOrNul)
            );
        }
        assert_eq!(
            encode_event(Some("1\0x"), None, "x"),
            Err(EncodeError::IdHasLineBreakOrNul)
        );
        assert!(validate_name("ünïcode name").is_ok());
    }

    #[test]
    fn retry_and_ping() {
        assert_eq!(encode_retry(3000), b"retry: 3000\n\n");
        assert_eq!(PING, b": ping\n\n");
        assert_eq!(
            greeting(3000, 7),
            b"retry: 3000\n\nevent: connected\ndata: {\"client\":7}\n\n"
        );
    }
}
