#!/usr/bin/env python3
"""--sync-bn: specs/tiny.json on 2 ranks x 16 images trains as 1 rank x 32,
on the real Fashion-MNIST.

From a checkpoint 20 steps into training, 1 and 10 more steps on 1 rank, on 2
ranks with --sync-bn, and on 2 ranks with per-rank batch norm. The float
error is measured, not guessed: it is how far the 1-rank run moves when every
weight it starts from is nudged by one unit in the last place, the size of
one rounding. The 2-rank --sync-bn run, which differs from the 1-rank run only
in the order of its sums, must end within 10 times that of the 1-rank run, in
every parameter and running statistic; per-rank batch norm, a different
computation, must end far outside it (so the comparison can tell).

At batch 256 (tests/runtime/tiny_batch256.json) 10 steps cannot be compared
this way: a rounding tips a ReLU somewhere in the batch within a few steps
(measured: one pre-activation of -1.3e-7 in float64 came out +1.6e-6 in
float32 at step 21), and the 1-ulp nudge moves the run by 1e-2 in 10 steps,
as much as per-rank batch norm does. There the one-step parity tests against
PyTorch on the whole batch stand in.

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

    def steps(binary, start, count, *flags, ranks=1):
        out = f"{start.split('.')[0]}_{count}_steps_{'sync' if flags else ranks}.safetensors"
        train(binary, "--load", start, "--max-steps", str(count), "--save", out, *flags, ranks=ranks)
        return os.path.join(work, out)

    for count in (1, 10):
        one = steps(a.single, "start.safetensors", count)
        nudged = steps(a.single, "nudged.safetensors", count)
        synced = steps(a.train, "start.safetensors", count, "--sync-bn", ranks=2)
        float_error, where = largest_difference(one, nudged)
        check(float_error > 0 and (count > 1 or float_error < 1e-5),
              f"the float error after {count} step(s), measured: {float_error:.2e} ({where})")
        tolerance = 10 * float_error
        diff, where = largest_difference(one, synced)
        check(diff <= tolerance, f"2 ranks with --sync-bn end where 1 rank does after {count} step(s): "
                                 f"{diff:.2e} ({where}) <= {tolerance:.2e}")
        if float_error < 1e-4:  # below this, a different computation shows
            per_rank = steps(a.train, "start.safetensors", count, ranks=2)
            diff, where = largest_difference(one, per_rank)
            check(diff > 100 * tolerance, f"and per-rank batch norm does not: {diff:.2e} ({where})")
    print("sync_bn_test: all passed")


if __name__ == "__main__":
    main()
