#!/bin/sh
# Runs inside the test-only negative-control kernel (vm/negative-control.patch on top of the
# series: dup_mmap() copies page tables before linking the child VMAs into the rmap) for
# `cargo xtask patches-check`: fork-truncate-stress --sync must catch the bug, i.e. report
# stale data (exit 1, STALE > 0). The check passes when the stress test FAILS here. (Without
# --sync it does not: the next truncation zaps the stale page before the child reads it.)
# usage: negative-control-guest.sh RESULTS SECONDS
set -u
results=$1 secs=$2
# The kernel's "Bad page cache" reports (a stack dump each) on the serial console slow each
# truncation past the window, and its second unmap pass then zaps the child's stale entries
# (104 reports, 0 stale in 359 forks): keep them in the log only.
echo 1 > /proc/sys/kernel/printk
echo "== fork-truncate-stress ${secs}s --sync on the negative control $(uname -r)"
out=$(target/release/fork-truncate-stress "$secs" --sync)
rc=$?
echo "$out"
stale=$(echo "$out" | sed -n 's/.* \([0-9]*\) STALE.*/\1/p')
# The kernel sees it too: a truncated page cache page still mapped (by the child).
dmesg > target/patches-check/kmsg-negative.txt
bad=$(grep -c "Bad page cache" target/patches-check/kmsg-negative.txt)
out="$out; kernel log: $bad \"BUG: Bad page cache ... still mapped when deleted\""

if [ $rc -ne 0 ] && [ "${stale:-0}" -gt 0 ]; then
	echo "PASS negative-control: fork-truncate-stress --sync FAILS on the test-only kernel that copies page tables before linking (exit $rc): ${out#fork-truncate-stress*: }" >> "$results"
else
	echo "FAIL negative-control: fork-truncate-stress --sync did not catch the test-only ordering bug in ${secs}s (exit $rc): ${out#fork-truncate-stress*: }" >> "$results"
	exit 1
fi
