//! Kernel stack addresses → function names, from /proc/kallsyms via aya's helper.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct KernelSymbols {
    by_addr: BTreeMap<u64, String>,
}

impl KernelSymbols {
    /// Loads /proc/kallsyms. Addresses read as 0 without CAP_SYSLOG (kptr_restrict); then every
    /// frame prints as its address.
    pub fn load() -> Self {
        let mut by_addr = aya::util::kernel_symbols().unwrap_or_default();
        by_addr.remove(&0);
        Self { by_addr }
    }

    #[cfg(test)]
    pub fn from_map(by_addr: BTreeMap<u64, String>) -> Self {
        Self { by_addr }
    }

    /// The function containing `ip` (the nearest symbol at or below it), without the
    /// kallsyms module column (`\t[bpf]`).
    pub fn name(&self, ip: u64) -> String {
        match self.by_addr.range(..=ip).next_back() {
            Some((_, name)) => name.split('\t').next().unwrap_or(name).to_owned(),
            None => format!("{ip:#x}"),
        }
    }

    /// A stack as function names, outermost first, leaving out the BPF trampoline and program
    /// frames that fentry probes add on top of the probed function.
    pub fn frames(&self, ips_leaf_first: &[u64]) -> Vec<String> {
        ips_leaf_first
            .iter()
            .rev()
            .map(|ip| self.name(*ip))
            .filter(|f| !f.starts_with("bpf_trampoline_") && !f.starts_with("bpf_prog_"))
            .collect()
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
        ]));
        assert_eq!(s.frames(&[0x301, 0x301, 0x201, 0x101]), ["entry_SYSCALL_64", "down_write"]);
    }
}
