#!/bin/sh
# Runs inside the debug patched kernel (lockdep, DEBUG_VM, the maple tree checked, page table
# check, KASAN) for `cargo xtask patches-check`: the fork/truncate stress test, the mm selftests
# (run_vmtests.sh's categories), the exec selftests, fault injection through dup_mmap()'s error
# paths, the MAP_FIXED/unmap checks (MM_CHECKS_DIR, built from scripts/series/mm-checks), then fails
# on any lockdep report or kernel warning. One
# "PASS|FAIL check: detail" line per check goes to RESULTS; the kernel log, streamed from
# boot, to target/patches-check/kmsg-debug.txt.
# usage: patches-check-guest.sh RESULTS SECONDS FAULT_ITERATIONS MM_CHECKS_DIR SELFTESTS_DIR
#        BUDGET TOTAL [VMTESTS_CATEGORY...]
set -u
results=$1 secs=$2 fault_iters=$3 mm_checks=$4 selftests=$5 vm_budget=$6 vm_total=$7
shift 7
out=target/patches-check
kmsg=$out/kmsg-debug.txt
# A boot with a kernel report before any user program ran is not used: patches-check boots
# again on exit 75 (scripts/series/boot-report.sh).
scripts/series/boot-report.sh "$results" && exit 75
# The kernel log is checked whole, boot included: fork and exec run there too.
dmesg -w > $kmsg &
logger=$!
fail=0
result() { # PASS|FAIL CHECK DETAIL (none: CHECK is the whole "check: detail")
	echo "$1 $2${3:+: $3}" >> "$results"
	[ "$1" = PASS ] || fail=1
}

# Truncating all the time, then only while the parent forks (--sync: what the negative
# control shows can catch the ordering bug); the same check the negative control fails.
for mode in "" --sync; do
	echo "== fork-truncate-stress ${secs}s $mode on $(uname -r), $(nproc) CPUs"
	line=$(scripts/series/fork-truncate-check.sh debug "$out/kmsg-stress${mode}.txt" "$secs" $mode)
	echo "$line"
	v=$(echo "$line" | tail -n 1)
	result "${v%% *}" "${v#* }" ""
done

# MAP_FIXED over part of a file VMA racing truncation: a file mapped directly (the
# repository's 9p mount) and one mapped through overlayfs (/tmp, as the guest's libraries).
for fs in 9p overlayfs; do
	[ $fs = 9p ] && dir=$PWD/target || dir=/tmp
	o=$(TMPDIR=$dir target/release/fixed-truncate-stress "$secs" -j 2)
	rc=$?
	echo "$o"
	[ $rc -eq 0 ] && r=PASS || r=FAIL
	result $r "fixed-truncate-stress $fs" "${secs}s: $(echo "$o" | tail -n 1)"
done

# run_vmtests.sh, category by category within their time budgets (scripts/series/vmtests-guest.sh),
# with a few huge pages of its own (it sets nr_hugepages) and userfaultfd.
echo "== mm selftests (run_vmtests.sh)"
scripts/series/vmtests-guest.sh "$results" "$selftests" "$vm_budget" "$vm_total" "$@" || fail=1

echo "== exec selftests"
scripts/series/exec-selftests-guest.sh "$results" patched-debug target/selftests-exec || fail=1

echo "== fault injection in dup_mmap, $fault_iters forks each"
scripts/series/fault-inject-guest.sh "$results" $out/kmsg-fault-inject "$fault_iters" || fail=1

# The reproducers of what took the in-place MAP_FIXED patch out of the series: a guard
# marker kept over a remapped page, a hugetlb mapping over a file range's PTE table. Last
# but for the log checks: an oops there panics this kernel (PANIC_ON_OOPS), and the lines
# above are in RESULTS already. hugetlb-fixed needs a free huge page; a check that skips
# did not run, which fails here.
echo "== mm-checks: MAP_FIXED and unmap paths"
hugepages=$(cat /proc/sys/vm/nr_hugepages)
echo 4 > /proc/sys/vm/nr_hugepages
for t in "$mm_checks"/*; do
	n=$(basename "$t")
	o=$("$t" /tmp)
	rc=$?
	echo "$o"
	case $rc in
	0) result PASS "mm-check $n" "${o#PASS $n: }" ;;
	4) result FAIL "mm-check $n" "skipped, so not run: ${o#SKIP $n: }" ;;
	*) result FAIL "mm-check $n" "exit $rc: ${o:-no output (killed? see $kmsg)}" ;;
	esac
done
echo "$hugepages" > /proc/sys/vm/nr_hugepages

echo "== lockdep"
sleep 1
# After a report lockdep turns itself off (debug_locks: 0): that is a failure too.
if grep -q "debug_locks: *1" /proc/lockdep_stats; then
	result PASS lockdep "still on after every check, nothing reported ($(grep -E "lock-classes:|dependency chains:" /proc/lockdep_stats | tr -s ' ' | tr '\n' ';'))"
else
	result FAIL lockdep "off: it reported something (see $kmsg), or the kernel lacks PROVE_LOCKING"
fi
kill $logger
echo "== kernel log"
if grep -E -f scripts/series/kernel-reports.ere $kmsg; then
	result FAIL kernel-log "warnings in $kmsg (above)"
else
	result PASS kernel-log "no warning, BUG or lockdep report from boot to the end ($(wc -l < $kmsg) lines)"
fi
exit $fail
