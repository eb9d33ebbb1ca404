//! Reading kernel structures without CO-RE: Rust eBPF gets no field relocations, so userspace
//! reads each offset from the running kernel's BTF and writes it into these globals before load.
//! A zero `AS_I_MMAP_RWSEM` means "not set" (the rwsem is never the first member of
//! address_space; `host` is) and disables recognition: everything is "other".

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_current_task};
use profiler_common::{lcb_flags, lock_kind, LockTarget};

use crate::{
    config::OFFSETS,
    helpers::{global, read},
    process,
};

/// What the contended lock at `lock` is. Reads are fault-safe probe reads: a lock that is not
/// embedded in an address_space yields garbage or a fault, and fails the back-pointer check.
#[inline(always)]
pub fn classify(lock: u64, flags: u32) -> LockTarget {
    let other = LockTarget { kind: lock_kind::OTHER, dev: 0, ino: 0 };
    if global(&OFFSETS.as_i_mmap_rwsem) == 0 {
        return other;
    }
    // Only rwsems can be i_mmap_rwsem or mmap_lock: skip spinlocks and mutexes.
    if flags & (lcb_flags::SPIN | lcb_flags::MUTEX) != 0 || flags & (lcb_flags::READ | lcb_flags::WRITE) == 0
    {
        return other;
    }
    // SAFETY: a helper call without arguments.
    let task = unsafe { bpf_get_current_task() };
    if let Some(mm) = read::<u64>(task + global(&OFFSETS.task_mm)) {
        if mm != 0 && lock == mm + global(&OFFSETS.mm_mmap_lock) {
            // The mm is the waiter's own, so its process is the waiter's: keyed by it and the
            // program it runs, each process's mmap_lock is reported apart, per program.
            let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
            return LockTarget { kind: lock_kind::MMAP_LOCK, dev: tgid, ino: process::current(tgid) };
        }
    }
    let target = owner(lock, global(&OFFSETS.as_i_mmap_rwsem));
    if target.kind == lock_kind::OTHER && is_anon_vma_root(lock) {
        return LockTarget { kind: lock_kind::ANON_VMA, dev: 0, ino: 0 };
    }
    target
}

/// Whether `lock` is the rwsem of a root anon_vma, the one `anon_vma_lock_*` take: the
/// anon_vma around it is its own root (`av->root == av`). One probe read; another struct
/// would need a pointer to itself just where anon_vma keeps `root`.
#[inline(always)]
fn is_anon_vma_root(lock: u64) -> bool {
    if global(&OFFSETS.anon_vma_rwsem) == 0 {
        return false;
    }
    let av = lock.wrapping_sub(global(&OFFSETS.anon_vma_rwsem));
    read::<u64>(av + global(&OFFSETS.anon_vma_root)) == Some(av)
}

/// The file whose `address_space` is at `a`, if `a` really is an inode's own mapping:
/// `a->host->i_mapping == a`. Anything else (a lock embedded elsewhere) fails the check.
///
/// Such a mapping is always its host's own `i_data` (an inode whose `i_mapping` points
/// elsewhere, a coda file or a block device node, points at another inode's `i_data`, whose
/// host is that inode), so the only host that can pass is `a - offsetof(inode, i_data)`,
/// known before any read. Comparing `a->host` with it rejects every other rwsem after one
/// probe read; following a garbage `host` cost a second read, and a fault when the garbage
/// was an unmapped kernel address. Most `down_*` calls are on rwsems that are not i_mmap_rwsem.
#[inline(always)]
fn file_of(a: u64) -> Option<LockTarget> {
    let host = inode_around(a)?;
    if read::<u64>(host + global(&OFFSETS.inode_i_mapping)) != Some(a) {
        return None;
    }
    let ino = read::<u64>(host + global(&OFFSETS.inode_i_ino)).unwrap_or(0);
    let dev = read::<u64>(host + global(&OFFSETS.inode_i_sb))
        .and_then(|sb| read::<u32>(sb + global(&OFFSETS.sb_s_dev)))
        .unwrap_or(0);
    Some(LockTarget { kind: lock_kind::I_MMAP_RWSEM, dev, ino })
}

/// Whether the rwsem at `sem`, once the i_mmap_rwsem of `file`, still is: its mapping still
/// belongs to the inode around it (one probe read, as in [`file_of`]) and that inode still has
/// `file`'s number (a freed inode's memory is only reused for another inode of the same
/// cache, whose `i_data` is at the same place). Two reads instead of [`classify_rwsem`]'s five.
#[inline(always)]
pub fn still_file(sem: u64, file: &LockTarget) -> bool {
    global(&OFFSETS.as_i_mmap_rwsem) != 0
        && inode_around(sem.wrapping_sub(global(&OFFSETS.as_i_mmap_rwsem)))
            .is_some_and(|host| read::<u64>(host + global(&OFFSETS.inode_i_ino)) == Some(file.ino))
}

/// The inode whose `i_data` the `address_space` at `a` is, if `a->host` says so (one probe
/// read; see [`file_of`]).
#[inline(always)]
fn inode_around(a: u64) -> Option<u64> {
    let host = a.wrapping_sub(global(&OFFSETS.inode_i_data));
    (read::<u64>(a + global(&OFFSETS.as_host))? == host).then_some(host)
}

/// The file owning the `address_space` field at `addr`, `offset` bytes into the struct;
/// "other" if it is not an inode's own mapping or the offsets were never set.
#[inline(always)]
fn owner(addr: u64, offset: u64) -> LockTarget {
    let other = LockTarget { kind: lock_kind::OTHER, dev: 0, ino: 0 };
    if global(&OFFSETS.as_i_mmap_rwsem) == 0 {
        return other;
    }
    file_of(addr.wrapping_sub(offset)).unwrap_or(other)
}

/// An rwsem handed to down_write()/the slowpaths: an i_mmap_rwsem, or "other".
#[inline(always)]
pub fn classify_rwsem(sem: u64) -> LockTarget {
    owner(sem, global(&OFFSETS.as_i_mmap_rwsem))
}

/// `&mapping->i_mmap_rwsem` for a `root` of `&mapping->i_mmap` (no memory read).
#[inline(always)]
pub fn i_mmap_rwsem_of_root(root: u64) -> u64 {
    root.wrapping_sub(global(&OFFSETS.as_i_mmap)).wrapping_add(global(&OFFSETS.as_i_mmap_rwsem))
}

/// The `root` argument of vma_interval_tree_*(): `&mapping->i_mmap`.
#[inline(always)]
pub fn classify_i_mmap_root(root: u64) -> LockTarget {
    owner(root, global(&OFFSETS.as_i_mmap))
}

/// Kernel stacks are at least this big on x86-64 (more with KASAN): the hashed window ends
/// below the top of a stack of this size, and a read that would fail falls back to an unwind.
pub const THREAD_SIZE: u64 = 16384;
