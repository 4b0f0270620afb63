#!/usr/bin/env bash
# Data-parallel against one process on the same cores: NAME_bench of a build
# for 1 rank on T threads, then of a build for R ranks on T/R threads each
# (per-rank batch norm, then --sync-bn), interleaved for ROUNDS rounds so that
# a change in the machine's load reaches every configuration alike. Prints
# each run's step line and rank 0's communication line; read the medians.
#
#   bench/data_parallel.sh BUILD_1RANK BUILD_RRANKS [SPEC] [ROUNDS] [STEPS]
#     e.g. bench/data_parallel.sh build build-2ranks resnet18 2 5
#
# Environment: THREADS (default nproc), RANKS (default 2), MPIRUN (default mpirun).
# A benchmark: it prints numbers and never fails on them.
set -euo pipefail
one=${1:?usage: data_parallel.sh BUILD_1RANK BUILD_RRANKS [SPEC] [ROUNDS] [STEPS]}
many=${2:?usage: data_parallel.sh BUILD_1RANK BUILD_RRANKS [SPEC] [ROUNDS] [STEPS]}
spec=${3:-resnet18} rounds=${4:-2} steps=${5:-5}
threads=${THREADS:-$(nproc)} ranks=${RANKS:-2} mpirun=${MPIRUN:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

run() {  # title, command...
  echo "== $1"
  "${@:2}" --steps "$steps" --warmup 2 | grep -E "^machine|images/s|communicating" || echo "!! $1 failed"
}

for round in $(seq "$rounds"); do
  echo "-- round $round of $rounds, $(date -u '+%Y-%m-%d %H:%M UTC')"
  run "1 rank x $threads threads" env HL_NUM_THREADS="$threads" "$one/$spec/${spec}_bench"
  for flag in "" --sync-bn; do
    run "$ranks ranks x $((threads / ranks)) threads ${flag:-(per-rank batch norm)}" \
      "$mpirun" --oversubscribe --bind-to none -np "$ranks" -x HL_NUM_THREADS="$((threads / ranks))" \
      "$many/$spec/${spec}_bench" $flag
  done
done
