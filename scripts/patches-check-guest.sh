#!/bin/sh
# Runs inside the lockdep + DEBUG_VM kernel for `cargo xtask patches-check`: the fork/truncate
# stress test, the mm selftests that apply, then fails on any kernel warning.
# usage: patches-check-guest.sh SECONDS [SELFTEST...]
set -u
secs=$1
shift
fail=0
dmesg -C
echo "== fork-truncate-stress ${secs}s on $(uname -r), $(nproc) CPUs"
target/release/fork-truncate-stress "$secs" || fail=1
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
echo "== kernel log"
if dmesg | grep -E "WARNING:|BUG:|INFO: possible|circular locking|lockdep|Oops|general protection|rcu_sched self-detected|blocked for more than"; then
	echo "kernel warnings: FAIL"
	fail=1
else
	echo "no kernel warnings"
fi
exit $fail
