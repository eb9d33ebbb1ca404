//! rmapprof's eBPF side: programs that aggregate i_mmap_rwsem contention in maps, which
//! userspace reads when it reports. Nothing goes to userspace per event.
//!
//! - `tracepoint`: lock:contention_begin/end, every mode: sleeping waits per lock, file and
//!   kernel stack, and per waiter and holder (`owner`: who held the lock when the wait began,
//!   read off the rwsem's owner field; `holder_rows`: the waiter x holder rows);
//! - `probes`: the kprobe and fentry families (kprobe/fentry modes): the rwsem slowpaths and
//!   osq_lock (`slowpath`), and with `--acquisitions` every acquisition, its hold and the
//!   rmap tree operations inside it (`acquisitions`);
//! - `release`: with `--holder-stacks`, sched:sched_waking: the stack of the task whose
//!   release of an i_mmap_rwsem wakes a waiter (the holder's stack);
//! - `process`: sched:sched_process_exec, every mode: the process and program run an
//!   mmap_lock wait is counted to, named after its thread group leader;
//! - `callsite`: those probes' kernel stacks, one full unwind per call site;
//! - `kernel`: reading kernel structures with offsets from BTF (`config`: the two globals
//!   userspace writes, the run's switches and the kernel's layouts);
//! - `maps`, `stacks`, `helpers`: the maps, kernel stacks into `STACKS`, counters and atomics.
#![no_std]
#![no_main]
// The BPF target has no AtomicU64::fetch_add; the intrinsic lowers to BPF_ATOMIC_ADD (XADD).
#![allow(internal_features)]
#![feature(core_intrinsics)]
#![warn(unsafe_op_in_unsafe_fn)]

mod acquisitions;
mod callsite;
mod config;
mod helpers;
mod holder_rows;
mod kernel;
mod maps;
mod owner;
mod probes;
mod process;
mod release;
mod slowpath;
mod stacks;
mod tracepoint;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
