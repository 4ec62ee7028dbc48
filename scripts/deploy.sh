#!/usr/bin/env bash
# Build, copy and install rillcast on a board over ssh.
#
#   scripts/deploy.sh user@host --board NAME [--dry-run]
#
# rpi-* boards (Raspberry Pi OS): the board's .deb, installed with apt (creates the rillcast
# user, enables and restarts the systemd service); the board name goes into RILLCAST_OPTS in
# /etc/default/rillcast. Other boards (cameras): the static tarball; the binary and init script
# are replaced, an existing /etc/rillcast/rillcast.toml is kept, then S50rillcast restarts.
# ssh/scp use your ~/.ssh/config (port, key, jump host). --dry-run prints every command
# (build included) and runs none.
set -euo pipefail
# shellcheck source=scripts/cross-env.sh
source "$(dirname "$0")/cross-env.sh"

host=""
board=""
dry=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --board) board="${2:?--board needs a name}"; shift 2 ;;
        --dry-run) dry=1; shift ;;
        -*) die "usage: $0 user@host --board NAME [--dry-run]" ;;
        *) [[ -z $host ]] || die "one host at a time"; host="$1"; shift ;;
    esac
done
[[ -n $host && -n $board ]] || die "usage: $0 user@host --board NAME [--dry-run]"
target="$(board_target "$board")"
[[ $board =~ ^[a-z0-9-]+$ ]] || die "board name '$board' has characters unsafe in a remote command"
version="$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$RILLCAST_ROOT/Cargo.toml" | head -n1)"

run() {
    printf '+ %s\n' "$*"
    [[ $dry -eq 1 ]] || "$@"
}

pkgdir="$RILLCAST_ROOT/out/packages/$board"
# Remote steps run as root: directly when logged in as root (typical on cameras), else sudo.
# shellcheck disable=SC2016 # expanded on the remote host
as_root_remote='if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi'
set_opts="\$SUDO sed -i 's|^RILLCAST_OPTS=.*|RILLCAST_OPTS=\"--board $board\"|' /etc/default/rillcast"

run "$RILLCAST_ROOT/scripts/package.sh" --board "$board"
if [[ $board == rpi-* ]]; then
    deb="rillcast_${version}_$(deb_arch_for "$target").deb"
    run scp "$pkgdir/$deb" "$host:/tmp/$deb"
    run ssh "$host" "set -e; $as_root_remote
\$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold /tmp/$deb
$set_opts
\$SUDO systemctl restart rillcast.service
rm -f /tmp/$deb
systemctl --no-pager --lines=5 status rillcast.service"
else
    tgz="rillcast-$version-$target.tar.gz"
    run scp "$pkgdir/$tgz" "$host:/tmp/$tgz"
    run ssh "$host" "set -e; $as_root_remote
d=/tmp/rillcast-unpack; rm -rf \$d; mkdir -p \$d; tar -C \$d -xzf /tmp/$tgz
[ -x /etc/init.d/S50rillcast ] && \$SUDO /etc/init.d/S50rillcast stop || true
\$SUDO mkdir -p /usr/bin /etc/init.d /etc/rillcast /etc/default
\$SUDO cp \$d/usr/bin/rillcast /usr/bin/rillcast
\$SUDO cp \$d/etc/init.d/S50rillcast /etc/init.d/S50rillcast
[ -e /etc/rillcast/rillcast.toml ] || \$SUDO cp \$d/etc/rillcast/rillcast.toml /etc/rillcast/
[ -e /etc/default/rillcast ] || \$SUDO cp \$d/etc/default/rillcast /etc/default/
$set_opts
rm -rf \$d /tmp/$tgz
\$SUDO /etc/init.d/S50rillcast start
/etc/init.d/S50rillcast status"
fi
