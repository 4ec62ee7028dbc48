#!/usr/bin/env bash
# Installs everything the test suite uses on a fresh Debian 12 machine (idempotent, quiet):
# real peers (ffmpeg, GStreamer, nginx + RTMP module, Chromium), MPEG-TS tools, qemu-user and
# the ARM cross linkers, the Rust components CI checks with, cargo-fuzz, and the npm packages
# of the browser tests. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

DEB_PACKAGES=(
    ffmpeg tstools
    gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav
    gstreamer1.0-rtsp python3-gi gir1.2-gst-rtsp-server-1.0
    nginx libnginx-mod-rtmp libnginx-mod-stream openssl
    chromium
    qemu-user-static gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf
    libc6-dev-arm64-cross libc6-dev-armhf-cross

    busybox systemd
    # tests/package_e2e.rs: build the .deb, dpkg -i it into a scratch root, run it as the
    # rillcast user (unshare/nsenter/setpriv); check-packages.sh lints the scripts.
    dpkg binutils util-linux adduser shellcheck
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx from the package starts a system service; the tests run their own instances.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop nginx >/dev/null 2>&1 || true; fi
$SUDO pkill -x nginx >/dev/null 2>&1 || true

for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "install-deps: cargo install cargo-fuzz"
    cargo install --quiet --locked cargo-fuzz
fi

# Browser tests (tests/hls_e2e.rs): hls.js and playwright-core, pinned by the lock file.
if command -v npm >/dev/null 2>&1 && [ ! -d tests/web/node_modules/hls.js ]; then
    echo "install-deps: npm ci in tests/web"
    (cd tests/web && npm ci --no-audit --no-fund --silent)
fi

for tool in ffmpeg ffprobe gst-launch-1.0 nginx chromium qemu-arm-static qemu-aarch64-static tsinfo node npm \
    dpkg-deb strip unshare nsenter setpriv; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install-deps: $tool is still missing" >&2; exit 1; }
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "install-deps: nginx RTMP module missing" >&2; exit 1; }
# The RTMPS tests put nginx's stream module (TLS terminator) in front of nginx-rtmp.
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || { echo "install-deps: nginx stream module missing" >&2; exit 1; }
echo "install-deps: ok"
