#!/usr/bin/env bash
# multiwan in two minutes, on any Linux machine, with no router and no second ISP:
#
#   scripts/demo.sh          (as root; or: sudo scripts/demo.sh)
#
# Builds multiwan, creates a lab of network namespaces (a LAN, the router, two ISPs and an
# "internet"; the host's own network is never touched), runs `multiwan run` with
# profiles/home-dual-wan.yaml and shows: balancing by weight, pinning, an ISP failing and
# coming back, and `multiwan status`. Everything is removed at the end, also on Ctrl-C.
# Exit status 0 only if every step behaved as shown.
#
# MULTIWAN_BINARY=path skips the build; MULTIWAN_DEMO_PREFIX names the lab (default mwdemo).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
prefix=${MULTIWAN_DEMO_PREFIX:-mwdemo}
work=$(mktemp -d /tmp/multiwan-demo.XXXXXX)
failures=0
daemon_pid=

# shellcheck source=scripts/demo-common.sh
. "$root/scripts/demo-common.sh"
demo_setup demo.sh ip:iproute2 iptables:iptables ipset:ipset conntrack:conntrack socat:socat

cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  "$root/scripts/lab.sh" down --prefix "$prefix" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM

in_ns() { local n=$1; shift; ip netns exec "$prefix-$n" "$@"; }
FIBRE=100.64.1.2 CABLE=100.64.2.2
# socat prints an IPv6 peer in full, in brackets.
FIBRE6='[2001:0db8:ff01:0000:0000:0000:0000:0002]' CABLE6='[2001:0db8:ff02:0000:0000:0000:0000:0002]'

# ask SRC DST N: opens N new TCP connections and prints the uplink address the server saw for
# each ("-" for a connection that failed).
ask() {
  in_ns lan bash -c 'for i in $(seq "$3"); do
    a=$(socat -T1 - "TCP:$2:8000,bind=$1,connect-timeout=0.3" </dev/null 2>/dev/null | head -1)
    echo "${a:--}"
  done' _ "$1" "$2" "$3"
}
# ask6 SRC DST N: the same over IPv6.
ask6() {
  in_ns lan bash -c 'for i in $(seq "$3"); do
    a=$(socat -T1 - "TCP6:[$2]:8000,bind=[$1],connect-timeout=0.3" </dev/null 2>/dev/null | head -1)
    echo "${a:--}"
  done' _ "$1" "$2" "$3"
}
count() { grep -Fcx "$1" || true; }
bar() { printf '%*s' "$1" '' | tr ' ' '#'; }

step "setting up: a dual-stack LAN, the router, ISP fibre (70 %) and ISP cable (30 %), an internet"
"$root/scripts/lab.sh" up --prefix "$prefix" --isps 2 --ipv6 >/dev/null
in_ns inet setsid socat "TCP6-LISTEN:8000,bind=[2001:db8:e::10],fork,reuseaddr" SYSTEM:'echo $SOCAT_PEERADDR; cat' </dev/null >/dev/null 2>&1 &
cp profiles/home-dual-wan.yaml "$work/multiwan.yaml"
echo "control: {socket: $work/multiwan.sock}" >> "$work/multiwan.yaml"
"$bin" check -c "$work/multiwan.yaml"
in_ns rt "$bin" run -c "$work/multiwan.yaml" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do grep -q "started: rules installed" "$work/daemon.log" && break; sleep 0.1; done
grep -q "started: rules installed" "$work/daemon.log" || { cat "$work/daemon.log"; echo "the daemon did not start" >&2; exit 1; }
ok "multiwan run is up (profile: profiles/home-dual-wan.yaml)"
sleep 1

step "1. new connections from the LAN spread over the ISPs by weight"
fibre=0 cable=0
for second in 1 2 3 4 5; do
  seen=$(ask 10.0.0.10 192.0.2.10 20)
  fibre=$((fibre + $(count $FIBRE <<<"$seen"))) cable=$((cable + $(count $CABLE <<<"$seen")))
  total=$((fibre + cable))
  printf '  %ds  fibre %-20s %3d   cable %-20s %3d\n' "$second" "$(bar $((fibre * 20 / total)))" "$fibre" "$(bar $((cable * 20 / total)))" "$cable"
  sleep 0.5
done
share=$((fibre * 100 / (fibre + cable)))
if [ "$share" -ge 55 ] && [ "$share" -le 85 ] && [ "$cable" -gt 0 ]; then ok "fibre carried $share % of 100 connections (weight 70 %)"; else bad "fibre carried $share %"; fi
seen6=$(ask6 fd00:10::10 2001:db8:e::10 100)
fibre6=$(count $FIBRE6 <<<"$seen6") cable6=$(count $CABLE6 <<<"$seen6")
printf '  IPv6     fibre %-20s %3d   cable %-20s %3d\n' "$(bar $((fibre6 / 5)))" "$fibre6" "$(bar $((cable6 / 5)))" "$cable6"
if [ "$fibre6" -ge 55 ] && [ "$fibre6" -le 85 ] && [ "$cable6" -gt 0 ]; then ok "over IPv6 too: fibre carried $fibre6 of 100 connections"; else bad "IPv6: fibre $fibre6, cable $cable6"; fi

step "2. pinned traffic stays on its ISP"
console=$(ask 10.0.0.50 192.0.2.10 20)
if [ "$(count $FIBRE <<<"$console")" = 20 ]; then ok "the console (10.0.0.50, policy console) used fibre 20 times out of 20"; else bad "console: $(echo $console)"; fi
video=$(ask 10.0.0.10 203.0.113.10 20)
if [ "$(count $CABLE <<<"$video")" = 20 ]; then ok "the streaming set (203.0.113.0/25) went out by cable 20 times out of 20"; else bad "streaming: $(echo $video)"; fi
echo "  multiwan explain --src 10.0.0.50 --dst 192.0.2.10 says:"
"$bin" explain -c "$work/multiwan.yaml" --src 10.0.0.50 --dst 192.0.2.10 | sed 's/^/    /'

step "3. ISP fibre fails (it silently drops everything; its link stays up)"
in_ns isp1 iptables -I FORWARD -j DROP
in_ns isp1 ip6tables -I FORWARD -j DROP
t0=$(date +%s%N)
detected= streak=0
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 10000 ]; do
  a=$(ask 10.0.0.10 192.0.2.10 1)
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ -z "$detected" ] && grep -q "uplink=fibre from=up to=down" "$work/daemon.log"; then
    detected=$ms
    printf '  +%5d ms  multiwan: %s\n' "$ms" "$(grep -o 'uplink=fibre from=up to=down reason=[^=]*' "$work/daemon.log" | head -1 | sed 's/ loss_percent$//')"
  fi
  if [ "$a" = $CABLE ]; then streak=$((streak + 1)); else streak=0; fi
  printf '  +%5d ms  new connection: %s\n' "$ms" "$( [ "$a" = $CABLE ] && echo "cable" || echo "failed (fibre is dead)")"
  [ "$streak" -ge 10 ] && break
done
moved=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ -n "$detected" ] && [ "$streak" -ge 10 ]; then ok "outage detected after ${detected} ms; every new connection uses cable"; else bad "traffic did not move to cable"; fi
grep -o 'chains=[^ ]* balance=[^=]*took_ms="[0-9.]*"' "$work/daemon.log" | head -1 | sed 's/^/  rules swapped: /'
for _ in $(seq 50); do grep "uplink=fibre from=up to=down" "$work/daemon.log" | grep -q family=ipv6 && break; sleep 0.1; done
seen6=$(ask6 fd00:10::10 2001:db8:e::10 10)
if [ "$(count $CABLE6 <<<"$seen6")" = 10 ]; then ok "IPv6 failed over on its own probes: 10 of 10 new IPv6 connections use cable"; else bad "IPv6 after the outage: $(echo $seen6)"; fi

step "4. ISP fibre comes back"
in_ns isp1 iptables -D FORWARD -j DROP
in_ns isp1 ip6tables -D FORWARD -j DROP
t1=$(date +%s%N)
# Each family comes back on its own probes: wait for IPv4's, which the next step counts.
fibre_back() { grep "uplink=fibre from=down to=up" "$work/daemon.log" | grep -q family=ipv4; }
for _ in $(seq 100); do fibre_back && break; sleep 0.1; done
back=$(( ($(date +%s%N) - t1) / 1000000 ))
seen=$(ask 10.0.0.10 192.0.2.10 30)
f=$(count $FIBRE <<<"$seen")
if fibre_back && [ "$f" -gt 0 ]; then
  ok "fibre is back after ${back} ms (5 good probe rounds) and carries $f of 30 new connections again"
else bad "fibre did not come back"; fi

step "5. multiwan status"
"$bin" status --socket "$work/multiwan.sock" | sed 's/^/  /'

echo
if [ "$failures" -eq 0 ]; then
  printf '%sAll five steps behaved as shown.%s Everything the demo created is being removed.\n' "$green" "$off"
  exit 0
fi
printf '%s%d step(s) did not behave as expected.%s Daemon log:\n' "$red" "$failures" "$off"
cat "$work/daemon.log"
exit 1
