#!/bin/sh
# The shared library exports exactly the public functions of lazymm.h (and
# what its LMM_INLINE section exports for inline callers: the
# LMM_INLINE_EXPORT functions and lmm__inline_abi_<LMM_INLINE_ABI_VERSION>), each
# at a version of lib/lazymm.map, and the map lists exactly those; with
# SONAME, the library's DT_SONAME is that (liblazymm.so.0.2 for 0.2.x).
# Usage: symbols.sh LIBRARY HEADER MAP [SONAME]
set -eu
lib=$1 header=$2 map=$3 soname=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
	grep -o '^LMM_\(PUBLIC\|INLINE_EXPORT\) [^(]*(' "$header" | sed 's/.*[ *]\([a-z_0-9]*\)($/\1/'
	sed -n 's/^#define LMM_INLINE_ABI_VERSION \([0-9]*\)$/lmm__inline_abi_\1/p' "$header"
} | sort >"$tmp/header"
sed -n 's/^[[:space:]]*\(lmm_[a-z_0-9]*\);$/\1/p' "$map" | sort >"$tmp/map"
# Defined dynamic symbols other than the version nodes themselves.
readelf --dyn-syms -W "$lib" | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && $5 != "LOCAL" {print $8}' |
	grep -v '^LAZYMM_[0-9.]*$' | sort >"$tmp/exports"
status=0
if ! diff -u "$tmp/header" "$tmp/map"; then
	echo "symbols: lazymm.h's LMM_PUBLIC functions (-) and lib/lazymm.map (+) differ"; status=1
fi
sed 's/@.*//' "$tmp/exports" >"$tmp/names"
if ! diff -u "$tmp/header" "$tmp/names"; then
	echo "symbols: lazymm.h's LMM_PUBLIC functions (-) and $lib's exports (+) differ"; status=1
fi
if grep -v '@@\?LAZYMM_[0-9.]*$' "$tmp/exports"; then
	echo "symbols: exported without a LAZYMM_ version (above)"; status=1
fi
if [ -n "$soname" ]; then
	got=$(readelf -dW "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
	if [ "$got" != "$soname" ]; then
		echo "symbols: $lib has SONAME '$got', expected $soname"; status=1
	fi
fi
[ $status = 0 ] && echo "symbols: ${soname:+SONAME $soname, }$(wc -l <"$tmp/names") functions, all versioned: $(sed 's/.*@//' "$tmp/exports" | sort -u | tr '\n' ' ')"
exit $status
