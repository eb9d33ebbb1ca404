#!/bin/sh
# A boot whose kernel reported something (kernel-reports.ere, the kernel-log check's
# patterns) before it ran its first user program ("Run ... as init process") is not used:
# nothing the series changes has run by then (it changes fork and exec of user processes),
# but the report spoils a debug run (KASAN turns lock debugging off after its first report).
# Prints the first such report, appends a "SKIP boot:" line with it to RESULTS and exits 0;
# exits 1 when there is none.
# usage: boot-report.sh RESULTS
set -u
first=$(dmesg | sed '/ as init process/q' | grep -m 1 -E -f "$(dirname "$0")/kernel-reports.ere") || exit 1
echo "$first"
echo "SKIP boot: not used, a kernel report came before any user program ran: $first" >> "$1"
