#!/usr/bin/env bash
# HLS benchmark: rillcast (segments in RAM, one thread) against nginx with Debian's RTMP
# module (segments on disk, served by nginx's static files), same encoded test pattern, same
# load: N viewers (default 10, 100, 500) polling the playlist and fetching every new segment
# for SECONDS (default 60), from examples/hls_load.rs. Prints per server and N: segments
# served, errors, fetch latency p50/p99, server CPU %, peak RSS, threads, and the delay from a
# segment's last frame being ingested to the segment being listed; then rillcast/nginx ratios.
# Results also go to out/bench-hls.txt.
#
# Usage: scripts/bench-hls.sh [SECONDS=60] ["N1 N2 ..."="10 100 500"]
# Everything binds 127.0.0.1; every process started here is stopped by pid at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
COUNTS="${2:-10 100 500}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
for t in ffmpeg nginx python3 curl; do
    command -v "$t" >/dev/null || { echo "bench-hls: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
RTMP_SO=/usr/lib/nginx/modules/ngx_rtmp_module.so
[ -f "$RTMP_SO" ] || { echo "bench-hls: $RTMP_SO missing (libnginx-mod-rtmp)" >&2; exit 1; }

cargo build --release --quiet --bin rillcast --example hls_load
BIN="$CARGO_TARGET_DIR/release/rillcast"
LOAD="$CARGO_TARGET_DIR/release/examples/hls_load"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rillcast-bench-hls.XXXXXX")"
mkdir -p out
OUT=out/bench-hls.txt
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLK_TCK=$(getconf CLK_TCK)

# The same pattern for both: 640x360 25 fps H.264 (1 s GOP, no B-frames, 800 kb/s) + AAC.
VIDEO_IN=(-re -f lavfi -i "testsrc2=size=640x360:rate=25")
AUDIO_IN=(-re -f lavfi -i "sine=frequency=440:sample_rate=48000")
X264=(-c:v libx264 -preset ultrafast -tune zerolatency -bf 0 -g 25 -b:v 800k -maxrate 800k -bufsize 800k)
AAC=(-c:a aac -b:a 64k)

toml_array() { local s="" a; for a in "$@"; do s+="\"${a//\"/\\\"}\", "; done; echo "[${s%, }]"; }

ticks() { # total utime+stime of the given pids
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
sample_peak() { # pids... ; prints "rss_kib threads" summed over pids, peak over the run
    local peak_rss=0 peak_thr=0 rss thr p
    while :; do
        rss=0; thr=0
        for p in "$@"; do
            [ -r "/proc/$p/status" ] || continue
            rss=$((rss + $(awk '/^VmRSS:/{print $2}' "/proc/$p/status")))
            thr=$((thr + $(awk '/^Threads:/{print $2}' "/proc/$p/status")))
        done
        [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
        [ "$thr" -gt "$peak_thr" ] && peak_thr=$thr
        echo "$peak_rss $peak_thr" >"$WORK/peak"
        sleep 0.5
    done
}

wait_playlist() { # url
    for _ in $(seq 150); do
        curl -fs "$1" 2>/dev/null | grep -q '#EXTINF' && return 0
        sleep 0.2
    done
    echo "bench-hls: no playlist at $1" >&2
    return 1
}

declare -A RESULT
run_load() { # server url pids...
    local server=$1 url=$2; shift 2
    local n line t0 t1 start end cpu
    for n in $COUNTS; do
        sample_peak "$@" &
        local sampler=$!
        t0=$(ticks "$@"); start=$(date +%s.%N)
        line=$("$LOAD" "$url" "$n" "$SECS")
        t1=$(ticks "$@"); end=$(date +%s.%N)
        kill "$sampler"; wait "$sampler" 2>/dev/null || true
        read -r rss thr <"$WORK/peak"
        cpu=$(python3 -c "print(f'{($t1-$t0)/$CLK_TCK/($end-$start)*100:.1f}')")
        local row
        row=$(printf '%-8s %s cpu_pct=%s rss_mib=%s threads=%s' "$server" "$line" "$cpu" \
            "$(python3 -c "print(f'{$rss/1024:.1f}')")" "$thr")
        echo "$row" | tee -a "$OUT"
        RESULT[$server,$n]="$row"
    done
}

{
    echo "# bench-hls $(date -u +%FT%TZ): ${SECS}s per run, viewers: $COUNTS; $(nproc) cores"
    echo "# stream: 640x360 25 fps H.264 800 kb/s (1 s GOP) + AAC 64 kb/s, 1 s segments, 6 listed"
} | tee "$OUT"

# --- rillcast ------------------------------------------------------------------------------
HPORT=$(free_port); RPORT=$(free_port)
cat >"$WORK/rillcast.toml" <<TOML
[rtsp]
port = $RPORT
bind = "127.0.0.1"
udp_port = 0
[http]
port = $HPORT
bind = "127.0.0.1"
max_connections = 1100
# Every load client comes from 127.0.0.1.
max_connections_per_address = 1100
[media]
memory_mib = 64
[hls]
segment_ms = 1000
window = 6
[streams.live]
max_bitrate_kbps = 1500
[streams.live.source]
kind = "exec"
format = "h264"
fps = 25.0
command = $(toml_array ffmpeg -nostdin -loglevel error "${VIDEO_IN[@]}" "${X264[@]}" -flush_packets 1 -f h264 -)
[streams.live.audio]
kind = "exec"
format = "adts"
command = $(toml_array ffmpeg -nostdin -loglevel error "${AUDIO_IN[@]}" "${AAC[@]}" -flush_packets 1 -f adts -)
TOML
"$BIN" --config "$WORK/rillcast.toml" 2>"$WORK/rillcast.log" &
RPID=$!; PIDS+=("$RPID")
wait_playlist "http://127.0.0.1:$HPORT/live/index.m3u8"
sleep 3
grep -m1 "media memory" "$WORK/rillcast.log" | sed 's/^/# rillcast /' | tee -a "$OUT"
run_load rillcast "http://127.0.0.1:$HPORT/live/index.m3u8" "$RPID"
kill "$RPID"; wait "$RPID" 2>/dev/null || true

# --- nginx + RTMP module (the peer) -------------------------------------------------------
NH=$(free_port); NR=$(free_port)
mkdir -p "$WORK/nginx/hls" "$WORK/nginx/logs"
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$WORK/nginx/nginx.conf" <<NGX
load_module $RTMP_SO;
$USER_LINE
daemon off;
worker_processes 1;
error_log $WORK/nginx/logs/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
rtmp {
    server {
        listen 127.0.0.1:$NR;
        application live {
            live on;
            hls on;
            hls_path $WORK/nginx/hls;
            hls_fragment 1s;
            hls_playlist_length 6s;
            hls_fragment_naming system;
            hls_cleanup on;
        }
    }
}
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$NH;
        location /hls/ {
            types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
            alias $WORK/nginx/hls/;
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }
    }
}
NGX
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NPID=$!; PIDS+=("$NPID")
sleep 1
ffmpeg -nostdin -loglevel error "${VIDEO_IN[@]}" "${AUDIO_IN[@]}" "${X264[@]}" "${AAC[@]}" \
    -f flv "rtmp://127.0.0.1:$NR/live/live" &
PIDS+=("$!")
wait_playlist "http://127.0.0.1:$NH/hls/live.m3u8"
sleep 3
mapfile -t WORKERS < <(pgrep -P "$NPID" || true)
NGINX_PIDS=("$NPID" "${WORKERS[@]}")
echo "# nginx pids ${NGINX_PIDS[*]} (master + 1 worker; segments on $(df --output=fstype "$WORK" | tail -1))" | tee -a "$OUT"
run_load nginx "http://127.0.0.1:$NH/hls/live.m3u8" "${NGINX_PIDS[@]}"

# --- ratios ----------------------------------------------------------------------------------
echo "# ratios rillcast/nginx" | tee -a "$OUT"
for n in $COUNTS; do
    python3 - "${RESULT[rillcast,$n]}" "${RESULT[nginx,$n]}" <<'PY' | tee -a "$OUT"
import sys
def kv(s): return dict(x.split("=", 1) for x in s.split()[1:] if "=" in x)
r, g = kv(sys.argv[1]), kv(sys.argv[2])
def ratio(k):
    a, b = float(r[k]), float(g[k])
    return f"{a/b:.2f}" if b else "n/a"
print(f"viewers={r['viewers']} segments {r['segments']}/{g['segments']} errors {r['errors']}/{g['errors']} "
      f"cpu x{ratio('cpu_pct')} rss x{ratio('rss_mib')} threads {r['threads']}/{g['threads']} "
      f"fetch_p99 x{ratio('fetch_p99_ms')} ingest_to_listed_p50 {r['ingest_to_listed_p50_ms']}/{g['ingest_to_listed_p50_ms']} ms")
PY
done
