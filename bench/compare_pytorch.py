#!/usr/bin/python3
"""hlnet against PyTorch: the same network, from the same spec, at the same batch.

Runs the spec's hlnet benchmark (build/NAME/NAME_bench) and then PyTorch's
training step (forward, cross-entropy, backward, SGD) on the module that
tools/torch_reference.py builds from build/NAME/NAME_graph.json, in float32,
and prints images/s side by side with the CPU model, its vector extensions
and the FMA peak. Both time the median step after a warm-up, on real
Fashion-MNIST batches. A benchmark: it asserts nothing.

On the CPU, PyTorch runs the ways a user would run it: eager in NCHW, eager in
channels_last, and (PyTorch 2.x) torch.compile in channels_last; and each
PyTorch given by --python measures in a process of its own. The default is
Debian's PyTorch 1.13 (/usr/bin/python3) and, when bench/setup_pytorch.sh has
installed it, PyTorch 2.x from PyPI (.venv-torch/bin/python).

On a GPU (--device cuda) PyTorch runs three ways: FP32 with TF32 off (the
fair baseline for hlnet's FP32 pipelines), FP32 with TF32 on, and AMP (bfloat16
autocast), each synchronised inside the timed region.

--profile adds one more eager PyTorch step under torch.profiler and prints
where its time goes (convolutions, batch norm, ...), to read beside hlnet's
per-pipeline table (NAME_pipelines_bench).

usage: bench/compare_pytorch.py BUILD/NAME [--steps N] [--warmup N] [--threads N] [--device cpu|cuda]
                                [--python PYTHON]... [--profile]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PYPI_TORCH = os.path.join(ROOT, ".venv-torch", "bin", "python")
DEBIAN_TORCH = "/usr/bin/python3"  # python3-torch, PyTorch 1.13


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


def torch_modes(torch, device):
    if device == "cuda":
        return ["fp32", "tf32", "amp"]
    return ["eager", "channels_last"] + (["compile"] if hasattr(torch, "compile") else [])


def torch_step_ms(graph, steps, warmup, data, device, mode, profile=False):
    """Median ms of PyTorch's training step in `mode` (torch_modes)."""
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import torch_reference as ref

    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.benchmark = True
    layout = torch.channels_last if mode in ("channels_last", "compile") else torch.contiguous_format
    net = ref.Net(graph).to(device).to(memory_format=layout)
    model = torch.compile(net) if mode == "compile" else net
    if mode == "compile":
        warmup = max(warmup, 2)  # the first steps compile forward and backward
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
        x = ref.input_batch(graph, images, indices, torch.float32).contiguous(memory_format=layout)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=mode == "amp"):
            loss = F.cross_entropy(model(x), labels[indices].long())
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


def measure_torch(a, graph):
    """In the Python that runs this: every mode; the last line is the result as JSON."""
    import torch
    torch.set_num_threads(a.threads)
    ms = {}
    for mode in torch_modes(torch, a.device):
        print(f"PyTorch {torch.__version__} {mode} ...", flush=True)
        ms[mode] = torch_step_ms(graph, a.steps, a.warmup, a.data, a.device, mode,
                                 a.profile and mode in ("eager", "fp32"))
    device = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU, {a.threads} threads"
    # The vector ISA PyTorch's CPU kernels chose (ATEN_CPU_CAPABILITY and
    # ONEDNN_MAX_CPU_ISA cap it, e.g. at avx2 on an AVX-512 machine).
    isa = (torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu")
           else os.environ.get("ATEN_CPU_CAPABILITY", "default"))
    label = torch.__version__ if a.device == "cuda" else f"{torch.__version__} ({isa})"
    print("RESULT " + json.dumps({"version": label, "device": device, "ms": ms}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec_build", help="the spec's build folder, e.g. build/resnet18")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--python", action="append",
                   help="a Python with PyTorch to measure (repeatable; default: Debian's /usr/bin/python3, "
                        "and .venv-torch's if present)")
    p.add_argument("--profile", action="store_true", help="break PyTorch's eager FP32 step down by operator kind")
    p.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)  # the child's side
    a = p.parse_args()
    name = os.path.basename(os.path.normpath(a.spec_build))
    graph = json.load(open(os.path.join(a.spec_build, f"{name}_graph.json")))
    if a.torch_only:
        return measure_torch(a, graph)

    os.environ.setdefault("HL_NUM_THREADS", str(a.threads))
    hl, machine = hlnet_step_ms(os.path.join(a.spec_build, f"{name}_bench"), a.steps, a.warmup, a.data)
    pythons = a.python or [p for p in (DEBIAN_TORCH, PYPI_TORCH) if os.path.exists(p)]
    rows, where = [], ""
    for python in pythons:
        command = [python, os.path.abspath(__file__), a.spec_build, "--torch-only", "--steps", str(a.steps),
                   "--warmup", str(a.warmup), "--threads", str(a.threads), "--data", a.data, "--device", a.device]
        run = subprocess.run(command + (["--profile"] if a.profile else []), capture_output=True, text=True)
        if run.returncode != 0:  # one PyTorch that fails (not installed, say) leaves the others' rows
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"compare_pytorch: skipping {python}: {last}", file=sys.stderr)
            continue
        out = run.stdout
        print(out[:out.rfind("RESULT ")].rstrip())
        result = json.loads(out[out.rfind("RESULT ") + len("RESULT "):])
        rows += [(f"PyTorch {result['version']} {mode}", ms) for mode, ms in result["ms"].items()]
        where = result["device"]

    batch = graph["batch"]
    print(f"\n{name}, batch {batch}, {where}, median of {a.steps} steps after {a.warmup} warm-up "
          f"(torch.compile: at least 2)")
    if machine:
        print(machine)
    width = max(len(label) for label, _ in rows + [("hlnet", 0)]) + 2
    print(f"{'':{width}}{'ms/step':>12}{'images/s':>12}{'hlnet speed-up':>16}")
    print(f"{'hlnet':{width}}{hl:12.1f}{batch * 1000 / hl:12.1f}")
    for label, ms in rows:
        print(f"{label:{width}}{ms:12.1f}{batch * 1000 / ms:12.1f}{ms / hl:15.2f}x")


if __name__ == "__main__":
    main()
