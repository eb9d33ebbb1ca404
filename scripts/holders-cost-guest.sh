#!/bin/sh
# Runs inside the VM: what holder attribution adds to rmapprof's own BPF time (--bpf-stats),
# fentry mode, the same build with it off (RMAPPROF_NO_HOLDERS=1), on, on and timing itself
# (RMAPPROF_MEASURE_HOLDERS=1: its own clock reads around the holder work, stderr line kept
# as holder-cost.txt), and on with --holder-stacks, in turn, PAIRS times: spawn
# (fork/exec/exit on libc.so.6) and the holders workload (one file, known holders).
# scripts/holders-cost-summary.py makes the table.
# usage: holders-cost-guest.sh OUTDIR [PAIRS] [CYCLES]   (BIN: the binaries, default target/release)
set -eu
out=$1 pairs=${2:-3} cycles=${3:-300}
bin=${BIN:-$PWD/target/release}
mkdir -p "$out"
uname -r > "$out/kernel.txt"
dir=$(mktemp -d)
head -c 65536 /dev/zero > "$dir/holders.dat"
for i in $(seq "$pairs"); do
	for who in off on measured stacks; do
		unset RMAPPROF_NO_HOLDERS RMAPPROF_MEASURE_HOLDERS
		opt=
		case $who in
		off) export RMAPPROF_NO_HOLDERS=1 ;;
		measured) export RMAPPROF_MEASURE_HOLDERS=1 ;;
		stacks) opt=--holder-stacks ;;
		esac
		for w in spawn holders; do
			run=$out/$who-$w-$i
			if [ $w = spawn ]; then set -- "$bin/spawn" "$cycles" -j 2; else set -- "$bin/holders" "$dir/holders.dat" "$cycles" -j 2; fi
			"$bin/rmapprof" --mode fentry --bpf-stats $opt -o "$run" -- "$@" > /dev/null 2> "$run.err"
			grep 'holder attribution' "$run.err" > "$run/holder-cost.txt" || true
			rm "$run.err"
		done
	done
done
rm -r "$dir"
