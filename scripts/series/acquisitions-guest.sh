#!/bin/sh
# Runs inside the VM: write acquisitions of i_mmap_rwsem per cycle, per file and per caller
# (rmapprof kprobe mode, exact on 7.2), for spawn, execl and shellscript, for libc.so.6,
# ld-linux-x86-64.so.2 and the binary each workload executes; then map-library, both ways.
# usage: acquisitions-guest.sh OUTDIR [CYCLES [JOBS [WHAT]]]
# WHAT: the runs to do, of "spawn execl shellscript map-library" (default: all).
set -eu
out=$1 cycles=${2:-100} jobs=${3:-2} what=${4:-spawn execl shellscript map-library}
bin=$PWD/target/release
mkdir -p "$out"
workloads=$(for w in $what; do case $w in spawn | execl | shellscript) echo "$w" ;; esac; done)
[ -z "$workloads" ] || "$(dirname "$0")/patches-report-guest.sh" "$out" "$cycles" "$jobs" kprobe $workloads
uname -r > "$out/kernel.txt"
# map-library: copies of libc.so.6 that nothing else maps, so that every acquisition of their
# i_mmap_rwsem is one of the COUNT mappings (docs/map-library.md): one on the repository's 9p
# mount, mapped directly as a library on ext4 or xfs is; one under /tmp, which virtme-ng
# makes an overlayfs (over tmpfs) as it does /usr/lib, so mapped through overlayfs' ->mmap()
# as the guest's own libraries are.
case " $what " in *" map-library "*)
	for where in "$PWD/target" /tmp; do
		dir=$(mktemp -d -p "$where")
		lib=$dir/libc-copy.so
		cp "$(readlink -f /lib/x86_64-linux-gnu/libc.so.6)" "$lib"
		case $where in /tmp) name=map-library-overlay ;; *) name=map-library ;; esac
		for way in ldso bionic; do
			"$bin/map-library" layout "$way" "$lib" > "$out/$name-$way.layout"
			"$bin/rmapprof" --mode kprobe --acquisitions --inode "$lib" --cycles "$cycles" \
				-o "$out/$name-$way" -- "$bin/map-library" "$way" "$lib" "$cycles" -j "$jobs" > /dev/null
		done
		rm -r "$dir"
	done
	;;
esac
