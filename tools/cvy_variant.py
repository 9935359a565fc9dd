#!/usr/bin/python3
"""Writes a variant of a .cvy model for hot-reload tests: the bias of one class in the last
Gemm is shifted, so top-1 changes on some images. The stale GOLDEN section is dropped (the
self-test would fail) unless --keep-golden asks for exactly that failure.

usage: cvy_variant.py IN OUT [--class K] [--delta D] [--keep-golden]
"""
import argparse
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cvy  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--class", dest="cls", type=int, default=0)
    ap.add_argument("--delta", type=float, default=4.0)
    ap.add_argument("--keep-golden", action="store_true")
    a = ap.parse_args()

    info = cvy.read(a.inp)
    data = bytearray(open(a.inp, "rb").read())
    gemms = [n for n in info["nodes"] if n["op"] == "Gemm" and len(n["inputs"]) >= 3]
    if not gemms:
        sys.exit("cvy_variant: no Gemm with a bias")
    bias = info["tensors"][gemms[-1]["inputs"][2]]
    w_off, _ = info["sections"][cvy.SECTION_WEIGHTS]
    pos = w_off + bias["offset"] + 4 * a.cls
    (v,) = struct.unpack_from("<f", data, pos)
    struct.pack_into("<f", data, pos, v + a.delta)

    _, _, _, _, count, _, table, _ = cvy.HEADER.unpack_from(data)
    entries = [list(cvy.SECTION.unpack_from(data, table + i * cvy.SECTION.size))
               for i in range(count)]
    end = len(data)
    if not a.keep_golden and cvy.SECTION_GOLDEN in info["sections"]:
        g = [e for e in entries if e[0] == cvy.SECTION_GOLDEN][0]
        if g[2] + g[3] != len(data):
            sys.exit("cvy_variant: GOLDEN is not the last section")
        entries.remove(g)
        end = g[2]
    for e in entries:
        e[4] = zlib.crc32(bytes(data[e[2]:e[2] + e[3]]))
    del data[end:]
    for i in range(count):
        off = table + i * cvy.SECTION.size
        if i < len(entries):
            cvy.SECTION.pack_into(data, off, *entries[i])
        else:
            data[off:off + cvy.SECTION.size] = bytes(cvy.SECTION.size)
    struct.pack_into("<Q", data, 16, len(data))
    struct.pack_into("<I", data, 24, len(entries))
    struct.pack_into("<I", data, 60, zlib.crc32(bytes(data[:60])))
    with open(a.out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
