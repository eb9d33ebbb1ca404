#!/bin/bash
# Runs inside the debug kernel for `cargo xtask patches-check`: the mm selftests' own runner,
# run_vmtests.sh, one category at a time, each within BUDGET seconds, all within TOTAL. One
# result line per category goes to RESULTS: PASS when every test passed or skipped (each skip
# named with its reason, see vmtests-summary.sh), FAIL naming each test that failed, or, when
# its budget ran out, SKIP naming what passed and the test that was cut short (FAIL if any
# test had failed by then). A category not started because TOTAL was spent is listed
# as skipped for time, which does not fail; one the VM cannot run is listed with why.
# usage: vmtests-guest.sh RESULTS SELFTESTS_DIR BUDGET TOTAL CATEGORY...
set -u
results=$(realpath "$1") dir=$2 budget=$3 total=$4
shift 4
log=$(dirname "$results")/vmtests
mkdir -p "$log"
start=$(date +%s)
here=$(dirname "$(realpath "$0")")
result() { echo "$1 $2${3:+: $3}" >> "$results"; }

# What the VM cannot run, and why (not started, so not counted as passing).
result SKIP "vmtests not run" "vmalloc, hmm, page_frag, memory-failure (need modules; the VM kernel has none); ksm_numa, migration (one NUMA node); hugevm (needs 5-level paging and 128 TB of address space)"

# From a tmpfs copy: the tests make their files in the working directory, and the
# repository's 9p mount takes no shared writable file mapping (guard-regions' file variant
# fails its first mmap there).
work=/tmp/rmapprof-vmtests
mkdir -p "$work" && mount -t tmpfs rmapprof-vmtests "$work" && cp -a "$dir"/. "$work"/ &&
	cd "$work" || { result FAIL vmtests "could not copy $dir to a tmpfs"; exit 1; }
# charge_reserved_hugetlb.sh mounts hugetlbfs at /mnt/huge, and the guest's / is the
# host's, read-only: /mnt gets a tmpfs of its own.
mount -t tmpfs rmapprof-mnt /mnt || { result FAIL vmtests "could not mount a tmpfs on /mnt"; exit 1; }
# khugepaged's swap cases page out with MADV_PAGEOUT, which needs swap: 256 MiB on a loop
# device over a file of the tmpfs above (a swap file on tmpfs or 9p is refused).
truncate -s 256M "$work/.swap" && loop=$(losetup -f --show "$work/.swap") && mkswap -q "$loop" && swapon "$loop" ||
	{ result FAIL vmtests "could not set up swap on a loop device"; exit 1; }
late=
for c in "$@"; do
	left=$((total - ($(date +%s) - start)))
	if [ "$left" -le 30 ]; then
		late="$late $c"
		continue
	fi
	b=$((left < budget ? left : budget))
	echo "== run_vmtests.sh -t $c (budget ${b}s)"
	t0=$(date +%s)
	timeout -k 10 "$b" ./run_vmtests.sh -t "$c" > "$log/$c.txt" 2>&1
	rc=$?
	secs=$(($(date +%s) - t0))
	tail -n 5 "$log/$c.txt"
	summary=$(sh "$here/vmtests-summary.sh" "$log/$c.txt" "$c")
	if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && echo "$summary" | grep -q ", 0 failed$"; then
		# Out of time with nothing failed: what ran passed, the rest was skipped for time.
		cut=$(grep '^# running ' "$log/$c.txt" | tail -n 1 | sed 's/^# running //')
		result SKIP "vmtests $c" "out of time after ${secs}s (budget ${b}s): $summary before it; cut short in $cut, the rest not run"
	elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		result FAIL "vmtests $c" "out of time after ${secs}s (budget ${b}s), until then $summary"
	elif echo "$summary" | grep -q ", 0 failed$" && [ "$rc" -ne 1 ]; then
		result PASS "vmtests $c" "$summary in ${secs}s"
	else
		result FAIL "vmtests $c" "exit $rc: $summary in ${secs}s (log: target/patches-check/vmtests/$c.txt)"
	fi
done
[ -z "$late" ] || result SKIP "vmtests skipped for time" "${late# } (not started: the ${total}s for all categories was spent)"
grep -q "^FAIL vmtests" "$results" && exit 1
exit 0
