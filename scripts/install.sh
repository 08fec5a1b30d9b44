#!/usr/bin/env bash
# Builds multiwan in release mode and installs the binary, the systemd unit and an example
# config (an existing config is never overwritten). On Debian and Ubuntu, prefer the
# package (scripts/package-deb.sh): it adds man pages, completions and a clean purge.
#
#   sudo scripts/install.sh            # install into /
#   DESTDIR=/tmp/stage scripts/install.sh   # stage into a folder (packaging, tests)
#   MULTIWAN_BINARY=path scripts/install.sh # install this binary instead of building
#
# Uninstall: `sudo systemctl disable --now multiwan` (first: a running daemon re-installs
# what cleanup removes), `sudo multiwan cleanup` (removes every rule, route and set
# multiwan installed; no config needed), then delete /usr/local/sbin/multiwan,
# /etc/systemd/system/multiwan.service and, if you like, /etc/multiwan.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DESTDIR:-}

if [ -n "${MULTIWAN_BINARY:-}" ]; then
  binary=$MULTIWAN_BINARY
else
  cargo build --release --locked
  binary=target/release/multiwan
fi

install -D -m 0755 "$binary" "$dest/usr/local/sbin/multiwan"
install -d -m 0755 "$dest/etc/systemd/system"
sed 's|/usr/sbin/multiwan|/usr/local/sbin/multiwan|g' packaging/multiwan.service >"$dest/etc/systemd/system/multiwan.service"
chmod 0644 "$dest/etc/systemd/system/multiwan.service"
install -d -m 0755 "$dest/etc/multiwan/hooks.d"
if [ -e "$dest/etc/multiwan/multiwan.yaml" ]; then
  echo "kept the existing $dest/etc/multiwan/multiwan.yaml"
else
  install -m 0644 profiles/home-dual-wan.yaml "$dest/etc/multiwan/multiwan.yaml"
  echo "installed an example config: edit $dest/etc/multiwan/multiwan.yaml, then run: multiwan check"
fi
if [ -z "$dest" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "enable with: systemctl enable --now multiwan"
fi
echo "installed multiwan into ${dest:-/}"
