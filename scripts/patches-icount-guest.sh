#!/bin/sh
# Runs inside a 1-vCPU VM on QEMU's instruction-count clock for `cargo xtask patches-report`:
# each workload unprofiled, one job, five times; guest nanoseconds are instructions executed.
# usage: patches-icount-guest.sh OUTDIR CYCLES   (appends "WORKLOAD CYCLES NS" lines to icount.txt)
set -eu
out=$1 cycles=$2
bin=target/release
mkdir -p "$out"
: > "$out/icount.txt"
for w in spawn execl shellscript; do
	"$bin/$w" 5 -j 1 # warm the page cache and the dentries
	for run in 1 2 3 4 5; do
		t0=$(date +%s%N)
		"$bin/$w" "$cycles" -j 1
		t1=$(date +%s%N)
		echo "$w $cycles $((t1 - t0))" >> "$out/icount.txt"
	done
done
