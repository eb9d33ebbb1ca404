#!/bin/sh
# Runs inside the VM for `cargo xtask patches-report`: every bundled workload under rmapprof,
# counting each write acquisition of i_mmap_rwsem by file and caller, for libc.so.6,
# ld-linux-x86-64.so.2 and the binary the workload executes.
# usage: patches-report-guest.sh OUTDIR CYCLES JOBS [MODE [WORKLOAD...]]   (fentry; all three)
set -eu
out=$1 cycles=$2 jobs=$3 mode=${4:-fentry}
shift 3
[ $# -gt 0 ] && shift
bin=$PWD/target/release
mkdir -p "$out"
for w in ${*:-spawn execl shellscript}; do
	case $w in
	spawn) exe=$(readlink -f /bin/true) ;;
	execl) exe=$bin/execl ;;
	shellscript) exe=$(readlink -f /bin/sh) ;;
	esac
	"$bin/rmapprof" --mode "$mode" --acquisitions --inode libc.so.6 --inode ld-linux-x86-64.so.2 \
		--inode "$exe" -o "$out/$w" -- "$bin/$w" "$cycles" -j "$jobs" > /dev/null
done
uname -r > "$out/kernel.txt"
