#!/bin/sh
# Attach bpftrace to lazymm:free_deferred and lazymm:defer_handoff in
# LIBRARY, run DRIVER (which passes the first 2N times, the second N times)
# and check each fired that often. Skipped (77) where that cannot be done:
# not root, no bpftrace, no uprobes, no probes built; .ci/run requires a
# pass where root, bpftrace and uprobes are all there.
# Usage: probe-attach.sh LIBRARY DRIVER yes|no (meson found <sys/sdt.h>)
set -u
lib=$(readlink -f "$1") driver=$2 have=$3 n=20
skip() { echo "probe-attach: SKIP: $*"; exit 77; }
[ "$have" = yes ] || skip "built without <sys/sdt.h>"
[ "$(id -u)" = 0 ] || skip "needs root (bpftrace)"
command -v bpftrace >/dev/null 2>&1 || skip "no bpftrace (Debian: apt-get install bpftrace)"
[ -e /sys/bus/event_source/devices/uprobe ] || skip "kernel without uprobes"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The driver waits on a fifo until the tracer is attached; the probe is
# filtered on its pid (other programs may be using the same library).
mkfifo "$tmp/go"
"$driver" $n wait <"$tmp/go" &
drv=$!
exec 3>"$tmp/go"
# Started apart, not with -c: bpftrace 0.17 cannot resolve a shared
# library's probe for a child it starts. BEGIN prints once attached.
bpftrace -e "BEGIN { printf(\"attached\n\"); }
	usdt:$lib:lazymm:free_deferred /pid == $drv/ { @freed = count(); }
	usdt:$lib:lazymm:defer_handoff /pid == $drv/ { @handoffs = count(); }" >"$tmp/out" 2>&1 &
bt=$!
i=0
until grep -q attached "$tmp/out"; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 $bt 2>/dev/null; then
		kill -INT $bt 2>/dev/null; wait $bt
		exec 3>&-; kill $drv 2>/dev/null; wait $drv
		cat "$tmp/out"; skip "bpftrace could not attach here"
	fi
	sleep 0.1
done
echo go >&3
exec 3>&-
wait $drv
rc=$?
kill -INT $bt
wait $bt
cat "$tmp/out"
[ $rc = 0 ] || { echo "probe-attach: driver failed ($rc)"; exit 1; }
status=0
for want in "freed free_deferred $((2 * n))" "handoffs defer_handoff $n"; do
	set -- $want
	fired=$(sed -n "s/^@$1: \([0-9]*\)$/\1/p" "$tmp/out")
	if [ "${fired:-0}" != "$3" ]; then
		echo "probe-attach: lazymm:$2 fired ${fired:-0} times, expected $3"; status=1
	else
		echo "probe-attach: lazymm:$2 fired $3 times"
	fi
done
exit $status
