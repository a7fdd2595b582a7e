# A failed upstream explains itself: for each of the seed's failing cells and the other reasons, the
# inbound access-log line ends in the hint, word for word, and its counter on /stats counts it; with
# --upstream-hints off neither appears; GET /binds is what check-binds --json prints.
#   8080 on 127.0.0.1 only, pod-ip policy     -> loopback_only
#   8081 on the pod IP only, loopback policy  -> pod_ip_only
#   8082 nothing listens                       -> nothing_listens
#   8083 on 0.0.0.0 behind a DROP rule         -> timed_out (with the listener named)
#   8084 nothing listens, behind a DROP rule   -> timed_out ("the connect timed out", all there is to say)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"
command -v jq >/dev/null || fail "jq is missing"

make_pod_and_client
install_redirect_rules "$POD"
serve_pong "$POD" 127.0.0.1 8080 1
serve_pong "$POD" "$POD_IP" 8081 2  # one pong for the pod-ip policy, then listening for the loopback one
serve_pong "$POD" 0.0.0.0 8083 1
for port in 8080 8081 8083; do wait_listen "$POD" "$port" || fail "no server on $port"; done
# SYNs to 8083 and 8084 are dropped (the pod-ip policy's dials arrive on lo, the loopback policy's too).
ip netns exec "$POD" iptables -I INPUT -p tcp -m multiport --dports 8083,8084 --syn -j DROP

# line_for LOG PORT: the inbound line for PORT with what varies per run (time, client port, duration) masked.
line_for() {
  grep " inbound .* -> $POD_IP:$2 " "$1" | tail -n 1 |
    sed -E 's/^\[[^]]*\]/[T]/; s/ '"$CLIENT_IP"':[0-9]+ / '"$CLIENT_IP"':P /; s/ dur_ms=[0-9]+ / dur_ms=D /'
}
# expect_line LOG PORT EXPECTED: the client is reset, then PORT's line is EXPECTED.
expect_line() {
  local got
  got=$(client "$CLIENT" "$POD_IP" "$2")
  grep -q 'reset by peer' <<<"$got" || fail "port $2: the client got '$got', expected a reset"
  wait_for 10 sh -c "grep -q ' -> $POD_IP:$2 ' '$1'" || fail "no access-log line for $2"
  expect_eq "port $2's access-log line" "$(line_for "$1" "$2")" "$3"
  echo "  as logged: $(grep " inbound .* -> $POD_IP:$2 " "$1" | tail -n 1)"
}
prefix() {  # UPSTREAM PORT: the line's fixed part before error=
  echo "[T] inbound $CLIENT_IP:P -> $POD_IP:$2 upstream=$1 src=- rx=0 tx=0 dur_ms=D"
}

# The pod-ip policy (Istio >= 1.10): the seed's netcat-lo cell, nothing listening, two timeouts.
start_sidecar "$POD" "$WORK/podip" --connect-timeout 1s
expect_line "$WORK/podip.log" 8080 "$(prefix "$POD_IP:8080" 8080) flags=UF,URX end=upstream_connect_failed error=\"Connection refused\" hint=\"8080 listens on 127.0.0.1 only; the pod-ip policy dials $POD_IP:8080: bind 0.0.0.0 or run --inbound-policy loopback\""
expect_line "$WORK/podip.log" 8082 "$(prefix "$POD_IP:8082" 8082) flags=UF,URX end=upstream_connect_failed error=\"Connection refused\" hint=\"nothing listens on 8082\""
expect_line "$WORK/podip.log" 8083 "$(prefix "$POD_IP:8083" 8083) flags=UF,URX end=upstream_connect_timeout error=\"Connection timed out\" hint=\"the connect timed out; 8083 listens on 0.0.0.0, which accepts $POD_IP:8083: something drops the SYN (a firewall rule, or a full accept queue)\""
expect_line "$WORK/podip.log" 8084 "$(prefix "$POD_IP:8084" 8084) flags=UF,URX end=upstream_connect_timeout error=\"Connection timed out\" hint=\"the connect timed out\""
expect_stat "$POD" upstream_cx_hint_loopback_only inbound 1
expect_stat "$POD" upstream_cx_hint_nothing_listens inbound 1
expect_stat "$POD" upstream_cx_hint_timed_out inbound 2
expect_stat "$POD" upstream_cx_hint_pod_ip_only inbound 0
# A connection that works has no hint.
got=$(client "$CLIENT" "$POD_IP" 8081)
expect_eq "8081 under the pod-ip policy" "$got" pong
wait_for 10 sh -c "grep -q ' -> $POD_IP:8081 .*end=completed' '$WORK/podip.log'" || fail "no line for 8081"
grep ' -> '"$POD_IP"':8081 ' "$WORK/podip.log" | grep -q 'hint=' && fail "a completed connection has a hint"
pass "a completed connection has no hint"

# GET /binds is check-binds --json --policy pod-ip, run in the same namespace (as root, the sidecar as 1337).
binds=$(ip netns exec "$POD" curl -s -m 5 http://127.0.0.1:15000/binds)
check=$(ip netns exec "$POD" "$SIDECAR" check-binds --json --policy pod-ip) || true
[ -n "$binds" ] || fail "GET /binds answered nothing"
jq -e . >/dev/null <<<"$binds" || fail "GET /binds is not JSON: $binds"
expect_eq "GET /binds is check-binds --json --policy pod-ip" "$binds" "$check"
expect_eq "GET /binds: unreachable under pod-ip" "$(jq -c .unreachable <<<"$binds")" "[8080]"
stop_sidecar || fail "the sidecar did not exit 0"
wait_listen "$POD" 8081 || fail "no server on 8081 again"

# The loopback policy (Istio <= 1.9): the seed's netcat-eth0 cell.
start_sidecar "$POD" "$WORK/lo" --inbound-policy loopback
expect_line "$WORK/lo.log" 8081 "$(prefix "127.0.0.1:8081" 8081) flags=UF,URX end=upstream_connect_failed error=\"Connection refused\" hint=\"8081 listens on $POD_IP only; the loopback policy dials 127.0.0.1:8081: bind 0.0.0.0 or run --inbound-policy pod-ip\""
expect_stat "$POD" upstream_cx_hint_pod_ip_only inbound 1
expect_stat "$POD" upstream_cx_hint_loopback_only inbound 0
expect_stat "$POD" upstream_hint_snapshots inbound 1
stop_sidecar || fail "the sidecar did not exit 0"

# --upstream-hints off: today's line, and nothing counted.
start_sidecar "$POD" "$WORK/off" --upstream-hints off
expect_line "$WORK/off.log" 8080 "$(prefix "$POD_IP:8080" 8080) flags=UF,URX end=upstream_connect_failed error=\"Connection refused\""
expect_stat "$POD" upstream_cx_hint_loopback_only inbound 0
expect_stat "$POD" upstream_hint_snapshots inbound 0
stop_sidecar || fail "the sidecar did not exit 0"

# A bad value is refused, naming the flag.
status=0
err=$(ip netns exec "$POD" "$SIDECAR" run --upstream-hints maybe 2>&1 >/dev/null) || status=$?
expect_eq "--upstream-hints maybe: exit status" "$status" 2
grep -q -- '--upstream-hints' <<<"$err" || fail "the message does not name --upstream-hints: $err"
pass "--upstream-hints maybe is refused: $err"
