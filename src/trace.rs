//! `--trace`: every byte in and out of every connection, escaped so that
//! the log shows exactly what crossed the wire (`\r\n` and all).
//!
//! A teaching aid, not a production setting: it formats every byte, so it
//! costs far more than the I/O it reports. Credentials are the one thing
//! it does not show: a token in the query (`token=`), the cookie
//! (`ssed_token=`) or `Authorization: Bearer` is logged as `[redacted]`. Lines go to the `log` target
//! `ssed::trace` at `info` level:
//!
//! ```text
//! #7 < "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n"
//! #7 > "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n..."
//! ```

use std::io::IoSlice;

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
    let arrow = match direction {
        Direction::In => '<',
        Direction::Out => '>',
    };
    log::info!(target: "ssed::trace", "#{conn_id} {arrow} \"{}\"", redact(&escape(data)));
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
