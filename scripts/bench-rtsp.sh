#!/usr/bin/env bash
# RTSP fan-out benchmark: rillcast against GStreamer's RTSP server, in the same run, on the
# same stream, for N viewers over RTSP/TCP on loopback. Writes out/bench-rtsp.txt (the table)
# and out/bench-rtsp.raw (one key=value line per run), then runs scripts/bench-latency.sh.
#
#   scripts/bench-rtsp.sh [--duration S] [--viewers "1 100 1000"] [--no-latency]
#                         [--servers "rillcast gstreamer"]
#
# The stream: rillcast's H.264 test pattern, 1280x720 @ 30 fps, GOP 30, ~2 Mbit/s, written in
# real time by examples/h264_feed.rs into a pipe (one write per access unit, like a camera
# encoder). Both servers read the same bytes from their stdin: rillcast with source kind
# "stdin", GStreamer with `fdsrc fd=0 ! h264parse ! rtph264pay` (scripts/bench/gst_rtsp_peer.py,
# a shared media, under Debian's /usr/bin/python3). So neither server's CPU includes an
# encoder: the comparison is of the serving path alone. Video only (GStreamer's pipeline has no
# audio, so rillcast gets none either).
#
# Per N, each server runs alone (the other is stopped) on a fresh start: idle RSS is read
# 8 s after start, before any viewer; one warm-up viewer plays for 3 s so GStreamer's shared pipeline is
# running (it prepares on first use), then N viewers connect (2 ms apart), settle 2 s, and
# the window of --duration seconds is measured: viewers held, delivered bitrate, frame rate,
# RTP sequence gaps, daemon CPU % (utime+stime from /proc/PID/stat over the window), RSS
# (VmRSS / VmHWM), threads, and PLAY -> first keyframe packet (median / p95), both for the N
# viewers of the ramp and for 20 viewers joining one at a time during the window.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=20
VIEWERS="1 100 1000"
LATENCY=1
SERVERS="rillcast gstreamer"
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --viewers) VIEWERS="$2"; shift 2 ;;
    --no-latency) LATENCY=0; shift ;;
    --servers) SERVERS="$2"; shift 2 ;;
    *) echo "usage: $0 [--duration S] [--viewers \"1 100 1000\"] [--no-latency] [--servers \"rillcast gstreamer\"]" >&2; exit 2 ;;
    esac
done

PY=/usr/bin/python3
if ! "$PY" -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null; then
    echo "bench: the peer needs Debian's GStreamer RTSP server for python3:" >&2
    echo "  apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad" >&2
    exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bin rillcast --example rtsp_load --example h264_feed --example rtsp_latency
BIN="$CARGO_TARGET_DIR/release"

MAXN=0
for n in $VIEWERS; do [ "$n" -gt "$MAXN" ] && MAXN=$n; done
# Two fds per viewer in this shell's children (client and server side), plus slack; bounded.
NOFILE=$((2 * MAXN + 256))
if [ "$NOFILE" -gt "$(ulimit -Hn)" ]; then
    echo "bench: need $NOFILE open files but the hard limit is $(ulimit -Hn)" >&2
    exit 1
fi
[ "$(ulimit -n)" -lt "$NOFILE" ] && ulimit -n "$NOFILE"

mkdir -p out
WORK=$(mktemp -d /tmp/rillcast-bench.XXXXXX)
RAW=out/bench-rtsp.raw
: >"$RAW"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port: wait (bounded) until it accepts
    for _ in $(seq 1 100); do
        "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# One server, one N. $1 = rillcast | gstreamer.
run_one() {
    local server=$1 n=$2 port fifo feed srv
    port=$(free_port)
    fifo="$WORK/feed-$server-$n"
    mkfifo "$fifo"
    "$BIN/examples/h264_feed" >"$fifo" 2>/dev/null &
    feed=$!
    PIDS+=("$feed")
    if [ "$server" = rillcast ]; then
        cat >"$WORK/rillcast.toml" <<EOF
[rtsp]
port = $port
bind = "127.0.0.1"
udp_port = 0
max_viewers = $((MAXN + 16))
# Every load viewer comes from 127.0.0.1 and many set up at once.
max_pending_per_address = $((MAXN + 16))
[http]
port = $(free_port)
bind = "127.0.0.1"
[media]
memory_mib = $((16 + (MAXN + 16) * 24 / 1024 + 1))
[streams.live.source]
kind = "stdin"
format = "h264"
fps = 30.0
EOF
        "$BIN/rillcast" --config "$WORK/rillcast.toml" <"$fifo" 2>"$WORK/$server-$n.log" &
    else
        "$PY" scripts/bench/gst_rtsp_peer.py --port "$port" <"$fifo" >"$WORK/$server-$n.log" 2>&1 &
    fi
    srv=$!
    PIDS+=("$srv")
    wait_port "$port"
    # Idle is read after the stream's ring has wrapped once (3000 ms at the 4000 kbit/s
    # ceiling = 1.5 MB, ~6 s of this 2 Mbit/s stream), so it is the steady-state figure.
    sleep 8
    "$BIN/examples/rtsp_load" --url "rtsp://127.0.0.1:$port/live" --viewers "$n" \
        --duration "$DURATION" --warm 3 --settle 2 --ramp-ms 2 --probes 20 --pid "$srv" \
        --label "$server" --out "$RAW" || echo "label=$server viewers=$n held=0 failed=$n first_error=load_generator_failed" >>"$RAW"
    if ! kill -0 "$srv" 2>/dev/null; then
        echo "bench: $server died during the run; its log:" >&2
        tail -20 "$WORK/$server-$n.log" >&2
    fi
    kill "$srv" "$feed" 2>/dev/null || true
    wait "$srv" "$feed" 2>/dev/null || true
    grep -E "WARN|ERROR|CRITICAL" "$WORK/$server-$n.log" | head -5 >&2 || true
    cp "$WORK/$server-$n.log" "out/bench-rtsp-$server-$n.log"
}

for n in $VIEWERS; do
    for server in $SERVERS; do
        echo "bench: $server, $n viewers, ${DURATION}s" >&2
        run_one "$server" "$n"
    done
done

"$PY" - "$RAW" "$DURATION" >out/bench-rtsp.txt <<'EOF'
import sys, datetime, os
rows = [dict(kv.split("=", 1) for kv in l.split() if "=" in kv) for l in open(sys.argv[1]) if l.strip()]
def f(r, k, fmt="{:.1f}", scale=1.0):
    v = r.get(k)
    try:
        return fmt.format(float(v) * scale)
    except (TypeError, ValueError):
        return "-"
print("RTSP/TCP fan-out on loopback: 1280x720@30 H.264 test pattern, GOP 30, ~2 Mbit/s, fed to both")
print("servers through a pipe by examples/h264_feed (no encoder in either server).")
print("window %ss per N after ramp + 2 s settle; one extra warm-up viewer in every run;" % sys.argv[2])
print("%s, %d cores, load average before the run: %s" % (datetime.datetime.now().isoformat(timespec="seconds"),
      os.cpu_count(), open("/proc/loadavg").read().split()[0]))
print()
def per_viewer(r):
    try:  # the warm-up viewer counts too
        return "%.1f" % ((float(r["rss_kib"]) - float(r["idle_rss_kib"])) / (int(r["viewers"]) + 1))
    except (KeyError, ValueError):
        return "-"
hdr = ["server", "N", "held", "fail", "Mbit/s", "kb/s med", "kb/s min", "fps min", "gaps w/t",
       "CPU %", "RSS MiB", "HWM MiB", "anon MiB", "thr", "idle MiB", "idle anon", "KiB/view", "key p50 ms", "key p95 ms", "join p50", "join p95", "join max"]
print("".join(h.rjust(11) for h in hdr))
for r in rows:
    cells = [r.get("label", "?"), r.get("viewers", "?"), r.get("held", "-"), r.get("failed", "-"),
             f(r, "mbps_total"), f(r, "kbps_median", "{:.0f}"), f(r, "kbps_min", "{:.0f}"),
             f(r, "fps_min"), "%s/%s" % (r.get("gaps_window", "-"), r.get("gaps_total", "-")),
             f(r, "cpu_pct"), f(r, "rss_kib", "{:.2f}", 1 / 1024), f(r, "hwm_kib", "{:.2f}", 1 / 1024),
             f(r, "anon_kib", "{:.2f}", 1 / 1024), r.get("threads", "-"),
             f(r, "idle_rss_kib", "{:.2f}", 1 / 1024), f(r, "idle_anon_kib", "{:.2f}", 1 / 1024), per_viewer(r), f(r, "key_ms_p50"),
             f(r, "key_ms_p95"), f(r, "probe_key_ms_p50"), f(r, "probe_key_ms_p95"), f(r, "probe_key_ms_max")]
    print("".join(str(c).rjust(11) for c in cells))
    if r.get("first_error"):
        print("    first error: " + r["first_error"].replace("_", " "))
print()
print("ratios gstreamer / rillcast (same N, same run):")
by = {(r.get("label"), r.get("viewers")): r for r in rows}
for n in sorted({r.get("viewers") for r in rows}, key=lambda x: int(x)):
    a, b = by.get(("rillcast", n)), by.get(("gstreamer", n))
    if not a or not b:
        continue
    def ratio(k):
        try:
            x, y = float(a[k]), float(b[k])
            return "%.1fx" % (y / x) if x > 0 else "-"
        except (KeyError, ValueError):
            return "-"
    print("  N=%-5s CPU %s  RSS %s  peak RSS %s  idle RSS %s  threads %s  join->keyframe p50 %s" % (
        n, ratio("cpu_pct"), ratio("rss_kib"), ratio("hwm_kib"), ratio("idle_rss_kib"),
        ratio("threads"), ratio("probe_key_ms_p50")))
print()
print("gaps w/t = RTP sequence gaps in the window / since PLAY, all viewers together; key = PLAY")
print("sent -> first packet of an IDR (median / p95 over the N viewers, who join 2 ms apart).")
print("join = the same for 20 viewers joining one at a time during the window, from their own")
print("thread, while the N play (the load loop's own delay kept out). CPU % of one core.")
print("KiB/view = (RSS - idle RSS) / (N + 1 warm-up viewer). MiB = 2^20 bytes. anon = RssAnon:")
print("private anonymous memory (heap, ring, buffers); the rest of RSS is file-backed (binary,")
print("shared libraries: glibc alone is ~1.3 MiB of it here).")
EOF
cat out/bench-rtsp.txt

if [ "$LATENCY" = 1 ]; then
    scripts/bench-latency.sh
fi
