#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian/Ubuntu machine: installs the kernel tools the
# namespace tests drive, checks formatting and lints, then runs every test. Needs root
# (namespace tests build their own network namespaces; the host's network is never touched).
set -euo pipefail
cd "$(dirname "$0")/.."

need=(ip:iproute2 iptables:iptables ipset:ipset conntrack:conntrack iperf3:iperf3 ping:iputils-ping curl:curl systemd-analyze:systemd setpriv:util-linux pgrep:procps socat:socat keepalived:keepalived conntrackd:conntrackd nft:nftables dnsmasq:dnsmasq promtool:prometheus ufw:ufw man:man-db dpkg-shlibdeps:dpkg-dev gzip:gzip chromium:chromium)
missing=()
for pair in "${need[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# In CI a skipped namespace test is a failure.
export MULTIWAN_REQUIRE_NETNS=1
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test -- --test-threads=2
# The namespace tests again with iptables-legacy: each lab's router then holds a legacy
# rule of "another tool", so multiwan must choose legacy itself (netfilter.backend: auto).
echo "== the namespace tests again on the iptables-legacy backend =="
MULTIWAN_TEST_BACKEND=legacy cargo test --tests -- --test-threads=2

# The Debian package: built, installed with dpkg, checked (binary, example config, man
# pages, completions, unit), purged, and nothing may be left.
echo "== the Debian package =="
scripts/package-deb.sh
scripts/check-deb.sh
