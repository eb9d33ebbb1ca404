#!/bin/sh
# Prints the first kernel report (the kernel-log check's patterns) logged before the kernel
# ran its first user program ("Run ... as init process"), and exits 0 when there is one, 1
# when there is none. Nothing the series changes runs before then: it changes fork and exec
# of user processes. Such a report still spoils a debug run (KASAN turns lock debugging off
# after its first report), so the guest scripts ask for another boot instead (exit 75).
# usage: boot-report.sh
dmesg | awk '
	/ as init process/ { exit }
	/WARNING:|BUG:|INFO: possible|circular locking|recursive locking|inconsistent lock state|suspicious RCU|Oops|general protection|self-detected stall|blocked for more than|Bad page|bad pte/ {
		print; found = 1; exit
	}
	END { exit !found }'
