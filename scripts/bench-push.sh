#!/usr/bin/env bash
# Benchmark of RTMP push: CPU and RSS of the release daemon with 0, 1 and 3 push targets into a
# local nginx-rtmp, and the added latency from frame ingest (the hub handing a frame to the push
# consumer) to its last byte accepted by the origin socket, as the daemon measures it in-process
# (the "push[i] ...: latency mean/max" log line, every 30 s).
#
#   scripts/bench-push.sh [SECONDS_PER_RUN]     (default 40; the latency line needs >= 31)
#
# Source: the built-in testsrc at 1280x720, 30 fps, GOP 30 (~2 Mbit/s H.264 + AAC). Results go
# to out/bench-push.txt. Needs nginx + libnginx-mod-rtmp (scripts/install-deps.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-40}"
[[ $secs -ge 31 ]] || { echo "bench-push: need at least 31 s per run" >&2; exit 1; }
module=/usr/lib/nginx/modules/ngx_rtmp_module.so
command -v nginx >/dev/null || { echo "bench-push: nginx missing (scripts/install-deps.sh)" >&2; exit 1; }
[[ -f $module ]] || { echo "bench-push: $module missing (libnginx-mod-rtmp)" >&2; exit 1; }

work="$(mktemp -d /tmp/rillcast-bench-push.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

(cd "$root" && cargo build --release --quiet --bin rillcast)
bin="${CARGO_TARGET_DIR:-$root/target}/release/rillcast"

rtmp_port="$(free_port)"
cat >"$work/nginx.conf" <<EOF
load_module $module;
daemon off; master_process off; worker_processes 1;
error_log $work/nginx-error.log warn; pid $work/nginx.pid;
events { worker_connections 256; }
rtmp { server { listen 127.0.0.1:$rtmp_port; chunk_size 4096;
  application live { live on; wait_key on; wait_video on; } } }
EOF
nginx -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf" &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$rtmp_port") 2>/dev/null && break; sleep 0.1; done

ticks="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

results=()
for n in 0 1 3; do
    cfg="$work/rillcast-$n.toml"
    {
        printf '[rtsp]\nport = %s\nbind = "127.0.0.1"\nudp_port = 0\n' "$(free_port)"
        printf '[http]\nport = %s\nbind = "127.0.0.1"\n' "$(free_port)"
        printf '[media]\nmemory_mib = 32\n'
        printf '[streams.live.source]\nkind = "testsrc"\nwidth = 1280\nheight = 720\ngop_frames = 30\n'
        for i in $(seq 1 "$n"); do
            printf '[[push]]\nurl = "rtmp://127.0.0.1:%s/live/bench%s"\n' "$rtmp_port" "$i"
        done
    } >"$cfg"
    log="$work/rillcast-$n.log"
    "$bin" --config "$cfg" 2>"$log" &
    pid=$!
    pids+=("$pid")
    sleep 5 # start-up and first publish
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "bench-push: the daemon died" >&2; exit 1; }
    t0="$(cpu_ticks "$pid")"
    rss_max=0
    for _ in $(seq 5 "$((secs - 1))"); do
        r="$(rss_kib "$pid")"
        if ((r > rss_max)); then rss_max=$r; fi
        sleep 1
    done
    t1="$(cpu_ticks "$pid")"
    window=$((secs - 5))
    cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$ticks" -v w="$window" 'BEGIN { printf "%.1f", 100 * (b - a) / hz / w }')"
    publishing="$(grep -c ': publishing' "$log" || true)"
    lat="$({ grep 'latency mean' "$log" || true; } | sed -n 's/.*latency mean \([0-9.]*\) ms max \([0-9.]*\) ms.*/\1 \2/p' |
        awk '{ m += $1; if ($2 > x) x = $2; n++ } END { if (n) printf "%.2f %.2f", m / n, x; else print "- -" }')"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    results+=("$(printf '%-8s %-11s %-8s %-9s %-16s %s' "$n" "$publishing/$n" "$cpu" "$rss_max" "${lat% *}" "${lat#* }")")
done

mkdir -p "$root/out"
{
    echo "rillcast push benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), $(nproc) cores, ${secs} s per run"
    echo "source: testsrc 1280x720 30 fps GOP 30 (~2 Mbit/s H.264 + AAC), origin: nginx-rtmp on loopback"
    echo "cpu = % of one core over the run after 5 s start-up; rss = max VmRSS KiB;"
    echo "latency = ingest (hub) -> last byte accepted by the origin socket, video frames, in-process"
    echo
    printf '%-8s %-11s %-8s %-9s %-16s %s\n' targets publishing cpu_% rss_kib latency_mean_ms latency_max_ms
    printf '%s\n' "${results[@]}"
} | tee "$root/out/bench-push.txt"
