#!/bin/sh
# SPDX-License-Identifier: MIT
# lmm-bench's floor makes the stores it claims (bench/impl_floor.c): its
# switch is a call with two thread-local stores in it, not a bare ret that
# the compiler left of stores to variables nothing reads.
#   bench-floor.sh LMM_BENCH
set -eu
bench=$1
command -v objdump >/dev/null 2>&1 || { echo "SKIP: no objdump"; exit 77; }
for fn in floor_switch floor_idle_set; do
	# The function's instructions (lines "  addr:\tbytes\tinsn"), padding nops left out.
	if ! out=$(objdump -d --no-show-raw-insn --disassemble="$fn" "$bench" 2>/dev/null); then
		echo "SKIP: objdump cannot read $bench"
		exit 77
	fi
	insns=$(printf '%s\n' "$out" | grep -E '^ +[0-9a-f]+:' | grep -cvE '\bnop|\bxchg +%ax,%ax' || true)
	if [ "$insns" -eq 0 ]; then
		echo "SKIP: $fn not in $bench's symbols (stripped?) or not disassembled"
		exit 77
	fi
	want=3
	[ "$fn" = floor_idle_set ] && want=2
	if [ "$insns" -lt "$want" ]; then
		printf '%s\n' "$out" >&2
		echo "FAIL: $fn has $insns instruction(s): its stores were compiled away" >&2
		exit 1
	fi
	echo "ok: $fn, $insns instructions"
done
