#!/usr/bin/env bash
# Builds the Debian package into target/debian/: the release binary, the systemd unit, an
# example config (a conffile: never overwritten), man pages and shell completions made by
# `multiwan assets`, the docs. Needs cargo-deb (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo build --release --locked
rm -rf target/assets target/debian
target/release/multiwan assets target/assets
gzip -9n target/assets/man/*
cargo deb --no-build --no-strip
ls target/debian/*.deb
