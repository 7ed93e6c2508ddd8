//! What the server did with each datagram, counted per worker and summed on demand.
//!
//! Each worker writes only its own cache line of counters (a single writer, so a plain
//! load and store, no read-modify-write), and readers sum every worker's line. The sums
//! are read with `Relaxed` loads: a reader may see a packet counted as received and not yet
//! as answered, never a count go down.

use std::fmt;
use std::ops::Sub;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// One counter of a worker.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub(crate) enum Count {
    Received,
    Malformed,
    UnknownClient,
    BadAuthenticator,
    Admitted,
    OverLimit,
    Accepted,
    Rejected,
    Accounting,
    Status,
    Answered,
    Failed,
}

const COUNTS: usize = Count::Failed as usize + 1;

/// One worker's counters, on a cache line of their own.
#[derive(Default)]
struct Slot([AtomicU64; COUNTS]);

/// Every worker's counters.
pub struct Stats {
    slots: Box<[CachePadded<Slot>]>,
}

impl Stats {
    /// Counters for `workers` workers, numbered from 0.
    pub(crate) fn new(workers: usize) -> Stats {
        Stats {
            slots: (0..workers).map(|_| CachePadded::default()).collect(),
        }
    }

    /// Counts one more for `worker`, which is the only writer of its slot.
    #[inline]
    pub(crate) fn bump(&self, worker: usize, count: Count) {
        if let Some(slot) = self.slots.get(worker) {
            let counter = &slot.0[count as usize];
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// The sums over every worker, since the server started.
    pub fn totals(&self) -> Totals {
        let sum = |count: Count| -> u64 {
            self.slots
                .iter()
                .map(|slot| slot.0[count as usize].load(Ordering::Relaxed))
                .sum()
        };
        Totals {
            received: sum(Count::Received),
            malformed: sum(Count::Malformed),
            unknown_client: sum(Count::UnknownClient),
            bad_authenticator: sum(Count::BadAuthenticator),
            admitted: sum(Count::Admitted),
            over_limit: sum(Count::OverLimit),
            accepted: sum(Count::Accepted),
            rejected: sum(Count::Rejected),
            accounting: sum(Count::Accounting),
            status: sum(Count::Status),
            answered: sum(Count::Answered),
            failed: sum(Count::Failed),
        }
    }
}

/// What the server did with the datagrams it received, summed over its workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Datagrams received.
    pub received: u64,
    /// Refused by the codec (framing, attributes, an unknown or non-request code, a
    /// malformed User-Password): dropped.
    pub malformed: u64,
    /// From an address the clients file does not list: dropped.
    pub unknown_client: u64,
    /// Failing the client's secret: a bad Request Authenticator (accounting), a bad
    /// Message-Authenticator, or a missing one the client's policy or the code requires.
    pub bad_authenticator: u64,
    /// Transactions (Access-Requests and Accounting-Requests) the gate admitted (all of
    /// them without a gate).
    pub admitted: u64,
    /// Transactions the gate refused: dropped, or answered Access-Reject with
    /// `--over-limit reject`.
    pub over_limit: u64,
    /// Admitted Access-Requests answered Access-Accept (a known user, the right password).
    pub accepted: u64,
    /// Admitted Access-Requests answered Access-Reject (unknown user, wrong or no password).
    pub rejected: u64,
    /// Admitted Accounting-Requests answered Accounting-Response.
    pub accounting: u64,
    /// Status-Server requests answered (never counted by the gate).
    pub status: u64,
    /// Replies sent.
    pub answered: u64,
    /// Replies that could not be encoded or sent.
    pub failed: u64,
}

impl Totals {
    /// Datagrams that got no reply.
    pub fn dropped(&self) -> u64 {
        self.received.saturating_sub(self.answered)
    }
}

impl Sub for Totals {
    type Output = Totals;

    /// The counts between an earlier reading (`rhs`) and this one.
    fn sub(self, rhs: Totals) -> Totals {
        Totals {
            received: self.received.saturating_sub(rhs.received),
            malformed: self.malformed.saturating_sub(rhs.malformed),
            unknown_client: self.unknown_client.saturating_sub(rhs.unknown_client),
            bad_authenticator: self.bad_authenticator.saturating_sub(rhs.bad_authenticator),
            admitted: self.admitted.saturating_sub(rhs.admitted),
            over_limit: self.over_limit.saturating_sub(rhs.over_limit),
            accepted: self.accepted.saturating_sub(rhs.accepted),
            rejected: self.rejected.saturating_sub(rhs.rejected),
            accounting: self.accounting.saturating_sub(rhs.accounting),
            status: self.status.saturating_sub(rhs.status),
            answered: self.answered.saturating_sub(rhs.answered),
            failed: self.failed.saturating_sub(rhs.failed),
        }
    }
}

impl fmt::Display for Totals {
    /// One human line: offered, answered and dropped, then why they were dropped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offered {}, answered {}, dropped {} (admitted {}, over licence {}, malformed {}, \
             unknown client {}, bad authenticator {})",
            self.received,
            self.answered,
            self.dropped(),
            self.admitted,
            self.over_limit,
            self.malformed,
            self.unknown_client,
            self.bad_authenticator,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_workers_and_differences() {
        let stats = Stats::new(2);
        stats.bump(0, Count::Received);
        stats.bump(1, Count::Received);
        stats.bump(1, Count::Answered);
        stats.bump(7, Count::Received); // no such worker: ignored
        let first = stats.totals();
        assert_eq!((first.received, first.answered, first.dropped()), (2, 1, 1));
        stats.bump(0, Count::Received);
        stats.bump(0, Count::Malformed);
        let second = stats.totals() - first;
        assert_eq!(
            (second.received, second.malformed, second.answered),
            (1, 1, 0)
        );
        assert_eq!(
            second.to_string(),
            "offered 1, answered 0, dropped 1 (admitted 0, over licence 0, malformed 1, \
             unknown client 0, bad authenticator 0)"
        );
    }
}
