#!/bin/sh
# Runs inside the VM for `cargo xtask patches-report`: every bundled workload under rmapprof,
# counting each write acquisition of i_mmap_rwsem by file and caller, for libc.so.6,
# ld-linux-x86-64.so.2 and the binary the workload executes; twice: with those files on a
# tmpfs (a plain file system: ld.so's read-only segment merges back into its reservation
# there) and where the guest has them (overlayfs over the host's 9p root, as in a container).
# OUTDIR/tmpfs/WORKLOAD/ and OUTDIR/system/WORKLOAD/, each with fs.txt: the file system
# `stat -f` saw for libc.
# usage: patches-report-guest.sh OUTDIR CYCLES JOBS [MODE [WORKLOAD...]]   (fentry; all three)
set -eu
out=$1 cycles=$2 jobs=$3 mode=${4:-fentry}
shift 3
[ $# -gt 0 ] && shift
bin=$PWD/target/release
libc=$(readlink -f /lib/x86_64-linux-gnu/libc.so.6)
ldso=$(readlink -f /lib64/ld-linux-x86-64.so.2)

# Each of FILE... replaced, in this mount namespace only, by a copy of it on a tmpfs, which
# `--inode` selects by its path there, $plain/NAME: the original, which processes outside
# the namespace still map, has the same path in the report and is left out.
plain=
on_tmpfs() {
	# One path for every kernel's run, so that `rmapprof diff` matches the files by path.
	plain=/tmp/rmapprof-plain-files
	mkdir -p "$plain"
	mount -t tmpfs rmapprof-plain "$plain"
	for f; do
		cp "$f" "$plain/"
		mount --bind "$plain/$(basename "$f")" "$f"
	done
}

run_all() { # FS
	fs=$1
	mkdir -p "$out/$fs"
	echo "libc.so.6 on $(stat -f -c %T "$libc"), $(uname -r)" > "$out/$fs/fs.txt"
	for w in ${WORKLOADS:-spawn execl shellscript}; do
		case $w in
		spawn) exe=$(readlink -f /bin/true) ;;
		execl) exe=$bin/execl ;;
		shellscript) exe=$(readlink -f /bin/sh) ;;
		esac
		if [ -n "$plain" ]; then
			set -- --inode "$plain/libc.so.6" --inode "$plain/ld-linux-x86-64.so.2"
			[ -e "$plain/$(basename "$exe")" ] && exe=$plain/$(basename "$exe")
		else
			set -- --inode libc.so.6 --inode ld-linux-x86-64.so.2
		fi
		"$bin/rmapprof" --mode "$mode" --acquisitions "$@" --inode "$exe" -o "$out/$fs/$w" -- \
			"$bin/$w" "$cycles" -j "$jobs" > /dev/null
	done
}

if [ "${PATCHES_REPORT_TMPFS:-}" = 1 ]; then
	on_tmpfs "$libc" "$ldso" "$(readlink -f /bin/true)" "$(readlink -f /bin/sh)"
	run_all tmpfs
	exit
fi
export WORKLOADS="$*"
mkdir -p "$out"
PATCHES_REPORT_TMPFS=1 unshare --mount --propagation private "$0" "$out" "$cycles" "$jobs" "$mode"
rmdir /tmp/rmapprof-plain-files
run_all system
uname -r > "$out/kernel.txt"
