//! A small pseudo-random generator, for spreading reconnects over time so
//! that thousands of clients told to come back do not all come back in the
//! same instant. Not for anything secret.

/// xorshift64*: enough randomness to spread reconnects, nothing more.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `seed` and the process id, so two processes started in
    /// the same microsecond still differ.
    pub fn seeded(seed: u64) -> Self {
        Rng(seed ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `low..=high`; `low` itself when `high <= low`, and
    /// never an overflow, whatever the bounds.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        let Some(span) = high.checked_sub(low) else {
            return low;
        };
        match span.checked_add(1) {
            Some(width) => low + self.next() % width,
            None => self.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range() {
        let mut rng = Rng::seeded(42);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..10_000 {
            let n = rng.between(5, 30);
            assert!((5..=30).contains(&n));
            seen_low |= n == 5;
            seen_high |= n == 30;
        }
        assert!(seen_low && seen_high);
    }

    #[test]
    fn any_bounds_are_safe() {
        let mut rng = Rng::seeded(1);
        assert_eq!(rng.between(9, 3), 9);
        assert_eq!(rng.between(7, 7), 7);
        rng.between(0, u64::MAX);
        assert!(rng.between(u64::MAX - 1, u64::MAX) >= u64::MAX - 1);
    }
}
