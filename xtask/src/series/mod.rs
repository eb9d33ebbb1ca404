//! The kernel series in patches/ and its glibc companion: what serves them, not the profiler.
//! `patches-check` (check.rs) checks them, `patches-report` (report.rs) measures them and
//! writes the cover letter (letter.rs, from the patch files' own facts: cover/), and
//! `patches-send-ready` (sign.rs) signs them for posting. The rest are the checks' parts:
//! a guest's result lines and boots not used (guest.rs), exec layout and selftests (evidence.rs), the mm checks (mm_checks.rs), instruction counts
//! (icount.rs), the glibc builds and measurements (glibc.rs), and the tests of the many-core
//! tester's script (unixbench.rs).

pub mod check;
pub mod cover;
pub mod evidence;
pub mod glibc;
pub mod guest;
pub mod icount;
pub mod letter;
pub mod mm_checks;
pub mod report;
pub mod sign;
#[cfg(test)]
mod unixbench;
