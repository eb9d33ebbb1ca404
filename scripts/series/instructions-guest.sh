#!/bin/sh
# Runs inside a 1-vCPU guest on QEMU's instruction-count clock (`-icount shift=0,sleep=off`:
# the guest's clock, TSC included, advances 1 ns per instruction executed) for `cargo xtask
# patches-report`: the CPU time of spawn, execl and shellscript, so the instructions their
# tasks executed, kernel and user, per cycle. Time is read as a cgroup's cpu.stat usage_usec,
# the sum of its tasks' runtime (sum_exec_runtime): idle time, when the guest waits for the
# host (9p reads) and the clock jumps, is not any task's runtime and does not count, which
# timing a workload by the wall clock on this clock did (docs/development.md). Each workload
# runs from a tmpfs, once to warm the page cache, then REPEATS times with CYCLES cycles and
# REPEATS times with 0 (the harness alone: a shell moving itself into the cgroup, exec'ing the
# workload, its one worker), one worker (-j 1, nothing contended). Then two soundness checks:
# `sleep 0` and `sleep 2` the same way (idle must not count: the two must agree), and the
# clock source. Writes OUTDIR/usage.txt, one "WORKLOAD CYCLES USAGE_USEC" line per run.
# usage: instructions-guest.sh OUTDIR CYCLES REPEATS
set -eu
out=$1 cycles=$2 repeats=$3
rm -rf "$out"
mkdir -p "$out"
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup
cg=/sys/fs/cgroup/instructions.$$
mkdir $cg
work=/tmp/instructions.$$
mkdir -p $work
mount -t tmpfs -o size=64m tmpfs $work
for w in spawn execl shellscript; do cp "target/release/$w" $work/; done
usage() { awk '$1 == "usage_usec" { print $2 }' $cg/cpu.stat; }
# COMMAND...: its CPU time in the cgroup, in microseconds of the guest's clock.
run() {
	u0=$(usage)
	sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh $cg "$@" > /dev/null
	echo $(($(usage) - u0))
}
for w in spawn execl shellscript; do
	$work/$w "$cycles" -j 1 > /dev/null
	for r in $(seq "$repeats"); do
		echo "$w $cycles $(run $work/$w "$cycles" -j 1)" >> "$out/usage.txt"
		echo "$w 0 $(run $work/$w 0 -j 1)" >> "$out/usage.txt"
	done
done
for r in $(seq "$repeats"); do
	echo "sleep-0 0 $(run /bin/sleep 0)" >> "$out/usage.txt"
	echo "sleep-2 0 $(run /bin/sleep 2)" >> "$out/usage.txt"
done
cat "$out/usage.txt"
umount $work
rmdir $work $cg
{
	uname -r
	echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
	dmesg | grep -iE "tsc|sched_clock|clocksource" | sed 's/^\[[ 0-9.]*\] //'
} > "$out/clock.txt"
cat "$out/clock.txt"
