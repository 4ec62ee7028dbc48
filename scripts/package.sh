#!/usr/bin/env bash
# Build the release packages into out/packages/.
#
#   scripts/package.sh [--no-build]          the default set:
#       rillcast_<ver>_armhf.deb   from the rpi-zero build: static ARMv6 musl, so ONE armhf
#                                  package runs on every 32-bit Raspberry Pi OS and every Pi
#                                  (Zero/1 included; Raspberry Pi OS armhf is ARMv6) with no
#                                  glibc floor. An ARMv7 binary there would SIGILL on a Zero.
#       rillcast_<ver>_arm64.deb   from the rpi-4 build (aarch64 glibc; Depends: computed from
#                                  the binary's versioned glibc symbols), for Pi 3/4/5 64-bit
#       rillcast-<ver>-<target>.tar.gz  for the static camera targets (armv7 and armv6 musl):
#                                  a root-relative tree with the BusyBox init script
#   scripts/package.sh --board NAME [--no-build]
#       the package for that board's own build in out/packages/NAME/ (a .deb for rpi-*
#       boards, which run Raspberry Pi OS, else a tarball); scripts/deploy.sh uses this.
#   scripts/package.sh --host-deb BINARY OUTDIR
#       a .deb for this machine's architecture around BINARY (stripped copy), same layout;
#       tests/package_e2e.rs installs it into a scratch root. Builds nothing.
#
# Layout (what a Debian admin expects): /usr/bin/rillcast; the reference config as
# /usr/share/rillcast/rillcast.toml, which postinst copies to /etc/rillcast/rillcast.toml
# when missing (root:rillcast 0660 in a 2770 directory: the daemon saves to it from the
# page, so it is not a conffile); state (last-good.toml) in /var/lib/rillcast; conffiles:
# only /etc/default/rillcast.
#
# .debs are made with `dpkg-deb --build --root-owner-group` from a staging directory rather
# than cargo-deb: nothing to compile or install (cargo-deb is a ~1-2 min `cargo install`), no
# packaging metadata in Cargo.toml, and the maintainer scripts stay plain files under
# packaging/ where scripts/check-packages.sh checks them.
set -euo pipefail
# shellcheck source=scripts/cross-env.sh
source "$(dirname "$0")/cross-env.sh"

board=""
build=1
host_deb=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --host-deb) host_deb=("${2:?--host-deb needs BINARY OUTDIR}" "${3:?--host-deb needs BINARY OUTDIR}"); shift 3 ;;
        --board) board="${2:?--board needs a name}"; board_target "$board" >/dev/null; shift 2 ;;
        --no-build) build=0; shift ;;
        *) die "usage: $0 [--board NAME] [--no-build]" ;;
    esac
done

root="$RILLCAST_ROOT"
version="$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
[[ -n $version ]] || die "no version in Cargo.toml"
config="$root/config/rillcast.toml"
[[ -f $config ]] || die "missing $config (the reference config shipped as /usr/share/rillcast/rillcast.toml)"
# Reproducible timestamps: the last commit's time.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}"
if [[ ${#host_deb[@]} -eq 0 ]]; then
    ensure_apt dpkg binutils-arm-linux-gnueabihf binutils-aarch64-linux-gnu
fi

# binary_for BOARD: path of the board's stripped release binary (built below).
binary_for() {
    local bin
    bin="$root/out/$(board_target "$1")/rillcast"
    [[ -x $bin ]] || die "$bin missing: run scripts/build.sh $1 --release (or drop --no-build)"
    printf '%s\n' "$bin"
}

# deb_depends BINARY: Debian Depends for a binary, from its DT_NEEDED and GLIBC_x.y symbols.
deb_depends() {
    local bin="$1" needed glibc deps=()
    needed="$(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')"
    [[ -z $needed ]] && return 0 # static
    glibc="$(readelf -V "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -u | tail -n1)"
    local lib
    for lib in $needed; do
        case "$lib" in
            libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | ld-linux*) ;;
            libgcc_s.so.1) deps+=("libgcc-s1") ;;
            *) die "$bin needs $lib: add its Debian package to deb_depends" ;;
        esac
    done
    deps=("libc6 (>= ${glibc:-2.17})" "${deps[@]}")
    local IFS=,
    printf '%s\n' "${deps[*]}" | sed 's/,/, /g'
}

# make_deb BINARY TARGET OUTDIR [ARCH]
make_deb() {
    local bin="$1" target="$2" outdir="$3" arch="${4:-}" stage depends deb
    [[ -n $arch ]] || arch="$(deb_arch_for "$target")"
    stage="$(mktemp -d)"
    chmod 0755 "$stage"
    install -D -m 0755 "$bin" "$stage/usr/bin/rillcast"
    install -D -m 0644 "$config" "$stage/usr/share/rillcast/rillcast.toml"
    install -D -m 0644 "$root/packaging/rillcast.default" "$stage/etc/default/rillcast"
    install -D -m 0644 "$root/packaging/rillcast.service" "$stage/lib/systemd/system/rillcast.service"
    install -d -m 0755 "$stage/usr/share/doc/rillcast"
    printf 'rillcast %s, built for %s.\nLicense: MIT OR Apache-2.0\n' "$version" "$target" \
        >"$stage/usr/share/doc/rillcast/copyright"
    install -d -m 0755 "$stage/DEBIAN"
    for s in postinst prerm postrm; do
        install -m 0755 "$root/packaging/$s" "$stage/DEBIAN/$s"
    done
    printf '/etc/default/rillcast\n' >"$stage/DEBIAN/conffiles"
    depends="$(deb_depends "$bin")"
    {
        echo "Package: rillcast"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: rillcast developers <rillcast@localhost>"
        echo "Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
        [[ -n $depends ]] && echo "Depends: $depends"
        echo "Recommends: rpicam-apps | rpicam-apps-lite"
        echo "Section: video"
        echo "Priority: optional"
        echo "Description: small streaming daemon for camera encoders (RTSP, HLS, RTMP push)"
        echo " rillcast reads the H.264 stream of a camera's hardware encoder and serves it"
        echo " over RTSP and HLS, or pushes it over RTMP, with memory sized once at start."
        echo " Binary target: $target."
    } >"$stage/DEBIAN/control"
    mkdir -p "$outdir"
    deb="$outdir/rillcast_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
    rm -rf "$stage"
    printf '%s\n' "$deb"
}

# make_tarball BINARY TARGET OUTDIR
make_tarball() {
    local bin="$1" target="$2" outdir="$3" stage tgz
    readelf -l "$bin" | grep -q INTERP && die "$target binary is not static: cameras need a static binary"
    stage="$(mktemp -d)"
    chmod 0755 "$stage"
    install -D -m 0755 "$bin" "$stage/usr/bin/rillcast"
    install -D -m 0644 "$config" "$stage/etc/rillcast/rillcast.toml"
    install -D -m 0644 "$root/packaging/rillcast.default" "$stage/etc/default/rillcast"
    install -D -m 0755 "$root/packaging/S50rillcast" "$stage/etc/init.d/S50rillcast"
    install -d -m 0755 "$stage/usr/share/doc/rillcast"
    cat >"$stage/usr/share/doc/rillcast/INSTALL" <<EOF
rillcast $version for $target (static, no libc needed from the firmware).
Install: tar -C / -xzf rillcast-$version-$target.tar.gz
Board:   set RILLCAST_OPTS="--board NAME" in /etc/default/rillcast
Start:   /etc/init.d/S50rillcast start   (BusyBox rcS starts S* scripts at boot)
EOF
    mkdir -p "$outdir"
    tgz="$outdir/rillcast-$version-$target.tar.gz"
    tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner \
        --mtime="@$SOURCE_DATE_EPOCH" -cf - usr etc | gzip -9n >"$tgz"
    rm -rf "$stage"
    printf '%s\n' "$tgz"
}

if [[ ${#host_deb[@]} -gt 0 ]]; then
    [[ -x ${host_deb[0]} ]] || die "${host_deb[0]}: not an executable"
    tmp_bin="$(mktemp)"
    strip -o "$tmp_bin" "${host_deb[0]}"
    host_target="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')"
    made="$(make_deb "$tmp_bin" "${host_target:-host}" "${host_deb[1]}" "$(dpkg --print-architecture)")"
    rm -f "$tmp_bin"
    printf '%s\n' "$made"
    exit 0
fi

if [[ -n $board ]]; then needed=("$board"); else needed=(rpi-zero rpi-4 generic-armv7-camera); fi
if [[ $build -eq 1 ]]; then
    "$root/scripts/build.sh" "${needed[@]}" --release >&2
fi

made=()
if [[ -n $board ]]; then
    bin="$(binary_for "$board")"
    t="$(board_target "$board")"
    if [[ $board == rpi-* ]]; then
        made+=("$(make_deb "$bin" "$t" "$root/out/packages/$board")")
    else
        made+=("$(make_tarball "$bin" "$t" "$root/out/packages/$board")")
    fi
else
    out="$root/out/packages"
    made+=("$(make_deb "$(binary_for rpi-zero)" "$(board_target rpi-zero)" "$out")")
    made+=("$(make_deb "$(binary_for rpi-4)" "$(board_target rpi-4)" "$out")")
    made+=("$(make_tarball "$(binary_for generic-armv7-camera)" "$(board_target generic-armv7-camera)" "$out")")
    made+=("$(make_tarball "$(binary_for rpi-zero)" "$(board_target rpi-zero)" "$out")")
fi
for f in "${made[@]}"; do
    printf '%-72s %9d bytes\n' "${f#"$root"/}" "$(stat -c %s "$f")"
done
