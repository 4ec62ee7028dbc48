#!/usr/bin/env bash
# Run the ARM builds under qemu-user on each board's real CPU model.
#
#   scripts/test-arm.sh [BOARD|--all]      (default --all)
#
# 1. Static checks on each binary in out/<target>/ (built by scripts/build.sh --release, which
#    is run first for any board whose binary is missing): ELF machine, ARMv6 attributes for the
#    Pi Zero build, static linking for musl, the glibc floor for gnu builds.
# 2. Runs each binary under qemu with `-cpu arm1176` (ARMv6), `cortex-a7` (ARMv7) or
#    `cortex-a53` (aarch64): `--help`, `--version`, `--check-config`; each must exit 0.
#    (Extend here: start the daemon on loopback and read RTSP/HLS with ffprobe.)
# 3. Negative control: an ARMv7 binary under `-cpu arm1176` must die with SIGILL (exit 132),
#    proving the CPU models really catch instructions a board lacks.
# 4. The crate's unit tests for armv7-unknown-linux-gnueabihf under qemu through the cargo
#    runner in .cargo/config.toml (RILLCAST_UNIT_TEST_TARGETS to change the list; only --lib:
#    integration tests that exec the daemon would need binfmt_misc, which is not set up here).
#
# Prints a closing line `N passed, N failed` and exits non-zero on any failure.
set -euo pipefail
# shellcheck source=scripts/cross-env.sh
source "$(dirname "$0")/cross-env.sh"

boards=()
for arg in "${@:---all}"; do
    case "$arg" in
        --all) mapfile -t boards < <(all_boards) ;;
        -*) die "usage: $0 [BOARD|--all]" ;;
        *) board_target "$arg" >/dev/null; boards+=("$arg") ;;
    esac
done

ensure_cross_tools
out="$RILLCAST_ROOT/out"
passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }

# Build what is missing.
missing=()
for b in "${boards[@]}"; do
    [[ -x "$out/$(board_target "$b")/rillcast" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    "$RILLCAST_ROOT/scripts/build.sh" "${missing[@]}" --release
fi

# run_expect CODE DESC CMD...: runs CMD (10 s limit), checks its exit code.
run_expect() {
    local want="$1" desc="$2" rc=0 output
    shift 2
    output="$(timeout 10 "$@" 2>&1)" || rc=$?
    if [[ $rc -eq $want ]]; then
        pass "$desc (exit $rc)"
    else
        fail "$desc: exit $rc, expected $want; output: ${output:0:400}"
    fi
}

# 1 + 2: per distinct target.
seen=" "
for b in "${boards[@]}"; do
    t="$(board_target "$b")"
    [[ $seen == *" $t "* ]] && continue
    seen+="$t "
    bin="$out/$t/rillcast"
    hdr="$(readelf -h "$bin")"
    case "$t" in
        aarch64-*) machine='AArch64' ;;
        *) machine='ARM' ;;
    esac
    if grep -q "Machine:[[:space:]]*$machine\$" <<<"$hdr"; then pass "$t: ELF machine $machine"; else fail "$t: ELF machine is not $machine"; fi
    if [[ $t == arm-unknown-linux-musleabihf ]]; then
        attrs="$(readelf -A "$bin")"
        if grep -q 'Tag_CPU_arch: v6$' <<<"$attrs" && ! grep -q 'Thumb-2' <<<"$attrs"; then
            pass "$t: ARMv6 attributes, no Thumb-2"
        else
            fail "$t: not an ARMv6 binary: $(grep -E 'CPU_arch|THUMB' <<<"$attrs" | tr -s ' \n' ' ')"
        fi
    fi
    if [[ $t == *musl* ]]; then
        if readelf -l "$bin" | grep -q 'INTERP'; then fail "$t: has a dynamic loader (not static)"; else pass "$t: static"; fi
    else
        glibc="$(readelf -V "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k1,1 -k2,2n -u | tail -n1)"
        pass "$t: dynamic glibc build, needs ${glibc:-no versioned GLIBC symbols}"
    fi
    read -r -a qemu <<<"$(qemu_for "$t")"
    for args in --help --version --check-config; do
        run_expect 0 "$t under ${qemu[*]:0:3}: rillcast $args" "${qemu[@]}" "$bin" "$args"
    done
done

# 3: negative control.
control=""
for t in armv7-unknown-linux-musleabihf armv7-unknown-linux-gnueabihf; do
    [[ -x "$out/$t/rillcast" ]] && { control="$t"; break; }
done
if [[ -z $control ]]; then
    "$RILLCAST_ROOT/scripts/build.sh" rpi-3 --release
    control=armv7-unknown-linux-gnueabihf
fi
run_expect 132 "negative control: $control binary under qemu -cpu arm1176 dies with SIGILL" \
    qemu-arm-static -cpu arm1176 -L /usr/arm-linux-gnueabihf "$out/$control/rillcast" --check-config

# 4: unit tests under qemu.
for t in ${RILLCAST_UNIT_TEST_TARGETS:-armv7-unknown-linux-gnueabihf}; do
    ensure_rust_target "$t"
    start=$SECONDS
    if (cd "$RILLCAST_ROOT" && cargo "+$(toolchain_for "$t")" test --locked --quiet --lib --target "$t"); then
        pass "unit tests for $t under qemu ($((SECONDS - start)) s)"
    else
        fail "unit tests for $t under qemu"
    fi
done

printf '%d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
