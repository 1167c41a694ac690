#!/bin/sh
# docs/embedding.md is lazymm(7) as Markdown: `mandoc -T markdown
# docs/man/lazymm.7`, with the installed documentation directory named.
# Usage: embedding.sh MAN7 MARKDOWN        check that they agree (meson test)
#        embedding.sh --write MAN7 MARKDOWN  regenerate MARKDOWN
# From the source root: sh tests/embedding.sh --write docs/man/lazymm.7 docs/embedding.md
set -eu
write=false
[ "$1" = --write ] && { write=true; shift; }
man7=$1 md=$2
if ! command -v mandoc >/dev/null; then
	echo "embedding: SKIP: mandoc is not installed (Debian package mandoc)"
	exit 77
fi
render() { mandoc -T markdown "$man7" | sed 's|@DOCDIR@|$prefix/share/doc/lazymm|g'; }
if $write; then
	render >"$md"
	exit 0
fi
if ! render | diff -u "$md" -; then
	echo "embedding: $md is not lazymm(7) rendered (-: $md, +: mandoc); run: sh tests/embedding.sh --write $man7 $md"
	exit 1
fi
echo "embedding: $md is lazymm(7)"
