# A neighbour on the pod's network that routes 127.0.0.0/8 to the pod IP must not reach the pod's
# loopback-only services through the sidecar. Two layers, each shown alone, in both capture modes:
#   - the capture rules leave inbound packets addressed to loopback to the kernel, which drops them as
#     martians (the proxy never sees them);
#   - the proxy refuses a loopback original destination from a client off loopback, whatever the rules
#     (reset, flags=NR end=loopback_refused, downstream_cx_loopback_refused).
# And the inbound policies' legitimate deliveries (pod-ip to the pod IP, loopback to 127.0.0.1) still work.
source "$(dirname "$0")/../sidecar/lib.sh"
source "$(dirname "$0")/../sidecar/run_lib.sh"

make_pod_and_client
in_pod() { ip netns exec "$POD" "$@"; }
# The neighbour (the client namespace): no loopback address of its own, 127.0.0.0/8 routed to the pod IP, and
# route_localnet (and no reverse-path filter) on its side only, so its kernel sends such packets out of eth0
# and takes the replies.
ip -n "$CLIENT" addr del 127.0.0.1/8 dev lo
ip -n "$CLIENT" route add 127.0.0.0/8 via "$POD_IP" dev eth0
ip netns exec "$CLIENT" sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1 \
  net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
ip -n "$CLIENT" route get 127.0.0.1 | grep -q "via $POD_IP dev eth0" || fail "the neighbour does not route 127.0.0.1 to the pod"
expect_eq "the pod's route_localnet (the kernel's martian check is on)" \
  "$(in_pod sysctl -n net.ipv4.conf.eth0.route_localnet)" 0

# neighbour HOST PORT: what `echo ping | ncat HOST PORT` prints in the neighbour (connect timeout 3 s).
neighbour() { echo ping | timeout 10 ip netns exec "$CLIENT" ncat -w 3 "$1" "$2" 2>&1 || true; }
RESET="Ncat: Connection reset by peer."
DROPPED="Ncat: TIMEOUT."
# deliveries PORT: connections the proxy delivered to the server on PORT (from 127.0.0.6, the pod-ip
# policy's source for a loopback destination in both modes; the pod's own checks come from 127.0.0.1).
deliveries() { grep -c "Connection from 127.0.0.6" "$WORK/server-$1.log" || true; }
# rule_packets TABLE RANGE: packets the loopback rule of PODPROXY_INBOUND in TABLE has matched.
rule_packets() {
  in_pod iptables -t "$1" -L PODPROXY_INBOUND -n -v -x | awk -v r="$2" '$3 == "RETURN" && $9 == r { print $1 }'
}
loopback_rule() { echo "-p tcp ! -i lo -d $1 -j RETURN"; }

# capture_layer MODE TABLE WANT TARGET...: with the capture rules as init wrote them, the neighbour's
# connection to each TARGET ("HOST PORT") gives WANT, the loopback rule of TABLE matched the SYNs, and the
# proxy saw no connection.
capture_layer() {
  local mode=$1 table=$2 want=$3 target before
  shift 3
  before=$(rule_packets "$table" 127.0.0.0/8)
  [ -n "$before" ] || fail "init wrote no loopback rule in $table PODPROXY_INBOUND"
  for target in "$@"; do
    expect_eq "$mode, both layers: neighbour -> ${target/ /:}" "$(neighbour $target)" "$want"
  done
  [ "$(rule_packets "$table" 127.0.0.0/8)" -gt "$before" ] || fail "the $table loopback rule matched nothing"
  expect_stat "$POD" downstream_cx_total inbound 0
  pass "$mode, capture layer: the rule matched the SYNs, the proxy saw nothing"
}

# proxy_layer_alone MODE TABLE HOST PORT: without TABLE's loopback rule the neighbour's SYN reaches the
# proxy, which resets it, counts it and logs it with end=loopback_refused, and dials nothing.
proxy_layer_alone() {
  local mode=$1 table=$2 host=$3 port=$4
  in_pod iptables -t "$table" -D PODPROXY_INBOUND $(loopback_rule 127.0.0.0/8)
  expect_eq "$mode, proxy layer alone: neighbour -> $host:$port" "$(neighbour "$host" "$port")" "$RESET"
  expect_stat "$POD" downstream_cx_loopback_refused inbound 1
  expect_stat "$POD" upstream_cx_total inbound 0
  grep -q "inbound $CLIENT_IP:[0-9]* -> $host:$port upstream=- .*flags=NR end=loopback_refused" "$WORK/$mode.log" ||
    fail "$mode: no access-log line with end=loopback_refused"
  pass "$mode, proxy layer: the client was reset, counted, and logged with end=loopback_refused"
}

# The loopback-only services, and what each policy may legitimately reach.
serve_pong "$POD" 127.0.0.1 9001
serve_pong "$POD" 127.0.0.2 9002
serve_pong "$POD" "$POD_IP" 8081
serve_pong "$POD" 127.0.0.1 8082
for port in 9001 9002 8081 8082; do wait_listen "$POD" "$port" || fail "no server on $port"; done
addr_of() { case $1 in 9001|8082) echo 127.0.0.1;; 9002) echo 127.0.0.2;; *) echo "$POD_IP";; esac; }
for port in 9001 9002; do
  expect_eq "the pod itself reaches its loopback service on $port" \
    "$(echo ping | timeout 10 ip netns exec "$POD" ncat "$(addr_of $port)" $port 2>&1)" pong
done

# --- REDIRECT mode -------------------------------------------------------------------------------------------
in_pod "$SIDECAR" init --proxy-uid "$PROXY_UID" --proxy-gid "$PROXY_UID" --no-ipv6 >/dev/null
start_sidecar "$POD" "$WORK/redirect" --inbound-policy pod-ip
# Capture alone stops it: the kernel drops what the rule leaves unrewritten, before the proxy could see it.
capture_layer redirect nat "$DROPPED" "127.0.0.1 9001"
proxy_layer_alone redirect nat 127.0.0.1 9001

expect_eq "pod-ip policy: neighbour -> $POD_IP:8081 (legitimate)" "$(neighbour "$POD_IP" 8081)" pong
stop_sidecar || fail "exit status $?"
start_sidecar "$POD" "$WORK/redirect-lo" --inbound-policy loopback
expect_eq "loopback policy: neighbour -> $POD_IP:8082, delivered to 127.0.0.1:8082 (legitimate)" \
  "$(neighbour "$POD_IP" 8082)" pong
expect_eq "loopback policy, proxy layer alone: neighbour -> 127.0.0.1:9001" "$(neighbour 127.0.0.1 9001)" "$RESET"
expect_stat "$POD" downstream_cx_loopback_refused inbound 1
stop_sidecar || fail "exit status $?"
expect_eq "redirect: connections the loopback services got from outside the pod" "$(deliveries 9001)" 0

# --- TPROXY mode ---------------------------------------------------------------------------------------------
in_pod "$SIDECAR" init --clean >/dev/null
in_pod "$SIDECAR" init --mode tproxy --no-ipv6 >/dev/null
start_sidecar "$POD" "$WORK/tproxy" --mode tproxy
capture_layer tproxy mangle "$DROPPED" "127.0.0.1 9001" "127.0.0.2 9002"

# TPROXY leaves routing to the kernel, whose martian check drops these packets even when captured; a pod
# with route_localnet set (some CNIs set it) has no such check. There, the rule still keeps them from the
# proxy: the kernel delivers them itself, exactly as it would to a pod without a sidecar.
in_pod sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
capture_layer "tproxy (route_localnet=1: the pod's own kernel delivers)" mangle pong "127.0.0.2 9002"
# The proxy alone: no rule, no martian check (127.0.0.2: the TPROXY rule itself skips 127.0.0.1).
proxy_layer_alone tproxy mangle 127.0.0.2 9002
in_pod sysctl -qw net.ipv4.conf.all.route_localnet=0 net.ipv4.conf.eth0.route_localnet=0
expect_eq "tproxy pod-ip policy: neighbour -> $POD_IP:8081 (legitimate)" "$(neighbour "$POD_IP" 8081)" pong
stop_sidecar || fail "exit status $?"
expect_eq "tproxy: connections the loopback services got from outside the pod" "$(( $(deliveries 9001) + $(deliveries 9002) ))" 0
