#!/bin/sh
# Every LMM_PUBLIC function of lazymm.h has a man page docs/man/NAME.3
# (its own, or a .so link to the page that documents it), that page's
# SYNOPSIS declares it exactly as the header does (.Ft type, .Fn name
# "arg" ...), every .Ft/.Fn pair of a SYNOPSIS is a function or a macro
# of the header, meson installs every page, and a function's "Hooks: "
# line in the header and its page's "Hooks it may run" paragraph come
# together and name the same schemes, hooks and flags.
# Usage: manpages.sh HEADER MANDIR
set -eu
header=$1 mandir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
fail() { echo "manpages: $*"; status=1; }

# The header's declarations, one per line: "type name(arg, arg)", with
# "(void)" for none and single spaces.
sed '/^#/d' "$header" | tr '\n' ' ' | sed 's|/\*\([^*]\|\*[^/]\)*\*/||g; s/;/;\n/g' |
	sed -n 's/^.*LMM_PUBLIC \(.*\);$/\1/p' | sed 's/  */ /g; s/ *$//; s/( */(/; s/ \*/ */g' |
	sed 's/^\(.*[ *]\)\([a-z_0-9]*\)(/\1\t\2(/' | sed 's/ *\t/\t/' | sort -t "$(printf '\t')" -k2 >"$tmp/header"
# Function-like macros of the header (documented in a SYNOPSIS with .Fn too).
sed -n 's/^#define \([A-Za-z_0-9]*\)(.*/\1/p' "$header" | sort -u >"$tmp/macros"

# The SYNOPSIS of every page: ".Ft type" then ".Fn name "arg" ...".
for page in "$mandir"/*.3; do
	awk -v page="$(basename "$page")" '
		/^\.Sh / { syn = ($2 == "SYNOPSIS"); next }
		!syn { next }
		/^\.Ft / { ft = substr($0, 5); next }
		/^\.Fn / && ft != "" {
			line = substr($0, 5); name = line; sub(/ .*/, "", name)
			args = substr(line, length(name) + 1)
			n = 0; out = ""
			while (match(args, /"[^"]*"/)) {
				out = out (n++ ? ", " : "") substr(args, RSTART + 1, RLENGTH - 2)
				args = substr(args, RSTART + RLENGTH)
			}
			gsub(/^ +| +$/, "", args)
			if (n == 0) out = (args == "" ? "void" : args)
			printf "%s\t%s(%s)\t%s\n", ft, name, out, page
			ft = ""
		}' "$page"
done | sed 's/ \*/ */g' | sort -t "$(printf '\t')" -k2 >"$tmp/pages"

tab=$(printf '\t')
while IFS="$tab" read -r type decl; do
	name=${decl%%(*}
	page=$mandir/$name.3
	if [ ! -f "$page" ]; then
		fail "$name: no page $name.3"
		continue
	fi
	target=$name.3
	if head -n 1 "$page" | grep -q '^\.so '; then
		target=$(head -n 1 "$page" | sed 's|^\.so man3/||')
		[ -f "$mandir/$target" ] || fail "$name.3: .so to a missing page $target"
	fi
	got=$(awk -F "$tab" -v n="$name" -v p="$target" '{ split($2, a, "("); if (a[1] == n && $3 == p) print $1 "\t" $2 }' "$tmp/pages")
	[ -n "$got" ] || { fail "$name: $target's SYNOPSIS does not declare it"; continue; }
	[ "$got" = "$type$tab$decl" ] ||
		fail "$name: header says '$type $decl', $target's SYNOPSIS says '$(echo "$got" | tr '\t' ' ')'"
done <"$tmp/header"

# Every declared function of a SYNOPSIS is the header's (or a macro of it).
while IFS="$tab" read -r type decl page; do
	name=${decl%%(*}
	grep -q "$tab$name(" "$tmp/header" || grep -qx "$name" "$tmp/macros" ||
		fail "$page: SYNOPSIS declares $name, which lazymm.h does not"
done <"$tmp/pages"

# Every function whose header comment has a "Hooks: " line has a page with
# a "Hooks it may run" paragraph, and that paragraph names every scheme,
# hook and flag the header's line names; a page with such a paragraph
# belongs to a function with such a line. The header's line covers the
# declarations up to the next comment ("Hooks, both:" for a pair).
awk '
	/\/\*/ { if (after_decl) { hooks = ""; after_decl = 0 } in_comment = 1 }
	in_comment {
		line = $0
		if (!grab && match(line, /Hooks(, both)?: /)) { grab = 1; hooks = ""; line = substr(line, RSTART) }
		if (grab) {
			sub(/\*\/.*$/, "", line); sub(/^[ \t]*\*?[ \t]*/, "", line)
			hooks = hooks " " line
		}
	}
	/\*\// { in_comment = 0; grab = 0 }
	/^LMM_PUBLIC .*\(/ && !in_comment {
		name = $0; sub(/\(.*/, "", name); sub(/.*[ *]/, "", name)
		if (hooks != "") printf "%s\t%s\n", name, hooks
		after_decl = 1
	}' "$header" >"$tmp/hooks"
words='switch_ctx teardown free refcount shootdown hazard rcu LMM_F_NO_THREADS LMM_F_DEFER_FREE'
names() { tr -c 'A-Za-z_0-9' '\n' | grep -Fx "$(echo "$words" | tr ' ' '\n')" | sort -u; }
while IFS="$tab" read -r name hooks; do
	page=$mandir/$name.3
	[ -f "$page" ] || continue # reported above
	para=$(grep '^Hooks it may run' "$page" || true)
	if [ -z "$para" ]; then
		fail "$name.3: no 'Hooks it may run' paragraph, but lazymm.h says '$hooks'"
		continue
	fi
	missing=$(echo "$hooks" | names | while read -r w; do
		echo "$para" | names | grep -qx "$w" || echo "$w"; done | tr '\n' ' ')
	[ -z "$missing" ] || fail "$name.3: its hooks paragraph does not name $missing(lazymm.h: '$hooks')"
done <"$tmp/hooks"
for page in "$mandir"/*.3; do
	name=$(basename "$page" .3)
	grep -q '^Hooks it may run' "$page" || continue
	grep -q "^$name$tab" "$tmp/hooks" || fail "$name.3 has a hooks paragraph, but lazymm.h's comment of $name has no Hooks: line"
done

# Every page is installed.
for page in "$mandir"/*.3; do
	grep -q "'$(basename "$page")'" "$mandir/meson.build" || fail "$(basename "$page") is not installed by $mandir/meson.build"
done

[ $status = 0 ] && echo "manpages: $(wc -l <"$tmp/header") functions, each with a page whose SYNOPSIS matches lazymm.h; $(wc -l <"$tmp/hooks") hooks lines, each named in its page"
exit $status
