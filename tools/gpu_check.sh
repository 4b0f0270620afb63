#!/usr/bin/env bash
# GPU checks for a lent machine (the `device` tool): nothing is built there.
#
#   tools/gpu_check.sh pack [BUILD_CUDA]   here: gather what the GPU run needs into
#                                          BUILD_CUDA/gpu_bundle (default build-cuda)
#   tools/gpu_check.sh run BUNDLE          there: op tests on CUDA, a timed ResNet-18
#                                          epoch, PyTorch on the same card, every
#                                          pipeline beside cuDNN; a table last
#
# The bundle holds the cuda build's op tests, resnet18_train, resnet18_bench and
# resnet18_pipelines_bench, resnet18_graph.json, the Fashion-MNIST IDX files (the
# lent machine has no dataset) and the Python tools; carry it with the device
# tool's `carry`. Not cuDNN (about 480 MB): the pipelines bench's cuDNN column
# loads the lent machine's own libcudnn.so.9 (see cudnn_dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

pack() {
  local build=${1:-$root/build-cuda} bundle
  bundle=$build/gpu_bundle
  rm -rf "$bundle"; mkdir -p "$bundle/data" "$bundle/tools" "$bundle/bench"
  cp "$build/tests/ops/hlnet_op_tests" "$build/resnet18/resnet18_train" "$build/resnet18/resnet18_bench" \
     "$build/resnet18/resnet18_pipelines_bench" "$build/resnet18/resnet18_graph.json" "$bundle/"
  cp /usr/share/datasets/fashion-mnist/*.gz "$bundle/data/"
  cp "$root/tools/torch_reference.py" "$bundle/tools/"
  cp "$root/bench/compare_pytorch.py" "$bundle/bench/"
  du -sh "$bundle"
}

# The folder of a libcudnn.so.9 on this machine: the CUDA toolkit's, else the
# one in PyTorch's wheel (nvidia-cudnn-cu13: site-packages/nvidia/cudnn/lib).
cudnn_dir() {
  local dir
  for dir in /usr/local/cuda/lib64 \
             $(python3 -c 'import nvidia.cudnn as m; print(*[p + "/lib" for p in m.__path__])' 2>/dev/null); do
    if [ -e "$dir/libcudnn.so.9" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

run() {
  local bundle=${1:?usage: gpu_check.sh run BUNDLE} out
  cd "$bundle"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "== op tests on CUDA"
  ./hlnet_op_tests | tail -n 3
  echo "== one ResNet-18 epoch (60,000 images, batch 256, 96x96)"
  out=$(./resnet18_train --data data --epochs 1 --log-every 50 | tail -n 1)
  echo "$out"
  echo "== hlnet and PyTorch, same network, same batch, same card"
  mkdir -p resnet18 && cp resnet18_bench resnet18_graph.json resnet18/
  python3 bench/compare_pytorch.py resnet18 --device cuda --steps 20 --warmup 3 --data data
  echo "== every ResNet-18 pipeline, and cuDNN at the same shapes (no step timing)"
  local cudnn
  if cudnn=$(cudnn_dir); then
    LD_LIBRARY_PATH=$cudnn${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ./resnet18_pipelines_bench --steps 0 \
      || echo "resnet18_pipelines_bench failed (exit $?)"
  else
    echo "no libcudnn.so.9 in /usr/local/cuda/lib64 or python3's nvidia.cudnn: pipelines bench skipped"
  fi
  echo "== epoch: $out"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
