# A dual-stack pod (an IPv4 and an IPv6 address on eth0) with the defaults only: `init` and `run` without
# --listen-address or --ip-families. The seed's matrix in each family (servers on loopback, on the pod IP
# and on every address, through the loopback and the pod-ip policies), the application's outbound
# connections over both families, the access log and /stats for both; then an IPv4-only pod (init captures
# no IPv6, nothing breaks).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_dual_stack_pod_and_client

ip netns exec "$POD" "$SIDECAR" init >"$WORK/init.out"
grep -q "IPv4 capture rules applied" "$WORK/init.out" && grep -q "IPv6 capture rules applied" "$WORK/init.out" \
  || fail "init in a dual-stack pod did not capture both families: $(cat "$WORK/init.out")"
pass "init (defaults) captures IPv4 and IPv6 in a dual-stack pod"

# The seed's servers, per family: loopback only, the pod IP only, every address (ncat without an address
# listens on 0.0.0.0 and [::]).
serve_pong "$POD" 127.0.0.1 8080
serve_pong "$POD" "$POD_IP" 8081
serve_pong "$POD" ::1 8090
serve_pong "$POD" "$POD_IP6" 8091
serve_pong "$POD" "" 8082 40
# last_server_peer PORT: the address the server on PORT last saw its client come from.
last_server_peer() { sed -n 's/^Ncat: Connection from \([0-9a-f.:]*\):[0-9]*\.$/\1/p' "$WORK/server-$1.log" | tail -n 1; }
RESET="Ncat: Connection reset by peer."

check() {  # LABEL ADDRESS PORT EXPECTED [PEER]
  wait_listen "$POD" "$3" || fail "no server on $3"
  expect_eq "$1: client -> $2 port $3" "$(client "$CLIENT" "$2" "$3")" "$4"
  [ -z "${5:-}" ] || expect_eq "$1: the server on $3 sees the client as" "$(last_server_peer "$3")" "$5"
}

LABEL="pod-ip (defaults)"
start_sidecar "$POD" "$WORK/podip"
grep -q "ready: inbound \[::\]:15006 (IPv4 and IPv6;" "$WORK/podip.err" || fail "$LABEL: not listening on both: $(cat "$WORK/podip.err")"
check "$LABEL, IPv4" "$POD_IP" 8080 "$RESET"
check "$LABEL, IPv4" "$POD_IP" 8081 pong 127.0.0.6
check "$LABEL, IPv4" "$POD_IP" 8082 pong 127.0.0.6
check "$LABEL, IPv6" "$POD_IP6" 8090 "$RESET"
check "$LABEL, IPv6" "$POD_IP6" 8091 pong ::6
check "$LABEL, IPv6" "$POD_IP6" 8082 pong ::6
expect_stat "$POD" downstream_cx_total inbound 6
expect_stat "$POD" upstream_cx_connect_fail inbound 2

# The application's outbound connections, over both families, to servers in the client namespace.
serve_pong "$CLIENT" "$CLIENT_IP" 9000
serve_pong "$CLIENT" "$CLIENT_IP6" 9001
wait_listen "$CLIENT" 9000 && wait_listen "$CLIENT" 9001 || fail "no outbound servers"
expect_eq "application -> $CLIENT_IP:9000 (IPv4 outbound)" "$(client "$POD" "$CLIENT_IP" 9000)" pong
expect_eq "application -> [$CLIENT_IP6]:9001 (IPv6 outbound)" "$(client "$POD" "$CLIENT_IP6" 9001)" pong
expect_stat "$POD" downstream_cx_total outbound 2
expect_stat "$POD" downstream_cx_rx_bytes_total outbound 10
stop_sidecar || fail "$LABEL: exit status $?"

# The access log: both families alike, IPv4 as IPv4 (never v4-mapped), IPv6 in brackets.
for line in \
  "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8081 upstream=$POD_IP:8081 src=127.0.0.6:[0-9]* rx=5 tx=5 .* end=completed" \
  "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8080 upstream=$POD_IP:8080 src=- rx=0 tx=0 .* flags=UF,URX end=upstream_connect_failed" \
  "inbound \[$CLIENT_IP6\]:[0-9]* -> \[$POD_IP6\]:8091 upstream=\[$POD_IP6\]:8091 src=\[::6\]:[0-9]* rx=5 tx=5 .* end=completed" \
  "inbound \[$CLIENT_IP6\]:[0-9]* -> \[$POD_IP6\]:8090 upstream=\[$POD_IP6\]:8090 src=- rx=0 tx=0 .* flags=UF,URX end=upstream_connect_failed" \
  "outbound $POD_IP:[0-9]* -> $CLIENT_IP:9000 upstream=$CLIENT_IP:9000 src=$POD_IP:[0-9]* rx=5 tx=5 .* end=completed" \
  "outbound \[$POD_IP6\]:[0-9]* -> \[$CLIENT_IP6\]:9001 upstream=\[$CLIENT_IP6\]:9001 src=\[$POD_IP6\]:[0-9]* rx=5 tx=5 .* end=completed"; do
  grep -q -- "$line" "$WORK/podip.log" || fail "$LABEL: no access-log line like: $line"
done
! grep -q "::ffff:" "$WORK/podip.log" || fail "$LABEL: a v4-mapped address in the access log"
pass "$LABEL: access log has both families' inbound and outbound lines, IPv4 unmapped"

LABEL="loopback (defaults)"
start_sidecar "$POD" "$WORK/lo" --inbound-policy loopback
check "$LABEL, IPv4" "$POD_IP" 8080 pong 127.0.0.1
check "$LABEL, IPv4" "$POD_IP" 8081 "$RESET"
check "$LABEL, IPv4" "$POD_IP" 8082 pong 127.0.0.1
check "$LABEL, IPv6" "$POD_IP6" 8090 pong ::1
check "$LABEL, IPv6" "$POD_IP6" 8091 "$RESET"
check "$LABEL, IPv6" "$POD_IP6" 8082 pong ::1
stop_sidecar || fail "$LABEL: exit status $?"
grep -q "inbound \[$CLIENT_IP6\]:[0-9]* -> \[$POD_IP6\]:8090 upstream=\[::1\]:8090 src=\[::1\]:[0-9]* rx=5 tx=5" "$WORK/lo.log" \
  && grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8080 upstream=127.0.0.1:8080 src=127.0.0.1:[0-9]* rx=5 tx=5" "$WORK/lo.log" \
  || fail "$LABEL: the access log lacks a family's loopback delivery"
pass "$LABEL: access log shows 127.0.0.1 for IPv4, [::1] for IPv6"

# --- an IPv4-only pod: no IPv6 address, so init captures no IPv6; run (defaults) still serves IPv4.
ip netns exec "$POD" "$SIDECAR" init --clean >/dev/null
ip -n "$POD" addr del "$POD_IP6/64" dev eth0
ip netns exec "$POD" "$SIDECAR" init >"$WORK/init4.out"
grep -q "IPv6 not captured" "$WORK/init4.out" || fail "IPv4-only pod: init says: $(cat "$WORK/init4.out")"
! ip netns exec "$POD" ip6tables-save | grep -q PODPROXY_ || fail "IPv4-only pod: init wrote IPv6 capture rules"
ip netns exec "$POD" iptables-save | grep -q -- "-A PREROUTING -p tcp -j PODPROXY_INBOUND" || fail "IPv4-only pod: no IPv4 capture"
pass "IPv4-only pod: init captures IPv4 only"
LABEL="IPv4-only pod, pod-ip (defaults)"
start_sidecar "$POD" "$WORK/v4only"
check "$LABEL" "$POD_IP" 8081 pong 127.0.0.6
check "$LABEL" "$POD_IP" 8082 pong 127.0.0.6
check "$LABEL" "$POD_IP" 8080 "$RESET"
expect_eq "application -> $CLIENT_IP:9000 (IPv4-only pod)" "$(client "$POD" "$CLIENT_IP" 9000)" pong
status=0; ip netns exec "$POD" "$SIDECAR" check-binds >"$WORK/cb4.out" || status=$?
grep -q "capture IPv6: not captured" "$WORK/cb4.out" && grep -q "capture IPv4: captured to port 15006, and the sidecar's listener there takes IPv4" "$WORK/cb4.out" \
  || fail "IPv4-only pod: check-binds says: $(cat "$WORK/cb4.out")"
expect_eq "IPv4-only pod: check-binds exit status" "$status" 0
stop_sidecar || fail "$LABEL: exit status $?"
