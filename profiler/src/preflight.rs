//! Checks made before anything is loaded, each failing with one line that says what to do.

use anyhow::{bail, Result};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability mask from /proc/self/status (`CapEff:` hex).
pub fn effective_caps(status: &str) -> Option<u64> {
    status.lines().find_map(|l| u64::from_str_radix(l.strip_prefix("CapEff:")?.trim(), 16).ok())
}

/// Loading tracing programs needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN on older kernels).
pub fn check_caps() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = effective_caps(&status).unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        bail!("needs root: loading eBPF tracing programs takes CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run it with sudo");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capeff() {
        assert_eq!(effective_caps("Name:\tx\nCapEff:\t000001ffffffffff\n"), Some(0x1ffffffffff));
        assert_eq!(effective_caps("CapEff:\t0000000000000000"), Some(0));
        assert_eq!(effective_caps("CapEff: zz"), None);
        assert_eq!(effective_caps(""), None);
    }

    proptest::proptest! {
        #[test]
        fn capeff_garbage_never_panics(text in "\\PC{0,200}") {
            let _ = effective_caps(&text);
        }

        #[test]
        fn capeff_found_among_other_lines(caps: u64, before in "[A-Za-z]{1,8}:\t[0-9a-z ]{0,10}") {
            let status = format!("{before}\nCapInh:\t0000000000000000\nCapEff:\t{caps:016x}\nCapBnd:\t1\n");
            proptest::prop_assert_eq!(effective_caps(&status), Some(caps));
        }
    }
}
