#!/usr/bin/env bash
# Added latency, encoder write -> RTP out: rillcast against GStreamer's RTSP server, fed the
# same way. examples/rtsp_latency starts each server with its stdin a pipe, writes the 720p30
# H.264 test pattern into it (one write per access unit, each tagged with an SEI frame number),
# and a TCP-interleaved viewer stamps the arrival of each frame's last RTP packet (marker bit).
# Writes out/bench-latency.txt.
#
#   scripts/bench-latency.sh [--frames 400]
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=400
while [ $# -gt 0 ]; do
    case "$1" in
    --frames) FRAMES="$2"; shift 2 ;;
    *) echo "usage: $0 [--frames N]" >&2; exit 2 ;;
    esac
done
PY=/usr/bin/python3
"$PY" -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null || {
    echo "bench: needs python3-gi and gir1.2-gst-rtsp-server-1.0 (apt-get install ...)" >&2
    exit 1
}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bin rillcast --example rtsp_latency
BIN="$CARGO_TARGET_DIR/release"
mkdir -p out
WORK=$(mktemp -d /tmp/rillcast-latency.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
RAW=out/bench-latency.raw
: >"$RAW"
free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

P=$(free_port)
cat >"$WORK/rillcast.toml" <<EOF
[rtsp]
port = $P
bind = "127.0.0.1"
udp_port = 0
[http]
port = $(free_port)
bind = "127.0.0.1"
[streams.live.source]
kind = "stdin"
format = "h264"
fps = 30.0
EOF
timeout 120 "$BIN/examples/rtsp_latency" --label rillcast --frames "$FRAMES" --out "$RAW" \
    --url "rtsp://127.0.0.1:$P/live" \
    --cmd "exec '$BIN/rillcast' --config '$WORK/rillcast.toml' 2>'$WORK/rillcast.log'"

P=$(free_port)
timeout 120 "$BIN/examples/rtsp_latency" --label gstreamer --frames "$FRAMES" --out "$RAW" \
    --url "rtsp://127.0.0.1:$P/live" \
    --cmd "exec $PY scripts/bench/gst_rtsp_peer.py --port $P >'$WORK/gst.log' 2>&1"

"$PY" - "$RAW" >out/bench-latency.txt <<'EOF'
import sys, datetime
rows = [dict(kv.split("=", 1) for kv in l.split() if "=" in kv) for l in open(sys.argv[1]) if l.strip()]
print("Added latency: write of an access unit into the server's stdin -> arrival of its last RTP")
print("packet (marker) at a loopback RTSP/TCP viewer. 1280x720@30 H.264 test pattern, GOP 30.")
print(datetime.datetime.now().isoformat(timespec="seconds"))
print()
print("%-10s %8s %8s %9s %9s %9s %9s" % ("server", "frames", "matched", "p50 ms", "p95 ms", "p99 ms", "max ms"))
for r in rows:
    print("%-10s %8s %8s %9s %9s %9s %9s" % (r["label"], r["frames"], r["matched"], r["p50_ms"],
          r["p95_ms"], r["p99_ms"], r["max_ms"]))
by = {r["label"]: r for r in rows}
if "rillcast" in by and "gstreamer" in by:
    a, b = float(by["rillcast"]["p50_ms"]), float(by["gstreamer"]["p50_ms"])
    print()
    print("median: gstreamer - rillcast = %.2f ms (%.1f frame intervals at 30 fps)" % (b - a, (b - a) / (1000 / 30)))
EOF
cat out/bench-latency.txt
