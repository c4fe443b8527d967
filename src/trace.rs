//! `--trace`: every byte in and out of every connection, escaped so that
//! the log shows exactly what crossed the wire (`\r\n` and all).
//!
//! A teaching aid, not a production setting: it formats every byte, so it
//! costs far more than the I/O it reports. Credentials are the one thing
//! it does not show: a token in the query (`token=`), the cookie
//! (`ssed_token=`) or `Authorization: Bearer` is logged as `[redacted]`.
//!
//! One line per read or write, to the `log` target `ssed::trace` at `info`
//! level: milliseconds since the server started, the connection number, the
//! direction (`<` read from the client, `>` written to it), how many bytes,
//! and the bytes. A line that starts with `--` is a note about a system
//! call that moved no bytes, or fewer than it was offered:
//!
//! ```text
//!     12.041 ms #7 < 78 B "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n"
//!     12.113 ms #7 > 224 B "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n..."
//!     12.120 ms #7 -- read: WouldBlock (nothing more to read; wait for the next edge)
//!    903.771 ms #9 -- write: short, 65536 of 81920 B taken (the rest waits for a writable edge)
//! ```

use std::io::IoSlice;
use std::sync::OnceLock;
use std::time::Instant;

/// When the trace's clock started: the first traced line, or
/// [`start_clock`], whichever comes first.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Starts the trace's clock (the server calls it when it binds).
pub fn start_clock() {
    STARTED.get_or_init(Instant::now);
}

/// Milliseconds since the trace's clock started.
fn millis() -> f64 {
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// Which way the bytes went.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Read from the client.
    In,
    /// Written to the client.
    Out,
}

/// Logs bytes read from or written to connection `conn_id`.
pub fn bytes(conn_id: u64, direction: Direction, data: &[u8]) {
    line(&format!("#{conn_id}"), direction, data);
}

/// Logs bytes read from or written to one of the bus's connections to
/// Redis, named `redis/commands` or `redis/tail` (with `--bus`):
///
/// ```text
///    15.203 ms redis/commands > 61 B "*9\r\n$4\r\nXADD\r\n$8\r\nssed:log\r\n..."
///    15.611 ms redis/commands < 18 B "$15\r\n1764412345678-0\r\n"
/// ```
pub fn bus_bytes(link: &str, direction: Direction, data: &[u8]) {
    line(&format!("redis/{link}"), direction, data);
}

fn line(who: &str, direction: Direction, data: &[u8]) {
    let arrow = match direction {
        Direction::In => '<',
        Direction::Out => '>',
    };
    log::info!(
        target: "ssed::trace",
        "{:>10.3} ms {who} {arrow} {} B \"{}\"",
        millis(),
        data.len(),
        redact(&escape(data))
    );
}

/// Logs a note about connection `conn_id`: a call that moved no bytes, or
/// fewer than it was offered.
pub fn note(conn_id: u64, what: &str) {
    log::info!(target: "ssed::trace", "{:>10.3} ms #{conn_id} -- {what}", millis());
}

/// Logs the first `written` bytes of a vectored write.
pub fn slices(conn_id: u64, slices: &[IoSlice<'_>], written: usize) {
    let mut left = written;
    let mut data = Vec::with_capacity(written);
    for slice in slices {
        let take = left.min(slice.len());
        data.extend_from_slice(&slice[..take]);
        left -= take;
        if left == 0 {
            break;
        }
    }
    bytes(conn_id, Direction::Out, &data);
    let offered: usize = slices.iter().map(|slice| slice.len()).sum();
    if written < offered {
        note(
            conn_id,
            &format!("write: short, {written} of {offered} B taken (the rest waits for a writable edge)"),
        );
    }
}

/// What follows these, up to the next `&`, `;`, space, quote or escape, is
/// a credential.
const CREDENTIALS: [&str; 3] = ["token=", "Bearer ", "bearer "];

/// `escaped` with every credential replaced by `[redacted]`.
pub fn redact(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some((at, marker)) = CREDENTIALS
        .iter()
        .filter_map(|marker| rest.find(marker).map(|at| (at, *marker)))
        .min()
    {
        let value_start = at + marker.len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let end = value.find(['&', ';', ' ', '"', '\\']).unwrap_or(value.len());
        if end > 0 {
            out.push_str("[redacted]");
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Printable ASCII as it is; `\r`, `\n`, `\t`, `\\`, `"` escaped; every
/// other byte as `\xNN`.
pub fn escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() + 16);
    for &byte in data {
        match byte {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_is_not_printable() {
        assert_eq!(escape(b"GET / HTTP/1.1\r\n"), "GET / HTTP/1.1\\r\\n");
        assert_eq!(escape(b"a\0\xff\"\\"), "a\\x00\\xff\\\"\\\\");
        assert_eq!(escape("é".as_bytes()), "\\xc3\\xa9");
    }

    #[test]
    fn credentials_are_redacted() {
        let request = escape(
            b"GET /events?topic=a&token=eyJ.x.y&lastEventId=4 HTTP/1.1\r\n\
              Authorization: Bearer s3cret\r\nCookie: a=1; ssed_token=eyJ.z; b=2\r\n\r\n",
        );
        let logged = redact(&request);
        for secret in ["eyJ", "s3cret"] {
            assert!(!logged.contains(secret), "{logged}");
        }
        assert!(logged.starts_with("GET /events?topic=a&token=[redacted]&lastEventId=4 HTTP/1.1\\r\\n"));
        assert!(logged.contains("Authorization: Bearer [redacted]\\r\\n"));
        assert!(logged.contains("ssed_token=[redacted]; b=2"));
        assert_eq!(redact("no secrets here"), "no secrets here");
    }
}
