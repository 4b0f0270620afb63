#!/usr/bin/env python3
"""specs/tiny.json trains on the real Fashion-MNIST, and resumes exactly.

usage: tiny_trains.py TINY_TRAIN DATA_DIR

1. 300 steps (a sixth of an epoch at batch 32): the loss falls and the test
   accuracy over all 10,000 test images rises far above chance (0.10).
2. 20 steps, then --resume to step 40: the checkpoint and its optimizer file
   equal those of an uninterrupted 40-step run byte for byte (the pipelines
   are deterministic, and the run's state is all in the checkpoint).
Standard library only; exit status 0 when both hold. About 10 s on 2 cores
for the CPU build, 5 minutes for the OpenCL build on PoCL.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

STEPS = 300
RESUME_AT, RESUME_TO = 20, 40  # short: on PoCL a step takes 0.7 s
# Measured after 300 steps (the spec's seed 1, 2026-11-27), as the schedules
# changed (each rounds differently, which moves the trajectory): 0.756, 0.774,
# 0.767, 0.706 on the CPU, 0.745 on PoCL; 0.843 after a whole epoch. Chance is
# 0.10; the bound sits 0.1 below the lowest.
MIN_TEST_ACC = 0.60


def train(*args):
    command = [TRAIN, "--data", DATA, "--log-every", "50", *args]
    p = subprocess.run(command, cwd=WORK, capture_output=True, text=True)
    print(p.stdout, end="")
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(command)} exited {p.returncode}\n{p.stderr}")
    return p.stdout


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")
    print(f"ok: {message}")


def main():
    out = train("--max-steps", str(STEPS), "--save", "whole.safetensors", "--log", "whole.jsonl")
    line = re.search(r"^epoch 1, loss ([\d.]+), train acc ([\d.]+), test acc ([\d.]+), time ([\d.]+) sec$", out, re.M)
    check(line is not None, "the run ends with the seed's epoch line")
    steps = [r for r in map(json.loads, open(os.path.join(WORK, "whole.jsonl"))) if r["event"] == "step"]
    check(steps[-1]["loss"] < 0.8 * steps[0]["loss"],
          f"the mean loss falls: {steps[0]['loss']:.3f} after 50 steps, {steps[-1]['loss']:.3f} after {STEPS}")
    test_acc = float(line.group(3))
    check(test_acc >= MIN_TEST_ACC, f"test accuracy {test_acc:.3f} after {STEPS} steps is at least {MIN_TEST_ACC}")

    train("--max-steps", str(RESUME_TO), "--save", "straight.safetensors")
    train("--max-steps", str(RESUME_AT), "--save", "resumed.safetensors")
    train("--max-steps", str(RESUME_TO), "--resume", "resumed.safetensors", "--save", "resumed.safetensors")
    for suffix in ["", ".optimizer"]:
        straight = open(os.path.join(WORK, f"straight{suffix}.safetensors"), "rb").read()
        resumed = open(os.path.join(WORK, f"resumed{suffix}.safetensors"), "rb").read()
        check(straight == resumed, f"resumed at step {RESUME_AT}: the {suffix[1:] or 'model'} file equals "
                                   f"that of a run straight to step {RESUME_TO}, byte for byte")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    TRAIN, DATA = os.path.abspath(sys.argv[1]), sys.argv[2]
    WORK = tempfile.mkdtemp(prefix="hlnet-e2e-")
    main()
