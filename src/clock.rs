//! The run's wall clock in unix seconds: the system's, or a fixed time. The store's ages (what
//! is young enough to reuse, when a run started) are read from it, so a test can age a store
//! by setting the time instead of waiting; the code path is the same in every build.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    #[default]
    System,
    /// Always this many unix seconds.
    Fixed(i64),
}

impl Clock {
    /// Now, in unix seconds (0 for a system clock set before 1970).
    pub fn now(self) -> i64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Clock::Fixed(t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_says_its_time_and_the_system_clock_is_past_2025() {
        assert_eq!(Clock::Fixed(1_700_000_000).now(), 1_700_000_000);
        assert!(Clock::System.now() > 1_735_689_600);
    }
}
