#!/usr/bin/env bash
# The whole ARM pipeline, for CI (.ci/run can call this): build every board, run them under
# qemu, package, check the packages. Prints the time of each step; fails on the first failure.
#
#   scripts/ci-arm.sh
set -euo pipefail
here="$(dirname "$0")"
total_start=$SECONDS
step() {
    local start=$SECONDS
    printf '== %s\n' "$*"
    "$@"
    printf '== %s: %d s\n' "$1" $((SECONDS - start))
}
step "$here/build.sh" --all --release
step "$here/test-arm.sh" --all
step "$here/package.sh" --no-build
step "$here/check-packages.sh"
printf '== ARM pipeline total: %d s\n' $((SECONDS - total_start))
