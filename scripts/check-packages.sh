#!/usr/bin/env bash
# Check the packages in out/packages/ (made by scripts/package.sh; run it first).
#
#   scripts/check-packages.sh
#
# .deb: control fields (dpkg-deb -I), file list, modes and owners (dpkg-deb -c), conffiles,
#       the binary's architecture (ARMv6 for armhf: Raspberry Pi OS armhf runs on a Pi Zero),
#       Depends against the binary's glibc symbols, maintainer scripts (sh -n, shellcheck),
#       `systemd-analyze verify` on the unit inside the extracted package (any warning
#       fails; a deliberately broken copy must be reported, proving the check can fail), and
#       the unit's ExecStart run as a --check-config under qemu (the CLI accepts it).
# .tar.gz: entries, owners, modes, static binary, and the BusyBox init script exercised under
#       BusyBox ash: start, restart after a crash, status, stop with no process left.
# Prints `N passed, N failed`; exits non-zero on any failure.
# SC2016: the single-quoted bash -c bodies expand their own "$1" on purpose.
# shellcheck disable=SC2016
set -euo pipefail
# shellcheck source=scripts/cross-env.sh
source "$(dirname "$0")/cross-env.sh"

ensure_apt dpkg binutils busybox shellcheck systemd qemu-user-static
root="$RILLCAST_ROOT"
pkgs="$root/out/packages"
version="$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
check() { # check DESC CMD...: pass when CMD succeeds
    local desc="$1"
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

debs=("$pkgs"/rillcast_"$version"_*.deb)
tars=("$pkgs"/rillcast-"$version"-*.tar.gz)
[[ -e ${debs[0]} && -e ${tars[0]} ]] || die "no packages in out/packages: run scripts/package.sh first"

# label REGEX: "-rwxr-xr-x root/root .* \./usr/bin/rillcast$" -> "-rwxr-xr-x root/root ./usr/bin/rillcast"
label() { sed -e 's/ \.\* / /' -e 's/\\\././g' -e 's/\$$//' <<<"$1"; }
shellcheck_ok() { shellcheck -s sh "$@" >"$work/sc.txt" 2>&1 || { cat "$work/sc.txt"; return 1; }; }

# --- .deb -----------------------------------------------------------------------------------
# systemd-analyze verify needs the unit's dependencies (sysinit.target, ...) under --root:
# the host's own unit files stand in for the board's.
host_units=/usr/lib/systemd/system
[[ -d $host_units/sysinit.target.wants || -f $host_units/sysinit.target ]] || host_units=/lib/systemd/system

verify_unit() { # verify_unit ROOT UNITNAME: prints systemd-analyze's findings, fails on any
    local out rc=0
    out="$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no --generators=no --root="$1" "$2" 2>&1)" || rc=$?
    [[ -z $out && $rc -eq 0 ]] && return 0
    printf '    systemd-analyze (exit %d): %s\n' "$rc" "$out"
    return 1
}

# run_exec_start ROOT TARGET EXEC_START OPTS: runs a unit's ExecStart line (paths moved under
# ROOT, $RILLCAST_OPTS replaced by OPTS, split on spaces as systemd splits an unquoted $VAR)
# with --check-config under qemu for TARGET; prints the output when it fails.
run_exec_start() {
    local root="$1" target="$2" line="$3" opts="$4" argv qemu out rc=0
    line="${line//\$RILLCAST_OPTS/$opts}"
    line="${line//\/etc\/rillcast\//$root/etc/rillcast/}"
    read -r -a argv <<<"$line"
    read -r -a qemu <<<"$(qemu_for "$target")"
    out="$(timeout 20 "${qemu[@]}" "$root${argv[0]}" "${argv[@]:1}" --check-config 2>&1)" || rc=$?
    [[ $rc -eq 0 ]] && return 0
    printf '    %s (exit %d): %s\n' "${argv[*]}" "$rc" "${out:0:300}"
    return 1
}

for deb in "${debs[@]}"; do
    name="$(basename "$deb")"
    arch="$(dpkg-deb -f "$deb" Architecture)"
    check "$name: Package/Version/Architecture fields" \
        test "$(dpkg-deb -f "$deb" Package)/$(dpkg-deb -f "$deb" Version)/$arch" = "rillcast/$version/$(basename "${name##*_}" .deb)"
    listing="$(dpkg-deb -c "$deb")"
    for want in \
        'drwxr-xr-x root/root .* \./$' \
        '-rwxr-xr-x root/root .* \./usr/bin/rillcast$' \
        '-rw-r--r-- root/root .* \./usr/share/rillcast/rillcast\.toml$' \
        '-rw-r--r-- root/root .* \./etc/default/rillcast$' \
        '-rw-r--r-- root/root .* \./lib/systemd/system/rillcast\.service$'; do
        check "$name: has $(label "$want")" grep -Eq -- "^$want" <<<"$listing"
    done
    check "$name: no file owned by anyone but root" bash -c '! grep -v " root/root " <<<"$1" | grep -q .' _ "$listing"
    conffiles="$(dpkg-deb -I "$deb" conffiles)"
    # The daemon saves its config from the page: it must not be a conffile (postinst makes it).
    check "$name: conffiles is /etc/default/rillcast only" test "$conffiles" = /etc/default/rillcast
    check "$name: /etc/rillcast/rillcast.toml is not in the package (postinst makes it)" \
        bash -c '! grep -q "\./etc/rillcast/" <<<"$1"' _ "$listing"

    x="$work/${arch}"
    dpkg-deb -R "$deb" "$x"
    # postinst's effect: the config made from the shipped reference.
    install -D -m 0660 "$x/usr/share/rillcast/rillcast.toml" "$x/etc/rillcast/rillcast.toml"
    bin="$x/usr/bin/rillcast"
    case "$arch" in
        arm64)
            check "$name: binary is AArch64" grep -q 'Machine:[[:space:]]*AArch64' <(readelf -h "$bin")
            ;;
        armhf)
            check "$name: binary is 32-bit ARM" grep -q 'Machine:[[:space:]]*ARM$' <(readelf -h "$bin")
            check "$name: binary is ARMv6 (runs on Pi Zero/1 under Raspberry Pi OS armhf)" \
                grep -q 'Tag_CPU_arch: v6$' <(readelf -A "$bin")
            ;;
        *) fail "$name: unexpected architecture $arch" ;;
    esac
    glibc="$(readelf -V "$bin" | { grep -o 'GLIBC_[0-9][0-9.]*' || true; } | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -u | tail -n1)"
    depends="$(dpkg-deb -f "$deb" Depends)"
    if [[ -n $glibc ]]; then
        check "$name: Depends '$depends' carries the binary's glibc floor $glibc" \
            grep -qF "libc6 (>= $glibc)" <<<"$depends"
    else
        check "$name: static binary, no Depends" test -z "$depends"
    fi
    for s in postinst prerm postrm; do
        check "$name: DEBIAN/$s is executable and parses (sh -n)" \
            bash -c 'test -x "$1" && sh -n "$1"' _ "$x/DEBIAN/$s"
        check "$name: DEBIAN/$s passes shellcheck" shellcheck_ok "$x/DEBIAN/$s"
    done

    # The unit's ExecStart, as systemd would run it (with RILLCAST_OPTS empty, as shipped, and
    # as scripts/deploy.sh sets it), must be a command line src/cli.rs accepts with the
    # packaged config: the packaged binary under qemu, + --check-config, exits 0.
    case "$arch" in arm64) board=rpi-4 target=aarch64-unknown-linux-gnu ;; *) board=rpi-zero target=arm-unknown-linux-musleabihf ;; esac
    exec_start="$(sed -n 's/^ExecStart=//p' "$x/lib/systemd/system/rillcast.service")"
    for opts in "" "--board $board"; do
        check "$name: ExecStart with RILLCAST_OPTS='$opts' starts (--check-config under qemu)" \
            run_exec_start "$x" "$target" "$exec_start" "$opts"
    done

    mkdir -p "$x/usr/lib/systemd"
    cp -a "$host_units" "$x/usr/lib/systemd/system"
    check "$name: systemd-analyze verify rillcast.service" verify_unit "$x" rillcast.service
    # Negative control: a misspelt key must be reported by the same check.
    sed 's/^WatchdogSec=/WatchdogSecs=/' "$x/lib/systemd/system/rillcast.service" \
        >"$x/lib/systemd/system/rillcast-typo.service"
    if verify_unit "$x" rillcast-typo.service >/dev/null; then
        fail "$name: negative control: systemd-analyze missed a misspelt key"
    else
        pass "$name: negative control: systemd-analyze reports a misspelt key"
    fi
done

# --- tarballs ---------------------------------------------------------------------------------
for tgz in "${tars[@]}"; do
    name="$(basename "$tgz")"
    listing="$(tar -tvzf "$tgz")"
    for want in \
        '-rwxr-xr-x 0/0 .* usr/bin/rillcast$' \
        '-rw-r--r-- 0/0 .* etc/rillcast/rillcast\.toml$' \
        '-rw-r--r-- 0/0 .* etc/default/rillcast$' \
        '-rwxr-xr-x 0/0 .* etc/init\.d/S50rillcast$'; do
        check "$name: has $(label "$want")" grep -Eq -- "^$want" <<<"$listing"
    done
    x="$work/${name%.tar.gz}"
    mkdir -p "$x"
    tar -C "$x" -xzf "$tgz"
    check "$name: binary is static" bash -c '! readelf -l "$1" | grep -q INTERP' _ "$x/usr/bin/rillcast"
    check "$name: S50rillcast parses (busybox sh -n)" busybox sh -n "$x/etc/init.d/S50rillcast"
    # The camera's way to start: the packaged config with its board, as S50rillcast passes it.
    t="${name#rillcast-"$version"-}"
    t="${t%.tar.gz}"
    case "$t" in armv7-*) board=generic-armv7-camera ;; *) board=rpi-zero ;; esac
    check "$name: packaged config + --board $board passes --check-config under qemu" \
        run_exec_start "$x" "$t" "/usr/bin/rillcast --config /etc/rillcast/rillcast.toml \$RILLCAST_OPTS" "--board $board"
    check "$name: S50rillcast passes shellcheck" shellcheck_ok "$x/etc/init.d/S50rillcast"
done

# The init script under BusyBox: applets first in PATH, a fake daemon that crashes on its
# first run (exit 1) and then keeps running, a fake logger that records the daemon's output.
bb="$work/bb"
busybox="$(command -v busybox)"
mkdir -p "$bb/bin" "$bb/run"
for applet in sh setsid sleep cat kill rm mkdir; do ln -s "$(command -v busybox)" "$bb/bin/$applet"; done
cat >"$bb/bin/logger" <<EOF
#!$(command -v busybox) sh
exec cat >>"$bb/run/log"
EOF
cat >"$bb/fake-rillcast" <<EOF
#!$(command -v busybox) sh
echo "start \$\$ \$*"
echo \$\$ >>"$bb/run/pids"
if [ ! -f "$bb/run/crashed" ]; then : >"$bb/run/crashed"; exit 1; fi
exec sleep 1000
EOF
chmod +x "$bb/bin/logger" "$bb/fake-rillcast"
init="$(find "$work" -path '*/etc/init.d/S50rillcast' | head -n1)"
bbenv=(env -i PATH="$bb/bin" DAEMON="$bb/fake-rillcast" PIDFILE="$bb/run/rillcast.pid"
    CONFIG=/etc/rillcast/rillcast.toml RILLCAST_OPTS="--board generic-armv7-camera" RESTART_DELAY_S=1)
"${bbenv[@]}" "$busybox" sh "$init" start >/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [[ $(wc -l 2>/dev/null <"$bb/run/pids" || echo 0) -ge 2 ]] && break
    sleep 0.5
done
check "busybox init: supervisor restarted the daemon after it crashed" \
    test "$(wc -l 2>/dev/null <"$bb/run/pids" || echo 0)" -eq 2
check "busybox init: daemon got --config and RILLCAST_OPTS" \
    grep -q 'start [0-9]* --config /etc/rillcast/rillcast.toml --board generic-armv7-camera' "$bb/run/log"
check "busybox init: status says running" bash -c '"$@" | grep -q running' _ "${bbenv[@]}" "$busybox" sh "$init" status
"${bbenv[@]}" "$busybox" sh "$init" stop >/dev/null
daemon_pid="$(tail -n1 "$bb/run/pids")"
sleep 0.5
check "busybox init: stop ended the daemon (pid $daemon_pid) and removed the pid file" \
    bash -c '! kill -0 "$1" 2>/dev/null && ! test -e "$2"' _ "$daemon_pid" "$bb/run/rillcast.pid"
check "busybox init: status after stop exits 3" \
    bash -c '"$@" >/dev/null; test $? -eq 3' _ "${bbenv[@]}" "$busybox" sh "$init" status

printf '%d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
