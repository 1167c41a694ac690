#!/bin/sh
# Every USDT probe documented in lazymm(7) and docs/probes.md is in the built
# library, with the documented number of arguments, and nothing else is; no
# probe sits in lmm_switch, switch_general or a scheme's switch_copy_NAME
# (the fast path's copies, and any copy the compiler cloned from them). That needs the library's symbol
# table: a stripped library fails, since the fast path cannot be checked.
# A probe that docs/probes.md describes as one scheme's ("rcu: ...") is
# left out of a library built without that scheme.
# Usage: probes.sh LIBRARY MANPAGE MARKDOWN yes|no (meson found <sys/sdt.h>) ["SCHEME..." (built; all)]
set -eu
lib=$1 man=$2 md=$3 have=$4 schemes=" ${5-refcount shootdown hazard rcu} "
if [ "$have" != yes ]; then
	echo "probes: built without <sys/sdt.h> (Debian: systemtap-sdt-dev), no probes to check"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# "name nargs", one per probe: ".It Li lazymm:name Fa arg ..." in the man page,
# "| `lazymm:name` | `arg`, `arg` | ..." in the markdown table.
sed -n 's/^\.It Li lazymm:\([a-z_]*\)\( Fa\)\{0,1\}\(.*\)$/\1 \3/p' "$man" |
	awk '{print $1, NF - 1}' | sort >"$tmp/man"
sed -n 's/^| `lazymm:\([a-z_]*\)` | \([^|]*\)|.*/\1 \2/p' "$md" |
	awk '{n = gsub(/`[^`]*`/, "&"); print $1, n}' | sort >"$tmp/md"
# readelf -n: "Name: x" then "Location: ..." then "Arguments: a b c" per site.
readelf -nW "$lib" | awk '
	/Provider: / { prov = $NF }
	/Name: / { name = $2 }
	/Location: / { loc = $2; sub(/,$/, "", loc) }
	/Arguments:/ { if (prov == "lazymm") print name, NF - 1, loc }' >"$tmp/sites"
awk '{print $1, $2}' "$tmp/sites" | sort -u >"$tmp/built"
status=0
if [ ! -s "$tmp/man" ]; then echo "probes: no probe list found in $man"; status=1; fi
if ! diff -u "$tmp/man" "$tmp/md"; then
	echo "probes: lazymm(7) (-) and docs/probes.md (+) list different probes or argument counts"; status=1
fi
# What this build should have: the documented probes but those of schemes left out.
sed -n 's/^| `lazymm:\([a-z_]*\)` | [^|]*| \([a-z]*\):.*/\1 \2/p' "$md" | while read -r name scheme; do
	case "$scheme" in refcount | shootdown | hazard | rcu)
		case "$schemes" in *" $scheme "*) ;; *) echo "$name" ;; esac ;;
	esac
done >"$tmp/absent"
grep -vwFf "$tmp/absent" "$tmp/man" >"$tmp/want" || true
if ! diff -u "$tmp/want" "$tmp/built"; then
	echo "probes: documented (-) and built (+) probes differ"; status=1
fi
# The fast path: no probe site inside these functions (needs the symbol table).
# "name value size" of each function named fn or a clone of it (fn.part.0).
readelf -sW "$lib" | awk '$4 == "FUNC" && $3 > 0 {print $8, $2, $3}' | sed 's/@[^ ]*//' >"$tmp/funcs"
copies=$(awk '{print $1}' "$tmp/funcs" | grep -E '^switch_copy_[a-z]+$' | sort -u | tr '\n' ' ')
for fn in lmm_switch switch_general $copies; do
	if ! grep -qE "^$fn(\.[a-z_.0-9]+)? " "$tmp/funcs"; then
		echo "probes: no symbol $fn in $lib (stripped?): cannot check the fast path is probe-free"; status=1
		continue
	fi
	grep -E "^$fn(\.[a-z_.0-9]+)? " "$tmp/funcs" | while read -r sym value size; do
		lo=$((0x$value)) hi=$((0x$value + size))
		while read -r name n loc; do
			if [ $((loc)) -ge $lo ] && [ $((loc)) -lt $hi ]; then
				echo "probes: lazymm:$name is inside $sym (the fast path)"; echo fail >>"$tmp/fast"
			fi
		done <"$tmp/sites"
	done
	[ ! -s "$tmp/fast" ] || status=1
done
[ $status = 0 ] && echo "probes: $(wc -l <"$tmp/built") documented probes, $(wc -l <"$tmp/sites") sites, none on the fast path"
exit $status
