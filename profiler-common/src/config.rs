//! What userspace tells the eBPF programs at load time: one `CONFIG` global (the run's
//! switches) and one `OFFSETS` global (the running kernel's struct and record layouts), each
//! written once with `EbpfLoader::override_global`. They sit in `.rodata`, which the loader
//! freezes: the verifier reads a switch as a constant and prunes what it turns off. The eBPF
//! side reads each field in place (`helpers::global(&CONFIG.field)`): a copy of a struct this
//! size would not fit on the 512-byte BPF stack beside the programs' own.

/// The run's switches and limits. A switch is 0 (off) or 1 (on).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Only this process's tasks (tgid); every task when 0.
    pub filter_tgid: u64,
    /// Kernel frames to unwind per stack, 1..=`STACK_DEPTH` (`--max-stack`).
    pub max_stack: u64,
    /// The acquisition probes are attached (`--acquisitions`): a slowpath's return moves the
    /// start of a hold only then.
    pub acquisitions: u64,
    /// Re-unwind every Nth reuse of a cached stack to check it; 0 disables the call-site
    /// cache (`--stack-cache-check`).
    pub stack_cache_check: u64,
    /// The kernel's text, `_stext` to `_etext` (from kallsyms); 0 (tracepoint mode, or kernel
    /// addresses hidden): no hash of the stack above, call sites are split by stack words only.
    pub text_start: u64,
    pub text_end: u64,
    /// Holder attribution on; 0 only to measure what it costs (`RMAPPROF_NO_HOLDERS=1`).
    pub holders: u64,
    /// The release that wakes a waiter is unwound (`--holder-stacks`).
    pub holder_stacks: u64,
    /// Holder attribution times itself into `HOLDER_COST` (`RMAPPROF_MEASURE_HOLDERS=1`).
    pub measure_holders: u64,
    /// Holder rows are kept per waiting task (`--by-task`).
    pub by_task: u64,
}

impl Config {
    /// What the eBPF object holds until userspace writes its own.
    pub const DEFAULT: Self = Self {
        filter_tgid: 0,
        max_stack: crate::STACK_DEPTH as u64,
        acquisitions: 0,
        stack_cache_check: 64,
        text_start: 0,
        text_end: 0,
        holders: 1,
        holder_stacks: 0,
        measure_holders: 0,
        by_task: 0,
    };
}

/// Declares [`Offsets`] and the table of where each of its BTF fields comes from, from one
/// list, so that a field and its source cannot disagree.
macro_rules! offsets {
    ($($field:ident: $strukt:literal . $member:literal,)*) => {
        /// Layouts of the running kernel: struct member offsets from its BTF (Rust eBPF has no
        /// CO-RE field relocations), then what BTF and tracefs give besides. 0 where unset.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Offsets {
            $(
                #[doc = concat!("`offsetof(struct ", $strukt, ", ", $member, ")`")]
                pub $field: u64,
            )*
            /// `sizeof(struct pt_regs)`, from BTF.
            pub pt_regs_size: u64,
            /// Offsets of `lock_addr` and `flags` in the `lock:contention_begin` record and of
            /// `lock_addr` in `lock:contention_end`'s (tracefs format files).
            pub tp_begin_lock: u64,
            pub tp_begin_flags: u64,
            pub tp_end_lock: u64,
            /// Offset of the woken task's `pid` in the `sched:sched_waking` record (tracefs).
            pub tp_waking_pid: u64,
        }

        impl Offsets {
            /// Every offset unset: what the eBPF object holds until userspace writes the
            /// kernel's.
            pub const UNSET: Self = Self {
                $($field: 0,)*
                pt_regs_size: 0,
                tp_begin_lock: 0,
                tp_begin_flags: 0,
                tp_end_lock: 0,
                tp_waking_pid: 0,
            };

            /// Where each member offset comes from, (struct, member), in field order.
            pub const FROM_BTF: &'static [(&'static str, &'static str)] = &[$(($strukt, $member)),*];

            /// The member offsets, in [`Offsets::FROM_BTF`]'s order.
            pub fn from_btf_mut(&mut self) -> impl Iterator<Item = &mut u64> {
                [$(&mut self.$field),*].into_iter()
            }
        }
    };
}

offsets! {
    as_i_mmap_rwsem: "address_space" . "i_mmap_rwsem",
    as_host: "address_space" . "host",
    as_i_mmap: "address_space" . "i_mmap",
    inode_i_mapping: "inode" . "i_mapping",
    inode_i_data: "inode" . "i_data",
    inode_i_ino: "inode" . "i_ino",
    inode_i_sb: "inode" . "i_sb",
    sb_s_dev: "super_block" . "s_dev",
    task_mm: "task_struct" . "mm",
    mm_mmap_lock: "mm_struct" . "mmap_lock",
    task_group_leader: "task_struct" . "group_leader",
    task_start_time: "task_struct" . "start_time",
    rwsem_owner: "rw_semaphore" . "owner",
    rwsem_count: "rw_semaphore" . "count",
    task_pid: "task_struct" . "pid",
    task_tgid: "task_struct" . "tgid",
    task_comm: "task_struct" . "comm",
    task_flags: "task_struct" . "flags",
    task_stack: "task_struct" . "stack",
    pt_regs_orig_ax: "pt_regs" . "orig_ax",
    pt_regs_ax: "pt_regs" . "ax",
    pt_regs_cs: "pt_regs" . "cs",
    anon_vma_root: "anon_vma" . "root",
    anon_vma_rwsem: "anon_vma" . "rwsem",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_btf_field_has_its_source() {
        let mut o = Offsets::default();
        assert_eq!(o.from_btf_mut().count(), Offsets::FROM_BTF.len());
        for (i, f) in o.from_btf_mut().enumerate() {
            *f = i as u64 + 1;
        }
        assert_eq!((o.as_i_mmap_rwsem, o.anon_vma_rwsem, o.pt_regs_size), (1, 24, 0));
        assert_eq!(Offsets::FROM_BTF[14], ("task_struct", "pid"));
        assert_eq!(o.task_pid, 15);
    }
}
