#!/usr/bin/env bash
# Runs every fuzz target briefly (default 20 s each; FUZZ_SECONDS to change), on stable Rust.
#   scripts/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECONDS:-20}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for t in "${targets[@]}"; do
    echo "== fuzz $t (${secs}s)"
    # Committed seeds (fuzz/seeds/TARGET) start the search from real requests; new finds go
    # to the (ignored) corpus directory.
    dirs=()
    if [ -d "seeds/$t" ]; then
        mkdir -p "corpus/$t"
        dirs=("corpus/$t" "seeds/$t")
    fi
    cargo fuzz run "$t" "${dirs[@]}" --sanitizer none -- -max_total_time="$secs" -rss_limit_mb=1024 2>&1 | tail -n 3
done
