#!/usr/bin/env bash
# tools/container_test.sh - `make container-test`: build docker/Dockerfile with podman and test
# the image the way a user runs it.
#
#   1. podman, runc and debootstrap (apt-get when missing); a local debian:bookworm-slim made
#      with debootstrap when the image is missing (see ../shared/design/containers.md);
#   2. podman build (no pull, chroot isolation, host network for apt-get, docker format so the
#      HEALTHCHECK is kept); prints the image size;
#   3. runs it with the models from a temporary directory mounted read-only at /models and the
#      port published on a free loopback port (-p; host networking with CONVOY_LISTEN when
#      CONTAINER_NET=host or when publishing does not work here);
#   4. classifies tests/data/fashion_00.png through that port and checks the golden label; runs
#      the image's HEALTHCHECK;
#   5. hot reload through the volume: copies a second model into the directory and waits for
#      GET /models to list it (the daemon's file watcher; SIGHUP through `podman kill` when
#      the watcher does not pick it up);
#   6. stops it (SIGTERM, podman stop -t 15) while a slow 40-image upload is in flight and
#      checks that the upload still gets its 40 answers, exit code 0, and that it stopped
#      within the timeout (drained, not killed).
# Prints the time of each phase. Environment: IMAGE (default localhost/convoy:test),
# KEEP_IMAGE=0 to remove the image afterwards, CONTAINER_NET=host to skip -p,
# CONTAINER_RELOAD=hup to test reloading by SIGHUP with the file watcher off.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/convoy:test}
BASE=docker.io/library/debian:bookworm-slim
NAME=convoy-test-$$
STOP_TIMEOUT=15
RUNTIME=(--runtime runc --cgroup-manager=cgroupfs)
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

t_all=$(date +%s)
phase_t=$t_all
phase() {
    local now
    now=$(date +%s)
    echo "== [$((now - t_all)) s] $*"
    phase_t=$now
}
die() {
    echo "container-test: FAIL: $*" >&2
    if [ -n "${started:-}" ]; then
        echo "--- container log:" >&2
        podman "${RUNTIME[@]}" logs "$NAME" 2>&1 | tail -30 >&2 || true
    fi
    exit 1
}

work=$(mktemp -d /tmp/convoy-ctest-XXXXXX)
started=
cleanup() {
    [ -n "$started" ] && podman "${RUNTIME[@]}" rm -f "$NAME" > /dev/null 2>&1 || true
    rm -rf "$work"
    if [ "${KEEP_IMAGE:-1}" = 0 ]; then podman rmi -f "$IMAGE" > /dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# ---- 1. tools and base image ---------------------------------------------------------------
phase "tools"
missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap curl:curl; do
    command -v "${tool%%:*}" > /dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
if ! podman image exists "$BASE"; then
    phase "base image: debootstrap --variant=minbase bookworm -> $BASE"
    rootfs=$work/rootfs
    $SUDO debootstrap --variant=minbase bookworm "$rootfs" > "$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
    # Slim like the official image: no docs, man pages or translations, now or from later
    # apt-get installs (dpkg path-excludes), and no apt lists or caches.
    [ -d "$rootfs/usr/share" ] || die "debootstrap left no $rootfs/usr/share"
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' \
        'path-exclude /usr/share/info/*' 'path-exclude /usr/share/lintian/*' \
        'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' |
        $SUDO tee "$rootfs/etc/dpkg/dpkg.cfg.d/slim" > /dev/null
    $SUDO find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    $SUDO find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
        -exec rm -rf {} +
    $SUDO rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/info/* "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/lintian/*
    $SUDO tar -C "$rootfs" -c . | podman import - "$BASE" > /dev/null
    $SUDO rm -rf "$rootfs"
fi

# ---- 2. build ------------------------------------------------------------------------------
phase "podman build -f docker/Dockerfile -t $IMAGE"
t_build=$(date +%s)
podman build --pull=never --isolation=chroot --network=host --format docker \
    -f docker/Dockerfile -t "$IMAGE" . > "$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log"; die "podman build failed"; }
build_s=$(($(date +%s) - t_build))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "built in ${build_s} s; image size $((size / 1000000)) MB ($size bytes)"
hc=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" 2>/dev/null || true)
[ -n "$hc" ] && [ "$hc" != null ] || die "the image has no HEALTHCHECK"

# ---- 3. run --------------------------------------------------------------------------------
phase "run"
models=$work/models
mkdir -p "$models"
cp models/fashion-mnist.cvy "$models/"
chmod 755 "$work" "$models"
chmod 644 "$models"/*.cvy
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The sandbox here forbids raising rlimits: keep them at or below the current ones.
ulimits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=1000:1000)
[ "$(ulimit -Hn)" = unlimited ] && ulimits=(--ulimit nofile=20000:20000 --ulimit nproc=1000:1000)
# CONTAINER_RELOAD=hup turns the daemon's file watcher off to test the SIGHUP path.
reload_env=()
[ "${CONTAINER_RELOAD:-}" = hup ] && reload_env=(-e CONVOY_WATCH=0)
run() {
    podman "${RUNTIME[@]}" run -d --name "$NAME" "${ulimits[@]}" "$@" "${reload_env[@]}" \
        -v "$models:/models:ro" -e CONVOY_THREADS=2 "$IMAGE" > /dev/null
}
net=${CONTAINER_NET:-publish}
if [ "$net" = publish ]; then
    if run -p "127.0.0.1:$port:8080" 2> "$work/run.err"; then
        started=1
    else
        cat "$work/run.err"
        echo "publishing a port does not work here: host network instead"
        podman "${RUNTIME[@]}" rm -f "$NAME" > /dev/null 2>&1 || true
        net=host
    fi
fi
if [ "$net" = host ]; then
    run --network=host -e CONVOY_LISTEN="0.0.0.0:$port" || die "podman run failed"
    started=1
fi
echo "container $NAME, network: $net, http://127.0.0.1:$port"
url=http://127.0.0.1:$port
ready=
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
    if curl -sf -o /dev/null "$url/readyz"; then ready=1; break; fi
    [ "$(podman "${RUNTIME[@]}" inspect --format '{{.State.Running}}' "$NAME")" = true ] ||
        die "the container exited during startup"
    sleep 0.2
done
[ -n "$ready" ] || die "not ready after 60 s"
[ "$(podman "${RUNTIME[@]}" inspect --format '{{.Config.User}}' "$NAME")" = 10001:10001 ] ||
    die "the container does not run as 10001:10001"

# ---- 4. classify, health check -------------------------------------------------------------
phase "classify through the published port"
golden=$(awk '$1 == "fashion_00.png" { print $2 }' tests/data/fashion_golden.txt)
ans=$(curl -sf --data-binary @tests/data/fashion_00.png -H 'Content-Type: image/png' "$url/classify") ||
    die "POST /classify failed"
idx=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["predictions"][0]["index"])' <<<"$ans")
label=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["predictions"][0]["label"])' <<<"$ans")
[ "$idx" = "$golden" ] || die "fashion_00.png: top-1 $idx ($label), golden $golden"
echo "fashion_00.png -> $label (index $idx), as golden"
podman "${RUNTIME[@]}" healthcheck run "$NAME" > /dev/null 2>&1 ||
    die "the image HEALTHCHECK fails on a healthy container"
echo "HEALTHCHECK: healthy"

# ---- 5. hot reload through the volume ------------------------------------------------------
phase "hot reload: copy second.cvy into the models volume"
cp models/fashion-mnist.cvy "$models/.second.tmp"
chmod 644 "$models/.second.tmp"
mv "$models/.second.tmp" "$models/second.cvy"
listed() { curl -sf "$url/models" | python3 -c '
import json, sys
d = json.load(sys.stdin)
d = d.get("models", d) if isinstance(d, dict) else d
sys.exit(0 if any(m.get("name") == "second" and m.get("state") == "ready" for m in d) else 1)'; }
how=
deadline=$((SECONDS + 5))
while [ $SECONDS -lt $deadline ]; do
    if listed; then how="file watcher"; break; fi
    sleep 0.1
done
if [ -z "$how" ]; then
    echo "not picked up within 5 s: podman kill --signal HUP"
    podman "${RUNTIME[@]}" kill --signal HUP "$NAME" > /dev/null
    deadline=$((SECONDS + 10))
    while [ $SECONDS -lt $deadline ]; do
        if listed; then how="SIGHUP"; break; fi
        sleep 0.1
    done
fi
[ -n "$how" ] || die "GET /models does not list the new model 'second'"
ans=$(curl -sf --data-binary @tests/data/fashion_00.png "$url/models/second/classify") ||
    die "POST /models/second/classify failed"
idx=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["predictions"][0]["index"])' <<<"$ans")
[ "$idx" = "$golden" ] || die "second model: top-1 $idx, golden $golden"
echo "model 'second' loaded by the $how and answers"

# ---- 6. graceful stop ----------------------------------------------------------------------
phase "stop (SIGTERM, timeout $STOP_TIMEOUT s) during a slow upload"
# A 40-image JSON request uploaded at 8 kB/s (~2.7 s) is in flight when SIGTERM arrives: the
# daemon must finish it (200), then exit 0.
python3 - "$work/batch.json" <<'EOF2'
import base64, json, sys
img = base64.b64encode(open("tests/data/fashion_00.png", "rb").read()).decode()
json.dump({"images": [img] * 40}, open(sys.argv[1], "w"))
EOF2
curl -s -o "$work/inflight.json" -w '%{http_code}' --limit-rate 8k -H 'Content-Type: application/json' \
    --data-binary @"$work/batch.json" "$url/models/fashion-mnist/classify" > "$work/inflight.code" &
curl_pid=$!
sleep 0.5
t0=$(date +%s.%N)
podman "${RUNTIME[@]}" stop -t "$STOP_TIMEOUT" "$NAME" > /dev/null 2> "$work/stop.err" ||
    { cat "$work/stop.err"; die "podman stop failed"; }
t1=$(date +%s.%N)
wait "$curl_pid" || true
stop_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
code=$(podman "${RUNTIME[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")
podman "${RUNTIME[@]}" logs "$NAME" > "$work/container.log" 2>&1 || true
inflight=$(cat "$work/inflight.code")
echo "stopped in $stop_s s, exit code $code; the request in flight: HTTP $inflight"
[ "$code" = 0 ] || { tail -20 "$work/container.log"; die "exit code $code, not 0"; }
python3 -c "import sys; sys.exit(0 if $t1 - $t0 < $STOP_TIMEOUT - 2 else 1)" ||
    die "took $stop_s s to stop (timeout $STOP_TIMEOUT s): SIGTERM was not handled"
grep -q 'stopped after' "$work/container.log" || die "no 'stopped after' line in the log"
grep -q 'draining: 1 requests in flight' "$work/container.log" ||
    echo "note: the upload was not in flight at SIGTERM (see the log)"
[ "$inflight" = 200 ] || die "the request in flight got HTTP $inflight, not 200"
n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["results"]))' "$work/inflight.json")
[ "$n" = 40 ] || die "the request in flight got $n results, not 40"

phase "done"
echo "container-test: passed (image $IMAGE, $((size / 1000000)) MB; build ${build_s} s," \
    "stop ${stop_s} s, total $(($(date +%s) - t_all)) s)"
