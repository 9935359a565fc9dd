#!/bin/sh
# tests/console/run.sh - the web console's browser test (console.test.js), run by `make test`
# as $(BUILD)/test_console after the C tests. Needs Debian's chromium and playwright-core in
# tests/console/node_modules (both installed by `make deps`). Bounded: 150 s at most.
# The last line is "N passed, N failed"; exit status 0 only when nothing failed.
cd "$(dirname "$0")/../.." || exit 1
build=${CONVOY_BUILD:-build}
if [ ! -d tests/console/node_modules/playwright-core ]; then
    echo "tests/console/node_modules/playwright-core is missing: run make deps"
    echo "0 passed, 1 failed"
    exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "/usr/bin/chromium is missing: run make deps (Debian package chromium)"
    echo "0 passed, 1 failed"
    exit 1
fi
timeout -k 10 150 node tests/console/console.test.js "$build"
rc=$?
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "console test timed out"
    echo "0 passed, 1 failed"
fi
exit $rc
