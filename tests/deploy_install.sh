#!/usr/bin/env bash
# tests/deploy_install.sh - `make install` / `make uninstall` into temporary DESTDIRs (part of
# `make test`): the tree, the unit's paths, the installed daemon starting from the installed
# config, `systemd-analyze verify` and the `systemd-analyze security` band of the unit, a kept
# (edited) config, PREFIX=/usr, and that uninstall removes every file it installed.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${CONVOY_BUILD:-build}
fails=0
pass() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

work=$(mktemp -d /tmp/convoy-install-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# A clean sub-make: not part of the caller's jobserver, quiet, and installing the programs
# already built (-o: never rebuilt here, e.g. without the sanitizer flags of `make asan`).
submake() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory BUILD="$B" \
        -o "$B/convoyd" -o "$B/convoy" "$@"
}
for p in "$B/convoyd" "$B/convoy"; do
    [ -x "$p" ] || { echo "deploy_install: $p is not built"; exit 1; }
done

echo "== install (PREFIX=/usr/local) into $work/d"
d=$work/d
submake install DESTDIR="$d" > "$work/install.log"
for f in usr/local/bin/convoyd usr/local/bin/convoy; do
    check "$f executable" test -x "$d/$f"
done
for f in usr/local/lib/systemd/system/convoyd.service etc/convoy/convoyd.json \
    var/lib/convoy/models/fashion-mnist.cvy usr/local/share/doc/convoy/README.md; do
    check "$f present" test -f "$d/$f"
done
unit=$d/usr/local/lib/systemd/system/convoyd.service
check "unit ExecStart" grep -qx 'ExecStart=/usr/local/bin/convoyd --config /etc/convoy/convoyd.json' "$unit"
check "unit Type=notify" grep -qx 'Type=notify' "$unit"
check "unit ExecReload SIGHUP" grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit"
check "unit read-only models" grep -qx 'ReadOnlyPaths=/var/lib/convoy/models' "$unit"
check "model identical" cmp -s models/fashion-mnist.cvy "$d/var/lib/convoy/models/fashion-mnist.cvy"

# The installed daemon reads the installed config; the directory is redirected into DESTDIR.
cfg=$d/etc/convoy/convoyd.json
pc=$("$d/usr/local/bin/convoyd" --config "$cfg" --print-config)
check "config: models dir" grep -q '"models": "/var/lib/convoy/models"' <<<"$pc"
check "config: listen" grep -q '"listen": "127.0.0.1:8080"' <<<"$pc"
# TimeoutStopSec must exceed drain-ms + the 1 s the daemon gives the last answers.
drain=$(sed -n 's/.*"drain-ms": \([0-9]*\).*/\1/p' <<<"$pc")
tstop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$unit")
check "TimeoutStopSec ($tstop s) > drain-ms ($drain ms) + 1 s" test $((tstop * 1000)) -gt $((drain + 1000))
"$d/usr/local/bin/convoyd" --config "$cfg" --models "$d/var/lib/convoy/models" \
    --listen 127.0.0.1:0 2> "$work/daemon.log" &
pid=$!
for _ in $(seq 200); do grep -q ' ready$' "$work/daemon.log" && break; sleep 0.05; done
check "installed daemon ready" grep -q ' ready$' "$work/daemon.log"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
check "installed daemon exit 0 on SIGTERM" test "$rc" = 0

if command -v systemd-analyze > /dev/null; then
    # verify checks the executables exist: point ExecStart at the DESTDIR binary.
    sed "s|^ExecStart=/usr/local/bin/convoyd|ExecStart=$d/usr/local/bin/convoyd|" "$unit" \
        > "$work/convoyd.service"
    if systemd-analyze verify --man=no "$work/convoyd.service" > "$work/verify.log" 2>&1; then
        pass "systemd-analyze verify"
    else
        fail "systemd-analyze verify"; cat "$work/verify.log"
    fi
    systemd-analyze security --offline=yes --no-pager "$work/convoyd.service" > "$work/sec.log" 2>&1 || true
    line=$(grep 'Overall exposure level' "$work/sec.log" || true)
    score=$(sed -n 's/.*: \([0-9.]*\) .*/\1/p' <<<"$line")
    echo "       $line"
    check "security exposure $score <= 0.9 (SAFE)" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 0.9) }'
else
    echo "  skip systemd-analyze (not installed)"
fi

echo "== an edited config survives install and uninstall"
echo '{"models": "/srv/models", "listen": "0.0.0.0:8080"}' > "$cfg"
submake install DESTDIR="$d" > "$work/install2.log"
check "edited config kept" grep -q /srv/models "$cfg"
check "default next to it" test -f "$cfg.default"
submake uninstall DESTDIR="$d" > "$work/uninstall.log"
check "edited config kept by uninstall" grep -q /srv/models "$cfg"
rm -f "$cfg"
left=$(find "$d" -type f)
check "uninstall removed every file${left:+ (left: $left)}" test -z "$left"
check "model directory removed" test ! -e "$d/var/lib/convoy"

echo "== PREFIX=/usr"
d2=$work/d2
submake install DESTDIR="$d2" PREFIX=/usr > /dev/null
check "/usr/bin/convoyd" test -x "$d2/usr/bin/convoyd"
check "unit in /usr/lib/systemd/system" test -f "$d2/usr/lib/systemd/system/convoyd.service"
check "unit ExecStart follows PREFIX" \
    grep -qx 'ExecStart=/usr/bin/convoyd --config /etc/convoy/convoyd.json' "$d2/usr/lib/systemd/system/convoyd.service"
submake uninstall DESTDIR="$d2" PREFIX=/usr > /dev/null
left=$(find "$d2" -type f)
check "uninstall (PREFIX=/usr) removed every file${left:+ (left: $left)}" test -z "$left"

if [ "$fails" -ne 0 ]; then
    echo "deploy_install: $fails check(s) failed"
    exit 1
fi
echo "deploy_install: all checks passed"
