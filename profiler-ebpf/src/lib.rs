// Empty library target: lets profiler/ take a build-dependency on this crate so cargo
// rebuilds the eBPF object when it changes (aya-template does the same).
#![no_std]
