#!/usr/bin/env bash
# A scratch root for testing the built .deb as installed, without touching this machine and
# without systemd as PID 1: an overlay of / whose writes go to a tmpfs, inside a private mount
# namespace that the caller holds open (tests/package_e2e.rs: `unshare -m sleep`, then every
# step here through `nsenter -t HOLDER -m`). When the holder exits, everything is gone.
#
#   scratch-root.sh install DIR DEB     mount the overlay at DIR/root (proc, dev, and fresh
#                                       tmpfs /run and /tmp: the host's systemd is hidden, so
#                                       postinst cannot touch the host's services), then a real
#                                       `dpkg -i DEB` in it: the maintainer scripts run
#   scratch-root.sh dpkg DIR ARGS...    dpkg in the root (reinstall, --purge)
#   scratch-root.sh run DIR [--read-only-config]
#       the installed unit's ExecStart, as systemd would run it, with its filesystem view:
#       User=/Group= (setpriv, NoNewPrivileges, capabilities as the unit bounds them), UMask=,
#       EnvironmentFile=, $STATE_DIRECTORY/$RUNTIME_DIRECTORY; ProtectSystem=strict: the whole
#       root read-only except ReadWritePaths=, StateDirectory=, RuntimeDirectory= and a
#       private /tmp (PrivateTmp=). --read-only-config also makes ReadWritePaths= read-only
#       (a card remounted read-only). Execs the daemon: its pid is this script's.
#   scratch-root.sh sh DIR CMD          run a shell command in the root as root (stat, cat)
set -euo pipefail

die() { echo "scratch-root.sh: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "needs root (mount namespaces, overlayfs, setpriv)"
cmd="${1:?usage: scratch-root.sh install|dpkg|run|sh DIR ...}"
dir="${2:?missing DIR}"
shift 2
root="$dir/root"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C

unit_key() { # unit_key KEY: the values of KEY= in the installed unit, one per line
    sed -n "s/^$1=//p" "$root/lib/systemd/system/rillcast.service"
}

case "$cmd" in
    install)
        deb="${1:?missing DEB}"
        mkdir -p "$dir/t" "$root"
        mount -t tmpfs -o size=512m,mode=0755 scratch "$dir/t"
        mkdir -p "$dir/t/upper" "$dir/t/work"
        mount -t overlay scratch -o "lowerdir=/,upperdir=$dir/t/upper,workdir=$dir/t/work" "$root"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs -o mode=0755 run "$root/run"
        mount -t tmpfs -o mode=1777 tmp "$root/tmp"
        cp "$deb" "$root/tmp/rillcast.deb"
        chroot "$root" dpkg -i /tmp/rillcast.deb
        ;;
    dpkg)
        chroot "$root" dpkg "$@"
        ;;
    sh)
        chroot "$root" /bin/sh -c "${1:?missing CMD}"
        ;;
    run)
        ro_config=0
        [[ ${1:-} == --read-only-config ]] && ro_config=1
        user="$(unit_key User)"
        group="$(unit_key Group)"
        umask_="$(unit_key UMask)"
        exec_start="$(unit_key ExecStart)"
        state="$(unit_key StateDirectory)"
        runtime="$(unit_key RuntimeDirectory)"
        state_mode="$(unit_key StateDirectoryMode)"
        [[ -n $user && -n $exec_start && -n $state ]] || die "unit lacks User=/ExecStart=/StateDirectory="
        grep -qx 'ProtectSystem=strict' "$root/lib/systemd/system/rillcast.service" ||
            die "the unit is not ProtectSystem=strict any more: update this emulation"
        # systemd makes the state and runtime directories, owned by User=.
        chroot "$root" install -d -o "$user" -g "$group" -m "${state_mode:-0755}" "/var/lib/$state"
        mkdir -p "$root/run/$runtime"
        chroot "$root" chown "$user:$group" "/run/$runtime"
        # RILLCAST_OPTS as systemd reads EnvironmentFile=-/etc/default/rillcast.
        opts=""
        if [[ -r $root/etc/default/rillcast ]]; then
            opts="$(sed -n 's/^RILLCAST_OPTS="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/etc/default/rillcast" | tail -n1)"
        fi
        line="${exec_start//\$RILLCAST_OPTS/$opts}"
        read -r -a argv <<<"$line"
        # A mount namespace of the daemon's own, as systemd gives each hardened unit.
        writable=()
        while read -r p; do [[ -n $p ]] && writable+=("$p"); done < <(unit_key ReadWritePaths)
        export ROOT="$root" RO_CONFIG="$ro_config" STATE="/var/lib/$state" RUNTIME="/run/$runtime"
        export USER_="$user" GROUP_="$group" UMASK_="${umask_:-0022}" WN="${#writable[@]}"
        # shellcheck disable=SC2016 # the inner script expands its own variables
        exec unshare -m --propagation private -- bash -euo pipefail -c '
            writable=("${@:1:$WN}")
            shift "$WN"
            if [[ $RO_CONFIG -eq 0 ]]; then
                for p in "${writable[@]}"; do mount --bind "$ROOT$p" "$ROOT$p"; done
            fi
            mount --bind "$ROOT$STATE" "$ROOT$STATE"
            mount -t tmpfs -o mode=1777 private-tmp "$ROOT/tmp"
            # ProtectSystem=strict: the root read-only; the mounts above stay writable.
            mount -o remount,bind,ro "$ROOT"
            umask "$UMASK_"
            exec chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                STATE_DIRECTORY="$STATE" RUNTIME_DIRECTORY="$RUNTIME" \
                /usr/bin/setpriv --reuid "$USER_" --regid "$GROUP_" --init-groups \
                --no-new-privs --inh-caps=-all --bounding-set=-all,+net_bind_service -- "$@"
        ' scratch-run "${writable[@]}" "${argv[@]}"
        ;;
    *) die "unknown command $cmd" ;;
esac
