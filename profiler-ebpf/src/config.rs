//! The two globals userspace writes before load (profiler-common's `Config` and `Offsets`):
//! read each field in place, `global(&CONFIG.field)` (helpers.rs), never a copy of the struct.

use profiler_common::{Config, Offsets};

#[no_mangle]
pub static CONFIG: Config = Config::DEFAULT;

#[no_mangle]
pub static OFFSETS: Offsets = Offsets::UNSET;
