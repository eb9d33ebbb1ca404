#!/bin/sh
# Runs inside the VM: what holder attribution adds to rmapprof's own BPF time (--bpf-stats),
# fentry mode, the same build with it on and off (RMAPPROF_NO_HOLDERS=1), alternating, PAIRS
# times: spawn (fork/exec/exit on libc.so.6) and the holders workload (one file, known holders).
# usage: holders-cost-guest.sh OUTDIR [PAIRS]
set -eu
out=$1 pairs=${2:-3}
bin=$PWD/target/release
mkdir -p "$out"
uname -r > "$out/kernel.txt"
dir=$(mktemp -d)
head -c 65536 /dev/zero > "$dir/holders.dat"
for i in $(seq "$pairs"); do
	for who in off on; do
		if [ "$who" = off ]; then export RMAPPROF_NO_HOLDERS=1; else unset RMAPPROF_NO_HOLDERS; fi
		"$bin/rmapprof" --mode fentry --bpf-stats -o "$out/$who-spawn-$i" -- "$bin/spawn" 200 -j 2 > /dev/null
		"$bin/rmapprof" --mode fentry --bpf-stats -o "$out/$who-holders-$i" -- \
			"$bin/holders" "$dir/holders.dat" 300 -j 2 > /dev/null
	done
done
rm -r "$dir"
