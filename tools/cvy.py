"""Writer and reader for .cvy v1 model files (see docs/model-format.md).

Usage:
    b = cvy.Builder()
    x = b.add_activation((1, 28, 28))
    w = b.add_weight(conv_weight)          # numpy array, stored as float32
    y = b.add_activation()                 # dims inferred by the loader
    b.add_node("Conv", [x, w], y, ia={0: 5, 1: 5, 2: 1, 3: 1, 10: 1}, name="conv1")
    b.set_input(x); b.set_output(y)
    b.output_kind = cvy.OUTPUT_LOGITS
    b.preproc.update(width=28, height=28, color=cvy.COLOR_GRAY, scale=1 / 255)
    b.labels = ["cat", "dog"]
    b.write("model.cvy")

    model = cvy.read("model.cvy")          # checks every CRC, returns a plain dict
"""

import struct
import zlib

import numpy as np

MAGIC = b"CVYMODEL"
VERSION = 1
ALIGN = 64
HEADER_SIZE = 64                                  # the section table follows it

SECTION_GRAPH, SECTION_WEIGHTS, SECTION_PREPROC, SECTION_LABELS, SECTION_GOLDEN = 1, 2, 3, 4, 5
KIND_ACTIVATION, KIND_WEIGHT = 0, 1
OUTPUT_LOGITS, OUTPUT_PROBABILITIES = 0, 1
COLOR_GRAY, COLOR_RGB, COLOR_BGR = 0, 1, 2
RESIZE_STRETCH, RESIZE_SHORTER_CROP = 0, 1

OPS = {
    "Conv": 1, "MaxPool": 2, "AveragePool": 3, "GlobalAveragePool": 4, "Relu": 5,
    "Clip": 6, "LeakyRelu": 7, "Sigmoid": 8, "HardSigmoid": 9, "HardSwish": 10,
    "Add": 11, "Mul": 12, "Concat": 13, "Flatten": 14, "Reshape": 15, "Gemm": 16,
    "BatchNormalization": 17, "Softmax": 18, "Identity": 19,
}
OP_NAMES = {v: k for k, v in OPS.items()}

MAX_INPUTS, N_IA, N_FA, NAME_BYTES = 6, 16, 8, 60

HEADER = struct.Struct("<8sIIQIIQ20s")            # 60 bytes, then the u32 CRC
SECTION = struct.Struct("<IIQQII")                # 32 bytes
GRAPH_HEADER = struct.Struct("<IIIII12x")         # 32 bytes
TENSOR = struct.Struct("<II4IQQ8x")               # 48 bytes
NODE = struct.Struct("<II6II16i8f60s")            # 192 bytes
PREPROC = struct.Struct("<IIIIIf3f3f16x")         # 64 bytes
GOLDEN = struct.Struct("<IIIff12x")                # 32 bytes, then the float32 data


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _slots(values, count, what):
    """Expands attributes given as a list (slots 0..) or a dict {slot: value} to `count` slots."""
    out = [0] * count
    items = values.items() if isinstance(values, dict) else enumerate(values or [])
    for slot, value in items:
        if not 0 <= slot < count:
            raise ValueError(f"{what} slot {slot} out of range 0..{count - 1}")
        out[slot] = value
    return out


class Builder:
    """Collects tensors, nodes, weights, preprocessing and labels, then writes one .cvy file."""

    def __init__(self):
        self.tensors = []          # dicts: kind, dims, offset, size
        self.nodes = []            # dicts: op, inputs, output, ia, fa, name
        self.weights = bytearray()
        self.input = None
        self.output = None
        self.output_kind = OUTPUT_LOGITS
        self.labels = None         # list of str, or None for no LABELS section
        self.golden = None         # (inputs [n, C, H, W], outputs [n, K], rtol, atol) or None
        self.preproc = dict(width=0, height=0, color=COLOR_GRAY, resize=RESIZE_STRETCH,
                            resize_shorter=0, scale=1.0, mean=(0.0, 0.0, 0.0),
                            std=(1.0, 1.0, 1.0))

    # Stores a constant as float32 at a 64-byte aligned offset; returns its tensor index.
    def add_weight(self, array):
        data = np.ascontiguousarray(array, dtype="<f4")
        if not 1 <= data.ndim <= 4:
            raise ValueError(f"weight must have 1..4 dims, got shape {data.shape}")
        self.weights.extend(b"\0" * (_align(len(self.weights)) - len(self.weights)))
        offset = len(self.weights)
        self.weights.extend(data.tobytes())
        self.tensors.append(dict(kind=KIND_WEIGHT, dims=tuple(data.shape), offset=offset,
                                 size=data.nbytes))
        return len(self.tensors) - 1

    # Declares an activation with per-image dims (batch excluded); None leaves ndim 0.
    def add_activation(self, dims=None):
        dims = tuple(dims or ())
        if len(dims) > 4:
            raise ValueError(f"activation must have 0..4 dims, got {dims}")
        self.tensors.append(dict(kind=KIND_ACTIVATION, dims=dims, offset=0, size=0))
        return len(self.tensors) - 1

    # Appends a node; op is a name from OPS or its number, ia/fa a list or {slot: value}.
    def add_node(self, op, inputs, output, ia=None, fa=None, name=""):
        op = OPS[op] if isinstance(op, str) else int(op)
        if op not in OP_NAMES:
            raise ValueError(f"unknown op {op}")
        if not 1 <= len(inputs) <= MAX_INPUTS:
            raise ValueError(f"node {name!r}: 1..{MAX_INPUTS} inputs, got {len(inputs)}")
        encoded = name.encode("utf-8")
        if len(encoded) >= NAME_BYTES:
            raise ValueError(f"node name {name!r} longer than {NAME_BYTES - 1} bytes")
        self.nodes.append(dict(op=op, inputs=list(inputs), output=output,
                               ia=_slots(ia, N_IA, "ia"), fa=_slots(fa, N_FA, "fa"),
                               name=name))
        return len(self.nodes) - 1

    def set_input(self, index):
        self.input = index

    def set_output(self, index, kind=None):
        self.output = index
        if kind is not None:
            self.output_kind = kind

    # Serializes the GRAPH section.
    def _graph_bytes(self):
        if self.input is None or self.output is None:
            raise ValueError("graph input and output must be set")
        out = bytearray(GRAPH_HEADER.pack(len(self.tensors), len(self.nodes), self.input,
                                          self.output, self.output_kind))
        for t in self.tensors:
            dims = list(t["dims"]) + [0] * (4 - len(t["dims"]))
            out += TENSOR.pack(t["kind"], len(t["dims"]), *dims, t["offset"], t["size"])
        for n in self.nodes:
            inputs = n["inputs"] + [0] * (MAX_INPUTS - len(n["inputs"]))
            out += NODE.pack(n["op"], len(n["inputs"]), *inputs, n["output"], *n["ia"],
                             *n["fa"], n["name"].encode("utf-8"))
        return bytes(out)

    def _preproc_bytes(self):
        p = self.preproc
        return PREPROC.pack(p["width"], p["height"], p["color"], p["resize"],
                            p["resize_shorter"], p["scale"], *p["mean"], *p["std"])

    def _labels_bytes(self):
        out = bytearray(struct.pack("<I", len(self.labels)))
        for label in self.labels:
            encoded = label.encode("utf-8")
            if len(encoded) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in label):
                raise ValueError(f"invalid label {label!r}")
            out += struct.pack("<I", len(encoded)) + encoded
        return bytes(out)

    # Serializes the optional GOLDEN section: self-test inputs and the outputs they must give.
    def _golden_bytes(self):
        inputs, outputs, rtol, atol = self.golden
        inputs = np.ascontiguousarray(inputs, dtype="<f4").reshape(len(inputs), -1)
        outputs = np.ascontiguousarray(outputs, dtype="<f4").reshape(len(outputs), -1)
        if len(inputs) != len(outputs) or not 1 <= len(inputs) <= 64:
            raise ValueError("golden: 1..64 inputs with one output each")
        head = GOLDEN.pack(len(inputs), inputs.shape[1], outputs.shape[1], rtol, atol)
        return head + inputs.tobytes() + outputs.tobytes()

    # Lays out header, section table and 64-byte aligned sections; returns the file bytes.
    def to_bytes(self):
        sections = [(SECTION_GRAPH, self._graph_bytes()),
                    (SECTION_WEIGHTS, bytes(self.weights)),
                    (SECTION_PREPROC, self._preproc_bytes())]
        if self.labels is not None:
            sections.append((SECTION_LABELS, self._labels_bytes()))
        if self.golden is not None:
            sections.append((SECTION_GOLDEN, self._golden_bytes()))

        table_end = HEADER_SIZE + SECTION.size * len(sections)
        body, entries, pos = bytearray(), [], _align(table_end)
        for kind, data in sections:
            pos = _align(pos)
            entries.append(SECTION.pack(kind, 0, pos, len(data), zlib.crc32(data), 0))
            body += b"\0" * (pos - table_end - len(body)) + data
            pos += len(data)

        head = HEADER.pack(MAGIC, VERSION, HEADER_SIZE, pos, len(sections), 0, HEADER_SIZE, b"")
        head += struct.pack("<I", zlib.crc32(head))
        return head + b"".join(entries) + bytes(body)

    def write(self, path):
        data = self.to_bytes()
        with open(path, "wb") as f:
            f.write(data)
        return len(data)


# Parses and CRC-checks a .cvy file. Returns a dict with "file_size", "sections"
# {type: (offset, size)}, "input", "output", "output_kind", "tensors" (weights carry a
# numpy "data" array), "nodes", "preproc", "labels" (None without a LABELS section) and
# "golden" ((inputs, outputs, rtol, atol), or None without a GOLDEN section).
def read(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, version, header_size, file_size, count, _, table, _ = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or header_size != HEADER_SIZE:
        raise ValueError("bad magic, version or header size")
    if file_size != len(data):
        raise ValueError(f"file size field {file_size} != real size {len(data)}")
    if struct.unpack_from("<I", data, 60)[0] != zlib.crc32(data[:60]):
        raise ValueError("header CRC mismatch")

    sections = {}
    for i in range(count):
        kind, _, offset, size, crc, _ = SECTION.unpack_from(data, table + i * SECTION.size)
        if offset % ALIGN or offset + size > len(data):
            raise ValueError(f"section {kind}: bad offset/size")
        if zlib.crc32(data[offset:offset + size]) != crc:
            raise ValueError(f"section {kind}: CRC mismatch")
        sections[kind] = (offset, size)

    g_off, _ = sections[SECTION_GRAPH]
    w_off, w_size = sections[SECTION_WEIGHTS]
    n_tensors, n_nodes, inp, outp, kind = GRAPH_HEADER.unpack_from(data, g_off)
    pos = g_off + GRAPH_HEADER.size
    tensors = []
    for _ in range(n_tensors):
        t_kind, ndim, *dims, offset, size = TENSOR.unpack_from(data, pos)
        t = dict(kind=t_kind, dims=tuple(dims[:ndim]), offset=offset, size=size)
        if t_kind == KIND_WEIGHT:
            if offset % ALIGN or offset + size > w_size:
                raise ValueError(f"weight at {offset} (+{size}) outside WEIGHTS")
            t["data"] = np.frombuffer(data, "<f4", size // 4, w_off + offset).reshape(t["dims"])
        tensors.append(t)
        pos += TENSOR.size
    nodes = []
    for _ in range(n_nodes):
        fields = NODE.unpack_from(data, pos)
        op, n_in, inputs, output = fields[0], fields[1], fields[2:8], fields[8]
        nodes.append(dict(op=OP_NAMES.get(op, op), inputs=list(inputs[:n_in]), output=output,
                          ia=list(fields[9:25]), fa=list(fields[25:33]),
                          name=fields[33].rstrip(b"\0").decode("utf-8")))
        pos += NODE.size

    p = PREPROC.unpack_from(data, sections[SECTION_PREPROC][0])
    preproc = dict(width=p[0], height=p[1], color=p[2], resize=p[3], resize_shorter=p[4],
                   scale=p[5], mean=p[6:9], std=p[9:12])

    labels = None
    if SECTION_LABELS in sections:
        pos = sections[SECTION_LABELS][0]
        (n,) = struct.unpack_from("<I", data, pos)
        labels, pos = [], pos + 4
        for _ in range(n):
            (length,) = struct.unpack_from("<I", data, pos)
            labels.append(data[pos + 4:pos + 4 + length].decode("utf-8"))
            pos += 4 + length

    golden = None
    if SECTION_GOLDEN in sections:
        pos = sections[SECTION_GOLDEN][0]
        n, n_in, n_out, rtol, atol = GOLDEN.unpack_from(data, pos)
        values = np.frombuffer(data, dtype="<f4", count=n * (n_in + n_out), offset=pos + GOLDEN.size)
        golden = (values[:n * n_in].reshape(n, n_in), values[n * n_in:].reshape(n, n_out),
                  rtol, atol)

    return dict(file_size=len(data), sections=sections, input=inp, output=outp,
                output_kind=kind, tensors=tensors, nodes=nodes, preproc=preproc, labels=labels,
                golden=golden)
