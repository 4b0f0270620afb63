#!/usr/bin/python3
"""PyTorch reference for hlnet: the same network, checkpoints and training step.

Builds the PyTorch module of any spec from the expanded graph that specc writes
(build/NAME/NAME_graph.json), its modules nested by the dots of hlnet's node
names, so that state_dict() keys are hlnet's checkpoint tensor names
("stage2.0.conv1.weight"); reads and writes hlnet's safetensors checkpoints
(a small reader and writer below: no safetensors package needed); and runs
hlnet's training step: input pipeline, forward, softmax cross-entropy, backward,
SGD, batch-norm running statistics.

commands:
  parity --graph G --dump EXE [--data DIR]
      One training step of hlnet (EXE: tests/runtime/parity_dump.cpp linked
      with the spec's graph) against PyTorch in float64, from the same
      checkpoint and batch; compares every tensor by name. Exit 0: all agree.
      A graph built for R ranks runs EXE under --mpirun with R processes and
      compares with PyTorch DDP's semantics: each rank's batch norm over its
      own slice, gradients averaged, rank 0's running statistics.
  eval --graph G --checkpoint FILE [--data DIR]
      Test accuracy of an hlnet checkpoint, loaded with
      load_state_dict(strict=True) and evaluated by PyTorch.

Runs with Debian's /usr/bin/python3 and python3-torch (1.13).
"""
import argparse
import copy
import ctypes
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"

# ---- safetensors ----------------------------------------------------------------
# 8-byte little-endian header size, a JSON header {name: {dtype, shape,
# data_offsets}} plus "__metadata__" (strings), then the little-endian data.

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    """(tensors by name, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        begin, end = (8 + n + o for o in entry["data_offsets"])
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[entry["dtype"]])
        tensors[name] = flat.reshape(entry["shape"])
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    """Writes atomically (temporary file, then rename), as hlnet does."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        blob = ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())  # no numpy needed
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keeps the data 8-byte aligned
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path, net, spec_name):
    """An hlnet model checkpoint: the state_dict, float32 (int64 counters)."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    write_safetensors(path, state, {"format": "hlnet", "spec": spec_name})


def load_checkpoint(path, net):
    tensors, _ = read_safetensors(path)
    net.load_state_dict(tensors, strict=True)  # the point of hlnet's naming: no renaming, nothing left over


# ---- the network ------------------------------------------------------------------

def make_module(node):
    """The PyTorch module of a node with parameters (MXNet Gluon's defaults, as the seed)."""
    a = node["attrs"]
    if node["op"] == "conv":
        return nn.Conv2d(a["in_channels"], a["out_channels"], a["kernel"], a["stride"], a["padding"], bias=a["bias"])
    if node["op"] == "batchnorm":
        return nn.BatchNorm2d(a["num_features"], eps=a["eps"], momentum=a["momentum"])
    if node["op"] == "dense":
        return nn.Linear(a["in_features"], a["out_features"], bias=a["bias"])
    return None


# The nodes without parameters, by op: (node attrs, inputs) -> output.
FUNCTIONS = {
    "relu": lambda a, x: F.relu(x),
    "maxpool": lambda a, x: F.max_pool2d(x, a["kernel"], a["stride"], a["padding"]),
    "global_avgpool": lambda a, x: x.mean((2, 3), keepdim=True),
    "add": lambda a, x, y: x + y,
}


class Net(nn.Module):
    """The spec's network: the graph's nodes in order, each reading its inputs by name."""

    def __init__(self, graph):
        super().__init__()
        self.nodes = graph["nodes"]
        self.output = graph["output"]
        for node in self.nodes:
            module = make_module(node)
            if module is not None:
                self._place(node["name"], module)
        self._check_names(graph)

    def _place(self, dotted, module):
        """Adds `module` at "a.b.c", making empty containers for "a" and "a.b"."""
        *path, leaf = dotted.split(".")
        parent = self
        for part in path:
            if part not in parent._modules:
                parent.add_module(part, nn.Module())
            parent = parent._modules[part]
        parent.add_module(leaf, module)

    def _check_names(self, graph):
        ours = {k: list(v.shape) for k, v in self.state_dict().items() if not k.endswith(".num_batches_tracked")}
        theirs = {t["name"]: t["shape"] for t in graph["params"] + graph["states"]}
        if ours != theirs:
            raise SystemExit(f"the PyTorch module and {graph['name']}_graph.json disagree on tensors: "
                             f"{sorted(set(ours.items()) ^ set(theirs.items()))}")

    def forward(self, x):
        values = {}
        for node in self.nodes:
            name, op = node["name"], node["op"]
            inputs = [values[i] for i in node["inputs"]]
            if op == "input":
                values[name] = x
            elif op in ("conv", "batchnorm", "dense"):
                value = inputs[0].flatten(1) if op == "dense" else inputs[0]
                values[name] = self.get_submodule(name)(value)
            else:
                values[name] = FUNCTIONS[op](node["attrs"], *inputs)
        return values[self.output]


# ---- data ---------------------------------------------------------------------------

def read_idx(path):
    """An IDX file of unsigned bytes (raw or .gz) as a uint8 tensor."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, rank = struct.unpack_from(">HBB", data, 0)
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack_from(f">{rank}I", data, 4)
    return torch.frombuffer(bytearray(data[4 + 4 * rank:]), dtype=torch.uint8).reshape(dims)


def load_split(data_dir, prefix):
    def find(name):
        path = os.path.join(data_dir, name)
        return path if os.path.exists(path) else path + ".gz"
    return read_idx(find(f"{prefix}-images-idx3-ubyte")), read_idx(find(f"{prefix}-labels-idx1-ubyte"))


def input_batch(graph, images, indices, dtype):
    """hlnet's input pipeline: gather, bilinear resize (half-pixel centres), scale to [0, 1]."""
    x = images[indices].to(dtype).unsqueeze(1)
    _, height, width = graph["input"]
    if x.shape[2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x / 255


# ---- commands -------------------------------------------------------------------------

def reference_step(net, graph, images, labels, indices, ranks=1, sync_bn=False):
    """What parity_dump.cpp dumps, computed by PyTorch in float64: with
    ranks > 1, one replica per rank on its slice of the batch (batch norm
    over the slice), the mean of their losses and gradients, rank 0's
    slice, logits and running statistics. With sync_bn, batch norm over the
    whole batch (SyncBatchNorm): one model on all of it, rank 0's slice of
    its logits."""
    net = net.double()
    x = input_batch(graph, images, indices, torch.float64)
    y = labels[indices].long()
    xs, ys = x.chunk(ranks), y.chunk(ranks)
    out = {"input": xs[0]}
    net.eval()
    with torch.no_grad():
        out["eval.logits"] = net(xs[0])
    if sync_bn:
        ranks, xs, ys = 1, [x], [y]
    replicas = [net] + [copy.deepcopy(net) for _ in range(ranks - 1)]
    losses, correct = [], 0
    for replica, xr, yr in zip(replicas, xs, ys):
        replica.train()
        logits = replica(xr)
        losses.append(F.cross_entropy(logits, yr))
        correct += (logits.argmax(1) == yr).sum()
        if replica is net:
            out["train.logits"] = logits.detach()[:len(indices) // graph.get("ranks", 1)]
        (losses[-1] / ranks).backward()
    out["train.loss"], out["train.correct"] = (sum(losses) / ranks).detach(), correct
    for name, p in net.named_parameters():  # the all-reduce: replica gradients summed, each already / ranks
        for replica in replicas[1:]:
            p.grad += dict(replica.named_parameters())[name].grad
    out.update({f"grad.{k}": p.grad.clone() for k, p in net.named_parameters()})
    t = graph["training"]
    torch.optim.SGD(net.parameters(), lr=t["lr"], momentum=t["momentum"], weight_decay=t["weight_decay"]).step()
    out.update({f"param.{k}": p.detach().clone() for k, p in net.named_parameters()})
    out.update({f"state.{k}": b.clone() for k, b in net.named_buffers() if not k.endswith("num_batches_tracked")})
    return out


def tolerance(name):
    """Largest accepted max|hlnet - torch| / scale (see scale()) for a dumped tensor.

    hlnet computes in float32, the reference in float64. Each bound is about
    ten times the largest error measured on specs/tiny.json (in brackets)."""
    if name == "input":
        return 1e-6   # one bilinear tap or copy and a scale [3e-8]
    if name == "train.loss":
        return 1e-5   # a mean of log-sum-exps [4e-7]
    if name.startswith("state."):
        return 5e-5   # 0.9 old + 0.1 batch mean or variance over N*H*W values [4e-6]
    if name.endswith("logits"):
        return 2e-4   # sums of thousands of products through every layer [2e-5]
    if name.startswith("grad."):
        return 1e-3   # batch-norm backward subtracts near-equal sums, which amplifies rounding [7e-5]
    if name.startswith("param."):
        return 2e-4   # p - lr * g: the gradient's error, scaled by lr, on weights of ~0.05 [2e-5]
    raise KeyError(name)


def scale(name, reference):
    """What an error is measured against: the tensor's largest magnitude, or
    for a gradient the largest of its layer's gradients. The conv biases in
    front of a batch norm have a true gradient of zero (the norm removes each
    channel's mean), so only their layer's scale tells rounding from a bug."""
    if name.startswith("grad."):
        layer = name.rsplit(".", 1)[0] + "."
        return max(t.abs().max().item() for n, t in reference.items() if n.startswith(layer))
    return max(reference[name].double().abs().max().item(), 1e-12)


def compare(hlnet, reference):
    names = sorted(set(hlnet) | set(reference))
    failed = []
    print(f"{'tensor':42} {'shape':>18} {'max |diff|':>11} {'scale':>11} {'rel':>9} {'tol':>7}")
    for name in names:
        if name not in hlnet or name not in reference:
            failed.append(name)
            print(f"{name:42} missing from {'hlnet' if name not in hlnet else 'the reference'}")
            continue
        a, b = hlnet[name].double(), reference[name].double()
        if a.shape != b.shape:
            failed.append(name)
            print(f"{name:42} shape {list(a.shape)} vs reference {list(b.shape)}")
            continue
        if name == "train.correct":  # an integer: equal, or a tie broke differently
            ok = int(a) == int(b)
            print(f"{name:42} {'':>18} {int(a):>11} {int(b):>11} {'':>9} {'exact':>7} {'ok' if ok else 'FAIL'}")
        else:
            diff, s = (a - b).abs().max().item(), scale(name, reference)
            ok = diff / s <= tolerance(name)
            print(f"{name:42} {str(list(a.shape)):>18} {diff:11.3e} {s:11.3e} {diff / s:9.2e} "
                  f"{tolerance(name):7.0e} {'ok' if ok else 'FAIL'}")
        if not ok:
            failed.append(name)
    return failed


def parity(args):
    graph = json.load(open(args.graph))
    work = tempfile.mkdtemp(prefix="hlnet-parity-")
    torch.manual_seed(0)
    net = Net(graph)
    # Batch norms away from their initial gamma 1, beta 0, mean 0, var 1, so
    # that every term of the forward, backward and running update shows.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    checkpoint = os.path.join(work, "start.safetensors")
    save_checkpoint(checkpoint, net, graph["name"])

    images, labels = load_split(args.data, "train")
    ranks = graph.get("ranks", 1)
    # Fixed, spread over the split; `batch` is each rank's.
    indices = [(7919 * i + 13) % len(labels) for i in range(graph["batch"] * ranks)]
    dump = os.path.join(work, "hlnet.safetensors")
    command = [args.dump, "--load", checkpoint, "--indices", ",".join(map(str, indices)), "--out", dump,
               "--data", args.data] + (["--sync-bn"] if args.sync_bn else [])
    if ranks > 1:
        if not args.mpirun:
            sys.exit(f"parity: {args.graph} is built for {ranks} ranks: give --mpirun")
        command = [args.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(ranks)] + command
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    subprocess.run(command, check=True, env=env)

    load_checkpoint(checkpoint, net)  # the float32 weights hlnet started from
    hlnet, _ = read_safetensors(dump)
    failed = compare(hlnet, reference_step(net, graph, images, labels, indices, ranks, args.sync_bn))
    if failed:
        print(f"parity FAILED for {len(failed)} tensors: {' '.join(failed)} (files in {work})")
        return 1
    print(f"parity: all {len(hlnet)} tensors agree")
    return 0


def evaluate(args):
    graph = json.load(open(args.graph))
    net = Net(graph)
    load_checkpoint(args.checkpoint, net)
    net.eval()
    images, labels = load_split(args.data, "t10k")
    correct = 0
    with torch.no_grad():
        for first in range(0, len(labels), graph["batch"]):
            indices = list(range(first, min(first + graph["batch"], len(labels))))
            logits = net(input_batch(graph, images, indices, torch.float32))
            correct += (logits.argmax(1) == labels[indices].long()).sum().item()
    print(f"test acc {correct / len(labels):.3f}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("parity", help="one training step of hlnet against PyTorch")
    p.add_argument("--graph", required=True, help="build/NAME/NAME_graph.json")
    p.add_argument("--dump", required=True, help="the parity_dump program linked with the spec's graph")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--mpirun", help="mpirun, for a graph built for several ranks")
    p.add_argument("--sync-bn", action="store_true", help="batch norm over every rank's images together")
    p.set_defaults(run=parity)
    p = commands.add_parser("eval", help="test accuracy of an hlnet checkpoint in PyTorch")
    p.add_argument("--graph", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.set_defaults(run=evaluate)
    args = parser.parse_args()
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
