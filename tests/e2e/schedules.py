#!/usr/bin/env python3
"""Schedule variants end to end on the tiny spec.

usage: schedules.py TINY_TRAIN TINY_PIPELINES_BENCH DATA_DIR

1. tiny_pipelines_bench runs (one timed call, one step: a smoke run, not a
   timing) and writes its CSV, JSON, SVG and best-of file; the manual variant
   of every pipeline is valid, and every variant of the build is reported.
2. tiny_train --schedule V, for every variant built, and with the best-of
   file: the first step's loss is the manual one (same weights, same batch;
   only the order of float sums differs: 1e-4 relative).
3. --schedule with an unknown name fails with exit status 1 and a message.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree


def first_loss(train, data, schedule):
    out = subprocess.run([train, "--data", data, "--schedule", schedule, "--max-steps", "1", "--log-every", "1",
                          "--no-shuffle"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"step 1/\d+, loss ([0-9.]+)", out)
    assert match, f"no step-1 loss in the output of --schedule {schedule}:\n{out}"
    return float(match.group(1))


def main():
    train, bench, data = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {kind: os.path.join(tmp, "tiny." + kind) for kind in ("csv", "json", "svg")}
        best_of = os.path.join(tmp, "best.txt")
        subprocess.run([bench, "--reps", "1", "--steps", "1", "--data", data, "--best-of", best_of,
                        "--csv", paths["csv"], "--json", paths["json"], "--svg", paths["svg"]],
                       check=True, stdout=subprocess.DEVNULL)
        report = json.load(open(paths["json"]))
        schedules = report["schedules"]
        assert schedules[0] == "manual", schedules
        for row in report["pipelines"]:
            assert set(row["schedules"]) == set(schedules), row["library"]
            assert row["schedules"]["manual"]["valid"], row["library"]
        assert [s["schedule"] for s in report["training_step"]] == schedules + ["best-of"]
        ElementTree.parse(paths["svg"])  # well-formed
        with open(paths["csv"]) as csv:
            assert sum(1 for _ in csv) == 1 + len(report["pipelines"]) * len(schedules) + len(schedules) + 1

        reference = first_loss(train, data, "manual")
        for schedule in schedules[1:] + [best_of]:
            loss = first_loss(train, data, schedule)
            assert abs(loss - reference) <= 1e-4 * abs(reference), f"{schedule}: loss {loss}, manual {reference}"
            print(f"--schedule {os.path.basename(schedule)}: step-1 loss {loss} (manual {reference})")

    bad = subprocess.run([train, "--data", data, "--schedule", "NoSuchSchedule", "--max-steps", "1"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "neither a schedule built into this binary" in bad.stderr, bad.stderr
    print(f"schedules {', '.join(schedules)}: bench outputs, step-1 losses and errors as expected")


if __name__ == "__main__":
    main()
