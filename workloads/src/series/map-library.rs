//! map-library WAY LIB COUNT [-j JOBS]: COUNT × (map the shared library LIB as a dynamic linker
//! does, then munmap it), split over JOBS processes. WAY is how the segments are placed:
//!
//! - `ldso`: as glibc's ld.so (_dl_map_segments): the whole image is mapped from the file with
//!   the first segment's protection, a reservation that is itself the first segment, and each
//!   further PT_LOAD segment is mapped over it with MAP_FIXED; holes between segments are made
//!   PROT_NONE;
//! - `bionic`: as Android's linker (ReserveAddressSpace, LoadSegments): an anonymous PROT_NONE
//!   reservation, and every PT_LOAD segment, the first too, mapped over it with MAP_FIXED.
//!
//! Both then zero the end of the last file page of a segment whose memory size passes its file
//! size, map the rest of its bss anonymous (MAP_FIXED), and make PT_GNU_RELRO read-only, as the
//! linkers do. Every step that would touch LIB's i_mmap_rwsem is the linker's own; nothing is
//! run from the mapping. Map a copy of a library that nothing else maps (docs/map-library.md)
//! and `rmapprof --inode COPY` counts exactly the acquisitions of COUNT mappings.
//!
//! `map-library layout WAY LIB` maps LIB once and prints the mappings of LIB and its
//! reservation, from /proc/self/maps, for checking.
use std::os::fd::AsRawFd;

const PT_LOAD: u32 = 1;
const PT_GNU_RELRO: u32 = 0x6474_e552;

/// One PT_LOAD segment, page-rounded as ld.so rounds it (relative to the image's link base).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub mapstart: u64,
    pub mapend: u64,
    pub dataend: u64,
    pub allocend: u64,
    pub mapoff: u64,
    pub prot: i32,
}

/// The load plan of an ELF64 little-endian shared object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub loads: Vec<Load>,
    /// PT_GNU_RELRO: (vaddr, memsz).
    pub relro: Option<(u64, u64)>,
}

impl Plan {
    /// Length of the whole image: from the first segment's page to the last one's end of memory.
    pub fn maplength(&self, page: u64) -> u64 {
        align_up(self.loads.last().unwrap().allocend, page) - self.loads[0].mapstart
    }
    /// Whether some segment does not start where the previous one's file pages end.
    pub fn has_holes(&self) -> bool {
        self.loads.windows(2).any(|w| w[0].mapend != w[1].mapstart)
    }
}

fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}
fn align_up(x: u64, a: u64) -> u64 {
    align_down(x + a - 1, a)
}

/// Reads the program headers of `image` (an ELF64 little-endian file's first bytes, which must
/// include the program header table).
pub fn plan(image: &[u8], page: u64) -> Result<Plan, String> {
    let u16_at = |o: usize| image.get(o..o + 2).map(|b| u16::from_le_bytes(b.try_into().unwrap()));
    let u32_at = |o: usize| image.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| image.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    if image.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not an ELF64 little-endian file".into());
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return Err("truncated ELF header".into());
    };
    let mut loads = Vec::new();
    let mut relro = None;
    for i in 0..usize::from(phnum) {
        let ph = phoff as usize + i * usize::from(phentsize);
        let field = |o: usize| u64_at(ph + o).ok_or_else(|| format!("truncated program header {i}"));
        let p_type = u32_at(ph).ok_or_else(|| format!("truncated program header {i}"))?;
        let p_flags = u32_at(ph + 4).ok_or_else(|| format!("truncated program header {i}"))?;
        let (offset, vaddr, filesz, memsz) = (field(8)?, field(16)?, field(32)?, field(40)?);
        match p_type {
            PT_LOAD => {
                if vaddr % page != offset % page {
                    return Err(format!("segment {i}: address and offset differ modulo the page"));
                }
                let prot = (if p_flags & 4 != 0 { libc::PROT_READ } else { 0 })
                    | (if p_flags & 2 != 0 { libc::PROT_WRITE } else { 0 })
                    | (if p_flags & 1 != 0 { libc::PROT_EXEC } else { 0 });
                loads.push(Load {
                    mapstart: align_down(vaddr, page),
                    mapend: align_up(vaddr + filesz, page),
                    dataend: vaddr + filesz,
                    allocend: vaddr + memsz,
                    mapoff: align_down(offset, page),
                    prot,
                });
            }
            PT_GNU_RELRO => relro = Some((vaddr, memsz)),
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err("no PT_LOAD segment".into());
    }
    if loads.windows(2).any(|w| w[1].mapstart < w[0].mapend) {
        return Err("PT_LOAD segments overlap or are out of order".into());
    }
    Ok(Plan { loads, relro })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Way {
    LdSo,
    Bionic,
}

fn check(ret: *mut libc::c_void, what: &str) -> Result<*mut libc::c_void, String> {
    if ret == libc::MAP_FAILED {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

fn check_rc(rc: libc::c_int, what: &str) -> Result<(), String> {
    if rc != 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

/// Maps the library as `way` does; returns the reservation's address and length.
///
/// # Safety
/// Maps memory at addresses the kernel chose for the reservation only.
pub unsafe fn map(way: Way, fd: i32, plan: &Plan, page: u64) -> Result<(u64, u64), String> {
    let len = plan.maplength(page);
    let first = plan.loads[0];
    let base = match way {
        // ld.so: the whole image from the file, with the first segment's protection.
        Way::LdSo => check(
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                first.prot,
                libc::MAP_PRIVATE,
                fd,
                first.mapoff as i64,
            ),
            "mmap reservation (file)",
        )? as u64,
        // bionic: an anonymous, inaccessible reservation.
        Way::Bionic => check(
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            ),
            "mmap reservation (anonymous)",
        )? as u64,
    };
    let l_addr = base - first.mapstart;
    if way == Way::LdSo && plan.has_holes() {
        let start = l_addr + first.mapend;
        let end = l_addr + plan.loads.last().unwrap().mapstart;
        check_rc(libc::mprotect(start as *mut _, (end - start) as usize, libc::PROT_NONE), "mprotect holes")?;
    }
    for (i, c) in plan.loads.iter().enumerate() {
        if i > 0 || way == Way::Bionic {
            let at = (l_addr + c.mapstart) as *mut libc::c_void;
            let got = check(
                libc::mmap(
                    at,
                    (c.mapend - c.mapstart) as usize,
                    c.prot,
                    libc::MAP_PRIVATE | libc::MAP_FIXED,
                    fd,
                    c.mapoff as i64,
                ),
                "mmap segment",
            )?;
            if got != at {
                return Err("MAP_FIXED segment landed elsewhere".into());
            }
        }
        if c.allocend > c.dataend {
            let zero = l_addr + c.dataend;
            let zeroend = l_addr + c.allocend;
            let zeropage = align_up(zero, page).min(zeroend);
            if zeropage > zero {
                if c.prot & libc::PROT_WRITE == 0 {
                    return Err("bss in a segment that is not writable".into());
                }
                std::ptr::write_bytes(zero as *mut u8, 0, (zeropage - zero) as usize);
            }
            if zeroend > zeropage {
                check(
                    libc::mmap(
                        zeropage as *mut _,
                        (align_up(zeroend, page) - zeropage) as usize,
                        c.prot,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    ),
                    "mmap bss",
                )?;
            }
        }
    }
    if let Some((vaddr, memsz)) = plan.relro {
        let start = align_down(l_addr + vaddr, page);
        let end = align_down(l_addr + vaddr + memsz, page);
        if end > start {
            check_rc(
                libc::mprotect(start as *mut _, (end - start) as usize, libc::PROT_READ),
                "mprotect relro",
            )?;
        }
    }
    Ok((base, len))
}

fn page_size() -> u64 {
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

fn load_plan(path: &str) -> Result<Plan, String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    plan(&data, page_size()).map_err(|e| format!("{path}: {e}"))
}

fn parse_way(s: &str) -> Option<Way> {
    match s {
        "ldso" => Some(Way::LdSo),
        "bionic" => Some(Way::Bionic),
        _ => None,
    }
}

/// The VMAs of /proc/self/maps: start, end and the rest of the line.
fn vmas(maps: &str) -> impl Iterator<Item = (u64, u64, &str)> {
    maps.lines().filter_map(|l| {
        let (range, rest) = l.split_once(' ').unwrap_or((l, ""));
        let (s, e) = range.split_once('-')?;
        Some((u64::from_str_radix(s, 16).ok()?, u64::from_str_radix(e, 16).ok()?, rest))
    })
}

/// The lines of /proc/self/maps within [base, base + len), each cut at its end.
pub fn maps_within(base: u64, len: u64) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    vmas(&maps)
        .filter(|&(s, _, _)| s >= base && s < base + len)
        .map(|(s, e, rest)| {
            // Addresses relative to the reservation, so runs compare. An anonymous neighbour
            // may have merged into the bss: cut at the reservation.
            let (s, e) = (s - base, e.min(base + len) - base);
            let mut f = rest.split_whitespace();
            let (perms, off) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            let file = f.nth(2).map_or("[anon]", |p| if p.contains('/') { "LIB" } else { p });
            format!("{s:#09x}-{e:#09x} {perms} {off} {file}")
        })
        .collect()
}

fn main() {
    let usage = "map-library ldso|bionic LIB COUNT [-j JOBS] | map-library layout ldso|bionic LIB";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let die = |e: String| -> ! {
        eprintln!("map-library: {e}");
        std::process::exit(1);
    };
    if args.first().map(String::as_str) == Some("layout") {
        let (Some(way), Some(lib)) = (args.get(1).and_then(|w| parse_way(w)), args.get(2)) else {
            rmapprof_workloads::die(usage)
        };
        let plan = load_plan(lib).unwrap_or_else(|e| die(e));
        let f = std::fs::File::open(lib).unwrap_or_else(|e| die(format!("{lib}: {e}")));
        let (base, len) = unsafe { map(way, f.as_raw_fd(), &plan, page_size()) }.unwrap_or_else(|e| die(e));
        for l in maps_within(base, len) {
            println!("{l}");
        }
        return;
    }
    let a = rmapprof_workloads::parse(usage);
    let [way, lib] = &a.rest[..] else { rmapprof_workloads::die(usage) };
    let way = parse_way(way).unwrap_or_else(|| rmapprof_workloads::die(usage));
    let plan = load_plan(lib).unwrap_or_else(|e| die(e));
    let page = page_size();
    let ok = rmapprof_workloads::run_parallel(a.count, a.jobs, |_, n| {
        let f = std::fs::File::open(lib).unwrap_or_else(|e| die(format!("{lib}: {e}")));
        (0..n).all(|_| match unsafe { map(way, f.as_raw_fd(), &plan, page) } {
            Ok((base, len)) => unsafe { libc::munmap(base as *mut _, len as usize) == 0 },
            Err(e) => {
                eprintln!("map-library: {e}");
                false
            }
        })
    });
    rmapprof_workloads::exit(ok);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

    fn libc_plan() -> Option<Plan> {
        std::path::Path::new(LIBC).exists().then(|| load_plan(LIBC).unwrap())
    }

    #[test]
    fn rejects_what_is_not_elf64() {
        assert!(plan(b"#!/bin/sh\n", 4096).is_err());
        assert!(plan(b"\x7fELF\x02\x01", 4096).is_err());
    }

    #[test]
    fn libc_plan_is_what_ld_so_maps() {
        let Some(p) = libc_plan() else { return };
        assert!(p.loads.len() >= 2);
        assert_eq!(p.loads[0].mapstart, 0);
        assert!(p.loads.iter().all(|l| l.mapstart % 4096 == 0 && l.mapend % 4096 == 0));
        assert!(p.relro.is_some());
    }

    /// Both ways end with the same layout: one VMA per segment (the RELRO part of the data
    /// segment apart), the bss anonymous, nothing of the reservation left over.
    #[test]
    fn both_ways_give_the_same_layout() {
        let Some(p) = libc_plan() else { return };
        let f = std::fs::File::open(LIBC).unwrap();
        let mut layouts = Vec::new();
        for way in [Way::LdSo, Way::Bionic] {
            let (base, len) = unsafe { map(way, f.as_raw_fd(), &p, page_size()) }.unwrap();
            let l = maps_within(base, len);
            unsafe { libc::munmap(base as *mut _, len as usize) };
            assert!(l.iter().filter(|l| l.ends_with(" LIB")).count() >= p.loads.len(), "{l:?}");
            assert!(!l.iter().any(|l| l.contains("---p")), "reservation left over: {l:?}");
            layouts.push(l);
        }
        assert_eq!(layouts[0], layouts[1]);
    }

    /// The end of the VMA holding `addr`.
    fn vma_end(addr: u64) -> Option<u64> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let end = vmas(&maps).find_map(|(s, e, _)| (s <= addr && addr < e).then_some(e));
        end
    }

    /// An anonymous mapping right above the library (another thread's, in a test binary)
    /// merges with its bss VMA; the layout stops at the reservation's end all the same.
    #[test]
    fn a_neighbour_merged_into_the_bss_is_cut_at_the_reservation() {
        let Some(p) = libc_plan() else { return };
        let f = std::fs::File::open(LIBC).unwrap();
        let page = page_size();
        let len = p.maplength(page);
        // SAFETY: fresh mappings of this test's own, each unmapped below; mmap places the
        // library top-down, so in the hole left below the rw page, right under it.
        unsafe {
            let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
            let hole = libc::mmap(std::ptr::null_mut(), (len + page) as usize, libc::PROT_NONE, anon, -1, 0);
            assert_ne!(hole, libc::MAP_FAILED);
            let above = hole as u64 + len;
            libc::munmap(hole, len as usize);
            libc::mprotect(above as *mut _, page as usize, libc::PROT_READ | libc::PROT_WRITE);
            let (base, got) = map(Way::LdSo, f.as_raw_fd(), &p, page).unwrap();
            let bss_end = vma_end(base + got - 1);
            let layout = maps_within(base, got);
            libc::munmap(base as *mut _, got as usize);
            libc::munmap(above as *mut _, page as usize);
            // Only when the bss and the rw page did merge does this test anything.
            if base + got != above || bss_end != Some(above + page) {
                return;
            }
            let end = format!("-{got:#09x} ");
            assert!(layout.last().unwrap().contains(&end), "past the reservation: {layout:?}");
        }
    }
}
