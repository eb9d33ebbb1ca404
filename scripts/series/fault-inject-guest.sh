#!/bin/sh
# Runs inside the lockdep + DEBUG_VM patched kernel for `cargo xtask patches-check`: fails
# allocations of a forking process (failslab, then fail_page_alloc; task-filter, the process
# marks itself in /proc/self/make-it-fail around each fork) with one file's 64 VMAs pending
# in dup_mmap()'s batch, and checks what workloads/src/bin/fork-fault-inject.rs checks, plus
# the kernel log of the phase. Every injected failure's stack goes to the kernel log
# (verbose 2, no rate limit), streamed to KMSG; counts come from there and from `times`.
# usage: fault-inject-guest.sh RESULTS KMSG ITERATIONS
set -u
results=$1 kmsg=$2 iters=$3
d=/sys/kernel/debug
mountpoint -q $d || mount -t debugfs none $d
fail=0
# Stack dumps by the thousand: keep them off the console, in the log only.
printk=$(cut -f1 /proc/sys/kernel/printk)
echo 1 > /proc/sys/kernel/printk
# A task killed by a signal says so in the log, registers and all.
echo 1 > /proc/sys/kernel/print-fatal-signals
for attr in failslab fail_page_alloc; do
	a=$d/$attr
	if [ ! -d $a ]; then
		echo "FAIL fault-injection $attr: no $a (kernel without CONFIG_FAULT_INJECTION_DEBUG_FS?)" >> "$results"
		fail=1
		continue
	fi
	# 1% of the forking task's slab allocations fail, 2% of its page allocations (fewer per
	# fork); sleeping (GFP_KERNEL) allocations and order 0 included, which the defaults skip.
	prob=1
	[ $attr = fail_page_alloc ] && prob=2
	echo 1 > $a/task-filter
	echo N > $a/ignore-gfp-wait
	if [ $attr = fail_page_alloc ]; then
		echo 0 > $a/min-order
		echo N > $a/ignore-gfp-highmem
	fi
	echo 1 > $a/interval
	echo 1000000 > $a/times
	echo 0 > $a/space
	echo 2 > $a/verbose
	echo 0 > $a/verbose_ratelimit_interval_ms
	echo 1000000000 > $a/verbose_ratelimit_burst
	dmesg -C
	log=$kmsg.$attr
	dmesg -w > "$log" &
	logger=$!
	echo $prob > $a/probability
	# No rseq: on the way back from a failed fork() the kernel would write the rseq area, a
	# page fork() left write-protected; with this task's allocations failing that write
	# faults, and rseq kills the task with SIGSEGV (the first fail_page_alloc run died so).
	out=$(GLIBC_TUNABLES=glibc.pthread.rseq=0 target/release/fork-fault-inject "$iters")
	rc=$?
	echo 0 > $a/probability
	sleep 2
	kill $logger
	wait $logger 2>/dev/null
	echo 0 > $a/verbose
	injected=$((1000000 - $(cat $a/times)))
	echo "$attr: $out"
	# One record per "FAULT_INJECTION: forcing a failure": where its stack went through.
	counts=$(awk '
		/FAULT_INJECTION: forcing a failure/ { if (n) tally(); n++; dm = cp = 0; next }
		/dup_mmap/ { dm = 1 }
		/copy_page_range/ { cp = 1 }
		function tally() { if (dm) d++; if (dm && cp) c++ }
		END { if (n) tally(); printf "%d %d %d", n, d, c }' "$log")
	set -- $counts
	logged=$1 in_dup=$2 in_copy=$3
	warn=$(grep -E -f "$(dirname "$0")/kernel-reports.ere" "$log" | head -3)
	lockdep=on
	grep -q "debug_locks: *1" /proc/lockdep_stats || lockdep=OFF
	detail="$iters forks, $injected failures injected ($logged stacks logged: $in_dup in dup_mmap, $in_copy of them in its copy_page_range); ${out#fork-fault-inject: }; lockdep $lockdep"
	if [ $rc -eq 0 ] && [ -z "$warn" ] && [ $lockdep = on ] && [ "$in_dup" -gt 0 ]; then
		echo "PASS fault-injection $attr: $detail" >> "$results"
	else
		[ "$in_dup" -gt 0 ] || detail="$detail; NO failure injected in dup_mmap"
		[ -z "$warn" ] || detail="$detail; kernel log: $(echo "$warn" | head -1)"
		echo "FAIL fault-injection $attr: $detail" >> "$results"
		fail=1
	fi
done
echo "$printk" > /proc/sys/kernel/printk
exit $fail
