#!/usr/bin/env bash
# Build rillcast for one board or all boards, without Docker.
#
#   scripts/build.sh BOARD|--all [--release]
#
# Installs what it needs (Debian cross gcc + sysroots for the glibc targets, qemu-user-static,
# pinned Rust toolchains and std; see scripts/cross-env.sh for the toolchain choice), builds each
# distinct target once, strips a copy into out/<target>/rillcast and prints its size. With
# --release (what packages and size reports use) the sizes also go to out/sizes.txt; without it
# the dev profile is built (fast, for qemu smoke tests). A 32-bit ARM release binary over
# 1.5 MiB (RILLCAST_MAX_ARM32_BYTES) fails the build.
set -euo pipefail
# shellcheck source=scripts/cross-env.sh
source "$(dirname "$0")/cross-env.sh"

usage() { die "usage: $0 BOARD|--all [--release]   (boards: $(all_boards | tr '\n' ' '))"; }

boards=()
release=0
for arg in "$@"; do
    case "$arg" in
        --all) mapfile -t boards < <(all_boards) ;;
        --release) release=1 ;;
        -h | --help) usage ;;
        -*) usage ;;
        *) board_target "$arg" >/dev/null; boards+=("$arg") ;;
    esac
done
[[ ${#boards[@]} -gt 0 ]] || usage

profile=dev
profile_dir=debug
cargo_profile=()
if [[ $release -eq 1 ]]; then
    profile=release
    profile_dir=release
    cargo_profile=(--release)
fi

ensure_cross_tools

# Distinct targets, in board order.
targets=()
for b in "${boards[@]}"; do
    t="$(board_target "$b")"
    [[ " ${targets[*]} " == *" $t "* ]] || targets+=("$t")
done

out="$RILLCAST_ROOT/out"
mkdir -p "$out"
tdir="$(target_dir)"
declare -A size_of secs_of
for t in "${targets[@]}"; do
    ensure_rust_target "$t"
    tc="$(toolchain_for "$t")"
    log "building $t ($profile, Rust $tc)"
    start=$SECONDS
    (cd "$RILLCAST_ROOT" && cargo "+$tc" build --locked --quiet "${cargo_profile[@]}" --target "$t" --bin rillcast)
    secs_of[$t]=$((SECONDS - start))
    mkdir -p "$out/$t"
    cp "$tdir/$t/$profile_dir/rillcast" "$out/$t/rillcast"
    "$(strip_for "$t")" --strip-all "$out/$t/rillcast"
    size_of[$t]=$(stat -c %s "$out/$t/rillcast")
done

report="$(
    printf '%-22s %-32s %10s %8s %6s\n' board target bytes MiB build_s
    for b in "${boards[@]}"; do
        t="$(board_target "$b")"
        awk -v b="$b" -v t="$t" -v s="${size_of[$t]}" -v sec="${secs_of[$t]}" \
            'BEGIN { printf "%-22s %-32s %10d %8.3f %6d\n", b, t, s, s / 1048576, sec }'
    done
)"
printf 'stripped sizes (%s profile):\n%s\n' "$profile" "$report"
if [[ $release -eq 1 ]]; then
    # Merge into out/sizes.txt: rows of boards not built this time are kept.
    {
        head -n1 <<<"$report"
        {
            tail -n +2 <<<"$report"
            if [[ -f $out/sizes.txt ]]; then
                tail -n +2 "$out/sizes.txt" | while read -r b rest; do
                    [[ " ${boards[*]} " == *" $b "* ]] || printf '%s\n' "$b $rest"
                done
            fi
        } | sort -k1,1 | awk '{ printf "%-22s %-32s %10d %8.3f %6d\n", $1, $2, $3, $4, $5 }'
    } >"$out/sizes.txt.new"
    mv "$out/sizes.txt.new" "$out/sizes.txt"
    log "updated out/sizes.txt"
    # Size budget: a 32-bit ARM release binary must stay <= 1.5 MiB (project requirement).
    budget=${RILLCAST_MAX_ARM32_BYTES:-1572864}
    for t in "${targets[@]}"; do
        if [[ $t == arm* && ${size_of[$t]} -gt $budget ]]; then
            die "$t binary is ${size_of[$t]} bytes, over the $budget-byte budget"
        fi
    done
fi
