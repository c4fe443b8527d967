//! A small, seeded pseudo-random generator for load and tests.
//!
//! xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift
//! generators, scrambled", 2016): three shifts and a multiply, 8 bytes of
//! state, good enough to pick topics, sizes and kinds of garbage. Seeded,
//! so a failing soak or test run can be repeated with its seed. Not for
//! anything secret.

/// xorshift64*; see the module doc.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Any seed works: it is mixed, and the state is never zero.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// In `low..high` (just `low` when the range is empty). The modulo
    /// bias is far below what a load pattern notices.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % high.saturating_sub(low).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let n = a.range(16, 2048);
            assert!((16..2048).contains(&n));
            b.range(16, 2048);
        }
        assert_eq!(Rng::new(0).range(5, 5), 5);
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
