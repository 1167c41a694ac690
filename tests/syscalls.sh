#!/bin/sh
# The threads, system calls and signals of lazymm(7) "Threads, system calls
# and signals", measured: runs lmm-syscalls (tests/syscalls.c) under
# strace -f -k for each scheme, plain, with LMM_F_DEFER_FREE and with
# LMM_F_NO_THREADS. A system call is the library's when its stack passes
# through liblazymm or liburcu, or when a library thread makes it. Prints
# what each run used and fails if the library made a call the page does not
# list for that scheme. SKIP (77) without a strace that can unwind (-k).
# Usage: syscalls.sh [--no-membarrier] LMM-SYSCALLS SCHEME...
# (--no-membarrier: a build without membarrier(2), -Dmembarrier=false,
# where every scheme's lmm_membarrier signals.)
set -eu
signals_all=false
[ "$1" = --no-membarrier ] && { signals_all=true; shift; }
probe=$1; shift
if ! command -v strace >/dev/null || ! strace -f -k -o /dev/null true 2>/dev/null; then
	echo "syscalls: SKIP: no strace with stack unwinding (-k), or ptrace is not allowed here"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# What lazymm(7) lists.
every="futex mmap munmap mprotect madvise brk getrandom membarrier clock_nanosleep"
thread="clone3 clone rt_sigaction rt_sigprocmask set_robust_list rseq exit openat write close"
signal="rt_sigaction rt_sigprocmask rt_sigreturn getpid tgkill"

for scheme in "$@"; do
	for flags in plain defer nothreads; do
		[ "$scheme/$flags" = rcu/nothreads ] && continue # refused: -EINVAL
		arg=$flags; [ "$flags" = plain ] && arg=
		strace -f -k -qq -o "$tmp/trace" "$probe" "$scheme" $arg >"$tmp/out"
		awk -v out="$tmp/out" '
			BEGIN { while ((getline l < out) > 0) { split(l, f, " "); if (f[1] == "thread") { lib[f[2]] = 1; names = names " " f[3] } } }
			function flush() { if (call != "" && (onlib || (pid in lib))) used[call] = 1; call = ""; onlib = 0 }
			/^ > / { if ($0 ~ /liblazymm|liburcu/) onlib = 1; next }
			{
				flush(); pid = $1; rest = $0; sub(/^[0-9]+ +/, "", rest)
				if (rest ~ /^--- SIG/) { split(rest, s, " "); sigs[s[2]] = 1; next }
				if (rest ~ /unfinished \.\.\.>$/) next # counted where it resumes, with its stack
				if (match(rest, /^<\.\.\. [a-z_0-9]+ resumed>/)) { call = substr(rest, 6, RLENGTH - 14); next }
				if (match(rest, /^[a-z_0-9]+\(/)) call = substr(rest, 1, RLENGTH - 1)
			}
			END {
				flush()
				printf "threads:%s\nsyscalls:", names == "" ? " none" : names
				for (c in used) printf " %s", c
				printf "\nsignals:"; for (g in sigs) printf " %s", g
				printf "\n"
			}' "$tmp/trace" >"$tmp/used"
		threads=$(sed -n 's/^threads: //p' "$tmp/used")
		calls=$(sed -n 's/^syscalls: *//p' "$tmp/used" | tr ' ' '\n' | sort | tr '\n' ' ')
		echo "$scheme $flags: threads: $threads; system calls: $calls; signals: $(sed -n 's/^signals: *//p' "$tmp/used")"
		allowed="$every"
		[ "$threads" = none ] || allowed="$allowed $thread"
		case $signals_all/$scheme in true/* | */shootdown | */rcu) allowed="$allowed $signal" ;; esac
		[ "$scheme" = rcu ] && allowed="$allowed poll"
		for c in $calls; do
			case " $allowed " in *" $c "*) ;; *) echo "syscalls: $scheme $flags: $c is not in lazymm(7)'s list"; status=1 ;; esac
		done
	done
done
exit $status
