#!/usr/bin/env bash
# PyTorch 2.x from PyPI for bench/compare_pytorch.py, beside Debian's 1.13:
# a venv of its own (.venv-torch), which no test needs. About 3 GB (the PyPI
# wheel brings its CUDA libraries even where only the CPU is used).
#
#   bench/setup_pytorch.sh [VERSION]   (default 2.15.0)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-torch
version=${1:-2.15.0}
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "torch==$version" numpy
"$venv/bin/python" -c 'import torch; print("PyTorch", torch.__version__, "in", torch.__file__)'
# torch.compile's CPU backend compiles C++ against Python's headers.
ls /usr/include/python3*/Python.h >/dev/null 2>&1 || echo "torch.compile needs Python's headers: apt-get install python3-dev"
