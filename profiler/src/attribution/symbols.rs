//! Kernel stack addresses → function names, from /proc/kallsyms.
//!
//! Parsed here rather than with `aya::util::kernel_symbols`, which fails the whole file on one
//! line it cannot read: a kernel or module with an odd symbol would cost every frame its name.

use std::collections::BTreeMap;

/// An `ADDR TYPE NAME[\t[MODULE]]` line as (address, name); None if it does not read so or
/// the address is 0 (hidden by kptr_restrict).
fn symbol(line: &str) -> Option<(u64, &str)> {
    let mut parts = line.splitn(3, ' ');
    let (addr, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
    let addr = u64::from_str_radix(addr, 16).ok()?;
    (addr != 0 && kind.len() == 1 && !name.is_empty()).then_some((addr, name))
}

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
        Self::parse(&std::fs::read_to_string("/proc/kallsyms").unwrap_or_default())
    }

    /// `ADDR TYPE NAME[\t[MODULE]]` lines; a line that does not read so is skipped, and
    /// address 0 (hidden by kptr_restrict) is dropped.
    pub fn parse(kallsyms: &str) -> Self {
        let mut by_addr = BTreeMap::new();
        let mut etext = None;
        for (addr, name) in kallsyms.lines().filter_map(symbol) {
            // _etext shares its address with other symbols; keep it apart.
            if name == "_etext" {
                etext = Some(addr);
            }
            by_addr.insert(addr, name.to_owned());
        }
        Self { by_addr, etext }
    }

    /// The core kernel's text, `_stext` to `_etext`, read from /proc/kallsyms only as far as
    /// `_etext` (about half of it); None where addresses are hidden.
    pub fn text_range() -> Option<(u64, u64)> {
        use std::io::BufRead;
        let f = std::fs::File::open("/proc/kallsyms").ok()?;
        let mut start = None;
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            match symbol(&line) {
                Some((a, "_stext")) => start = Some(a),
                Some((end, "_etext")) => return start.filter(|&s| s < end).map(|s| (s, end)),
                _ => {}
            }
        }
        None
    }

    #[cfg(test)]
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

    /// `function+0xoffset`, as the kernel prints a return address.
    pub fn name_offset(&self, ip: u64) -> String {
        match self.by_addr.range(..=ip).next_back() {
            Some((addr, _)) => format!("{}+{:#x}", self.name(ip), ip - addr),
            None => format!("{ip:#x}"),
        }
    }

    /// A stack as function names, outermost first, leaving out the BPF trampoline and program
    /// frames that fentry probes add, and the second copy of a traced function that its
    /// trampoline calls (`down_write;down_write`). `ftrace_trampoline` too: a trampoline
    /// page that ftrace allocated, or (seen on 6.1) a BPF trampoline with no kallsyms entry
    /// whose nearest symbol below is one; tracing machinery either way, not the call path.
    pub fn frames(&self, ips_leaf_first: &[u64]) -> Vec<String> {
        const MACHINERY: [&str; 3] = ["bpf_trampoline_", "bpf_prog_", "ftrace_trampoline"];
        let mut v: Vec<String> = ips_leaf_first
            .iter()
            .rev()
            .map(|ip| self.name(*ip))
            .filter(|f| !MACHINERY.iter().any(|m| f.starts_with(m)) && f != "[unknown]")
            .collect();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// On the running kernel, where addresses are visible (root, as the tests run).
    #[test]
    fn text_range_of_this_kernel() {
        let Some((start, end)) = KernelSymbols::text_range() else { return };
        let syms = KernelSymbols::load();
        assert!(start < end, "{start:#x}..{end:#x}");
        // Core kernel code lies inside; what rmapprof probes must, for its call sites to hash.
        let at = |f: &str| syms.by_addr.iter().find(|(_, n)| n.as_str() == f).map(|(a, _)| *a);
        let down_write = at("down_write").expect("down_write in kallsyms");
        assert!((start..end).contains(&down_write), "{down_write:#x} not in {start:#x}..{end:#x}");
    }

    #[test]
    fn parses_kallsyms_lines() {
        let s = KernelSymbols::parse(
            "ffffffff81000000 T _stext\nffffffff81001000 T down_write\nffffffff81002000 T _etext\n\
             ffffffffc0000000 t bpf_prog_1_x\t[bpf]\n0000000000000000 T hidden\nnonsense\nzz T bad\n",
        );
        assert_eq!(s.name(0xffffffff81001010), "down_write");
        assert_eq!(s.name(0xffffffffc0000004), "bpf_prog_1_x");
        assert_eq!(s.etext, Some(0xffffffff81002000));
        assert_eq!(s.by_addr.len(), 4);
    }

    proptest! {
        // Any text, any address: no panic, and a name only from a line that said it.
        #[test]
        fn kallsyms_garbage_never_panics(text in "\\PC{0,400}", ip: u64) {
            let s = KernelSymbols::parse(&text);
            let name = s.name(ip);
            prop_assert!(name.starts_with("0x") || name == "[unknown]" || text.contains(&name));
            let _ = s.frames(&[ip, ip.wrapping_add(1)]);
        }

        // Well-formed lines, shuffled with junk: every symbol is found at its address.
        #[test]
        fn kallsyms_keeps_every_good_line(
            syms in proptest::collection::btree_map(1u64.., "[a-z_][a-z0-9_.]{0,20}", 1..40),
            junk in proptest::collection::vec("[^\n]{0,30}", 0..10),
        ) {
            prop_assume!(!syms.values().any(|n| n == "_etext"));
            let mut lines: Vec<String> = syms.iter().map(|(a, n)| format!("{a:016x} t {n}")).collect();
            lines.extend(junk.iter().filter(|j| j.split(' ').nth(2).is_none()).cloned());
            let s = KernelSymbols::parse(&lines.join("\n"));
            for (a, n) in &syms {
                prop_assert_eq!(&s.name(*a), n);
            }
        }
    }

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
        assert_eq!(s.name_offset(0x102f), "down_write+0x2f");
        assert_eq!(s.name_offset(0x10), "0x10");
        let s = KernelSymbols::from_map(BTreeMap::from([
            (0x100, "entry_SYSCALL_64".to_owned()),
            (0x200, "down_write".to_owned()),
            (0x300, "bpf_trampoline_6442504491\t[bpf]".to_owned()),
            (0x380, "ftrace_trampoline\t[__builtin__ftrace]".to_owned()),
            (0x400, "_etext".to_owned()),
            (0x500, "__brk_limit".to_owned()),
        ]));
        assert_eq!(s.frames(&[0x381, 0x301, 0x201, 0x501, 0x201, 0x101]), ["entry_SYSCALL_64", "down_write"]);
        assert_eq!(s.name(0x501), "[unknown]");
    }
}
