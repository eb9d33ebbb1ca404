//! Struct offsets from the running kernel's BTF, handed to the eBPF programs as globals.
//! Rust eBPF has no CO-RE field relocations, and layouts differ between kernels and configs
//! (mm_struct even randomises its layout), so nothing here is hard-coded.

use anyhow::{anyhow, bail, Context, Result};
use btf_rs::{Btf, Type};
use profiler_common::Offsets;
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

/// The offsets (and the one size) the programs need, from the kernel's BTF; the tracefs
/// record offsets are left for the caller.
pub fn lock_offsets(btf_path: &Path) -> Result<Offsets> {
    if !btf_path.exists() {
        bail!(
            "kernel BTF not found at {} (needs CONFIG_DEBUG_INFO_BTF=y); pass --btf FILE",
            btf_path.display()
        );
    }
    let btf =
        Btf::from_file(btf_path).map_err(|e| anyhow!("cannot parse BTF {}: {e}", btf_path.display()))?;
    let mut offsets = Offsets::default();
    for (field, (s, f)) in offsets.from_btf_mut().zip(Offsets::FROM_BTF) {
        *field = offset_of(&btf, s, f)?;
    }
    // The user registers saved at the top of a task's kernel stack (callsite.rs hashes the
    // stack below them).
    offsets.pt_regs_size = size_of(&btf, "pt_regs")?;
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
        let o = lock_offsets(p).unwrap();
        // host precedes i_mmap_rwsem in address_space; all offsets sit inside sane struct sizes.
        assert!(o.as_host < o.as_i_mmap_rwsem);
        assert!(o.mm_mmap_lock > 0 && o.task_mm > 0);
        // An inode's own mapping sits well inside it (kernel::file_of counts on a nonzero offset).
        assert!(o.inode_i_data > o.inode_i_mapping);
        // x86-64's pt_regs: 21 saved registers of 8 bytes.
        assert_eq!(o.pt_regs_size, 168);
        let mut o = o;
        for (v, (s, f)) in o.from_btf_mut().zip(Offsets::FROM_BTF) {
            assert!(*v < 16384, "{s}.{f} = {v}");
        }
    }

    #[test]
    fn missing_btf_says_so() {
        let e = lock_offsets(Path::new("/nonexistent/vmlinux")).unwrap_err().to_string();
        assert!(e.contains("BTF not found") && e.contains("--btf"), "{e}");
    }
}
