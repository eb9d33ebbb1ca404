#!/bin/sh
# Runs inside the VM for `cargo xtask patches-check --only glibc`: spawn, execl and shellscript
# under rmapprof with each glibc build's loader and libc. RUNDIR holds a build's ld.so,
# libc.so.6 and copies of the workloads and the programs they exec, patchelf'd to GUEST_DIR (below),
# where each RUNDIR is copied in turn (the guest's tmpfs: a plain file system), so both builds'
# files have one path and `rmapprof diff` matches them. Counts every write acquisition of the
# i_mmap_rwsem of that libc.so.6 and ld.so, selected by full path (the system's are mapped too),
# by caller. OUTDIR/NAME/WORKLOAD/ each.
# usage: glibc-guest.sh OUTDIR CYCLES JOBS NAME=RUNDIR...
set -eu
out=$1 cycles=$2 jobs=$3
shift 3
bin=$PWD/target/release
run=/tmp/rmapprof-glibc
# "for named" expands the arguments once; "set --" below reuses $@ for each command.
for named; do
	name=${named%%=*}
	# A tmpfs of its own: a plain file system (virtme-ng's /tmp is an overlayfs, where a
	# library's mappings behave as in a container: the second table of the kernel letter).
	umount "$run" 2> /dev/null || true
	rm -rf "$run"
	mkdir -p "$run"
	mount -t tmpfs -o mode=0755 rmapprof-glibc "$run"
	cp -a "${named#*=}/." "$run/"
	mkdir -p "$out/$name"
	echo "$name: libc.so.6 on $(stat -f -c %T "$run/libc.so.6"), $(uname -r)" > "$out/$name.txt"
	for w in spawn execl shellscript; do
		# The workload runs with the build's loader and libc too (it is what forks).
		if [ $w = execl ]; then
			set -- "$run/execl" "$cycles" -j "$jobs"
		else
			set -- "$run/$w" "$cycles" -j "$jobs" --bin-dir "$run"
		fi
		"$bin/rmapprof" --mode kprobe --acquisitions --inode "$run/libc.so.6" \
			--inode "$run/ld-linux-x86-64.so.2" -o "$out/$name/$w" -- "$@" > /dev/null
	done
done
umount "$run"
rmdir "$run"
