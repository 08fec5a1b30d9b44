#!/usr/bin/env bash
# Builds multiwan in release mode and installs the binary, the systemd unit and an example
# config (an existing config is never overwritten).
#
#   sudo scripts/install.sh            # install into /
#   DESTDIR=/tmp/stage scripts/install.sh   # stage into a folder (packaging, tests)
#   MULTIWAN_BINARY=path scripts/install.sh # install this binary instead of building
#
# Uninstall: `sudo multiwan cleanup -c /etc/multiwan/multiwan.yaml` (removes every rule,
# route and set multiwan installed), `sudo systemctl disable --now multiwan`, then delete
# /usr/local/bin/multiwan, /etc/systemd/system/multiwan.service and, if you like,
# /etc/multiwan.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DESTDIR:-}

if [ -n "${MULTIWAN_BINARY:-}" ]; then
  binary=$MULTIWAN_BINARY
else
  cargo build --release --locked
  binary=target/release/multiwan
fi

install -D -m 0755 "$binary" "$dest/usr/local/bin/multiwan"
install -D -m 0644 packaging/multiwan.service "$dest/etc/systemd/system/multiwan.service"
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
