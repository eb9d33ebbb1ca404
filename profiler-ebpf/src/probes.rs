//! The probe programs of kprobe and fentry modes: each probe exists as a kprobe (kretprobe)
//! and as an fentry (fexit) calling the same logic (slowpath.rs, holds.rs); userspace
//! attaches one family, from the tables in profiler-common's `names`. Return probes only
//! where a duration ends there: the slowpaths and osq_lock.

use aya_ebpf::{
    helpers::bpf_get_func_arg,
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use profiler_common::op;

use crate::{acquisitions, slowpath};

// ---- kprobe family

#[kprobe]
pub fn kp_down_write_slowpath(ctx: ProbeContext) -> u32 {
    slowpath::enter(&ctx, ctx.arg::<u64>(0).unwrap_or(0), op::SLOWPATH_WRITE);
    0
}
#[kretprobe]
pub fn kr_down_write_slowpath(_ctx: RetProbeContext) -> u32 {
    slowpath::exit();
    0
}
#[kprobe]
pub fn kp_down_read_slowpath(ctx: ProbeContext) -> u32 {
    slowpath::enter(&ctx, ctx.arg::<u64>(0).unwrap_or(0), op::SLOWPATH_READ);
    0
}
#[kretprobe]
pub fn kr_down_read_slowpath(_ctx: RetProbeContext) -> u32 {
    slowpath::exit();
    0
}
#[kprobe]
pub fn kp_osq_lock(_ctx: ProbeContext) -> u32 {
    slowpath::osq_enter();
    0
}
#[kretprobe]
pub fn kr_osq_lock(_ctx: RetProbeContext) -> u32 {
    slowpath::osq_exit();
    0
}
#[kprobe]
pub fn kp_down_write(ctx: ProbeContext) -> u32 {
    acquisitions::acquired(&ctx, ctx.arg::<u64>(0).unwrap_or(0), op::ACQUIRE_WRITE);
    0
}
#[kprobe]
pub fn kp_down_read(ctx: ProbeContext) -> u32 {
    acquisitions::acquired(&ctx, ctx.arg::<u64>(0).unwrap_or(0), op::ACQUIRE_READ);
    0
}
#[kprobe]
pub fn kp_up(ctx: ProbeContext) -> u32 {
    acquisitions::released(ctx.arg::<u64>(0).unwrap_or(0));
    0
}
#[kprobe]
pub fn kp_rmap_insert(ctx: ProbeContext) -> u32 {
    acquisitions::rmap_op(&ctx, ctx.arg::<u64>(1).unwrap_or(0), op::RMAP_INSERT);
    0
}
#[kprobe]
pub fn kp_rmap_insert_after(ctx: ProbeContext) -> u32 {
    acquisitions::rmap_op(&ctx, ctx.arg::<u64>(2).unwrap_or(0), op::RMAP_INSERT);
    0
}
#[kprobe]
pub fn kp_rmap_remove(ctx: ProbeContext) -> u32 {
    acquisitions::rmap_op(&ctx, ctx.arg::<u64>(1).unwrap_or(0), op::RMAP_REMOVE);
    0
}

// ---- fentry family (same logic; userspace names the target function at load)

/// Argument `n` as a plain number. `ctx.arg()` hands the verifier a typed kernel pointer,
/// which may be offset but not hashed (`acquisitions::slot`); bpf_get_func_arg() is inlined by the
/// verifier into the same load, typed as a scalar.
#[inline(always)]
fn arg(ctx: &FEntryContext, n: u32) -> u64 {
    let mut v = 0;
    // SAFETY: the program's own context, and a local to write the argument to.
    unsafe { bpf_get_func_arg(ctx.as_ptr(), n, &mut v) };
    v
}

#[fentry]
pub fn fe_down_write_slowpath(ctx: FEntryContext) -> u32 {
    slowpath::enter(&ctx, arg(&ctx, 0), op::SLOWPATH_WRITE);
    0
}
#[fexit]
pub fn fx_down_write_slowpath(_ctx: FExitContext) -> u32 {
    slowpath::exit();
    0
}
#[fentry]
pub fn fe_down_read_slowpath(ctx: FEntryContext) -> u32 {
    slowpath::enter(&ctx, arg(&ctx, 0), op::SLOWPATH_READ);
    0
}
#[fexit]
pub fn fx_down_read_slowpath(_ctx: FExitContext) -> u32 {
    slowpath::exit();
    0
}
#[fentry]
pub fn fe_osq_lock(_ctx: FEntryContext) -> u32 {
    slowpath::osq_enter();
    0
}
#[fexit]
pub fn fx_osq_lock(_ctx: FExitContext) -> u32 {
    slowpath::osq_exit();
    0
}
#[fentry]
pub fn fe_down_write(ctx: FEntryContext) -> u32 {
    acquisitions::acquired(&ctx, arg(&ctx, 0), op::ACQUIRE_WRITE);
    0
}
#[fentry]
pub fn fe_down_read(ctx: FEntryContext) -> u32 {
    acquisitions::acquired(&ctx, arg(&ctx, 0), op::ACQUIRE_READ);
    0
}
#[fentry]
pub fn fe_up_write(ctx: FEntryContext) -> u32 {
    acquisitions::released(arg(&ctx, 0));
    0
}
#[fentry]
pub fn fe_up_read(ctx: FEntryContext) -> u32 {
    acquisitions::released(arg(&ctx, 0));
    0
}
#[fentry]
pub fn fe_rmap_insert(ctx: FEntryContext) -> u32 {
    acquisitions::rmap_op(&ctx, arg(&ctx, 1), op::RMAP_INSERT);
    0
}
#[fentry]
pub fn fe_rmap_insert_after(ctx: FEntryContext) -> u32 {
    acquisitions::rmap_op(&ctx, arg(&ctx, 2), op::RMAP_INSERT);
    0
}
#[fentry]
pub fn fe_rmap_remove(ctx: FEntryContext) -> u32 {
    acquisitions::rmap_op(&ctx, arg(&ctx, 1), op::RMAP_REMOVE);
    0
}
