#!/bin/sh
# UnixBench's fork/exec tests on the running kernel, with rmapprof recording the waits on
# libc.so.6's and ld.so's i_mmap_rwsem meanwhile: for a tester with a many-core machine,
# to compare a base and a patched kernel (patches/ in rmapprof).
#
#   unixbench-compare.sh run UNIXBENCH_DIR OUTDIR [RUNS]
#       On this kernel: UnixBench's execl, spawn, shell1 and shell8 at 1, nproc/2 and nproc
#       copies, RUNS times each (default 5), each copy count under one rmapprof run
#       (`rmapprof --inode libc.so.6 --inode ld-linux-x86-64.so.2`, waits only: no
#       --acquisitions, which would slow the benchmark down). Writes OUTDIR, which must not
#       exist: unixbench.txt (mean and standard deviation of each test and copy count),
#       unixbench.tsv (the same with every run's score), runs/cC-rR.txt (UnixBench's output),
#       rmapprof-cC/ (rmapprof's report of the runs at C copies; rmapprof-cC.txt, what it
#       printed), info.txt (kernel, CPUs, what ran).
#   unixbench-compare.sh compare BASE_OUTDIR PATCHED_OUTDIR [DIFFDIR]
#       The two tables side by side, and `rmapprof diff` of each copy count's reports into
#       DIFFDIR/diff-cC (default ./unixbench-diff).
#
# UNIXBENCH_DIR is byte-unixbench's UnixBench directory, built (`make`): its ./Run is run
# with `-c COPIES TEST...`. Run as root (rmapprof loads BPF programs); as another user, or
# with RMAPPROF=none, the benchmark runs without rmapprof and info.txt says so.
# RMAPPROF: the rmapprof binary (default: the one beside this script, as the release tarball
# ships them; else rmapprof on PATH, as the Debian package installs it; else the repository's
# static build, then its release build). UB_NPROC: the CPU count the copy counts come from (default nproc).
# rmapprof's numbers are totals over each copy count's runs (UnixBench runs for a fixed time,
# so the work done differs between kernels; UnixBench's scores are the per-second rates).
set -u

die() { # STATUS MESSAGE
	echo "unixbench-compare: $2" >&2
	exit "$1"
}

self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

# The rmapprof to run: $RMAPPROF, else the first of the defaults above that exists (else the
# last, for the error to name).
find_rmapprof() {
	if [ -n "${RMAPPROF:-}" ]; then
		echo "$RMAPPROF"
		return
	fi
	d=$(dirname "$self")
	for c in "$d/rmapprof" "$(command -v rmapprof)" \
		"$d/../target/x86_64-unknown-linux-gnu/release/rmapprof" "$d/../target/release/rmapprof"; do
		if [ -n "$c" ] && [ -f "$c" ] && [ -x "$c" ]; then
			echo "$c"
			return
		fi
	done
	echo "$d/../target/release/rmapprof"
}
tests="execl spawn shell1 shell8"

# UnixBench's name for each test in its results (its Run script's "logmsg").
logmsg() {
	case $1 in
	execl) echo "Execl Throughput" ;;
	spawn) echo "Process Creation" ;;
	shell1) echo "Shell Scripts (1 concurrent)" ;;
	shell8) echo "Shell Scripts (8 concurrent)" ;;
	esac
}

# _runs UNIXBENCH_DIR COPIES RUNS: the benchmark itself (rmapprof's COMMAND), each run's
# output between marker lines on stdout.
runs() {
	ub=$1 c=$2 n=$3
	r=1
	while [ "$r" -le "$n" ]; do
		echo "=== unixbench-compare run c$c-r$r"
		(cd "$ub" && ./Run -c "$c" $tests) || {
			echo "=== unixbench-compare failed c$c-r$r"
			exit 1
		}
		echo "=== unixbench-compare end c$c-r$r"
		r=$((r + 1))
	done
}

# The copy counts: 1, nproc/2 and nproc, each once, none below 1.
copy_counts() {
	n=${UB_NPROC:-$(nproc)}
	for c in 1 $((n / 2)) "$n"; do
		[ "$c" -ge 1 ] && echo "$c"
	done | awk '!seen[$0]++'
}

# Splits FILE (rmapprof's stdout, or the runs' alone) into OUTDIR/runs/cC-rR.txt; the rest,
# rmapprof's summary, into OUTDIR/rmapprof-cC.txt.
split_runs() { # FILE OUTDIR C
	awk -v dir="$2/runs" -v rest="$2/rmapprof-c$3.txt" '
		/^=== unixbench-compare run / { f = dir "/" $4 ".txt"; next }
		/^=== unixbench-compare (end|failed) / { f = ""; next }
		{ if (f != "") print > f; else print > rest }
	' "$1"
}

# One row per test and copy count: mean, sample standard deviation and every score, from
# the result lines UnixBench prints ("%-40s %12.1f %-5s (%.1f s, %d samples)").
summarize() { # OUTDIR
	for f in "$1"/runs/c*-r*.txt; do
		c=${f##*/c}
		c=${c%%-r*}
		for t in $tests; do
			m=$(logmsg "$t")
			awk -v m="$m" -v c="$c" -v t="$t" '
				/samples\)$/ && substr($0, 1, length(m)) == m && substr($0, length(m) + 1, 1) == " " {
					print t "\t" c "\t" $(NF - 5) "\t" $(NF - 4)
				}' "$f"
		done
	done | sort -t "$(printf '\t')" -k1,1 -k2,2n -s | awk -F '\t' -v OFS='\t' '
		function flush() {
			if (n == 0) return
			mean = sum / n
			ss = 0
			for (i = 1; i <= n; i++) ss += (v[i] - mean) ^ 2
			sd = n > 1 ? sqrt(ss / (n - 1)) : 0
			line = key "\t" sprintf("%.1f", mean) "\t" sprintf("%.1f", sd) "\t" unit "\t" n
			for (i = 1; i <= n; i++) line = line "\t" v[i]
			print line
			n = 0; sum = 0
		}
		{ k = $1 "\t" $2; if (k != key) { flush(); key = k }; v[++n] = $3; sum += $3; unit = $4 }
		END { flush() }'
}

# unixbench.tsv as a table.
table() { # TSV
	awk -F '\t' '
		BEGIN { printf "%-8s %7s %12s %10s %-5s %5s\n", "TEST", "COPIES", "MEAN", "STDDEV", "UNIT", "RUNS" }
		{ printf "%-8s %7d %12.1f %10.1f %-5s %5d\n", $1, $2, $3, $4, $5, $6 }' "$1"
}

run() { # UNIXBENCH_DIR OUTDIR [RUNS]
	[ $# -ge 2 ] && [ $# -le 3 ] || die 2 "usage: unixbench-compare.sh run UNIXBENCH_DIR OUTDIR [RUNS]"
	ub=$(cd "$1" 2>/dev/null && pwd) || die 2 "$1: no such directory"
	[ -x "$ub/Run" ] || die 2 "$ub/Run: not UnixBench's directory (no executable Run; build it with make)"
	out=$2 n=${3:-5}
	case $n in '' | *[!0-9]* | 0) die 2 "RUNS: $n is not a positive number" ;; esac
	mkdir "$out" 2>/dev/null || die 2 "$out: exists or cannot be made (give a new directory)"
	mkdir "$out/runs" || die 1 "$out/runs: cannot be made"
	rmapprof=$(find_rmapprof)
	why=
	if [ "$rmapprof" = none ]; then
		why="RMAPPROF=none"
	elif [ "$(id -u)" -ne 0 ]; then
		why="not root"
	elif [ ! -x "$rmapprof" ]; then
		die 2 "$rmapprof: no rmapprof there (set RMAPPROF, or RMAPPROF=none to run without it)"
	fi
	{
		echo "kernel: $(uname -r)"
		echo "cpus: $(nproc); copy counts from ${UB_NPROC:-$(nproc)}: $(copy_counts | paste -sd ' ')"
		echo "runs: $n of: $tests"
		echo "unixbench: $ub"
		echo "rmapprof: ${why:+skipped ($why)}${why:-$rmapprof --inode libc.so.6 --inode ld-linux-x86-64.so.2}"
		[ -n "$why" ] || echo "rmapprof build: $("$rmapprof" -V)"
		echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	} > "$out/info.txt"
	[ -n "$why" ] && echo "unixbench-compare: without rmapprof ($why)" >&2
	for c in $(copy_counts); do
		echo "unixbench-compare: $n runs at $c copies" >&2
		if [ -n "$why" ]; then
			"$self" _runs "$ub" "$c" "$n" > "$out/c$c.stdout"
		else
			"$rmapprof" --inode libc.so.6 --inode ld-linux-x86-64.so.2 -o "$out/rmapprof-c$c" \
				-- "$self" _runs "$ub" "$c" "$n" > "$out/c$c.stdout"
		fi
		rc=$?
		split_runs "$out/c$c.stdout" "$out" "$c"
		rm -f "$out/c$c.stdout"
		[ -s "$out/rmapprof-c$c.txt" ] || rm -f "$out/rmapprof-c$c.txt"
		[ $rc -eq 0 ] || die 1 "UnixBench or rmapprof failed at $c copies (exit $rc); see $out/runs"
	done
	summarize "$out" > "$out/unixbench.tsv"
	[ -s "$out/unixbench.tsv" ] || die 1 "no UnixBench result lines in $out/runs"
	table "$out/unixbench.tsv" > "$out/unixbench.txt"
	cat "$out/unixbench.txt"
}

compare() { # BASE PATCHED [DIFFDIR]
	[ $# -ge 2 ] && [ $# -le 3 ] || die 2 "usage: unixbench-compare.sh compare BASE_OUTDIR PATCHED_OUTDIR [DIFFDIR]"
	for d in "$1" "$2"; do
		[ -f "$d/unixbench.tsv" ] || die 2 "$d: no unixbench.tsv (not a directory of unixbench-compare.sh run)"
	done
	echo "base:    $(head -n 1 "$1/info.txt")"
	echo "patched: $(head -n 1 "$2/info.txt")"
	awk -F '\t' '
		BEGIN { printf "%-8s %7s %12s %8s %12s %8s %8s\n", "TEST", "COPIES", "BASE", "STDDEV", "PATCHED", "STDDEV", "CHANGE" }
		NR == FNR { base[$1 "\t" $2] = $3; bsd[$1 "\t" $2] = $4; next }
		($1 "\t" $2) in base {
			k = $1 "\t" $2
			change = base[k] > 0 ? sprintf("%+.1f%%", ($3 - base[k]) / base[k] * 100) : "-"
			printf "%-8s %7d %12.1f %8.1f %12.1f %8.1f %8s\n", $1, $2, base[k], bsd[k], $3, $4, change
		}' "$1/unixbench.tsv" "$2/unixbench.tsv"
	diffdir=${3:-unixbench-diff}
	rmapprof=$(find_rmapprof)
	for r in "$1"/rmapprof-c*/report.json; do
		[ -f "$r" ] || continue
		c=${r%/report.json}
		c=${c##*/rmapprof-}
		[ -f "$2/rmapprof-$c/report.json" ] || continue
		mkdir -p "$diffdir"
		echo
		echo "--- rmapprof diff, $c ---"
		"$rmapprof" diff "$r" "$2/rmapprof-$c/report.json" -o "$diffdir/diff-$c" ||
			die 1 "rmapprof diff of $c failed"
	done
}

case ${1:-} in
run) shift; run "$@" ;;
compare) shift; compare "$@" ;;
_runs) shift; runs "$@" ;;
*) die 2 "usage: unixbench-compare.sh run UNIXBENCH_DIR OUTDIR [RUNS] | compare BASE_OUTDIR PATCHED_OUTDIR [DIFFDIR]" ;;
esac
