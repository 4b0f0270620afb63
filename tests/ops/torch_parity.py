#!/usr/bin/env python3
"""Recomputes the tensors torch_parity_dump wrote with PyTorch (CPU, float64)
and compares. Exit code 0 when every tensor matches within its tolerance.

Tolerances: float32 pipelines against float64 PyTorch; max |a - b| below
1e-4 * max|b| + 1e-6 for sums of up to a few hundred products; exact for max
pooling's values and arg-max indices (ties included) and float rounding (1e-6
relative) for its gradient, a sum of at most four values; 1e-5 for the resized
images in [0, 1], whose float32 interpolation weights carry ~1e-7 relative
error times source coordinates up to 28 (1e-5 is 0.3% of one grey level).
"""
import os
import sys

import torch
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "int32": torch.int32, "uint8": torch.uint8}


def load(directory):
    tensors = {}
    with open(os.path.join(directory, "manifest.txt")) as manifest:
        for line in manifest:
            name, dtype, *extents = line.split()
            with open(os.path.join(directory, name + ".bin"), "rb") as f:
                data = bytearray(f.read())
            # Halide lists dimensions innermost first; PyTorch outermost first.
            shape = [int(e) for e in reversed(extents)]
            tensors[name] = torch.frombuffer(data, dtype=DTYPES[dtype]).reshape(shape).clone()
    return tensors


failures = []


def compare(name, got, want, relative=1e-4, absolute=1e-6):
    got, want = got.double(), want.double()
    error = (got - want).abs().max().item()
    bound = relative * want.abs().max().item() + absolute
    status = "ok" if error <= bound else "FAIL"
    print(f"{status:4} {name:28} max error {error:.3g} (bound {bound:.3g})")
    if status != "ok":
        failures.append(name)


def conv(t):
    x = t["conv_input"].double().requires_grad_()
    w = t["conv_weight"].double().requires_grad_()
    b = t["conv_bias"].double().requires_grad_()
    out = F.conv2d(x, w, b, stride=2, padding=1)
    out.backward(t["conv_d_output"].double())
    compare("conv2d output", t["conv_output"], out.detach())
    compare("conv2d d_input", t["conv_d_input"], x.grad)
    compare("conv2d d_weight", t["conv_d_weight"], w.grad)
    compare("conv2d d_bias", t["conv_d_bias"], b.grad)


def batchnorm(t):
    bn = torch.nn.BatchNorm2d(4, eps=1e-5, momentum=0.1).double().train()
    with torch.no_grad():
        bn.weight.copy_(t["bn_gamma"])
        bn.bias.copy_(t["bn_beta"])
        bn.running_mean.copy_(t["bn_running_mean"])
        bn.running_var.copy_(t["bn_running_var"])
    out = F.relu(bn(t["bn_input"].double()) + t["bn_residual"].double())
    compare("batchnorm output", t["bn_output"], out.detach())
    compare("batchnorm running_mean", t["bn_new_running_mean"], bn.running_mean)
    compare("batchnorm running_var", t["bn_new_running_var"], bn.running_var)


def maxpool(t):
    x = t["pool_input"].double().requires_grad_()
    out, indices = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    out.backward(t["pool_d_output"].double())
    compare("maxpool output", t["pool_output"], out.detach(), 0, 0)
    compare("maxpool argmax (ties)", t["pool_argmax"], indices, 0, 0)
    compare("maxpool d_input", t["pool_d_input"], x.grad, 1e-6, 0)


def input_pipeline(t):
    images = t["input_images"][t["input_indices"].long()].double().unsqueeze(1)
    want = F.interpolate(images, size=(96, 96), mode="bilinear", align_corners=False) / 255
    compare("input_pipeline output", t["input_output"], want, 0, 1e-5)


def main():
    t = load(sys.argv[1])
    conv(t)
    batchnorm(t)
    maxpool(t)
    input_pipeline(t)
    if failures:
        print("torch_parity: mismatches:", ", ".join(failures))
        return 1
    print("torch_parity: every tensor matches PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
