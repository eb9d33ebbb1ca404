//! report.json's types live in the rmapprof-report crate (report/), which xtask and the tests
//! read reports with too.

pub use rmapprof_report::*;
