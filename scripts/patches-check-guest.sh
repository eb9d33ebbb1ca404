#!/bin/sh
# Runs inside the lockdep + DEBUG_VM kernel for `cargo xtask patches-check`: the fork/truncate
# and MAP_FIXED/truncate stress tests, the mm selftests that apply, then fails on any kernel warning.
# usage: patches-check-guest.sh SECONDS [SELFTEST...]
set -u
secs=$1
shift
fail=0
# The kernel log is checked whole, boot included: fork and exec run there too.
echo "== fork-truncate-stress ${secs}s on $(uname -r), $(nproc) CPUs"
target/release/fork-truncate-stress "$secs" || fail=1
# Patch 3 maps MAP_FIXED over part of a file VMA in place: a file mapped directly (the
# repository's 9p mount) and one mapped through overlayfs (/tmp, as the guest's libraries).
echo "== fixed-truncate-stress ${secs}s, 9p"
TMPDIR=$PWD/target target/release/fixed-truncate-stress "$secs" -j 2 || fail=1
echo "== fixed-truncate-stress ${secs}s, overlayfs"
TMPDIR=/tmp target/release/fixed-truncate-stress "$secs" -j 2 || fail=1
for t in "$@"; do
	echo "== selftest $(basename "$t")"
	"$t" > /tmp/selftest.log 2>&1
	rc=$?
	tail -n 3 /tmp/selftest.log
	# kselftest: 0 pass, 4 skip
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 4 ]; then
		echo "selftest $(basename "$t") failed (exit $rc)"
		fail=1
	fi
done
echo "== lockdep"
# After a report lockdep turns itself off (debug_locks: 0): that is a failure too.
if grep -q "debug_locks: *1" /proc/lockdep_stats; then
	echo "lockdep active, $(grep -E "lock-classes:" /proc/lockdep_stats | tr -s ' ')"
else
	echo "lockdep is off (it reported something, or the kernel lacks PROVE_LOCKING)"
	fail=1
fi
echo "== kernel log"
if dmesg | grep -E "WARNING:|BUG:|INFO: possible|circular locking|recursive locking|inconsistent lock state|suspicious RCU|Oops|general protection|self-detected stall|blocked for more than"; then
	echo "kernel warnings: FAIL"
	fail=1
else
	echo "no kernel warnings"
fi
exit $fail
