#!/bin/sh
# Runs inside the test-only negative-control kernel (vm/negative-control.patch on top of the
# series: dup_mmap() copies page tables before linking the child VMAs into the rmap) for
# `cargo xtask patches-check`: scripts/series/fork-truncate-check.sh, the check the debug kernel
# passes, must FAIL here: a child read a truncated page (the stress test's STALE count), or
# the kernel reported a truncated page cache page still mapped ("BUG: Bad page cache ...
# still mapped when deleted"). The check passes when that happens; the line says which of
# the two caught it. (Without --sync the stress test does not read the stale pages: the next
# truncation zaps them before the child reads them.)
# usage: negative-control-guest.sh RESULTS SECONDS
set -u
results=$1 secs=$2
echo "== fork-truncate-stress ${secs}s --sync on the negative control $(uname -r)"
line=$(scripts/series/fork-truncate-check.sh negative-control target/patches-check/kmsg-negative.txt "$secs" --sync)
rc=$?
echo "$line"
verdict=$(echo "$line" | tail -n 1)
stale=$(echo "$verdict" | sed -n 's/.* \([0-9]*\) STALE.*/\1/p')
bad=$(echo "$verdict" | sed -n 's/.*kernel log: \([0-9]*\) reports.*/\1/p')
if [ $rc -ne 0 ]; then
	by="$stale children reading a stale page, and the kernel's own reports ($bad)"
	[ "${stale:-0}" -gt 0 ] || by="the kernel's own reports ($bad); no child read a stale page"
	echo "PASS negative-control: the fork-truncate-stress check FAILS on the test-only kernel that copies page tables before linking, as it must, caught by $by: ${verdict#FAIL fork-truncate-stress --sync negative-control: }" >> "$results"
else
	echo "FAIL negative-control: the fork-truncate-stress check did not catch the test-only ordering bug: ${verdict#* negative-control: }" >> "$results"
	exit 1
fi
