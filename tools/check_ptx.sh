#!/usr/bin/env bash
# Checks that every pipeline of every spec in a cuda build (HLNET_TARGET=cuda)
# was compiled and embeds PTX: each library listed in BUILD/*/pipelines.cmake
# must exist as BUILD/lib<name>.a and hold a ".target sm_NN" PTX module.
# Usage: tools/check_ptx.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: check_ptx.sh BUILD_DIR}
total=0 bad=0
for lib in $(sed -n 's/^hlnet_pipeline(\([a-z0-9_]*\) .*/\1/p' "$build"/*/pipelines.cmake | sort -u); do
  total=$((total + 1))
  archive=$build/lib$lib.a
  if [ ! -f "$archive" ]; then
    echo "check_ptx: $lib was not built"; bad=$((bad + 1))
  elif ! strings -n 8 "$archive" | grep -q '\.target sm_[0-9]'; then
    echo "check_ptx: no PTX in $archive"; bad=$((bad + 1))
  fi
done
[ "$total" -gt 0 ] || { echo "check_ptx: no pipelines.cmake under $build"; exit 1; }
echo "check_ptx: $((total - bad)) of $total pipelines carry PTX"
[ "$bad" -eq 0 ]
