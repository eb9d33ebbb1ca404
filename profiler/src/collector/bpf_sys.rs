//! The bpf(2) map commands the drain needs that aya 0.14's typed maps do not give:
//! `BPF_MAP_LOOKUP_AND_DELETE_ELEM` on a hash map, and key iteration and lookup on a map
//! whose key and value types are this crate's.

use anyhow::{Context, Result};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Every key of a hash map.
pub fn keys_of<K: aya::Pod>(fd: BorrowedFd<'_>) -> Result<Vec<K>> {
    let mut keys = Vec::new();
    let mut prev: Option<K> = None;
    loop {
        let mut attr = unsafe { std::mem::zeroed::<aya_obj::generated::bpf_attr>() };
        let mut next = std::mem::MaybeUninit::<K>::zeroed();
        // SAFETY: the map-element member of the bpf_attr union, which BPF_MAP_GET_NEXT_KEY
        // reads: `key` points at a K (or is 0 for the first key) and `next_key` at room for
        // one, both alive across the call.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = fd.as_raw_fd() as u32;
            if let Some(p) = &prev {
                u.key = p as *const K as u64;
            }
            u.__bindgen_anon_1.next_key = next.as_mut_ptr() as u64;
        }
        match bpf(aya_obj::generated::bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(()) => {
                // SAFETY: the kernel wrote a whole key.
                let k = unsafe { next.assume_init() };
                keys.push(k);
                prev = Some(k);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
            Err(e) => return Err(e).context("reading a BPF map's keys"),
        }
    }
}

/// One element of a map by key, `None` when absent.
pub fn lookup<K: aya::Pod, V: aya::Pod>(fd: BorrowedFd<'_>, key: &K) -> Result<Option<V>> {
    elem(fd, key, aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_ELEM).context("reading a BPF map")
}

pub fn delete<K: aya::Pod>(fd: BorrowedFd<'_>, key: &K) -> Result<bool> {
    let mut attr = unsafe { std::mem::zeroed::<aya_obj::generated::bpf_attr>() };
    // SAFETY: as in keys_of; `key` points at a K alive across the call.
    unsafe {
        let u = &mut attr.__bindgen_anon_2;
        u.map_fd = fd.as_raw_fd() as u32;
        u.key = key as *const K as u64;
    }
    match bpf(aya_obj::generated::bpf_cmd::BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e).context("deleting from a BPF map"),
    }
}

pub fn elem<K: aya::Pod, V: aya::Pod>(
    fd: BorrowedFd<'_>,
    key: &K,
    cmd: aya_obj::generated::bpf_cmd,
) -> std::io::Result<Option<V>> {
    let mut attr = unsafe { std::mem::zeroed::<aya_obj::generated::bpf_attr>() };
    let mut value = std::mem::MaybeUninit::<V>::zeroed();
    // SAFETY: the map-element member of bpf_attr: `key` points at a K, `value` at room for a
    // V (the map's value size: K and V are the map's own types), both alive across the call.
    unsafe {
        let u = &mut attr.__bindgen_anon_2;
        u.map_fd = fd.as_raw_fd() as u32;
        u.key = key as *const K as u64;
        u.__bindgen_anon_1.value = value.as_mut_ptr() as u64;
    }
    match bpf(cmd, &mut attr) {
        // SAFETY: the kernel wrote a whole value; V is Pod, so any bytes are a valid V.
        Ok(()) => Ok(Some(unsafe { value.assume_init() })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn bpf(cmd: aya_obj::generated::bpf_cmd, attr: &mut aya_obj::generated::bpf_attr) -> std::io::Result<()> {
    // SAFETY: bpf(2) with a zeroed attr of the kernel's layout whose pointers the callers set
    // to live memory of the map's key and value sizes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut aya_obj::generated::bpf_attr,
            std::mem::size_of::<aya_obj::generated::bpf_attr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
