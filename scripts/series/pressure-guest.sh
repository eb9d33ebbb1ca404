#!/bin/sh
# Runs inside the lockdep + DEBUG_VM patched kernel with little memory (patches-check boots
# it with 512M) for `cargo xtask patches-check`: mem-hog takes memory until ~8 MiB is free, then reads a
# 1 GiB sparse file on the 9p root through 64 VMAs, forking as it goes, while
# fork-truncate-stress and spawn fork beside it: reclaim (fs_reclaim held: kswapd and direct
# reclaim) unmaps mapped file pages (that file's, libc's, ld.so's) through their rmap while
# fork write-locks the same files' i_mmap_rwsem. Passes when reclaim ran, lockdep recorded
# fs_reclaim -> i_mmap_rwsem (a direct dependency in /proc/lockdep, else a chain in
# /proc/lockdep_chains holding both in that order), reported nothing and is still on, the
# stress saw no stale data and the kernel log has no warning.
# usage: pressure-guest.sh RESULTS KMSG SECONDS
set -u
results=$1 kmsg=$2 secs=$3
# A boot with a kernel report before any user program ran is not used: patches-check boots
# again on exit 75 (scripts/series/boot-report.sh).
scripts/series/boot-report.sh "$results" && exit 75
dmesg -w > "$kmsg" &
logger=$!
vm() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
scan0=$(( $(vm pgscan_kswapd) + $(vm pgscan_direct) ))
stalls() { awk '$1 ~ /^allocstall_/ { n += $2 } END { print n + 0 }' /proc/vmstat; }
stall0=$(stalls)
echo "== memory pressure: $(awk '/MemTotal/ { print $2 / 1024 " MiB" }' /proc/meminfo) RAM, ${secs}s"
grep -E " / " /proc/mounts | head -1
file=target/patches-check/pressure.dat
rm -f $file
truncate -s 1G $file
target/release/mem-hog 4 $file &
hog=$!
sleep 5
target/release/fork-truncate-stress "$secs" > /tmp/pressure-stress.txt 2>&1 &
stress=$!
end=$(( $(date +%s) + secs ))
cycles=0
while [ "$(date +%s)" -lt $end ]; do
	target/release/spawn 20 -j 2 > /dev/null 2>&1
	cycles=$((cycles + 20))
done
wait $stress
stress_rc=$?
grep -E "^(Cached|Mapped|MemFree|MemAvailable):" /proc/meminfo | tr -s ' ' | tr '\n' ' '
echo
grep -E "^(pgscan|pgsteal|allocstall|workingset_refault_file|nr_mapped|nr_file_pages|pgmajfault|oom_kill)" /proc/vmstat | tr '\n' ' '
echo
kill $hog
wait $hog 2>/dev/null
rm -f $file
sleep 1
kill $logger
cat /tmp/pressure-stress.txt
scan=$(( $(vm pgscan_kswapd) + $(vm pgscan_direct) - scan0 ))
stall=$(( $(stalls) - stall0 ))
# Direct dependency: in fs_reclaim's block of /proc/lockdep, a "-> [...] ...i_mmap_rwsem" line.
direct=$(awk '
	/^$/ { inblk = 0; next }
	/^[0-9a-f]+ / { inblk = ($NF == "fs_reclaim"); next }
	inblk && /^ -> / && /i_mmap_rwsem/ { print $NF }' /proc/lockdep | sort -u | tr '\n' ' ' | sed 's/ $//')
reverse=$(awk '
	/^$/ { inblk = 0; next }
	/^[0-9a-f]+ / { inblk = ($NF ~ /i_mmap_rwsem/); next }
	inblk && /^ -> / && $NF == "fs_reclaim" { print "yes" }' /proc/lockdep | head -1)
# Chains where fs_reclaim is held, then i_mmap_rwsem (a trylock in the rmap walk still shows).
chains=$(awk '
	/^irq_context/ { fr = 0; next }
	/ fs_reclaim$/ { fr = 1; next }
	fr && /i_mmap_rwsem/ { n++; fr = 0 }
	END { print n + 0 }' /proc/lockdep_chains)
if [ -n "$direct" ]; then dep="direct dependency (to $direct)"; else dep="no direct dependency"; fi
lockdep=on
grep -q "debug_locks: *1" /proc/lockdep_stats || lockdep=OFF
warn=$(grep -E -f "$(dirname "$0")/kernel-reports.ere" "$kmsg" | head -3)
oom=$(grep -c "Out of memory" "$kmsg")
detail="${secs}s at $(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo), $scan pages scanned by reclaim ($stall direct-reclaim stalls), $cycles spawn cycles, $oom OOM kills; lockdep: fs_reclaim -> i_mmap_rwsem $dep, $chains lock chains holding fs_reclaim then i_mmap_rwsem, i_mmap_rwsem -> fs_reclaim ${reverse:-never}, lockdep $lockdep"
echo "$detail"
if [ "$stress_rc" -eq 0 ] && [ "$scan" -gt 0 ] && [ -z "$warn" ] && [ $lockdep = on ] &&
	{ [ -n "$direct" ] || [ "$chains" -gt 0 ]; }; then
	echo "PASS lockdep-under-pressure: $detail" >> "$results"
else
	[ -z "$warn" ] || detail="$detail; kernel log: $(echo "$warn" | head -1)"
	[ "$stress_rc" -eq 0 ] || detail="$detail; fork-truncate-stress failed: $(tail -1 /tmp/pressure-stress.txt)"
	echo "FAIL lockdep-under-pressure: $detail" >> "$results"
	exit 1
fi
