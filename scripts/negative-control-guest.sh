#!/bin/sh
# Runs inside the test-only negative-control kernel (vm/negative-control.patch on top of the
# series: dup_mmap() copies page tables before linking the child VMAs into the rmap) for
# `cargo xtask patches-check`: scripts/fork-truncate-check.sh, the check the debug kernel
# passes, must FAIL here, and fork-truncate-stress itself must have read stale data (a child
# read a truncated page: STALE > 0), not only the kernel have reported it. The check passes
# when that happens. (Without --sync the stress test does not catch it: the next truncation
# zaps the stale pages before the child reads them.)
# usage: negative-control-guest.sh RESULTS SECONDS
set -u
results=$1 secs=$2
echo "== fork-truncate-stress ${secs}s --sync on the negative control $(uname -r)"
line=$(scripts/fork-truncate-check.sh negative-control target/patches-check/kmsg-negative.txt "$secs" --sync)
rc=$?
echo "$line"
verdict=$(echo "$line" | tail -n 1)
stale=$(echo "$verdict" | sed -n 's/.* \([0-9]*\) STALE.*/\1/p')
if [ $rc -ne 0 ] && [ "${stale:-0}" -gt 0 ]; then
	echo "PASS negative-control: the fork-truncate-stress check FAILS on the test-only kernel that copies page tables before linking, as it must: ${verdict#FAIL fork-truncate-stress --sync negative-control: }" >> "$results"
else
	echo "FAIL negative-control: the fork-truncate-stress check did not catch the test-only ordering bug (no child read a stale page): ${verdict#* negative-control: }" >> "$results"
	exit 1
fi
