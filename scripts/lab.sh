#!/usr/bin/env bash
# A network-namespace lab for multiwan: a LAN host, the router, one namespace per ISP and an
# "internet". Never touches the host's own namespace.
#
#   scripts/lab.sh up [--prefix P] [--isps N] [--no-servers] [--ipv6]
#                                                              build it (default: mwlab, 2 ISPs)
#   scripts/lab.sh down [--prefix P]                           remove it (namespaces, links, processes)
#   scripts/lab.sh status [--prefix P]                         list its namespaces and the router's state
#
# Topology (N = 1..ISPS):
#   P-lan   lan0 10.0.0.10-14,50,51,60,66/24, default via 10.0.0.1
#   P-lan2  lan0 10.0.2.10/24, default via 10.0.2.1 (a second LAN segment)
#   P-rt    lan0 10.0.0.1/24, lan1 10.0.2.1/24; wanN 100.64.N.2/24; main default via 100.64.1.1
#   P-ispN  rt 100.64.N.1/24; upstream 172.30.N.1/24; drops customer packets not from 100.64.N.0/24
#   P-inet  ispN 172.30.N.2/24; lo 198.51.100.1-2 (probe targets), 192.0.2.10 (echo server),
#           203.0.113.10 and .200; routes 100.64.N.0/24 back via ISP N
# The echo server (socat) on 192.0.2.10:8000 and 203.0.113.10:8000 answers with the client
# address it saw, so a LAN client learns which uplink carried it.
#
# With --ipv6 the lab is dual-stack as well:
#   P-lan   fd00:10::10,11,50/64, default via fd00:10::1      P-lan2 fd00:12::10/64
#   P-rt    lan0 fd00:10::1/64, lan1 fd00:12::1/64; wanN 2001:db8:ff0N::2/64; main
#           default via fe80::1 dev wanN (what a router advertisement installs)
#   P-ispN  rt 2001:db8:ff0N::1/64 and fe80::1; routes the prefixes 2001:db8:N00::/56 and
#           2001:db8:N80::/56 (a renumbering) to the router; upstream 2001:db8:fe0N::1/64;
#           drops customer packets from any other source
#   P-inet  ispN 2001:db8:fe0N::2/64; lo 2001:db8:e::1-2 (probe targets), 2001:db8:e::10
#           and ::20 (echo servers, port 8000)
set -euo pipefail

cmd=${1:-}; shift || true
prefix=mwlab isps=2 servers=1 ipv6=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --isps) isps=$2; shift 2 ;;
    --no-servers) servers=0; shift ;;
    --ipv6) ipv6=1; shift ;;
    *) echo "lab.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$prefix" =~ ^[a-z0-9]{1,12}$ ]] || { echo "lab.sh: --prefix must be 1-12 of a-z 0-9" >&2; exit 2; }
[[ "$isps" =~ ^[1-9]$ ]] || { echo "lab.sh: --isps must be 1-9" >&2; exit 2; }

ns() { echo "$prefix-$1"; }
in_ns() { local n; n=$(ns "$1"); shift; ip netns exec "$n" "$@"; }
veth() { # ns_a name_a ns_b name_b
  ip -n "$(ns "$1")" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
  ip -n "$(ns "$1")" link set "$2" up
  ip -n "$(ns "$3")" link set "$4" up
}
roles() { echo lan lan2 rt inet; for n in $(seq 1 "$isps"); do echo "isp$n"; done; }
our_namespaces() { ip netns list | awk '{print $1}' | grep -E "^$prefix-(lan|lan2|rt|inet|isp[0-9])$" || true; }

up() {
  if [ -n "$(our_namespaces)" ]; then echo "lab.sh: lab '$prefix' exists; run: $0 down --prefix $prefix" >&2; exit 1; fi
  trap 'echo "lab.sh: build failed, removing" >&2; down' ERR
  for r in $(roles); do
    ip netns add "$(ns "$r")"; ip -n "$(ns "$r")" link set lo up
    # Links come up without duplicate address detection: a tentative link-local address
    # would hold up neighbour discovery for a second after every link is created.
    if [ "$ipv6" = 1 ]; then
      in_ns "$r" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
    fi
  done
  veth lan lan0 rt lan0
  for last in 10 11 12 13 14 50 51 60 66; do ip -n "$(ns lan)" addr add "10.0.0.$last/24" dev lan0; done
  ip -n "$(ns lan)" route add default via 10.0.0.1 src 10.0.0.10
  ip -n "$(ns rt)" addr add 10.0.0.1/24 dev lan0
  veth lan2 lan0 rt lan1
  ip -n "$(ns lan2)" addr add 10.0.2.10/24 dev lan0
  ip -n "$(ns lan2)" route add default via 10.0.2.1
  ip -n "$(ns rt)" addr add 10.0.2.1/24 dev lan1
  for n in $(seq 1 "$isps"); do
    local isp; isp=$(ns "isp$n")
    veth rt "wan$n" "isp$n" rt
    ip -n "$(ns rt)" addr add "100.64.$n.2/24" dev "wan$n"
    ip -n "$isp" addr add "100.64.$n.1/24" dev rt
    veth "isp$n" upstream inet "isp$n"
    ip -n "$isp" addr add "172.30.$n.1/24" dev upstream
    ip -n "$(ns inet)" addr add "172.30.$n.2/24" dev "isp$n"
    ip -n "$isp" route add default via "172.30.$n.2"
    ip -n "$(ns inet)" route add "100.64.$n.0/24" via "172.30.$n.1"
    in_ns "isp$n" sysctl -qw net.ipv4.ip_forward=1
    # Anti-spoofing: only this ISP's customer address may leave through it.
    in_ns "isp$n" iptables -A FORWARD -i rt ! -s "100.64.$n.0/24" -j DROP
  done
  for a in 198.51.100.1 198.51.100.2 192.0.2.10 203.0.113.10 203.0.113.200; do
    ip -n "$(ns inet)" addr add "$a/32" dev lo
  done
  in_ns rt sysctl -qw net.ipv4.ip_forward=1
  in_ns rt sysctl -qw net.ipv4.conf.all.rp_filter=2
  in_ns rt sysctl -qw net.ipv4.conf.default.rp_filter=2
  ip -n "$(ns rt)" route add default via 100.64.1.1 dev wan1
  if [ "$ipv6" = 1 ]; then up6; fi
  if [ "$servers" = 1 ]; then
    command -v socat >/dev/null || { echo "lab.sh: socat is needed for the echo server (apt-get install socat), or use --no-servers" >&2; exit 1; }
    for a in 192.0.2.10 203.0.113.10; do
      in_ns inet setsid socat "TCP-LISTEN:8000,bind=$a,fork,reuseaddr" SYSTEM:'echo $SOCAT_PEERADDR; cat' </dev/null >/dev/null 2>&1 &
    done
  fi
  trap - ERR
  echo "lab '$prefix' is up: $(roles | tr '\n' ' ')"
}

a6() { # role address/len interface: an IPv6 address usable at once (no DAD wait)
  ip -n "$(ns "$1")" -6 addr add "$2" dev "$3" nodad
}

up6() {
  for last in 10 11 50; do a6 lan "fd00:10::$last/64" lan0; done
  ip -n "$(ns lan)" -6 route add default via fd00:10::1 src fd00:10::10
  a6 lan2 fd00:12::10/64 lan0
  ip -n "$(ns lan2)" -6 route add default via fd00:12::1
  a6 rt fd00:10::1/64 lan0
  a6 rt fd00:12::1/64 lan1
  in_ns rt sysctl -qw net.ipv6.conf.all.forwarding=1
  for n in $(seq 1 "$isps"); do
    local isp; isp=$(ns "isp$n")
    a6 rt "2001:db8:ff0$n::2/64" "wan$n"
    a6 "isp$n" "2001:db8:ff0$n::1/64" rt
    a6 "isp$n" fe80::1/64 rt
    ip -n "$isp" -6 route add "2001:db8:${n}00::/56" via "2001:db8:ff0$n::2"
    ip -n "$isp" -6 route add "2001:db8:${n}80::/56" via "2001:db8:ff0$n::2"
    a6 "isp$n" "2001:db8:fe0$n::1/64" upstream
    a6 inet "2001:db8:fe0$n::2/64" "isp$n"
    ip -n "$isp" -6 route add default via "2001:db8:fe0$n::2"
    ip -n "$(ns inet)" -6 route add "2001:db8:ff0$n::/64" via "2001:db8:fe0$n::1"
    ip -n "$(ns inet)" -6 route add "2001:db8:${n}00::/56" via "2001:db8:fe0$n::1"
    ip -n "$(ns inet)" -6 route add "2001:db8:${n}80::/56" via "2001:db8:fe0$n::1"
    in_ns "isp$n" sysctl -qw net.ipv6.conf.all.forwarding=1
    # BCP38: only the customer's link and routed prefix may leave through this ISP.
    in_ns "isp$n" ip6tables -A FORWARD -i rt -s "2001:db8:ff0$n::/64" -j ACCEPT
    in_ns "isp$n" ip6tables -A FORWARD -i rt -s "2001:db8:${n}00::/56" -j ACCEPT
    in_ns "isp$n" ip6tables -A FORWARD -i rt -s "2001:db8:${n}80::/56" -j ACCEPT
    in_ns "isp$n" ip6tables -A FORWARD -i rt -j DROP
    # What a router advertisement from ISP n would install.
    ip -n "$(ns rt)" -6 route add default via fe80::1 dev "wan$n" metric "$((1023 + n))"
  done
  for a in 2001:db8:e::1 2001:db8:e::2 2001:db8:e::10 2001:db8:e::20; do a6 inet "$a/128" lo; done
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
  echo "lab '$prefix': $(echo "$found" | tr '\n' ' ')"
  if echo "$found" | grep -qx "$(ns rt)"; then
    echo "--- router: ip rule"; in_ns rt ip rule show
    echo "--- router: multiwan chains"; in_ns rt iptables-save | grep -E '^(:MULTIWAN|-A MULTIWAN|-A [A-Z]+ .*MULTIWAN)' || echo "(none)"
  fi
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
