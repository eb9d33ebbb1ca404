#!/bin/sh
# Runs inside the base and the patched kernel (non-debug) for `cargo xtask patches-check`:
# every program of target/patches-check/elf prints its own /proc/self/maps with ASLR off, into
# OUTDIR/NAME.maps; patch 2's edge cases record how exec ended (OUTDIR/NAME.maps holds the
# maps or the status) and bprm_execve()'s return values (exec's error, from a kretprobe) into
# OUTDIR/exec-results.txt. The host diffs the base and patched directories byte for byte.
# usage: exec-layout-guest.sh OUTDIR
set -u
out=$(realpath -m "$1")
elf=$PWD/target/patches-check/elf
rm -rf "$out"
mkdir -p "$out"
echo 0 > /proc/sys/kernel/randomize_va_space
# Debian's default (the VM kernel's is 4096): the low-p_vaddr programs link below it.
echo 65536 > /proc/sys/vm/mmap_min_addr
t=/sys/kernel/tracing
mountpoint -q $t || mount -t tracefs nodev $t
echo 0 > $t/tracing_on
echo 'r:execret bprm_execve ret=$retval:s32' > $t/kprobe_events || echo "no kretprobe on bprm_execve"
echo 1 > $t/events/kprobes/execret/enable 2>/dev/null
: > $t/trace

# NAME COMMAND...: run it, its stdout in NAME.maps; status and bprm_execve()'s returns
# (the last is the exec of the program itself; load_elf_binary has a compat twin, so
# it cannot be probed by name) in exec-results.txt.
run() {
	name=$1
	shift
	: > $t/trace
	echo 1 > $t/tracing_on
	"$@" > "$out/$name.maps" 2> "$out/$name.err"
	rc=$?
	echo 0 > $t/tracing_on
	ret=$(grep -o 'ret=[-x0-9a-f]*' $t/trace | tr '\n' ' ')
	echo "$name exit=$rc bprm_execve:${ret:-none}" >> "$out/exec-results.txt"
}

# The layouts: each prints its own maps.
for p in pie nopie static static-pie align64k align2m m32-static m32-pie raw-pie lowvaddr lowvaddr-8k; do
	run "$p" "$elf/$p"
done
# The PIE run by ld.so explicitly: ld.so is the ET_DYN exec maps, it maps the program itself.
( cd $elf && run ldso /lib64/ld-linux-x86-64.so.2 ./pie )
# A PIE without interpreter whose first p_vaddr is below mmap_min_addr, as a user (nobody):
# exec must place it as root's run places it, not refuse it.
for p in lowvaddr lowvaddr-8k; do
	run "$p-nobody" setpriv --reuid=65534 --regid=65534 --clear-groups "$elf/$p"
done
# Malformed first PT_LOAD (p_filesz > p_memsz): the program, and ld.so as interpreter of a
# PIE. Exec fails past the point of no return (SIGSEGV); the kretprobe gives the error.
run bad-filesz "$elf/bad-filesz"
run bad-interp "$elf/bad-interp"
echo 0 > $t/events/kprobes/execret/enable 2>/dev/null
echo > $t/kprobe_events
echo 2 > /proc/sys/kernel/randomize_va_space
cat "$out/exec-results.txt"
