#!/usr/bin/env bash
# Compares convoy with onnxruntime-node on the Fashion-MNIST model.
#
#   tools/bench.sh build/convoy     # convoy and ORT, batch 1/16 x threads 1/2
#   tools/bench.sh --ort-only       # ORT half only (no convoy binary needed)
#
# For each configuration it runs `convoy bench models/fashion-mnist.cvy` and then
# bench/ort_bench.js on build/fashion-mnist.onnx, one after the other (never in parallel),
# BENCH_SECONDS seconds each (default 3), and prints one table row. It installs
# onnxruntime-node into bench/node_modules and regenerates build/fashion-mnist.onnx from the
# .cvy weights when they are missing.
set -euo pipefail

cd "$(dirname "$0")/.."

CVY_MODEL=models/fashion-mnist.cvy
ONNX_MODEL=build/fashion-mnist.onnx
PYTHON=/usr/bin/python3
BENCH_SECONDS=${BENCH_SECONDS:-3}

usage() {
    echo "usage: tools/bench.sh CONVOY_BINARY | --ort-only" >&2
    exit 2
}

[ $# -eq 1 ] || usage
if [ "$1" = --ort-only ]; then
    CONVOY=
else
    CONVOY=$1
    [ -x "$CONVOY" ] || { echo "bench.sh: $CONVOY is not an executable" >&2; exit 1; }
fi

[ -f "$CVY_MODEL" ] || { echo "bench.sh: $CVY_MODEL is missing" >&2; exit 1; }
if [ ! -d bench/node_modules/onnxruntime-node ]; then
    echo "installing onnxruntime-node into bench/node_modules" >&2
    (cd bench && npm install --ignore-scripts --no-audit --no-fund >&2)
fi
if [ ! -f "$ONNX_MODEL" ]; then
    echo "exporting $ONNX_MODEL from $CVY_MODEL" >&2
    mkdir -p "$(dirname "$ONNX_MODEL")"
    "$PYTHON" tools/train_fashion.py --export-only --out "$CVY_MODEL" --onnx "$ONNX_MODEL" >&2
fi

# Prints one table row from the convoy JSON ("" when skipped) and the ORT JSON.
row() {
    "$PYTHON" -c '
import json, sys
convoy = json.loads(sys.argv[1]) if sys.argv[1] else None
ort = json.loads(sys.argv[2])
cells = [ort["batch"], ort["threads"], "-", "-", "%.3f" % ort["median_ms"],
         "%.0f" % ort["images_per_s"], "-"]
if convoy:
    cells[2:4] = ["%.3f" % convoy["median_ms"], "%.0f" % convoy["images_per_s"]]
    cells[6] = "%.2f" % (convoy["images_per_s"] / ort["images_per_s"])
print("%5s %7s %10s %12s %10s %10s %6s" % tuple(cells))
' "$1" "$2"
}

printf '%5s %7s %10s %12s %10s %10s %6s\n' batch threads "convoy ms" "convoy img/s" \
    "ORT ms" "ORT img/s" ratio
for batch in 1 16; do
    for threads in 1 2; do
        convoy_json=
        if [ -n "$CONVOY" ]; then
            convoy_json=$("$CONVOY" bench "$CVY_MODEL" --batch "$batch" --threads "$threads" \
                --seconds "$BENCH_SECONDS" --json | tail -n 1)
        fi
        ort_json=$(node bench/ort_bench.js "$ONNX_MODEL" --batch "$batch" --threads "$threads" \
            --seconds "$BENCH_SECONDS" --json)
        row "$convoy_json" "$ort_json"
    done
done
