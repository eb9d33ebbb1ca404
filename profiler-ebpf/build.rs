// Rebuild the eBPF object when bpf-linker changes (as aya-template does).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    // Global BPF functions (callsite.rs), which the verifier checks once each.
    println!("cargo:rustc-link-arg=--export=rmapprof_above,rmapprof_parting");
}
