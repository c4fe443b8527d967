//! Wall-clock formatting: RFC 3339 for tick events, IMF-fixdate for the HTTP
//! `Date` header, and microseconds since the epoch for event ids.
//!
//! Deadlines never use the wall clock (it can jump); they use `Instant`, in
//! `timer.rs`. This file is only for times that people and clients read.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One reading of both clocks, taken once per turn of the loop and passed
/// down: the monotonic one for deadlines, the wall clock for what people
/// read.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For deadlines and durations.
    pub instant: Instant,
    /// For `Date`, ticks and ids.
    pub wall: SystemTime,
}

impl Now {
    /// Reads both clocks.
    pub fn read() -> Now {
        Now {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// Microseconds since the Unix epoch, the seed of event ids.
pub fn unix_micros(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `2026-11-21T13:45:07Z`.
pub fn rfc3339(now: SystemTime) -> String {
    let (date, (h, m, s), _) = civil(now);
    format!("{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}Z", date.0, date.1, date.2)
}

/// `Sat, 21 Nov 2026 13:45:07 GMT` (RFC 9110 §5.6.7).
pub fn http_date(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let ((y, mo, d), (h, m, s), days) = civil(now);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{m:02}:{s:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(mo - 1) as usize]
    )
}

/// The `Date` header value, formatted at most once a second: a busy
/// second's thousand answers share one formatting.
///
/// Whoever owns it passes the time in, so the wire code never reads the
/// clock and tests can set it.
#[derive(Debug, Default)]
pub struct HttpDate {
    second: Option<u64>,
    text: String,
}

impl HttpDate {
    /// The value for `now`.
    pub fn at(&mut self, now: SystemTime) -> &str {
        let second = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if self.second != Some(second) {
            self.second = Some(second);
            self.text = http_date(now);
        }
        &self.text
    }
}

/// ((year, month, day), (hour, minute, second), days since 1970-01-01).
///
/// Days to civil date is Howard Hinnant's `civil_from_days`: shift the year
/// to start in March so that the leap day falls last, then count 400-year
/// eras of 146,097 days.
fn civil(now: SystemTime) -> ((i64, u32, u32), (u64, u64, u64), u64) {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), (rem / 3600, rem % 3600 / 60, rem % 60), days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc3339(at(784_111_777)), "1994-11-06T08:49:37Z");
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        // A leap day, and the day after.
        assert_eq!(rfc3339(at(1_709_164_800)), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_709_251_200)), "2024-03-01T00:00:00Z");
        assert_eq!(http_date(at(1_795_262_400)), "Sat, 21 Nov 2026 12:00:00 GMT");
    }

    #[test]
    fn the_date_cache_follows_the_second() {
        let mut date = HttpDate::default();
        assert_eq!(date.at(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            date.at(at(0) + Duration::from_millis(999)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(date.at(at(1)), "Thu, 01 Jan 1970 00:00:01 GMT");
    }

    #[test]
    fn micros_count_from_the_epoch() {
        assert_eq!(unix_micros(at(2)), 2_000_000);
    }
}
