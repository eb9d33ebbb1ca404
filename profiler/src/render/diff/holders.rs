//! `rmapprof diff`'s holder matrix: each file's waits per (waiter class, holder class),
//! before and after, on the same basis as the other tables.

use std::{collections::BTreeMap, fmt::Write};

use super::{delta, name, Basis, Pair};
use crate::{
    render::{clip, Keep},
    report::FileReport,
    schema::caller_class,
};

/// Waits per (waiter, holder) of a file's holders; None when the run did not see holders.
fn cells(f: Option<&FileReport>) -> Option<BTreeMap<(String, String), u64>> {
    let h = f?.holders.as_ref()?;
    Some(h.matrix.iter().map(|c| ((c.waiter.clone(), c.holder.clone()), c.contentions)).collect())
}

/// The table, when both runs saw holders of some file.
pub(super) fn table(s: &mut String, basis: &Basis, files: &BTreeMap<String, Pair>, unit: &str) {
    let seen = |after: bool| {
        files.values().any(|(b, a)| {
            let f = if after { a } else { b };
            f.is_some_and(|f| f.holders.is_some())
        })
    };
    if !(seen(false) && seen(true)) {
        if seen(false) || seen(true) {
            let _ = writeln!(s, "\nholders: only one run saw them (the other's report predates them)");
        }
        return;
    }
    let _ = writeln!(s, "\ni_mmap_rwsem waits by waiter and holder{unit}");
    let _ = writeln!(
        s,
        "{:<20} {:<11} {:<11} {:>9} {:>9} {:>7}",
        "FILE", "WAITER", "HOLDER", "BEFORE", "AFTER", "DELTA"
    );
    let order = |c: &str| caller_class::HOLDER_ALL.iter().position(|x| *x == c);
    let mut any = false;
    for (path, (b, a)) in files {
        let (cb, ca) = (cells(*b).unwrap_or_default(), cells(*a).unwrap_or_default());
        let mut keys: Vec<&(String, String)> = cb.keys().chain(ca.keys()).collect();
        keys.sort_by_key(|(w, h)| (order(w), order(h), w.clone(), h.clone()));
        keys.dedup();
        let file = clip(name(path), 20, Keep::Head);
        for k in keys {
            let vb = Some(basis.value(cb.get(k).copied().unwrap_or(0), false));
            let va = Some(basis.value(ca.get(k).copied().unwrap_or(0), true));
            any = true;
            let _ = writeln!(
                s,
                "{file:<20} {:<11} {:<11} {:>9} {:>9} {:>7}",
                clip(&k.0, 11, Keep::Head),
                clip(&k.1, 11, Keep::Head),
                basis.count(vb),
                basis.count(va),
                delta(vb, va)
            );
        }
    }
    if !any {
        let _ = writeln!(s, "  (none in either run)");
    }
}
