#!/usr/bin/env bash
# Two multiwan routers as a VRRP pair, in one minute, with no hardware:
#
#   scripts/ha-demo.sh       (as root)
#
# Builds multiwan, creates the two-router lab of scripts/ha-lab.sh (the host's own network
# is never touched), renders keepalived and conntrackd configs from profiles/ha-pair-r1.yaml
# and ha-pair-r2.yaml, starts both nodes, opens 10 long-lived connections from the LAN, cuts
# the master's power, and shows the gateway moving and every connection carrying on. Then
# the old master returns and takes over again without losing a connection. Everything is
# removed at the end, also on Ctrl-C. Exit status 0 only if every step behaved as shown.
#
# MULTIWAN_BINARY=path skips the build; MULTIWAN_DEMO_PREFIX names the lab (default mwhademo).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
prefix=${MULTIWAN_DEMO_PREFIX:-mwhademo}
work=$(mktemp -d /tmp/multiwan-ha-demo.XXXXXX)
failures=0

# shellcheck source=scripts/demo-common.sh
. "$root/scripts/demo-common.sh"
demo_setup ha-demo.sh ip:iproute2 iptables:iptables conntrack:conntrack socat:socat keepalived:keepalived conntrackd:conntrackd

cleanup() {
  "$root/scripts/ha-lab.sh" down --prefix "$prefix" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM

in_ns() { local n=$1; shift; ip netns exec "$prefix-$n" "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
holds_gateway() { ip -n "$prefix-r$1" -4 -o addr show dev lan0 | grep -q ' 10.50.0.1/'; }
role() { "$bin" status --json -c "$work/r$1.yaml" 2>/dev/null | grep -o '"role": *"[a-z]*"' | cut -d'"' -f4; }
wait_master() { # k seconds
  local i
  for i in $(seq $(($2 * 20))); do
    if holds_gateway "$1" && [ "$(role "$1")" = master ]; then return 0; fi
    sleep 0.05
  done
  return 1
}

# A node boots: its config (the profile, with this lab's paths), conntrackd, the agent, keepalived.
start_node() {
  local k=$1 cfg="$work/r$1.yaml"
  sed 's/preempt_delay: 30s/preempt_delay: 3s/' "profiles/ha-pair-r$k.yaml" > "$cfg"
  printf '  config_dir: %s\ncontrol: {socket: %s}\n' "$work/r$k" "$work/r$k.sock" >> "$cfg"
  in_ns "r$k" "$bin" ha render -c "$cfg" >/dev/null
  rm -f "$work/conntrackd-r$k.lock"
  in_ns "r$k" conntrackd -C "$work/r$k/conntrackd.conf" >>"$work/r$k-conntrackd.log" 2>&1 &
  local before=0
  [ -f "$work/r$k-multiwan.log" ] && before=$(wc -c <"$work/r$k-multiwan.log")
  in_ns "r$k" "$bin" run -c "$cfg" >>"$work/r$k-multiwan.log" 2>&1 &
  for _ in $(seq 100); do tail -c +"$((before + 1))" "$work/r$k-multiwan.log" | grep -q "started: rules installed" && break; sleep 0.1; done
  in_ns "r$k" keepalived --dont-fork --log-console -f "$work/r$k/keepalived.conf" \
    -p "$work/r$k-keepalived.pid" -r "$work/r$k-vrrp.pid" -c "$work/r$k-checkers.pid" >>"$work/r$k-keepalived.log" 2>&1 &
}

# A power cut: every process stops and dies at once (keepalived cannot hand over), then
# the links go dark.
power_cut() {
  local pids; pids=$(ip netns pids "$prefix-r$1")
  kill -STOP $pids 2>/dev/null || true
  kill -KILL $pids 2>/dev/null || true
  for l in lan0 wan1 wan2 sync0; do ip -n "$prefix-r$1" link set "$l" down; done
}

revive() { # as after a reboot: links up, no shared address, empty connection table
  local k=$1
  for l in lan0 wan1 wan2 sync0; do ip -n "$prefix-r$k" link set "$l" up; done
  for a in "10.50.0.1/24 lan0" "100.70.1.1/24 wan1" "100.70.2.1/24 wan2"; do
    set -- $a; ip -n "$prefix-r$k" addr del "$1" dev "$2" 2>/dev/null || true
  done
  in_ns "r$k" conntrack -F >/dev/null 2>&1 || true
  rm -f "$work/r$k"-*.pid   # /run is empty after a reboot
  ip -n "$prefix-r$k" route replace default via 100.70.1.254 dev wan1
  start_node "$k"
}

# The LAN client: 10 connections to the echo server, then one echo round per line written
# to the control fifo; each round prints how many connections answered.
client() {
  mkfifo "$work/ctl"
  in_ns lan bash -c '
    exec 3<>"$1"
    fds=()
    for i in $(seq 10); do
      exec {fd}<>/dev/tcp/192.0.2.10/8000
      read -r -t 3 -u "$fd" via && echo "connection $i leaves by $via"
      fds+=("$fd")
    done
    echo ready
    while read -r -u 3 round; do
      alive=0
      for fd in "${fds[@]}"; do
        echo "$round" >&"$fd" 2>/dev/null || continue
        read -r -t 10 -u "$fd" back && [ "$back" = "$round" ] && alive=$((alive + 1))
      done
      echo "round $round: $alive of 10 answered"
    done' _ "$work/ctl" >"$work/client.log" 2>&1 &
  exec 4>"$work/ctl"
  for _ in $(seq 100); do grep -q ready "$work/client.log" && return 0; sleep 0.05; done
  return 1
}
round() { # n: prints the number of connections that answered
  echo "$1" >&4
  for _ in $(seq 400); do grep -q "round $1:" "$work/client.log" && break; sleep 0.05; done
  grep "round $1:" "$work/client.log" | awk '{print $3}'
}

step "setting up: a LAN, two routers r1 (priority 150) and r2 (100), two ISPs, an internet"
"$root/scripts/ha-lab.sh" up --prefix "$prefix" >/dev/null
in_ns inet setsid socat TCP-LISTEN:8000,bind=192.0.2.10,fork,reuseaddr SYSTEM:'echo $SOCAT_PEERADDR; cat' </dev/null >/dev/null 2>&1 &
"$bin" ha check-peer -c profiles/ha-pair-r1.yaml profiles/ha-pair-r2.yaml | sed 's/^/  /'
start_node 1
start_node 2
if wait_master 1 15; then ok "r1 is master: it holds 10.50.0.1 (LAN), 100.70.1.1 and 100.70.2.1 (ISPs)"; else bad "r1 did not become master"; fi
"$bin" status -c "$work/r1.yaml" | sed -n '/^HA:/,$p' | sed 's/^/  /'

step "1. ten connections from the LAN, over both ISPs"
client || bad "the client could not connect"
grep "leaves by" "$work/client.log" | sed 's/^/  /'
sleep 0.5
n=$(round 1)
if [ "$n" = 10 ]; then ok "10 of 10 answer"; else bad "$n of 10 answer"; fi

step "2. r1 loses power (processes killed at once, links dark)"
t0=$(now_ms)
power_cut 1
moved=
for _ in $(seq 300); do holds_gateway 2 && { moved=$(( $(now_ms) - t0 )); break; }; sleep 0.01; done
if [ -n "$moved" ]; then ok "r2 holds the gateway address after $moved ms"; else bad "the gateway did not move"; fi
n=$(round 2)
if [ "$n" = 10 ]; then ok "10 of 10 connections carry on through r2 (same ISP, same public address)"; else bad "$n of 10 connections survived"; fi
"$bin" status -c "$work/r2.yaml" | sed -n '/^HA:/,$p' | sed 's/^/  /'

step "3. r1 comes back: it resyncs as backup, waits preempt_delay (3 s here), takes over"
revive 1
sleep 1
echo "  r1 is $(role 1) while it resyncs"
if wait_master 1 20; then ok "r1 is master again"; else bad "r1 did not take over"; fi
n=$(round 3)
if [ "$n" = 10 ]; then ok "10 of 10 connections still answer after the failback"; else bad "$n of 10 connections survived the failback"; fi

echo
if [ "$failures" -eq 0 ]; then
  printf '%sEvery step behaved as shown.%s Everything the demo created is being removed.\n' "$green" "$off"
  exit 0
fi
printf '%s%d step(s) did not behave as expected.%s Logs:\n' "$red" "$failures" "$off"
tail -n 20 "$work"/*.log
exit 1
