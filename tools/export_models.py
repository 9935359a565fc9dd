#!/usr/bin/python3
"""Exports torchvision architectures (and the tutorial CNN) to ONNX with random weights, plus a
reference input batch and torch's output, for convoy's import tests and benchmarks.

No internet: weights are random with a fixed seed. Batch-norm statistics are randomised and
then calibrated on a random batch (train-mode passes with cumulative averaging) so that
activations and outputs are of order one rather than exploding or vanishing.

    /usr/bin/python3 tools/export_models.py --out tests/data/zoo            # reduced width
    /usr/bin/python3 tools/export_models.py --out models/zoo --full         # full size
    ... [--models resnet18,vgg11] [--convoy build/convoy]   # also convert + compare

For each model NAME it writes NAME.onnx, NAME_input.npy (float32 NCHW) and NAME_ref.npy
(torch's float32 output). Reduced-width models divide every channel count by a per-model
factor, use 10 classes and a smaller input, so that each .onnx stays under 1 MB. With
--convoy, each model is converted with `convoy convert`, run with `convoy run`, and the top-1
agreement and max|diff| / max|ref| are printed.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm
from torchvision.models.shufflenetv2 import ShuffleNetV2

SEED = 20260427
OPSET = 13


class TutorialCNN(nn.Module):
    """The tutorial CNN: conv5x5 32, pool, conv5x5 64, pool, FC 1024, FC 10, softmax."""

    def __init__(self, c1=32, c2=64, fc=1024, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.fc1 = nn.Linear(c2 * 7 * 7, fc)
        self.fc2 = nn.Linear(fc, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return F.softmax(self.fc2(F.relu(self.fc1(x))), dim=-1)


class Patterns(nn.Module):
    """Not an architecture: the export patterns the importer must fold or rewrite. Sub/Div by
    constants, cat with an expanded constant, F.pad folded into a conv (and one that cannot
    fold, and one with a non-zero value), chunk (Split/Slice), cat, a ShuffleNet channel shuffle (Reshape, Transpose),
    hardswish, mean over H,W (ReduceMean), view-flatten from Shape/Gather/Concat arithmetic,
    slicing an activation, MatMul by a constant, softmax, a constant subtracted at the end."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3)
        self.c2 = nn.Conv2d(8, 8, 3, groups=2)
        self.w = nn.Parameter(torch.randn(16, 10) * 0.3)
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
        self.token = nn.Parameter(torch.randn(1, 3, 1, 20))

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = torch.cat([x, self.token.expand(x.size(0), -1, -1, -1)], 2)[:, :, 1:]
        x = F.relu6(self.c1(F.pad(x, (1, 1, 1, 1))))
        x = F.avg_pool2d(F.pad(x, (1, 2, 0, 1)), 2)
        a, b = x.chunk(2, dim=1)
        x = torch.cat([b, a], 1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        x = F.hardswish(self.c2(F.pad(x, (1, 1, 1, 1), value=0.5)))
        y = x.mean((2, 3))
        z = x.view(x.size(0), -1)[:, :8]
        return F.softmax(torch.cat([y, z], 1) @ self.w, dim=1) - 0.1


class Patterns1d(nn.Module):
    """1-D convolutions and pools on (C, L) sequences: run as 2-D with H = 1."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(3, 8, 3, padding=1, stride=2), nn.BatchNorm1d(8), nn.ReLU(),
            nn.MaxPool1d(2, ceil_mode=True), nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=2),
            nn.AvgPool1d(3, padding=1), nn.Flatten(), nn.Linear(48, 10))

    def forward(self, x):
        return self.net(x)


class ChannelScale:
    """Within the block, nn.Conv2d / BatchNorm2d / Linear divide every channel count that is a
    multiple of f by f (image channels and class counts are not multiples of f)."""

    def __init__(self, f):
        self.f = f

    def s(self, c):
        return c // self.f if self.f > 1 and c % self.f == 0 else c

    def __enter__(self):
        self.saved = (nn.Conv2d.__init__, nn.BatchNorm2d.__init__, nn.Linear.__init__)
        conv, bn, lin = self.saved
        s = self.s

        def conv_init(m, cin, cout, *a, **k):
            if k.get("groups", 1) == cin and cin > 1:
                k["groups"] = s(cin)
            conv(m, s(cin), s(cout), *a, **k)

        def bn_init(m, c, *a, **k):
            bn(m, s(c), *a, **k)

        def lin_init(m, fin, fout, *a, **k):
            # flattened conv features (C*7*7) scale with C
            fi = s(fin) if fin % self.f == 0 else fin
            if fin % 49 == 0 and (fin // 49) % self.f == 0:
                fi = s(fin // 49) * 49
            lin(m, fi, s(fout), *a, **k)

        nn.Conv2d.__init__, nn.BatchNorm2d.__init__, nn.Linear.__init__ = conv_init, bn_init, lin_init
        return self

    def __exit__(self, *exc):
        nn.Conv2d.__init__, nn.BatchNorm2d.__init__, nn.Linear.__init__ = self.saved


def shufflenet(full, classes):
    if full:
        return tvm.shufflenet_v2_x1_0(num_classes=classes)
    return ShuffleNetV2([4, 8, 4], [8, 24, 48, 96, 256], num_classes=classes)


# name: (constructor(classes), reduction factor for the reduced model, reduced input size,
#        input channels, full input size)
MODELS = {
    "resnet18": (lambda n: tvm.resnet18(num_classes=n), 8, 64, 3, 224),
    "resnet50": (lambda n: tvm.resnet50(num_classes=n), 16, 64, 3, 224),
    "mobilenet_v2": (lambda n: tvm.mobilenet_v2(num_classes=n), 8, 64, 3, 224),
    "mobilenet_v3_small": (lambda n: tvm.mobilenet_v3_small(num_classes=n), 8, 64, 3, 224),
    "squeezenet1_1": (lambda n: tvm.squeezenet1_1(num_classes=n), 8, 64, 3, 224),
    "vgg11": (lambda n: tvm.vgg11(num_classes=n), 32, 224, 3, 224),
    "densenet121": (lambda n: tvm.densenet121(num_classes=n), 8, 64, 3, 224),
    "efficientnet_b0": (lambda n: tvm.efficientnet_b0(num_classes=n), 8, 64, 3, 224),
    "googlenet": (lambda n: tvm.googlenet(num_classes=n, aux_logits=False, init_weights=True),
                  8, 64, 3, 224),
    "shufflenet_v2_x1_0": (None, 1, 64, 3, 224),
    "tutorial_cnn": (None, 1, 28, 1, 28),
    "patterns_opset9": (None, 1, 20, 3, 20),
    "patterns_opset17": (None, 1, 20, 3, 20),
    "patterns_1d": (None, 1, 64, 3, 64),
}


def build(name, full):
    ctor, factor, rsize, chans, fsize = MODELS[name]
    classes = 1000 if full else 10
    torch.manual_seed(SEED)
    if name == "shufflenet_v2_x1_0":
        net = shufflenet(full, classes)
    elif name == "tutorial_cnn":
        net = TutorialCNN() if full else TutorialCNN(8, 16, 64)
    elif name == "patterns_1d":
        net = Patterns1d()
    elif name.startswith("patterns"):
        net = Patterns()
    else:
        with ChannelScale(1 if full else factor):
            net = ctor(classes)
    size = fsize if full else rsize
    randomise_bn(net, chans, size)
    net.eval()
    scale_output(net, chans, size)
    return net, chans, size


def randomise_bn(net, chans, size):
    """Random BN affine parameters, then statistics calibrated on random input batches."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    g = torch.Generator().manual_seed(SEED + 1)
    shape = (8, chans, size) if isinstance(net, Patterns1d) else (8, chans, size, size)
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(0.75 + 0.5 * torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
        net.train()
        for _ in range(2):
            net(torch.randn(*shape, generator=g))
        for m in bns:  # no near-dead channels whose folded scale would amplify rounding
            m.running_var.clamp_(min=0.01 * float(m.running_var.mean()))
    net.eval()


def scale_output(net, chans, size):
    """Scales the last Linear/Conv2d so that the logits have a standard deviation of one
    (random classifiers are initialised tiny); skipped for models ending in softmax."""
    if isinstance(net, (TutorialCNN, Patterns, Patterns1d)):
        return
    last = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    g = torch.Generator().manual_seed(SEED + 3)
    with torch.no_grad():
        sd = float(net(torch.randn(8, chans, size, size, generator=g)).std())
        if sd > 0:
            last.weight.mul_(1.0 / sd)
            if last.bias is not None:
                last.bias.mul_(1.0 / sd)


def export(name, out_dir, full, batch):
    net, chans, size = build(name, full)
    g = torch.Generator().manual_seed(SEED + 2)
    shape = (batch, chans, size) if name == "patterns_1d" else (batch, chans, size, size)
    x = torch.randn(*shape, generator=g)
    with torch.no_grad():
        y = net(x)
    path = os.path.join(out_dir, name + ".onnx")
    opset = int(name.split("opset")[1]) if "opset" in name else OPSET
    torch.onnx.export(net, x[:1], path, opset_version=opset, input_names=["input"],
                      output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      do_constant_folding=True)
    np.save(os.path.join(out_dir, name + "_input.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(out_dir, name + "_ref.npy"), y.numpy().astype(np.float32))
    params = sum(p.numel() for p in net.parameters())
    print(f"{name}: {os.path.getsize(path)} bytes, {params} parameters, input "
          f"{'x'.join(map(str, x.shape[1:]))}, batch {batch}, output max|y| "
          f"{y.abs().max().item():.3g}")
    return path


def check(name, out_dir, convoy):
    """Converts with convoy, runs the reference batch, prints top-1 and max relative error."""
    onnx = os.path.join(out_dir, name + ".onnx")
    with tempfile.TemporaryDirectory() as tmp:
        cvy = os.path.join(tmp, name + ".cvy")
        out = os.path.join(tmp, "out.npy")
        r = subprocess.run([convoy, "convert", onnx, cvy], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  convert FAILED: {r.stderr.strip()}")
            return False
        inp = os.path.join(out_dir, name + "_input.npy")
        x = np.load(inp)
        if x.ndim == 3:  # `convoy run` takes (N, C, H, W): a (C, L) sequence is (C, L, 1)
            inp = os.path.join(tmp, "in.npy")
            np.save(inp, x.reshape(x.shape + (1,)))
        r = subprocess.run([convoy, "run", cvy, "--input", inp, "--output", out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  run FAILED: {r.stderr.strip()}")
            return False
        got = np.load(out)
    ref = np.load(os.path.join(out_dir, name + "_ref.npy")).reshape(got.shape)
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    top1 = bool((got.argmax(1) == ref.argmax(1)).all())
    ok = top1 and rel <= 1e-4
    print(f"  convoy: top-1 {'identical' if top1 else 'DIFFERS'}, max|diff|/max|ref| = "
          f"{rel:.3g} {'ok' if ok else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--full", action="store_true", help="full-width models (default: reduced)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    ap.add_argument("--batch", type=int, default=0, help="reference images (default 4 full, "
                    "2 reduced, 1 for reduced vgg11)")
    ap.add_argument("--convoy", help="convoy binary: also convert and compare")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    failed = []
    for name in args.models.split(","):
        if name not in MODELS:
            ap.error(f"unknown model {name}")
        batch = args.batch or (4 if args.full else (1 if name == "vgg11" else 2))
        if name.startswith("patterns") and not args.batch:
            batch = 3
        export(name, args.out, args.full, batch)
        if args.convoy and not check(name, args.out, args.convoy):
            failed.append(name)
    if failed:
        print("failed:", " ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
