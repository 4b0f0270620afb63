#!/usr/bin/python3
"""hlnet against PyTorch: the same network, from the same spec, at the same batch.

Runs the spec's hlnet benchmark (build/NAME/NAME_bench) and then PyTorch's
training step (forward, cross-entropy, backward, SGD) on the module that
tools/torch_reference.py builds from build/NAME/NAME_graph.json, in float32 on
the CPU, and prints images/s side by side. Both time the median step after a
warm-up, on real Fashion-MNIST batches. A benchmark: it asserts nothing.

On a GPU (--device cuda) PyTorch runs three ways: FP32 with TF32 off (the
fair baseline for hlnet's FP32 pipelines), FP32 with TF32 on, and AMP (bfloat16
autocast), each synchronised inside the timed region.

--profile adds one more PyTorch step under torch.profiler and prints where its
time goes (convolutions, batch norm, ...), to read beside hlnet's per-pipeline
table (NAME_pipelines_bench).

usage: bench/compare_pytorch.py BUILD/NAME [--steps N] [--warmup N] [--threads N] [--device cpu|cuda] [--profile]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_reference as ref  # noqa: E402


def hlnet_step_ms(bench, steps, warmup, data):
    """The median step in ms, and the bench's machine line (CPU builds: model, vector extensions, FMA peak)."""
    out = subprocess.run([bench, "--steps", str(steps), "--warmup", str(warmup), "--data", data],
                         check=True, capture_output=True, text=True).stdout
    print(out.rstrip())
    machine = re.search(r"^machine: .*$", out, re.M)
    return float(re.search(r"step\s+([\d.]+) ms", out).group(1)), machine.group(0) if machine else ""


# Operator kinds of the profile, matched in order against aten operator names.
OP_KINDS = [("convolution", ("conv",)), ("batch norm", ("batch_norm",)), ("relu", ("relu", "threshold")),
            ("max pool", ("max_pool",)), ("add (residual, gradient sums, SGD)", ("add",))]


def print_profile(profiler):
    """PyTorch's own time per operator kind in one step (self CPU time, so nothing counts twice)."""
    totals = {}
    for e in profiler.key_averages():
        kind = next((k for k, keys in OP_KINDS if any(key in e.key for key in keys)), "other")
        totals[kind] = totals.get(kind, 0.0) + e.self_cpu_time_total / 1000
    whole = sum(totals.values())
    print("\nPyTorch profile of one more step (self CPU time):")
    for kind, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:38}{ms:10.1f} ms {100 * ms / whole:5.1f}%")


def torch_step_ms(graph, steps, warmup, data, device="cpu", mode="fp32", profile=False):
    """Median ms of PyTorch's training step; mode is fp32, tf32 or amp (GPU only)."""
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.benchmark = True
    net = ref.Net(graph).to(device)
    images, labels = ref.load_split(data, "train")
    images, labels = images.to(device), labels.to(device)
    batch = graph["batch"]
    t = graph["training"]
    opt = torch.optim.SGD(net.parameters(), lr=t["lr"], momentum=t["momentum"], weight_decay=t["weight_decay"])
    net.train()
    times = []

    def step(s):
        indices = (torch.arange(s * batch, (s + 1) * batch) % images.shape[0]).to(device)
        start = time.perf_counter()
        x = ref.input_batch(graph, images, indices, torch.float32)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=mode == "amp"):
            loss = F.cross_entropy(net(x), labels[indices].long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1000

    for s in range(warmup + steps):
        ms = step(s)
        if s >= warmup:
            times.append(ms)
    if profile:
        with torch.profiler.profile() as prof:
            step(warmup + steps)
        print_profile(prof)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec_build", help="the spec's build folder, e.g. build/resnet18")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--profile", action="store_true", help="break PyTorch's FP32 step down by operator kind")
    a = p.parse_args()
    name = os.path.basename(os.path.normpath(a.spec_build))
    graph = json.load(open(os.path.join(a.spec_build, f"{name}_graph.json")))
    torch.set_num_threads(a.threads)
    os.environ.setdefault("HL_NUM_THREADS", str(a.threads))

    hl, machine = hlnet_step_ms(os.path.join(a.spec_build, f"{name}_bench"), a.steps, a.warmup, a.data)
    modes = ["fp32", "tf32", "amp"] if a.device == "cuda" else ["fp32"]
    pt = {m: torch_step_ms(graph, a.steps, a.warmup, a.data, a.device, m, a.profile and m == "fp32") for m in modes}
    batch = graph["batch"]
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU, {a.threads} threads"
    print(f"\n{name}, batch {batch}, {where}, median of {a.steps} steps after {a.warmup} warm-up")
    if machine:
        print(machine)
    print(f"{'':22}{'ms/step':>12}{'images/s':>12}{'hlnet speed-up':>16}")
    print(f"{'hlnet':22}{hl:12.1f}{batch * 1000 / hl:12.1f}")
    for m, ms in pt.items():
        label = f"PyTorch {torch.__version__} {m}"
        print(f"{label:22}{ms:12.1f}{batch * 1000 / ms:12.1f}{ms / hl:15.2f}x")


if __name__ == "__main__":
    main()
