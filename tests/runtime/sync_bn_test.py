#!/usr/bin/env python3
"""--sync-bn: specs/tiny.json on 2 ranks x 16 images trains as 1 rank x 32,
on the real Fashion-MNIST.

From a checkpoint 20 steps into training, 10 more steps on 1 rank, on 2
ranks with --sync-bn, and on 2 ranks with per-rank batch norm. The float
error is measured, not guessed: it is how far the 1-rank run moves when every
weight it starts from is nudged by one unit in the last place, the size of
one rounding. The 2-rank --sync-bn run, which differs from the 1-rank run only
in the order of its sums, must end within 10 times that of the 1-rank run, in
every parameter and running statistic; per-rank batch norm, a different
computation, must end far outside it (so the comparison can tell).

usage: sync_bn_test.py --mpirun MPIRUN --train TRAIN_2RANKS --single TRAIN_1RANK --data DIR
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from torch_reference import read_safetensors, write_safetensors  # noqa: E402

STEPS = 10


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")
    print(f"ok: {message}")


def largest_difference(path_a, path_b):
    """max |a - b| over every float tensor of two checkpoints, and where."""
    a, _ = read_safetensors(path_a)
    b, _ = read_safetensors(path_b)
    worst = (0.0, "")
    for name, t in a.items():
        if t.is_floating_point():
            worst = max(worst, ((t.double() - b[name].double()).abs().max().item(), name))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--train", required=True, help="tiny_train built for 2 ranks")
    ap.add_argument("--single", required=True, help="tiny_train built for 1 rank")
    ap.add_argument("--data", required=True)
    a = ap.parse_args()
    a.train, a.single, a.data = map(os.path.abspath, (a.train, a.single, a.data))
    work = tempfile.mkdtemp(prefix="hlnet-sync-bn-")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", HL_NUM_THREADS="1")

    def run(command):
        p = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            sys.exit(f"FAIL: {' '.join(command)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")

    def train(binary, *flags, ranks=1):
        launcher = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(ranks)] if ranks > 1 else []
        run(launcher + [binary, "--data", a.data, "--log-every", "100000", *flags])

    # Past the first steps from the initialisation, whose batch statistics
    # are the least well conditioned.
    train(a.single, "--max-steps", "20", "--save", "start.safetensors")
    tensors, metadata = read_safetensors(os.path.join(work, "start.safetensors"))
    for name, t in tensors.items():
        if t.is_floating_point() and "running_" not in name:
            tensors[name] = torch.nextafter(t, torch.full_like(t, float("inf")))
    write_safetensors(os.path.join(work, "nudged.safetensors"), tensors, metadata)

    def ten_steps(binary, start, out, *flags, ranks=1):
        train(binary, "--load", start, "--max-steps", str(STEPS), "--save", out, *flags, ranks=ranks)
        return os.path.join(work, out)

    one = ten_steps(a.single, "start.safetensors", "one.safetensors")
    nudged = ten_steps(a.single, "nudged.safetensors", "nudged_one.safetensors")
    synced = ten_steps(a.train, "start.safetensors", "sync.safetensors", "--sync-bn", ranks=2)
    per_rank = ten_steps(a.train, "start.safetensors", "per_rank.safetensors", ranks=2)

    float_error, where = largest_difference(one, nudged)
    check(0 < float_error < 1e-3, f"the float error after {STEPS} steps, measured: {float_error:.2e} ({where})")
    tolerance = 10 * float_error
    diff, where = largest_difference(one, synced)
    check(diff <= tolerance, f"2 ranks x 16 with --sync-bn end where 1 rank x 32 does: {diff:.2e} ({where}) "
                             f"<= {tolerance:.2e}")
    diff, where = largest_difference(one, per_rank)
    check(diff > 100 * tolerance, f"and per-rank batch norm does not: {diff:.2e} ({where})")
    print("sync_bn_test: all passed")


if __name__ == "__main__":
    main()
