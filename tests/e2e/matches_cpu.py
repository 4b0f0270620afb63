#!/usr/bin/python3
"""The tiny trainer of another build (GPU schedules, aarch64, the other activation layout) against a CPU build's.

usage: matches_cpu.py CPU_TRAINER OTHER_TRAINER DATA_DIR

Both train the first STEPS steps in file order from the same initialisation and
log every batch's loss. Step 1 checks the whole forward pass (loss from the
same weights), steps 2-3 also the backward pass and the update. Float32 sums in
another order differ by ~1e-6 relative at step 1; SGD at lr 0.05 then amplifies
differences about 10x a step (measured: 5e-6 at step 3, 3e-5 at step 4, 7e-3 at
step 5), so only the first three steps are compared, at 1e-4 relative: a 10x
margin over what reordering gives, and far below what a wrong kernel gives
(a wrong gradient changes step 2's loss at the 1e-2 level or more).
"""
import json
import os
import subprocess
import sys
import tempfile

STEPS = 3
RTOL = 1e-4


def batch_losses(trainer, data, workdir):
    log = os.path.join(workdir, os.path.basename(os.path.dirname(os.path.dirname(trainer))) + ".jsonl")
    subprocess.run([trainer, "--data", data, "--no-shuffle", "--max-steps", str(STEPS), "--log-every", "1",
                    "--log", log], check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in open(log)]
    return [r["batch_loss"] for r in rows if r["event"] == "step"]


def main():
    cpu, other, data = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        a, b = batch_losses(cpu, data, tmp), batch_losses(other, data, tmp)
    if len(a) != STEPS or len(b) != STEPS:
        sys.exit(f"FAIL: expected {STEPS} step records, got {len(a)} (CPU) and {len(b)} (other)")
    bad = 0
    for step, (x, y) in enumerate(zip(a, b), 1):
        rel = abs(x - y) / abs(x)
        ok = rel <= RTOL
        bad += not ok
        print(f"step {step}: CPU loss {x:.6f}, other {y:.6f}, relative difference {rel:.1e} {'ok' if ok else 'FAIL'}")
    print(f"{STEPS - bad} passed, {bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
