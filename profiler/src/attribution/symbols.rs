//! Kernel stack addresses → function names, from /proc/kallsyms via aya's helper.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct KernelSymbols {
    by_addr: BTreeMap<u64, String>,
    /// End of the core kernel's text: an address past it that resolves to a core-kernel symbol
    /// (data, `__brk_limit`) is not code we can name, e.g. a BPF trampoline.
    etext: Option<u64>,
}

impl KernelSymbols {
    /// Loads /proc/kallsyms. Addresses read as 0 without CAP_SYSLOG (kptr_restrict); then every
    /// frame prints as its address.
    pub fn load() -> Self {
        let mut by_addr = aya::util::kernel_symbols().unwrap_or_default();
        by_addr.remove(&0);
        let mut s = Self::from_map(by_addr);
        // The map keeps one name per address, and _etext shares its address with others.
        s.etext = std::fs::read_to_string("/proc/kallsyms").ok().and_then(|t| {
            t.lines()
                .find_map(|l| u64::from_str_radix(l.strip_suffix(" T _etext")?, 16).ok())
                .filter(|a| *a != 0)
        });
        s
    }

    pub fn from_map(by_addr: BTreeMap<u64, String>) -> Self {
        let etext = by_addr.iter().find(|(_, n)| n.as_str() == "_etext").map(|(a, _)| *a);
        Self { by_addr, etext }
    }

    /// The function containing `ip` (the nearest symbol at or below it), without the
    /// kallsyms module column (`\t[bpf]`).
    pub fn name(&self, ip: u64) -> String {
        match self.by_addr.range(..=ip).next_back() {
            Some((addr, name)) if self.etext.is_some_and(|e| *addr >= e) && !name.contains('\t') => {
                "[unknown]".into()
            }
            Some((_, name)) => name.split('\t').next().unwrap_or(name).to_owned(),
            None => format!("{ip:#x}"),
        }
    }

    /// A stack as function names, outermost first, leaving out the BPF trampoline and program
    /// frames that fentry probes add, and the second copy of a traced function that its
    /// trampoline calls (`down_write;down_write`).
    pub fn frames(&self, ips_leaf_first: &[u64]) -> Vec<String> {
        let mut v: Vec<String> = ips_leaf_first
            .iter()
            .rev()
            .map(|ip| self.name(*ip))
            .filter(|f| !f.starts_with("bpf_trampoline_") && !f.starts_with("bpf_prog_") && f != "[unknown]")
            .collect();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_below() {
        let s = KernelSymbols::from_map(BTreeMap::from([
            (0x1000, "down_write".to_owned()),
            (0x1100, "rwsem_down_write_slowpath".to_owned()),
        ]));
        assert_eq!(s.name(0x1000), "down_write");
        assert_eq!(s.name(0x10ff), "down_write");
        assert_eq!(s.name(0x1234), "rwsem_down_write_slowpath");
        assert_eq!(s.name(0x10), "0x10");
        let s = KernelSymbols::from_map(BTreeMap::from([
            (0x100, "entry_SYSCALL_64".to_owned()),
            (0x200, "down_write".to_owned()),
            (0x300, "bpf_trampoline_6442504491\t[bpf]".to_owned()),
            (0x400, "_etext".to_owned()),
            (0x500, "__brk_limit".to_owned()),
        ]));
        assert_eq!(s.frames(&[0x301, 0x301, 0x201, 0x501, 0x201, 0x101]), ["entry_SYSCALL_64", "down_write"]);
        assert_eq!(s.name(0x501), "[unknown]");
    }
}
