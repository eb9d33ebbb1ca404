//! What `cargo xtask patches-check` builds on the host for the correctness evidence mm
//! reviewers asked for: the programs whose exec layout is compared between the base and
//! patched kernels (target/patches-check/elf), the kernel's exec selftests, the layout
//! comparison itself, and the test-only negative-control kernel.

use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    host::{cache_dir, root, sh},
    kernel,
};

/// Where patches-check writes what it builds for the guests and what they report.
pub fn out_dir() -> PathBuf {
    root().join("target/patches-check")
}

/// The exec-layout programs, from scripts/series/elf/*.c with the host's gcc: what
/// scripts/series/exec-layout-guest.sh runs on both kernels. 32-bit ones are raw-syscall
/// `-nostdlib` programs (no 32-bit libc needed, IA32 emulation runs them).
pub fn build_elf_programs() -> Result<PathBuf> {
    let dir = out_dir().join("elf");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let src = root().join("scripts/series/elf");
    let maps = src.join("maps.c");
    let raw = src.join("maps-raw.c");
    let raw_flags =
        ["-O2", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-asynchronous-unwind-tables"];
    let pie_no_interp = ["-fPIE", "-static-pie", "-Wl,--no-dynamic-linker"];
    let cc = |out: &str, source: &Path, flags: &[&str]| -> Result<()> {
        sh(Command::new("cc").args(flags).arg(source).arg("-o").arg(dir.join(out)))
    };
    cc("pie", &maps, &["-O2", "-fPIE", "-pie"])?;
    cc("nopie", &maps, &["-O2", "-fno-pie", "-no-pie"])?;
    cc("static", &maps, &["-O2", "-static"])?;
    cc("static-pie", &maps, &["-O2", "-fPIE", "-static-pie"])?;
    cc("align64k", &maps, &["-O2", "-fPIE", "-pie", "-Wl,-z,max-page-size=0x10000"])?;
    cc("align2m", &maps, &["-O2", "-fPIE", "-pie", "-Wl,-z,max-page-size=0x200000"])?;
    cc("m32-static", &raw, &with(&raw_flags, &["-m32", "-static", "-fno-pie", "-no-pie"]))?;
    cc("m32-pie", &raw, &with(&raw_flags, &["-m32", "-fPIE", "-static-pie", "-Wl,--no-dynamic-linker"]))?;
    cc("raw-pie", &raw, &with(&raw_flags, &pie_no_interp))?;
    // ET_DYN without interpreter, first PT_LOAD at 0x2000 (below mmap_min_addr): ld gives an
    // image base ET_EXEC; the code is position independent with no dynamic relocations, so
    // making it ET_DYN is all it takes. -8k: alignment 0x2000, exec's large-alignment path.
    cc("lowvaddr", &raw, &with(&raw_flags, &with(&pie_no_interp, &["-Wl,-Ttext-segment=0x2000"])))?;
    cc(
        "lowvaddr-8k",
        &raw,
        &with(
            &raw_flags,
            &with(&pie_no_interp, &["-Wl,-Ttext-segment=0x2000", "-Wl,-z,max-page-size=0x2000"]),
        ),
    )?;
    for p in ["lowvaddr", "lowvaddr-8k"] {
        edit_elf(&dir.join(p), |e| {
            e.set_type(ET_DYN);
            e.first_load_vaddr()
        })
        .and_then(|v| {
            if v == 0x2000 {
                Ok(())
            } else {
                bail!("{p}: first p_vaddr {v:#x}, not 0x2000")
            }
        })?;
    }
    // Malformed first PT_LOAD (p_filesz > p_memsz): a program without interpreter, and ld.so
    // as the interpreter of a PIE (found at its absolute path in the guest: the repo is there).
    std::fs::copy(dir.join("raw-pie"), dir.join("bad-filesz"))?;
    edit_elf(&dir.join("bad-filesz"), |e| e.shrink_first_load_memsz())?;
    std::fs::copy("/lib64/ld-linux-x86-64.so.2", dir.join("bad-ld.so"))?;
    edit_elf(&dir.join("bad-ld.so"), |e| e.shrink_first_load_memsz())?;
    let interp = format!("-Wl,--dynamic-linker={}", dir.join("bad-ld.so").display());
    cc("bad-interp", &maps, &["-O2", "-fPIE", "-pie", &interp])?;
    eprintln!("xtask: exec-layout programs in {}", dir.display());
    Ok(dir)
}

const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;

/// A 64-bit little-endian ELF file's bytes, edited in place.
struct Elf(Vec<u8>);

impl Elf {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.0[at..at + 2].try_into().unwrap())
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().unwrap())
    }
    fn put_u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn set_type(&mut self, t: u16) {
        self.0[16..18].copy_from_slice(&t.to_le_bytes());
    }
    /// Offset of the first PT_LOAD program header.
    fn first_load(&self) -> Result<usize> {
        let (phoff, phentsize, phnum) = (self.u64(0x20) as usize, self.u16(0x36) as usize, self.u16(0x38));
        (0..phnum as usize)
            .map(|i| phoff + i * phentsize)
            .find(|&h| u32::from_le_bytes(self.0[h..h + 4].try_into().unwrap()) == PT_LOAD)
            .context("no PT_LOAD")
    }
    fn first_load_vaddr(&mut self) -> Result<u64> {
        let h = self.first_load()?;
        Ok(self.u64(h + 16))
    }
    /// p_memsz of the first PT_LOAD below its p_filesz.
    fn shrink_first_load_memsz(&mut self) -> Result<()> {
        let h = self.first_load()?;
        let filesz = self.u64(h + 32);
        if filesz < 2 {
            bail!("first PT_LOAD has p_filesz {filesz}");
        }
        self.put_u64(h + 40, filesz / 2);
        Ok(())
    }
}

fn with<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    a.iter().chain(b).copied().collect()
}

fn edit_elf<T>(path: &Path, f: impl FnOnce(&mut Elf) -> Result<T>) -> Result<T> {
    let mut e = Elf(std::fs::read(path)?);
    if e.0.len() < 64 || &e.0[..4] != b"\x7fELF" || e.0[4] != 2 || e.0[5] != 1 {
        bail!("{}: not a 64-bit little-endian ELF file", path.display());
    }
    let r = f(&mut e).with_context(|| path.display().to_string())?;
    std::fs::write(path, &e.0)?;
    Ok(r)
}

/// The kernel's tools/testing/selftests/exec from the patched tree, against its UAPI
/// headers (`hdr`/usr/include), laid out as kselftest installs them: target/selftests-exec/
/// exec (programs, scripts, the Makefile execveat opens) and kselftest/ktap_helpers.sh.
pub fn build_exec_selftests(src: &Path, hdr: &Path) -> Result<PathBuf> {
    let top = root().join("target/selftests-exec");
    let _ = std::fs::remove_dir_all(&top);
    let out = top.join("exec");
    std::fs::create_dir_all(&out)?;
    std::fs::create_dir_all(top.join("kselftest"))?;
    let st = src.join("tools/testing/selftests");
    sh(Command::new("make")
        .arg("-C")
        .arg(st.join("exec"))
        .arg(format!("OUTPUT={}", out.display()))
        .arg(format!("KHDR_INCLUDES=-isystem {}/usr/include", hdr.display()))
        .stdout(std::process::Stdio::null()))?;
    for f in ["binfmt_script.py", "check-exec-tests.sh", "Makefile"] {
        std::fs::copy(st.join("exec").join(f), out.join(f))?;
    }
    std::fs::copy(st.join("kselftest/ktap_helpers.sh"), top.join("kselftest/ktap_helpers.sh"))?;
    eprintln!("xtask: exec selftests built in {}", out.display());
    Ok(top)
}

/// Compares what scripts/series/exec-layout-guest.sh wrote on the two kernels: every file byte for
/// byte, then the expected outcomes. One result line per check.
pub fn compare_layouts(base: &Path, patched: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let read_dir = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let (b, p) = (read_dir(base), read_dir(patched));
    let results = |d: &Path| std::fs::read_to_string(d.join("exec-results.txt")).unwrap_or_default();
    let (rb, rp) = (results(base), results(patched));
    if b.is_empty() || rp.is_empty() {
        lines.push(format!(
            "FAIL exec-layout: nothing to compare ({} files from base, {} from patched)",
            b.len(),
            p.len()
        ));
        return lines;
    }
    let mut differ = Vec::new();
    for f in b.iter().chain(p.iter().filter(|f| !b.contains(f))) {
        let (x, y) = (std::fs::read(base.join(f)).ok(), std::fs::read(patched.join(f)).ok());
        if x != y {
            differ.push(f.clone());
            eprintln!("xtask: exec-layout: {f} differs between base and patched:");
            let _ = Command::new("diff").arg("-u").arg(base.join(f)).arg(patched.join(f)).status();
        }
    }
    let maps: Vec<&String> = b.iter().filter(|f| f.ends_with(".maps")).collect();
    if differ.is_empty() {
        lines.push(format!(
            "PASS exec-layout: /proc/PID/maps byte-identical on base and patched, ASLR off, for {} runs ({})",
            maps.len(),
            maps.iter().map(|f| f.trim_end_matches(".maps")).collect::<Vec<_>>().join(" ")
        ));
    } else {
        lines.push(format!("FAIL exec-layout: base and patched differ in {}", differ.join(" ")));
    }
    // Expected outcomes, on the patched kernel (the base one is the same if nothing differs).
    let status = |name: &str| -> Option<&str> {
        rp.lines().find(|l| l.split_whitespace().next() == Some(name)).map(|l| l.trim())
    };
    let ret_of = |line: &str| -> Vec<i64> {
        // bprm_execve() returns an int: -22, or 4294967274 from a probe that read it unsigned.
        line.split("ret=")
            .skip(1)
            .filter_map(|r| r.split_whitespace().next()?.parse::<i64>().ok())
            .map(|v| if v > i64::from(i32::MAX) { i64::from(v as u32 as i32) } else { v })
            .collect()
    };
    let mut bad = Vec::new();
    for p in [
        "pie",
        "nopie",
        "static",
        "static-pie",
        "align64k",
        "align2m",
        "m32-static",
        "m32-pie",
        "raw-pie",
        "lowvaddr",
        "lowvaddr-8k",
        "ldso",
    ] {
        match status(p) {
            Some(l) if l.contains("exit=0 ") => {}
            other => bad.push(format!("{p}: {}", other.unwrap_or("not run"))),
        }
    }
    if bad.is_empty() {
        lines.push("PASS exec-layout programs: all 12 ran (exit 0) on both kernels".into());
    } else {
        lines.push(format!("FAIL exec-layout programs: {}", bad.join("; ")));
    }
    let nobody: Vec<&str> =
        ["lowvaddr-nobody", "lowvaddr-8k-nobody"].iter().filter_map(|n| status(n)).collect();
    if nobody.len() == 2 && nobody.iter().all(|l| l.contains("exit=0 ")) {
        lines.push(
            "PASS exec-low-vaddr: ET_DYN without interpreter, first p_vaddr 0x2000 < mmap_min_addr 65536, \
             execs as nobody (4K and 8K alignment), placed as on base"
                .into(),
        );
    } else {
        lines.push(format!("FAIL exec-low-vaddr: {nobody:?}"));
    }
    // The program's error is -EINVAL; the interpreter's is whatever base gives (-ENOMEM, says
    // patch 2), as long as it is an error and the same.
    for (name, errno, what) in
        [("bad-filesz", Some(-22i64), "program"), ("bad-interp", None, "interpreter (ld.so) of a PIE")]
    {
        let (lb, lp) = (
            rb.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or("").trim(),
            status(name).unwrap_or(""),
        );
        let (eb, ep) = (ret_of(lb).last().copied(), ret_of(lp).last().copied());
        let expected = errno.map_or(eb.is_some_and(|e| e < 0), |e| ep == Some(e));
        if eb == ep && expected && lb == lp {
            lines.push(format!(
                "PASS exec-bad-filesz {what}: first PT_LOAD p_filesz > p_memsz fails exec with {} as on base ({})",
                ep.unwrap_or(0),
                lp.split_once(' ').map(|x| x.1).unwrap_or("")
            ));
        } else {
            lines.push(format!(
                "FAIL exec-bad-filesz {what}: expected {} on both; base: {lb:?}, patched: {lp:?}",
                errno.map_or("the same error".to_owned(), |e| e.to_string())
            ));
        }
    }
    lines
}

/// Name of the test-only kernel: vm/negative-control.patch on top of the series.
const NEG: &str = "negative-control";

/// Builds the test-only negative-control kernel: vm/negative-control.patch applied on top of
/// the series in `<cache>/src/linux-7.2-negative-control` (a hard-linked copy of the patched
/// tree), built in `<cache>/build-7.2-negative-control`, a `cp -a` of the patched (non-debug)
/// build, incrementally. Kbuild records the source tree's absolute path in every command, so
/// make runs in a private mount namespace where the copy is bind-mounted over the patched
/// tree's path: only mm/mmap.c is compiled again, and the shared trees are not touched. Both
/// are redone when the series or the patch changes.
pub fn negative_control_kernel() -> Result<PathBuf> {
    let kernel = kernel::OURS;
    let patched_build = kernel::build_dir(kernel, true, false);
    kernel::build_kernel(kernel, true, false)?;
    let patched_src = kernel::source(kernel, true)?;
    let diff = root().join("vm/negative-control.patch");
    let stamp = format!(
        "{}+{:x}+{}",
        std::fs::read_to_string(patched_src.join(".rmapprof-patches")).unwrap_or_default().trim(),
        fnv(&std::fs::read(&diff)?),
        std::fs::read_to_string(patched_build.join(".rmapprof-config")).unwrap_or_default().trim()
    );
    let cache = cache_dir();
    let src = cache.join(format!("src/linux-{kernel}-{NEG}"));
    let out = cache.join(format!("build-{kernel}-{NEG}"));
    if std::fs::read_to_string(src.join(".rmapprof-negative")).ok().as_deref() != Some(&stamp) {
        eprintln!("xtask: negative control: {} + vm/negative-control.patch", patched_src.display());
        if src.exists() {
            std::fs::remove_dir_all(&src)?;
        }
        sh(Command::new("cp").arg("-al").arg(&patched_src).arg(&src))?;
        sh(Command::new("patch")
            .args(["-p1", "--quiet", "--no-backup-if-mismatch", "-d"])
            .arg(&src)
            .arg("-i")
            .arg(&diff))
        .context("vm/negative-control.patch does not apply on top of the series")?;
        std::fs::write(src.join(".rmapprof-negative"), &stamp)?;
    }
    if std::fs::read_to_string(out.join(".rmapprof-negative")).ok().as_deref() != Some(&stamp) {
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        eprintln!("xtask: negative control: copying {} (cp -a)", patched_build.display());
        sh(Command::new("cp").arg("-a").arg(&patched_build).arg(&out))?;
    }
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let script = format!(
        "mount --make-rprivate / && mount --bind {src} {tree} && exec make -s -C {tree} O={out} -j{jobs} bzImage",
        src = src.display(),
        tree = patched_src.display(),
        out = out.display()
    );
    let t = std::time::Instant::now();
    eprintln!("xtask: building the test-only negative-control kernel in {} (incremental)", out.display());
    sh(Command::new("unshare").args(["-m", "sh", "-c", &script]))?;
    std::fs::write(out.join(".rmapprof-negative"), &stamp)?;
    eprintln!("xtask: negative-control kernel built in {} s", t.elapsed().as_secs());
    let image = out.join("arch/x86/boot/bzImage");
    if !image.exists() {
        bail!("negative-control build produced no {}", image.display());
    }
    Ok(image)
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest output of the real run of 2026-12-02 (exec-results.txt), maps files alike.
    fn layout(dir: &Path, results: &str, maps: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("exec-results.txt"), results).unwrap();
        for p in ["pie", "lowvaddr"] {
            std::fs::write(dir.join(format!("{p}.maps")), maps).unwrap();
        }
    }

    const RESULTS: &str = "pie exit=0 bprm_execve:ret=0 \nnopie exit=0 bprm_execve:ret=0 \n\
        static exit=0 bprm_execve:ret=0 \nstatic-pie exit=0 bprm_execve:ret=0 \n\
        align64k exit=0 bprm_execve:ret=0 \nalign2m exit=0 bprm_execve:ret=0 \n\
        m32-static exit=0 bprm_execve:ret=0 \nm32-pie exit=0 bprm_execve:ret=0 \n\
        raw-pie exit=0 bprm_execve:ret=0 \nlowvaddr exit=0 bprm_execve:ret=0 \n\
        lowvaddr-8k exit=0 bprm_execve:ret=0 \nldso exit=0 bprm_execve:ret=0 \n\
        lowvaddr-nobody exit=0 bprm_execve:ret=0 ret=0 \nlowvaddr-8k-nobody exit=0 bprm_execve:ret=0 ret=0 \n\
        bad-filesz exit=139 bprm_execve:ret=4294967274 \nbad-interp exit=139 bprm_execve:ret=-12 \n";

    #[test]
    fn identical_layouts_pass_and_errors_are_read_signed() {
        let d = std::env::temp_dir().join(format!("rmapprof-layout-test-{}", std::process::id()));
        layout(&d.join("base"), RESULTS, "555555554000-555555555000 r--p\n");
        layout(&d.join("patched"), RESULTS, "555555554000-555555555000 r--p\n");
        let lines = compare_layouts(&d.join("base"), &d.join("patched"));
        assert!(lines.iter().all(|l| l.starts_with("PASS")), "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("with -22 as on base")), "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("with -12 as on base")), "{lines:#?}");
        // One byte of one map differs: that fails, naming the file.
        layout(&d.join("patched"), RESULTS, "555555555000-555555556000 r--p\n");
        let lines = compare_layouts(&d.join("base"), &d.join("patched"));
        assert!(lines.iter().any(|l| l.starts_with("FAIL exec-layout: base and patched differ in lowvaddr.maps pie.maps")), "{lines:#?}");
        // A different error than base's fails.
        layout(
            &d.join("patched"),
            &RESULTS.replace("ret=-12", "ret=-22"),
            "555555554000-555555555000 r--p\n",
        );
        let lines = compare_layouts(&d.join("base"), &d.join("patched"));
        assert!(lines.iter().any(|l| l.starts_with("FAIL exec-bad-filesz interpreter")), "{lines:#?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
