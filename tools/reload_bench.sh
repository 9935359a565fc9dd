#!/bin/sh
# tools/reload_bench.sh - latency and memory of convoyd across hot reloads.
#
# Runs the hot-reload end-to-end test (tests/server_reload.c, test_reload_under_load): 32
# loopback clients post Fashion-MNIST images continuously; after a warm-up (10 reloads), 3 s of
# steady state are measured, then 200 reloads alternating two versions of the model (each
# written to a temporary name and renamed over <dir>/m.cvy; every tenth time a corrupt and a
# truncated file first), as fast as the daemon takes them. Prints request counts, p50/p99
# client latency in both phases and VmRSS before/after (idle, clients paused).
#   usage: tools/reload_bench.sh        (from the repository root; builds what it needs)
set -e
make -s build/test_server
CK_RUN_SUITE=reload CK_RUN_CASE=under-load CK_VERBOSITY=normal build/test_server 2>&1 |
    grep -E '^reload-bench|Checks|:F:|:E:'
