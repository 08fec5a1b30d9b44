#!/usr/bin/env bash
# Installs the package that scripts/package-deb.sh built, checks what it ships (the binary
# runs, the example config passes `check`, the man pages and completions are found, the
# unit verifies, an edited config survives a reinstall), purges it and checks that nothing
# it installed is left. CI runs it. dpkg runs inside a throwaway network namespace: the
# package's removal runs `multiwan cleanup`, which must touch that namespace only.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls target/debian/multiwan_*.deb | head -1)
if dpkg -s multiwan >/dev/null 2>&1; then
  echo "multiwan is installed on this machine already: not touching it" >&2
  exit 1
fi
ns="mwdeb$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
in_ns() { ip netns exec "$ns" "$@"; }
fail() { echo "NOT AS EXPECTED: $*" >&2; exit 1; }

files=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' | grep -v '/$')
in_ns dpkg -i "$deb" >/dev/null
/usr/sbin/multiwan --version
in_ns /usr/sbin/multiwan check -c /etc/multiwan/multiwan.yaml
for page in "8 multiwan" "5 multiwan.yaml" "8 multiwan-status" "8 multiwan-reload"; do
  # shellcheck disable=SC2086
  man -w $page >/dev/null || fail "no man page: $page"
done
# Documentation= names man pages: verify finds them now.
systemd-analyze verify /usr/lib/systemd/system/multiwan.service
bash -c 'source /usr/share/bash-completion/completions/multiwan && complete -p multiwan' >/dev/null \
  || fail "bash completion"
[ -s /usr/share/zsh/vendor-completions/_multiwan ] || fail "zsh completion"
[ -s /usr/share/fish/vendor_completions.d/multiwan.fish ] || fail "fish completion"
# The config is a conffile: an admin's edit survives a reinstall.
echo "# edited by the admin" >>/etc/multiwan/multiwan.yaml
in_ns dpkg -i "$deb" >/dev/null
grep -q "edited by the admin" /etc/multiwan/multiwan.yaml || fail "the edited config was overwritten"
in_ns dpkg --purge multiwan >/dev/null
dpkg -s multiwan >/dev/null 2>&1 && fail "still installed"
for f in $files; do
  [ ! -e "$f" ] || fail "left behind: $f"
done
[ ! -e /etc/multiwan ] || fail "left behind: /etc/multiwan"
echo "package: $(basename "$deb") installed, checked and purged; nothing left"
