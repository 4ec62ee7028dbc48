#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what it needs, then runs format
# and lint checks, every unit and end-to-end test (against real ffmpeg, GStreamer, nginx-rtmp,
# Chromium), the fuzz targets briefly, and the ARM builds under qemu.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip fuzzing and the ARM pipeline
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

log="$(mktemp -d)/cargo-test.log"
start=$SECONDS
step() {
    local t=$SECONDS
    echo "== $1"
    shift
    "$@"
    echo "== done in $((SECONDS - t)) s"
}

step "install dependencies" scripts/install-deps.sh
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --all-targets --quiet -- -D warnings
step "cargo build --release" cargo build --release --quiet
# Tests that start servers use loopback ports of their own; keep two test threads so the
# end-to-end tests (each bounded in time) don't starve each other on a 2-core machine.
# --no-fail-fast: every suite runs and reports even when one fails; pipefail keeps cargo's
# status through tee.
step "cargo test" bash -c "set -o pipefail; cargo test --quiet --no-fail-fast -- --test-threads=2 2>&1 | tee '$log'"
if [ $quick = 0 ]; then
    step "fuzz targets" scripts/fuzz.sh
    step "ARM builds, qemu, packages" scripts/ci-arm.sh
fi

passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "== total $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
