#!/usr/bin/env bash
# GPU checks for a lent machine (the `device` tool): nothing is built there.
#
#   tools/gpu_check.sh pack [BUILD_CUDA]   here: gather what the GPU run needs into
#                                          BUILD_CUDA/gpu_bundle (default build-cuda)
#   tools/gpu_check.sh run BUNDLE          there: op tests on CUDA, the step bench,
#                                          PyTorch on the same card (FP32, TF32, AMP),
#                                          every pipeline beside cuDNN, one timed
#                                          ResNet-18 epoch, the NCCL smoke test,
#                                          then (if packed) the pipelines in the
#                                          autoscheduled variants
#
# The bundle holds the cuda build's op tests, resnet18_train, resnet18_bench and
# resnet18_pipelines_bench, resnet18_graph.json, the Fashion-MNIST IDX files (the
# lent machine has no dataset), the Python tools and the Open MPI libraries the
# trainer links (the lent machine has none); carry it with the device tool's
# `carry`. NCCL (about 200 MB) is not packed: the run takes the lent machine's
# own, from its PyTorch (see cuda_lib_dir). A pipelines bench built with HLNET_SCHEDULES="manual;Li2018;Anderson2021"
# in HLNET_VARIANTS_BUILD (default build-cuda-sched) is packed too when present.
# Each check runs under a time limit (all of them: under 10 minutes). Not cuDNN (about 480 MB): the pipelines bench's cuDNN column
# loads the lent machine's own libcudnn.so.9 (see cuda_lib_dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

pack() {
  local build=${1:-$root/build-cuda} bundle
  bundle=$build/gpu_bundle
  rm -rf "$bundle"; mkdir -p "$bundle/data" "$bundle/tools" "$bundle/bench"
  cp "$build/tests/ops/hlnet_op_tests" "$build/resnet18/resnet18_train" "$build/resnet18/resnet18_bench" \
     "$build/resnet18/resnet18_pipelines_bench" "$build/resnet18/resnet18_graph.json" "$bundle/"
  local variants=${HLNET_VARIANTS_BUILD:-$root/build-cuda-sched}/resnet18/resnet18_pipelines_bench
  [ -x "$variants" ] && cp "$variants" "$bundle/resnet18_pipelines_bench_variants"
  git -C "$root" describe --always --dirty > "$bundle/COMMIT"
  mkdir -p "$bundle/lib"
  ldd "$build/resnet18/resnet18_train" | awk '/libmpi|libopen-|libhwloc|libevent/ {print $3}' | xargs -r cp -L -t "$bundle/lib"
  cp /usr/share/datasets/fashion-mnist/*.gz "$bundle/data/"
  cp "$root/tools/torch_reference.py" "$bundle/tools/"
  cp "$root/bench/compare_pytorch.py" "$bundle/bench/"
  du -sh "$bundle"
}

# The folder of library FILE on this machine: the CUDA toolkit's, else the one
# in PyTorch's wheel of MODULE (e.g. nvidia.cudnn: site-packages/nvidia/cudnn/lib).
cuda_lib_dir() {  # FILE MODULE
  local dir
  for dir in /usr/local/cuda/lib64 \
             $(python3 -c "import $2 as m; print(*[p + '/lib' for p in m.__path__])" 2>/dev/null); do
    if [ -e "$dir/$1" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

# One section of the run: a heading, then CMD under a time limit, so that a
# hang or a crash in one check leaves the others their time.
section() {
  local limit=$1 title=$2; shift 2
  echo; echo "== $title"
  local t0=$SECONDS rc=0
  timeout "$limit" "$@" || rc=$?
  [ "$rc" -eq 0 ] || echo "!! $title: exit $rc$( [ "$rc" -eq 124 ] && echo " (stopped after $limit s)")"
  echo "-- $title: $((SECONDS - t0)) s"
}

run() {
  local bundle=${1:?usage: gpu_check.sh run BUNDLE} cudnn=""
  cd "$bundle"
  echo "hlnet $(cat COMMIT 2>/dev/null || echo '(commit unknown)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  python3 -c 'import torch; print("PyTorch", torch.__version__, "cuDNN", torch.backends.cudnn.version())' || true
  cudnn=$(cuda_lib_dir libcudnn.so.9 nvidia.cudnn) || echo "no libcudnn.so.9 in /usr/local/cuda/lib64 or python3's nvidia.cudnn: no cuDNN column"
  nccl=$(cuda_lib_dir libnccl.so.2 nvidia.nccl) || echo "no libnccl.so.2 in /usr/local/cuda/lib64 or python3's nvidia.nccl: the trainer will not start"
  export LD_LIBRARY_PATH=$PWD/lib:$nccl:$cudnn${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

  section 90 "op tests on CUDA" ./hlnet_op_tests
  section 60 "the ResNet-18 step (resnet18_bench)" ./resnet18_bench --steps 20 --warmup 3 --data data
  mkdir -p resnet18 && cp resnet18_bench resnet18_graph.json resnet18/
  section 120 "hlnet and PyTorch, same network, same batch, same card" \
    python3 bench/compare_pytorch.py resnet18 --device cuda --steps 20 --warmup 3 --data data
  section 120 "every ResNet-18 pipeline beside cuDNN at the same shapes" \
    ./resnet18_pipelines_bench --steps 0
  section 150 "one ResNet-18 epoch (60,000 images, batch 256, 96x96), the seed's line" \
    ./resnet18_train --data data --epochs 1 --log-every 50
  # One process averaging its gradients over itself through NCCL
  # (HLNET_NCCL_ONE_RANK): the NCCL path on device memory, which must change
  # nothing, so the checkpoints of 20 steps are byte for byte those without.
  section 120 "NCCL smoke test: one rank through ncclAllReduce trains as without it" bash -c '
    ./resnet18_train --data data --max-steps 20 --log-every 10 --save plain.safetensors &&
    HLNET_NCCL_ONE_RANK=1 ./resnet18_train --data data --max-steps 20 --log-every 10 --save nccl.safetensors \
      > nccl.log && grep "by NCCL" nccl.log && cmp plain.safetensors nccl.safetensors &&
    echo "NCCL smoke test: passed, the checkpoints are identical"'
  if [ -x resnet18_pipelines_bench_variants ]; then
    section 100 "the pipelines in manual, Li2018 and Anderson2021" ./resnet18_pipelines_bench_variants --steps 0
  fi
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
