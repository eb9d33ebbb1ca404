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
uname -r > "$out/kernel.txt"
for w in $what; do
	case $w in
	spawn) exe=/usr/bin/true ;;
	execl) exe=$bin/execl ;;
	shellscript) exe=$(readlink -f /bin/sh) ;;
	*) continue ;;
	esac
	"$bin/rmapprof" --mode kprobe --acquisitions --inode libc.so.6 \
		--inode ld-linux-x86-64.so.2 --inode "$exe" \
		-o "$out/$w" -- "$bin/$w" "$cycles" -j "$jobs" > /dev/null
done
# map-library: a copy of libc.so.6 that nothing else maps, so that every acquisition of its
# i_mmap_rwsem is one of the COUNT mappings (docs/map-library.md).
case " $what " in *" map-library "*)
	lib=$(mktemp -d -p "$PWD/target")/libc-copy.so
	cp "$(readlink -f /lib/x86_64-linux-gnu/libc.so.6)" "$lib"
	for way in ldso bionic; do
		"$bin/map-library" layout "$way" "$lib" > "$out/map-library-$way.layout"
		"$bin/rmapprof" --mode kprobe --acquisitions --inode "$lib" --cycles "$cycles" \
			-o "$out/map-library-$way" -- "$bin/map-library" "$way" "$lib" "$cycles" -j "$jobs" > /dev/null
	done
	rm -r "$(dirname "$lib")"
	;;
esac
