#!/bin/sh
# One category's run_vmtests.sh log (TAP) in one line for vmtests-guest.sh:
#   "N passed, N skipped [name (reason); ...], N failed [name; ...]"
# run_vmtests.sh reports a skip three ways, and each is counted and named:
#   "ok N name # SKIP"   the test ran and exited 4; its reason is the last line it printed
#                        before run_vmtests.sh's "# [SKIP]";
#   "# [SKIP] name"      not started: thp's "khugepaged all:file" when there is no XFS to mount;
#   "# SKIP name"        not started: mlock's "on-fault-limit" when there is no sudo. This line
#                        comes whatever category was asked for, so it counts only in its own.
# Where run_vmtests.sh's own "# SUMMARY: PASS=P SKIP=S FAIL=F" disagrees with what was read
# here (a form this script does not know), "; run_vmtests.sh counted ..." is appended and the
# line does not end in ", 0 failed", so the category does not pass.
# usage: vmtests-summary.sh LOG CATEGORY
exec awk -v category="$2" '
	function skip(name, why) { s = s (s ? "; " : "") name " (" why ")"; ns++ }
	/^# \[SKIP\]$/ { reason = last; next }
	/^# \[SKIP\] ./ {
		name = substr($0, 10)
		skip(name, name ~ /all:file/ ? "needs an XFS file system to mount; the VM kernel has no XFS" : "not started by run_vmtests.sh")
		next
	}
	/^# SKIP ./ {
		name = substr($0, 8)
		if (name !~ /on-fault-limit/)
			skip(name, "not started by run_vmtests.sh")
		else if (category == "mlock")
			skip(name, "runs as nobody through sudo; the VM has no sudo")
		next
	}
	/^# SUMMARY: PASS=[0-9]+ SKIP=[0-9]+ FAIL=[0-9]+$/ {
		split($0, c, /[= ]/); sp = c[4]; ss = c[6]; sf = c[8]; summary = 1; next
	}
	/^# / { last = substr($0, 3) }
	/^ok [0-9]+ .* # SKIP$/ { sub(/^ok [0-9]+ /, ""); sub(/ # SKIP$/, ""); skip($0, reason); next }
	/^ok [0-9]+ / { np++; next }
	/^not ok [0-9]+ / { sub(/^not ok [0-9]+ /, ""); f = f (f ? "; " : "") $0; nf++ }
	END {
		printf "%d passed, %d skipped%s, %d failed%s", np, ns, ns ? " [" s "]" : "", nf, nf ? " [" f "]" : ""
		# "# SKIP name" is not in run_vmtests.sh'"'"'s SKIP count, so ours may be larger.
		if (summary && (sp != np || sf != nf || ss > ns))
			printf "; run_vmtests.sh counted PASS=%d SKIP=%d FAIL=%d", sp, ss, sf
	}
' "$1"
