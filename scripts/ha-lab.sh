#!/usr/bin/env bash
# A network-namespace lab for a multiwan HA pair: two routers sharing a LAN and two ISP
# segments, with a dedicated sync link between them. Never touches the host's namespace.
#
#   scripts/ha-lab.sh up [--prefix P]      build it (default: mwha)
#   scripts/ha-lab.sh down [--prefix P]    remove it (namespaces, links, processes)
#   scripts/ha-lab.sh status [--prefix P]  who holds the shared addresses
#
# Topology (N = 1, 2; routers rK, K = 1, 2):
#   P-lan   bridge br0 joining both routers' lan0; hosts 10.50.0.10-29/24, default via 10.50.0.1
#   P-rK    lan0 10.50.0.(K+1)/24; wanN 100.70.N.(K+1)/24; sync0 10.60.0.K/24 (to the other router);
#           main default via 100.70.1.254
#           shared (VRRP): 10.50.0.1/24 on lan0, 100.70.N.1/24 on wanN
#   P-ispN  bridge br0 joining both routers' wanN, 100.70.N.254/24; upstream 172.31.N.1/24;
#           forwards customer packets only from 100.70.N.0/24
#   P-inet  ispN 172.31.N.2/24; lo 198.51.100.1-2 (probe targets), 192.0.2.10 (servers);
#           routes 100.70.N.0/24 back via ISP N
set -euo pipefail

cmd=${1:-}; shift || true
prefix=mwha
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    *) echo "ha-lab.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$prefix" =~ ^[a-z0-9]{1,12}$ ]] || { echo "ha-lab.sh: --prefix must be 1-12 of a-z 0-9" >&2; exit 2; }

ns() { echo "$prefix-$1"; }
in_ns() { local n; n=$(ns "$1"); shift; ip netns exec "$n" "$@"; }
roles() { echo lan r1 r2 isp1 isp2 inet; }
our_namespaces() { ip netns list | awk '{print $1}' | grep -E "^$prefix-(lan|r1|r2|isp1|isp2|inet)$" || true; }

# A veth from router rK's interface IF to a port of bridge br0 in namespace SW.
to_bridge() { # rK if sw
  local port="$2-$1"
  ip -n "$(ns "$1")" link add "$2" type veth peer name "$port" netns "$(ns "$3")"
  ip -n "$(ns "$3")" link set "$port" master br0 up
  ip -n "$(ns "$1")" link set "$2" up
}

bridge() { # sw address
  ip -n "$(ns "$1")" link add br0 type bridge
  ip -n "$(ns "$1")" link set br0 up
  ip -n "$(ns "$1")" addr add "$2" dev br0
}

up() {
  if [ -n "$(our_namespaces)" ]; then echo "ha-lab.sh: lab '$prefix' exists; run: $0 down --prefix $prefix" >&2; exit 1; fi
  trap 'echo "ha-lab.sh: build failed, removing" >&2; down' ERR
  for r in $(roles); do ip netns add "$(ns "$r")"; ip -n "$(ns "$r")" link set lo up; done
  bridge lan 10.50.0.10/24
  for last in $(seq 11 29); do ip -n "$(ns lan)" addr add "10.50.0.$last/24" dev br0; done
  ip -n "$(ns lan)" route add default via 10.50.0.1 src 10.50.0.10
  for n in 1 2; do
    bridge "isp$n" "100.70.$n.254/24"
    ip -n "$(ns "isp$n")" link add upstream type veth peer name "isp$n" netns "$(ns inet)"
    ip -n "$(ns "isp$n")" link set upstream up
    ip -n "$(ns inet)" link set "isp$n" up
    ip -n "$(ns "isp$n")" addr add "172.31.$n.1/24" dev upstream
    ip -n "$(ns inet)" addr add "172.31.$n.2/24" dev "isp$n"
    ip -n "$(ns "isp$n")" route add default via "172.31.$n.2"
    ip -n "$(ns inet)" route add "100.70.$n.0/24" via "172.31.$n.1"
    in_ns "isp$n" sysctl -qw net.ipv4.ip_forward=1
    in_ns "isp$n" iptables -A FORWARD -i br0 ! -s "100.70.$n.0/24" -j DROP
  done
  for k in 1 2; do
    local r="r$k"
    to_bridge "$r" lan0 lan
    ip -n "$(ns "$r")" addr add "10.50.0.$((k + 1))/24" dev lan0
    for n in 1 2; do
      to_bridge "$r" "wan$n" "isp$n"
      ip -n "$(ns "$r")" addr add "100.70.$n.$((k + 1))/24" dev "wan$n"
    done
    in_ns "$r" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$r" sysctl -qw net.ipv4.conf.all.rp_filter=2
    in_ns "$r" sysctl -qw net.ipv4.conf.default.rp_filter=2
    # Like a DHCP-configured router: main has a default route (loose reverse-path checks
    # of replies need some route back to their source).
    ip -n "$(ns "$r")" route add default via 100.70.1.254 dev wan1
  done
  ip -n "$(ns r1)" link add sync0 type veth peer name sync0 netns "$(ns r2)"
  ip -n "$(ns r1)" addr add 10.60.0.1/24 dev sync0
  ip -n "$(ns r2)" addr add 10.60.0.2/24 dev sync0
  ip -n "$(ns r1)" link set sync0 up
  ip -n "$(ns r2)" link set sync0 up
  for a in 198.51.100.1 198.51.100.2 192.0.2.10; do
    ip -n "$(ns inet)" addr add "$a/32" dev lo
  done
  trap - ERR
  echo "lab '$prefix' is up: $(roles | tr '\n' ' ')"
}

down() {
  for n in $(our_namespaces); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
}

status() {
  local found; found=$(our_namespaces)
  if [ -z "$found" ]; then echo "lab '$prefix' is down"; return 0; fi
  for r in r1 r2; do
    echo "--- $r: $(in_ns "$r" ip -4 -o addr show | awk '{print $2, $4}' | tr '\n' ' ')"
  done
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
