#!/usr/bin/env python3
"""The static GPU report of a cuda build (HLNET_TARGET=cuda): no GPU needed.

usage: tools/gpu_report.py BUILD_DIR [--spec NAME] [--ptxas PATH] [--strict]

For every kernel launch of the spec's pipelines: threads per block, blocks
per launch and launches per call (read off the lowered statement,
<library>.stmt, where the fixed shapes make them constants), registers, spills and shared memory (ptxas for
sm_90 under the 64-register cap of Halide's CUDA runtime, as check_ptx.py),
and the theoretical occupancy of an sm_90 SM (2,048 threads, 32 blocks,
65,536 registers allocated per warp in units of 256, 228 KB of shared memory
with 1 KB reserved per block). Then the convolution launches that break the
targets of issue #11: fewer than 128 threads per block or fewer than 132
blocks (one per SM of an H100). --strict exits non-zero on any of them.
"""
import argparse
import glob
import math
import os
import re
import subprocess
import sys
import tempfile

import check_ptx

LAUNCH = re.compile(r'halide_cuda_run\(cuda\[\d+\], "(\w+)", (\d+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+)')


def kernel_resources(ptxas, ptx):
    """{kernel: (registers, spill bytes, static shared bytes)} from ptxas -v for sm_90."""
    with tempfile.NamedTemporaryFile(suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        p = subprocess.run([ptxas, "--gpu-name", "sm_90", "--maxrregcount", str(check_ptx.MAX_REGISTERS), "-v",
                            f.name, "-o", os.devnull], capture_output=True, text=True, check=True)
    out, kernel = {}, None
    for line in p.stderr.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            kernel = m.group(1)
            out[kernel] = [0, 0, 0]
        elif kernel and (m := re.search(r"(\d+) bytes spill stores", line)):
            out[kernel][1] = int(m.group(1))
        elif kernel and (m := re.search(r"Used (\d+) registers", line)):
            out[kernel][0] = int(m.group(1))
            if s := re.search(r"(\d+) bytes smem", line):
                out[kernel][2] = int(s.group(1))
    return out


def launches(stmt):
    """(match, launches per call) for every kernel launch of a .stmt file: a
    launch inside host loops runs once per iteration (their constant extents
    multiplied; a pure var left outside the GPU loops does this)."""
    loops = []  # (indent, extent) of the enclosing host for-loops
    for line in open(stmt, errors="replace"):
        indent = len(line) - len(line.lstrip())
        while loops and loops[-1][0] >= indent:
            loops.pop()
        if f := re.match(r"\s*for \([\w.$]+, [^,]+, (\d+)\) \{", line):
            loops.append((indent, int(f.group(1))))
        elif f := re.match(r"\s*(for|parallel) \(", line):
            loops.append((indent, 0))  # extent not constant: counted once
        elif m := LAUNCH.search(line):
            yield m, math.prod(e for _, e in loops if e) if loops else 1


def occupancy(threads, registers, shared):
    """Theoretical occupancy of an sm_90 SM, 0..1."""
    warps = math.ceil(threads / 32)
    by_threads = 2048 // (warps * 32)
    regs_per_warp = math.ceil(max(registers, 1) * 32 / 256) * 256
    by_registers = 65536 // (regs_per_warp * warps)
    by_shared = (228 * 1024) // (shared + 1024) if shared else 32
    blocks = min(by_threads, by_registers, by_shared, 32)
    return blocks * warps / 64


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--spec", default="resnet18")
    ap.add_argument("--ptxas", default="/usr/local/cuda/bin/ptxas")
    ap.add_argument("--strict", action="store_true")
    a = ap.parse_args()
    listing = os.path.join(a.build, a.spec, "pipelines.cmake")
    if not os.path.exists(listing):
        sys.exit(f"gpu_report: {listing}: no such file (a cuda build of {a.spec}?)")
    names = sorted(set(re.findall(r"^hlnet_pipeline\((\w+) ", open(listing).read(), re.M)))
    print(f"{'pipeline':58}{'kernel':34}{'threads':>8}{'blocks':>8}{'calls':>6}{'regs':>6}{'spill':>6}{'smem':>7}"
          f"{'occ':>6}")
    failures, breaches = [], []
    for name in names:
        stmt = glob.glob(os.path.join(a.build, "**", f"{name}.stmt"), recursive=True)
        lib = os.path.join(a.build, f"lib{name}.a")
        if not stmt or not os.path.exists(lib):
            failures.append(f"{name}: no {name}.stmt or lib{name}.a in {a.build}")
            continue
        resources = {}
        for ptx in check_ptx.ptx_modules(lib):
            resources.update(kernel_resources(a.ptxas, ptx))
        for m, repeats in launches(stmt[0]):
            kernel = m.group(1)
            bx, by, bz, tx, ty, tz, dyn_shared = map(int, m.groups()[1:])
            threads, blocks = tx * ty * tz, bx * by * bz
            regs, spill, static_shared = resources.get(kernel, (0, 0, 0))
            shared = static_shared + dyn_shared
            occ = occupancy(threads, regs, shared)
            short = kernel.replace("_kernel_", "")[:32]
            print(f"{name:58}{short:34}{threads:8}{blocks:8}{repeats:6}{regs:6}{spill:6}{shared:7}{100 * occ:5.0f}%")
            if name.startswith("conv2d") and (threads < 128 or blocks < 132):
                breaches.append(f"{name} {short}: {threads} threads x {blocks} blocks")
            if spill:
                failures.append(f"{name} {short}: {spill} bytes of spills")
    print(f"\ngpu_report: convolution launches under 128 threads per block or 132 blocks: {len(breaches)}")
    for b in breaches:
        print("  " + b)
    for f in failures:
        print("gpu_report:", f)
    sys.exit(1 if failures or (a.strict and breaches) else 0)


if __name__ == "__main__":
    main()
