//! Whether each program of the embedded eBPF object fits the kernel's 512-byte BPF stack with
//! the subprograms it calls (the verifier adds their frames, each rounded up to 32 bytes).
//! LLVM refuses a single frame over 512 bytes at build time, but not a program plus its calls;
//! kernels since 6.13 may give a tracing program a private stack and load it anyway, so the
//! host's kernel alone would not catch what 6.1 and 6.12 refuse.

use std::collections::{BTreeMap, BTreeSet};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SymbolKind};

/// A function of the object: its section, its byte range in it.
struct Function {
    section: object::SectionIndex,
    start: u64,
    end: u64,
}

/// The stack a function uses itself (deepest r10-relative access or pointer), and whom it calls.
fn frame(
    elf: &object::File<'_>,
    f: &Function,
    names: &BTreeMap<(usize, u64), String>,
) -> (u64, BTreeSet<String>) {
    let section = elf.section_by_index(f.section).unwrap();
    let data = section.data().unwrap();
    let relocations: BTreeMap<u64, object::Symbol<'_, '_>> = section
        .relocations()
        .filter_map(|(at, r)| match r.target() {
            RelocationTarget::Symbol(i) => Some((at, elf.symbol_by_index(i).ok()?)),
            _ => None,
        })
        .collect();
    let (mut depth, mut calls) = (0u64, BTreeSet::new());
    // Registers holding r10 (plus an offset, once added), by the 4-bit register number.
    let mut from_fp = [false; 16];
    let mut at = f.start;
    while at + 8 <= f.end {
        let i = &data[at as usize..at as usize + 8];
        let (code, dst, src) = (i[0], (i[1] & 0xf) as usize, (i[1] >> 4) as usize);
        let off = i16::from_le_bytes([i[2], i[3]]) as i64;
        let imm = i32::from_le_bytes([i[4], i[5], i[6], i[7]]) as i64;
        let mut deepest = |d: i64| depth = depth.max((-d).max(0) as u64);
        match code & 7 {
            // LDX: src is the base; ST, STX: dst is.
            1 if src == 10 => deepest(off),
            2 | 3 if dst == 10 => deepest(off),
            _ => {}
        }
        match code {
            0xbf if src == 10 => from_fp[dst] = true, // mov64 dst, r10
            0x07 => {
                // add64 dst, imm: keeps dst pointing into the stack, deeper.
                if from_fp[dst] {
                    deepest(imm);
                }
            }
            0x85 => {
                // A call clobbers r1-r5. A BPF-to-BPF call (src 1) names its callee by a
                // relocation against a function, or against a section (the callee then at
                // (imm + 1) * 8 in it); unrelocated, by a pc-relative offset in this section.
                if src == 1 {
                    let callee = match relocations.get(&at) {
                        Some(sym) if sym.kind() == SymbolKind::Section => sym
                            .section_index()
                            .and_then(|sec| names.get(&(sec.0, ((imm + 1) * 8) as u64)).cloned()),
                        Some(sym) => sym.name().ok().map(str::to_owned),
                        None => names.get(&(f.section.0, (at as i64 + 8 + imm * 8) as u64)).cloned(),
                    };
                    calls.extend(callee);
                }
                from_fp[1..=5].fill(false);
            }
            // Anything else that writes dst (stores and jumps write no register).
            _ if !matches!(code & 7, 2 | 3 | 5 | 6) => from_fp[dst] = false,
            _ => {}
        }
        at += if code == 0x18 { 16 } else { 8 };
    }
    (depth, calls)
}

/// Each program's stack with the subprograms it calls, as the verifier adds them up.
pub(super) fn program_stacks(object: &[u8]) -> BTreeMap<String, u64> {
    let elf = object::File::parse(object).expect("the embedded eBPF object is ELF");
    let mut functions = BTreeMap::new();
    let mut names = BTreeMap::new();
    for s in elf.symbols() {
        let (Ok(name), Some(section)) = (s.name(), s.section_index()) else { continue };
        if s.kind() != SymbolKind::Text || s.size() == 0 {
            continue;
        }
        names.insert((section.0, s.address()), name.to_owned());
        functions
            .insert(name.to_owned(), Function { section, start: s.address(), end: s.address() + s.size() });
    }
    let frames: BTreeMap<&String, (u64, BTreeSet<String>)> =
        functions.iter().map(|(n, f)| (n, frame(&elf, f, &names))).collect();
    fn total(n: &str, frames: &BTreeMap<&String, (u64, BTreeSet<String>)>, seen: &mut Vec<String>) -> u64 {
        let Some((own, calls)) = frames.get(&n.to_owned()) else { return 0 };
        if seen.iter().any(|s| s == n) {
            return 0;
        }
        seen.push(n.to_owned());
        let deepest = calls.iter().map(|c| total(c, frames, seen)).max().unwrap_or(0);
        seen.pop();
        own.div_ceil(32) * 32 + deepest
    }
    functions
        .iter()
        .filter(|(_, f)| {
            elf.section_by_index(f.section).ok().and_then(|s| s.name().ok().map(|n| n != ".text"))
                == Some(true)
        })
        .map(|(n, _)| (n.clone(), total(n, &frames, &mut vec![])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every program with its calls fits 512 bytes: what 6.1 and 6.12 refused once
    /// (contention_end, 488 + 208 bytes through an outlined closure).
    #[test]
    fn every_program_fits_the_bpf_stack_with_its_calls() {
        let stacks = program_stacks(crate::collector::EBPF_OBJECT);
        assert!(stacks.contains_key("contention_end") && stacks.len() > 20, "{stacks:?}");
        let over: Vec<_> = stacks.iter().filter(|(_, &d)| d > 512).collect();
        assert!(over.is_empty(), "over 512 bytes of BPF stack: {over:?}");
    }
}
