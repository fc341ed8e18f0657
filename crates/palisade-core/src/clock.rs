//! The clock every time-dependent decision reads, injectable so tests never sleep.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Wall-clock time for records, monotonic time for durations.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn wall(&self) -> SystemTime;
    fn monotonic(&self) -> Instant;
}

/// The operating system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(SystemTime, Instant)>,
}

impl ManualClock {
    pub fn new(wall: SystemTime) -> Self {
        Self {
            state: Mutex::new((wall, Instant::now())),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0 += by;
        state.1 += by;
    }

    /// Sets the wall clock back (a bad NTP step); the monotonic clock stays.
    pub fn rewind_wall(&self, by: Duration) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0 -= by;
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> SystemTime {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0
    }

    fn monotonic(&self) -> Instant {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let (w0, m0) = (clock.wall(), clock.monotonic());
        assert_eq!(clock.wall(), w0);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(
            clock.wall().duration_since(w0).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(clock.monotonic() - m0, Duration::from_millis(1500));
    }
}
