#!/usr/bin/python3
"""Benchmarks convoy against ONNX Runtime (onnxruntime-node) and torch (torch.jit, frozen).

    /usr/bin/python3 tools/bench_compare.py [--models fashion-mnist,resnet18,...]
        [--seconds 3] [--threads 2] [--rounds 1] [--json FILE] [--convoy build/convoy]

For every model and every configuration (batch 1, batch 16) it runs the three engines one
after the other, never in parallel: `convoy bench MODEL.cvy --json`, `node bench/ort_bench.js
MODEL.onnx --json` (both in a subprocess, each timing its own random input in [-1, 1)) and
torch in this process (torch.set_num_threads(T), torch.jit.freeze(torch.jit.trace(model)),
no_grad, warm-up, then timed runs for S seconds; OMP_WAIT_POLICY=PASSIVE unless set, see
main()). With --rounds R the alternation is repeated
R times (the order rotated each round) and the median of the R medians is quoted.

Accuracy: each engine runs the model's reference batch (NAME_input.npy) and its output is
compared with torch's reference output (NAME_ref.npy, written by tools/export_models.py):
max|out - ref| / max|ref|. The torch network timed here is rebuilt in this process the way
tools/export_models.py builds it (its build() function, same seed), or for the Fashion-MNIST
model loaded from models/fashion-mnist.cvy as tools/train_fashion.py does; it is checked
against the reference output (column "torch = ref"). A model whose torch network cannot be
rebuilt is still timed by convoy and ORT, with "n/a" where torch is needed.

Models: "fashion-mnist" is models/fashion-mnist.cvy with build/fashion-mnist.onnx and the
reference batch tests/data/fashion_batch16{,_out}.npy; any other NAME is models/zoo/NAME.onnx
(converted to build/zoo/NAME.cvy by `make bench-compare`) with models/zoo/NAME_{input,ref}.npy.
A model whose files are missing is skipped with a note.

Output: a Markdown table on stdout (progress on stderr). Ratios > 1 mean convoy is faster:
batch 1 is ORT_ms / convoy_ms (torch_ms / convoy_ms), batch 16 is convoy img/s / ORT img/s
(convoy img/s / torch img/s). --json FILE also saves every raw measurement.

It is a benchmark, not a test: the exit status is 0 unless the command line is wrong or
nothing could be measured.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
DEFAULT_MODELS = "fashion-mnist,resnet18,resnet50,mobilenet_v2,squeezenet1_1,densenet121"
LATENCY_BATCH = 1
THROUGHPUT_BATCH = 16
ENGINES = ("convoy", "ort", "torch")
TORCH_WARMUP_MIN = 3         # torch warm-up: at least this many runs ...
TORCH_WARMUP_MAX = 10        # ... and at most this many, stopping after TORCH_WARMUP_SECONDS
TORCH_WARMUP_SECONDS = 1.0
MAX_RUNS = 100000
SAME_NETWORK_TOL = 1e-4      # rebuilt torch vs NAME_ref.npy: above this it is not the same net
CHILD_ENV = dict(os.environ)  # convoy and node get the environment as it was given

# Runs one ONNX model with onnxruntime-node on a raw float32 file, as ort_bench.js configures
# the session; argv: module dir, model, input.raw, dims (comma-separated), threads, output.raw.
# Prints {"version": ..., "dims": [...]} (the output dims).
ORT_RUN_JS = r"""
'use strict';
const fs = require('fs');
const [modDir, model, inPath, dimsText, threads, outPath] = process.argv.slice(1);
const ort = require(modDir);
(async () => {
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads), interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const buf = fs.readFileSync(inPath);
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  const dims = dimsText.split(',').map(Number);
  const res = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', data, dims) });
  const out = res[session.outputNames[0]];
  fs.writeFileSync(outPath, Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  let version = '';
  try { version = require(modDir + '/package.json').version; } catch (e) { /* unknown */ }
  console.log(JSON.stringify({ version, dims: out.dims }));
  await session.release();
})().catch((e) => { console.error(`ort run: ${e.message}`); process.exit(1); });
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- models ------------------------------------------------------------------------------

def model_files(name, zoo, cvy_dir, build_dir):
    """Paths of the .cvy, .onnx, reference input and reference output of a model."""
    if name == "fashion-mnist":
        return {
            "cvy": os.path.join(ROOT, "models", "fashion-mnist.cvy"),
            "onnx": os.path.join(build_dir, "fashion-mnist.onnx"),
            "input": os.path.join(ROOT, "tests", "data", "fashion_batch16.npy"),
            "ref": os.path.join(ROOT, "tests", "data", "fashion_batch16_out.npy"),
        }
    return {
        "cvy": os.path.join(cvy_dir, name + ".cvy"),
        "onnx": os.path.join(zoo, name + ".onnx"),
        "input": os.path.join(zoo, name + "_input.npy"),
        "ref": os.path.join(zoo, name + "_ref.npy"),
    }


def build_torch_model(name, files):
    """The torch network of the model, eval mode, rebuilt as its exporter builds it."""
    if TOOLS not in sys.path:
        sys.path.insert(0, TOOLS)
    if name == "fashion-mnist":
        import train_fashion
        net = train_fashion.Net()
        train_fashion.load_cvy(net, files["cvy"])
        return net.eval()
    import export_models
    if name not in export_models.MODELS:
        raise ValueError(f"tools/export_models.py does not know {name}")
    net, _, _ = export_models.build(name, True)
    return net.eval()


def rel_diff(out, ref):
    """max|out - ref| / max|ref| (as tools/export_models.py reports it)."""
    out = np.asarray(out, np.float64).reshape(ref.shape)
    ref = np.asarray(ref, np.float64)
    scale = float(np.abs(ref).max())
    return float(np.abs(out - ref).max() / (scale if scale > 0 else 1.0))


# ---- engines -----------------------------------------------------------------------------

def run_json(cmd, what):
    """Runs cmd, returns the JSON object on the last line of its stdout (None on failure)."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=CHILD_ENV)
    if r.returncode != 0:
        log(f"  {what} FAILED ({r.returncode}): {r.stderr.strip()[-400:]}")
        return None
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log(f"  {what}: unexpected output {r.stdout.strip()[-200:]!r}")
        return None


def bench_convoy(args, files, batch):
    res = run_json([args.convoy, "bench", files["cvy"], "--batch", str(batch), "--threads",
                    str(args.threads), "--seconds", str(args.seconds), "--json"], "convoy bench")
    return res and {"median_ms": float(res["median_ms"]), "p90_ms": float(res["p90_ms"])}


def bench_ort(args, files, batch):
    res = run_json(["node", os.path.join(ROOT, "bench", "ort_bench.js"), files["onnx"],
                    "--batch", str(batch), "--threads", str(args.threads), "--seconds",
                    str(args.seconds), "--json"], "ort_bench.js")
    return res and {"median_ms": float(res["median_ms"]), "p90_ms": float(res["p90_ms"])}


class TorchBench:
    """The model frozen with torch.jit, one traced module per batch size."""

    def __init__(self, net, shape):
        self.net, self.shape, self.frozen = net, shape, {}

    def module(self, batch):
        import torch
        if batch not in self.frozen:
            x = self.example(batch)
            with torch.no_grad():
                try:
                    traced = torch.jit.trace(self.net, x)
                except Exception as e:  # noqa: BLE001  (tracing failed: try scripting)
                    log(f"  torch.jit.trace failed ({e}); scripting")
                    traced = torch.jit.script(self.net)
                self.frozen[batch] = torch.jit.freeze(traced.eval())
        return self.frozen[batch]

    def example(self, batch):
        import torch
        g = torch.Generator().manual_seed(1)
        return torch.rand((batch,) + tuple(self.shape), generator=g) * 2 - 1

    def bench(self, batch, seconds):
        import torch
        mod, x = self.module(batch), self.example(batch)
        with torch.no_grad():
            start = time.perf_counter()
            for i in range(TORCH_WARMUP_MAX):
                mod(x)
                if i + 1 >= TORCH_WARMUP_MIN and time.perf_counter() - start >= TORCH_WARMUP_SECONDS:
                    break
            times = []
            deadline = time.perf_counter() + seconds
            while len(times) < MAX_RUNS:
                t0 = time.perf_counter()
                mod(x)
                t1 = time.perf_counter()
                times.append((t1 - t0) * 1e3)
                if t1 >= deadline:
                    break
        times.sort()
        return {"median_ms": statistics.median(times),
                "p90_ms": times[max(0, -(-9 * len(times) // 10) - 1)], "runs": len(times)}

    def run(self, x):
        import torch
        with torch.no_grad():
            eager = self.net(torch.from_numpy(x)).numpy()
            jit = self.module(x.shape[0])(torch.from_numpy(x)).numpy()
        return eager, jit


def convoy_output(args, files, x_path):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npy")
        r = subprocess.run([args.convoy, "run", files["cvy"], "--input", x_path, "--output", out,
                            "--threads", str(args.threads)], capture_output=True, text=True,
                           env=CHILD_ENV)
        if r.returncode != 0:
            log(f"  convoy run FAILED: {r.stderr.strip()[-400:]}")
            return None
        return np.load(out)


def ort_output(args, files, x):
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.raw"), os.path.join(tmp, "out.raw")
        np.ascontiguousarray(x, np.float32).tofile(inp)
        res = run_json(["node", "-e", ORT_RUN_JS, args.ort_module, files["onnx"], inp,
                        ",".join(map(str, x.shape)), str(args.threads), out], "ORT run")
        if res is None:
            return None, ""
        return np.fromfile(out, np.float32).reshape(res["dims"]), res.get("version", "")


# ---- one model ---------------------------------------------------------------------------

def bench_model(args, name):
    files = model_files(name, args.zoo, args.cvy_dir, args.build)
    rec = {"model": name, "files": files, "notes": [], "runs": {e: {} for e in ENGINES}}
    if not os.path.isfile(files["onnx"]):
        rec["skipped"] = f"{os.path.relpath(files['onnx'], ROOT)} is missing"
        return rec
    have_cvy = os.path.isfile(files["cvy"])
    if not have_cvy:
        rec["notes"].append(f"{os.path.relpath(files['cvy'], ROOT)} is missing (convert failed?):"
                            " convoy not measured")
    x = np.load(files["input"]).astype(np.float32) if os.path.isfile(files["input"]) else None
    ref = np.load(files["ref"]).astype(np.float32) if os.path.isfile(files["ref"]) else None
    if x is None or ref is None:
        rec["notes"].append("reference input/output missing: no accuracy check")

    # torch network (rebuilt), checked against the reference output
    tb = None
    try:
        t0 = time.time()
        net = build_torch_model(name, files)
        shape = x.shape[1:] if x is not None else None
        if shape is None:
            import export_models
            _, _, _, chans, size = export_models.MODELS[name]
            shape = (chans, size, size)
        tb = TorchBench(net, shape)
        log(f"  torch model rebuilt in {time.time() - t0:.1f} s")
    except Exception as e:  # noqa: BLE001
        rec["notes"].append(f"torch model not rebuilt ({e}): torch n/a")
        log(f"  torch model not rebuilt: {e}")

    # accuracy on the reference batch (before timing: also a warm-up of sorts)
    acc = rec["diff"] = {}
    if x is not None and ref is not None:
        if tb is not None:
            eager, jit = tb.run(x)
            acc["torch_rebuilt"] = rel_diff(eager, ref)
            acc["torch_jit"] = rel_diff(jit, ref)
            rec["torch_same"] = acc["torch_rebuilt"] <= SAME_NETWORK_TOL
            if not rec["torch_same"]:
                rec["notes"].append(f"rebuilt torch model differs from the reference output "
                                    f"({acc['torch_rebuilt']:.3g}): torch timed on a network of "
                                    "the same architecture but other weights")
        if have_cvy:
            out = convoy_output(args, files, files["input"])
            if out is not None:
                acc["convoy"] = rel_diff(out, ref)
                acc["convoy_top1_same"] = bool(
                    (out.reshape(ref.shape).argmax(1) == ref.argmax(1)).all())
        out, version = ort_output(args, files, x)
        if out is not None:
            acc["ort"] = rel_diff(out, ref)
            args.ort_version = args.ort_version or version

    # timing: the three engines alternately, per configuration and round
    for batch in (LATENCY_BATCH, THROUGHPUT_BATCH):
        for rnd in range(args.rounds):
            for eng in ENGINES[rnd % 3:] + ENGINES[:rnd % 3]:  # rotated each round
                if eng == "convoy" and not have_cvy or eng == "torch" and tb is None:
                    continue
                t0 = time.time()
                try:
                    if eng == "convoy":
                        res = bench_convoy(args, files, batch)
                    elif eng == "ort":
                        res = bench_ort(args, files, batch)
                    else:
                        res = tb.bench(batch, args.seconds)
                except Exception as e:  # noqa: BLE001
                    log(f"  {eng} batch {batch} FAILED: {e}")
                    res = None
                if res is None:
                    continue
                rec["runs"][eng].setdefault(str(batch), []).append(res)
                log(f"  batch {batch:2d} round {rnd + 1} {eng:6s}: median {res['median_ms']:.3f}"
                    f" ms ({time.time() - t0:.1f} s)")
    rec["summary"] = summarise(rec)
    return rec


def summarise(rec):
    """Median over rounds of the medians, per engine and batch; images/s = batch / median."""
    s = {}
    for eng, per_batch in rec["runs"].items():
        for batch, runs in per_batch.items():
            ms = statistics.median(r["median_ms"] for r in runs)
            s.setdefault(eng, {})[batch] = {"median_ms": ms, "images_per_s": int(batch) * 1e3 / ms}
    return s


# ---- output ------------------------------------------------------------------------------

def fmt_ms(v):
    return "—" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}")


def fmt_ips(v):
    return "—" if v is None else (f"{v:.1f}" if v < 100 else f"{v:.0f}")


def fmt_ratio(v):
    return "—" if v is None else f"{v:.2f}"


def fmt_diff(v):
    return "n/a" if v is None else f"{v:.1e}"


def round_range(rec, batch):
    """Lowest and highest ×ORT of the rounds, each from convoy's and ORT's runs of the same
    round (adjacent in time, so they share the machine's state of the moment)."""
    c = rec["runs"].get("convoy", {}).get(batch, [])
    o = rec["runs"].get("ort", {}).get(batch, [])
    if not c or len(c) != len(o):
        return "—"
    r = [oo["median_ms"] / cc["median_ms"] for cc, oo in zip(c, o)]
    return f"{min(r):.2f}-{max(r):.2f}" if len(r) > 1 else f"{r[0]:.2f}"


def table(records):
    b1, bn = str(LATENCY_BATCH), str(THROUGHPUT_BATCH)
    head = ["model",
            f"convoy ms b{b1}", f"ORT ms b{b1}", f"torch ms b{b1}",
            f"convoy img/s b{bn}", f"ORT img/s b{bn}", f"torch img/s b{bn}",
            f"×ORT b{b1}", f"×ORT b{bn}", f"×torch b{b1}", f"×torch b{bn}",
            "Δ convoy", "Δ ORT", "Δ torch-jit", f"×ORT b{b1} / b{bn}, per round"]
    lines = ["| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]
    for rec in records:
        if "skipped" in rec:
            continue
        s, d = rec["summary"], rec["diff"]

        def get(eng, batch, key):
            return s.get(eng, {}).get(batch, {}).get(key)

        def ratio(num, den):
            return num / den if num is not None and den is not None and den > 0 else None

        c1, o1, t1 = (get(e, b1, "median_ms") for e in ENGINES)
        cn, on, tn = (get(e, bn, "images_per_s") for e in ENGINES)
        torch_ok = rec.get("torch_same", False)
        name = rec["model"] + ("" if torch_ok or "torch_jit" not in d else " †")
        row = [name, fmt_ms(c1), fmt_ms(o1), fmt_ms(t1), fmt_ips(cn), fmt_ips(on), fmt_ips(tn),
               fmt_ratio(ratio(o1, c1)), fmt_ratio(ratio(cn, on)),
               fmt_ratio(ratio(t1, c1)), fmt_ratio(ratio(cn, tn)),
               fmt_diff(d.get("convoy")), fmt_diff(d.get("ort")),
               fmt_diff(d.get("torch_jit") if torch_ok else None),
               " / ".join(round_range(rec, b) for b in (b1, bn))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def environment(args):
    import torch
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "threads": args.threads, "seconds": args.seconds,
        "rounds": args.rounds, "torch": torch.__version__, "onnxruntime_node": args.ort_version,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"), "convoy_rev": rev,
        "torch_OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": os.getloadavg(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=DEFAULT_MODELS,
                    help=f"comma- or space-separated (default {DEFAULT_MODELS})")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per engine and "
                    "configuration (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    ap.add_argument("--rounds", type=int, default=1, help="alternations per configuration; the "
                    "median of the round medians is quoted (default 1)")
    ap.add_argument("--convoy", default=os.path.join(ROOT, "build", "convoy"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="build directory (fashion-mnist.onnx; default build)")
    ap.add_argument("--zoo", default=os.path.join(ROOT, "models", "zoo"))
    ap.add_argument("--cvy-dir", help="converted zoo models (default BUILD/zoo)")
    ap.add_argument("--ort-module", default=os.path.join(ROOT, "bench", "node_modules",
                                                         "onnxruntime-node"))
    ap.add_argument("--json", metavar="FILE", help="also save the raw numbers as JSON")
    args = ap.parse_args()
    if args.seconds <= 0 or args.threads < 1 or args.rounds < 1:
        ap.error("--seconds, --threads and --rounds must be positive")
    args.cvy_dir = args.cvy_dir or os.path.join(args.build, "zoo")
    args.ort_version = ""
    models = [m for m in args.models.replace(",", " ").split() if m]
    if not os.access(args.convoy, os.X_OK):
        ap.error(f"{args.convoy} is not an executable (run make first)")
    if not os.path.isdir(args.ort_module):
        ap.error(f"{args.ort_module} is missing: cd bench && npm install --ignore-scripts")

    # torch's OpenMP threads spin-wait between parallel regions by default; on a shared machine
    # a spinning thread that loses its core costs a scheduler tick per operator (measured here:
    # the Fashion-MNIST model at 2 threads took 8-110 ms per image instead of 0.7 ms, resnet18
    # 800 ms instead of 60 ms). Passive waiting (as convoy must do) unless told otherwise; set
    # before torch loads libgomp, and only for this process.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    # intra-op threads only: torch.set_num_interop_threads(1) made Debian's torch 1.13 up to
    # 100x slower on the Fashion-MNIST model here (a thread-pool interaction), so it is left alone
    torch.set_num_threads(args.threads)

    records = []
    for name in models:
        log(f"== {name}")
        rec = bench_model(args, name)
        if "skipped" in rec:
            log(f"  skipped: {rec['skipped']}")
        records.append(rec)

    env = environment(args)
    print(f"convoy vs ONNX Runtime {env['onnxruntime_node'] or '?'} (onnxruntime-node) vs torch "
          f"{env['torch']} (torch.jit, frozen, OMP_WAIT_POLICY={env['torch_OMP_WAIT_POLICY']}) — "
          f"{env['date']}, {env['cpu']}, {env['threads']} "
          f"threads, {env['seconds']:g} s per engine and configuration, {env['rounds']} round(s), "
          f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, convoy {env['convoy_rev']}")
    print()
    print(table(records))
    print()
    print(f"Medians. ×ORT / ×torch > 1: convoy faster (batch {LATENCY_BATCH}: other ms / convoy "
          f"ms; batch {THROUGHPUT_BATCH}: convoy img/s / other img/s). Δ: max|out − ref| / max|ref|"
          f" on the model's reference batch, ref = torch's (eager) output from the exporter; "
          f"Δ torch-jit is the frozen torch module timed here. Per round: the range of the "
          f"rounds' own ×ORT, each from two runs adjacent in time (this machine's neighbours "
          f"move single runs by 10-30%).")
    notes = []
    for rec in records:
        if "skipped" in rec:
            notes.append(f"{rec['model']}: skipped, {rec['skipped']}")
        for n in rec["notes"]:
            notes.append(f"{rec['model']}: {n}")
        if rec.get("diff", {}).get("convoy_top1_same") is False:
            notes.append(f"{rec['model']}: convoy's top-1 differs from torch's on the reference "
                         "batch")
    if any("torch_jit" in r.get("diff", {}) and not r.get("torch_same") for r in records):
        notes.append("†: the torch network timed is not the one exported (see above)")
    for n in notes:
        print(f"- {n}")
    sys.stdout.flush()

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"environment": env, "models": records}, f, indent=1)
        log(f"raw numbers in {args.json}")
    if not any(r.get("summary") for r in records):
        sys.exit(1)


if __name__ == "__main__":
    main()
