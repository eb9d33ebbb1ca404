#!/bin/sh
# One run of fork-truncate-stress and its verdict: the same check on every kernel of `cargo
# xtask patches-check` (the lockdep + DEBUG_VM patched kernel must pass it, the test-only
# negative control must fail it). It fails when a child read a page truncation had removed
# (the stress test's STALE count, or any other failure of it), or when the kernel itself
# reported something while it ran: "BUG: Bad page cache ... still mapped when deleted" (a
# non-debug kernel deleting a page cache page a child still maps), "kernel BUG at"
# (DEBUG_VM's VM_BUG_ON_FOLIO(folio_mapped()) in filemap_unaccount_folio()), a bad page map or
# state, a WARNING, an Oops. The kernel log of the run is streamed to KMSG (between markers
# written to /dev/kmsg), with the console quiet: the stack dumps of such reports on the
# serial console would slow each truncation past the window the negative control has.
# Prints "PASS|FAIL fork-truncate-stress[ --sync] LABEL: detail" (and the stress test's own
# line before it); exit 0 pass, 1 fail.
# usage: fork-truncate-check.sh LABEL KMSG SECONDS [--sync]
set -u
label=$1 kmsg=$2 secs=$3 mode=${4:-}
printk=$(cut -f1 /proc/sys/kernel/printk)
echo 1 > /proc/sys/kernel/printk
mark="fork-truncate-check.$$"
dmesg -w > "$kmsg.all" &
logger=$!
echo "$mark start" > /dev/kmsg
o=$(target/release/fork-truncate-stress "$secs" $mode)
rc=$?
echo "$mark end" > /dev/kmsg
sleep 1
kill $logger
wait $logger 2>/dev/null
echo "$printk" > /proc/sys/kernel/printk
sed -n "/$mark start/,/$mark end/p" "$kmsg.all" > "$kmsg"
rm -f "$kmsg.all"
echo "$o"
stale=$(echo "$o" | sed -n 's/.* \([0-9]*\) STALE.*/\1/p')
bad=$(grep -c "BUG: Bad page cache" "$kmsg")
reports=$(grep -cE "BUG:|kernel BUG at|WARNING:|Oops|general protection|Bad page|bad pte|nonzero mapcount" "$kmsg")
first=$(grep -m1 -E "BUG:|kernel BUG at|WARNING:|Oops|general protection|Bad page|bad pte|nonzero mapcount" "$kmsg" | sed 's/^\[[ 0-9.]*\] //')
detail="${secs}s, $(uname -r), $(nproc) CPUs: ${o#fork-truncate-stress*: }; kernel log: $reports reports ($bad \"BUG: Bad page cache ... still mapped when deleted\")${first:+, first: $first}"
if [ $rc -eq 0 ] && [ "${stale:-0}" -eq 0 ] && [ "$reports" -eq 0 ]; then
	echo "PASS fork-truncate-stress${mode:+ $mode} $label: $detail"
else
	echo "FAIL fork-truncate-stress${mode:+ $mode} $label: exit $rc, $detail"
	exit 1
fi
