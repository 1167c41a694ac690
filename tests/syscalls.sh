#!/bin/sh
# The threads, system calls and signals of lazymm(7) "Threads, system calls
# and signals", measured: runs lmm-syscalls (tests/syscalls.c) under
# strace -f -k for each scheme, plain, with LMM_F_DEFER_FREE and with
# LMM_F_NO_THREADS. A system call is the library's when its stack passes
# through liblazymm or liburcu, or when a library thread makes it. Prints
# what each run used and fails if the library made a call the page does not
# list for that scheme; the lists are read from the page itself (LMM_MAN7,
# else docs/man/lazymm.7 next to this script). SKIP (77) without a strace
# that can unwind (-k).
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

# What lazymm(7) lists, read from the page: the list after "System calls
# the library makes", one item per scheme or role; in each item, the words
# that are system call names (of <sys/syscall.h>; without a compiler,
# every word).
page=${LMM_MAN7:-$(dirname "$0")/../docs/man/lazymm.7}
[ -f "$page" ] || { echo "syscalls: no page $page"; exit 1; }
printf '#include <sys/syscall.h>\n' | ${CC:-cc} -dM -E - 2>/dev/null |
	sed -n 's/^#define SYS_\([a-z_0-9]*\) .*/\1/p' | sort -u >"$tmp/sysnames" || true
awk '
	/^System calls the library makes/ { on = 1; next }
	on && /^\.El/ { exit }
	on && /^\.It / { tag = substr($0, 5); gsub(/Cm |,/, "", tag); gsub(/  +/, " ", tag); next }
	on && tag != "" { n = split($0, w, /[^a-z_0-9]+/); for (i = 1; i <= n; i++) if (w[i] != "") print tag "\t" w[i] }
' "$page" >"$tmp/listed"
item() {
	words=$(awk -F "$(printf '\t')" -v t="$1" '$1 == t { print $2 }' "$tmp/listed" | sort -u)
	if [ -s "$tmp/sysnames" ]; then
		words=$(echo "$words" | grep -Fxf "$tmp/sysnames" || true)
	fi
	words=$(echo $words)
	[ -n "$words" ] || { echo "syscalls: $page lists no system calls under '.It $1' (renamed?)" >&2; exit 1; }
	echo "$words"
}
every=$(item "every scheme")
thread=$(item "a library thread")
signal=$(item "shootdown rcu")
rcu_only=$(item "rcu")
echo "lazymm(7): every scheme: $every; a library thread: $thread; signals: $signal; rcu: $rcu_only"

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
		[ "$scheme" = rcu ] && allowed="$allowed $rcu_only"
		for c in $calls; do
			case " $allowed " in *" $c "*) ;; *) echo "syscalls: $scheme $flags: $c is not in lazymm(7)'s list"; status=1 ;; esac
		done
	done
done
exit $status
