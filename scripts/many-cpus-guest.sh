#!/bin/sh
# Runs inside the VM for `cargo xtask many-cpus`: rmapprof in every mode on a guest with many
# vCPUs and pid_max at its largest (4194304), new pids starting past 4,190,000 so that they
# wrap during the run where the kernel has ns_last_pid (CONFIG_CHECKPOINT_RESTORE; guest.txt
# says when it has not), the bundled workloads at one job per vCPU, every file recorded (no
# --inode). Per mode and workload: OUTDIR/MODE/WORKLOAD/ (rmapprof's output) and
# OUTDIR/MODE/WORKLOAD.memlock (the most kernel memory its BPF maps held, by fdinfo's
# memlock, sampled five times a second), OUTDIR/MODE/idle.memlock (the same for a 20 s
# system-wide run), OUTDIR/MODE/WORKLOAD.pids (the largest pid seen).
# A run still going after RUN_SECONDS (default 900) is stopped (SIGTERM, then SIGKILL a minute
# later) and says so in guest.txt.
# usage: many-cpus-guest.sh OUTDIR CYCLES [MODES]
set -eu
out=$1 cycles=$2 modes=${3:-tracepoint kprobe fentry kprobe-acq fentry-acq}
limit=${RUN_SECONDS:-900}
bin=$PWD/target/release
mkdir -p "$out"
sysctl -q -w kernel.pid_max=4194304
cpus=$(nproc)
{
	echo "kernel: $(uname -r)"
	echo "cpus: $cpus online, $(cat /sys/devices/system/cpu/possible) possible"
	echo "pid_max: $(cat /proc/sys/kernel/pid_max)"
	echo "memory: $(awk '/MemTotal/ {print $2, $3}' /proc/meminfo)"
	[ -w /proc/sys/kernel/ns_last_pid ] ||
		echo "pids: no ns_last_pid (CONFIG_CHECKPOINT_RESTORE off): pids count up from where boot left them"
} > "$out/guest.txt"
churn=$(mktemp -d -p /tmp)
# mmap-churn maps the regular files of its directory: one of 64 KiB.
head -c 65536 /dev/zero > "$churn/file"

# Bytes of kernel memory the BPF maps of process $1 hold (fdinfo's memlock of each map fd):
# one grep and one awk, so that a sample is quick even under TCG.
memlock() {
	grep -sE '^(map_type|memlock):' /proc/"$1"/fdinfo/* | awk -F: '
		$2 == "map_type" { map[$1] = 1 }
		$2 == "memlock" { v[$1] = $3 + 0 }
		END { for (f in v) if (f in map) s += v[f]; print s + 0 }'
}

for mode in $modes; do
	m=${mode%-acq}
	acq=
	[ "$m" = "$mode" ] || acq=--acquisitions
	mkdir -p "$out/$mode"
	# What the maps hold once loaded and attached, system-wide and idle: OUTDIR/MODE/idle.memlock.
	# shellcheck disable=SC2086 # $acq is one option or none
	"$bin/rmapprof" --mode "$m" $acq --duration 20s -o "$out/$mode/idle" > /dev/null 2>&1 &
	rp=$!
	peak=0
	while kill -0 "$rp" 2> /dev/null; do
		b=$(memlock "$rp")
		[ "$b" -gt "$peak" ] && peak=$b
		sleep 1
	done
	wait "$rp" || true
	echo "$peak" > "$out/$mode/idle.memlock"
	echo "$mode idle: maps held $peak bytes" >> "$out/guest.txt"
	for w in spawn execl shellscript mmap-churn; do
		case $w in mmap-churn) set -- "$bin/$w" "$churn" "$cycles" -j "$cpus" ;; *) set -- "$bin/$w" "$cycles" -j "$cpus" ;; esac
		[ ! -w /proc/sys/kernel/ns_last_pid ] || echo 4190000 > /proc/sys/kernel/ns_last_pid
		# shellcheck disable=SC2086 # $acq is one option or none
		timeout -k 60 "$limit" "$bin/rmapprof" --mode "$m" $acq -o "$out/$mode/$w" -- "$@" > "$out/$mode/$w.txt" 2>&1 &
		rp=$!
		peak=0 pid=0
		while kill -0 "$rp" 2> /dev/null; do
			# $rp is timeout(1); rmapprof is its child.
			b=$(memlock "$(pgrep -P "$rp" | head -n 1)")
			[ "$b" -gt "$peak" ] && peak=$b
			last=$(ls /proc | grep -E '^[0-9]+$' | sort -n | tail -n 1)
			[ "$last" -gt "$pid" ] && pid=$last
			sleep 0.2
		done
		status=0
		wait "$rp" || status=$?
		echo "$peak" > "$out/$mode/$w.memlock"
		echo "$pid" > "$out/$mode/$w.pids"
		echo "$mode $w: rmapprof exited $status, maps held $peak bytes, pids up to $pid" >> "$out/guest.txt"
	done
done
rm -rf "$churn"
