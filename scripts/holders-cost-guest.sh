#!/bin/sh
# Runs inside the VM: what holder attribution adds to rmapprof's own BPF time (--bpf-stats),
# fentry mode, against BASE (an rmapprof built without it), alternating, PAIRS times: spawn
# (fork/exec/exit on libc.so.6) and the holders workload (one file, known holders).
# usage: holders-cost-guest.sh OUTDIR BASE [PAIRS]
set -eu
out=$1 base=$2 pairs=${3:-3}
bin=$PWD/target/release
mkdir -p "$out"
uname -r > "$out/kernel.txt"
dir=$(mktemp -d)
head -c 65536 /dev/zero > "$dir/holders.dat"
for i in $(seq "$pairs"); do
	for who in base new; do
		r=$bin/rmapprof
		[ "$who" = new ] || r=$base
		"$r" --mode fentry --bpf-stats -o "$out/$who-spawn-$i" -- "$bin/spawn" 200 -j 2 > /dev/null
		"$r" --mode fentry --bpf-stats -o "$out/$who-holders-$i" -- \
			"$bin/holders" "$dir/holders.dat" 300 -j 2 > /dev/null
	done
done
rm -r "$dir"
