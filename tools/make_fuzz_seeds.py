"""Writes the seed corpora of the fuzz harnesses (tests/fuzz/seeds/): small valid .cvy models
covering most operators and every optional section, and tiny images in each format stb_image
decodes. Deterministic; run with Debian's /usr/bin/python3 (numpy, torch/torchvision for JPEG).

    /usr/bin/python3 tools/make_fuzz_seeds.py
"""

import os
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cvy  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fuzz", "seeds")
rng = np.random.default_rng(7)


def w(*shape):
    return rng.standard_normal(shape).astype(np.float32) * 0.5


# Conv -> BN -> Relu -> MaxPool(ceil) -> depthwise Conv -> Add -> GAP -> Flatten -> Gemm ->
# Softmax, with labels and a golden section: most of the planner in 3 KB.
def convnet():
    b = cvy.Builder()
    x = b.add_activation((3, 9, 9))
    b.set_input(x)

    def node(op, inputs, ia=None, fa=None):
        y = b.add_activation()
        b.add_node(op, inputs, y, ia=ia, fa=fa, name=op.lower())
        return y

    c = node("Conv", [x, b.add_weight(w(4, 3, 3, 3)), b.add_weight(w(4))],
             ia=[3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    c = node("BatchNormalization", [c] + [b.add_weight(np.abs(w(4)) + 0.5) for _ in range(4)],
             fa=[1e-5])
    c = node("Relu", [c])
    p = node("MaxPool", [c], ia=[2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 0, 1])
    d = node("Conv", [p, b.add_weight(w(4, 1, 3, 3))], ia=[3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4])
    a = node("Add", [d, p])
    g = node("GlobalAveragePool", [a])
    f = node("Flatten", [g])
    y = node("Gemm", [f, b.add_weight(w(3, 4)), b.add_weight(w(3))], ia=[1], fa=[1.0, 1.0])
    y = node("Softmax", [y], ia=[-1])
    b.set_output(y, cvy.OUTPUT_PROBABILITIES)
    b.labels = ["a", "b", "c"]
    b.preproc.update(width=9, height=9, color=cvy.COLOR_RGB, scale=1 / 255)
    b.golden = (w(1, 3, 9, 9), np.full((1, 3), 1 / 3, np.float32), 1.0, 1.0)
    return b


# Pools, clip/hard-swish/leaky activations, concat, reshape, mul by a constant.
def mixed():
    b = cvy.Builder()
    x = b.add_activation((1, 8, 8))
    b.set_input(x)

    def node(op, inputs, ia=None, fa=None):
        y = b.add_activation()
        b.add_node(op, inputs, y, ia=ia, fa=fa, name=op.lower())
        return y

    a = node("AveragePool", [x], ia=[3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1])
    m = node("MaxPool", [x], ia=[3, 3, 2, 2, 1, 1, 1, 1, 1, 1])
    h = node("HardSwish", [a])
    k = node("Clip", [m], fa=[0.0, 6.0])
    c = node("Concat", [h, k], ia=[0])
    s = node("Mul", [c, b.add_weight(w(1, 2, 1, 1))])
    r = node("Reshape", [s], ia=[1, -1])
    y = node("LeakyRelu", [r], fa=[0.1])
    b.set_output(y)
    b.preproc.update(width=8, height=8, color=cvy.COLOR_GRAY, scale=1 / 255)
    return b


def png(path, pixels, color_type):
    h, wd = pixels.shape[:2]
    raw = b"".join(b"\0" + row.tobytes() for row in pixels)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", wd, h, 8, color_type, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bmp(path, pixels):
    h, wd = pixels.shape[:2]
    row = (wd * 3 + 3) // 4 * 4
    data = b"".join(pixels[y, :, ::-1].tobytes().ljust(row, b"\0") for y in range(h - 1, -1, -1))
    head = struct.pack("<2sIHHI", b"BM", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, wd, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    with open(path, "wb") as f:
        f.write(head + info + data)


def main():
    os.makedirs(os.path.join(OUT, "cvy"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "image"), exist_ok=True)
    convnet().write(os.path.join(OUT, "cvy", "convnet.cvy"))
    mixed().write(os.path.join(OUT, "cvy", "mixed.cvy"))

    img = os.path.join(OUT, "image")
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (6, 9), dtype=np.uint8)
    png(os.path.join(img, "rgb.png"), rgb, 2)
    png(os.path.join(img, "gray.png"), gray, 0)
    bmp(os.path.join(img, "rgb.bmp"), rgb)
    with open(os.path.join(img, "gray.pgm"), "wb") as f:
        f.write(b"P5\n9 6\n255\n" + gray.tobytes())
    with open(os.path.join(img, "rgb.ppm"), "wb") as f:
        f.write(b"P6\n5 7\n255\n" + rgb.tobytes())
    with open(os.path.join(img, "white.gif"), "wb") as f:  # the classic 1x1 GIF
        f.write(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00"
                b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
    with open(os.path.join(img, "rgb.tga"), "wb") as f:  # uncompressed true-colour TGA
        f.write(struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 5, 7, 24, 0)
                + rgb[::-1, :, ::-1].tobytes())
    try:
        import torch
        from torchvision.io import encode_jpeg
        t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        with open(os.path.join(img, "rgb.jpg"), "wb") as f:
            f.write(encode_jpeg(t, quality=90).numpy().tobytes())
    except ImportError:
        print("torchvision missing: no JPEG seed", file=sys.stderr)


if __name__ == "__main__":
    main()
