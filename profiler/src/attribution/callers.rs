//! Caller classes: which part of the process lifecycle took the i_mmap_rwsem, read off the
//! kernel stack (innermost matching frame wins). These are the rows mm reviewers ask about:
//! fork copies every file VMA (dup_mmap), mmap links new ones (vma_link_file), mprotect and
//! MAP_FIXED split or merge (vma_prepare), exit and munmap unlink (unlink_file_vma_batch),
//! truncate and hole punching unmap the file's pages from every VMA (unmap_mapping_range, a
//! read hold), reclaim and migration walk the rmap (rmap_walk_file, a read hold).
//!
//! A holder whose stack is not seen is classed by what it was doing ([`of_holder_hint`]).

pub use crate::schema::caller_class::*;

fn class_of_frame(f: &str) -> Option<&'static str> {
    let f = f.split('.').next().unwrap_or(f); // vms_clear_ptes.part.0 → vms_clear_ptes
    Some(match f {
        // dup_mmap is often inlined into dup_mm/copy_process.
        "dup_mmap" | "dup_mm" | "copy_process" => FORK,
        "vma_link_file" | "vma_link" | "__vma_link_file" | "__mmap_region" | "mmap_region"
        | "__mmap_new_vma" => MMAP,
        // 6.1 splits and merges in __vma_adjust; 6.12 in vma_prepare/vma_complete.
        "__vma_adjust"
        | "vma_adjust"
        | "vma_prepare"
        | "vma_complete"
        | "__split_vma"
        | "split_vma"
        | "vma_merge"
        | "vma_merge_existing_range"
        | "vma_merge_new_range"
        | "commit_merge"
        | "vma_expand"
        | "vma_shrink"
        | "move_vma" => SPLIT_MERGE,
        "unlink_file_vma_batch_process"
        | "unlink_file_vma_batch_final"
        | "unlink_file_vma_batch_add"
        | "unlink_file_vma"
        | "free_pgtables"
        | "exit_mmap"
        | "remove_vma" => TEARDOWN,
        "unmap_mapping_range"
        | "unmap_mapping_pages"
        | "unmap_mapping_folio"
        | "truncate_pagecache"
        | "truncate_pagecache_range"
        | "truncate_setsize"
        | "ext4_punch_hole"
        | "shmem_fallocate" => TRUNCATE,
        "rmap_walk_file" | "rmap_walk" | "rmap_walk_locked" | "folio_referenced" | "try_to_unmap"
        | "try_to_migrate" | "shrink_folio_list" | "kswapd" | "kcompactd" => RECLAIM,
        _ => return None,
    })
}

/// The class of a stack given outermost frame first (as reports store it).
pub fn classify(frames_outermost_first: &[String]) -> &'static str {
    if frames_outermost_first.iter().any(|f| f == NO_STACK_FRAME) {
        return NO_STACK;
    }
    frames_outermost_first.iter().rev().find_map(|f| class_of_frame(f)).unwrap_or(OTHER)
}

/// Where a holder's stack taken at its release (`--holder-stacks`) shows the release: the
/// frames outermost first up to the innermost `up_write`/`up_read`/`downgrade_write` (the
/// wakeup below it dropped), so the path reads as the holder's; `reader` keeps only a read
/// release. None when the stack does not pass through one (the waiter was woken for another
/// reason: a signal, a waiter giving up its turn).
pub fn release_path(frames_outermost_first: &[String], reader: bool) -> Option<Vec<String>> {
    let releases: &[&str] = if reader { &["up_read"] } else { &["up_write", "up_read", "downgrade_write"] };
    let at = frames_outermost_first.iter().rposition(|f| releases.contains(&f.as_str()))?;
    Some(frames_outermost_first[..=at].to_vec())
}

/// x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl) that take an
/// i_mmap_rwsem, and the class of a holder found in them.
const SYSCALLS: &[(u32, &str, &str)] = &[
    (9, "mmap", MMAP),
    (10, "mprotect", SPLIT_MERGE),
    (11, "munmap", TEARDOWN),
    (12, "brk", SPLIT_MERGE),
    (25, "mremap", SPLIT_MERGE),
    (28, "madvise", OTHER),
    (56, "clone", FORK),
    (57, "fork", FORK),
    (58, "vfork", FORK),
    (59, "execve", OTHER),
    (60, "exit", TEARDOWN),
    (76, "truncate", TRUNCATE),
    (77, "ftruncate", TRUNCATE),
    (231, "exit_group", TEARDOWN),
    (285, "fallocate", TRUNCATE),
    (322, "execveat", OTHER),
    (435, "clone3", FORK),
];

/// What a holder whose stack was not seen was doing, as a frame: `[syscall mmap]`,
/// `[exiting]`, `[kernel thread]`, `[fault or unknown]`.
pub fn holder_doing(hint: u32) -> String {
    use profiler_common::holder_hint as h;
    if hint & h::KTHREAD != 0 {
        return "[kernel thread]".into();
    }
    if hint & h::EXITING != 0 {
        return "[exiting]".into();
    }
    if hint & h::IN_SYSCALL == 0 {
        return "[not in a system call]".into();
    }
    let nr = hint & h::SYSCALL_MASK;
    match SYSCALLS.iter().find(|(n, _, _)| *n == nr) {
        Some((_, name, _)) => format!("[syscall {name}]"),
        None => format!("[syscall {nr}]"),
    }
}

/// The class of a holder from what it was doing (its stack unseen): the system call it is in,
/// exiting (teardown), or a reclaim kernel thread by name.
pub fn of_holder_hint(hint: u32, comm: &str) -> &'static str {
    use profiler_common::holder_hint as h;
    if hint & h::KTHREAD != 0 {
        let reclaim = ["kswapd", "kcompactd", "kdamond", "khugepaged"].iter().any(|p| comm.starts_with(p));
        return if reclaim { RECLAIM } else { OTHER };
    }
    if hint & h::EXITING != 0 {
        return TEARDOWN;
    }
    if hint & h::IN_SYSCALL == 0 {
        return OTHER;
    }
    let nr = hint & h::SYSCALL_MASK;
    SYSCALLS.iter().find(|(n, _, _)| *n == nr).map_or(OTHER, |(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn innermost_known_frame_decides() {
        assert_eq!(
            classify(&s(&["entry_SYSCALL_64", "__do_sys_clone", "copy_process", "dup_mmap", "down_write"])),
            FORK
        );
        // munmap reaches teardown through free_pgtables even though do_vmi_munmap is outside.
        assert_eq!(
            classify(&s(&[
                "__x64_sys_munmap",
                "vms_clear_ptes.part.0",
                "free_pgtables",
                "unlink_file_vma_batch_process",
                "down_write"
            ])),
            TEARDOWN
        );
        // An mprotect split inside an mmap call is a split.
        assert_eq!(
            classify(&s(&["do_mmap", "__mmap_region", "__split_vma", "vma_prepare", "down_write"])),
            SPLIT_MERGE
        );
        assert_eq!(classify(&s(&["ksys_mmap_pgoff", "do_mmap", "__mmap_region", "down_write"])), MMAP);
        // 6.1's names for the same paths.
        assert_eq!(classify(&s(&["do_mmap", "mmap_region", "vma_link", "down_write"])), MMAP);
        assert_eq!(
            classify(&s(&["mprotect_fixup", "__split_vma", "__vma_adjust", "down_write"])),
            SPLIT_MERGE
        );
        assert_eq!(
            classify(&s(&["unmap_region", "free_pgtables", "unlink_file_vma", "down_write"])),
            TEARDOWN
        );
        assert_eq!(classify(&s(&["__do_sys_clone", "kernel_clone", "copy_process", "down_write"])), FORK);
        assert_eq!(classify(&s(&["kswapd", "shrink_folio_list", "rmap_walk_file", "down_read"])), RECLAIM);
        assert_eq!(
            classify(&s(&["__x64_sys_fallocate", "ext4_punch_hole", "unmap_mapping_pages", "down_read"])),
            TRUNCATE
        );
        assert_eq!(classify(&[]), OTHER);
        assert_eq!(classify(&s(&[NO_STACK_FRAME])), NO_STACK);
    }
}

#[cfg(test)]
mod holder_tests {
    use super::*;
    use profiler_common::holder_hint as h;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// A stack taken where a release woke the waiter reads as the holder's path, down to the
    /// release; a reader-owned lock's only through a read release; a wakeup that is no
    /// release (a signal) gives nothing.
    #[test]
    fn release_stacks_end_at_the_release() {
        let munmap = s(&[
            "entry_SYSCALL_64",
            "__x64_sys_munmap",
            "unlink_file_vma_batch_process",
            "up_write",
            "rwsem_wake",
            "wake_up_q",
            "try_to_wake_up",
        ]);
        let path = release_path(&munmap, false).unwrap();
        assert_eq!(
            path,
            s(&["entry_SYSCALL_64", "__x64_sys_munmap", "unlink_file_vma_batch_process", "up_write"])
        );
        assert_eq!(classify(&path), TEARDOWN);
        assert_eq!(release_path(&munmap, true), None, "a write release is no reader's");
        let punch = s(&["ext4_punch_hole", "unmap_mapping_range", "up_read", "rwsem_wake", "try_to_wake_up"]);
        assert_eq!(release_path(&punch, true).unwrap().last().unwrap(), "up_read");
        let signal = s(&["__x64_sys_kill", "do_send_sig_info", "signal_wake_up_state", "try_to_wake_up"]);
        assert_eq!(release_path(&signal, false), None);
    }

    #[test]
    fn holders_without_a_stack_are_classed_by_what_they_do() {
        assert_eq!(of_holder_hint(h::IN_SYSCALL | 9, "app"), MMAP);
        assert_eq!(of_holder_hint(h::IN_SYSCALL | 435, "app"), FORK);
        assert_eq!(of_holder_hint(h::IN_SYSCALL | 285, "app"), TRUNCATE);
        // Exiting: teardown, whatever the system call (exit_group is one, a fatal signal is not).
        assert_eq!(of_holder_hint(h::EXITING | h::IN_SYSCALL | 231, "app"), TEARDOWN);
        assert_eq!(of_holder_hint(h::KTHREAD, "kswapd0"), RECLAIM);
        assert_eq!(of_holder_hint(h::KTHREAD, "kworker/0:1"), OTHER);
        assert_eq!(of_holder_hint(0, "app"), OTHER);
        assert_eq!(holder_doing(h::IN_SYSCALL | 11), "[syscall munmap]");
        assert_eq!(holder_doing(h::IN_SYSCALL | 1), "[syscall 1]");
        assert_eq!(holder_doing(0), "[not in a system call]");
    }
}
