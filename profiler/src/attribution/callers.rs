//! Caller classes: which part of the process lifecycle took the i_mmap_rwsem, read off the
//! kernel stack (innermost matching frame wins). These are the rows mm reviewers ask about:
//! fork copies every file VMA (dup_mmap), mmap links new ones (vma_link_file), mprotect and
//! MAP_FIXED split or merge (vma_prepare), exit and munmap unlink (unlink_file_vma_batch).

pub const FORK: &str = "fork";
pub const MMAP: &str = "mmap";
pub const SPLIT_MERGE: &str = "split/merge";
pub const TEARDOWN: &str = "teardown";
pub const OTHER: &str = "other";
/// The kernel stack was not kept (stack table full, or unwinding failed: see `lost`).
pub const NO_STACK: &str = "no stack";
/// What report.rs puts in place of the frames of a stack that was not kept.
pub const NO_STACK_FRAME: &str = "[stack not recorded]";

pub const ALL: [&str; 6] = [FORK, MMAP, SPLIT_MERGE, TEARDOWN, OTHER, NO_STACK];

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
        assert_eq!(classify(&s(&["kswapd", "shrink_folio_list", "rmap_walk_file", "down_read"])), OTHER);
        assert_eq!(classify(&[]), OTHER);
        assert_eq!(classify(&s(&[NO_STACK_FRAME])), NO_STACK);
    }
}
