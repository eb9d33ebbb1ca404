//! Adding and subtracting the maps' values, in userspace: the drain adds what a row gained
//! since it was last read, merged rows add up. Each is written once, here, and spelled out
//! field by field, so that a field added to a value is added (and subtracted) too.

use crate::{HolderWaits, OpStats, WaitHist, WaitStats};

/// A map value whose counters only grow while its row exists.
pub trait Grows: Copy {
    /// Adds `other`'s: counts and totals add, a maximum is the larger.
    fn add(&mut self, other: &Self);
    /// What a row that only grows gained from `earlier` to `self`; a maximum is `self`'s own
    /// (a kernel row keeps no maximum per period).
    fn since(&self, earlier: &Self) -> Self;
}

impl Grows for WaitStats {
    fn add(&mut self, other: &Self) {
        let Self { count, total_ns, max_ns } = *other;
        self.count = self.count.saturating_add(count);
        self.total_ns = self.total_ns.saturating_add(total_ns);
        self.max_ns = self.max_ns.max(max_ns);
    }

    fn since(&self, earlier: &Self) -> Self {
        let Self { count, total_ns, max_ns } = *self;
        Self {
            count: count.saturating_sub(earlier.count),
            total_ns: total_ns.saturating_sub(earlier.total_ns),
            max_ns,
        }
    }
}

impl Grows for OpStats {
    fn add(&mut self, other: &Self) {
        let Self { stats, rmap_inserts, rmap_removes, spin_ns, spin_max_ns, osq_ns } = other;
        self.stats.add(stats);
        self.rmap_inserts = self.rmap_inserts.saturating_add(*rmap_inserts);
        self.rmap_removes = self.rmap_removes.saturating_add(*rmap_removes);
        self.spin_ns = self.spin_ns.saturating_add(*spin_ns);
        self.spin_max_ns = self.spin_max_ns.max(*spin_max_ns);
        self.osq_ns = self.osq_ns.saturating_add(*osq_ns);
    }

    fn since(&self, earlier: &Self) -> Self {
        let Self { stats, rmap_inserts, rmap_removes, spin_ns, spin_max_ns, osq_ns } = *self;
        Self {
            stats: stats.since(&earlier.stats),
            rmap_inserts: rmap_inserts.saturating_sub(earlier.rmap_inserts),
            rmap_removes: rmap_removes.saturating_sub(earlier.rmap_removes),
            spin_ns: spin_ns.saturating_sub(earlier.spin_ns),
            spin_max_ns,
            osq_ns: osq_ns.saturating_sub(earlier.osq_ns),
        }
    }
}

impl Grows for WaitHist {
    fn add(&mut self, other: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        let mut d = *self;
        for (a, b) in d.buckets.iter_mut().zip(earlier.buckets.iter()) {
            *a = a.saturating_sub(*b);
        }
        d
    }
}

impl Grows for HolderWaits {
    /// Adds `other`'s waits; the names are the first row's that has them.
    fn add(&mut self, other: &Self) {
        let Self { stats, waiter_comm, holder_comm } = other;
        self.stats.add(stats);
        if self.waiter_comm[0] == 0 {
            self.waiter_comm = *waiter_comm;
        }
        if self.holder_comm[0] == 0 {
            self.holder_comm = *holder_comm;
        }
    }

    /// The waits gained since `earlier`, with `self`'s names.
    fn since(&self, earlier: &Self) -> Self {
        Self { stats: self.stats.since(&earlier.stats), ..*self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_what_a_row_gained_gives_the_row() {
        let before = WaitStats { count: 3, total_ns: 300, max_ns: 200 };
        let now = WaitStats { count: 5, total_ns: 900, max_ns: 400 };
        let mut total = before;
        total.add(&now.since(&before));
        assert_eq!(total, now);
        let mut h = WaitHist::default();
        h.buckets[2] = 4;
        let mut h2 = h;
        h2.buckets[2] = 9;
        h2.buckets[5] = 1;
        let mut sum = h;
        sum.add(&h2.since(&h));
        assert_eq!(sum, h2);
        let op =
            OpStats { stats: now, rmap_inserts: 7, rmap_removes: 2, spin_ns: 10, spin_max_ns: 8, osq_ns: 3 };
        let mut o = OpStats { stats: before, rmap_inserts: 1, ..Default::default() };
        let first = o;
        o.add(&op.since(&first));
        assert_eq!(o, op);
        // A row deleted and started again from zero: nothing is subtracted below zero.
        assert_eq!(before.since(&now).count, 0);
    }

    #[test]
    fn holder_rows_keep_the_first_names() {
        let mut a =
            HolderWaits { stats: WaitStats { count: 1, total_ns: 5, max_ns: 5 }, ..Default::default() };
        let b = HolderWaits {
            stats: WaitStats { count: 2, total_ns: 7, max_ns: 4 },
            waiter_comm: *b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            holder_comm: *b"cc1\0\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        a.add(&b);
        assert_eq!((a.stats.count, a.stats.total_ns, a.stats.max_ns), (3, 12, 5));
        assert_eq!(&a.waiter_comm[..2], b"sh");
        let c = HolderWaits { waiter_comm: *b"xx\0\0\0\0\0\0\0\0\0\0\0\0\0\0", ..b };
        a.add(&c);
        assert_eq!(&a.waiter_comm[..2], b"sh");
    }
}
