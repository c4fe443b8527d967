//! Latencies as a histogram, not a list: 100,000 subscribers times a few
//! hundred events is tens of millions of deliveries, too many to keep one
//! number each (and, with `--workers`, to send to the parent), while a
//! histogram is a few kilobytes whatever the count, and two of them merge
//! by adding counts.
//!
//! The buckets are those of an HDR histogram with 7 bits of precision, in
//! microseconds:
//!
//! ```text
//! value (µs)        bucket width   buckets
//! 0 .. 255          1              256      exact
//! 256 .. 511        2              128
//! 512 .. 1023       4              128      each power of two split in
//! ...               ...            ...      128: at most 1/128 (0.8 %) off
//! 2^31 .. 2^32-1    2^24           128
//! ```
//!
//! A percentile is reported as the top of its bucket (never below the true
//! value) but no higher than the largest value recorded, which is kept
//! exactly.

use std::fmt::Write as _;

/// Values below this have a bucket each.
const LINEAR: u32 = 256;
/// Buckets per power of two above `LINEAR` (7 bits).
const SUB_BITS: u32 = 7;
const SUB: u32 = 1 << SUB_BITS;
/// Enough for every `u32`: 256 exact, then 128 for each of 2^8 .. 2^31.
const BUCKETS: usize = (LINEAR + (32 - 8) * SUB) as usize;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u32,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

/// The bucket of `value`.
fn index(value: u32) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    // `magnitude` is 8..=31 here: value >= 256.
    let magnitude = 31 - value.leading_zeros();
    let shift = magnitude - SUB_BITS;
    (LINEAR + (magnitude - 8) * SUB + ((value >> shift) - SUB)) as usize
}

/// The largest value that falls in bucket `index`.
fn top(index: usize) -> u32 {
    let index = index as u32;
    if index < LINEAR {
        return index;
    }
    let k = index - LINEAR;
    let shift = k / SUB + 8 - SUB_BITS;
    let sub = u64::from(k % SUB + SUB);
    (((sub + 1) << shift) - 1).min(u64::from(u32::MAX)) as u32
}

impl Histogram {
    pub fn record(&mut self, value: u32) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    #[cfg(test)]
    fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Option<u32> {
        (self.total > 0).then_some(self.max)
    }

    /// The value at quantile `q` (0.5: the median), by nearest rank.
    pub fn percentile(&self, q: f64) -> Option<u32> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(top(i).min(self.max));
            }
        }
        Some(self.max)
    }

    /// `MAX INDEX:COUNT ...` over the buckets in use: one line of text for
    /// a worker's report.
    pub fn encode(&self) -> String {
        let mut text = self.max.to_string();
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 {
                let _ = write!(text, " {i}:{count}");
            }
        }
        text
    }

    /// The inverse of [`encode`](Self::encode).
    pub fn decode(text: &str) -> Result<Histogram, String> {
        let bad = || format!("bad histogram {text:?}");
        let mut words = text.split_whitespace();
        let mut histogram = Histogram {
            max: words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?,
            ..Histogram::default()
        };
        for word in words {
            let (i, count) = word.split_once(':').ok_or_else(bad)?;
            let i: usize = i.parse().map_err(|_| bad())?;
            let count: u64 = count.parse().map_err(|_| bad())?;
            *histogram.counts.get_mut(i).ok_or_else(bad)? += count;
            histogram.total += count;
        }
        Ok(histogram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_within_one_percent() {
        let mut last = 0;
        for value in (0..70_000u32).chain([u32::MAX / 3, u32::MAX - 1, u32::MAX]) {
            let i = index(value);
            assert!(i < BUCKETS && i >= last, "{value}");
            last = i;
            let top = top(i);
            assert!(top >= value, "{value}: top {top}");
            assert!(
                u64::from(top - value) * 128 <= u64::from(value),
                "{value}: top {top}"
            );
        }
        assert_eq!(index(u32::MAX), BUCKETS - 1);
        assert_eq!(top(BUCKETS - 1), u32::MAX);
    }

    #[test]
    fn percentiles_exact_below_256_and_capped_by_max() {
        let mut h = Histogram::default();
        assert_eq!((h.percentile(0.5), h.max()), (None, None));
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(0.5), Some(50));
        assert_eq!(h.percentile(0.99), Some(99));
        assert_eq!(h.percentile(1.0), Some(100));
        h.record(1001);
        assert_eq!(h.percentile(1.0), Some(1001));
        assert_eq!(h.max(), Some(1001));
    }

    #[test]
    fn merge_and_encode_round_trip() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for v in [3, 300, 3000, 30_000_000] {
            a.record(v);
            b.record(v + 1);
        }
        a.merge(&b);
        assert_eq!(a.count(), 8);
        let back = Histogram::decode(&a.encode()).unwrap();
        assert_eq!(
            (back.count(), back.max(), back.counts),
            (8, Some(30_000_001), a.counts)
        );
        for bad in ["", "x", "5 1", "5 1:x", "5 99999:1"] {
            assert!(Histogram::decode(bad).is_err(), "{bad:?}");
        }
    }
}
