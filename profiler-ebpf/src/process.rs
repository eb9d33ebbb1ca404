//! The process an mmap_lock wait is counted to: a run of a program by a process, from one
//! exec to the next (`Process`), numbered when first seen waiting and named then after its
//! thread group leader, whose name is the program's (or what the process renamed it to), not
//! one thread's (`worker-3`). sched:sched_process_exec ends the run, so a fork+exec child's
//! waits after its exec are its program's, not its parent's.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_smp_processor_id},
    macros::tracepoint,
    programs::TracePointContext,
};
use profiler_common::{Process, ProcessName};

use crate::{
    config::OFFSETS,
    helpers::{compare_exchange, global, read},
    maps::{PROCESSES, PROCESS_NAMES, PROCESS_RUNS},
};

/// The program run of the current task's process `tgid`, numbered now if it has none or its
/// row is another process's that had the same tgid (the leader's start time differs; exec
/// copies the old leader's into the new). 0 where the task cannot be read.
#[inline(always)]
pub fn current(tgid: u32) -> u64 {
    // SAFETY: a helper call without arguments.
    let task = unsafe { bpf_get_current_task() };
    let Some(leader) = read::<u64>(task + global(&OFFSETS.task_group_leader)) else {
        return 0;
    };
    let start_ns = read::<u64>(leader + global(&OFFSETS.task_start_time)).unwrap_or(0);
    // SAFETY: a copy out of the value, which is freed only after this program has run.
    if let Some(p) = unsafe { PROCESSES.get(&tgid) } {
        if p.start_ns == start_ns {
            return p.run;
        }
        let _ = PROCESSES.remove(&tgid);
    }
    let run = next_run();
    if run == 0 {
        return 0;
    }
    // Two threads first seen at once: the one that inserts first numbers the run.
    let new = Process { run, start_ns };
    if PROCESSES.insert(&tgid, &new, BPF_NOEXIST as u64).is_err() {
        // SAFETY: as above.
        return unsafe { PROCESSES.get(&tgid) }.map_or(0, |p| p.run);
    }
    let comm = read::<[u8; 16]>(leader + global(&OFFSETS.task_comm)).unwrap_or_default();
    let _ = PROCESS_NAMES.insert(&run, &ProcessName { tgid, _pad: 0, comm }, 0);
    run
}

/// A number no other program run has: this CPU's count of runs numbered, and the CPU. Per
/// CPU, as the generic BPF ISA has no atomic fetch-and-add; a compare-and-swap all the same,
/// since a program can be preempted on a preemptible kernel. 0 if that fails four times.
#[inline(always)]
fn next_run() -> u64 {
    let Some(count) = PROCESS_RUNS.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a helper call without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    for _ in 0..4 {
        // SAFETY: this CPU's slot of a per-CPU array map, which lives as long as the map.
        let n = unsafe { core::ptr::read_volatile(count) };
        if unsafe { compare_exchange(count, n, n + 1) } {
            return ((n + 1) << 16) | (cpu & 0xffff);
        }
    }
    0
}

/// An exec ends the process's program run: its next wait numbers a new one, named after the
/// program it runs now (the comm is set before this tracepoint).
#[tracepoint]
pub fn process_exec(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = PROCESSES.remove(&tgid);
    0
}
