#!/bin/sh
# Instructions the verifier processed for each of rmapprof's programs, per mode, on the running
# kernel: `scripts/verifier-insns.sh [RMAPPROF]`, as root (in a VM: `cargo xtask vm --kernel
# 6.1 -- scripts/verifier-insns.sh`). A config switch that is off must cost no instructions:
# the verifier sees the load-time constants in .rodata and prunes what they turn off, so the
# counts of one mode with its switches off show whether it still does.
# Prints "MODE PROGRAM VERIFIED_INSNS" lines, then "MODE total N".
# MODES="kprobe --acquisitions;fentry" measures only those modes.
set -u
bin=${1:-target/release/rmapprof}
command -v bpftool >/dev/null || { echo "verifier-insns: bpftool is not installed" >&2; exit 1; }
modes=${MODES:-tracepoint;tracepoint --holder-stacks;kprobe;kprobe --acquisitions;kprobe --acquisitions --holder-stacks;fentry;fentry --acquisitions}
IFS=';'
set -f
for mode in $modes; do
    IFS=' '
    set +f
    out=$(mktemp -d)
    # shellcheck disable=SC2086 # the mode's words are options
    "$bin" --mode $mode -d 600s -o "$out" >/dev/null 2>"$out/err" &
    pid=$!
    i=0
    while [ $i -lt 2400 ] && ! grep -q "profiling\|rmapprof: error\|not available" "$out/err" 2>/dev/null; do
        sleep 0.25
        i=$((i + 1))
    done
    label=$(echo "$mode" | tr ' ' '_')
    if grep -q "profiling" "$out/err"; then
        # The programs rmapprof holds, from its descriptors' fdinfo (prog_id, verified_insns),
        # read before anything slow; then named by one bpftool call.
        for fd in /proc/$pid/fdinfo/*; do
            id=$(sed -n 's/^prog_id:[[:space:]]*//p' "$fd" 2>/dev/null)
            n=$(sed -n 's/^verified_insns:[[:space:]]*//p' "$fd" 2>/dev/null)
            [ -n "$id" ] && [ -n "$n" ] && echo "$id $n"
        done >"$out/ids"
        bpftool prog show 2>/dev/null | sed -n 's/^\([0-9]*\): [a-z_]*  *name \([^ ]*\) .*/\1 \2/p' >"$out/names"
        sort -u "$out/ids" | while read -r id n; do
            name=$(awk -v id="$id" '$1 == id { print $2 }' "$out/names")
            echo "$label ${name:-id$id} $n"
        done | sort | awk -v l="$label" '{ print; t += $3 } END { print l, "total", t + 0 }'
    else
        echo "$label not-attached $(head -c 200 "$out/err" | tr '\n' ' ')"
    fi
    kill -INT $pid 2>/dev/null
    wait $pid
    rm -rf "$out"
done
