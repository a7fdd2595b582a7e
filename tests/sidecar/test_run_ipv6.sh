# run --listen-address :: (dual stack): IPv6 clients through both policies (pod-ip delivers from ::6,
# loopback to [::1]) and an IPv4 client on the same listeners, with several threads.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

POD_IP6=fd00:77::5
CLIENT_IP6=fd00:77::9
make_pod_and_client
ip -n "$POD" addr add "$POD_IP6/64" dev eth0 nodad
ip -n "$CLIENT" addr add "$CLIENT_IP6/64" dev eth0 nodad
install_redirect_rules "$POD"
serve_pong "$POD" ::1 8080
serve_pong "$POD" "$POD_IP6" 8081
serve_pong "$POD" "$POD_IP" 8082
last_server_peer() { sed -n 's/^Ncat: Connection from \([0-9a-f.:]*\):[0-9]*\.$/\1/p' "$WORK/server-$1.log" | tail -n 1; }

check() {  # LABEL ADDRESS PORT EXPECTED
  wait_listen "$POD" "$3" || fail "no server on $3"
  expect_eq "$1: [$2]:$3" "$(client "$CLIENT" "$2" "$3")" "$4"
}

start_sidecar "$POD" "$WORK/podip" --listen-address :: --threads 3
check "pod-ip" "$POD_IP6" 8081 pong
expect_eq "pod-ip: the IPv6 server sees the client as" "$(last_server_peer 8081)" ::6
check "pod-ip" "$POD_IP6" 8080 "Ncat: Connection reset by peer."
check "pod-ip, IPv4 client on the dual-stack listener" "$POD_IP" 8082 pong
stop_sidecar || fail "exit status $?"
grep -q "inbound \[$CLIENT_IP6\]:[0-9]* -> \[$POD_IP6\]:8081 upstream=\[$POD_IP6\]:8081 src=\[::6\]:[0-9]* rx=5 tx=5" "$WORK/podip.log" \
  || fail "no IPv6 access-log line"
grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8082 upstream=$POD_IP:8082 src=127.0.0.6:" "$WORK/podip.log" \
  || fail "the IPv4 client is not logged as IPv4"
pass "access log: IPv6 in brackets, v4-mapped clients as IPv4"

start_sidecar "$POD" "$WORK/lo" --listen-address :: --inbound-policy loopback
check "loopback" "$POD_IP6" 8080 pong
expect_eq "loopback: the server on ::1 sees the client as" "$(last_server_peer 8080)" ::1
check "loopback" "$POD_IP6" 8081 "Ncat: Connection reset by peer."
stop_sidecar || fail "exit status $?"
