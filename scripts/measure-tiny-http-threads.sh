#!/usr/bin/env bash
# Measures why rillcast does not serve HLS with tiny_http: OS threads of a tiny_http 0.12
# server vs. rillcast's HTTP server, each holding N idle keep-alive connections (each made one
# request first). tiny_http is built in a scratch project under $TMPDIR; it never enters the
# rillcast binary.
# Usage: scripts/measure-tiny-http-threads.sh [N=100]   (prints one line per server)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100}"
WORK="${TMPDIR:-/tmp}/rillcast-tinyhttp-measure"
mkdir -p "$WORK/src"
export CARGO_TARGET_DIR="$WORK/target"

cat >"$WORK/Cargo.toml" <<'TOML'
[package]
name = "tinyhttp-threads"
version = "0.0.0"
edition = "2021"
[dependencies]
tiny_http = "=0.12.0"
TOML
cat >"$WORK/src/main.rs" <<'RS'
// The usual tiny_http shape: one loop answering every request.
fn main() {
    let server = tiny_http::Server::http(std::env::args().nth(1).unwrap()).unwrap();
    for req in server.incoming_requests() {
        let _ = req.respond(tiny_http::Response::from_string("hello\n"));
    }
}
RS
(cd "$WORK" && cargo build --release --quiet)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Opens N keep-alive connections, one request each, holds them, prints the server's threads.
hold_and_count() { # pid port path
    python3 - "$1" "$2" "$3" "$N" <<'PY'
import socket, sys, time
pid, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def threads():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("Threads:"):
            return int(l.split()[1])
before = threads()
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    s.settimeout(5)
    s.recv(65536)
    conns.append(s)
time.sleep(1.0)
print(f"threads: {before} idle -> {threads()} with {n} keep-alive connections")
PY
}

PORT=$(free_port)
"$CARGO_TARGET_DIR/release/tinyhttp-threads" "127.0.0.1:$PORT" &
TPID=$!
trap 'kill $TPID 2>/dev/null || true; [ -n "${RPID:-}" ] && kill $RPID 2>/dev/null || true' EXIT
for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT)).close()" 2>/dev/null && break; sleep 0.1; done
printf 'tiny_http 0.12: '
hold_and_count "$TPID" "$PORT" /
kill "$TPID"; wait "$TPID" 2>/dev/null || true

unset CARGO_TARGET_DIR
export CARGO_TARGET_DIR="${RILLCAST_TARGET_DIR:-target}"
cargo build --release --quiet
HPORT=$(free_port); RPORT=$(free_port)
CFG="$WORK/rillcast.toml"
printf '[rtsp]\nport = %s\nbind = "127.0.0.1"\nudp_port = 0\n[http]\nport = %s\nbind = "127.0.0.1"\nmax_connections_per_address = %s\n[streams.live.source]\nkind = "testsrc"\nwidth = 320\nheight = 240\n' "$RPORT" "$HPORT" "$((N + 8))" >"$CFG"
"$CARGO_TARGET_DIR/release/rillcast" --config "$CFG" 2>"$WORK/rillcast.log" &
RPID=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$HPORT/live/index.m3u8" >/dev/null 2>&1 && break
    sleep 0.2
done
printf 'rillcast:       '
hold_and_count "$RPID" "$HPORT" /live/index.m3u8
