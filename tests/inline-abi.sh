#!/bin/sh
# A program built with LMM_INLINE against an inline layout the library does
# not have must not start: the loader stops it with "undefined symbol" naming
# the layout's symbol (lazymm.h, LMM_INLINE_ABI); musl's loader says
# "symbol not found".
# PROGRAM was linked against a stub of its layout under lazymm's soname;
# LIBRARY, the real one, is found first here.
# Usage: inline-abi.sh PROGRAM SYMBOL LIBRARY
set -u
prog=$1 sym=$2 lib=$3
libdir=$(cd "$(dirname "$lib")" && pwd)
# A cross build's program runs under meson's exe wrapper (qemu-user).
out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ${MESON_EXE_WRAPPER:-} "$prog" 2>&1)
status=$?
if [ $status = 0 ]; then
	echo "inline-abi: $prog started and exited 0: $out"
	exit 1
fi
case $out in
*"undefined symbol: $sym"* | *"$sym: symbol not found"*) # glibc's loader; musl's
	echo "inline-abi: refused at load time (exit $status): $out"
	exit 0 ;;
esac
echo "inline-abi: exit $status without the loader's \"undefined symbol: $sym\": $out"
exit 1
