#!/usr/bin/env bash
# Build rillcast for one board or all boards, without Docker.
#
#   scripts/build.sh BOARD|--all [--release]
#
# Installs what it needs (Debian cross gcc + sysroots for the glibc targets, qemu-user-static,
# pinned Rust toolchains and std; see scripts/cross-env.sh for the toolchain choice), builds each
# distinct target once, strips a copy into out/<target>/rillcast and prints its size. With
# --release (what packages and size reports use) the sizes also go to out/sizes.txt; without it
# the dev profile is built (fast, for qemu smoke tests). A release binary over its board's
# max_binary_bytes fails the build; boards pick cargo features with cargo_features. The two pinned toolchains' targets build
# in parallel (RILLCAST_BUILD_JOBS=1 to build one at a time); build_s is each target's own
# wall time, so with parallel builds the column adds up to more than the elapsed time.
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

# target_dir_for TARGET: targets of the main toolchain build in the usual target dir, those of
# the old one in a directory of their own, so the two toolchains' builds can run at once
# (cargo locks a target dir for the whole build; host build scripts and proc macros are
# compiled per toolchain anyway, so nothing is built twice).
target_dir_for() {
    local tc
    tc="$(toolchain_for "$1")"
    if [[ $tc == "$RILLCAST_RUST" ]]; then printf '%s\n' "$tdir"; else printf '%s\n' "$tdir/rust-$tc"; fi
}

# build_group TARGET...: builds the targets one after another; writes each one's build time
# to $work/TARGET.secs. Output goes to $work/<toolchain>.log.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
build_group() {
    local t tc start
    for t in "$@"; do
        tc="$(toolchain_for "$t")"
        log "building $t ($profile, Rust $tc)"
        start=$SECONDS
        local feats=()
        mapfile -t feats < <(features_for_target "$t")
        (cd "$RILLCAST_ROOT" && CARGO_TARGET_DIR="$(target_dir_for "$t")" \
            cargo "+$tc" build --locked --quiet "${cargo_profile[@]}" "${feats[@]}" --target "$t" --bin rillcast) ||
            { log "build of $t failed"; return 1; }
        echo $((SECONDS - start)) >"$work/$t.secs"
    done
}

for t in "${targets[@]}"; do ensure_rust_target "$t"; done
# One group per toolchain; with RILLCAST_BUILD_JOBS=2 (default) the groups run in parallel.
declare -A group_of
for t in "${targets[@]}"; do
    tc="$(toolchain_for "$t")"
    group_of[$tc]="${group_of[$tc]:+${group_of[$tc]} }$t"
done
pids=()
for tc in "${!group_of[@]}"; do
    read -r -a g <<<"${group_of[$tc]}"
    if [[ ${RILLCAST_BUILD_JOBS:-2} -gt 1 ]]; then
        build_group "${g[@]}" &
        pids+=("$!")
    else
        build_group "${g[@]}" || die "build failed"
    fi
done
for p in "${pids[@]}"; do
    wait "$p" || { kill "${pids[@]}" 2>/dev/null || true; die "build failed (see the messages above)"; }
done

for t in "${targets[@]}"; do
    secs_of[$t]="$(cat "$work/$t.secs")"
    mkdir -p "$out/$t"
    cp "$(target_dir_for "$t")/$t/$profile_dir/rillcast" "$out/$t/rillcast"
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
    # Size budgets: a board may declare max_binary_bytes (the static ARMv7 camera: 1.5 MiB,
    # the project's goal for flash-constrained cameras). RILLCAST_MAX_BINARY_BYTES overrides.
    for t in "${targets[@]}"; do
        budget="${RILLCAST_MAX_BINARY_BYTES:-$(budget_for_target "$t")}"
        if [[ -n $budget && ${size_of[$t]} -gt $budget ]]; then
            die "$t binary is ${size_of[$t]} bytes, over its board's $budget-byte budget"
        fi
    done
fi
