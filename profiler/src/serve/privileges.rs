//! The capabilities the daemon gives up once attached, before it parses any request: from
//! then on a flaw in the HTTP path holds only what the refresh still needs.
//!
//! What the refresh does, and what each step needs:
//! - reading and draining the BPF maps, and the programs' run statistics: descriptors already
//!   open (the kernel checks CAP_BPF when an object is created or a descriptor got from an
//!   id, not when one is used); `BPF_ENABLE_STATS` was taken at start, its descriptor held;
//! - reading /proc/PID/maps of other users' processes: PTRACE_MODE_READ, CAP_SYS_PTRACE;
//! - naming a file no process maps any more by its handle (attribution/by_handle.rs):
//!   `open_by_handle_at`, CAP_DAC_READ_SEARCH.
//!
//! tracefs was mounted, kallsyms read and the probes attached before. Writing `--output` and
//! `--pprof` as root in a directory root owns needs nothing more; in one another user owns
//! (or under sudo, where rmapprof gives the files to the user who ran it) the daemon also keeps
//! CAP_DAC_OVERRIDE, CAP_FOWNER and CAP_CHOWN.

use anyhow::{bail, Context, Result};
use caps::{CapSet, Capability, CapsHashSet};

/// Kept for the daemon's life.
pub const KEPT: [Capability; 2] = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

/// Needed until the drop: loading and attaching the probes (CAP_BPF, CAP_PERFMON, or
/// CAP_SYS_ADMIN), BPF statistics and mounting tracefs (CAP_SYS_ADMIN), kallsyms' addresses
/// (CAP_SYSLOG), locked memory on kernels that count BPF memory there (CAP_SYS_RESOURCE), and
/// giving up the rest of the bounding set (CAP_SETPCAP).
#[cfg_attr(not(test), allow(dead_code))] // the systemd unit's bounding set, checked by its test
pub const TO_ATTACH: [Capability; 6] = [
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYSLOG,
    Capability::CAP_SYS_RESOURCE,
    Capability::CAP_SETPCAP,
];

/// Writing files in a directory that another user owns.
pub const TO_WRITE_ANYWHERE: [Capability; 3] =
    [Capability::CAP_DAC_OVERRIDE, Capability::CAP_FOWNER, Capability::CAP_CHOWN];

/// What the daemon keeps once attached: KEPT, and where it writes files in a directory root
/// does not own, or under sudo (the files are then given to the user who ran it), what writes
/// there.
pub fn kept(written: &[std::path::PathBuf]) -> Vec<Capability> {
    use std::os::unix::fs::MetadataExt as _;
    let foreign = written.iter().any(|d| std::fs::metadata(d).map_or(true, |m| m.uid() != 0));
    let mut keep = KEPT.to_vec();
    if !written.is_empty() && (foreign || crate::output::invoking_user().is_some()) {
        keep.extend(TO_WRITE_ANYWHERE);
    }
    keep
}

/// Keeps `keep` (those of it the process has) and gives up every other capability: bounding
/// set, inheritable, ambient, permitted and effective. Capabilities are a thread's; the
/// daemon's runtime has one thread, and a thread started later (tokio's blocking pool)
/// inherits the reduced sets, so more than one thread now is an error.
pub fn keep_only(keep: &[Capability]) -> Result<()> {
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    if threads != 1 {
        bail!("cannot give up capabilities: {threads} threads run (want 1)");
    }
    let keep: CapsHashSet = keep.iter().copied().collect();
    let had = caps::read(None, CapSet::Permitted).context("reading capabilities")?;
    let keep: CapsHashSet = keep.intersection(&had).copied().collect();
    // The bounding set first: dropping from it takes CAP_SETPCAP, given up just after. Run
    // with file capabilities and without it, the bounding set stays (it limits only what an
    // exec could gain, and the daemon execs nothing).
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::read(None, CapSet::Bounding).context("reading the bounding set")? {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).with_context(|| format!("giving up {cap}"))?;
            }
        }
    } else {
        say!("rmapprof: without CAP_SETPCAP the capability bounding set stays as it is");
    }
    caps::clear(None, CapSet::Ambient).context("clearing ambient capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("clearing inheritable capabilities")?;
    caps::set(None, CapSet::Effective, &keep).context("setting effective capabilities")?;
    caps::set(None, CapSet::Permitted, &keep).context("setting permitted capabilities")?;
    Ok(())
}
