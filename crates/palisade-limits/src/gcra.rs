//! GCRA, the generic cell rate algorithm: a rate kept as one timestamp per key, smooth, with no burst at a window's edge.
//!
//! The state is the theoretical arrival time (TAT): when the key would be
//! empty again if nothing more came. A call costs one emission interval;
//! it is admitted when the new TAT is no further ahead of now than the
//! burst allows. The Redis backend runs the same arithmetic in its script
//! (`redis/check.lua`); the tests here pin what both compute.

/// Admits `cost` calls at `now` (nanoseconds) against a key whose TAT is
/// `tat`: the new TAT, or how long until the calls would be admitted.
pub fn admit(tat: u64, now: u64, emission: u64, burst: u64, cost: u64) -> Result<u64, u64> {
    let increment = emission.saturating_mul(cost);
    let tolerance = emission.saturating_mul(burst);
    let next = tat.max(now).saturating_add(increment);
    let ahead = next.saturating_sub(now);
    if ahead > tolerance {
        Err(ahead - tolerance)
    } else {
        Ok(next)
    }
}

/// How much of the burst a TAT uses at `now`, in calls (rounded up).
pub fn used(tat: u64, now: u64, emission: u64) -> u64 {
    tat.saturating_sub(now).div_ceil(emission.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_passes_at_once_then_one_per_interval() {
        // 30 per minute, burst 30: one call every 2 s once the burst is spent.
        let (emission, burst) = (2 * SECOND, 30);
        let mut tat = 0;
        let now = 1_000 * SECOND;
        for _ in 0..30 {
            tat = admit(tat, now, emission, burst, 1).unwrap();
        }
        assert_eq!(admit(tat, now, emission, burst, 1), Err(2 * SECOND));
        assert_eq!(used(tat, now, emission), 30);
        assert!(admit(tat, now + SECOND, emission, burst, 1).is_err());
        let later = now + 2 * SECOND;
        tat = admit(tat, later, emission, burst, 1).unwrap();
        assert!(admit(tat, later, emission, burst, 1).is_err());
    }

    #[test]
    fn an_idle_key_is_full_again_but_no_fuller() {
        let (emission, burst) = (SECOND, 3);
        let tat = admit(0, 10 * SECOND, emission, burst, 3).unwrap();
        assert!(admit(tat, 10 * SECOND, emission, burst, 1).is_err());
        // An hour idle gives back the burst, not an hour's worth.
        let now = 3_610 * SECOND;
        let mut tat = tat;
        for _ in 0..3 {
            tat = admit(tat, now, emission, burst, 1).unwrap();
        }
        assert!(admit(tat, now, emission, burst, 1).is_err());
    }

    #[test]
    fn a_clock_that_goes_back_admits_less_never_more() {
        let (emission, burst) = (SECOND, 2);
        let now = 100 * SECOND;
        let tat = admit(
            admit(0, now, emission, burst, 1).unwrap(),
            now,
            emission,
            burst,
            1,
        )
        .unwrap();
        assert!(admit(tat, now - 50 * SECOND, emission, burst, 1).is_err());
    }

    proptest! {
        /// Over any run of calls at non-decreasing times, the admitted ones
        /// never exceed burst + elapsed / emission.
        #[test]
        fn never_admits_more_than_burst_plus_elapsed(
            gaps in proptest::collection::vec(0u64..3 * SECOND, 1..300),
            burst in 1u64..20,
            emission in 1u64..(2 * SECOND),
        ) {
            let start = 1_000 * SECOND;
            let (mut now, mut tat, mut admitted) = (start, 0u64, 0u64);
            for gap in gaps {
                now += gap;
                if let Ok(next) = admit(tat, now, emission, burst, 1) {
                    tat = next;
                    admitted += 1;
                }
                prop_assert!(admitted <= burst + (now - start) / emission);
            }
        }
    }
}
