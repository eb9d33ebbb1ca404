//! profiler-common's names are the contract between the two sides: checked here against the
//! eBPF object userspace embeds.

use super::EBPF_OBJECT;
use profiler_common::names::{
    global, map, Family, ACQUISITION_PROBES, RELEASE_TRACEPOINT, TRACEPOINTS, WAIT_PROBES,
};

/// profiler-common's names are the contract between the two sides: every map, global and
/// program userspace names is in the eBPF object it embeds, each program in the section of
/// its kind (which is what the kernel attaches it as).
#[test]
fn the_embedded_object_has_every_name_userspace_uses() {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    let elf = object::File::parse(EBPF_OBJECT).expect("the embedded eBPF object is ELF");
    let section_of = |name: &str| -> Option<String> {
        let index = elf.symbol_by_name(name)?.section_index()?;
        Some(elf.section_by_index(index).ok()?.name().ok()?.to_owned())
    };
    let maps = [map::LOST, map::UNWIND, map::NOT_MEASURED].into_iter().chain(map::AGGREGATION);
    for name in maps.chain(map::READS.map(|(n, _)| n)) {
        assert_eq!(section_of(name).as_deref(), Some("maps"), "map {name}");
    }
    // And no map is missing from the table of how each is read.
    let in_object: std::collections::BTreeSet<&str> = elf
        .symbols()
        .filter(|s| {
            s.section_index()
                .and_then(|i| elf.section_by_index(i).ok())
                .is_some_and(|sec| sec.name() == Ok("maps"))
        })
        .filter_map(|s| s.name().ok())
        .collect();
    let in_table: std::collections::BTreeSet<&str> = map::READS.iter().map(|(n, _)| *n).collect();
    assert_eq!(in_object, in_table, "names::map::READS must list every map of the eBPF object");
    // One global of each struct, of the struct's size: `override_global` writes it whole.
    for (name, size) in [
        (global::CONFIG, std::mem::size_of::<profiler_common::Config>()),
        (global::OFFSETS, std::mem::size_of::<profiler_common::Offsets>()),
    ] {
        assert_eq!(section_of(name).as_deref(), Some(".rodata"), "global {name}");
        assert_eq!(elf.symbol_by_name(name).map(|s| s.size() as usize), Some(size), "global {name}");
    }
    // And no other: a switch or offset is a field of one of them.
    let rodata: Vec<&str> = elf
        .symbols()
        .filter(|s| {
            s.is_global()
                && s.section_index()
                    .and_then(|i| elf.section_by_index(i).ok())
                    .is_some_and(|sec| sec.name() == Ok(".rodata"))
        })
        .filter_map(|s| s.name().ok())
        .collect();
    assert_eq!(
        rodata,
        [global::CONFIG, global::OFFSETS].iter().copied().filter(|n| rodata.contains(n)).collect::<Vec<_>>(),
        "{rodata:?}"
    );
    for tp in TRACEPOINTS.into_iter().chain([RELEASE_TRACEPOINT]) {
        assert_eq!(section_of(tp.program).as_deref(), Some("tracepoint"), "{}", tp.program);
    }
    assert_eq!(section_of(map::RELEASES).as_deref(), Some("maps"));
    assert_eq!(section_of(map::HOLDER_COST).as_deref(), Some("maps"));
    assert_eq!(section_of(map::HOLDER_SLOTS).as_deref(), Some("maps"));
    for probe in WAIT_PROBES.iter().chain(ACQUISITION_PROBES) {
        for family in [Family::Kprobe, Family::Fentry] {
            let (program, kind) = (probe.program(family), probe.kind(family));
            assert_eq!(section_of(program).as_deref(), Some(kind), "{program} on {}", probe.function);
        }
    }
}
