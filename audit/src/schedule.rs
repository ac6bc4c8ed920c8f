//! When to issue the next checkpoint: a pure rule over (last checkpoint, current size, now), so
//! the broker's timer and append path ask the same question and tests need no clock.

use time::{Duration, OffsetDateTime};

/// Issue a checkpoint once `every_entries` entries or `every` time has passed since the last one,
/// whichever comes first, provided the tree grew. With no checkpoint yet, one is due at once (even
/// for the empty tree), so auditors always have a signed starting point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSchedule {
    /// Entries since the last checkpoint that make one due (0 is treated as 1).
    pub every_entries: u64,
    /// Time since the last checkpoint that makes one due, if the tree grew.
    pub every: Duration,
}

/// The last checkpoint issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCheckpoint {
    /// Its tree size.
    pub size: u64,
    /// When it was signed.
    pub time: OffsetDateTime,
}

impl Default for CheckpointSchedule {
    /// Every 1000 entries or 60 seconds.
    fn default() -> Self {
        Self { every_entries: 1000, every: Duration::seconds(60) }
    }
}

impl CheckpointSchedule {
    /// Whether a checkpoint of the tree at `current_size` is due at `now`.
    #[must_use]
    pub fn is_due(
        &self,
        last: Option<LastCheckpoint>,
        current_size: u64,
        now: OffsetDateTime,
    ) -> bool {
        let Some(last) = last else {
            return true;
        };
        if current_size <= last.size {
            return false;
        }
        current_size - last.size >= self.every_entries.max(1) || now - last.time >= self.every
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-01 12:00:00 UTC);

    fn sched() -> CheckpointSchedule {
        CheckpointSchedule { every_entries: 10, every: Duration::seconds(30) }
    }

    fn last(size: u64) -> LastCheckpoint {
        LastCheckpoint { size, time: T0 }
    }

    #[test]
    fn first_checkpoint_is_due_immediately() {
        assert!(sched().is_due(None, 0, T0));
    }

    #[test]
    fn due_after_n_entries_not_before() {
        assert!(!sched().is_due(Some(last(5)), 14, T0 + Duration::seconds(29)));
        assert!(sched().is_due(Some(last(5)), 15, T0));
    }

    #[test]
    fn due_after_t_seconds_only_if_tree_grew() {
        assert!(!sched().is_due(Some(last(5)), 5, T0 + Duration::hours(5)));
        assert!(!sched().is_due(Some(last(5)), 6, T0 + Duration::seconds(29)));
        assert!(sched().is_due(Some(last(5)), 6, T0 + Duration::seconds(30)));
    }

    #[test]
    fn zero_entry_threshold_means_every_entry() {
        let s = CheckpointSchedule { every_entries: 0, every: Duration::hours(1) };
        assert!(!s.is_due(Some(last(5)), 5, T0));
        assert!(s.is_due(Some(last(5)), 6, T0));
    }
}
