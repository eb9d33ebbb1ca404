#!/bin/sh
# Runs inside the VM for `cargo xtask patches-report`: every bundled workload under rmapprof
# (counts, call paths, spin/sleep), then three times unprofiled for throughput.
# usage: patches-report-guest.sh OUTDIR CYCLES JOBS
set -eu
out=$1 cycles=$2 jobs=$3
bin=target/release
mkdir -p "$out"
: > "$out/throughput.txt"
for w in spawn execl shellscript; do
	"$bin/rmapprof" --mode fentry --acquisitions --inode libc.so.6 --inode ld-linux-x86-64.so.2 \
		-o "$out/$w" -- "$bin/$w" "$cycles" -j "$jobs" > /dev/null
	for run in 1 2 3; do
		t0=$(date +%s%N)
		"$bin/$w" "$cycles" -j "$jobs"
		t1=$(date +%s%N)
		echo "$w $cycles $((t1 - t0))" >> "$out/throughput.txt"
	done
done
uname -r > "$out/kernel.txt"
