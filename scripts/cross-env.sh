# shellcheck shell=bash
# Shared by scripts/build.sh, test-arm.sh, package.sh and deploy.sh; `source` it yourself before
# a manual `cargo +1.95.0 test --target armv7-unknown-linux-gnueabihf` (the qemu runners are in
# .cargo/config.toml). Sets linkers through CARGO_TARGET_<TRIPLE>_LINKER and installs, once and
# quietly, what Docker-free ARM builds need. Nothing machine-specific is written to the repo.
#
# Toolchains (pinned; never `stable`, never `rustup update`: the newest manifest served here
# lacks even armv7-gnueabihf):
#   RILLCAST_RUST (1.95.0)       aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf
#   RILLCAST_RUST_OLD (1.90.0)   arm-unknown-linux-musleabihf, armv7-unknown-linux-musleabihf
# 1.95 has no prebuilt std for the two 32-bit musl targets on the rustup mirror this project
# uses; 1.90.0's manifest still has them (~15 s to install). That was chosen over rebuilding std
# (-Zbuild-std needs RUSTC_BOOTSTRAP=1 on stable, rust-src, and zig or a musl cross gcc, and
# costs ~90 s per target per cold build) because it is faster, needs no unstable flags, and
# 1.90 is the crate's declared rust-version, so these builds double as the MSRV check.
# Both musl targets link with rust-lld and the self-contained musl crt/libc that ships in the
# target's rust-std: no Debian gcc objects (ARMv7 Thumb-2 only) end up in the ARMv6 binary.

RILLCAST_RUST="${RILLCAST_RUST:-1.95.0}"
RILLCAST_RUST_OLD="${RILLCAST_RUST_OLD:-1.90.0}"
RILLCAST_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARM_UNKNOWN_LINUX_MUSLEABIHF_LINKER=rust-lld
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER=rust-lld
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
# C compilers for build scripts (ring, the RTMPS crypto provider, compiles C and assembly).
# The musl targets have no musl cross gcc here; Debian's gnueabihf/aarch64 gcc compiles ring's
# freestanding C (no libc headers beyond stddef/stdint) for them, with the ISA pinned so no
# ARMv7/Thumb-2 code reaches the ARMv6 binary.
export CC_arm_unknown_linux_musleabihf=arm-linux-gnueabihf-gcc
export AR_arm_unknown_linux_musleabihf=arm-linux-gnueabihf-ar
export CFLAGS_arm_unknown_linux_musleabihf="-march=armv6 -marm -mfpu=vfp -mfloat-abi=hard"
export CC_armv7_unknown_linux_musleabihf=arm-linux-gnueabihf-gcc
export AR_armv7_unknown_linux_musleabihf=arm-linux-gnueabihf-ar
export CFLAGS_armv7_unknown_linux_musleabihf="-march=armv7-a -mfpu=vfpv3-d16 -mfloat-abi=hard"
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Where cargo puts its output (respects CARGO_TARGET_DIR).
target_dir() { printf '%s\n' "${CARGO_TARGET_DIR:-$RILLCAST_ROOT/target}"; }

# Board names, from boards/*.toml.
all_boards() {
    local f
    for f in "$RILLCAST_ROOT"/boards/*.toml; do basename "$f" .toml; done
}

# board_field BOARD KEY: a top-level string value from boards/BOARD.toml.
board_field() {
    local file="$RILLCAST_ROOT/boards/$1.toml"
    [[ -f $file ]] || die "unknown board '$1'; known boards: $(all_boards | tr '\n' ' ')"
    sed -n "s/^$2[[:space:]]*=[[:space:]]*\"\(.*\)\"[[:space:]]*\$/\1/p" "$file" | head -n1
}

board_target() { board_field "$1" target; }

# Cargo feature arguments of the first board building TARGET: nothing when the board has no
# `cargo_features` key (default features), else --no-default-features [--features a,b].
features_for_target() {
    local b file line list
    for b in $(all_boards); do
        [[ "$(board_target "$b")" == "$1" ]] || continue
        file="$RILLCAST_ROOT/boards/$b.toml"
        line="$(sed -n 's/^cargo_features[[:space:]]*=[[:space:]]*\[\(.*\)\].*$/\1/p' "$file" | head -n1)"
        grep -q '^cargo_features[[:space:]]*=' "$file" || return 0
        list="$(tr -d ' "' <<<"$line")"
        printf '%s\n' --no-default-features
        [[ -z $list ]] || printf '%s\n' --features "$list"
        return 0
    done
}

# Size budget in bytes of the first board building TARGET (empty: none).
budget_for_target() {
    local b
    for b in $(all_boards); do
        [[ "$(board_target "$b")" == "$1" ]] || continue
        sed -n 's/^max_binary_bytes[[:space:]]*=[[:space:]]*\([0-9_]*\).*$/\1/p' \
            "$RILLCAST_ROOT/boards/$b.toml" | tr -d _ | head -n1
        return 0
    done
}

# The pinned toolchain that has a prebuilt std for TARGET.
toolchain_for() {
    case "$1" in
        arm-unknown-linux-musleabihf | armv7-unknown-linux-musleabihf) echo "$RILLCAST_RUST_OLD" ;;
        *) echo "$RILLCAST_RUST" ;;
    esac
}

# Debian architecture of a target's binaries.
deb_arch_for() {
    case "$1" in
        aarch64-*) echo arm64 ;;
        arm-* | armv7-*) echo armhf ;;
        *) die "no Debian architecture for $1" ;;
    esac
}

# binutils `strip` that understands TARGET's ELF class.
strip_for() {
    case "$1" in
        aarch64-*) echo aarch64-linux-gnu-strip ;;
        *) echo arm-linux-gnueabihf-strip ;;
    esac
}

# qemu-user command (without the binary) for TARGET on its board's real CPU.
qemu_for() {
    case "$1" in
        arm-unknown-linux-musleabihf) echo "qemu-arm-static -cpu arm1176" ;;
        armv7-unknown-linux-musleabihf) echo "qemu-arm-static -cpu cortex-a7" ;;
        armv7-unknown-linux-gnueabihf) echo "qemu-arm-static -cpu cortex-a7 -L /usr/arm-linux-gnueabihf" ;;
        aarch64-unknown-linux-gnu) echo "qemu-aarch64-static -cpu cortex-a53 -L /usr/aarch64-linux-gnu" ;;
        aarch64-unknown-linux-musl) echo "qemu-aarch64-static -cpu cortex-a53" ;;
        *) die "no qemu command for $1" ;;
    esac
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# ensure_apt PKG...: installs the Debian packages that are missing (one apt-get update first).
ensure_apt() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# The cross linkers, sysroots, binutils and qemu every board build and test uses.
ensure_cross_tools() {
    ensure_apt gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross \
        libc6-dev-armhf-cross binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf \
        qemu-user-static
}

# ensure_rust_target TARGET: the pinned toolchain for TARGET and its prebuilt std.
ensure_rust_target() {
    local target="$1" tc
    tc="$(toolchain_for "$target")"
    command -v rustup >/dev/null || die "rustup not found: install it first (https://rustup.rs)"
    if ! rustup toolchain list | grep -q "^$tc-"; then
        log "installing Rust $tc (minimal profile)"
        rustup toolchain install "$tc" --profile minimal --no-self-update >/dev/null 2>&1 ||
            die "rustup toolchain install $tc failed"
    fi
    if ! rustup target list --toolchain "$tc" --installed | grep -qx "$target"; then
        log "installing Rust std for $target on $tc"
        rustup target add --toolchain "$tc" "$target" >/dev/null 2>&1 ||
            die "rustup target add --toolchain $tc $target failed"
    fi
}
