# Shared by scripts/demo.sh and scripts/ha-demo.sh (sourced, not run): output helpers, the
# root check, installing missing tools, and the multiwan binary to use.
#   demo_setup NAME TOOL:PACKAGE...   then $bin is the binary; step/ok/bad print, bad counts
#                                     into $failures.

if [ -t 1 ]; then bold=$'\e[1m'; green=$'\e[32m'; red=$'\e[31m'; off=$'\e[0m'; else bold= green= red= off=; fi
step() { printf '\n%s== %s ==%s\n' "$bold" "$*" "$off"; }
ok() { printf '%s  ok:%s %s\n' "$green" "$off" "$*"; }
bad() { printf '%s  NOT AS EXPECTED:%s %s\n' "$red" "$off" "$*"; failures=$((failures + 1)); }

demo_setup() {
  local name=$1; shift
  [ "$(id -u)" = 0 ] || { echo "$name: run as root (it builds network namespaces), e.g. sudo $0" >&2; exit 1; }
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "installing: ${missing[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "$name: please install ${missing[*]} with your package manager" >&2; exit 1
    fi
  fi
  if [ -n "${MULTIWAN_BINARY:-}" ]; then
    bin=$MULTIWAN_BINARY
  else
    echo "building multiwan (release)..."
    cargo build --release --quiet
    bin=$PWD/target/release/multiwan
  fi
}
