//! The deadlines of one loop's connections, in one binary heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Connection deadlines: handshake and close timeouts, keepalive pings.
///
/// Corrected lazily rather than kept exact. A connection remembers the
/// deadline it armed (`Entry::armed`); an entry that is not that deadline
/// is stale and skipped when it comes up. Most deadlines move later (each
/// message pushes the keepalive back), and those moves cost nothing per
/// message: the early entry fires, the core finds nothing due, and the
/// connection arms its new deadline.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// (deadline, slot index, slot generation).
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
}

impl Timers {
    pub(super) fn arm(&mut self, deadline: Instant, index: u32, generation: u32) {
        self.heap.push(Reverse((deadline, index, generation)));
    }

    /// The earliest deadline, live or stale.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, ..))| *t)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32, u32)> {
        match self.heap.peek() {
            Some(Reverse((t, ..))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops stale entries, so that connections which came and went do not
    /// leave their deadlines behind for a whole keepalive interval.
    pub(super) fn retain(&mut self, mut live: impl FnMut(Instant, u32, u32) -> bool) {
        self.heap.retain(|Reverse((t, i, g))| live(*t, *i, *g));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.arm(t0 + Duration::from_secs(3), 3, 0);
        timers.arm(t0 + Duration::from_secs(1), 1, 0);
        timers.arm(t0 + Duration::from_secs(2), 2, 7);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let due = t0 + Duration::from_secs(2);
        assert_eq!(timers.pop_due(due).map(|e| e.1), Some(1));
        assert_eq!(timers.pop_due(due).map(|e| (e.1, e.2)), Some((2, 7)));
        assert_eq!(timers.pop_due(due), None);
        timers.retain(|_, i, _| i != 3);
        assert_eq!(timers.len(), 0);
    }
}
