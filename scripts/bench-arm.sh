#!/usr/bin/env bash
# ARM benchmark: per board target, the stripped release size, and under qemu-user (the board's
# CPU model) the guest instructions the daemon executes per video frame delivered to one RTSP
# viewer. Writes out/bench-arm.txt and prints it.
#
#   scripts/bench-arm.sh [BOARD|--all] [--window-s N]     (default --all, 10 s)
#
# Units: GUEST instructions (ARM/Thumb or AArch64 instructions executed by qemu's emulated
# CPU), counted by a qemu TCG plugin (scripts/bench/qemu-insn.c, built here; Debian's
# qemu-user has plugin support, qemu-user-static does not). They are architecture-specific
# instruction counts, not host cycles and not time: stable from run to run and comparable
# between commits of the same target, not between targets (AArch64 and Thumb-2 do different
# work per instruction). No hardware counters are assumed (perf's `instructions` is not
# available in VMs without a PMU, and valgrind does not run ARM binaries).
#
# Method, per target: the daemon reads a camera-like H.264 stream (made here by ffmpeg/libx264:
# 1280x720, 30 fps, 2 Mbit/s, keyframe every 30 frames, no B-frames, as a Pi encoder sends it)
# from a `file` source, looped at real-time pace: the same Annex B ingest path as an encoder's
# stdout, without the built-in test source's own H.264 encoding (which costs more than
# everything else together and runs on no real board). After a warm-up, an idle window of N s (no viewer: the source, the ring
# and the timers) gives the idle rate; then ffmpeg reads RTSP over TCP for N s and decodes.
#   total/frame    = instructions in the viewer window / video frames ffmpeg decoded
#   viewer/frame   = (instructions in the viewer window - idle rate x window length)
#                    / video frames: the cost of serving one viewer (RTSP session, RTP
#                    packetisation of video and audio, socket writes), per video frame
# The idle rate is per wall-clock second, so viewer/frame carries a little noise from the
# window lengths (reported); total/frame does not depend on timing.
set -euo pipefail
# shellcheck source=scripts/cross-env.sh
source "$(dirname "$0")/cross-env.sh"

boards=()
window_s=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --all) mapfile -t boards < <(all_boards); shift ;;
        --window-s) window_s="${2:?--window-s needs seconds}"; shift 2 ;;
        -*) die "usage: $0 [BOARD|--all] [--window-s N]" ;;
        *) board_target "$1" >/dev/null; boards+=("$1"); shift ;;
    esac
done
[[ ${#boards[@]} -gt 0 ]] || mapfile -t boards < <(all_boards)

ensure_cross_tools
ensure_apt qemu-user gcc iproute2
for tool in ffmpeg qemu-arm qemu-aarch64; do
    command -v "$tool" >/dev/null || die "$tool is not installed (ffmpeg: scripts/install-deps.sh; qemu-arm: apt-get install qemu-user)"
done
out="$RILLCAST_ROOT/out"
missing=()
for b in "${boards[@]}"; do
    [[ -x "$out/$(board_target "$b")/rillcast" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    "$RILLCAST_ROOT/scripts/build.sh" "${missing[@]}" --release
fi

scratch="$(mktemp -d)"
pid=""
cleanup() {
    [[ -n $pid ]] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    rm -rf "$scratch"
}
trap cleanup EXIT
plugin="$scratch/qemu-insn.so"
clip="$scratch/camera-720p30.h264"
ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=1280x720:rate=30 -t 4 -c:v libx264 \
    -preset veryfast -tune zerolatency -b:v 2M -maxrate 2M -bufsize 1M -g 30 -bf 0 \
    -pix_fmt yuv420p -f h264 "$clip" || die "ffmpeg could not make the H.264 clip (needs libx264)"
clip_frames=120
gcc -O2 -shared -fPIC -Wall -Wextra -Werror -o "$plugin" "$RILLCAST_ROOT/scripts/bench/qemu-insn.c" -lpthread

# The dynamic qemu (plugin support) with the same CPU model and sysroot as qemu_for.
qemu_plugin_for() {
    qemu_for "$1" | sed -e 's/qemu-arm-static/qemu-arm/' -e 's/qemu-aarch64-static/qemu-aarch64/'
}
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        [[ -z $(ss -Hltn "sport = :$p") ]] && { printf '%s\n' "$p"; return 0; }
    done
    die "no free loopback TCP port found"
}
count() { cat "$scratch/count"; }
now_ms() { date +%s%3N; }

# Boards per target (rpi-4 and rpi-5 share one binary): one row per target.
declare -A boards_of
targets=()
for b in "${boards[@]}"; do
    t="$(board_target "$b")"
    [[ -n ${boards_of[$t]:-} ]] || targets+=("$t")
    boards_of[$t]="${boards_of[$t]:+${boards_of[$t]},}$b"
done

rows=()
for t in "${targets[@]}"; do
    b="${boards_of[$t]}"
    bin="$out/$t/rillcast"
    size=$(stat -c %s "$bin")
    read -r -a qemu <<<"$(qemu_plugin_for "$t")"
    port="$(free_port)"
    cat >"$scratch/cfg.toml" <<EOF
[rtsp]
port = $port
bind = "127.0.0.1"
udp_port = 0
[http]
port = $(free_port)
bind = "127.0.0.1"
[streams.live.source]
kind = "file"
format = "h264"
path = "$clip"
fps = 30.0
EOF
    rm -f "$scratch/count"
    "${qemu[0]}" -plugin "$plugin,out=$scratch/count" "${qemu[@]:1}" "$bin" \
        --config "$scratch/cfg.toml" --log-level warn >"$scratch/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        [[ -s $scratch/count ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || die "$t: daemon exited: $(head -c 600 "$scratch/daemon.log")"
        sleep 0.2
    done
    sleep 2 # warm-up: first keyframes, timers settled
    c0=$(count) t0=$(now_ms)
    sleep "$window_s"
    c1=$(count) t1=$(now_ms)
    rm -f "$scratch/progress"
    timeout $((window_s + 30)) ffmpeg -nostdin -v error -rtsp_transport tcp \
        -i "rtsp://127.0.0.1:$port/live" -t "$window_s" -map 0:v:0 -f null - \
        -progress "$scratch/progress" 2>"$scratch/ffmpeg.err" &
    fpid=$!
    # The count at ffmpeg's start and after it ends (the plugin file is at most 50 ms old).
    c2=$(count) t2=$(now_ms)
    wait "$fpid" || die "$t: ffmpeg failed: $(head -c 400 "$scratch/ffmpeg.err")"
    sleep 0.1
    c3=$(count) t3=$(now_ms)
    frames="$(sed -n 's/^frame=//p' "$scratch/progress" | tail -n1)"
    [[ ${frames:-0} -gt 0 ]] || die "$t: ffmpeg decoded no frames"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
    rows+=("$(awk -v b="$b" -v t="$t" -v cpu="${qemu[2]}" -v size="$size" -v f="$frames" \
        -v c0="$c0" -v c1="$c1" -v c2="$c2" -v c3="$c3" \
        -v i_ms=$((t1 - t0)) -v v_ms=$((t3 - t2)) 'BEGIN {
            idle_rate = (c1 - c0) / i_ms;          # instructions per ms, no viewer
            total = c3 - c2;
            printf "%-22s %-31s %-10s %9d %6d %12.0f %12.0f %12.0f %6d %6d\n",
                b, t, cpu, size, f, idle_rate * 1000, total / f,
                (total - idle_rate * v_ms) / f, i_ms, v_ms
        }')")
done

{
    echo "# rillcast ARM benchmark ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$RILLCAST_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo "# size: stripped release binary, bytes. Instruction figures: GUEST instructions counted by a"
    echo "# qemu TCG plugin (scripts/bench/qemu-insn.c) on the board's CPU model; comparable run to run"
    echo "# for one target, not across targets. Source: file, H.264 1280x720 30 fps 2 Mbit/s (libx264,"
    echo "# $(( $(stat -c %s "$clip") / clip_frames )) bytes/frame on average), looped at real time; one viewer:"
    echo "# ffmpeg over RTSP/TCP for ${window_s} s. idle_insn/s: no viewer. total/frame: all instructions in"
    echo "# the viewer window per decoded video frame. viewer/frame: the same minus the idle rate."
    printf '%-22s %-31s %-10s %9s %6s %12s %12s %12s %6s %6s\n' board target cpu size_B frames \
        idle_insn/s total/frame viewer/frame idle_ms view_ms
    printf '%s\n' "${rows[@]}"
} >"$out/bench-arm.txt"
cat "$out/bench-arm.txt"
