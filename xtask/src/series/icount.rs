//! Instructions per cycle of spawn, execl and shellscript on the base and patched kernels,
//! for patches-report and the cover letter: each kernel booted with one vCPU on QEMU's
//! instruction-count clock (`-icount shift=0,sleep=off`: 1 ns of guest time per instruction
//! executed), where scripts/series/instructions-guest.sh reads the CPU time of each workload's
//! cgroup (cpu.stat usage_usec: its tasks' runtime, kernel and user, never idle time).

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

use crate::{host::root, vm};

/// Cycles per run, and runs per workload and kernel (each with a 0-cycle run beside it).
pub const CYCLES: u32 = 30;
pub const REPEATS: u32 = 5;
/// Spread (max - min over the mean of a workload's runs) beyond which the table says that
/// the runs do not agree well enough for a change of that size to mean anything.
const SOUND_SPREAD: f64 = 0.02;

/// Boots the base and the patched kernel on the instruction-count clock, one vCPU each, and
/// returns the table for instructions.txt (raw runs in target/patches-report/*-icount/).
pub fn measure() -> Result<String> {
    for (patched, name) in [(false, "base"), (true, "patched")] {
        let dir = format!("target/patches-report/{name}-icount");
        let opts = vm::VmOpts { icount: true, ..vm::VmOpts::ours(patched, 1) };
        let cmd =
            ["scripts/series/instructions-guest.sh".to_owned(), dir, CYCLES.to_string(), REPEATS.to_string()];
        let code = vm::run(&opts, &cmd)?;
        if code != 0 {
            bail!("scripts/series/instructions-guest.sh exited {code} on the {name} kernel");
        }
    }
    table_of_last_runs()
}

/// The table of the runs the last measure() left in target/patches-report/*-icount.
pub fn table_of_last_runs() -> Result<String> {
    let mut usage = Vec::new();
    for name in ["base", "patched"] {
        let file = root().join(format!("target/patches-report/{name}-icount/usage.txt"));
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        usage.push(Usage::parse(&text)?);
    }
    Ok(table(&usage[0], &usage[1]))
}

/// One kernel's runs: "WORKLOAD CYCLES USAGE_USEC" lines.
#[derive(Default)]
pub struct Usage {
    /// Per workload, the CPU time in µs of each run, by cycles (0 or CYCLES).
    runs: BTreeMap<String, BTreeMap<u64, Vec<f64>>>,
}

impl Usage {
    pub fn parse(text: &str) -> Result<Usage> {
        let mut u = Usage::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [w, n, us] = f[..] else { bail!("usage.txt: {line:?} is not WORKLOAD CYCLES USAGE_USEC") };
            let (n, us): (u64, f64) =
                (n.parse().with_context(|| line.to_owned())?, us.parse().with_context(|| line.to_owned())?);
            u.runs.entry(w.to_owned()).or_default().entry(n).or_default().push(us);
        }
        Ok(u)
    }

    /// Instructions per cycle of each run of `w`: (its µs - the mean µs of the 0-cycle runs)
    /// × 1000 / cycles.
    fn per_cycle(&self, w: &str) -> Option<(u64, Vec<f64>)> {
        let runs = self.runs.get(w)?;
        let zero = mean(runs.get(&0)?);
        let (&n, us) = runs.iter().find(|(n, _)| **n > 0)?;
        Some((n, us.iter().map(|u| (u - zero) * 1000.0 / n as f64).collect()))
    }

    /// Mean µs of `sleep 2` minus `sleep 0`: time asleep that counted, which must be ~0.
    fn idle_leak(&self) -> Option<f64> {
        let get = |w: &str| self.runs.get(w).and_then(|r| r.get(&0)).map(|v| mean(v));
        Some(get("sleep-2")? - get("sleep-0")?)
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// (max - min) / mean.
fn spread(v: &[f64]) -> f64 {
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
    (hi - lo) / mean(v).abs().max(1.0)
}

/// The letter's table: per workload, base and patched instructions per cycle (mean of the
/// runs), the change, and how far each kernel's runs spread.
pub fn table(base: &Usage, patched: &Usage) -> String {
    let mut out =
        format!("  {:<12}  {:>10}  {:>10}  {:>7}  spread of runs\n", "workload", "base", "patched", "change");
    let mut loose = Vec::new();
    let mut runs = (0, 0);
    for w in ["spawn", "execl", "shellscript"] {
        let (Some((n, b)), Some((_, p))) = (base.per_cycle(w), patched.per_cycle(w)) else {
            out += &format!("  {w:<12}  not measured\n");
            continue;
        };
        runs = (b.len().min(p.len()), n);
        let (mb, mp) = (mean(&b), mean(&p));
        let (sb, sp) = (spread(&b), spread(&p));
        if sb > SOUND_SPREAD || sp > SOUND_SPREAD {
            loose.push(w);
        }
        out += &format!(
            "  {w:<12}  {:>10}  {:>10}  {:>+6.1}%  {:.1}% / {:.1}%\n",
            thousands(mb),
            thousands(mp),
            (mp - mb) / mb * 100.0,
            sb * 100.0,
            sp * 100.0,
        );
    }
    let leak = [base.idle_leak(), patched.idle_leak()]
        .iter()
        .map(|l| l.map_or("?".to_owned(), |us| thousands(us * 1000.0)))
        .collect::<Vec<_>>()
        .join(" and ");
    out += &format!(
        "\n  {} runs of {} cycles per workload and kernel; spread: (max - min) /\n  \
         mean of a kernel's runs, base / patched. `sleep 2` less `sleep 0`,\n  \
         run the same way: {leak} instructions (base, patched), so\n  \
         time asleep does not count.",
        runs.0, runs.1
    );
    if !loose.is_empty() {
        out += &format!(
            "\n  The runs of {} spread over more than {:.0}%: a change smaller than\n  that is not resolved.",
            loose.join(", "),
            SOUND_SPREAD * 100.0
        );
    }
    out
}

/// 1234567.8 as "1,234,568".
fn thousands(x: f64) -> String {
    let s = (x.round() as i64).unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(spawn: &[f64], zero: f64, sleep2: f64) -> Usage {
        let mut t = String::new();
        for u in spawn {
            t += &format!("spawn 50 {u}\nspawn 0 {zero}\n");
        }
        t += &format!("sleep-0 0 900\nsleep-2 0 {sleep2}\n");
        Usage::parse(&t).unwrap()
    }

    #[test]
    fn per_cycle_is_the_runs_less_the_harness() {
        // (100900 - 900) µs over 50 cycles: 2000 µs, 2,000,000 instructions per cycle.
        let b = usage(&[100900.0, 100900.0], 900.0, 901.0);
        let p = usage(&[98900.0, 99900.0], 900.0, 900.0);
        let t = table(&b, &p);
        assert!(t.contains("  spawn          2,000,000   1,970,000    -1.5%  0.0% / 1.0%\n"), "{t}");
        assert!(t.contains("  workload            base     patched   change  spread of runs\n"), "{t}");
        assert!(t.contains("2 runs of 50 cycles"), "{t}");
        assert!(t.contains("execl         not measured"), "{t}");
        assert!(t.contains("run the same way: 1,000 and 0 instructions (base, patched)"), "{t}");
        assert!(t.lines().all(|l| l.len() <= 72), "{t}");
        assert!(!t.contains("not resolved"), "{t}");
    }

    #[test]
    fn runs_that_disagree_are_said_to() {
        let b = usage(&[100900.0, 110900.0], 900.0, 900.0);
        let t = table(&b, &b);
        assert!(t.contains("The runs of spawn spread over more than 2%"), "{t}");
    }

    #[test]
    fn garbage_is_refused_in_one_line() {
        assert!(Usage::parse("spawn 50\n").is_err());
        assert!(Usage::parse("spawn x 1\n").is_err());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
    }
}
