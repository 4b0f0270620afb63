#!/usr/bin/env bash
# The specc executable as CMake runs it: exit codes, one-line errors, nothing
# half-written, and emit rewriting a file only when its content changes.
#   cli_test.sh SPECC SPECS_DIR BAD_DIR WORK_DIR
set -euo pipefail
specc=$1 specs=$2 bad=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
failures=0 checks=0
check() {  # check DESCRIPTION COMMAND...
  checks=$((checks + 1))
  if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1"; failures=$((failures + 1)); fi
}

# emit writes the four files, and a second emit of the same spec touches none of them.
cp "$specs/tiny.json" "$work/tiny.json"
"$specc" emit "$work/tiny.json" --out "$work/out"
check "emit writes the four files" \
  test -s "$work/out/pipelines.cmake" -a -s "$work/out/tiny_graph.cpp" -a -s "$work/out/tiny_graph.json" -a -s "$work/out/tiny_summary.txt"
stamps() { stat -c '%n %y' "$work"/out/*; }
before=$(stamps)
sleep 0.05
"$specc" emit "$work/tiny.json" --out "$work/out"
check "emit of an unchanged spec rewrites nothing" test "$before" = "$(stamps)"
check "emit leaves no temporary files" test "$(ls "$work/out" | wc -l)" -eq 4

# A changed batch size changes every file.
sed 's/"batch": 32/"batch": 16/' "$specs/tiny.json" > "$work/tiny.json"
"$specc" emit "$work/tiny.json" --out "$work/out"
check "emit of a changed spec rewrites" grep -q "N=16" "$work/out/pipelines.cmake"

# A bad spec: exit code 2, exactly the expected line, and nothing written.
before=$(stamps)
for spec in "$bad"/*.json; do
  name=$(basename "$spec" .json)
  cp "$spec" "$work/tiny.json"
  rc=0
  (cd "$work" && "$specc" emit tiny.json --out out 2> "$work/stderr") || rc=$?
  expected=$(sed "s/^$name.json:/tiny.json:/" "$bad/$name.expected")
  check "$name: exit code 2" test "$rc" -eq 2
  check "$name: one line, the expected one" test "$(cat "$work/stderr")" = "$expected"
  check "$name: nothing written" test "$before" = "$(stamps)"
  (cd "$work" && "$specc" emit tiny.json --out fresh 2>/dev/null) || true
  check "$name: no output folder made" test ! -e "$work/fresh"
done

# The spec's name must be its file's name: build targets are named after the file.
cp "$specs/tiny.json" "$work/small.json"
rc=0; "$specc" summary "$work/small.json" 2> "$work/stderr" || rc=$?
check "name mismatch: exit code 2" test "$rc" -eq 2
check "name mismatch: message" grep -qx "$work/small.json: /name: must equal the file name \"small\" (got \"tiny\")" "$work/stderr"

# summary: the seed's totals, and its shapes at 1x224x224.
"$specc" summary "$specs/resnet18.json" > "$work/summary"
check "summary: 11,178,378 parameters" grep -q "Trainable params: *11,178,378" "$work/summary"
check "summary: 0.319 GMAC per image" grep -q "(0.319 GMAC)" "$work/summary"
"$specc" summary "$specs/resnet18.json" --batch 1 --input 1x224x224 > "$work/summary224"
check "summary --input 1x224x224: conv1 (1, 64, 112, 112)" grep -Eq "^conv1 +conv 7x7/2 p3 +\(1, 64, 112, 112\)" "$work/summary224"
check "summary --input 1x224x224: stage4 ends at (1, 512, 7, 7)" grep -Eq "^stage4.1.relu2 +relu +\(1, 512, 7, 7\)" "$work/summary224"

check "--help exits 0" "$specc" --help

# Usage errors: exit code 1.
rc=0; "$specc" summary 2>/dev/null || rc=$?
check "usage: no spec exits 1" test "$rc" -eq 1
rc=0; "$specc" emit "$specs/tiny.json" 2>/dev/null || rc=$?
check "usage: emit without --out exits 1" test "$rc" -eq 1
rc=0; "$specc" summary "$work/missing.json" 2>/dev/null || rc=$?
check "usage: a missing file exits 1" test "$rc" -eq 1

echo "$((checks - failures)) passed, $failures failed"
test "$failures" -eq 0
