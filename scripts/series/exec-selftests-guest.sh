#!/bin/sh
# Runs the kernel's own tools/testing/selftests/exec, built from the patched tree by
# `cargo xtask patches-check` into DIR (DIR/exec, DIR/kselftest as kselftest installs them),
# from a copy on a tmpfs of its own (not the 9p repository: execveat checks file-system
# behaviour). Each program: exit 0 pass, 4 skip (kselftest), else fail; its subtest totals
# and skip reasons go into the result line.
# usage: exec-selftests-guest.sh RESULTS LABEL DIR
set -u
results=$(realpath -m "$1") label=$2 dir=$(realpath -m "$3")
work=/tmp/selftests-exec.$$
mkdir -p $work
mount -t tmpfs -o size=512m tmpfs $work
cp -a "$dir/exec" "$dir/kselftest" $work/
cd $work/exec || exit 1
pass=0 skip=0 fail=0 passed= skipped= failed= sub_pass=0 sub_skip=0 sub_fail=0
for t in execveat non-regular load_address.0x1000 load_address.0x200000 load_address.0x1000000 \
	load_address.static.0x1000 load_address.static.0x200000 load_address.static.0x1000000 \
	recursion-depth null-argv check-exec binfmt_script.py check-exec-tests.sh; do
	if [ ! -e "$t" ]; then
		fail=$((fail + 1)) failed="$failed $t(not built)"
		continue
	fi
	./$t > ../$t.log 2>&1
	rc=$?
	echo "-- $t: exit $rc"
	grep -E "^(not ok|ok .*# SKIP|# Totals|# SKIP)" ../$t.log | head -20
	# kselftest totals, where the program prints them.
	tot=$(grep -E "^# Totals:" ../$t.log | tail -1)
	if [ -n "$tot" ]; then
		sub_pass=$((sub_pass + $(echo "$tot" | sed 's/.* pass:\([0-9]*\).*/\1/')))
		sub_fail=$((sub_fail + $(echo "$tot" | sed 's/.* fail:\([0-9]*\).*/\1/')))
		sub_skip=$((sub_skip + $(echo "$tot" | sed 's/.*skip:\([0-9]*\).*/\1/')))
	fi
	case $rc in
	0) pass=$((pass + 1)) passed="$passed $t" ;;
	4) skip=$((skip + 1)) skipped="$skipped $t($(grep -m1 -iE "skip" ../$t.log | cut -c1-80))" ;;
	*) fail=$((fail + 1)) failed="$failed $t(exit $rc: $(grep -m1 -E "^not ok" ../$t.log | cut -c1-80))" ;;
	esac
done
cd /
umount $work
rmdir $work
detail="$pass programs pass, $skip skip${skipped:+ [$skipped ]}, $fail fail${failed:+ [$failed ]}; subtests (kselftest totals) pass $sub_pass, skip $sub_skip, fail $sub_fail"
if [ $fail -eq 0 ]; then
	echo "PASS exec-selftests $label: $detail" >> "$results"
else
	echo "FAIL exec-selftests $label: $detail" >> "$results"
	exit 1
fi
