# run --mode tproxy: TPROXY capture (init --mode tproxy), a transparent
# inbound listener, and delivery from the client's own address: the application sees the real client
# (10.77.0.9), not 127.0.0.6 or 127.0.0.1. The sidecar drops to uid 1337 keeping only CAP_NET_ADMIN.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_pod_and_client
ip netns exec "$POD" "$SIDECAR" init --mode tproxy --no-ipv6 >/dev/null
# The sidecar's deliveries leave as uid 1337 over lo toward the pod IP, from the client's address: they
# pass the nat rules because they carry the TPROXY mark (run --tproxy-mark, init's TPROXY mark, 1337).
ip netns exec "$POD" iptables -t nat -S PODPROXY_OUTPUT | grep -q -- "-o lo -m mark --mark 0x539 -j RETURN" \
  || fail "init --mode tproxy wrote no nat exemption for TPROXY-marked deliveries"
serve_pong "$POD" "$POD_IP" 8081
serve_pong "$POD" 127.0.0.1 8080
last_server_peer() { sed -n 's/^Ncat: Connection from \([0-9.]*\):.*/\1/p' "$WORK/server-$1.log" | tail -n 1; }

start_sidecar "$POD" "$WORK/tproxy" --mode tproxy --threads 2
expect_eq "tproxy: the sidecar runs as uid" "$(ps -o uid= -p "$SIDECAR_PID" | tr -d ' ')" "$PROXY_UID"
grep -q "^CapEff:[[:space:]]*0000000000001000$" "/proc/$SIDECAR_PID/status" || fail "CapEff: $(grep CapEff "/proc/$SIDECAR_PID/status")"
pass "tproxy: only CAP_NET_ADMIN is left"
wait_listen "$POD" 8081
expect_eq "tproxy pod-ip: client -> $POD_IP:8081" "$(client "$CLIENT" "$POD_IP" 8081)" pong
expect_eq "tproxy pod-ip: the server sees the client as" "$(last_server_peer 8081)" "$CLIENT_IP"
wait_listen "$POD" 8080
expect_eq "tproxy pod-ip: a server on 127.0.0.1 only" "$(client "$CLIENT" "$POD_IP" 8080)" "Ncat: Connection reset by peer."
stop_sidecar || fail "exit status $?"

# The loopback policy under TPROXY: a non-local source cannot reach 127.0.0.1, so loopback deliveries
# come from loopback (the application sees 127.0.0.1), while a default endpoint on the pod IP still gets
# the client's address.
start_sidecar "$POD" "$WORK/tproxy-lo" --mode tproxy --inbound-policy loopback --inbound-default-endpoint "8081=$POD_IP:8081"
wait_listen "$POD" 8080
expect_eq "tproxy loopback: client -> $POD_IP:8080" "$(client "$CLIENT" "$POD_IP" 8080)" pong
expect_eq "tproxy loopback: the server on 127.0.0.1 sees" "$(last_server_peer 8080)" 127.0.0.1
wait_listen "$POD" 8081
expect_eq "tproxy loopback + default endpoint on the pod IP" "$(client "$CLIENT" "$POD_IP" 8081)" pong
expect_eq "tproxy loopback + default endpoint: the server sees" "$(last_server_peer 8081)" "$CLIENT_IP"
stop_sidecar || fail "exit status $?"

grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8081 upstream=$POD_IP:8081 src=$CLIENT_IP:[0-9]* rx=5 tx=5 .* flags=- end=completed" "$WORK/tproxy.log" \
  || fail "no access-log line with src=$CLIENT_IP"
pass "tproxy: access log shows the delivery from the client's address"
