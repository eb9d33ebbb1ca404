//! Struct offsets from the running kernel's BTF, handed to the eBPF programs as globals.
//! Rust eBPF has no CO-RE field relocations, and layouts differ between kernels and configs
//! (mm_struct even randomises its layout), so nothing here is hard-coded.

use anyhow::{anyhow, bail, Context, Result};
use btf_rs::{Btf, Type};
use profiler_common::names::global;
use std::path::Path;

/// Byte offset of `field` in `struct strukt`, looking through anonymous struct/union members
/// (mm_struct keeps mmap_lock inside an anonymous struct).
pub fn offset_of(btf: &Btf, strukt: &str, field: &str) -> Result<u64> {
    let types = btf.resolve_types_by_name(strukt).with_context(|| format!("no `{strukt}` in BTF"))?;
    for t in types {
        if let Type::Struct(s) = t {
            if let Some(bits) = find_member(btf, &s, field)? {
                if bits % 8 != 0 {
                    bail!("{strukt}.{field} is a bitfield");
                }
                return Ok(u64::from(bits / 8));
            }
        }
    }
    Err(anyhow!("struct {strukt} has no member {field} in this kernel's BTF"))
}

/// Size in bytes of `struct strukt`.
pub fn size_of(btf: &Btf, strukt: &str) -> Result<u64> {
    let types = btf.resolve_types_by_name(strukt).with_context(|| format!("no `{strukt}` in BTF"))?;
    types
        .into_iter()
        .find_map(|t| if let Type::Struct(s) = t { Some(s.size() as u64) } else { None })
        .ok_or_else(|| anyhow!("no struct {strukt} in this kernel's BTF"))
}

fn find_member(btf: &Btf, s: &btf_rs::Struct, field: &str) -> Result<Option<u32>> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == field {
            return Ok(Some(m.bit_offset()));
        }
        if name.is_empty() {
            let inner = skip_modifiers(btf, btf.resolve_chained_type(m)?)?;
            if let Type::Struct(inner) | Type::Union(inner) = inner {
                if let Some(off) = find_member(btf, &inner, field)? {
                    return Ok(Some(m.bit_offset() + off));
                }
            }
        }
    }
    Ok(None)
}

fn skip_modifiers(btf: &Btf, mut t: Type) -> Result<Type> {
    loop {
        t = match &t {
            Type::Typedef(x) => btf.resolve_chained_type(x)?,
            Type::Const(x) | Type::Volatile(x) | Type::Restrict(x) => btf.resolve_chained_type(x)?,
            _ => return Ok(t),
        };
    }
}

/// The offsets (and the one size) the programs need, by global name.
pub fn lock_offsets(btf_path: &Path) -> Result<Vec<(&'static str, u64)>> {
    if !btf_path.exists() {
        bail!(
            "kernel BTF not found at {} (needs CONFIG_DEBUG_INFO_BTF=y); pass --btf FILE",
            btf_path.display()
        );
    }
    let btf =
        Btf::from_file(btf_path).map_err(|e| anyhow!("cannot parse BTF {}: {e}", btf_path.display()))?;
    let mut offsets: Vec<(&'static str, u64)> = global::OFFSETS
        .into_iter()
        .map(|(global, s, f)| Ok((global, offset_of(&btf, s, f)?)))
        .collect::<Result<_>>()?;
    // The user registers saved at the top of a task's kernel stack (callsite.rs hashes the
    // stack below them).
    offsets.push((global::PT_REGS_SIZE, size_of(&btf, "pt_regs")?));
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks against the host kernel's BTF, where it exists (every CI machine has it).
    #[test]
    fn host_offsets_are_plausible() {
        let p = Path::new("/sys/kernel/btf/vmlinux");
        if !p.exists() {
            return;
        }
        let offs: std::collections::HashMap<_, _> = lock_offsets(p).unwrap().into_iter().collect();
        // host precedes i_mmap_rwsem in address_space; all offsets sit inside sane struct sizes.
        assert!(offs["AS_HOST"] < offs["AS_I_MMAP_RWSEM"]);
        assert!(offs["MM_MMAP_LOCK"] > 0 && offs["TASK_MM"] > 0);
        // An inode's own mapping sits well inside it (kernel::file_of counts on a nonzero offset).
        assert!(offs["INODE_I_DATA"] > offs["INODE_I_MAPPING"]);
        // x86-64's pt_regs: 21 saved registers of 8 bytes.
        assert_eq!(offs["PT_REGS_SIZE"], 168);
        for (k, v) in &offs {
            assert!(*v < 16384, "{k} = {v}");
        }
    }

    #[test]
    fn missing_btf_says_so() {
        let e = lock_offsets(Path::new("/nonexistent/vmlinux")).unwrap_err().to_string();
        assert!(e.contains("BTF not found") && e.contains("--btf"), "{e}");
    }
}
