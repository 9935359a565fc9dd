#!/usr/bin/env bash
# Load-tests convoyd with wrk (Debian package) and compares it with the engine alone.
#
#   server/bench-server.sh build/convoyd build/convoy      (what `make bench-server` runs)
#
# Starts the daemon on a free 127.0.0.1 port with models/, then for concurrency 1, 8 and 64
# posts tests/data/fashion_00.png to /classify for BENCH_SECONDS (default 5) with wrk -t1.
# From /metrics before and after each run it computes the mean batch size and the mean
# decode time, then runs `convoy bench` at that batch size (same thread count) right after
# it, and again right after a second, identical wrk run; it reports the mean of the two wrk
# runs against the mean of the two engine runs (interleaving damps drift on a shared host):
# images/s, p50/p99 latency, mean batch, and server/engine throughput. Server and load
# generator share the machine's cores, as a real single-host test would.
set -euo pipefail
cd "$(dirname "$0")/.."

CONVOYD=${1:-build/convoyd}
CONVOY=${2:-build/convoy}
SECS=${BENCH_SECONDS:-5}
MODEL=models/fashion-mnist.cvy
IMAGE=${BENCH_IMAGE:-tests/data/fashion_00.png}
THREADS=${BENCH_THREADS:-0}
export BENCH_IMAGE=$IMAGE

command -v wrk >/dev/null || {
    echo "bench-server: wrk is missing (apt-get install wrk)" >&2
    exit 1
}
for f in "$CONVOYD" "$CONVOY"; do [ -x "$f" ] || { echo "bench-server: $f missing" >&2; exit 1; }; done
[ -f "$MODEL" ] && [ -f "$IMAGE" ] || { echo "bench-server: $MODEL or $IMAGE missing" >&2; exit 1; }

TMP=$(mktemp -d /tmp/convoy-bench-XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
ln -s "$PWD/$MODEL" "$TMP/fashion-mnist.cvy"

"$CONVOYD" --models "$TMP" --listen 127.0.0.1:0 --threads "$THREADS" --log-level warn \
    --max-queue 100000 2>"$TMP/log" &
PID=$!
PORT=
for _ in $(seq 1 200); do
    PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/log" | head -1)
    [ -n "$PORT" ] && curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.05
done
[ -n "$PORT" ] || { echo "bench-server: convoyd did not start:" >&2; cat "$TMP/log" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 50); do
    curl -fs -H 'Content-Type: image/png' --data-binary "@$IMAGE" "$URL/classify" >/dev/null
done

# images, batches, decode-seconds sum and count, inference-seconds sum (fashion-mnist)
snapshot() {
    curl -fs "$URL/metrics" | awk '
        /^convoy_images_total\{model="fashion-mnist"\}/ {img=$2}
        /^convoy_batches_total\{model="fashion-mnist"\}/ {bat=$2}
        /^convoy_decode_duration_seconds_sum\{model="fashion-mnist"\}/ {ds=$2}
        /^convoy_decode_duration_seconds_count\{model="fashion-mnist"\}/ {dc=$2}
        /^convoy_inference_duration_seconds_sum\{model="fashion-mnist"\}/ {is=$2}
        END {print img, bat, ds, dc, is}'
}

printf '%-5s %10s %9s %9s %8s %12s %8s %s\n' conc "images/s" "p50 ms" "p99 ms" "batch" \
    "engine img/s" "ratio" "note"
# wrk_run C: prints "rps p50 p99 errors images batches decode_sum decode_count busy" (deltas;
# busy = share of the wall time the engine spent in forward passes)
wrk_run() {
    local I0 B0 S0 N0 F0 I1 B1 S1 N1 F1 OUT RES
    read -r I0 B0 S0 N0 F0 <<<"$(snapshot)"
    OUT=$(wrk -t1 -c"$1" -d"${SECS}s" --latency -s server/bench-post.lua "$URL/classify")
    read -r I1 B1 S1 N1 F1 <<<"$(snapshot)"
    RES=$(grep '^RESULT' <<<"$OUT")
    echo "$(sed 's/.*rps=\([0-9.]*\).*/\1/' <<<"$RES") \
$(sed 's/.*p50_ms=\([0-9.]*\).*/\1/' <<<"$RES") \
$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$RES") \
$(sed 's/.*errors=\([0-9]*\).*/\1/' <<<"$RES") \
$(awk -v a="$I0" -v b="$I1" -v c="$B0" -v d="$B1" -v e="$S0" -v f="$S1" -v g="$N0" -v h="$N1" \
        -v x="$F0" -v y="$F1" -v t="$SECS" 'BEGIN {print b-a, d-c, f-e, h-g, (y-x)/t}')"
}

# engine_run B: prints "images_per_s median_ms" of convoy bench at batch B
engine_run() {
    local ENG
    ENG=$("$CONVOY" bench --batch "$1" --threads "$THREADS" --seconds 2 --json "$MODEL")
    echo "$(sed 's/.*"images_per_s": *\([0-9.]*\).*/\1/' <<<"$ENG") \
$(sed 's/.*"median_ms": *\([0-9.]*\).*/\1/' <<<"$ENG")"
}

for C in 1 8 64; do
    read -r R1 P50a P99a E1 I1 B1 S1 N1 U1 <<<"$(wrk_run "$C")"
    EB=$(awk -v i="$I1" -v b="$B1" 'BEGIN {m=(b>0?i/b:1); b=int(m+0.5); if (b<1) b=1; print b}')
    read -r EIPS1 EMS1 <<<"$(engine_run "$EB")"
    read -r R2 P50b P99b E2 I2 B2 S2 N2 U2 <<<"$(wrk_run "$C")"
    read -r EIPS2 EMS2 <<<"$(engine_run "$EB")"
    awk -v c="$C" -v r1="$R1" -v r2="$R2" -v p1="$P50a" -v p2="$P50b" -v q1="$P99a" \
        -v q2="$P99b" -v e="$((E1 + E2))" -v i="$((I1 + I2))" -v b="$((B1 + B2))" \
        -v s="$(awk -v a="$S1" -v b="$S2" 'BEGIN {print a+b}')" -v n="$((N1 + N2))" \
        -v x1="$EIPS1" -v x2="$EIPS2" -v m1="$EMS1" -v m2="$EMS2" -v u1="$U1" -v u2="$U2" 'BEGIN {
        rps = (r1 + r2) / 2; eips = (x1 + x2) / 2; ems = (m1 + m2) / 2
        dec = n > 0 ? 1000 * s / n : 0; p50 = (p1 + p2) / 2
        note = sprintf("errors=%d decode=%.3fms engine-busy=%.0f%%", e, dec, 50 * (u1 + u2))
        if (c == 1)
            note = note sprintf(" engine_b1=%.3fms p50-(engine+decode)=%.3fms", ems, p50 - ems - dec)
        printf "%-5s %10.1f %9.3f %9.3f %8.2f %12.1f %8.2f %s\n", c, rps, p50, (q1 + q2) / 2,
            (b > 0 ? i / b : 0), eips, rps / eips, note
    }'
done
