//! One value, checked: the parsers the flags table calls.
//!
//! Each takes `name`, the flag or variable as the user wrote it (`--tick`,
//! `SSED_TICK`), and puts it first in any error, so a message always says
//! where the bad value came from.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::{ConfigError, Secret, MIN_DURATION, MIN_JWT_SECRET};

/// A whole number from `least` to `most`; `words` says `most` for people.
pub(super) fn number(name: &str, text: &str, least: u64, most: u64, words: &str) -> Result<u64, ConfigError> {
    let text = text.trim();
    let too_many = || {
        ConfigError(format!(
            "{name}: {text} is more than the most allowed, {most} ({words})"
        ))
    };
    let n: u64 = match text.parse() {
        Ok(n) => n,
        // All digits, yet not a u64: a number past even u64::MAX.
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => return Err(too_many()),
        Err(_) => return Err(ConfigError(format!("{name}: '{text}' is not a whole number"))),
    };
    if n > most {
        return Err(too_many());
    }
    if n < least {
        return Err(ConfigError(format!(
            "{name}: {text} is less than the least allowed, {least}"
        )));
    }
    Ok(n)
}

/// [`number`] for a count or size kept as `usize`.
pub(super) fn count(
    name: &str,
    text: &str,
    least: u64,
    most: u64,
    words: &str,
) -> Result<usize, ConfigError> {
    let n = number(name, text, least, most, words)?;
    // Every bound is below 2^32 and ssed runs only where `usize` has at
    // least 32 bits, so this cannot fail; checked rather than cast all the
    // same.
    usize::try_from(n).map_err(|_| ConfigError(format!("{name}: {n} does not fit in memory here")))
}

/// Seconds, fractions allowed (`0.5`), at most `most`; `0` means off
/// (`None`), and anything else is at least [`MIN_DURATION`].
pub(super) fn period(
    name: &str,
    text: &str,
    most: u64,
    words: &str,
) -> Result<Option<Duration>, ConfigError> {
    let text = text.trim();
    let secs: f64 = text
        .parse()
        .ok()
        .filter(|secs: &f64| !secs.is_nan())
        .ok_or_else(|| ConfigError(format!("{name}: '{text}' is not a number of seconds")))?;
    // Compared as f64 before any conversion: `Duration::from_secs_f64`
    // panics on a negative or huge value.
    if secs > most as f64 {
        return Err(ConfigError(format!(
            "{name}: {text} is more than the most allowed, {most} ({words})"
        )));
    }
    if secs < 0.0 {
        return Err(ConfigError(format!(
            "{name}: {text} is less than the least allowed, 0"
        )));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    let least = MIN_DURATION.as_secs_f64();
    if secs < least {
        return Err(ConfigError(format!(
            "{name}: {text} is less than the least allowed, {least} (1 ms)"
        )));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// An address to listen on: `127.0.0.1:8080`, `[::1]:80`, `localhost:80`.
pub(super) fn addr(name: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError(format!("{name}: '{text}' is not an address like 127.0.0.1:8080")))
}

/// A switch's value: what `--trace=VALUE` and `SSED_TRACE=VALUE` accept.
pub(super) fn switch(name: &str, text: &str) -> Result<bool, ConfigError> {
    match text.trim() {
        "1" => Ok(true),
        "0" => Ok(false),
        word if word.eq_ignore_ascii_case("true") => Ok(true),
        word if word.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ConfigError(format!(
            "{name}: '{other}' is not one of 1, true, 0, false"
        ))),
    }
}

/// A JWT secret, checked: long enough, and usable by this build.
pub(super) fn jwt_secret(name: &str, bytes: Vec<u8>) -> Result<Secret, ConfigError> {
    if !cfg!(feature = "jwt") {
        return Err(ConfigError(format!(
            "{name}: this ssed was built without the jwt feature (cargo build --features jwt)"
        )));
    }
    if bytes.len() < MIN_JWT_SECRET {
        return Err(ConfigError(format!(
            "{name}: the secret must be at least {MIN_JWT_SECRET} bytes (RFC 7518 §3.2), not {}",
            bytes.len()
        )));
    }
    Ok(Secret(bytes))
}

/// A JWT secret read from the file at `path`.
pub(super) fn jwt_secret_file(name: &str, path: &str) -> Result<Secret, ConfigError> {
    let mut bytes = std::fs::read(path).map_err(|e| ConfigError(format!("{name}: {path}: {e}")))?;
    // A file written by `echo` ends with a line break that is not part of
    // the secret.
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    jwt_secret(name, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches() {
        for (text, want) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("0", false),
            ("False", false),
        ] {
            assert_eq!(switch("SSED_TRACE", text), Ok(want), "{text}");
        }
        for text in ["", "yes", "2", "on", "t"] {
            let error = switch("SSED_TRACE", text).unwrap_err().0;
            assert!(error.starts_with("SSED_TRACE: "), "{error}");
        }
    }

    #[test]
    fn errors_name_where_the_value_came_from() {
        assert!(number("SSED_RETRY", "x", 0, 1, "one")
            .unwrap_err()
            .0
            .starts_with("SSED_RETRY: "));
        assert!(period("SSED_TICK", "x", 1, "one")
            .unwrap_err()
            .0
            .starts_with("SSED_TICK: "));
        assert!(addr("SSED_LISTEN", "nowhere")
            .unwrap_err()
            .0
            .starts_with("SSED_LISTEN: "));
    }
}
