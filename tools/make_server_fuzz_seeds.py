"""Writes the seed corpora of the server fuzz harnesses (tests/fuzz/seeds/{multipart,body,v2,
request}/) from the tiny images of tests/fuzz/seeds/image/: every content type /classify takes,
the v2 JSON and binary forms, and whole requests. Deterministic; stdlib only.

    /usr/bin/python3 tools/make_server_fuzz_seeds.py
"""

import base64
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(__file__), "..")
SEEDS = os.path.join(ROOT, "tests", "fuzz", "seeds")


def img(name):
    with open(os.path.join(SEEDS, "image", name), "rb") as f:
        return f.read()


def write(harness, name, data):
    d = os.path.join(SEEDS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def multipart(boundary, parts, crlf=b"\r\n"):
    """parts: (name, filename or None, content type or None, bytes)."""
    out = b"preamble" + crlf
    for name, fn, ct, data in parts:
        out += b"--" + boundary + crlf
        disp = b'Content-Disposition: form-data; name="' + name + b'"'
        if fn is not None:
            disp += b'; filename="' + fn + b'"'
        out += disp + crlf
        if ct:
            out += b"Content-Type: " + ct + crlf
        out += crlf + data + crlf
    return out + b"--" + boundary + b"--" + crlf


PNG, BMP, PGM = img("gray.png"), img("rgb.bmp"), img("gray.pgm")
MP_CT = b"multipart/form-data; boundary=XyZ"
MP_CT_Q = b'multipart/form-data; charset=utf-8; boundary="a b\\"c"'
MP = multipart(b"XyZ", [(b"image", b"a.png", b"image/png", PNG),
                        (b"top_k", None, None, b"3"), (b"model", None, None, b"fashion-mnist"),
                        (b"second", b"b.pgm", None, PGM)])
MP_LF = multipart(b'a b"c', [(b"f", b"x.bmp", b"image/bmp", BMP)], crlf=b"\n")
JS = json.dumps({"images": [base64.b64encode(PNG).decode(),
                            {"b64": base64.urlsafe_b64encode(PGM).decode().rstrip("=")}],
                 "top_k": 2, "model": "fashion-mnist"}).encode()
JS_DATA = json.dumps({"images": ["data:image/png;base64," + base64.b64encode(PNG).decode()]}
                     ).encode()

# multipart: Content-Type line, then the body
write("multipart", "crlf", MP_CT + b"\n" + MP)
write("multipart", "lf-quoted", MP_CT_Q + b"\n" + MP_LF)
write("multipart", "empty-part", MP_CT + b"\n" + multipart(b"XyZ", [(b"e", b"e", None, b"")]))

# body: Content-Type line (empty: none), then the body
write("body", "raw-png", b"image/png\n" + PNG)
write("body", "raw-none", b"\n" + BMP)
write("body", "multipart", MP_CT + b"\n" + MP)
write("body", "multipart-lf", MP_CT_Q + b"\n" + MP_LF)
write("body", "json", b"application/json; charset=utf-8\n" + JS)
write("body", "json-data-url", b"application/json\n" + JS_DATA)


def v2(inp, extra=None):
    o = {"id": "r1", "inputs": [inp]}
    o.update(extra or {})
    return json.dumps(o).encode()


FP32 = {"name": "input", "datatype": "FP32", "shape": [2, 1, 2, 2],
        "data": [[[[0.5, 1], [2, -3]]], [[[1e3, 0], [0, 0.25]]]]}
FP32_FLAT = {"name": "input", "datatype": "FP32", "shape": [1, 1, 2, 2], "data": [1, 2, 3, 4]}
BYTES = {"name": "images", "datatype": "BYTES", "shape": [2, 1],
         "data": [base64.b64encode(PNG).decode(), {"b64": base64.b64encode(PGM).decode()}]}
OUTS = {"outputs": [{"name": "output", "parameters": {"classification": 3, "binary_data": True}}],
        "parameters": {"timeout": 100000, "binary_data_output": False}}
floats = struct.pack("<4f", 1, 2, 3, 4)
BIN_FP32 = v2({"name": "input", "datatype": "FP32", "shape": [1, 1, 2, 2],
               "parameters": {"binary_data_size": len(floats)}})
blob = struct.pack("<I", len(PNG)) + PNG + struct.pack("<I", len(PGM)) + PGM
BIN_BYTES = v2({"name": "images", "datatype": "BYTES", "shape": [2],
                "parameters": {"binary_data_size": len(blob)}})

# v2: Inference-Header-Content-Length line (empty: none), then the body; model input 1x2x2
write("v2", "fp32-nested", b"\n" + v2(FP32, OUTS))
write("v2", "fp32-flat", b"\n" + v2(FP32_FLAT))
write("v2", "bytes-b64", b"\n" + v2(BYTES, OUTS))
write("v2", "fp32-binary", str(len(BIN_FP32)).encode() + b"\n" + BIN_FP32 + floats)
write("v2", "bytes-binary", str(len(BIN_BYTES)).encode() + b"\n" + BIN_BYTES + blob)


def request(path, headers, body):
    h = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + h + b"\r\n" + body


# request: whole requests for models/fashion-mnist.cvy (1x28x28, 10 classes)
FM = {"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
      "data": [round((i % 29) / 29, 3) for i in range(784)]}
BIN_FM = v2({"name": "images", "datatype": "BYTES", "shape": [1],
             "parameters": {"binary_data_size": 4 + len(PNG)}})
write("request", "classify-raw", request(b"/classify", [(b"Content-Type", b"image/png")], PNG))
write("request", "classify-multipart",
      request(b"/models/fashion-mnist/classify?top_k=2", [(b"Content-Type", MP_CT)], MP))
write("request", "classify-json",
      request(b"/classify", [(b"Content-Type", b"application/json")], JS))
write("request", "v2-fp32", request(b"/v2/models/fashion-mnist/infer",
                                    [(b"Content-Type", b"application/json")], v2(FM, OUTS)))
write("request", "v2-bytes", request(b"/v2/models/fashion-mnist/versions/1/infer", [], v2(BYTES)))
write("request", "v2-binary",
      request(b"/v2/models/fashion-mnist/infer",
              [(b"Inference-Header-Content-Length", str(len(BIN_FM)).encode())],
              BIN_FM + struct.pack("<I", len(PNG)) + PNG))
