//! The per-partition commit tracker: which offset may be committed.
//!
//! Batches of one partition complete in any order (different sinks, retries),
//! but Kafka commits a single offset per partition. The tracker keeps each
//! partition's in-flight batches in offset order and advances the commit
//! point only over a prefix of completed batches. A failed batch is never
//! completed, so it holds the commit point; [`Tracker::rewind`] then gives
//! the offset to read the partition again from (the first batch not yet
//! committed) and forgets the partition's batches in flight, whose late
//! completions no longer count (at-least-once: they may be delivered twice).

use std::collections::{BTreeMap, VecDeque};

/// One partition of one topic.
pub type PartitionKey = (String, i32);

#[derive(Debug)]
struct InFlight {
    seq: u64,
    first_offset: i64,
    last_offset: i64,
    done: bool,
}

#[derive(Debug, Default)]
struct Partition {
    generation: u64,
    batches: VecDeque<InFlight>,
}

/// Commit points of every partition this consumer reads.
#[derive(Debug, Default)]
pub struct Tracker {
    partitions: BTreeMap<PartitionKey, Partition>,
    next_seq: u64,
}

/// A batch the tracker handed out: what to report back on completion.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The partition.
    pub key: PartitionKey,
    /// The assignment generation the batch was read in.
    pub generation: u64,
    /// The batch's sequence number.
    pub seq: u64,
}

impl Tracker {
    /// Registers a batch of offsets `first_offset..=last_offset`, read in
    /// `generation`. A new generation (the partition was revoked and
    /// assigned again) forgets the partition's older in-flight batches.
    pub fn begin(
        &mut self,
        key: PartitionKey,
        generation: u64,
        first_offset: i64,
        last_offset: i64,
    ) -> Ticket {
        let seq = self.next_seq;
        self.next_seq += 1;
        let p = self.partitions.entry(key.clone()).or_default();
        if p.generation != generation {
            p.generation = generation;
            p.batches.clear();
        }
        p.batches.push_back(InFlight {
            seq,
            first_offset,
            last_offset,
            done: false,
        });
        Ticket {
            key,
            generation,
            seq,
        }
    }

    /// Marks `ticket` done. Returns the highest offset that is now fully
    /// processed, if the commit point moved.
    pub fn complete(&mut self, ticket: &Ticket) -> Option<i64> {
        let p = self.partitions.get_mut(&ticket.key)?;
        if p.generation != ticket.generation {
            return None;
        }
        if let Some(b) = p.batches.iter_mut().find(|b| b.seq == ticket.seq) {
            b.done = true;
        }
        let mut advanced = None;
        while p.batches.front().is_some_and(|b| b.done) {
            advanced = p.batches.pop_front().map(|b| b.last_offset);
        }
        advanced
    }

    /// After `ticket` failed: the offset to read its partition again from
    /// (the first one not committed), forgetting every batch of the
    /// partition still in flight. `None` if the ticket is stale (its
    /// partition was revoked, or rewound already since it was read), so
    /// one outage rewinds a partition once, not once per failed batch.
    pub fn rewind(&mut self, ticket: &Ticket) -> Option<i64> {
        let p = self.partitions.get_mut(&ticket.key)?;
        if p.generation != ticket.generation || !p.batches.iter().any(|b| b.seq == ticket.seq) {
            return None;
        }
        let from = p.batches.front().map(|b| b.first_offset);
        p.batches.clear();
        from
    }

    /// Batches still in flight, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.batches.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PartitionKey {
        ("t".into(), 0)
    }

    #[test]
    fn advances_only_over_a_done_prefix() {
        let mut t = Tracker::default();
        let a = t.begin(key(), 0, 0, 9);
        let b = t.begin(key(), 0, 10, 19);
        let c = t.begin(key(), 0, 20, 29);
        assert_eq!(t.complete(&b), None, "b is done but a is not");
        assert_eq!(t.complete(&a), Some(19), "a and b are done");
        assert_eq!(t.complete(&c), Some(29));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_batch_never_completed_holds_the_commit_point() {
        let mut t = Tracker::default();
        let _failed = t.begin(key(), 0, 0, 9);
        let later = t.begin(key(), 0, 10, 19);
        assert_eq!(t.complete(&later), None);
        assert_eq!(t.in_flight(), 2);
    }

    #[test]
    fn a_new_generation_forgets_stale_batches() {
        let mut t = Tracker::default();
        let stale = t.begin(key(), 0, 0, 9);
        let fresh = t.begin(key(), 1, 0, 4);
        assert_eq!(t.complete(&stale), None, "revoked batches never commit");
        assert_eq!(t.complete(&fresh), Some(4));
    }

    #[test]
    fn a_failure_rewinds_to_the_first_uncommitted_batch_once() {
        let mut t = Tracker::default();
        let a = t.begin(key(), 0, 0, 9);
        assert_eq!(t.complete(&a), Some(9));
        let b = t.begin(key(), 0, 10, 19);
        let c = t.begin(key(), 0, 20, 29);
        let d = t.begin(key(), 0, 30, 39);
        assert_eq!(t.complete(&b), Some(19));
        // c failed while d is still in flight: read again from c.
        assert_eq!(t.rewind(&c), Some(20));
        assert_eq!(t.in_flight(), 0, "d is forgotten");
        assert_eq!(t.rewind(&d), None, "d's failure is stale: rewound already");
        assert_eq!(t.complete(&d), None, "a late success of d commits nothing");
        let again = t.begin(key(), 0, 20, 39);
        assert_eq!(t.complete(&again), Some(39));
    }

    #[test]
    fn a_failure_from_an_older_generation_does_not_rewind() {
        let mut t = Tracker::default();
        let old = t.begin(key(), 0, 0, 9);
        let _new = t.begin(key(), 1, 0, 9);
        assert_eq!(t.rewind(&old), None);
        assert_eq!(t.in_flight(), 1);
    }
}
