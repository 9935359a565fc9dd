#!/usr/bin/python3
"""Trains the tutorial CNN on Fashion-MNIST and exports it as .cvy (and optionally ONNX).

Network: conv5x5(32, pad 2) -> ReLU -> maxpool 2 -> conv5x5(64, pad 2) -> ReLU -> maxpool 2
-> flatten -> FC 3136->128 -> ReLU -> FC 128->10 -> softmax.

Training is deterministic (fixed seed, deterministic algorithms, 2 threads, CPU). Besides
the model it writes reference data for the engine tests into --tests-data: the first 16 test
images as PNG, torch's top-1 for each (fashion_golden.txt), the preprocessed batch and
torch's output as .npy, and torch's test accuracy (fashion_torch_accuracy.txt).

    /usr/bin/python3 tools/train_fashion.py --out models/fashion-mnist.cvy \
        --onnx build/fashion-mnist.onnx
    /usr/bin/python3 tools/train_fashion.py --export-only --out models/fashion-mnist.cvy \
        --onnx build/fashion-mnist.onnx      # ONNX from the .cvy weights, no training
"""

import argparse
import gzip
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cvy  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
          "Sneaker", "Bag", "Ankle boot"]
# Preprocessing exactly as the engine applies it: (pixel * SCALE - MEAN) / STD in float32.
SCALE = np.float32(1 / 255)
MEAN = np.float32(0.2860)
STD = np.float32(0.3530)
SEED = 20260101
GOLDEN_IMAGES = 4  # test images whose torch outputs the .cvy carries as its self-test
BATCH = 128
LR = 1e-3
N_GOLDEN = 16


class Net(nn.Module):
    """The tutorial CNN; forward() ends in softmax, logits() is used for training."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def logits(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))

    def forward(self, x):
        return F.softmax(self.logits(x), dim=-1)


# Reads a gzipped idx file (ubyte images or labels) into a uint8 array.
def load_idx(name):
    with gzip.open(os.path.join(DATA_DIR, name), "rb") as f:
        data = f.read()
    magic, = struct.unpack_from(">I", data)
    ndim = magic & 0xFF
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


# uint8 [N, 28, 28] -> float32 [N, 1, 28, 28] with the model's preprocessing.
def preprocess(images):
    x = (images.astype(np.float32) * SCALE - MEAN) / STD
    return x[:, None, :, :].astype(np.float32)


# Adam with a step-decayed learning rate and random horizontal flips; returns seconds taken.
def train(net, x, y, epochs):
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    # LR / 5 after 60% of the epochs and again after 85% (after epochs 4 and 6 of 8).
    milestones = [max(1, int(epochs * f)) for f in (0.6, 0.85)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.2)
    x, y = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    start = time.time()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            opt.zero_grad()
            loss = F.cross_entropy(net.logits(xb), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}, "
              f"{time.time() - start:.0f} s", flush=True)
    return time.time() - start


# Softmax outputs of net for float32 NCHW input, computed in batches.
def predict(net, x):
    net.eval()
    with torch.no_grad():
        return torch.cat([net(torch.from_numpy(x[i:i + 1000]))
                          for i in range(0, len(x), 1000)]).numpy()


# Builds the .cvy graph from the trained weights and writes it, with golden self-test data:
# the first images of golden_x and torch's outputs for them. Returns the file size.
def export_cvy(net, path, golden_x):
    b = cvy.Builder()
    x = b.add_activation((1, 28, 28))
    b.set_input(x)

    def node(op, inputs, name, ia=None, fa=None):
        out = b.add_activation()
        b.add_node(op, inputs, out, ia=ia, fa=fa, name=name)
        return out

    def weights(layer):
        return [b.add_weight(layer.weight.detach().numpy()),
                b.add_weight(layer.bias.detach().numpy())]

    # kernel h/w, stride h/w, pads top/left/bottom/right, dilation h/w, group
    conv = [5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1]
    pool = [2, 2, 2, 2, 0, 0, 0, 0, 1, 1]
    gemm = dict(ia=[1], fa=[1.0, 1.0])
    x = node("Conv", [x] + weights(net.conv1), "conv1", ia=conv)
    x = node("Relu", [x], "relu1")
    x = node("MaxPool", [x], "pool1", ia=pool)
    x = node("Conv", [x] + weights(net.conv2), "conv2", ia=conv)
    x = node("Relu", [x], "relu2")
    x = node("MaxPool", [x], "pool2", ia=pool)
    x = node("Flatten", [x], "flatten")
    x = node("Gemm", [x] + weights(net.fc1), "fc1", **gemm)
    x = node("Relu", [x], "relu3")
    x = node("Gemm", [x] + weights(net.fc2), "fc2", **gemm)
    x = node("Softmax", [x], "softmax", ia=[-1])
    b.set_output(x, cvy.OUTPUT_PROBABILITIES)

    b.labels = LABELS
    b.golden = (golden_x, predict(net, golden_x), 1e-4, 1e-5)
    b.preproc.update(width=28, height=28, color=cvy.COLOR_GRAY, resize=cvy.RESIZE_STRETCH,
                     scale=float(SCALE), mean=(float(MEAN), 0.0, 0.0),
                     std=(float(STD), 1.0, 1.0))
    return b.write(path)


# Loads the weights of a .cvy written by export_cvy into net (matched by node name).
def load_cvy(net, path):
    model = cvy.read(path)
    state = {}
    for n in model["nodes"]:
        if n["op"] in ("Conv", "Gemm"):
            w, bias = (model["tensors"][i]["data"] for i in n["inputs"][1:3])
            state[n["name"] + ".weight"] = torch.from_numpy(w.copy())
            state[n["name"] + ".bias"] = torch.from_numpy(bias.copy())
    net.load_state_dict(state)
    return model


# Re-reads the .cvy and checks layout, metadata and that its weights reproduce net exactly.
def check_cvy(net, path, x):
    copy = Net()
    model = load_cvy(copy, path)
    assert model["file_size"] == os.path.getsize(path)
    assert all(off % 64 == 0 for off, _ in model["sections"].values())
    assert all(t["offset"] % 64 == 0 for t in model["tensors"])
    assert [n["name"] for n in model["nodes"]][:3] == ["conv1", "relu1", "pool1"]
    assert model["labels"] == LABELS and model["output_kind"] == cvy.OUTPUT_PROBABILITIES
    assert np.float32(model["preproc"]["mean"][0]) == MEAN
    assert np.array_equal(predict(copy, x), predict(net, x)), "cvy weights differ"
    params = sum(t["data"].size for t in model["tensors"] if "data" in t)
    print(f"{path}: {model['file_size']} bytes, {params} parameters, "
          f"{len(model['nodes'])} nodes, CRCs and round trip OK")


# Exports net (softmax included) to ONNX opset 13 with a dynamic batch axis.
def export_onnx(net, path):
    net.eval()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), path, opset_version=13,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    print(f"{path}: {os.path.getsize(path)} bytes")


# Writes an 8-bit grayscale PNG (no filtering) with zlib and struct only.
def write_png(path, pixels):
    h, w = pixels.shape

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    raw = b"".join(b"\0" + pixels[r].tobytes() for r in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


# Writes the PNGs, the golden top-1 file and the .npy batch/output for the first 16 images.
def write_test_data(directory, images, labels, x, probs, accuracy):
    os.makedirs(directory, exist_ok=True)
    lines = []
    for i in range(N_GOLDEN):
        name = f"fashion_{i:02d}.png"
        write_png(os.path.join(directory, name), images[i])
        top = int(np.argmax(probs[i]))
        lines.append(f"{name} {labels[i]} {top} {probs[i][top]:.8f}\n")
    with open(os.path.join(directory, "fashion_golden.txt"), "w") as f:
        f.writelines(lines)
    np.save(os.path.join(directory, "fashion_batch16.npy"), x[:N_GOLDEN])
    np.save(os.path.join(directory, "fashion_batch16_out.npy"), probs[:N_GOLDEN])
    with open(os.path.join(directory, "fashion_torch_accuracy.txt"), "w") as f:
        f.write(f"{accuracy:.4f}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="models/fashion-mnist.cvy",
                    help=".cvy to write (with --export-only: to read)")
    ap.add_argument("--onnx", help="also export the model to this ONNX file")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    ap.add_argument("--tests-data", default="tests/data",
                    help="directory for the golden test data (default tests/data)")
    ap.add_argument("--export-only", action="store_true",
                    help="load the weights from --out and only export --onnx, no training")
    ap.add_argument("--rewrite-cvy", action="store_true",
                    help="with --export-only: also rewrite --out from its own weights (to "
                         "pick up format additions such as the golden self-test)")
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    net = Net()

    if args.export_only:
        if not args.onnx and not args.rewrite_cvy:
            ap.error("--export-only needs --onnx or --rewrite-cvy")
        load_cvy(net, args.out)
        if args.rewrite_cvy:
            test_x = preprocess(load_idx("t10k-images-idx3-ubyte.gz"))
            export_cvy(net, args.out, test_x[:GOLDEN_IMAGES])
            check_cvy(net, args.out, test_x[:256])
        if args.onnx:
            export_onnx(net, args.onnx)
        return

    train_x = preprocess(load_idx("train-images-idx3-ubyte.gz"))
    train_y = load_idx("train-labels-idx1-ubyte.gz")
    test_images = load_idx("t10k-images-idx3-ubyte.gz")
    test_y = load_idx("t10k-labels-idx1-ubyte.gz")
    test_x = preprocess(test_images)

    seconds = train(net, train_x, train_y, args.epochs)
    probs = predict(net, test_x)
    accuracy = float(np.mean(np.argmax(probs, 1) == test_y))
    print(f"training time {seconds:.0f} s")
    print(f"torch test accuracy {accuracy:.4f}")

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    export_cvy(net, args.out, test_x[:GOLDEN_IMAGES])
    check_cvy(net, args.out, test_x[:256])
    write_test_data(args.tests_data, test_images, test_y, test_x, probs, accuracy)
    if args.onnx:
        export_onnx(net, args.onnx)


if __name__ == "__main__":
    main()
