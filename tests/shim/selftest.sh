#!/bin/sh
# Run the shim's selftest program and check every verdict against the test's
# name (pass_, fail_, skip_) and the closing "N passed, N failed, N skipped".
exe=$1
out=$("$exe" --jobs=2)
echo "$out"
bad=$(echo "$out" | awk '
	/^\[(PASS|FAIL|SKIP)\] / {
		tag = tolower(substr($1, 2, 4)); split($2, a, "::"); name = a[2]; sub(/:$/, "", name)
		if (index(name, tag "_") != 1) print "wrong verdict: " $0
		n[tag]++
	}
	/ passed, .* failed, .* skipped$/ { summary = $0 }
	END {
		want = sprintf("%d passed, %d failed, %d skipped", n["pass"], n["fail"], n["skip"])
		if (summary != want) print "summary \"" summary "\", want \"" want "\""
		if (n["pass"] != 6 || n["fail"] != 11 || n["skip"] != 2) print "wrong number of tests run"
	}')
[ -z "$bad" ] || { echo "shim selftest: $bad"; exit 1; }
echo "shim selftest: all verdicts as named"
